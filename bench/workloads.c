/* workloads.c -- what the client threads do, written once for both paths.
 *
 * Every reply is checked: a lock nobody else holds must be granted and
 * released with its token, a cache read must return the bytes just
 * written, a get_many must return every pre-populated execution intact,
 * and every subscriber must receive every wake exactly once. */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define WAKE_PERIOD_NS 1000000u     /* 1,000 signals per second in all */
#define WAKE_DRAIN_NS 5000000000u   /* after the last signal, for the last wakes */
#define WAKE_POLL_MS 100

static int wfail(bench_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int wfail(bench_worker *w, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(w->err, sizeof(w->err), fmt, ap);
    va_end(ap);
    return -1;
}

/* A backend call failed: its message, as it is. */
static int conn_fail(bench_worker *w)
{
    return wfail(w, "%s", w->conn->err);
}

/* ---- lock: acquire + release of a key nobody else uses ---- */

static int lock_step(bench_worker *w, uint64_t *lat_ns)
{
    const bench_backend *be = w->run->be;
    char key[BENCH_KEY_MAX];
    fm_lock lk;
    int released;

    (void)lat_ns;
    snprintf(key, sizeof(key), "bench:%s:%d:%" PRIu64, be->name, w->index, w->iter);
    if (be->lock_acquire(w->conn, key, &lk) != 0)
        return conn_fail(w);
    if (!lk.acquired || lk.fence <= 0)
        return wfail(w, "lock %s: not granted (fence %lld) though nobody holds it", key,
                     (long long)lk.fence);
    if (be->lock_release(w->conn, key, lk.token, &released) != 0)
        return conn_fail(w);
    if (!released)
        return wfail(w, "lock %s: not released with the token that took it", key);
    return 1;
}

const bench_workload bench_wl_lock = {
    .name = "lock",
    .unit = "acquire+release pair",
    .step = lock_step,
};

/* ---- cache: set, then get of the same execution ---- */

typedef struct cache_state {
    char id[BENCH_KEY_MAX];
    char json[BENCH_JSON_MAX];
    size_t len, seq_at;
} cache_state;

static int cache_init(bench_worker *w)
{
    cache_state *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return wfail(w, "out of memory");
    w->state = s;
    snprintf(s->id, sizeof(s->id), "c-%s-%d", w->run->be->name, w->index);
    s->len = bench_execution_json(s->json, sizeof(s->json), s->id, &s->seq_at);
    return s->len ? 0 : wfail(w, "execution JSON does not fit");
}

static void free_state(bench_worker *w)
{
    free(w->state);
    w->state = NULL;
}

static int cache_step(bench_worker *w, uint64_t *lat_ns)
{
    const bench_backend *be = w->run->be;
    cache_state *s = w->state;
    char seq[9];
    const char *got;
    size_t len;

    (void)lat_ns;
    /* Each write differs from the last, so a stale read cannot pass. */
    snprintf(seq, sizeof(seq), "%08" PRIu64, w->iter % 100000000u);
    memcpy(s->json + s->seq_at, seq, 8);
    if (be->cache_set(w->conn, s->id, s->json, s->len) != 0 ||
        be->cache_get(w->conn, s->id, &got, &len) != 0)
        return conn_fail(w);
    if (got == NULL)
        return wfail(w, "cache.get %s: a miss right after the set", s->id);
    if (len != s->len || memcmp(got, s->json, len) != 0)
        return wfail(w, "cache.get %s: not the bytes just set (%zu vs %zu bytes)", s->id, len,
                     s->len);
    return 1;
}

const bench_workload bench_wl_cache = {
    .name = "cache",
    .unit = "set+get pair of a ~2 KB execution",
    .thread_init = cache_init,
    .step = cache_step,
    .thread_done = free_state,
};

/* ---- get_many: the same 100 pre-populated executions ---- */

static int get_many_step(bench_worker *w, uint64_t *lat_ns)
{
    const bench_batch *b = w->run->env->get_many;
    const bench_hit *hits;
    size_t count;

    (void)lat_ns;
    if (w->run->be->cache_get_many(w->conn, b->ids, b->n, &hits, &count) != 0)
        return conn_fail(w);
    return bench_batch_check(b, hits, count, w->err, sizeof(w->err)) == 0 ? 1 : -1;
}

const bench_workload bench_wl_get_many = {
    .name = "get_many",
    .unit = "get_many of 100 ids (~2 KB each)",
    .step = get_many_step,
};

/* ---- hot: cache.get, again and again, of the same 100 executions ----
 *
 * What a workflow engine's readers do to executions that are running: the
 * workload a near cache in the daemon would serve without Redis. Each
 * thread starts at its own id and walks the set. */

static int hot_step(bench_worker *w, uint64_t *lat_ns)
{
    const bench_batch *b = w->run->env->get_many;
    size_t i = ((size_t)w->index + (size_t)w->iter) % b->n;
    const char *got;
    size_t len;

    (void)lat_ns;
    if (w->run->be->cache_get(w->conn, b->ids[i], &got, &len) != 0)
        return conn_fail(w);
    if (got == NULL)
        return wfail(w, "cache.get %s: a miss of a stored execution", b->ids[i]);
    if (len != b->len[i] || memcmp(got, b->json[i], len) != 0)
        return wfail(w, "cache.get %s: not what was stored", b->ids[i]);
    return 1;
}

const bench_workload bench_wl_hot = {
    .name = "hot",
    .unit = "cache.get of one of 100 stored executions (~2 KB)",
    .step = hot_step,
};

/* ---- wake: signal-to-delivery latency at a fixed rate ----
 *
 * One publisher signals 1,000 times a second; every client thread is a
 * subscriber and must receive each wake once. The id carries the send
 * time ("w-<monotonic ns>"): the payload's own timestamp is in ms. */

typedef struct wake_run {
    pthread_t thread;
    int started;
    bench_run *run;
    bench_conn *conn;
    atomic_uint_fast64_t published;
    atomic_int done;                /* the publisher has stopped */
    uint64_t drain_end;
    char err[BENCH_ERR_MAX];
} wake_run;

static int wake_setup(bench_run *run, char *err, size_t errlen)
{
    wake_run *wr = calloc(1, sizeof(*wr));

    if (wr == NULL)
        return bench_fail(err, errlen, "out of memory");
    run->shared = wr;
    wr->run = run;
    wr->conn = run->be->connect(run->env, err, errlen);
    return wr->conn ? 0 : -1;
}

static int publish_one(wake_run *wr)
{
    char id[32];
    int64_t receivers;

    snprintf(id, sizeof(id), "w-%" PRIu64, bench_now_ns());
    if (wr->run->be->wake_signal(wr->conn, id, &receivers) != 0)
        return bench_fail(wr->err, sizeof(wr->err), "%s", wr->conn->err);
    if (receivers < 1)
        return bench_fail(wr->err, sizeof(wr->err), "wake %s reached no subscriber", id);
    atomic_fetch_add(&wr->published, 1);
    return 0;
}

/* Paced, never bursting to catch up: a late signal pushes the next back. */
static void *publisher(void *arg)
{
    wake_run *wr = arg;
    uint64_t next = bench_now_ns();

    while (!atomic_load(&wr->run->stop) && !atomic_load(&wr->run->failed)) {
        uint64_t now = bench_now_ns();

        if (now < next)
            bench_sleep_ns(next - now);
        if (publish_one(wr) != 0) {
            atomic_store(&wr->run->failed, 1);
            break;
        }
        next = next + WAKE_PERIOD_NS > now ? next + WAKE_PERIOD_NS : now;
    }
    return NULL;
}

static int wake_start(bench_run *run, char *err, size_t errlen)
{
    wake_run *wr = run->shared;

    if (pthread_create(&wr->thread, NULL, publisher, wr) != 0)
        return bench_fail(err, errlen, "cannot start the publisher thread");
    wr->started = 1;
    return 0;
}

static int wake_stop(bench_run *run, char *err, size_t errlen)
{
    wake_run *wr = run->shared;

    if (wr->started)
        pthread_join(wr->thread, NULL);
    wr->started = 0;
    wr->drain_end = bench_now_ns() + WAKE_DRAIN_NS;
    atomic_store(&wr->done, 1);
    if (wr->err[0] != '\0')
        return bench_fail(err, errlen, "publisher: %s", wr->err);
    return 0;
}

static void wake_teardown(bench_run *run)
{
    wake_run *wr = run->shared;

    if (wr == NULL)
        return;
    if (wr->started)
        pthread_join(wr->thread, NULL);
    if (wr->conn != NULL)
        run->be->close(wr->conn);
    free(wr);
    run->shared = NULL;
}

static int wake_init(bench_worker *w)
{
    w->state = calloc(1, sizeof(uint64_t));
    if (w->state == NULL)
        return wfail(w, "out of memory");
    return w->run->be->wake_subscribe(w->conn) == 0 ? 0 : conn_fail(w);
}

static int wake_step(bench_worker *w, uint64_t *lat_ns)
{
    char id[64], *end;
    uint64_t sent, now;
    int rc = w->run->be->wake_next(w->conn, WAKE_POLL_MS, id, sizeof(id));

    if (rc <= 0)
        return rc < 0 ? conn_fail(w) : 0;
    now = bench_now_ns();
    sent = strncmp(id, "w-", 2) == 0 ? strtoull(id + 2, &end, 10) : 0;
    if (sent == 0 || *end != '\0' || sent > now)
        return wfail(w, "a wake for an id the bench never signalled: %s", id);
    *lat_ns = now - sent;
    ++*(uint64_t *)w->state;
    return 1;
}

static int wake_finished(bench_worker *w)
{
    wake_run *wr = w->run->shared;
    uint64_t got = *(uint64_t *)w->state, sent = atomic_load(&wr->published);

    if (!atomic_load(&wr->done))
        return 0;
    if (got > sent)
        return wfail(w, "subscriber %d got %" PRIu64 " wakes for %" PRIu64 " signals", w->index,
                     got, sent);
    if (got == sent)
        return 1;
    if (bench_now_ns() > wr->drain_end)
        return wfail(w, "subscriber %d got %" PRIu64 " of %" PRIu64 " wakes", w->index, got,
                     sent);
    return 0;
}

const bench_workload bench_wl_wake = {
    .name = "wake",
    .unit = "wake delivered to one subscriber",
    .setup = wake_setup,
    .start = wake_start,
    .stop = wake_stop,
    .teardown = wake_teardown,
    .thread_init = wake_init,
    .step = wake_step,
    .finished = wake_finished,
    .thread_done = free_state,
    .self_timed = 1,
};
