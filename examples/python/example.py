#!/usr/bin/env python3
"""A tour of fmredisd from Python: hello, ping, a lock, the cache, and a wake
signal between two connections.

    python3 example.py [SOCKET]     (else $FMREDISD_SOCKET, else the default)

Prints what it does; exits 0 only if everything behaved as expected, 1
otherwise (the test suite runs it against a real daemon).
"""
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, os.pardir, "client", "python"))
from fmredis import Client, FmError  # noqa: E402

failures = []


def check(what, ok, detail=""):
    print("%s %s%s" % ("ok  " if ok else "FAIL", what,
                       (": " + detail) if detail else ""))
    if not ok:
        failures.append(what)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else None
    tag = uuid.uuid4().hex[:12]         # keeps reruns and parallel runs apart
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
        key = "example:lock:" + tag
        lock = a.lock_acquire(key, ttl=10000)
        check("lock acquire", lock is not None,
              lock and "token %s, fence %d" % (lock.token, lock.fence) or "not acquired")
        check("lock is_locked", a.lock_is_locked(key) is True)
        other = b.lock_acquire(key, ttl=10000, max_retries=0)
        check("second acquire refused", other is None)
        released, reason = a.lock_release(key, lock.token if lock else "-")
        check("lock release", released, reason or "released")
        check("lock free again", a.lock_is_locked(key) is False)
        released, reason = a.lock_release(key, lock.token if lock else "-")
        check("release twice says not_held", not released and reason == "not_held",
              str(reason))

        # The cache: an execution goes in and comes back equal.
        eid = "example-exec-" + tag
        execution = {"id": eid, "status": "running", "step": 3,
                     "context": {"n": 12345678901234567890, "tags": ["a", "b"],
                                 "note": "caf\u00e9"}}
        a.cache_set(execution, ttl=60000)
        got = a.cache_get(eid)
        check("cache set + get round trip", got == execution, repr(got))
        many = a.cache_get_many([eid, eid + "-missing"])
        check("cache get_many (hit and miss)", list(many) == [eid])
        check("cache invalidate_many", a.cache_invalidate_many([eid]) == 1)
        check("cache miss after invalidate", a.cache_get(eid) is None)

        # Wake: b subscribes, a signals, b receives the execution id.
        channel = "example:wake:" + tag
        sub = b.wake_subscribe(channel)
        check("wake subscribe", sub == channel, sub)
        receivers = a.wake_signal(eid, channel)
        check("wake signal", receivers >= 1, "%d receiver(s)" % receivers)
        ev = b.next_event(timeout=5)
        check("wake received", ev is not None and ev.type == "wake"
              and ev.execution_id == eid and ev.channel == channel, repr(ev))
        b.wake_unsubscribe(channel)
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
