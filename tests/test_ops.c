/* test_ops.c -- every operation of the contract, end to end: libfmredis talks
 * to a real fmredisd, which talks to a real redis-server, and each test
 * asserts both the reply and what landed in Redis (through a synchronous
 * hiredis connection of its own).
 *
 * Every TCase gets a fresh redis-server and daemon from an unchecked fixture
 * (they belong to the runner, so a failing forked test cannot skip their
 * cleanup). Tests share those servers but never each other's data: every
 * test uses keys and channels of its own, named after it. Absence of a
 * message is shown with a sentinel published after it wherever Redis's
 * per-channel ordering allows, not with a sleep. */
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "fm_tests.h"
#include "fmredis.h"
#include "harness.h"
#include "wire.h"

#define WAIT_MS 5000            /* bound of every wait for a reply or event */

static fmt_redis redis_srv;
static fmt_daemon daemon_a, daemon_b;

/* ---- clients and Redis-side views ---------------------------------------- */

static fm_client *client_open(void)
{
    return fmt_client(&daemon_a);
}

static redisContext *redis_open(void)
{
    struct timeval tv = {WAIT_MS / 1000, 0};
    redisContext *r = fmt_redis_connect(&redis_srv);

    ck_assert_msg(r != NULL, "cannot connect to redis at %s", redis_srv.sock);
    redisSetTimeout(r, tv);
    return r;
}

static redisReply *redis_checked(redisReply *rep, int type, const char *what)
{
    ck_assert_msg(rep != NULL, "%s: no reply from redis", what);
    ck_assert_msg(rep->type == type, "%s: redis reply type %d, want %d (%s)", what,
                  rep->type, type, rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    return rep;
}

static long long redis_pttl(redisContext *r, const char *key)
{
    redisReply *rep = redis_checked(fmt_redis_cmd(r, "PTTL %s", key), REDIS_REPLY_INTEGER,
                                    "PTTL");
    long long v = rep->integer;

    freeReplyObject(rep);
    return v;
}

static int redis_exists(redisContext *r, const char *key)
{
    redisReply *rep = redis_checked(fmt_redis_cmd(r, "EXISTS %s", key), REDIS_REPLY_INTEGER,
                                    "EXISTS");
    int v = rep->integer > 0;

    freeReplyObject(rep);
    return v;
}

static void redis_set(redisContext *r, const char *key, const char *value)
{
    freeReplyObject(redis_checked(fmt_redis_cmd(r, "SET %s %s", key, value),
                                  REDIS_REPLY_STATUS, "SET"));
}

static void redis_publish(redisContext *r, const char *channel, const char *payload)
{
    freeReplyObject(redis_checked(fmt_redis_cmd(r, "PUBLISH %s %s", channel, payload),
                                  REDIS_REPLY_INTEGER, "PUBLISH"));
}

/* Asserts lo < PTTL(key) <= hi. */
static void assert_pttl_in(redisContext *r, const char *key, long long lo, long long hi)
{
    long long pttl = redis_pttl(r, key);

    ck_assert_msg(pttl > lo && pttl <= hi, "PTTL %s = %lld, want in (%lld, %lld]", key, pttl,
                  lo, hi);
}

/* ---- hiredis subscribers --------------------------------------------------- */

/* Reads messages until one carries `payload` (other publishers may share
 * the channel); fails after WAIT_MS. */
static void sub_await(redisContext *r, const char *channel, const char *payload)
{
    for (;;) {
        char *got = wire_sub_next(r, channel);
        int found = strcmp(got, payload) == 0;

        free(got);
        if (found)
            return;
    }
}

/* Publishes a sentinel on channel and asserts it is the next message there:
 * Redis keeps a channel's order, so nothing else was published before it
 * that the subscriber has not read. */
static void sub_expect_nothing_more(redisContext *r, redisContext *sub, const char *channel)
{
    char *payload;

    redis_publish(r, channel, "sentinel");
    payload = wire_sub_next(sub, channel);
    ck_assert_str_eq(payload, "sentinel");
    free(payload);
}

/* The next message on channel is the Node payload for id. */
static void sub_expect_wake(redisContext *sub, const char *channel, const char *id)
{
    char *payload = wire_sub_next(sub, channel);

    wire_assert_wake_payload(payload, id);
    free(payload);
}

/* ---- events ---------------------------------------------------------------- */

static void subscribe(fm_client *c, const char *channel, const char *group)
{
    char got[FM_STR_MAX + 1];

    fmt_ok(c, fm_wake_subscribe(c, channel, group, got, sizeof(got)), "wake.subscribe");
    ck_assert_str_eq(got, channel != NULL ? channel : "fm:wake");
}

/* Waits for the next event, which must be a wake on `channel`; returns its
 * execution id (malloc'd) and, when ev is not NULL, the event itself. */
static char *next_wake(fm_client *c, const char *channel, fm_event *ev)
{
    fm_event e;
    char *id;

    fmt_ok(c, fm_event_wait(c, &e, WAIT_MS), "fm_event_wait");
    ck_assert_msg(e.type == FM_EVENT_WAKE, "event %s is not a wake", e.json);
    ck_assert_str_eq(e.channel, channel);
    ck_assert_ptr_nonnull(e.execution_id);
    id = strdup(e.execution_id);
    ck_assert_ptr_nonnull(id);
    if (ev != NULL)
        *ev = e;
    else
        fm_event_clear(&e);
    return id;
}

static void expect_wake(fm_client *c, const char *channel, const char *id)
{
    char *got = next_wake(c, channel, NULL);

    ck_assert_str_eq(got, id);
    free(got);
}

/* ---- stats ----------------------------------------------------------------- */

static cJSON *stats_fetch(fm_client *c)
{
    char *text = NULL;
    cJSON *root;

    fmt_ok(c, fm_stats(c, &text, NULL), "stats");
    root = cJSON_Parse(text);
    ck_assert_msg(root != NULL && cJSON_IsObject(root), "stats is not an object: %s", text);
    free(text);
    return root;
}

/* The integer at a path of member names (NULL-terminated) of a stats reply;
 * STATS_INT(c, "ops", "cache.get", "calls") adds the NULL. */
#define STATS_INT(c, ...) stats_int(c, __VA_ARGS__, (const char *)NULL)

static int64_t stats_int(fm_client *c, ...)
{
    cJSON *root = stats_fetch(c), *v = root;
    const char *name;
    int64_t n;
    va_list ap;

    va_start(ap, c);
    while ((name = va_arg(ap, const char *)) != NULL) {
        v = cJSON_GetObjectItemCaseSensitive(v, name);
        ck_assert_msg(v != NULL, "stats has no member %s", name);
    }
    va_end(ap);
    ck_assert_msg(cJSON_IsNumber(v), "stats member is not a number");
    n = (int64_t)v->valuedouble;
    cJSON_Delete(root);
    return n;
}

static int64_t op_calls(fm_client *c, const char *op)
{
    return STATS_INT(c, "ops", op, "calls");
}

/* ---- locks ----------------------------------------------------------------- */

/* One attempt only, for a lock that must be seen held. */
static void assert_not_acquirable(fm_client *c, const char *key)
{
    fm_lock_opts o;
    fm_lock lk;

    fm_lock_opts_init(&o);
    o.max_retries = FM_LOCK_NO_RETRY;
    fmt_ok(c, fm_lock_acquire(c, key, &o, &lk), "lock.acquire");
    ck_assert_msg(!lk.acquired, "%s: acquired although held", key);
    ck_assert_str_eq(lk.token, "");
}

static void release_expect(fm_client *c, const char *key, const char *token, int released,
                           fm_release_reason reason)
{
    fm_release_reason why;
    int rel;

    fmt_ok(c, fm_lock_release(c, key, token, &rel, &why), "lock.release");
    ck_assert_int_eq(rel, released);
    ck_assert_int_eq(why, reason);
}

static int is_locked(fm_client *c, const char *key)
{
    int locked = -1;

    fmt_ok(c, fm_lock_is_locked(c, key, &locked), "lock.is_locked");
    return locked;
}

static int extend(fm_client *c, const char *key, const char *token, int64_t ttl_ms)
{
    int extended = -1;

    fmt_ok(c, fm_lock_extend(c, key, token, ttl_ms, &extended), "lock.extend");
    return extended;
}

/* An acquire waiting in a thread of its own on its own client, so that the
 * test can release the lock under it. On the heap, and freed only once
 * joined: a failing test (without fork) must not pull it from under the
 * thread. */
typedef struct waiter {
    char key[FM_STR_MAX + 1];
    fm_lock_opts opts;
    fm_client *c;
    fm_lock lock;
    int rc;
    atomic_int done;
    pthread_t thread;
} waiter;

static void *waiter_run(void *arg)
{
    waiter *w = arg;

    w->rc = fm_lock_acquire(w->c, w->key, &w->opts, &w->lock);
    atomic_store(&w->done, 1);
    return NULL;
}

typedef struct calls_wait {
    fm_client *c;
    int64_t want;
} calls_wait;

static int acquire_dispatched(void *arg)
{
    calls_wait *cw = arg;

    return op_calls(cw->c, "lock.acquire") >= cw->want;
}

/* Starts an acquire of a held key and returns once the daemon has
 * dispatched it (so its first attempt is queued to Redis before anything
 * `observer` sends later), with the acquire still waiting. */
static waiter *waiter_start(const char *key, const fm_lock_opts *opts, fm_client *observer)
{
    calls_wait cw = {observer, op_calls(observer, "lock.acquire") + 1};
    waiter *w = calloc(1, sizeof(*w));

    ck_assert_ptr_nonnull(w);
    snprintf(w->key, sizeof(w->key), "%s", key);
    w->opts = *opts;
    w->c = client_open();
    atomic_init(&w->done, 0);
    ck_assert_int_eq(pthread_create(&w->thread, NULL, waiter_run, w), 0);
    ck_assert_msg(fmt_wait_until(acquire_dispatched, &cw, WAIT_MS),
                  "the daemon never saw the waiting acquire");
    ck_assert_msg(!atomic_load(&w->done), "the acquire did not wait for the held lock");
    return w;
}

static int waiter_done(void *arg)
{
    return atomic_load(&((waiter *)arg)->done);
}

/* Joins the waiter and returns what its acquire got. */
static fm_lock waiter_finish(waiter *w)
{
    fm_lock lk;

    pthread_join(w->thread, NULL);
    fmt_ok(w->c, w->rc, "waiting lock.acquire");
    lk = w->lock;
    fm_client_free(w->c);
    free(w);
    return lk;
}

/* ---- fixtures -------------------------------------------------------------- */

static void servers_up(void)
{
    wire_pair_start(&redis_srv, &daemon_a, NULL, NULL);
}

static void two_daemons_up(void)
{
    servers_up();
    wire_daemon_up(&daemon_b, redis_srv.url, NULL);
}

static void servers_down(void)
{
    fmt_daemon_stop(&daemon_b);
    wire_pair_stop(&redis_srv, &daemon_a);
}

/* ---- session: hello, ping -------------------------------------------------- */

START_TEST(test_hello_reports_protocol_1_and_server_name)
{
    fm_client *c = client_open();
    fm_hello_info info;

    fmt_ok(c, fm_hello(c, "ops-test", &info), "hello");
    ck_assert_int_eq(info.protocol, 1);
    ck_assert_msg(strncmp(info.server, "fmredisd ", 9) == 0 && info.server[9] != '\0',
                  "server \"%s\"", info.server);
    fmt_ok(c, fm_hello(c, NULL, &info), "hello without client_name");
    ck_assert_int_eq(info.protocol, 1);
    fm_client_free(c);
}
END_TEST

/* What a ping, with or without a round trip to Redis, says of Redis. */
static int ping_redis_up(int round_trip)
{
    fm_client *c = client_open();
    int up = -1;

    fmt_ok(c, fm_ping(c, round_trip, &up), round_trip ? "ping redis=true" : "ping");
    fm_client_free(c);
    return up;
}

START_TEST(test_ping_without_redis_round_trip_says_up)
{
    ck_assert_int_eq(ping_redis_up(0), 1);
}
END_TEST

START_TEST(test_ping_with_redis_round_trip_says_up)
{
    ck_assert_int_eq(ping_redis_up(1), 1);
}
END_TEST

/* ---- lock.acquire ---------------------------------------------------------- */

START_TEST(test_lock_acquire_sets_key_with_token_and_ttl)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();
    fm_lock lk = wire_lock_take(c, "acq-ttl", 30000);

    ck_assert_uint_eq(lk.token_len, strlen(lk.token));
    wire_assert_redis_value(r, "fm:lock:acq-ttl", lk.token);
    assert_pttl_in(r, "fm:lock:acq-ttl", 29000, 30000);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_acquire_default_ttl_is_30000)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();
    fm_lock lk;

    fmt_ok(c, fm_lock_acquire(c, "acq-default-ttl", NULL, &lk), "lock.acquire");
    ck_assert(lk.acquired);
    wire_assert_redis_value(r, "fm:lock:acq-default-ttl", lk.token);
    assert_pttl_in(r, "fm:lock:acq-default-ttl", 29000, 30000);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_acquire_fence_increases_with_every_acquire)
{
    fm_client *c = client_open();
    int64_t last = INT64_MIN;

    for (int i = 0; i < 5; i++) {
        fm_lock lk = wire_lock_take(c, "acq-fence", 30000);

        ck_assert_msg(lk.fence > last, "fence %lld after %lld", (long long)lk.fence,
                      (long long)last);
        last = lk.fence;
        release_expect(c, "acq-fence", lk.token, 1, FM_RELEASE_DONE);
    }
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_acquire_held_lock_is_not_acquired)
{
    fm_client *holder = client_open(), *other = client_open();
    redisContext *r = redis_open();
    fm_lock held = wire_lock_take(holder, "acq-held", 30000), lk;
    fm_lock_opts o;

    fm_lock_opts_init(&o);
    o.max_retries = 3;
    o.retry_delay_ms = 10;
    fmt_ok(other, fm_lock_acquire(other, "acq-held", &o, &lk), "second lock.acquire");
    ck_assert(!lk.acquired);
    ck_assert_str_eq(lk.token, "");
    wire_assert_redis_value(r, "fm:lock:acq-held", held.token);
    redisFree(r);
    fm_client_free(other);
    fm_client_free(holder);
}
END_TEST

START_TEST(test_lock_acquire_waiter_gets_lock_after_holder_releases)
{
    fm_client *holder = client_open();
    redisContext *r = redis_open();
    fm_lock held = wire_lock_take(holder, "acq-wait", 30000), got;
    fm_lock_opts o;
    waiter *w;

    fm_lock_opts_init(&o);
    o.retry_delay_ms = 50;
    o.max_retries = 200;
    /* Kept: the waiter's connection closes before the check below. */
    o.on_disconnect = FM_ON_DISCONNECT_KEEP;
    w = waiter_start("acq-wait", &o, holder);
    release_expect(holder, "acq-wait", held.token, 1, FM_RELEASE_DONE);
    got = waiter_finish(w);
    ck_assert(got.acquired);
    ck_assert_str_ne(got.token, held.token);
    ck_assert_int_gt(got.fence, held.fence);
    wire_assert_redis_value(r, "fm:lock:acq-wait", got.token);
    redisFree(r);
    fm_client_free(holder);
}
END_TEST

/* Contract, lock lifecycle: a waiting acquire is woken by the release's
 * publication, not only at its next retry. With a retry_delay of 8 s, only
 * the wake can hand the lock over within 3 s. */

START_TEST(test_lock_acquire_waiter_is_woken_by_release_before_its_retry)
{
    fm_client *holder = client_open();
    fm_lock held = wire_lock_take(holder, "acq-woken", 30000);
    fm_lock_opts o;
    waiter *w;

    fm_lock_opts_init(&o);
    o.retry_delay_ms = 8000;
    o.max_retries = 1;
    w = waiter_start("acq-woken", &o, holder);
    release_expect(holder, "acq-woken", held.token, 1, FM_RELEASE_DONE);
    ck_assert_msg(fmt_wait_until(waiter_done, w, 3000),
                  "the waiting acquire was not woken by the release (retry_delay 8000 ms)");
    ck_assert(waiter_finish(w).acquired);
    fm_client_free(holder);
}
END_TEST

START_TEST(test_lock_acquire_max_retries_0_is_one_attempt)
{
    fm_client *holder = client_open(), *other = client_open();
    fm_lock_opts o;
    fm_lock lk;
    int64_t t0;

    fm_lock_opts_init(&o);
    o.max_retries = FM_LOCK_NO_RETRY;
    o.retry_delay_ms = 5000;
    wire_lock_take(holder, "acq-once", 30000);
    t0 = fmt_now_ms();
    fmt_ok(other, fm_lock_acquire(other, "acq-once", &o, &lk), "lock.acquire max_retries 0");
    /* A retry would have waited retry_delay (5000 ms) first. */
    ck_assert_int_lt(fmt_now_ms() - t0, 2500);
    ck_assert(!lk.acquired);
    fm_client_free(other);
    fm_client_free(holder);
}
END_TEST

/* ---- lock.release ---------------------------------------------------------- */

START_TEST(test_lock_release_deletes_key)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();
    fm_lock lk = wire_lock_take(c, "rel-del", 30000);

    release_expect(c, "rel-del", lk.token, 1, FM_RELEASE_DONE);
    ck_assert(!redis_exists(r, "fm:lock:rel-del"));
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_release_publishes_full_key_on_release_channel)
{
    fm_client *c = client_open();
    redisContext *sub = wire_sub_open(&redis_srv, "fm:lock:released");
    fm_lock lk = wire_lock_take(c, "rel-pub", 30000);

    release_expect(c, "rel-pub", lk.token, 1, FM_RELEASE_DONE);
    sub_await(sub, "fm:lock:released", "fm:lock:rel-pub");
    redisFree(sub);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_release_with_wrong_token_is_not_owner)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();
    fm_lock lk = wire_lock_take(c, "rel-owner", 30000);

    release_expect(c, "rel-owner", "not-the-token", 0, FM_RELEASE_NOT_OWNER);
    wire_assert_redis_value(r, "fm:lock:rel-owner", lk.token);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_release_without_lock_is_not_held)
{
    fm_client *c = client_open();

    release_expect(c, "rel-none", "some-token", 0, FM_RELEASE_NOT_HELD);
    fm_client_free(c);
}
END_TEST

/* ---- lock.extend ----------------------------------------------------------- */

START_TEST(test_lock_extend_sets_ttl_rather_than_adding)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();
    fm_lock lk = wire_lock_take(c, "ext-set", 60000);

    ck_assert_int_eq(extend(c, "ext-set", lk.token, 5000), 1);
    assert_pttl_in(r, "fm:lock:ext-set", 4000, 5000);
    wire_assert_redis_value(r, "fm:lock:ext-set", lk.token);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_extend_with_wrong_token_fails_and_keeps_ttl)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();
    fm_lock lk = wire_lock_take(c, "ext-owner", 60000);

    ck_assert_int_eq(extend(c, "ext-owner", "not-the-token", 5000), 0);
    assert_pttl_in(r, "fm:lock:ext-owner", 55000, 60000);
    wire_assert_redis_value(r, "fm:lock:ext-owner", lk.token);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_lock_extend_without_lock_fails)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();

    ck_assert_int_eq(extend(c, "ext-none", "some-token", 5000), 0);
    ck_assert(!redis_exists(r, "fm:lock:ext-none"));
    redisFree(r);
    fm_client_free(c);
}
END_TEST

/* ---- lock.is_locked -------------------------------------------------------- */

START_TEST(test_lock_is_locked_reports_held_and_free)
{
    fm_client *c = client_open();
    fm_lock lk;

    ck_assert_int_eq(is_locked(c, "isl"), 0);
    lk = wire_lock_take(c, "isl", 30000);
    ck_assert_int_eq(is_locked(c, "isl"), 1);
    release_expect(c, "isl", lk.token, 1, FM_RELEASE_DONE);
    ck_assert_int_eq(is_locked(c, "isl"), 0);
    fm_client_free(c);
}
END_TEST

/* ---- fm_with_lock ---------------------------------------------------------- */

typedef struct with_lock_probe {
    redisContext *r;
    const char *rkey;
    int runs;
    int held;           /* the key held the lock's token while fn ran */
} with_lock_probe;

static int with_lock_fn(fm_client *c, const fm_lock *lk, void *arg)
{
    with_lock_probe *p = arg;
    char *v = wire_redis_get(p->r, p->rkey, NULL);
    int up = 0;

    p->runs++;
    p->held = v != NULL && strcmp(v, lk->token) == 0;
    free(v);
    /* The client is usable inside. */
    if (fm_ping(c, 0, &up) != FM_OK)
        return -1;
    return 42;
}

START_TEST(test_with_lock_runs_callback_while_held_then_releases)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();
    with_lock_probe p = {r, "fm:lock:with", 0, 0};
    fm_with_lock_result res;

    fmt_ok(c, fm_with_lock(c, "with", NULL, with_lock_fn, &p, &res), "fm_with_lock");
    ck_assert_int_eq(p.runs, 1);
    ck_assert_msg(p.held, "the lock key did not hold the token while the callback ran");
    ck_assert_int_eq(res.ran, 1);
    ck_assert_int_eq(res.ret, 42);
    ck_assert_int_eq(res.released, 1);
    ck_assert(!redis_exists(r, "fm:lock:with"));
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_with_lock_skips_callback_when_held_elsewhere)
{
    fm_client *holder = client_open(), *c = client_open();
    redisContext *r = redis_open();
    fm_lock held = wire_lock_take(holder, "with-held", 30000);
    with_lock_probe p = {r, "fm:lock:with-held", 0, 0};
    fm_lock_opts o;
    fm_with_lock_result res;

    fm_lock_opts_init(&o);
    o.max_retries = FM_LOCK_NO_RETRY;
    fmt_ok(c, fm_with_lock(c, "with-held", &o, with_lock_fn, &p, &res), "fm_with_lock");
    ck_assert_int_eq(p.runs, 0);
    ck_assert_int_eq(res.ran, 0);
    wire_assert_redis_value(r, "fm:lock:with-held", held.token);
    redisFree(r);
    fm_client_free(c);
    fm_client_free(holder);
}
END_TEST

/* ---- wake.signal, wake.signal_many ----------------------------------------- */

START_TEST(test_wake_signal_receivers_counts_redis_subscribers)
{
    fm_client *c = client_open();
    redisContext *r = redis_open(), *s1, *s2;
    int64_t receivers = -1;

    fmt_ok(c, fm_wake_signal(c, "sig-count-0", "ops:sig-count", &receivers), "wake.signal");
    ck_assert_int_eq(receivers, 0);
    s1 = wire_sub_open(&redis_srv, "ops:sig-count");
    s2 = wire_sub_open(&redis_srv, "ops:sig-count");
    ck_assert_int_eq(wire_redis_numsub(r, "ops:sig-count"), 2);
    fmt_ok(c, fm_wake_signal(c, "sig-count-2", "ops:sig-count", &receivers), "wake.signal");
    ck_assert_int_eq(receivers, 2);
    redisFree(s2);
    redisFree(s1);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

/* Signals id with the channel argument `arg` (NULL: none) while a Redis
 * subscriber listens on channel, which must get the Node payload for id.
 * Returns the receivers the signal reported. */
static int64_t signal_seen_on(const char *channel, const char *id, const char *arg)
{
    fm_client *c = client_open();
    redisContext *sub = wire_sub_open(&redis_srv, channel);
    int64_t receivers = -1;

    fmt_ok(c, fm_wake_signal(c, id, arg, &receivers), "wake.signal");
    sub_expect_wake(sub, channel, id);
    redisFree(sub);
    fm_client_free(c);
    return receivers;
}

START_TEST(test_wake_signal_publishes_node_payload_on_default_channel)
{
    ck_assert_int_ge(signal_seen_on("fm:wake", "sig-payload", NULL), 1);
}
END_TEST

START_TEST(test_wake_signal_honours_channel_argument)
{
    ck_assert_int_eq(signal_seen_on("ops:sig-custom", "sig-custom", "ops:sig-custom"), 1);
}
END_TEST

START_TEST(test_wake_signal_many_publishes_each_id_once)
{
    static const char *const ids[] = {"many-1", "many-2", "many-3", "many-4", "many-5"};
    fm_client *c = client_open();
    redisContext *sub = wire_sub_open(&redis_srv, "ops:sig-many"), *r = redis_open();
    int64_t signaled = -1;

    fmt_ok(c, fm_wake_signal_many(c, ids, 5, "ops:sig-many", &signaled), "wake.signal_many");
    ck_assert_int_eq(signaled, 5);
    for (size_t i = 0; i < 5; i++)
        sub_expect_wake(sub, "ops:sig-many", ids[i]);
    /* Published after the batch: anything extra would come before it. */
    sub_expect_nothing_more(r, sub, "ops:sig-many");
    redisFree(r);
    redisFree(sub);
    fm_client_free(c);
}
END_TEST

START_TEST(test_wake_signal_many_empty_signals_nothing)
{
    fm_client *c = client_open();
    redisContext *sub = wire_sub_open(&redis_srv, "ops:sig-none"), *r = redis_open();
    int64_t signaled = -1;

    fmt_ok(c, fm_wake_signal_many(c, NULL, 0, "ops:sig-none", &signaled), "wake.signal_many []");
    ck_assert_int_eq(signaled, 0);
    sub_expect_nothing_more(r, sub, "ops:sig-none");
    redisFree(r);
    redisFree(sub);
    fm_client_free(c);
}
END_TEST

/* ---- wake.subscribe and delivery -------------------------------------------- */

START_TEST(test_wake_subscribe_delivers_signal_from_another_client)
{
    fm_client *sub = client_open(), *pub = client_open();
    int64_t receivers = -1;
    fm_event ev;
    char *id;

    subscribe(sub, NULL, NULL);
    fmt_ok(pub, fm_wake_signal(pub, "deliver-1", NULL, &receivers), "wake.signal");
    ck_assert_int_ge(receivers, 1);
    id = next_wake(sub, "fm:wake", &ev);
    ck_assert_str_eq(id, "deliver-1");
    ck_assert_str_eq(ev.name, "wake");
    ck_assert(ev.has_timestamp);
    wire_assert_recent_ms(ev.timestamp, ev.json);
    fm_event_clear(&ev);
    free(id);
    fm_client_free(pub);
    fm_client_free(sub);
}
END_TEST

/* Publishes payload on channel straight into Redis while a client is
 * subscribed to it; returns the wake the client gets (clear it), whose
 * execution id must be id. */
static fm_event wake_of_payload(const char *channel, const char *payload, const char *id)
{
    fm_client *sub = client_open();
    redisContext *r = redis_open();
    fm_event ev;
    char *got;

    subscribe(sub, channel, NULL);
    redis_publish(r, channel, payload);
    got = next_wake(sub, channel, &ev);
    ck_assert_str_eq(got, id);
    free(got);
    redisFree(r);
    fm_client_free(sub);
    return ev;
}

START_TEST(test_wake_subscribe_takes_plain_payload_as_execution_id)
{
    fm_event ev = wake_of_payload("ops:plain", "plain-id", "plain-id");

    ck_assert(!ev.has_timestamp);
    fm_event_clear(&ev);
}
END_TEST

START_TEST(test_wake_subscribe_reads_id_and_timestamp_of_json_payload)
{
    fm_event ev = wake_of_payload("ops:json", "{\"executionId\":\"x1\",\"timestamp\":123}",
                                  "x1");

    ck_assert(ev.has_timestamp);
    ck_assert_int_eq(ev.timestamp, 123);
    fm_event_clear(&ev);
}
END_TEST

START_TEST(test_wake_events_arriving_during_a_call_are_queued)
{
    static const char *const ids[] = {"queued-1", "queued-2", "queued-3"};
    fm_client *sub = client_open(), *pub = client_open();
    struct pollfd pfd;
    int up = -1;

    subscribe(sub, "ops:queued", NULL);
    fmt_ok(pub, fm_wake_signal_many(pub, ids, 3, "ops:queued", NULL), "wake.signal_many");
    /* Once the first event sits in the socket, the ping must read past it. */
    pfd.fd = fm_client_fd(sub);
    pfd.events = POLLIN;
    ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
    fmt_ok(sub, fm_ping(sub, 1, &up), "ping while events arrive");
    ck_assert_int_eq(up, 1);
    ck_assert_uint_ge(fm_client_has_events(sub), 1);
    for (size_t i = 0; i < 3; i++)
        expect_wake(sub, "ops:queued", ids[i]);
    fm_client_free(pub);
    fm_client_free(sub);
}
END_TEST

START_TEST(test_wake_unsubscribe_stops_delivery)
{
    fm_client *sub = client_open(), *pub = client_open();
    char got[FM_STR_MAX + 1];

    subscribe(sub, "ops:unsub", NULL);
    subscribe(sub, "ops:unsub-sentinel", NULL);
    fmt_ok(sub, fm_wake_unsubscribe(sub, "ops:unsub", got, sizeof(got)), "wake.unsubscribe");
    ck_assert_str_eq(got, "ops:unsub");
    /* The daemon reads its subscriptions in publication order: a wake on
     * the dropped channel would reach the client before the sentinel. */
    fmt_ok(pub, fm_wake_signal(pub, "after-unsub", "ops:unsub", NULL), "wake.signal");
    fmt_ok(pub, fm_wake_signal(pub, "sentinel", "ops:unsub-sentinel", NULL), "wake.signal");
    expect_wake(sub, "ops:unsub-sentinel", "sentinel");
    fm_client_free(pub);
    fm_client_free(sub);
}
END_TEST

START_TEST(test_wake_unsubscribe_drops_redis_subscription)
{
    fm_client *sub = client_open();
    redisContext *r = redis_open();

    subscribe(sub, "ops:unsub-redis", NULL);
    ck_assert_int_eq(wire_redis_numsub(r, "ops:unsub-redis"), 1);
    fmt_ok(sub, fm_wake_unsubscribe(sub, "ops:unsub-redis", NULL, 0), "wake.unsubscribe");
    ck_assert_msg(wire_numsub_becomes(r, "ops:unsub-redis", 0, WAIT_MS),
                  "the daemon is still subscribed in Redis (NUMSUB %lld)",
                  wire_redis_numsub(r, "ops:unsub-redis"));
    redisFree(r);
    fm_client_free(sub);
}
END_TEST

/* The daemon's one Redis subscription is given back when the last of
 * many subscribers leaves, however they came and went: two connections,
 * one of them subscribing twice (a new group), one leaving by
 * unsubscribe and one by closing. */
START_TEST(test_wake_last_of_many_subscribers_drops_redis_subscription)
{
    fm_client *s1 = client_open(), *s2 = client_open();
    redisContext *r = redis_open();

    subscribe(s1, "ops:unsub-many", NULL);
    subscribe(s2, "ops:unsub-many", NULL);
    subscribe(s2, "ops:unsub-many", "g2");
    ck_assert_int_eq(wire_redis_numsub(r, "ops:unsub-many"), 1);
    fmt_ok(s1, fm_wake_unsubscribe(s1, "ops:unsub-many", NULL, 0), "wake.unsubscribe");
    fm_client_free(s2);
    ck_assert_msg(wire_numsub_becomes(r, "ops:unsub-many", 0, WAIT_MS),
                  "the daemon is still subscribed in Redis (NUMSUB %lld)",
                  wire_redis_numsub(r, "ops:unsub-many"));
    /* And subscribes again for the next one. */
    subscribe(s1, "ops:unsub-many", NULL);
    ck_assert_int_eq(wire_redis_numsub(r, "ops:unsub-many"), 1);
    redisFree(r);
    fm_client_free(s1);
}
END_TEST

START_TEST(test_wake_daemon_subscribes_once_for_many_local_subscribers)
{
    fm_client *s1 = client_open(), *s2 = client_open(), *pub = client_open();
    redisContext *r = redis_open();
    int64_t receivers = -1;

    subscribe(s1, "ops:fanout", NULL);
    subscribe(s2, "ops:fanout", NULL);
    ck_assert_int_eq(wire_redis_numsub(r, "ops:fanout"), 1);
    fmt_ok(pub, fm_wake_signal(pub, "fanout-1", "ops:fanout", &receivers), "wake.signal");
    ck_assert_int_eq(receivers, 1);
    expect_wake(s1, "ops:fanout", "fanout-1");
    expect_wake(s2, "ops:fanout", "fanout-1");
    redisFree(r);
    fm_client_free(pub);
    fm_client_free(s2);
    fm_client_free(s1);
}
END_TEST

/* Reads n wakes on channel into ids (malloc'd strings). */
static void read_wakes(fm_client *c, const char *channel, char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ids[i] = next_wake(c, channel, NULL);
}

START_TEST(test_wake_group_shares_wakes_round_robin)
{
    static const char *const ids[] = {"rr-1", "rr-2", "rr-3", "rr-4", "rr-s1", "rr-s2"};
    fm_client *g1 = client_open(), *g2 = client_open(), *solo = client_open();
    fm_client *pub = client_open();
    char *got1[3], *got2[3], *all[6];

    subscribe(g1, "ops:group", "workers");
    subscribe(g2, "ops:group", "workers");
    subscribe(solo, "ops:group", NULL);
    fmt_ok(pub, fm_wake_signal_many(pub, ids, 6, "ops:group", NULL), "wake.signal_many");
    for (size_t i = 0; i < 6; i++)
        expect_wake(solo, "ops:group", ids[i]);
    /* Each member gets every other wake: two of rr-1..4, then a sentinel
     * (rr-s*) third, so nothing else came in between. */
    read_wakes(g1, "ops:group", got1, 3);
    read_wakes(g2, "ops:group", got2, 3);
    ck_assert_msg(strncmp(got1[2], "rr-s", 4) == 0 && strncmp(got2[2], "rr-s", 4) == 0,
                  "third wakes %s and %s are not the sentinels", got1[2], got2[2]);
    memcpy(all, got1, sizeof(got1));
    memcpy(all + 3, got2, sizeof(got2));
    for (size_t i = 0; i < 6; i++)
        for (size_t j = i + 1; j < 6; j++)
            ck_assert_msg(strcmp(all[i], all[j]) != 0, "%s delivered twice in the group", all[i]);
    for (size_t i = 0; i < 6; i++)
        free(all[i]);
    fm_client_free(pub);
    fm_client_free(solo);
    fm_client_free(g2);
    fm_client_free(g1);
}
END_TEST

/* ---- cache.set, cache.get ---------------------------------------------------- */

/* Big integers, a 1.0, nesting, \u escapes and raw UTF-8, without
 * insignificant whitespace: the daemon must store exactly these bytes. */
#define EXACT_EXEC(id)                                                                  \
    "{\"id\":\"" id "\",\"big\":12345678901234567890,\"f\":1.0,\"neg\":-0.5e-3,"        \
    "\"nested\":{\"a\":[1,{\"b\":null,\"t\":true}],\"o\":{}},"                          \
    "\"u\":\"\\u00e9\\u65e5\\ud83d\\ude00\",\"raw\":\"\xc3\xa9\xe6\x97\xa5\"}"

static void cache_put(fm_client *c, const char *json, int64_t ttl_ms)
{
    fmt_ok(c, fm_cache_set(c, json, strlen(json), ttl_ms), "cache.set");
}

/* Asserts cache.get answers exactly `want`, or a miss when want is NULL. */
static void assert_cache_get(fm_client *c, const char *id, const char *want)
{
    char *json = NULL;
    size_t len = 0;

    fmt_ok(c, fm_cache_get(c, id, &json, &len), "cache.get");
    if (want == NULL) {
        ck_assert_msg(json == NULL && len == 0, "%s: hit %s, want a miss", id, json);
        return;
    }
    ck_assert_msg(json != NULL, "%s: miss, want %s", id, want);
    ck_assert_msg(len == strlen(want) && memcmp(json, want, len) == 0,
                  "%s: got\n  %s\nwant\n  %s", id, json, want);
    free(json);
}

START_TEST(test_cache_set_stores_exact_text_with_ttl)
{
    const char *exec = EXACT_EXEC("set-exact");
    fm_client *c = client_open();
    redisContext *r = redis_open();

    cache_put(c, exec, 45000);
    wire_assert_redis_value(r, "fm:exec:set-exact", exec);
    assert_pttl_in(r, "fm:exec:set-exact", 44000, 45000);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_set_default_ttl_is_60000)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();

    cache_put(c, "{\"id\":\"set-default-ttl\"}", 0);
    assert_pttl_in(r, "fm:exec:set-default-ttl", 59000, 60000);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_get_returns_exact_text)
{
    const char *exec = EXACT_EXEC("get-exact");
    fm_client *c = client_open();

    cache_put(c, exec, 0);
    assert_cache_get(c, "get-exact", exec);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_get_miss_returns_null)
{
    fm_client *c = client_open();

    assert_cache_get(c, "get-missing", NULL);
    fm_client_free(c);
}
END_TEST

/* Values anyone with access to Redis might leave under a cache key. */
static const char *const not_objects[] = {"not json", "[1,2]", "\"a string\"", "42",
                                          "{\"id\":\"cut", "{\"a\":1} trailing", NULL};

START_TEST(test_cache_get_answers_non_object_value_as_counted_miss)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();

    for (size_t i = 0; not_objects[i] != NULL; i++) {
        int64_t before = STATS_INT(c, "cache_invalid");

        redis_set(r, "fm:exec:get-invalid", not_objects[i]);
        assert_cache_get(c, "get-invalid", NULL);
        ck_assert_msg(STATS_INT(c, "cache_invalid") == before + 1,
                      "value %s was not counted in cache_invalid", not_objects[i]);
    }
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_round_trip_preserves_exact_json)
{
    const char *exec = "{\"id\":\"exact-json\",\"n\":1.0,"
                       "\"big\":123456789012345678901234567890,\"s\":\"\\u00e9\\n\"}";
    const char *id = "exact-json";
    fm_client *c = client_open();
    redisContext *r = redis_open();
    fm_cache_entry *e = NULL;
    size_t n = 0;

    cache_put(c, exec, 0);
    wire_assert_redis_value(r, "fm:exec:exact-json", exec);
    assert_cache_get(c, "exact-json", exec);
    fmt_ok(c, fm_cache_get_many(c, &id, 1, &e, &n), "cache.get_many");
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(e[0].id, "exact-json");
    ck_assert_str_eq(e[0].json, exec);
    fm_cache_entries_free(e, n);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

/* ---- cache.invalidate, cache.invalidate_many --------------------------------- */

START_TEST(test_cache_invalidate_deletes_key)
{
    fm_client *c = client_open();
    redisContext *r = redis_open();

    cache_put(c, "{\"id\":\"inv-one\"}", 0);
    ck_assert(redis_exists(r, "fm:exec:inv-one"));
    fmt_ok(c, fm_cache_invalidate(c, "inv-one"), "cache.invalidate");
    ck_assert(!redis_exists(r, "fm:exec:inv-one"));
    assert_cache_get(c, "inv-one", NULL);
    fmt_ok(c, fm_cache_invalidate(c, "inv-one"), "cache.invalidate of a missing entry");
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_invalidate_many_counts_existing_and_deletes)
{
    static const char *const ids[] = {"inv-a", "inv-b", "inv-missing", "inv-c"};
    fm_client *c = client_open();
    redisContext *r = redis_open();
    int64_t invalidated = -1;

    cache_put(c, "{\"id\":\"inv-a\"}", 0);
    cache_put(c, "{\"id\":\"inv-b\"}", 0);
    cache_put(c, "{\"id\":\"inv-c\"}", 0);
    fmt_ok(c, fm_cache_invalidate_many(c, ids, 4, &invalidated), "cache.invalidate_many");
    ck_assert_int_eq(invalidated, 3);
    ck_assert(!redis_exists(r, "fm:exec:inv-a"));
    ck_assert(!redis_exists(r, "fm:exec:inv-b"));
    ck_assert(!redis_exists(r, "fm:exec:inv-c"));
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_invalidate_many_empty_returns_zero)
{
    fm_client *c = client_open();
    int64_t invalidated = -1;

    fmt_ok(c, fm_cache_invalidate_many(c, NULL, 0, &invalidated), "cache.invalidate_many []");
    ck_assert_int_eq(invalidated, 0);
    fm_client_free(c);
}
END_TEST

/* ---- cache.get_many ------------------------------------------------------------ */

/* The entry for id among n entries, or NULL. */
static const fm_cache_entry *entry_of(const fm_cache_entry *e, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].id, id) == 0)
            return &e[i];
    return NULL;
}

START_TEST(test_cache_get_many_returns_hits_keyed_by_id)
{
    static const char *const ids[] = {"gm-a", "gm-missing", "gm-b", "gm-a", "gm-b", "gm-c"};
    static const char *const execs[] = {"{\"id\":\"gm-a\",\"v\":1.50}",
                                        "{\"id\":\"gm-b\",\"v\":[true,null]}",
                                        "{\"id\":\"gm-c\",\"v\":\"\\u00e9\"}"};
    fm_client *c = client_open();
    fm_cache_entry *e = NULL;
    size_t n = 0;

    for (size_t i = 0; i < 3; i++)
        cache_put(c, execs[i], 0);
    fmt_ok(c, fm_cache_get_many(c, ids, 6, &e, &n), "cache.get_many");
    ck_assert_uint_eq(n, 3);
    ck_assert_ptr_null(entry_of(e, n, "gm-missing"));
    for (size_t i = 0; i < 3; i++) {
        const char *id = ids[i == 0 ? 0 : i == 1 ? 2 : 5];
        const fm_cache_entry *hit = entry_of(e, n, id);

        ck_assert_msg(hit != NULL, "%s missing from get_many", id);
        ck_assert_uint_eq(hit->len, strlen(execs[i]));
        ck_assert_str_eq(hit->json, execs[i]);
    }
    fm_cache_entries_free(e, n);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_get_many_leaves_out_non_object_values)
{
    static const char *const ids[] = {"gmi-good", "gmi-bad"};
    fm_client *c = client_open();
    redisContext *r = redis_open();
    int64_t before = STATS_INT(c, "cache_invalid");
    fm_cache_entry *e = NULL;
    size_t n = 0;

    cache_put(c, "{\"id\":\"gmi-good\"}", 0);
    redis_set(r, "fm:exec:gmi-bad", "[1,2]");
    fmt_ok(c, fm_cache_get_many(c, ids, 2, &e, &n), "cache.get_many");
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(e[0].id, "gmi-good");
    ck_assert_int_eq(STATS_INT(c, "cache_invalid"), before + 1);
    fm_cache_entries_free(e, n);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

START_TEST(test_cache_get_many_empty_returns_nothing)
{
    fm_client *c = client_open();
    fm_cache_entry *e = NULL;
    size_t n = 1;

    fmt_ok(c, fm_cache_get_many(c, NULL, 0, &e, &n), "cache.get_many []");
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(e);
    fm_client_free(c);
}
END_TEST

#define BULK 10000

START_TEST(test_cache_get_many_takes_10000_ids_in_one_call)
{
    static char ids[BULK][24], vals[BULK][64], keys[BULK][32];
    static const char *idp[BULK], *argv[1 + 2 * BULK];
    static unsigned char seen[BULK];
    fm_client *c = client_open();
    redisContext *r = redis_open();
    fm_cache_entry *e = NULL;
    size_t n = 0;

    /* Written straight into Redis in one MSET: this is about the read. */
    argv[0] = "MSET";
    for (int i = 0; i < BULK; i++) {
        snprintf(ids[i], sizeof(ids[i]), "bulk-%05d", i);
        snprintf(keys[i], sizeof(keys[i]), "fm:exec:bulk-%05d", i);
        snprintf(vals[i], sizeof(vals[i]), "{\"id\":\"bulk-%05d\",\"n\":%d}", i, i);
        idp[i] = ids[i];
        argv[1 + 2 * i] = keys[i];
        argv[2 + 2 * i] = vals[i];
    }
    freeReplyObject(redis_checked(redisCommandArgv(r, 1 + 2 * BULK, argv, NULL),
                                  REDIS_REPLY_STATUS, "MSET"));
    fmt_ok(c, fm_cache_get_many(c, idp, BULK, &e, &n), "cache.get_many of 10000 ids");
    ck_assert_uint_eq(n, BULK);
    for (size_t i = 0; i < n; i++) {
        int k = -1;

        ck_assert_msg(sscanf(e[i].id, "bulk-%5d", &k) == 1 && k >= 0 && k < BULK && !seen[k],
                      "unexpected or repeated id %s", e[i].id);
        seen[k] = 1;
        ck_assert_str_eq(e[i].json, vals[k]);
    }
    fm_cache_entries_free(e, n);
    redisFree(r);
    fm_client_free(c);
}
END_TEST

/* ---- stats --------------------------------------------------------------------- */

START_TEST(test_stats_counts_connected_clients)
{
    fm_client *c = client_open(), *c2 = client_open(), *c3 = client_open();

    /* A reply proves the daemon accepted the connection. */
    fmt_ok(c2, fm_ping(c2, 0, NULL), "ping");
    fmt_ok(c3, fm_ping(c3, 0, NULL), "ping");
    ck_assert_int_ge(STATS_INT(c, "clients"), 3);
    fm_client_free(c3);
    fm_client_free(c2);
    fm_client_free(c);
}
END_TEST

START_TEST(test_stats_reports_redis_connected)
{
    fm_client *c = client_open();
    cJSON *root = stats_fetch(c);
    cJSON *redis = cJSON_GetObjectItemCaseSensitive(root, "redis");

    ck_assert_msg(cJSON_IsObject(redis), "stats has no redis object");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(redis, "connected")));
    cJSON_Delete(root);
    fm_client_free(c);
}
END_TEST

START_TEST(test_stats_counts_calls_per_op)
{
    fm_client *c = client_open();
    int64_t before = op_calls(c, "cache.get");

    for (int i = 0; i < 7; i++)
        assert_cache_get(c, "stats-calls", NULL);
    ck_assert_int_eq(op_calls(c, "cache.get"), before + 7);
    fm_client_free(c);
}
END_TEST

/* ---- two daemons, one Redis ---------------------------------------------------- */

START_TEST(test_two_daemons_signal_through_one_reaches_subscriber_of_other)
{
    fm_client *sub = fmt_client(&daemon_b), *pub = fmt_client(&daemon_a);
    int64_t receivers = -1;

    subscribe(sub, "ops:two", NULL);
    fmt_ok(pub, fm_wake_signal(pub, "two-1", "ops:two", &receivers), "wake.signal through A");
    ck_assert_int_eq(receivers, 1);
    expect_wake(sub, "ops:two", "two-1");
    fm_client_free(pub);
    fm_client_free(sub);
}
END_TEST

START_TEST(test_two_daemons_lock_through_one_is_held_through_other)
{
    fm_client *a = fmt_client(&daemon_a), *b = fmt_client(&daemon_b);
    fm_lock lk = wire_lock_take(a, "two-lock", 30000);

    ck_assert_int_eq(is_locked(b, "two-lock"), 1);
    assert_not_acquirable(b, "two-lock");
    release_expect(b, "two-lock", "not-the-token", 0, FM_RELEASE_NOT_OWNER);
    release_expect(a, "two-lock", lk.token, 1, FM_RELEASE_DONE);
    ck_assert_int_eq(is_locked(b, "two-lock"), 0);
    fm_client_free(b);
    fm_client_free(a);
}
END_TEST

/* ---- suite ----------------------------------------------------------------------- */

/* Generous: the tests bound their own waits, and also run under valgrind. */
#define TCASE_TIMEOUT 60

static TCase *tcase(Suite *s, const char *name, void (*up)(void))
{
    return fmt_tcase(s, name, up, servers_down, TCASE_TIMEOUT);
}

Suite *fm_suite_ops(void)
{
    Suite *s = suite_create("ops");
    TCase *session = tcase(s, "session", servers_up);
    TCase *locks = tcase(s, "locks", servers_up);
    TCase *wake = tcase(s, "wake", servers_up);
    TCase *cache = tcase(s, "cache", servers_up);
    TCase *stats = tcase(s, "stats", servers_up);
    TCase *two = tcase(s, "two_daemons", two_daemons_up);

    tcase_add_test(session, test_hello_reports_protocol_1_and_server_name);
    tcase_add_test(session, test_ping_without_redis_round_trip_says_up);
    tcase_add_test(session, test_ping_with_redis_round_trip_says_up);

    tcase_add_test(locks, test_lock_acquire_sets_key_with_token_and_ttl);
    tcase_add_test(locks, test_lock_acquire_default_ttl_is_30000);
    tcase_add_test(locks, test_lock_acquire_fence_increases_with_every_acquire);
    tcase_add_test(locks, test_lock_acquire_held_lock_is_not_acquired);
    tcase_add_test(locks, test_lock_acquire_waiter_gets_lock_after_holder_releases);
    tcase_add_test(locks, test_lock_acquire_waiter_is_woken_by_release_before_its_retry);
    tcase_add_test(locks, test_lock_acquire_max_retries_0_is_one_attempt);
    tcase_add_test(locks, test_lock_release_deletes_key);
    tcase_add_test(locks, test_lock_release_publishes_full_key_on_release_channel);
    tcase_add_test(locks, test_lock_release_with_wrong_token_is_not_owner);
    tcase_add_test(locks, test_lock_release_without_lock_is_not_held);
    tcase_add_test(locks, test_lock_extend_sets_ttl_rather_than_adding);
    tcase_add_test(locks, test_lock_extend_with_wrong_token_fails_and_keeps_ttl);
    tcase_add_test(locks, test_lock_extend_without_lock_fails);
    tcase_add_test(locks, test_lock_is_locked_reports_held_and_free);
    tcase_add_test(locks, test_with_lock_runs_callback_while_held_then_releases);
    tcase_add_test(locks, test_with_lock_skips_callback_when_held_elsewhere);

    tcase_add_test(wake, test_wake_signal_receivers_counts_redis_subscribers);
    tcase_add_test(wake, test_wake_signal_publishes_node_payload_on_default_channel);
    tcase_add_test(wake, test_wake_signal_honours_channel_argument);
    tcase_add_test(wake, test_wake_signal_many_publishes_each_id_once);
    tcase_add_test(wake, test_wake_signal_many_empty_signals_nothing);
    tcase_add_test(wake, test_wake_subscribe_delivers_signal_from_another_client);
    tcase_add_test(wake, test_wake_subscribe_takes_plain_payload_as_execution_id);
    tcase_add_test(wake, test_wake_subscribe_reads_id_and_timestamp_of_json_payload);
    tcase_add_test(wake, test_wake_events_arriving_during_a_call_are_queued);
    tcase_add_test(wake, test_wake_unsubscribe_stops_delivery);
    tcase_add_test(wake, test_wake_unsubscribe_drops_redis_subscription);
    tcase_add_test(wake, test_wake_last_of_many_subscribers_drops_redis_subscription);
    tcase_add_test(wake, test_wake_daemon_subscribes_once_for_many_local_subscribers);
    tcase_add_test(wake, test_wake_group_shares_wakes_round_robin);

    tcase_add_test(cache, test_cache_set_stores_exact_text_with_ttl);
    tcase_add_test(cache, test_cache_set_default_ttl_is_60000);
    tcase_add_test(cache, test_cache_get_returns_exact_text);
    tcase_add_test(cache, test_cache_get_miss_returns_null);
    tcase_add_test(cache, test_cache_get_answers_non_object_value_as_counted_miss);
    tcase_add_test(cache, test_cache_round_trip_preserves_exact_json);
    tcase_add_test(cache, test_cache_invalidate_deletes_key);
    tcase_add_test(cache, test_cache_invalidate_many_counts_existing_and_deletes);
    tcase_add_test(cache, test_cache_invalidate_many_empty_returns_zero);
    tcase_add_test(cache, test_cache_get_many_returns_hits_keyed_by_id);
    tcase_add_test(cache, test_cache_get_many_leaves_out_non_object_values);
    tcase_add_test(cache, test_cache_get_many_empty_returns_nothing);
    tcase_add_test(cache, test_cache_get_many_takes_10000_ids_in_one_call);

    tcase_add_test(stats, test_stats_counts_connected_clients);
    tcase_add_test(stats, test_stats_reports_redis_connected);
    tcase_add_test(stats, test_stats_counts_calls_per_op);

    tcase_add_test(two, test_two_daemons_signal_through_one_reaches_subscriber_of_other);
    tcase_add_test(two, test_two_daemons_lock_through_one_is_held_through_other);
    return s;
}
