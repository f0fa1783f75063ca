/* link_ctx.c -- the connect machine each of the link's two contexts runs.
 *
 *   IDLE --connect--> [ASKING] --> RESOLVING --> CONNECTING --> SETUP --> READY
 *     ^                                                                    |
 *     +---- backoff min(attempt * step, max) <---------- lost -------------+
 *
 * with one timer per context serving as the backoff wait and as the deadline
 * of RESOLVING/CONNECTING/SETUP (request_timeout_ms), since hiredis 0.14 has
 * no connect timeout of its own. With Sentinel, each attempt first asks
 * the sentinels for the master (ASKING, bounded by sentinel.c's own
 * deadlines), and the setup proves with ROLE that the server is one: a
 * replica, or a master still to be promoted, is a failed attempt. Setup is
 * AUTH, ROLE, SELECT and SCRIPT LOAD of the registered scripts (command
 * context), then a PING. What runs on a context learns that it is ready or
 * lost through ctx->on_ready and ctx->on_lost. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "link_int.h"
#include "log.h"
#include "redis_uv.h"

static const char *const ctx_names[] = {"command", "pub/sub"};

const char *fm_ctx_name(const fm_ctx *ctx, char *buf, size_t len)
{
    if (ctx->link->cluster == NULL || ctx->addr_port == 0)
        return ctx_names[ctx->kind];
    snprintf(buf, len, "%s (node %s:%d)", ctx_names[ctx->kind], ctx->addr_host, ctx->addr_port);
    return buf;
}

static void ctx_lost(fm_ctx *ctx, const char *why);

int fm_link_reply_is_master(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
}

int fm_link_reply_is(const redisReply *r, const char *code)
{
    size_t n = strlen(code);

    return (size_t)r->len >= n && memcmp(r->str, code, n) == 0 &&
           ((size_t)r->len == n || r->str[n] == ' ');
}

static int64_t backoff_ms(const fm_link *link, int attempt)
{
    int64_t d = (int64_t)attempt * link->cfg->reconnect_step_ms;

    return d < link->cfg->reconnect_max_ms ? d : link->cfg->reconnect_max_ms;
}

static void on_ctx_timer(uv_timer_t *t)
{
    fm_ctx *ctx = t->data;

    switch (ctx->state) {
    case ST_IDLE:
        fm_ctx_connect(ctx);
        break;
    case ST_RESOLVING:
        /* Its callback reports UV_ECANCELED and takes the failure path. */
        uv_cancel((uv_req_t *)&ctx->gai);
        break;
    case ST_CONNECTING:
    case ST_SETUP: {
        /* A TLS tunnel says what it still waits for. */
        char why[sizeof(ctx->below) + 32];

        snprintf(why, sizeof(why), "timed out connecting%s%s", ctx->below[0] ? ": " : "",
                 ctx->below);
        ctx_lost(ctx, why);
        break;
    }
    default:
        break;
    }
}

static void schedule_reconnect(fm_ctx *ctx)
{
    fm_link *link = ctx->link;

    ctx->state = ST_IDLE;
    if (link->closing || ctx->retired)
        return;
    ctx->attempt++;
    uv_timer_start(&ctx->timer, on_ctx_timer, (uint64_t)backoff_ms(link, ctx->attempt), 0);
}

/* Keeps why the context was lost or not established, for stats. */
static void note_error(const fm_ctx *ctx)
{
    fm_link *link = ctx->link;
    char name[320];

    snprintf(link->last_error, sizeof(link->last_error), "%s: %s",
             fm_ctx_name(ctx, name, sizeof(name)),
             ctx->lasterr[0] != '\0' ? ctx->lasterr : "connection closed");
    link->last_error_ms = uv_now(link->loop);
}

/* Nothing that reaches lasterr should hold the password: hiredis's errors,
 * the host's name and Redis's replies to the setup never echo AUTH's
 * argument. Should one ever do, the whole text is withheld, not masked in
 * place: stars in a known message would spell the password out. The log,
 * ping, stats and the service manager's STATUS all read lasterr. */
static void withhold_password(fm_ctx *ctx)
{
    const char *pw = ctx->link->cfg->redis_password;

    if (pw != NULL && pw[0] != '\0' && strstr(ctx->lasterr, pw) != NULL)
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "an error whose text held the password "
                 "(withheld)");
}

/* The context is gone or going; hiredis calls on_disconnect (when it had
 * connected) after failing every pending command with a NULL reply. */
static void ctx_lost(fm_ctx *ctx, const char *why)
{
    fm_link *link = ctx->link;
    int was_ready = ctx->state == ST_READY || ctx->state == ST_LOST;
    int quiet = ctx->retired || ctx->draining;
    redisAsyncContext *ac = ctx->ac;
    char name[320];

    if (why != NULL)
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "%s", why);
    withhold_password(ctx);
    /* A retired node's end is no loss (link_cluster.c said why), nor is
     * the end of one retired while ready, rejoined while it drained. */
    if (!ctx->logged_down && !link->closing && !quiet) {
        fm_log_warn("redis %s link %s: %s", fm_ctx_name(ctx, name, sizeof(name)),
                    was_ready ? "lost" : "not established", ctx->lasterr);
        ctx->logged_down = 1;
    }
    if (was_ready && !quiet)
        link->counts.disconnects++;
    if (!link->closing && !quiet)
        note_error(ctx);
    ctx->on_lost(ctx, was_ready);
    ctx->draining = 0;
    ctx->state = ST_LOST;
    uv_timer_stop(&ctx->timer);
    if (ac != NULL) {
        /* Freeing a connected context fails its pending commands, then calls
         * on_disconnect, which schedules the reconnect; an unconnected one
         * goes silently. */
        if (ac->c.flags & REDIS_CONNECTED) {
            ctx->dropping = 1;
            redisAsyncFree(ac);
            return;
        }
        ctx->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    schedule_reconnect(ctx);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    fm_ctx *ctx = ac->data;

    if (ctx == NULL)
        return;
    ctx->ac = NULL;
    if (ctx->dropping) {
        ctx->dropping = 0;
        schedule_reconnect(ctx);
        return;
    }
    if (ctx->state != ST_LOST || ctx->lasterr[0] == '\0')
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "%s", fm_redis_uv_why(ac, ctx->below));
    ctx_lost(ctx, NULL);
}

void fm_ctx_recovered(fm_ctx *ctx)
{
    /* With Sentinel, where the master is now is worth the line. */
    const char *at = ctx->link->sentinel != NULL ? ", master at " : "";
    const char *host = ctx->link->sentinel != NULL ? ctx->host : "";
    char port[16] = "", name[320];

    if (ctx->link->sentinel != NULL)
        snprintf(port, sizeof(port), ":%d", ctx->port);
    ctx->suspect = 0;
    ctx->attempt = 0;
    ctx->lasterr[0] = '\0';
    if (ctx->logged_down) {
        fm_log_info("redis %s link up%s%s%s", fm_ctx_name(ctx, name, sizeof(name)), at, host,
                    port);
        ctx->logged_down = 0;
    } else {
        fm_log_debug("redis %s link up%s%s%s", fm_ctx_name(ctx, name, sizeof(name)), at, host,
                     port);
    }
}

static void ctx_ready(fm_ctx *ctx)
{
    fm_link *link = ctx->link;

    uv_timer_stop(&ctx->timer);
    ctx->state = ST_READY;
    link->counts.connects++;
    if (ctx->kind == CTX_CMD && ctx->ever_ready)
        link->counts.reconnects++;
    ctx->ever_ready = 1;
    if (!ctx->suspect)
        fm_ctx_recovered(ctx);
    ctx->on_ready(ctx);
}

static void step_done(fm_ctx *ctx)
{
    if (--ctx->setup_pending == 0)
        ctx_ready(ctx);
}

static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_ctx *ctx = ac->data;
    redisReply *reply = r;
    fm_script *script = privdata;

    if (reply == NULL || ctx == NULL || ctx->state != ST_SETUP)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* Replies come in the order of the commands: this one answers the
         * first still pending. Which step Redis refused is what an operator
         * needs ("Redis refused AUTH: WRONGPASS ..."); Redis's text never
         * holds the password. */
        const char *step = ctx->setup_names[ctx->setup_sent - ctx->setup_pending];
        char why[128];

        snprintf(why, sizeof(why), "Redis refused %s: %.100s", step, reply->str);
        ctx_lost(ctx, why);
        return;
    }
    if (script != NULL && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(script->sha, reply->str, 41);
    step_done(ctx);
}

/* Sentinel named this server, and it may no longer (or not yet) be the
 * master: anything but "master" fails the attempt, and the next one asks
 * the sentinels again. An error reply is a refusal like any other. */
static void on_role_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_ctx *ctx = ac->data;
    redisReply *reply = r;

    if (reply != NULL && ctx != NULL && ctx->state == ST_SETUP &&
        reply->type != REDIS_REPLY_ERROR && !fm_link_reply_is_master(reply)) {
        ctx_lost(ctx, "ROLE: the server the sentinels named is not the master");
        return;
    }
    on_setup_reply(ac, r, privdata);
}

/* The pub/sub connection's id, for CLIENT TRACKING's REDIRECT. */
static void on_client_id(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_ctx *ctx = ac->data;
    redisReply *reply = r;

    if (reply == NULL || ctx == NULL || ctx->state != ST_SETUP)
        return;
    /* A user whose ACL denies CLIENT loses the near cache, not the link. */
    if (reply->type == REDIS_REPLY_INTEGER)
        fm_link_track_sub_id(ctx->link, reply->integer);
    else
        fm_log_limited(FM_LOG_WARN, "near cache unused: Redis refused CLIENT ID: %.200s",
                       reply->type == REDIS_REPLY_ERROR ? reply->str : "(not an integer)");
    step_done(ctx);
}

/* name: what a refusal is reported as. */
static int setup_command(fm_ctx *ctx, redisCallbackFn *fn, void *privdata, const char *name,
                         int argc, const char **argv)
{
    size_t lens[4];

    assert(ctx->setup_sent < (int)(sizeof(ctx->setup_names) / sizeof(ctx->setup_names[0])));
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(ctx->ac, fn, privdata, argc, argv, lens) != REDIS_OK)
        return -1;
    ctx->setup_names[ctx->setup_sent++] = name;
    ctx->setup_pending++;
    return 0;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    fm_ctx *ctx = ac->data;
    const fm_config *cfg;
    char db[16];
    int rc = 0;

    if (ctx == NULL)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context right after this callback. */
        ctx->ac = NULL;
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "%s", fm_redis_uv_why(ac, ctx->below));
        ctx_lost(ctx, NULL);
        return;
    }
    cfg = ctx->link->cfg;
    ctx->state = ST_SETUP;
    ctx->setup_pending = 0;
    ctx->setup_sent = 0;
    if (cfg->redis_password && cfg->redis_user)
        rc |= setup_command(ctx, on_setup_reply, NULL, "AUTH", 3,
                            (const char *[]){"AUTH", cfg->redis_user, cfg->redis_password});
    else if (cfg->redis_password)
        rc |= setup_command(ctx, on_setup_reply, NULL, "AUTH", 2,
                            (const char *[]){"AUTH", cfg->redis_password});
    if (ctx->link->sentinel != NULL)
        rc |= setup_command(ctx, on_role_reply, NULL, "ROLE", 1, (const char *[]){"ROLE"});
    if (ctx->kind == CTX_CMD) {
        if (cfg->redis_db != 0) {
            snprintf(db, sizeof(db), "%d", cfg->redis_db);
            rc |= setup_command(ctx, on_setup_reply, NULL, "SELECT", 2,
                                (const char *[]){"SELECT", db});
        }
        for (int i = 0; i < ctx->link->nscripts; i++)
            rc |= setup_command(ctx, on_setup_reply, ctx->link->scripts[i], "SCRIPT LOAD", 3,
                                (const char *[]){"SCRIPT", "LOAD", ctx->link->scripts[i]->body});
    }
    /* The id of this connection, or of none: never an earlier one's. */
    if (ctx->kind == CTX_SUB)
        ctx->link->track.sub_id_known = 0;
    if (ctx->kind == CTX_SUB && ctx->link->track.wanted)
        rc |= setup_command(ctx, on_client_id, NULL, "CLIENT ID", 2,
                            (const char *[]){"CLIENT", "ID"});
    /* A first SUBSCRIBE answered with an error (-LOADING) crashes hiredis
     * 0.14; a PING first proves the server takes commands. It also gives the
     * command context something to wait for when there is nothing else. */
    rc |= setup_command(ctx, on_setup_reply, NULL, "PING", 1, (const char *[]){"PING"});
    if (rc != 0)
        ctx_lost(ctx, "could not send setup commands");
}

/* ac: on the loop already, or NULL with the reason in ctx->below. */
static void ctx_attach(fm_ctx *ctx, redisAsyncContext *ac)
{
    if (ac == NULL) {
        ctx_lost(ctx, ctx->below);
        return;
    }
    ac->data = ctx;
    ctx->ac = ac;
    ctx->state = ST_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    fm_ctx *ctx = req->data;
    fm_link *link = ctx->link;

    if (link->closing) {
        uv_freeaddrinfo(res);
        link->release(link);
        return;
    }
    link->open_handles--;
    if (ctx->stale != NULL) {
        uv_freeaddrinfo(res);
        ctx_lost(ctx, ctx->stale);
        return;
    }
    if (status != 0 || res == NULL) {
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "resolving %.200s: %s",
                 ctx->host, status ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        ctx_lost(ctx, NULL);
        return;
    }
    ctx_attach(ctx, fm_redis_uv_connect(link->loop, link->tls, res, ctx->port, ctx->host,
                                        ctx->below, sizeof(ctx->below)));
}

/* Connects to host:port, under the attempt's deadline. */
static void resolve(fm_ctx *ctx, const char *host, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    fm_link *link = ctx->link;
    char ports[8];
    int rc;

    uv_timer_start(&ctx->timer, on_ctx_timer, (uint64_t)link->cfg->request_timeout_ms, 0);
    snprintf(ctx->host, sizeof(ctx->host), "%s", host);
    ctx->port = port;
    ctx->stale = NULL;
    snprintf(ports, sizeof(ports), "%d", port);
    ctx->gai.data = ctx;
    ctx->state = ST_RESOLVING;
    rc = uv_getaddrinfo(link->loop, &ctx->gai, on_resolved, ctx->host, ports, &hints);
    if (rc != 0) {
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "resolving: %s", uv_strerror(rc));
        ctx_lost(ctx, NULL);
        return;
    }
    link->open_handles++;
}

static void on_master_named(fm_sentinel_waiter *ask, const char *host, int port, const char *why)
{
    fm_ctx *ctx = fm_list_entry(ask, fm_ctx, ask);

    if (host == NULL) {
        ctx_lost(ctx, why);
        return;
    }
    resolve(ctx, host, port);
}

void fm_ctx_connect(fm_ctx *ctx)
{
    fm_link *link = ctx->link;
    const fm_config *cfg = link->cfg;

    if (link->sentinel != NULL) {
        ctx->state = ST_ASKING;
        fm_sentinel_ask(link->sentinel, &ctx->ask, on_master_named);
        return;
    }
    if (ctx->addr_port != 0) {
        resolve(ctx, ctx->addr_host, ctx->addr_port);
        return;
    }
    if (cfg->redis.path != NULL) {
        redisAsyncContext *ac = redisAsyncConnectUnix(cfg->redis.path);

        uv_timer_start(&ctx->timer, on_ctx_timer, (uint64_t)cfg->request_timeout_ms, 0);
        ctx->host[0] = '\0';
        ctx->below[0] = '\0';
        if (fm_redis_uv_start(ac, link->loop, 0, ctx->below, sizeof(ctx->below)) != 0)
            ac = NULL;
        ctx_attach(ctx, ac);
        return;
    }
    resolve(ctx, cfg->redis.host, cfg->redis.port);
}

void fm_ctx_switch(fm_ctx *ctx, const char *host, int port, const char *why)
{
    int there = host != NULL && strcmp(ctx->host, host) == 0 && ctx->port == port;

    ctx->attempt = 0;
    switch (ctx->state) {
    case ST_IDLE:
        uv_timer_stop(&ctx->timer);
        fm_ctx_connect(ctx);
        break;
    case ST_RESOLVING:
        ctx->stale = there ? NULL : "the sentinels switched the master while it was being "
                                    "resolved";
        break;
    case ST_CONNECTING:
    case ST_SETUP:
    case ST_READY:
        if (!there)
            ctx_lost(ctx, why);
        break;
    default:
        /* ASKING: sentinel.c asks again. LOST: on its way to IDLE. */
        break;
    }
}

void fm_ctx_retire(fm_ctx *ctx)
{
    ctx->retired = 1;
    switch (ctx->state) {
    case ST_IDLE:
        uv_timer_stop(&ctx->timer);
        break;
    case ST_READY:
        /* Nothing more is written to it; the replies on their way still
         * come, then hiredis disconnects and on_disconnect ends it. */
        ctx->state = ST_LOST;
        ctx->draining = 1;
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "left the slot map");
        redisAsyncDisconnect(ctx->ac);
        break;
    case ST_RESOLVING:
        /* The lookup runs on; its end fails the attempt. */
        ctx->stale = "left the slot map";
        break;
    case ST_CONNECTING:
    case ST_SETUP:
        ctx_lost(ctx, "left the slot map");
        break;
    default:
        /* LOST: on its way to IDLE, where it stays. */
        break;
    }
}

void fm_ctx_rejoin(fm_ctx *ctx)
{
    if (!ctx->retired)
        return;
    ctx->retired = 0;
    ctx->attempt = 0;
    /* A lookup that was to end the attempt may go on to a connect. */
    if (ctx->state == ST_RESOLVING)
        ctx->stale = NULL;
    if (ctx->state == ST_IDLE)
        fm_ctx_connect(ctx);
}

void fm_ctx_init(fm_ctx *ctx, fm_link *link, int kind)
{
    ctx->link = link;
    ctx->kind = kind;
    ctx->state = ST_IDLE;
    uv_timer_init(link->loop, &ctx->timer);
    ctx->timer.data = ctx;
}

void fm_ctx_close(fm_ctx *ctx)
{
    redisAsyncContext *ac = ctx->ac;

    if (ctx->state == ST_RESOLVING)
        uv_cancel((uv_req_t *)&ctx->gai);
    if (ctx->state == ST_ASKING)
        fm_sentinel_withdraw(&ctx->ask);
    if (ac != NULL) {
        ctx->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}
