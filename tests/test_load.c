/* test_load.c -- worker faults, limits, signals and load, against a real
 * redis-server and fmredisd through the raw protocol.
 *
 * What the errors suite leaves out of the contract's bad input (truncated
 * frames, odd member names, random bytes), workers that leave with requests
 * in flight, a slow consumer against max_output_bytes, a socket file left
 * at the path at start, SIGTERM and SIGINT under load, and 300 concurrent
 * clients with the daemon's memory bounded. max_clients, too_many_requests
 * and the basics of shutting_down are the errors suite's.
 *
 * The "input" and "start" TCases share one redis-server and daemon (an
 * unchecked fixture, belonging to the runner) holding one cached execution
 * that is checked intact after every bad input. The other tests start
 * servers of their own in their bodies, so that the servers die with the
 * test's process even when an assertion fails.
 *
 * Latency and RSS bounds are asserted against a native daemon only: under
 * valgrind or ASan both are the tool's. Every other assertion holds there
 * too, with more time. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fm_json.h"
#include "fm_tests.h"
#include "harness.h"
#include "proc.h"
#include "wire.h"

#define TCASE_TIMEOUT 60
#define STORED_ID "load-stored"
/* Digits a double would lose, and a fraction's trailing zero. */
#define STORED_JSON "{\"id\":\"" STORED_ID "\",\"n\":12345678901234567890,\"f\":1.50}"
#define PROMPT_MS 200           /* a reply that waits for nothing, under load */
#define SETTLE_MS 10000         /* for the daemon's counters to come back */
/* Each round peaks at about 26 MiB of heap (300 read buffers of 64 KiB)
 * and frees nearly all of it, but glibc keeps the fragmented heap: RSS
 * climbs towards the peak over the first rounds, by up to ~9 MiB from the
 * second to the fifth. A leak of a read buffer per connection (19 MiB a
 * round), or of about a KiB per request, breaks one bound or the other;
 * smaller leaks are for valgrind. */
#define RSS_LIMIT_KIB (64 * 1024)
#define RSS_SLACK_KIB (12 * 1024)

static fmt_redis redis;
static fmt_daemon daemon0;      /* the defaults, on `redis`, holding STORED_JSON */

/* ---- helpers ------------------------------------------------------------ */

/* A fresh client is served, and what was stored before is intact. */
static void assert_still_serving(const char *sock)
{
    wire_assert_serving(sock, STORED_ID, STORED_JSON);
}

typedef struct stat_want {
    int fd;
    const char *name;
    long long want;
} stat_want;

static int stat_is(void *arg)
{
    const stat_want *w = arg;

    return wire_stats_int(w->fd, w->name) == w->want;
}

/* Waits until the stats member `name`, asked on fd, is want. */
static void await_stat(int fd, const char *name, long long want)
{
    stat_want w = {fd, name, want};

    ck_assert_msg(fmt_wait_until(stat_is, &w, SETTLE_MS), "stats %s stays %lld, not %lld",
                  name, wire_stats_int(fd, name), want);
}

/* The daemon holds no connection but fd's and no request but its stats. */
static void await_idle(int fd)
{
    await_stat(fd, "clients", 1);
    await_stat(fd, "inflight", 1);
}

/* One reply body, checked to be one strict JSON object, parsed. */
static cJSON *parse_reply(const char *body, size_t len, const char *ctx)
{
    const char *why = "";
    size_t at = 0;
    fm_json_val root;
    cJSON *r;

    ck_assert_msg(fm_json_validate(body, len, &root, &why, &at) == 0 &&
                  root.type == FM_JSON_OBJECT,
                  "%s: reply is not one strict JSON object (%s at %zu): %.300s", ctx, why, at,
                  body);
    r = cJSON_ParseWithLength(body, len);
    ck_assert_msg(r != NULL, "%s: cJSON could not parse %.300s", ctx, body);
    return r;
}

/* Fails the test for a connection the daemon stopped serving, saying
 * whether it died (and how) or hangs. */
static void daemon_failed(fmt_daemon *d, const char *what)
{
    int status = d->pid > 0 ? fmt_daemon_wait(d, 1000) : -2;

    ck_assert_msg(status == -1, "%s: fmredisd exited (status %d); see %s", what, status,
                  d->log);
    ck_abort_msg("%s: fmredisd runs but does not serve; see %s", what, d->log);
}

/* wire_recv and wire_call, with daemon_failed's diagnosis when no reply
 * comes. */
static cJSON *recv_on(fmt_daemon *d, int fd, const char *ctx)
{
    size_t len;
    char *body = fmt_raw_recv(fd, WIRE_REPLY_MS, &len);
    cJSON *r;

    if (body == NULL)
        daemon_failed(d, ctx);
    r = parse_reply(body, len, ctx);
    free(body);
    return r;
}

static cJSON *call_on(fmt_daemon *d, int fd, const char *json)
{
    if (fmt_raw_send(fd, json, strlen(json)) != 0)
        daemon_failed(d, json);
    return recv_on(d, fd, json);
}

/* After the client's half-close the daemon closes too, sending nothing. */
static void expect_eof_after_half_close(int fd, const char *what)
{
    size_t extra = 0;

    ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
    ck_assert_msg(fmt_raw_drain(fd, WIRE_REPLY_MS, &extra), "%s: no EOF after a half-close",
                  what);
    ck_assert_msg(extra == 0, "%s: %zu bytes nobody asked for", what, extra);
}

/* A private directory for a socket path; *path is <dir>/fmredisd.sock. */
static void private_path(char *dir, size_t dirlen, char *path, size_t pathlen)
{
    snprintf(dir, dirlen, "/tmp/fmtest-load.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, pathlen, "%s/fmredisd.sock", dir);
}

/* fmredisd on a socket path of the test's choosing, logging to stderr. */
static void run_daemon_on(fmt_proc *p, const char *path)
{
    const char *const argv[] = {fmt_daemon_path(), "--socket", path, "--redis_url", redis.url,
                                "--log_level", "info", NULL};

    ck_assert_int_eq(fmt_proc_start(p, argv, NULL, NULL), 0);
}

/* ---- many connections at once ------------------------------------------- */

/* One thread polls every connection of a set; each reply is matched to its
 * request by id (the request's index on its connection) and handed to the
 * test's check, which may send more. */

#define LOAD_REQS 64

typedef struct load_conn load_conn;
typedef struct load_set load_set;
typedef void load_check(load_set *set, load_conn *c, int id, const cJSON *reply,
                        const char *text);
typedef int load_done(const load_set *set);

struct load_conn {
    int fd;
    int index;
    int nsent, nanswered;
    int eof;
    char kind[LOAD_REQS];           /* per id: what the request was */
    unsigned char answered[LOAD_REQS];
    int64_t sent_ms[LOAD_REQS];
    char *in;                       /* bytes read, not yet whole frames */
    size_t inlen, incap;
};

struct load_set {
    load_conn *conns;
    int n;
    load_check *check;
    void *arg;                      /* the test's state */
    int64_t max_latency_ms;
};

static void load_open(load_set *set, int n, const char *sock, load_check *check, void *arg)
{
    memset(set, 0, sizeof(*set));
    set->conns = calloc((size_t)n, sizeof(*set->conns));
    ck_assert_ptr_nonnull(set->conns);
    set->n = n;
    set->check = check;
    set->arg = arg;
    for (int i = 0; i < n; i++) {
        set->conns[i].fd = wire_connect(sock);
        set->conns[i].index = i;
    }
}

static void load_close(load_set *set)
{
    for (int i = 0; i < set->n; i++) {
        close(set->conns[i].fd);
        free(set->conns[i].in);
    }
    free(set->conns);
    set->conns = NULL;
}

/* Sends {"id":<next id>,<members>} and returns the id. */
static int load_send(load_conn *c, char kind, const char *members)
{
    int id = c->nsent;
    char *json;

    ck_assert_int_lt(id, LOAD_REQS);
    json = wire_strf("{\"id\":%d,%s}", id, members);
    c->kind[id] = kind;
    c->sent_ms[id] = fmt_now_ms();
    c->nsent++;
    wire_send(c->fd, json);
    free(json);
    return id;
}

static void load_take(load_set *set, load_conn *c, const char *body, size_t len)
{
    char ctx[32];
    cJSON *r;
    const cJSON *id;
    int n;

    snprintf(ctx, sizeof(ctx), "connection %d", c->index);
    r = parse_reply(body, len, ctx);
    id = cJSON_GetObjectItemCaseSensitive(r, "id");
    ck_assert_msg(cJSON_IsNumber(id), "connection %d: a frame without a usable id: %.300s",
                  c->index, body);
    n = (int)id->valuedouble;
    ck_assert_msg(n >= 0 && n < c->nsent && !c->answered[n],
                  "connection %d: a reply to id %d, which is not waiting for one: %.300s",
                  c->index, n, body);
    c->answered[n] = 1;
    c->nanswered++;
    if (fmt_now_ms() - c->sent_ms[n] > set->max_latency_ms)
        set->max_latency_ms = fmt_now_ms() - c->sent_ms[n];
    set->check(set, c, n, r, body);
    cJSON_Delete(r);
}

static void load_unanswered(const load_conn *c, char *out, size_t len)
{
    for (int i = 0; i < c->nsent; i++) {
        if (!c->answered[i]) {
            snprintf(out, len, "connection %d, id %d ('%c')", c->index, i, c->kind[i]);
            return;
        }
    }
    snprintf(out, len, "none");
}

/* Reads what is there, takes every whole frame; notes EOF. */
static void load_read(load_set *set, load_conn *c)
{
    ssize_t n;

    if (c->incap - c->inlen < 65536) {
        c->incap = c->incap * 2 + 65536;
        c->in = realloc(c->in, c->incap);
        ck_assert_ptr_nonnull(c->in);
    }
    n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen - 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        char first[96];

        load_unanswered(c, first, sizeof(first));
        ck_assert_msg(c->nanswered == c->nsent,
                      "connection %d closed with %d of %d requests unanswered (first: %s)",
                      c->index, c->nsent - c->nanswered, c->nsent, first);
        c->eof = 1;
        return;
    }
    c->inlen += (size_t)n;
    for (;;) {
        const unsigned char *h = (const unsigned char *)c->in;
        size_t len;
        char saved;

        if (c->inlen < 4)
            break;
        len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        if (c->inlen < 4 + len)
            break;
        saved = c->in[4 + len];
        c->in[4 + len] = '\0';
        load_take(set, c, c->in + 4, len);
        c->in[4 + len] = saved;
        memmove(c->in, c->in + 4 + len, c->inlen - 4 - len);
        c->inlen -= 4 + len;
    }
}

static int all_answered(const load_set *set)
{
    for (int i = 0; i < set->n; i++)
        if (set->conns[i].nanswered != set->conns[i].nsent)
            return 0;
    return 1;
}

static int all_answered_and_closed(const load_set *set)
{
    for (int i = 0; i < set->n; i++)
        if (!set->conns[i].eof)
            return 0;
    return all_answered(set);
}

/* Reads every connection until done(set), failing after timeout_ms. */
static void load_pump(load_set *set, load_done *done, int timeout_ms, const char *what)
{
    struct pollfd *pfd = calloc((size_t)set->n, sizeof(*pfd));
    int *idx = calloc((size_t)set->n, sizeof(*idx));
    int64_t end = fmt_now_ms() + timeout_ms;

    ck_assert(pfd != NULL && idx != NULL);
    while (!done(set)) {
        int64_t left = end - fmt_now_ms();
        int m = 0, waiting = 0;
        char first[96] = "none";

        for (int i = 0; i < set->n; i++) {
            const load_conn *c = &set->conns[i];

            waiting += c->nsent - c->nanswered;
            if (c->nsent != c->nanswered && strcmp(first, "none") == 0)
                load_unanswered(c, first, sizeof(first));
            if (!c->eof) {
                pfd[m] = (struct pollfd){c->fd, POLLIN, 0};
                idx[m++] = i;
            }
        }
        ck_assert_msg(left > 0 && m > 0, "%s: not done after %d ms; %d requests unanswered "
                      "(first: %s)", what, timeout_ms, waiting, first);
        if (poll(pfd, (nfds_t)m, (int)left) <= 0)
            continue;
        for (int k = 0; k < m; k++)
            if (pfd[k].revents != 0)
                load_read(set, &set->conns[idx[k]]);
    }
    free(pfd);
    free(idx);
}

static const cJSON *member(const cJSON *reply, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(reply, name);
}

static const char *error_code(const cJSON *reply)
{
    return wire_str(member(reply, "error"), "code");
}

/* ---- fixture ------------------------------------------------------------ */

static void servers_up(void)
{
    wire_pair_start(&redis, &daemon0, NULL, NULL);
    wire_store(daemon0.sock, STORED_JSON);
}

static void servers_down(void)
{
    wire_pair_stop(&redis, &daemon0);
}

/* ---- bad input ---------------------------------------------------------- */

/* The header of body, then its first `keep` bytes. */
static void write_truncated(int fd, const char *body, size_t keep)
{
    size_t len = strlen(body);
    unsigned char h[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8), (unsigned char)len};

    ck_assert_int_eq(fmt_raw_write(fd, h, 4), 0);
    ck_assert_int_eq(fmt_raw_write(fd, body, keep), 0);
}

/* A client that leaves in the middle of a frame costs the daemon nothing:
 * the frame is never dispatched, the connection is gone, others are served. */
START_TEST(test_truncated_frame_then_close_leaves_the_daemon_unharmed)
{
    static const char whole[] = "{\"op\":\"ping\",\"id\":\"whole\"}";
    static const char cut[] = "{\"op\":\"cache.set\",\"id\":\"cut\",\"execution\":"
                              "{\"id\":\"" STORED_ID "\",\"n\":0}}";
    int admin = wire_connect(daemon0.sock);
    cJSON *r;

    await_idle(admin);
    for (int variant = 0; variant < 5; variant++) {
        int fd = wire_connect(daemon0.sock);

        switch (variant) {
        case 0:     /* half a header */
            ck_assert_int_eq(fmt_raw_write(fd, "\0\0", 2), 0);
            break;
        case 1:     /* a header, no body */
            write_truncated(fd, cut, 0);
            break;
        case 2:     /* a header and half the body */
            write_truncated(fd, cut, sizeof(cut) / 2);
            break;
        case 3:     /* all but the last byte */
            write_truncated(fd, cut, sizeof(cut) - 2);
            break;
        case 4:     /* a whole frame is answered; the cut one after it is not */
            wire_send(fd, whole);
            write_truncated(fd, cut, sizeof(cut) / 2);
            r = wire_recv(fd, WIRE_REPLY_MS);
            wire_assert_ok(r, "\"whole\"");
            cJSON_Delete(r);
            break;
        }
        close(fd);
        /* Once the daemon let the connection go: the cut cache.set, had it
         * run, would have overwritten the stored execution. */
        await_idle(admin);
        assert_still_serving(daemon0.sock);
    }
    close(admin);
}
END_TEST

/* Member names are compared as decoded bytes, NUL and control characters
 * included, and any length of them is just an unknown member. */
START_TEST(test_odd_member_names_are_other_members)
{
    static const struct {
        const char *json, *code, *id;   /* code NULL: ok */
    } cases[] = {
        {"{\"op\\u0000\":\"nope\",\"op\":\"ping\",\"id\":1}", NULL, "1"},
        {"{\"id\":2,\"op\":\"ping\",\"id\\u0000\":\"x\"}", NULL, "2"},
        {"{\"op\":\"ping\",\"id\":3,\"a\":1,\"a\\u0000\":2,\"a\\u0000b\":3}", NULL, "3"},
        {"{\"op\":\"ping\",\"id\":4,\"\\u0001\\u001f\\u007f\":1}", NULL, "4"},
        {"{\"op\":\"ping\",\"id\":5,\"\":1}", NULL, "5"},
        {"{\"op\":\"lock.is_locked\",\"id\":6,\"key\\u0000\":\"k\"}", "bad_request", "6"},
        {"{\"op\":\"ping\",\"id\":7,\"k\x01\":1}", "bad_json", NULL},
        {"{\"op\":\"ping\",\"id\":8,\"k\x7f\":1}", NULL, "8"},
    };
    int fd = wire_connect(daemon0.sock);
    char *name = malloc(100001), *big;

    ck_assert_ptr_nonnull(name);
    memset(name, 'k', 100000);
    name[100000] = '\0';
    big = wire_strf("{\"op\":\"ping\",\"id\":\"big\",\"%s\":1}", name);
    wire_expect_ok(fd, big, "\"big\"");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].code == NULL)
            wire_expect_ok(fd, cases[i].json, cases[i].id);
        else
            wire_expect_error(fd, cases[i].json, cases[i].code, cases[i].id);
    }
    free(big);
    free(name);
    close(fd);
    assert_still_serving(daemon0.sock);
}
END_TEST

/* A fixed seed: a failure names the stream, and a rerun repeats it. */
#define RANDOM_SEED 0x6d6f6e6b6579ULL
#define RANDOM_STREAMS 400

static uint64_t rng_state;

static uint32_t rnd(void)
{
    uint64_t x = rng_state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

typedef struct stream {
    unsigned char buf[2048];
    size_t len;
    int frames;         /* whole frames with a sane header, or -1 */
} stream;

static void stream_put(stream *s, const void *p, size_t n)
{
    ck_assert_uint_le(s->len + n, sizeof(s->buf));
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void stream_frame(stream *s, const unsigned char *body, size_t n)
{
    unsigned char h[4] = {0, 0, (unsigned char)(n >> 8), (unsigned char)n};

    stream_put(s, h, 4);
    stream_put(s, body, n);
    s->frames++;
}

/* Requests to mutate: none can reach the stored execution, whatever bytes
 * change (no op of theirs is one flip away from cache.set with an
 * execution, or from an invalidation). */
static const char *const seeds[] = {
    "{\"op\":\"ping\",\"id\":1}",
    "{\"op\":\"ping\",\"id\":2,\"redis\":true}",
    "{\"op\":\"cache.get\",\"id\":\"g\",\"execution_id\":\"load-fuzz\"}",
    "{\"op\":\"cache.get_many\",\"id\":3,\"execution_ids\":[\"a\",\"b\"]}",
    "{\"op\":\"lock.is_locked\",\"id\":4,\"key\":\"load-fuzz\"}",
    "{\"op\":\"hello\",\"id\":5,\"client_name\":\"fuzz\"}",
    "{\"op\":\"stats\",\"id\":6}",
    "{\"op\":\"wake.signal\",\"id\":7,\"execution_id\":\"e\",\"channel\":\"load-fuzz\"}",
};

/* Raw random bytes (mostly a header far above max_frame_bytes, or an
 * incomplete one), random bodies behind sane headers, or requests with a
 * few bytes changed and perhaps cut short. */
static void random_stream(stream *s, int *mode)
{
    unsigned char body[512];

    s->len = 0;
    s->frames = 0;
    *mode = (int)(rnd() % 3);
    if (*mode == 0) {
        size_t n = 1 + rnd() % 64;

        for (size_t i = 0; i < n; i++)
            body[i] = (unsigned char)rnd();
        stream_put(s, body, n);
        s->frames = -1;
        return;
    }
    for (int f = 0, frames = 1 + (int)(rnd() % 3); f < frames; f++) {
        size_t n;

        if (*mode == 1) {
            n = 1 + rnd() % 200;
            for (size_t i = 0; i < n; i++)
                body[i] = (unsigned char)rnd();
        } else {
            const char *seed = seeds[rnd() % (sizeof(seeds) / sizeof(seeds[0]))];

            n = strlen(seed);
            memcpy(body, seed, n);
            for (int flips = 1 + (int)(rnd() % 4); flips > 0; flips--)
                body[rnd() % n] = (unsigned char)rnd();
            if (rnd() % 4 == 0)
                n = 1 + rnd() % n;
        }
        stream_frame(s, body, n);
    }
}

START_TEST(test_random_bytes_leave_the_daemon_serving)
{
    int admin = wire_connect(daemon0.sock);
    stream s;

    rng_state = RANDOM_SEED;
    for (int i = 0; i < RANDOM_STREAMS; i++) {
        char what[96];
        int mode, fd = wire_connect(daemon0.sock);

        random_stream(&s, &mode);
        snprintf(what, sizeof(what), "seed %#llx, stream %d (mode %d, %zu bytes)",
                 (unsigned long long)RANDOM_SEED, i, mode, s.len);
        ck_assert_int_eq(fmt_raw_write(fd, s.buf, s.len), 0);
        /* Each whole frame gets exactly one reply, a strict JSON object
         * with "ok"; then the daemon closes when the client does. */
        for (int f = 0; f < s.frames; f++) {
            cJSON *r = wire_recv(fd, WIRE_REPLY_MS);

            ck_assert_msg(cJSON_IsBool(member(r, "ok")), "%s: frame %d: a reply without ok",
                          what, f);
            cJSON_Delete(r);
        }
        if (s.frames >= 0) {
            expect_eof_after_half_close(fd, what);
        } else {
            ck_assert_int_eq(shutdown(fd, SHUT_WR), 0);
            ck_assert_msg(fmt_raw_drain(fd, WIRE_REPLY_MS, NULL), "%s: no EOF", what);
        }
        close(fd);
        assert_still_serving(daemon0.sock);
    }
    await_idle(admin);
    close(admin);
}
END_TEST

/* ---- workers that leave ------------------------------------------------- */

#define GONE_CONNS 50

/* Counts keyspace events "set" and "del" on the lock keys of load-gone-*,
 * until there were want of each, or the deadline. */
static void await_grants_released(redisContext *sub, int want)
{
    int64_t end = fmt_now_ms() + SETTLE_MS;
    int sets = 0, dels = 0;

    while (sets < want || dels < want) {
        int64_t left = end - fmt_now_ms();
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        redisReply *m = NULL;

        ck_assert_msg(left > 0, "%d late grants seen, %d released, of %d", sets, dels, want);
        redisSetTimeout(sub, tv);
        ck_assert_msg(redisGetReply(sub, (void **)&m) == REDIS_OK && m != NULL,
                      "keyspace events: %d late grants seen, %d released, of %d (%s)", sets,
                      dels, want, sub->errstr);
        if (m->type == REDIS_REPLY_ARRAY && m->elements == 4) {
            const char *ev = m->element[3]->str;

            sets += strcmp(ev, "set") == 0;
            dels += strcmp(ev, "del") == 0;
            ck_assert_msg(strcmp(ev, "expired") != 0, "a late grant expired, unreleased");
        }
        freeReplyObject(m);
    }
}

static int no_gone_locks(void *arg)
{
    redisReply *r = fmt_redis_cmd(arg, "KEYS fm:lock:load-gone-*");
    int none = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 0;

    freeReplyObject(r);
    return none;
}

/* With Redis stopped, 50 workers each leave five Redis requests (one an
 * acquire) in flight. Their connections and requests are gone at once; the
 * replies Redis gives later are dropped, and the lock each acquire got late
 * is released, not left to its TTL. */
START_TEST(test_disconnect_with_requests_in_flight)
{
    static const char *const notify[] = {"--notify-keyspace-events", "K$g", NULL};
    fmt_redis r;
    fmt_daemon d;
    redisContext *sub, *check;
    redisReply *rr;
    int admin, fds[GONE_CONNS];

    wire_pair_start(&r, &d, notify, NULL);
    admin = wire_connect(d.sock);
    wire_cache_set(admin, STORED_JSON);
    await_idle(admin);
    sub = fmt_redis_connect(&r);
    check = fmt_redis_connect(&r);
    ck_assert(sub != NULL && check != NULL);
    rr = fmt_redis_cmd(sub, "PSUBSCRIBE __keyspace@0__:fm:lock:load-gone-*");
    ck_assert_ptr_nonnull(rr);
    freeReplyObject(rr);

    ck_assert_int_eq(kill(r.pid, SIGSTOP), 0);
    for (int i = 0; i < GONE_CONNS; i++) {
        char *acquire = wire_strf("{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"load-gone-%d\","
                                  "\"ttl\":60000,\"max_retries\":0}", i);
        char *set = wire_strf("{\"op\":\"cache.set\",\"id\":2,\"execution\":"
                              "{\"id\":\"load-gone-%d\"}}", i);
        cJSON *reply;

        fds[i] = wire_connect(d.sock);
        wire_send(fds[i], acquire);
        wire_send(fds[i], set);
        wire_send(fds[i], "{\"op\":\"cache.get\",\"fresh\":true,\"id\":3,\"execution_id\":\"" STORED_ID "\"}");
        wire_send(fds[i], "{\"op\":\"ping\",\"id\":4,\"redis\":true}");
        wire_send(fds[i], "{\"op\":\"wake.signal\",\"id\":5,\"execution_id\":\"load-gone\"}");
        /* Answered at once: the five before it were read and sent on. */
        wire_send(fds[i], "{\"op\":\"ping\",\"id\":6}");
        reply = wire_recv(fds[i], WIRE_REPLY_MS);
        wire_assert_ok(reply, "6");
        cJSON_Delete(reply);
        free(acquire);
        free(set);
    }
    for (int i = 0; i < GONE_CONNS; i++)
        close(fds[i]);
    /* Gone while Redis still holds every one of their commands. */
    await_idle(admin);

    ck_assert_int_eq(kill(r.pid, SIGCONT), 0);
    await_grants_released(sub, GONE_CONNS);
    ck_assert_msg(fmt_wait_until(no_gone_locks, check, SETTLE_MS), "a late grant kept its lock");
    await_idle(admin);
    wire_expect_ok(admin, "{\"op\":\"ping\",\"id\":\"up\",\"redis\":true}", "\"up\"");
    close(admin);
    assert_still_serving(d.sock);
    redisFree(sub);
    redisFree(check);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- a slow consumer ---------------------------------------------------- */

#define SLOW_BATCH 1000
#define SLOW_MAX_BATCHES 100

/* A wake.signal_many of SLOW_BATCH ids of about 100 bytes each. */
static char *slow_batch_request(int batch)
{
    size_t cap = SLOW_BATCH * 128 + 256, n;
    char *s = malloc(cap);

    ck_assert_ptr_nonnull(s);
    n = (size_t)snprintf(s, cap, "{\"op\":\"wake.signal_many\",\"id\":%d,\"channel\":"
                         "\"load-slow\",\"execution_ids\":[", batch);
    for (int i = 0; i < SLOW_BATCH; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s\"load-slow-%06d-%06d-%080d\"", i ? "," : "",
                              batch, i, 0);
    snprintf(s + n, cap - n, "]}");
    return s;
}

/* A subscriber that never reads is cut off past max_output_bytes, while
 * the worker that publishes and another that pings are answered promptly
 * all along. */
START_TEST(test_slow_consumer_is_disconnected_and_delays_no_one)
{
    static const char *const extra[] = {"--max_output_bytes", "65536", NULL};
    fmt_redis r;
    fmt_daemon d;
    int slow, signaler, pinger, batch, prompt;
    int64_t worst = 0;

    wire_pair_start(&r, &d, NULL, extra);
    prompt = PROMPT_MS * wire_slowdown(&d);
    slow = wire_connect(d.sock);
    wire_expect_ok(slow, "{\"op\":\"wake.subscribe\",\"id\":1,\"channel\":\"load-slow\"}", "1");
    signaler = wire_connect(d.sock);
    pinger = wire_connect(d.sock);
    await_stat(pinger, "clients", 3);

    for (batch = 0; batch < SLOW_MAX_BATCHES; batch++) {
        char *req = slow_batch_request(batch), *id = wire_strf("%d", batch);
        int64_t start;
        cJSON *reply, *stats;
        int clients;

        ck_assert_int_eq(fmt_raw_send(signaler, req, strlen(req)), 0);
        start = fmt_now_ms();
        reply = call_on(&d, pinger, "{\"op\":\"ping\",\"id\":\"p\"}");
        if (fmt_now_ms() - start > worst)
            worst = fmt_now_ms() - start;
        wire_assert_ok(reply, "\"p\"");
        cJSON_Delete(reply);
        reply = recv_on(&d, signaler, "wake.signal_many");
        wire_assert_ok(reply, id);
        ck_assert_int_eq((int)cJSON_GetNumberValue(member(reply, "signaled")), SLOW_BATCH);
        cJSON_Delete(reply);
        free(req);
        free(id);
        /* The fan-out of the batch may still be under way: ask after it. */
        stats = call_on(&d, pinger, "{\"op\":\"stats\"}");
        clients = (int)cJSON_GetNumberValue(member(stats, "clients"));
        cJSON_Delete(stats);
        if (clients == 2)
            break;
    }
    ck_assert_msg(batch < SLOW_MAX_BATCHES, "the slow consumer is still connected after %d "
                  "wakes", SLOW_MAX_BATCHES * SLOW_BATCH);
    ck_assert_msg(worst <= prompt, "a ping took %lld ms while a consumer was slow",
                  (long long)worst);
    ck_assert_msg(fmt_raw_drain(slow, SETTLE_MS, NULL),
                  "the slow consumer's socket did not end");
    wire_expect_ok(signaler, "{\"op\":\"ping\",\"id\":\"s\"}", "\"s\"");
    close(slow);
    close(signaler);
    close(pinger);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- a socket file at start --------------------------------------------- */

START_TEST(test_start_refused_while_another_daemon_answers)
{
    fmt_proc p;
    struct stat st;
    int status;

    run_daemon_on(&p, daemon0.sock);
    status = fmt_proc_wait(&p, SETTLE_MS);
    ck_assert_msg(status > 0 && status < 128, "a second daemon on a live socket: status %d",
                  status);
    ck_assert_msg(strstr(p.text[2], "another daemon is answering") != NULL,
                  "no clear message: %s", p.text[2]);
    fmt_proc_free(&p);
    ck_assert_int_eq(stat(daemon0.sock, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    assert_still_serving(daemon0.sock);
}
END_TEST

/* A socket file that no one answers on: bound once, closed, never removed. */
static void leave_stale_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 1), 0);
    close(fd);
}

static int serves_a_ping(void *sock)
{
    return wire_ping_says(sock, "\"ok\":true");
}

START_TEST(test_stale_socket_is_removed_and_bound)
{
    char dir[64], path[128];
    fmt_proc p;
    struct stat st;

    private_path(dir, sizeof(dir), path, sizeof(path));
    leave_stale_socket(path);
    ck_assert_int_lt(fmt_raw_connect(path), 0);
    run_daemon_on(&p, path);
    ck_assert_msg(fmt_proc_expect(&p, 2, "removed stale socket", SETTLE_MS),
                  "not logged: %s", p.text[2]);
    ck_assert_msg(fmt_wait_until(serves_a_ping, path, SETTLE_MS), "not serving on %s", path);
    ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
    ck_assert_int_eq(fmt_proc_wait(&p, SETTLE_MS), 0);
    fmt_proc_free(&p);
    ck_assert_msg(lstat(path, &st) != 0 && errno == ENOENT, "socket file left at exit");
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

START_TEST(test_regular_file_at_the_socket_path_is_left_alone)
{
    static const char content[] = "not a socket: keep me\n";
    char dir[64], path[128], back[sizeof(content)];
    fmt_proc p;
    FILE *f;
    int status;

    private_path(dir, sizeof(dir), path, sizeof(path));
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
    run_daemon_on(&p, path);
    status = fmt_proc_wait(&p, SETTLE_MS);
    ck_assert_msg(status > 0 && status < 128, "a regular file at the path: status %d", status);
    ck_assert_msg(strstr(p.text[2], path) != NULL && strstr(p.text[2], "not a socket") != NULL,
                  "no clear message: %s", p.text[2]);
    fmt_proc_free(&p);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(back, sizeof(back), f));
    fclose(f);
    ck_assert_str_eq(back, content);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* ---- SIGTERM and SIGINT under load -------------------------------------- */

#define DRAIN_WAITERS 15
#define DRAIN_LOADED 34
#define DRAIN_CONNS (DRAIN_WAITERS + DRAIN_LOADED + 1)  /* the last one: busy */
#define DRAIN_TIMEOUT_MS 3000

typedef struct drain {
    int signaled;
    int64_t t0;         /* when the signal was sent */
    int prompt_ms;
    int waiters_told;
} drain;

static void drain_check(load_set *set, load_conn *c, int id, const cJSON *reply,
                        const char *text)
{
    drain *st = set->arg;
    char kind = c->kind[id];
    const char *code = error_code(reply);
    int ok = cJSON_IsTrue(member(reply, "ok"));

    switch (kind) {
    case 'w':       /* an acquire waiting on a held lock */
        ck_assert_msg(st->signaled, "connection %d: the waiting acquire was answered: %s",
                      c->index, text);
        ck_assert_msg(code && strcmp(code, "shutting_down") == 0,
                      "connection %d: waiting acquire: %s", c->index, text);
        ck_assert_msg(fmt_now_ms() - st->t0 <= st->prompt_ms,
                      "connection %d: the waiting acquire was told after %lld ms", c->index,
                      (long long)(fmt_now_ms() - st->t0));
        st->waiters_told++;
        break;
    case 'p':       /* proves the requests before it were read */
    case 'l':       /* sent after the signal */
        ck_assert_msg(kind == 'p' ? ok : code && strcmp(code, "shutting_down") == 0,
                      "connection %d: '%c': %s", c->index, kind, text);
        break;
    default:        /* sent before the signal: answered, or refused by it */
        ck_assert_msg(ok || (code && (strcmp(code, "shutting_down") == 0 ||
                                      strcmp(code, "timeout") == 0)),
                      "connection %d: '%c': %s", c->index, kind, text);
        if (ok && kind == 'a')
            ck_assert_msg(cJSON_IsString(member(reply, "token")),
                          "connection %d: a free lock was not taken: %s", c->index, text);
        break;
    }
}

static int waiters_confirmed(const load_set *set)
{
    for (int i = 0; i < DRAIN_WAITERS; i++)
        if (set->conns[i].nanswered < 1)
            return 0;
    return set->conns[DRAIN_CONNS - 1].nanswered >= 1;
}

static int waiters_told(const load_set *set)
{
    return ((const drain *)set->arg)->waiters_told == DRAIN_WAITERS;
}

/* Each connection's last request has its reply. */
static int last_answered(const load_set *set)
{
    for (int i = 0; i < set->n; i++)
        if (!set->conns[i].answered[set->conns[i].nsent - 1])
            return 0;
    return 1;
}

static void send_load(load_conn *c, int n)
{
    for (int k = 0; k < n; k++) {
        char *m;

        switch (k % 5) {
        case 0:
            m = wire_strf("\"op\":\"cache.set\",\"execution\":{\"id\":\"load-drain-%d-%d\"}",
                          c->index, k);
            load_send(c, 's', m);
            break;
        case 1:
            m = wire_strf("\"op\":\"cache.get\",\"execution_id\":\"load-drain-%d-%d\"",
                          c->index, k - 1);
            load_send(c, 'g', m);
            break;
        case 2:
            m = wire_strf("\"op\":\"lock.acquire\",\"key\":\"load-drain-%d-%d\",\"ttl\":60000,"
                          "\"max_retries\":0", c->index, k);
            load_send(c, 'a', m);
            break;
        case 3:
            m = wire_strf("\"op\":\"ping\",\"redis\":true");
            load_send(c, 'P', m);
            break;
        default:
            m = wire_strf("\"op\":\"lock.is_locked\",\"key\":\"load-drain-%d-%d\"",
                          c->index, k - 2);
            load_send(c, 'i', m);
            break;
        }
        free(m);
    }
}

static int socket_gone(void *path)
{
    struct stat st;

    return lstat(path, &st) != 0 && errno == ENOENT;
}

/* 15 acquires wait on a held lock, 34 workers have ten requests each
 * going, and one request sits at a stopped Redis when the signal comes.
 * The waiters are told shutting_down at once, the socket file goes, new
 * requests on open connections are refused with shutting_down, everything
 * sent is answered exactly once, the daemon exits 0 within
 * request_timeout_ms + 1 s, and no lock of its is left in Redis. */
static void drain_under_load(int sig)
{
    static const char *const extra[] = {"--request_timeout_ms", "3000", NULL};
    fmt_redis r;
    fmt_daemon d;
    load_set set;
    drain st = {0, 0, 0, 0};
    int holder, status, bound, slow;
    load_conn *busy;
    redisContext *rc;
    redisReply *keys;

    wire_pair_start(&r, &d, NULL, extra);
    slow = wire_slowdown(&d);
    bound = (DRAIN_TIMEOUT_MS + 1000) * slow;
    st.prompt_ms = 1000 * slow;
    holder = wire_connect(d.sock);
    wire_expect_ok(holder, "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"load-drain-held\","
                           "\"ttl\":60000}", "1");
    load_open(&set, DRAIN_CONNS, d.sock, drain_check, &st);
    busy = &set.conns[DRAIN_CONNS - 1];
    for (int i = 0; i < DRAIN_WAITERS; i++) {
        load_send(&set.conns[i], 'w', "\"op\":\"lock.acquire\",\"key\":\"load-drain-held\","
                                      "\"retry_delay\":20,\"max_retries\":100000");
        load_send(&set.conns[i], 'p', "\"op\":\"ping\"");
    }
    for (int i = DRAIN_WAITERS; i < DRAIN_WAITERS + DRAIN_LOADED; i++)
        send_load(&set.conns[i], 10);
    ck_assert_int_eq(kill(r.pid, SIGSTOP), 0);
    load_send(busy, 'b', "\"op\":\"cache.get\",\"execution_id\":\"load-drain-busy\"");
    load_send(busy, 'p', "\"op\":\"ping\"");
    load_pump(&set, waiters_confirmed, WIRE_REPLY_MS, "the waiters' pings");

    st.t0 = fmt_now_ms();
    st.signaled = 1;
    ck_assert_int_eq(kill(d.pid, sig), 0);
    load_pump(&set, waiters_told, st.prompt_ms + 1000, "the waiting acquires");
    ck_assert_msg(fmt_wait_until(socket_gone, d.sock, st.prompt_ms),
                  "the socket file is still there while draining");
    ck_assert_msg(fmt_raw_connect(d.sock) < 0, "a new connection was accepted while draining");
    for (int i = 0; i < DRAIN_CONNS; i++)
        load_send(&set.conns[i], 'l', "\"op\":\"ping\"");
    load_pump(&set, last_answered, st.prompt_ms, "requests after the signal");
    ck_assert_msg(!busy->answered[0], "the request at the stopped Redis was answered");

    ck_assert_int_eq(kill(r.pid, SIGCONT), 0);
    load_pump(&set, all_answered_and_closed, bound, "the drain");
    /* 100 ms for this process to see the exit. */
    status = fmt_daemon_wait(&d, (int)(st.t0 + bound + 100 - fmt_now_ms()));
    ck_assert_msg(status == 0, "exit status %d after signal %d, %lld ms after it", status, sig,
                  (long long)(fmt_now_ms() - st.t0));
    ck_assert(socket_gone(d.sock));
    /* The holder's lock went with the clean shutdown, and so did any lock
     * Redis granted an acquire after it was told shutting_down. */
    rc = fmt_redis_connect(&r);
    ck_assert_ptr_nonnull(rc);
    keys = fmt_redis_cmd(rc, "KEYS fm:lock:load-drain-*");
    ck_assert_ptr_nonnull(keys);
    ck_assert_msg(keys->type == REDIS_REPLY_ARRAY && keys->elements == 0,
                  "%zu locks left in Redis after a clean shutdown, e.g. %s", keys->elements,
                  keys->elements > 0 ? keys->element[0]->str : "");
    freeReplyObject(keys);
    redisFree(rc);
    load_close(&set);
    close(holder);
    wire_pair_stop(&r, &d);
}

START_TEST(test_sigterm_during_load_drains_and_exits_0)
{
    drain_under_load(SIGTERM);
}
END_TEST

START_TEST(test_sigint_during_load_drains_and_exits_0)
{
    drain_under_load(SIGINT);
}
END_TEST

/* ---- 300 concurrent clients --------------------------------------------- */

#define MANY_CONNS 300
#define MANY_ROUNDS 5
#define MANY_EACH 5         /* cache.set, lock.acquire (then release), cache.get */
#define MANY_DEADLINE_MS 5000   /* request_timeout_ms, the contract's bound */

static char *many_execution(int round, int conn, int k)
{
    return wire_strf("{\"id\":\"load-r%d-c%d-%d\",\"v\":%d,\"n\":12345678901234567890}",
                     round, conn, k, conn * 100 + k);
}

/* Ids 0-4 cache.set, 5-9 lock.acquire (each released once granted: ids
 * 20-24), 10-14 cache.get of the stored execution, then pings, a wake and
 * an is_locked: 20 pipelined requests, 25 in all. */
static void many_send(load_conn *c, int round)
{
    for (int k = 0; k < MANY_EACH; k++) {
        char *exec = many_execution(round, c->index, k);
        char *m = wire_strf("\"op\":\"cache.set\",\"execution\":%s", exec);

        load_send(c, 's', m);
        free(m);
        free(exec);
    }
    for (int k = 0; k < MANY_EACH; k++) {
        char *m = wire_strf("\"op\":\"lock.acquire\",\"key\":\"load-r%d-l%d-%d\","
                            "\"ttl\":60000,\"max_retries\":0", round, c->index, k);

        load_send(c, 'a', m);
        free(m);
    }
    for (int k = 0; k < MANY_EACH; k++)
        load_send(c, 'g', "\"op\":\"cache.get\",\"execution_id\":\"" STORED_ID "\"");
    load_send(c, 'p', "\"op\":\"ping\"");
    load_send(c, 'p', "\"op\":\"hello\",\"client_name\":\"load\"");
    load_send(c, 'p', "\"op\":\"ping\",\"redis\":true");
    load_send(c, 'w', "\"op\":\"wake.signal\",\"execution_id\":\"load-many\"");
    load_send(c, 'i', "\"op\":\"lock.is_locked\",\"key\":\"load-none\"");
}

static void many_check(load_set *set, load_conn *c, int id, const cJSON *reply,
                       const char *text)
{
    int round = *(const int *)set->arg;
    char kind = c->kind[id];
    char *m;

    ck_assert_msg(cJSON_IsTrue(member(reply, "ok")), "connection %d: '%c': %s", c->index,
                  kind, text);
    switch (kind) {
    case 'a':
        ck_assert_msg(wire_str(reply, "token") != NULL &&
                      cJSON_IsNumber(member(reply, "fence")),
                      "connection %d: a free lock was not taken: %s", c->index, text);
        m = wire_strf("\"op\":\"lock.release\",\"key\":\"load-r%d-l%d-%d\",\"token\":\"%s\"",
                      round, c->index, id - MANY_EACH, wire_str(reply, "token"));
        load_send(c, 'r', m);
        free(m);
        break;
    case 'r':
        ck_assert_msg(cJSON_IsTrue(member(reply, "released")), "connection %d: %s", c->index,
                      text);
        break;
    case 'g':
        ck_assert_msg(strstr(text, "\"execution\":" STORED_JSON) != NULL,
                      "connection %d: %s", c->index, text);
        break;
    case 'w':
        ck_assert_msg(cJSON_IsNumber(member(reply, "receivers")), "connection %d: %s",
                      c->index, text);
        break;
    case 'i':
        ck_assert_msg(cJSON_IsFalse(member(reply, "locked")), "connection %d: %s", c->index,
                      text);
        break;
    default:
        break;
    }
}

/* What the round left in Redis: every execution with its exact text, and
 * no lock (each was released). */
static void many_check_redis(redisContext *rc, int round)
{
    redisReply *r;

    for (int i = 0; i < MANY_CONNS; i++)
        for (int k = 0; k < MANY_EACH; k++)
            redisAppendCommand(rc, "GET fm:exec:load-r%d-c%d-%d", round, i, k);
    for (int i = 0; i < MANY_CONNS; i++) {
        for (int k = 0; k < MANY_EACH; k++) {
            char *want = many_execution(round, i, k);

            ck_assert_int_eq(redisGetReply(rc, (void **)&r), REDIS_OK);
            ck_assert_msg(r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0,
                          "round %d: fm:exec:load-r%d-c%d-%d holds %s, not %s", round, round,
                          i, k, r->type == REDIS_REPLY_STRING ? r->str : "nothing", want);
            freeReplyObject(r);
            free(want);
        }
    }
    r = fmt_redis_cmd(rc, "KEYS fm:lock:load-r%d-*", round);
    ck_assert_ptr_nonnull(r);
    ck_assert_msg(r->type == REDIS_REPLY_ARRAY && r->elements == 0,
                  "round %d: %zu locks left behind", round, r->elements);
    freeReplyObject(r);
}

/* One round: 300 connections at once, each pipelining its requests; every
 * request gets exactly one reply, with its id, ok, within the deadline. */
static void many_round(const fmt_daemon *d, redisContext *rc, int round)
{
    load_set set;
    int deadline = MANY_DEADLINE_MS * wire_slowdown(d);

    load_open(&set, MANY_CONNS, d->sock, many_check, &round);
    for (int i = 0; i < MANY_CONNS; i++)
        many_send(&set.conns[i], round);
    load_pump(&set, all_answered, 2 * deadline, "300 clients");
    ck_assert_msg(set.max_latency_ms <= deadline, "round %d: a reply took %lld ms", round,
                  (long long)set.max_latency_ms);
    for (int i = 0; i < MANY_CONNS; i++)
        ck_assert_int_eq(set.conns[i].nsent, 4 * MANY_EACH + 5);
    load_close(&set);
    many_check_redis(rc, round);
}

/* The same round five times: the daemon's RSS after the fifth is not far
 * above the second's (the first warms the allocator), and under 64 MiB. */
START_TEST(test_300_concurrent_clients_with_bounded_memory)
{
    fmt_redis r;
    fmt_daemon d;
    redisContext *rc;
    long rss[MANY_ROUNDS];
    int admin;

    wire_pair_start(&r, &d, NULL, NULL);
    rc = fmt_redis_connect(&r);
    ck_assert_ptr_nonnull(rc);
    admin = wire_connect(d.sock);
    wire_cache_set(admin, STORED_JSON);
    for (int round = 0; round < MANY_ROUNDS; round++) {
        many_round(&d, rc, round);
        await_idle(admin);
        rss[round] = wire_rss_kib(d.pid);
    }
    if (wire_native_daemon(d.pid)) {
        long last = rss[MANY_ROUNDS - 1];

        ck_assert_msg(last <= rss[1] + RSS_SLACK_KIB && last <= RSS_LIMIT_KIB,
                      "RSS after each round (KiB): %ld %ld %ld %ld %ld", rss[0], rss[1], rss[2],
                      rss[3], rss[4]);
    }
    close(admin);
    redisFree(rc);
    wire_pair_stop(&r, &d);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

/* shared: with the fixture's servers; otherwise each test starts its own. */
static TCase *tcase(Suite *s, const char *name, int shared)
{
    return fmt_tcase(s, name, shared ? servers_up : NULL, shared ? servers_down : NULL,
                     TCASE_TIMEOUT);
}

Suite *fm_suite_load(void)
{
    Suite *s = suite_create("load");
    TCase *tc;

    tc = tcase(s, "input", 1);
    tcase_add_test(tc, test_truncated_frame_then_close_leaves_the_daemon_unharmed);
    tcase_add_test(tc, test_odd_member_names_are_other_members);
    tcase_add_test(tc, test_random_bytes_leave_the_daemon_serving);

    tc = tcase(s, "start", 1);
    tcase_add_test(tc, test_start_refused_while_another_daemon_answers);
    tcase_add_test(tc, test_stale_socket_is_removed_and_bound);
    tcase_add_test(tc, test_regular_file_at_the_socket_path_is_left_alone);

    tc = tcase(s, "workers", 0);
    tcase_add_test(tc, test_disconnect_with_requests_in_flight);
    tcase_add_test(tc, test_slow_consumer_is_disconnected_and_delays_no_one);

    tc = tcase(s, "signals", 0);
    tcase_add_test(tc, test_sigterm_during_load_drains_and_exits_0);
    tcase_add_test(tc, test_sigint_during_load_drains_and_exits_0);

    tc = tcase(s, "many", 0);
    tcase_add_test(tc, test_300_concurrent_clients_with_bounded_memory);
    return s;
}
