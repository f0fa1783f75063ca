/* test_sentinel.c -- the daemon on a Redis Sentinel deployment
 * (topo_sentinel.c: a master, a replica, three sentinels, quorum 2):
 * the operations against the master the sentinels name, a sentinel that
 * is down or stopped, a wrong sentinel password or master name, and the
 * two failovers, SENTINEL FAILOVER and a SIGKILL of the master; then
 * SENTINEL FAILOVER that the daemon never hears announced, its watched
 * sentinel being stopped, and one past a sentinel that lags. Over TLS
 * (every server and sentinel serving TLS and speaking it to the others,
 * the daemon given the TLS ports alone): the operations, SENTINEL
 * FAILOVER, and a sentinel whose certificate another CA signed.
 *
 * The bounds. A failover takes the sentinels' own time: down-after
 * (FMT_SENTINEL_DOWN_MS) to find a killed master down, an election, the
 * promotion and +switch-master, a few seconds in all; the daemon adds its
 * reconnect (one reconnect_step_ms, then the setup) to that. RECOVER_MS
 * bounds the whole, from the fault to the first lock taken on the new
 * master; it is the sentinels' time that dominates, and they are never
 * under valgrind, so the bound does not grow with a slow daemon beyond
 * its WL_SLACK_MS per step. FOLLOW_MS bounds a failover that no sentinel
 * announced to the daemon, found by its checks (one a second): the
 * switch (about a second), the second sentinel of a majority learning of
 * it (the sentinels tell each other every 2 s), a check (1 s, and once
 * the stopped sentinel's 1 s timeout) and a reconnect, 6 s at the worst;
 * without the checks it took 12 s. The measured times are printed (grep
 * "sentinel: recovered", "sentinel: followed"); docs/SCALING.md reports
 * them. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm_tests.h"
#include "fmredis.h"
#include "harness.h"
#include "ops_suite.h"
#include "topo_sentinel.h"
#include "wire.h"
#include "workload.h"

#define TCASE_TIMEOUT 90
#define RECOVER_MS 20000    /* a failover, from the fault to a lock on the new master */
#define UP_MS 10000         /* a daemon reaching the master at start */
#define TLS_UP_MS 30000     /* the same over TLS: a handshake under valgrind takes seconds */
#define FOLLOW_MS 8000      /* an unannounced failover to the daemon on the new master: 6 s, and slack */
#define HOLD_MS 3000        /* three of the daemon's checks */
#define REQUEST_TIMEOUT "2000"
#define REQUEST_TIMEOUT_MS 2000
#define SENTINEL_PASSWORD "s3ntinel-pw"

/* ---- the daemon on the sentinels ---------------------------------------- */

/* A daemon that finds its master through t's sentinels (list: the
 * redis_sentinels value; NULL: t's three), with more arguments in extra;
 * over TLS when t is, checking the certificates against t's CA. */
static void daemon_start(fmt_daemon *d, const fmt_sentinel_topo *t, const char *list,
                         const char *password, const char *master, int wait_up)
{
    const char *args[24] = {"--redis_sentinels", list ? list : t->list,
                            "--redis_sentinel_master", master ? master : FMT_SENTINEL_MASTER,
                            "--request_timeout_ms", REQUEST_TIMEOUT,
                            "--reconnect_step_ms", "50", "--reconnect_max_ms", "500"};
    int n = 10;

    if (password != NULL) {
        args[n++] = "--redis_sentinel_password";
        args[n++] = password;
    }
    if (t->tls != NULL) {
        args[n++] = "--redis_tls_ca_file";
        args[n++] = t->tls->ca;
    }
    args[n] = NULL;
    /* redis_url supplies only credentials and the database here (and
     * rediss://, TLS on every connection): a URL that could never connect
     * proves the address comes from the sentinels. */
    wire_daemon_start(d, t->tls != NULL ? "rediss://127.0.0.1:1/0" : "redis://127.0.0.1:1/0", args);
    if (wait_up)
        wl_await_ping(d->sock, "\"redis\":\"up\"", t->tls != NULL ? TLS_UP_MS : UP_MS);
}

/* The master's port as sentinel 1 names it (its TLS port over TLS). */
static int master_port(const fmt_sentinel_topo *t)
{
    int port = fmt_sentinel_master_port(t, 1);

    ck_assert_msg(port > 0, "sentinel 1 names no master");
    return port;
}

/* The plain port of the server that listens on port: the test's own
 * commands go there. */
static int plain_port(const fmt_sentinel_topo *t, int port)
{
    int i = fmt_sentinel_node_of(t, port);

    ck_assert_msg(i >= 0, "no server of the topology listens on %d", port);
    return t->redis_port[i];
}

/* ---- operations ---------------------------------------------------------- */

static fmt_sentinel_topo shared;

static void shared_up(void)
{
    ck_assert_msg(fmt_sentinel_start(&shared, SENTINEL_PASSWORD) == 0,
                  "the sentinel topology did not start");
}

static void shared_down(void)
{
    fmt_sentinel_stop(&shared);
}

/* The Sentinel deployment's Redis side for the operations suite
 * (ops_suite.h): every key on the master the sentinels name, a subscriber
 * on the master or its replica. */
typedef struct sentinel_side {
    const fmt_sentinel_topo *t;
    int port;                   /* the master's plain port */
} sentinel_side;

static int master_port_of(void *arg, const char *rkey)
{
    (void)rkey;
    return ((const sentinel_side *)arg)->port;
}

static long long sentinel_subscribers(void *arg, const char *channel)
{
    const fmt_sentinel_topo *t = ((const sentinel_side *)arg)->t;
    long long n = 0;

    for (int i = 0; i < 2; i++) {
        redisContext *c = fmt_tcp_connect(t->redis_port[i]);

        ck_assert_msg(c != NULL, "cannot reach redis on %d", t->redis_port[i]);
        n += wire_redis_numsub(c, channel);
        redisFree(c);
    }
    return n;
}

/* Every operation through the daemon d on t, each checked on the master;
 * wake.signal's PUBLISH runs there, where the daemon's subscription is,
 * so it counts one at least. */
static void operations_on(const fmt_sentinel_topo *t, const fmt_daemon *d)
{
    int named = master_port(t);
    sentinel_side side = {t, plain_port(t, named)};
    ops_redis r = {.port_of = master_port_of, .subscribers = sentinel_subscribers,
                   .arg = &side, .masters = 1, .min_receivers = 1,
                   .request_timeout_ms = REQUEST_TIMEOUT_MS};

    ck_assert_int_eq(fmt_sentinel_node_of(t, named), 0);
    ops_suite_run(d, &r);
    ck_assert_int_eq(fmt_sentinel_master_port(t, 0), named);
}

START_TEST(test_operations_reach_the_master_the_sentinels_name)
{
    fmt_daemon d;

    daemon_start(&d, &shared, NULL, SENTINEL_PASSWORD, NULL, 1);
    operations_on(&shared, &d);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_wrong_sentinel_password_is_a_clear_error)
{
    fmt_daemon d;
    char *log;

    daemon_start(&d, &shared, NULL, "not-the-pw", NULL, 0);
    wl_await_ping(d.sock, "refused AUTH: WRONGPASS", UP_MS);
    log = fmt_slurp(d.log);
    ck_assert_msg(strstr(log, "refused AUTH: WRONGPASS") != NULL, "log: %s", log);
    ck_assert_msg(strstr(log, "not-the-pw") == NULL, "the log shows the password: %s", log);
    free(log);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);

    /* Without one, the sentinels' NOAUTH says what is missing. */
    daemon_start(&d, &shared, NULL, NULL, NULL, 0);
    wl_await_ping(d.sock, "refused PING: NOAUTH", UP_MS);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

START_TEST(test_unknown_master_name_is_a_clear_error)
{
    fmt_daemon d;

    daemon_start(&d, &shared, NULL, SENTINEL_PASSWORD, "no-such-master", 0);
    wl_await_ping(d.sock, "does not know the master", UP_MS);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* ---- sentinels out of reach ---------------------------------------------- */

START_TEST(test_down_or_stopped_sentinel_is_skipped_within_its_timeout)
{
    fmt_sentinel_topo t;
    fmt_daemon d;
    char list[160], *log;
    int64_t t0, took;
    fm_client *c;
    fm_lock l;

    ck_assert_int_eq(fmt_sentinel_start(&t, NULL), 0);
    /* First a port where nothing listens, then a sentinel that takes the
     * connection but never answers (stopped), then the two others. */
    snprintf(list, sizeof(list), "127.0.0.1:%d 127.0.0.1:%d 127.0.0.1:%d 127.0.0.1:%d",
             fmt_unused_port(), t.sentinel_port[0], t.sentinel_port[1], t.sentinel_port[2]);
    ck_assert_int_eq(kill(t.sentinel_pid[0], SIGSTOP), 0);
    t0 = fmt_now_ms();
    daemon_start(&d, &t, list, NULL, NULL, 1);
    took = fmt_now_ms() - t0;
    fprintf(stderr, "sentinel: up past a dead and a stopped sentinel in %lld ms\n",
            (long long)took);
    /* The stopped one costs its 1 s; the dead one is refused at once. */
    ck_assert_msg(took <= 1000 + UP_MS, "up after %lld ms", (long long)took);
    c = fmt_client(&d);
    ck_assert_int_eq(wl_try_lock(c, "sen:skip", &l, REQUEST_TIMEOUT_MS), 1);
    ck_assert(wl_exists_on(t.redis_port[0], "fm:lock:sen:skip"));
    fm_client_free(c);
    log = fmt_slurp(d.log);
    ck_assert_msg(strstr(log, "Connection refused") != NULL, "log: %s", log);
    ck_assert_msg(strstr(log, "timed out") != NULL, "log: %s", log);
    free(log);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    kill(t.sentinel_pid[0], SIGCONT);
    fmt_sentinel_stop(&t);
}
END_TEST

/* ---- failovers ------------------------------------------------------------ */

typedef struct log_has {
    const char *path;
    char needle[96];
} log_has;

static int log_holds(void *arg)
{
    const log_has *lh = arg;
    char *text = fmt_slurp(lh->path);
    int yes = strstr(text, lh->needle) != NULL;

    free(text);
    return yes;
}

/* What the daemon logs once its command link is up on the master at port. */
static void link_up_line(char *out, size_t size, int port)
{
    snprintf(out, size, "command link up, master at 127.0.0.1:%d", port);
}

/* Waits until the daemon's command link is up on the master at port, at
 * most timeout_ms after t0, and returns when it was, in ms since t0. */
static int64_t await_link_on(const fmt_daemon *d, int port, int64_t t0, int timeout_ms)
{
    log_has lh;

    lh.path = d->log;
    link_up_line(lh.needle, sizeof(lh.needle), port);
    ck_assert_msg(fmt_wait_until(log_holds, &lh, timeout_ms - (int)(fmt_now_ms() - t0)),
                  "the daemon was not on the new master within %d ms", timeout_ms);
    return fmt_now_ms() - t0;
}

/* Takes fresh locks until `n` are taken; each taken lock must be on the
 * new master at once (a write to the old one would not be). Returns when
 * the first was taken, in ms since t0. */
static int64_t await_locks_on(fm_client *c, int port, int64_t t0, int n)
{
    int64_t first = -1;
    char key[64], redis_key[80];
    fm_lock l;

    for (int i = 0, taken = 0; taken < n; i++) {
        snprintf(key, sizeof(key), "sen:after:%d", i);
        if (wl_try_lock(c, key, &l, REQUEST_TIMEOUT_MS) != 1) {
            ck_assert_msg(fmt_now_ms() - t0 <= RECOVER_MS,
                          "no lock on the new master within %d ms", RECOVER_MS);
            continue;
        }
        snprintf(redis_key, sizeof(redis_key), "fm:lock:%s", key);
        ck_assert_msg(wl_exists_on(port, redis_key), "lock %s was not written to the new master",
                      key);
        if (first < 0)
            first = fmt_now_ms() - t0;
        taken++;
    }
    return first;
}

/* The common course of a failover: fault() makes it happen; the daemon
 * must follow to the other node within RECOVER_MS, every lock taken after
 * it learnt of the switch on the new master, and wakes flowing again.
 * Through the outage a probe (workload.h's wl_probe) sends an acquire
 * after another: each answered within request_timeout_ms and a slack,
 * with a lock (on the new master, once the daemon is there) or
 * redis_unavailable, never hanging, never going to a replica. Over TLS
 * with the certificates tls (NULL: plain). */
static void failover(void (*fault)(fmt_sentinel_topo *t, int old), const char *what,
                     int exclusive, const fmt_tls_certs *tls)
{
    fmt_sentinel_topo t;
    fmt_daemon d;
    fm_client *c, *sub, *pub;
    wl_locks w;
    char up_line[96];
    wl_probe probe = {.sock = d.sock, .stem = "sen:probe:", .log = d.log, .up_needle = up_line,
                      .request_timeout_ms = REQUEST_TIMEOUT_MS};
    int64_t t0, first;
    int old, now;

    ck_assert_int_eq(fmt_sentinel_start_tls(&t, NULL, tls), 0);
    daemon_start(&d, &t, NULL, NULL, NULL, 1);
    old = master_port(&t);
    c = fmt_client(&d);
    sub = fmt_client(&d);
    pub = fmt_client(&d);
    fmt_ok(sub, fm_wake_subscribe(sub, "sen:wake", NULL, NULL, 0), "subscribe");
    fmt_ok(pub, fm_wake_signal(pub, "before", "sen:wake", NULL), "signal");
    wl_expect_wake(sub, "before", WIRE_REPLY_MS);
    wl_locks_start(&w, d.sock, (const char *const[]){"sentinel:mx"}, 1, 3);
    wl_await_count(&w.taken, 10, RECOVER_MS, "locks taken");
    /* The replica is the only node the sentinels can promote. */
    link_up_line(up_line, sizeof(up_line),
                 fmt_sentinel_port(&t, 1 - fmt_sentinel_node_of(&t, old)));
    wl_probe_start(&probe);
    wl_await_count(&probe.attempts, 3, RECOVER_MS, "probe's acquires before the fault");

    t0 = fmt_now_ms();
    wl_probe_fault(&probe);
    fault(&t, old);
    ck_assert_msg(fmt_sentinel_await_switch(&t, old, RECOVER_MS),
                  "the sentinels did not switch within %d ms", RECOVER_MS);
    now = master_port(&t);
    ck_assert_int_ne(now, old);
    /* Once the daemon has heard of the switch, no write goes elsewhere. */
    await_link_on(&d, now, t0, RECOVER_MS);
    atomic_store(&w.mark, 1);
    first = await_locks_on(c, plain_port(&t, now), t0, 20);
    fprintf(stderr, "sentinel: recovered from %s in %lld ms (sentinels switched, daemon on "
            "the new master, a lock taken there)\n", what, (long long)first);
    wl_await_count(&probe.taken_up, 4, RECOVER_MS, "probe's locks on the new master");
    wl_probe_stop(&probe);
    wl_probe_check(&probe, plain_port(&t, now), what);

    wl_await_resubscribed(sub, RECOVER_MS);
    fmt_ok(pub, fm_wake_signal(pub, "after", "sen:wake", NULL), "signal after");
    wl_expect_wake(sub, "after", WIRE_REPLY_MS);

    wl_await_count(&w.taken_after, 10, RECOVER_MS, "locks taken after the switch");
    wl_locks_stop(&w);
    fprintf(stderr, "sentinel: %s: workload took the lock %ld times (%ld after the switch), "
            "%d overlaps\n", what, (long)atomic_load(&w.taken), (long)atomic_load(&w.taken_after),
            atomic_load(&w.overlaps));
    ck_assert_msg(atomic_load(&w.taken_after) > 0, "the workload never took the lock again");
    ck_assert_msg(atomic_load(&w.unexpected) == 0, "%d unexpected answers to the workload, "
                  "the first: %s", atomic_load(&w.unexpected), w.why);
    if (exclusive)
        ck_assert_int_eq(atomic_load(&w.overlaps), 0);
    fm_client_free(c);
    fm_client_free(sub);
    fm_client_free(pub);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    fmt_sentinel_stop(&t);
}

/* SENTINEL FAILOVER through sentinel i, which does it alone (no vote). */
static void failover_via(fmt_sentinel_topo *t, int i)
{
    redisContext *s = fmt_sentinel_connect(t, i);
    redisReply *r;

    ck_assert_ptr_nonnull(s);
    r = redisCommand(s, "SENTINEL FAILOVER %s", FMT_SENTINEL_MASTER);
    ck_assert_msg(r != NULL && r->type == REDIS_REPLY_STATUS, "SENTINEL FAILOVER: %s",
                  r && r->str ? r->str : "no reply");
    freeReplyObject(r);
    redisFree(s);
}

static void sentinel_failover(fmt_sentinel_topo *t, int old)
{
    (void)old;
    failover_via(t, 0);
}

static void kill_master(fmt_sentinel_topo *t, int old)
{
    fmt_reap(&t->redis_pid[fmt_sentinel_node_of(t, old)], SIGKILL);
}

/* The old master stays writable for seconds after SENTINEL FAILOVER: the
 * daemon follows +switch-master, not READONLY. Locks taken on the old
 * master in between are lost with it, so the workload may see two holders
 * then (docs/SCALING.md): counted, not asserted. */
START_TEST(test_sentinel_failover_is_followed)
{
    failover(sentinel_failover, "SENTINEL FAILOVER", 0, NULL);
}
END_TEST

/* A killed master has replicated every lock it granted (the reply and the
 * replication stream leave in the same turn of its loop): the workload
 * must never see two holders. */
START_TEST(test_killed_master_is_replaced)
{
    failover(kill_master, "a SIGKILL of the master", 1, NULL);
}
END_TEST

/* ---- a watched sentinel that falls silent --------------------------------- */

/* Whether sentinel 0 has a subscriber: the daemon's watcher (the test
 * itself subscribes nowhere). */
static int sentinel0_watched(void *arg)
{
    redisContext *c = fmt_sentinel_connect(arg, 0);
    redisReply *r;
    int yes;

    if (c == NULL)
        return 0;
    r = redisCommand(c, "CLIENT LIST");
    yes = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, " sub=1 ") != NULL;
    freeReplyObject(r);
    redisFree(c);
    return yes;
}

/* A stopped sentinel keeps its connections open and says nothing: the
 * daemon watching it hears no +switch-master, and the old master takes
 * writes for about ten seconds after SENTINEL FAILOVER. The daemon watches
 * the first of redis_sentinels first; that one is stopped, the failover
 * goes through another, and the daemon must be on the new master within
 * FOLLOW_MS all the same (its checks ask the sentinels every second, and
 * its watcher finds its sentinel silent), every lock after on the new
 * master. */
START_TEST(test_failover_behind_a_stopped_watched_sentinel_is_followed)
{
    fmt_sentinel_topo t;
    fmt_daemon d;
    fm_client *c;
    fm_lock l;
    char needle[96], *log;
    int old, now;
    int64_t t0, took, first;

    ck_assert_int_eq(fmt_sentinel_start(&t, NULL), 0);
    daemon_start(&d, &t, NULL, NULL, NULL, 1);
    ck_assert_msg(fmt_wait_until(sentinel0_watched, &t, UP_MS),
                  "the daemon does not watch sentinel 0");
    old = master_port(&t);
    now = t.redis_port[1 - fmt_sentinel_node_of(&t, old)];
    c = fmt_client(&d);
    ck_assert_int_eq(wl_try_lock(c, "sen:before", &l, REQUEST_TIMEOUT_MS), 1);
    ck_assert(wl_exists_on(old, "fm:lock:sen:before"));

    ck_assert_int_eq(kill(t.sentinel_pid[0], SIGSTOP), 0);
    t0 = fmt_now_ms();
    failover_via(&t, 1);
    took = await_link_on(&d, now, t0, FOLLOW_MS);
    first = await_locks_on(c, now, t0, 5);
    fprintf(stderr, "sentinel: followed SENTINEL FAILOVER past a stopped watched sentinel in "
            "%lld ms (a lock taken on the new master after %lld ms)\n", (long long)took,
            (long long)first);
    log = fmt_slurp(d.log);
    snprintf(needle, sizeof(needle), "sentinel 127.0.0.1:%d: not watching it",
             t.sentinel_port[0]);
    ck_assert_msg(strstr(log, needle) != NULL, "the watcher stayed on the stopped sentinel: "
                  "%s", log);
    free(log);
    fm_client_free(c);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    kill(t.sentinel_pid[0], SIGCONT);
    fmt_sentinel_stop(&t);
}
END_TEST

/* A sentinel that lags names the old master, which takes writes for
 * seconds after SENTINEL FAILOVER. Here one never learns of the failover,
 * and it is the first of redis_sentinels: asked first, watched first. It
 * must neither hold the daemon on the old master nor pull it back there:
 * the other two are a majority. Locks are taken for HOLD_MS after the
 * switch, each on the new master, while the daemon's checks go on. */
START_TEST(test_lagging_sentinel_is_outvoted)
{
    fmt_sentinel_topo t;
    fmt_fake_sentinel fake;
    fmt_daemon d;
    fm_client *c;
    char list[96], needle[96], *log;
    int old, now, i = 0;
    int64_t t0, took;
    fm_lock l;

    ck_assert_int_eq(fmt_sentinel_start(&t, NULL), 0);
    old = master_port(&t);
    now = t.redis_port[1 - fmt_sentinel_node_of(&t, old)];
    ck_assert_int_eq(fmt_fake_sentinel_start(&fake, old), 0);
    snprintf(list, sizeof(list), "127.0.0.1:%d 127.0.0.1:%d 127.0.0.1:%d", fake.port,
             t.sentinel_port[1], t.sentinel_port[2]);
    daemon_start(&d, &t, list, NULL, NULL, 1);
    c = fmt_client(&d);

    t0 = fmt_now_ms();
    failover_via(&t, 1);
    took = await_link_on(&d, now, t0, FOLLOW_MS);
    fprintf(stderr, "sentinel: followed SENTINEL FAILOVER past a lagging sentinel in %lld ms\n",
            (long long)took);
    await_locks_on(c, now, t0, 1);
    for (int64_t t1 = fmt_now_ms(); fmt_now_ms() - t1 < HOLD_MS; i++) {
        char key[64], redis_key[80];

        snprintf(key, sizeof(key), "sen:held:%d", i);
        ck_assert_int_eq(wl_try_lock(c, key, &l, REQUEST_TIMEOUT_MS), 1);
        snprintf(redis_key, sizeof(redis_key), "fm:lock:%s", key);
        ck_assert_msg(wl_exists_on(now, redis_key), "lock %s was not written to the new master",
                      key);
    }
    log = fmt_slurp(d.log);
    snprintf(needle, sizeof(needle), "is at 127.0.0.1:%d now", old);
    ck_assert_msg(strstr(log, needle) == NULL, "the daemon went back: %s", log);
    free(log);
    fm_client_free(c);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    fmt_fake_sentinel_stop(&fake);
    fmt_sentinel_stop(&t);
}
END_TEST

/* ---- over TLS -------------------------------------------------------------- */

static fmt_tls_certs certs;

static void certs_up(void)
{
    fmt_tls_certs_make(&certs);
}

static void certs_down(void)
{
    fmt_tls_certs_remove(&certs);
}

/* Whether the daemon reaches t by TLS alone: on every server and sentinel
 * no application comes in through the plain port (the test's own
 * connections, closed, may take a moment to go), and through the TLS
 * ports come the daemon's two links to the master, none to the replica,
 * and its questions to two sentinels at least (the majority it asks
 * before it connects, whose connections stay open). */
static int daemon_on_tls_only(void *arg)
{
    const fmt_sentinel_topo *t = arg;
    int m = fmt_sentinel_node_of(t, fmt_sentinel_master_port(t, 1)), apps[2] = {0, 0};
    int sentinels = 0;

    for (int i = 0; i < 2; i++)
        if (!fmt_tls_only(fmt_tcp_connect(t->redis_port[i]), t->redis_port[i],
                          t->redis_tls_port[i], &apps[i]))
            return 0;
    for (int i = 0; i < 3; i++)
        if (!fmt_tls_only(fmt_sentinel_connect(t, i), t->sentinel_port[i],
                          t->sentinel_tls_port[i], &sentinels))
            return 0;
    return m >= 0 && apps[m] >= 2 && apps[1 - m] == 0 && sentinels >= 2;
}

/* Given the sentinels' TLS ports alone and a rediss:// URL, the daemon
 * verifies each certificate against the CA; the sentinels (with a
 * password) name the master's TLS port. Every operation lands on that
 * master, and CLIENT LIST shows the daemon only on the TLS ports. */
START_TEST(test_operations_over_tls_reach_the_master_the_sentinels_name)
{
    fmt_sentinel_topo t;
    fmt_daemon d;

    ck_assert_int_eq(fmt_sentinel_start_tls(&t, SENTINEL_PASSWORD, &certs), 0);
    ck_assert_int_eq(master_port(&t), t.redis_tls_port[0]);
    daemon_start(&d, &t, NULL, SENTINEL_PASSWORD, NULL, 1);
    operations_on(&t, &d);
    ck_assert_msg(fmt_wait_until(daemon_on_tls_only, &t, TLS_UP_MS),
                  "within %d ms, CLIENT LIST did not show the daemon on the TLS ports alone",
                  TLS_UP_MS);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    fmt_sentinel_stop(&t);
}
END_TEST

/* The failover of test_sentinel_failover_is_followed with every server,
 * sentinel and connection on TLS: the sentinels announce the new master's
 * TLS port, and the daemon's log names it once it is there. */
START_TEST(test_sentinel_failover_over_tls_is_followed)
{
    failover(sentinel_failover, "SENTINEL FAILOVER over TLS", 0, &certs);
}
END_TEST

/* A sentinel whose certificate another CA signed is refused, and ping
 * says why. A TLS redis-server stands in for it: the handshake fails
 * before any command. */
START_TEST(test_sentinel_of_another_ca_is_refused_as_unknown_ca)
{
    fmt_sentinel_topo none = {.tls = &certs};
    fmt_tls_redis other;
    fmt_daemon d;
    char list[32];

    fmt_tls_redis_start(&other, &certs, FMT_TLS_OTHER_CA, 0);
    snprintf(list, sizeof(list), "127.0.0.1:%d", other.port);
    daemon_start(&d, &none, list, NULL, NULL, 0);
    wl_await_ping(d.sock, "signed by an unknown CA", TLS_UP_MS);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    fmt_redis_stop(&other.r);
}
END_TEST

Suite *fm_suite_sentinel(void)
{
    Suite *s = suite_create("sentinel");
    TCase *tc = fmt_tcase(s, "serve", shared_up, shared_down, TCASE_TIMEOUT);

    tcase_add_test(tc, test_operations_reach_the_master_the_sentinels_name);
    tcase_add_test(tc, test_wrong_sentinel_password_is_a_clear_error);
    tcase_add_test(tc, test_unknown_master_name_is_a_clear_error);
    tc = fmt_tcase(s, "reach", NULL, NULL, TCASE_TIMEOUT);
    tcase_add_test(tc, test_down_or_stopped_sentinel_is_skipped_within_its_timeout);
    tc = fmt_tcase(s, "failover", NULL, NULL, TCASE_TIMEOUT);
    tcase_add_test(tc, test_sentinel_failover_is_followed);
    tcase_add_test(tc, test_killed_master_is_replaced);
    tcase_add_test(tc, test_failover_behind_a_stopped_watched_sentinel_is_followed);
    tcase_add_test(tc, test_lagging_sentinel_is_outvoted);
    tc = fmt_tcase(s, "tls", certs_up, certs_down, TCASE_TIMEOUT);
    tcase_add_test(tc, test_operations_over_tls_reach_the_master_the_sentinels_name);
    tcase_add_test(tc, test_sentinel_failover_over_tls_is_followed);
    tcase_add_test(tc, test_sentinel_of_another_ca_is_refused_as_unknown_ca);
    return s;
}
