/* ops_suite.c -- every operation through a daemon on Sentinel or Cluster,
 * checked on the Redis that must hold its effect (ops_suite.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "fence.h"
#include "fm_wire.h"
#include "ops_suite.h"
#include "slot.h"
#include "wire.h"
#include "workload.h"

#define MAX_PORTS 16

void ops_rkey(char *out, size_t size, const char *prefix, const char *name)
{
    snprintf(out, size, "%s%s", prefix, name);
}

/* The distinct ports seen, as a set of at most MAX_PORTS. */
typedef struct port_set {
    int port[MAX_PORTS];
    int n;
} port_set;

static void port_seen(port_set *s, int port)
{
    for (int i = 0; i < s->n; i++)
        if (s->port[i] == port)
            return;
    ck_assert_int_lt(s->n, MAX_PORTS);
    s->port[s->n++] = port;
}

/* The keys spread over every master: one per master at least. */
static void spread_over_masters(const ops_redis *r, const port_set *s, const char *what)
{
    ck_assert_msg(s->n == r->masters, "%s: on %d masters, not %d", what, s->n, r->masters);
}

/* ---- executions ------------------------------------------------------------ */

void ops_batch_add(ops_batch *b, const char *fmt, ...)
{
    char id[64];
    va_list ap;

    ck_assert_uint_lt(b->n, sizeof(b->ids) / sizeof(b->ids[0]));
    va_start(ap, fmt);
    vsnprintf(id, sizeof(id), fmt, ap);
    va_end(ap);
    b->ids[b->n] = strdup(id);
    b->values[b->n] = wire_strf("{\"id\":\"%s\",\"n\":123456789012345678%02zu}", id, b->n);
    ck_assert_ptr_nonnull(b->ids[b->n]);
    b->n++;
}

void ops_batch_free(ops_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->ids[i]);
        free(b->values[i]);
    }
    b->n = 0;
}

void ops_batch_store(fm_client *c, const ops_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        fmt_ok(c, fm_cache_set(c, b->values[i], strlen(b->values[i]), OPS_LONG_TTL_MS),
               "cache.set");
}

void ops_batch_on_masters(const ops_redis *r, const ops_batch *b, int *ports)
{
    for (size_t i = 0; i < b->n; i++) {
        char rkey[96], *v;
        int port;

        ops_rkey(rkey, sizeof(rkey), "fm:exec:", b->ids[i]);
        port = r->port_of(r->arg, rkey);
        v = wl_get_on(port, rkey);
        ck_assert_msg(v != NULL && strcmp(v, b->values[i]) == 0,
                      "%s on its master (port %d): %s", rkey, port, v ? v : "(none)");
        free(v);
        if (ports != NULL)
            ports[i] = port;
    }
}

void ops_expect_batch(fm_client *c, const ops_batch *b, const char *const *absent,
                      size_t nabsent)
{
    const char *ids[80];
    fm_cache_entry *e = NULL;
    size_t count = 0, n = 0;

    ck_assert_uint_le(b->n + nabsent, sizeof(ids) / sizeof(ids[0]));
    for (size_t i = 0; i < b->n; i++)
        ids[n++] = b->ids[i];
    for (size_t i = 0; i < nabsent; i++)
        ids[n++] = absent[i];
    fmt_ok(c, fm_cache_get_many(c, ids, n, &e, &count), "cache.get_many");
    ck_assert_uint_eq(count, b->n);
    for (size_t i = 0; i < count; i++) {
        size_t k = 0;

        while (k < b->n && strcmp(b->ids[k], e[i].id) != 0)
            k++;
        ck_assert_msg(k < b->n, "get_many answered %s, which is not stored", e[i].id);
        ck_assert_str_eq(e[i].json, b->values[k]);
    }
    fm_cache_entries_free(e, count);
}

/* ---- locks --------------------------------------------------------------- */

/* One lock's whole course, each step checked on the master of its key;
 * that master's port goes to *port. */
static void lock_course(const ops_redis *r, fm_client *a, fm_client *b, fm_fence *f,
                        const char *key, int *port)
{
    char rkey[96], fkey[FM_FENCE_KEY_MAX + 1], fence[24], *v;
    fm_lock l, l2, again;
    fm_release_reason why;
    int locked = 0, released = 0, extended = 0;
    long long pttl;

    ops_rkey(rkey, sizeof(rkey), "fm:lock:", key);
    *port = r->port_of(r->arg, rkey);
    ck_assert_int_eq(wl_try_lock(a, key, &l, r->request_timeout_ms), 1);
    ck_assert_int_gt(l.fence, 0);
    v = wl_get_on(*port, rkey);
    ck_assert_msg(v != NULL && strcmp(v, l.token) == 0, "%s is not on its master", rkey);
    free(v);
    pttl = wl_pttl_on(*port, rkey);
    ck_assert_msg(pttl > 0 && pttl <= 30000, "PTTL %s: %lld", rkey, pttl);
    /* The fence counter is in the lock's slot, on the same master. */
    ck_assert_uint_gt(fm_fence_key(f, "fm:lock:", rkey, strlen(rkey), fkey), 0);
    snprintf(fence, sizeof(fence), "%lld", (long long)l.fence);
    v = wl_get_on(*port, fkey);
    ck_assert_msg(v != NULL && strcmp(v, fence) == 0, "fence counter of %s: %s, fence %s", rkey,
                  v ? v : "(none)", fence);
    free(v);

    ck_assert_int_eq(wl_try_lock(b, key, &l2, r->request_timeout_ms), 0);
    fmt_ok(b, fm_lock_is_locked(b, key, &locked), "is_locked");
    ck_assert_int_eq(locked, 1);
    fmt_ok(b, fm_lock_release(b, key, "not-the-token", &released, &why), "release by another");
    ck_assert(!released && why == FM_RELEASE_NOT_OWNER);
    ck_assert(wl_exists_on(*port, rkey));
    fmt_ok(a, fm_lock_extend(a, key, l.token, 90000, &extended), "extend");
    ck_assert_int_eq(extended, 1);
    pttl = wl_pttl_on(*port, rkey);
    ck_assert_msg(pttl > 30000 && pttl <= 90000, "PTTL %s after extend: %lld", rkey, pttl);

    fmt_ok(a, fm_lock_release(a, key, l.token, &released, NULL), "release");
    ck_assert_int_eq(released, 1);
    ck_assert(!wl_exists_on(*port, rkey));
    fmt_ok(a, fm_lock_is_locked(a, key, &locked), "is_locked after release");
    ck_assert_int_eq(locked, 0);
    fmt_ok(a, fm_lock_release(a, key, l.token, &released, &why), "release again");
    ck_assert(!released && why == FM_RELEASE_NOT_HELD);
    fmt_ok(a, fm_lock_extend(a, key, l.token, 1000, &extended), "extend after release");
    ck_assert_int_eq(extended, 0);
    ck_assert(!wl_exists_on(*port, rkey));

    /* Taken again: a higher fence, counted on the same master. */
    ck_assert_int_eq(wl_try_lock(b, key, &again, r->request_timeout_ms), 1);
    ck_assert_int_gt(again.fence, l.fence);
    snprintf(fence, sizeof(fence), "%lld", (long long)again.fence);
    v = wl_get_on(*port, fkey);
    ck_assert_msg(v != NULL && strcmp(v, fence) == 0, "fence counter of %s: %s, fence %s", rkey,
                  v ? v : "(none)", fence);
    free(v);
    fmt_ok(b, fm_lock_release(b, key, again.token, &released, NULL), "release the second");
    ck_assert_int_eq(released, 1);
    ck_assert(!wl_exists_on(*port, rkey));
}

void ops_check_locks(const ops_redis *r, fm_client *a, fm_client *b)
{
    port_set seen = {{0}, 0};
    fm_fence *f = fm_fence_create();

    ck_assert_ptr_nonnull(f);
    for (int k = 0; k < OPS_LOCK_KEYS; k++) {
        char key[32];
        int port;

        snprintf(key, sizeof(key), "ops:lock:%d", k);
        lock_course(r, a, b, f, key, &port);
        port_seen(&seen, port);
    }
    spread_over_masters(r, &seen, "locks");
    fm_fence_free(f);
}

/* ---- the cache ------------------------------------------------------------ */

void ops_check_cache(const ops_redis *r, fm_client *a)
{
    static const char *const absent[] = {"ops:none:1", "ops:none:2", "ops:none:3"};
    static char slot_used[FM_SLOTS];
    const char *ids[70];
    int ports[64], slots_seen = 0;
    port_set seen = {{0}, 0};
    ops_batch b = {0}, none = {0};
    int64_t invalidated = -1;
    char *json = NULL, rkey[96];
    size_t len = 0;

    memset(slot_used, 0, sizeof(slot_used));
    for (int k = 0; k < 60; k++)
        ops_batch_add(&b, "ops:exec:%d", k);
    ops_batch_store(a, &b);
    ops_batch_on_masters(r, &b, ports);
    for (size_t i = 0; i < b.n; i++) {
        unsigned slot;

        ops_rkey(rkey, sizeof(rkey), "fm:exec:", b.ids[i]);
        slot = fm_slot(rkey, strlen(rkey));
        slots_seen += !slot_used[slot];
        slot_used[slot] = 1;
        port_seen(&seen, ports[i]);
        ck_assert_int_gt(wl_pttl_on(ports[i], rkey), OPS_LONG_TTL_MS - 60000);
    }
    /* A batch of them is cut into many slots' commands in a cluster. */
    ck_assert_int_ge(slots_seen, 50);
    spread_over_masters(r, &seen, "executions");

    for (size_t i = 0; i < b.n; i++) {
        fmt_ok(a, fm_cache_get(a, b.ids[i], &json, &len), "cache.get");
        ck_assert_msg(json != NULL && strcmp(json, b.values[i]) == 0, "cache.get %s: %s",
                      b.ids[i], json ? json : "(miss)");
        free(json);
    }
    fmt_ok(a, fm_cache_get(a, absent[0], &json, &len), "cache.get of an id never stored");
    ck_assert_ptr_null(json);
    ops_expect_batch(a, &b, absent, 3);

    /* One alone, then the rest and three that never existed in one batch. */
    fmt_ok(a, fm_cache_invalidate(a, b.ids[0]), "cache.invalidate");
    ops_rkey(rkey, sizeof(rkey), "fm:exec:", b.ids[0]);
    ck_assert(!wl_exists_on(ports[0], rkey));
    fmt_ok(a, fm_cache_get(a, b.ids[0], &json, &len), "cache.get after invalidate");
    ck_assert_ptr_null(json);
    for (size_t i = 1; i < b.n; i++)
        ids[i - 1] = b.ids[i];
    for (size_t i = 0; i < 3; i++)
        ids[b.n - 1 + i] = absent[i];
    fmt_ok(a, fm_cache_invalidate_many(a, ids, b.n + 2, &invalidated), "cache.invalidate_many");
    ck_assert_int_eq(invalidated, (int64_t)b.n - 1);
    for (size_t i = 0; i < b.n; i++) {
        ops_rkey(rkey, sizeof(rkey), "fm:exec:", b.ids[i]);
        ck_assert_msg(!wl_exists_on(ports[i], rkey), "%s survived", rkey);
    }
    ops_expect_batch(a, &none, ids, b.n + 2);
    ops_batch_free(&b);
    fmt_ok(a, fm_cache_invalidate_many(a, NULL, 0, &invalidated), "empty invalidate_many");
    ck_assert_int_eq(invalidated, 0);
}

/* ---- wakes ---------------------------------------------------------------- */

void ops_check_wakes(const ops_redis *r, fm_client *a, fm_client *sub)
{
    static const char *const many[] = {"ops-w2", "ops-w3", "ops-w4"};
    int64_t receivers = -1, signaled = -1;

    fmt_ok(sub, fm_wake_subscribe(sub, "ops:wake", NULL, NULL, 0), "subscribe");
    /* Answered once Redis confirmed the SUBSCRIBE. */
    ck_assert_int_ge(r->subscribers(r->arg, "ops:wake"), 1);
    fmt_ok(a, fm_wake_signal(a, "ops-w1", "ops:wake", &receivers), "signal");
    ck_assert_int_ge(receivers, r->min_receivers);
    wl_expect_next_wake(sub, "ops-w1", WIRE_REPLY_MS);
    fmt_ok(a, fm_wake_signal_many(a, many, 3, "ops:wake", &signaled), "signal_many");
    ck_assert_int_eq(signaled, 3);
    for (int i = 0; i < 3; i++)
        wl_expect_next_wake(sub, many[i], WIRE_REPLY_MS);

    /* After unsubscribe, a wake on the channel is not delivered: one on
     * another channel, published after it through the same daemon, is
     * the next to arrive. */
    fmt_ok(sub, fm_wake_unsubscribe(sub, "ops:wake", NULL, 0), "unsubscribe");
    fmt_ok(sub, fm_wake_subscribe(sub, "ops:wake:other", NULL, NULL, 0), "subscribe another");
    fmt_ok(a, fm_wake_signal(a, "ops-w5", "ops:wake", NULL), "signal after unsubscribe");
    fmt_ok(a, fm_wake_signal(a, "ops-w6", "ops:wake:other", NULL), "signal on another");
    wl_expect_next_wake(sub, "ops-w6", WIRE_REPLY_MS);
    fmt_ok(sub, fm_wake_unsubscribe(sub, "ops:wake:other", NULL, 0), "unsubscribe another");
}

/* ---- hello, ping, stats ---------------------------------------------------- */

static long long stat_int(const cJSON *root, const char *path0, const char *path1,
                          const char *path2)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, path0);

    if (path1 != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, path1);
    if (path2 != NULL)
        v = cJSON_GetObjectItemCaseSensitive(v, path2);
    ck_assert_msg(cJSON_IsNumber(v) || cJSON_IsBool(v), "stats has no %s.%s.%s", path0,
                  path1 ? path1 : "", path2 ? path2 : "");
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : cJSON_IsTrue(v);
}

/* What the suite did, counted by the daemon. */
static void check_stats(fm_client *a)
{
    static const char *const ops[] = {"lock.release", "lock.extend", "lock.is_locked",
                                      "cache.set", "cache.get", "cache.invalidate",
                                      "cache.invalidate_many", "wake.subscribe",
                                      "wake.unsubscribe", "wake.signal"};
    char *text = NULL;
    cJSON *root;

    fmt_ok(a, fm_stats(a, &text, NULL), "stats");
    root = cJSON_Parse(text);
    ck_assert_msg(root != NULL, "stats: %s", text);
    ck_assert_int_ge(stat_int(root, "clients", NULL, NULL), 3);
    ck_assert_int_eq(stat_int(root, "redis", "connected", NULL), 1);
    ck_assert_int_eq(stat_int(root, "redis", "subscriber_connected", NULL), 1);
    ck_assert_int_ge(stat_int(root, "ops", "lock.acquire", "calls"), OPS_LOCK_KEYS * 3);
    ck_assert_int_eq(stat_int(root, "ops", "lock.acquire", "errors"), 0);
    ck_assert_int_ge(stat_int(root, "ops", "cache.get_many", "calls"), 2);
    ck_assert_int_eq(stat_int(root, "ops", "cache.get_many", "errors"), 0);
    ck_assert_int_ge(stat_int(root, "ops", "wake.signal_many", "calls"), 1);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        ck_assert_int_ge(stat_int(root, "ops", ops[i], "calls"), 1);
        ck_assert_int_eq(stat_int(root, "ops", ops[i], "errors"), 0);
    }
    cJSON_Delete(root);
    free(text);
}

void ops_suite_run(const fmt_daemon *d, const ops_redis *r)
{
    fm_client *a = fmt_client(d), *b = fmt_client(d), *sub = fmt_client(d);
    fm_hello_info info;
    int up = -1;

    fmt_ok(a, fm_hello(a, "ops-suite", &info), "hello");
    ck_assert_int_eq(info.protocol, FM_PROTOCOL_VERSION);
    ck_assert_msg(strncmp(info.server, "fmredisd ", 9) == 0, "hello: server %s", info.server);
    ck_assert(wire_ping_says(d->sock, "\"redis\":\"up\""));
    fmt_ok(a, fm_ping(a, 1, &up), "ping with a round trip");
    ck_assert_int_eq(up, 1);

    ops_check_locks(r, a, b);
    ops_check_cache(r, a);
    ops_check_wakes(r, a, sub);
    check_stats(a);

    fm_client_free(sub);
    fm_client_free(b);
    fm_client_free(a);
}
