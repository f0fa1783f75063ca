/* link.c -- the link's life cycle: its two contexts, what runs on each,
 * the sentinels that name their server or the Cluster whose masters take
 * its commands (when configured), and its end.
 *
 * The command context carries link_cmd.c's commands and link_sub.c's ACL
 * probes; in a Cluster each master's context does (link_cluster.c), and
 * the one command context stays idle. The pub/sub context carries
 * link_sub.c's channels. This file ties each context's ready and lost
 * hooks to them, and sums them up for the owner's state hook. Freeing the
 * link is
 * asynchronous (libuv handles close later): the struct goes with the last
 * of its handles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"
#include "link_int.h"

/* Called by the hooks below: a context that is lost still reads READY, so
 * the loss is said rather than read from the states. */
static void report_state(fm_link *link, int up, const char *why)
{
    if (link->closing || link->on_state == NULL || up == link->reported_up)
        return;
    link->reported_up = up;
    link->on_state(up, why, link->state_arg);
}

static int link_up(const fm_link *link)
{
    return fm_link_ready(link) && link->ctx[CTX_SUB].state == ST_READY;
}

static void report_ready(fm_link *link)
{
    if (link_up(link))
        report_state(link, 1, NULL);
}

/* The context the daemon's own PING goes to: in a Cluster, a master's. */
static fm_ctx *cmd_ctx(fm_link *link)
{
    if (link->cluster != NULL)
        return fm_cluster_any(link->cluster);
    return &link->ctx[CTX_CMD];
}

/* ---- round trip ---- */

static void on_switch(const char *host, int port, const char *why, void *arg)
{
    fm_link *link = arg;

    for (int k = 0; k < 2; k++)
        fm_ctx_switch(&link->ctx[k], host, port, why);
}

static void on_pong(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_link *link = privdata;
    redisReply *reply = r;

    link->rtt.out = 0;
    /* NULL: the context went with the PING out. Any reply, an error
     * (BUSY, LOADING) included, is Redis answering. */
    if (reply == NULL || link->closing)
        return;
    link->rtt.last_us = (int64_t)((uv_hrtime() - link->rtt.sent_ns + 999) / 1000);
    /* With Sentinel the probe is ROLE: a master demoted under us is left
     * at once, by both contexts. */
    if (link->sentinel != NULL && reply->type == REDIS_REPLY_ARRAY &&
        !fm_link_reply_is_master(reply))
        on_switch(NULL, 0, "ROLE: the server is no longer the master", link);
}

static void ping(fm_link *link)
{
    fm_ctx *ctx = cmd_ctx(link);

    if (ctx == NULL || ctx->state != ST_READY || ctx->ac == NULL || link->rtt.out)
        return;
    if (redisAsyncCommand(ctx->ac, on_pong, link, link->sentinel != NULL ? "ROLE" : "PING")
        != REDIS_OK)
        return;
    link->rtt.out = 1;
    link->rtt.sent_ns = uv_hrtime();
}

static void on_ping_timer(uv_timer_t *t)
{
    ping(t->data);
    fm_link_track_tick(t->data);
}

/* ---- the contexts' hooks ---- */

static void cmd_ready(fm_ctx *ctx)
{
    ping(ctx->link);
    fm_link_probe_ready(ctx->link);
    fm_link_track_cmd_ready(ctx->link);
    /* In a Cluster, what waited for this master goes now. */
    fm_link_unpark(ctx->link);
    fm_link_pump(ctx->link);
    report_ready(ctx->link);
}

static void cmd_lost(fm_ctx *ctx, int was_ready)
{
    char name[320], why[600];

    ctx->link->rtt.last_us = -1;
    if (ctx->link->cluster == NULL) {
        fm_link_track_cmd_lost(ctx->link);
        report_state(ctx->link, 0, ctx->lasterr);
        return;
    }
    snprintf(why, sizeof(why), "%s: %s", fm_ctx_name(ctx, name, sizeof(name)), ctx->lasterr);
    report_state(ctx->link, 0, why);
}

/* A Cluster's new map: routes changed, commands may go, and the link may
 * be up, or no longer (a master named that is not connected yet). */
static void map_changed(fm_link *link)
{
    fm_ctx *sub = &link->ctx[CTX_SUB];
    const char *why;

    /* A node that left the cluster hears none of its PUBLISHes. */
    if (sub->state == ST_READY &&
        !fm_cluster_knows(link->cluster, sub->addr_host, sub->addr_port))
        fm_ctx_switch(sub, NULL, 0, "its node is not in the cluster's slot map");
    fm_link_unpark(link);
    fm_link_pump(link);
    if (link_up(link))
        report_state(link, 1, NULL);
    else if (link->reported_up == 1) {
        why = fm_link_error(link);
        report_state(link, 0, why != NULL ? why : "the pub/sub connection is not ready");
    }
}

static void sub_ready(fm_ctx *ctx)
{
    /* Set up on a node a new map no longer names: it would hear nothing. */
    if (ctx->link->cluster != NULL &&
        !fm_cluster_knows(ctx->link->cluster, ctx->addr_host, ctx->addr_port)) {
        fm_ctx_switch(ctx, NULL, 0, "its node is not in the cluster's slot map");
        return;
    }
    fm_link_subscribe_all(ctx->link);
    report_ready(ctx->link);
}

static void sub_lost(fm_ctx *ctx, int was_ready)
{
    fm_link_sub_lost(ctx->link, ctx->lasterr, was_ready);
    report_state(ctx->link, 0, ctx->lasterr);
    /* In a Cluster, any node hears every PUBLISH: try the next. */
    if (ctx->link->cluster != NULL)
        fm_cluster_sub_addr(ctx->link->cluster, ctx);
}

static void release(fm_link *link)
{
    if (--link->open_handles > 0)
        return;
    fm_cluster_free(link->cluster);
    free(link);
}

static void on_handle_closed(uv_handle_t *h)
{
    release(h->data);
}

fm_link *fm_link_create(uv_loop_t *loop, const fm_config *cfg, fm_tls *tls)
{
    fm_link *link = calloc(1, sizeof(*link));

    if (link == NULL)
        return NULL;
    link->loop = loop;
    link->cfg = cfg;
    link->tls = tls;
    link->reported_up = -1;
    fm_ctx_init(&link->ctx[CTX_CMD], link, CTX_CMD);
    link->release = release;
    link->ctx[CTX_CMD].on_ready = cmd_ready;
    link->ctx[CTX_CMD].on_lost = cmd_lost;
    fm_ctx_init(&link->ctx[CTX_SUB], link, CTX_SUB);
    link->ctx[CTX_SUB].on_ready = sub_ready;
    link->ctx[CTX_SUB].on_lost = sub_lost;
    fm_link_cmd_init(link);
    link->rtt.last_us = -1;
    uv_timer_init(loop, &link->rtt.timer);
    link->rtt.timer.data = link;
    fm_link_track_init(link);
    /* two context timers, the retry and ping timers, the fence's idle */
    link->open_handles = 5;
    if (cfg->nsentinels > 0 &&
        (link->sentinel = fm_sentinel_create(loop, cfg, tls, on_switch, link)) == NULL) {
        fm_link_free(link);
        return NULL;
    }
    if (cfg->ncluster_nodes > 0 &&
        (link->cluster = fm_cluster_create(link, cmd_ready, cmd_lost, map_changed)) == NULL) {
        fm_link_free(link);
        return NULL;
    }
    if (fm_link_sub_init(link) != 0) {
        fm_link_free(link);
        return NULL;
    }
    return link;
}

int fm_link_start(fm_link *link)
{
    if (link->sentinel != NULL)
        fm_sentinel_start(link->sentinel);
    if (link->cluster != NULL) {
        fm_cluster_start(link->cluster);
        fm_cluster_sub_addr(link->cluster, &link->ctx[CTX_SUB]);
    } else {
        fm_ctx_connect(&link->ctx[CTX_CMD]);
    }
    fm_ctx_connect(&link->ctx[CTX_SUB]);
    uv_timer_start(&link->rtt.timer, on_ping_timer, FM_LINK_PING_MS, FM_LINK_PING_MS);
    return 0;
}

void fm_link_on_state(fm_link *link, fm_link_state_fn *fn, void *arg)
{
    link->on_state = fn;
    link->state_arg = arg;
}

void fm_link_set_config(fm_link *link, const fm_config *cfg)
{
    link->cfg = cfg;
    if (link->sentinel != NULL)
        fm_sentinel_set_config(link->sentinel, cfg);
}

int fm_link_ready(const fm_link *link)
{
    if (link->cluster != NULL)
        return fm_cluster_ready(link->cluster);
    return link->ctx[CTX_CMD].state == ST_READY;
}

const char *fm_link_error(const fm_link *link)
{
    const fm_ctx *ctx = &link->ctx[CTX_CMD];

    if (link->cluster != NULL)
        return fm_cluster_error(link->cluster);
    return ctx->state != ST_READY && ctx->lasterr[0] != '\0' ? ctx->lasterr : NULL;
}

int fm_link_sub_ready(const fm_link *link)
{
    return link->ctx[CTX_SUB].state == ST_READY;
}

void fm_link_get_stats(const fm_link *link, fm_link_stats *out)
{
    out->connects = link->counts.connects;
    out->disconnects = link->counts.disconnects;
    out->commands = link->counts.commands;
    out->retries = link->counts.retries;
    out->refused = link->counts.refused;
    out->queued = link->queued;
    out->reconnects = link->counts.reconnects;
    out->last_error = link->last_error_ms != 0 ? link->last_error : NULL;
    out->last_error_age_ms = link->last_error_ms != 0 ? uv_now(link->loop) - link->last_error_ms : 0;
    out->cluster = link->cluster != NULL;
    out->redirects = link->counts.redirects;
    if (link->cluster != NULL) {
        fm_cluster_stats cs;

        fm_cluster_get_stats(link->cluster, &cs);
        out->masters = cs.masters;
        out->masters_ready = cs.masters_ready;
        out->slots_uncovered = cs.slots_uncovered;
        out->map_refreshes = cs.map_refreshes;
    }
    /* Unknown while the command connection is not set up (a READONLY
     * drop marks it lost before its loss is reported); a PING out longer
     * than the last round trip, the first after a connect included, says
     * more than it. */
    out->rtt_us = -1;
    if (!fm_link_ready(link))
        return;
    out->rtt_us = link->rtt.last_us;
    if (link->rtt.out) {
        int64_t waited = (int64_t)((uv_hrtime() - link->rtt.sent_ns) / 1000);

        if (waited > out->rtt_us)
            out->rtt_us = waited;
    }
}

void fm_link_free(fm_link *link)
{
    if (link == NULL)
        return;
    link->closing = 1;
    fm_link_fail_waiting(link);
    for (int k = 0; k < 2; k++) {
        fm_ctx_close(&link->ctx[k]);
        link->ctx[k].timer.data = link;
        uv_close((uv_handle_t *)&link->ctx[k].timer, on_handle_closed);
    }
    if (link->cluster != NULL)
        fm_cluster_close(link->cluster);
    /* After the contexts, which withdrew what they asked. */
    fm_sentinel_free(link->sentinel);
    fm_link_sub_free(link);
    uv_close((uv_handle_t *)&link->retry_timer, on_handle_closed);
    uv_close((uv_handle_t *)&link->rtt.timer, on_handle_closed);
    fm_link_track_close(link, on_handle_closed);
}
