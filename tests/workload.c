/* workload.c -- the fault tests' shared workloads and waits (workload.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <hiredis/hiredis.h>

#include "topo_sentinel.h"
#include "wire.h"
#include "workload.h"

#define CLIENT_TIMEOUT_MS 10000     /* far above any deadline the tests give the daemon */

/* Keeps the first thing that went wrong; the later ones are only counted. */
__attribute__((format(printf, 4, 5)))
static void note_wrong(atomic_int *count, char *why, size_t size, const char *fmt, ...)
{
    va_list ap;

    if (atomic_fetch_add(count, 1) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
}

/* Whether an error the daemon may give while Redis is failing over or a
 * slot moves. redis_unavailable is the contract's word for that
 * (docs/PROTOCOL.md §6 and §14): no master within the deadline, a link
 * that dropped with the command in flight, TRYAGAIN or CLUSTERDOWN until
 * the deadline. timeout, "Redis was connected but did not answer within
 * request_timeout_ms", is taken too, though no server hangs in these
 * faults: a command held through the outage goes when a master is back,
 * and one that goes at the very end of its deadline is answered after
 * it, which a few workers at it for seconds may meet. wl_probe, one
 * request at a time with the daemon's log at hand, tells that case from a
 * timeout while no master was reached (a daemon waiting on a connection
 * that is gone), and fails the test on the latter. */
static int outage_error(const fm_client *c)
{
    const char *code = fm_client_errcode(c);

    return fm_client_err(c) == FM_ERR_SERVER
           && (strcmp(code, "redis_unavailable") == 0 || strcmp(code, "timeout") == 0);
}

/* ---- holders of a few locks ---------------------------------------------- */

static void hold(wl_locks *w, fm_client *c, int k, const fm_lock *l)
{
    if (atomic_fetch_add(&w->holders[k], 1) != 0)
        atomic_fetch_add(&w->overlaps, 1);
    atomic_fetch_add(&w->taken, 1);
    if (atomic_load(&w->mark))
        atomic_fetch_add(&w->taken_after, 1);
    usleep(3000);
    atomic_fetch_sub(&w->holders[k], 1);
    /* A release that fails (the master went) leaves the lock to its TTL
     * on whichever master has it. */
    fm_lock_release(c, w->keys[k], l->token, NULL, NULL);
}

static void *lock_worker(void *arg)
{
    wl_locks *w = arg;
    int first = atomic_fetch_add(&w->started, 1);
    fm_client *c = fm_connect(w->sock, CLIENT_TIMEOUT_MS);
    fm_lock_opts o;
    fm_lock l;

    if (c == NULL)
        return NULL;
    fm_lock_opts_init(&o);
    o.ttl_ms = 5000;
    o.retry_delay_ms = 10;
    o.max_retries = 100;
    for (int turn = first; !atomic_load(&w->stop); turn++) {
        int k = turn % w->nkeys;

        if (fm_lock_acquire(c, w->keys[k], &o, &l) == FM_OK && l.acquired) {
            hold(w, c, k, &l);
            continue;
        }
        if (fm_client_err(c) != FM_ERR_NONE) {
            atomic_fetch_add(&w->failed, 1);
            if (!outage_error(c))
                note_wrong(&w->unexpected, w->why, sizeof(w->why), "acquire %s: %s (%s) %s",
                           w->keys[k], fm_client_error_name(fm_client_err(c)),
                           fm_client_errcode(c), fm_client_errstr(c));
        }
        if (!fm_client_connected(c))
            fm_client_reconnect(c);
        usleep(10000);
    }
    fm_client_free(c);
    return NULL;
}

void wl_locks_start(wl_locks *w, const char *sock, const char *const *keys, int nkeys,
                    int nworkers)
{
    ck_assert(nkeys > 0 && nkeys <= WL_KEYS_MAX);
    ck_assert(nworkers > 0 && nworkers <= WL_WORKERS_MAX);
    memset(w, 0, sizeof(*w));
    w->sock = sock;
    w->keys = keys;
    w->nkeys = nkeys;
    w->nworkers = nworkers;
    for (int i = 0; i < nworkers; i++)
        ck_assert_int_eq(pthread_create(&w->threads[i], NULL, lock_worker, w), 0);
}

void wl_locks_stop(wl_locks *w)
{
    atomic_store(&w->stop, 1);
    for (int i = 0; i < w->nworkers; i++)
        pthread_join(w->threads[i], NULL);
}

/* ---- a reader of one batch ----------------------------------------------- */

/* Whether the answer is exactly b's set; else why not, in b->why. */
static void check_batch(wl_batch *b, const fm_cache_entry *e, size_t count)
{
    char *seen = calloc(b->n, 1);

    if (seen == NULL)
        abort();
    if (count != b->n)
        note_wrong(&b->wrong, b->why, sizeof(b->why),
                   "get_many of %zu stored ids answered %zu of them", b->n, count);
    for (size_t i = 0; i < count; i++) {
        size_t k = 0;

        while (k < b->n && strcmp(b->ids[k], e[i].id) != 0)
            k++;
        if (k == b->n || seen[k] || strcmp(b->values[k], e[i].json) != 0) {
            note_wrong(&b->wrong, b->why, sizeof(b->why),
                       "get_many answered %s: %.200s (%s)", e[i].id, e[i].json,
                       k == b->n ? "not asked for" : seen[k] ? "twice" : "not the stored value");
            break;
        }
        seen[k] = 1;
    }
    free(seen);
}

/* A complete answer came: the time since the one before may be the
 * longest gap. */
static void gap(wl_batch *b)
{
    int64_t now = fmt_now_ms();

    if (b->last_complete_ms != 0 && now - b->last_complete_ms > b->longest_gap_ms) {
        b->longest_gap_ms = now - b->last_complete_ms;
        b->gap_end_ms = now;
    }
    b->last_complete_ms = now;
}

static void *batch_reader(void *arg)
{
    wl_batch *b = arg;
    fm_client *c = fm_connect(b->sock, CLIENT_TIMEOUT_MS);

    if (c == NULL)
        return NULL;
    while (!atomic_load(&b->stop)) {
        int after = atomic_load(&b->mark);
        fm_cache_entry *e = NULL;
        size_t count = 0;

        atomic_fetch_add(&b->started, 1);
        if (fm_cache_get_many(c, b->ids, b->n, &e, &count) == FM_OK) {
            check_batch(b, e, count);
            fm_cache_entries_free(e, count);
            atomic_fetch_add(&b->complete, 1);
            if (after)
                atomic_fetch_add(&b->complete_after, 1);
            gap(b);
        } else {
            atomic_fetch_add(&b->failed, 1);
            if (!outage_error(c))
                note_wrong(&b->wrong, b->why, sizeof(b->why), "get_many: %s (%s) %s",
                           fm_client_error_name(fm_client_err(c)), fm_client_errcode(c),
                           fm_client_errstr(c));
            if (!fm_client_connected(c))
                fm_client_reconnect(c);
        }
        usleep(2000);
    }
    fm_client_free(c);
    return NULL;
}

void wl_batch_start(wl_batch *b, const char *sock, const char *const *ids,
                    const char *const *values, size_t n)
{
    memset(b, 0, sizeof(*b));
    b->sock = sock;
    b->ids = ids;
    b->values = values;
    b->n = n;
    ck_assert_int_eq(pthread_create(&b->thread, NULL, batch_reader, b), 0);
}

void wl_batch_stop(wl_batch *b)
{
    atomic_store(&b->stop, 1);
    pthread_join(b->thread, NULL);
}

typedef struct count_above {
    atomic_long *counter;
    long value;
} count_above;

static int counted(void *arg)
{
    const count_above *ca = arg;

    return atomic_load(ca->counter) > ca->value;
}

void wl_await_count(atomic_long *counter, long value, int timeout_ms, const char *what)
{
    count_above ca = {counter, value};

    ck_assert_msg(fmt_wait_until(counted, &ca, timeout_ms), "%s: not more than %ld within %d ms",
                  what, value, timeout_ms);
}

/* ---- a prober of a failover's outage -------------------------------------- */

/* Whether the file holds needle; never fails the test (a thread's). */
static int file_holds(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t cap = 0;
    int yes;

    if (f == NULL)
        return 0;
    yes = getdelim(&text, &cap, '\0', f) > 0 && strstr(text, needle) != NULL;
    free(text);
    fclose(f);
    return yes;
}

/* Judges one answer to an acquire of key begun at t0 (up: whether the
 * daemon was on the new master then), as wl_probe says. */
static void probe_judge(wl_probe *p, fm_client *c, const char *key, int got, int64_t t0, int up)
{
    int64_t took = fmt_now_ms() - t0;
    int up_now = up || file_holds(p->log, p->up_needle);
    const char *code = fm_client_errcode(c);

    if (took > p->longest_ms)
        p->longest_ms = took;
    if (atomic_load(&p->fault_ms) != 0 && !up_now)
        atomic_fetch_add(&p->during, 1);
    if (took > p->request_timeout_ms + WL_SLACK_MS)
        note_wrong(&p->wrong, p->why, sizeof(p->why), "acquire %s answered after %lld ms", key,
                   (long long)took);
    if (got == 0)
        note_wrong(&p->wrong, p->why, sizeof(p->why), "acquire %s: held, but no one took it",
                   key);
    if (got == 1 && up) {
        long k = atomic_fetch_add(&p->taken_up, 1);

        if (k < WL_PROBE_KEYS)
            snprintf(p->up_keys[k], sizeof(p->up_keys[k]), "%s", key);
    }
    if (got >= 0)
        return;
    atomic_fetch_add(&p->failed, 1);
    if (fm_client_err(c) == FM_ERR_SERVER && strcmp(code, "redis_unavailable") == 0)
        return;
    if (fm_client_err(c) == FM_ERR_SERVER && strcmp(code, "timeout") == 0) {
        atomic_fetch_add(&p->timeouts, 1);
        if (up_now && took >= p->request_timeout_ms)
            return;
    }
    note_wrong(&p->wrong, p->why, sizeof(p->why), "acquire %s after %lld ms, %s on the new "
               "master: %s (%s) %s", key, (long long)took, up_now ? "up" : "not yet",
               fm_client_error_name(fm_client_err(c)), code, fm_client_errstr(c));
}

static void *prober(void *arg)
{
    wl_probe *p = arg;
    fm_client *c = fm_connect(p->sock, CLIENT_TIMEOUT_MS);
    fm_lock_opts o;

    if (c == NULL)
        return NULL;
    fm_lock_opts_init(&o);
    o.ttl_ms = 30000;
    o.max_retries = FM_LOCK_NO_RETRY;
    /* Left where they were taken when the probe's client closes, for
     * wl_probe_check to find. */
    o.on_disconnect = FM_ON_DISCONNECT_KEEP;
    for (long i = 0; !atomic_load(&p->stop); i++) {
        char key[48];
        int up = file_holds(p->log, p->up_needle), got = -1;
        int64_t t0 = fmt_now_ms();
        fm_lock l;

        snprintf(key, sizeof(key), "%s%ld", p->stem, i);
        if (fm_lock_acquire(c, key, &o, &l) == FM_OK)
            got = l.acquired;
        atomic_fetch_add(&p->attempts, 1);
        probe_judge(p, c, key, got, t0, up);
        if (!fm_client_connected(c))
            fm_client_reconnect(c);
        usleep(5000);
    }
    fm_client_free(c);
    return NULL;
}

void wl_probe_start(wl_probe *p)
{
    ck_assert(p->sock != NULL && p->stem != NULL && p->log != NULL && p->up_needle != NULL);
    ck_assert_int_gt(p->request_timeout_ms, 0);
    ck_assert_int_eq(pthread_create(&p->thread, NULL, prober, p), 0);
}

void wl_probe_fault(wl_probe *p)
{
    atomic_store(&p->fault_ms, (long)fmt_now_ms());
}

void wl_probe_stop(wl_probe *p)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
}

void wl_probe_check(wl_probe *p, int port, const char *what)
{
    long kept = atomic_load(&p->taken_up);

    fprintf(stderr, "%s: the probe's %ld acquires: %ld answered during the outage, %ld "
            "failed (%ld timeouts), %ld taken on the new master; the slowest answered in "
            "%lld ms\n", what, atomic_load(&p->attempts), atomic_load(&p->during),
            atomic_load(&p->failed), atomic_load(&p->timeouts), kept,
            (long long)p->longest_ms);
    ck_assert_msg(atomic_load(&p->wrong) == 0, "%d wrong answers to the probe, the first: %s",
                  atomic_load(&p->wrong), p->why);
    ck_assert_msg(atomic_load(&p->during) > 0, "the probe had no answer during the outage");
    ck_assert_msg(kept > 0, "the probe took no lock on the new master");
    for (long i = 0; i < kept && i < WL_PROBE_KEYS; i++) {
        char rkey[64];

        snprintf(rkey, sizeof(rkey), "fm:lock:%s", p->up_keys[i]);
        ck_assert_msg(wl_exists_on(port, rkey), "%s, taken once the daemon was on the new "
                      "master, is not there", rkey);
    }
}

/* ---- the daemon's answers ------------------------------------------------ */

/* wl_try_lock, and wl_try_lock_hung when hung is set. */
static int try_lock(fm_client *c, const char *key, fm_lock *l, int request_timeout_ms, int hung)
{
    fm_lock_opts o;
    int64_t t0 = fmt_now_ms();

    fm_lock_opts_init(&o);
    o.ttl_ms = 30000;
    o.max_retries = FM_LOCK_NO_RETRY;
    if (fm_lock_acquire(c, key, &o, l) == FM_OK)
        return l->acquired;
    ck_assert_msg(fm_client_err(c) == FM_ERR_SERVER &&
                  (strcmp(fm_client_errcode(c), "redis_unavailable") == 0
                   || (hung && strcmp(fm_client_errcode(c), "timeout") == 0)),
                  "acquire %s during a failover: %s (%s) %s", key,
                  fm_client_error_name(fm_client_err(c)), fm_client_errcode(c),
                  fm_client_errstr(c));
    /* Waited for a master at most request_timeout_ms, then said so. */
    ck_assert_msg(fmt_now_ms() - t0 <= request_timeout_ms + WL_SLACK_MS,
                  "a failed acquire took %lld ms", (long long)(fmt_now_ms() - t0));
    return -1;
}

int wl_try_lock(fm_client *c, const char *key, fm_lock *l, int request_timeout_ms)
{
    return try_lock(c, key, l, request_timeout_ms, 0);
}

int wl_try_lock_hung(fm_client *c, const char *key, fm_lock *l, int request_timeout_ms)
{
    return try_lock(c, key, l, request_timeout_ms, 1);
}

/* wl_expect_wake, and wl_expect_next_wake when next is set. */
static void expect_wake(fm_client *c, const char *id, int timeout_ms, int next)
{
    int64_t end = fmt_now_ms() + timeout_ms;

    for (;;) {
        int64_t left = end - fmt_now_ms();
        fm_event e;

        ck_assert_msg(left > 0, "no wake %s within %d ms", id, timeout_ms);
        fmt_ok(c, fm_event_wait(c, &e, (int)left), "waiting for a wake");
        if (e.type == FM_EVENT_WAKE && next)
            ck_assert_msg(strcmp(e.execution_id, id) == 0, "wake %s on %s came before %s",
                          e.execution_id, e.channel, id);
        if (e.type == FM_EVENT_WAKE && strcmp(e.execution_id, id) == 0) {
            fm_event_clear(&e);
            return;
        }
        fm_event_clear(&e);
    }
}

void wl_expect_wake(fm_client *c, const char *id, int timeout_ms)
{
    expect_wake(c, id, timeout_ms, 0);
}

void wl_expect_next_wake(fm_client *c, const char *id, int timeout_ms)
{
    expect_wake(c, id, timeout_ms, 1);
}

void wl_await_resubscribed(fm_client *c, int timeout_ms)
{
    int64_t end = fmt_now_ms() + timeout_ms;
    int down = 0;

    for (;;) {
        int64_t left = end - fmt_now_ms();
        fm_event e;

        ck_assert_msg(left > 0, "the wake subscription was not restored within %d ms",
                      timeout_ms);
        fmt_ok(c, fm_event_wait(c, &e, (int)left), "waiting for redis events");
        if (e.type == FM_EVENT_REDIS && !e.redis_up)
            down = 1;
        if (e.type == FM_EVENT_REDIS && e.redis_up && down) {
            fm_event_clear(&e);
            return;
        }
        fm_event_clear(&e);
    }
}

typedef struct ping_says {
    const char *sock;
    const char *needle;
} ping_says;

static int pings(void *arg)
{
    const ping_says *p = arg;

    return wire_ping_says(p->sock, p->needle);
}

void wl_await_ping(const char *sock, const char *needle, int timeout_ms)
{
    ping_says p = {sock, needle};

    ck_assert_msg(fmt_wait_until(pings, &p, timeout_ms), "ping never said %s", needle);
}

/* ---- Redis's side --------------------------------------------------------- */

/* key's reply from the Redis on port (caller frees). */
static redisReply *ask(int port, const char *cmd, const char *key)
{
    redisContext *c = fmt_tcp_connect(port);
    redisReply *r;

    ck_assert_msg(c != NULL, "cannot reach redis on %d", port);
    r = redisCommand(c, "%s %s", cmd, key);
    ck_assert_msg(r != NULL && r->type != REDIS_REPLY_ERROR, "%s %s on %d: %s", cmd, key, port,
                  r != NULL ? r->str : c->errstr);
    redisFree(c);
    return r;
}

int wl_exists_on(int port, const char *key)
{
    redisReply *r = ask(port, "EXISTS", key);
    int yes = r->type == REDIS_REPLY_INTEGER && r->integer == 1;

    freeReplyObject(r);
    return yes;
}

char *wl_get_on(int port, const char *key)
{
    redisReply *r = ask(port, "GET", key);
    char *v = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;

    freeReplyObject(r);
    return v;
}

long long wl_pttl_on(int port, const char *key)
{
    redisReply *r = ask(port, "PTTL", key);
    long long ms;

    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    ms = r->integer;
    freeReplyObject(r);
    return ms;
}
