/* test_faults.c -- real Redis faults and what a client sees of them: Redis
 * killed while idle and with requests in flight, restarted on the same
 * socket, stopped, loading, busy, cut off from its master, turned into a
 * replica, out of memory.
 *
 * Every test starts its own redis-server(s) and daemon in its body (they
 * belong to the test's process and die with it), with short timeouts and a
 * fast reconnect, and waits for conditions, not for time: where a reconnect
 * attempt must have happened, a stand-in listener on Redis's socket counts
 * the attempts; where a request must have met a transient error, the
 * daemon's retry counter says so. */
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fm_tests.h"
#include "fmredis.h"
#include "harness.h"
#include "wire.h"

#define TCASE_TIMEOUT 30
#define UP_MS 5000          /* what reaching Redis, or a restart, may take */
#define PROMPT_MS 1000      /* what "at once" may take on a loaded machine */
#define SLACK_MS 1000       /* beyond a deadline, what a reply may take */

/* The daemon with a given request_timeout_ms and a fast reconnect. */
#define DAEMON_ARGS(timeout)                                                  \
    ((const char *const[]){"--request_timeout_ms", timeout,                   \
                           "--reconnect_step_ms", "20",                       \
                           "--reconnect_max_ms", "200", NULL})

#define EXEC_A "{\"id\":\"fa\",\"n\":12345678901234567890,\"f\":1.50}"
#define EXEC_B "{\"id\":\"fb\",\"v\":\"second\"}"
#define EXEC_C "{\"id\":\"fc\",\"v\":[1,2,3]}"

typedef struct pair {
    fmt_redis redis;
    fmt_daemon daemon;
} pair;

/* ---- Redis, directly ---------------------------------------------------- */

#define REDIS_DO(c, ...) freeReplyObject(wire_redis_ok((c), __VA_ARGS__))

/* Sends a command without waiting for its reply (it blocks Redis); the
 * reply is read later with redis_reply(). */
static void redis_send(redisContext *c, const char *cmd, const char *arg)
{
    int done = 0;

    ck_assert_int_eq(redisAppendCommand(c, cmd, arg), REDIS_OK);
    while (!done)
        ck_assert_int_eq(redisBufferWrite(c, &done), REDIS_OK);
}

static redisReply *redis_reply(redisContext *c)
{
    redisReply *reply = NULL;

    ck_assert_msg(redisGetReply(c, (void **)&reply) == REDIS_OK, "redis: %s", c->errstr);
    return reply;
}

/* The execution stored under id in Redis, or NULL (caller frees). */
static char *redis_exec(const fmt_redis *r, const char *id)
{
    redisContext *c = wire_redis_open(r);
    redisReply *reply = wire_redis_ok(c, "GET fm:exec:%s", id);
    char *s = reply->type == REDIS_REPLY_STRING ? strdup(reply->str) : NULL;

    freeReplyObject(reply);
    redisFree(c);
    return s;
}

typedef struct redis_says {
    const fmt_redis *r;
    const char *cmd;
    const char *prefix;     /* what the reply must start with */
} redis_says;

/* Whether a fresh connection's cmd is answered with text starting with
 * prefix (an error's or a status's; for a bulk string, in it). */
static int redis_answers(void *arg)
{
    const redis_says *rs = arg;
    redisContext *c = fmt_redis_connect(rs->r);
    redisReply *reply;
    int yes = 0;

    if (c == NULL)
        return 0;
    reply = fmt_redis_cmd(c, rs->cmd);
    if (reply != NULL && reply->str != NULL)
        yes = reply->type == REDIS_REPLY_STRING ? strstr(reply->str, rs->prefix) != NULL
                                                : strncmp(reply->str, rs->prefix,
                                                          strlen(rs->prefix)) == 0;
    freeReplyObject(reply);
    redisFree(c);
    return yes;
}

static void await_redis_answer(const fmt_redis *r, const char *cmd, const char *prefix)
{
    redis_says rs = {r, cmd, prefix};

    ck_assert_msg(fmt_wait_until(redis_answers, &rs, UP_MS),
                  "redis never answered %s with %s", cmd, prefix);
}

/* ---- the daemon --------------------------------------------------------- */

/* A member of the "redis" object of the daemon's stats (bools as 0/1). */
static int64_t link_stat(const fmt_daemon *d, const char *name)
{
    return wire_link_stat(d->sock, name);
}

typedef struct stat_above {
    const fmt_daemon *d;
    const char *name;
    int64_t value;
} stat_above;

static int stat_is_above(void *arg)
{
    const stat_above *sa = arg;

    return link_stat(sa->d, sa->name) > sa->value;
}

/* Waits until stats' redis.<name> exceeds value. */
static void await_stat_above(const fmt_daemon *d, const char *name, int64_t value)
{
    stat_above sa = {d, name, value};

    ck_assert_msg(fmt_wait_until(stat_is_above, &sa, UP_MS),
                  "redis.%s of the daemon's stats never went above %lld", name,
                  (long long)value);
}

static int links_up(void *arg)
{
    return link_stat(arg, "connected") && link_stat(arg, "subscriber_connected");
}

static int links_down(void *arg)
{
    return !link_stat(arg, "connected") && !link_stat(arg, "subscriber_connected");
}

/* Both links (commands and pub/sub) are up within ms. */
static void await_links_up(const fmt_daemon *d, int ms)
{
    ck_assert_msg(fmt_wait_until(links_up, (void *)d, ms),
                  "the daemon's Redis links were not both up within %d ms", ms);
}

static void await_links_down(const fmt_daemon *d)
{
    ck_assert_msg(fmt_wait_until(links_down, (void *)d, UP_MS),
                  "the daemon did not notice that Redis went away");
}

static void start_pair(pair *p, const char *const *redis_args, const char *const *daemon_args)
{
    wire_pair_start(&p->redis, &p->daemon, redis_args, daemon_args);
    await_links_up(&p->daemon, UP_MS);
}

/* The same daemon served through the fault: it still answers. */
static void stop_pair(pair *p)
{
    int fd = wire_connect(p->daemon.sock);

    wire_expect_ok(fd, "{\"op\":\"ping\",\"id\":\"alive\"}", "\"alive\"");
    close(fd);
    wire_pair_stop(&p->redis, &p->daemon);
}

/* Kills Redis, and restarts it on the same socket once the daemon noticed. */
static void crash_and_restart(pair *p)
{
    fmt_redis_kill(&p->redis);
    await_links_down(&p->daemon);
    ck_assert_msg(fmt_redis_restart(&p->redis) == 0, "redis-server did not restart");
    await_links_up(&p->daemon, UP_MS);
}

/* Lines of the daemon's log that contain needle. */
/* The lines of the daemon's log from byte `from` on that hold needle. */
static int log_lines(const fmt_daemon *d, long from, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    char line[2048];
    int n = 0;

    ck_assert_msg(f != NULL, "no log at %s", d->log);
    ck_assert_int_eq(fseek(f, from, SEEK_SET), 0);
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* How long the daemon's log is now: a mark for log_lines. */
static long log_size(const fmt_daemon *d)
{
    struct stat st;

    ck_assert_msg(stat(d->log, &st) == 0, "no log at %s", d->log);
    return (long)st.st_size;
}

/* ---- requests ----------------------------------------------------------- */

/* One reply for each of the n string ids, in any order, each before end
 * (on the fmt_now_ms clock): out[i] is the reply to ids[i], its text in
 * texts[i] unless texts is NULL. A reply to no id of the list, or a second
 * reply to one, fails the test. */
static void recv_replies(int fd, const char *const *ids, size_t n, cJSON **out, char **texts,
                         int64_t end)
{
    for (size_t got = 0; got < n; got++) {
        int64_t left = end - fmt_now_ms();
        char *text;
        cJSON *r;
        const char *id;
        size_t i;

        ck_assert_msg(left > 0, "only %zu of %zu replies before the bound", got, n);
        text = wire_recv_text(fd, (int)left, NULL);
        r = cJSON_Parse(text);
        id = wire_str(r, "id");
        ck_assert_msg(id != NULL, "a frame without a string id: %s", text);
        for (i = 0; i < n && strcmp(ids[i], id) != 0; i++)
            ;
        ck_assert_msg(i < n, "a reply to no pending request: %s", text);
        ck_assert_msg(out[i] == NULL, "a second reply to %s: %s", id, text);
        out[i] = r;
        if (texts != NULL)
            texts[i] = text;
        else
            free(text);
    }
}

static void assert_error_code(const cJSON *reply, const char *code, const char *id)
{
    char *quoted = wire_strf("\"%s\"", id);

    wire_assert_error(reply, code, quoted);
    free(quoted);
}

static const char *error_message(const cJSON *reply)
{
    return wire_str(cJSON_GetObjectItemCaseSensitive(reply, "error"), "message");
}

/* The reply to json must be ok, carry id, and have member true. */
static void expect_true(int fd, const char *json, const char *id, const char *member)
{
    cJSON *r = wire_call(fd, json);

    wire_assert_ok(r, id);
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, member)),
                  "%s: %s is not true", json, member);
    cJSON_Delete(r);
}

/* Sends one request and returns its reply, and in *ms how long it took. */
static cJSON *timed_call(int fd, const char *json, int64_t *ms)
{
    int64_t start = fmt_now_ms();
    cJSON *r;

    wire_send(fd, json);
    r = wire_recv(fd, 10000);
    *ms = fmt_now_ms() - start;
    return r;
}

/* ---- a stand-in for Redis that hangs up ---------------------------------- */

#define MAX_ATTEMPTS 32

/* Connection attempts of the daemon, per link: [0] commands, [1] pub/sub. */
typedef struct attempts {
    int64_t lost_at;                /* when Redis was killed */
    int64_t at[2][MAX_ATTEMPTS];    /* when each attempt connected */
    size_t n[2];
} attempts;

/* Which link a connection belongs to, from what the daemon sends first: the
 * command link loads its scripts, the pub/sub link only PINGs. -1 when
 * nothing came. */
static int attempt_link(int fd)
{
    char buf[4096];
    size_t len = 0;
    int64_t end = fmt_now_ms() + PROMPT_MS;

    while (len < sizeof(buf) - 1) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t left = end - fmt_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "SCRIPT") != NULL)
            return 0;
        if (strstr(buf, "PING") != NULL)
            return 1;
    }
    return -1;
}

/* Takes Redis's socket path over, kills Redis, and hangs up on every
 * connection the daemon makes until each link made `want` attempts. The
 * path is free again afterwards, for a restart. */
static void hang_up_on_attempts(fmt_redis *r, attempts *a, size_t want)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int64_t end;

    ck_assert(want <= MAX_ATTEMPTS);
    memset(a, 0, sizeof(*a));
    ck_assert(lfd >= 0);
    ck_assert(strlen(r->sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, r->sock, strlen(r->sock) + 1);
    /* Redis keeps its listening socket without the path, and its clients. */
    ck_assert_int_eq(unlink(r->sock), 0);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(lfd, 16), 0);
    a->lost_at = fmt_now_ms();
    fmt_redis_kill(r);
    end = fmt_now_ms() + 10000;
    while (a->n[0] < want || a->n[1] < want) {
        struct pollfd pfd = {lfd, POLLIN, 0};
        int64_t left = end - fmt_now_ms(), at;
        int fd, link;

        ck_assert_msg(left > 0 && poll(&pfd, 1, (int)left) == 1,
                      "the daemon made only %zu and %zu attempts", a->n[0], a->n[1]);
        fd = accept(lfd, NULL, NULL);
        at = fmt_now_ms();
        ck_assert(fd >= 0);
        link = attempt_link(fd);
        close(fd);
        ck_assert_msg(link >= 0, "a connection that sent no setup command");
        if (a->n[link] < MAX_ATTEMPTS)
            a->at[link][a->n[link]++] = at;
    }
    close(lfd);
    unlink(r->sock);
}

/* ---- connection loss ----------------------------------------------------- */

START_TEST(test_reconnects_both_links_after_a_kill_and_logs_loss_and_recovery_once)
{
    pair p;
    attempts a;
    long mark;
    int fd;

    start_pair(&p, NULL, DAEMON_ARGS("500"));
    /* What the start logged (on a loaded machine, a first attempt that
     * timed out) is not the fault's. */
    mark = log_size(&p.daemon);
    hang_up_on_attempts(&p.redis, &a, 4);
    ck_assert_msg(fmt_redis_restart(&p.redis) == 0, "redis-server did not restart");
    await_links_up(&p.daemon, UP_MS);

    fd = wire_connect(p.daemon.sock);
    wire_cache_set(fd, EXEC_A);
    wire_expect_cached(fd, "fa", EXEC_A);
    close(fd);
    /* Several failed attempts per link, yet one line for the loss and one
     * for the recovery of each (the first "up" was logged at debug level). */
    ck_assert_int_eq(log_lines(&p.daemon, mark, "redis command link lost"), 1);
    ck_assert_int_eq(log_lines(&p.daemon, mark, "redis pub/sub link lost"), 1);
    ck_assert_int_eq(log_lines(&p.daemon, mark, "info: redis command link up"), 1);
    ck_assert_int_eq(log_lines(&p.daemon, mark, "info: redis pub/sub link up"), 1);
    ck_assert_int_eq(log_lines(&p.daemon, mark, "not established"), 0);
    stop_pair(&p);
}
END_TEST

START_TEST(test_reconnect_backoff_grows_by_step_to_max_and_finds_redis_within_max)
{
    static const char *const args[] = {"--request_timeout_ms", "500", "--reconnect_step_ms",
                                       "100", "--reconnect_max_ms", "300", NULL};
    enum { STEP = 100, MAX = 300, EARLY = 10, LATE = 250 };
    pair p;
    attempts a;
    int64_t back;

    start_pair(&p, NULL, args);
    hang_up_on_attempts(&p.redis, &a, 5);
    /* Attempt k comes min(k × step, max) after the one before it (the
     * first after the loss), never sooner and not much later. */
    for (int link = 0; link < 2; link++) {
        int64_t prev = a.lost_at;

        for (size_t k = 0; k < a.n[link]; k++) {
            int64_t want = (int64_t)(k + 1) * STEP < MAX ? (int64_t)(k + 1) * STEP : MAX;
            int64_t gap = a.at[link][k] - prev;

            ck_assert_msg(gap >= want - EARLY && gap <= want + LATE,
                          "%s link: attempt %zu came %lld ms after the last, not ~%lld",
                          link ? "pub/sub" : "command", k + 1, (long long)gap,
                          (long long)want);
            prev = a.at[link][k];
        }
    }
    ck_assert_msg(fmt_redis_restart(&p.redis) == 0, "redis-server did not restart");
    back = fmt_now_ms();
    await_links_up(&p.daemon, MAX + PROMPT_MS);
    ck_assert_msg(fmt_now_ms() - back <= MAX + PROMPT_MS, "reconnected after %lld ms",
                  (long long)(fmt_now_ms() - back));
    stop_pair(&p);
}
END_TEST

START_TEST(test_requests_in_flight_when_the_link_drops_get_redis_unavailable_at_once)
{
    static const char *const ids1[] = {"get", "set", "acquire", "signal", "get_many"};
    static const char *const ids2[] = {"invalidate", "is_locked", "ping"};
    enum { N1 = 5, N2 = 3 };
    cJSON *r1[N1] = {0}, *r2[N2] = {0};
    pair p;
    int fd1, fd2;
    int64_t commands, killed;

    start_pair(&p, NULL, DAEMON_ARGS("5000"));
    fd1 = wire_connect(p.daemon.sock);
    fd2 = wire_connect(p.daemon.sock);
    /* A client's first read goes out alone (fair queuing, link.h); after
     * it, small reads go out together, all eight at once. */
    wire_expect_ok(fd1, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"first\",\"execution_id\":\"fa\"}",
                   "\"first\"");
    ck_assert_int_eq(kill(p.redis.pid, SIGSTOP), 0);
    commands = link_stat(&p.daemon, "commands");
    wire_send(fd1, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"get\",\"execution_id\":\"fa\"}");
    wire_send(fd1, "{\"op\":\"cache.set\",\"id\":\"set\",\"execution\":" EXEC_A "}");
    wire_send(fd1, "{\"op\":\"lock.acquire\",\"id\":\"acquire\",\"key\":\"fk\",\"max_retries\":0}");
    wire_send(fd1, "{\"op\":\"wake.signal\",\"id\":\"signal\",\"execution_id\":\"fa\"}");
    wire_send(fd1, "{\"op\":\"cache.get_many\",\"fresh\":true,\"id\":\"get_many\",\"execution_ids\":[\"fa\",\"fb\"]}");
    wire_send(fd2, "{\"op\":\"cache.invalidate\",\"id\":\"invalidate\",\"execution_id\":\"fa\"}");
    wire_send(fd2, "{\"op\":\"lock.is_locked\",\"id\":\"is_locked\",\"key\":\"fk\"}");
    wire_send(fd2, "{\"op\":\"ping\",\"id\":\"ping\",\"redis\":true}");
    /* All eight are written to the stopped Redis, then it dies. */
    await_stat_above(&p.daemon, "commands", commands + N1 + N2 - 1);
    killed = fmt_now_ms();
    fmt_redis_kill(&p.redis);

    recv_replies(fd1, ids1, N1, r1, NULL, killed + PROMPT_MS);
    recv_replies(fd2, ids2, N2, r2, NULL, killed + PROMPT_MS);
    for (int i = 0; i < N1; i++)
        assert_error_code(r1[i], "redis_unavailable", ids1[i]);
    for (int i = 0; i < N2 - 1; i++)
        assert_error_code(r2[i], "redis_unavailable", ids2[i]);
    /* A ping is ok during an outage, with "down". */
    wire_assert_ok(r2[N2 - 1], "\"ping\"");
    ck_assert_str_eq(wire_str(r2[N2 - 1], "redis"), "down");
    for (int i = 0; i < N1; i++)
        cJSON_Delete(r1[i]);
    for (int i = 0; i < N2; i++)
        cJSON_Delete(r2[i]);
    close(fd1);
    close(fd2);
    stop_pair(&p);
}
END_TEST

START_TEST(test_requests_made_while_down_get_redis_unavailable_after_the_timeout)
{
    static const char *const ids[] = {"get", "acquire", "signal"};
    enum { N = 3, TIMEOUT = 500 };
    cJSON *r[N] = {0};
    pair p;
    int fd;
    int64_t sent;

    start_pair(&p, NULL, DAEMON_ARGS("500"));
    fmt_redis_kill(&p.redis);
    await_links_down(&p.daemon);
    fd = wire_connect(p.daemon.sock);
    sent = fmt_now_ms();
    wire_send(fd, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"get\",\"execution_id\":\"fa\"}");
    wire_send(fd, "{\"op\":\"lock.acquire\",\"id\":\"acquire\",\"key\":\"fk\",\"max_retries\":0}");
    wire_send(fd, "{\"op\":\"wake.signal\",\"id\":\"signal\",\"execution_id\":\"fa\"}");
    recv_replies(fd, ids, N, r, NULL, sent + TIMEOUT + SLACK_MS);
    ck_assert_msg(fmt_now_ms() - sent >= TIMEOUT - 10, "answered after %lld ms, before the "
                  "timeout", (long long)(fmt_now_ms() - sent));
    for (int i = 0; i < N; i++) {
        assert_error_code(r[i], "redis_unavailable", ids[i]);
        cJSON_Delete(r[i]);
    }
    close(fd);
    stop_pair(&p);
}
END_TEST

/* A release the daemon cannot carry out (Redis is gone) still ends the
 * lock's auto-extension: the client is done with it, and it is left to its
 * TTL (PROTOCOL.md §10.2, "whatever the answer"). */
START_TEST(test_failed_release_stops_auto_extension)
{
    pair p;
    cJSON *rep;
    char *req;
    int fd;

    start_pair(&p, NULL, DAEMON_ARGS("500"));
    fd = wire_connect(p.daemon.sock);
    rep = wire_call(fd, "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"fx\",\"ttl\":30000,"
                        "\"auto_extend\":true}");
    wire_assert_ok(rep, "1");
    req = wire_strf("{\"op\":\"lock.release\",\"id\":2,\"key\":\"fx\",\"token\":\"%s\"}",
                    wire_str(rep, "token"));
    cJSON_Delete(rep);
    ck_assert_int_eq(wire_stats_int(fd, "locks_auto_extended"), 1);
    fmt_redis_kill(&p.redis);
    await_links_down(&p.daemon);
    rep = wire_call(fd, req);
    wire_assert_error(rep, "redis_unavailable", "2");
    cJSON_Delete(rep);
    ck_assert_int_eq(wire_stats_int(fd, "locks_auto_extended"), 0);
    ck_assert_int_eq(wire_stats_int(fd, "locks_held"), 0);
    free(req);
    close(fd);
    ck_assert_msg(fmt_redis_restart(&p.redis) == 0, "redis-server did not restart");
    await_links_up(&p.daemon, UP_MS);
    stop_pair(&p);
}
END_TEST

START_TEST(test_request_made_while_down_succeeds_when_redis_returns_in_time)
{
    pair p;
    int fd;
    int64_t ms;
    cJSON *r;
    char *stored;

    start_pair(&p, NULL, DAEMON_ARGS("3000"));
    fmt_redis_kill(&p.redis);
    await_links_down(&p.daemon);
    fd = wire_connect(p.daemon.sock);
    wire_send(fd, "{\"op\":\"cache.set\",\"id\":\"set\",\"execution\":" EXEC_A "}");
    /* It waits in the daemon's queue for the link... */
    await_stat_above(&p.daemon, "queued", 0);
    ck_assert_msg(fmt_redis_restart(&p.redis) == 0, "redis-server did not restart");
    /* ...and goes out once Redis is back. */
    r = wire_recv(fd, 3000 + SLACK_MS);
    wire_assert_ok(r, "\"set\"");
    cJSON_Delete(r);
    stored = redis_exec(&p.redis, "fa");
    ck_assert_str_eq(stored, EXEC_A);
    free(stored);
    r = timed_call(fd, "{\"op\":\"ping\",\"id\":\"ping\",\"redis\":true}", &ms);
    ck_assert_str_eq(wire_str(r, "redis"), "up");
    cJSON_Delete(r);
    close(fd);
    stop_pair(&p);
}
END_TEST

START_TEST(test_data_acknowledged_before_a_crash_is_there_after_it_with_appendfsync_always)
{
    static const char *const aof[] = {"--appendonly", "yes", "--appendfsync", "always", NULL};
    pair p;
    int fd;
    cJSON *r;
    char *release;

    start_pair(&p, aof, DAEMON_ARGS("3000"));
    fd = wire_connect(p.daemon.sock);
    wire_cache_set(fd, EXEC_A);
    r = wire_call(fd, "{\"op\":\"lock.acquire\",\"id\":\"acquire\",\"key\":\"fk\",\"ttl\":600000}");
    wire_assert_ok(r, "\"acquire\"");
    ck_assert_ptr_nonnull(wire_str(r, "token"));
    release = wire_strf("{\"op\":\"lock.release\",\"id\":\"release\",\"key\":\"fk\","
                        "\"token\":\"%s\"}", wire_str(r, "token"));
    cJSON_Delete(r);

    crash_and_restart(&p);
    /* The execution's exact text, and the lock with its token. */
    wire_expect_cached(fd, "fa", EXEC_A);
    expect_true(fd, "{\"op\":\"lock.is_locked\",\"id\":\"locked\",\"key\":\"fk\"}", "\"locked\"",
                "locked");
    expect_true(fd, release, "\"release\"", "released");
    free(release);
    close(fd);
    stop_pair(&p);
}
END_TEST

/* ---- a Redis that does not answer ---------------------------------------- */

START_TEST(test_late_replies_after_a_stall_are_discarded)
{
    static const char *const late[] = {"a1", "b1", "c1"};
    static const char *const fresh[] = {"c2", "a2", "b2", "locked2"};
    static const char *const execs[] = {EXEC_C, EXEC_A, EXEC_B};
    enum { TIMEOUT = 300 };
    cJSON *r1[3] = {0}, *r2[4] = {0};
    char *texts[4] = {0};
    pair p;
    int fd;
    int64_t sent;

    start_pair(&p, NULL, DAEMON_ARGS("300"));
    fd = wire_connect(p.daemon.sock);
    wire_cache_set(fd, EXEC_A);
    wire_cache_set(fd, EXEC_B);
    wire_cache_set(fd, EXEC_C);

    ck_assert_int_eq(kill(p.redis.pid, SIGSTOP), 0);
    sent = fmt_now_ms();
    wire_send(fd, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"a1\",\"execution_id\":\"fa\"}");
    wire_send(fd, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"b1\",\"execution_id\":\"fb\"}");
    wire_send(fd, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"c1\",\"execution_id\":\"fc\"}");
    recv_replies(fd, late, 3, r1, NULL, sent + TIMEOUT + SLACK_MS);
    ck_assert_msg(fmt_now_ms() - sent >= TIMEOUT - 10, "timeout after %lld ms",
                  (long long)(fmt_now_ms() - sent));
    for (int i = 0; i < 3; i++) {
        assert_error_code(r1[i], "timeout", late[i]);
        cJSON_Delete(r1[i]);
    }
    ck_assert_int_eq(kill(p.redis.pid, SIGCONT), 0);

    /* Redis answers the three late GETs first: had the daemon passed any of
     * them on, a reply to a1, b1 or c1, or a wrong execution, would show. */
    wire_send(fd, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"c2\",\"execution_id\":\"fc\"}");
    wire_send(fd, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"a2\",\"execution_id\":\"fa\"}");
    wire_send(fd, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"b2\",\"execution_id\":\"fb\"}");
    wire_send(fd, "{\"op\":\"lock.is_locked\",\"id\":\"locked2\",\"key\":\"fk\"}");
    recv_replies(fd, fresh, 4, r2, texts, fmt_now_ms() + WIRE_REPLY_MS);
    for (int i = 0; i < 3; i++) {
        char *quoted = wire_strf("\"%s\"", fresh[i]);

        wire_assert_ok(r2[i], quoted);
        wire_assert_execution(texts[i], execs[i]);
        free(quoted);
    }
    wire_assert_ok(r2[3], "\"locked2\"");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r2[3], "locked")));
    for (int i = 0; i < 4; i++) {
        cJSON_Delete(r2[i]);
        free(texts[i]);
    }
    close(fd);
    stop_pair(&p);
}
END_TEST

/* ---- what a reconnect restores ------------------------------------------- */

START_TEST(test_scripts_are_loaded_again_when_redis_comes_back_empty)
{
    pair p;
    redisContext *c;
    redisReply *info;
    int fd;
    cJSON *r;
    char *extend, *release;

    start_pair(&p, NULL, DAEMON_ARGS("3000"));
    crash_and_restart(&p);
    /* Loaded on connect, before any request needs them. */
    c = wire_redis_open(&p.redis);
    info = wire_redis_ok(c, "INFO memory");
    ck_assert_msg(strstr(info->str, "number_of_cached_scripts:0\r") == NULL,
                  "no scripts in the restarted Redis");
    freeReplyObject(info);
    redisFree(c);

    fd = wire_connect(p.daemon.sock);
    r = wire_call(fd, "{\"op\":\"lock.acquire\",\"id\":\"acquire\",\"key\":\"fk\"}");
    wire_assert_ok(r, "\"acquire\"");
    ck_assert_ptr_nonnull(wire_str(r, "token"));
    extend = wire_strf("{\"op\":\"lock.extend\",\"id\":\"extend\",\"key\":\"fk\",\"token\":\"%s\"}",
                       wire_str(r, "token"));
    release = wire_strf("{\"op\":\"lock.release\",\"id\":\"release\",\"key\":\"fk\","
                        "\"token\":\"%s\"}", wire_str(r, "token"));
    cJSON_Delete(r);
    expect_true(fd, extend, "\"extend\"", "extended");
    expect_true(fd, release, "\"release\"", "released");
    free(extend);
    free(release);
    close(fd);
    stop_pair(&p);
}
END_TEST

/* The next event must be {"event":"redis","state":up ? "up" : "down"}. */
static void expect_link_event(fm_client *c, int up)
{
    fm_event ev;

    ck_assert_msg(fm_event_wait(c, &ev, UP_MS) == FM_OK, "no event: %s", fm_client_errstr(c));
    ck_assert_msg(ev.type == FM_EVENT_REDIS && ev.redis_up == up, "want redis %s, got %s",
                  up ? "up" : "down", ev.json);
    fm_event_clear(&ev);
}

START_TEST(test_wake_subscribers_see_down_then_up_and_get_wakes_again)
{
    pair p;
    fm_client *sub, *pub;
    redisContext *c;
    redisReply *numsub;
    fm_event ev;
    int64_t receivers = 0;

    start_pair(&p, NULL, DAEMON_ARGS("3000"));
    sub = fmt_client(&p.daemon);
    pub = fmt_client(&p.daemon);
    ck_assert_int_eq(fm_wake_subscribe(sub, "fm:faults", NULL, NULL, 0), FM_OK);

    fmt_redis_kill(&p.redis);
    expect_link_event(sub, 0);
    ck_assert_msg(fmt_redis_restart(&p.redis) == 0, "redis-server did not restart");
    expect_link_event(sub, 1);

    /* "up" means the subscription is in Redis again. */
    c = wire_redis_open(&p.redis);
    numsub = wire_redis_ok(c, "PUBSUB NUMSUB fm:faults");
    ck_assert_int_eq(numsub->element[1]->integer, 1);
    freeReplyObject(numsub);
    redisFree(c);
    ck_assert_int_eq(fm_wake_signal(pub, "after-up", "fm:faults", &receivers), FM_OK);
    ck_assert_int_eq(receivers, 1);
    ck_assert_int_eq(fm_event_wait(sub, &ev, UP_MS), FM_OK);
    ck_assert_int_eq(ev.type, FM_EVENT_WAKE);
    ck_assert_str_eq(ev.execution_id, "after-up");
    fm_event_clear(&ev);
    fm_client_free(sub);
    fm_client_free(pub);
    stop_pair(&p);
}
END_TEST

/* ---- transient states ---------------------------------------------------- */

/* Each fault below is set up on a daemon with a short deadline (the request
 * meets the state until its end) and on one with a long deadline (the state
 * ends while the request is being retried). */

typedef struct transient {
    pair p;
    redisContext *c;        /* control connection */
    redisContext *blocked;  /* the connection a blocking command went out on, or NULL */
} transient;

/* A transient state: Redis's arguments, and how the state begins (on a
 * pair holding EXEC_A) and ends. */
typedef struct fault {
    const char *const *redis_args;
    void (*begin)(transient *t);
    void (*end)(transient *t);
} fault;

/* LOADING: DEBUG RELOAD reloads a dataset slowly (key-load-delay, in µs per
 * key); CONFIG SET key-load-delay 0 ends it. A loading Redis serves clients
 * only between chunks of the file (2 MB by default); chunks of 16 KiB take
 * some tens of ms here, so a request often has a command unanswered at
 * Redis when its deadline comes, as with a real loading Redis. */
static void begin_loading(transient *t)
{
    REDIS_DO(t->c, "DEBUG POPULATE 200000");
    REDIS_DO(t->c, "CONFIG SET key-load-delay 50");
    t->blocked = wire_redis_open(&t->p.redis);
    redis_send(t->blocked, "DEBUG RELOAD", NULL);
    await_redis_answer(&t->p.redis, "PING", "LOADING");
}

static void end_loading(transient *t)
{
    REDIS_DO(t->c, "CONFIG SET key-load-delay 0");
    freeReplyObject(redis_reply(t->blocked));
}

static const char *const loading_args[] = {"--enable-debug-command", "yes",
                                           "--loading-process-events-interval-bytes", "16384",
                                           NULL};
static const fault loading = {loading_args, begin_loading, end_loading};

/* BUSY: a script that never ends, past busy-reply-threshold; SCRIPT KILL
 * ends it. */
static void begin_busy(transient *t)
{
    t->blocked = wire_redis_open(&t->p.redis);
    redis_send(t->blocked, "EVAL %s 0", "while true do end");
    await_redis_answer(&t->p.redis, "PING", "BUSY");
}

static void end_busy(transient *t)
{
    redisReply *killed;

    REDIS_DO(t->c, "SCRIPT KILL");
    killed = redis_reply(t->blocked);
    ck_assert_int_eq(killed->type, REDIS_REPLY_ERROR);
    freeReplyObject(killed);
}

static const char *const busy_args[] = {"--busy-reply-threshold", "100", NULL};
static const fault busy = {busy_args, begin_busy, end_busy};

/* MASTERDOWN: a replica of a master that is not there, told not to serve
 * stale data; REPLICAOF NO ONE ends it. (Writes meet READONLY first, so
 * the requests below read.) */
static void begin_masterdown(transient *t)
{
    REDIS_DO(t->c, "CONFIG SET replica-serve-stale-data no");
    REDIS_DO(t->c, "REPLICAOF 127.0.0.1 %d", fmt_unused_port());
}

static void end_masterdown(transient *t)
{
    REDIS_DO(t->c, "REPLICAOF NO ONE");
}

static const fault masterdown = {NULL, begin_masterdown, end_masterdown};

/* A pair with the daemon's given request_timeout_ms, holding EXEC_A, in
 * state f. */
static void start_transient(transient *t, const fault *f, const char *timeout)
{
    start_pair(&t->p, f->redis_args, DAEMON_ARGS(timeout));
    wire_store(t->p.daemon.sock, EXEC_A);
    t->c = wire_redis_open(&t->p.redis);
    t->blocked = NULL;
    f->begin(t);
}

static void end_transient(transient *t)
{
    redisFree(t->c);
    if (t->blocked != NULL)
        redisFree(t->blocked);
    stop_pair(&t->p);
}

#define GET_A "{\"op\":\"cache.get\",\"fresh\":true,\"id\":\"get\",\"execution_id\":\"fa\"}"

/* A request meets the state until its deadline: redis_unavailable, not
 * timeout (Redis answered) and not redis_error (it is not final). Once the
 * state ends, the data from before it is read back. */
static void assert_unavailable_until_the_deadline(const fault *f)
{
    enum { TIMEOUT = 500 };
    transient t;
    int fd;
    int64_t ms;
    cJSON *r;

    start_transient(&t, f, "500");
    fd = wire_connect(t.p.daemon.sock);
    r = timed_call(fd, GET_A, &ms);
    wire_assert_error(r, "redis_unavailable", "\"get\"");
    ck_assert_msg(ms >= TIMEOUT - 10 && ms <= TIMEOUT + SLACK_MS, "answered after %lld ms",
                  (long long)ms);
    cJSON_Delete(r);
    f->end(&t);
    wire_expect_cached(fd, "fa", EXEC_A);
    close(fd);
    end_transient(&t);
}

/* A request that meets the state and is retried succeeds once it ends. */
static void assert_retried_until_it_ends(const fault *f)
{
    enum { TIMEOUT = 3000 };
    transient t;
    int fd;
    int64_t retries, sent;
    char *text;
    cJSON *r;

    start_transient(&t, f, "3000");
    fd = wire_connect(t.p.daemon.sock);
    retries = link_stat(&t.p.daemon, "retries");
    sent = fmt_now_ms();
    wire_send(fd, GET_A);
    await_stat_above(&t.p.daemon, "retries", retries);
    f->end(&t);
    text = wire_recv_text(fd, TIMEOUT + SLACK_MS, NULL);
    r = cJSON_Parse(text);
    wire_assert_ok(r, "\"get\"");
    wire_assert_execution(text, EXEC_A);
    ck_assert_msg(fmt_now_ms() - sent < TIMEOUT, "answered after %lld ms",
                  (long long)(fmt_now_ms() - sent));
    cJSON_Delete(r);
    free(text);
    close(fd);
    end_transient(&t);
}

START_TEST(test_loading_until_the_deadline_is_redis_unavailable)
{
    assert_unavailable_until_the_deadline(&loading);
}
END_TEST

START_TEST(test_loading_is_retried_and_the_request_succeeds_when_it_ends)
{
    assert_retried_until_it_ends(&loading);
}
END_TEST

START_TEST(test_busy_until_the_deadline_is_redis_unavailable)
{
    assert_unavailable_until_the_deadline(&busy);
}
END_TEST

START_TEST(test_busy_is_retried_and_the_request_succeeds_when_it_ends)
{
    assert_retried_until_it_ends(&busy);
}
END_TEST

START_TEST(test_masterdown_until_the_deadline_is_redis_unavailable)
{
    assert_unavailable_until_the_deadline(&masterdown);
}
END_TEST

START_TEST(test_masterdown_is_retried_and_the_request_succeeds_when_it_ends)
{
    assert_retried_until_it_ends(&masterdown);
}
END_TEST

/* ---- failover and final errors ------------------------------------------ */

/* The daemon's Redis becomes a replica of another (a failover, seen from a
 * stale client): writes meet READONLY. */
static void demote(pair *p, fmt_redis *master, const char *timeout)
{
    static char port[16];
    /* No 5 s wait for more replicas before a diskless sync. */
    static const char *const args[] = {"--port", port, "--bind", "127.0.0.1",
                                       "--repl-diskless-sync-delay", "0", NULL};
    redisContext *c;

    snprintf(port, sizeof(port), "%d", fmt_unused_port());
    ck_assert_msg(fmt_redis_start(master, args) == 0, "the master did not start");
    start_pair(p, NULL, DAEMON_ARGS(timeout));
    c = wire_redis_open(&p->redis);
    REDIS_DO(c, "REPLICAOF 127.0.0.1 %s", port);
    redisFree(c);
    await_redis_answer(&p->redis, "INFO replication", "master_link_status:up");
}

#define SET_RO "{\"op\":\"cache.set\",\"id\":\"set\",\"execution\":" EXEC_B "}"

START_TEST(test_readonly_forces_a_reconnect_and_the_write_is_retried_on_the_new_master)
{
    fmt_redis master;
    pair p;
    redisContext *c;
    int fd;
    int64_t connects, sent;
    cJSON *r;
    char *stored;

    demote(&p, &master, "3000");
    fd = wire_connect(p.daemon.sock);
    connects = link_stat(&p.daemon, "connects");
    sent = fmt_now_ms();
    wire_send(fd, SET_RO);
    /* READONLY made it reconnect; then the replica is promoted. */
    await_stat_above(&p.daemon, "connects", connects);
    c = wire_redis_open(&p.redis);
    REDIS_DO(c, "REPLICAOF NO ONE");
    redisFree(c);
    r = wire_recv(fd, 3000 + SLACK_MS);
    wire_assert_ok(r, "\"set\"");
    ck_assert_msg(fmt_now_ms() - sent < 3000, "answered after %lld ms",
                  (long long)(fmt_now_ms() - sent));
    cJSON_Delete(r);
    stored = redis_exec(&p.redis, "fb");
    ck_assert_str_eq(stored, EXEC_B);
    free(stored);
    ck_assert_ptr_null(redis_exec(&master, "fb"));
    close(fd);
    stop_pair(&p);
    fmt_redis_stop(&master);
}
END_TEST

START_TEST(test_readonly_until_the_deadline_is_redis_unavailable)
{
    fmt_redis master;
    pair p;
    int fd;
    int64_t ms;
    cJSON *r;

    demote(&p, &master, "500");
    fd = wire_connect(p.daemon.sock);
    r = timed_call(fd, SET_RO, &ms);
    wire_assert_error(r, "redis_unavailable", "\"set\"");
    ck_assert_msg(ms >= 490 && ms <= 500 + SLACK_MS, "answered after %lld ms", (long long)ms);
    cJSON_Delete(r);
    ck_assert_ptr_null(redis_exec(&p.redis, "fb"));
    close(fd);
    stop_pair(&p);
    fmt_redis_stop(&master);
}
END_TEST

START_TEST(test_oom_is_a_redis_error_with_the_redis_text_at_once)
{
    static const char *const requests[] = {
        "{\"op\":\"cache.set\",\"id\":\"set\",\"execution\":" EXEC_B "}",
        "{\"op\":\"lock.acquire\",\"id\":\"acquire\",\"key\":\"fk\",\"max_retries\":0}",
    };
    pair p;
    redisContext *c;
    int fd;

    start_pair(&p, NULL, DAEMON_ARGS("3000"));
    fd = wire_connect(p.daemon.sock);
    wire_cache_set(fd, EXEC_A);
    c = wire_redis_open(&p.redis);
    REDIS_DO(c, "CONFIG SET maxmemory-policy noeviction");
    REDIS_DO(c, "CONFIG SET maxmemory 1");
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        int64_t ms;
        cJSON *r = timed_call(fd, requests[i], &ms);
        const char *msg;

        wire_assert_error(r, "redis_error", i == 0 ? "\"set\"" : "\"acquire\"");
        msg = error_message(r);
        ck_assert_msg(strstr(msg, "OOM") != NULL, "message: %s", msg);
        ck_assert_msg(ms < PROMPT_MS, "answered after %lld ms: it was retried", (long long)ms);
        cJSON_Delete(r);
    }
    /* Reads still work, and writes once there is room. */
    wire_expect_cached(fd, "fa", EXEC_A);
    REDIS_DO(c, "CONFIG SET maxmemory 0");
    wire_cache_set(fd, EXEC_B);
    redisFree(c);
    close(fd);
    stop_pair(&p);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name)
{
    return fmt_tcase(s, name, NULL, NULL, TCASE_TIMEOUT);
}

Suite *fm_suite_faults(void)
{
    Suite *s = suite_create("faults");
    TCase *tc;

    tc = tcase(s, "loss");
    tcase_add_test(tc, test_reconnects_both_links_after_a_kill_and_logs_loss_and_recovery_once);
    tcase_add_test(tc, test_reconnect_backoff_grows_by_step_to_max_and_finds_redis_within_max);
    tcase_add_test(tc, test_requests_in_flight_when_the_link_drops_get_redis_unavailable_at_once);
    tcase_add_test(tc, test_requests_made_while_down_get_redis_unavailable_after_the_timeout);
    tcase_add_test(tc, test_failed_release_stops_auto_extension);
    tcase_add_test(tc, test_request_made_while_down_succeeds_when_redis_returns_in_time);
    tcase_add_test(tc, test_data_acknowledged_before_a_crash_is_there_after_it_with_appendfsync_always);

    tc = tcase(s, "stall");
    tcase_add_test(tc, test_late_replies_after_a_stall_are_discarded);

    tc = tcase(s, "restore");
    tcase_add_test(tc, test_scripts_are_loaded_again_when_redis_comes_back_empty);
    tcase_add_test(tc, test_wake_subscribers_see_down_then_up_and_get_wakes_again);

    tc = tcase(s, "transient");
    tcase_add_test(tc, test_loading_until_the_deadline_is_redis_unavailable);
    tcase_add_test(tc, test_loading_is_retried_and_the_request_succeeds_when_it_ends);
    tcase_add_test(tc, test_busy_until_the_deadline_is_redis_unavailable);
    tcase_add_test(tc, test_busy_is_retried_and_the_request_succeeds_when_it_ends);
    tcase_add_test(tc, test_masterdown_until_the_deadline_is_redis_unavailable);
    tcase_add_test(tc, test_masterdown_is_retried_and_the_request_succeeds_when_it_ends);

    tc = tcase(s, "failover");
    tcase_add_test(tc, test_readonly_forces_a_reconnect_and_the_write_is_retried_on_the_new_master);
    tcase_add_test(tc, test_readonly_until_the_deadline_is_redis_unavailable);

    tc = tcase(s, "final");
    tcase_add_test(tc, test_oom_is_a_redis_error_with_the_redis_text_at_once);
    return s;
}
