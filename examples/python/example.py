#!/usr/bin/env python3
"""A tour of fmredisd from Python: hello, ping, a lock, the cache, and a wake
signal between two connections, with the package in client/python.

    python3 example.py [SOCKET]     (else $FMREDISD_SOCKET, else the default)

It imports fmredis from this source tree, installed or not, and says from
where. Prints what it does; exits 0 only if everything behaved as expected,
1 otherwise (the test suite runs it against a real daemon).
"""
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, os.pardir, "client", "python"))
import fmredis  # noqa: E402
from fmredis import (Client, ExecutionCache, FmError, LockManager,  # noqa: E402
                     LockNotAcquired, Wake, WakeSignaler)

failures = []


def check(what, ok, detail=""):
    print("%s %s%s" % ("ok  " if ok else "FAIL", what,
                       (": " + detail) if detail else ""))
    if not ok:
        failures.append(what)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else None
    tag = uuid.uuid4().hex[:12]         # keeps reruns and parallel runs apart
    print("fmredis %s from %s" % (fmredis.__version__,
                                  os.path.dirname(os.path.realpath(fmredis.__file__))))
    try:
        a = Client(path, timeout=10)
        b = Client(path, timeout=10)
    except FmError as e:
        print("FAIL connect: %s" % e)
        return 1
    try:
        info = a.hello("example.py")
        check("hello", info.get("protocol") == 1,
              "protocol %s, server %r" % (info.get("protocol"), info.get("server")))

        state = a.ping(redis=True)
        check("ping (with a Redis round trip)", state == "up", "redis " + str(state))

        # A lock: taken once, refused to a second connection, then released.
        locks_a = LockManager(a, default_ttl=10000)
        locks_b = LockManager(b, max_retries=0)
        key = "example:lock:" + tag
        token = locks_a.acquire(key)
        check("lock acquire", token is not None, "token %s" % token)
        check("lock is_locked", locks_a.is_locked(key) is True)
        check("second acquire refused", locks_b.acquire(key) is None)
        check("lock release", locks_a.release(key, token or "-"))
        check("lock free again", locks_a.is_locked(key) is False)
        check("release twice is refused", not locks_a.release(key, token or "-"))

        # The with form: held (and kept extended by the daemon) in the block.
        with locks_a.lock(key) as held:
            check("with lock: held", held.fence is not None and locks_b.is_locked(key),
                  "fence %s" % held.fence)
            try:
                with locks_b.lock(key):
                    pass
                check("with lock: refused to another", False)
            except LockNotAcquired:
                check("with lock: refused to another", True)
        check("with lock: released after the block", not locks_b.is_locked(key))

        # The cache: an execution goes in and comes back equal.
        cache = ExecutionCache(a)
        eid = "example-exec-" + tag
        execution = {"id": eid, "status": "running", "step": 3,
                     "context": {"n": 12345678901234567890, "tags": ["a", "b"],
                                 "note": "caf\u00e9"}}
        cache.set(execution, ttl=60000)
        got = cache.get(eid)
        check("cache set + get round trip", got == execution, repr(got))
        many = cache.get_many([eid, eid + "-missing"])
        check("cache get_many (hit and miss)", list(many) == [eid])
        check("cache invalidate_many", cache.invalidate_many([eid]) == 1)
        check("cache miss after invalidate", cache.get(eid) is None)

        # Wake: b subscribes, a signals, b receives the execution id.
        channel = "example:wake:" + tag
        listener = WakeSignaler(b, channel=channel)
        sub = listener.subscribe()
        check("wake subscribe", sub == channel, sub)
        receivers = WakeSignaler(a, channel=channel).signal(eid)
        check("wake signal", receivers >= 1, "%d receiver(s)" % receivers)
        ev = listener.receive(timeout=5)
        check("wake received", isinstance(ev, Wake) and ev.execution_id == eid
              and ev.channel == channel, repr(ev))
        listener.unsubscribe()
    except (FmError, OSError) as e:
        check("no errors", False, "%s: %s" % (type(e).__name__, e))
    finally:
        a.close()
        b.close()
    if failures:
        print("%d check(s) failed: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
