/* topo_cluster.c -- a six-node Redis Cluster for the tests (see
 * topo_cluster.h), and nodes added to it or taken out.
 *
 * Ports come from 20000..22767, so that the cluster bus ports (port + 10000)
 * stay below Linux's ephemeral range (32768 up), where an outgoing
 * connection could take one between our check and Redis's bind; both are
 * checked free before use, and a start that still loses the race is tried
 * again on other ports. cluster-node-timeout is 1 s so that a killed
 * master's replica takes over in about two seconds, and replicas sync
 * without the 5 s wait of diskless sync's default. A master that gives its
 * last slot away stays a master (cluster-allow-replica-migration no):
 * otherwise an added node that gives its slot back turns into a replica of
 * the slot's new owner while the move's last SETSLOTs are still under way,
 * and refuses them. A start takes about 2-3 s, most of it redis-cli's
 * one-second waits for the nodes to join; adding a node about 2 s, Redis's
 * wait before a master that just joined says cluster_state:ok.
 *
 * A node taken out of the cluster but left up (fmt_cluster_detach) stays
 * in the table, for the test to talk to, but is no member: what waits for
 * the members to agree passes it over.
 *
 * Over TLS, each node's TLS port comes from the same range, and its bus
 * stays at port + 10000 (--cluster-port): tls-cluster would move it to
 * tls-port + 10000, which the choice of ports does not check, while
 * `redis-cli --cluster create` and CLUSTER MEET, given the plain port,
 * take port + 10000 for the bus. */
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "topo_cluster.h"

#define PORT_LOW 20000
#define PORT_HIGH 22767
#define BUS_OFFSET 10000
#define START_ATTEMPTS 3
#define CREATE_TIMEOUT_MS 30000
#define SETTLE_TIMEOUT_MS 15000
#define MIGRATE_BATCH 100

static int port_bindable(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

    if (fd < 0)
        return 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static int pick_port(const fmt_cluster *c, int taken, unsigned *seed)
{
    for (;;) {
        int port = PORT_LOW + (int)(rand_r(seed) % (PORT_HIGH - PORT_LOW + 1)), dup = 0;

        for (int i = 0; i < taken; i++)
            dup |= c->node[i].port == port || c->node[i].tls_port == port;
        if (!dup && port_bindable(port) && port_bindable(port + BUS_OFFSET))
            return port;
    }
}

static unsigned port_seed(void)
{
    return (unsigned)getpid() ^ (unsigned)time(NULL);
}

static void set_args(fmt_cluster_node *n, const fmt_tls_certs *tls)
{
    const char *args[] = {"--port", n->port_arg, "--bind", "127.0.0.1",
                          "--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                          "--cluster-replica-validity-factor", "0",
                          "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1",
                          "--cluster-allow-replica-migration", "no", NULL};
    int k = (int)(sizeof(args) / sizeof(args[0])) - 1;

    snprintf(n->port_arg, sizeof(n->port_arg), "%d", n->port);
    memcpy(n->args, args, sizeof(args));
    if (tls == NULL)
        return;
    snprintf(n->bus_port_arg, sizeof(n->bus_port_arg), "%d", n->port + BUS_OFFSET);
    snprintf(n->tls_port_arg, sizeof(n->tls_port_arg), "%d", n->tls_port);
    n->args[k++] = "--cluster-port";
    n->args[k++] = n->bus_port_arg;
    n->args[fmt_tls_topo_args(n->args, k, tls, n->tls_port_arg, 1)] = NULL;
}

/* Starts n on port (and tls_port over TLS), alone: no slot, no other
 * node. */
static int spawn_node(fmt_cluster_node *n, int port, int tls_port, const fmt_tls_certs *tls)
{
    n->port = port;
    n->tls_port = tls_port;
    set_args(n, tls);
    return fmt_redis_start(&n->redis, n->args);
}

/* Starts node i on ports of its own, alone. */
static int start_node(fmt_cluster *c, int i, unsigned *seed)
{
    int port = pick_port(c, i, seed), tls_port = 0;

    while (c->tls != NULL && (tls_port == 0 || tls_port == port))
        tls_port = pick_port(c, i, seed);
    return spawn_node(&c->node[i], port, tls_port, c->tls);
}

int fmt_cluster_start_lone(fmt_cluster_node *n)
{
    unsigned seed = port_seed();

    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        memset(n, 0, sizeof(*n));
        if (spawn_node(n, pick_port(NULL, 0, &seed), 0, NULL) == 0)
            return 0;
    }
    return -1;
}

/* A stopped node's sockets still accept, but nothing answers there: a
 * command sent to it would wait for good. */
redisContext *fmt_cluster_connect(const fmt_cluster *c, int i)
{
    if (i < 0 || i >= c->nnodes || c->node[i].redis.pid <= 0 || c->node[i].stopped)
        return NULL;
    return fmt_redis_connect(&c->node[i].redis);
}

int fmt_cluster_port(const fmt_cluster *c, int i)
{
    return c->tls != NULL ? c->node[i].tls_port : c->node[i].port;
}

/* Node i is up, answers, and is in the cluster (not detached). */
static int member(const fmt_cluster *c, int i)
{
    return c->node[i].redis.pid > 0 && !c->node[i].stopped && !c->node[i].detached;
}

/* One command to node i on a connection of its own; NULL when the node is
 * down or does not answer. */
__attribute__((format(printf, 3, 4)))
static redisReply *node_cmd(const fmt_cluster *c, int i, const char *fmt, ...)
{
    redisContext *ctx = fmt_cluster_connect(c, i);
    redisReply *r;
    va_list ap;

    if (ctx == NULL)
        return NULL;
    va_start(ap, fmt);
    r = redisvCommand(ctx, fmt, ap);
    va_end(ap);
    redisFree(ctx);
    return r;
}

static int reply_ok(redisReply *r)
{
    int ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;

    if (r != NULL && !ok)
        fprintf(stderr, "topo_cluster: %s\n",
                r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    freeReplyObject(r);
    return ok;
}

/* Whether the INFO-style text of node i's reply to "cmd arg" holds line. */
static int node_says(const fmt_cluster *c, int i, const char *cmd, const char *arg,
                     const char *line)
{
    redisReply *r = node_cmd(c, i, "%s %s", cmd, arg);
    int yes = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, line) != NULL;

    freeReplyObject(r);
    return yes;
}

static int node_index_by_port(const fmt_cluster *c, long long port)
{
    for (int i = 0; i < c->nnodes; i++)
        if (c->node[i].port == port)
            return i;
    return -1;
}

/* The port of a CLUSTER SLOTS entry's master, or -1. */
static long long entry_port(const redisReply *e)
{
    const redisReply *m;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
        return -1;
    m = e->element[2];
    if (m->type != REDIS_REPLY_ARRAY || m->elements < 2
        || m->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    return m->element[1]->integer;
}

/* The node serving slot in a CLUSTER SLOTS reply, or -1. */
static int owner_in(const fmt_cluster *c, const redisReply *r, unsigned slot)
{
    for (size_t k = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
        const redisReply *e = r->element[k];

        if (entry_port(e) >= 0 && (long long)slot >= e->element[0]->integer
            && (long long)slot <= e->element[1]->integer)
            return node_index_by_port(c, entry_port(e));
    }
    return -1;
}

int fmt_cluster_owner(const fmt_cluster *c, int i, unsigned slot)
{
    redisReply *r = node_cmd(c, i, "CLUSTER SLOTS");
    int owner = owner_in(c, r, slot);

    freeReplyObject(r);
    return owner;
}

static int first_live(const fmt_cluster *c)
{
    for (int i = 0; i < c->nnodes; i++)
        if (member(c, i))
            return i;
    return -1;
}

int fmt_cluster_masters(const fmt_cluster *c, int *out)
{
    redisReply *r = node_cmd(c, first_live(c), "CLUSTER SLOTS");
    int n = 0;

    for (size_t k = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
        int m = node_index_by_port(c, entry_port(r->element[k])), dup = 0;

        for (int j = 0; j < n; j++)
            dup |= out[j] == m;
        if (m >= 0 && !dup)
            out[n++] = m;
    }
    freeReplyObject(r);
    return n;
}

/* Whether node i's CLUSTER SLOTS lists a replica with every range. */
static int lists_replicas(const fmt_cluster *c, int i)
{
    redisReply *r = node_cmd(c, i, "CLUSTER SLOTS");
    int all = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0;

    for (size_t k = 0; all && k < r->elements; k++)
        all = r->element[k]->type == REDIS_REPLY_ARRAY && r->element[k]->elements >= 4;
    freeReplyObject(r);
    return all;
}

/* Whether node i knows every member by its id: a node still in the
 * handshake goes by another name until it is over. */
static int knows_members(const fmt_cluster *c, int i)
{
    redisReply *r = node_cmd(c, i, "CLUSTER NODES");
    int all = r != NULL && r->type == REDIS_REPLY_STRING;

    for (int k = 0; all && k < c->nnodes; k++)
        all = !member(c, k) || strstr(r->str, c->node[k].id) != NULL;
    freeReplyObject(r);
    return all;
}

/* Every member knows every other and has the cluster up. A node that
 * just joined says cluster_state:fail for a while (Redis's rejoin delay)
 * and refuses a MIGRATE with CLUSTERDOWN meanwhile. */
static int joined(void *arg)
{
    const fmt_cluster *c = arg;

    for (int i = 0; i < c->nnodes; i++)
        if (member(c, i) && (!knows_members(c, i)
                             || !node_says(c, i, "CLUSTER", "INFO", "cluster_state:ok\r\n")))
            return 0;
    return 1;
}

/* The cluster is joined, every live node lists every master's replica,
 * and every replica is in sync with its master. Redis 7 leaves a replica
 * out of CLUSTER SLOTS until its replication offset is not 0: the master's
 * pings (repl-ping-replica-period, 1 s here) move it. */
static int settled(void *arg)
{
    const fmt_cluster *c = arg;

    if (!joined(arg))
        return 0;
    for (int i = 0; i < c->nnodes; i++) {
        if (!member(c, i))
            continue;
        if (!lists_replicas(c, i))
            return 0;
        if (node_says(c, i, "INFO", "replication", "role:slave\r\n")
            && !node_says(c, i, "INFO", "replication", "master_link_status:up\r\n"))
            return 0;
    }
    return 1;
}

static int create(fmt_cluster *c)
{
    char addr[FMT_CLUSTER_NODES][32];
    const char *argv[FMT_CLUSTER_NODES + 8] = {"redis-cli", "--cluster", "create"};
    int n = 3, rc;
    fmt_proc p;

    for (int i = 0; i < FMT_CLUSTER_NODES; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", c->node[i].port);
        argv[n++] = addr[i];
    }
    argv[n++] = "--cluster-replicas";
    argv[n++] = "1";
    argv[n++] = "--cluster-yes";
    argv[n] = NULL;
    rc = fmt_run(&p, argv, NULL, NULL, CREATE_TIMEOUT_MS);
    if (rc != 0)
        fprintf(stderr, "topo_cluster: redis-cli --cluster create: %d\n%s%s\n", rc,
                p.text[1], p.text[2]);
    fmt_proc_free(&p);
    return rc == 0 ? 0 : -1;
}

/* The node ids of first..last (their nodes have not yet met: each id is
 * its node's own for good from the start). */
static int read_ids(fmt_cluster *c, int first, int last)
{
    for (int i = first; i <= last; i++) {
        redisReply *r = node_cmd(c, i, "CLUSTER MYID");
        int ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len <= FMT_CLUSTER_ID_MAX;

        if (ok)
            memcpy(c->node[i].id, r->str, r->len + 1);
        freeReplyObject(r);
        if (!ok)
            return -1;
    }
    return 0;
}

/* Starts the six nodes (over TLS with tls), and joins them into a
 * cluster when join says so, each in up to START_ATTEMPTS tries on other
 * ports. */
static int start(fmt_cluster *c, int join, const fmt_tls_certs *tls)
{
    int64_t t0 = fmt_now_ms();
    unsigned seed = port_seed();

    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        int rc = 0;

        memset(c, 0, sizeof(*c));
        c->nnodes = FMT_CLUSTER_NODES;
        c->tls = tls;
        for (int i = 0; i < FMT_CLUSTER_NODES && rc == 0; i++)
            rc = start_node(c, i, &seed);
        if (rc == 0 && read_ids(c, 0, FMT_CLUSTER_NODES - 1) == 0
            && (!join || fmt_cluster_create(c) == 0)) {
            c->start_ms = fmt_now_ms() - t0;
            return 0;
        }
        fmt_cluster_stop(c);
    }
    return -1;
}

int fmt_cluster_start(fmt_cluster *c)
{
    return start(c, 1, NULL);
}

int fmt_cluster_start_tls(fmt_cluster *c, const fmt_tls_certs *tls)
{
    return start(c, 1, tls);
}

int fmt_cluster_start_nodes(fmt_cluster *c)
{
    return start(c, 0, NULL);
}

int fmt_cluster_create(fmt_cluster *c)
{
    if (create(c) != 0)
        return -1;
    if (!fmt_wait_until(settled, c, SETTLE_TIMEOUT_MS)) {
        fprintf(stderr, "topo_cluster: the cluster did not settle in %d ms\n", SETTLE_TIMEOUT_MS);
        return -1;
    }
    return 0;
}

void fmt_cluster_stop(fmt_cluster *c)
{
    for (int i = 0; i < c->nnodes; i++)
        if (c->node[i].redis.dir[0] != '\0')
            fmt_redis_stop(&c->node[i].redis);
}

int fmt_cluster_add_node(fmt_cluster *c)
{
    int i = c->nnodes, first = first_live(c), rc = -1;
    unsigned seed = port_seed();

    if (i == FMT_CLUSTER_MAX || first < 0)
        return -1;
    c->nnodes++;
    for (int attempt = 0; attempt < START_ATTEMPTS && rc != 0; attempt++) {
        if (c->node[i].redis.dir[0] != '\0')
            fmt_redis_stop(&c->node[i].redis);
        rc = start_node(c, i, &seed);
    }
    if (rc == 0 && read_ids(c, i, i) == 0
        && reply_ok(node_cmd(c, i, "CLUSTER MEET 127.0.0.1 %d", c->node[first].port))
        && fmt_wait_until(joined, c, SETTLE_TIMEOUT_MS))
        return i;
    fmt_cluster_remove_node(c);
    return -1;
}

int fmt_cluster_detach(fmt_cluster *c, int i)
{
    if (i < 0 || i >= c->nnodes || !member(c, i))
        return -1;
    /* The others first: each bans the id for a minute, so that the
     * node's gossip, until its reset, cannot bring it back. */
    for (int k = 0; k < c->nnodes; k++)
        if (k != i && member(c, k)
            && !reply_ok(node_cmd(c, k, "CLUSTER FORGET %s", c->node[i].id)))
            return -1;
    if (!reply_ok(node_cmd(c, i, "CLUSTER RESET HARD")))
        return -1;
    c->node[i].detached = 1;
    return 0;
}

int fmt_cluster_remove_node(fmt_cluster *c)
{
    int i = c->nnodes - 1, rc = 0;

    if (i < FMT_CLUSTER_NODES)
        return -1;
    /* One that never met the others has nothing to leave. */
    if (member(c, i) && c->node[i].id[0] != '\0')
        rc = fmt_cluster_detach(c, i);
    if (c->node[i].redis.dir[0] != '\0')
        fmt_redis_stop(&c->node[i].redis);
    memset(&c->node[i], 0, sizeof(c->node[i]));
    c->nnodes--;
    return rc;
}

int fmt_cluster_move_begin(fmt_cluster *c, unsigned slot, int dst)
{
    int src = fmt_cluster_owner(c, dst, slot);

    if (src < 0 || src == dst)
        return -1;
    /* IMPORTING first: a slot MIGRATING at the source whose destination does
     * not import it yet would bounce clients between the two. */
    if (!reply_ok(node_cmd(c, dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, c->node[src].id)))
        return -1;
    return reply_ok(node_cmd(c, src, "CLUSTER SETSLOT %u MIGRATING %s", slot, c->node[dst].id))
               ? 0 : -1;
}

/* MIGRATEs keys (a GETKEYSINSLOT reply) from src to dst: to its TLS port
 * over TLS, since a node with tls-cluster sends MIGRATE by TLS. */
static int migrate(fmt_cluster *c, int src, int dst, const redisReply *keys)
{
    const char *argv[8 + MIGRATE_BATCH];
    size_t lens[8 + MIGRATE_BATCH];
    const char *head[] = {"MIGRATE", "127.0.0.1",
                          c->tls != NULL ? c->node[dst].tls_port_arg : c->node[dst].port_arg,
                          "", "0", "5000", "KEYS"};
    redisContext *ctx = fmt_cluster_connect(c, src);
    redisReply *r;
    int n = 0;

    if (ctx == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++, n++) {
        argv[n] = head[i];
        lens[n] = strlen(head[i]);
    }
    for (size_t i = 0; i < keys->elements; i++, n++) {
        argv[n] = keys->element[i]->str;
        lens[n] = keys->element[i]->len;
    }
    r = redisCommandArgv(ctx, n, argv, lens);
    redisFree(ctx);
    return reply_ok(r) ? 0 : -1;
}

int fmt_cluster_move_keys(fmt_cluster *c, unsigned slot, int dst, unsigned count)
{
    int src = fmt_cluster_owner(c, dst, slot);
    unsigned moved = 0;

    if (src < 0)
        return -1;
    while (count == 0 || moved < count) {
        unsigned want = count == 0 || count - moved > MIGRATE_BATCH ? MIGRATE_BATCH : count - moved;
        redisReply *keys = node_cmd(c, src, "CLUSTER GETKEYSINSLOT %u %u", slot, want);
        int rc = keys != NULL && keys->type == REDIS_REPLY_ARRAY ? 0 : -1;

        if (rc == 0 && keys->elements == 0) {
            freeReplyObject(keys);
            return 0;
        }
        if (rc == 0)
            rc = migrate(c, src, dst, keys);
        if (rc == 0)
            moved += (unsigned)keys->elements;
        freeReplyObject(keys);
        if (rc != 0)
            return -1;
    }
    return 0;
}

int fmt_cluster_move_end(fmt_cluster *c, unsigned slot, int dst)
{
    int src = fmt_cluster_owner(c, dst, slot), masters[FMT_CLUSTER_MAX];
    int n = fmt_cluster_masters(c, masters);

    if (src < 0)
        return -1;
    /* The destination first, then the source, as Redis's cluster spec says:
     * a source that gave the slot up before the destination took it would
     * send clients to a node that redirects them back. */
    if (!reply_ok(node_cmd(c, dst, "CLUSTER SETSLOT %u NODE %s", slot, c->node[dst].id)))
        return -1;
    if (src != dst
        && !reply_ok(node_cmd(c, src, "CLUSTER SETSLOT %u NODE %s", slot, c->node[dst].id)))
        return -1;
    for (int k = 0; k < n; k++) {
        if (masters[k] != src && masters[k] != dst
            && !reply_ok(node_cmd(c, masters[k], "CLUSTER SETSLOT %u NODE %s", slot,
                                  c->node[dst].id)))
            return -1;
    }
    return 0;
}

typedef struct agreement {
    const fmt_cluster *c;
    unsigned first, last;   /* slots */
    int owner;
} agreement;

/* Every live node sees owner serving the slots first..last. */
static int agreed(void *arg)
{
    const agreement *a = arg;

    for (int i = 0; i < a->c->nnodes; i++) {
        redisReply *r;
        int same = 1;

        if (!member(a->c, i))
            continue;
        r = node_cmd(a->c, i, "CLUSTER SLOTS");
        for (unsigned s = a->first; s <= a->last && same; s++)
            same = owner_in(a->c, r, s) == a->owner;
        freeReplyObject(r);
        if (!same)
            return 0;
    }
    return 1;
}

int fmt_cluster_wait_agreed(fmt_cluster *c, unsigned first, unsigned last, int owner)
{
    agreement a = {c, first, last, owner};

    return fmt_wait_until(agreed, &a, SETTLE_TIMEOUT_MS) ? 0 : -1;
}

/* The lowest slot src serves, as dst sees it, or -1. */
static long lowest_slot(const fmt_cluster *c, int dst, int src)
{
    redisReply *r = node_cmd(c, dst, "CLUSTER SLOTS");
    long low = -1;

    for (size_t k = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && k < r->elements; k++) {
        redisReply *e = r->element[k];

        if (entry_port(e) == c->node[src].port
            && (low < 0 || e->element[0]->integer < low))
            low = (long)e->element[0]->integer;
    }
    freeReplyObject(r);
    return low;
}

/* The three steps of a move, without waiting for the others to agree. */
static int move_whole(fmt_cluster *c, unsigned slot, int dst)
{
    if (fmt_cluster_move_begin(c, slot, dst) != 0 || fmt_cluster_move_keys(c, slot, dst, 0) != 0)
        return -1;
    return fmt_cluster_move_end(c, slot, dst);
}

int fmt_cluster_move(fmt_cluster *c, unsigned slot, int dst)
{
    if (move_whole(c, slot, dst) != 0)
        return -1;
    return fmt_cluster_wait_agreed(c, slot, slot, dst);
}

int fmt_cluster_reshard(fmt_cluster *c, int src, int dst, unsigned n)
{
    long first = lowest_slot(c, dst, src);

    if (first < 0 || n == 0)
        return -1;
    for (unsigned s = (unsigned)first; s < (unsigned)first + n; s++)
        if (fmt_cluster_owner(c, dst, s) != src || move_whole(c, s, dst) != 0)
            return -1;
    return fmt_cluster_wait_agreed(c, (unsigned)first, (unsigned)first + n - 1, dst);
}

typedef struct promotion {
    fmt_cluster *c;
    int replicas[FMT_CLUSTER_MAX];
    int nreplicas;
    unsigned slot;          /* one of the killed master's slots */
    int promoted;
} promotion;

/* A replica of the killed master serves its slot in every live node's view,
 * and every live node has the cluster up. */
static int promoted(void *arg)
{
    promotion *p = arg;
    int owner = fmt_cluster_owner(p->c, p->replicas[0], p->slot), ours = 0;
    agreement a = {p->c, p->slot, p->slot, owner};

    for (int k = 0; k < p->nreplicas; k++)
        ours |= p->replicas[k] == owner;
    if (!ours || !agreed(&a))
        return 0;
    for (int i = 0; i < p->c->nnodes; i++)
        if (member(p->c, i)
            && !node_says(p->c, i, "CLUSTER", "INFO", "cluster_state:ok\r\n"))
            return 0;
    p->promoted = owner;
    return 1;
}

/* Takes master i out as sig says (SIGKILL: dead; SIGSTOP: up but
 * silent), then waits up to timeout_ms for a replica of its to be
 * promoted. The promoted node's index, or -1. */
static int fail_master(fmt_cluster *c, int i, int sig, int timeout_ms)
{
    promotion p = {c, {0}, 0, 0, -1};
    char line[64];
    long slot = -1;

    /* A replica names its master's port as it reaches it: TLS over TLS. */
    snprintf(line, sizeof(line), "master_port:%d\r\n", fmt_cluster_port(c, i));
    for (int j = 0; j < c->nnodes; j++)
        if (j != i && node_says(c, j, "INFO", "replication", line))
            p.replicas[p.nreplicas++] = j;
    if (p.nreplicas > 0)
        slot = lowest_slot(c, p.replicas[0], i);
    if (slot < 0)
        return -1;
    p.slot = (unsigned)slot;
    if (sig == SIGKILL) {
        fmt_redis_kill(&c->node[i].redis);
    } else {
        if (kill(c->node[i].redis.pid, sig) != 0)
            return -1;
        c->node[i].stopped = 1;
    }
    return fmt_wait_until(promoted, &p, timeout_ms) ? p.promoted : -1;
}

int fmt_cluster_kill_master(fmt_cluster *c, int i, int timeout_ms)
{
    return fail_master(c, i, SIGKILL, timeout_ms);
}

int fmt_cluster_stop_master(fmt_cluster *c, int i, int timeout_ms)
{
    return fail_master(c, i, SIGSTOP, timeout_ms);
}
