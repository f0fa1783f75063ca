/* topo_sentinel.h -- a Redis Sentinel deployment for the tests: a master,
 * one replica and three sentinels (quorum 2), all on 127.0.0.1 ports of
 * their own in one temporary directory, with short down-after and
 * failover timeouts so that failovers take seconds.
 *
 * Over TLS (fmt_sentinel_start_tls) every server also serves TLS on a port
 * of its own, and they speak only TLS to each other: the replica to its
 * master, the sentinels to the servers and to each other, so that the
 * sentinels name and announce the TLS ports. The plain ports stay for the
 * test's own commands: hiredis 0.14 has no TLS.
 *
 * The servers belong to the process that starts them (the harness's
 * fmt_spawn: killed at that process's exit, also when a test fails in
 * Check's fork mode, and with PR_SET_PDEATHSIG); the directory is removed
 * by fmt_sentinel_stop, or at exit when a failed test never got there. */
#ifndef FM_TOPO_SENTINEL_H
#define FM_TOPO_SENTINEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

#include "topo_tls.h"

#define FMT_SENTINEL_MASTER "fmmaster"
#define FMT_SENTINEL_DOWN_MS 1000       /* down-after-milliseconds */
#define FMT_SENTINEL_FAILOVER_MS 5000   /* failover-timeout */

typedef struct fmt_sentinel_topo {
    char dir[256];
    int redis_port[2];          /* [0] starts as the master, [1] as its replica */
    pid_t redis_pid[2];
    int sentinel_port[3];
    pid_t sentinel_pid[3];
    const char *password;       /* the sentinels' requirepass, or NULL */
    const fmt_tls_certs *tls;   /* over TLS: the certificates; or NULL */
    int redis_tls_port[2];      /* over TLS: the TLS ports, else 0 */
    int sentinel_tls_port[3];
    /* "127.0.0.1:P 127.0.0.1:P 127.0.0.1:P", the sentinels as a client
     * reaches them: their TLS ports over TLS */
    char list[96];
} fmt_sentinel_topo;

/* Starts everything and waits until the replica is in sync and every
 * sentinel knows the replica and the two other sentinels (a failover can
 * happen then). password: the sentinels' own (requirepass), or NULL.
 * 0, or -1 with what failed on stderr (everything started is stopped). */
int fmt_sentinel_start(fmt_sentinel_topo *t, const char *password);
/* The same over TLS with the certificates tls, which must outlive t. */
int fmt_sentinel_start_tls(fmt_sentinel_topo *t, const char *password,
                           const fmt_tls_certs *tls);
void fmt_sentinel_stop(fmt_sentinel_topo *t);

/* A connection to 127.0.0.1:port with a 2 s timeout, or NULL. */
redisContext *fmt_tcp_connect(int port);
/* The same to sentinel i, authenticated when the topology has a password. */
redisContext *fmt_sentinel_connect(const fmt_sentinel_topo *t, int i);
/* The master's port as sentinel i names it, or -1 (no answer): a TLS
 * port over TLS. */
int fmt_sentinel_master_port(const fmt_sentinel_topo *t, int i);
/* Which of the two servers listens on port (plain or TLS), or -1. */
int fmt_sentinel_node_of(const fmt_sentinel_topo *t, int port);
/* The port where server i serves clients, as the sentinels name it: its
 * TLS port over TLS, else redis_port[i]. */
int fmt_sentinel_port(const fmt_sentinel_topo *t, int i);
/* Waits up to timeout_ms until every live sentinel names a master other
 * than port: 1 when they do. */
int fmt_sentinel_await_switch(const fmt_sentinel_topo *t, int port, int timeout_ms);
/* Whether the Redis on port says ROLE master. */
int fmt_redis_port_is_master(int port);

/* A sentinel that never learns of a failover, in a thread of the test: it
 * answers PING, AUTH and SUBSCRIBE as a sentinel does, names
 * 127.0.0.1:master_port as the master whatever it is asked, for ever, and
 * announces nothing. */
typedef struct fmt_fake_sentinel {
    int port;
    int master_port;
    int fd;                     /* listening */
    atomic_int stop;
    pthread_t thread;
} fmt_fake_sentinel;

/* 0, or -1 with what failed on stderr. */
int fmt_fake_sentinel_start(fmt_fake_sentinel *f, int master_port);
void fmt_fake_sentinel_stop(fmt_fake_sentinel *f);

#endif
