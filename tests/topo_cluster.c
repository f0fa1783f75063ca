/* topo_cluster.c -- a six-node Redis Cluster for the tests (see
 * topo_cluster.h).
 *
 * Ports come from 20000..22767, so that the cluster bus ports (port + 10000)
 * stay below Linux's ephemeral range (32768 up), where an outgoing
 * connection could take one between our check and Redis's bind; both are
 * checked free before use, and a start that still loses the race is tried
 * again on other ports. cluster-node-timeout is 1 s so that a killed
 * master's replica takes over in about two seconds, and replicas sync
 * without the 5 s wait of diskless sync's default. A start takes about
 * 2-3 s, most of it redis-cli's one-second waits for the nodes to join. */
#include <poll.h>
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
            dup |= c->node[i].port == port;
        if (!dup && port_bindable(port) && port_bindable(port + BUS_OFFSET))
            return port;
    }
}

static void set_args(fmt_cluster_node *n)
{
    const char *args[] = {"--port", n->port_arg, "--bind", "127.0.0.1",
                          "--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                          "--cluster-replica-validity-factor", "0",
                          "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1",
                          NULL};

    snprintf(n->port_arg, sizeof(n->port_arg), "%d", n->port);
    memcpy(n->args, args, sizeof(args));
}

redisContext *fmt_cluster_connect(const fmt_cluster *c, int i)
{
    if (i < 0 || i >= FMT_CLUSTER_NODES || c->node[i].redis.pid <= 0)
        return NULL;
    return fmt_redis_connect(&c->node[i].redis);
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
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
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
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        if (c->node[i].redis.pid > 0)
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

/* Every live node has the cluster up, knows all six nodes and lists every
 * master's replica, and every replica is in sync with its master. Redis 7
 * leaves a replica out of CLUSTER SLOTS until its replication offset is
 * not 0: the master's pings (repl-ping-replica-period, 1 s here) move it. */
static int settled(void *arg)
{
    const fmt_cluster *c = arg;

    for (int i = 0; i < FMT_CLUSTER_NODES; i++) {
        if (c->node[i].redis.pid <= 0)
            continue;
        if (!node_says(c, i, "CLUSTER", "INFO", "cluster_state:ok\r\n")
            || !node_says(c, i, "CLUSTER", "INFO", "cluster_known_nodes:6\r\n")
            || !lists_replicas(c, i))
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

static int read_ids(fmt_cluster *c)
{
    for (int i = 0; i < FMT_CLUSTER_NODES; i++) {
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

static int start_once(fmt_cluster *c, unsigned *seed)
{
    for (int i = 0; i < FMT_CLUSTER_NODES; i++) {
        fmt_cluster_node *n = &c->node[i];

        n->port = pick_port(c, i, seed);
        set_args(n);
        if (fmt_redis_start(&n->redis, n->args) != 0)
            return -1;
    }
    if (create(c) != 0 || read_ids(c) != 0)
        return -1;
    if (!fmt_wait_until(settled, c, SETTLE_TIMEOUT_MS)) {
        fprintf(stderr, "topo_cluster: the cluster did not settle in %d ms\n", SETTLE_TIMEOUT_MS);
        return -1;
    }
    return 0;
}

int fmt_cluster_start(fmt_cluster *c)
{
    int64_t t0 = fmt_now_ms();
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL);

    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        memset(c, 0, sizeof(*c));
        if (start_once(c, &seed) == 0) {
            c->start_ms = fmt_now_ms() - t0;
            return 0;
        }
        fmt_cluster_stop(c);
    }
    return -1;
}

void fmt_cluster_stop(fmt_cluster *c)
{
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        if (c->node[i].redis.dir[0] != '\0')
            fmt_redis_stop(&c->node[i].redis);
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

/* MIGRATEs keys (a GETKEYSINSLOT reply) from src to dst. */
static int migrate(fmt_cluster *c, int src, int dst, const redisReply *keys)
{
    const char *argv[8 + MIGRATE_BATCH];
    size_t lens[8 + MIGRATE_BATCH];
    const char *head[] = {"MIGRATE", "127.0.0.1", c->node[dst].port_arg, "", "0", "5000", "KEYS"};
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
    int src = fmt_cluster_owner(c, dst, slot), masters[FMT_CLUSTER_NODES];
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

    for (int i = 0; i < FMT_CLUSTER_NODES; i++) {
        redisReply *r;
        int same = 1;

        if (a->c->node[i].redis.pid <= 0)
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

int fmt_cluster_reshard(fmt_cluster *c, int src, int dst, unsigned n)
{
    long first = lowest_slot(c, dst, src);

    if (first < 0 || n == 0)
        return -1;
    for (unsigned s = (unsigned)first; s < (unsigned)first + n; s++) {
        if (fmt_cluster_owner(c, dst, s) != src || fmt_cluster_move_begin(c, s, dst) != 0
            || fmt_cluster_move_keys(c, s, dst, 0) != 0 || fmt_cluster_move_end(c, s, dst) != 0)
            return -1;
    }
    return fmt_cluster_wait_agreed(c, (unsigned)first, (unsigned)first + n - 1, dst);
}

typedef struct promotion {
    fmt_cluster *c;
    int replicas[FMT_CLUSTER_NODES];
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
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        if (p->c->node[i].redis.pid > 0
            && !node_says(p->c, i, "CLUSTER", "INFO", "cluster_state:ok\r\n"))
            return 0;
    p->promoted = owner;
    return 1;
}

int fmt_cluster_kill_master(fmt_cluster *c, int i, int timeout_ms)
{
    promotion p = {c, {0}, 0, 0, -1};
    char line[64];
    long slot = -1;

    snprintf(line, sizeof(line), "master_port:%d\r\n", c->node[i].port);
    for (int j = 0; j < FMT_CLUSTER_NODES; j++)
        if (j != i && node_says(c, j, "INFO", "replication", line))
            p.replicas[p.nreplicas++] = j;
    if (p.nreplicas > 0)
        slot = lowest_slot(c, p.replicas[0], i);
    if (slot < 0)
        return -1;
    p.slot = (unsigned)slot;
    fmt_redis_kill(&c->node[i].redis);
    return fmt_wait_until(promoted, &p, timeout_ms) ? p.promoted : -1;
}
