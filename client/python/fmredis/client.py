"""fmredis -- a small client of fmredisd for Python 3, standard library only.

fmredisd is the per-host daemon that gives workers Redis-backed locks, wake
signals and an execution cache over a Unix socket (see docs/PROTOCOL.md).
Every message is a 4-byte big-endian length and then that many bytes of one
JSON object.

    from fmredis import Client

    with Client() as c:                       # $FMREDISD_SOCKET or the default
        lock = c.lock_acquire("job:42", ttl=10000)
        if lock:
            try:
                ...
            finally:
                c.lock_release("job:42", lock.token)

        with c.lock("job:43"):                # auto-extended while held
            ...

        c.wake_subscribe()
        ev = c.next_event(timeout=30)         # None when nothing came
        if ev and ev.type == "wake":
            print(ev.execution_id)

Behaviour:

- One Client is one blocking connection; use one per thread.
- Every call has a timeout (seconds; the client's default, or the call's
  ``timeout=``). ``lock_acquire`` adds its retry wait to it. A call that
  timed out raises FmTimeout and leaves the connection usable: its late reply
  is recognized by its id and dropped (a late acquire that got the lock is
  released at once).
- Errors: FmConnectError (the constructor could not connect), FmServerError (the daemon answered ok:false; ``.code`` is the
  contract's code such as "bad_request"), FmTimeout, FmClosed (the
  connection is gone), FmProtocolError (the daemon sent something
  malformed). All derive from FmError.
- Events (``{"event": ...}`` frames: wakes, Redis link changes, lost locks)
  can arrive at any time, also while a call waits for its reply. They are
  queued in order and never dropped: read them with ``next_event()``, or
  ``poll_events()`` in a select/poll loop (check ``has_events`` first:
  queued events do not make ``fileno()`` readable).
- Cached executions are returned as parsed Python objects (``json.loads``)
  and sent with ``json.dumps``. Integers survive exactly (Python ints have
  no size limit), but numbers with a fraction or exponent become floats, so
  more digits than a double holds are lost on the way through this client
  (the daemon itself stores and returns the text it is sent unchanged; the
  C library and ``fmredis cache get`` give that exact text).
"""

import collections
import json
import os
import socket
import struct
import time

__all__ = [
    "Client", "Event", "Lock", "FmError", "FmServerError", "FmTimeout",
    "FmClosed", "FmConnectError", "FmProtocolError", "LockNotAcquired",
    "DEFAULT_SOCKET",
]

DEFAULT_SOCKET = "/run/fmredisd/fmredisd.sock"
DEFAULT_TIMEOUT = 10.0          # seconds; above the daemon's own 5 s
DEFAULT_MAX_REPLY = 256 << 20   # bytes of one reply frame
_DEFAULT_RETRY_DELAY_MS = 100   # the contract's defaults, used only to
_DEFAULT_MAX_RETRIES = 50       # size an acquire's client-side timeout

Lock = collections.namedtuple("Lock", "token fence")
Lock.__doc__ = "A held lock: its token (str) and fence (int)."


class FmError(Exception):
    """Base of this module's errors."""


class FmServerError(FmError):
    """The daemon answered ok:false."""

    def __init__(self, code, message, reply=None):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.reply = reply


class FmTimeout(FmError):
    """No reply (or event) arrived in time."""


class FmClosed(FmError):
    """The connection is closed (by the daemon, an error, or close())."""


class FmConnectError(FmError):
    """The socket could not be connected to (missing, refused, denied)."""


class FmProtocolError(FmError):
    """The daemon sent something this client cannot read."""


class LockNotAcquired(FmError):
    """Client.lock(): another holder kept the lock through all retries."""


class Event:
    """A server-pushed event.

    ``type`` is the "event" member ("wake", "redis", "lock.lost", ...);
    ``data`` the whole parsed frame. Shortcuts: ``channel``,
    ``execution_id``, ``timestamp`` (wake; None when absent), ``state``
    ("up"/"down", redis), ``key`` (lock.lost).
    """

    __slots__ = ("type", "data")

    def __init__(self, data):
        self.data = data
        self.type = data.get("event")

    def __getattr__(self, name):
        if name in ("channel", "execution_id", "timestamp", "state", "key"):
            return self.data.get(name)
        raise AttributeError(name)

    def __repr__(self):
        return "Event(%r)" % (self.data,)


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


class Client:
    """One connection to fmredisd.

    ``path``: the socket (default: $FMREDISD_SOCKET, else DEFAULT_SOCKET).
    ``timeout``: default seconds per call (None waits forever).
    """

    def __init__(self, path=None, timeout=DEFAULT_TIMEOUT,
                 max_reply=DEFAULT_MAX_REPLY):
        self.path = path or os.environ.get("FMREDISD_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout
        self.max_reply = max_reply
        self._next_id = 1
        self._buf = bytearray()
        self._events = collections.deque()
        self._orphans = {}          # id of a timed-out acquire -> key
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except socket.timeout:
            self._sock.close()
            raise FmTimeout("connect to %s timed out" % self.path) from None
        except OSError as e:
            self._sock.close()
            raise FmConnectError("connect to %s: %s" % (self.path, e.strerror or e)) from None

    # -- connection ------------------------------------------------------

    def close(self):
        """Closes the connection; the daemon then releases this
        connection's locks taken with on_disconnect "release"."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._orphans.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        """The socket's fd for select/poll (readable: call poll_events)."""
        if self._sock is None:
            raise FmClosed("not connected")
        return self._sock.fileno()

    @property
    def has_events(self):
        """Number of events already queued (the fd won't show them)."""
        return len(self._events)

    def _fail_closed(self, exc):
        self.close()
        raise exc

    # -- frames ----------------------------------------------------------

    def _send(self, body, deadline):
        if self._sock is None:
            raise FmClosed("not connected")
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
    def _left(deadline):
        if deadline is None:
            return None
        return max(deadline - time.monotonic(), 0.0)

    def _next_frame(self):
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
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            self._fail_closed(FmProtocolError("invalid JSON from fmredisd: %s" % e))
        if not isinstance(obj, dict):
            self._fail_closed(FmProtocolError("frame is not a JSON object"))
        return obj

    def _read(self, deadline):
        """Reads once; False on timeout. Raises FmClosed at EOF."""
        if self._sock is None:
            raise FmClosed("not connected")
        try:
            self._sock.settimeout(self._left(deadline))
            chunk = self._sock.recv(1 << 20)
        except socket.timeout:
            return False
        except BlockingIOError:
            return False
        except ConnectionResetError:
            chunk = b""
        except OSError as e:
            self._fail_closed(FmClosed("recv: %s" % e))
        if not chunk:
            self._fail_closed(FmClosed("connection closed by fmredisd"))
        self._buf += chunk
        return True

    def _dispatch(self, obj, want):
        """Queues events, drops late replies; True when obj is the reply
        awaited (want: an id, or None for events only)."""
        if "ok" not in obj:
            if "event" in obj:
                self._events.append(Event(obj))
                return False
            self._fail_closed(FmProtocolError("frame with neither ok nor event"))
        if "id" in obj:
            if want is not None and obj["id"] == want and type(obj["id"]) is type(want):
                return True
            key = self._orphans.pop(obj["id"], None) if isinstance(obj["id"], int) else None
            if key is not None and isinstance(obj.get("token"), str):
                # A timed-out acquire got the lock after all: give it back.
                rid = self._new_id()
                self._send(_dumps({"op": "lock.release", "id": rid, "key": key,
                                   "token": obj["token"]}).encode(),
                           time.monotonic() + (self.timeout or 5))
            return False
        # An error without id answers the call in progress (every request
        # of ours has an id; the daemon drops it only from unreadable ones).
        return want is not None and obj.get("ok") is False

    def _new_id(self):
        rid = self._next_id
        self._next_id = rid + 1 if rid < (1 << 53) - 1 else 1
        return rid

    def _exchange(self, req, timeout):
        timeout = self.timeout if timeout is False else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        err = self._send(_dumps(req).encode(), deadline)
        return self._await(req["id"], deadline, err, req["op"])

    def _await(self, rid, deadline, err, op):
        while True:
            obj = self._next_frame()
            if obj is None:
                if err is not None:
                    self.close()
                    raise FmClosed("send: %s" % err)
                if deadline is not None and time.monotonic() >= deadline:
                    raise FmTimeout("no reply to %s in time" % op)
                self._read(deadline)
                continue
            if self._dispatch(obj, rid):
                if err is not None:
                    self.close()    # it answered, then closed (forbidden...)
                break
        if obj.get("ok") is not True:
            e = obj.get("error") or {}
            raise FmServerError(e.get("code", "internal"), e.get("message", ""), obj)
        return obj

    def call(self, op, timeout=False, **fields):
        """Sends {"op": op, "id": <new>, **fields} and returns the reply
        object (ok:true). Fields whose value is None are not sent. timeout:
        seconds, None for no limit; the client's default when not given."""
        req = {"op": op, "id": self._new_id()}
        req.update((k, v) for k, v in fields.items() if v is not None)
        return self._exchange(req, timeout)

    # -- operations --------------------------------------------------------

    def hello(self, client_name=None):
        """Returns {"protocol": 1, "server": "fmredisd x.y.z", ...}."""
        return self.call("hello", client_name=client_name)

    def ping(self, redis=False):
        """Returns "up" or "down" (the daemon's view of Redis)."""
        return self.call("ping", redis=True if redis else None).get("redis")

    def lock_acquire(self, key, ttl=None, retry_delay=None, max_retries=None,
                     on_disconnect=None, auto_extend=None, timeout=False):
        """Returns Lock(token, fence), or None when another holder kept it
        through all retries. Arguments left None take the daemon's defaults
        (ttl, retry_delay in ms; on_disconnect "release" or "keep")."""
        if timeout is False and self.timeout is not None:
            delay = retry_delay if retry_delay is not None else _DEFAULT_RETRY_DELAY_MS
            tries = max_retries if max_retries is not None else _DEFAULT_MAX_RETRIES
            timeout = self.timeout + delay * tries / 1000.0
        req = {"op": "lock.acquire", "id": self._new_id(), "key": key}
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
        if rep.get("token") is None:
            return None
        return Lock(rep["token"], rep.get("fence"))

    def lock_release(self, key, token):
        """Returns (released, reason): reason None, "not_held" or "not_owner"."""
        rep = self.call("lock.release", key=key, token=token)
        return bool(rep.get("released")), rep.get("reason")

    def lock_extend(self, key, token, ttl=None):
        """Sets the lock's remaining TTL; False when the token lost it."""
        return bool(self.call("lock.extend", key=key, token=token, ttl=ttl).get("extended"))

    def lock_is_locked(self, key):
        return bool(self.call("lock.is_locked", key=key).get("locked"))

    class _Held:
        def __init__(self, client, key, kw):
            self.client, self.key, self.kw, self.lock = client, key, kw, None

        def __enter__(self):
            self.lock = self.client.lock_acquire(self.key, auto_extend=True, **self.kw)
            if self.lock is None:
                raise LockNotAcquired(self.key)
            return self.lock

        def __exit__(self, *exc):
            if self.client._sock is not None:
                self.client.lock_release(self.key, self.lock.token)

    def lock(self, key, **kw):
        """Context manager: holds the lock (auto-extended by the daemon while
        this connection is open) for the block; raises LockNotAcquired."""
        return Client._Held(self, key, kw)

    def wake_signal(self, execution_id, channel=None):
        """Returns how many subscribers received it (PUBLISH's count)."""
        return self.call("wake.signal", execution_id=execution_id,
                         channel=channel)["receivers"]

    def wake_signal_many(self, execution_ids, channel=None):
        return self.call("wake.signal_many", execution_ids=list(execution_ids),
                         channel=channel)["signaled"]

    def wake_subscribe(self, channel=None, group=None):
        """Returns the channel subscribed; wakes arrive as events."""
        return self.call("wake.subscribe", channel=channel, group=group)["channel"]

    def wake_unsubscribe(self, channel=None):
        return self.call("wake.unsubscribe", channel=channel)["channel"]

    def cache_get(self, execution_id):
        """The cached execution as a parsed object, or None on a miss."""
        return self.call("cache.get", execution_id=execution_id).get("execution")

    def cache_set(self, execution, ttl=None):
        """execution: a dict with a string "id"."""
        self.call("cache.set", execution=execution, ttl=ttl)

    def cache_invalidate(self, execution_id):
        self.call("cache.invalidate", execution_id=execution_id)

    def cache_invalidate_many(self, execution_ids):
        """Returns how many of the ids existed."""
        return self.call("cache.invalidate_many",
                         execution_ids=list(execution_ids))["invalidated"]

    def cache_get_many(self, execution_ids):
        """Returns {id: execution} for the hits."""
        return self.call("cache.get_many",
                         execution_ids=list(execution_ids))["executions"]

    def stats(self):
        return self.call("stats")

    # -- events ------------------------------------------------------------

    def next_event(self, timeout=None):
        """The next event (queued first, else read), or None when none came
        within timeout seconds (None: wait forever, 0: don't wait)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._events:
                return self._events.popleft()
            obj = self._next_frame()
            if obj is not None:
                self._dispatch(obj, None)
                continue
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if self._sock is None:
                raise FmClosed("not connected")
            self._read(deadline)

    def poll_events(self):
        """Non-blocking: reads what the socket holds now and returns the
        list of queued events (possibly empty). Raises FmClosed once the
        connection is gone and no event is left."""
        eof = False
        if self._sock is not None:
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
        out = list(self._events)
        self._events.clear()
        if eof:
            self.close()
        if not out and self._sock is None:
            raise FmClosed("connection closed")
        return out
