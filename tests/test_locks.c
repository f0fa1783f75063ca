/* test_locks.c -- the lock lifecycle beyond TTLs, and wake delivery to
 * groups (contract: "Lock lifecycle beyond TTLs", "Wake delivery and link
 * events"), end to end with real redis-server and fmredisd processes.
 *
 * Waiting acquires go over raw connections, so that a test can hold one
 * open, let something happen, and time its reply, with no threads. A probe
 * (lock.is_locked) sent right behind the acquire on the same connection is
 * answered only after the daemon handled the acquire's first attempt: the
 * daemon's commands go to Redis, and come back, in order. So once the probe
 * is answered the acquire is waiting, and a release can no longer race its
 * first attempt. The same ordering makes "nothing happened" provable: a
 * command sent through the daemon after an event was handled is answered
 * after whatever that event made the daemon send to Redis.
 *
 * FM_TIMINGS=1 prints the measured latencies. */
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "fm_tests.h"
#include "fmredis.h"
#include "harness.h"
#include "wire.h"

#define WAIT_MS 5000        /* bound of every wait for a reply or an event */
#define HANDOFF_MS 200      /* a holder gone: the waiter has the lock */
#define PUSH_MS 100         /* a release on one daemon: the waiter on another has it */
#define TIMER_MARGIN_MS 100 /* a retry timer's firing: the waiter has the lock */
#define LONG_RETRY_MS 5000  /* a retry_delay no test may wait for */

static fmt_redis redis_srv;
static fmt_daemon daemon_a, daemon_b;

static void note_ms(const char *what, int64_t ms)
{
    if (getenv("FM_TIMINGS") != NULL)
        fprintf(stderr, "timing: %s: %lld ms\n", what, (long long)ms);
}

/* ---- Redis-side views ------------------------------------------------------ */

static void assert_lock_value(redisContext *r, const char *key, const char *token)
{
    redisReply *rep = fmt_redis_cmd(r, "GET fm:lock:%s", key);

    ck_assert_msg(rep != NULL && rep->type == REDIS_REPLY_STRING, "fm:lock:%s is not held", key);
    ck_assert_msg(strcmp(rep->str, token) == 0, "fm:lock:%s holds %s, want %s", key, rep->str,
                  token);
    freeReplyObject(rep);
}

/* A connection in MONITOR mode: it sees every command Redis runs. */
static redisContext *monitor_open(const fmt_redis *srv)
{
    redisContext *m = wire_redis_open(srv);
    redisReply *rep = fmt_redis_cmd(m, "MONITOR");

    ck_assert_msg(rep != NULL && rep->type == REDIS_REPLY_STATUS, "MONITOR failed");
    freeReplyObject(rep);
    return m;
}

/* Reads monitored commands up to the first one holding `until`; none
 * before it may hold `never`. */
static void monitor_expect_none_before(redisContext *m, const char *never, const char *until)
{
    for (;;) {
        redisReply *line = NULL;
        int done;

        ck_assert_msg(redisGetReply(m, (void **)&line) == REDIS_OK && line != NULL &&
                          line->type == REDIS_REPLY_STATUS,
                      "MONITOR ended before %s", until);
        ck_assert_msg(strstr(line->str, never) == NULL, "Redis ran %s", line->str);
        done = strstr(line->str, until) != NULL;
        freeReplyObject(line);
        if (done)
            return;
    }
}

/* ---- clients --------------------------------------------------------------- */

static fm_lock lock_take(fm_client *c, const char *key, const fm_lock_opts *opts)
{
    fm_lock lk;

    fmt_ok(c, fm_lock_acquire(c, key, opts, &lk), "lock.acquire");
    ck_assert_msg(lk.acquired, "%s: not acquired", key);
    return lk;
}

static void lock_give_back(fm_client *c, const char *key, const fm_lock *lk)
{
    int released = 0;

    fmt_ok(c, fm_lock_release(c, key, lk->token, &released, NULL), "lock.release");
    ck_assert_msg(released, "%s: release did not find the lock", key);
}

static int is_locked(fm_client *c, const char *key)
{
    int locked = -1;

    fmt_ok(c, fm_lock_is_locked(c, key, &locked), "lock.is_locked");
    return locked;
}

/* One attempt, no retry. */
static int try_lock(fm_client *c, const char *key)
{
    fm_lock_opts o;
    fm_lock lk;

    fm_lock_opts_init(&o);
    o.max_retries = FM_LOCK_NO_RETRY;
    fmt_ok(c, fm_lock_acquire(c, key, &o, &lk), "lock.acquire (one attempt)");
    return lk.acquired;
}

static long long daemon_clients(fm_client *c)
{
    char *text = NULL;
    cJSON *root, *n;
    long long v;

    fmt_ok(c, fm_stats(c, &text, NULL), "stats");
    root = cJSON_Parse(text);
    n = cJSON_GetObjectItemCaseSensitive(root, "clients");
    ck_assert_msg(cJSON_IsNumber(n), "stats without clients: %s", text);
    v = (long long)n->valuedouble;
    cJSON_Delete(root);
    free(text);
    return v;
}

typedef struct clients_at_most {
    fm_client *observer;
    long long n;
} clients_at_most;

static int clients_dropped(void *arg)
{
    clients_at_most *w = arg;

    return daemon_clients(w->observer) <= w->n;
}

/* Waits until the daemon has handled the close of a connection: it counts
 * at most n clients. Whatever the close made it send to Redis is then ahead
 * of anything the observer sends next. */
static void await_close_handled(fm_client *observer, long long n)
{
    clients_at_most w = {observer, n};

    ck_assert_msg(fmt_wait_until(clients_dropped, &w, WAIT_MS),
                  "the daemon did not see the connection close");
}

/* ---- waiting acquires on raw connections ------------------------------------ */

/* Sends a lock.acquire of key (50 retries) on a new connection to d and
 * returns that connection once the acquire's first attempt found the lock
 * held and it is waiting (see the top of the file). */
static int waiter_start(const fmt_daemon *d, const char *key, int64_t retry_delay)
{
    int fd = wire_connect(d->sock);
    char *acq = wire_strf("{\"op\":\"lock.acquire\",\"id\":\"acq\",\"key\":\"%s\","
                          "\"retry_delay\":%lld,\"max_retries\":50}", key, (long long)retry_delay);
    char *probe = wire_strf("{\"op\":\"lock.is_locked\",\"id\":\"probe\",\"key\":\"%s\"}", key);
    cJSON *rep;

    wire_send(fd, acq);
    wire_send(fd, probe);
    rep = wire_recv(fd, WAIT_MS);
    wire_assert_ok(rep, "\"probe\"");
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep, "locked")),
                  "%s is not held: the acquire would not wait", key);
    cJSON_Delete(rep);
    free(probe);
    free(acq);
    return fd;
}

/* The acquire waiting on fd must be granted the lock within limit_ms of t0
 * and hold it in Redis; then its connection is closed, which releases it. */
static void assert_handed_over(int fd, redisContext *r, const char *key, int64_t t0,
                               int64_t limit_ms, const char *what)
{
    struct pollfd p = {fd, POLLIN, 0};
    const char *token;
    int64_t took;
    cJSON *rep;

    ck_assert_msg(poll(&p, 1, WAIT_MS) == 1, "%s: the waiter got no reply within %d ms", what,
                  WAIT_MS);
    rep = wire_recv(fd, WAIT_MS);
    took = fmt_now_ms() - t0;
    note_ms(what, took);
    wire_assert_ok(rep, "\"acq\"");
    token = wire_str(rep, "token");
    ck_assert_msg(token != NULL && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rep, "fence")),
                  "%s: the waiter did not get the lock", what);
    ck_assert_msg(took <= limit_ms, "%s: the waiter got the lock after %lld ms, want at most %lld",
                  what, (long long)took, (long long)limit_ms);
    assert_lock_value(r, key, token);
    cJSON_Delete(rep);
    close(fd);
}

/* ---- a holder in a process of its own -------------------------------------- */

/* Forks a process that acquires key (ttl 30 s, released on disconnect)
 * through its own libfmredis connection, reports the token through a pipe,
 * and then blocks until killed (or until the test process ends: it dies
 * with it). Fork it before the test opens connections of its own, which
 * the child would otherwise keep open. */
static pid_t holder_process_start(const char *sock, const char *key, char *token, size_t cap)
{
    pid_t parent = getpid(), pid;
    int pfd[2];
    struct pollfd pl;
    ssize_t n;

    ck_assert_int_eq(pipe(pfd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        fm_lock_opts o;
        fm_client *c;
        fm_lock lk;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        close(pfd[0]);
        fm_lock_opts_init(&o);
        o.ttl_ms = 30000;
        o.max_retries = FM_LOCK_NO_RETRY;
        c = fm_connect(sock, WAIT_MS);
        if (c == NULL || fm_client_err(c) != FM_ERR_NONE ||
            fm_lock_acquire(c, key, &o, &lk) != FM_OK || !lk.acquired)
            _exit(1);
        if (write(pfd[1], lk.token, lk.token_len) != (ssize_t)lk.token_len)
            _exit(1);
        close(pfd[1]);
        for (;;)
            pause();
    }
    close(pfd[1]);
    pl = (struct pollfd){pfd[0], POLLIN, 0};
    ck_assert_msg(poll(&pl, 1, WAIT_MS) == 1, "the holder process did not report");
    n = read(pfd[0], token, cap - 1);
    close(pfd[0]);
    if (n <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    ck_assert_msg(n > 0, "the holder process could not take %s", key);
    token[n] = '\0';
    return pid;
}

/* ---- wakes ------------------------------------------------------------------- */

static void subscribe(fm_client *c, const char *channel, const char *group)
{
    fmt_ok(c, fm_wake_subscribe(c, channel, group, NULL, 0), "wake.subscribe");
}

/* The execution id (malloc'd) of the next event, which must be a wake on
 * channel arriving within WAIT_MS. */
static char *next_wake(fm_client *c, const char *channel)
{
    fm_event ev;
    char *id;

    fmt_ok(c, fm_event_wait(c, &ev, WAIT_MS), "waiting for a wake");
    ck_assert_msg(ev.type == FM_EVENT_WAKE && strcmp(ev.channel, channel) == 0,
                  "not a wake on %s: %s", channel, ev.json);
    id = strdup(ev.execution_id);
    ck_assert_ptr_nonnull(id);
    fm_event_clear(&ev);
    return id;
}

static void expect_wake(fm_client *c, const char *channel, const char *id)
{
    char *got = next_wake(c, channel);

    ck_assert_msg(strcmp(got, id) == 0, "wake %s, want %s", got, id);
    free(got);
}

/* Reads wakes until one for id comes (others may share the channel). */
static void await_wake(fm_client *c, const char *channel, const char *id)
{
    for (;;) {
        char *got = next_wake(c, channel);
        int found = strcmp(got, id) == 0;

        free(got);
        if (found)
            return;
    }
}

static void signal_all(fm_client *c, const char *channel, const char *const *ids, size_t n)
{
    int64_t signaled = -1;

    fmt_ok(c, fm_wake_signal_many(c, ids, n, channel, &signaled), "wake.signal_many");
    ck_assert_int_eq(signaled, (int64_t)n);
}

/* ---- fixtures ------------------------------------------------------------------ */

typedef struct listeners {
    redisContext *r;
    long long n;
} listeners;

static int release_channel_has(void *arg)
{
    listeners *l = arg;
    redisReply *rep = fmt_redis_cmd(l->r, "PUBSUB NUMSUB fm:lock:released");
    int enough = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
                 rep->element[1]->integer >= l->n;

    freeReplyObject(rep);
    return enough;
}

/* Redis, and two daemons on it whose pub/sub links listen for releases
 * (the push hand-off depends on them). */
static void servers_up(void)
{
    listeners l = {NULL, 2};

    wire_pair_start(&redis_srv, &daemon_a, NULL, NULL);
    wire_daemon_up(&daemon_b, redis_srv.url, NULL);
    l.r = wire_redis_open(&redis_srv);
    ck_assert_msg(fmt_wait_until(release_channel_has, &l, WAIT_MS),
                  "the daemons do not listen on fm:lock:released");
    redisFree(l.r);
}

static void servers_down(void)
{
    fmt_daemon_stop(&daemon_b);
    wire_pair_stop(&redis_srv, &daemon_a);
}

/* ---- release on disconnect -------------------------------------------------------- */

START_TEST(test_lock_released_when_holder_connection_closes)
{
    redisContext *r = wire_redis_open(&redis_srv);
    fm_client *holder = fmt_client(&daemon_a);
    fm_lock_opts o;
    int fd;
    int64_t t0;

    fm_lock_opts_init(&o);
    o.ttl_ms = 30000;
    lock_take(holder, "lk-close", &o);
    fd = waiter_start(&daemon_a, "lk-close", LONG_RETRY_MS);
    t0 = fmt_now_ms();
    fm_client_free(holder);
    assert_handed_over(fd, r, "lk-close", t0, HANDOFF_MS, "connection closed -> waiter");
    redisFree(r);
}
END_TEST

START_TEST(test_lock_released_when_holder_process_is_killed)
{
    char token[FM_STR_MAX + 1];
    pid_t pid = holder_process_start(daemon_a.sock, "lk-kill", token, sizeof(token));
    redisContext *r = wire_redis_open(&redis_srv);
    int fd;
    int64_t t0;

    assert_lock_value(r, "lk-kill", token);
    ck_assert_int_gt(wire_redis_int(r, "PTTL fm:lock:lk-kill"), 20000);
    fd = waiter_start(&daemon_a, "lk-kill", LONG_RETRY_MS);
    t0 = fmt_now_ms();
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    assert_handed_over(fd, r, "lk-kill", t0, HANDOFF_MS, "holder SIGKILLed -> waiter");
    waitpid(pid, NULL, 0);
    redisFree(r);
}
END_TEST

/* A Redis key to watch with fmt_wait_until. */
typedef struct key_watch {
    redisContext *r;
    const char *rkey;
} key_watch;

static int key_absent(void *arg)
{
    key_watch *w = arg;

    return wire_redis_int(w->r, "EXISTS %s", w->rkey) == 0;
}

static int key_present(void *arg)
{
    return !key_absent(arg);
}

START_TEST(test_lock_kept_after_disconnect_until_its_ttl)
{
    redisContext *r = wire_redis_open(&redis_srv);
    fm_client *observer = fmt_client(&daemon_a), *holder;
    key_watch g = {r, "fm:lock:lk-keep"};
    long long before = daemon_clients(observer);
    fm_lock_opts o;
    int64_t asked;
    fm_lock lk;

    fm_lock_opts_init(&o);
    o.ttl_ms = 800;
    o.on_disconnect = FM_ON_DISCONNECT_KEEP;
    holder = fmt_client(&daemon_a);
    asked = fmt_now_ms();
    lk = lock_take(holder, "lk-keep", &o);
    fm_client_free(holder);
    await_close_handled(observer, before);
    ck_assert_int_eq(is_locked(observer, "lk-keep"), 1);
    assert_lock_value(r, "lk-keep", lk.token);
    ck_assert_int_gt(wire_redis_int(r, "PTTL fm:lock:lk-keep"), 0);
    ck_assert_msg(fmt_wait_until(key_absent, &g, o.ttl_ms + WAIT_MS),
                  "the kept lock outlived its TTL");
    note_ms("kept lock gone after acquire (ttl 800)", fmt_now_ms() - asked);
    /* Redis set the TTL after the acquire was sent: only expiry removed it. */
    ck_assert_int_ge(fmt_now_ms() - asked, o.ttl_ms);
    redisFree(r);
    fm_client_free(observer);
}
END_TEST

/* ---- auto_extend ------------------------------------------------------------------ */

typedef struct hold_watch {
    redisContext *r;
    fm_client *other;
    const char *key;
    long long min_pttl;
    int64_t next_try;
    int tries;
    char why[128];
} hold_watch;

/* A condition for fmt_wait_until that becomes true only when the held lock
 * lapses (PTTL -2: gone, or -1: no TTL) or another worker takes it; it
 * tries every 100 ms. */
static int hold_broken(void *arg)
{
    hold_watch *w = arg;
    long long pttl = wire_redis_int(w->r, "PTTL fm:lock:%s", w->key);

    if (pttl < w->min_pttl)
        w->min_pttl = pttl;
    if (pttl <= 0) {
        snprintf(w->why, sizeof(w->why), "PTTL %lld", pttl);
        return 1;
    }
    if (fmt_now_ms() >= w->next_try) {
        w->next_try = fmt_now_ms() + 100;
        w->tries++;
        if (try_lock(w->other, w->key)) {
            snprintf(w->why, sizeof(w->why), "another worker took it");
            return 1;
        }
    }
    return 0;
}

START_TEST(test_auto_extended_lock_never_lapses_and_is_released_on_disconnect)
{
    redisContext *r = wire_redis_open(&redis_srv);
    fm_client *holder = fmt_client(&daemon_a);
    hold_watch w = {r, fmt_client(&daemon_b), "lk-extend", 600, 0, 0, ""};
    fm_lock_opts o;
    int fd;
    int64_t t0;

    fm_lock_opts_init(&o);
    o.ttl_ms = 600;
    o.auto_extend = 1;
    lock_take(holder, "lk-extend", &o);
    ck_assert_msg(!fmt_wait_until(hold_broken, &w, 3000), "the auto-extended lock broke: %s",
                  w.why);
    note_ms("lowest PTTL seen over 3 s of auto_extend (ttl 600)", w.min_pttl);
    ck_assert_int_ge(w.tries, 10);
    fd = waiter_start(&daemon_a, "lk-extend", LONG_RETRY_MS);
    t0 = fmt_now_ms();
    fm_client_free(holder);
    assert_handed_over(fd, r, "lk-extend", t0, HANDOFF_MS, "auto_extend holder closed -> waiter");
    fm_client_free(w.other);
    redisFree(r);
}
END_TEST

typedef struct pttl_cut {
    redisContext *r;
    const char *rkey;
    long long at_most;
} pttl_cut;

static int pttl_cut_down(void *arg)
{
    pttl_cut *p = arg;
    long long pttl = wire_redis_int(p->r, "PTTL %s", p->rkey);

    return pttl >= 0 && pttl <= p->at_most;
}

/* A client's own lock.extend sets the TTL the daemon keeps up afterwards:
 * the next tick must not cut it back to the acquire's ttl. */
START_TEST(test_client_extend_sets_the_ttl_auto_extension_keeps)
{
    redisContext *r = wire_redis_open(&redis_srv);
    fm_client *holder = fmt_client(&daemon_a);
    pttl_cut cut = {r, "fm:lock:lk-reextend", 1000};
    int extended = 0;
    fm_lock_opts o;
    fm_lock lk;

    fm_lock_opts_init(&o);
    o.ttl_ms = 300;
    o.auto_extend = 1;
    lk = lock_take(holder, "lk-reextend", &o);
    fmt_ok(holder, fm_lock_extend(holder, "lk-reextend", lk.token, 6000, &extended), "extend");
    ck_assert(extended);
    /* Ten ticks of the old period (100 ms) pass in this second. */
    ck_assert_msg(!fmt_wait_until(pttl_cut_down, &cut, 1000),
                  "auto-extension cut the client's 6000 ms back to the acquire's ttl");
    ck_assert_int_gt(wire_redis_int(r, "PTTL %s", cut.rkey), 1000);
    fm_client_free(holder);
    redisFree(r);
}
END_TEST

START_TEST(test_auto_extended_lock_deleted_behind_daemon_is_reported_lost)
{
    redisContext *r = wire_redis_open(&redis_srv);
    fm_client *holder = fmt_client(&daemon_a);
    pttl_cut cut = {r, "fm:lock:lk-lost", 900};
    fm_lock_opts o;
    fm_event ev;
    fm_lock lk;
    int64_t t0;

    fm_lock_opts_init(&o);
    o.ttl_ms = cut.at_most;
    o.auto_extend = 1;
    lk = lock_take(holder, "lk-lost", &o);
    t0 = fmt_now_ms();
    ck_assert_int_eq(wire_redis_int(r, "DEL fm:lock:lk-lost"), 1);
    fmt_ok(holder, fm_event_wait(holder, &ev, WAIT_MS), "waiting for lock.lost");
    note_ms("DEL -> lock.lost (ttl 900, extension every 300)", fmt_now_ms() - t0);
    ck_assert_msg(ev.type == FM_EVENT_LOCK_LOST, "not lock.lost: %s", ev.json);
    ck_assert_str_eq(ev.key, "lk-lost");
    ck_assert_str_eq(ev.json, "{\"event\":\"lock.lost\",\"key\":\"lk-lost\"}");
    fm_event_clear(&ev);
    ck_assert_int_le(fmt_now_ms() - t0, o.ttl_ms / 3 + HANDOFF_MS);
    ck_assert_int_eq(wire_redis_int(r, "EXISTS fm:lock:lk-lost"), 0);

    /* The daemon stopped extending: the same token put back with a long TTL
     * is never cut down to the lock's ttl over three extension periods. */
    freeReplyObject(fmt_redis_cmd(r, "SET fm:lock:lk-lost %s PX 60000", lk.token));
    ck_assert_msg(!fmt_wait_until(pttl_cut_down, &cut, o.ttl_ms + HANDOFF_MS),
                  "the daemon still extends a lock it reported lost");
    ck_assert_int_eq(wire_redis_int(r, "DEL fm:lock:lk-lost"), 1);
    fm_client_free(holder);
    redisFree(r);
}
END_TEST

/* ---- what the daemon keeps track of ------------------------------------------------- */

START_TEST(test_release_by_client_takes_lock_off_disconnect_list)
{
    redisContext *r = wire_redis_open(&redis_srv), *m;
    fm_client *observer = fmt_client(&daemon_a), *first, *second = fmt_client(&daemon_a);
    long long before = daemon_clients(observer);
    fm_lock_opts keep;
    fm_lock lk, kept;

    fm_lock_opts_init(&keep);
    keep.ttl_ms = 30000;
    keep.on_disconnect = FM_ON_DISCONNECT_KEEP;
    first = fmt_client(&daemon_a);
    lk = lock_take(first, "lk-forget", NULL);
    lock_give_back(first, "lk-forget", &lk);
    kept = lock_take(second, "lk-forget", &keep);
    m = monitor_open(&redis_srv);
    fm_client_free(first);
    await_close_handled(observer, before);
    ck_assert_int_eq(is_locked(observer, "lk-forget"), 1);
    assert_lock_value(r, "lk-forget", kept.token);
    /* Not even a token-checked release was sent for the first lock before
     * the observer's EXISTS, which the daemon sent after handling the close. */
    monitor_expect_none_before(m, lk.token, "\"EXISTS\" \"fm:lock:lk-forget\"");
    redisFree(m);
    fm_client_free(second);
    fm_client_free(observer);
    redisFree(r);
}
END_TEST

/* The next message on a subscribed hiredis connection must be payload on
 * channel. */
static void expect_message(redisContext *sub, const char *channel, const char *payload)
{
    redisReply *msg = NULL;

    ck_assert_msg(redisGetReply(sub, (void **)&msg) == REDIS_OK && msg != NULL,
                  "no message on %s", channel);
    ck_assert_msg(msg->type == REDIS_REPLY_ARRAY && msg->elements == 3, "not a message");
    ck_assert_str_eq(msg->element[1]->str, channel);
    ck_assert_str_eq(msg->element[2]->str, payload);
    freeReplyObject(msg);
}

START_TEST(test_clean_shutdown_releases_release_locks_but_not_keep_locks)
{
    fmt_redis rs;
    fmt_daemon d;
    redisContext *r, *sub;
    fm_client *c;
    fm_lock_opts keep;
    fm_lock kept;

    fm_lock_opts_init(&keep);
    keep.ttl_ms = 30000;
    keep.on_disconnect = FM_ON_DISCONNECT_KEEP;
    wire_pair_start(&rs, &d, NULL, NULL);
    r = wire_redis_open(&rs);
    sub = wire_redis_open(&rs);
    freeReplyObject(fmt_redis_cmd(sub, "SUBSCRIBE fm:lock:released"));
    c = fmt_client(&d);
    lock_take(c, "sd-release", NULL);
    kept = lock_take(c, "sd-keep", &keep);

    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    ck_assert_int_eq(wire_redis_int(r, "EXISTS fm:lock:sd-release"), 0);
    assert_lock_value(r, "sd-keep", kept.token);
    expect_message(sub, "fm:lock:released", "fm:lock:sd-release");
    /* Nothing else was published before this. */
    ck_assert_int_eq(wire_redis_int(r, "PUBLISH fm:lock:released marker"), 1);
    expect_message(sub, "fm:lock:released", "marker");

    fm_client_free(c);
    redisFree(sub);
    redisFree(r);
    fmt_redis_stop(&rs);
}
END_TEST

START_TEST(test_waiting_acquire_dies_with_its_connection)
{
    redisContext *r = wire_redis_open(&redis_srv);
    fm_client *holder = fmt_client(&daemon_a), *marks = fmt_client(&daemon_a);
    key_watch g = {r, "fm:lock:lk-abandon"};
    fm_lock_opts o;
    long long before;
    fm_lock lk;
    int fd;

    /* The release publications reach this wake subscriber right after the
     * daemon handed them to its waiting acquires. */
    fm_lock_opts_init(&o);
    o.ttl_ms = 30000;
    subscribe(marks, "fm:lock:released", NULL);
    lk = lock_take(holder, "lk-abandon", &o);
    before = daemon_clients(holder);
    fd = waiter_start(&daemon_a, "lk-abandon", 100);
    close(fd);
    await_close_handled(holder, before);
    lock_give_back(holder, "lk-abandon", &lk);
    await_wake(marks, "fm:lock:released", "fm:lock:lk-abandon");
    ck_assert_int_eq(is_locked(holder, "lk-abandon"), 0);
    /* Nor does its retry timer (100 ms) take it later. */
    ck_assert_msg(!fmt_wait_until(key_present, &g, 500),
                  "the acquire of a closed connection took the lock");
    fm_client_free(marks);
    fm_client_free(holder);
    redisFree(r);
}
END_TEST

/* ---- fences --------------------------------------------------------------------------- */

START_TEST(test_fences_strictly_increase_over_acquires_through_two_daemons)
{
    fm_client *c[2] = {fmt_client(&daemon_a), fmt_client(&daemon_b)};
    int64_t last = INT64_MIN;

    for (int i = 0; i < 200; i++) {
        fm_client *via = c[i % 2];
        fm_lock lk = lock_take(via, "lk-fence", NULL);

        ck_assert_msg(lk.fence > last, "acquire %d: fence %lld after %lld", i,
                      (long long)lk.fence, (long long)last);
        last = lk.fence;
        lock_give_back(via, "lk-fence", &lk);
    }
    fm_client_free(c[1]);
    fm_client_free(c[0]);
}
END_TEST

/* ---- hand-off ------------------------------------------------------------------------- */

START_TEST(test_release_on_one_daemon_hands_lock_to_waiter_on_another)
{
    redisContext *r = wire_redis_open(&redis_srv);
    fm_client *holder = fmt_client(&daemon_a);
    fm_lock lk = lock_take(holder, "lk-push", NULL);
    int fd = waiter_start(&daemon_b, "lk-push", LONG_RETRY_MS);
    int64_t t0;

    lock_give_back(holder, "lk-push", &lk);
    t0 = fmt_now_ms();
    assert_handed_over(fd, r, "lk-push", t0, PUSH_MS, "release on A -> waiter on B");
    fm_client_free(holder);
    redisFree(r);
}
END_TEST

START_TEST(test_release_without_publication_reaches_waiter_by_retry_timer)
{
    redisContext *r = wire_redis_open(&redis_srv);
    fm_client *holder = fmt_client(&daemon_a);
    int fd;
    int64_t t0;

    lock_take(holder, "lk-node", NULL);
    fd = waiter_start(&daemon_b, "lk-node", 100);
    /* The Node package's holder goes away its own way: a plain DEL. */
    t0 = fmt_now_ms();
    ck_assert_int_eq(wire_redis_int(r, "DEL fm:lock:lk-node"), 1);
    assert_handed_over(fd, r, "lk-node", t0, 100 + TIMER_MARGIN_MS,
                       "unpublished DEL -> waiter by retry timer (100 ms)");
    fm_client_free(holder);
    redisFree(r);
}
END_TEST

/* Sends the frames in one write, so that the daemon reads them together
 * and Redis runs what they ask back to back. */
static void send_together(int fd, const char *const *bodies, size_t n)
{
    size_t total = 0, at = 0;
    char *buf;

    for (size_t i = 0; i < n; i++)
        total += 4 + strlen(bodies[i]);
    buf = malloc(total);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(bodies[i]);

        buf[at++] = (char)(len >> 24 & 0xff);
        buf[at++] = (char)(len >> 16 & 0xff);
        buf[at++] = (char)(len >> 8 & 0xff);
        buf[at++] = (char)(len & 0xff);
        memcpy(buf + at, bodies[i], len);
        at += len;
    }
    ck_assert_int_eq(fmt_raw_write(fd, buf, total), 0);
    free(buf);
}

/* Contract: a waiting acquire is woken by a release's publication, and no
 * waiter may be missed. Here Redis runs the release right after the
 * waiter's first attempt failed, so the publication can reach the daemon
 * before that attempt's reply does: the waiter must still be woken, not
 * left to its retry timer (3 s). */
START_TEST(test_release_right_behind_waiters_attempt_still_wakes_it)
{
    redisContext *r = wire_redis_open(&redis_srv);
    int fd = wire_connect(daemon_a.sock);
    cJSON *rep = wire_call(fd, "{\"op\":\"lock.acquire\",\"id\":\"hold\",\"key\":\"lk-race\"}");
    const char *reqs[2];
    char *acq, *rel;
    int64_t t0;

    wire_assert_ok(rep, "\"hold\"");
    ck_assert_ptr_nonnull(wire_str(rep, "token"));
    reqs[0] = acq = wire_strf("{\"op\":\"lock.acquire\",\"id\":\"acq\",\"key\":\"lk-race\","
                              "\"retry_delay\":3000,\"max_retries\":1}");
    reqs[1] = rel = wire_strf("{\"op\":\"lock.release\",\"id\":\"rel\",\"key\":\"lk-race\","
                              "\"token\":\"%s\"}", wire_str(rep, "token"));
    cJSON_Delete(rep);
    t0 = fmt_now_ms();
    send_together(fd, reqs, 2);
    rep = wire_recv(fd, WAIT_MS);
    wire_assert_ok(rep, "\"rel\"");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rep, "released")));
    cJSON_Delete(rep);
    assert_handed_over(fd, r, "lk-race", t0, PUSH_MS, "release right behind the attempt -> waiter");
    free(rel);
    free(acq);
    redisFree(r);
}
END_TEST

/* ---- wake groups ----------------------------------------------------------------------- */

#define RR_WAKES 300
#define RR_MEMBERS 3

/* Reads a group member's wakes up to its first marker ("rr-m<j>"): their
 * indexes go to idx (count in *n), the marker's j is returned. */
static int read_member(fm_client *c, int *idx, int *n)
{
    for (*n = 0;;) {
        char *id = next_wake(c, "lk:rr");
        int j = -1;

        if (strncmp(id, "rr-m", 4) == 0) {
            j = atoi(id + 4);
            free(id);
            return j;
        }
        ck_assert_msg(*n < RR_WAKES, "a member got more than %d wakes", RR_WAKES);
        idx[(*n)++] = atoi(id + 3);
        free(id);
    }
}

START_TEST(test_wake_group_shares_each_wake_once_round_robin_while_ungrouped_get_all)
{
    fm_client *member[RR_MEMBERS], *solo[2], *pub = fmt_client(&daemon_a);
    char names[RR_WAKES + RR_MEMBERS][16];
    const char *ids[RR_WAKES + RR_MEMBERS];
    int idx[RR_MEMBERS][RR_WAKES];
    int seen[RR_WAKES] = {0}, start_taken[RR_MEMBERS] = {0};

    for (int i = 0; i < RR_WAKES + RR_MEMBERS; i++) {
        if (i < RR_WAKES)
            snprintf(names[i], sizeof(names[i]), "rr-%03d", i);
        else
            snprintf(names[i], sizeof(names[i]), "rr-m%d", i - RR_WAKES);
        ids[i] = names[i];
    }
    for (int m = 0; m < RR_MEMBERS; m++) {
        member[m] = fmt_client(&daemon_a);
        subscribe(member[m], "lk:rr", "workers");
    }
    for (int s = 0; s < 2; s++) {
        solo[s] = fmt_client(&daemon_a);
        subscribe(solo[s], "lk:rr", NULL);
    }
    signal_all(pub, "lk:rr", ids, RR_WAKES);
    /* Markers, one per member: the next wake each member gets. */
    signal_all(pub, "lk:rr", ids + RR_WAKES, RR_MEMBERS);

    for (int s = 0; s < 2; s++)
        for (int i = 0; i < RR_WAKES + RR_MEMBERS; i++)
            expect_wake(solo[s], "lk:rr", ids[i]);
    for (int m = 0; m < RR_MEMBERS; m++) {
        int n, marker = read_member(member[m], idx[m], &n), first = idx[m][0];

        ck_assert_msg(n == RR_WAKES / RR_MEMBERS, "member %d got %d wakes, want %d", m, n,
                      RR_WAKES / RR_MEMBERS);
        ck_assert_msg(first < RR_MEMBERS && !start_taken[first],
                      "member %d starts at wake %d", m, first);
        start_taken[first] = 1;
        /* In turn: every third wake, the marker continuing the rotation. */
        for (int k = 0; k < n; k++) {
            ck_assert_msg(idx[m][k] == first + RR_MEMBERS * k,
                          "member %d: its wake %d is rr-%03d, want rr-%03d", m, k, idx[m][k],
                          first + RR_MEMBERS * k);
            seen[idx[m][k]]++;
        }
        ck_assert_msg(marker == first, "member %d starting at %d got marker %d", m, first,
                      marker);
    }
    for (int i = 0; i < RR_WAKES; i++)
        ck_assert_msg(seen[i] == 1, "rr-%03d reached the group %d times", i, seen[i]);
    for (int m = 0; m < RR_MEMBERS; m++)
        fm_client_free(member[m]);
    fm_client_free(solo[1]);
    fm_client_free(solo[0]);
    fm_client_free(pub);
}
END_TEST

/* Reads n wakes and returns how many of them are in ids[0..nids). */
static int read_wakes_among(fm_client *c, const char *channel, int n, const char *const *ids,
                            int nids, char **got)
{
    int hits = 0;

    for (int i = 0; i < n; i++) {
        got[i] = next_wake(c, channel);
        for (int j = 0; j < nids; j++)
            hits += strcmp(got[i], ids[j]) == 0;
    }
    return hits;
}

static void free_all(char **s, int n)
{
    for (int i = 0; i < n; i++)
        free(s[i]);
}

START_TEST(test_subscribing_again_moves_subscriber_to_its_new_group)
{
    static const char *const a[] = {"mv-a1", "mv-a2"};
    static const char *const b[] = {"mv-b1", "mv-b2", "mv-b3", "mv-b4"};
    static const char *const mark[] = {"mv-m1", "mv-m2"};
    fm_client *x = fmt_client(&daemon_a), *y = fmt_client(&daemon_a), *z = fmt_client(&daemon_a);
    fm_client *pub = fmt_client(&daemon_a);
    char *gx[2], *gz[2], *one;

    subscribe(x, "lk:move", "g1");
    subscribe(y, "lk:move", "g1");
    subscribe(z, "lk:move", "g2");
    signal_all(pub, "lk:move", a, 2);
    /* g1 = {x, y} shares a1 and a2; z alone in g2 gets both. */
    ck_assert_int_eq(read_wakes_among(x, "lk:move", 1, a, 2, gx), 1);
    ck_assert_int_eq(read_wakes_among(y, "lk:move", 1, a, 2, gx + 1), 1);
    ck_assert_str_ne(gx[0], gx[1]);
    free_all(gx, 2);
    expect_wake(z, "lk:move", "mv-a1");
    expect_wake(z, "lk:move", "mv-a2");

    subscribe(x, "lk:move", "g2");
    signal_all(pub, "lk:move", b, 4);
    signal_all(pub, "lk:move", mark, 2);
    /* Now y is g1 alone and gets every wake; x and z share g2's. */
    for (int i = 0; i < 4; i++)
        expect_wake(y, "lk:move", b[i]);
    expect_wake(y, "lk:move", "mv-m1");
    ck_assert_int_eq(read_wakes_among(x, "lk:move", 2, b, 4, gx), 2);
    ck_assert_int_eq(read_wakes_among(z, "lk:move", 2, b, 4, gz), 2);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            ck_assert_str_ne(gx[i], gz[j]);
    free_all(gx, 2);
    free_all(gz, 2);
    /* And nothing more than that before the markers. */
    one = next_wake(x, "lk:move");
    ck_assert_msg(strncmp(one, "mv-m", 4) == 0, "x got %s after its two wakes", one);
    free(one);
    one = next_wake(z, "lk:move");
    ck_assert_msg(strncmp(one, "mv-m", 4) == 0, "z got %s after its two wakes", one);
    free(one);
    fm_client_free(pub);
    fm_client_free(z);
    fm_client_free(y);
    fm_client_free(x);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------ */

#define TCASE_TIMEOUT 60

Suite *fm_suite_locks(void)
{
    Suite *s = suite_create("locks");
    TCase *life = fmt_tcase(s, "lifecycle", servers_up, servers_down, TCASE_TIMEOUT);
    TCase *wake = fmt_tcase(s, "wake_groups", servers_up, servers_down, TCASE_TIMEOUT);
    TCase *own = fmt_tcase(s, "own_servers", NULL, NULL, TCASE_TIMEOUT);

    tcase_add_test(life, test_lock_released_when_holder_connection_closes);
    tcase_add_test(life, test_lock_released_when_holder_process_is_killed);
    tcase_add_test(life, test_lock_kept_after_disconnect_until_its_ttl);
    tcase_add_test(life, test_auto_extended_lock_never_lapses_and_is_released_on_disconnect);
    tcase_add_test(life, test_auto_extended_lock_deleted_behind_daemon_is_reported_lost);
    tcase_add_test(life, test_client_extend_sets_the_ttl_auto_extension_keeps);
    tcase_add_test(life, test_release_by_client_takes_lock_off_disconnect_list);
    tcase_add_test(life, test_waiting_acquire_dies_with_its_connection);
    tcase_add_test(life, test_fences_strictly_increase_over_acquires_through_two_daemons);
    tcase_add_test(life, test_release_on_one_daemon_hands_lock_to_waiter_on_another);
    tcase_add_test(life, test_release_without_publication_reaches_waiter_by_retry_timer);
    tcase_add_test(life, test_release_right_behind_waiters_attempt_still_wakes_it);
    tcase_add_test(own, test_clean_shutdown_releases_release_locks_but_not_keep_locks);
    tcase_add_test(wake, test_wake_group_shares_each_wake_once_round_robin_while_ungrouped_get_all);
    tcase_add_test(wake, test_subscribing_again_moves_subscriber_to_its_new_group);
    return s;
}
