/* test_compat.c -- one Redis shared with the published @flowmonkey/redis
 * code (packages/redis of the FlowMonkey repository, on node-redis v4).
 *
 * The pub_ functions send exactly what that code sends, command for
 * command, and read the replies as it does (JSON.parse included: a value it
 * cannot parse makes its release and extend throw, reported here as
 * PUB_THROWS). The daemon runs with `compat flowmonkey-published`: the
 * names lock:, exec: and flowmonkey:wake, and lock_value_format
 * flowmonkey-json. Each behaviour is checked in both directions, with what
 * lands in Redis. A second case runs the daemon with the same names but
 * token values: its scripts still read the JSON value, so the format can
 * change (SIGHUP) while locks are held. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <cJSON.h>

#include "fm_tests.h"
#include "harness.h"
#include "scripts.h"
#include "wire.h"

#define WAIT_MS 5000
#define SHORT_TTL 150           /* a lock left to expire */

static fmt_redis redis_srv;
static fmt_daemon daemon_fm;

static void pair_up(const char *const *extra)
{
    wire_pair_start(&redis_srv, &daemon_fm, NULL, extra);
}

static void published_up(void)
{
    pair_up((const char *const[]){"--compat", "flowmonkey-published", NULL});
}

/* The published names, with fmredisd's own lock value. */
static void token_up(void)
{
    pair_up((const char *const[]){"--compat", "flowmonkey-published", "--lock_value_format",
                                  "token", NULL});
}

static void pair_down(void)
{
    wire_pair_stop(&redis_srv, &daemon_fm);
}

/* ---- the published code ------------------------------------------------- */

typedef enum { PUB_FALSE, PUB_TRUE, PUB_THROWS } pub_result;

/* crypto.randomUUID(): a version 4 UUID. */
static char *pub_uuid(void)
{
    unsigned char b[16];

    ck_assert_int_eq(getrandom(b, sizeof(b), 0), (ssize_t)sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    return wire_strf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                     b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                     b[12], b[13], b[14], b[15]);
}

/* acquire(key, ttl?): SET lock:<key> {"owner","expiresAt"} [PX ttl] NX, one
 * attempt; no TTL at all when none is given. The owner (malloc'd), or NULL
 * when the lock is held. */
static char *pub_acquire(redisContext *r, const char *key, long long ttl)
{
    char *owner = pub_uuid(), *value;
    redisReply *rep;

    if (ttl > 0) {
        value = wire_strf("{\"owner\":\"%s\",\"expiresAt\":%lld}", owner,
                          (long long)fmt_wall_ms() + ttl);
        rep = wire_redis_ok(r, "SET lock:%s %s PX %lld NX", key, value, ttl);
    } else {
        value = wire_strf("{\"owner\":\"%s\",\"expiresAt\":null}", owner);
        rep = wire_redis_ok(r, "SET lock:%s %s NX", key, value);
    }
    free(value);
    if (rep->type == REDIS_REPLY_NIL) {
        free(owner);
        owner = NULL;
    }
    freeReplyObject(rep);
    return owner;
}

/* JSON.parse: NULL where it would throw. cJSON on its own would also take
 * a number followed by anything (a token such as "99fc..."). */
static cJSON *json_parse(const char *text)
{
    return cJSON_ParseWithOpts(text, NULL, 1);
}

/* GET lock:<key> and JSON.parse, then whether its owner is `owner`. */
static pub_result pub_owns(redisContext *r, const char *key, const char *owner)
{
    redisReply *rep = wire_redis_ok(r, "GET lock:%s", key);
    pub_result res = PUB_FALSE;
    cJSON *v;

    if (rep->type == REDIS_REPLY_NIL) {
        freeReplyObject(rep);
        return PUB_FALSE;
    }
    v = json_parse(rep->str);
    freeReplyObject(rep);
    if (v == NULL)
        return PUB_THROWS;
    /* JSON.parse of a number or a string gives no object: .owner is
     * undefined, which is no owner. */
    if (cJSON_IsObject(v) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "owner")) &&
        strcmp(cJSON_GetObjectItemCaseSensitive(v, "owner")->valuestring, owner) == 0)
        res = PUB_TRUE;
    cJSON_Delete(v);
    return res;
}

/* release(key, owner): GET, JSON.parse, compare, DEL (not atomic). */
static pub_result pub_release(redisContext *r, const char *key, const char *owner)
{
    pub_result res = pub_owns(r, key, owner);

    if (res == PUB_TRUE)
        wire_redis_int(r, "DEL lock:%s", key);
    return res;
}

/* extend(key, owner, ttl): GET, JSON.parse, compare, PEXPIRE. */
static pub_result pub_extend(redisContext *r, const char *key, const char *owner,
                             long long ttl)
{
    pub_result res = pub_owns(r, key, owner);

    if (res == PUB_TRUE)
        res = wire_redis_int(r, "PEXPIRE lock:%s %lld", key, ttl) == 1 ? PUB_TRUE : PUB_FALSE;
    return res;
}

/* signal(id): PUBLISH flowmonkey:wake {"executionId","timestamp"}. Returns
 * the timestamp it sent. */
static long long pub_signal(redisContext *r, const char *id)
{
    long long ts = (long long)fmt_wall_ms();
    char *payload = wire_strf("{\"executionId\":\"%s\",\"timestamp\":%lld}", id, ts);

    wire_redis_int(r, "PUBLISH flowmonkey:wake %s", payload);
    free(payload);
    return ts;
}

/* set(execution): SETEX exec:<id> 60 JSON.stringify(execution). */
static void pub_cache_set(redisContext *r, const char *id, const char *json)
{
    freeReplyObject(wire_redis_ok(r, "SETEX exec:%s 60 %s", id, json));
}

/* get(id): GET exec:<id>, then JSON.parse. The text (malloc'd, checked to
 * parse), or NULL on a miss. */
static char *pub_cache_get(redisContext *r, const char *id)
{
    char *key = wire_strf("exec:%s", id), *text = wire_redis_get(r, key, NULL);
    cJSON *v;

    free(key);
    if (text != NULL) {
        v = json_parse(text);
        ck_assert_msg(v != NULL, "JSON.parse would throw on exec:%s: %s", id, text);
        cJSON_Delete(v);
    }
    return text;
}

/* ---- fmredisd's side, over the raw protocol ------------------------------ */

static int daemon_conn(void)
{
    return wire_connect(daemon_fm.sock);
}

/* lock.acquire; the token (malloc'd), or NULL when another holder kept it
 * through max_retries retries every 20 ms. */
static char *fm_acquire(int fd, const char *key, long long ttl, int max_retries)
{
    char *req = wire_strf("{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"%s\",\"ttl\":%lld,"
                          "\"retry_delay\":20,\"max_retries\":%d}", key, ttl, max_retries);
    cJSON *rep, *tok;
    char *token = NULL;

    wire_send(fd, req);
    rep = wire_recv(fd, WIRE_REPLY_MS + 20 * max_retries);
    wire_assert_ok(rep, "1");
    tok = cJSON_GetObjectItemCaseSensitive(rep, "token");
    if (cJSON_IsString(tok)) {
        token = strdup(tok->valuestring);
        ck_assert_ptr_nonnull(token);
    } else {
        ck_assert_msg(cJSON_IsNull(tok), "token is neither a string nor null");
    }
    cJSON_Delete(rep);
    free(req);
    return token;
}

/* lock.release or lock.extend: the reply's bool (released, extended), and
 * when false the release's reason must be `reason`. */
static int fm_lock_op(int fd, const char *op, const char *key, const char *token,
                      const char *reason)
{
    char *req = wire_strf("{\"op\":\"lock.%s\",\"id\":2,\"key\":\"%s\",\"token\":\"%s\"%s}",
                          op, key, token, strcmp(op, "extend") == 0 ? ",\"ttl\":20000" : "");
    cJSON *rep = wire_call(fd, req);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(
        rep, strcmp(op, "release") == 0 ? "released" : "extended");
    int done;

    wire_assert_ok(rep, "2");
    ck_assert_msg(cJSON_IsBool(b), "lock.%s: no bool in the reply", op);
    done = cJSON_IsTrue(b);
    if (!done && reason != NULL)
        ck_assert_str_eq(wire_str(rep, "reason"), reason);
    cJSON_Delete(rep);
    free(req);
    return done;
}

static int fm_is_locked(int fd, const char *key)
{
    char *req = wire_strf("{\"op\":\"lock.is_locked\",\"id\":3,\"key\":\"%s\"}", key);
    cJSON *rep = wire_call(fd, req);
    int locked;

    wire_assert_ok(rep, "3");
    locked = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep, "locked"));
    cJSON_Delete(rep);
    free(req);
    return locked;
}

/* ---- Redis's view -------------------------------------------------------- */

static redisContext *redis_open(void)
{
    return wire_redis_open(&redis_srv);
}

/* The value of lock:<key> (malloc'd), NULL when there is none. */
static char *lock_value(redisContext *r, const char *key)
{
    char *rkey = wire_strf("lock:%s", key), *v = wire_redis_get(r, rkey, NULL);

    free(rkey);
    return v;
}

/* lock:<key> holds {"owner":"<token>","expiresAt":<ms>}, byte for byte,
 * with expiresAt within WAIT_MS of now + ttl. */
static void assert_json_lock(redisContext *r, const char *key, const char *token,
                             long long ttl)
{
    char *v = lock_value(r, key), *prefix = wire_strf("{\"owner\":\"%s\",\"expiresAt\":", token);
    const char *digits, *end;

    ck_assert_msg(v != NULL, "lock:%s is missing", key);
    ck_assert_msg(strncmp(v, prefix, strlen(prefix)) == 0, "lock:%s holds %s", key, v);
    digits = v + strlen(prefix);
    end = digits + strspn(digits, "0123456789");
    ck_assert_msg(end > digits && strcmp(end, "}") == 0, "lock:%s holds %s", key, v);
    wire_assert_recent_ms(strtoll(digits, NULL, 10) - ttl, v);
    free(prefix);
    free(v);
}

static void assert_lock_value(redisContext *r, const char *key, const char *want)
{
    char *rkey = wire_strf("lock:%s", key);

    wire_assert_redis_value(r, rkey, want);
    free(rkey);
}

static long long pttl(redisContext *r, const char *key)
{
    return wire_redis_int(r, "PTTL lock:%s", key);
}

typedef struct gone {
    redisContext *r;
    const char *key;
} gone;

static int lock_gone(void *arg)
{
    const gone *g = arg;

    return wire_redis_int(g->r, "EXISTS lock:%s", g->key) == 0;
}

static void await_expiry(redisContext *r, const char *key)
{
    gone g = {r, key};

    ck_assert_msg(fmt_wait_until(lock_gone, &g, WAIT_MS), "lock:%s did not expire", key);
}

/* ---- locks --------------------------------------------------------------- */

START_TEST(test_daemon_writes_the_published_json_lock_value)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *token = fm_acquire(fd, "c-value", 30000, 0);

    ck_assert_ptr_nonnull(token);
    assert_json_lock(r, "c-value", token, 30000);
    ck_assert_int_gt(pttl(r, "c-value"), 25000);
    /* The owner the published code reads is the daemon's token. */
    ck_assert_int_eq(pub_owns(r, "c-value", token), PUB_TRUE);
    free(token);
    close(fd);
    redisFree(r);
}
END_TEST

START_TEST(test_daemon_lock_excludes_the_published_code)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *token = fm_acquire(fd, "c-fm-held", 30000, 0), *other = pub_uuid(), *before, *owner;

    ck_assert_ptr_nonnull(token);
    before = lock_value(r, "c-fm-held");
    ck_assert_ptr_null(pub_acquire(r, "c-fm-held", 30000));
    /* Its release and extend parse the daemon's value and refuse, without
     * throwing; the lock and its TTL are untouched. */
    ck_assert_int_eq(pub_release(r, "c-fm-held", other), PUB_FALSE);
    ck_assert_int_eq(pub_extend(r, "c-fm-held", other, 600000), PUB_FALSE);
    assert_lock_value(r, "c-fm-held", before);
    ck_assert_int_le(pttl(r, "c-fm-held"), 30000);
    /* The daemon extends and releases its own. */
    ck_assert_int_eq(fm_lock_op(fd, "extend", "c-fm-held", token, NULL), 1);
    ck_assert_int_gt(pttl(r, "c-fm-held"), 15000);
    ck_assert_int_le(pttl(r, "c-fm-held"), 20000);
    ck_assert_int_eq(fm_lock_op(fd, "release", "c-fm-held", token, NULL), 1);
    ck_assert_int_eq(wire_redis_int(r, "EXISTS lock:c-fm-held"), 0);
    owner = pub_acquire(r, "c-fm-held", 30000);
    ck_assert_ptr_nonnull(owner);
    free(owner);
    free(before);
    free(other);
    free(token);
    close(fd);
    redisFree(r);
}
END_TEST

START_TEST(test_published_lock_excludes_the_daemon)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *owner = pub_acquire(r, "c-pub-held", 30000), *before, *token;

    ck_assert_ptr_nonnull(owner);
    before = lock_value(r, "c-pub-held");
    ck_assert_ptr_null(fm_acquire(fd, "c-pub-held", 30000, 2));
    ck_assert_int_eq(fm_is_locked(fd, "c-pub-held"), 1);
    ck_assert_int_eq(fm_lock_op(fd, "release", "c-pub-held", "f00d", "not_owner"), 0);
    ck_assert_int_eq(fm_lock_op(fd, "extend", "c-pub-held", "f00d", NULL), 0);
    assert_lock_value(r, "c-pub-held", before);
    ck_assert_int_le(pttl(r, "c-pub-held"), 30000);
    /* The published code extends and releases its own. */
    ck_assert_int_eq(pub_extend(r, "c-pub-held", owner, 90000), PUB_TRUE);
    ck_assert_int_gt(pttl(r, "c-pub-held"), 30000);
    ck_assert_int_eq(pub_release(r, "c-pub-held", owner), PUB_TRUE);
    ck_assert_int_eq(fm_is_locked(fd, "c-pub-held"), 0);
    token = fm_acquire(fd, "c-pub-held", 30000, 0);
    ck_assert_ptr_nonnull(token);
    free(token);
    free(before);
    free(owner);
    close(fd);
    redisFree(r);
}
END_TEST

/* The lock the owner of a published lock knows by its owner id: a daemon
 * client given that id as the token may release it, as the contract's
 * token check says, and nobody else. */
START_TEST(test_daemon_releases_a_published_lock_by_its_owner)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *owner = pub_acquire(r, "c-by-owner", 30000);

    ck_assert_ptr_nonnull(owner);
    ck_assert_int_eq(fm_lock_op(fd, "extend", "c-by-owner", owner, NULL), 1);
    ck_assert_int_gt(pttl(r, "c-by-owner"), 15000);
    ck_assert_int_le(pttl(r, "c-by-owner"), 20000);
    ck_assert_int_eq(fm_lock_op(fd, "release", "c-by-owner", owner, NULL), 1);
    ck_assert_int_eq(wire_redis_int(r, "EXISTS lock:c-by-owner"), 0);
    free(owner);
    close(fd);
    redisFree(r);
}
END_TEST

START_TEST(test_stale_published_holder_cannot_release_the_daemons_lock)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *owner = pub_acquire(r, "c-stale-pub", SHORT_TTL), *token;

    ck_assert_ptr_nonnull(owner);
    await_expiry(r, "c-stale-pub");
    token = fm_acquire(fd, "c-stale-pub", 30000, 0);
    ck_assert_ptr_nonnull(token);
    ck_assert_int_eq(pub_release(r, "c-stale-pub", owner), PUB_FALSE);
    ck_assert_int_eq(pub_extend(r, "c-stale-pub", owner, 600000), PUB_FALSE);
    assert_json_lock(r, "c-stale-pub", token, 30000);
    ck_assert_int_eq(fm_lock_op(fd, "release", "c-stale-pub", token, NULL), 1);
    free(token);
    free(owner);
    close(fd);
    redisFree(r);
}
END_TEST

START_TEST(test_stale_daemon_holder_cannot_release_the_published_lock)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *token = fm_acquire(fd, "c-stale-fm", SHORT_TTL, 0), *owner, *before;

    ck_assert_ptr_nonnull(token);
    await_expiry(r, "c-stale-fm");
    owner = pub_acquire(r, "c-stale-fm", 30000);
    ck_assert_ptr_nonnull(owner);
    before = lock_value(r, "c-stale-fm");
    ck_assert_int_eq(fm_lock_op(fd, "release", "c-stale-fm", token, "not_owner"), 0);
    ck_assert_int_eq(fm_lock_op(fd, "extend", "c-stale-fm", token, NULL), 0);
    assert_lock_value(r, "c-stale-fm", before);
    ck_assert_int_eq(pub_release(r, "c-stale-fm", owner), PUB_TRUE);
    free(before);
    free(owner);
    free(token);
    close(fd);
    redisFree(r);
}
END_TEST

/* The published code's acquire without a TTL takes a lock that never
 * expires; the daemon waits for its release (no release notice comes from
 * that code: its retry timer finds the lock free). */
START_TEST(test_waiting_acquire_gets_a_lock_the_published_code_released)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *owner = pub_acquire(r, "c-handoff", 0);
    cJSON *rep;

    ck_assert_ptr_nonnull(owner);
    ck_assert_int_eq(pttl(r, "c-handoff"), -1);
    wire_send(fd, "{\"op\":\"lock.acquire\",\"id\":9,\"key\":\"c-handoff\",\"ttl\":30000,"
                  "\"retry_delay\":20,\"max_retries\":250}");
    wire_await_stat(daemon_fm.sock, "lock_acquires_waiting", 1, WAIT_MS);
    ck_assert_int_eq(pub_release(r, "c-handoff", owner), PUB_TRUE);
    rep = wire_recv(fd, WAIT_MS);
    wire_assert_ok(rep, "9");
    ck_assert_msg(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rep, "token")),
                  "the waiting acquire did not get the lock");
    assert_json_lock(r, "c-handoff", wire_str(rep, "token"), 30000);
    cJSON_Delete(rep);
    free(owner);
    close(fd);
    redisFree(r);
}
END_TEST

/* ---- wakes --------------------------------------------------------------- */

START_TEST(test_published_wake_reaches_daemon_subscribers)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    cJSON *ev;
    long long ts;

    wire_expect_ok(fd, "{\"op\":\"wake.subscribe\",\"id\":1}", "1");
    ts = pub_signal(r, "c-wake-in");
    ev = wire_recv(fd, WAIT_MS);
    ck_assert_ptr_nonnull(ev);
    ck_assert_str_eq(wire_str(ev, "event"), "wake");
    ck_assert_str_eq(wire_str(ev, "channel"), "flowmonkey:wake");
    ck_assert_str_eq(wire_str(ev, "execution_id"), "c-wake-in");
    ck_assert(cJSON_GetObjectItemCaseSensitive(ev, "timestamp")->valuedouble == (double)ts);
    cJSON_Delete(ev);
    close(fd);
    redisFree(r);
}
END_TEST

START_TEST(test_daemon_wakes_reach_the_published_channel)
{
    redisContext *sub = wire_sub_open(&redis_srv, "flowmonkey:wake");
    int fd = daemon_conn();
    char *payload;

    wire_expect_ok(fd, "{\"op\":\"wake.signal\",\"id\":1,\"execution_id\":\"c-wake-out\"}", "1");
    wire_expect_ok(fd, "{\"op\":\"wake.signal_many\",\"id\":2,"
                       "\"execution_ids\":[\"c-many-1\",\"c-many-2\"]}", "2");
    payload = wire_sub_next(sub, "flowmonkey:wake");
    wire_assert_wake_payload(payload, "c-wake-out");
    free(payload);
    for (int i = 1; i <= 2; i++) {
        char id[24];

        snprintf(id, sizeof(id), "c-many-%d", i);
        payload = wire_sub_next(sub, "flowmonkey:wake");
        wire_assert_wake_payload(payload, id);
        free(payload);
    }
    close(fd);
    redisFree(sub);
}
END_TEST

/* ---- the cache ----------------------------------------------------------- */

#define EXEC_FM "{\"id\":\"c-exec-fm\",\"status\":\"running\",\"big\":12345678901234567890123}"
#define EXEC_PUB "{\"id\":\"c-exec-pub\",\"status\":\"waiting\",\"wakeAt\":1764100000000}"

START_TEST(test_daemon_cache_entries_are_what_the_published_code_reads)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *text;

    wire_expect_ok(fd, "{\"op\":\"cache.set\",\"id\":1,\"execution\":" EXEC_FM "}", "1");
    text = pub_cache_get(r, "c-exec-fm");
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, EXEC_FM);
    /* cache_ttl_ms 60000: the published code's SETEX 60. */
    ck_assert_int_gt(wire_redis_int(r, "PTTL exec:c-exec-fm"), 55000);
    ck_assert_int_le(wire_redis_int(r, "PTTL exec:c-exec-fm"), 60000);
    wire_expect_ok(fd, "{\"op\":\"cache.invalidate\",\"id\":2,\"execution_id\":\"c-exec-fm\"}",
                   "2");
    ck_assert_ptr_null(pub_cache_get(r, "c-exec-fm"));
    free(text);
    close(fd);
    redisFree(r);
}
END_TEST

/* fmt_wait_until: cache.get of c-exec-pub on *fd answers a miss. */
static int daemon_misses(void *fd)
{
    cJSON *rep = wire_call(*(int *)fd, "{\"op\":\"cache.get\",\"id\":5,"
                                       "\"execution_id\":\"c-exec-pub\"}");
    int miss;

    wire_assert_ok(rep, "5");
    miss = cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(rep, "execution"));
    cJSON_Delete(rep);
    return miss;
}

START_TEST(test_published_cache_entries_are_what_the_daemon_reads)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *text;
    cJSON *rep;

    pub_cache_set(r, "c-exec-pub", EXEC_PUB);
    wire_expect_cached(fd, "c-exec-pub", EXEC_PUB);
    wire_send(fd, "{\"op\":\"cache.get_many\",\"id\":3,"
                  "\"execution_ids\":[\"c-exec-pub\",\"c-exec-none\"]}");
    text = wire_recv_text(fd, WAIT_MS, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, "\"executions\":{\"c-exec-pub\":" EXEC_PUB "}") != NULL,
                  "get_many: %s", text);
    free(text);
    /* The published code's invalidate is a DEL. A fresh read sees it at
     * once; a plain one once Redis's invalidation reached the daemon, which
     * drops the copy it kept of the reads above (docs/PROTOCOL.md §13.6). */
    wire_redis_int(r, "DEL exec:c-exec-pub");
    wire_send(fd, "{\"op\":\"cache.get\",\"id\":4,\"execution_id\":\"c-exec-pub\","
                  "\"fresh\":true}");
    rep = wire_recv(fd, WAIT_MS);
    wire_assert_ok(rep, "4");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(rep, "execution")));
    cJSON_Delete(rep);
    ck_assert_msg(fmt_wait_until(daemon_misses, &fd, WAIT_MS),
                  "the daemon still serves exec:c-exec-pub after its DEL");
    close(fd);
    redisFree(r);
}
END_TEST

START_TEST(test_hello_reports_the_published_layout)
{
    int fd = daemon_conn();
    cJSON *rep = wire_call(fd, "{\"op\":\"hello\",\"id\":1}");
    const cJSON *layout = cJSON_GetObjectItemCaseSensitive(rep, "layout");

    wire_assert_ok(rep, "1");
    ck_assert(cJSON_IsObject(layout));
    ck_assert_str_eq(wire_str(layout, "lock_key_prefix"), "lock:");
    ck_assert_str_eq(wire_str(layout, "cache_key_prefix"), "exec:");
    ck_assert_str_eq(wire_str(layout, "wake_channel"), "flowmonkey:wake");
    ck_assert_str_eq(wire_str(layout, "lock_release_channel"), "fm:lock:released");
    ck_assert_str_eq(wire_str(layout, "lock_value_format"), "flowmonkey-json");
    cJSON_Delete(rep);
    close(fd);
}
END_TEST

/* ---- the scripts' reading of a lock value -------------------------------- */

typedef struct owned_case {
    const char *value;
    const char *token;
    int owned;
} owned_case;

/* Runs release or extend (extend when channel is NULL) on lock:c-odd
 * holding value; returns the script's integer. */
static long long run_script(redisContext *r, const char *value, const char *token,
                            const char *channel)
{
    freeReplyObject(wire_redis_ok(r, "SET lock:c-odd %s EX 60", value));
    if (channel != NULL)
        return wire_redis_int(r, "EVAL %s 1 lock:c-odd %s %s", fm_lua_release, token, channel);
    return wire_redis_int(r, "EVAL %s 1 lock:c-odd %s 20000", fm_lua_extend, token);
}

/* A value is owned when it is the token, or a JSON object whose owner is
 * the token as a string; anything else, however odd, is someone else's
 * and never an error of the script. */
START_TEST(test_scripts_own_the_token_or_json_whose_owner_it_is)
{
    char *deep = calloc(1, 3000), *big = calloc(1, 5000);
    owned_case cases[] = {
        {"a\"b", "a\"b", 1},
        {"{\"owner\":\"a\\\"b\",\"expiresAt\":null}", "a\"b", 1},
        {"{\"owner\":\"\\u0041\"}", "A", 1},
        {"{\"owner\":\"A\"}", "B", 0},
        {"[\"A\"]", "A", 0},
        {"{\"owner\":null}", "null", 0},
        {"{\"owner\":1}", "1", 0},
        {"{\"owner\":{\"owner\":\"A\"}}", "A", 0},
        {"{\"owner\":\"A\"} x", "A", 0},
        {"{", "A", 0},
        {deep, "A", 0},
        {big, "A", 0},
    };
    redisContext *r = redis_open();

    ck_assert(deep != NULL && big != NULL);
    /* Nested deeper than cjson decodes; longer than any owned value. */
    strcpy(deep, "{\"owner\":\"A\",\"x\":");
    memset(deep + strlen(deep), '[', 1200);
    memset(deep + strlen(deep), ']', 1200);
    strcat(deep, "}");
    snprintf(big, 5000, "{\"owner\":\"A\",\"pad\":\"%04200d\"}", 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const owned_case *c = &cases[i];

        ck_assert_msg(run_script(r, c->value, c->token, "c-odd-released") ==
                          (c->owned ? 1 : -1),
                      "release of %.60s by %s", c->value, c->token);
        ck_assert_int_eq(wire_redis_int(r, "EXISTS lock:c-odd"), !c->owned);
        ck_assert_msg(run_script(r, c->value, c->token, NULL) == c->owned,
                      "extend of %.60s by %s", c->value, c->token);
    }
    free(deep);
    free(big);
    redisFree(r);
}
END_TEST

typedef struct says_format {
    const char *sock;
    const char *format;
} says_format;

static int hello_says_format(void *arg)
{
    const says_format *w = arg;
    int fd = wire_connect(w->sock);
    cJSON *rep = wire_call(fd, "{\"op\":\"hello\"}");
    const char *got = wire_str(cJSON_GetObjectItemCaseSensitive(rep, "layout"),
                               "lock_value_format");
    int same = got != NULL && strcmp(got, w->format) == 0;

    cJSON_Delete(rep);
    close(fd);
    return same;
}

/* lock_value_format is live: a lock taken as JSON before a SIGHUP to token
 * goes on being extended by the daemon, and is released by its token;
 * acquires after it write the bare token. */
START_TEST(test_sighup_to_token_keeps_json_locks_working)
{
    /* A name the harness removes with the directory, whatever the end. */
    char *conf = wire_strf("%s/fmredisd.conf", redis_srv.dir);
    FILE *f = fopen(conf, "w");
    redisContext *r = redis_open();
    says_format token = {NULL, "token"};
    fmt_daemon d;
    long long ticks;
    char *held, *later, *v;
    cJSON *rep;
    int fd;

    ck_assert_ptr_nonnull(f);
    fputs("compat flowmonkey-published\n", f);
    fclose(f);
    wire_daemon_up(&d, redis_srv.url, (const char *const[]){"-c", conf, NULL});
    fd = wire_connect(d.sock);
    wire_send(fd, "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"c-reload\",\"ttl\":3000,"
                  "\"auto_extend\":true}");
    rep = wire_recv(fd, WAIT_MS);
    wire_assert_ok(rep, "1");
    held = strdup(wire_str(rep, "token"));
    cJSON_Delete(rep);
    assert_json_lock(r, "c-reload", held, 3000);

    f = fopen(conf, "a");
    ck_assert_ptr_nonnull(f);
    fputs("lock_value_format token\n", f);
    fclose(f);
    ticks = wire_stats_int(fd, "lock_auto_extensions");
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    token.sock = d.sock;
    ck_assert_msg(fmt_wait_until(hello_says_format, &token, WAIT_MS), "no reload to token");
    later = fm_acquire(fd, "c-reload-later", 30000, 0);
    v = lock_value(r, "c-reload-later");
    ck_assert_str_eq(v, later);
    /* Two more extensions of the JSON lock, each found it its own. */
    wire_await_stat(d.sock, "lock_auto_extensions", ticks + 2, 4 * 3000 * wire_slowdown(&d));
    ck_assert_int_eq(fm_lock_op(fd, "release", "c-reload", held, NULL), 1);
    ck_assert_int_eq(fm_lock_op(fd, "release", "c-reload-later", later, NULL), 1);
    free(v);
    free(later);
    free(held);
    close(fd);
    fmt_daemon_stop(&d);
    redisFree(r);
    free(conf);
}
END_TEST

/* ---- token values beside JSON ones --------------------------------------- */

START_TEST(test_token_format_writes_the_bare_token)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *token = fm_acquire(fd, "t-bare", 30000, 0), *v;

    ck_assert_ptr_nonnull(token);
    v = lock_value(r, "t-bare");
    ck_assert_str_eq(v, token);
    /* This is why the published code must not share locks with it. */
    ck_assert_int_eq(pub_release(r, "t-bare", token), PUB_THROWS);
    ck_assert_int_eq(fm_lock_op(fd, "release", "t-bare", token, NULL), 1);
    free(v);
    free(token);
    close(fd);
    redisFree(r);
}
END_TEST

/* A lock written as JSON (before a reload to token, or by the published
 * code) is still extended and released by its token. */
START_TEST(test_token_format_still_reads_json_lock_values)
{
    redisContext *r = redis_open();
    int fd = daemon_conn();
    char *owner = pub_acquire(r, "t-json", 30000);

    ck_assert_ptr_nonnull(owner);
    freeReplyObject(wire_redis_ok(r, "SET lock:not-json {bad EX 30"));
    ck_assert_int_eq(fm_lock_op(fd, "release", "not-json", owner, "not_owner"), 0);
    ck_assert_int_eq(fm_lock_op(fd, "release", "t-json", "f00d", "not_owner"), 0);
    ck_assert_int_eq(fm_lock_op(fd, "extend", "t-json", owner, NULL), 1);
    ck_assert_int_gt(pttl(r, "t-json"), 15000);
    ck_assert_int_le(pttl(r, "t-json"), 20000);
    ck_assert_int_eq(fm_lock_op(fd, "release", "t-json", owner, NULL), 1);
    ck_assert_int_eq(wire_redis_int(r, "EXISTS lock:t-json"), 0);
    free(owner);
    close(fd);
    redisFree(r);
}
END_TEST

Suite *fm_suite_compat(void)
{
    Suite *s = suite_create("compat");
    TCase *tc = fmt_tcase(s, "published", published_up, pair_down, 60);

    tcase_add_test(tc, test_daemon_writes_the_published_json_lock_value);
    tcase_add_test(tc, test_daemon_lock_excludes_the_published_code);
    tcase_add_test(tc, test_published_lock_excludes_the_daemon);
    tcase_add_test(tc, test_daemon_releases_a_published_lock_by_its_owner);
    tcase_add_test(tc, test_stale_published_holder_cannot_release_the_daemons_lock);
    tcase_add_test(tc, test_stale_daemon_holder_cannot_release_the_published_lock);
    tcase_add_test(tc, test_waiting_acquire_gets_a_lock_the_published_code_released);
    tcase_add_test(tc, test_published_wake_reaches_daemon_subscribers);
    tcase_add_test(tc, test_daemon_wakes_reach_the_published_channel);
    tcase_add_test(tc, test_daemon_cache_entries_are_what_the_published_code_reads);
    tcase_add_test(tc, test_published_cache_entries_are_what_the_daemon_reads);
    tcase_add_test(tc, test_hello_reports_the_published_layout);
    tcase_add_test(tc, test_scripts_own_the_token_or_json_whose_owner_it_is);
    tcase_add_test(tc, test_sighup_to_token_keeps_json_locks_working);

    tc = fmt_tcase(s, "token_values", token_up, pair_down, 60);
    tcase_add_test(tc, test_token_format_writes_the_bare_token);
    tcase_add_test(tc, test_token_format_still_reads_json_lock_values);
    return s;
}
