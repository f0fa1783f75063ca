"""LockManager: the locks of @flowmonkey/redis's LockManager, through
fmredisd, and a ``with`` form whose lock the daemon keeps extended."""

from __future__ import annotations

import time
from types import TracebackType

from ._service import Service
from .client import Client
from .errors import FmClosed, FmError, FmServerError, FmTimeout, LockLost, LockNotAcquired

__all__ = ["LockManager", "HeldLock", "MIN_AUTO_EXTEND_TTL"]

MIN_AUTO_EXTEND_TTL = 100
"""The smallest ttl (ms) the daemon auto-extends."""

_RETRY_WAIT = 0.05      # seconds a release refused with too_many_requests
                        # waits for a reply before it is sent again


class LockManager(Service):
    """Locks by key. TTLs and delays are in milliseconds; an option left
    None takes the daemon's default (lock_default_ttl_ms 30000,
    lock_retry_delay_ms 100, lock_max_retries 50).

    ``default_ttl``: the ttl of acquire, extend and lock when theirs is
    None. ``retry_delay``, ``max_retries``: how long an acquire waits for a
    held lock (the daemon also retries at once when the holder releases).

    Locks are taken with on_disconnect "release": when the Client's
    connection closes (close(), the process ends or dies), the daemon
    releases them at once.
    """

    def __init__(self, client: Client | None = None, *, default_ttl: int | None = None,
                 retry_delay: int | None = None, max_retries: int | None = None) -> None:
        super().__init__(client)
        self.default_ttl = default_ttl
        self.retry_delay = retry_delay
        self.max_retries = max_retries

    def _ttl(self, ttl: int | None) -> int | None:
        return self.default_ttl if ttl is None else ttl

    def acquire(self, key: str, ttl: int | None = None) -> str | None:
        """The lock's token, or None when another holder kept the lock
        through all retries."""
        lock = self.client.lock_acquire(key, self._ttl(ttl), self.retry_delay,
                                        self.max_retries)
        return None if lock is None else lock.token

    def release(self, key: str, token: str) -> bool:
        """True when token held the lock and it is now free; False when the
        lock had expired or another token holds it."""
        released, _reason = self.client.lock_release(key, token)
        return released

    def extend(self, key: str, token: str, ttl: int | None = None) -> bool:
        """Sets the lock's remaining TTL to ttl; False when token no longer
        holds it."""
        return self.client.lock_extend(key, token, self._ttl(ttl))

    def is_locked(self, key: str) -> bool:
        """Whether anyone holds the lock (through fmredisd or not)."""
        return self.client.lock_is_locked(key)

    def lock(self, key: str, ttl: int | None = None) -> HeldLock:
        """A context manager that holds the lock for its block:

            with manager.lock("job:42") as held:
                ...             # held.token, held.fence

        The daemon extends the lock every ttl/3 for as long as the block
        runs (auto_extend), so ttl only bounds how long the lock outlives
        this process if it hangs with the connection open; it must be at
        least 100. Entering raises LockNotAcquired when another holder kept
        the lock through all retries, and closes the Client (shared or not)
        when the acquire times out. Leaving always releases the lock, and
        raises LockLost when it was lost meanwhile: the daemon sent lock.lost,
        the connection closed, or the release found it no longer ours. When
        the block raised, its exception goes on instead, with a note saying
        the lock was lost.

        A release refused with too_many_requests is sent again until the
        Client's timeout. One that gets no answer (a timeout, that refusal
        past the timeout, an interrupt) closes the Client, shared or not,
        since only a release or a close stops the daemon extending the
        lock; the error is raised with a note that says so."""
        ttl = self._ttl(ttl)
        if ttl is not None and ttl < MIN_AUTO_EXTEND_TTL:
            raise ValueError("an auto-extended lock needs a ttl of at least %d ms, got %d"
                             % (MIN_AUTO_EXTEND_TTL, ttl))
        return HeldLock(self.client, key, ttl, self.retry_delay, self.max_retries)


class HeldLock:
    """LockManager.lock()'s context manager. Inside the block, ``token`` and
    ``fence`` are the lock's, and ``lost`` tells (without blocking) whether
    the daemon has reported the lock lost so far."""

    def __init__(self, client: Client, key: str, ttl: int | None, retry_delay: int | None,
                 max_retries: int | None) -> None:
        self.client = client
        self.key = key
        self._ttl = ttl
        self._retry_delay = retry_delay
        self._max_retries = max_retries
        self.token: str | None = None
        self.fence: int | None = None

    def __enter__(self) -> HeldLock:
        try:
            lock = self.client.lock_acquire(self.key, self._ttl, self._retry_delay,
                                            self._max_retries, auto_extend=True)
        except FmTimeout as e:
            # A grant still to come would be extended until this client's
            # next read; closing makes the daemon drop the wait or release.
            self.client.close()
            e.add_note("fmredis: the acquire of lock %r timed out, so the Client was closed"
                       % (self.key,))
            raise
        if lock is None:
            raise LockNotAcquired(self.key)
        # A lock.lost read so far is about an earlier hold of this key:
        # this hold's can only follow the grant.
        self.client._forget_lost(self.key)
        self.token, self.fence = lock
        return self

    @property
    def lost(self) -> bool:
        """True once the daemon has sent lock.lost for this lock or the
        connection has closed (events already sent are read first)."""
        self.client._pump()
        return self.client.closed or self.client._lock_lost(self.key)

    def _release(self) -> str | None:
        """Releases the lock; returns why it was lost, or None. Raises the
        error of a release the daemon did not answer, after closing the
        Client: the daemon keeps extending the lock until a release reaches
        it, and the close releases it (on_disconnect "release")."""
        assert self.token is not None, "released before it was acquired"
        if self.client.closed:
            return "the connection to fmredisd closed while the lock was held"
        try:
            released, reason = self._send_release()
        except FmClosed as e:
            return "the connection to fmredisd closed while the lock was held (%s)" % e
        except FmServerError as e:
            if e.code != "too_many_requests":
                raise       # it reached the daemon, which stopped extending
            self._close_client(e)
            raise
        except BaseException as e:
            self._close_client(e)
            raise
        if self.client._lock_lost(self.key):
            return "fmredisd reported lock.lost (an extension found the lock gone)"
        if not released:
            return "the release found it %s" % ("expired" if reason == "not_held"
                                                 else "held by another token")
        return None

    def _send_release(self) -> tuple[bool, str | None]:
        """lock_release, again after each too_many_requests until the
        Client's timeout: a slot frees when a reply to one of this
        connection's earlier (timed-out) requests arrives."""
        assert self.token is not None
        limit = self.client.timeout
        deadline = None if limit is None else time.monotonic() + limit
        refused: FmServerError | None = None
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if refused is not None and left is not None and left <= 0:
                raise refused
            try:
                return self.client.lock_release(self.key, self.token, timeout=left)
            except FmServerError as e:
                if e.code != "too_many_requests":
                    raise
                refused = e
            self.client._wait_readable(_RETRY_WAIT if deadline is None
                                       else min(_RETRY_WAIT, deadline - time.monotonic()))

    def _close_client(self, e: BaseException) -> None:
        self.client.close()
        e.add_note("fmredis: the release of lock %r got no answer, so the Client was closed:"
                   " fmredisd releases the lock when the connection closes" % (self.key,))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            reason = self._release()
        except FmError as e:
            if exc is None:
                raise
            exc.add_note("fmredis: releasing lock %r failed: %s" % (self.key, e))
            for note in getattr(e, "__notes__", ()):
                exc.add_note(note)
            return
        finally:
            self.client._forget_lost(self.key)
        if reason is not None:
            if exc is None:
                raise LockLost(self.key, reason)
            exc.add_note("fmredis: lock %r lost: %s" % (self.key, reason))
