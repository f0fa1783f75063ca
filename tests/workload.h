/* workload.h -- what the fault tests of the high-availability suites
 * (test_sentinel.c, test_cluster_ops.c) share: threads that keep the
 * daemon busy through a fault and record what they saw, the waits for
 * wakes, link events and pings, and the Redis-side checks on a node
 * named by its TCP port.
 *
 * The threads never assert (Check's assertions end the test process from
 * the thread that fails): they count, keep the first thing that went
 * wrong in `why`, and the test asserts on that once they are stopped. */
#ifndef FM_WORKLOAD_H
#define FM_WORKLOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "fmredis.h"
#include "harness.h"

#define WL_WORKERS_MAX 8
#define WL_KEYS_MAX 8
#define WL_SLACK_MS 1500    /* beyond a deadline, what an answer may take on a loaded machine */

/* ---- holders of a few locks ---------------------------------------------- */

/* nworkers threads, each on a client of its own, take the locks of keys in
 * turn (ttl 5 s, retries every 10 ms), hold one for 3 ms, release it. A
 * worker that takes a lock another worker holds counts an overlap: two
 * holders at once. An acquire the daemon answers with an error other than
 * redis_unavailable or timeout, or that the client gives up on, is
 * unexpected. */
typedef struct wl_locks {
    const char *sock;
    const char *const *keys;
    int nkeys, nworkers;
    atomic_int stop;
    atomic_int started;                 /* workers running: each starts on another key */
    atomic_int holders[WL_KEYS_MAX];    /* of each key, as the workers see it */
    atomic_int overlaps;
    atomic_long taken;
    atomic_long taken_after;            /* while `mark` was set */
    atomic_long failed;                 /* acquires answered with an error */
    atomic_int mark;
    atomic_int unexpected;
    char why[256];                      /* the first unexpected answer */
    pthread_t threads[WL_WORKERS_MAX];
} wl_locks;

void wl_locks_start(wl_locks *w, const char *sock, const char *const *keys, int nkeys,
                    int nworkers);
void wl_locks_stop(wl_locks *w);

/* ---- a reader of one batch ----------------------------------------------- */

/* One thread asks cache.get_many of ids again and again (every 2 ms). Each
 * answer must be exactly the stored set, every id with its value, or an
 * error (redis_unavailable or timeout); anything else, a partial answer
 * above all, is counted wrong. */
typedef struct wl_batch {
    const char *sock;
    const char *const *ids;
    const char *const *values;          /* the execution stored for each id */
    size_t n;
    atomic_int stop;
    atomic_long started;                /* get_many calls begun */
    atomic_long complete;
    atomic_long complete_after;         /* begun while `mark` was set */
    atomic_long failed;
    /* Read once stopped: the longest time between two complete answers
     * (what a fault cost the readers), and when it ended (fmt_now_ms). */
    int64_t last_complete_ms, longest_gap_ms, gap_end_ms;
    atomic_int mark;
    atomic_int wrong;
    char why[512];                      /* the first wrong answer */
    pthread_t thread;
} wl_batch;

void wl_batch_start(wl_batch *b, const char *sock, const char *const *ids,
                    const char *const *values, size_t n);
void wl_batch_stop(wl_batch *b);

/* Waits up to timeout_ms until the counter passes value; fails the test
 * otherwise, with what. */
void wl_await_count(atomic_long *counter, long value, int timeout_ms, const char *what);

/* ---- a prober of a failover's outage -------------------------------------- */

#define WL_PROBE_KEYS 32

/* One thread takes fresh locks ("<stem><n>", ttl 30 s, no retries), one
 * after another every few ms, from before a failover until well after the
 * daemon is on the new master; the daemon's log names that master with
 * up_needle (its "command link up, master at ..." line). Each answer must
 * come within request_timeout_ms + WL_SLACK_MS, and be a lock taken or
 * redis_unavailable: never "held" (the keys are fresh), never another
 * error. `timeout` is the daemon's word for a command that Redis, being
 * connected, did not answer within request_timeout_ms (docs/PROTOCOL.md
 * §6): no server hangs in a failover (a killed master's sockets are closed
 * by its kernel, and the sentinels end the clients of a master they
 * reconfigure with CLIENT KILL), so it is taken only from a request the
 * daemon sent to the new master at the end of its deadline, having held
 * it through the outage: answered at its deadline, with the daemon
 * already on the new master. Any other would be the daemon waiting on a
 * connection that is gone.
 * The locks taken once the daemon was on the new master must all be
 * there (wl_probe_check asserts the first WL_PROBE_KEYS of them); those
 * begun before may have gone to the old master while it was one. */
typedef struct wl_probe {
    const char *sock, *stem;
    const char *log, *up_needle;
    int request_timeout_ms;
    atomic_int stop;
    atomic_long fault_ms;               /* fmt_now_ms of the fault, set by the test */
    atomic_long attempts, failed, timeouts;
    atomic_long during;                 /* answered after the fault, before the daemon was up */
    atomic_long taken_up;               /* taken once the daemon was up on the new master */
    int64_t longest_ms;                 /* the slowest answer; read once stopped */
    char up_keys[WL_PROBE_KEYS][48];    /* the first of the taken_up locks */
    atomic_int wrong;
    char why[256];                      /* the first wrong answer */
    pthread_t thread;
} wl_probe;

/* p holds sock, stem, log, up_needle and request_timeout_ms, and zeros
 * (a designated initializer). */
void wl_probe_start(wl_probe *p);
/* The fault is injected now: answers from here until the daemon is up
 * count as the outage's. */
void wl_probe_fault(wl_probe *p);
void wl_probe_stop(wl_probe *p);
/* Asserts what the probe saw (above): no wrong answer, some answered
 * during the outage, some locks taken after it, and those on port. */
void wl_probe_check(wl_probe *p, int port, const char *what);

/* ---- the daemon's answers ------------------------------------------------ */

/* One acquire (ttl 30 s) with no retries: 1 taken, 0 not taken, -1 failed.
 * A failure must be redis_unavailable (nothing else may come of a
 * failover or a moving slot), answered within request_timeout_ms. */
int wl_try_lock(fm_client *c, const char *key, fm_lock *l, int request_timeout_ms);
/* The same while a master is hung (up, but answering nothing): a failure
 * may also be timeout, the daemon's word for a command Redis did not
 * answer within request_timeout_ms. */
int wl_try_lock_hung(fm_client *c, const char *key, fm_lock *l, int request_timeout_ms);
/* Waits for a wake of id on the client, passing over link events. */
void wl_expect_wake(fm_client *c, const char *id, int timeout_ms);
/* The same, and the first wake to come must be id's: one that came before
 * it (on another channel, say) fails the test. */
void wl_expect_next_wake(fm_client *c, const char *id, int timeout_ms);
/* Waits for the client's wake subscription to go "down" and come back
 * "up" (restored on another node), passing over wakes. */
void wl_await_resubscribed(fm_client *c, int timeout_ms);
/* Waits until a ping of the daemon holds needle (its redis_error, say). */
void wl_await_ping(const char *sock, const char *needle, int timeout_ms);

/* ---- Redis's side, on 127.0.0.1:port ------------------------------------- */

int wl_exists_on(int port, const char *key);
/* The string value of key (caller frees), or NULL when there is none. */
char *wl_get_on(int port, const char *key);
long long wl_pttl_on(int port, const char *key);

#endif
