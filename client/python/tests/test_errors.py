"""What the three classes raise when Redis fails behind the daemon: the
daemon's codes, kept in FmServerError.code, and a connection that stays
usable."""

from __future__ import annotations

import time
from collections.abc import Callable

from fmredis import ExecutionCache, FmError, FmServerError, LockManager, WakeSignaler

from .harness import DaemonTestCase, wait_for


class RedisFailureTest(DaemonTestCase):
    daemon_args = ("--request_timeout_ms", "1000", "--reconnect_max_ms", "200")

    def expect_code(self, code: str, call: Callable[[], object]) -> None:
        t0 = time.monotonic()
        with self.assertRaises(FmServerError) as cm:
            call()
        self.assertEqual(cm.exception.code, code)
        self.assertIsInstance(cm.exception, FmError)
        self.assertLess(time.monotonic() - t0, 8)

    def test_redis_gone_is_redis_unavailable(self) -> None:
        c = self.client()
        locks, cache, wake = LockManager(c), ExecutionCache(c), WakeSignaler(c)
        self.servers.kill_redis()
        try:
            wait_for(lambda: c.ping() == "down", "the daemon sees Redis gone")
            self.expect_code("redis_unavailable", lambda: cache.get(self.key()))
            self.expect_code("redis_unavailable", lambda: locks.acquire(self.key()))
            self.expect_code("redis_unavailable", lambda: wake.signal(self.key()))
        finally:
            self.servers.start_redis()
        wait_for(lambda: c.ping(redis=True) == "up", "the daemon back on Redis")
        self.assertIsNone(cache.get(self.key()))

    def test_redis_not_answering_is_timeout(self) -> None:
        c = self.client()
        cache = ExecutionCache(c)
        self.servers.pause_redis()
        try:
            self.expect_code("timeout", lambda: cache.get(self.key()))
        finally:
            self.servers.resume_redis()
        wait_for(lambda: c.ping(redis=True) == "up", "Redis answering again")
        cache.set({"id": self.key(), "ok": True})
        self.assertEqual(cache.get(self.key()), {"id": self.key(), "ok": True})
