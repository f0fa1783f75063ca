/* runner.c -- one run: a workload on one path with N client threads.
 *
 * Each thread connects and prepares (subscribes, ...) before a start gate;
 * the clock runs from the gate's opening to the stop flag. A step's
 * latency is taken around the step, on the monotonic clock, unless the
 * workload measures it itself (wake). The daemon's and Redis's CPU time is
 * read from /proc at both ends of the clock, the daemon's RSS at its end,
 * while every client is still connected.
 *
 * The first failure anywhere stops every thread; the run then reports it
 * and counts nothing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SLEEP_SLICE_NS 10000000u

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int ready, open;
} gate;

typedef struct runner {
    bench_run run;
    bench_worker *workers;
    pthread_t *threads;
    int created;
    gate gate;
    double fmd_cpu_s, redis_cpu_s;  /* over the clock */
} runner;

static runner *runner_of(bench_worker *w)
{
    return (runner *)w->run;
}

static void gate_wait(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->ready++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

/* Waits until `threads` threads are ready, then lets them all go. */
static void gate_open(gate *g, int threads)
{
    pthread_mutex_lock(&g->mu);
    while (g->ready < threads)
        pthread_cond_wait(&g->cond, &g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

static void worker_failed(bench_worker *w)
{
    w->failed = 1;
    if (w->err[0] == '\0')
        snprintf(w->err, sizeof(w->err), "failed without a message");
    atomic_store(&w->run->failed, 1);
}

/* 1 to go on, 0 to end, -1 failed. */
static int keep_going(bench_worker *w)
{
    const bench_workload *wl = w->run->wl;

    if (atomic_load(&w->run->failed))
        return 0;
    if (!atomic_load(&w->run->stop))
        return 1;
    if (wl->finished == NULL)
        return 0;
    switch (wl->finished(w)) {
    case 0:
        return 1;
    case 1:
        return 0;
    default:
        return -1;
    }
}

static void worker_loop(bench_worker *w)
{
    const bench_workload *wl = w->run->wl;
    int go;

    while ((go = keep_going(w)) == 1) {
        uint64_t t0 = bench_now_ns(), lat = 0;
        int rc = wl->step(w, &lat);

        if (rc < 0)
            break;
        w->iter++;
        if (rc == 0)
            continue;
        if (!wl->self_timed)
            lat = bench_now_ns() - t0;
        w->ops++;
        if (bench_sample(w, lat) != 0) {
            snprintf(w->err, sizeof(w->err), "out of memory for latency samples");
            break;
        }
    }
    if (go != 0)
        worker_failed(w);
}

static void *worker_main(void *arg)
{
    bench_worker *w = arg;
    const bench_run *run = w->run;

    w->conn = run->be->connect(run->env, w->err, sizeof(w->err));
    if (w->conn == NULL || (run->wl->thread_init && run->wl->thread_init(w) != 0))
        worker_failed(w);
    gate_wait(&runner_of(w)->gate);
    if (!w->failed) {
        double cpu0 = bench_thread_cpu();

        worker_loop(w);
        w->cpu_s = bench_thread_cpu() - cpu0;
    }
    if (run->wl->thread_done)
        run->wl->thread_done(w);
    if (w->conn != NULL)
        run->be->close(w->conn);
    w->conn = NULL;
    return NULL;
}

static int start_threads(runner *r, char *err, size_t errlen)
{
    for (int i = 0; i < r->run.nthreads; i++) {
        r->workers[i].run = &r->run;
        r->workers[i].index = i;
        if (pthread_create(&r->threads[i], NULL, worker_main, &r->workers[i]) != 0) {
            atomic_store(&r->run.failed, 1);
            return bench_fail(err, errlen, "cannot start thread %d", i + 1);
        }
        r->created++;
    }
    return 0;
}

/* Sleeps through the run, waking early when a thread failed. */
static void run_clock(runner *r, double seconds)
{
    uint64_t end = bench_now_ns() + (uint64_t)(seconds * 1e9);

    while (!atomic_load(&r->run.failed)) {
        uint64_t now = bench_now_ns();

        if (now >= end)
            break;
        bench_sleep_ns(end - now < SLEEP_SLICE_NS ? end - now : SLEEP_SLICE_NS);
    }
}

/* The first failed thread's message, prefixed with where it happened. */
static int first_failure(const runner *r, char *err, size_t errlen)
{
    for (int i = 0; i < r->created; i++)
        if (r->workers[i].failed)
            return bench_fail(err, errlen, "%s", r->workers[i].err);
    return 0;
}

static void summarize(runner *r, bench_result *res)
{
    size_t total = 0, k = 0;
    double cpu = 0;
    uint64_t *all;

    res->ops = 0;
    for (int i = 0; i < r->created; i++) {
        res->ops += r->workers[i].ops;
        total += r->workers[i].nlat;
        cpu += r->workers[i].cpu_s;
    }
    res->client_cpu_us = res->ops ? cpu * 1e6 / (double)res->ops : 0;
    all = malloc((total ? total : 1) * sizeof(*all));
    if (all == NULL)
        return;     /* percentiles stay 0; the counts are still right */
    for (int i = 0; i < r->created; i++) {
        memcpy(all + k, r->workers[i].lat, r->workers[i].nlat * sizeof(*all));
        k += r->workers[i].nlat;
    }
    bench_sort_samples(all, total);
    res->p50_us = bench_percentile(all, total, 0.50) / 1e3;
    res->p99_us = bench_percentile(all, total, 0.99) / 1e3;
    res->p999_us = bench_percentile(all, total, 0.999) / 1e3;
    free(all);
}

static void runner_free(runner *r)
{
    if (r->workers != NULL)
        for (int i = 0; i < r->run.nthreads; i++)
            free(r->workers[i].lat);
    free(r->workers);
    free(r->threads);
    pthread_mutex_destroy(&r->gate.mu);
    pthread_cond_destroy(&r->gate.cond);
    free(r);
}

typedef struct usage {
    uint64_t t;
    double fmd_cpu, redis_cpu;
} usage;

static usage usage_now(const bench_env *env)
{
    return (usage){bench_now_ns(), bench_proc_cpu(env->daemon_pid),
                   bench_proc_cpu(env->redis_pid)};
}

/* Starts the threads, opens the gate, runs the clock, stops, joins. */
static int drive(runner *r, double seconds, bench_result *res, char *err, size_t errlen)
{
    const bench_workload *wl = r->run.wl;
    char stop_err[BENCH_ERR_MAX];
    usage u0, u1;
    int rc = start_threads(r, err, errlen);

    gate_open(&r->gate, r->created);
    if (rc == 0)
        rc = first_failure(r, err, errlen);
    u0 = usage_now(r->run.env);
    if (rc == 0 && wl->start != NULL)
        rc = wl->start(&r->run, err, errlen);
    if (rc == 0)
        run_clock(r, seconds);
    u1 = usage_now(r->run.env);
    res->fmd_rss_kb = bench_proc_rss_kb(r->run.env->daemon_pid);
    if (rc != 0)
        atomic_store(&r->run.failed, 1);
    atomic_store(&r->run.stop, 1);
    if (wl->stop != NULL && wl->stop(&r->run, stop_err, sizeof(stop_err)) != 0) {
        atomic_store(&r->run.failed, 1);
        if (rc == 0)
            rc = bench_fail(err, errlen, "%s", stop_err);
    }
    for (int i = 0; i < r->created; i++)
        pthread_join(r->threads[i], NULL);
    if (rc == 0)
        rc = first_failure(r, err, errlen);
    res->seconds = (double)(u1.t - u0.t) / 1e9;
    r->fmd_cpu_s = u1.fmd_cpu - u0.fmd_cpu;
    r->redis_cpu_s = u1.redis_cpu - u0.redis_cpu;
    return rc;
}

int bench_run_workload(const bench_env *env, const bench_workload *wl,
                       const bench_backend *be, int nthreads, double seconds,
                       bench_result *res, char *err, size_t errlen)
{
    runner *r = calloc(1, sizeof(*r));
    int rc;

    memset(res, 0, sizeof(*res));
    if (r == NULL)
        return bench_fail(err, errlen, "out of memory");
    r->run = (bench_run){.env = env, .wl = wl, .be = be, .nthreads = nthreads};
    pthread_mutex_init(&r->gate.mu, NULL);
    pthread_cond_init(&r->gate.cond, NULL);
    r->workers = calloc((size_t)nthreads, sizeof(*r->workers));
    r->threads = calloc((size_t)nthreads, sizeof(*r->threads));
    if (r->workers == NULL || r->threads == NULL)
        rc = bench_fail(err, errlen, "out of memory");
    else if (wl->setup != NULL && wl->setup(&r->run, err, errlen) != 0)
        rc = -1;
    else
        rc = drive(r, seconds, res, err, errlen);
    if (wl->teardown != NULL)
        wl->teardown(&r->run);
    if (rc == 0) {
        summarize(r, res);
        res->ops_per_s = res->seconds > 0 ? (double)res->ops / res->seconds : 0;
        res->fmd_cpu_us = res->ops ? r->fmd_cpu_s * 1e6 / (double)res->ops : 0;
        res->redis_cpu_us = res->ops ? r->redis_cpu_s * 1e6 / (double)res->ops : 0;
    }
    res->workload = wl->name;
    res->unit = wl->unit;
    res->path = be->name;
    res->clients = nthreads;
    runner_free(r);
    return rc;
}
