"""Client, the connection: hello/ping/stats, per-call timeouts and late
replies, the event queue, errors with their codes."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from decimal import Decimal
from unittest import mock

import fmredis
from fmredis import (Client, FmClosed, FmConnectError, FmProtocolError, FmServerError,
                     FmTimeout)

from .harness import DaemonTestCase, wait_for


class ClientTest(DaemonTestCase):

    def test_hello_ping_stats(self) -> None:
        c = self.client()
        info = c.hello("test_client")
        self.assertEqual(info["protocol"], 1)
        self.assertEqual(info["server"], "fmredisd " + fmredis.__version__)
        self.assertEqual(c.ping(), "up")
        self.assertEqual(c.ping(redis=True), "up")
        stats = c.stats()
        self.assertGreaterEqual(stats["ops"]["hello"]["calls"], 1)
        self.assertTrue(stats["redis"]["connected"])

    def test_socket_from_the_environment(self) -> None:
        with mock.patch.dict(os.environ, {"FMREDISD_SOCKET": self.servers.sock}):
            c = Client()
        self.addCleanup(c.close)
        self.assertEqual(c.path, self.servers.sock)
        self.assertEqual(c.ping(), "up")

    def test_cannot_connect(self) -> None:
        with self.assertRaises(FmConnectError) as cm:
            Client(os.path.join(self.servers.dir, "nothing.sock"))
        self.assertIsNone(cm.exception.code)

    def test_server_errors_keep_their_code(self) -> None:
        c = self.client()
        cases: list[tuple[Callable[[], object], str]] = [
            (lambda: c.call("no.such.op"), "unknown_op"),
            (lambda: c.lock_acquire(self.key(), ttl=0), "bad_request"),
            (lambda: c.lock_acquire(self.key(), auto_extend=True, ttl=99), "bad_request"),
            (lambda: c.cache_set({"no": "id"}), "bad_request"),
            (lambda: c.wake_subscribe("bad\x01channel"), "bad_request"),
            (lambda: c.call("ping", redis=1), "bad_request"),
        ]
        for call, code in cases:
            with self.subTest(code=code):
                with self.assertRaises(FmServerError) as cm:
                    call()
                self.assertEqual(cm.exception.code, code)
                assert cm.exception.reply is not None
                self.assertEqual(cm.exception.reply["error"]["code"], code)
        self.assertEqual(c.ping(), "up")        # still usable

    def test_call_timeout_leaves_the_connection_usable(self) -> None:
        c = self.client(timeout=10)
        c.cache_set({"id": self.key("a"), "v": "a"})
        c.cache_set({"id": self.key("b"), "v": "b"})
        self.servers.pause_daemon()
        try:
            t0 = time.monotonic()
            with self.assertRaises(FmTimeout):
                c.cache_get(self.key("a"), timeout=0.3)
            self.assertLess(time.monotonic() - t0, 5)
        finally:
            self.servers.resume_daemon()
        # The late reply to the first get is dropped by its id, not taken
        # for the second's.
        self.assertEqual(c.cache_get(self.key("b")), {"id": self.key("b"), "v": "b"})
        self.assertFalse(c.closed)

    def test_client_default_timeout(self) -> None:
        c = self.client(timeout=0.3)
        self.servers.pause_daemon()
        try:
            with self.assertRaises(FmTimeout):
                c.ping()
        finally:
            self.servers.resume_daemon()
        self.assertEqual(c.ping(), "up")

    def test_late_acquire_is_released_at_the_next_read(self) -> None:
        key = self.key()
        holder, late = self.client(), self.client(timeout=10)
        held = holder.lock_acquire(key, ttl=30000)
        assert held is not None
        token = held.token
        with self.assertRaises(FmTimeout):
            late.lock_acquire(key, ttl=30000, retry_delay=100, max_retries=100, timeout=0.3)
        # The daemon still waits: the release hands it the lock...
        self.assertEqual(holder.lock_release(key, token), (True, None))
        wait_for(lambda: self.redis("GET", "fm:lock:" + key) not in ("", token),
                 "the late acquire took the lock")
        # ...and the next read of that client gives it back, while its
        # connection stays open.
        self.assertEqual(late.ping(), "up")
        wait_for(lambda: not self.servers.exists("fm:lock:" + key), "the late lock released")
        self.assertFalse(late.closed)

    def test_events_during_a_call_are_queued(self) -> None:
        c, other = self.client(), self.client()
        channel = c.wake_subscribe(self.key())
        for i in range(3):
            other.wake_signal("exec-%d" % i, channel)
        # The wakes arrive while these calls wait for their replies.
        wait_for(lambda: c.ping() and c.has_events == 3, "three wakes queued")
        got = [c.next_event(0) for _ in range(3)]
        self.assertEqual([e and e.execution_id for e in got], ["exec-0", "exec-1", "exec-2"])
        self.assertIsNone(c.next_event(timeout=0))

    def test_next_event_with_match_keeps_the_others_in_order(self) -> None:
        c, other = self.client(), self.client()
        channel = c.wake_subscribe(self.key())
        other.wake_signal_many(["a", "b", "c"], channel)
        ev = c.next_event(5, lambda e: e.execution_id == "b")
        assert ev is not None
        self.assertEqual(ev.execution_id, "b")
        rest = [c.next_event(5), c.next_event(5)]
        self.assertEqual([e and e.execution_id for e in rest], ["a", "c"])

    def test_poll_events_in_a_select_loop(self) -> None:
        c, other = self.client(), self.client()
        channel = c.wake_subscribe(self.key())
        self.assertEqual(c.poll_events(), [])
        other.wake_signal("exec-1", channel)
        readable, _, _ = select.select([c], [], [], 10)
        self.assertEqual(readable, [c])
        events = wait_for(c.poll_events, "the wake")
        self.assertEqual([(e.type, e.channel, e.execution_id) for e in events],
                         [("wake", channel, "exec-1")])
        self.assertEqual(c.has_events, 0)

    def test_closed_by_the_daemon(self) -> None:
        c = self.client()
        # A frame over max_frame_bytes (1 MiB): the daemon answers and closes.
        with self.assertRaises(FmServerError) as cm:
            c.call("ping", pad="x" * (2 << 20))
        self.assertEqual(cm.exception.code, "frame_too_large")
        self.assertTrue(c.closed)       # at once, as the daemon closes
        with self.assertRaises(FmClosed) as closed:
            c.ping()
        self.assertIn("frame_too_large", str(closed.exception))
        with self.assertRaises(FmClosed):
            c.poll_events()

    def test_close_then_call(self) -> None:
        c = self.client()
        c.close()
        with self.assertRaises(FmClosed):
            c.ping()

    def test_reply_over_max_reply_is_a_protocol_error(self) -> None:
        c = self.client(max_reply=64)
        with self.assertRaises(FmProtocolError):
            c.stats()
        self.assertTrue(c.closed)


class NumbersTest(DaemonTestCase):

    def test_integers_are_exact_both_ways(self) -> None:
        c = self.client()
        eid = self.key()
        big = 123456789012345678901234567890
        c.cache_set({"id": eid, "n": big, "neg": -big})
        self.assertEqual(self.redis("GET", "fm:exec:" + eid),
                         '{"id":"%s","n":%d,"neg":%d}' % (eid, big, -big))
        self.assertEqual(c.cache_get(eid), {"id": eid, "n": big, "neg": -big})

    def test_floats_by_default(self) -> None:
        c = self.client()
        eid = self.key()
        self.redis("SET", "fm:exec:" + eid, '{"id":"%s","f":1234567890.123456789}' % eid)
        got = c.cache_get(eid)
        assert got is not None
        self.assertIsInstance(got["f"], float)

    def test_parse_float_decimal_keeps_every_digit(self) -> None:
        c = self.client(parse_float=Decimal)
        eid = self.key()
        text = '{"id":"%s","f":1234567890.123456789,"g":1.50,"e":-2.5E-30,"n":[0.1]}' % eid
        self.redis("SET", "fm:exec:" + eid, text)
        got = c.cache_get(eid)
        assert got is not None
        self.assertEqual(got["f"], Decimal("1234567890.123456789"))
        self.assertEqual(str(got["g"]), "1.50")
        # Sent back, the Decimals are written with their own digits.
        c.cache_set(got)
        self.assertEqual(self.redis("GET", "fm:exec:" + eid), text)

    def test_decimal_and_float_in_one_request(self) -> None:
        c = self.client()
        eid = self.key()
        c.cache_set({"id": eid, "d": Decimal("0.10000000000000000001"), "f": 0.5,
                     "t": (1, True, None), "k": {1: "int key"}})
        self.assertEqual(self.redis("GET", "fm:exec:" + eid),
                         '{"id":"%s","d":0.10000000000000000001,"f":0.5,'
                         '"t":[1,true,null],"k":{"1":"int key"}}' % eid)

    def test_values_json_cannot_hold_are_refused_before_sending(self) -> None:
        c = self.client()
        for bad in (Decimal("NaN"), Decimal("Infinity"), float("inf")):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                c.cache_set({"id": self.key(), "x": bad})
        with self.assertRaises(TypeError):
            c.cache_set({"id": self.key(), "x": object()})
        self.assertEqual(c.ping(), "up")

    def test_lone_surrogates_are_refused_before_sending(self) -> None:
        c = self.client()
        for value in ("\ud800", {"x": "a\udfff"}, {"d": Decimal("1.5"), "s": "\ud83d"}):
            with self.subTest(value=value), self.assertRaises(UnicodeEncodeError):
                c.cache_set({"id": self.key(), "v": value})
        self.assertFalse(self.servers.exists("fm:exec:" + self.key()))
        # Text outside ASCII, surrogate pairs joined, goes as UTF-8.
        c.cache_set({"id": self.key(), "v": "h\u00e9 \U0001f600"})
        self.assertEqual(self.redis("GET", "fm:exec:" + self.key()),
                         '{"id":"%s","v":"h\u00e9 \U0001f600"}' % self.key())
        self.assertEqual(c.ping(), "up")


class CallFieldsTest(DaemonTestCase):

    def test_call_refuses_fields_named_op_or_id(self) -> None:
        c = self.client()
        pings = c.stats()["ops"]["ping"]["calls"]
        for fields in ({"id": 7}, {"op": "stats"}, {"op": "x", "id": 1}):
            with self.subTest(fields=fields), self.assertRaises(ValueError):
                c.call("ping", **fields)
        self.assertEqual(c.stats()["ops"]["ping"]["calls"], pings)
        self.assertEqual(c.ping(), "up")


class RefusedConnectionTest(DaemonTestCase):

    daemon_args = ("--max_clients", "1")

    def test_error_without_id_and_no_call_is_kept_for_fmclosed(self) -> None:
        # The harness's probe connection may not be reaped yet.
        first = wait_for(self._admitted, "a connection admitted")
        refused = self.client()
        with self.assertRaises(FmClosed) as cm:
            refused.next_event(timeout=10)
        self.assertIn("too_many_clients", str(cm.exception))
        self.assertEqual(first.ping(), "up")

    def _admitted(self) -> Client | None:
        c = self.client()
        try:
            c.ping()
        except (FmServerError, FmClosed):
            c.close()
            return None
        return c
