/* fmredis-bench -- fmredisd against direct Redis access, same workloads.
 *
 * One invocation starts a private redis-server (Unix socket in a temporary
 * directory, no persistence) and a private fmredisd on it, runs every
 * workload for every client count through both paths, then the TLS rows
 * (tls.c: lock and cache pairs at 32 clients through fmredisd over TLS and
 * over plain TCP, and hiredis over plain TCP, against a second
 * redis-server), measures the lock hand-off, the daemon's memory per idle
 * client and a large get_many, then stops every server (also when
 * something fails) and prints a table; the numbers also go to a CSV and a
 * JSON file.
 *
 *   fmredis-bench [--smoke] [--seconds S] [--only WORKLOAD|tls] [--clients N]
 *                 [--csv FILE] [--json FILE]
 *
 * --smoke (or --quick): short runs, 1 and 8 clients only (the TLS rows at
 * 8), fewer hand-offs; no timing is judged, but every reply still is.
 * --only and --clients narrow the matrix to one workload and one client
 * count (for profiling); --only tls runs the TLS rows instead of the
 * matrix, which --only WORKLOAD leaves out. $FMREDISD names the daemon
 * binary (default build/fmredisd). */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "fence.h"
#include "harness.h"

#define IDLE_CLIENTS 1000
#define GET_MANY 100                /* ids of the get_many workload */
#define BIG_GET_MANY 10000          /* the daemon's default max_batch */
#define READY_TIMEOUT_MS 10000
#define DEFAULT_DIR "build/bench"

typedef struct options {
    int smoke;
    double seconds;
    const char *csv, *json;
    const char *only;               /* one workload, or NULL for all */
    int clients;                    /* one client count, or 0 for all */
} options;

static const bench_workload *const workloads[] = {
    &bench_wl_lock, &bench_wl_cache, &bench_wl_hot, &bench_wl_get_many, &bench_wl_wake,
};
static const int full_clients[] = {1, 8, 32, 128};
static const int smoke_clients[] = {1, 8};
#define TLS_CLIENTS 32
#define TLS_SMOKE_CLIENTS 8

/* The servers, stopped at exit whatever the exit. */
static fmt_redis redis;
static fmt_daemon daemon_;

/* 0, or -1 when the daemon had to be killed. */
static int stop_servers_status(void)
{
    int rc = 0;

    bench_tls_stop();
    if (daemon_.pid > 0)
        rc = fmt_daemon_stop(&daemon_) == 0 ? 0 : -1;
    if (redis.pid > 0)
        fmt_redis_stop(&redis);
    return rc;
}

static void stop_servers(void)
{
    stop_servers_status();
}

/* Ctrl-C: the servers die with us (SIGKILL is async-signal-safe to send;
 * the TLS rows' servers get it from the kernel, PR_SET_PDEATHSIG); their
 * temporary directories stay behind, the certificates' too. */
static void on_signal(int sig)
{
    if (daemon_.pid > 0)
        kill(daemon_.pid, SIGKILL);
    if (redis.pid > 0)
        kill(redis.pid, SIGKILL);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;

    fflush(stdout);
    fprintf(stderr, "fmredis-bench: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: fmredis-bench [--smoke|--quick] [--seconds S] [--only WORKLOAD|tls] "
                 "[--clients N] [--csv FILE] [--json FILE]\n"
                 "  --smoke    short runs, 1 and 8 clients (TLS rows: 8), every reply still "
                 "checked\n"
                 "  --seconds  clock of each run (default 1.5, smoke 0.2)\n"
                 "  --only     one of lock, cache, hot, get_many, wake (no TLS rows then), or tls:\n"
                 "             the TLS rows and no matrix; the hand-off, idle-client and "
                 "large\n             get_many measurements run either way\n"
                 "  --clients  one client count instead of 1, 8, 32 and 128 (the TLS rows' "
                 "32 too)\n"

                 "  --csv/--json  result files (default " DEFAULT_DIR "/results.{csv,json})\n"
                 "$FMREDISD: the daemon to start (default build/fmredisd)\n");
}

static options parse_args(int argc, char **argv)
{
    options o = {0};

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--smoke") == 0 || strcmp(a, "--quick") == 0) {
            o.smoke = 1;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (i + 1 < argc && strcmp(a, "--seconds") == 0) {
            o.seconds = strtod(argv[++i], NULL);
            if (!(o.seconds > 0 && o.seconds < 3600))
                die("--seconds: expected a duration in seconds, got %s", argv[i]);
        } else if (i + 1 < argc && strcmp(a, "--only") == 0) {
            o.only = argv[++i];
        } else if (i + 1 < argc && strcmp(a, "--clients") == 0) {
            o.clients = atoi(argv[++i]);
            if (o.clients < 1 || o.clients > 1024)
                die("--clients: expected 1 to 1024, got %s", argv[i]);
        } else if (i + 1 < argc && strcmp(a, "--csv") == 0) {
            o.csv = argv[++i];
        } else if (i + 1 < argc && strcmp(a, "--json") == 0) {
            o.json = argv[++i];
        } else {
            usage(stderr);
            die("unexpected argument %s", a);
        }
    }
    if (o.seconds == 0)
        o.seconds = o.smoke ? 0.2 : 1.5;
    if (o.csv == NULL || o.json == NULL) {
        if (mkdir("build", 0755) != 0 && errno != EEXIST)
            die("mkdir build: %s", strerror(errno));
        if (mkdir(DEFAULT_DIR, 0755) != 0 && errno != EEXIST)
            die("mkdir " DEFAULT_DIR ": %s", strerror(errno));
    }
    if (o.csv == NULL)
        o.csv = DEFAULT_DIR "/results.csv";
    if (o.json == NULL)
        o.json = DEFAULT_DIR "/results.json";
    return o;
}

/* The first three fields of /proc/loadavg. */
static void read_loadavg(char *out, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a, b, c;

    snprintf(out, cap, "unknown");
    if (f != NULL && fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3)
        snprintf(out, cap, "%.2f %.2f %.2f", a, b, c);
    if (f != NULL)
        fclose(f);
}

/* ---- servers ---- */

static void start_servers(bench_env *env)
{
    char err[BENCH_ERR_MAX];

    if (fmt_redis_start(&redis, NULL) != 0)
        die("could not start redis-server");
    atexit(stop_servers);
    if (fmt_daemon_start(&daemon_, redis.url, bench_daemon_args) != 0)
        die("could not start %s", fmt_daemon_path());
    env->redis_sock = redis.sock;
    env->daemon_sock = daemon_.sock;
    env->redis_pid = redis.pid;
    env->daemon_pid = daemon_.pid;
    if (bench_daemon_await_up(env, READY_TIMEOUT_MS, err, sizeof(err)) != 0 ||
        bench_redis_await_subscribers(env, 1, READY_TIMEOUT_MS, err, sizeof(err)) != 0)
        die("%s (log: %s)", err, daemon_.log);
}

/* The fence table is built once, here, before any thread looks it up. */
static void prepare_env(bench_env *env)
{
    char err[BENCH_ERR_MAX], fkey[FM_FENCE_KEY_MAX + 1];

    env->fence = fm_fence_create();
    if (env->fence == NULL || fm_fence_key(env->fence, BENCH_LOCK_PREFIX, "x", 1, fkey) == 0)
        die("out of memory for the fence table");
    if (bench_redis_check_scripts(env, err, sizeof(err)) != 0)
        die("%s", err);
}

/* ---- the measurements ---- */

static void idle_clients(const bench_env *env, bench_report *rep)
{
    fm_client **c = calloc(IDLE_CLIENTS, sizeof(*c));
    int i;

    if (c == NULL)
        die("out of memory");
    rep->idle_clients = IDLE_CLIENTS;
    rep->idle_base_kb = bench_proc_rss_kb(env->daemon_pid);
    for (i = 0; i < IDLE_CLIENTS; i++) {
        c[i] = fm_connect(env->daemon_sock, FM_TIMEOUT_DEFAULT);
        if (c[i] == NULL || fm_client_err(c[i]) != FM_ERR_NONE ||
            fm_ping(c[i], 0, NULL) != FM_OK)
            break;
    }
    if (i == IDLE_CLIENTS)
        rep->idle_kb = bench_proc_rss_kb(env->daemon_pid);
    else
        fprintf(stderr, "fmredis-bench: idle client %d: %s\n", i + 1,
                c[i] ? fm_client_errstr(c[i]) : "out of memory");
    for (int k = 0; k < IDLE_CLIENTS && k <= i; k++)
        fm_client_free(c[k]);
    free(c);
    if (i != IDLE_CLIENTS || rep->idle_base_kb < 0 || rep->idle_kb < 0)
        die("could not measure the daemon's memory with %d idle clients", IDLE_CLIENTS);
}

/* One get_many of BIG_GET_MANY ids: one MGET in Redis, one reply. */
static void big_get_many(const bench_env *env, bench_report *rep)
{
    char err[BENCH_ERR_MAX];
    bench_batch b;
    bench_conn *c;
    const bench_hit *hits;
    long long before, after;
    uint64_t t0;

    if (bench_batch_init(&b, "m-", BIG_GET_MANY, err, sizeof(err)) != 0 ||
        bench_populate(env, &b, err, sizeof(err)) != 0 ||
        (c = bench_daemon.connect(env, err, sizeof(err))) == NULL ||
        bench_redis_calls(env, "mget", &before, err, sizeof(err)) != 0)
        die("get_many of %d: %s", BIG_GET_MANY, err);
    t0 = bench_now_ns();
    if (bench_daemon.cache_get_many(c, b.ids, b.n, &hits, &rep->big_hits) != 0)
        die("get_many of %d: %s", BIG_GET_MANY, c->err);
    rep->big_ms = (double)(bench_now_ns() - t0) / 1e6;
    if (bench_batch_check(&b, hits, rep->big_hits, err, sizeof(err)) != 0 ||
        bench_redis_calls(env, "mget", &after, err, sizeof(err)) != 0)
        die("get_many of %d: %s", BIG_GET_MANY, err);
    rep->big_ids = b.n;
    rep->big_mget_calls = after - before;
    if (rep->big_mget_calls != 1)
        die("get_many of %d ids took %lld MGETs, not one", BIG_GET_MANY, rep->big_mget_calls);
    bench_daemon.close(c);
    bench_batch_free(&b);
}

/* path: the row's name, be->name unless the servers differ from the
 * matrix's. */
static bench_result run_one(const bench_env *env, const bench_workload *wl,
                            const bench_backend *be, const char *path, int clients,
                            double seconds)
{
    char err[BENCH_ERR_MAX];
    bench_result res;

    if (bench_run_workload(env, wl, be, clients, seconds, &res, err, sizeof(err)) != 0)
        die("%s, %d clients, %s path: %s", wl->name, clients, path, err);
    if (res.ops == 0)
        die("%s, %d clients, %s path: no operation completed", wl->name, clients, path);
    res.path = path;
    fprintf(stderr, "  %-8s %3d clients  %-10s  %9.0f ops/s  p50 %8.1f us\n", wl->name,
            clients, path, res.ops_per_s, res.p50_us);
    return res;
}

/* Every workload x client count, the daemon path then the direct path. */
static void run_matrix(const bench_env *env, const options *o, bench_report *rep)
{
    const int *counts = o->smoke ? smoke_clients : full_clients;
    size_t ncounts = o->smoke ? 2 : 4, nwl = sizeof(workloads) / sizeof(workloads[0]);

    if (o->clients > 0) {
        counts = &o->clients;
        ncounts = 1;
    }
    rep->results = calloc(nwl * ncounts * 2, sizeof(*rep->results));
    if (rep->results == NULL)
        die("out of memory");
    for (size_t w = 0; w < nwl; w++) {
        if (o->only != NULL && strcmp(o->only, workloads[w]->name) != 0)
            continue;
        for (size_t i = 0; i < ncounts; i++) {
            bench_result *d = &rep->results[rep->nresults++];
            bench_result *r = &rep->results[rep->nresults++];

            *d = run_one(env, workloads[w], &bench_daemon, "daemon", counts[i], o->seconds);
            *r = run_one(env, workloads[w], &bench_direct, "direct", counts[i], o->seconds);
            d->ratio = r->ops_per_s > 0 ? d->ops_per_s / r->ops_per_s : 0;
        }
    }
    if (rep->nresults == 0)
        die("--only %s: no such workload", o->only);
}

/* The TLS rows, per workload daemon-tls, daemon-tcp, direct-tcp: the
 * daemon over TCP and the direct path first, then the daemon over TLS.
 * One daemon at a time, so that neither reads the other's release
 * publications; on the direct rows the TCP daemon reads them, as the
 * matrix's daemon does on its direct rows. */
static void run_tls(const bench_env *matrix_env, const options *o, bench_report *rep)
{
    static const bench_workload *const wls[] = {&bench_wl_lock, &bench_wl_cache};
    int clients = o->clients > 0 ? o->clients : o->smoke ? TLS_SMOKE_CLIENTS : TLS_CLIENTS;
    bench_env env = *matrix_env;
    char err[BENCH_ERR_MAX];

    if (bench_tls_start(&env, err, sizeof(err)) != 0)
        die("%s", err);
    for (int tls = 0; tls <= 1; tls++) {
        if (bench_tls_daemon_start(&env, tls, err, sizeof(err)) != 0 ||
            (!tls && bench_redis_check_scripts(&env, err, sizeof(err)) != 0))
            die("%s", err);
        for (size_t w = 0; w < 2; w++) {
            bench_result *r = &rep->tls[3 * w];

            if (tls) {
                r[0] = run_one(&env, wls[w], &bench_daemon, "daemon-tls", clients, o->seconds);
            } else {
                r[1] = run_one(&env, wls[w], &bench_daemon, "daemon-tcp", clients, o->seconds);
                r[2] = run_one(&env, wls[w], &bench_direct, "direct-tcp", clients, o->seconds);
            }
        }
        if (bench_tls_daemon_stop(&env, err, sizeof(err)) != 0)
            die("%s", err);
    }
    bench_tls_stop();
    for (size_t w = 0; w < 2; w++) {
        bench_result *r = &rep->tls[3 * w];

        r[0].ratio = r[0].ops_per_s / r[2].ops_per_s;
        r[1].ratio = r[1].ops_per_s / r[2].ops_per_s;
    }
    rep->ntls = BENCH_TLS_ROWS;
}

static void handoffs(const bench_env *env, const options *o, bench_report *rep)
{
    int pairs = o->smoke ? 2 : 4;
    size_t each = o->smoke ? 5 : 50;
    char err[BENCH_ERR_MAX];

    for (int push = 1; push >= 0; push--) {
        bench_handoff *h = &rep->handoff[1 - push];

        if (bench_handoff_run(env, push, pairs, each, h, err, sizeof(err)) != 0)
            die("%s", err);
        fprintf(stderr, "  handoff  %s: p50 %.3f ms, p99 %.3f ms\n", h->variant, h->p50_ms,
                h->p99_ms);
    }
}

int main(int argc, char **argv)
{
    options o = parse_args(argc, argv);
    bench_env env = {0};
    bench_report rep = {.mode = o.smoke ? "smoke" : "full", .run_seconds = o.seconds};
    bench_batch gm;
    char err[BENCH_ERR_MAX];
    uint64_t t0 = bench_now_ns();

    read_loadavg(rep.loadavg, sizeof(rep.loadavg));
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    start_servers(&env);
    prepare_env(&env);
    fprintf(stderr, "fmredis-bench: redis-server pid %d, fmredisd pid %d\n", (int)env.redis_pid,
            (int)env.daemon_pid);
    idle_clients(&env, &rep);
    if (bench_batch_init(&gm, "g-", GET_MANY, err, sizeof(err)) != 0 ||
        bench_populate(&env, &gm, err, sizeof(err)) != 0)
        die("populating get_many's executions: %s", err);
    env.get_many = &gm;
    if (o.only == NULL || strcmp(o.only, "tls") != 0)
        run_matrix(&env, &o, &rep);
    if (o.only == NULL || strcmp(o.only, "tls") == 0)
        run_tls(&env, &o, &rep);
    handoffs(&env, &o, &rep);
    big_get_many(&env, &rep);
    if (stop_servers_status() != 0)
        die("fmredisd did not exit within 10 s of SIGTERM");
    rep.total_seconds = (double)(bench_now_ns() - t0) / 1e9;
    bench_report_table(stdout, &rep);
    if (bench_report_csv(o.csv, &rep, err, sizeof(err)) != 0 ||
        bench_report_json(o.json, &rep, err, sizeof(err)) != 0)
        die("%s", err);
    printf("results: %s, %s\n", o.csv, o.json);
    bench_batch_free(&gm);
    fm_fence_free(env.fence);
    free(rep.results);
    return 0;
}
