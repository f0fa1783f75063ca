/* bench.h -- fmredis-bench: the same workloads through fmredisd (libfmredis)
 * and directly against Redis (hiredis, the very commands the daemon sends).
 *
 * The pieces:
 *   backend   one path's primitive operations (lock, cache, wake) behind one
 *             table, bench_backend: backend_daemon.c and backend_direct.c;
 *   workload  what a client thread does in a loop, written once against a
 *             backend (workloads.c);
 *   runner    threads, the start gate, the clock, latency samples and
 *             the daemon's CPU and memory around one run (runner.c);
 *   handoff   lock hand-off latency, push vs polling (handoff.c);
 *   tls       a redis-server serving TLS and plain TCP, and fmredisd on it
 *             over either, for the TLS rows (tls.c);
 *   report    the table, CSV and JSON (report.c);
 *   and main (fmredis-bench.c), the data get_many reads (batch.c), what
 *   the bench asks of Redis itself (redis_admin.c), helpers (util.c).
 *
 * Every failed operation or wrong reply ends the bench with a message:
 * nothing is counted as a failure and carried on. */
#ifndef FM_BENCH_H
#define FM_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "fmredis.h"

/* What the bench starts the daemon with (its defaults, given explicitly so
 * that the direct path is sure to use the same names). */
#define BENCH_LOCK_PREFIX "fm:lock:"
#define BENCH_CACHE_PREFIX "fm:exec:"
#define BENCH_RELEASE_CHANNEL "fm:lock:released"
#define BENCH_WAKE_CHANNEL "fm:wake"
#define BENCH_LOCK_TTL_MS 30000
#define BENCH_CACHE_TTL_MS 60000

#define BENCH_ERR_MAX 512
#define BENCH_KEY_MAX 128

typedef struct fm_fence fm_fence;
typedef struct bench_batch bench_batch;

/* What every thread may read; written only before the first run. */
typedef struct bench_env {
    const char *daemon_sock;
    const char *redis_sock;         /* the bench's own calls; the direct path's
                                       too unless redis_port is set */
    int redis_port;                 /* > 0: the direct path uses TCP to
                                       127.0.0.1:redis_port */
    pid_t daemon_pid, redis_pid;
    fm_fence *fence;                /* table built: lookups are read-only */
    char sha_acquire[41];
    char sha_release[41];
    const bench_batch *get_many;    /* what the get_many workload reads */
} bench_env;

/* One connection of one path. A backend allocates a larger struct with
 * this one first. err holds the message of the call that failed. */
typedef struct bench_conn {
    const bench_env *env;
    char err[BENCH_ERR_MAX];
} bench_conn;

/* One hit of a get_many: pointers stay valid until the next call on the
 * connection. */
typedef struct bench_hit {
    const char *id;
    const char *json;
    size_t len;
} bench_hit;

/* n cached executions with ids <prefix>00000, <prefix>00001, ... */
struct bench_batch {
    size_t n;
    const char **ids;
    char **json;
    size_t *len;
};

int bench_batch_init(bench_batch *b, const char *prefix, size_t n, char *err, size_t errlen);
void bench_batch_free(bench_batch *b);
/* Whether a get_many's hits are every execution of b once, intact. */
int bench_batch_check(const bench_batch *b, const bench_hit *hits, size_t count,
                      char *err, size_t errlen);

/* Primitive operations of one path. Each returns 0, or -1 with conn->err
 * set; a Redis or daemon answer other than the expected one is an error
 * only where the operation cannot mean anything else (see each backend). */
typedef struct bench_backend {
    const char *name;               /* "daemon" or "direct" */
    bench_conn *(*connect)(const bench_env *env, char *err, size_t errlen);
    void (*close)(bench_conn *c);
    /* One attempt, no waiting. out->acquired says whether it was taken. */
    int (*lock_acquire)(bench_conn *c, const char *key, fm_lock *out);
    /* *released: 1 released, 0 not. */
    int (*lock_release)(bench_conn *c, const char *key, const char *token, int *released);
    int (*cache_set)(bench_conn *c, const char *id, const char *json, size_t len);
    /* *json is NULL on a miss. */
    int (*cache_get)(bench_conn *c, const char *id, const char **json, size_t *len);
    int (*cache_get_many)(bench_conn *c, const char *const *ids, size_t n,
                          const bench_hit **hits, size_t *count);
    int (*wake_signal)(bench_conn *c, const char *id, int64_t *receivers);
    int (*wake_subscribe)(bench_conn *c);
    /* 1 with the execution id of the next wake, 0 when none came within
     * timeout_ms. */
    int (*wake_next)(bench_conn *c, int timeout_ms, char *id, size_t cap);
} bench_backend;

extern const bench_backend bench_daemon;
extern const bench_backend bench_direct;

/* What the bench starts every fmredisd with (NULL-terminated). */
extern const char *const bench_daemon_args[];
/* Waits until the daemon at env->daemon_sock reports Redis up, which
 * means its scripts are loaded. */
int bench_daemon_await_up(const bench_env *env, int timeout_ms, char *err, size_t errlen);

/* Path-specific calls of the hand-off measurement: an acquire that waits
 * (the daemon's default retry_delay), and a release that does not publish. */
int bench_daemon_acquire_wait(bench_conn *c, const char *key, int64_t max_retries,
                              fm_lock *out);
/* DEL <lock prefix><key>: the lock must have existed. */
int bench_direct_del_lock(bench_conn *c, const char *key);

/* ---- the runner ---- */

typedef struct bench_run bench_run;

/* One client thread of a run. */
typedef struct bench_worker {
    bench_run *run;
    int index;
    bench_conn *conn;
    uint64_t iter;                  /* steps taken */
    uint64_t ops;
    uint64_t *lat;                  /* latency samples, ns */
    size_t nlat, caplat;
    void *state;                    /* the workload's, per thread */
    double cpu_s;                   /* the thread's CPU time in its loop */
    int failed;
    char err[BENCH_ERR_MAX];
} bench_worker;

typedef struct bench_workload {
    const char *name;
    const char *unit;               /* what one counted operation is */
    /* Per run, in the main thread (each may be NULL): setup before the
     * threads start, start right after the start gate, stop once the
     * clock has stopped (before the threads end), teardown after they
     * were joined (also after a failure: it frees what setup made). */
    int (*setup)(bench_run *run, char *err, size_t errlen);
    int (*start)(bench_run *run, char *err, size_t errlen);
    int (*stop)(bench_run *run, char *err, size_t errlen);
    void (*teardown)(bench_run *run);
    /* In each thread, after connecting and before the start gate. */
    int (*thread_init)(bench_worker *w);
    /* One step: 1 an operation done (its latency in *lat_ns when the
     * workload times itself), 0 nothing happened yet, -1 failed (w->err). */
    int (*step)(bench_worker *w, uint64_t *lat_ns);
    /* Once the run is stopped: 1 the thread may end, 0 not yet, -1 failed
     * (NULL: it ends at once). */
    int (*finished)(bench_worker *w);
    void (*thread_done)(bench_worker *w);
    int self_timed;                 /* step reports the latency itself */
} bench_workload;

struct bench_run {
    const bench_env *env;
    const bench_workload *wl;
    const bench_backend *be;
    int nthreads;
    atomic_int stop;
    atomic_int failed;
    void *shared;                   /* the workload's, per run */
};

typedef struct bench_result {
    const char *workload;
    const char *unit;
    const char *path;
    int clients;
    uint64_t ops;
    double seconds;
    double ops_per_s;
    double p50_us, p99_us, p999_us;
    double ratio;                   /* daemon/direct ops/s; daemon rows, else 0 */
    double fmd_cpu_us;              /* daemon CPU per operation */
    double redis_cpu_us;            /* redis-server CPU per operation */
    double client_cpu_us;           /* the client threads' CPU per operation
                                       (library, checks of the replies) */
    long fmd_rss_kb;                /* daemon VmRSS at the end of the run */
} bench_result;

/* Runs wl on be with nthreads client threads for `seconds`. 0, or -1 with
 * the first failure in err. */
int bench_run_workload(const bench_env *env, const bench_workload *wl,
                       const bench_backend *be, int nthreads, double seconds,
                       bench_result *res, char *err, size_t errlen);

/* workloads.c; get_many reads env->get_many. */
extern const bench_workload bench_wl_lock, bench_wl_cache, bench_wl_hot, bench_wl_get_many, bench_wl_wake;

/* ---- Redis itself, apart from the measured paths (redis_admin.c) ---- */

/* Checks that the daemon under test loaded the scripts of daemon/scripts.c
 * (a stale binary would not) and sets env's SHA1s. Call once the daemon's
 * link is up. */
int bench_redis_check_scripts(bench_env *env, char *err, size_t errlen);
/* Writes a batch's executions (pipelined SETs). */
int bench_populate(const bench_env *env, const bench_batch *b, char *err, size_t errlen);
/* The calls count of a command in INFO commandstats. */
int bench_redis_calls(const bench_env *env, const char *cmd, long long *calls, char *err,
                      size_t errlen);
/* PUBSUB NUMSUB of one channel. */
int bench_redis_numsub(const bench_env *env, const char *channel, long long *n, char *err,
                       size_t errlen);
/* Waits until Redis counts exactly n subscribers of the release channel: a
 * daemon subscribes a moment after its link is up, and its subscription
 * goes a moment after it exits. */
int bench_redis_await_subscribers(const bench_env *env, long long n, int timeout_ms,
                                  char *err, size_t errlen);

/* ---- TLS to Redis (tls.c) ----
 * One set of each per process; bench_tls_stop ends whatever of it runs. */

/* Certificates made with openssl in a temporary directory of their own,
 * and a redis-server serving TLS and plain TCP on 127.0.0.1: env's
 * redis_sock, redis_pid and redis_port (the plain one) are set to it. */
int bench_tls_start(bench_env *env, char *err, size_t errlen);
/* fmredisd on that server over rediss://, verifying its certificate
 * against the CA (tls), or over redis:// (TCP), once up and subscribed:
 * env's daemon_sock and daemon_pid. One at a time. */
int bench_tls_daemon_start(bench_env *env, int tls, char *err, size_t errlen);
/* Stops that daemon and waits until Redis has seen it go. */
int bench_tls_daemon_stop(const bench_env *env, char *err, size_t errlen);
/* Stops what runs and removes the certificates (safe to call twice). */
void bench_tls_stop(void);

/* ---- hand-off ---- */

typedef struct bench_handoff {
    const char *variant;            /* "push" or "poll" */
    int pairs;                      /* holder/waiter pairs run at once */
    size_t n;
    double p50_ms, p99_ms, max_ms, mean_ms;
} bench_handoff;

int bench_handoff_run(const bench_env *env, int push, int pairs, size_t per_pair,
                      bench_handoff *out, char *err, size_t errlen);

/* ---- the report (report.c) ---- */

#define BENCH_TLS_ROWS 6

typedef struct bench_report {
    const char *mode;               /* "full" or "smoke" */
    double run_seconds;             /* clock of each run */
    double total_seconds;           /* the whole bench, servers included */
    char loadavg[64];               /* /proc/loadavg at the start: a busy host
                                       skews everything */
    bench_result *results;
    size_t nresults;
    /* lock, then cache: daemon-tls, daemon-tcp, direct-tcp (empty when the
       TLS rows did not run) */
    bench_result tls[BENCH_TLS_ROWS];
    size_t ntls;
    bench_handoff handoff[2];       /* push, poll */
    int idle_clients;
    long idle_base_kb, idle_kb;     /* daemon RSS without, and with them */
    size_t big_ids, big_hits;       /* one get_many of many ids */
    long long big_mget_calls;       /* MGETs Redis counted for it */
    double big_ms;
} bench_report;

void bench_report_table(FILE *out, const bench_report *r);
int bench_report_csv(const char *path, const bench_report *r, char *err, size_t errlen);
int bench_report_json(const char *path, const bench_report *r, char *err, size_t errlen);

/* ---- helpers (util.c) ---- */

uint64_t bench_now_ns(void);
void bench_sleep_ns(uint64_t ns);
/* Sets err to the formatted message; returns -1. */
int bench_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A ~2 KB execution as a worker would cache it, with the given id and an
 * 8-digit "seq" field (its digits at *seq_at when seq_at is not NULL).
 * Returns its length, 0 when it does not fit. */
size_t bench_execution_json(char *out, size_t cap, const char *id, size_t *seq_at);
#define BENCH_JSON_MAX 4096
/* Percentile q (0..1) of sorted samples, in the samples' unit. */
double bench_percentile(const uint64_t *sorted, size_t n, double q);
void bench_sort_samples(uint64_t *v, size_t n);
/* utime+stime of a process in seconds, and its VmRSS in KiB; -1 when
 * /proc cannot tell. */
double bench_proc_cpu(pid_t pid);
/* The calling thread's user+system CPU time in seconds. */
double bench_thread_cpu(void);
long bench_proc_rss_kb(pid_t pid);
/* Appends one latency sample to a worker; -1 when out of memory. */
int bench_sample(bench_worker *w, uint64_t ns);

#endif
