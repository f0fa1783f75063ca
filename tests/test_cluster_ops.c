/* test_cluster_ops.c -- the daemon on a real six-node Redis Cluster
 * (topo_cluster.c), configured with redis_cluster_nodes: every operation
 * against the master that owns each key's slot, seeds that are down, in no
 * cluster, not cluster-enabled, or all out of reach, a cluster formed only
 * after the daemon started, slots moved under load (ASK and TRYAGAIN
 * windows held open by hand, then a reshard), ASK to a node the slot map
 * does not name, the subscription's node leaving the cluster, a master out
 * of the daemon's reach with hundreds of lock extensions waiting for it,
 * and a master SIGKILLed, or SIGSTOPped while asked for the slot map,
 * until its replica serves its slots. Over TLS (the nodes' bus,
 * replication and MIGRATE too, the daemon given the TLS ports alone): the
 * operations, one slot moved, and a seed whose certificate another CA
 * signed.
 *
 * What the faults must not break: no two holders of one lock at once (the
 * workload of workload.c counts them), every get_many answered with the
 * whole stored set, each value exact, or with an error, never with part of
 * it, and the service back within RECOVER_MS of a master's death.
 *
 * The bounds. A killed master is found failed by the other masters after
 * cluster-node-timeout (1 s in topo_cluster.c), then its replica is elected
 * and promoted: about 2 s, never under valgrind. The daemon adds its own
 * part: noticing the dead connection, one reconnect_step_ms, a new slot map
 * from another node, a setup. RECOVER_MS bounds the whole, from the SIGKILL
 * to the first lock taken again in one of the dead master's slots, with
 * room for two CPU hogs and a daemon under valgrind or ASan (Check's
 * timeouts grow with CK_TIMEOUT_MULTIPLIER, these bounds do not need to).
 * The measured times are printed (grep "cluster: recovered"); docs/SCALING.md
 * reports them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <hiredis/hiredis.h>

#include "fm_tests.h"
#include "fmredis.h"
#include "harness.h"
#include "ops_suite.h"
#include "slot.h"
#include "topo_cluster.h"
#include "wire.h"
#include "workload.h"

#define TCASE_TIMEOUT 90
#define RECOVER_MS 20000    /* a master killed, until a lock in its slots is taken again */
#define UP_MS 10000         /* a daemon reaching the cluster at start */
#define TLS_UP_MS 30000     /* the same over TLS: a handshake under valgrind takes seconds */
#define WINDOW_MS 400       /* how long a slot is held half moved, within a request's deadline */
#define REQUEST_TIMEOUT "2000"
#define REQUEST_TIMEOUT_MS 2000

/* ---- the daemon on the cluster -------------------------------------------- */

/* A daemon on the cluster c, with seeds (a redis_cluster_nodes value; NULL:
 * every member of c, up and in the cluster); over TLS when c is, checking
 * the certificates against c's CA. */
static void daemon_start(fmt_daemon *d, const fmt_cluster *c, const char *seeds, int wait_up)
{
    char all[FMT_CLUSTER_MAX * 24] = "";
    const char *args[] = {"--redis_cluster_nodes", seeds, "--request_timeout_ms", REQUEST_TIMEOUT,
                          "--reconnect_step_ms", "50", "--reconnect_max_ms", "500",
                          c->tls != NULL ? "--redis_tls_ca_file" : NULL,
                          c->tls != NULL ? c->tls->ca : NULL, NULL};

    if (seeds == NULL) {
        for (int i = 0; i < c->nnodes; i++)
            if (c->node[i].redis.pid > 0 && !c->node[i].detached && !c->node[i].stopped)
                snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s127.0.0.1:%d",
                         all[0] ? "," : "", fmt_cluster_port(c, i));
        args[1] = all;
    }
    /* redis_url supplies only credentials and the database here (and
     * rediss://, TLS on every connection): a URL that could never connect
     * proves the addresses come from the seeds. */
    wire_daemon_start(d, c->tls != NULL ? "rediss://127.0.0.1:1/0" : "redis://127.0.0.1:1/0", args);
    if (wait_up)
        wl_await_ping(d->sock, "\"redis\":\"up\"", c->tls != NULL ? TLS_UP_MS : UP_MS);
}

/* The node that serves slot, as the first live node that answers sees it. */
static int slot_owner(const fmt_cluster *c, unsigned slot)
{
    for (int i = 0; i < c->nnodes; i++) {
        int owner = c->node[i].redis.pid > 0 ? fmt_cluster_owner(c, i, slot) : -1;

        if (owner >= 0)
            return owner;
    }
    ck_abort_msg("no node names the owner of slot %u", slot);
    return -1;
}

/* The node that serves the Redis key's slot. */
static int owner_of(const fmt_cluster *c, const char *rkey)
{
    return slot_owner(c, fm_slot(rkey, strlen(rkey)));
}

static int port_of_key(const fmt_cluster *c, const char *rkey)
{
    return c->node[owner_of(c, rkey)].port;
}

/* A hash tag ("<stem><n>") whose slot is slot. */
static void tag_for_slot(unsigned slot, const char *stem, char *tag, size_t size)
{
    for (unsigned n = 0;; n++) {
        snprintf(tag, size, "%s%u", stem, n);
        if (fm_slot(tag, strlen(tag)) == slot)
            return;
    }
}

/* The master after m in the list of masters, to move m's slots to. */
static int next_master(const fmt_cluster *c, int m)
{
    int masters[FMT_CLUSTER_MAX], n = fmt_cluster_masters(c, masters);

    for (int k = 0; k < n; k++)
        if (masters[k] == m)
            return masters[(k + 1) % n];
    ck_abort_msg("node %d is not a master", m);
    return -1;
}

/* The cluster's Redis side for the operations suite (ops_suite.h): a key
 * is on its slot's master, and a subscriber on any node. */
static int cluster_port_of(void *arg, const char *rkey)
{
    return port_of_key(arg, rkey);
}

static long long cluster_subscribers(void *arg, const char *channel)
{
    const fmt_cluster *c = arg;
    long long n = 0;

    for (int i = 0; i < c->nnodes; i++) {
        redisContext *ctx = c->node[i].redis.pid > 0 ? fmt_cluster_connect(c, i) : NULL;

        n += ctx != NULL ? wire_redis_numsub(ctx, channel) : 0;
        redisFree(ctx);
    }
    return n;
}

static ops_redis cluster_redis(const fmt_cluster *c)
{
    /* receivers counts the subscribers of one node only: the one that ran
     * the PUBLISH, which need not be the one the daemon subscribed on. */
    return (ops_redis){.port_of = cluster_port_of, .subscribers = cluster_subscribers,
                       .arg = (void *)c, .masters = 3, .min_receivers = 0,
                       .request_timeout_ms = REQUEST_TIMEOUT_MS};
}

/* The node listening on the TCP port. */
static int node_of_port(const fmt_cluster *c, int port)
{
    for (int i = 0; i < c->nnodes; i++)
        if (c->node[i].port == port)
            return i;
    ck_abort_msg("no node of the cluster listens on %d", port);
    return -1;
}

/* Each execution of b is on the master that owns its slot, with its exact
 * value; that master's index for each is put in owners (may be NULL). */
static void batch_on_owners(const fmt_cluster *c, const ops_batch *b, int *owners)
{
    ops_redis r = cluster_redis(c);
    int ports[sizeof(b->ids) / sizeof(b->ids[0])];

    ops_batch_on_masters(&r, b, ports);
    for (size_t i = 0; owners != NULL && i < b->n; i++)
        owners[i] = node_of_port(c, ports[i]);
}

/* ---- operations ----------------------------------------------------------- */

static fmt_cluster shared;

static void shared_up(void)
{
    ck_assert_msg(fmt_cluster_start(&shared) == 0, "the cluster did not start");
    fprintf(stderr, "cluster_ops: six nodes started and settled in %lld ms\n",
            (long long)shared.start_ms);
}

static void shared_down(void)
{
    fmt_cluster_stop(&shared);
}

/* Every operation, each checked on the master of its key's slot; keys
 * spread over the three masters. */
START_TEST(test_operations_reach_the_master_of_each_slot)
{
    fmt_daemon d;
    ops_redis r = cluster_redis(&shared);

    daemon_start(&d, &shared, NULL, 1);
    ops_suite_run(&d, &r);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* ---- seeds ----------------------------------------------------------------- */

/* The daemon d serves every master of c, not only the seed it learnt the
 * map from: locks taken on keys spread over the slots, each on its master. */
static void serves_every_master(const fmt_cluster *c, const fmt_daemon *d)
{
    fm_client *cl = fmt_client(d);
    fm_lock l;

    for (int k = 0; k < 12; k++) {
        char key[32], rkey[48];

        snprintf(key, sizeof(key), "seed:%d", k);
        ops_rkey(rkey, sizeof(rkey), "fm:lock:", key);
        ck_assert_int_eq(wl_try_lock(cl, key, &l, REQUEST_TIMEOUT_MS), 1);
        ck_assert(wl_exists_on(port_of_key(c, rkey), rkey));
        fmt_ok(cl, fm_lock_release(cl, key, l.token, NULL, NULL), "release");
    }
    fm_client_free(cl);
}

START_TEST(test_unreachable_first_seed_is_skipped)
{
    fmt_daemon d;
    char seeds[64];

    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", fmt_unused_port(),
             shared.node[3].port);
    daemon_start(&d, &shared, seeds, 1);
    serves_every_master(&shared, &d);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* A first seed that answers CLUSTER SLOTS with no slot (a cluster-enabled
 * node of no cluster) or with an error (a Redis without cluster support),
 * then a master of the cluster: the map is asked of the seeds in turn, not
 * of the first that answers for ever, so each daemon is up within UP_MS
 * and serves every master. Which seed answers first is a race: each case
 * is run with BAD_SEED_RUNS fresh daemons, each given another master
 * second. */
#define BAD_SEED_RUNS 5

static void up_past_first_seed(const fmt_cluster *c, int first_port, const char *what)
{
    int masters[FMT_CLUSTER_MAX], n = fmt_cluster_masters(c, masters);
    int64_t slowest = 0;

    ck_assert_int_gt(n, 0);
    for (int run = 0; run < BAD_SEED_RUNS; run++) {
        fmt_daemon d;
        char seeds[64];
        int64_t t0 = fmt_now_ms(), up;

        snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", first_port,
                 c->node[masters[run % n]].port);
        daemon_start(&d, c, seeds, 0);
        wl_await_ping(d.sock, "\"redis\":\"up\"", UP_MS);
        up = fmt_now_ms() - t0;
        slowest = up > slowest ? up : slowest;
        serves_every_master(c, &d);
        ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    }
    fprintf(stderr, "cluster_ops: first seed %s: %d daemons up, the slowest in %lld ms\n",
            what, BAD_SEED_RUNS, (long long)slowest);
}

START_TEST(test_empty_first_seed_is_passed_over)
{
    fmt_cluster_node lone;

    ck_assert_msg(fmt_cluster_start_lone(&lone) == 0, "the lone node did not start");
    up_past_first_seed(&shared, lone.port, "a node of no cluster");
    fmt_redis_stop(&lone.redis);
}
END_TEST

START_TEST(test_refusing_first_seed_is_passed_over)
{
    fmt_redis plain;
    char port[8];
    const char *args[] = {"--port", port, "--bind", "127.0.0.1", NULL};

    snprintf(port, sizeof(port), "%d", fmt_unused_port());
    ck_assert_msg(fmt_redis_start(&plain, args) == 0, "redis-server did not start");
    up_past_first_seed(&shared, atoi(port), "a Redis without cluster support");
    fmt_redis_stop(&plain);
}
END_TEST

START_TEST(test_no_seed_answering_is_down_with_the_reason)
{
    fmt_daemon d;
    char seeds[64], needle[120];
    int first = fmt_unused_port(), second = fmt_unused_port();
    fm_client *c;
    fm_lock l;

    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", first, second);
    daemon_start(&d, &shared, seeds, 0);
    wl_await_ping(d.sock, "\"redis\":\"down\"", UP_MS);
    /* The reason says no seed answered, and names one and what it did. */
    snprintf(needle, sizeof(needle),
             "\"redis_error\":\"no seed node answered yet; 127.0.0.1:%d: Connection refused",
             first);
    wl_await_ping(d.sock, needle, UP_MS);
    c = fmt_client(&d);
    ck_assert_int_eq(wl_try_lock(c, "seedless", &l, REQUEST_TIMEOUT_MS), -1);
    fm_client_free(c);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* ---- slots moved under load ------------------------------------------------- */

#define MOVED_TAGS 4        /* slots moved by hand, ASK/TRYAGAIN windows held open */
#define RESHARD_SLOTS 20    /* then moved by fmt_cluster_reshard */

/* Moves slot to dst in three steps, holding each window open for the
 * workloads (which ask every few ms) to run into: keys half moved
 * (hold_ms: multi-key commands get TRYAGAIN), all moved but the slot not
 * yet handed over (WINDOW_MS: ASK), then the end of the move. The slots
 * moved hold five executions, and maybe a lock and its fence counter: of
 * the first three keys moved at least one is an execution and two stay
 * behind, so the slot's MGET gets TRYAGAIN. */
static void move_slot_slowly(fmt_cluster *c, wl_batch *b, unsigned slot, int dst, int hold_ms)
{
    long failed;

    ck_assert_int_eq(fmt_cluster_move_begin(c, slot, dst), 0);
    ck_assert_int_eq(fmt_cluster_move_keys(c, slot, dst, 3), 0);
    failed = atomic_load(&b->failed);
    usleep((useconds_t)hold_ms * 1000);
    /* One MGET per slot can only get TRYAGAIN here: a get_many begun in
     * the window waits, and past its deadline fails whole (which the
     * reader checks), rather than hang or answer without the slot. */
    if (hold_ms > REQUEST_TIMEOUT_MS)
        ck_assert_msg(atomic_load(&b->failed) > failed,
                      "no get_many failed in %d ms of a half-moved slot", hold_ms);
    ck_assert_int_eq(fmt_cluster_move_keys(c, slot, dst, 0), 0);
    usleep(WINDOW_MS * 1000);
    ck_assert_int_eq(fmt_cluster_move_end(c, slot, dst), 0);
    ck_assert_int_eq(fmt_cluster_wait_agreed(c, slot, slot, dst), 0);
}

/* What test_slots_move_under_load moves, and what it stores there. */
typedef struct moves {
    char tag[MOVED_TAGS][16];   /* hash tags of the slots moved by hand */
    unsigned slot[MOVED_TAGS];
    int dst[MOVED_TAGS];        /* where each goes */
    char rtag[5][16];           /* hash tags in slots the reshard moves */
    int src0, dst0;             /* the reshard's source (slot 0's master) and target */
    char lock_keys[3][32];
    ops_batch b;
} moves;

/* Slots moved by hand: those of tags with five executions each; the
 * reshard moves the lowest RESHARD_SLOTS slots of slot 0's master, two
 * executions in each of five of them; twenty executions elsewhere. Locks
 * in two hand-moved slots and in slot 0. */
static void moves_plan(moves *m, const fmt_cluster *c)
{
    memset(m, 0, sizeof(*m));
    m->src0 = slot_owner(c, 0);
    m->dst0 = next_master(c, m->src0);
    for (int t = 0; t < MOVED_TAGS; t++) {
        snprintf(m->tag[t], sizeof(m->tag[t]), "mv%d", t);
        m->slot[t] = fm_slot(m->tag[t], strlen(m->tag[t]));
        ck_assert_uint_ge(m->slot[t], RESHARD_SLOTS);
        m->dst[t] = next_master(c, slot_owner(c, m->slot[t]));
        for (int k = 0; k < 5; k++)
            ops_batch_add(&m->b, "{%s}:%d", m->tag[t], k);
    }
    for (int r = 0; r < 5; r++) {
        tag_for_slot((unsigned)(r * (RESHARD_SLOTS - 1) / 4), "rs", m->rtag[r],
                     sizeof(m->rtag[r]));
        for (int k = 0; k < 2; k++)
            ops_batch_add(&m->b, "{%s}:%d", m->rtag[r], k);
    }
    for (int k = 0; k < 20; k++)
        ops_batch_add(&m->b, "plain:%d", k);
    for (int k = 0; k < 3; k++) {
        char tag[sizeof(m->tag[0])];

        /* Through a copy: the compiler cannot tell the tags from the keys. */
        memcpy(tag, k < 2 ? m->tag[k] : m->rtag[0], sizeof(tag));
        snprintf(m->lock_keys[k], sizeof(m->lock_keys[k]), "{%s}:mx", tag);
    }
}

static void moves_run(moves *m, fmt_cluster *c, wl_batch *rd)
{
    int64_t t0 = fmt_now_ms();

    /* The first slot stays half moved past a request's deadline: whatever
     * waits on it must then fail whole. */
    move_slot_slowly(c, rd, m->slot[0], m->dst[0], REQUEST_TIMEOUT_MS + WL_SLACK_MS);
    for (int t = 1; t < MOVED_TAGS; t++)
        move_slot_slowly(c, rd, m->slot[t], m->dst[t], WINDOW_MS);
    ck_assert_int_eq(fmt_cluster_reshard(c, m->src0, m->dst0, RESHARD_SLOTS), 0);
    fprintf(stderr, "cluster_ops: %d slots moved by hand and %d resharded under load in "
            "%lld ms\n", MOVED_TAGS, RESHARD_SLOTS, (long long)(fmt_now_ms() - t0));
}

/* The executions and the locks are on their new owners, and every lock is
 * free again. The executions' owners go to owners. */
static void moves_check(const moves *m, const fmt_cluster *c, fm_client *cl, int *owners)
{
    char rkey[96];
    fm_lock l;

    batch_on_owners(c, &m->b, owners);
    for (size_t i = 0; i < m->b.n; i++) {
        int want = i < MOVED_TAGS * 5 ? m->dst[i / 5]
                   : i < MOVED_TAGS * 5 + 10 ? m->dst0 : owners[i];

        ck_assert_msg(owners[i] == want, "%s is on node %d, not %d", m->b.ids[i], owners[i],
                      want);
    }
    for (int k = 0; k < 3; k++) {
        ops_rkey(rkey, sizeof(rkey), "fm:lock:", m->lock_keys[k]);
        ck_assert_int_eq(wl_try_lock(cl, m->lock_keys[k], &l, REQUEST_TIMEOUT_MS), 1);
        ck_assert_int_eq(owner_of(c, rkey), k < 2 ? m->dst[k] : m->dst0);
        ck_assert(wl_exists_on(port_of_key(c, rkey), rkey));
        fmt_ok(cl, fm_lock_release(cl, m->lock_keys[k], l.token, NULL, NULL), "release");
    }
}

/* The workloads of the moves on d: four holders of the locks of keys, and
 * a reader of the executions of b, once each has had its first answers. */
static void workloads_start(wl_locks *w, wl_batch *rd, const fmt_daemon *d,
                            const char *const *keys, int nkeys, const ops_batch *b)
{
    wl_locks_start(w, d->sock, keys, nkeys, 4);
    wl_batch_start(rd, d->sock, (const char *const *)b->ids, (const char *const *)b->values,
                   b->n);
    wl_await_count(&w->taken, 20, UP_MS, "locks taken");
    wl_await_count(&rd->complete, 5, UP_MS, "get_many answered");
}

/* Stops the workloads and asserts what they saw: no two holders of a lock
 * at once, no answer but the contract's outage errors, no wrong get_many. */
static void workloads_stop(wl_locks *w, wl_batch *rd, const char *what)
{
    wl_batch_stop(rd);
    wl_locks_stop(w);
    fprintf(stderr, "cluster_ops: %s: %ld locks taken (%ld after), %ld acquires failed, "
            "%d overlaps; get_many %ld complete, %ld failed, %d wrong, at most %lld ms "
            "without a complete one\n", what,
            (long)atomic_load(&w->taken), (long)atomic_load(&w->taken_after),
            (long)atomic_load(&w->failed), atomic_load(&w->overlaps),
            (long)atomic_load(&rd->complete), (long)atomic_load(&rd->failed),
            atomic_load(&rd->wrong), (long long)rd->longest_gap_ms);
    ck_assert_msg(atomic_load(&w->overlaps) == 0, "two holders of one lock at once, %d times",
                  atomic_load(&w->overlaps));
    ck_assert_msg(atomic_load(&w->unexpected) == 0, "%d unexpected answers to acquires, the "
                  "first: %s", atomic_load(&w->unexpected), w->why);
    ck_assert_msg(atomic_load(&rd->wrong) == 0, "%d wrong get_many answers, the first: %s",
                  atomic_load(&rd->wrong), rd->why);
}

/* Both workloads are served after the moves; then stopped and checked. */
static void workloads_served_after(wl_locks *w, wl_batch *rd, const char *what)
{
    atomic_store(&w->mark, 1);
    atomic_store(&rd->mark, 1);
    wl_await_count(&w->taken_after, 10, RECOVER_MS, "locks taken after the moves");
    wl_await_count(&rd->complete_after, 3, RECOVER_MS, "get_many answered after the moves");
    workloads_stop(w, rd, what);
}

/* What shows that the daemon followed redirections: its own count of
 * MOVED and ASK answers followed (stats' cluster_redirects), and Redis's
 * counts of each (INFO errorstats counts every -ASK and -MOVED a node
 * answered; only the daemon sends keyed commands to the nodes while the
 * slots move), summed over the live nodes. And how far the workloads got. */
typedef struct redirects {
    long long daemon, ask, moved;
    long taken, complete;
} redirects;

/* The count of errorstat_<name> in an INFO errorstats text; 0 when absent. */
static long long errorstat(const char *info, const char *name)
{
    char needle[64];
    const char *at;

    snprintf(needle, sizeof(needle), "errorstat_%s:count=", name);
    at = strstr(info, needle);
    return at != NULL ? atoll(at + strlen(needle)) : 0;
}

static void redirects_now(const fmt_cluster *c, const char *sock, const wl_locks *w,
                          const wl_batch *rd, redirects *r)
{
    memset(r, 0, sizeof(*r));
    r->daemon = wire_link_stat(sock, "cluster_redirects");
    for (int i = 0; i < c->nnodes; i++) {
        redisContext *ctx = c->node[i].redis.pid > 0 ? fmt_cluster_connect(c, i) : NULL;
        redisReply *info;

        if (ctx == NULL)
            continue;
        info = wire_redis_ok(ctx, "INFO errorstats");
        ck_assert_int_eq(info->type, REDIS_REPLY_STRING);
        r->ask += errorstat(info->str, "ASK");
        r->moved += errorstat(info->str, "MOVED");
        freeReplyObject(info);
        redisFree(ctx);
    }
    r->taken = atomic_load(&w->taken);
    r->complete = atomic_load(&rd->complete);
}

/* The moves sent the daemon's commands elsewhere, and it followed: ASK
 * while a slot's keys were at its target before the hand-over, MOVED once
 * a slot was handed over and the daemon's map still named the old owner.
 * A daemon that never met a redirection (its map always right, say, or
 * the workloads idle) would pass every other check of the test. Both
 * workloads went on meanwhile: each complete get_many read the moved
 * slots' executions, and the locks taken are in moved slots. A MOVED is
 * asked for (moved) only where many slots move: with one, the daemon may
 * well have its next map before a command reaches the old owner (a
 * get_many past its deadline in the half-moved window asks for one), and
 * then no MOVED is owed. */
static void redirects_followed(const redirects *before, const redirects *after, int moved)
{
    fprintf(stderr, "cluster_ops: while slots moved the daemon followed %lld redirections; "
            "the nodes answered %lld ASK and %lld MOVED; %ld locks taken, %ld get_many "
            "complete\n", after->daemon - before->daemon, after->ask - before->ask,
            after->moved - before->moved, after->taken - before->taken,
            after->complete - before->complete);
    ck_assert_msg(after->ask > before->ask, "no node answered ASK while slots moved");
    ck_assert_msg(!moved || after->moved > before->moved,
                  "no node answered MOVED while slots moved");
    ck_assert_msg(after->daemon > before->daemon, "the daemon followed no redirection while "
                  "slots moved (cluster_redirects stayed %lld)", before->daemon);
    ck_assert_msg(after->taken > before->taken, "no lock taken while slots moved");
    ck_assert_msg(after->complete > before->complete, "no get_many complete while slots moved");
}

START_TEST(test_slots_move_under_load)
{
    fmt_daemon d;
    fm_client *c;
    wl_locks w;
    wl_batch rd;
    ops_batch none = {0};
    moves m;
    redirects before, after;
    char rkey[96];
    int owners[64];
    int64_t invalidated = -1;

    daemon_start(&d, &shared, NULL, 1);
    c = fmt_client(&d);
    moves_plan(&m, &shared);
    ops_batch_store(c, &m.b);
    batch_on_owners(&shared, &m.b, NULL);
    workloads_start(&w, &rd, &d, (const char *const[]){m.lock_keys[0], m.lock_keys[1],
                                                         m.lock_keys[2]}, 3, &m.b);
    redirects_now(&shared, d.sock, &w, &rd, &before);
    moves_run(&m, &shared, &rd);
    redirects_now(&shared, d.sock, &w, &rd, &after);
    redirects_followed(&before, &after, 1);
    workloads_served_after(&w, &rd, "while slots moved");

    moves_check(&m, &shared, c, owners);
    ops_expect_batch(c, &m.b, NULL, 0);
    fmt_ok(c, fm_cache_invalidate_many(c, (const char *const *)m.b.ids, m.b.n, &invalidated),
           "invalidate_many");
    ck_assert_int_eq(invalidated, (int64_t)m.b.n);
    for (size_t i = 0; i < m.b.n; i++) {
        ops_rkey(rkey, sizeof(rkey), "fm:exec:", m.b.ids[i]);
        ck_assert_msg(!wl_exists_on(shared.node[owners[i]].port, rkey), "%s survived", rkey);
    }
    ops_expect_batch(c, &none, (const char *const *)m.b.ids, m.b.n);
    ops_batch_free(&m.b);
    fm_client_free(c);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* ---- a master killed --------------------------------------------------------- */

/* The node whose subscribers count the channel's subscriber (the daemon's
 * pub/sub connection), or -1. */
static int subscribed_node(const fmt_cluster *c, const char *channel)
{
    for (int i = 0; i < c->nnodes; i++) {
        redisContext *ctx = fmt_cluster_connect(c, i);
        long long n = ctx != NULL ? wire_redis_numsub(ctx, channel) : 0;

        redisFree(ctx);
        if (n > 0)
            return i;
    }
    return -1;
}

static int is_master(const fmt_cluster *c, int i)
{
    int masters[FMT_CLUSTER_MAX], n = fmt_cluster_masters(c, masters);

    for (int k = 0; k < n; k++)
        if (masters[k] == i)
            return 1;
    return 0;
}

/* A name "<stem><n>" whose Redis key (prefix + name) is served by node. */
static void name_on(const fmt_cluster *c, int node, const char *prefix, const char *stem,
                    int *n, char *out, size_t size)
{
    char rkey[96];

    for (;; (*n)++) {
        snprintf(out, size, "%s%d", stem, *n);
        ops_rkey(rkey, sizeof(rkey), prefix, out);
        if (owner_of(c, rkey) == node) {
            (*n)++;
            return;
        }
    }
}

/* Writes through node, then waits until its replica has everything it took. */
static void await_replicated(const fmt_cluster *c, int node)
{
    char name[32], rkey[64];
    int n = 0;
    redisContext *ctx = fmt_cluster_connect(c, node);
    redisReply *r;

    ck_assert_ptr_nonnull(ctx);
    name_on(c, node, "", "sync:", &n, name, sizeof(name));
    ops_rkey(rkey, sizeof(rkey), "", name);
    freeReplyObject(wire_redis_ok(ctx, "SET %s 1", rkey));
    r = wire_redis_ok(ctx, "WAIT 1 5000");
    ck_assert_msg(r->type == REDIS_REPLY_INTEGER && r->integer == 1, "node %d has no replica "
                  "in sync", node);
    freeReplyObject(r);
    redisFree(ctx);
}

/* Seeds (a redis_cluster_nodes value) naming node m first, then every
 * other node. The daemon asks m first for the map, and subscribes on m:
 * before it has a map, its pub/sub context takes the nodes in turn from
 * the first of redis_cluster_nodes (fm_cluster_sub_addr of
 * link_cluster.c), and stays on that node while it lives. */
static void seeds_first(const fmt_cluster *c, int m, char *seeds, size_t size)
{
    snprintf(seeds, size, "127.0.0.1:%d", c->node[m].port);
    for (int i = 0; i < c->nnodes; i++)
        if (i != m)
            snprintf(seeds + strlen(seeds), size - strlen(seeds), ",127.0.0.1:%d",
                     c->node[i].port);
}

/* The master to kill: the node the daemon subscribed on (to channel,
 * which a client has subscribed to), so that the subscription must move.
 * The seeds put it on a master; should the daemon have chosen another
 * node, the test says so rather than kill a master that holds no
 * subscription. */
static int subscribed_master(const fmt_cluster *c, const char *channel, int want)
{
    int at = subscribed_node(c, channel);

    ck_assert_msg(at >= 0, "no node counts the daemon's subscription");
    ck_assert_msg(at == want && is_master(c, at), "the daemon subscribed on node %d (a %s), "
                  "not on its first seed, master %d", at, is_master(c, at) ? "master" : "replica",
                  want);
    fprintf(stderr, "cluster_ops: the daemon subscribed on master %d, its first seed; killing "
            "it\n", at);
    return at;
}

#define AFTER_KEYS 20

/* Tries the keys in turn (a key whose acquire failed may have been taken
 * for it after all, on the dead master or its replica) until one is taken,
 * which must be on the promoted node. Returns when, in ms since t0. hung:
 * the old master is up but answers nothing (wl_try_lock_hung). */
static int64_t await_lock_on(const fmt_cluster *c, fm_client *cl, char keys[][32], int promoted,
                             int64_t t0, int hung)
{
    char rkey[96];
    fm_lock l;

    for (int k = 0;; k = (k + 1) % AFTER_KEYS) {
        int got = hung ? wl_try_lock_hung(cl, keys[k], &l, REQUEST_TIMEOUT_MS)
                       : wl_try_lock(cl, keys[k], &l, REQUEST_TIMEOUT_MS);

        ck_assert_msg(fmt_now_ms() - t0 <= RECOVER_MS, "no lock in the dead master's slots "
                      "within %d ms", RECOVER_MS);
        if (got != 1)
            continue;
        ops_rkey(rkey, sizeof(rkey), "fm:lock:", keys[k]);
        ck_assert_int_eq(owner_of(c, rkey), promoted);
        ck_assert(wl_exists_on(c->node[promoted].port, rkey));
        return fmt_now_ms() - t0;
    }
}

START_TEST(test_killed_master_is_replaced)
{
    fmt_cluster c;
    fmt_daemon d;
    fm_client *cl, *sub, *pub;
    wl_locks w;
    wl_batch rd;
    ops_batch b = {0};
    char victim_key[32], other_key[32], after[AFTER_KEYS][32], seeds[FMT_CLUSTER_MAX * 24];
    int masters[FMT_CLUSTER_MAX], victim, promoted, now, n = 0;
    int64_t t0, promoted_ms, recovered_ms;

    ck_assert_msg(fmt_cluster_start(&c) == 0, "the cluster did not start");
    ck_assert_int_eq(fmt_cluster_masters(&c, masters), 3);
    seeds_first(&c, masters[0], seeds, sizeof(seeds));
    daemon_start(&d, &c, seeds, 1);
    cl = fmt_client(&d);
    sub = fmt_client(&d);
    pub = fmt_client(&d);
    fmt_ok(sub, fm_wake_subscribe(sub, "kill:wake", NULL, NULL, 0), "subscribe");
    fmt_ok(pub, fm_wake_signal(pub, "before", "kill:wake", NULL), "signal");
    wl_expect_wake(sub, "before", WIRE_REPLY_MS);
    victim = subscribed_master(&c, "kill:wake", masters[0]);
    name_on(&c, victim, "fm:lock:", "kill:mx:", &n, victim_key, sizeof(victim_key));
    name_on(&c, next_master(&c, victim), "fm:lock:", "kill:mx:", &n, other_key,
            sizeof(other_key));
    for (int k = 0; k < AFTER_KEYS; k++)
        name_on(&c, victim, "fm:lock:", "kill:after:", &n, after[k], sizeof(after[k]));
    for (int k = 0; k < 40; k++)
        ops_batch_add(&b, "kill:exec:%d", k);
    ops_batch_store(cl, &b);
    batch_on_owners(&c, &b, NULL);
    await_replicated(&c, victim);

    wl_locks_start(&w, d.sock, (const char *const[]){victim_key, other_key}, 2, 3);
    wl_batch_start(&rd, d.sock, (const char *const *)b.ids, (const char *const *)b.values, b.n);
    wl_await_count(&w.taken, 20, UP_MS, "locks taken");
    wl_await_count(&rd.complete, 5, UP_MS, "get_many answered");

    t0 = fmt_now_ms();
    promoted = fmt_cluster_kill_master(&c, victim, RECOVER_MS);
    promoted_ms = fmt_now_ms() - t0;
    ck_assert_msg(promoted >= 0, "no replica took over within %d ms", RECOVER_MS);
    atomic_store(&w.mark, 1);
    atomic_store(&rd.mark, 1);
    recovered_ms = await_lock_on(&c, cl, after, promoted, t0, 0);
    fprintf(stderr, "cluster: recovered from a SIGKILL of a master in %lld ms (its replica "
            "promoted after %lld ms, then a lock in its slots taken through the daemon)\n",
            (long long)recovered_ms, (long long)promoted_ms);

    /* The subscription went with its node: the subscriber is told, and
     * wakes flow again from another node. */
    wl_await_resubscribed(sub, RECOVER_MS);
    now = subscribed_node(&c, "kill:wake");
    ck_assert_msg(now >= 0 && now != victim, "the subscription is on node %d after master %d "
                  "died", now, victim);
    fmt_ok(pub, fm_wake_signal(pub, "after", "kill:wake", NULL), "signal after");
    wl_expect_wake(sub, "after", WIRE_REPLY_MS);
    /* Checked after the lock, so at most this long. */
    fprintf(stderr, "cluster: recovered wakes from a SIGKILL of the subscribed master in at "
            "most %lld ms (the subscription restored on node %d and a wake delivered)\n",
            (long long)(fmt_now_ms() - t0), now);

    wl_await_count(&w.taken_after, 10, RECOVER_MS, "locks taken after the kill");
    wl_await_count(&rd.complete_after, 3, RECOVER_MS, "get_many answered after the kill");
    /* A killed master replicated every lock it granted (the reply and the
     * replication stream leave in the same turn of its loop), as in
     * test_sentinel.c: no two holders. */
    workloads_stop(&w, &rd, "across the kill");
    /* A third of the batch was on the dead master: no get_many was complete
     * until the daemon reached its replica. */
    fprintf(stderr, "cluster: recovered get_many from a SIGKILL of a master in %lld ms (the "
            "longest time without a complete answer, ended %lld ms after the fault)\n",
            (long long)rd.longest_gap_ms, (long long)(rd.gap_end_ms - t0));
    ck_assert_int_le(rd.longest_gap_ms, RECOVER_MS);
    ops_expect_batch(cl, &b, NULL, 0);
    ops_batch_free(&b);
    fm_client_free(pub);
    fm_client_free(sub);
    fm_client_free(cl);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    fmt_cluster_stop(&c);
}
END_TEST

/* ---- a master out of reach -------------------------------------------------- */

/* An id whose cache key is (on_x) or is not on master x. */
static void id_on(const fmt_cluster *c, int x, int on_x, const char *tag, char *out, size_t size)
{
    char rkey[96];

    for (int i = 0; i < 10000; i++) {
        snprintf(out, size, "%s-%d", tag, i);
        ops_rkey(rkey, sizeof(rkey), "fm:exec:", out);
        if ((owner_of(c, rkey) == x) == on_x)
            return;
    }
    ck_abort_msg("no id %s master %d in 10000 tries", on_x ? "on" : "off", x);
}

typedef struct ready_count {
    const char *sock;
    int64_t want;
} ready_count;

static int masters_ready(void *arg)
{
    const ready_count *rc = arg;

    return wire_link_stat(rc->sock, "cluster_masters_ready") == rc->want;
}

static void await_masters_ready(const char *sock, int64_t want)
{
    ready_count rc = {sock, want};

    ck_assert_msg(fmt_wait_until(masters_ready, &rc, UP_MS),
                  "cluster_masters_ready never became %lld", (long long)want);
}

/* Master m wants a password the daemon on sock does not have, while the
 * cluster itself stays healthy: the daemon's connections go, and it
 * cannot set up new ones (NOAUTH). Returns once the daemon has only the
 * two other masters ready, with a connection to m to let the daemon in
 * again (let_in). */
static redisContext *shut_out(const fmt_cluster *c, int m, const char *sock)
{
    redisContext *x = fmt_cluster_connect(c, m);

    ck_assert_ptr_nonnull(x);
    freeReplyObject(wire_redis_ok(x, "CONFIG SET requirepass unreachable-pw"));
    freeReplyObject(wire_redis_ok(x, "CLIENT KILL TYPE normal"));
    await_masters_ready(sock, 2);
    return x;
}

/* Takes the password of shut_out away and frees x; returns once the
 * daemon has every master ready again. */
static void let_in(redisContext *x, const char *sock)
{
    redisReply *r = redisCommand(x, "CONFIG SET requirepass %s", "");

    ck_assert_msg(r != NULL && r->type == REDIS_REPLY_STATUS, "could not take the password back");
    freeReplyObject(r);
    redisFree(x);
    await_masters_ready(sock, 3);
}

/* The daemon cannot reach one master (it now wants a password the daemon
 * does not have) while the cluster itself is healthy. A request on that
 * master's slots waits until its deadline and fails with
 * redis_unavailable; a request on another master, pipelined right behind
 * it on the same connection, is answered at once: a lost master holds
 * back its own slots only, not the client's (nor the daemon's own lock
 * extensions') other requests. The password goes again at the end. */
START_TEST(test_unreachable_master_holds_back_only_its_own_slots)
{
    fmt_daemon d;
    char held[32], free_id[32], ex_held[96], ex_free[96], *get_held, *get_free;
    redisContext *x;
    int master[FMT_CLUSTER_MAX], fd;
    int64_t t0, waited;
    cJSON *first, *second;

    ck_assert_int_eq(fmt_cluster_masters(&shared, master), 3);
    daemon_start(&d, &shared, NULL, 1);
    id_on(&shared, master[0], 1, "held", held, sizeof(held));
    id_on(&shared, master[0], 0, "free", free_id, sizeof(free_id));
    snprintf(ex_held, sizeof(ex_held), "{\"id\":\"%s\",\"n\":1}", held);
    snprintf(ex_free, sizeof(ex_free), "{\"id\":\"%s\",\"n\":2}", free_id);
    wire_store(d.sock, ex_held);
    wire_store(d.sock, ex_free);

    x = shut_out(&shared, master[0], d.sock);

    get_held = wire_strf("{\"op\":\"cache.get\",\"id\":\"held\",\"execution_id\":\"%s\"}",
                         held);
    get_free = wire_strf("{\"op\":\"cache.get\",\"id\":\"free\",\"execution_id\":\"%s\"}",
                         free_id);
    fd = wire_connect(d.sock);
    t0 = fmt_now_ms();
    wire_send(fd, get_held);
    wire_send(fd, get_free);
    free(get_held);
    free(get_free);
    first = wire_recv(fd, REQUEST_TIMEOUT_MS + WL_SLACK_MS);
    waited = fmt_now_ms() - t0;
    wire_assert_ok(first, "\"free\"");
    ck_assert_msg(waited < REQUEST_TIMEOUT_MS / 2, "the request on a reachable master waited "
                  "%lld ms behind the one on the unreachable master", (long long)waited);
    second = wire_recv(fd, REQUEST_TIMEOUT_MS + WL_SLACK_MS);
    wire_assert_error(second, "redis_unavailable", "\"held\"");
    cJSON_Delete(first);
    cJSON_Delete(second);
    close(fd);

    let_in(x, d.sock);
    wire_assert_serving(d.sock, held, ex_held);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* The daemon extends MANY_LOCKS locks on master A every MANY_TTL_MS / 3,
 * and one on master B every ONE_TTL_MS / 3. Once A is out of reach, each
 * of A's extensions waits for A up to its deadline, and new ones follow:
 * hundreds wait at any time. They must not hold back B's extensions, which
 * share the daemon's own flow with them: B's lock stays held for HELD_MS,
 * several of its TTLs. */
#define MANY_LOCKS 300
#define MANY_TTL_MS 600
#define ONE_TTL_MS 900
#define HELD_MS 3000

typedef struct lock_watch {
    redisContext *ctx;      /* to the lock's master */
    const char *rkey;
    long long pttl;         /* what PTTL said last */
    long long least;        /* the least it said */
} lock_watch;

static int lock_lapsed(void *arg)
{
    lock_watch *w = arg;
    redisReply *r = wire_redis_ok(w->ctx, "PTTL %s", w->rkey);

    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    w->pttl = r->integer;
    w->least = w->pttl < w->least ? w->pttl : w->least;
    freeReplyObject(r);
    return w->pttl <= 0;
}

START_TEST(test_extensions_for_an_unreachable_master_hold_back_no_other)
{
    fmt_daemon d;
    fm_client *cl;
    fm_lock_opts o;
    fm_lock l, one;
    char tag[16], key[32], one_key[32], rkey[48], *v;
    int master[FMT_CLUSTER_MAX], a, b, n = 0;
    lock_watch w = {NULL, rkey, 0, ONE_TTL_MS};
    redisContext *x;
    int64_t t0;

    ck_assert_int_eq(fmt_cluster_masters(&shared, master), 3);
    a = master[0];
    b = master[1];
    name_on(&shared, a, "", "ext", &n, tag, sizeof(tag));
    name_on(&shared, b, "fm:lock:", "ext:one:", &n, one_key, sizeof(one_key));
    ops_rkey(rkey, sizeof(rkey), "fm:lock:", one_key);
    daemon_start(&d, &shared, NULL, 1);
    cl = fmt_client(&d);
    fm_lock_opts_init(&o);
    o.auto_extend = 1;
    o.max_retries = FM_LOCK_NO_RETRY;
    o.ttl_ms = MANY_TTL_MS;
    for (int k = 0; k < MANY_LOCKS; k++) {
        snprintf(key, sizeof(key), "{%s}:%d", tag, k);
        fmt_ok(cl, fm_lock_acquire(cl, key, &o, &l), "acquire on A");
        ck_assert_int_eq(l.acquired, 1);
    }
    o.ttl_ms = ONE_TTL_MS;
    fmt_ok(cl, fm_lock_acquire(cl, one_key, &o, &one), "acquire on B");
    ck_assert_int_eq(one.acquired, 1);

    x = shut_out(&shared, a, d.sock);
    t0 = fmt_now_ms();
    w.ctx = fmt_cluster_connect(&shared, b);
    ck_assert_ptr_nonnull(w.ctx);
    ck_assert_msg(!fmt_wait_until(lock_lapsed, &w, HELD_MS), "the lock on master %d (ttl %d ms) "
                  "lapsed %lld ms after master %d went out of reach with %d auto-extended locks "
                  "(PTTL %lld)", b, ONE_TTL_MS, (long long)(fmt_now_ms() - t0), a, MANY_LOCKS,
                  w.pttl);
    fprintf(stderr, "cluster_ops: a lock extended for %d ms while %d extensions waited for an "
            "unreachable master: its PTTL never below %lld of %d ms\n", HELD_MS, MANY_LOCKS,
            w.least, ONE_TTL_MS);
    /* Still the same lock, and A was out of reach all along. */
    v = wl_get_on(shared.node[b].port, rkey);
    ck_assert_msg(v != NULL && strcmp(v, one.token) == 0, "%s: %s", rkey, v ? v : "(none)");
    free(v);
    ck_assert_int_eq(wire_link_stat(d.sock, "cluster_masters_ready"), 2);
    redisFree(w.ctx);
    let_in(x, d.sock);
    fm_client_free(cl);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* ---- a cluster formed after the daemon started ------------------------------ */

/* The daemon starts on six cluster nodes that have not met yet: each
 * answers CLUSTER SLOTS with no slot, so the daemon is down and says why.
 * Once the cluster is made of them, the daemon finds out by itself (a map
 * that is not whole is asked for again, every RECHECK_MS of
 * link_cluster.c) and serves every master, within UP_MS of the cluster's
 * creation. */
START_TEST(test_cluster_formed_after_start_is_served)
{
    fmt_cluster c;
    fmt_daemon d;
    fm_client *a, *b, *sub;
    ops_redis r = cluster_redis(&c);
    int64_t t0, settled_ms, up_ms;

    ck_assert_msg(fmt_cluster_start_nodes(&c) == 0, "the nodes did not start");
    daemon_start(&d, &c, NULL, 0);
    wl_await_ping(d.sock, "\"redis\":\"down\"", UP_MS);
    wl_await_ping(d.sock, "\"redis_error\":\"16384 of the cluster's 16384 slots have no master\"",
                  UP_MS);

    t0 = fmt_now_ms();
    ck_assert_msg(fmt_cluster_create(&c) == 0, "the cluster was not created");
    settled_ms = fmt_now_ms() - t0;
    wl_await_ping(d.sock, "\"redis\":\"up\"", UP_MS);
    up_ms = fmt_now_ms() - t0;
    fprintf(stderr, "cluster_ops: a daemon started before its cluster served %lld ms after the "
            "cluster's creation began (which settled after %lld ms)\n", (long long)up_ms,
            (long long)settled_ms);
    a = fmt_client(&d);
    b = fmt_client(&d);
    sub = fmt_client(&d);
    ops_check_locks(&r, a, b);
    ops_check_wakes(&r, a, sub);
    fm_client_free(sub);
    fm_client_free(b);
    fm_client_free(a);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    fmt_cluster_stop(&c);
}
END_TEST

/* ---- ASK to a node outside the slot map ------------------------------------- */

/* What a request may take that waits for nothing but a new connection
 * to a node: well under a request's deadline, which a request left
 * waiting with nothing to send it on would run out. */
#define PROMPT_MS (REQUEST_TIMEOUT_MS / 2)

static long long keys_in_slot(const fmt_cluster *c, int node, unsigned slot)
{
    redisContext *ctx = fmt_cluster_connect(c, node);
    long long n;

    ck_assert_ptr_nonnull(ctx);
    n = wire_redis_int(ctx, "CLUSTER COUNTKEYSINSLOT %u", slot);
    redisFree(ctx);
    return n;
}

/* A cache.get of execution i of b answers its value, within PROMPT_MS;
 * returns how long it took. */
static int64_t expect_prompt_get(fm_client *c, const ops_batch *b, size_t i, const char *when)
{
    int64_t t0 = fmt_now_ms(), took;
    char *json = NULL;
    size_t len = 0;

    fmt_ok(c, fm_cache_get(c, b->ids[i], &json, &len), when);
    took = fmt_now_ms() - t0;
    ck_assert_msg(json != NULL && strcmp(json, b->values[i]) == 0, "cache.get %s %s: %s",
                  b->ids[i], when, json ? json : "(miss)");
    free(json);
    ck_assert_msg(took < PROMPT_MS, "cache.get %s %s took %lld ms", b->ids[i], when,
                  (long long)took);
    return took;
}

/* A lock held by another client is not taken, and the answer is prompt. */
static void expect_prompt_busy(fm_client *c, const char *key, const char *when)
{
    int64_t t0 = fmt_now_ms(), took;
    fm_lock l;

    ck_assert_msg(wl_try_lock(c, key, &l, REQUEST_TIMEOUT_MS) == 0, "lock %s %s: taken, or "
                  "failed", key, when);
    took = fmt_now_ms() - t0;
    ck_assert_msg(took < PROMPT_MS, "acquire of %s %s took %lld ms", key, when, (long long)took);
}

typedef struct map_taken {
    const char *sock;
    int64_t before;     /* cluster_map_refreshes before */
} map_taken;

/* A new map was taken, and every master is ready again. */
static int map_retaken(void *arg)
{
    const map_taken *m = arg;

    return wire_link_stat(m->sock, "cluster_map_refreshes") > m->before
           && wire_link_stat(m->sock, "cluster_masters_ready") == 3;
}

/* Drops the daemon's command connection to master i: the daemon connects
 * again and asks for the slot map. Returns once it has the new map. */
static void force_map_refresh(const char *sock, const fmt_cluster *c, int i)
{
    map_taken m = {sock, wire_link_stat(sock, "cluster_map_refreshes")};
    redisContext *x = fmt_cluster_connect(c, i);

    ck_assert_ptr_nonnull(x);
    freeReplyObject(wire_redis_ok(x, "CLIENT KILL TYPE normal"));
    redisFree(x);
    ck_assert_msg(fmt_wait_until(map_retaken, &m, UP_MS), "no new slot map within %d ms",
                  UP_MS);
}

/* A slot moved, keys first, to a node added as an empty master: while its
 * keys are on the new node, which owns no slot yet and is in no CLUSTER
 * SLOTS, its old owner answers ASK. The first request to meet it makes
 * the daemon connect to that node, and goes once connected (not at its
 * deadline); a new map, which does not name the node, does not drop it
 * while redirections still name it. After the move (MOVED) the keys are
 * served from the new node. The slot goes back and the node away at the
 * end, leaving the shared cluster as it was. */
START_TEST(test_ask_to_a_node_outside_the_map_is_followed)
{
    fmt_daemon d;
    fm_client *a, *b;
    ops_batch bt = {0};
    const char *tag = "ask";
    char lock_key[32], rkey[96];
    unsigned slot = fm_slot(tag, strlen(tag));
    int src = slot_owner(&shared, slot), node, owners[8], extended = 0, released = 0;
    int64_t first_ms, after_map_ms;
    fm_lock l;

    daemon_start(&d, &shared, NULL, 1);
    a = fmt_client(&d);
    b = fmt_client(&d);
    for (int k = 0; k < 3; k++)
        ops_batch_add(&bt, "{%s}:%d", tag, k);
    ops_batch_store(a, &bt);
    snprintf(lock_key, sizeof(lock_key), "{%s}:lk", tag);
    ck_assert_int_eq(wl_try_lock(a, lock_key, &l, REQUEST_TIMEOUT_MS), 1);

    node = fmt_cluster_add_node(&shared);
    ck_assert_msg(node >= 0, "no node joined the cluster");
    ck_assert_int_eq(fmt_cluster_move_begin(&shared, slot, node), 0);
    ck_assert_int_eq(fmt_cluster_move_keys(&shared, slot, node, 0), 0);
    ck_assert_int_eq(keys_in_slot(&shared, src, slot), 0);
    ck_assert_int_ge(keys_in_slot(&shared, node, slot), (long long)bt.n + 1);
    ck_assert_msg(!is_master(&shared, node), "CLUSTER SLOTS names the node the slot moves to");

    first_ms = expect_prompt_get(a, &bt, 0, "sent by ASK to a node the daemon had not met");
    expect_prompt_busy(b, lock_key, "sent by ASK");
    force_map_refresh(d.sock, &shared, next_master(&shared, src));
    after_map_ms = expect_prompt_get(b, &bt, 1, "sent by ASK after a new map");
    fprintf(stderr, "cluster_ops: ASK to a node outside the slot map: the first request "
            "answered in %lld ms (a new connection), one after a new map in %lld ms\n",
            (long long)first_ms, (long long)after_map_ms);
    fmt_ok(a, fm_lock_extend(a, lock_key, l.token, 60000, &extended), "extend by ASK");
    ck_assert_int_eq(extended, 1);

    ck_assert_int_eq(fmt_cluster_move_end(&shared, slot, node), 0);
    ck_assert_int_eq(fmt_cluster_wait_agreed(&shared, slot, slot, node), 0);
    expect_prompt_get(a, &bt, 2, "after the move");
    batch_on_owners(&shared, &bt, owners);
    for (size_t i = 0; i < bt.n; i++)
        ck_assert_int_eq(owners[i], node);
    ops_rkey(rkey, sizeof(rkey), "fm:lock:", lock_key);
    ck_assert(wl_exists_on(shared.node[node].port, rkey));
    fmt_ok(a, fm_lock_release(a, lock_key, l.token, &released, NULL), "release after the move");
    ck_assert_int_eq(released, 1);
    ck_assert(!wl_exists_on(shared.node[node].port, rkey));

    ck_assert_int_eq(fmt_cluster_move(&shared, slot, src), 0);
    ck_assert_int_eq(fmt_cluster_remove_node(&shared), 0);
    ops_batch_free(&bt);
    fm_client_free(b);
    fm_client_free(a);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* ---- the subscription's node leaves the cluster ----------------------------- */

typedef struct sub_moved {
    const fmt_cluster *c;
    const char *channel;
    int left;           /* the node the subscription must leave */
} sub_moved;

static int subscribed_elsewhere(void *arg)
{
    const sub_moved *m = arg;
    int at = subscribed_node(m->c, m->channel);

    return at >= 0 && at != m->left;
}

/* The daemon subscribes on its first seed, a replica, which then leaves the
 * cluster but stays up: the other nodes forget it and it forgets them, so
 * no PUBLISH reaches it any more. The next slot map (asked for here by
 * dropping the daemon's connection to a master) does not name it, and the
 * daemon subscribes elsewhere: wakes arrive again. Changes the shared
 * cluster for good: the last of its tests. */
START_TEST(test_wakes_leave_a_node_that_left_the_cluster)
{
    fmt_daemon d;
    fm_client *sub, *pub;
    char seeds[FMT_CLUSTER_MAX * 24];
    int masters[FMT_CLUSTER_MAX], n = fmt_cluster_masters(&shared, masters), replica = -1;
    sub_moved o = {&shared, "left:wake", -1};
    int64_t t0;

    ck_assert_int_eq(n, 3);
    for (int i = 0; i < shared.nnodes && replica < 0; i++)
        if (shared.node[i].redis.pid > 0 && !is_master(&shared, i))
            replica = i;
    ck_assert_msg(replica >= 0, "the cluster has no replica");
    o.left = replica;
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", shared.node[replica].port,
             shared.node[masters[0]].port);
    daemon_start(&d, &shared, seeds, 1);
    sub = fmt_client(&d);
    pub = fmt_client(&d);
    fmt_ok(sub, fm_wake_subscribe(sub, "left:wake", NULL, NULL, 0), "subscribe");
    fmt_ok(pub, fm_wake_signal(pub, "before", "left:wake", NULL), "signal");
    wl_expect_wake(sub, "before", WIRE_REPLY_MS);
    ck_assert_msg(subscribed_node(&shared, "left:wake") == replica, "the daemon did not "
                  "subscribe on its first seed, the replica %d", replica);

    ck_assert_int_eq(fmt_cluster_detach(&shared, replica), 0);
    t0 = fmt_now_ms();
    force_map_refresh(d.sock, &shared, masters[0]);
    ck_assert_msg(fmt_wait_until(subscribed_elsewhere, &o, UP_MS), "the subscription stayed "
                  "on node %d, out of the cluster, for %d ms after a new map", replica, UP_MS);
    fmt_ok(pub, fm_wake_signal(pub, "after", "left:wake", NULL), "signal after");
    wl_expect_wake(sub, "after", WIRE_REPLY_MS);
    fprintf(stderr, "cluster_ops: wakes back %lld ms after the subscribed node left the "
            "cluster (a new map asked for at once)\n", (long long)(fmt_now_ms() - t0));
    fm_client_free(pub);
    fm_client_free(sub);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* ---- a master stopped -------------------------------------------------------- */

/* What a lock in a hung master's slots may take once its replica is
 * promoted: a request to the hung master timing out (which makes the
 * daemon ask for a new map), the question, if it went to the hung master,
 * given up after request_timeout_ms, then another node's answer and a
 * connection to the promoted replica. */
#define HUNG_MAP_MS (2 * REQUEST_TIMEOUT_MS + 2 * WL_SLACK_MS)

/* A master SIGSTOPped stays connected and answers nothing; the others
 * fail it over to its replica. It is the daemon's first seed, so the
 * daemon asks it for the slot map: a question it never answers must not
 * hold the map as it was. Once the replica is promoted, a request that
 * the hung master leaves unanswered past its deadline makes the daemon
 * ask for a new map (rather than wait for its periodic one, 10 s), and a
 * lock in the stopped master's slots is taken on the promoted replica
 * within HUNG_MAP_MS. */
START_TEST(test_stopped_master_does_not_freeze_the_map)
{
    fmt_cluster c;
    fmt_daemon d;
    fm_client *cl;
    char seeds[FMT_CLUSTER_MAX * 24], after[AFTER_KEYS][32];
    int masters[FMT_CLUSTER_MAX], victim, promoted, n = 0;
    int64_t t0, promoted_ms, recovered_ms;

    ck_assert_msg(fmt_cluster_start(&c) == 0, "the cluster did not start");
    ck_assert_int_eq(fmt_cluster_masters(&c, masters), 3);
    victim = masters[0];
    seeds_first(&c, victim, seeds, sizeof(seeds));
    daemon_start(&d, &c, seeds, 1);
    cl = fmt_client(&d);
    for (int k = 0; k < AFTER_KEYS; k++)
        name_on(&c, victim, "fm:lock:", "stop:after:", &n, after[k], sizeof(after[k]));

    t0 = fmt_now_ms();
    promoted = fmt_cluster_stop_master(&c, victim, RECOVER_MS);
    promoted_ms = fmt_now_ms() - t0;
    ck_assert_msg(promoted >= 0, "no replica took over within %d ms", RECOVER_MS);
    t0 = fmt_now_ms();
    recovered_ms = await_lock_on(&c, cl, after, promoted, t0, 1);
    fprintf(stderr, "cluster_ops: the first seed, a master, SIGSTOPped: its replica promoted "
            "after %lld ms, then a lock in its slots taken %lld ms later\n",
            (long long)promoted_ms, (long long)recovered_ms);
    ck_assert_msg(recovered_ms <= HUNG_MAP_MS, "a lock in the stopped master's slots took %lld "
                  "ms after its replica was promoted", (long long)recovered_ms);
    fm_client_free(cl);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    fmt_cluster_stop(&c);
}
END_TEST

/* ---- over TLS ---------------------------------------------------------------- */

static fmt_tls_certs certs;
static fmt_cluster tls_shared;

static void tls_up(void)
{
    fmt_tls_certs_make(&certs);
    ck_assert_msg(fmt_cluster_start_tls(&tls_shared, &certs) == 0,
                  "the cluster over TLS did not start");
    fprintf(stderr, "cluster_ops: six nodes over TLS started and settled in %lld ms\n",
            (long long)tls_shared.start_ms);
}

static void tls_down(void)
{
    fmt_cluster_stop(&tls_shared);
    fmt_tls_certs_remove(&certs);
}

/* Whether the daemon reaches c by TLS alone: no application comes in
 * through a node's plain port (the test's own connections, closed, may
 * take a moment to go), and through the TLS ports come the daemon's
 * command links, one to each master, and its pub/sub link to one node. */
static int daemon_on_tls_only(void *arg)
{
    const fmt_cluster *c = arg;
    int masters[FMT_CLUSTER_MAX], n = fmt_cluster_masters(c, masters);
    int apps[FMT_CLUSTER_MAX] = {0}, all = 0;

    for (int i = 0; i < c->nnodes; i++) {
        if (!fmt_tls_only(fmt_cluster_connect(c, i), c->node[i].port, c->node[i].tls_port,
                          &apps[i]))
            return 0;
        all += apps[i];
    }
    for (int k = 0; k < n; k++)
        if (apps[masters[k]] == 0)
            return 0;
    return n == 3 && all >= n + 1;
}

/* Given the TLS ports of the nodes alone as seeds and a rediss:// URL, the
 * daemon verifies each certificate against the CA, learns the masters'
 * TLS ports from CLUSTER SLOTS, and every operation lands on the master
 * of its key's slot; CLIENT LIST shows the daemon only on TLS ports. */
START_TEST(test_operations_over_tls_reach_the_master_of_each_slot)
{
    fmt_daemon d;
    ops_redis r = cluster_redis(&tls_shared);

    daemon_start(&d, &tls_shared, NULL, 1);
    ops_suite_run(&d, &r);
    ck_assert_msg(fmt_wait_until(daemon_on_tls_only, &tls_shared, TLS_UP_MS),
                  "within %d ms, CLIENT LIST did not show the daemon on the TLS ports alone",
                  TLS_UP_MS);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* One slot moved by hand over TLS (move_slot_slowly) while its
 * executions are read, with a lock held in it: the nodes answer ASK, then
 * MOVED, naming the TLS port of the slot's new owner, and the daemon
 * follows both there. The lock, released after the move, and taken again,
 * is on that owner, as are the executions. The lock workers hold a lock
 * of a slot that stays: what they take while the slot moves shows the
 * daemon serving the rest meanwhile (a lock of the moving slot, released
 * while its keys are half moved, would stay taken for its TTL). */
START_TEST(test_slot_moved_over_tls_is_followed)
{
    const char *tag = "tlsmv";
    unsigned slot = fm_slot(tag, strlen(tag));
    int src = slot_owner(&tls_shared, slot), dst = next_master(&tls_shared, src), owners[5];
    char lock_key[32], rkey[48], stays[48];
    ops_batch b = {0};
    redirects before, after;
    fmt_daemon d;
    fm_client *c;
    wl_locks w;
    wl_batch rd;
    fm_lock l;

    daemon_start(&d, &tls_shared, NULL, 1);
    c = fmt_client(&d);
    for (int k = 0; k < 5; k++)
        ops_batch_add(&b, "{%s}:%d", tag, k);
    snprintf(lock_key, sizeof(lock_key), "{%s}:mx", tag);
    ops_rkey(rkey, sizeof(rkey), "fm:lock:", lock_key);
    ops_batch_store(c, &b);
    ck_assert_int_eq(wl_try_lock(c, lock_key, &l, REQUEST_TIMEOUT_MS), 1);
    ck_assert(wl_exists_on(tls_shared.node[src].port, rkey));
    ops_rkey(stays, sizeof(stays), "fm:lock:", "tls:stays");
    ck_assert_uint_ne(fm_slot(stays, strlen(stays)), slot);
    workloads_start(&w, &rd, &d, (const char *const[]){"tls:stays"}, 1, &b);

    redirects_now(&tls_shared, d.sock, &w, &rd, &before);
    move_slot_slowly(&tls_shared, &rd, slot, dst, WINDOW_MS);
    redirects_now(&tls_shared, d.sock, &w, &rd, &after);
    redirects_followed(&before, &after, 0);
    workloads_served_after(&w, &rd, "while a slot moved over TLS");

    batch_on_owners(&tls_shared, &b, owners);
    for (size_t i = 0; i < b.n; i++)
        ck_assert_msg(owners[i] == dst, "%s is on node %d, not %d", b.ids[i], owners[i], dst);
    fmt_ok(c, fm_lock_release(c, lock_key, l.token, NULL, NULL), "release");
    ck_assert(!wl_exists_on(tls_shared.node[dst].port, rkey));
    ck_assert_int_eq(wl_try_lock(c, lock_key, &l, REQUEST_TIMEOUT_MS), 1);
    ck_assert(wl_exists_on(tls_shared.node[dst].port, rkey));
    ops_batch_free(&b);
    fm_client_free(c);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
}
END_TEST

/* A seed whose certificate another CA signed is refused, and ping says
 * why. A TLS redis-server stands in for the node: the handshake fails
 * before any command. */
START_TEST(test_seed_of_another_ca_is_refused_as_unknown_ca)
{
    fmt_tls_redis other;
    fmt_daemon d;
    char seeds[32];

    fmt_tls_redis_start(&other, &certs, FMT_TLS_OTHER_CA, 0);
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d", other.port);
    daemon_start(&d, &tls_shared, seeds, 0);
    wl_await_ping(d.sock, "signed by an unknown CA", TLS_UP_MS);
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    fmt_redis_stop(&other.r);
}
END_TEST

Suite *fm_suite_cluster_ops(void)
{
    Suite *s = suite_create("cluster_ops");
    TCase *tc = fmt_tcase(s, "serve", shared_up, shared_down, TCASE_TIMEOUT);

    tcase_add_test(tc, test_operations_reach_the_master_of_each_slot);
    tcase_add_test(tc, test_unreachable_first_seed_is_skipped);
    tcase_add_test(tc, test_no_seed_answering_is_down_with_the_reason);
    tcase_add_test(tc, test_empty_first_seed_is_passed_over);
    tcase_add_test(tc, test_refusing_first_seed_is_passed_over);
    tcase_add_test(tc, test_slots_move_under_load);
    /* It changes a master's password, and restores it. */
    tcase_add_test(tc, test_unreachable_master_holds_back_only_its_own_slots);
    /* Adds a node and takes it away again. */
    tcase_add_test(tc, test_ask_to_a_node_outside_the_map_is_followed);
    /* Takes a replica out of the cluster for good. */
    tcase_add_test(tc, test_wakes_leave_a_node_that_left_the_cluster);
    /* Last, so that a failure, which leaves a master's password set,
     * breaks no other test. */
    tcase_add_test(tc, test_extensions_for_an_unreachable_master_hold_back_no_other);
    tc = fmt_tcase(s, "failover", NULL, NULL, TCASE_TIMEOUT);
    tcase_add_test(tc, test_killed_master_is_replaced);
    tc = fmt_tcase(s, "stopped", NULL, NULL, TCASE_TIMEOUT);
    tcase_add_test(tc, test_stopped_master_does_not_freeze_the_map);
    tc = fmt_tcase(s, "formed_later", NULL, NULL, TCASE_TIMEOUT);
    tcase_add_test(tc, test_cluster_formed_after_start_is_served);
    tc = fmt_tcase(s, "tls", tls_up, tls_down, TCASE_TIMEOUT);
    tcase_add_test(tc, test_operations_over_tls_reach_the_master_of_each_slot);
    tcase_add_test(tc, test_slot_moved_over_tls_is_followed);
    tcase_add_test(tc, test_seed_of_another_ca_is_refused_as_unknown_ca);
    return s;
}
