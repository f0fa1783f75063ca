/* test_metrics.c -- what `stats` measures (docs/METRICS.md), each number
 * checked against a state the test made: latency quantiles, locks, wake
 * subscriptions, output queued, the Redis link, redis_info against Redis's
 * own INFO, and `fmredis stats --prometheus` against the JSON of the same
 * daemon. Every test starts its own Redis and daemon, so counts start at 0. */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm_tests.h"
#include "harness.h"
#include "latency.h"
#include "proc.h"
#include "promtext.h"
#include "wire.h"

#define TCASE_TIMEOUT 60
#define WAIT_MS 10000
#define P(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- the histogram itself (daemon/latency.c, linked in) ------------------ */

static const double qs[] = {0.5, 0.99, 0.999};

/* A quantile is its bucket's top: never below the value, at most 1/16
 * above it. One small sample beside a large one, so p50 is the small one
 * (capped at the window's max, which the large one is). */
START_TEST(test_histogram_quantiles_overstate_by_at_most_a_sixteenth)
{
    uint64_t v = 1, out[3];
    fm_latency_view view;

    while (v < ((uint64_t)1 << 32)) {
        fm_latency l;

        memset(&l, 0, sizeof(l));
        fm_latency_record(&l, v, 1000);
        fm_latency_record(&l, (uint64_t)1 << 33, 1000);
        fm_latency_read(&l, 1000, qs, 3, out, &view);
        ck_assert_uint_eq(view.n, 2);
        ck_assert_uint_eq(view.max_us, (uint64_t)1 << 33);
        ck_assert_msg(out[0] >= v && out[0] <= v + v / 16, "%llu read as %llu",
                      (unsigned long long)v, (unsigned long long)out[0]);
        ck_assert_uint_eq(out[2], view.max_us);
        v = v * 9 / 8 + 1;
    }
}
END_TEST

/* Two periods of 60 s: a sample stays for the rest of its period and the
 * whole next one, then it is gone, whether or not anything was recorded
 * since. */
START_TEST(test_histogram_window_keeps_two_periods)
{
    const uint64_t P = FM_LATENCY_PERIOD_MS, t0 = 100 * P + 5;
    fm_latency l;
    fm_latency_view view;
    uint64_t out[3];

    memset(&l, 0, sizeof(l));
    fm_latency_record(&l, 10, t0);
    fm_latency_read(&l, t0 + P - 10, qs, 3, out, &view);
    ck_assert_uint_eq(view.n, 1);
    fm_latency_read(&l, t0 + 2 * P - 10, qs, 3, out, &view);
    ck_assert_uint_eq(view.n, 1);
    fm_latency_read(&l, t0 + 2 * P, qs, 3, out, &view);
    ck_assert_uint_eq(view.n, 0);
    ck_assert_uint_eq(out[0], 0);
    /* Next period: both count; two later, the first period's turn comes
     * again and it is cleared. */
    fm_latency_record(&l, 20, t0 + P);
    fm_latency_read(&l, t0 + P, qs, 3, out, &view);
    ck_assert_uint_eq(view.n, 2);
    ck_assert_uint_eq(view.max_us, 20);
    fm_latency_record(&l, 30, t0 + 2 * P);
    fm_latency_read(&l, t0 + 2 * P, qs, 3, out, &view);
    ck_assert_uint_eq(view.n, 2);
    ck_assert_uint_eq(out[0], 20);
    ck_assert_uint_eq(out[2], 30);
    ck_assert_uint_eq(l.count, 3);
    ck_assert_uint_eq(l.sum_us, 60);
    /* How far back: the period before the current one, not before start. */
    ck_assert_uint_eq(fm_latency_window_ms(t0, t0 + 10), 10);
    ck_assert_uint_eq(fm_latency_window_ms(t0, 103 * P + 7), P + 7);
}
END_TEST

/* ---- stats -------------------------------------------------------------- */

/* The stats reply, asked on a connection of its own. */
static cJSON *stats_of(const char *sock, int redis_info)
{
    int fd = wire_connect(sock);
    cJSON *r = wire_call(fd, redis_info ? "{\"op\":\"stats\",\"id\":1,\"redis_info\":true}"
                                        : "{\"op\":\"stats\",\"id\":1}");

    close(fd);
    wire_assert_ok(r, "1");
    return r;
}

/* The member at path, or NULL. */
static const cJSON *find(const cJSON *root, const char *const *path)
{
    const cJSON *v = root;

    for (; *path != NULL && v != NULL; path++)
        v = cJSON_GetObjectItemCaseSensitive(v, *path);
    return v;
}

static const cJSON *at(const cJSON *root, const char *const *path)
{
    const cJSON *v = find(root, path);

    ck_assert_msg(v != NULL, "stats has no %s...%s", path[0], path[1] ? path[1] : "");
    return v;
}

/* A number (bools as 0/1) at path. */
static int64_t num(const cJSON *root, const char *const *path)
{
    const cJSON *v = at(root, path);

    ck_assert_msg(cJSON_IsNumber(v) || cJSON_IsBool(v), "stats %s...: not a number", path[0]);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : cJSON_IsTrue(v);
}

static int64_t stat_of(const char *sock, const char *const *path)
{
    cJSON *r = stats_of(sock, 0);
    int64_t n = num(r, path);

    cJSON_Delete(r);
    return n;
}

typedef struct stat_want {
    const char *sock;
    const char *const *path;
    int64_t min, max;
} stat_want;

/* Null (not known yet) is never in range. */
static int stat_in_range(void *arg)
{
    const stat_want *w = arg;
    cJSON *r = stats_of(w->sock, 0);
    const cJSON *v = find(r, w->path);
    int ok = v != NULL && (cJSON_IsNumber(v) || cJSON_IsBool(v));
    int64_t n = ok ? num(r, w->path) : 0;

    cJSON_Delete(r);
    return ok && n >= w->min && n <= w->max;
}

/* Waits until the stats number at path is within [min, max]. */
static void await_stat(const char *sock, const char *const *path, int64_t min, int64_t max)
{
    stat_want w = {sock, path, min, max};

    ck_assert_msg(fmt_wait_until(stat_in_range, &w, WAIT_MS),
                  "stats %s%s%s never came within [%lld, %lld]", path[0], path[1] ? "." : "",
                  path[1] ? path[1] : "", (long long)min, (long long)max);
}

/* The metrics must agree with the JSON of the same state. */
static void expect_same(const prom_doc *doc, const char *series, double json_value)
{
    double v = prom_value(doc, series);

    ck_assert_msg(fabs(v - json_value) <= 1e-9 * fabs(json_value) + 1e-12,
                  "%s is %.17g, stats says %.17g", series, v, json_value);
}

/* ---- requests ------------------------------------------------------------ */

/* A second client's acquire of a held key, left waiting: its reply comes
 * when the key is released. */
static void acquire_send(int fd, const char *key)
{
    char *req = wire_strf("{\"op\":\"lock.acquire\",\"id\":\"w\",\"key\":\"%s\","
                          "\"retry_delay\":50,\"max_retries\":100000}", key);

    wire_send(fd, req);
    free(req);
}

static void release_ok(int fd, const char *key, const char *token)
{
    char *req = wire_strf("{\"op\":\"lock.release\",\"id\":2,\"key\":\"%s\",\"token\":\"%s\"}",
                          key, token);

    wire_expect_ok(fd, req, "2");
    free(req);
}

/* Acquires key on fd and returns its token (caller frees). */
static char *acquire_token(int fd, const char *key, const char *extra)
{
    char *req = wire_strf("{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"%s\"%s}", key, extra);
    cJSON *r = wire_call(fd, req);
    char *token;

    wire_assert_ok(r, "1");
    ck_assert_msg(wire_str(r, "token") != NULL, "%s was not acquired", key);
    token = strdup(wire_str(r, "token"));
    cJSON_Delete(r);
    free(req);
    return token;
}

/* n locks, named prefix-0 ... on fd. */
static void acquire_many(int fd, const char *prefix, int n, const char *extra)
{
    for (int i = 0; i < n; i++) {
        char key[64];

        snprintf(key, sizeof(key), "%s-%d", prefix, i);
        free(acquire_token(fd, key, extra));
    }
}

static int subscribe(const char *sock, const char *channel, const char *group)
{
    int fd = wire_connect(sock);
    char *req = group != NULL
                    ? wire_strf("{\"op\":\"wake.subscribe\",\"id\":3,\"channel\":\"%s\","
                                "\"group\":\"%s\"}", channel, group)
                    : wire_strf("{\"op\":\"wake.subscribe\",\"id\":3,\"channel\":\"%s\"}",
                                channel);

    wire_expect_ok(fd, req, "3");
    free(req);
    return fd;
}

/* ---- latency ------------------------------------------------------------- */

START_TEST(test_latency_quantiles_are_ordered_and_count_every_request)
{
    enum { N = 40 };
    fmt_redis r;
    fmt_daemon d;
    const cJSON *acq, *idle;
    int64_t p50, p99, p999, max, sum;
    cJSON *root;
    int fd;

    wire_pair_start(&r, &d, NULL, NULL);
    fd = wire_connect(d.sock);
    acquire_many(fd, "lat", N, ",\"on_disconnect\":\"keep\"");
    root = stats_of(d.sock, 0);
    acq = at(root, P("ops", "lock.acquire"));
    ck_assert_int_eq(num(acq, P("calls")), N);
    ck_assert_int_eq(num(acq, P("errors")), 0);
    ck_assert_int_eq(num(acq, P("latency_samples")), N);
    ck_assert_int_eq(num(acq, P("latency_count")), N);
    p50 = num(acq, P("p50_us"));
    p99 = num(acq, P("p99_us"));
    p999 = num(acq, P("p999_us"));
    max = num(acq, P("max_us"));
    sum = num(acq, P("latency_sum_us"));
    ck_assert_msg(1 <= p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
                  "p50 %lld, p99 %lld, p999 %lld, max %lld", (long long)p50, (long long)p99,
                  (long long)p999, (long long)max);
    ck_assert_msg(max <= sum && sum <= N * max, "sum %lld, max %lld", (long long)sum,
                  (long long)max);
    /* An operation nobody called: an empty window, quantiles unknown. */
    idle = at(root, P("ops", "cache.get_many"));
    ck_assert_int_eq(num(idle, P("calls")), 0);
    ck_assert_int_eq(num(idle, P("latency_samples")), 0);
    ck_assert(cJSON_IsNull(at(idle, P("p50_us"))) && cJSON_IsNull(at(idle, P("p999_us"))) &&
              cJSON_IsNull(at(idle, P("max_us"))));
    ck_assert_int_le(num(root, P("latency_window_ms")), 120000);
    cJSON_Delete(root);
    close(fd);
    wire_pair_stop(&r, &d);
}
END_TEST

/* Two samples: a fast acquire and one that waited WAIT_SPAN_MS for the
 * lock. The wait shows in the top quantile and the maximum. */
#define WAIT_SPAN_MS 500
START_TEST(test_latency_of_a_waiting_acquire_covers_its_wait)
{
    fmt_redis r;
    fmt_daemon d;
    int64_t seen, released, p50, p999, max;
    cJSON *root, *reply;
    const cJSON *acq;
    char *token;
    int a, b;

    wire_pair_start(&r, &d, NULL, NULL);
    a = wire_connect(d.sock);
    b = wire_connect(d.sock);
    token = acquire_token(a, "slow", "");
    acquire_send(b, "slow");
    await_stat(d.sock, P("lock_acquires_waiting"), 1, 1);
    /* b's acquire was dispatched by now: its latency is at least the time
     * from here to the release. The test holds the lock that long. */
    seen = fmt_now_ms();
    usleep(WAIT_SPAN_MS * 1000);
    released = fmt_now_ms();
    release_ok(a, "slow", token);
    reply = wire_recv(b, WIRE_REPLY_MS);
    wire_assert_ok(reply, "\"w\"");
    ck_assert(wire_str(reply, "token") != NULL);
    cJSON_Delete(reply);
    root = stats_of(d.sock, 0);
    acq = at(root, P("ops", "lock.acquire"));
    ck_assert_int_eq(num(acq, P("latency_samples")), 2);
    p50 = num(acq, P("p50_us"));
    p999 = num(acq, P("p999_us"));
    max = num(acq, P("max_us"));
    ck_assert_msg(max >= (released - seen) * 1000, "max %lld us, but it waited %lld ms",
                  (long long)max, (long long)(released - seen));
    /* Of two samples the top quantile is the larger, capped at the max. */
    ck_assert_int_eq(p999, max);
    ck_assert_int_lt(p50, max);
    cJSON_Delete(root);
    free(token);
    close(a);
    close(b);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- locks ---------------------------------------------------------------- */

START_TEST(test_lock_stats_follow_held_auto_extended_and_waiting_locks)
{
    fmt_redis r;
    fmt_daemon d;
    redisContext *rc;
    cJSON *reply;
    char *token;
    int a, b;

    wire_pair_start(&r, &d, NULL, NULL);
    rc = wire_redis_open(&r);
    a = wire_connect(d.sock);
    b = wire_connect(d.sock);
    token = acquire_token(a, "g1", ",\"ttl\":900,\"auto_extend\":true");
    ck_assert_int_eq(stat_of(d.sock, P("locks_held")), 1);
    ck_assert_int_eq(stat_of(d.sock, P("locks_auto_extended")), 1);
    /* Four extensions, one every 300 ms: past the 900 ms TTL, and the key
     * is still there because they reached Redis. */
    await_stat(d.sock, P("lock_auto_extensions"), 4, INT64_MAX);
    ck_assert_int_eq(wire_redis_int(rc, "EXISTS fm:lock:g1"), 1);

    acquire_send(b, "g1");
    await_stat(d.sock, P("lock_acquires_waiting"), 1, 1);
    release_ok(a, "g1", token);
    reply = wire_recv(b, WIRE_REPLY_MS);
    wire_assert_ok(reply, "\"w\"");
    cJSON_Delete(reply);
    ck_assert_int_eq(stat_of(d.sock, P("lock_acquires_waiting")), 0);
    /* b holds it now, to be released when b goes, not extended. */
    ck_assert_int_eq(stat_of(d.sock, P("locks_held")), 1);
    ck_assert_int_eq(stat_of(d.sock, P("locks_auto_extended")), 0);
    close(b);
    await_stat(d.sock, P("locks_held"), 0, 0);
    free(token);
    close(a);
    redisFree(rc);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- wake ------------------------------------------------------------------ */

START_TEST(test_wake_stats_count_channels_subscribers_and_groups)
{
    fmt_redis r;
    fmt_daemon d;
    int s1, s2, s3, s4;

    wire_pair_start(&r, &d, NULL, NULL);
    s1 = subscribe(d.sock, "c1", NULL);
    s2 = subscribe(d.sock, "c1", "g");
    s3 = subscribe(d.sock, "c2", "g");
    s4 = subscribe(d.sock, "c2", "g");
    ck_assert_int_eq(stat_of(d.sock, P("wake_channels")), 2);
    ck_assert_int_eq(stat_of(d.sock, P("wake_subscribers")), 4);
    /* Groups count per channel: g on c1, g on c2. */
    ck_assert_int_eq(stat_of(d.sock, P("wake_groups")), 2);
    wire_expect_ok(s2, "{\"op\":\"wake.unsubscribe\",\"id\":4,\"channel\":\"c1\"}", "4");
    ck_assert_int_eq(stat_of(d.sock, P("wake_subscribers")), 3);
    ck_assert_int_eq(stat_of(d.sock, P("wake_groups")), 1);
    close(s3);
    await_stat(d.sock, P("wake_subscribers"), 2, 2);
    ck_assert_int_eq(stat_of(d.sock, P("wake_groups")), 1);
    close(s4);
    await_stat(d.sock, P("wake_channels"), 1, 1);
    ck_assert_int_eq(stat_of(d.sock, P("wake_groups")), 0);
    close(s1);
    close(s2);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- output ---------------------------------------------------------------- */

START_TEST(test_output_queued_counts_what_a_slow_reader_has_not_read)
{
    enum { WAKES = 20, PAYLOAD = 100000 };
    fmt_redis r;
    fmt_daemon d;
    redisContext *rc;
    char *payload = malloc(PAYLOAD);
    cJSON *root;
    int sub;

    ck_assert(payload != NULL);
    memset(payload, 'x', PAYLOAD);
    wire_pair_start(&r, &d, NULL, NULL);
    rc = wire_redis_open(&r);
    sub = subscribe(d.sock, "big", NULL);
    ck_assert_int_eq(stat_of(d.sock, P("output_queued_bytes")), 0);
    for (int i = 0; i < WAKES; i++)
        freeReplyObject(wire_redis_ok(rc, "PUBLISH big %b", payload, (size_t)PAYLOAD));
    /* 2 MB of wakes; the kernel's socket buffers take a few hundred KB. */
    await_stat(d.sock, P("output_queued_bytes"), WAKES * PAYLOAD / 2, WAKES * (PAYLOAD + 200));
    root = stats_of(d.sock, 0);
    ck_assert_int_eq(num(root, P("output_queued_max_bytes")), num(root, P("output_queued_bytes")));
    cJSON_Delete(root);
    for (int i = 0; i < WAKES; i++) {
        char *text = wire_recv_text(sub, WIRE_REPLY_MS, NULL);

        ck_assert_msg(text != NULL && strstr(text, "\"wake\"") != NULL, "wake %d missing", i);
        free(text);
    }
    await_stat(d.sock, P("output_queued_bytes"), 0, 0);
    close(sub);
    redisFree(rc);
    free(payload);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- the Redis link ---------------------------------------------------------- */

START_TEST(test_link_stats_count_a_reconnect_and_keep_the_last_error)
{
    fmt_redis r;
    fmt_daemon d;
    const cJSON *err;
    cJSON *root;

    wire_pair_start(&r, &d, NULL, NULL);
    root = stats_of(d.sock, 0);
    ck_assert_int_eq(num(root, P("redis", "reconnects")), 0);
    ck_assert(cJSON_IsNull(at(root, P("redis", "last_error"))));
    ck_assert(cJSON_IsNull(at(root, P("redis", "last_error_age_ms"))));
    /* One server is no Cluster. */
    ck_assert(cJSON_IsNull(at(root, P("redis", "cluster_masters"))));
    ck_assert(cJSON_IsNull(at(root, P("redis", "cluster_slots_uncovered"))));
    ck_assert(cJSON_IsNull(at(root, P("redis", "cluster_redirects"))));
    cJSON_Delete(root);
    /* The daemon's PING at connect comes back with a round trip. */
    await_stat(d.sock, P("redis", "rtt_us"), 1, 10 * 1000 * 1000);

    fmt_redis_kill(&r);
    await_stat(d.sock, P("redis", "connected"), 0, 0);
    root = stats_of(d.sock, 0);
    err = at(root, P("redis", "last_error"));
    ck_assert_msg(cJSON_IsString(err) && (strncmp(err->valuestring, "command: ", 9) == 0 ||
                                          strncmp(err->valuestring, "pub/sub: ", 9) == 0),
                  "last_error: %s", cJSON_PrintUnformatted(err));
    ck_assert_int_ge(num(root, P("redis", "last_error_age_ms")), 0);
    ck_assert(cJSON_IsNull(at(root, P("redis", "rtt_us"))));
    cJSON_Delete(root);

    ck_assert_int_eq(fmt_redis_restart(&r), 0);
    await_stat(d.sock, P("redis", "connected"), 1, 1);
    root = stats_of(d.sock, 0);
    ck_assert_int_eq(num(root, P("redis", "reconnects")), 1);
    ck_assert_int_ge(num(root, P("redis", "disconnects")), 1);
    ck_assert(cJSON_IsString(at(root, P("redis", "last_error"))));
    cJSON_Delete(root);
    wire_pair_stop(&r, &d);
}
END_TEST

typedef struct error_want {
    const char *sock;
    const char *needle;
} error_want;

static int last_error_has(void *arg)
{
    const error_want *w = arg;
    cJSON *root = stats_of(w->sock, 0);
    const cJSON *err = find(root, P("redis", "last_error"));
    int has = cJSON_IsString(err) && strstr(err->valuestring, w->needle) != NULL;

    cJSON_Delete(root);
    return has;
}

/* The password rotates in Redis; the daemon's, from its URL, is now
 * wrong. Neither shows in stats, JSON or Prometheus. */
#define OLD_PW "old-pw-7f3a91"
#define NEW_PW "new-pw-c2e6b0"
START_TEST(test_last_error_of_a_wrong_password_holds_no_password)
{
    static char port[16];
    static const char *const redis_args[] = {"--port", port, "--bind", "127.0.0.1", NULL};
    const char *argv[] = {fmt_cli_path(), "-s", NULL, "stats", "--prometheus", "--redis-info",
                          NULL};
    char url[128];
    fmt_redis r;
    fmt_daemon d;
    redisContext *rc;
    error_want w;
    prom_doc doc;
    cJSON *root;
    char *text;
    fmt_proc p;

    snprintf(port, sizeof(port), "%d", fmt_unused_port());
    snprintf(url, sizeof(url), "redis://:%s@127.0.0.1:%s/0", OLD_PW, port);
    /* The harness' readiness PING needs no password: it is set after. */
    ck_assert_int_eq(fmt_redis_start(&r, redis_args), 0);
    rc = wire_redis_open(&r);
    freeReplyObject(wire_redis_ok(rc, "CONFIG SET requirepass %s", OLD_PW));
    wire_daemon_up(&d, url, NULL);
    freeReplyObject(wire_redis_ok(rc, "CONFIG SET requirepass %s", NEW_PW));
    freeReplyObject(wire_redis_ok(rc, "CLIENT KILL TYPE normal"));
    freeReplyObject(wire_redis_ok(rc, "CLIENT KILL TYPE pubsub"));
    w = (error_want){d.sock, "WRONGPASS"};
    ck_assert_msg(fmt_wait_until(last_error_has, &w, WAIT_MS), "no WRONGPASS in last_error");
    root = stats_of(d.sock, 0);
    text = cJSON_PrintUnformatted(root);
    ck_assert_msg(strstr(text, OLD_PW) == NULL && strstr(text, NEW_PW) == NULL,
                  "stats shows a password: %s", text);
    free(text);
    cJSON_Delete(root);

    argv[2] = d.sock;
    ck_assert_int_eq(fmt_run(&p, argv, NULL, NULL, WAIT_MS), 0);
    ck_assert_msg(strstr(p.text[1], OLD_PW) == NULL && strstr(p.text[1], NEW_PW) == NULL,
                  "the metrics show a password: %s", p.text[1]);
    prom_parse(&doc, p.text[1]);
    ck_assert(strstr(p.text[1], "fmredisd_redis_last_error_info{error=\"") != NULL);
    expect_same(&doc, "fmredisd_redis_connected", 0);
    /* Redis could not be asked for its memory: those metrics are left
     * out, not made up, and the rest is still written. */
    ck_assert(!prom_has_type(&doc, "fmredisd_redis_eviction_can_evict_locks", "gauge"));
    ck_assert(!prom_has_type(&doc, "fmredisd_redis_used_memory_bytes", "gauge"));
    prom_free(&doc);
    fmt_proc_free(&p);
    redisFree(rc);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- redis_info ------------------------------------------------------------- */

static int64_t info_memory(redisContext *rc, const char *field)
{
    redisReply *rep = wire_redis_ok(rc, "INFO memory");
    char needle[64];
    const char *at_;
    int64_t v;

    snprintf(needle, sizeof(needle), "\r\n%s:", field);
    at_ = strstr(rep->str, needle);
    ck_assert_msg(at_ != NULL, "INFO memory has no %s", field);
    v = strtoll(at_ + strlen(needle), NULL, 10);
    freeReplyObject(rep);
    return v;
}

/* The warning for the policy now set, or NULL when there is none. */
static char *policy_warning(const char *sock, const char *policy)
{
    cJSON *root = stats_of(sock, 1);
    const cJSON *w = find(root, P("redis_info", "warning"));
    char *copy;

    ck_assert_str_eq(at(root, P("redis_info", "maxmemory_policy"))->valuestring, policy);
    ck_assert(w == NULL || cJSON_IsString(w));
    copy = w != NULL ? strdup(w->valuestring) : NULL;
    cJSON_Delete(root);
    return copy;
}

START_TEST(test_redis_info_matches_info_memory_and_warns_of_evicting_policies)
{
    fmt_redis r;
    fmt_daemon d;
    redisContext *rc;
    int64_t before, after, used;
    cJSON *root;
    char *w;

    wire_pair_start(&r, &d, NULL, NULL);
    rc = wire_redis_open(&r);
    freeReplyObject(wire_redis_ok(rc, "CONFIG SET maxmemory 104857600"));
    freeReplyObject(wire_redis_ok(rc, "CONFIG SET maxmemory-policy noeviction"));
    before = info_memory(rc, "used_memory");
    root = stats_of(d.sock, 1);
    after = info_memory(rc, "used_memory");
    used = num(root, P("redis_info", "used_memory"));
    /* used_memory moves with client buffers between the two reads. */
    ck_assert_msg(used > (before < after ? before : after) - (1 << 20) &&
                      used < (before > after ? before : after) + (1 << 20),
                  "used_memory %lld, INFO said %lld then %lld", (long long)used,
                  (long long)before, (long long)after);
    ck_assert_int_eq(num(root, P("redis_info", "maxmemory")), 104857600);
    ck_assert_int_eq(num(root, P("redis_info", "maxmemory")), info_memory(rc, "maxmemory"));
    cJSON_Delete(root);
    ck_assert_ptr_null(policy_warning(d.sock, "noeviction"));

    freeReplyObject(wire_redis_ok(rc, "CONFIG SET maxmemory-policy allkeys-lru"));
    w = policy_warning(d.sock, "allkeys-lru");
    ck_assert_msg(w != NULL && strstr(w, "allkeys-lru") && strstr(w, "noeviction") &&
                      strstr(w, "fence"), "warning: %s", w);
    free(w);
    /* Lock keys have TTLs: volatile-* policies take them too. */
    freeReplyObject(wire_redis_ok(rc, "CONFIG SET maxmemory-policy volatile-ttl"));
    w = policy_warning(d.sock, "volatile-ttl");
    ck_assert_msg(w != NULL && strstr(w, "TTL") && strstr(w, "noeviction"), "warning: %s", w);
    free(w);
    freeReplyObject(wire_redis_ok(rc, "CONFIG SET maxmemory 0"));
    w = policy_warning(d.sock, "volatile-ttl");
    ck_assert_msg(w != NULL && strstr(w, "maxmemory is 0"), "warning: %s", w);
    free(w);
    redisFree(rc);
    wire_pair_stop(&r, &d);
}
END_TEST

START_TEST(test_redis_info_argument_is_validated_and_stats_answers_without_redis)
{
    fmt_redis r;
    fmt_daemon d;
    cJSON *root;
    int fd;

    /* A short deadline: with Redis down, redis_info waits for it. */
    wire_pair_start(&r, &d, NULL, ARGS("--request_timeout_ms", "300"));
    fd = wire_connect(d.sock);
    wire_expect_error(fd, "{\"op\":\"stats\",\"id\":5,\"redis_info\":\"yes\"}", "bad_request",
                      "5");
    wire_expect_error(fd, "{\"op\":\"stats\",\"id\":6,\"redis_info\":1}", "bad_request", "6");
    root = wire_call(fd, "{\"op\":\"stats\",\"id\":7,\"redis_info\":false}");
    wire_assert_ok(root, "7");
    ck_assert_ptr_null(find(root, P("redis_info")));
    ck_assert_int_eq(num(root, P("ops", "stats", "errors")), 2);
    cJSON_Delete(root);
    /* Redis not answering (stopped, its connection still open): stats
     * answers at the deadline, its redis_info says why it is empty. */
    ck_assert_int_eq(kill(r.pid, SIGSTOP), 0);
    root = wire_call(fd, "{\"op\":\"stats\",\"id\":8,\"redis_info\":true}");
    ck_assert_int_eq(kill(r.pid, SIGCONT), 0);
    wire_assert_ok(root, "8");
    ck_assert_ptr_null(find(root, P("redis_info", "used_memory")));
    ck_assert_ptr_nonnull(strstr(at(root, P("redis_info", "error"))->valuestring, "in time"));
    cJSON_Delete(root);
    /* Redis down: stats still answers (a scrape must tell a Redis outage
     * from a daemon that is gone), with redis_info saying why. */
    fmt_redis_kill(&r);
    await_stat(d.sock, P("redis", "connected"), 0, 0);
    root = wire_call(fd, "{\"op\":\"stats\",\"id\":9,\"redis_info\":true}");
    wire_assert_ok(root, "9");
    ck_assert(cJSON_IsFalse(at(root, P("redis", "connected"))));
    ck_assert_ptr_null(find(root, P("redis_info", "maxmemory_policy")));
    ck_assert_str_eq(at(root, P("redis_info", "error"))->valuestring, "Redis is unavailable");
    cJSON_Delete(root);
    close(fd);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- Prometheus ------------------------------------------------------------ */

static void expect_quantile(const prom_doc *doc, const cJSON *op, const char *q,
                            const char *member)
{
    char series[128];

    snprintf(series, sizeof(series), "fmredisd_op_latency_seconds{op=\"lock.acquire\","
             "quantile=\"%s\"}", q);
    expect_same(doc, series, (double)num(op, P(member)) * 1e-6);
}

START_TEST(test_prometheus_output_is_valid_and_matches_stats)
{
    enum { N = 7 };
    static const char *const families[][2] = {
        {"fmredisd_clients", "gauge"},
        {"fmredisd_locks_held", "gauge"},
        {"fmredisd_locks_auto_extended", "gauge"},
        {"fmredisd_lock_acquires_waiting", "gauge"},
        {"fmredisd_wake_subscribers", "gauge"},
        {"fmredisd_wake_groups", "gauge"},
        {"fmredisd_output_queued_bytes", "gauge"},
        {"fmredisd_redis_connected", "gauge"},
        {"fmredisd_redis_reconnects_total", "counter"},
        {"fmredisd_redis_rtt_seconds", "gauge"},
        {"fmredisd_op_calls_total", "counter"},
        {"fmredisd_op_errors_total", "counter"},
        {"fmredisd_op_latency_seconds", "summary"},
        {"fmredisd_redis_used_memory_bytes", "gauge"},
        {"fmredisd_redis_maxmemory_policy_info", "gauge"},
        {"fmredisd_redis_eviction_can_evict_locks", "gauge"},
    };
    const char *argv[] = {fmt_cli_path(), "-s", NULL, "stats", "--prometheus", "--redis-info",
                          NULL};
    fmt_redis r;
    fmt_daemon d;
    const cJSON *op;
    prom_doc doc;
    cJSON *root;
    fmt_proc p;
    int fd;

    wire_pair_start(&r, &d, NULL, NULL);
    fd = wire_connect(d.sock);
    acquire_many(fd, "prom", N, "");
    wire_expect_error(fd, "{\"op\":\"lock.acquire\",\"id\":9}", "bad_request", "9");
    await_stat(d.sock, P("redis", "rtt_us"), 1, 10 * 1000 * 1000);
    argv[2] = d.sock;
    ck_assert_int_eq(fmt_run(&p, argv, NULL, NULL, WAIT_MS), 0);
    prom_parse(&doc, p.text[1]);
    /* Asked after the CLI's: only the stats counters moved since. */
    root = stats_of(d.sock, 0);
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        ck_assert_msg(prom_has_type(&doc, families[i][0], families[i][1]), "no %s %s",
                      families[i][1], families[i][0]);
    op = at(root, P("ops", "lock.acquire"));
    ck_assert_int_eq(num(op, P("calls")), N + 1);
    expect_same(&doc, "fmredisd_op_calls_total{op=\"lock.acquire\"}", N + 1);
    expect_same(&doc, "fmredisd_op_errors_total{op=\"lock.acquire\"}", 1);
    expect_quantile(&doc, op, "0.5", "p50_us");
    expect_quantile(&doc, op, "0.99", "p99_us");
    expect_quantile(&doc, op, "0.999", "p999_us");
    expect_same(&doc, "fmredisd_op_latency_seconds_count{op=\"lock.acquire\"}",
                (double)num(op, P("latency_count")));
    expect_same(&doc, "fmredisd_op_latency_seconds_sum{op=\"lock.acquire\"}",
                (double)num(op, P("latency_sum_us")) * 1e-6);
    ck_assert(isnan(prom_value(&doc, "fmredisd_op_latency_seconds{op=\"cache.get_many\","
                                     "quantile=\"0.5\"}")));
    expect_same(&doc, "fmredisd_locks_held", N);
    expect_same(&doc, "fmredisd_locks_held", (double)num(root, P("locks_held")));
    expect_same(&doc, "fmredisd_clients", (double)num(root, P("clients")));
    expect_same(&doc, "fmredisd_redis_connected", 1);
    expect_same(&doc, "fmredisd_redis_reconnects_total", 0);
    expect_same(&doc, "fmredisd_redis_commands_total", (double)num(root, P("redis", "commands")));
    ck_assert(prom_value(&doc, "fmredisd_redis_rtt_seconds") > 0);
    expect_same(&doc, "fmredisd_redis_maxmemory_policy_info{policy=\"noeviction\"}", 1);
    expect_same(&doc, "fmredisd_redis_eviction_can_evict_locks", 0);
    prom_free(&doc);
    fmt_proc_free(&p);
    cJSON_Delete(root);
    close(fd);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- the systemd unit -------------------------------------------------- */

/* The value of the unit's first line that starts with key (caller frees),
 * with systemd's $$ turned into the $ the shell gets. */
static char *unit_value(const char *unit, const char *key)
{
    const char *p = strstr(unit, key);
    size_t n;
    char *v, *w;

    ck_assert_msg(p != NULL && (p == unit || p[-1] == '\n'), "the unit has no %s", key);
    p += strlen(key);
    n = strcspn(p, "\n");
    v = strndup(p, n);
    ck_assert(v != NULL);
    for (w = v; (w = strstr(w, "$$")) != NULL; w++)
        memmove(w, w + 1, strlen(w));
    return v;
}

static int exists(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* fmredisd-metrics.service's own command, run as systemd would run it
 * (but in a directory of the test's): the file appears whole, under its
 * name, and goes when the daemon cannot be asked. */
START_TEST(test_metrics_unit_writes_the_textfile_by_rename_and_removes_it_when_down)
{
    char *path = wire_strf("%s/systemd/fmredisd-metrics.service", fmt_srcdir());
    char *unit = fmt_slurp(path), *exec, *dir_env, *rw, *cli = strdup(fmt_cli_path());
    char dir[] = "/tmp/fmtest-textfile.XXXXXX", env_dir[128], env_sock[400], env_path[600];
    const char *env[] = {env_dir, env_sock, env_path, NULL};
    const char *argv[] = {"/bin/sh", "-c", NULL, NULL};
    fmt_redis r;
    fmt_daemon d;
    prom_doc doc;
    fmt_proc p;
    char *prom;

    exec = unit_value(unit, "ExecStart=/bin/sh -c '");
    ck_assert_msg(exec[strlen(exec) - 1] == '\'', "ExecStart does not end in a quote");
    exec[strlen(exec) - 1] = '\0';
    dir_env = unit_value(unit, "Environment=FMREDISD_TEXTFILE_DIR=");
    rw = unit_value(unit, "ReadWritePaths=");
    ck_assert_str_eq(dir_env, rw);
    ck_assert(mkdtemp(dir) != NULL);
    wire_pair_start(&r, &d, NULL, NULL);
    snprintf(env_dir, sizeof(env_dir), "FMREDISD_TEXTFILE_DIR=%s", dir);
    snprintf(env_sock, sizeof(env_sock), "FMREDISD_SOCKET=%s", d.sock);
    /* The fmredis under test, found by name as the unit finds it. */
    *strrchr(cli, '/') = '\0';
    snprintf(env_path, sizeof(env_path), "PATH=%s:/usr/bin:/bin", cli);
    argv[2] = exec;
    ck_assert_int_eq(fmt_run(&p, argv, env, NULL, WAIT_MS), 0);
    fmt_proc_free(&p);
    ck_assert(!exists(dir, "fmredisd.prom.tmp"));
    free(path);
    path = wire_strf("%s/fmredisd.prom", dir);
    prom = fmt_slurp(path);
    prom_parse(&doc, prom);
    ck_assert(prom_value(&doc, "fmredisd_redis_connected") == 1);
    prom_free(&doc);
    free(prom);

    fmt_daemon_stop(&d);
    ck_assert_int_ne(fmt_run(&p, argv, env, NULL, WAIT_MS), 0);
    fmt_proc_free(&p);
    ck_assert(!exists(dir, "fmredisd.prom") && !exists(dir, "fmredisd.prom.tmp"));
    ck_assert_int_eq(rmdir(dir), 0);
    fmt_redis_stop(&r);
    free(exec);
    free(dir_env);
    free(rw);
    free(cli);
    free(unit);
    free(path);
}
END_TEST

Suite *fm_suite_metrics(void)
{
    Suite *s = suite_create("metrics");
    TCase *hist = fmt_tcase(s, "histogram", NULL, NULL, TCASE_TIMEOUT);
    TCase *tc = fmt_tcase(s, "metrics", NULL, NULL, TCASE_TIMEOUT);

    tcase_add_test(hist, test_histogram_quantiles_overstate_by_at_most_a_sixteenth);
    tcase_add_test(hist, test_histogram_window_keeps_two_periods);

    tcase_add_test(tc, test_latency_quantiles_are_ordered_and_count_every_request);
    tcase_add_test(tc, test_latency_of_a_waiting_acquire_covers_its_wait);
    tcase_add_test(tc, test_lock_stats_follow_held_auto_extended_and_waiting_locks);
    tcase_add_test(tc, test_wake_stats_count_channels_subscribers_and_groups);
    tcase_add_test(tc, test_output_queued_counts_what_a_slow_reader_has_not_read);
    tcase_add_test(tc, test_link_stats_count_a_reconnect_and_keep_the_last_error);
    tcase_add_test(tc, test_last_error_of_a_wrong_password_holds_no_password);
    tcase_add_test(tc, test_redis_info_matches_info_memory_and_warns_of_evicting_policies);
    tcase_add_test(tc, test_redis_info_argument_is_validated_and_stats_answers_without_redis);
    tcase_add_test(tc, test_prometheus_output_is_valid_and_matches_stats);
    tcase_add_test(tc, test_metrics_unit_writes_the_textfile_by_rename_and_removes_it_when_down);
    return s;
}
