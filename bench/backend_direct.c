/* backend_direct.c -- the direct path: hiredis, one synchronous
 * redisContext per thread (on the Unix socket; over TCP for the TLS rows),
 * sending for each operation exactly the Redis commands fmredisd sends for
 * it (docs/PROTOCOL.md §12): the same scripts by EVALSHA, the same keys
 * (fence counter included, computed by the daemon's own fence.c), the same
 * wake payload. What it does not do is what only the daemon does: framing,
 * JSON, validation of stored values. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "bench.h"
#include "fence.h"

#define TOKEN_HEX 32                /* as daemon/token.c: 128 random bits */
#define RKEY_MAX (sizeof(BENCH_LOCK_PREFIX) + BENCH_KEY_MAX)

typedef struct rconn {
    bench_conn base;
    redisContext *rc;
    redisReply *last;               /* what cache_get / get_many point into */
    bench_hit *hits;
    const char **argv;              /* MGET's */
    size_t *lens;
    char *keys;
    size_t cap;                     /* of hits, argv, lens; keys: cap * RKEY_MAX */
    unsigned char pool[512];        /* randomness for tokens, like the daemon's */
    size_t pool_left;
} rconn;

static rconn *R(bench_conn *c)
{
    return (rconn *)c;
}

/* Runs one command. NULL (conn->err set) on an I/O error or an error reply. */
static redisReply *command(bench_conn *conn, int argc, const char **argv, const size_t *lens)
{
    redisContext *rc = R(conn)->rc;
    redisReply *reply = redisCommandArgv(rc, argc, argv, lens);

    if (reply == NULL) {
        bench_fail(conn->err, sizeof(conn->err), "%s: %s", argv[0], rc->errstr);
        return NULL;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        bench_fail(conn->err, sizeof(conn->err), "%s: %s", argv[0], reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

static int unexpected(bench_conn *conn, const char *what, redisReply *reply)
{
    bench_fail(conn->err, sizeof(conn->err), "%s: unexpected reply (type %d)", what,
               reply->type);
    freeReplyObject(reply);
    return -1;
}

static void drop_last(rconn *r)
{
    if (r->last != NULL)
        freeReplyObject(r->last);
    r->last = NULL;
}

static bench_conn *r_connect(const bench_env *env, char *err, size_t errlen)
{
    struct timeval tv = {10, 0};
    rconn *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        bench_fail(err, errlen, "out of memory");
        return NULL;
    }
    r->base.env = env;
    /* hiredis sets TCP_NODELAY, as the daemon's link does. */
    if (env->redis_port > 0)
        r->rc = redisConnectWithTimeout("127.0.0.1", env->redis_port, tv);
    else
        r->rc = redisConnectUnixWithTimeout(env->redis_sock, tv);
    if (r->rc == NULL || r->rc->err || redisSetTimeout(r->rc, tv) != REDIS_OK) {
        if (env->redis_port > 0)
            bench_fail(err, errlen, "connecting to Redis at 127.0.0.1:%d: %s", env->redis_port,
                       r->rc ? r->rc->errstr : "out of memory");
        else
            bench_fail(err, errlen, "connecting to Redis at %s: %s", env->redis_sock,
                       r->rc ? r->rc->errstr : "out of memory");
        if (r->rc != NULL)
            redisFree(r->rc);
        free(r);
        return NULL;
    }
    return &r->base;
}

static void r_close(bench_conn *conn)
{
    rconn *r = R(conn);

    if (r == NULL)
        return;
    drop_last(r);
    free(r->hits);
    free(r->argv);
    free(r->lens);
    free(r->keys);
    redisFree(r->rc);
    free(r);
}

/* Keys and ids come from BENCH_KEY_MAX buffers: out holds RKEY_MAX bytes. */
static size_t prefixed(const char *prefix, const char *key, char *out)
{
    size_t p = strlen(prefix), k = strlen(key);

    memcpy(out, prefix, p);
    memcpy(out + p, key, k + 1);
    return p + k;
}

/* ---- locks ---- */

static int new_token(rconn *r, char out[TOKEN_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p;

    if (r->pool_left < TOKEN_HEX / 2) {
        if (getrandom(r->pool, sizeof(r->pool), 0) != (ssize_t)sizeof(r->pool))
            return bench_fail(r->base.err, sizeof(r->base.err), "getrandom failed");
        r->pool_left = sizeof(r->pool);
    }
    p = r->pool + sizeof(r->pool) - r->pool_left;
    for (int i = 0; i < TOKEN_HEX / 2; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[TOKEN_HEX] = '\0';
    r->pool_left -= TOKEN_HEX / 2;
    return 0;
}

/* EVALSHA <acquire> 2 <lock key> <fence key> <token> <ttl> */
static int r_lock_acquire(bench_conn *conn, const char *key, fm_lock *out)
{
    char rkey[RKEY_MAX], fkey[FM_FENCE_KEY_MAX + 1], ttl[24];
    size_t rlen = prefixed(BENCH_LOCK_PREFIX, key, rkey), flen;
    redisReply *reply;

    memset(out, 0, sizeof(*out));
    flen = fm_fence_key(conn->env->fence, BENCH_LOCK_PREFIX, rkey, rlen, fkey);
    if (flen == 0)
        return bench_fail(conn->err, sizeof(conn->err), "no fence key for %s", rkey);
    if (new_token(R(conn), out->token) != 0)
        return -1;
    out->token_len = TOKEN_HEX;
    snprintf(ttl, sizeof(ttl), "%d", BENCH_LOCK_TTL_MS);
    reply = command(conn, 7,
                    (const char *[]){"EVALSHA", conn->env->sha_acquire, "2", rkey, fkey,
                                     out->token, ttl},
                    (size_t[]){7, 40, 1, rlen, flen, TOKEN_HEX, strlen(ttl)});
    if (reply == NULL)
        return -1;
    if (reply->type == REDIS_REPLY_INTEGER) {
        out->acquired = 1;
        out->fence = reply->integer;
    } else if (reply->type != REDIS_REPLY_NIL) {
        return unexpected(conn, "acquire script", reply);
    }
    freeReplyObject(reply);
    return 0;
}

/* EVALSHA <release> 1 <lock key> <token> <release channel> */
static int r_lock_release(bench_conn *conn, const char *key, const char *token, int *released)
{
    char rkey[RKEY_MAX];
    size_t rlen = prefixed(BENCH_LOCK_PREFIX, key, rkey);
    redisReply *reply;

    reply = command(conn, 6,
                    (const char *[]){"EVALSHA", conn->env->sha_release, "1", rkey, token,
                                     BENCH_RELEASE_CHANNEL},
                    (size_t[]){7, 40, 1, rlen, strlen(token), strlen(BENCH_RELEASE_CHANNEL)});
    if (reply == NULL)
        return -1;
    if (reply->type != REDIS_REPLY_INTEGER)
        return unexpected(conn, "release script", reply);
    *released = reply->integer == 1;
    freeReplyObject(reply);
    return 0;
}

int bench_direct_del_lock(bench_conn *conn, const char *key)
{
    char rkey[RKEY_MAX];
    size_t rlen = prefixed(BENCH_LOCK_PREFIX, key, rkey);
    redisReply *reply = command(conn, 2, (const char *[]){"DEL", rkey}, (size_t[]){3, rlen});

    if (reply == NULL)
        return -1;
    if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1)
        return unexpected(conn, "DEL of a held lock", reply);
    freeReplyObject(reply);
    return 0;
}

/* ---- cache ---- */

/* SET <cache key> <json> PX <ttl> */
static int r_cache_set(bench_conn *conn, const char *id, const char *json, size_t len)
{
    char key[RKEY_MAX], ttl[24];
    size_t klen = prefixed(BENCH_CACHE_PREFIX, id, key);
    redisReply *reply;

    snprintf(ttl, sizeof(ttl), "%d", BENCH_CACHE_TTL_MS);
    reply = command(conn, 5, (const char *[]){"SET", key, json, "PX", ttl},
                    (size_t[]){3, klen, len, 2, strlen(ttl)});
    if (reply == NULL)
        return -1;
    if (reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, "OK") != 0)
        return unexpected(conn, "SET", reply);
    freeReplyObject(reply);
    return 0;
}

static int r_cache_get(bench_conn *conn, const char *id, const char **json, size_t *len)
{
    rconn *r = R(conn);
    char key[RKEY_MAX];
    size_t klen = prefixed(BENCH_CACHE_PREFIX, id, key);

    drop_last(r);
    r->last = command(conn, 2, (const char *[]){"GET", key}, (size_t[]){3, klen});
    if (r->last == NULL)
        return -1;
    *json = NULL;
    *len = 0;
    if (r->last->type == REDIS_REPLY_STRING) {
        *json = r->last->str;
        *len = r->last->len;
    } else if (r->last->type != REDIS_REPLY_NIL) {
        return bench_fail(conn->err, sizeof(conn->err), "GET: unexpected reply");
    }
    return 0;
}

static int grow(rconn *r, size_t n)
{
    if (n <= r->cap)
        return 0;
    free(r->hits);
    free(r->argv);
    free(r->lens);
    free(r->keys);
    r->hits = malloc(n * sizeof(*r->hits));
    r->argv = malloc((n + 1) * sizeof(*r->argv));
    r->lens = malloc((n + 1) * sizeof(*r->lens));
    r->keys = malloc(n * RKEY_MAX);
    r->cap = r->hits && r->argv && r->lens && r->keys ? n : 0;
    return r->cap ? 0 : bench_fail(r->base.err, sizeof(r->base.err), "out of memory");
}

/* MGET <cache key>... : one command for the whole batch, as the daemon. */
static int r_cache_get_many(bench_conn *conn, const char *const *ids, size_t n,
                            const bench_hit **hits, size_t *count)
{
    rconn *r = R(conn);
    size_t k = 0;

    drop_last(r);
    if (grow(r, n) != 0)
        return -1;
    r->argv[0] = "MGET";
    r->lens[0] = 4;
    for (size_t i = 0; i < n; i++) {
        r->argv[i + 1] = r->keys + i * RKEY_MAX;
        r->lens[i + 1] = prefixed(BENCH_CACHE_PREFIX, ids[i], r->keys + i * RKEY_MAX);
    }
    r->last = command(conn, (int)n + 1, r->argv, r->lens);
    if (r->last == NULL)
        return -1;
    if (r->last->type != REDIS_REPLY_ARRAY || r->last->elements != n)
        return bench_fail(conn->err, sizeof(conn->err), "MGET: not %zu values", n);
    for (size_t i = 0; i < n; i++) {
        const redisReply *v = r->last->element[i];

        if (v->type == REDIS_REPLY_STRING)
            r->hits[k++] = (bench_hit){ids[i], v->str, v->len};
    }
    *hits = r->hits;
    *count = k;
    return 0;
}

/* ---- wake ---- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The Node payload, as daemon/wake.c writes it: JSON.stringify of
 * {executionId, timestamp}; bench ids need no escapes, which is checked. */
static int payload(bench_conn *conn, const char *id, char *out, size_t cap, size_t *len)
{
    int n;

    if (strpbrk(id, "\"\\") != NULL)
        return bench_fail(conn->err, sizeof(conn->err), "wake id needs escapes: %s", id);
    n = snprintf(out, cap, "{\"executionId\":\"%s\",\"timestamp\":%lld}", id,
                 (long long)now_ms());
    if (n < 0 || (size_t)n >= cap)
        return bench_fail(conn->err, sizeof(conn->err), "wake id too long: %s", id);
    *len = (size_t)n;
    return 0;
}

/* PUBLISH <channel> <payload> */
static int r_wake_signal(bench_conn *conn, const char *id, int64_t *receivers)
{
    char buf[BENCH_KEY_MAX + 64];
    size_t len = 0;
    redisReply *reply;

    if (payload(conn, id, buf, sizeof(buf), &len) != 0)
        return -1;
    reply = command(conn, 3, (const char *[]){"PUBLISH", BENCH_WAKE_CHANNEL, buf},
                    (size_t[]){7, strlen(BENCH_WAKE_CHANNEL), len});
    if (reply == NULL)
        return -1;
    if (reply->type != REDIS_REPLY_INTEGER)
        return unexpected(conn, "PUBLISH", reply);
    *receivers = reply->integer;
    freeReplyObject(reply);
    return 0;
}

static int is_str(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static int r_wake_subscribe(bench_conn *conn)
{
    redisReply *reply = command(conn, 2, (const char *[]){"SUBSCRIBE", BENCH_WAKE_CHANNEL},
                                (size_t[]){9, strlen(BENCH_WAKE_CHANNEL)});

    if (reply == NULL)
        return -1;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        !is_str(reply->element[0], "subscribe"))
        return unexpected(conn, "SUBSCRIBE", reply);
    freeReplyObject(reply);
    return 0;
}

/* A message must be ["message", <wake channel>, <Node payload>]; the id is
 * taken from the payload as a subscriber of the Node package would. */
static int wake_id(bench_conn *conn, const redisReply *m, char *id, size_t cap)
{
    static const char head[] = "{\"executionId\":\"";
    const redisReply *p;
    const char *end;
    long long ts;
    char tail;

    if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 || !is_str(m->element[0], "message") ||
        !is_str(m->element[1], BENCH_WAKE_CHANNEL) || m->element[2]->type != REDIS_REPLY_STRING)
        return bench_fail(conn->err, sizeof(conn->err), "not a wake message");
    p = m->element[2];
    end = p->len > sizeof(head) ? memchr(p->str + sizeof(head) - 1, '"', p->len - sizeof(head) + 1)
                                : NULL;
    if (strncmp(p->str, head, sizeof(head) - 1) != 0 || end == NULL ||
        (size_t)(end - p->str) - (sizeof(head) - 1) >= cap ||
        sscanf(end, "\",\"timestamp\":%lld%c", &ts, &tail) != 2 || tail != '}' ||
        p->str[p->len - 1] != '}')
        return bench_fail(conn->err, sizeof(conn->err), "malformed wake payload: %.*s",
                          (int)p->len, p->str);
    memcpy(id, p->str + sizeof(head) - 1, (size_t)(end - p->str) - (sizeof(head) - 1));
    id[(end - p->str) - (sizeof(head) - 1)] = '\0';
    return 1;
}

/* Replies already read come first; otherwise waits for the socket. */
static int r_wake_next(bench_conn *conn, int timeout_ms, char *id, size_t cap)
{
    redisContext *rc = R(conn)->rc;

    for (;;) {
        struct pollfd pfd = {rc->fd, POLLIN, 0};
        void *m = NULL;
        int rv;

        if (redisGetReplyFromReader(rc, &m) != REDIS_OK)
            return bench_fail(conn->err, sizeof(conn->err), "reading a message: %s",
                              rc->errstr);
        if (m != NULL) {
            rv = wake_id(conn, m, id, cap);
            freeReplyObject(m);
            return rv;
        }
        rv = poll(&pfd, 1, timeout_ms);
        if (rv == 0)
            return 0;
        if (rv < 0 || redisBufferRead(rc) != REDIS_OK)
            return bench_fail(conn->err, sizeof(conn->err), "reading a message: %s",
                              rv < 0 ? "poll failed" : rc->errstr);
    }
}

const bench_backend bench_direct = {
    .name = "direct",
    .connect = r_connect,
    .close = r_close,
    .lock_acquire = r_lock_acquire,
    .lock_release = r_lock_release,
    .cache_set = r_cache_set,
    .cache_get = r_cache_get,
    .cache_get_many = r_cache_get_many,
    .wake_signal = r_wake_signal,
    .wake_subscribe = r_wake_subscribe,
    .wake_next = r_wake_next,
};
