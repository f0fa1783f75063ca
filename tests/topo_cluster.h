/* topo_cluster.h -- a real Redis Cluster for the tests: six redis-servers
 * (three masters, three replicas) on 127.0.0.1 ports of their own, joined by
 * `redis-cli --cluster create` (at once, or later: a test can start its
 * nodes first), and the faults later tests inject into it: slots moved from
 * one master to another (step by step, so a test can act while a slot is
 * half moved and Redis answers ASK), a master killed or stopped until its
 * replica takes over, a node added as an empty master, a node taken out of
 * the cluster while it stays up, and a node of no cluster at all.
 *
 * Each node is an fmt_redis (harness.h): a temp dir, a Unix socket for the
 * test's own commands, and the harness's clean-up, so the nodes die with
 * the process that started them also when a test fails (PR_SET_PDEATHSIG:
 * Check's fork mode ends a failed test with _exit, no exit handlers). As
 * with any fmt_redis, a failed test leaves its nodes' directories behind.
 *
 * Over TLS (fmt_cluster_start_tls) every node also serves TLS on a port of
 * its own, and the nodes speak only TLS to each other: the cluster bus,
 * replication and MIGRATE. With tls-cluster, Redis 7.0 names each node by
 * the port of the asker's kind in CLUSTER SLOTS, MOVED and ASK: the TLS
 * ports to a TLS client, the plain ports to a plain one, so that the
 * helpers here, on the plain ports and Unix sockets, work the same. */
#ifndef FM_TOPO_CLUSTER_H
#define FM_TOPO_CLUSTER_H

#include <stdint.h>

#include <hiredis/hiredis.h>

#include "harness.h"
#include "topo_tls.h"

#define FMT_CLUSTER_NODES 6      /* what a start makes */
#define FMT_CLUSTER_MAX 8        /* room for nodes added later */
#define FMT_CLUSTER_ID_MAX 40

typedef struct fmt_cluster_node {
    fmt_redis redis;
    int port;                       /* TCP; its cluster bus is port + 10000 */
    int tls_port;                   /* over TLS, else 0 */
    char id[FMT_CLUSTER_ID_MAX + 1];
    char port_arg[8], tls_port_arg[8], bus_port_arg[12];
    const char *args[20 + FMT_TLS_TOPO_ARGS];   /* redis-server's extra arguments */
    int detached;                   /* up, but out of the cluster */
    int stopped;                    /* SIGSTOPped: up, but silent */
} fmt_cluster_node;

typedef struct fmt_cluster {
    fmt_cluster_node node[FMT_CLUSTER_MAX];
    int nnodes;                     /* FMT_CLUSTER_NODES, then those added */
    int64_t start_ms;               /* how long the start took */
    const fmt_tls_certs *tls;       /* over TLS: the certificates; or NULL */
} fmt_cluster;

/* Starts the six nodes, creates the cluster, and waits until every node
 * says cluster_state:ok and every replica is in sync with its master.
 * 0, or -1 (what was started is stopped again). */
int fmt_cluster_start(fmt_cluster *c);
/* The same over TLS with the certificates tls, which must outlive c. */
int fmt_cluster_start_tls(fmt_cluster *c, const fmt_tls_certs *tls);
/* The same in two steps: the six nodes, each alone, with no slot and
 * cluster_state:fail (0 or -1, as above), then the cluster made of them
 * (0 or -1; the caller stops the nodes). */
int fmt_cluster_start_nodes(fmt_cluster *c);
int fmt_cluster_create(fmt_cluster *c);
/* Kills every node and removes their directories. */
void fmt_cluster_stop(fmt_cluster *c);

/* Starts one more node and has it meet the cluster, as a master with no
 * slot (which no CLUSTER SLOTS names), and waits until every live node
 * knows every other and says cluster_state:ok. Its index, or -1. */
int fmt_cluster_add_node(fmt_cluster *c);
/* Takes node i out of the cluster while it stays up: every other live
 * node forgets it, and it forgets them (CLUSTER RESET HARD: a replica's
 * data goes; a master must have no slot left). 0 or -1. */
int fmt_cluster_detach(fmt_cluster *c, int i);
/* Detaches the node added last and stops it. 0 or -1. */
int fmt_cluster_remove_node(fmt_cluster *c);

/* A synchronous connection to node i (its Unix socket), or NULL. */
redisContext *fmt_cluster_connect(const fmt_cluster *c, int i);
/* The port where node i serves clients: its TLS port over TLS. */
int fmt_cluster_port(const fmt_cluster *c, int i);
/* The node that serves slot as a master, as node i sees it, or -1. */
int fmt_cluster_owner(const fmt_cluster *c, int i, unsigned slot);
/* The nodes that are masters now (alive and with slots): their indexes in
 * out (room for FMT_CLUSTER_MAX), and how many. */
int fmt_cluster_masters(const fmt_cluster *c, int *out);

/* Moving one slot by hand, as `redis-cli --cluster reshard` does:
 * begin marks slot IMPORTING on dst and MIGRATING on its owner; then keys
 * moves at most count of its keys (count 0: all) with MIGRATE, so that
 * Redis answers ASK for them at the old owner; end assigns the slot to dst
 * on every master (replicas learn it over the cluster bus: see
 * fmt_cluster_wait_agreed). Each returns 0 or -1. */
int fmt_cluster_move_begin(fmt_cluster *c, unsigned slot, int dst);
int fmt_cluster_move_keys(fmt_cluster *c, unsigned slot, int dst, unsigned count);
int fmt_cluster_move_end(fmt_cluster *c, unsigned slot, int dst);
/* The three at once, then fmt_cluster_wait_agreed. 0 or -1. */
int fmt_cluster_move(fmt_cluster *c, unsigned slot, int dst);
/* Waits until every live node sees owner serving slots first..last (the
 * cluster bus spreads a move in up to a second or so). 0 or -1. */
int fmt_cluster_wait_agreed(fmt_cluster *c, unsigned first, unsigned last, int owner);
/* Moves n slots of master src (its lowest ones) to master dst, keys
 * included, and waits until every live node agrees. 0 or -1. */
int fmt_cluster_reshard(fmt_cluster *c, int src, int dst, unsigned n);

/* SIGKILLs master i and waits up to timeout_ms until one of its replicas is
 * a master serving its slots and every live node says cluster_state:ok.
 * Returns the promoted node's index, or -1. */
int fmt_cluster_kill_master(fmt_cluster *c, int i, int timeout_ms);
/* The same with SIGSTOP: master i stays up, its sockets accept, and it
 * answers nothing, as a hung server. The node is then passed over by the
 * helpers here (fmt_cluster_connect gives NULL); fmt_cluster_stop still
 * ends it (SIGKILL). */
int fmt_cluster_stop_master(fmt_cluster *c, int i, int timeout_ms);

/* Starts one cluster-enabled node that is in no cluster (no slot, no
 * other node) and stays so: a seed that answers CLUSTER SLOTS with
 * nothing. The caller stops it with fmt_redis_stop(&n->redis). 0 or -1. */
int fmt_cluster_start_lone(fmt_cluster_node *n);

#endif
