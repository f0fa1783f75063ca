/* tls.c -- the servers of the TLS rows: a redis-server serving TLS and
 * plain TCP on 127.0.0.1, and fmredisd on it over either.
 *
 * hiredis 0.14 has no TLS, so the direct path cannot use it; what the TLS
 * rows compare is fmredisd over rediss:// against the same daemon over
 * plain TCP (the cost of TLS alone) and hiredis over plain TCP, all on one
 * Redis. The certificates and the TLS redis-server come from the tests'
 * topo_tls.c, the daemon from their harness; the daemon verifies the
 * server's certificate against the CA, as in production.
 *
 * topo_tls.c reports through Check's assertions, which outside a running
 * test only say that they cannot report, and exit. So its helpers run as
 * the one test of a Check runner, in this process (CK_NOFORK: what they
 * start stays ours), and a failure comes back with its message. Its own
 * exit handler removes the certificates also when the bench dies later. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include <check.h>

#include "bench.h"
#include "harness.h"
#include "topo_tls.h"

#define UP_MS 10000                 /* a daemon's TLS handshakes included */
#define DAEMON_ARGS_MAX 32

static fmt_tls_certs certs;
static fmt_tls_redis redis;
static fmt_daemon daemon_;
static char url[64];

START_TEST(start_servers)
{
    fmt_tls_certs_make(&certs);
    fmt_tls_redis_start(&redis, &certs, FMT_TLS_GOOD, 0);
}
END_TEST

int bench_tls_start(bench_env *env, char *err, size_t errlen)
{
    Suite *s = suite_create("bench");
    TCase *tc = tcase_create("tls");
    SRunner *sr;
    int ran, failed;

    tcase_add_test(tc, start_servers);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    /* Named, so that CK_RUN_SUITE or CK_RUN_CASE in the environment cannot
     * skip it; a tag filter still could, hence the count. */
    srunner_run(sr, "bench", "tls", CK_SILENT);
    ran = srunner_ntests_run(sr);
    failed = srunner_ntests_failed(sr);
    if (failed > 0) {
        TestResult **f = srunner_failures(sr);

        bench_fail(err, errlen, "TLS servers: %s", tr_msg(f[0]));
        free(f);
    } else if (ran != 1)
        bench_fail(err, errlen, "TLS servers: Check ran %d tests, not 1 (CK_INCLUDE_TAGS?)",
                   ran);
    srunner_free(sr);
    if (failed > 0 || ran != 1)
        return -1;
    env->redis_sock = redis.r.sock;
    env->redis_pid = redis.r.pid;
    env->redis_port = redis.plain_port;
    return 0;
}

int bench_tls_daemon_start(bench_env *env, int tls, char *err, size_t errlen)
{
    const char *args[DAEMON_ARGS_MAX];
    char why[BENCH_ERR_MAX];
    int n = 0;

    for (; bench_daemon_args[n] != NULL; n++) {
        assert(n < DAEMON_ARGS_MAX - 3);
        args[n] = bench_daemon_args[n];
    }
    if (tls) {
        args[n++] = "--redis_tls_ca_file";
        args[n++] = certs.ca;
        snprintf(url, sizeof(url), "%s", redis.url);
    } else {
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d", redis.plain_port);
    }
    args[n] = NULL;
    if (fmt_daemon_start(&daemon_, url, args) != 0)
        return bench_fail(err, errlen, "fmredisd on %s did not start", url);
    env->daemon_sock = daemon_.sock;
    env->daemon_pid = daemon_.pid;
    if (bench_daemon_await_up(env, UP_MS, why, sizeof(why)) != 0 ||
        bench_redis_await_subscribers(env, 1, UP_MS, why, sizeof(why)) != 0)
        return bench_fail(err, errlen, "fmredisd on %s: %.400s (log: %s)", url, why,
                          daemon_.log);
    return 0;
}

int bench_tls_daemon_stop(const bench_env *env, char *err, size_t errlen)
{
    if (fmt_daemon_stop(&daemon_) != 0)
        return bench_fail(err, errlen, "fmredisd on %s did not exit within 10 s of SIGTERM",
                          url);
    return bench_redis_await_subscribers(env, 0, UP_MS, err, errlen);
}

void bench_tls_stop(void)
{
    if (daemon_.pid > 0)
        fmt_daemon_stop(&daemon_);
    if (redis.r.pid > 0)
        fmt_redis_stop(&redis.r);
    fmt_tls_certs_remove(&certs);
}
