"""fmredis -- the Python client of fmredisd, standard library only.

fmredisd is the per-host daemon that gives workers Redis-backed locks, wake
signals and an execution cache over a Unix socket (docs/PROTOCOL.md).

    from fmredis import LockManager, WakeSignaler, ExecutionCache, LinkEvent

    locks = LockManager(default_ttl=10000)    # $FMREDISD_SOCKET or the default
    with locks.lock("job:42") as held:        # auto-extended while held
        ...                                   # held.token, held.fence

    cache = ExecutionCache()
    cache.set({"id": "exec-1", "status": "running"})

    wake = WakeSignaler()
    wake.subscribe(group="billing")
    for ev in wake.wakes(timeout=30):         # ends after 30 s without one
        if isinstance(ev, LinkEvent):
            ...                               # Redis link "down"/"up"
        else:
            print(ev.execution_id)

Client is the connection beneath them, with one method per operation; the
three classes each make one, or share one given to them. client/python/
README.md describes it all.
"""

from .cache import ExecutionCache
from .client import DEFAULT_SOCKET, DEFAULT_TIMEOUT, UNSET, Client, Event, Lock
from .errors import (FmClosed, FmConnectError, FmError, FmProtocolError, FmServerError,
                     FmTimeout, LockLost, LockNotAcquired)
from .locks import HeldLock, LockManager
from .wake import LinkEvent, Wake, WakeSignaler

__version__ = "0.1.0"

__all__ = [
    "Client", "Event", "Lock", "DEFAULT_SOCKET", "DEFAULT_TIMEOUT", "UNSET",
    "LockManager", "HeldLock", "WakeSignaler", "Wake", "LinkEvent", "ExecutionCache",
    "FmError", "FmServerError", "FmTimeout", "FmClosed", "FmConnectError",
    "FmProtocolError", "LockNotAcquired", "LockLost",
]
