"""WakeSignaler against a real fmredisd and Redis: what is published,
what subscribers receive (groups included), and the Redis link events."""

from __future__ import annotations

import json
import time

from fmredis import Client, LinkEvent, Wake, WakeSignaler

from .harness import DaemonTestCase, RedisSubscriber, wait_for


class WakeTest(DaemonTestCase):

    def signaler(self, channel: str | None = None, client: Client | None = None) -> WakeSignaler:
        return WakeSignaler(client or self.client(), channel=channel)

    def numsub(self, channel: str) -> int:
        return int(self.redis("PUBSUB", "NUMSUB", channel).split("\n")[1])

    def test_signal_publishes_the_flowmonkey_payload(self) -> None:
        channel = self.key()
        sub = RedisSubscriber(self.servers.redis_sock, channel)
        self.addCleanup(sub.close)
        before = int(time.time() * 1000)
        self.assertEqual(self.signaler(channel).signal("exec-1"), 1)
        payload = json.loads(sub.message())
        self.assertEqual(payload["executionId"], "exec-1")
        self.assertTrue(before - 1000 <= payload["timestamp"] <= time.time() * 1000 + 1000)

    def test_signal_on_the_default_channel(self) -> None:
        sub = RedisSubscriber(self.servers.redis_sock, "fm:wake")
        self.addCleanup(sub.close)
        # Another test's subscription to fm:wake may still be leaving Redis.
        self.assertGreaterEqual(self.signaler().signal("exec-default"), 1)
        self.assertEqual(json.loads(sub.message())["executionId"], "exec-default")

    def test_signal_many_publishes_each_id_in_order(self) -> None:
        channel = self.key()
        sub = RedisSubscriber(self.servers.redis_sock, channel)
        self.addCleanup(sub.close)
        self.assertEqual(self.signaler(channel).signal_many(["a", "b", "a"]), 3)
        self.assertEqual([json.loads(sub.message())["executionId"] for _ in range(3)],
                         ["a", "b", "a"])
        self.assertEqual(self.signaler(channel).signal_many([]), 0)

    def test_subscriber_receives_wakes(self) -> None:
        channel = self.key()
        w = self.signaler(channel)
        self.assertEqual(w.subscribe(), channel)
        self.assertEqual(self.numsub(channel), 1)     # the daemon, once
        self.assertEqual(self.signaler(channel).signal("exec-1"), 1)
        ev = w.receive(timeout=10)
        assert isinstance(ev, Wake)
        self.assertEqual((ev.execution_id, ev.channel), ("exec-1", channel))
        self.assertIsInstance(ev.timestamp, int)

    def test_default_channel_subscription(self) -> None:
        w = self.signaler()
        self.assertEqual(w.subscribe(), "fm:wake")
        self.signaler().signal("exec-on-default")
        ev = w.receive(timeout=10)
        assert isinstance(ev, Wake)
        self.assertEqual((ev.execution_id, ev.channel), ("exec-on-default", "fm:wake"))

    def test_wakes_from_other_publishers(self) -> None:
        channel = self.key()
        w = self.signaler(channel)
        w.subscribe()
        self.redis("PUBLISH", channel, '{"executionId":"node-1","timestamp":1764100000000}')
        self.redis("PUBLISH", channel, "bare-id")
        self.assertEqual(list(w.wakes(timeout=1)),
                         [Wake("node-1", channel, 1764100000000), Wake("bare-id", channel, None)])

    def test_wakes_ends_after_timeout_without_a_wake(self) -> None:
        w = self.signaler(self.key())
        w.subscribe()
        t0 = time.monotonic()
        self.assertEqual(list(w.wakes(timeout=0.3)), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)

    def test_unsubscribe_stops_the_wakes(self) -> None:
        channel = self.key()
        w = self.signaler(channel)
        w.subscribe()
        w.unsubscribe()
        wait_for(lambda: self.numsub(channel) == 0, "the daemon unsubscribed in Redis")
        self.assertEqual(self.signaler(channel).signal("exec-1"), 0)
        self.assertIsNone(w.receive(timeout=0.3))

    def test_receive_before_subscribe_is_an_error(self) -> None:
        with self.assertRaises(RuntimeError):
            self.signaler(self.key()).receive(0)

    def test_group_members_share_the_wakes_others_get_all(self) -> None:
        channel = self.key()
        a, b, solo = self.signaler(channel), self.signaler(channel), self.signaler(channel)
        a.subscribe(group="g")
        b.subscribe(group="g")
        solo.subscribe()
        ids = ["exec-%d" % i for i in range(6)]
        self.assertEqual(self.signaler(channel).signal_many(ids), 6)
        self.assertEqual([getattr(solo.receive(10), "execution_id", None) for _ in ids], ids)
        got: dict[str, list[str]] = {"a": [], "b": []}

        def take() -> bool:
            for name, w in (("a", a), ("b", b)):
                ev = w.receive(0)
                if isinstance(ev, Wake):
                    got[name].append(ev.execution_id)
            return len(got["a"]) + len(got["b"]) == len(ids)
        wait_for(take, "the group's six wakes")
        self.assertEqual(sorted(got["a"] + got["b"]), ids)
        self.assertEqual((len(got["a"]), len(got["b"])), (3, 3))     # round-robin
        self.assertIsNone(a.receive(0.2))
        self.assertIsNone(b.receive(0.2))

    def test_subscribing_again_changes_the_group(self) -> None:
        channel = self.key()
        a, b = self.signaler(channel), self.signaler(channel)
        a.subscribe(group="g")
        b.subscribe(group="g")
        b.subscribe()                      # b leaves the group: every wake
        self.signaler(channel).signal_many(["x", "y"])
        self.assertEqual([getattr(a.receive(10), "execution_id", None) for _ in "xy"],
                         ["x", "y"])
        self.assertEqual([getattr(b.receive(10), "execution_id", None) for _ in "xy"],
                         ["x", "y"])

    def test_signalers_sharing_a_client_take_their_own_wakes(self) -> None:
        c = self.client()
        one, two = self.signaler(self.key("1"), c), self.signaler(self.key("2"), c)
        one.subscribe()
        two.subscribe()
        self.signaler(self.key("1")).signal("for-one")
        self.signaler(self.key("2")).signal("for-two")
        self.assertEqual(getattr(two.receive(10), "execution_id", None), "for-two")
        self.assertEqual(getattr(one.receive(10), "execution_id", None), "for-one")


class LinkEventTest(DaemonTestCase):
    # Quick reconnects, so "up" follows Redis's restart within a second.
    daemon_args = ("--reconnect_max_ms", "200")

    def test_redis_down_and_up_reach_subscribers(self) -> None:
        channel = self.key()
        w = WakeSignaler(self.client(), channel=channel)
        w.subscribe()
        self.servers.kill_redis()
        self.assertEqual(w.receive(timeout=10), LinkEvent("down"))
        self.servers.start_redis()
        ev = w.receive(timeout=10)
        self.assertEqual(ev, LinkEvent("up"))
        assert isinstance(ev, LinkEvent)
        self.assertTrue(ev.up)
        # Subscribed again: wakes flow.
        self.assertEqual(WakeSignaler(self.client(), channel=channel).signal("after"), 1)
        ev = w.receive(timeout=10)
        assert isinstance(ev, Wake)
        self.assertEqual(ev.execution_id, "after")
