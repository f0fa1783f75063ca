"""The errors of fmredis. Every one derives from FmError and has ``code``:
the daemon's error code for FmServerError, None for errors found on this
side of the socket."""

from __future__ import annotations

from typing import Any

__all__ = [
    "FmError", "FmServerError", "FmTimeout", "FmClosed", "FmConnectError",
    "FmProtocolError", "LockNotAcquired", "LockLost",
]


class FmError(Exception):
    """Base of this package's errors."""

    code: str | None = None


class FmServerError(FmError):
    """The daemon answered ok:false. ``code`` is the contract's code
    ("bad_request", "redis_unavailable", "timeout", ...), ``message`` its
    human text, ``reply`` the whole reply object."""

    def __init__(self, code: str, message: str, reply: dict[str, Any] | None = None) -> None:
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.reply = reply


class FmTimeout(FmError):
    """No reply (or event) arrived in time. The connection stays usable."""


class FmClosed(FmError):
    """The connection is closed (by the daemon, an error, or close())."""


class FmConnectError(FmError):
    """The socket could not be connected to (missing, refused, denied)."""


class FmProtocolError(FmError):
    """The daemon sent something this client cannot read; the connection
    is closed."""


class LockNotAcquired(FmError):
    """LockManager.lock(): another holder kept the lock through all
    retries."""

    def __init__(self, key: str) -> None:
        super().__init__("lock %r is held by another holder" % (key,))
        self.key = key


class LockLost(FmError):
    """LockManager.lock(): the lock stopped being ours while the block ran.
    ``reason`` says how: the daemon sent lock.lost, the connection closed
    (the daemon then released the lock), or the release found the lock no
    longer held by our token."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__("lock %r lost: %s" % (key, reason))
        self.key = key
        self.reason = reason
