"""LockManager against a real fmredisd and Redis: every method, and the
lock context manager (auto-extension, release, LockNotAcquired, LockLost)."""

from __future__ import annotations

import os
import time
from unittest import mock

from fmredis import FmServerError, FmTimeout, LockLost, LockManager, LockNotAcquired, WakeSignaler

from .harness import DaemonTestCase, wait_for

PREFIX = "fm:lock:"


class LockManagerTest(DaemonTestCase):

    def manager(self, **kw: int) -> LockManager:
        m = LockManager(self.client(), **kw)
        self.addCleanup(m.close)
        return m

    def test_acquire_sets_the_token_with_the_ttl_in_redis(self) -> None:
        key = self.key()
        token = self.manager().acquire(key, ttl=20000)
        self.assertIsInstance(token, str)
        self.assertEqual(self.redis("GET", PREFIX + key), token)
        self.assertTrue(15000 < self.servers.pttl(PREFIX + key) <= 20000)

    def test_acquire_without_ttl_takes_default_ttl_then_the_daemons(self) -> None:
        key = self.key()
        self.assertIsNotNone(self.manager(default_ttl=7000).acquire(key))
        self.assertTrue(5000 < self.servers.pttl(PREFIX + key) <= 7000)
        key2 = self.key("daemon-default")
        self.assertIsNotNone(self.manager().acquire(key2))
        self.assertTrue(25000 < self.servers.pttl(PREFIX + key2) <= 30000)

    def test_acquire_of_a_held_lock_gives_none_after_max_retries(self) -> None:
        key = self.key()
        holder = self.manager().acquire(key, ttl=30000)
        self.assertIsNone(self.manager(max_retries=0).acquire(key))
        self.assertEqual(self.redis("GET", PREFIX + key), holder)

    def test_acquire_retries_after_retry_delay(self) -> None:
        key = self.key()
        holder = self.manager().acquire(key, ttl=600)
        self.assertIsNotNone(holder)
        # Expiry publishes nothing: only the retry, 2 s later, finds the
        # lock free (the daemon's default delay would find it at 0.6 s).
        t0 = time.monotonic()
        token = self.manager(retry_delay=2000, max_retries=1).acquire(key, ttl=10000)
        self.assertGreaterEqual(time.monotonic() - t0, 1.9)
        self.assertIsNotNone(token)
        self.assertNotEqual(token, holder)
        self.assertEqual(self.redis("GET", PREFIX + key), token)

    def test_release_frees_the_key_once(self) -> None:
        key = self.key()
        m = self.manager()
        token = m.acquire(key)
        assert token is not None
        self.assertTrue(m.release(key, token))
        self.assertFalse(self.servers.exists(PREFIX + key))
        self.assertFalse(m.release(key, token))

    def test_release_with_another_token_leaves_the_lock(self) -> None:
        key = self.key()
        m = self.manager()
        token = m.acquire(key)
        self.assertFalse(m.release(key, "not-the-token"))
        self.assertEqual(self.redis("GET", PREFIX + key), token)

    def test_extend_sets_the_remaining_ttl(self) -> None:
        key = self.key()
        m = self.manager(default_ttl=400000)
        token = m.acquire(key, ttl=5000)
        assert token is not None
        self.assertTrue(m.extend(key, token, ttl=600000))
        self.assertGreater(self.servers.pttl(PREFIX + key), 500000)
        self.assertTrue(m.extend(key, token))
        self.assertTrue(300000 < self.servers.pttl(PREFIX + key) <= 400000)
        self.assertFalse(m.extend(key, "not-the-token", ttl=1000))
        self.assertGreater(self.servers.pttl(PREFIX + key), 300000)

    def test_is_locked_sees_any_holder(self) -> None:
        key = self.key()
        m = self.manager()
        self.assertFalse(m.is_locked(key))
        self.redis("SET", PREFIX + key, "someone-else", "PX", "30000")
        self.assertTrue(m.is_locked(key))
        self.redis("DEL", PREFIX + key)
        self.assertFalse(m.is_locked(key))

    def test_locks_go_with_the_connection(self) -> None:
        key = self.key()
        m = LockManager(self.client())
        m.acquire(key)
        m.client.close()
        wait_for(lambda: not self.servers.exists(PREFIX + key), "the daemon released it")

    def test_manager_closes_only_its_own_client(self) -> None:
        c = self.client()
        with LockManager(c) as m:
            m.is_locked(self.key())
        self.assertFalse(c.closed)
        self.assertFalse(c.lock_is_locked(self.key()))
        # Without a client it makes one, on $FMREDISD_SOCKET, and closes it.
        with mock.patch.dict(os.environ, {"FMREDISD_SOCKET": self.servers.sock}):
            own = LockManager()
        with own:
            self.assertEqual(own.client.path, self.servers.sock)
            self.assertFalse(own.is_locked(self.key()))
        self.assertTrue(own.client.closed)

    def test_bad_arguments_keep_the_daemons_code(self) -> None:
        with self.assertRaises(FmServerError) as cm:
            self.manager().acquire(self.key(), ttl=0)
        self.assertEqual(cm.exception.code, "bad_request")
        with self.assertRaises(FmServerError) as cm:
            self.manager().acquire("")
        self.assertEqual(cm.exception.code, "bad_request")


class LockContextTest(DaemonTestCase):

    def manager(self, **kw: int) -> LockManager:
        return LockManager(self.client(), **kw)

    def test_lock_holds_the_key_in_the_block_and_releases_after(self) -> None:
        key = self.key()
        with self.manager().lock(key, ttl=20000) as held:
            self.assertEqual(self.redis("GET", PREFIX + key), held.token)
            self.assertIsInstance(held.fence, int)
            self.assertFalse(held.lost)
        self.assertFalse(self.servers.exists(PREFIX + key))

    def test_lock_is_extended_past_its_ttl(self) -> None:
        key = self.key()
        # Extensions come every ttl/3; 1000 ms leaves a loaded machine
        # 667 ms of slack for each.
        with self.manager().lock(key, ttl=1000) as held:
            time.sleep(3.5)         # three and a half TTLs: the point is that they pass
            self.assertEqual(self.redis("GET", PREFIX + key), held.token)
            self.assertFalse(held.lost)
        self.assertFalse(self.servers.exists(PREFIX + key))

    def test_lock_releases_when_the_block_raises(self) -> None:
        key = self.key()
        with self.assertRaises(ZeroDivisionError):
            with self.manager().lock(key):
                self.assertTrue(self.servers.exists(PREFIX + key))
                1 / 0
        self.assertFalse(self.servers.exists(PREFIX + key))

    def test_lock_held_by_another_raises_lock_not_acquired(self) -> None:
        key = self.key()
        holder = self.manager().acquire(key)
        ran = False
        with self.assertRaises(LockNotAcquired) as cm:
            with self.manager(max_retries=0).lock(key):
                ran = True
        self.assertFalse(ran)
        self.assertEqual(cm.exception.key, key)
        self.assertEqual(self.redis("GET", PREFIX + key), holder)

    def test_lock_needs_a_ttl_of_100(self) -> None:
        with self.assertRaises(ValueError):
            self.manager().lock(self.key(), ttl=99)
        with self.assertRaises(ValueError):
            self.manager(default_ttl=50).lock(self.key())

    def test_lock_deleted_in_redis_raises_lock_lost(self) -> None:
        key = self.key()
        with self.assertRaises(LockLost) as cm:
            with self.manager().lock(key, ttl=300) as held:
                self.redis("DEL", PREFIX + key)
                wait_for(lambda: held.lost, "lock.lost from the next extension")
        self.assertEqual(cm.exception.key, key)
        self.assertIn("lock.lost", cm.exception.reason)

    def test_lock_taken_by_another_raises_lock_lost_at_release(self) -> None:
        key = self.key()
        with self.assertRaises(LockLost) as cm:
            with self.manager().lock(key, ttl=60000):
                self.redis("SET", PREFIX + key, "intruder", "PX", "60000")
        self.assertIn("another token", cm.exception.reason)
        self.assertEqual(self.redis("GET", PREFIX + key), "intruder")

    def test_lock_lost_does_not_hide_the_blocks_exception(self) -> None:
        key = self.key()
        with self.assertRaises(KeyError) as cm:
            with self.manager().lock(key, ttl=300) as held:
                self.redis("DEL", PREFIX + key)
                wait_for(lambda: held.lost, "lock.lost")
                raise KeyError("from the block")
        self.assertTrue(any("lock.lost" in n for n in cm.exception.__notes__))

    def test_connection_dropped_while_held_raises_lock_lost(self) -> None:
        key = self.key()
        try:
            with self.assertRaises(LockLost) as cm:
                with self.manager().lock(key, ttl=20000):
                    self.servers.stop_daemon()
            self.assertIn("connection", cm.exception.reason)
            # The daemon released it on its way out.
            self.assertFalse(self.servers.exists(PREFIX + key))
        finally:
            self.servers.start_daemon()

    def test_lock_lost_event_stays_queued_for_a_shared_client(self) -> None:
        key = self.key()
        c = self.client()
        wake = WakeSignaler(c, channel=self.key("wake"))
        wake.subscribe()
        with self.assertRaises(LockLost):
            with LockManager(c).lock(key, ttl=300) as held:
                self.redis("DEL", PREFIX + key)
                wake.signal("exec-1")
                wait_for(lambda: held.lost, "lock.lost")
        first = wake.receive(timeout=5)
        self.assertEqual(getattr(first, "execution_id", None), "exec-1")
        ev = c.next_event(timeout=0)
        assert ev is not None
        self.assertEqual((ev.type, ev.key), ("lock.lost", key))


class LockReleaseRefusedTest(DaemonTestCase):
    """With one request in flight per connection, a timed-out acquire still
    waiting in the daemon makes the lock's release too_many_requests."""

    daemon_args = ("--max_inflight_per_client", "1")

    def test_release_refused_with_too_many_requests_is_sent_again(self) -> None:
        key, busy = self.key(), self.key("busy")
        holder = self.client()
        self.assertIsNotNone(holder.lock_acquire(busy, ttl=30000))
        c = self.client(timeout=20)
        with LockManager(c).lock(key, ttl=1000) as held:
            # Waits some 1.5 s in the daemon, holding this connection's slot.
            with self.assertRaises(FmTimeout):
                c.lock_acquire(busy, retry_delay=100, max_retries=15, timeout=0.1)
            self.assertEqual(self.redis("GET", PREFIX + key), held.token)
        self.assertFalse(self.servers.exists(PREFIX + key))
        self.assertFalse(c.closed)

    def test_release_refused_past_the_timeout_closes_the_client(self) -> None:
        key, busy = self.key(), self.key("busy")
        holder = self.client()
        self.assertIsNotNone(holder.lock_acquire(busy, ttl=30000))
        c = self.client(timeout=20)
        with self.assertRaises(FmServerError) as cm:
            with LockManager(c).lock(key, ttl=1000):
                with self.assertRaises(FmTimeout):
                    c.lock_acquire(busy, retry_delay=1000, max_retries=60, timeout=0.1)
                c.timeout = 0.5
        self.assertEqual(cm.exception.code, "too_many_requests")
        self.assertTrue(any("Client was closed" in n for n in cm.exception.__notes__))
        self.assertTrue(c.closed)
        wait_for(lambda: not self.servers.exists(PREFIX + key), "the close released it")


class LockReleaseUnansweredTest(DaemonTestCase):

    def test_release_timed_out_closes_the_client_and_the_daemon_releases(self) -> None:
        key = self.key()
        c = self.client(timeout=0.5)
        try:
            with self.assertRaises(FmTimeout) as cm:
                with LockManager(c).lock(key, ttl=1000):
                    self.servers.pause_daemon()
            self.assertTrue(any("Client was closed" in n for n in cm.exception.__notes__))
            self.assertTrue(c.closed)
        finally:
            self.servers.resume_daemon()
        wait_for(lambda: not self.servers.exists(PREFIX + key), "the close released it")


class LockAcquireTimeoutTest(DaemonTestCase):

    def test_default_acquire_timeout_adds_the_daemons_request_timeout(self) -> None:
        key = self.key()
        holder = self.client()
        self.assertIsNotNone(holder.lock_acquire(key, ttl=30000))
        c = self.client(timeout=0.1)
        # 0.1 s + 5 s + 1 s of retries: the daemon's "not acquired" (after
        # 1 s) comes first.
        t0 = time.monotonic()
        self.assertIsNone(c.lock_acquire(key, retry_delay=100, max_retries=10))
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)

    def test_lock_whose_acquire_times_out_closes_the_client(self) -> None:
        key = self.key()
        c = self.client(timeout=0.2, request_timeout=0)
        m = LockManager(c, retry_delay=100, max_retries=1)
        self.servers.pause_daemon()
        try:
            with self.assertRaises(FmTimeout) as cm:
                with m.lock(key, ttl=1000):
                    self.fail("the block ran without the lock")
            self.assertTrue(any("Client was closed" in n for n in cm.exception.__notes__))
            self.assertTrue(c.closed)
        finally:
            self.servers.resume_daemon()
        # The daemon reads the acquire and then the close: whatever it
        # granted goes with the connection, and is not extended.
        wait_for(lambda: not self.servers.exists(PREFIX + key), "the lock free")
        self.assertIsNotNone(self.client().lock_acquire(key, ttl=1000, max_retries=0))
