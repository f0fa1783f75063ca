/* link_cluster.c -- the link in a Redis Cluster: the slot map, one command
 * context per master, and which of them a slot's commands go to.
 *
 * The map comes from CLUSTER SLOTS, asked of a ready node: at start of
 * the seeds (redis_cluster_nodes), later of the masters, each time the
 * next in turn, and of one that left a command unanswered only when no
 * other can answer. A question unanswered within request_timeout_ms is
 * given up, and the next node asked. The map is asked for again when a
 * command meets MOVED or CLUSTERDOWN, when a master's context is lost or
 * leaves a request unanswered past its deadline (at most every
 * REFRESH_MIN_MS), every RECHECK_MS for as long as a slot has no ready
 * master (a killed master's slots come back when its replica is
 * promoted, which only a new map tells), and every PERIODIC_MS all the
 * same: what no command runs into (the pub/sub connection's node leaving
 * the cluster, a master added with no slot yet) shows only there.
 *
 * A node's context is made the first time the map, a MOVED or an ASK
 * names it, and kept for the link's life: a node that leaves the map (a
 * master demoted) is retired, not freed, so a command's pointer to it
 * never dangles, and rejoins should the map, a MOVED or an ASK name it
 * again. A node a redirection named is not retired for a request's time
 * after (an ASK's target has no slot of its own until its first one has
 * moved). When the table is full, a retired node is taken for a new
 * address: a command that still pointed at it meets MOVED there, and
 * follows it. Routes are indexes into the node table, one per slot,
 * rebuilt from each new map.
 *
 * The pub/sub context is not a node's: it goes to the nodes in turn, each
 * attempt to the next, since Redis Cluster carries a PUBLISH to every node
 * and a subscriber anywhere hears it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link_int.h"
#include "log.h"

#define NODES_MAX 1100          /* Redis's ceiling of 1000, and a few seeds */
#define NO_NODE UINT16_MAX
#define REFRESH_MIN_MS 100
#define RECHECK_MS 500
#define PERIODIC_MS 10000

typedef struct fm_node {
    fm_ctx ctx;
    fm_cluster *cluster;
    int in_map;                 /* a master in the current map */
    int seed;                   /* named by redis_cluster_nodes */
    int mark;
    uint16_t index;             /* in the node table, which routes hold */
    uint64_t pinned_until;      /* uv_now(): a redirection named it */
    uint64_t silent_until;      /* uv_now(): it left a command unanswered */
} fm_node;

struct fm_cluster {
    fm_link *link;
    fm_slotmap *map;
    fm_node **nodes;
    size_t nnodes;
    uint16_t route[FM_SLOTS];
    void (*ready)(fm_ctx *ctx);
    void (*lost)(fm_ctx *ctx, int was_ready);
    void (*changed)(fm_link *link);
    uv_timer_t timer;           /* the next CLUSTER SLOTS */
    fm_node *asking;            /* the node a CLUSTER SLOTS is at, if any */
    size_t ask_next;            /* where the search for a node to ask starts */
    int want;                   /* the map is to be asked for */
    uint64_t last_ask;          /* uv_now() when it was last sent */
    size_t sub_next;            /* the pub/sub context's next node */
    int have_map;
    size_t uncovered;           /* slots the map gives no master */
    uint64_t refreshes;         /* maps taken */
    char why[256];              /* why the map is not whole */
    char ask_err[256];          /* why the last CLUSTER SLOTS failed */
    char errbuf[380];
};

static void node_ready(fm_ctx *ctx);
static void node_lost(fm_ctx *ctx, int was_ready);

static fm_node *node_of(fm_ctx *ctx)
{
    return (fm_node *)ctx;      /* ctx is the node's first member */
}

/* A retired node, idle and named by no redirection lately, to take for
 * a new address; NULL: none. */
static fm_node *reusable(const fm_cluster *c)
{
    uint64_t now = uv_now(c->link->loop);

    for (size_t i = 0; i < c->nnodes; i++) {
        fm_node *n = c->nodes[i];

        if (n->ctx.retired && n->ctx.state == ST_IDLE && !n->seed && n->pinned_until <= now)
            return n;
    }
    return NULL;
}

static void set_addr(fm_node *n, const char *host, int port)
{
    snprintf(n->ctx.addr_host, sizeof(n->ctx.addr_host), "%s", host);
    n->ctx.addr_port = port;
}

/* The node at host:port, made (and connecting) when new; NULL when the
 * table is full of nodes still in use, or out of memory. */
static fm_node *node_at(fm_cluster *c, const char *host, int port)
{
    fm_node *n, **grown;

    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->ctx.addr_port == port && strcmp(c->nodes[i]->ctx.addr_host, host) == 0)
            return c->nodes[i];
    if (strlen(host) >= sizeof(n->ctx.addr_host))
        return NULL;
    if (c->nnodes == NODES_MAX) {
        n = reusable(c);
        if (n != NULL) {
            set_addr(n, host, port);
            n->ctx.lasterr[0] = '\0';
            fm_ctx_rejoin(&n->ctx);
        }
        return n;
    }
    n = calloc(1, sizeof(*n));
    grown = realloc(c->nodes, (c->nnodes + 1) * sizeof(*c->nodes));
    if (n == NULL || grown == NULL) {
        free(n);
        if (grown != NULL)
            c->nodes = grown;
        return NULL;
    }
    c->nodes = grown;
    n->index = (uint16_t)c->nnodes;
    c->nodes[c->nnodes++] = n;
    n->cluster = c;
    fm_ctx_init(&n->ctx, c->link, CTX_CMD);
    c->link->open_handles++;    /* its timer */
    n->ctx.on_ready = node_ready;
    n->ctx.on_lost = node_lost;
    set_addr(n, host, port);
    fm_ctx_connect(&n->ctx);
    return n;
}

/* A node a MOVED or an ASK named: back if it was retired, and kept for a
 * request's time whatever the next map says. */
static fm_node *redirected_to(fm_cluster *c, const char *host, int port)
{
    fm_node *n = node_at(c, host, port);

    if (n != NULL) {
        n->pinned_until = uv_now(c->link->loop) + (uint64_t)c->link->cfg->request_timeout_ms;
        fm_ctx_rejoin(&n->ctx);
    }
    return n;
}

fm_ctx *fm_cluster_ask(fm_cluster *c, const char *host, int port)
{
    fm_node *n = redirected_to(c, host, port);

    return n != NULL ? &n->ctx : NULL;
}

/* ---- the map ---- */

static void arm(fm_cluster *c, uint64_t ms);

static void apply_map(fm_cluster *c)
{
    size_t count = fm_slotmap_count(c->map);
    uint16_t *index = calloc(count ? count : 1, sizeof(*index));
    uint64_t now = uv_now(c->link->loop);
    size_t uncovered = 0;

    if (index == NULL) {
        snprintf(c->why, sizeof(c->why), "out of memory applying the slot map");
        return;
    }
    for (size_t i = 0; i < c->nnodes; i++)
        c->nodes[i]->mark = 0;
    for (size_t i = 0; i < count; i++) {
        const fm_slotmap_node *m = fm_slotmap_node_at(c->map, i);
        fm_node *n = node_at(c, m->addr.host, m->addr.port);

        if (n == NULL) {
            snprintf(c->why, sizeof(c->why), "the slot map names more nodes than %d",
                     NODES_MAX);
            free(index);
            return;
        }
        n->mark = 1;
        index[i] = n->index;
    }
    for (unsigned s = 0; s < FM_SLOTS; s++) {
        long owner = fm_slotmap_owner(c->map, s);

        c->route[s] = owner < 0 ? NO_NODE : index[owner];
        uncovered += owner < 0;
    }
    free(index);
    for (size_t i = 0; i < c->nnodes; i++) {
        fm_node *n = c->nodes[i];

        if (n->mark) {
            n->in_map = 1;
            fm_ctx_rejoin(&n->ctx);
            continue;
        }
        if (n->in_map)
            fm_log_info("redis cluster: %s:%d is no longer a master in the slot map",
                        n->ctx.addr_host, n->ctx.addr_port);
        n->in_map = 0;
        /* A seed that is a replica goes too: a connection per master. A
         * map of no master (no slot assigned yet) retires nobody: the
         * seeds stay to be asked again. A node a redirection named stays
         * its while. */
        if (count > 0 && !n->ctx.retired && n->pinned_until <= now)
            fm_ctx_retire(&n->ctx);
    }
    c->have_map = 1;
    c->refreshes++;
    c->uncovered = uncovered;
    c->why[0] = '\0';
    if (uncovered > 0)
        snprintf(c->why, sizeof(c->why), "%zu of the cluster's %d slots have no master",
                 uncovered, FM_SLOTS);
}

static void on_slots(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_node *n = privdata;
    fm_cluster *c = n->cluster;
    redisReply *reply = r;
    char err[200];

    /* The answer to a question given up on (below): the node was dropped. */
    if (c->asking != n || c->link->closing)
        return;
    c->asking = NULL;
    uv_timer_stop(&c->timer);
    if (reply == NULL) {
        /* The node went with the question out: ask another. */
        arm(c, 0);
        return;
    }
    /* A map refused keeps the last good one, and what runs on it. */
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(c->ask_err, sizeof(c->ask_err), "CLUSTER SLOTS at %.64s:%d: %.150s",
                 n->ctx.addr_host, n->ctx.addr_port, reply->str);
    } else if (fm_slotmap_update(c->map, reply, n->ctx.host, err, sizeof(err)) != 0) {
        snprintf(c->ask_err, sizeof(c->ask_err), "CLUSTER SLOTS at %.64s:%d: %.150s",
                 n->ctx.addr_host, n->ctx.addr_port, err);
    } else {
        c->ask_err[0] = '\0';
        apply_map(c);
        /* Until it is whole, whichever node is ready next asks again. */
        c->want = !fm_cluster_ready(c);
        c->changed(c->link);
    }
    arm(c, c->want || !fm_cluster_ready(c) ? RECHECK_MS : PERIODIC_MS);
}

/* The node to ask: a ready master, else any ready node, each time the
 * next in turn, so that a node that answers with an empty map or an
 * error (one not joined yet, or no cluster at all) is not the only one
 * ever asked. */
static fm_node *next_asked(fm_cluster *c)
{
    uint64_t now = uv_now(c->link->loop);
    fm_node *any = NULL;
    int rank = 0;

    /* Best first: a master not silent lately, any node not silent, any. */
    for (size_t k = 0; k < c->nnodes && rank < 3; k++) {
        fm_node *n = c->nodes[(c->ask_next + k) % c->nnodes];
        int r;

        if (n->ctx.state != ST_READY || n->ctx.ac == NULL)
            continue;
        r = n->silent_until > now ? 1 : n->in_map ? 3 : 2;
        if (r > rank) {
            any = n;
            rank = r;
        }
    }
    if (any != NULL)
        c->ask_next = (size_t)any->index + 1;
    return any;
}

static void ask_map(fm_cluster *c)
{
    uint64_t now = uv_now(c->link->loop), limit = (uint64_t)c->link->cfg->request_timeout_ms;
    fm_node *n;

    if (c->link->closing)
        return;
    if (c->asking != NULL) {
        if (now - c->last_ask < limit) {
            arm(c, c->last_ask + limit - now);
            return;
        }
        /* A node that is up but says nothing (stopped, hung) must not
         * hold the map as it is: the next node is asked, and a late
         * answer from this one is let go. It is not dropped: the loop
         * may only have been slow to read its answer. */
        fm_log_warn("redis cluster: %s:%d did not answer CLUSTER SLOTS within %llu ms; "
                    "asking another node", c->asking->ctx.addr_host, c->asking->ctx.addr_port,
                    (unsigned long long)limit);
        fm_cluster_suspect(c, &c->asking->ctx);
    }
    n = next_asked(c);
    if (n == NULL) {
        /* Nobody to ask: every seed, retired or not, tries again (its
         * context's own backoff paces it), and whichever node is ready
         * first asks (node_ready). */
        c->want = 1;
        for (size_t i = 0; i < c->nnodes; i++)
            if (c->nodes[i]->seed)
                fm_ctx_rejoin(&c->nodes[i]->ctx);
        arm(c, RECHECK_MS);
        return;
    }
    if (redisAsyncCommand(n->ctx.ac, on_slots, n, "CLUSTER SLOTS") != REDIS_OK) {
        arm(c, RECHECK_MS);
        return;
    }
    c->asking = n;
    c->last_ask = now;
    /* The question's deadline. */
    uv_timer_stop(&c->timer);
    arm(c, limit);
}

static void on_timer(uv_timer_t *t)
{
    fm_cluster *c = t->data;

    ask_map(c);
}

/* Asks in ms, or as soon after the last question as REFRESH_MIN_MS
 * allows; an earlier time already set stands. */
static void arm(fm_cluster *c, uint64_t ms)
{
    uint64_t now = uv_now(c->link->loop), next = c->last_ask + REFRESH_MIN_MS;

    if (c->link->closing)
        return;
    if (now + ms < next)
        ms = next - now;
    if (uv_is_active((uv_handle_t *)&c->timer) && uv_timer_get_due_in(&c->timer) <= ms)
        return;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

void fm_cluster_refresh(fm_cluster *c)
{
    c->want = 1;
    arm(c, 0);
}

void fm_cluster_suspect(fm_cluster *c, fm_ctx *ctx)
{
    node_of(ctx)->silent_until = uv_now(c->link->loop) +
                                 (uint64_t)c->link->cfg->request_timeout_ms;
    /* Its answer to a question about the map is not waited for either. */
    if (c->asking == node_of(ctx))
        c->asking = NULL;
}

void fm_cluster_moved(fm_cluster *c, unsigned slot, const char *host, int port)
{
    fm_node *n = redirected_to(c, host, port);

    if (n != NULL)
        c->route[slot] = n->index;
    fm_cluster_refresh(c);
}

int fm_cluster_knows(const fm_cluster *c, const char *host, int port)
{
    /* A map of no master (no slot assigned yet) says nothing of anyone. */
    if (fm_slotmap_count(c->map) == 0)
        return 1;
    for (size_t i = 0; i < fm_slotmap_count(c->map); i++) {
        const fm_slotmap_node *m = fm_slotmap_node_at(c->map, i);

        if (m->addr.port == port && strcmp(m->addr.host, host) == 0)
            return 1;
        for (size_t k = 0; k < m->nreplicas; k++)
            if (m->replicas[k].port == port && strcmp(m->replicas[k].host, host) == 0)
                return 1;
    }
    return 0;
}

/* ---- the nodes' contexts ---- */

static void node_ready(fm_ctx *ctx)
{
    fm_cluster *c = node_of(ctx)->cluster;

    if (c->want || !c->have_map)
        ask_map(c);
    /* An ASK's target may be no master of the map: its commands go now. */
    c->ready(ctx);
}

static void node_lost(fm_ctx *ctx, int was_ready)
{
    fm_node *n = node_of(ctx);

    if (!n->in_map || ctx->retired || ctx->draining)
        return;
    n->cluster->lost(ctx, was_ready);
    fm_cluster_refresh(n->cluster);
}

void fm_cluster_get_stats(const fm_cluster *c, fm_cluster_stats *out)
{
    out->masters = out->masters_ready = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        out->masters += c->nodes[i]->in_map;
        out->masters_ready += c->nodes[i]->in_map && c->nodes[i]->ctx.state == ST_READY;
    }
    out->slots_uncovered = c->have_map ? c->uncovered : FM_SLOTS;
    out->map_refreshes = c->refreshes;
}

fm_ctx *fm_cluster_route(const fm_cluster *c, unsigned slot)
{
    uint16_t i = c->route[slot];

    return i == NO_NODE ? NULL : &c->nodes[i]->ctx;
}

fm_ctx *fm_cluster_any(const fm_cluster *c)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->in_map && c->nodes[i]->ctx.state == ST_READY)
            return &c->nodes[i]->ctx;
    return NULL;
}

int fm_cluster_ready(const fm_cluster *c)
{
    if (!c->have_map || c->why[0] != '\0')
        return 0;
    for (size_t i = 0; i < c->nnodes; i++)
        if (c->nodes[i]->in_map && c->nodes[i]->ctx.state != ST_READY)
            return 0;
    return 1;
}

const char *fm_cluster_error(fm_cluster *c)
{
    if (c->why[0] != '\0')
        return c->why;
    /* Before the first map, every seed has failed (or none has answered
     * yet): the first one's failure stands for them. */
    for (size_t i = 0; i < c->nnodes; i++) {
        const fm_ctx *ctx = &c->nodes[i]->ctx;

        if ((c->nodes[i]->in_map || !c->have_map) && ctx->state != ST_READY &&
            (ctx->lasterr[0] != '\0' || c->nodes[i]->in_map)) {
            snprintf(c->errbuf, sizeof(c->errbuf), "%s%.64s:%d: %s",
                     c->have_map ? "" : "no seed node answered yet; ", ctx->addr_host,
                     ctx->addr_port, ctx->lasterr[0] != '\0' ? ctx->lasterr : "connecting");
            return c->errbuf;
        }
    }
    if (c->have_map)
        return NULL;
    return c->ask_err[0] != '\0' ? c->ask_err : "asking the cluster for its slot map";
}

void fm_cluster_sub_addr(fm_cluster *c, fm_ctx *ctx)
{
    for (size_t tries = 0; tries < c->nnodes; tries++) {
        fm_node *n = c->nodes[c->sub_next++ % c->nnodes];

        if (n->in_map || (n->seed && !c->have_map) || tries + 1 == c->nnodes) {
            snprintf(ctx->addr_host, sizeof(ctx->addr_host), "%s", n->ctx.addr_host);
            ctx->addr_port = n->ctx.addr_port;
            return;
        }
    }
}

/* ---- life cycle ---- */

fm_cluster *fm_cluster_create(fm_link *link, void (*ready)(fm_ctx *ctx),
                              void (*lost)(fm_ctx *ctx, int was_ready),
                              void (*changed)(fm_link *link))
{
    fm_cluster *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->link = link;
    c->ready = ready;
    c->lost = lost;
    c->changed = changed;
    memset(c->route, 0xff, sizeof(c->route));
    c->map = fm_slotmap_create();
    if (c->map == NULL) {
        free(c);
        return NULL;
    }
    uv_timer_init(link->loop, &c->timer);
    c->timer.data = c;
    link->open_handles++;
    return c;
}

void fm_cluster_start(fm_cluster *c)
{
    const fm_config *cfg = c->link->cfg;

    c->want = 1;
    for (size_t i = 0; i < cfg->ncluster_nodes; i++) {
        fm_node *n = node_at(c, cfg->cluster_nodes[i].host, cfg->cluster_nodes[i].port);

        if (n != NULL)
            n->seed = 1;
    }
}

static void on_closed(uv_handle_t *h)
{
    fm_link *link = h->data;

    link->release(link);
}

void fm_cluster_close(fm_cluster *c)
{
    uv_timer_stop(&c->timer);
    c->timer.data = c->link;
    uv_close((uv_handle_t *)&c->timer, on_closed);
    for (size_t i = 0; i < c->nnodes; i++) {
        fm_ctx_close(&c->nodes[i]->ctx);
        c->nodes[i]->ctx.timer.data = c->link;
        uv_close((uv_handle_t *)&c->nodes[i]->ctx.timer, on_closed);
    }
}

void fm_cluster_free(fm_cluster *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nnodes; i++)
        free(c->nodes[i]);
    free(c->nodes);
    fm_slotmap_free(c->map);
    free(c);
}
