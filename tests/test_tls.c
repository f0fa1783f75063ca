/* test_tls.c -- the daemon's Redis link over TLS (rediss://), against real
 * redis-servers serving TLS with certificates made for the run
 * (topo_tls.c). Every effect in Redis is read back through Redis's plain
 * Unix socket or plain port, never through the link under test.
 *
 * - ops: every kind of operation through a verified TLS link, each with
 *   its effect in Redis, the operations suite of the other deployments
 *   (ops_suite.c), and a get_many reply of megabytes;
 * - verify: each reason to refuse a server (a private CA the system does
 *   not know, another CA, another name, an expired certificate) named in
 *   ping, stats and the log; the CA from a directory; a name given checked
 *   against the DNS names and sent by SNI; and verification turned off;
 * - mutual: Redis requiring a client certificate, with and without one,
 *   and the key from the service manager's credential;
 * - restart: Redis killed and restarted under TLS;
 * - directives: the TLS directives need a rediss:// URL.
 *
 * Certificates come from an unchecked fixture, so they belong to the
 * runner and are removed after the TCase also when a test failed. Servers
 * a test starts belong to its forked process (see harness.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "fm_tests.h"
#include "fmredis.h"
#include "harness.h"
#include "ops_suite.h"
#include "proc.h"
#include "topo_tls.h"
#include "wire.h"

/* Bounds of waits that hold under valgrind with two CPU hogs beside: a
 * TLS handshake there takes seconds, not milliseconds. */
#define UP_MS 30000         /* both links up, or a refusal seen */
#define WAIT_MS 10000       /* an event, a reply */
#define BIG_MS 60000        /* the megabytes of get_many */
#define RUN_MS 15000        /* fmredisd -t */
#define TCASE_TIMEOUT 180
/* The ops daemon's: an 8 MB reply through TLS under valgrind with CPU hogs
 * beside can take longer than the default 5 s. */
#define OPS_REQUEST_TIMEOUT_MS 60000
#define DIGITS_(n) #n
#define DIGITS(n) DIGITS_(n)

static fmt_tls_certs certs;
static fmt_tls_redis tls_srv;       /* ops and mutual: the TCase's Redis */
static fmt_daemon ops_daemon;       /* ops: verified against certs.ca */

/* ---- the daemon's view -------------------------------------------------- */

static int links_up(void *arg)
{
    const fmt_daemon *d = arg;

    return wire_link_stat(d->sock, "connected") && wire_link_stat(d->sock, "subscriber_connected");
}

static void await_links_up(const fmt_daemon *d)
{
    ck_assert_msg(fmt_wait_until(links_up, (void *)d, UP_MS),
                  "the daemon's command and pub/sub links were not both up within %d ms "
                  "(see %s)", UP_MS, d->log);
}

static int links_down(void *arg)
{
    const fmt_daemon *d = arg;

    return !wire_link_stat(d->sock, "connected") && !wire_link_stat(d->sock, "subscriber_connected");
}

/* A daemon on url with extra, once both its links are up. */
static void daemon_up(fmt_daemon *d, const char *url, const char *const *extra)
{
    wire_daemon_start(d, url, extra);
    await_links_up(d);
}

/* The reply (malloc'd text) to a ping with a round trip to Redis, or NULL.
 * Never fails the test: it serves as a condition. */
static char *ping_text(const char *sock)
{
    static const char req[] = "{\"op\":\"ping\",\"id\":1,\"redis\":true}";
    int fd = fmt_raw_connect(sock);
    char *text = NULL;

    if (fd < 0)
        return NULL;
    if (fmt_raw_send(fd, req, sizeof(req) - 1) == 0)
        text = fmt_raw_recv(fd, WAIT_MS, NULL);
    close(fd);
    return text;
}

typedef struct refusal {
    const char *sock;
    const char *words;
    char seen[800];         /* the last ping's reply, for a failure message */
} refusal;

/* The ping says "down", with words in its redis_error. */
static int ping_refused(void *arg)
{
    refusal *rf = arg;
    char *text = ping_text(rf->sock);
    cJSON *j = text != NULL ? cJSON_Parse(text) : NULL;
    const char *redis = wire_str(j, "redis"), *why = wire_str(j, "redis_error");
    int yes = redis != NULL && strcmp(redis, "down") == 0 && why != NULL &&
              strstr(why, rf->words) != NULL;

    snprintf(rf->seen, sizeof(rf->seen), "%s", text != NULL ? text : "(no reply)");
    cJSON_Delete(j);
    free(text);
    return yes;
}

/* The daemon's "redis" stats object (caller deletes). */
static cJSON *link_stats(const fmt_daemon *d)
{
    int fd = wire_connect(d->sock);
    cJSON *r = wire_call(fd, "{\"op\":\"stats\",\"id\":\"stats\"}"), *link;

    wire_assert_ok(r, "\"stats\"");
    link = cJSON_DetachItemFromObjectCaseSensitive(r, "redis");
    ck_assert_msg(cJSON_IsObject(link), "stats without a redis object");
    cJSON_Delete(r);
    close(fd);
    return link;
}

/* The daemon cannot use Redis and says why, with words, in a ping with a
 * round trip, in stats' last error and in its log. */
static void assert_refused(const fmt_daemon *d, const char *words)
{
    refusal rf = {d->sock, words, ""};
    cJSON *link;
    const char *last;
    char *log;

    ck_assert_msg(fmt_wait_until(ping_refused, &rf, UP_MS),
                  "within %d ms, ping did not say down with \"%s\"; the last reply: %s", UP_MS,
                  words, rf.seen);
    link = link_stats(d);
    ck_assert_msg(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(link, "connected")),
                  "stats says the command link is connected");
    last = wire_str(link, "last_error");
    ck_assert_msg(last != NULL && strstr(last, words) != NULL,
                  "stats' last_error lacks \"%s\": %s", words, last ? last : "null");
    cJSON_Delete(link);
    log = fmt_slurp(d->log);
    ck_assert_msg(strstr(log, words) != NULL, "the log lacks \"%s\":\n%s", words, log);
    free(log);
}

/* A daemon with extra against a TLS Redis presenting cert is refused,
 * saying words. */
static void assert_cert_refused(fmt_tls_cert cert, const char *const *extra, const char *words)
{
    fmt_tls_redis t;
    fmt_daemon d;

    fmt_tls_redis_start(&t, &certs, cert, 0);
    wire_daemon_start(&d, t.url, extra);
    assert_refused(&d, words);
    fmt_daemon_stop(&d);
    fmt_redis_stop(&t.r);
}

/* Whether the log has a line holding both a and b. */
static int log_line_holds(const char *path, const char *a, const char *b)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int found = 0;

    ck_assert_msg(f != NULL, "no log at %s", path);
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, a) != NULL && strstr(line, b) != NULL;
    fclose(f);
    return found;
}

/* ---- Redis's side ------------------------------------------------------- */

/* Asserts lo < PTTL(key) <= hi. */
static void assert_pttl_in(redisContext *r, const char *key, long long lo, long long hi)
{
    long long pttl = wire_redis_int(r, "PTTL %s", key);

    ck_assert_msg(pttl > lo && pttl <= hi, "PTTL %s = %lld, want in (%lld, %lld]", key, pttl,
                  lo, hi);
}

/* got[0..glen) is want[0..wlen), byte for byte; a failure names the first
 * byte that differs rather than printing megabytes. */
static void assert_same_bytes(const char *what, const char *got, size_t glen, const char *want,
                              size_t wlen)
{
    size_t at = 0;

    while (at < glen && at < wlen && got[at] == want[at])
        at++;
    ck_assert_msg(glen == wlen && at == wlen, "%s: %zu bytes, want %zu; first difference at "
                  "byte %zu", what, glen, wlen, at);
}

/* ---- operations, each with its effect in Redis ---------------------------- */

/* A lock taken through the daemon on d is in Redis srv with its token. */
static void assert_lock_lands(const fmt_daemon *d, const fmt_redis *srv, const char *key)
{
    fm_client *c = fmt_client(d);
    redisContext *r = wire_redis_open(srv);
    char *rkey = wire_strf("fm:lock:%s", key);
    fm_lock lk = wire_lock_take(c, key, 30000);

    wire_assert_redis_value(r, rkey, lk.token);
    free(rkey);
    redisFree(r);
    fm_client_free(c);
}

/* The next event on c is a wake of id on channel; "redis" events (the
 * link going down and up) before it are passed over. */
static void expect_wake(fm_client *c, const char *channel, const char *id)
{
    fm_event e;

    for (;;) {
        fmt_ok(c, fm_event_wait(c, &e, WAIT_MS), "waiting for a wake");
        if (e.type != FM_EVENT_REDIS)
            break;
        fm_event_clear(&e);
    }
    ck_assert_msg(e.type == FM_EVENT_WAKE, "event %s is not a wake", e.json);
    ck_assert_str_eq(e.channel, channel);
    ck_assert_str_eq(e.execution_id, id);
    fm_event_clear(&e);
}

static void subscribe(fm_client *c, const char *channel)
{
    char got[FM_STR_MAX + 1];

    fmt_ok(c, fm_wake_subscribe(c, channel, NULL, got, sizeof(got)), "wake.subscribe");
    ck_assert_str_eq(got, channel);
}

/* ---- fixtures ------------------------------------------------------------ */

static void certs_up(void)
{
    fmt_tls_certs_make(&certs);
}

static void certs_down(void)
{
    fmt_tls_certs_remove(&certs);
}

static void ops_up(void)
{
    const char *const extra[] = {"--redis_tls_ca_file", certs.ca,
                                 "--request_timeout_ms", DIGITS(OPS_REQUEST_TIMEOUT_MS), NULL};

    certs_up();
    fmt_tls_redis_start(&tls_srv, &certs, FMT_TLS_GOOD, 0);
    daemon_up(&ops_daemon, tls_srv.url, extra);
}

static void ops_down(void)
{
    fmt_daemon_stop(&ops_daemon);
    fmt_redis_stop(&tls_srv.r);
    certs_down();
}

static void mutual_up(void)
{
    certs_up();
    fmt_tls_redis_start(&tls_srv, &certs, FMT_TLS_GOOD, 1);
}

static void mutual_down(void)
{
    fmt_redis_stop(&tls_srv.r);
    certs_down();
}

/* ---- ops ------------------------------------------------------------------- */

START_TEST(test_lock_acquire_through_tls_sets_key_with_token_and_ttl)
{
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);
    fm_lock lk = wire_lock_take(c, "tls-acquire", 30000);

    wire_assert_redis_value(r, "fm:lock:tls-acquire", lk.token);
    assert_pttl_in(r, "fm:lock:tls-acquire", 29000, 30000);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_extend_through_tls_sets_the_new_ttl)
{
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);
    fm_lock lk = wire_lock_take(c, "tls-extend", 10000);
    int extended = -1;

    fmt_ok(c, fm_lock_extend(c, "tls-extend", lk.token, 60000, &extended), "lock.extend");
    ck_assert_int_eq(extended, 1);
    wire_assert_redis_value(r, "fm:lock:tls-extend", lk.token);
    assert_pttl_in(r, "fm:lock:tls-extend", 59000, 60000);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_release_through_tls_deletes_key_and_announces_it)
{
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);
    redisContext *sub = wire_sub_open(&tls_srv.r, "fm:lock:released");
    fm_lock lk = wire_lock_take(c, "tls-release", 30000);
    fm_release_reason why;
    int released = -1;
    char *payload = NULL;

    fmt_ok(c, fm_lock_release(c, "tls-release", lk.token, &released, &why), "lock.release");
    ck_assert_int_eq(released, 1);
    ck_assert_int_eq(why, FM_RELEASE_DONE);
    ck_assert_int_eq(wire_redis_int(r, "EXISTS fm:lock:tls-release"), 0);
    /* Locks of earlier tests, whose clients closed, may be announced
     * first: the daemon releases those too. */
    do {
        free(payload);
        payload = wire_sub_next(sub, "fm:lock:released");
    } while (strcmp(payload, "fm:lock:tls-release") != 0);
    free(payload);
    redisFree(sub);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_wake_signal_through_tls_publishes_node_payload)
{
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *sub = wire_sub_open(&tls_srv.r, "tls:signal");
    int64_t receivers = -1;
    char *payload;

    fmt_ok(c, fm_wake_signal(c, "tls-signal-1", "tls:signal", &receivers), "wake.signal");
    ck_assert_int_eq(receivers, 1);
    payload = wire_sub_next(sub, "tls:signal");
    wire_assert_wake_payload(payload, "tls-signal-1");
    free(payload);
    redisFree(sub);
    fm_client_free(c);
}
END_TEST

/* The subscription reaches Redis over the TLS pub/sub link, and what
 * Redis publishes (by another client, or by the daemon's own signal)
 * comes back through it. */
START_TEST(test_wake_subscribe_through_tls_delivers_what_redis_publishes)
{
    fm_client *sub = fmt_client(&ops_daemon), *pub = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);

    subscribe(sub, "tls:deliver");
    ck_assert_msg(wire_numsub_becomes(r, "tls:deliver", 1, WAIT_MS),
                  "Redis never counted the daemon's subscription to tls:deliver");
    freeReplyObject(wire_redis_ok(r, "PUBLISH tls:deliver %s",
                                  "{\"executionId\":\"tls-from-redis\",\"timestamp\":1}"));
    expect_wake(sub, "tls:deliver", "tls-from-redis");
    fmt_ok(pub, fm_wake_signal(pub, "tls-from-daemon", "tls:deliver", NULL), "wake.signal");
    expect_wake(sub, "tls:deliver", "tls-from-daemon");
    redisFree(r);
    fm_client_free(pub);
    fm_client_free(sub);
}
END_TEST

#define EXEC_SET "{\"id\":\"tls-set\",\"big\":12345678901234567890,\"f\":1.0,\"u\":\"\\u00e9\"}"

START_TEST(test_cache_set_through_tls_stores_exact_text_with_ttl)
{
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);

    fmt_ok(c, fm_cache_set(c, EXEC_SET, strlen(EXEC_SET), 45000), "cache.set");
    wire_assert_redis_value(r, "fm:exec:tls-set", EXEC_SET);
    assert_pttl_in(r, "fm:exec:tls-set", 44000, 45000);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

#define EXEC_GET "{\"id\":\"tls-get\",\"n\":1.50e3,\"s\":\"caf\xc3\xa9\"}"

/* Written by Redis itself, so that only the read crosses the link. */
START_TEST(test_cache_get_through_tls_returns_exact_text_from_redis)
{
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);
    char *json = NULL;
    size_t len = 0;

    freeReplyObject(wire_redis_ok(r, "SET fm:exec:tls-get %s", EXEC_GET));
    fmt_ok(c, fm_cache_get(c, "tls-get", &json, &len), "cache.get");
    ck_assert_ptr_nonnull(json);
    assert_same_bytes("cache.get tls-get", json, len, EXEC_GET, strlen(EXEC_GET));
    free(json);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_get_many_through_tls_returns_the_hits)
{
    static const char *const ids[] = {"tls-gm-a", "tls-gm-missing", "tls-gm-b"};
    static const char *const execs[] = {"{\"id\":\"tls-gm-a\",\"v\":[true,null]}",
                                        "{\"id\":\"tls-gm-b\",\"v\":1.0}"};
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);
    fm_cache_entry *e = NULL;
    size_t n = 0;

    freeReplyObject(wire_redis_ok(r, "SET fm:exec:tls-gm-a %s", execs[0]));
    freeReplyObject(wire_redis_ok(r, "SET fm:exec:tls-gm-b %s", execs[1]));
    fmt_ok(c, fm_cache_get_many(c, ids, 3, &e, &n), "cache.get_many");
    ck_assert_uint_eq(n, 2);
    /* This version sorts the hits by id. */
    ck_assert_str_eq(e[0].id, "tls-gm-a");
    ck_assert_str_eq(e[0].json, execs[0]);
    ck_assert_str_eq(e[1].id, "tls-gm-b");
    ck_assert_str_eq(e[1].json, execs[1]);
    fm_cache_entries_free(e, n);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_invalidate_through_tls_deletes_key)
{
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);

    freeReplyObject(wire_redis_ok(r, "SET fm:exec:tls-inv {\"id\":\"tls-inv\"}"));
    fmt_ok(c, fm_cache_invalidate(c, "tls-inv"), "cache.invalidate");
    ck_assert_int_eq(wire_redis_int(r, "EXISTS fm:exec:tls-inv"), 0);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

/* The operations suite's view of the one Redis (ops_suite.h): every key
 * there, read over its plain port. */
static int plain_port_of(void *arg, const char *rkey)
{
    (void)rkey;
    return ((const fmt_tls_redis *)arg)->plain_port;
}

static long long subscribers_of(void *arg, const char *channel)
{
    redisContext *r = wire_redis_open(&((const fmt_tls_redis *)arg)->r);
    long long n = wire_redis_numsub(r, channel);

    redisFree(r);
    return n;
}

/* The suite test_sentinel.c and test_cluster_ops.c run, through TLS. */
START_TEST(test_operations_suite_through_tls)
{
    const ops_redis r = {.port_of = plain_port_of, .subscribers = subscribers_of,
                         .arg = &tls_srv, .masters = 1, .min_receivers = 1,
                         .request_timeout_ms = OPS_REQUEST_TIMEOUT_MS};

    ops_suite_run(&ops_daemon, &r);
}
END_TEST

#define BIG_N 40
#define BIG_PAD 200000      /* bytes of padding in each: 8 MB in all */

/* Execution i of the big batch: its id, and padding that differs at every
 * byte from entry to entry, so that a lost, repeated or misplaced TLS
 * record shows. */
static char *big_execution(int i, size_t *len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char head[64], *text;
    int n = snprintf(head, sizeof(head), "{\"id\":\"tls-big-%02d\",\"pad\":\"", i);
    uint32_t x = 2654435761u * (uint32_t)(i + 1);

    *len = (size_t)n + BIG_PAD + 2;
    text = malloc(*len + 1);
    ck_assert_ptr_nonnull(text);
    memcpy(text, head, (size_t)n);
    for (size_t k = 0; k < BIG_PAD; k++) {
        x = x * 1103515245u + 12345u;
        text[(size_t)n + k] = abc[(x >> 16) & 63];
    }
    memcpy(text + n + BIG_PAD, "\"}", 3);
    return text;
}

/* Each execution is written through the daemon (megabytes over the TLS
 * link one way) and checked in Redis; one get_many brings all of them back
 * in one reply (the other way). max_frame_bytes bounds only requests: each
 * cache.set stays below its default of 1 MiB, and the reply may exceed it. */
START_TEST(test_cache_get_many_of_8_mb_through_tls_arrives_byte_for_byte)
{
    fm_client *c = fmt_client(&ops_daemon);
    redisContext *r = wire_redis_open(&tls_srv.r);
    char ids[BIG_N][24], *execs[BIG_N];
    const char *idp[BIG_N];
    size_t lens[BIG_N], n = 0, total = 0;
    fm_cache_entry *e = NULL;

    fm_client_set_timeout(c, BIG_MS);
    for (int i = 0; i < BIG_N; i++) {
        char *key, *stored;
        size_t slen = 0;

        snprintf(ids[i], sizeof(ids[i]), "tls-big-%02d", i);
        idp[i] = ids[i];
        execs[i] = big_execution(i, &lens[i]);
        fmt_ok(c, fm_cache_set(c, execs[i], lens[i], 3600000), "cache.set of 200 KB");
        key = wire_strf("fm:exec:%s", ids[i]);
        stored = wire_redis_get(r, key, &slen);
        ck_assert_msg(stored != NULL, "%s missing in Redis", key);
        assert_same_bytes(key, stored, slen, execs[i], lens[i]);
        free(stored);
        free(key);
    }
    fmt_ok(c, fm_cache_get_many(c, idp, BIG_N, &e, &n), "cache.get_many of 8 MB");
    ck_assert_uint_eq(n, BIG_N);
    for (int i = 0; i < BIG_N; i++) {
        /* Sorted by id, as this version answers. */
        ck_assert_str_eq(e[i].id, ids[i]);
        assert_same_bytes(ids[i], e[i].json, e[i].len, execs[i], lens[i]);
        total += e[i].len;
        free(execs[i]);
    }
    ck_assert_uint_gt(total, (size_t)BIG_N * BIG_PAD);
    fm_cache_entries_free(e, n);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

/* ---- verify ------------------------------------------------------------------ */

/* Without redis_tls_ca_file the system's CA store is used, and it does
 * not know the run's private CA: verification is on by default. (Redis
 * sends the private root along: OpenSSL says "self-signed certificate in
 * certificate chain".) */
START_TEST(test_without_a_ca_file_a_private_ca_is_refused_as_unknown_ca)
{
    assert_cert_refused(FMT_TLS_GOOD, NULL, "unknown CA");
}
END_TEST

/* A server certificate sent without its CA, as most servers send theirs:
 * OpenSSL says "unable to get local issuer certificate". */
START_TEST(test_server_cert_from_another_ca_is_refused_as_unknown_ca)
{
    assert_cert_refused(FMT_TLS_OTHER_CA, (const char *const[]){"--redis_tls_ca_file", certs.ca, NULL},
                        "unknown CA");
}
END_TEST

START_TEST(test_wrong_server_name_is_refused_as_name_mismatch)
{
    assert_cert_refused(FMT_TLS_GOOD, (const char *const[]){"--redis_tls_ca_file", certs.ca,
                        "--redis_tls_server_name", "wrong.example", NULL}, "name mismatch");
}
END_TEST

START_TEST(test_expired_server_cert_is_refused_as_expired)
{
    assert_cert_refused(FMT_TLS_EXPIRED, (const char *const[]){"--redis_tls_ca_file", certs.ca, NULL},
                        "expired");
}
END_TEST

START_TEST(test_ca_dir_holding_the_ca_verifies_the_server)
{
    fmt_tls_redis t;
    fmt_daemon d;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_GOOD, 0);
    daemon_up(&d, t.url, (const char *const[]){"--redis_tls_ca_dir", certs.ca_dir, NULL});
    assert_lock_lands(&d, &t.r, "tls-ca-dir");
    fmt_daemon_stop(&d);
    fmt_redis_stop(&t.r);
}
END_TEST

/* The URL's host is an IP; the name given instead is checked against the
 * certificate's DNS names, where localhost stands. */
START_TEST(test_server_name_localhost_is_matched_against_the_dns_names)
{
    fmt_tls_redis t;
    fmt_daemon d;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_GOOD, 0);
    daemon_up(&d, t.url, (const char *const[]){"--redis_tls_ca_file", certs.ca,
                                                "--redis_tls_server_name", "localhost", NULL});
    assert_lock_lands(&d, &t.r, "tls-by-name");
    fmt_daemon_stop(&d);
    fmt_redis_stop(&t.r);
}
END_TEST

/* The server presents the certificate made for localhost only to a
 * client that asks for that name by SNI, another CA's otherwise: without
 * the name the daemon refuses it; with it, the handshake completes. */
START_TEST(test_server_name_is_sent_as_sni)
{
    const char *const unnamed[] = {"--redis_tls_ca_file", certs.ca, NULL};
    const char *const named[] = {"--redis_tls_ca_file", certs.ca, "--redis_tls_server_name",
                                 "localhost", NULL};
    fmt_tls_sni_server s;
    fmt_daemon d;
    wire_log_wait w;

    fmt_tls_sni_server_start(&s, &certs);
    w.path = s.log;
    w.needle = "CONNECTION ESTABLISHED";
    wire_daemon_start(&d, s.url, unnamed);
    assert_refused(&d, "unknown CA");
    fmt_daemon_stop(&d);
    ck_assert_msg(!wire_log_holds(&w), "a refused handshake was logged as completed (see %s)", s.log);
    wire_daemon_start(&d, s.url, named);
    ck_assert_msg(fmt_wait_until(wire_log_holds, &w, UP_MS), "no handshake completed with the name "
                  "localhost sent (see %s)", s.log);
    fmt_daemon_stop(&d);
    fmt_tls_sni_server_stop(&s);
}
END_TEST

/* No CA file, a certificate of an unknown CA: only the switch lets the
 * daemon in, and each start says so in a warning. */
START_TEST(test_verify_no_connects_to_another_ca_and_warns_at_every_start)
{
    const char *const extra[] = {"--redis_tls_verify", "no", NULL};
    fmt_tls_redis t;
    fmt_daemon d;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_OTHER_CA, 0);
    for (int start = 0; start < 2; start++) {
        daemon_up(&d, t.url, extra);
        assert_lock_lands(&d, &t.r, start == 0 ? "tls-unverified-1" : "tls-unverified-2");
        ck_assert_msg(log_line_holds(d.log, ": warn: ", "redis_tls_verify no"),
                      "start %d: no warning line with \"redis_tls_verify no\" in %s", start + 1,
                      d.log);
        fmt_daemon_stop(&d);
    }
    fmt_redis_stop(&t.r);
}
END_TEST

/* ---- mutual -------------------------------------------------------------------- */

START_TEST(test_client_cert_from_files_is_taken_by_redis_requiring_one)
{
    fmt_daemon d;

    daemon_up(&d, tls_srv.url, (const char *const[]){"--redis_tls_ca_file", certs.ca,
                                                      "--redis_tls_cert_file", certs.client_cert,
                                                      "--redis_tls_key_file", certs.client_key,
                                                      NULL});
    assert_lock_lands(&d, &tls_srv.r, "tls-mutual-files");
    fmt_daemon_stop(&d);
}
END_TEST

/* Handshakes Redis refused so far, by its log: Redis counts a connection
 * in total_connections_received only once its handshake succeeded. */
static int refused_handshakes(const fmt_redis *srv)
{
    char *path = wire_strf("%s/redis.log", srv->dir), *log = fmt_slurp(path);
    int n = 0;

    for (const char *p = log; (p = strstr(p, "Error accepting a client connection")) != NULL; p++)
        n++;
    free(log);
    free(path);
    return n;
}

typedef struct retries {
    const fmt_redis *srv;
    int from;
    const char *sock;
    int seen_up;
} retries;

#define RETRIES 4

/* Redis refused RETRIES more handshakes; meanwhile no ping said up. */
static int retried(void *arg)
{
    retries *rt = arg;
    char *text = ping_text(rt->sock);

    rt->seen_up |= text != NULL && strstr(text, "\"redis\":\"up\"") != NULL;
    free(text);
    return refused_handshakes(rt->srv) >= rt->from + RETRIES;
}

/* Redis ends the session (with TLS 1.3, after the daemon already sent its
 * first command): its alert says "certificate required", or is lost in the
 * reset and the daemon says the server may require a client certificate.
 * Either way the word "certificate" is there. The daemon stays down and
 * keeps trying. */
START_TEST(test_without_a_client_cert_the_daemon_stays_down_and_retries)
{
    const char *const extra[] = {"--redis_tls_ca_file", certs.ca, "--reconnect_max_ms", "200",
                                 NULL};
    retries rt = {&tls_srv.r, 0, NULL, 0};
    fmt_daemon d;
    char *text;

    wire_daemon_start(&d, tls_srv.url, extra);
    assert_refused(&d, "certificate");
    rt.from = refused_handshakes(&tls_srv.r);
    rt.sock = d.sock;
    ck_assert_msg(fmt_wait_until(retried, &rt, UP_MS), "Redis refused fewer than %d more "
                  "handshakes within %d ms", RETRIES, UP_MS);
    ck_assert_msg(!rt.seen_up, "a ping said Redis was up without a client certificate");
    text = ping_text(d.sock);
    ck_assert_msg(text != NULL && strstr(text, "\"redis\":\"down\"") != NULL &&
                  strstr(text, "certificate") != NULL, "after the retries, ping says %s",
                  text ? text : "(nothing)");
    free(text);
    fmt_daemon_stop(&d);
}
END_TEST

/* Copies the file from to to, mode 0600. */
static void copy_file(const char *from, const char *to)
{
    char *text = fmt_slurp(from);
    FILE *f = fopen(to, "w");

    ck_assert_msg(f != NULL, "cannot write %s", to);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(to, 0600), 0);
    free(text);
}

/* The key in $CREDENTIALS_DIRECTORY/redis-tls-key wins over
 * redis_tls_key_file, which names a key that does not fit the
 * certificate, as the password credential wins over redis_password_file. */
START_TEST(test_client_key_from_the_credentials_directory_wins)
{
    char *creds = wire_strf("%s/creds", certs.dir), *key = wire_strf("%s/redis-tls-key", creds);
    char *env = wire_strf("CREDENTIALS_DIRECTORY=%s", creds);
    fmt_daemon d;

    ck_assert_int_eq(mkdir(creds, 0700), 0);
    copy_file(certs.client_key, key);
    ck_assert_int_eq(fmt_daemon_start_as(&d, tls_srv.url,
                                         (const char *const[]){"--redis_tls_ca_file", certs.ca,
                                                               "--redis_tls_cert_file",
                                                               certs.client_cert,
                                                               "--redis_tls_key_file",
                                                               certs.other_key, NULL},
                                         &(fmt_daemon_opts){.env = (const char *const[]){env,
                                                                                         NULL},
                                                            .listen_fd = -1}), 0);
    await_links_up(&d);
    assert_lock_lands(&d, &tls_srv.r, "tls-mutual-credential");
    fmt_daemon_stop(&d);
    free(env);
    free(key);
    free(creds);
}
END_TEST

/* ---- restart ------------------------------------------------------------------- */

/* A subscription made before the kill is in Redis again after the
 * restart and delivers; a lock can be taken again. */
START_TEST(test_redis_killed_and_restarted_under_tls_daemon_reconnects_and_resubscribes)
{
    fmt_tls_redis t;
    fmt_daemon d;
    fm_client *sub, *pub;
    redisContext *r;
    int64_t receivers = -1;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_GOOD, 0);
    daemon_up(&d, t.url, (const char *const[]){"--redis_tls_ca_file", certs.ca, NULL});
    sub = fmt_client(&d);
    subscribe(sub, "tls:restart");
    r = wire_redis_open(&t.r);
    ck_assert(wire_numsub_becomes(r, "tls:restart", 1, WAIT_MS));
    redisFree(r);

    fmt_redis_kill(&t.r);
    ck_assert_msg(fmt_wait_until(links_down, &d, UP_MS),
                  "the daemon did not notice that Redis went away");
    ck_assert_msg(fmt_redis_restart(&t.r) == 0, "redis-server did not restart");
    await_links_up(&d);
    r = wire_redis_open(&t.r);
    ck_assert_msg(wire_numsub_becomes(r, "tls:restart", 1, UP_MS),
                  "the daemon did not subscribe to tls:restart again");
    redisFree(r);

    pub = fmt_client(&d);
    fmt_ok(pub, fm_wake_signal(pub, "tls-after-restart", "tls:restart", &receivers),
           "wake.signal");
    ck_assert_int_eq(receivers, 1);
    expect_wake(sub, "tls:restart", "tls-after-restart");
    assert_lock_lands(&d, &t.r, "tls-after-restart");
    fm_client_free(pub);
    fm_client_free(sub);
    fmt_daemon_stop(&d);
    fmt_redis_stop(&t.r);
}
END_TEST

/* ---- directives ------------------------------------------------------------------ */

/* fmredisd -t with redis_url url and args: its status; its output (both
 * streams) in out (caller frees). */
static int check_config(const char *url, const char *const *args, char **out)
{
    const char *argv[16] = {fmt_daemon_path(), "-t", "--redis_url", url};
    int n = 4, rc;
    fmt_proc p;

    for (int i = 0; args[i] != NULL; i++) {
        ck_assert_int_lt(n, 15);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    rc = fmt_run(&p, argv, NULL, NULL, RUN_MS);
    *out = wire_strf("%s%s", p.text[1] ? p.text[1] : "", p.text[2] ? p.text[2] : "");
    fmt_proc_free(&p);
    return rc;
}

/* Each directive (a client certificate comes with its key) passes the
 * check with a rediss:// URL and is refused, by name, with a redis:// one:
 * by the check, and by a start. */
START_TEST(test_tls_directives_without_a_rediss_url_are_refused_by_name)
{
    const char *const cases[][5] = {
        {"--redis_tls_ca_file", certs.ca, NULL},
        {"--redis_tls_ca_dir", certs.ca_dir, NULL},
        {"--redis_tls_server_name", "localhost", NULL},
        {"--redis_tls_verify", "no", NULL},
        {"--redis_tls_cert_file", certs.client_cert, "--redis_tls_key_file", certs.client_key,
         NULL},
    };
    fmt_daemon d;
    char *out, *log;

    unsetenv("REDIS_URL");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *name = cases[i][0] + 2, *pair = cases[i][2] ? cases[i][2] + 2 : NULL;
        int rc = check_config("rediss://127.0.0.1:6379", cases[i], &out);

        ck_assert_msg(rc == 0, "-t refused %s with rediss:// (%d): %s", name, rc, out);
        free(out);
        rc = check_config("redis://127.0.0.1:6379", cases[i], &out);
        ck_assert_msg(rc != 0, "-t accepted %s with redis://", name);
        ck_assert_msg(strstr(out, name) != NULL || (pair != NULL && strstr(out, pair) != NULL),
                      "-t refused %s without naming it: %s", name, out);
        free(out);
    }
    ck_assert_msg(fmt_daemon_start(&d, "redis://127.0.0.1:6379", cases[0]) != 0,
                  "fmredisd started with redis_tls_ca_file and a redis:// URL");
    log = fmt_slurp(d.log);
    ck_assert_msg(strstr(log, "redis_tls_ca_file") != NULL,
                  "the refused start does not name redis_tls_ca_file:\n%s", log);
    free(log);
    fmt_daemon_stop(&d);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------ */

Suite *fm_suite_tls(void)
{
    Suite *s = suite_create("tls");
    TCase *ops = fmt_tcase(s, "ops", ops_up, ops_down, TCASE_TIMEOUT);
    TCase *verify = fmt_tcase(s, "verify", certs_up, certs_down, TCASE_TIMEOUT);
    TCase *mutual = fmt_tcase(s, "mutual", mutual_up, mutual_down, TCASE_TIMEOUT);
    TCase *restart = fmt_tcase(s, "restart", certs_up, certs_down, TCASE_TIMEOUT);
    TCase *directives = fmt_tcase(s, "directives", certs_up, certs_down, TCASE_TIMEOUT);

    tcase_add_test(ops, test_lock_acquire_through_tls_sets_key_with_token_and_ttl);
    tcase_add_test(ops, test_lock_extend_through_tls_sets_the_new_ttl);
    tcase_add_test(ops, test_lock_release_through_tls_deletes_key_and_announces_it);
    tcase_add_test(ops, test_wake_signal_through_tls_publishes_node_payload);
    tcase_add_test(ops, test_wake_subscribe_through_tls_delivers_what_redis_publishes);
    tcase_add_test(ops, test_cache_set_through_tls_stores_exact_text_with_ttl);
    tcase_add_test(ops, test_cache_get_through_tls_returns_exact_text_from_redis);
    tcase_add_test(ops, test_cache_get_many_through_tls_returns_the_hits);
    tcase_add_test(ops, test_cache_invalidate_through_tls_deletes_key);
    tcase_add_test(ops, test_cache_get_many_of_8_mb_through_tls_arrives_byte_for_byte);
    tcase_add_test(ops, test_operations_suite_through_tls);

    tcase_add_test(verify, test_without_a_ca_file_a_private_ca_is_refused_as_unknown_ca);
    tcase_add_test(verify, test_server_cert_from_another_ca_is_refused_as_unknown_ca);
    tcase_add_test(verify, test_wrong_server_name_is_refused_as_name_mismatch);
    tcase_add_test(verify, test_expired_server_cert_is_refused_as_expired);
    tcase_add_test(verify, test_ca_dir_holding_the_ca_verifies_the_server);
    tcase_add_test(verify, test_server_name_localhost_is_matched_against_the_dns_names);
    tcase_add_test(verify, test_server_name_is_sent_as_sni);
    tcase_add_test(verify, test_verify_no_connects_to_another_ca_and_warns_at_every_start);

    tcase_add_test(mutual, test_client_cert_from_files_is_taken_by_redis_requiring_one);
    tcase_add_test(mutual, test_without_a_client_cert_the_daemon_stays_down_and_retries);
    tcase_add_test(mutual, test_client_key_from_the_credentials_directory_wins);

    tcase_add_test(restart,
                   test_redis_killed_and_restarted_under_tls_daemon_reconnects_and_resubscribes);

    tcase_add_test(directives, test_tls_directives_without_a_rediss_url_are_refused_by_name);
    return s;
}
