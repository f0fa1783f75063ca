/* test_near.c -- the near cache: reads served from the daemon's memory,
 * kept current by Redis's invalidations (CLIENT TRACKING), emptied when
 * they may have been lost, and the lock hand-off across two daemons.
 *
 * Redis-side effects are read from Redis itself: INFO commandstats shows
 * whether a read reached it; CLIENT LIST which connection tracks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "fm_tests.h"
#include "harness.h"
#include "near.h"
#include "wire.h"

#define WAIT_MS 5000

static fmt_redis redis_srv;
static fmt_daemon daemon_a, daemon_b;

static void servers_up(void)
{
    wire_pair_start(&redis_srv, &daemon_a, NULL, NULL);
}

static void two_daemons_up(void)
{
    servers_up();
    wire_daemon_up(&daemon_b, redis_srv.url, NULL);
}

static void small_cache_up(void)
{
    static const char *const args[] = {"--cache_near_bytes", "16384", NULL};

    wire_pair_start(&redis_srv, &daemon_a, NULL, args);
}

static void small_output_up(void)
{
    static const char *const args[] = {"--max_output_bytes", "65536",
                                       "--request_timeout_ms", "1000", NULL};

    wire_pair_start(&redis_srv, &daemon_a, NULL, args);
}

/* Room for a burst of hits larger than the pause mark, smaller than the
 * whole burst's replies. */
static void big_output_up(void)
{
    static const char *const args[] = {"--max_output_bytes", "16777216", NULL};

    wire_pair_start(&redis_srv, &daemon_a, NULL, args);
}

static void no_cache_up(void)
{
    static const char *const args[] = {"--cache_near_bytes", "0", NULL};

    wire_pair_start(&redis_srv, &daemon_a, NULL, args);
}

static void servers_down(void)
{
    fmt_daemon_stop(&daemon_b);
    wire_pair_stop(&redis_srv, &daemon_a);
}

/* ---- the store alone (near.c) ------------------------------------------------ */

static int held(fm_near *n, const char *key, const char *want)
{
    const char *v;
    size_t len;

    if (!fm_near_get(n, key, strlen(key), &v, &len))
        return want == NULL;
    return want != NULL && len == strlen(want) && memcmp(v, want, len) == 0;
}

static fm_near_stats near_stats(const fm_near *n)
{
    fm_near_stats st;

    fm_near_stats_get(n, &st);
    return st;
}

/* A read whose invalidation overtook it keeps nothing; one after keeps. */
START_TEST(test_store_a_read_racing_an_invalidation_keeps_nothing)
{
    fm_near *n = fm_near_create(1 << 20);
    fm_near_fill f;

    ck_assert_int_eq(fm_near_fill_begin(n, "k", 1, &f), 0);
    fm_near_invalidate(n, "k", 1);
    fm_near_fill_end(n, &f, "{\"v\":1}", 7, -1);
    ck_assert(held(n, "k", NULL));
    ck_assert_uint_eq(near_stats(n).fills_dropped, 1);
    ck_assert_int_eq(fm_near_fill_begin(n, "k", 1, &f), 0);
    fm_near_fill_end(n, &f, "{\"v\":2}", 7, -1);
    ck_assert(held(n, "k", "{\"v\":2}"));
    fm_near_invalidate(n, "k", 1);
    ck_assert(held(n, "k", NULL));
    ck_assert_uint_eq(near_stats(n).invalidations, 1);
    fm_near_free(n);
}
END_TEST

/* The link may send a read ahead of the daemon's own write submitted
 * before it, and the write brings no invalidation (NOLOOP): a read begun
 * while one is in flight keeps nothing, even if it ends after it. */
START_TEST(test_store_a_read_beside_an_own_write_keeps_nothing)
{
    fm_near *n = fm_near_create(1 << 20);
    fm_near_fill w, r, r2;

    ck_assert_int_eq(fm_near_write_begin(n, "k", 1, &w), 0);
    ck_assert_int_eq(fm_near_fill_begin(n, "k", 1, &r), 0);
    fm_near_fill_end(n, &w, NULL, 0, 0);     /* a DEL */
    fm_near_fill_end(n, &r, "{\"old\":1}", 9, -1);
    ck_assert(held(n, "k", NULL));
    /* Begun after the write ended: kept. */
    ck_assert_int_eq(fm_near_fill_begin(n, "k", 1, &r2), 0);
    fm_near_fill_end(n, &r2, "{\"new\":1}", 9, -1);
    ck_assert(held(n, "k", "{\"new\":1}"));
    /* A write drops the copy at once. */
    ck_assert_int_eq(fm_near_write_begin(n, "k", 1, &w), 0);
    ck_assert(held(n, "k", NULL));
    fm_near_fill_end(n, &w, "{\"w\":1}", 7, 60000);
    ck_assert(held(n, "k", "{\"w\":1}"));
    fm_near_free(n);
}
END_TEST

/* Two of the daemon's writes of one key in flight: Redis may run them in
 * either order, so neither value is kept. */
START_TEST(test_store_two_own_writes_in_flight_keep_neither)
{
    fm_near *n = fm_near_create(1 << 20);
    fm_near_fill w1, w2;

    ck_assert_int_eq(fm_near_write_begin(n, "k", 1, &w1), 0);
    ck_assert_int_eq(fm_near_write_begin(n, "k", 1, &w2), 0);
    fm_near_fill_end(n, &w2, "{\"v\":2}", 7, 60000);
    ck_assert(held(n, "k", NULL));
    fm_near_fill_end(n, &w1, "{\"v\":1}", 7, 60000);
    ck_assert(held(n, "k", NULL));
    ck_assert_uint_eq(near_stats(n).fills_dropped, 2);
    fm_near_free(n);
}
END_TEST

START_TEST(test_store_a_flush_drops_fills_in_flight)
{
    fm_near *n = fm_near_create(1 << 20);
    fm_near_fill f, g;

    ck_assert_int_eq(fm_near_fill_begin(n, "a", 1, &g), 0);
    fm_near_fill_end(n, &g, "{}", 2, -1);
    ck_assert_int_eq(fm_near_fill_begin(n, "k", 1, &f), 0);
    fm_near_flush(n);
    ck_assert(held(n, "a", NULL));
    fm_near_fill_end(n, &f, "{}", 2, -1);
    ck_assert(held(n, "k", NULL));
    ck_assert_uint_eq(near_stats(n).entries, 0);
    ck_assert_uint_eq(near_stats(n).bytes, 0);
    fm_near_free(n);
}
END_TEST

static void put(fm_near *n, const char *key, const char *val)
{
    fm_near_fill f;

    ck_assert_int_eq(fm_near_fill_begin(n, key, strlen(key), &f), 0);
    fm_near_fill_end(n, &f, val, strlen(val), -1);
}

/* The least recently used goes first, and the bytes never pass the
 * budget; a value bigger than all of it is not kept. */
START_TEST(test_store_evicts_the_least_recently_used_within_its_bytes)
{
    char big[600];
    fm_near *n;
    size_t one;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    n = fm_near_create(1 << 20);
    put(n, "a", big);
    one = near_stats(n).bytes;
    fm_near_free(n);
    n = fm_near_create(3 * one);
    put(n, "a", big);
    put(n, "b", big);
    put(n, "c", big);
    ck_assert(held(n, "a", big));   /* a is now the most recent */
    put(n, "d", big);
    ck_assert(held(n, "b", NULL));
    ck_assert(held(n, "a", big) && held(n, "c", big) && held(n, "d", big));
    ck_assert_uint_le(near_stats(n).bytes, 3 * one);
    ck_assert_uint_eq(near_stats(n).evictions, 1);
    fm_near_set_max(n, one);
    ck_assert_uint_eq(near_stats(n).entries, 1);
    ck_assert(held(n, "d", big));
    fm_near_set_max(n, one - 1);
    put(n, "e", big);
    ck_assert_uint_eq(near_stats(n).entries, 0);
    fm_near_free(n);
}
END_TEST

typedef struct expiry {
    fm_near *n;
} expiry;

static int gone(void *arg)
{
    return held(((expiry *)arg)->n, "t", NULL);
}

START_TEST(test_store_a_copy_expires_with_its_ttl)
{
    fm_near *n = fm_near_create(1 << 20);
    expiry e = {n};
    fm_near_fill f;
    int64_t t0 = fmt_now_ms();

    ck_assert_int_eq(fm_near_fill_begin(n, "t", 1, &f), 0);
    fm_near_fill_end(n, &f, "{}", 2, 50);
    ck_assert(held(n, "t", "{}") || fmt_now_ms() - t0 >= 50);
    ck_assert(fmt_wait_until(gone, &e, 2000));
    /* Kept a millisecond less than the TTL (Redis reports it rounded). */
    ck_assert_int_ge(fmt_now_ms() - t0, 49);
    ck_assert_uint_eq(near_stats(n).expired, 1);
    /* A TTL of 0 (about to expire) keeps nothing. */
    ck_assert_int_eq(fm_near_fill_begin(n, "z", 1, &f), 0);
    fm_near_fill_end(n, &f, "{}", 2, 0);
    ck_assert(held(n, "z", NULL));
    fm_near_free(n);
}
END_TEST

/* ---- helpers --------------------------------------------------------------- */

/* A stats member as a number, bools as 0/1. */
static long long stat_of(const char *sock, const char *name)
{
    int fd = wire_connect(sock);
    cJSON *r = wire_call(fd, "{\"op\":\"stats\"}");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, name);
    long long n;

    ck_assert_msg(v != NULL, "stats has no %s", name);
    n = cJSON_IsBool(v) ? cJSON_IsTrue(v) : (long long)v->valuedouble;
    cJSON_Delete(r);
    close(fd);
    return n;
}

static int tracking(void *sock)
{
    return stat_of(sock, "near_tracking") == 1;
}

static void await_tracking(const fmt_daemon *d)
{
    ck_assert_msg(fmt_wait_until(tracking, (void *)d->sock, WAIT_MS),
                  "the near cache never armed (near_tracking stayed false)");
}

/* The execution cache.get answers through fd, malloc'd text, NULL: a miss. */
static char *get_text(int fd, const char *id, int fresh)
{
    char *req = wire_strf("{\"op\":\"cache.get\",\"id\":\"g\",\"execution_id\":\"%s\"%s}", id,
                          fresh ? ",\"fresh\":true" : "");
    cJSON *r = wire_call(fd, req);
    const cJSON *e;
    char *text = NULL;

    wire_assert_ok(r, "\"g\"");
    e = cJSON_GetObjectItemCaseSensitive(r, "execution");
    ck_assert_ptr_nonnull(e);
    if (!cJSON_IsNull(e))
        text = cJSON_PrintUnformatted(e);
    cJSON_Delete(r);
    free(req);
    return text;
}

typedef struct want_value {
    int fd;
    const char *id;
    const char *want;       /* NULL: a miss */
} want_value;

static int answers(void *arg)
{
    want_value *w = arg;
    char *got = get_text(w->fd, w->id, 0);
    int same = (got == NULL && w->want == NULL) ||
               (got != NULL && w->want != NULL && strcmp(got, w->want) == 0);

    free(got);
    return same;
}

/* Waits until cache.get of id answers want (bounded: an invalidation's
 * travel time). */
static void await_answer(int fd, const char *id, const char *want)
{
    want_value w = {fd, id, want};

    ck_assert_msg(fmt_wait_until(answers, &w, WAIT_MS), "cache.get %s never answered %s", id,
                  want != NULL ? want : "null");
}

typedef struct stat_above {
    const char *sock, *name;
    long long floor;
} stat_above;

static int is_above(void *arg)
{
    stat_above *s = arg;

    return stat_of(s->sock, s->name) > s->floor;
}

static void await_above(const char *sock, const char *name, long long floor)
{
    stat_above s = {sock, name, floor};

    ck_assert_msg(fmt_wait_until(is_above, &s, WAIT_MS), "%s never went above %lld", name,
                  floor);
}

/* ---- served from memory ---------------------------------------------------- */

START_TEST(test_a_stored_execution_is_read_without_redis)
{
    static const char exec[] = "{\"id\":\"n-hit\",\"n\":12345678901234567890,\"s\":\"\\u00e9\"}";
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    long long gets, evals, hits;

    await_tracking(&daemon_a);
    wire_cache_set(fd, exec);
    hits = stat_of(daemon_a.sock, "near_hits");
    gets = wire_redis_calls(rc, "get");
    evals = wire_redis_calls(rc, "evalsha") + wire_redis_calls(rc, "mget");
    for (int i = 0; i < 5; i++)
        wire_expect_cached(fd, "n-hit", exec);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_hits"), hits + 5);
    ck_assert_int_eq(wire_redis_calls(rc, "get"), gets);
    ck_assert_int_eq(wire_redis_calls(rc, "evalsha") + wire_redis_calls(rc, "mget"), evals);
    /* What Redis holds is what was written, with its TTL. */
    wire_assert_redis_value(rc, "fm:exec:n-hit", exec);
    ck_assert_int_gt(wire_redis_int(rc, "PTTL fm:exec:n-hit"), 3500000);
    close(fd);
    redisFree(rc);
}
END_TEST

START_TEST(test_get_many_serves_hits_and_reads_only_the_misses)
{
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    cJSON *r;
    const cJSON *ex;
    long long mgets;

    await_tracking(&daemon_a);
    wire_cache_set(fd, "{\"id\":\"m-a\",\"v\":1}");
    freeReplyObject(wire_redis_ok(rc, "SET fm:exec:m-b {\"id\":\"m-b\",\"v\":2} PX 60000"));
    mgets = wire_redis_calls(rc, "mget");
    r = wire_call(fd, "{\"op\":\"cache.get_many\",\"id\":1,\"execution_ids\":[\"m-a\",\"m-b\",\"m-c\"]}");
    wire_assert_ok(r, "1");
    ex = cJSON_GetObjectItemCaseSensitive(r, "executions");
    ck_assert_int_eq(cJSON_GetArraySize(ex), 2);
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(ex, "m-a"));
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(ex, "m-b"));
    cJSON_Delete(r);
    /* One MGET, of the two keys the daemon did not hold. */
    ck_assert_int_eq(wire_redis_calls(rc, "mget"), mgets + 1);
    /* Now all of them are held (m-c stays a miss). */
    r = wire_call(fd, "{\"op\":\"cache.get_many\",\"id\":2,\"execution_ids\":[\"m-a\",\"m-b\"]}");
    wire_assert_ok(r, "2");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "executions")), 2);
    cJSON_Delete(r);
    ck_assert_int_eq(wire_redis_calls(rc, "mget"), mgets + 1);
    close(fd);
    redisFree(rc);
}
END_TEST

START_TEST(test_fresh_reads_go_to_redis)
{
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    long long gets, mgets, hits;
    char *got;
    cJSON *r;

    await_tracking(&daemon_a);
    wire_cache_set(fd, "{\"id\":\"f-1\"}");
    hits = stat_of(daemon_a.sock, "near_hits");
    gets = wire_redis_calls(rc, "get");
    mgets = wire_redis_calls(rc, "mget");
    got = get_text(fd, "f-1", 1);
    ck_assert_str_eq(got, "{\"id\":\"f-1\"}");
    free(got);
    r = wire_call(fd, "{\"op\":\"cache.get_many\",\"id\":3,\"fresh\":true,\"execution_ids\":[\"f-1\"]}");
    wire_assert_ok(r, "3");
    cJSON_Delete(r);
    ck_assert_int_eq(wire_redis_calls(rc, "get"), gets + 1);
    ck_assert_int_eq(wire_redis_calls(rc, "mget"), mgets + 1);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_hits"), hits);
    wire_expect_error(fd, "{\"op\":\"cache.get\",\"id\":4,\"execution_id\":\"f-1\",\"fresh\":1}",
                      "bad_request", "4");
    close(fd);
    redisFree(rc);
}
END_TEST

/* libfmredis: FM_CACHE_FRESH sends fresh: true, for one id and for many. */
START_TEST(test_the_c_library_asks_for_fresh_reads)
{
    static const char *const ids[] = {"fc-1", "fc-2"};
    redisContext *rc = wire_redis_open(&redis_srv);
    fm_client *c = fmt_client(&daemon_a);
    fm_cache_entry *e;
    long long gets, mgets, hits;
    size_t n, len;
    char *json;

    await_tracking(&daemon_a);
    fmt_ok(c, fm_cache_set(c, "{\"id\":\"fc-1\"}", 13, 0), "cache.set");
    hits = stat_of(daemon_a.sock, "near_hits");
    gets = wire_redis_calls(rc, "get");
    mgets = wire_redis_calls(rc, "mget");
    fmt_ok(c, fm_cache_get_flags(c, "fc-1", FM_CACHE_FRESH, &json, &len), "cache.get fresh");
    ck_assert_str_eq(json, "{\"id\":\"fc-1\"}");
    free(json);
    fmt_ok(c, fm_cache_get_many_flags(c, ids, 2, FM_CACHE_FRESH, &e, &n), "get_many fresh");
    ck_assert_uint_eq(n, 1);
    fm_cache_entries_free(e, n);
    ck_assert_int_eq(wire_redis_calls(rc, "get"), gets + 1);
    ck_assert_int_eq(wire_redis_calls(rc, "mget"), mgets + 1);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_hits"), hits);
    /* Without the flag: from the daemon's copy. */
    fmt_ok(c, fm_cache_get_flags(c, "fc-1", 0, &json, &len), "cache.get");
    free(json);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_hits"), hits + 1);
    ck_assert_int_eq(fm_cache_get_flags(c, "fc-1", 0x8, &json, &len), FM_ERR);
    ck_assert_int_eq(fm_client_err(c), FM_ERR_ARG);
    fm_client_free(c);
    redisFree(rc);
}
END_TEST

START_TEST(test_zero_bytes_turns_the_near_cache_off)
{
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    long long gets;

    ck_assert_int_eq(stat_of(daemon_a.sock, "near_enabled"), 0);
    wire_cache_set(fd, "{\"id\":\"off-1\"}");
    gets = wire_redis_calls(rc, "get");
    for (int i = 0; i < 3; i++)
        wire_expect_cached(fd, "off-1", "{\"id\":\"off-1\"}");
    ck_assert_int_eq(wire_redis_calls(rc, "get"), gets + 3);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_hits"), 0);
    /* No tracking asked of Redis. */
    ck_assert_int_eq(wire_redis_calls(rc, "client|tracking"), 0);
    close(fd);
    redisFree(rc);
}
END_TEST

/* ---- kept current ---------------------------------------------------------- */

/* Another client writes id's key: the daemon's copy goes when Redis's
 * invalidation arrives, and reads through fd answer the new value. */
static void another_client_writes(redisContext *rc, int fd, const char *id, const char *json)
{
    long long inv = stat_of(daemon_a.sock, "near_invalidations");

    freeReplyObject(wire_redis_ok(rc, "SET fm:exec:%s %s PX 60000", id, json));
    await_answer(fd, id, json);
    ck_assert_int_gt(stat_of(daemon_a.sock, "near_invalidations"), inv);
}

START_TEST(test_a_write_by_another_client_reaches_the_reader)
{
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    char *got;

    await_tracking(&daemon_a);
    freeReplyObject(wire_redis_ok(rc, "SET fm:exec:w-1 {\"id\":\"w-1\",\"v\":1} PX 60000"));
    got = get_text(fd, "w-1", 0);
    ck_assert_str_eq(got, "{\"id\":\"w-1\",\"v\":1}");
    free(got);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_entries"), 1);
    another_client_writes(rc, fd, "w-1", "{\"id\":\"w-1\",\"v\":2}");
    freeReplyObject(wire_redis_ok(rc, "DEL fm:exec:w-1"));
    await_answer(fd, "w-1", NULL);
    close(fd);
    redisFree(rc);
}
END_TEST

/* The daemon's own write keeps its copy, and Redis tracks the key from
 * that write on: it goes in one transaction with a read of the key (no
 * script), and another client's later write reaches the reader. */
START_TEST(test_a_write_by_another_client_replaces_an_own_write)
{
    static const char v1[] = "{\"id\":\"w-own\",\"v\":1}";
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    long long execs, evals, gets, hits;
    char *got;

    await_tracking(&daemon_a);
    execs = wire_redis_calls(rc, "exec");
    evals = wire_redis_calls(rc, "evalsha");
    wire_cache_set(fd, v1);
    ck_assert_int_eq(wire_redis_calls(rc, "exec"), execs + 1);
    ck_assert_int_eq(wire_redis_calls(rc, "evalsha"), evals);
    wire_assert_redis_value(rc, "fm:exec:w-own", v1);
    hits = stat_of(daemon_a.sock, "near_hits");
    gets = wire_redis_calls(rc, "get");
    got = get_text(fd, "w-own", 0);
    ck_assert_str_eq(got, v1);
    free(got);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_hits"), hits + 1);
    ck_assert_int_eq(wire_redis_calls(rc, "get"), gets);
    another_client_writes(rc, fd, "w-own", "{\"id\":\"w-own\",\"v\":2}");
    close(fd);
    redisFree(rc);
}
END_TEST

/* Redis refuses the write's transaction (its ACL no longer lets the user
 * run MULTI): that write is a redis_error, the near cache is off from then
 * on (a copy kept could be untracked), the log says so, and the next
 * writes and reads go to Redis as without it. */
START_TEST(test_a_refused_transaction_turns_the_near_cache_off)
{
    static const char v2[] = "{\"id\":\"w-acl\",\"v\":2}";
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    wire_log_wait w = {daemon_a.log, "near cache unused until Redis is reconnected"};
    long long gets;
    cJSON *r;
    char *got;

    await_tracking(&daemon_a);
    freeReplyObject(wire_redis_ok(rc, "ACL SETUSER default -multi"));
    r = wire_call(fd, "{\"op\":\"cache.set\",\"id\":\"s\",\"execution\":{\"id\":\"w-acl\"}}");
    wire_assert_error(r, "redis_error", "\"s\"");
    ck_assert_msg(strstr(wire_str(cJSON_GetObjectItemCaseSensitive(r, "error"), "message"),
                         "NOPERM") != NULL, "not Redis's refusal");
    cJSON_Delete(r);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_tracking"), 0);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_entries"), 0);
    ck_assert_msg(fmt_wait_until(wire_log_holds, &w, WAIT_MS), "no reason in the log");
    wire_cache_set(fd, v2);
    wire_assert_redis_value(rc, "fm:exec:w-acl", v2);
    gets = wire_redis_calls(rc, "get");
    got = get_text(fd, "w-acl", 0);
    ck_assert_str_eq(got, v2);
    free(got);
    ck_assert_int_eq(wire_redis_calls(rc, "get"), gets + 1);
    freeReplyObject(wire_redis_ok(rc, "ACL SETUSER default +multi"));
    close(fd);
    redisFree(rc);
}
END_TEST

START_TEST(test_invalidate_through_the_daemon_drops_the_copy)
{
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    char *got;

    await_tracking(&daemon_a);
    wire_cache_set(fd, "{\"id\":\"i-1\"}");
    wire_cache_set(fd, "{\"id\":\"i-2\"}");
    wire_expect_ok(fd, "{\"op\":\"cache.invalidate\",\"id\":1,\"execution_id\":\"i-1\"}", "1");
    got = get_text(fd, "i-1", 0);
    ck_assert_ptr_null(got);
    wire_expect_ok(fd, "{\"op\":\"cache.invalidate_many\",\"id\":2,\"execution_ids\":[\"i-2\"]}",
                   "2");
    got = get_text(fd, "i-2", 0);
    ck_assert_ptr_null(got);
    ck_assert_int_eq(wire_redis_int(rc, "EXISTS fm:exec:i-1 fm:exec:i-2"), 0);
    close(fd);
    redisFree(rc);
}
END_TEST

START_TEST(test_flushall_empties_the_near_cache)
{
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    long long flushes;

    await_tracking(&daemon_a);
    wire_cache_set(fd, "{\"id\":\"fl-1\"}");
    wire_expect_cached(fd, "fl-1", "{\"id\":\"fl-1\"}");
    flushes = stat_of(daemon_a.sock, "near_flushes");
    freeReplyObject(wire_redis_ok(rc, "FLUSHALL"));
    await_above(daemon_a.sock, "near_flushes", flushes);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_entries"), 0);
    await_answer(fd, "fl-1", NULL);
    close(fd);
    redisFree(rc);
}
END_TEST

/* The id of the daemon's connection whose CLIENT LIST flags hold flag. */
static long long client_with_flag(redisContext *rc, char flag)
{
    redisReply *r = wire_redis_ok(rc, "CLIENT LIST");
    long long id = -1;

    for (char *line = strtok(r->str, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        const char *f = strstr(line, " flags=");

        if (f != NULL && strchr(f + 7, flag) != NULL && strchr(f + 7, flag) < strchr(f + 7, ' '))
            id = atoll(line + 3);
    }
    freeReplyObject(r);
    return id;
}

/* Kills the connection flagged `flag` (P: pub/sub, t: tracking): the
 * cache empties, tracking comes back, and a write after it still reaches
 * the reader (the new REDIRECT). */
static void connection_loss_empties(char flag)
{
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    long long flushes, id;

    await_tracking(&daemon_a);
    wire_cache_set(fd, "{\"id\":\"cl-1\",\"v\":1}");
    wire_expect_cached(fd, "cl-1", "{\"id\":\"cl-1\",\"v\":1}");
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_entries"), 1);
    flushes = stat_of(daemon_a.sock, "near_flushes");
    id = client_with_flag(rc, flag);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(wire_redis_int(rc, "CLIENT KILL ID %lld", id), 1);
    await_above(daemon_a.sock, "near_flushes", flushes);
    await_tracking(&daemon_a);
    /* Filled again on the new connections, then written elsewhere. */
    wire_expect_cached(fd, "cl-1", "{\"id\":\"cl-1\",\"v\":1}");
    wire_expect_cached(fd, "cl-1", "{\"id\":\"cl-1\",\"v\":1}");
    freeReplyObject(wire_redis_ok(rc, "SET fm:exec:cl-1 {\"id\":\"cl-1\",\"v\":2}"));
    await_answer(fd, "cl-1", "{\"id\":\"cl-1\",\"v\":2}");
    /* Redis redirects to the daemon's current pub/sub connection. */
    {
        redisReply *r = wire_redis_ok(rc, "CLIENT LIST");
        char want[48];

        snprintf(want, sizeof(want), "redir=%lld ", client_with_flag(rc, 'P'));
        ck_assert_msg(strstr(r->str, want) != NULL, "no connection with %s in %s", want, r->str);
        freeReplyObject(r);
    }
    close(fd);
    redisFree(rc);
}

START_TEST(test_losing_the_pubsub_connection_empties_the_cache)
{
    connection_loss_empties('P');
}
END_TEST

START_TEST(test_losing_the_command_connection_empties_the_cache)
{
    connection_loss_empties('t');
}
END_TEST

/* ---- bounds ------------------------------------------------------------------ */

/* A copy is never served after its key's TTL ran out in Redis: every
 * cache.get sent after the latest moment the key could live answers null.
 * Redis set the TTL before `written`, in whole milliseconds of its own
 * clock, and keeps the key through its last millisecond (expired is "now
 * > when"): it may live until written + ttl + 1 by ours. */
static void never_past_ttl(int fd, const char *id, int64_t written, int64_t ttl)
{
    int64_t last = written + ttl + 1, deadline = written + ttl + WAIT_MS;
    int served = 0;

    for (;;) {
        int64_t sent = fmt_now_ms();
        char *got = get_text(fd, id, 0);

        if (got == NULL)
            break;
        free(got);
        served++;
        ck_assert_msg(sent <= last, "%s served %lld ms after its key could live", id,
                      (long long)(sent - last));
        ck_assert_msg(sent < deadline, "still served");
    }
    ck_assert_int_gt(served, 0);
}

START_TEST(test_copies_expire_with_their_redis_ttl)
{
    redisContext *rc = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    int64_t written;

    await_tracking(&daemon_a);
    /* Read from Redis: the TTL comes with the value. */
    freeReplyObject(wire_redis_ok(rc, "SET fm:exec:t-1 {\"id\":\"t-1\"} PX 1500"));
    written = fmt_now_ms();
    never_past_ttl(fd, "t-1", written, 1500);
    /* Written through the daemon, with its ttl: Redis set it before the
     * reply came. */
    wire_expect_ok(fd, "{\"op\":\"cache.set\",\"id\":1,\"ttl\":1500,\"execution\":{\"id\":\"t-2\"}}",
                   "1");
    written = fmt_now_ms();
    never_past_ttl(fd, "t-2", written, 1500);
    ck_assert_int_ge(stat_of(daemon_a.sock, "near_hits"), 2);
    close(fd);
    redisFree(rc);
}
END_TEST

START_TEST(test_the_cache_holds_at_most_its_bytes)
{
    int fd = wire_connect(daemon_a.sock);
    char pad[1001];

    await_tracking(&daemon_a);
    memset(pad, 'x', 1000);
    pad[1000] = '\0';
    for (int i = 0; i < 40; i++) {
        char *e = wire_strf("{\"id\":\"b-%d\",\"pad\":\"%s\"}", i, pad);

        wire_cache_set(fd, e);
        free(e);
        ck_assert_int_le(stat_of(daemon_a.sock, "near_bytes"), 16384);
    }
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_max_bytes"), 16384);
    ck_assert_int_ge(stat_of(daemon_a.sock, "near_evictions"), 20);
    ck_assert_int_gt(stat_of(daemon_a.sock, "near_entries"), 5);
    /* Evicted or not, every one reads back whole. */
    for (int i = 0; i < 40; i++) {
        char *e = wire_strf("{\"id\":\"b-%d\",\"pad\":\"%s\"}", i, pad);
        char *id = wire_strf("b-%d", i);

        wire_expect_cached(fd, id, e);
        free(e);
        free(id);
    }
    close(fd);
}
END_TEST

/* A client that pipelines hits worth more than max_output_bytes is paced
 * by its own reading (its next requests wait while a megabyte of its
 * output is unwritten), not cut off as a slow consumer, and the loop stays
 * free for the others. */
START_TEST(test_pipelined_hits_are_paced_not_cut_off)
{
    enum { N = 40, PAD = 600000 };     /* 48 MB of replies; frames stay below 1 MiB */
    int fd, other;
    char *pad = malloc(PAD + 1), *batch = NULL;
    size_t len = 0;
    int64_t t0;
    FILE *f;

    fd = wire_connect(daemon_a.sock);
    other = wire_connect(daemon_a.sock);
    await_tracking(&daemon_a);
    ck_assert_ptr_nonnull(pad);
    memset(pad, 'p', PAD);
    pad[PAD] = '\0';
    for (int k = 1; k <= 2; k++) {
        char *e = wire_strf("{\"id\":\"p-%d\",\"pad\":\"%s\"}", k, pad);

        wire_cache_set(fd, e);
        free(e);
    }
    f = open_memstream(&batch, &len);
    ck_assert_ptr_nonnull(f);
    for (int i = 1; i <= N; i++) {
        char body[128];

        snprintf(body, sizeof(body), "{\"op\":\"cache.get_many\",\"id\":%d,"
                 "\"execution_ids\":[\"p-1\",\"p-2\"]}", i);
        wire_frame_put(f, body);
    }
    fclose(f);
    ck_assert_int_eq(fmt_raw_write(fd, batch, len), 0);
    t0 = fmt_now_ms();
    wire_expect_ok(other, "{\"op\":\"ping\",\"id\":\"p\"}", "\"p\"");
    ck_assert_msg(fmt_now_ms() - t0 < 1000 * wire_slowdown(&daemon_a),
                  "a ping took %lld ms beside the pipelined hits", (long long)(fmt_now_ms() - t0));
    for (int i = 1; i <= N; i++) {
        size_t n = 0;
        char *text = wire_recv_text(fd, WAIT_MS, &n);

        ck_assert_msg(text != NULL && n > 2 * PAD && strstr(text, "\"ok\":true") != NULL,
                      "reply %d of %d: %.100s", i, N, text != NULL ? text : "none");
        free(text);
    }
    ck_assert_int_ge(stat_of(daemon_a.sock, "near_hits"), 2 * N);
    /* fd, other and the stats request's own: nobody was cut off. */
    ck_assert_int_eq(stat_of(daemon_a.sock, "clients"), 3);
    free(batch);
    free(pad);
    close(fd);
    close(other);
}
END_TEST

/* Requests that waited behind a paused client's output run when it
 * drains, also from inside the per-turn flusher: one that needs Redis is
 * sent at once, not when the next event wakes the loop. */
START_TEST(test_requests_held_behind_output_go_to_redis_at_once)
{
    enum { N = 12 };
    int fd = wire_connect(daemon_a.sock);
    char pad[4001], *batch = NULL;
    size_t len = 0;
    FILE *f;

    await_tracking(&daemon_a);
    memset(pad, 'h', 4000);
    pad[4000] = '\0';
    {
        char *e = wire_strf("{\"id\":\"h-4k\",\"pad\":\"%s\"}", pad);

        wire_cache_set(fd, e);
        free(e);
    }
    for (int round = 0; round < 5; round++) {
        int64_t t0;
        cJSON *r;

        f = open_memstream(&batch, &len);
        ck_assert_ptr_nonnull(f);
        for (int i = 0; i < N; i++)
            wire_frame_put(f, "{\"op\":\"cache.get\",\"id\":\"h\",\"execution_id\":\"h-4k\"}");
        wire_frame_put(f, "{\"op\":\"lock.is_locked\",\"id\":\"l\",\"key\":\"h-4k\"}");
        fclose(f);
        t0 = fmt_now_ms();
        ck_assert_int_eq(fmt_raw_write(fd, batch, len), 0);
        for (int i = 0; i < N; i++) {
            r = wire_recv(fd, WAIT_MS);
            wire_assert_ok(r, "\"h\"");
            cJSON_Delete(r);
        }
        r = wire_recv(fd, WAIT_MS);
        wire_assert_ok(r, "\"l\"");
        cJSON_Delete(r);
        ck_assert_msg(fmt_now_ms() - t0 < 1000, "round %d: answered after %lld ms", round,
                      (long long)(fmt_now_ms() - t0));
        free(batch);
        batch = NULL;
    }
    close(fd);
}
END_TEST

typedef struct clients_are {
    const char *sock;
    long long want;
} clients_are;

static int clients_now(void *arg)
{
    clients_are *c = arg;

    return stat_of(c->sock, "clients") == c->want;
}

/* A client that sends requests and never reads its replies is paused, then
 * cut off once its output has not moved for request_timeout_ms: the
 * requests it sent meanwhile do not wait forever, and nobody else waits. */
START_TEST(test_a_client_that_never_reads_is_cut_off)
{
    enum { N = 1000 };
    int fd = wire_connect(daemon_a.sock), other;
    char pad[4001], *batch = NULL;
    clients_are one = {daemon_a.sock, 2};   /* `other`, and stat_of's own */
    size_t len = 0;
    int64_t t0;
    FILE *f;

    await_tracking(&daemon_a);
    memset(pad, 'n', 4000);
    pad[4000] = '\0';
    {
        char *e = wire_strf("{\"id\":\"n-4k\",\"pad\":\"%s\"}", pad);

        wire_cache_set(fd, e);
        free(e);
    }
    f = open_memstream(&batch, &len);
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < N; i++)
        wire_frame_put(f, "{\"op\":\"cache.get\",\"id\":\"n\",\"execution_id\":\"n-4k\"}");
    fclose(f);
    /* 4 MB of replies, far more than the sockets hold; nothing is read. */
    ck_assert_int_eq(fmt_raw_write(fd, batch, len), 0);
    other = wire_connect(daemon_a.sock);
    t0 = fmt_now_ms();
    wire_expect_ok(other, "{\"op\":\"ping\",\"id\":\"p\"}", "\"p\"");
    ck_assert_int_lt(fmt_now_ms() - t0, 1000);
    ck_assert_msg(fmt_wait_until(clients_now, &one, 5000 * wire_slowdown(&daemon_a)),
                  "the client that does not read is still connected");
    ck_assert_msg(fmt_raw_drain(fd, 5000, NULL), "its socket did not end");
    wire_expect_ok(other, "{\"op\":\"ping\",\"id\":\"q\"}", "\"q\"");
    free(batch);
    close(fd);
    close(other);
}
END_TEST

/* ---- races --------------------------------------------------------------------- */

#define RACE_KEYS 8

typedef struct writer {
    const fmt_redis *srv;
    int64_t until;
    long long last[RACE_KEYS];
} writer;

static void *write_loop(void *arg)
{
    writer *w = arg;
    redisContext *rc = fmt_redis_connect(w->srv);

    for (long long n = 1; rc != NULL && fmt_now_ms() < w->until; n++) {
        int k = (int)(n % RACE_KEYS);
        redisReply *r = redisCommand(rc, "SET fm:exec:r-%d {\"id\":\"r-%d\",\"n\":%lld} PX 600000",
                                     k, k, n);

        freeReplyObject(r);
        w->last[k] = n;
    }
    redisFree(rc);
    return NULL;
}

/* Reads that race writes: whatever they kept, every key converges on its
 * last value. A read kept though an invalidation overtook it would be
 * served until its TTL (ten minutes). */
START_TEST(test_a_read_that_races_a_write_is_not_kept)
{
    writer w = {.srv = &redis_srv, .until = fmt_now_ms() + 1500};
    int fd = wire_connect(daemon_a.sock);
    pthread_t t;
    long long reads = 0;

    await_tracking(&daemon_a);
    ck_assert_int_eq(pthread_create(&t, NULL, write_loop, &w), 0);
    while (fmt_now_ms() < w.until) {
        char *id = wire_strf("r-%lld", reads % RACE_KEYS);

        free(get_text(fd, id, 0));
        free(id);
        reads++;
    }
    pthread_join(t, NULL);
    for (int k = 0; k < RACE_KEYS; k++) {
        char *id = wire_strf("r-%d", k);
        char *want = wire_strf("{\"id\":\"r-%d\",\"n\":%lld}", k, w.last[k]);

        await_answer(fd, id, want);
        free(id);
        free(want);
    }
    printf("near: %lld reads raced writes; %lld fills kept, %lld dropped, %lld invalidations\n",
           reads, stat_of(daemon_a.sock, "near_fills"), stat_of(daemon_a.sock, "near_fills_dropped"),
           stat_of(daemon_a.sock, "near_invalidations"));
    close(fd);
}
END_TEST

/* ---- the lock hand-off ------------------------------------------------------- */

#define HANDOFF_ROUNDS 2000

#define FLOOD_BYTES 32768
#define FLOOD_BACKLOG (1024 * 1024)

/* Keeps the daemons' pub/sub connections behind a backlog of release
 * notices that no acquire waits for: an invalidation then arrives well
 * after a grant that follows its write, as it may behind real traffic, and
 * only the fence keeps the reader from its stale copy. The backlog is kept
 * near FLOOD_BACKLOG per subscriber (Redis's omem in CLIENT LIST), so a
 * slow daemon (valgrind) paces the flood instead of being cut off by
 * Redis's pub/sub output limit. */
typedef struct flood {
    const fmt_redis *srv;
    volatile int stop;
} flood;

/* The largest output Redis holds for a pub/sub client, in bytes. */
static long long pubsub_backlog(redisContext *rc)
{
    redisReply *r = redisCommand(rc, "CLIENT LIST TYPE pubsub");
    long long most = 0;

    if (r == NULL)
        return -1;
    for (const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, " omem=") : NULL;
         p != NULL; p = strstr(p + 1, " omem="))
        if (atoll(p + 6) > most)
            most = atoll(p + 6);
    freeReplyObject(r);
    return most;
}

static void *flood_loop(void *arg)
{
    flood *f = arg;
    redisContext *rc = fmt_redis_connect(f->srv);
    char *junk = malloc(FLOOD_BYTES);
    long long backlog;

    if (junk == NULL || rc == NULL)
        goto out;
    memset(junk, 'j', FLOOD_BYTES);
    while (!f->stop && (backlog = pubsub_backlog(rc)) >= 0) {
        redisReply *r;

        if (backlog > FLOOD_BACKLOG) {
            usleep(200);
            continue;
        }
        for (int i = 0; i < 8; i++)
            redisAppendCommand(rc, "PUBLISH fm:lock:released %b", junk, (size_t)FLOOD_BYTES);
        for (int i = 0; i < 8; i++) {
            if (redisGetReply(rc, (void **)&r) != REDIS_OK)
                goto out;
            freeReplyObject(r);
        }
    }
out:
    free(junk);
    if (rc != NULL)
        redisFree(rc);
    return NULL;
}

/* Worker A on host 1 updates execution X and releases lock X; worker B on
 * host 2 takes lock X and reads X: B sees A's update, never the older copy
 * its own daemon holds. The two daemons take turns; each holds X from its
 * own last write (and read), so every stale answer would show. */
START_TEST(test_a_lock_holder_reads_the_previous_holders_write)
{
    /* Thousands natively; fewer with the daemons under valgrind, where the
     * point is their memory, not the count. */
    int rounds = HANDOFF_ROUNDS / wire_slowdown(&daemon_a);
    fm_client *c[2];
    const fmt_daemon *d[2] = {&daemon_a, &daemon_b};
    long long hits = 0, waits = 0, timeouts = 0;
    flood fl = {.srv = &redis_srv};
    pthread_t t;
    char exec[64];

    await_tracking(&daemon_a);
    await_tracking(&daemon_b);
    ck_assert_int_eq(pthread_create(&t, NULL, flood_loop, &fl), 0);
    c[0] = fmt_client(&daemon_a);
    c[1] = fmt_client(&daemon_b);
    snprintf(exec, sizeof(exec), "{\"id\":\"h-x\",\"n\":0}");
    fmt_ok(c[0], fm_cache_set(c[0], exec, strlen(exec), 600000), "cache.set");
    for (int i = 1; i <= rounds; i++) {
        fm_client *me = c[i % 2];
        fm_lock lk = wire_lock_take(me, "h-x", 10000);
        char *json = NULL;
        size_t len = 0;

        /* Twice: the second read is the daemon's copy, now current. */
        for (int r = 0; r < 2; r++) {
            fmt_ok(me, fm_cache_get(me, "h-x", &json, &len), "cache.get");
            ck_assert_msg(json != NULL && strcmp(json, exec) == 0,
                          "round %d, daemon %d: read %s, the previous holder wrote %s", i, i % 2,
                          json != NULL ? json : "null", exec);
            free(json);
        }
        snprintf(exec, sizeof(exec), "{\"id\":\"h-x\",\"n\":%d}", i);
        fmt_ok(me, fm_cache_set(me, exec, strlen(exec), 600000), "cache.set");
        fmt_ok(me, fm_lock_release(me, "h-x", lk.token, NULL, NULL), "lock.release");
    }
    fl.stop = 1;
    pthread_join(t, NULL);
    for (int k = 0; k < 2; k++) {
        hits += stat_of(d[k]->sock, "near_hits");
        waits += stat_of(d[k]->sock, "near_fence_waits");
        timeouts += stat_of(d[k]->sock, "near_fence_timeouts");
        /* Tracking held throughout (one flush: when it was armed). */
        ck_assert_int_eq(stat_of(d[k]->sock, "near_flushes"), 1);
        fm_client_free(c[k]);
    }
    /* Every round's first read waited for the fence of its grant, every
     * fence passed (none fell back to Redis), every second read was a
     * copy. */
    ck_assert_int_ge(waits, rounds);
    ck_assert_int_eq(timeouts, 0);
    ck_assert_int_ge(hits, rounds);
    printf("near: %d hand-offs across two daemons behind pub/sub traffic, every read current; "
           "%lld hits, %lld reads waited for a fence\n", rounds, hits, waits);
}
END_TEST

/* On a quiet daemon a read after a grant waits one round trip on the
 * pub/sub connection, not for the next event to wake the loop. */
START_TEST(test_a_read_after_a_grant_waits_one_round_trip)
{
    fm_client *c = fmt_client(&daemon_a);
    char *json = NULL;
    size_t len = 0;

    await_tracking(&daemon_a);
    fmt_ok(c, fm_cache_set(c, "{\"id\":\"q-1\"}", 12, 0), "cache.set");
    for (int i = 0; i < 20; i++) {
        fm_lock lk = wire_lock_take(c, "q-1", 10000);
        int64_t t0 = fmt_now_ms();

        fmt_ok(c, fm_cache_get(c, "q-1", &json, &len), "cache.get");
        ck_assert_str_eq(json, "{\"id\":\"q-1\"}");
        free(json);
        /* Far below the fallback at half of request_timeout_ms (2.5 s). */
        ck_assert_msg(fmt_now_ms() - t0 < 1000, "a read after a grant took %lld ms",
                      (long long)(fmt_now_ms() - t0));
        fmt_ok(c, fm_lock_release(c, "q-1", lk.token, NULL, NULL), "lock.release");
    }
    ck_assert_int_ge(stat_of(daemon_a.sock, "near_fence_waits"), 20);
    ck_assert_int_eq(stat_of(daemon_a.sock, "near_fence_timeouts"), 0);
    ck_assert_int_ge(stat_of(daemon_a.sock, "near_hits"), 20);
    fm_client_free(c);
}
END_TEST

static TCase *tcase(Suite *s, const char *name, void (*up)(void))
{
    return fmt_tcase(s, name, up, servers_down, 120);
}

Suite *fm_suite_near(void)
{
    Suite *s = suite_create("near");
    TCase *tc = tcase_create("store");

    suite_add_tcase(s, tc);
    tcase_add_test(tc, test_store_a_read_racing_an_invalidation_keeps_nothing);
    tcase_add_test(tc, test_store_a_read_beside_an_own_write_keeps_nothing);
    tcase_add_test(tc, test_store_two_own_writes_in_flight_keep_neither);
    tcase_add_test(tc, test_store_a_flush_drops_fills_in_flight);
    tcase_add_test(tc, test_store_evicts_the_least_recently_used_within_its_bytes);
    tcase_add_test(tc, test_store_a_copy_expires_with_its_ttl);
    tc = tcase(s, "served", servers_up);

    tcase_add_test(tc, test_a_stored_execution_is_read_without_redis);
    tcase_add_test(tc, test_get_many_serves_hits_and_reads_only_the_misses);
    tcase_add_test(tc, test_fresh_reads_go_to_redis);
    tcase_add_test(tc, test_the_c_library_asks_for_fresh_reads);
    tc = tcase(s, "pipelined", big_output_up);
    tcase_add_test(tc, test_pipelined_hits_are_paced_not_cut_off);
    tc = tcase(s, "off", no_cache_up);
    tcase_add_test(tc, test_zero_bytes_turns_the_near_cache_off);
    tc = tcase(s, "current", servers_up);
    tcase_add_test(tc, test_a_write_by_another_client_reaches_the_reader);
    tcase_add_test(tc, test_a_write_by_another_client_replaces_an_own_write);
    tcase_add_test(tc, test_invalidate_through_the_daemon_drops_the_copy);
    tcase_add_test(tc, test_flushall_empties_the_near_cache);
    tcase_add_test(tc, test_losing_the_pubsub_connection_empties_the_cache);
    tcase_add_test(tc, test_losing_the_command_connection_empties_the_cache);
    tcase_add_test(tc, test_copies_expire_with_their_redis_ttl);
    tcase_add_test(tc, test_a_read_that_races_a_write_is_not_kept);
    tcase_add_test(tc, test_a_read_after_a_grant_waits_one_round_trip);
    tc = tcase(s, "refused", servers_up);
    tcase_add_test(tc, test_a_refused_transaction_turns_the_near_cache_off);
    tc = tcase(s, "paced", small_output_up);
    tcase_add_test(tc, test_requests_held_behind_output_go_to_redis_at_once);
    tcase_add_test(tc, test_a_client_that_never_reads_is_cut_off);
    tc = tcase(s, "bytes", small_cache_up);
    tcase_add_test(tc, test_the_cache_holds_at_most_its_bytes);
    tc = tcase(s, "handoff", two_daemons_up);
    tcase_add_test(tc, test_a_lock_holder_reads_the_previous_holders_write);
    return s;
}
