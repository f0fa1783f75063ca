/* wire.c -- checked raw-protocol helpers for the tests. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "fm_json.h"
#include "harness.h"
#include "wire.h"

#define LINK_UP_MS 10000

int wire_connect(const char *sock)
{
    int fd = fmt_raw_connect(sock);

    ck_assert_msg(fd >= 0, "cannot connect to %s", sock);
    return fd;
}

void wire_send(int fd, const char *json)
{
    ck_assert_msg(fmt_raw_send(fd, json, strlen(json)) == 0, "sending %.200s failed", json);
}

char *wire_recv_text(int fd, int timeout_ms, size_t *len)
{
    const char *why = "";
    fm_json_val root;
    size_t n = 0, at = 0;
    char *body = fmt_raw_recv(fd, timeout_ms, &n);

    ck_assert_msg(body != NULL, "no reply frame within %d ms", timeout_ms);
    ck_assert_msg(fm_json_validate(body, n, &root, &why, &at) == 0,
                  "reply is not strict JSON (%s at byte %zu): %.300s", why, at, body);
    ck_assert_msg(root.type == FM_JSON_OBJECT, "reply is not an object: %.300s", body);
    if (len != NULL)
        *len = n;
    return body;
}

cJSON *wire_recv(int fd, int timeout_ms)
{
    size_t n;
    char *body = wire_recv_text(fd, timeout_ms, &n);
    cJSON *j = cJSON_ParseWithLength(body, n);

    ck_assert_msg(j != NULL, "cJSON could not parse %.300s", body);
    free(body);
    return j;
}

cJSON *wire_call(int fd, const char *json)
{
    wire_send(fd, json);
    return wire_recv(fd, WIRE_REPLY_MS);
}

char *wire_strf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    ck_assert_msg(n >= 0, "out of memory");
    return s;
}

const char *wire_str(const cJSON *reply, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(reply, name);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *print(const cJSON *j)
{
    static char buf[600];
    char *s = cJSON_PrintUnformatted(j);

    snprintf(buf, sizeof(buf), "%s", s ? s : "(unprintable)");
    free(s);
    return buf;
}

/* ctx: the request, to name it in a failure ("" when unknown). */
static void check_id(const cJSON *reply, const char *id, const char *ctx)
{
    const cJSON *got = cJSON_GetObjectItemCaseSensitive(reply, "id");
    cJSON *want;

    if (id == NULL) {
        ck_assert_msg(got == NULL, "%.300s: the reply carries an id but must not: %s", ctx,
                      print(reply));
        return;
    }
    want = cJSON_Parse(id);
    ck_assert_msg(want != NULL, "bad expected id %s", id);
    ck_assert_msg(got != NULL && cJSON_Compare(got, want, 1), "%.300s: reply id is not %s: %s",
                  ctx, id, print(reply));
    cJSON_Delete(want);
}

static void check_ok(const cJSON *reply, const char *id, const char *ctx)
{
    ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")),
                  "%.300s: expected ok:true, got %s", ctx, print(reply));
    ck_assert_msg(cJSON_GetObjectItemCaseSensitive(reply, "error") == NULL,
                  "%.300s: a success carries an error: %s", ctx, print(reply));
    check_id(reply, id, ctx);
}

static void check_error(const cJSON *reply, const char *code, const char *id, const char *ctx)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(reply, "error");
    const char *got = wire_str(err, "code"), *msg = wire_str(err, "message");

    ck_assert_msg(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(reply, "ok")),
                  "%.300s: expected ok:false with %s, got %s", ctx, code, print(reply));
    ck_assert_msg(cJSON_GetObjectItemCaseSensitive(reply, "event") == NULL,
                  "%.300s: a reply carries event: %s", ctx, print(reply));
    ck_assert_msg(got != NULL && strcmp(got, code) == 0, "%.300s: expected error %s, got %s",
                  ctx, code, print(reply));
    ck_assert_msg(msg != NULL && *msg != '\0', "%.300s: error without a message: %s", ctx,
                  print(reply));
    check_id(reply, id, ctx);
}

void wire_assert_id(const cJSON *reply, const char *id)
{
    check_id(reply, id, "");
}

void wire_assert_ok(const cJSON *reply, const char *id)
{
    check_ok(reply, id, "");
}

void wire_assert_error(const cJSON *reply, const char *code, const char *id)
{
    check_error(reply, code, id, "");
}

void wire_expect_ok(int fd, const char *json, const char *id)
{
    cJSON *r = wire_call(fd, json);

    check_ok(r, id, json);
    cJSON_Delete(r);
}

void wire_expect_error(int fd, const char *json, const char *code, const char *id)
{
    cJSON *r = wire_call(fd, json);

    check_error(r, code, id, json);
    cJSON_Delete(r);
}

int wire_ping_says(const char *sock, const char *needle)
{
    int fd = fmt_raw_connect(sock), says = 0;
    char *body;

    if (fd < 0)
        return 0;
    if (fmt_raw_send(fd, "{\"op\":\"ping\"}", 13) == 0 &&
        (body = fmt_raw_recv(fd, WIRE_REPLY_MS, NULL)) != NULL) {
        says = strstr(body, needle) != NULL;
        free(body);
    }
    close(fd);
    return says;
}

static int redis_up(void *sock)
{
    return wire_ping_says(sock, "\"redis\":\"up\"");
}

void wire_wait_redis_up(const char *sock)
{
    ck_assert_msg(fmt_wait_until(redis_up, (void *)sock, LINK_UP_MS),
                  "the daemon on %s did not report Redis up within %d ms", sock, LINK_UP_MS);
}

void wire_daemon_start(fmt_daemon *d, const char *redis_url, const char *const *extra)
{
    ck_assert_msg(fmt_daemon_start(d, redis_url, extra) == 0, "fmredisd did not start");
}

void wire_daemon_up(fmt_daemon *d, const char *redis_url, const char *const *extra)
{
    wire_daemon_start(d, redis_url, extra);
    wire_wait_redis_up(d->sock);
}

void wire_pair_start(fmt_redis *r, fmt_daemon *d, const char *const *redis_extra,
                     const char *const *extra)
{
    ck_assert_msg(fmt_redis_start(r, redis_extra) == 0, "redis-server did not start");
    wire_daemon_up(d, r->url, extra);
}

void wire_pair_stop(fmt_redis *r, fmt_daemon *d)
{
    fmt_daemon_stop(d);
    fmt_redis_stop(r);
}

int wire_log_holds(void *arg)
{
    const wire_log_wait *w = arg;
    char *log = fmt_slurp(w->path);
    int found = strstr(log, w->needle) != NULL;

    free(log);
    return found;
}

fm_lock wire_lock_take(fm_client *c, const char *key, int64_t ttl_ms)
{
    fm_lock_opts o;
    fm_lock lk;

    fm_lock_opts_init(&o);
    o.ttl_ms = ttl_ms;
    fmt_ok(c, fm_lock_acquire(c, key, &o, &lk), "lock.acquire");
    ck_assert_msg(lk.acquired, "%s: not acquired", key);
    ck_assert_uint_gt(lk.token_len, 0);
    return lk;
}

void wire_cache_set(int fd, const char *execution)
{
    char *req = wire_strf("{\"op\":\"cache.set\",\"id\":\"set\",\"ttl\":3600000,"
                          "\"execution\":%s}", execution);

    wire_expect_ok(fd, req, "\"set\"");
    free(req);
}

void wire_expect_cached(int fd, const char *id, const char *execution)
{
    char *req = wire_strf("{\"op\":\"cache.get\",\"id\":\"get\",\"execution_id\":\"%s\"}", id);
    char *text;
    cJSON *r;

    wire_send(fd, req);
    text = wire_recv_text(fd, WIRE_REPLY_MS, NULL);
    r = cJSON_Parse(text);
    check_ok(r, "\"get\"", req);
    wire_assert_execution(text, execution);
    cJSON_Delete(r);
    free(text);
    free(req);
}

void wire_assert_execution(const char *reply_text, const char *execution)
{
    char *want = wire_strf("\"execution\":%s", execution);

    ck_assert_msg(strstr(reply_text, want) != NULL, "want %s in %s", want, reply_text);
    free(want);
}

void wire_store(const char *sock, const char *execution)
{
    int fd = wire_connect(sock);

    wire_cache_set(fd, execution);
    close(fd);
}

void wire_assert_serving(const char *sock, const char *id, const char *execution)
{
    int fd = wire_connect(sock);

    wire_expect_ok(fd, "{\"op\":\"ping\",\"id\":\"alive\"}", "\"alive\"");
    wire_expect_cached(fd, id, execution);
    close(fd);
}

typedef struct stat_want {
    const char *sock;
    const char *name;
    long long want;
} stat_want;

static int stat_is(void *arg)
{
    const stat_want *w = arg;
    int fd = wire_connect(w->sock);
    long long v = wire_stats_int(fd, w->name);

    close(fd);
    return v == w->want;
}

void wire_await_stat(const char *sock, const char *name, long long want, int timeout_ms)
{
    stat_want w = {sock, name, want};

    ck_assert_msg(fmt_wait_until(stat_is, &w, timeout_ms), "stats %s did not become %lld",
                  name, want);
}

long long wire_stats_int(int fd, const char *name)
{
    cJSON *r = wire_call(fd, "{\"op\":\"stats\",\"id\":\"stats\"}");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, name);
    long long n;

    check_ok(r, "\"stats\"", "stats");
    ck_assert_msg(cJSON_IsNumber(v), "stats without an integer %s: %s", name, print(r));
    n = (long long)v->valuedouble;
    cJSON_Delete(r);
    return n;
}

int wire_native_daemon(pid_t pid)
{
    char path[64], exe[PATH_MAX], line[512];
    const char *base;
    ssize_t n;
    FILE *f;
    int sanitized = 0;

    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    n = readlink(path, exe, sizeof(exe) - 1);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    base = strrchr(exe, '/');
    base = base ? base + 1 : exe;
    if (strncmp(base, "fmredisd", 8) != 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (!sanitized && fgets(line, sizeof(line), f) != NULL)
        sanitized = strstr(line, "libasan") != NULL || strstr(line, "libtsan") != NULL;
    fclose(f);
    return !sanitized;
}

int wire_slowdown(const fmt_daemon *d)
{
    return wire_native_daemon(d->pid) ? 1 : 20;
}

long wire_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    while (kib < 0 && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    ck_assert_msg(kib > 0, "no VmRSS in %s", path);
    return kib;
}

redisContext *wire_redis_open(const fmt_redis *srv)
{
    redisContext *c = fmt_redis_connect(srv);

    ck_assert_msg(c != NULL, "cannot connect to redis-server on %s", srv->sock);
    return c;
}

redisReply *wire_redis_ok(redisContext *c, const char *fmt, ...)
{
    redisReply *reply;
    va_list ap;

    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    ck_assert_msg(reply != NULL, "redis %s: %s", fmt, c->errstr);
    ck_assert_msg(reply->type != REDIS_REPLY_ERROR, "redis %s: %s", fmt, reply->str);
    return reply;
}

void wire_frame_put(FILE *f, const char *body)
{
    size_t n = strlen(body);
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};

    fwrite(h, 1, 4, f);
    fwrite(body, 1, n, f);
}

long long wire_redis_calls(redisContext *c, const char *cmd)
{
    redisReply *rep = wire_redis_ok(c, "INFO commandstats");
    char needle[64];
    const char *at;
    long long n = 0;

    snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", cmd);
    at = strstr(rep->str, needle);
    if (at != NULL)
        n = strtoll(at + strlen(needle), NULL, 10);
    freeReplyObject(rep);
    return n;
}

long long wire_redis_int(redisContext *c, const char *fmt, ...)
{
    redisReply *reply;
    long long v;
    va_list ap;

    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    ck_assert_msg(reply != NULL && reply->type == REDIS_REPLY_INTEGER, "redis %s: %s", fmt,
                  reply == NULL ? c->errstr
                  : reply->type == REDIS_REPLY_ERROR ? reply->str : "not an integer");
    v = reply->integer;
    freeReplyObject(reply);
    return v;
}

int64_t wire_link_stat(const char *sock, const char *name)
{
    int fd = wire_connect(sock);
    cJSON *r = wire_call(fd, "{\"op\":\"stats\",\"id\":\"stats\"}");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r, "redis"), name);
    int64_t n;

    check_ok(r, "\"stats\"", "stats");
    ck_assert_msg(cJSON_IsNumber(v) || cJSON_IsBool(v), "stats has no redis.%s", name);
    n = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : cJSON_IsTrue(v);
    cJSON_Delete(r);
    close(fd);
    return n;
}

long long wire_redis_numsub(redisContext *c, const char *channel)
{
    redisReply *r = wire_redis_ok(c, "PUBSUB NUMSUB %s", channel);
    long long n;

    ck_assert_msg(r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                  r->element[1]->type == REDIS_REPLY_INTEGER, "PUBSUB NUMSUB: unexpected reply");
    n = r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

typedef struct numsub_want {
    redisContext *c;
    const char *channel;
    long long want;
} numsub_want;

static int numsub_is(void *arg)
{
    const numsub_want *w = arg;

    return wire_redis_numsub(w->c, w->channel) == w->want;
}

int wire_numsub_becomes(redisContext *c, const char *channel, long long want, int timeout_ms)
{
    numsub_want w = {c, channel, want};

    return fmt_wait_until(numsub_is, &w, timeout_ms);
}

redisContext *wire_sub_open(const fmt_redis *srv, const char *channel)
{
    struct timeval tv = {WIRE_REPLY_MS / 1000, 0};
    redisContext *r = wire_redis_open(srv);

    redisSetTimeout(r, tv);
    freeReplyObject(wire_redis_ok(r, "SUBSCRIBE %s", channel));
    return r;
}

char *wire_sub_next(redisContext *r, const char *channel)
{
    redisReply *rep = NULL;
    char *payload;

    ck_assert_msg(redisGetReply(r, (void **)&rep) == REDIS_OK && rep != NULL,
                  "no message on %s within %d ms", channel, WIRE_REPLY_MS);
    ck_assert_msg(rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
                      strcmp(rep->element[0]->str, "message") == 0,
                  "not a pub/sub message");
    ck_assert_str_eq(rep->element[1]->str, channel);
    payload = strdup(rep->element[2]->str);
    ck_assert_ptr_nonnull(payload);
    freeReplyObject(rep);
    return payload;
}

void wire_assert_recent_ms(int64_t ts, const char *what)
{
    int64_t now = fmt_wall_ms();

    ck_assert_msg(ts > now - WIRE_REPLY_MS && ts <= now + WIRE_REPLY_MS,
                  "%s: timestamp %lld is not within %d ms of now (%lld)", what, (long long)ts,
                  WIRE_REPLY_MS, (long long)now);
}

void wire_assert_wake_payload(const char *payload, const char *id)
{
    char prefix[FM_STR_MAX + 64];
    int n = snprintf(prefix, sizeof(prefix), "{\"executionId\":\"%s\",\"timestamp\":", id);
    const char *digits = payload + n, *p = digits;

    ck_assert_msg(strncmp(payload, prefix, (size_t)n) == 0, "payload %s does not start with %s",
                  payload, prefix);
    while (*p >= '0' && *p <= '9')
        p++;
    ck_assert_msg(p > digits && (digits[0] != '0' || p - digits == 1) && strcmp(p, "}") == 0,
                  "payload %s: timestamp is not an integer closing the object", payload);
    wire_assert_recent_ms(strtoll(digits, NULL, 10), payload);
}

char *wire_redis_get(redisContext *c, const char *key, size_t *len)
{
    redisReply *rep = fmt_redis_cmd(c, "GET %s", key);
    char *v = NULL;

    ck_assert_msg(rep != NULL && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_NIL),
                  "GET %s failed", key);
    if (rep->type == REDIS_REPLY_STRING) {
        v = malloc(rep->len + 1);
        ck_assert_ptr_nonnull(v);
        memcpy(v, rep->str, rep->len);
        v[rep->len] = '\0';
        if (len != NULL)
            *len = rep->len;
    }
    freeReplyObject(rep);
    return v;
}

void wire_assert_redis_value(redisContext *c, const char *key, const char *want)
{
    size_t len = 0;
    char *got = wire_redis_get(c, key, &len);

    ck_assert_msg(got != NULL, "%s: missing in redis", key);
    ck_assert_msg(len == strlen(want) && memcmp(got, want, len) == 0,
                  "%s holds\n  %s\nwant\n  %s", key, got, want);
    free(got);
}
