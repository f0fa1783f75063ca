/* test_hostile.c -- what an outside review found by reading the daemon as
 * a hostile client would, each defect replayed against a real redis-server
 * and fmredisd through the raw protocol.
 *
 * Every test here failed on the daemon before its fix. Most of them make a
 * race deterministic instead of hoping to hit it: Redis is held still with
 * DEBUG SLEEP, or the daemon with SIGSTOP, while the test lines events up
 * behind them, so that they arrive in one read or one loop turn.
 *
 * Each test starts its own servers in its body, so that they die with the
 * test's process even when an assertion fails. */
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "fm_tests.h"
#include "harness.h"
#include "wire.h"

#define TCASE_TIMEOUT 60
#define ANSWER_MS 2000          /* a reply that waits for nothing, on a busy machine */
#define SETTLE_MS 10000         /* for the daemon's state to come back */

static const char *const debug_redis[] = {"--enable-debug-command", "yes", NULL};

/* ---- Redis-side helpers --------------------------------------------------- */

/* How many channels matching pattern Redis has subscribers for. */
static long long channels_matching(redisContext *r, const char *pattern)
{
    redisReply *rep = wire_redis_ok(r, "PUBSUB CHANNELS %s", pattern);
    long long n = (long long)rep->elements;

    freeReplyObject(rep);
    return n;
}

/* ---- daemon-side helpers -------------------------------------------------- */

/* An execution of about pad bytes: {"id":"<id>","pad":"<fill...>"}
 * (caller frees). */
static char *big_execution(const char *id, char fill, size_t pad)
{
    char *json = malloc(pad + strlen(id) + 32);
    size_t n;

    ck_assert_ptr_nonnull(json);
    n = (size_t)sprintf(json, "{\"id\":\"%s\",\"pad\":\"", id);
    memset(json + n, fill, pad);
    strcpy(json + n + pad, "\"}");
    return json;
}

static void await_stat(const char *sock, const char *name, long long want)
{
    wire_await_stat(sock, name, want, SETTLE_MS);
}

/* ---- 1. a doomed subscriber's confirmation must not spin the loop -------- */

/* Sends a command and does not wait for its reply. */
static void redis_send_only(redisContext *r, const char *fmt, ...)
{
    va_list ap;
    int done = 0;

    va_start(ap, fmt);
    ck_assert_int_eq(redisvAppendCommand(r, fmt, ap), REDIS_OK);
    va_end(ap);
    while (!done)
        ck_assert_int_eq(redisBufferWrite(r, &done), REDIS_OK);
}

/* Waits until Redis stops answering (a DEBUG SLEEP sent before has begun):
 * a PING on a fresh connection that gets no answer within 100 ms. */
static void await_redis_asleep(const fmt_redis *srv)
{
    int64_t end = fmt_now_ms() + SETTLE_MS;

    for (;;) {
        redisContext *probe = wire_redis_open(srv);
        struct pollfd pfd = {probe->fd, POLLIN, 0};
        int answered;

        redis_send_only(probe, "PING");
        answered = poll(&pfd, 1, 100) > 0;

        redisFree(probe);
        if (!answered)
            return;
        ck_assert_msg(fmt_now_ms() < end, "Redis did not begin its DEBUG SLEEP");
    }
}

/* A subscriber that overflows max_output_bytes is doomed, and closed at the
 * end of the loop turn. If the confirmation of another wake.subscribe of
 * its arrives in that same turn, its answer cannot be queued: the loop that
 * answered waiting subscribes used to spin forever on it, at 100 % CPU,
 * and no other client was ever answered again.
 *
 * Redis is put to sleep so that the overflowing wake and the confirmation
 * leave it in one write: a PUBLISH and then the daemon's SUBSCRIBE arrive
 * while it sleeps, and it runs them in that order when it wakes (epoll
 * reports sockets in the order they became readable). The payload is
 * 12,000 control bytes, small enough for one read of Redis's, each of them
 * escaped to six bytes in the wake event: 72 KB of output. */
START_TEST(test_doomed_subscriber_confirmation_does_not_hang_the_daemon)
{
    static const char *const extra[] = {"--max_output_bytes", "65536", NULL};
    char payload[12001];
    redisContext *sleeper, *publisher;
    fmt_redis srv;
    fmt_daemon d;
    int victim, other;
    cJSON *reply;

    memset(payload, 1, sizeof(payload) - 1);
    payload[sizeof(payload) - 1] = '\0';
    wire_pair_start(&srv, &d, debug_redis, extra);
    victim = wire_connect(d.sock);
    other = wire_connect(d.sock);
    wire_expect_ok(victim, "{\"op\":\"wake.subscribe\",\"id\":1,\"channel\":\"hx\"}", "1");

    /* Both connected before the sleep: a connection accepted after it
     * would be read after the daemon's. */
    sleeper = wire_redis_open(&srv);
    publisher = wire_redis_open(&srv);
    redis_send_only(sleeper, "DEBUG SLEEP 1");
    await_redis_asleep(&srv);
    redis_send_only(publisher, "PUBLISH hx %s", payload);
    wire_send(victim, "{\"op\":\"wake.subscribe\",\"id\":2,\"channel\":\"hy\"}");

    /* Once Redis wakes up the overflowing subscriber is closed, and the
     * others are served again. */
    ck_assert_msg(fmt_raw_closed(victim, SETTLE_MS), "the overflowing subscriber was not closed");
    wire_send(other, "{\"op\":\"ping\",\"id\":\"p\",\"redis\":true}");
    reply = wire_recv(other, ANSWER_MS);
    wire_assert_ok(reply, "\"p\"");
    cJSON_Delete(reply);
    wire_assert_serving(d.sock, "none", "null");

    close(victim);
    close(other);
    redisFree(publisher);
    redisFree(sleeper);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* ---- 2. unsubscribe while the subscribe is pending ------------------------- */

/* A wake.unsubscribe that arrives while Redis has not yet confirmed the
 * wake.subscribe of the same channel must still end the subscription:
 * nothing may stay subscribed at Redis for a channel no one wants. */
START_TEST(test_unsubscribe_during_pending_subscribe_leaves_no_subscription)
{
    enum { PAIRS = 2000 };
    redisContext *r;
    fmt_redis srv;
    fmt_daemon d;
    int fd, n;
    char *batch = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&batch, &len);

    ck_assert_ptr_nonnull(f);
    wire_pair_start(&srv, &d, NULL, (const char *const[]){"--max_inflight_per_client", "100000",
                                                          NULL});
    r = wire_redis_open(&srv);
    fd = wire_connect(d.sock);

    /* Every pair in one write, so every unsubscribe meets its subscribe
     * still pending. */
    for (n = 0; n < PAIRS; n++) {
        char body[160];

        snprintf(body, sizeof(body), "{\"op\":\"wake.subscribe\",\"id\":%d,\"channel\":\"leak:%d\"}",
                 2 * n, n);
        wire_frame_put(f, body);
        snprintf(body, sizeof(body),
                 "{\"op\":\"wake.unsubscribe\",\"id\":%d,\"channel\":\"leak:%d\"}", 2 * n + 1, n);
        wire_frame_put(f, body);
    }
    fclose(f);
    ck_assert_int_eq(fmt_raw_write(fd, batch, len), 0);
    for (n = 0; n < 2 * PAIRS; n++) {
        cJSON *reply = wire_recv(fd, SETTLE_MS);

        ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")),
                      "reply %d is not ok", n);
        cJSON_Delete(reply);
    }
    /* Every channel was unsubscribed last, on the open connection: none
     * may stay subscribed at Redis. */
    {
        int64_t end = fmt_now_ms() + SETTLE_MS;
        long long left;

        while ((left = channels_matching(r, "leak:*")) > 0 && fmt_now_ms() < end)
            usleep(10000);
        ck_assert_msg(left == 0, "%lld channels are still subscribed at Redis", left);
    }
    close(fd);
    wire_assert_serving(d.sock, "none", "null");
    free(batch);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* ---- 3. expired locks leave a connection's table ------------------------ */

static int no_keys_matching(void *arg)
{
    redisContext *r = arg;
    redisReply *rep = wire_redis_ok(r, "KEYS held:k*");
    int none = rep->elements == 0;

    freeReplyObject(rep);
    return none;
}

/* A connection that takes many locks with on_disconnect "release" and
 * short TTLs, and lets them expire: the daemon must forget them at their
 * expiry, not carry them (memory, and a release script each at the close)
 * for as long as the connection lives. */
START_TEST(test_expired_locks_leave_the_connection_table)
{
    enum { KEYS = 3000, WINDOW = 200 };
    static const char *const extra[] = {"--lock_key_prefix", "held:", NULL};
    redisContext *r;
    fmt_redis srv;
    fmt_daemon d;
    long long before;
    int fd, other, n, k;

    wire_pair_start(&srv, &d, NULL, extra);
    r = wire_redis_open(&srv);
    fd = wire_connect(d.sock);
    other = wire_connect(d.sock);
    for (n = 0; n < KEYS; n += WINDOW) {
        for (k = n; k < n + WINDOW; k++) {
            char *req = wire_strf("{\"op\":\"lock.acquire\",\"id\":%d,\"key\":\"k%d\","
                                  "\"ttl\":30,\"max_retries\":0}", k, k);
            wire_send(fd, req);
            free(req);
        }
        for (k = n; k < n + WINDOW; k++) {
            cJSON *reply = wire_recv(fd, SETTLE_MS);

            ck_assert_msg(wire_str(reply, "token") != NULL, "an acquire was not granted");
            cJSON_Delete(reply);
        }
    }
    /* The daemon's timers for them ran before Redis expired the last. */
    ck_assert_msg(fmt_wait_until(no_keys_matching, r, SETTLE_MS), "the locks did not expire");
    /* The daemon's timers run on its own clock, later under valgrind. */
    await_stat(d.sock, "locks_held", 0);

    /* Closing the connection now has nothing left to release. */
    before = wire_redis_calls(r, "evalsha");
    close(fd);
    await_stat(d.sock, "clients", 2);   /* other, and the one asking */
    wire_expect_ok(other, "{\"op\":\"ping\",\"id\":1,\"redis\":true}", "1");
    ck_assert_int_eq(wire_redis_calls(r, "evalsha") - before, 0);
    close(other);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* ---- 4. a channel the Redis ACL forbids -------------------------------- */

static int has_event(int fd, int timeout_ms, const char *what)
{
    char *body = fmt_raw_recv(fd, timeout_ms, NULL);
    int found = body != NULL && strstr(body, what) != NULL;

    free(body);
    return found;
}

/* Redis answers SUBSCRIBE to a channel its ACL forbids with NOPERM, which
 * hiredis 0.14 takes for a fatal error on a subscribed connection: the
 * daemon used to reconnect and subscribe the same channel again, dozens of
 * times a second, and every subscriber lost its wakes meanwhile. The
 * request that asked gets the error; nobody else notices. */
START_TEST(test_forbidden_channel_fails_its_request_and_the_link_stays_up)
{
    redisContext *r, *pub;
    fmt_redis srv;
    fmt_daemon d;
    int sub, bad;
    cJSON *reply;

    ck_assert_msg(fmt_redis_start(&srv, NULL) == 0, "redis-server did not start");
    r = wire_redis_open(&srv);
    freeReplyObject(wire_redis_ok(r, "ACL SETUSER default resetchannels &fm:*"));
    wire_daemon_up(&d, srv.url, NULL);
    sub = wire_connect(d.sock);
    bad = wire_connect(d.sock);
    wire_expect_ok(sub, "{\"op\":\"wake.subscribe\",\"id\":1}", "1");

    wire_send(bad, "{\"op\":\"wake.subscribe\",\"id\":2,\"channel\":\"forbidden:x\"}");
    reply = wire_recv(bad, ANSWER_MS);
    wire_assert_error(reply, "redis_error", "2");
    cJSON_Delete(reply);
    /* Asked again, refused again, at once. */
    wire_expect_error(bad, "{\"op\":\"wake.subscribe\",\"id\":3,\"channel\":\"forbidden:x\"}",
                      "redis_error", "3");

    /* The subscriber saw no link event, and its wakes still arrive. */
    pub = wire_redis_open(&srv);
    ck_assert_int_eq(wire_redis_int(pub, "PUBLISH fm:wake %s", "after-the-refusal"), 1);
    ck_assert_msg(has_event(sub, ANSWER_MS, "after-the-refusal"),
                  "the subscriber did not get the wake first");
    ck_assert_int_eq(wire_stats_int(bad, "clients"), 2);
    {
        cJSON *stats = wire_call(bad, "{\"op\":\"stats\",\"id\":4}");
        const cJSON *redis = cJSON_GetObjectItemCaseSensitive(stats, "redis");
        const cJSON *drops = cJSON_GetObjectItemCaseSensitive(redis, "disconnects");

        ck_assert_msg(cJSON_IsNumber(drops) && drops->valuedouble == 0,
                      "the link dropped after the refusal");
        cJSON_Delete(stats);
    }
    close(sub);
    close(bad);
    redisFree(pub);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* ---- 5. an acquire answered with an error leaves no lock -------------- */

/* The fence counter of a lock's slot is the only key of its kind after
 * one acquire: the test finds it, then breaks it so that INCR fails after
 * the SET of the lock succeeded. */
START_TEST(test_acquire_failing_on_its_fence_leaves_no_lock)
{
    redisContext *r;
    fmt_redis srv;
    fmt_daemon d;
    redisReply *fences;
    cJSON *reply;
    int fd;

    wire_pair_start(&srv, &d, NULL, NULL);
    r = wire_redis_open(&srv);
    fd = wire_connect(d.sock);
    reply = wire_call(fd, "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"fenced\"}");
    wire_assert_ok(reply, "1");
    {
        char *req = wire_strf("{\"op\":\"lock.release\",\"id\":2,\"key\":\"fenced\","
                              "\"token\":\"%s\"}", wire_str(reply, "token"));
        wire_expect_ok(fd, req, "2");
        free(req);
    }
    cJSON_Delete(reply);
    fences = wire_redis_ok(r, "KEYS fm:lock:\001fence:*");
    ck_assert_int_eq((int)fences->elements, 1);

    /* A counter that cannot be incremented: a value that is no integer,
     * and one at its maximum. */
    freeReplyObject(wire_redis_ok(r, "SET %b not-a-number", fences->element[0]->str,
                             fences->element[0]->len));
    wire_expect_error(fd, "{\"op\":\"lock.acquire\",\"id\":3,\"key\":\"fenced\"}", "redis_error",
                      "3");
    ck_assert_int_eq(wire_redis_int(r, "EXISTS fm:lock:fenced"), 0);
    freeReplyObject(wire_redis_ok(r, "SET %b 9223372036854775807", fences->element[0]->str,
                             fences->element[0]->len));
    wire_expect_error(fd, "{\"op\":\"lock.acquire\",\"id\":4,\"key\":\"fenced\"}", "redis_error",
                      "4");
    ck_assert_int_eq(wire_redis_int(r, "EXISTS fm:lock:fenced"), 0);

    /* Mended, the lock is there to take. */
    freeReplyObject(wire_redis_ok(r, "SET %b 41", fences->element[0]->str, fences->element[0]->len));
    reply = wire_call(fd, "{\"op\":\"lock.acquire\",\"id\":5,\"key\":\"fenced\"}");
    wire_assert_ok(reply, "5");
    ck_assert_int_eq((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(reply, "fence")),
                     42);
    cJSON_Delete(reply);
    freeReplyObject(fences);
    close(fd);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* ---- 6. a release notice after the deadline ------------------------------ */

/* Starts a daemon with tests/stall/stall.c preloaded: creating the file
 * named by stall_file holds it still once, right after its next epoll_wait
 * returns events. ASan wants to be the first library loaded; here it may
 * not be. */
static void stalling_daemon_up(fmt_daemon *d, const fmt_redis *srv, const char *const *extra,
                               char *stall_file, size_t len)
{
    const char *lib = getenv("FM_STALL_LIB"), *asan = getenv("ASAN_OPTIONS");
    char *asan_opts = wire_strf("%s%sverify_asan_link_order=0", asan ? asan : "",
                                asan && *asan ? ":" : "");

    ck_assert_msg(lib != NULL && access(lib, R_OK) == 0,
                  "FM_STALL_LIB (%s) is not a readable file (make test builds and sets it)",
                  lib ? lib : "unset");
    snprintf(stall_file, len, "/tmp/fmtest-stall.%d", (int)getpid());
    unlink(stall_file);
    setenv("FM_STALL_FILE", stall_file, 1);
    setenv("LD_PRELOAD", lib, 1);
    setenv("ASAN_OPTIONS", asan_opts, 1);
    wire_daemon_up(d, srv->url, extra);
    unsetenv("LD_PRELOAD");
    free(asan_opts);
}

static void stall_arm(const char *stall_file)
{
    FILE *f = fopen(stall_file, "w");

    ck_assert_msg(f != NULL, "cannot create %s", stall_file);
    fclose(f);
}

/* A waiting acquire whose deadline passes in the very loop turn that
 * handles a release notice for its key must be answered at its deadline.
 * The daemon used to compute the next wait as deadline - now on an unsigned
 * value, which wrapped: no timer was left, and the answer waited for
 * whatever Redis did next.
 *
 * The notice is the next event the daemon sees, and the stall holds the
 * daemon between that epoll_wait's return and the notice's handling until
 * the deadline has passed. Redis is asleep meanwhile, so that the answer
 * cannot come from an attempt's reply: it must come from the deadline. */
START_TEST(test_release_notice_after_the_deadline_does_not_delay_the_answer)
{
    static const char *const extra[] = {"--request_timeout_ms", "300", NULL};
    char stall_file[64];
    redisContext *r, *sleeper;
    fmt_redis srv;
    fmt_daemon d;
    int holder, waiter, probe;
    int64_t deadline;
    cJSON *reply;

    ck_assert_msg(fmt_redis_start(&srv, debug_redis) == 0, "redis-server did not start");
    stalling_daemon_up(&d, &srv, extra, stall_file, sizeof(stall_file));
    r = wire_redis_open(&srv);
    sleeper = wire_redis_open(&srv);
    holder = wire_connect(d.sock);
    waiter = wire_connect(d.sock);
    probe = wire_connect(d.sock);
    reply = wire_call(holder, "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"late\",\"ttl\":60000}");
    wire_assert_ok(reply, "1");
    cJSON_Delete(reply);

    /* The deadline is 300 + 1000 ms away. A notice at once makes the
     * acquire try again without spending its retry, and then wait on its
     * timer until the deadline. The probe's answer means that the attempt
     * came back. */
    deadline = fmt_now_ms() + 1300;
    wire_send(waiter, "{\"op\":\"lock.acquire\",\"id\":2,\"key\":\"late\","
                      "\"retry_delay\":1000,\"max_retries\":1}");
    wire_expect_ok(probe, "{\"op\":\"ping\",\"id\":3,\"redis\":true}", "3");
    while (fmt_now_ms() < deadline - 1000)
        usleep(10000);
    ck_assert_int_eq(wire_redis_int(r, "PUBLISH fm:lock:released fm:lock:late"), 1);
    wire_expect_ok(probe, "{\"op\":\"ping\",\"id\":4,\"redis\":true}", "4");
    while (fmt_now_ms() < deadline - 150)
        usleep(10000);

    /* Held still for 300 ms from here, the daemon handles the notice at
     * about deadline + 150. */
    stall_arm(stall_file);
    ck_assert_int_eq(wire_redis_int(r, "PUBLISH fm:lock:released fm:lock:late"), 1);
    redis_send_only(sleeper, "DEBUG SLEEP 3");
    await_redis_asleep(&srv);

    reply = wire_recv(waiter, SETTLE_MS);
    wire_assert_ok(reply, "2");
    ck_assert_msg(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(reply, "token")),
                  "the waiter got the lock");
    ck_assert_msg(fmt_now_ms() < deadline + 1500, "answered %lld ms after the deadline",
                  (long long)(fmt_now_ms() - deadline));
    ck_assert_msg(access(stall_file, F_OK) != 0, "the daemon was never held still");
    cJSON_Delete(reply);
    close(holder);
    close(waiter);
    close(probe);
    redisFree(sleeper);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* ---- one client must not stall the others -------------------------------- */

static int cmp_ms(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* A client that pours reads of a large execution and does not read the
 * replies must not hold up another client's small requests: all commands
 * share one connection to Redis, which answers them in order, so without
 * a bound on what one client has out at Redis, hundreds of MB of its
 * replies sat in front of everyone else's (1.1-1.5 s for a ping). */
START_TEST(test_bulk_reads_of_one_client_do_not_stall_another)
{
    enum { POUR = 400, ROUNDS = 300, SAMPLES = 2 * ROUNDS, TICK = 5, BIG = 800 * 1024 };
    static const char small[] = "{\"id\":\"small\",\"n\":1}";
    char *big = big_execution("big", 'x', BIG), *pour = NULL;
    int64_t lat[SAMPLES], p99, start, tick;
    redisContext *r;
    fmt_redis srv;
    fmt_daemon d;
    int pourer, other;
    size_t len;
    FILE *f;

    /* Under valgrind the daemon is slower: the other client asks less
     * often, and may have more requests out than the default 256. */
    wire_pair_start(&srv, &d, NULL, (const char *const[]){"--max_inflight_per_client", "4096",
                                                          NULL});
    tick = TICK * wire_slowdown(&d);
    r = wire_redis_open(&srv);
    freeReplyObject(wire_redis_ok(r, "SET fm:exec:big %s", big));
    wire_store(d.sock, small);
    pourer = wire_connect(d.sock);
    other = wire_connect(d.sock);

    f = open_memstream(&pour, &len);
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < POUR; i++) {
        char body[80];

        snprintf(body, sizeof(body), "{\"op\":\"cache.get\",\"id\":%d,\"execution_id\":\"big\"}", i);
        wire_frame_put(f, body);
    }
    fclose(f);
    ck_assert_int_eq(fmt_raw_write(pourer, pour, len), 0);
    start = fmt_now_ms();
    /* Open loop: a ping and a small cache.get every tick ms, whatever the
     * answers do, each timed from when it was due; a stall then shows in
     * every request it holds up, not in one. The ping goes to Redis behind
     * the pourer's reads (misses of the near cache), the cache.get too
     * until its own read filled the near cache. */
    for (int sent = 0, got = 0; got < SAMPLES;) {
        int64_t now = fmt_now_ms(), due = start + sent * tick;
        struct pollfd pfd = {other, POLLIN, 0};
        cJSON *reply;
        int id;

        if (sent < ROUNDS && now >= due) {
            char *req = wire_strf("{\"op\":\"ping\",\"id\":%d,\"redis\":true}", 2 * sent);

            wire_send(other, req);
            free(req);
            req = wire_strf("{\"op\":\"cache.get\",\"id\":%d,\"execution_id\":\"small\"}",
                            2 * sent + 1);
            wire_send(other, req);
            free(req);
            sent++;
            continue;
        }
        if (poll(&pfd, 1, sent < ROUNDS ? (int)(due - now) : SETTLE_MS) <= 0)
            continue;
        reply = wire_recv(other, SETTLE_MS);
        id = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(reply, "id"));
        ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")),
                      "request %d failed: %s", id, cJSON_PrintUnformatted(reply));
        if (id % 2 == 1)
            ck_assert_msg(cJSON_GetObjectItemCaseSensitive(reply, "execution") != NULL,
                          "no execution");
        lat[got++] = fmt_now_ms() - (start + id / 2 * tick);
        cJSON_Delete(reply);
    }
    qsort(lat, SAMPLES, sizeof(lat[0]), cmp_ms);
    p99 = lat[SAMPLES * 99 / 100];
    if (getenv("FM_TIMINGS") != NULL)
        fprintf(stderr, "timing: p50 %lld p99 %lld max %lld ms\n", (long long)lat[SAMPLES / 2],
                (long long)p99, (long long)lat[SAMPLES - 1]);
    ck_assert_msg(p99 < 100 * wire_slowdown(&d),
                  "a ping or cache.get took %lld ms at p99 (worst %lld) while another client "
                  "poured reads", (long long)p99, (long long)lat[SAMPLES - 1]);
    close(pourer);
    close(other);
    free(pour);
    free(big);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* A client with a backlog of large reads must not starve another client's
 * large read: once capacity frees, the one held back longest goes first,
 * and a large command the window held back is not overtaken by smaller
 * ones that fill each gap. */
START_TEST(test_large_read_is_not_starved_by_another_clients_backlog)
{
    enum { BACKLOG = 200, MB = 1 << 20 };
    char *one = big_execution("one", '1', MB), *two = big_execution("two", '2', MB);
    char *three = big_execution("three", '3', MB), *batch = NULL;
    redisContext *r;
    fmt_redis srv;
    fmt_daemon d;
    int pourer, other, status;
    int64_t t0;
    pid_t reader;
    size_t len;
    FILE *f;

    wire_pair_start(&srv, &d, NULL, NULL);
    r = wire_redis_open(&srv);
    freeReplyObject(wire_redis_ok(r, "SET fm:exec:one %s", one));
    freeReplyObject(wire_redis_ok(r, "SET fm:exec:two %s", two));
    freeReplyObject(wire_redis_ok(r, "SET fm:exec:three %s", three));
    pourer = wire_connect(d.sock);
    other = wire_connect(d.sock);
    /* Both learn how large their reads are first. */
    wire_send(pourer, "{\"op\":\"cache.get\",\"id\":0,\"execution_id\":\"one\"}");
    free(wire_recv_text(pourer, SETTLE_MS, NULL));
    wire_send(other, "{\"op\":\"cache.get\",\"id\":0,\"execution_id\":\"three\"}");
    free(wire_recv_text(other, SETTLE_MS, NULL));
    f = open_memstream(&batch, &len);
    ck_assert_ptr_nonnull(f);
    for (int i = 1; i <= BACKLOG; i++) {
        char body[128];

        snprintf(body, sizeof(body), "{\"op\":\"cache.get_many\",\"id\":%d,"
                 "\"execution_ids\":[\"one\",\"two\"]}", i);
        wire_frame_put(f, body);
    }
    fclose(f);
    /* A child reads the pourer's replies, so that it stays a reader the
     * daemon keeps serving, not a slow consumer it closes. */
    reader = fork();
    ck_assert_int_ge(reader, 0);
    if (reader == 0)
        _exit(fmt_raw_drain(pourer, 120000, NULL) ? 0 : 1);
    ck_assert_int_eq(fmt_raw_write(pourer, batch, len), 0);
    t0 = fmt_now_ms();
    wire_send(other, "{\"op\":\"cache.get\",\"id\":1,\"execution_id\":\"three\"}");
    {
        size_t n;
        char *text = wire_recv_text(other, SETTLE_MS, &n);

        ck_assert_msg(n > MB && strstr(text, "\"ok\":true") != NULL,
                      "the other client's read failed: %.200s", text);
        free(text);
    }
    if (getenv("FM_TIMINGS") != NULL)
        fprintf(stderr, "timing: a large read behind a backlog: %lld ms\n",
                (long long)(fmt_now_ms() - t0));
    ck_assert_msg(fmt_now_ms() - t0 < 1000 * wire_slowdown(&d),
                  "the other client's read took %lld ms behind a backlog of %d",
                  (long long)(fmt_now_ms() - t0), BACKLOG);
    shutdown(pourer, SHUT_RDWR);
    ck_assert_int_eq(waitpid(reader, &status, 0), reader);
    close(pourer);
    close(other);
    free(batch);
    free(one);
    free(two);
    free(three);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

static int lock_cut_gone(void *arg)
{
    return wire_redis_int(arg, "EXISTS fm:lock:cut") == 0;
}

/* The id of the daemon's command connection at Redis: of the daemon's
 * two, the one not subscribed, once the other is (flags=P); the test's own
 * connection r is the only other one. -1 until then. */
static long long daemon_cmd_client(redisContext *r)
{
    redisReply *list = wire_redis_ok(r, "CLIENT LIST");
    long long me = wire_redis_int(r, "CLIENT ID"), id = -1;
    int subscribed = 0;

    for (char *line = strtok(list->str, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        long long cid = strtoll(line + 3, NULL, 10);
        const char *flags = strstr(line, " flags=");

        if (flags != NULL && strncmp(flags, " flags=P", 8) == 0)
            subscribed = 1;
        else if (cid != me)
            id = cid;
    }
    freeReplyObject(list);
    return subscribed ? id : -1;
}

static int cmd_client_known(void *arg)
{
    return daemon_cmd_client(arg) >= 0;
}

/* An acquire whose link dropped with the attempt in flight is answered
 * redis_unavailable; Redis may have taken the lock before the drop, and
 * then the daemon releases it, by its token, once the link is back. Made
 * certain here: Redis sleeps while the attempt and a CLIENT KILL of the
 * daemon's connection queue up behind each other, so it runs the attempt
 * and throws its reply away with the connection. */
START_TEST(test_acquire_cut_off_by_a_link_drop_leaves_no_lock)
{
    /* A slow reconnect, so that the lock can be seen held before it goes. */
    static const char *const extra[] = {"--reconnect_step_ms", "1500", "--reconnect_max_ms",
                                        "1500", NULL};
    redisContext *r, *sleeper, *killer;
    long long victim, before;
    fmt_redis srv;
    fmt_daemon d;
    cJSON *reply;
    int fd;

    wire_pair_start(&srv, &d, debug_redis, extra);
    r = wire_redis_open(&srv);
    ck_assert_msg(fmt_wait_until(cmd_client_known, r, SETTLE_MS),
                  "the daemon's connections never showed in CLIENT LIST");
    victim = daemon_cmd_client(r);
    sleeper = wire_redis_open(&srv);
    killer = wire_redis_open(&srv);
    fd = wire_connect(d.sock);

    redis_send_only(sleeper, "DEBUG SLEEP 1");
    await_redis_asleep(&srv);
    before = wire_link_stat(d.sock, "commands");
    wire_send(fd, "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"cut\",\"ttl\":60000}");
    while (wire_link_stat(d.sock, "commands") == before)
        usleep(5000);
    redis_send_only(killer, "CLIENT KILL ID %lld", victim);

    reply = wire_recv(fd, SETTLE_MS);
    wire_assert_error(reply, "redis_unavailable", "1");
    cJSON_Delete(reply);
    /* Redis did take it, and it goes once the link is back. */
    ck_assert_int_eq(wire_redis_int(r, "EXISTS fm:lock:cut"), 1);
    ck_assert_msg(fmt_wait_until(lock_cut_gone, r, SETTLE_MS), "the lock stayed in Redis");
    close(fd);
    redisFree(killer);
    redisFree(sleeper);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* ---- the review's suspicions, settled ----------------------------------- */

/* Connects as another user (the test runs as root, always allowed), n
 * times in a row, each time until the daemon closes the connection. */
static void connect_as(const char *sock, uid_t as, int n)
{
    pid_t pid = fork();
    int status;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (setgid(as) != 0 || setuid(as) != 0)
            _exit(2);
        for (int i = 0; i < n; i++) {
            int fd = fmt_raw_connect(sock);

            if (fd < 0 || !fmt_raw_closed(fd, SETTLE_MS))
                _exit(3);
            close(fd);
        }
        _exit(0);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the client as uid %d failed: status %d", (int)as, status);
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static int log_has(void *arg)
{
    const fmt_daemon *d = arg;
    char *text = fmt_slurp(d->log);
    int found = strstr(text, "more like it, not logged") != NULL;

    free(text);
    return found;
}

/* A peer the allow lists refuse, connecting in a loop, must not fill the
 * journal: the refusal is logged at most once a second, and the next line
 * says how many were left out. */
START_TEST(test_refused_peers_do_not_flood_the_log)
{
    static const char *const extra[] = {"--allow_uids", "4242", "--socket_mode", "0666",
                                        "--log_level", "info", NULL};
    fmt_redis srv;
    fmt_daemon d;
    int64_t start;
    char *text;
    int lines;

    wire_pair_start(&srv, &d, NULL, extra);
    ck_assert_int_eq(chmod(d.dir, 0711), 0);
    start = fmt_now_ms();
    connect_as(d.sock, 65534, 300);
    /* One more, a second later: it is logged, with the count. */
    while (fmt_now_ms() < start + 1100)
        usleep(10000);
    connect_as(d.sock, 65534, 1);
    ck_assert_msg(fmt_wait_until(log_has, &d, SETTLE_MS), "no line counts the refusals left out");
    text = fmt_slurp(d.log);
    lines = count_lines_with(text, "refused a client with uid 65534");
    ck_assert_msg(lines >= 2 && lines <= 2 + (int)((fmt_now_ms() - start) / 1000),
                  "%d lines for 301 refusals in %lld ms", lines,
                  (long long)(fmt_now_ms() - start));
    free(text);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* The socket is born with socket_mode (the umask is set around bind),
 * whatever the daemon's own umask: no chmod after bind, which would follow
 * a symlink put at the path in between. */
START_TEST(test_socket_is_created_with_its_mode)
{
    static const char *const modes[] = {"0600", "0660", "0666", NULL};
    fmt_redis srv;

    ck_assert_msg(fmt_redis_start(&srv, NULL) == 0, "redis-server did not start");
    for (int i = 0; modes[i] != NULL; i++) {
        const char *const extra[] = {"--socket_mode", modes[i], NULL};
        mode_t old = umask(0077);
        struct stat st;
        fmt_daemon d;

        wire_daemon_start(&d, srv.url, extra);
        umask(old);
        ck_assert_int_eq(lstat(d.sock, &st), 0);
        ck_assert_msg(S_ISSOCK(st.st_mode), "%s is not a socket", d.sock);
        ck_assert_msg((st.st_mode & 07777) == (mode_t)strtol(modes[i], NULL, 8),
                      "socket_mode %s made a socket of mode %o", modes[i],
                      (unsigned)(st.st_mode & 07777));
        fmt_daemon_stop(&d);
    }
    fmt_redis_stop(&srv);
}
END_TEST

/* A wake published to many subscribers is built once and shared: a large
 * payload (anyone with access to Redis can publish one) costs its size
 * once, not once per subscriber. Each still gets it whole. */
START_TEST(test_large_wake_is_shared_by_its_subscribers)
{
    enum { SUBS = 50, PAYLOAD = 4 << 20 };
    char *payload = malloc(PAYLOAD + 1);
    int fds[SUBS];
    redisContext *r;
    fmt_redis srv;
    fmt_daemon d;
    long before;

    ck_assert_ptr_nonnull(payload);
    memset(payload, 'w', PAYLOAD);
    payload[PAYLOAD] = '\0';
    wire_pair_start(&srv, &d, NULL, NULL);
    r = wire_redis_open(&srv);
    for (int i = 0; i < SUBS; i++) {
        fds[i] = wire_connect(d.sock);
        wire_expect_ok(fds[i], "{\"op\":\"wake.subscribe\",\"id\":1,\"channel\":\"big\"}", "1");
    }
    before = wire_rss_kib(d.pid);
    ck_assert_int_eq(wire_redis_int(r, "PUBLISH big %s", payload), 1);
    /* Delivered to all in one loop turn: the first socket says when. */
    {
        struct pollfd pfd = {fds[SUBS - 1], POLLIN, 0};

        ck_assert_int_eq(poll(&pfd, 1, SETTLE_MS), 1);
        ck_assert_int_eq(poll(&(struct pollfd){fds[0], POLLIN, 0}, 1, SETTLE_MS), 1);
    }
    if (wire_native_daemon(d.pid))
        ck_assert_msg(wire_rss_kib(d.pid) - before < 64 * 1024,
                      "a %d MiB wake to %d subscribers grew the daemon by %ld MiB",
                      PAYLOAD >> 20, SUBS, (wire_rss_kib(d.pid) - before) / 1024);
    for (int i = 0; i < SUBS; i++) {
        size_t len;
        char *text = wire_recv_text(fds[i], SETTLE_MS, &len);

        ck_assert_msg(len > PAYLOAD && strstr(text, "\"execution_id\":\"www") != NULL,
                      "subscriber %d got %zu bytes", i, len);
        free(text);
        close(fds[i]);
    }
    free(payload);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* A connection's output buffers give their memory back once written, so
 * clients that each once received a large reply do not keep it. */
START_TEST(test_output_memory_is_given_back_after_large_replies)
{
    enum { CLIENTS = 100, VALUE = 1 << 20, SLOW_MS = 60000 };
    /* Memory is the point, not time: under valgrind 100 MiB of replies
     * take longer than the default request_timeout_ms. */
    static const char *const extra[] = {"--request_timeout_ms", "60000", NULL};
    char *big = big_execution("mb", 'm', VALUE);
    int fds[CLIENTS];
    redisContext *r;
    fmt_redis srv;
    fmt_daemon d;
    long before;
    size_t len;

    wire_pair_start(&srv, &d, NULL, extra);
    r = wire_redis_open(&srv);
    freeReplyObject(wire_redis_ok(r, "SET fm:exec:mb %s", big));
    for (int i = 0; i < CLIENTS; i++)
        fds[i] = wire_connect(d.sock);
    before = wire_rss_kib(d.pid);
    for (int i = 0; i < CLIENTS; i++)
        wire_send(fds[i], "{\"op\":\"cache.get\",\"id\":1,\"execution_id\":\"mb\"}");
    for (int i = 0; i < CLIENTS; i++) {
        char *text = wire_recv_text(fds[i], SLOW_MS, &len);

        ck_assert_msg(len > VALUE, "client %d got %zu bytes: %.200s", i, len, text);
        free(text);
    }
    /* All written and read: the daemon holds none of it. */
    wire_expect_ok(fds[0], "{\"op\":\"ping\",\"id\":2}", "2");
    if (wire_native_daemon(d.pid))
        ck_assert_msg(wire_rss_kib(d.pid) - before < 32 * 1024,
                      "%d idle clients that read a 1 MiB reply each hold %ld MiB", CLIENTS,
                      (wire_rss_kib(d.pid) - before) / 1024);
    for (int i = 0; i < CLIENTS; i++)
        close(fds[i]);
    free(big);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

/* A grant that arrives for a connection already doomed (it overflowed in
 * the same loop turn) never reaches its client, who cannot release what it
 * never learnt it holds: the daemon gives it back, on_disconnect "keep" or
 * not. The overflowing reply and the grant come back from Redis in one
 * read: their requests went out one behind the other. */
START_TEST(test_grant_for_a_doomed_connection_is_given_back)
{
    static const char *const extra[] = {"--max_output_bytes", "65536", NULL};
    char *big = big_execution("over", 'o', 70000), *batch = NULL;
    redisContext *r;
    fmt_redis srv;
    fmt_daemon d;
    size_t len;
    int fd, other;
    FILE *f;

    wire_pair_start(&srv, &d, NULL, extra);
    r = wire_redis_open(&srv);
    freeReplyObject(wire_redis_ok(r, "SET fm:exec:over %s", big));
    fd = wire_connect(d.sock);
    other = wire_connect(d.sock);
    f = open_memstream(&batch, &len);
    ck_assert_ptr_nonnull(f);
    wire_frame_put(f, "{\"op\":\"cache.get\",\"id\":1,\"execution_id\":\"over\"}");
    wire_frame_put(f, "{\"op\":\"lock.acquire\",\"id\":2,\"key\":\"kept\",\"ttl\":60000,"
                 "\"on_disconnect\":\"keep\"}");
    fclose(f);
    ck_assert_int_eq(fmt_raw_write(fd, batch, len), 0);
    ck_assert_msg(fmt_raw_closed(fd, SETTLE_MS), "the overflowing client was not closed");
    /* Whatever the daemon did with the grant went to Redis before this. */
    wire_expect_ok(other, "{\"op\":\"ping\",\"id\":3,\"redis\":true}", "3");
    ck_assert_int_eq(wire_redis_int(r, "EXISTS fm:lock:kept"), 0);
    close(fd);
    close(other);
    free(batch);
    free(big);
    redisFree(r);
    wire_pair_stop(&srv, &d);
}
END_TEST

Suite *fm_suite_hostile(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = fmt_tcase(s, "defects", NULL, NULL, TCASE_TIMEOUT);

    tcase_add_test(tc, test_doomed_subscriber_confirmation_does_not_hang_the_daemon);
    tcase_add_test(tc, test_unsubscribe_during_pending_subscribe_leaves_no_subscription);
    tcase_add_test(tc, test_expired_locks_leave_the_connection_table);
    tcase_add_test(tc, test_forbidden_channel_fails_its_request_and_the_link_stays_up);
    tcase_add_test(tc, test_acquire_failing_on_its_fence_leaves_no_lock);
    tcase_add_test(tc, test_release_notice_after_the_deadline_does_not_delay_the_answer);
    tcase_add_test(tc, test_acquire_cut_off_by_a_link_drop_leaves_no_lock);
    tc = fmt_tcase(s, "fairness", NULL, NULL, TCASE_TIMEOUT);
    tcase_add_test(tc, test_bulk_reads_of_one_client_do_not_stall_another);
    tcase_add_test(tc, test_large_read_is_not_starved_by_another_clients_backlog);
    tc = fmt_tcase(s, "suspicions", NULL, NULL, TCASE_TIMEOUT);
    tcase_add_test(tc, test_refused_peers_do_not_flood_the_log);
    tcase_add_test(tc, test_socket_is_created_with_its_mode);
    tcase_add_test(tc, test_large_wake_is_shared_by_its_subscribers);
    tcase_add_test(tc, test_output_memory_is_given_back_after_large_replies);
    tcase_add_test(tc, test_grant_for_a_doomed_connection_is_given_back);
    return s;
}
