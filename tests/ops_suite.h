/* ops_suite.h -- every operation of the contract run through a daemon on
 * a deployment of several Redis servers, each step's effect asserted on
 * the Redis that must hold it: test_sentinel.c runs it on the master the
 * sentinels name, test_cluster_ops.c on the master of each key's slot.
 * The deployments differ only in where a key lives and where the daemon's
 * subscription counts, which the test says through an ops_redis; the
 * names are the same in every connection mode (docs/SCALING.md §5.4).
 *
 * Also the executions a test stores and reads back (ops_batch), which the
 * cluster's fault tests use too. Every helper fails the running test. */
#ifndef FM_OPS_SUITE_H
#define FM_OPS_SUITE_H

#include <stddef.h>

#include "fmredis.h"
#include "harness.h"

#define OPS_LONG_TTL_MS 3600000     /* what ops_batch_store gives an execution */
#define OPS_LOCK_KEYS 24            /* lock courses of ops_check_locks */

/* The Redis side of a deployment. */
typedef struct ops_redis {
    /* The TCP port of the master that must hold the Redis key rkey. */
    int (*port_of)(void *arg, const char *rkey);
    /* The subscribers of channel over all the deployment's nodes (PUBSUB
     * NUMSUB counts one node's own). */
    long long (*subscribers)(void *arg, const char *channel);
    void *arg;
    int masters;                /* how many masters the suite's keys spread over */
    /* What wake.signal's receivers must at least be: its PUBLISH's count
     * on the node it ran on, which in a cluster need not be the one the
     * daemon subscribed on. */
    long long min_receivers;
    int request_timeout_ms;     /* the daemon's */
} ops_redis;

/* hello, ping (with a round trip to Redis), ops_check_locks,
 * ops_check_cache, ops_check_wakes and stats, on clients of their own. */
void ops_suite_run(const fmt_daemon *d, const ops_redis *r);

/* OPS_LOCK_KEYS locks, each through its whole course (acquire, contended
 * acquire, is_locked, release by another, extend, release, release and
 * extend of a lock no longer held, a second acquire with a higher fence),
 * each step checked on the key's master, its fence counter beside it. */
void ops_check_locks(const ops_redis *r, fm_client *a, fm_client *b);
/* cache.set of 60 executions, then get, get_many (with ids never stored),
 * invalidate and invalidate_many, each checked on the executions' masters. */
void ops_check_cache(const ops_redis *r, fm_client *a);
/* wake.subscribe (Redis counts a subscriber), signal, signal_many, and
 * unsubscribe (no wake on the channel after it). */
void ops_check_wakes(const ops_redis *r, fm_client *a, fm_client *sub);

/* "<prefix><name>" in out. */
void ops_rkey(char *out, size_t size, const char *prefix, const char *name);

/* ---- executions a test stores ---------------------------------------------- */

/* Ids, and a value for each with a number whose digits a re-printing
 * would lose. */
typedef struct ops_batch {
    size_t n;
    char *ids[64];
    char *values[64];
} ops_batch;

/* Adds the execution whose id is made of fmt and what follows. */
void ops_batch_add(ops_batch *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ops_batch_free(ops_batch *b);
/* cache.set of each, with OPS_LONG_TTL_MS. */
void ops_batch_store(fm_client *c, const ops_batch *b);
/* Each execution of b is on its master (port_of), with its exact value;
 * that master's port for each goes to ports (may be NULL). */
void ops_batch_on_masters(const ops_redis *r, const ops_batch *b, int *ports);
/* A get_many of b and the ids of absent answers b, each value exact. */
void ops_expect_batch(fm_client *c, const ops_batch *b, const char *const *absent,
                      size_t nabsent);

#endif
