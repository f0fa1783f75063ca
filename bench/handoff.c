/* handoff.c -- lock hand-off latency (issue 4): how long a waiting
 * lock.acquire takes to get a lock once its holder lets go.
 *
 * A pair is a holder and a waiter, each with its own connection and
 * thread. Per hand-off the holder takes a fresh key, lets the waiter start
 * its acquire (daemon, default retry_delay of 100 ms, many retries), waits
 * 10 ms plus a random 0..100 ms (so the release falls at a random point of
 * the waiter's retry period, after its first attempt), then releases:
 *   push  through the daemon: the release script publishes the key on the
 *         release channel and the daemon retries the waiting acquire at once;
 *   poll  with a raw DEL (a holder that took the lock with the same script
 *         through hiredis and does not publish): the waiter only notices
 *         at its next retry timer.
 * Latency = the waiter's grant (its call returned) minus the moment the
 * holder started its release. A few pairs run at once to keep the run
 * short; each hand-off has its own key. */
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MIN_HOLD_NS 10000000u
#define PHASE_SPREAD_NS 100000000u  /* the daemon's default retry_delay */
#define WAIT_RETRIES 1000

typedef struct pair {
    const bench_env *env;
    int push, index;
    size_t count;
    bench_conn *holder, *waiter;
    pthread_t holder_thread, waiter_thread;
    int holder_started, waiter_started;
    sem_t go, done;
    int quit;                       /* written before a post of go */
    char key[BENCH_KEY_MAX];
    uint64_t granted;               /* written by the waiter before done */
    int64_t fence;
    int waiter_failed;
    uint64_t *lat;
    size_t nlat;
    unsigned seed;
    char err[BENCH_ERR_MAX];
} pair;

/* The waiter's side of one hand-off: wait for the lock, then give it back. */
static int wait_and_release(pair *p)
{
    bench_conn *c = p->waiter;
    fm_lock lk;
    int released;

    if (bench_daemon_acquire_wait(c, p->key, WAIT_RETRIES, &lk) != 0)
        return -1;
    p->granted = bench_now_ns();
    p->fence = lk.fence;
    if (!lk.acquired)
        return bench_fail(c->err, sizeof(c->err), "waiter: lock %s not granted", p->key);
    if (bench_daemon.lock_release(c, p->key, lk.token, &released) != 0)
        return -1;
    return released ? 0 : bench_fail(c->err, sizeof(c->err), "waiter: lock %s not released",
                                     p->key);
}

static void *waiter_main(void *arg)
{
    pair *p = arg;

    for (;;) {
        sem_wait(&p->go);
        if (p->quit)
            break;
        if (wait_and_release(p) != 0)
            p->waiter_failed = 1;
        sem_post(&p->done);
    }
    return NULL;
}

static int holder_release(pair *p, const char *token)
{
    int released;

    if (!p->push)
        return bench_direct_del_lock(p->holder, p->key);
    if (bench_daemon.lock_release(p->holder, p->key, token, &released) != 0)
        return -1;
    return released ? 0 : bench_fail(p->holder->err, sizeof(p->holder->err),
                                     "holder: lock %s not released", p->key);
}

static int one_handoff(pair *p, size_t i)
{
    const bench_backend *hb = p->push ? &bench_daemon : &bench_direct;
    uint64_t released;
    fm_lock lk;

    snprintf(p->key, sizeof(p->key), "handoff:%s:%d:%zu", p->push ? "push" : "poll",
             p->index, i);
    if (hb->lock_acquire(p->holder, p->key, &lk) != 0)
        return bench_fail(p->err, sizeof(p->err), "holder: %s", p->holder->err);
    if (!lk.acquired)
        return bench_fail(p->err, sizeof(p->err), "holder: lock %s not granted", p->key);
    sem_post(&p->go);
    bench_sleep_ns(MIN_HOLD_NS + (uint64_t)rand_r(&p->seed) % PHASE_SPREAD_NS);
    released = bench_now_ns();
    if (holder_release(p, lk.token) != 0) {
        /* The waiter still gets the lock, at the latest when its TTL ends. */
        sem_wait(&p->done);
        return bench_fail(p->err, sizeof(p->err), "holder: %s", p->holder->err);
    }
    sem_wait(&p->done);
    if (p->waiter_failed)
        return bench_fail(p->err, sizeof(p->err), "%s", p->waiter->err);
    if (p->fence <= lk.fence)
        return bench_fail(p->err, sizeof(p->err), "lock %s: fence %" PRId64 " after %" PRId64,
                          p->key, p->fence, lk.fence);
    p->lat[p->nlat++] = p->granted - released;
    return 0;
}

static void *holder_main(void *arg)
{
    pair *p = arg;

    for (size_t i = 0; i < p->count; i++)
        if (one_handoff(p, i) != 0)
            break;
    p->quit = 1;
    sem_post(&p->go);
    pthread_join(p->waiter_thread, NULL);
    p->waiter_started = 0;
    return NULL;
}

static int pair_open(pair *p, char *err, size_t errlen)
{
    p->lat = calloc(p->count ? p->count : 1, sizeof(*p->lat));
    if (p->lat == NULL)
        return bench_fail(err, errlen, "out of memory");
    p->holder = (p->push ? &bench_daemon : &bench_direct)->connect(p->env, err, errlen);
    if (p->holder == NULL)
        return -1;
    p->waiter = bench_daemon.connect(p->env, err, errlen);
    if (p->waiter == NULL)
        return -1;
    if (pthread_create(&p->waiter_thread, NULL, waiter_main, p) != 0)
        return bench_fail(err, errlen, "cannot start a waiter thread");
    p->waiter_started = 1;
    if (pthread_create(&p->holder_thread, NULL, holder_main, p) != 0)
        return bench_fail(err, errlen, "cannot start a holder thread");
    p->holder_started = 1;
    return 0;
}

static void pair_close(pair *p)
{
    if (p->waiter_started) {        /* its holder never ran */
        p->quit = 1;
        sem_post(&p->go);
        pthread_join(p->waiter_thread, NULL);
    }
    if (p->holder != NULL)
        (p->push ? &bench_daemon : &bench_direct)->close(p->holder);
    if (p->waiter != NULL)
        bench_daemon.close(p->waiter);
    sem_destroy(&p->go);
    sem_destroy(&p->done);
    free(p->lat);
}

static void summarize(pair *pairs, int n, bench_handoff *out)
{
    uint64_t *all = malloc((size_t)n * pairs[0].count * sizeof(*all) + sizeof(*all));
    size_t k = 0;
    double sum = 0;

    if (all == NULL)
        return;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < pairs[i].nlat; j++)
            sum += (double)(all[k++] = pairs[i].lat[j]);
    bench_sort_samples(all, k);
    out->n = k;
    out->p50_ms = bench_percentile(all, k, 0.50) / 1e6;
    out->p99_ms = bench_percentile(all, k, 0.99) / 1e6;
    out->max_ms = k ? (double)all[k - 1] / 1e6 : 0;
    out->mean_ms = k ? sum / (double)k / 1e6 : 0;
    free(all);
}

int bench_handoff_run(const bench_env *env, int push, int npairs, size_t per_pair,
                      bench_handoff *out, char *err, size_t errlen)
{
    pair *pairs = calloc((size_t)npairs, sizeof(*pairs));
    int started = 0, rc = 0;

    memset(out, 0, sizeof(*out));
    out->variant = push ? "push" : "poll";
    out->pairs = npairs;
    if (pairs == NULL)
        return bench_fail(err, errlen, "out of memory");
    for (int i = 0; i < npairs; i++) {
        pairs[i] = (pair){.env = env, .push = push, .index = i, .count = per_pair,
                          .seed = 0x5eed + (unsigned)i};
        sem_init(&pairs[i].go, 0, 0);
        sem_init(&pairs[i].done, 0, 0);
    }
    for (; started < npairs && rc == 0; started++)
        rc = pair_open(&pairs[started], err, errlen);
    for (int i = 0; i < started; i++) {
        if (!pairs[i].holder_started)
            continue;
        pthread_join(pairs[i].holder_thread, NULL);
        if (rc == 0 && pairs[i].err[0] != '\0')
            rc = bench_fail(err, errlen, "hand-off (%s): %s", out->variant, pairs[i].err);
    }
    if (rc == 0)
        summarize(pairs, npairs, out);
    for (int i = 0; i < npairs; i++)
        pair_close(&pairs[i]);
    free(pairs);
    return rc;
}
