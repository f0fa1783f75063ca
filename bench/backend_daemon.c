/* backend_daemon.c -- the daemon path: libfmredis, one fm_client per
 * thread. Every call runs with the library's defaults except where the
 * direct path must do the same thing (lock TTL, no retries, cache TTL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct dconn {
    bench_conn base;
    fm_client *c;
    char *json;                     /* the last cache.get's text */
    fm_cache_entry *entries;        /* the last get_many's */
    size_t nentries;
    bench_hit *hits;
    size_t caphits;
} dconn;

/* The names of bench.h, which are the daemon's defaults, given explicitly
 * so that the direct path is sure to use the same ones. */
const char *const bench_daemon_args[] = {
    "--log_level", "info", "--lock_key_prefix", BENCH_LOCK_PREFIX,
    "--cache_key_prefix", BENCH_CACHE_PREFIX, "--lock_release_channel",
    BENCH_RELEASE_CHANNEL, "--wake_channel", BENCH_WAKE_CHANNEL, NULL};

static dconn *D(bench_conn *c)
{
    return (dconn *)c;
}

/* Fills conn->err from the client's error; returns -1. */
static int fail(bench_conn *conn, const char *what)
{
    fm_client *c = D(conn)->c;
    const char *code = fm_client_errcode(c);

    return bench_fail(conn->err, sizeof(conn->err), "%s: %s (%s%s%s)", what,
                      fm_client_errstr(c), fm_client_error_name(fm_client_err(c)),
                      *code ? " " : "", code);
}

static void drop_results(dconn *d)
{
    free(d->json);
    d->json = NULL;
    fm_cache_entries_free(d->entries, d->nentries);
    d->entries = NULL;
    d->nentries = 0;
}

static bench_conn *d_connect(const bench_env *env, char *err, size_t errlen)
{
    dconn *d = calloc(1, sizeof(*d));

    if (d == NULL) {
        bench_fail(err, errlen, "out of memory");
        return NULL;
    }
    d->base.env = env;
    d->c = fm_connect(env->daemon_sock, FM_TIMEOUT_DEFAULT);
    if (d->c == NULL || fm_client_err(d->c) != FM_ERR_NONE) {
        bench_fail(err, errlen, "connecting to fmredisd at %s: %s", env->daemon_sock,
                   d->c ? fm_client_errstr(d->c) : "out of memory");
        fm_client_free(d->c);
        free(d);
        return NULL;
    }
    return &d->base;
}

static void d_close(bench_conn *conn)
{
    dconn *d = D(conn);

    if (d == NULL)
        return;
    drop_results(d);
    free(d->hits);
    fm_client_free(d->c);
    free(d);
}

static int acquire(bench_conn *conn, const char *key, int64_t max_retries, fm_lock *out)
{
    fm_lock_opts opts;

    fm_lock_opts_init(&opts);
    opts.ttl_ms = BENCH_LOCK_TTL_MS;
    opts.max_retries = max_retries;
    if (fm_lock_acquire(D(conn)->c, key, &opts, out) != FM_OK)
        return fail(conn, "lock.acquire");
    return 0;
}

static int d_lock_acquire(bench_conn *conn, const char *key, fm_lock *out)
{
    return acquire(conn, key, FM_LOCK_NO_RETRY, out);
}

int bench_daemon_acquire_wait(bench_conn *conn, const char *key, int64_t max_retries,
                              fm_lock *out)
{
    return acquire(conn, key, max_retries, out);
}

static int d_lock_release(bench_conn *conn, const char *key, const char *token, int *released)
{
    if (fm_lock_release(D(conn)->c, key, token, released, NULL) != FM_OK)
        return fail(conn, "lock.release");
    return 0;
}

static int d_cache_set(bench_conn *conn, const char *id, const char *json, size_t len)
{
    (void)id;   /* the daemon takes it from the execution */
    if (fm_cache_set(D(conn)->c, json, len, BENCH_CACHE_TTL_MS) != FM_OK)
        return fail(conn, "cache.set");
    return 0;
}

static int d_cache_get(bench_conn *conn, const char *id, const char **json, size_t *len)
{
    dconn *d = D(conn);

    drop_results(d);
    if (fm_cache_get(d->c, id, &d->json, len) != FM_OK)
        return fail(conn, "cache.get");
    *json = d->json;
    return 0;
}

static int d_cache_get_many(bench_conn *conn, const char *const *ids, size_t n,
                            const bench_hit **hits, size_t *count)
{
    dconn *d = D(conn);

    drop_results(d);
    if (fm_cache_get_many(d->c, ids, n, &d->entries, &d->nentries) != FM_OK)
        return fail(conn, "cache.get_many");
    if (d->nentries > d->caphits) {
        bench_hit *h = realloc(d->hits, d->nentries * sizeof(*h));

        if (h == NULL)
            return bench_fail(conn->err, sizeof(conn->err), "out of memory");
        d->hits = h;
        d->caphits = d->nentries;
    }
    for (size_t i = 0; i < d->nentries; i++)
        d->hits[i] = (bench_hit){d->entries[i].id, d->entries[i].json, d->entries[i].len};
    *hits = d->hits;
    *count = d->nentries;
    return 0;
}

static int d_wake_signal(bench_conn *conn, const char *id, int64_t *receivers)
{
    if (fm_wake_signal(D(conn)->c, id, NULL, receivers) != FM_OK)
        return fail(conn, "wake.signal");
    return 0;
}

static int d_wake_subscribe(bench_conn *conn)
{
    if (fm_wake_subscribe(D(conn)->c, NULL, NULL, NULL, 0) != FM_OK)
        return fail(conn, "wake.subscribe");
    return 0;
}

/* Only wake events for the wake channel may arrive: a "redis" event means
 * the daemon lost Redis mid-run, which spoils the measurement. */
static int d_wake_next(bench_conn *conn, int timeout_ms, char *id, size_t cap)
{
    fm_event ev;
    int rc = -1;

    if (fm_event_wait(D(conn)->c, &ev, timeout_ms) != FM_OK) {
        if (fm_client_err(D(conn)->c) == FM_ERR_TIMEOUT)
            return 0;
        return fail(conn, "waiting for a wake event");
    }
    if (ev.type != FM_EVENT_WAKE)
        bench_fail(conn->err, sizeof(conn->err), "unexpected event: %s", ev.json);
    else if (strcmp(ev.channel, BENCH_WAKE_CHANNEL) != 0 || !ev.has_timestamp)
        bench_fail(conn->err, sizeof(conn->err), "malformed wake event: %s", ev.json);
    else if (strlen(ev.execution_id) >= cap)
        bench_fail(conn->err, sizeof(conn->err), "wake id too long: %s", ev.json);
    else
        rc = 1;
    if (rc == 1)
        strcpy(id, ev.execution_id);
    fm_event_clear(&ev);
    return rc;
}

static int daemon_up(const char *sock)
{
    fm_client *c = fm_connect(sock, 1000);
    int up = 0;

    if (c != NULL && fm_client_err(c) == FM_ERR_NONE && fm_ping(c, 1, &up) != FM_OK)
        up = 0;
    fm_client_free(c);
    return up == 1;
}

/* stats' link.last_error as it stands in the JSON (a string or null), or
 * "unknown": what the daemon says of Redis, when its log may be gone by the
 * time anyone reads the message. */
static void last_error(const char *sock, char *out, size_t cap)
{
    static const char key[] = "\"last_error\":", next[] = ",\"last_error_age_ms\"";
    fm_client *c = fm_connect(sock, 1000);
    char *json = NULL, *p = NULL, *q = NULL;
    size_t len;

    if (c != NULL && fm_client_err(c) == FM_ERR_NONE && fm_stats(c, &json, &len) == FM_OK &&
        (p = strstr(json, key)) != NULL)
        q = strstr(p, next);
    if (q != NULL)
        snprintf(out, cap, "%.*s", (int)(q - p - (sizeof(key) - 1)), p + sizeof(key) - 1);
    else
        snprintf(out, cap, "unknown");
    free(json);
    fm_client_free(c);
}

int bench_daemon_await_up(const bench_env *env, int timeout_ms, char *err, size_t errlen)
{
    uint64_t end = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    char why[320];

    while (!daemon_up(env->daemon_sock)) {
        if (bench_now_ns() > end) {
            last_error(env->daemon_sock, why, sizeof(why));
            return bench_fail(err, errlen, "fmredisd did not report Redis up within %d ms; "
                              "its last Redis error: %s", timeout_ms, why);
        }
        bench_sleep_ns(5000000);
    }
    return 0;
}

const bench_backend bench_daemon = {
    .name = "daemon",
    .connect = d_connect,
    .close = d_close,
    .lock_acquire = d_lock_acquire,
    .lock_release = d_lock_release,
    .cache_set = d_cache_set,
    .cache_get = d_cache_get,
    .cache_get_many = d_cache_get_many,
    .wake_signal = d_wake_signal,
    .wake_subscribe = d_wake_subscribe,
    .wake_next = d_wake_next,
};
