"""ExecutionCache against a real fmredisd and Redis: every method, with
the keys, values and TTLs it leaves in Redis."""

from __future__ import annotations

from fmredis import ExecutionCache, FmServerError

from .harness import DaemonTestCase

PREFIX = "fm:exec:"


class ExecutionCacheTest(DaemonTestCase):

    def cache(self, **kw: int) -> ExecutionCache:
        return ExecutionCache(self.client(), **kw)

    def test_set_stores_the_json_with_the_ttl(self) -> None:
        eid = self.key()
        self.cache().set({"id": eid, "status": "running", "step": 3}, ttl=20000)
        self.assertEqual(self.redis("GET", PREFIX + eid),
                         '{"id":"%s","status":"running","step":3}' % eid)
        self.assertTrue(15000 < self.servers.pttl(PREFIX + eid) <= 20000)

    def test_set_without_ttl_takes_default_ttl_then_the_daemons(self) -> None:
        eid, eid2 = self.key("1"), self.key("2")
        self.cache(default_ttl=7000).set({"id": eid})
        self.assertTrue(5000 < self.servers.pttl(PREFIX + eid) <= 7000)
        self.cache().set({"id": eid2})
        self.assertTrue(55000 < self.servers.pttl(PREFIX + eid2) <= 60000)

    def test_set_replaces(self) -> None:
        eid = self.key()
        cache = self.cache()
        cache.set({"id": eid, "v": 1})
        cache.set({"id": eid, "v": 2})
        self.assertEqual(cache.get(eid), {"id": eid, "v": 2})

    def test_get_reads_what_anyone_stored(self) -> None:
        eid = self.key()
        cache = self.cache()
        self.assertIsNone(cache.get(eid))
        self.redis("SET", PREFIX + eid, '{"id":"%s","from":"node","tags":["a","caf\u00e9"]}' % eid)
        want = {"id": eid, "from": "node", "tags": ["a", "caf\u00e9"]}
        self.assertEqual(cache.get(eid), want)
        self.assertEqual(cache.get(eid, fresh=True), want)

    def test_a_value_that_is_not_an_object_is_a_miss(self) -> None:
        eid = self.key()
        self.redis("SET", PREFIX + eid, "[1,2]")
        self.assertIsNone(self.cache().get(eid))

    def test_invalidate_deletes_the_key(self) -> None:
        eid = self.key()
        cache = self.cache()
        cache.set({"id": eid})
        cache.invalidate(eid)
        self.assertFalse(self.servers.exists(PREFIX + eid))
        cache.invalidate(eid)           # nothing there: still fine
        self.assertIsNone(cache.get(eid))

    def test_invalidate_many_counts_what_existed(self) -> None:
        ids = [self.key(str(i)) for i in range(3)]
        cache = self.cache()
        for eid in ids[:2]:
            cache.set({"id": eid})
        self.assertEqual(cache.invalidate_many(ids), 2)
        self.assertEqual(self.redis("EXISTS", *(PREFIX + i for i in ids)), "0")
        self.assertEqual(cache.invalidate_many([]), 0)

    def test_get_many_gives_the_hits(self) -> None:
        ids = [self.key(str(i)) for i in range(3)]
        cache = self.cache()
        cache.set({"id": ids[0], "n": 0})
        cache.set({"id": ids[2], "n": 2})
        want = {ids[0]: {"id": ids[0], "n": 0}, ids[2]: {"id": ids[2], "n": 2}}
        self.assertEqual(cache.get_many(ids), want)
        self.assertEqual(cache.get_many(iter(ids), fresh=True), want)
        self.assertEqual(cache.get_many([]), {})

    def test_an_execution_without_id_is_bad_request(self) -> None:
        cache = self.cache()
        cases: list[dict[str, object]] = [{"no": "id"}, {"id": 7}, {"id": ""}]
        for bad in cases:
            with self.subTest(execution=bad), self.assertRaises(FmServerError) as cm:
                cache.set(bad)
            self.assertEqual(cm.exception.code, "bad_request")
