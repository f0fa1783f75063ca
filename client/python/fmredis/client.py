"""The connection to fmredisd: Client, one blocking Unix socket.

Every message is a 4-byte big-endian length and then that many bytes of one
JSON object (docs/PROTOCOL.md). Client has one method per operation;
LockManager, WakeSignaler and ExecutionCache are built on it.

- One Client is one blocking connection; use one per thread.
- Every call has a timeout (seconds; the client's default, or the call's
  ``timeout=``). ``lock_acquire``'s default adds the daemon's
  request_timeout_ms (``request_timeout``, 5 s) and its retry wait to it. A call that
  timed out raises FmTimeout and leaves the connection usable: its late reply
  is recognised by its id and dropped. A late acquire that got the lock is
  released when the client next reads (any call or event read); if that
  release is refused, the client closes, which releases it too.
- Events (``{"event": ...}`` frames: wakes, Redis link changes, lost locks)
  can arrive at any time, also while a call waits for its reply. They are
  queued in order and never dropped: read them with ``next_event()``, or
  ``poll_events()`` in a select/poll loop (check ``has_events`` first:
  queued events do not make ``fileno()`` readable).
- Replies are parsed with ``json``: integers stay exact (Python ints have
  no size limit); numbers with a fraction or exponent become floats unless
  the Client is made with ``parse_float=decimal.Decimal``, which keeps their
  digits. Requests write a Decimal with its own digits.
"""

from __future__ import annotations

import collections
import enum
import json
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, NoReturn, Self

from . import _json
from .errors import FmClosed, FmConnectError, FmProtocolError, FmServerError, FmTimeout

__all__ = ["Client", "Event", "Lock", "DEFAULT_SOCKET", "DEFAULT_TIMEOUT", "UNSET"]

DEFAULT_SOCKET = "/run/fmredisd/fmredisd.sock"
DEFAULT_TIMEOUT = 10.0          # seconds; above the daemon's own 5 s
DEFAULT_MAX_REPLY = 256 << 20   # bytes of one reply frame
_DEFAULT_RETRY_DELAY_MS = 100   # the contract's defaults, used only to
_DEFAULT_MAX_RETRIES = 50       # size an acquire's client-side timeout
DEFAULT_REQUEST_TIMEOUT = 5.0   # seconds: the daemon's request_timeout_ms
_ID_MAX = (1 << 53) - 1


class _Unset(enum.Enum):
    UNSET = "UNSET"


UNSET = _Unset.UNSET
"""A call's ``timeout`` when not given: the Client's default applies."""

Timeout = float | None | _Unset


class Lock(NamedTuple):
    """A held lock: its token and its fence."""

    token: str
    fence: int


class Event:
    """A server-pushed event.

    ``type`` is the "event" member ("wake", "redis", "lock.lost", or one
    this client does not know yet); ``data`` the whole parsed frame. The
    properties read the members of the known events and are None when the
    member is absent.
    """

    __slots__ = ("type", "data")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.type: str | None = data.get("event")

    def _str(self, name: str) -> str | None:
        v = self.data.get(name)
        return v if isinstance(v, str) else None

    @property
    def channel(self) -> str | None:
        """wake: the channel it came on."""
        return self._str("channel")

    @property
    def execution_id(self) -> str | None:
        """wake: the execution to wake."""
        return self._str("execution_id")

    @property
    def timestamp(self) -> Any:
        """wake: the publisher's clock in ms since the epoch, if it sent one."""
        return self.data.get("timestamp")

    @property
    def state(self) -> str | None:
        """redis: "down" or "up"."""
        return self._str("state")

    @property
    def key(self) -> str | None:
        """lock.lost: the key as the client gave it."""
        return self._str("key")

    def __repr__(self) -> str:
        return "Event(%r)" % (self.data,)


class Client:
    """One connection to fmredisd.

    ``path``: the socket (default: $FMREDISD_SOCKET when set and not empty,
    else DEFAULT_SOCKET). ``timeout``: default seconds per call (None waits
    forever). ``max_reply``: the largest reply frame accepted, in bytes.
    ``parse_float``: what makes numbers with a fraction or exponent of
    replies into values (json's ``parse_float``; ``decimal.Decimal`` keeps
    every digit, the default makes floats). ``request_timeout``: the
    daemon's request_timeout_ms in seconds, which lock_acquire's default
    timeout adds, so that the daemon answers before the client gives up.
    """

    def __init__(self, path: str | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                 max_reply: int = DEFAULT_MAX_REPLY,
                 parse_float: Callable[[str], Any] | None = None,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.path: str = path or os.environ.get("FMREDISD_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout
        self.max_reply = max_reply
        self.request_timeout = request_timeout
        self._decoder = json.JSONDecoder(parse_float=parse_float)
        self._next_id = 1
        self._buf = bytearray()
        self._events: collections.deque[Event] = collections.deque()
        self._lost: set[str] = set()          # keys of lock.lost events seen
        self._orphans: dict[int, str] = {}    # id of a timed-out acquire -> key
        self._orphan_releases: set[int] = set()   # ids of their releases
        self._last_error: str | None = None   # of the last error without id
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except socket.timeout:
            sock.close()
            raise FmTimeout("connect to %s timed out" % self.path) from None
        except OSError as e:
            sock.close()
            raise FmConnectError("connect to %s: %s" % (self.path, e.strerror or e)) from None
        self._sock: socket.socket | None = sock

    # -- connection ------------------------------------------------------

    def close(self) -> None:
        """Closes the connection; the daemon then releases this
        connection's locks taken with on_disconnect "release"."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._orphans.clear()
            self._orphan_releases.clear()

    @property
    def closed(self) -> bool:
        return self._sock is None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The socket's fd for select/poll (readable: call poll_events)."""
        if self._sock is None:
            raise FmClosed(self._why("not connected"))
        return self._sock.fileno()

    @property
    def has_events(self) -> int:
        """Number of events already queued (the fd won't show them)."""
        return len(self._events)

    def _why(self, msg: str) -> str:
        if self._last_error is None:
            return msg
        return "%s (the daemon's last error without id: %s)" % (msg, self._last_error)

    def _fail_closed(self, exc: Exception) -> NoReturn:
        self.close()
        raise exc

    # -- frames ----------------------------------------------------------

    def _send(self, body: bytes, deadline: float | None) -> OSError | None:
        """Sends one frame. Returns the OSError that ended the connection,
        after reading what the daemon sent before it closed."""
        if self._sock is None:
            raise FmClosed(self._why("not connected"))
        data = struct.pack(">I", len(body)) + body
        if deadline is not None and deadline <= time.monotonic():
            raise FmTimeout("timed out before sending the request")
        try:
            self._sock.settimeout(self._left(deadline))
            self._sock.sendall(data)
        except socket.timeout:
            # sendall may have sent a part: the stream is mid-frame.
            self._fail_closed(FmTimeout("timed out sending the request"))
        except OSError as e:
            # The daemon may have said why before closing (forbidden...).
            self._sock.settimeout(0)
            try:
                while True:
                    chunk = self._sock.recv(65536)
                    if not chunk:
                        break
                    self._buf += chunk
            except OSError:
                pass
            return e
        return None

    @staticmethod
    def _left(deadline: float | None) -> float | None:
        if deadline is None:
            return None
        return max(deadline - time.monotonic(), 0.0)

    def _next_frame(self) -> dict[str, Any] | None:
        """The next whole frame's parsed object from the buffer, or None."""
        if len(self._buf) < 4:
            return None
        (n,) = struct.unpack(">I", self._buf[:4])
        if n == 0:
            self._fail_closed(FmProtocolError("frame of length 0"))
        if n > self.max_reply:
            self._fail_closed(FmProtocolError(
                "reply of %d bytes exceeds the limit of %d" % (n, self.max_reply)))
        if len(self._buf) < 4 + n:
            return None
        body = bytes(self._buf[4:4 + n])
        del self._buf[:4 + n]
        try:
            obj = self._decoder.decode(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            self._fail_closed(FmProtocolError("invalid JSON from fmredisd: %s" % e))
        if not isinstance(obj, dict):
            self._fail_closed(FmProtocolError("frame is not a JSON object"))
        return obj

    def _read(self, deadline: float | None) -> bool:
        """Reads once; False on timeout. Raises FmClosed at EOF."""
        if self._sock is None:
            raise FmClosed(self._why("not connected"))
        try:
            self._sock.settimeout(self._left(deadline))
            chunk = self._sock.recv(1 << 20)
        except (socket.timeout, BlockingIOError):
            return False
        except ConnectionResetError:
            chunk = b""
        except OSError as e:
            self._fail_closed(FmClosed("recv: %s" % e))
        if not chunk:
            self._fail_closed(FmClosed(self._why("connection closed by fmredisd")))
        self._buf += chunk
        return True

    def _pump(self) -> None:
        """Reads, without blocking, what the socket holds and queues its
        events; closes the client when the daemon has closed."""
        if self._sock is None:
            return
        eof = False
        self._sock.setblocking(False)
        try:
            while True:
                try:
                    chunk = self._sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    eof = True
                    break
                self._buf += chunk
        finally:
            self._sock.settimeout(self.timeout)
        while True:
            obj = self._next_frame()
            if obj is None:
                break
            self._dispatch(obj, None)
        if eof:
            self.close()

    def _dispatch(self, obj: dict[str, Any], want: int | None) -> bool:
        """Queues events, drops late replies; True when obj is the reply
        awaited (want: an id, or None for events only)."""
        if "ok" not in obj:
            if "event" in obj:
                ev = Event(obj)
                if ev.type == "lock.lost" and ev.key is not None:
                    self._lost.add(ev.key)
                self._events.append(ev)
                return False
            self._fail_closed(FmProtocolError("frame with neither ok nor event"))
        if "id" in obj:
            rid = obj["id"]
            if want is not None and type(rid) is int and rid == want:
                return True
            if type(rid) is not int:
                return False
            if rid in self._orphan_releases:
                self._orphan_releases.discard(rid)
                if obj.get("ok") is not True:
                    # Refused (too_many_requests...): only closing the
                    # connection now makes the daemon release that lock.
                    self.close()
                return False
            key = self._orphans.pop(rid, None)
            if key is not None and isinstance(obj.get("token"), str):
                # A timed-out acquire got the lock after all: give it back.
                release_id = self._new_id()
                body = _json.dumps({"op": "lock.release", "id": release_id,
                                    "key": key, "token": obj["token"]})
                if self._send(body, time.monotonic() + (self.timeout or 5)) is None:
                    self._orphan_releases.add(release_id)
            return False
        # An error without id answers the call in progress (every request
        # of ours has an id; the daemon drops it only from unreadable ones),
        # or says why the daemon is about to close (forbidden...): kept for
        # FmClosed's message.
        e = obj.get("error")
        code = e.get("code") if isinstance(e, dict) else None
        self._last_error = "%s: %s" % (code, e.get("message", "") if isinstance(e, dict) else "")
        if code in ("bad_frame", "frame_too_large"):
            self.close()        # the daemon closes after these
        return want is not None and obj.get("ok") is False

    def _new_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1 if rid < _ID_MAX else 1
        return rid

    def _exchange(self, req: dict[str, Any], timeout: Timeout) -> dict[str, Any]:
        limit = self.timeout if timeout is UNSET else timeout
        deadline = None if limit is None else time.monotonic() + limit
        err = self._send(_json.dumps(req), deadline)
        return self._await(req["id"], deadline, err, req["op"])

    def _await(self, rid: int, deadline: float | None, err: OSError | None,
               op: str) -> dict[str, Any]:
        while True:
            obj = self._next_frame()
            if obj is None:
                if err is not None:
                    self.close()
                    raise FmClosed(self._why("send: %s" % err))
                if deadline is not None and time.monotonic() >= deadline:
                    raise FmTimeout("no reply to %s in time" % op)
                self._read(deadline)
                continue
            if self._dispatch(obj, rid):
                if err is not None:
                    self.close()    # it answered, then closed (forbidden...)
                break
        if obj.get("ok") is not True:
            e = obj.get("error")
            if not isinstance(e, dict):
                e = {}
            raise FmServerError(str(e.get("code", "internal")), str(e.get("message", "")), obj)
        return obj

    def call(self, op: str, /, timeout: Timeout = UNSET, **fields: Any) -> dict[str, Any]:
        """Sends {"op": op, "id": <new>, **fields} and returns the reply
        object (ok:true). Fields whose value is None are not sent. timeout:
        seconds, None for no limit; the client's default when not given.
        Fields named op or id raise ValueError: they would replace the
        request's own, and its reply would never be recognised."""
        reserved = sorted({"op", "id"} & fields.keys())
        if reserved:
            raise ValueError("call() fields may not be named %s" % " or ".join(reserved))
        req: dict[str, Any] = {"op": op, "id": self._new_id()}
        req.update((k, v) for k, v in fields.items() if v is not None)
        return self._exchange(req, timeout)

    # -- operations --------------------------------------------------------

    def hello(self, client_name: str | None = None, *,
              timeout: Timeout = UNSET) -> dict[str, Any]:
        """Returns {"protocol": 1, "server": "fmredisd x.y.z", ...}."""
        return self.call("hello", timeout, client_name=client_name)

    def ping(self, redis: bool = False, *, timeout: Timeout = UNSET) -> str:
        """Returns "up" or "down" (the daemon's view of Redis; with
        redis=True after a round trip to it)."""
        return str(self.call("ping", timeout, redis=True if redis else None).get("redis"))

    def lock_acquire(self, key: str, ttl: int | None = None, retry_delay: int | None = None,
                     max_retries: int | None = None, on_disconnect: str | None = None,
                     auto_extend: bool | None = None, *,
                     timeout: Timeout = UNSET) -> Lock | None:
        """Returns Lock(token, fence), or None when another holder kept it
        through all retries. Arguments left None take the daemon's defaults
        (ttl, retry_delay in ms; on_disconnect "release" or "keep"). The
        default timeout is the client's plus the daemon's request timeout
        plus the retry wait."""
        if timeout is UNSET and self.timeout is not None:
            delay = retry_delay if retry_delay is not None else _DEFAULT_RETRY_DELAY_MS
            tries = max_retries if max_retries is not None else _DEFAULT_MAX_RETRIES
            timeout = self.timeout + self.request_timeout + delay * tries / 1000.0
        req: dict[str, Any] = {"op": "lock.acquire", "id": self._new_id(), "key": key}
        for k, v in (("ttl", ttl), ("retry_delay", retry_delay),
                     ("max_retries", max_retries),
                     ("on_disconnect", on_disconnect),
                     ("auto_extend", auto_extend)):
            if v is not None:
                req[k] = v
        try:
            rep = self._exchange(req, timeout)
        except FmTimeout:
            if self._sock is not None:
                self._orphans[req["id"]] = key
            raise
        token = rep.get("token")
        if not isinstance(token, str):
            return None
        return Lock(token, rep.get("fence", 0))

    def lock_release(self, key: str, token: str, *,
                     timeout: Timeout = UNSET) -> tuple[bool, str | None]:
        """Returns (released, reason): reason None, "not_held" or "not_owner"."""
        rep = self.call("lock.release", timeout, key=key, token=token)
        return bool(rep.get("released")), rep.get("reason")

    def lock_extend(self, key: str, token: str, ttl: int | None = None, *,
                    timeout: Timeout = UNSET) -> bool:
        """Sets the lock's remaining TTL; False when the token lost it."""
        return bool(self.call("lock.extend", timeout, key=key, token=token,
                              ttl=ttl).get("extended"))

    def lock_is_locked(self, key: str, *, timeout: Timeout = UNSET) -> bool:
        return bool(self.call("lock.is_locked", timeout, key=key).get("locked"))

    def wake_signal(self, execution_id: str, channel: str | None = None, *,
                    timeout: Timeout = UNSET) -> int:
        """Returns how many subscribers received it (PUBLISH's count)."""
        return int(self.call("wake.signal", timeout, execution_id=execution_id,
                             channel=channel)["receivers"])

    def wake_signal_many(self, execution_ids: Iterable[str], channel: str | None = None, *,
                         timeout: Timeout = UNSET) -> int:
        """Returns how many ids were published."""
        return int(self.call("wake.signal_many", timeout, execution_ids=list(execution_ids),
                             channel=channel)["signaled"])

    def wake_subscribe(self, channel: str | None = None, group: str | None = None, *,
                       timeout: Timeout = UNSET) -> str:
        """Returns the channel subscribed; wakes arrive as events."""
        return str(self.call("wake.subscribe", timeout, channel=channel,
                             group=group)["channel"])

    def wake_unsubscribe(self, channel: str | None = None, *,
                         timeout: Timeout = UNSET) -> str:
        return str(self.call("wake.unsubscribe", timeout, channel=channel)["channel"])

    def cache_get(self, execution_id: str, fresh: bool = False, *,
                  timeout: Timeout = UNSET) -> dict[str, Any] | None:
        """The cached execution as a parsed object, or None on a miss.
        fresh=True reads Redis, not the daemon's near cache."""
        execution: dict[str, Any] | None = self.call(
            "cache.get", timeout, execution_id=execution_id,
            fresh=True if fresh else None).get("execution")
        return execution

    def cache_set(self, execution: Mapping[str, Any], ttl: int | None = None, *,
                  timeout: Timeout = UNSET) -> None:
        """execution: a dict with a string "id"; ttl in ms."""
        self.call("cache.set", timeout, execution=execution, ttl=ttl)

    def cache_invalidate(self, execution_id: str, *, timeout: Timeout = UNSET) -> None:
        self.call("cache.invalidate", timeout, execution_id=execution_id)

    def cache_invalidate_many(self, execution_ids: Iterable[str], *,
                              timeout: Timeout = UNSET) -> int:
        """Returns how many of the ids existed."""
        return int(self.call("cache.invalidate_many", timeout,
                             execution_ids=list(execution_ids))["invalidated"])

    def cache_get_many(self, execution_ids: Iterable[str], fresh: bool = False, *,
                       timeout: Timeout = UNSET) -> dict[str, dict[str, Any]]:
        """Returns {id: execution} for the hits."""
        executions: dict[str, dict[str, Any]] = self.call(
            "cache.get_many", timeout, execution_ids=list(execution_ids),
            fresh=True if fresh else None)["executions"]
        return executions

    def stats(self, *, timeout: Timeout = UNSET) -> dict[str, Any]:
        return self.call("stats", timeout)

    # -- events ------------------------------------------------------------

    def next_event(self, timeout: float | None = None,
                   match: Callable[[Event], bool] | None = None) -> Event | None:
        """The next event (queued first, else read), or None when none came
        within timeout seconds (None: wait forever, 0: only what has
        arrived). With ``match``, the first event it accepts; the others
        stay queued, in order."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0        # queued events already refused by match
        drained = False
        while True:
            while seen < len(self._events):
                ev = self._events[seen]
                if match is None or match(ev):
                    del self._events[seen]
                    return ev
                seen += 1
            obj = self._next_frame()
            if obj is not None:
                self._dispatch(obj, None)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                if drained:
                    return None
                # What has arrived by the deadline counts, even with 0.
                self._pump()
                drained = True
                continue
            if self._sock is None:
                raise FmClosed(self._why("not connected"))
            self._read(deadline)

    def poll_events(self) -> list[Event]:
        """Non-blocking: reads what the socket holds now and returns the
        list of queued events (possibly empty). Raises FmClosed once the
        connection is gone and no event is left."""
        self._pump()
        out = list(self._events)
        self._events.clear()
        if not out and self._sock is None:
            raise FmClosed(self._why("connection closed"))
        return out

    # -- for LockManager ---------------------------------------------------

    def _lock_lost(self, key: str) -> bool:
        """Whether a lock.lost event for key came since _forget_lost(key)."""
        return key in self._lost

    def _forget_lost(self, key: str) -> None:
        self._lost.discard(key)

    def _wait_readable(self, seconds: float) -> None:
        """Waits up to seconds for the socket to be readable, then reads
        what it holds (late replies, events)."""
        if self._sock is None:
            return
        select.select([self._sock], [], [], max(seconds, 0.0))
        self._pump()
