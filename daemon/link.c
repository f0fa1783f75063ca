/* link.c -- connect, set up, reconnect and command routing for Redis.
 *
 * Each of the two contexts (commands, pub/sub) runs the same small machine:
 *
 *   IDLE --connect--> RESOLVING --> CONNECTING --> SETUP --> READY
 *     ^                                                        |
 *     +---- backoff min(attempt * step, max) <---- lost -------+
 *
 * with one timer per context serving as the backoff wait and as the deadline
 * of RESOLVING/CONNECTING/SETUP (request_timeout_ms), since hiredis 0.14 has
 * no connect timeout of its own.
 *
 * Commands wait in `queue` while the command context is not READY, or while
 * a transient error (LOADING, BUSY, MASTERDOWN) asks them to try again later;
 * the queue drains in order once READY. Commands written to Redis are owned
 * by hiredis until their reply (or the link's loss) comes back. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "link.h"
#include "log.h"
#include "redis_uv.h"

#define MAX_SCRIPTS 8
#define TRANSIENT_RETRY_MS 25

enum { ST_IDLE, ST_RESOLVING, ST_CONNECTING, ST_SETUP, ST_READY, ST_LOST };
enum { CTX_CMD, CTX_SUB };

typedef struct fm_ctx {
    fm_link *link;
    int kind;
    int state;
    redisAsyncContext *ac;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    int attempt;
    int setup_pending;      /* setup replies still to come */
    int logged_down;        /* loss logged; recovery not yet */
    int dropping;           /* we freed the context; on_disconnect follows */
    int suspect;            /* connected, but the server said READONLY: not
                               recovered until a command succeeds */
    char lasterr[128];
} fm_ctx;

enum { CMD_QUEUED, CMD_SENT };

struct fm_cmd {
    fm_link *link;
    fm_cmd *prev, *next;    /* in link->queue while QUEUED */
    int state;
    int cancelled;
    int transient;          /* Redis said "not now" to it at least once */
    fm_script *script;
    int use_eval;           /* NOSCRIPT seen: send the body */
    uint64_t retry_at;
    fm_link_cb *cb;
    void *arg;
    int argc;               /* including the 3 script slots when script */
    const char **argv;
    size_t *lens;
};

typedef enum { CH_NONE, CH_SUBSCRIBING, CH_SUBSCRIBED, CH_UNSUBSCRIBING } ch_state;

typedef struct channel {
    char *name;
    size_t len;
    ch_state state;
    int wanted;
} channel;

struct fm_link {
    uv_loop_t *loop;
    const fm_config *cfg;
    fm_ctx ctx[2];
    fm_script *scripts[MAX_SCRIPTS];
    int nscripts;
    fm_cmd *head, *tail;
    size_t queued;
    uv_timer_t retry_timer;
    channel *channels;
    size_t nchannels;
    fm_link_sub_handler sub;
    fm_link_stats stats;
    int closing;
    int open_handles;
};

static const char *const ctx_names[] = {"command", "pub/sub"};

static void ctx_connect(fm_ctx *ctx);
static void ctx_recovered(fm_ctx *ctx);
static void ctx_lost(fm_ctx *ctx, const char *why);
static void send_queue(fm_link *link);
static void sub_send_all(fm_link *link);
static void drop_channel(fm_link *link, channel *ch);

/* ---- command queue ---- */

static void queue_push(fm_link *link, fm_cmd *cmd, uint64_t retry_at)
{
    cmd->state = CMD_QUEUED;
    cmd->retry_at = retry_at;
    cmd->next = NULL;
    cmd->prev = link->tail;
    if (link->tail)
        link->tail->next = cmd;
    else
        link->head = cmd;
    link->tail = cmd;
    link->queued++;
}

static void queue_unlink(fm_link *link, fm_cmd *cmd)
{
    if (cmd->prev)
        cmd->prev->next = cmd->next;
    else
        link->head = cmd->next;
    if (cmd->next)
        cmd->next->prev = cmd->prev;
    else
        link->tail = cmd->prev;
    cmd->prev = cmd->next = NULL;
    link->queued--;
}

static void cmd_finish(fm_cmd *cmd, fm_link_status status, redisReply *reply)
{
    cmd->cb(status, reply, cmd->arg);
    free(cmd);
}

static int reply_is(const redisReply *r, const char *prefix)
{
    size_t n = strlen(prefix);

    return (size_t)r->len >= n && memcmp(r->str, prefix, n) == 0 &&
           ((size_t)r->len == n || r->str[n] == ' ');
}

/* Errors that say "not now" rather than "no": the command did not run. */
static int reply_transient(const redisReply *r)
{
    return reply_is(r, "LOADING") || reply_is(r, "BUSY") ||
           reply_is(r, "MASTERDOWN") || reply_is(r, "TRYAGAIN");
}

static int cmd_write(fm_cmd *cmd);
static void on_retry_timer(uv_timer_t *t);

static void retry_later(fm_link *link, fm_cmd *cmd)
{
    cmd->transient = 1;
    link->stats.retries++;
    queue_push(link, cmd, uv_now(link->loop) + TRANSIENT_RETRY_MS);
    if (!uv_is_active((uv_handle_t *)&link->retry_timer))
        uv_timer_start(&link->retry_timer, on_retry_timer, TRANSIENT_RETRY_MS, 0);
}

static void on_cmd_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_cmd *cmd = privdata;
    fm_link *link = cmd->link;
    redisReply *reply = r;

    if (reply == NULL) {
        /* The context is being torn down: nothing more may be written to
         * it, so mark it before the caller's callback submits anything. */
        if (link->ctx[CTX_CMD].state == ST_READY)
            link->ctx[CTX_CMD].state = ST_LOST;
        cmd_finish(cmd, FM_LINK_DOWN, NULL);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && !cmd->cancelled && !link->closing) {
        if (cmd->script && reply_is(reply, "NOSCRIPT")) {
            /* Script cache flushed (SCRIPT FLUSH, a restart we raced): EVAL
             * runs the body and caches it again. */
            link->stats.retries++;
            cmd->use_eval = 1;
            if (cmd_write(cmd) != 0)
                queue_push(link, cmd, 0);
            return;
        }
        if (reply_transient(reply)) {
            retry_later(link, cmd);
            return;
        }
        if (reply_is(reply, "READONLY")) {
            /* We are talking to a replica now (a failover): reconnect, and
             * run the command on whatever master we find. */
            fm_ctx *ctx = &link->ctx[CTX_CMD];

            cmd->transient = 1;
            queue_push(link, cmd, 0);
            link->stats.retries++;
            if (ctx->state == ST_READY) {
                /* Let the replies already on their way arrive (they meet
                 * READONLY too and queue up again), then reconnect. Until a
                 * command succeeds, the reconnects back off and log once. */
                snprintf(ctx->lasterr, sizeof(ctx->lasterr), "READONLY: the server is a replica now");
                ctx->suspect = 1;
                ctx->state = ST_LOST;
                redisAsyncDisconnect(ac);
            }
            return;
        }
    }
    if (link->ctx[CTX_CMD].suspect && link->ctx[CTX_CMD].state == ST_READY)
        ctx_recovered(&link->ctx[CTX_CMD]);
    cmd_finish(cmd, FM_LINK_OK, reply);
}

static int cmd_write(fm_cmd *cmd)
{
    fm_link *link = cmd->link;
    fm_ctx *ctx = &link->ctx[CTX_CMD];

    if (ctx->state != ST_READY)
        return -1;
    if (cmd->script) {
        cmd->argv[0] = cmd->use_eval ? "EVAL" : "EVALSHA";
        cmd->lens[0] = strlen(cmd->argv[0]);
        cmd->argv[1] = cmd->use_eval ? cmd->script->body : cmd->script->sha;
        cmd->lens[1] = strlen(cmd->argv[1]);
    }
    if (redisAsyncCommandArgv(ctx->ac, on_cmd_reply, cmd, cmd->argc, cmd->argv,
                              cmd->lens) != REDIS_OK)
        return -1;
    cmd->state = CMD_SENT;
    link->stats.commands++;
    return 0;
}

static void send_queue(fm_link *link)
{
    uint64_t now = uv_now(link->loop), next = 0;
    fm_cmd *cmd = link->head, *nx;

    for (; cmd != NULL && link->ctx[CTX_CMD].state == ST_READY; cmd = nx) {
        nx = cmd->next;
        if (cmd->retry_at > now) {
            if (next == 0 || cmd->retry_at < next)
                next = cmd->retry_at;
            continue;
        }
        queue_unlink(link, cmd);
        if (cmd_write(cmd) != 0) {
            queue_push(link, cmd, 0);
            break;
        }
    }
    if (next != 0)
        uv_timer_start(&link->retry_timer, on_retry_timer, next - now, 0);
}

static void on_retry_timer(uv_timer_t *t)
{
    send_queue(t->data);
}

static fm_cmd *cmd_create(fm_link *link, fm_script *script, int nkeys, int argc,
                          const char **argv, const size_t *lens,
                          fm_link_cb *cb, void *arg)
{
    int extra = script ? 3 : 0, total = argc + extra;
    size_t data = 0;
    char keys[16];
    fm_cmd *cmd;
    char *p;

    for (int i = 0; i < argc; i++)
        data += lens[i];
    cmd = malloc(sizeof(*cmd) + (size_t)total * (sizeof(char *) + sizeof(size_t)) +
                 data + sizeof(keys));
    if (cmd == NULL)
        return NULL;
    memset(cmd, 0, sizeof(*cmd));
    cmd->link = link;
    cmd->script = script;
    cmd->cb = cb;
    cmd->arg = arg;
    cmd->argc = total;
    cmd->argv = (const char **)(cmd + 1);
    cmd->lens = (size_t *)(cmd->argv + total);
    p = (char *)(cmd->lens + total);
    if (script) {
        int n = snprintf(p, sizeof(keys), "%d", nkeys);
        cmd->argv[2] = p;
        cmd->lens[2] = (size_t)n;
        p += sizeof(keys);
    }
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        cmd->argv[extra + i] = p;
        cmd->lens[extra + i] = lens[i];
        p += lens[i];
    }
    return cmd;
}

static fm_cmd *submit(fm_link *link, fm_cmd *cmd)
{
    if (cmd == NULL)
        return NULL;
    if (link->closing) {
        free(cmd);
        return NULL;
    }
    if (link->head != NULL || cmd_write(cmd) != 0)
        queue_push(link, cmd, 0);
    return cmd;
}

fm_cmd *fm_link_command(fm_link *link, int argc, const char **argv,
                        const size_t *lens, fm_link_cb *cb, void *arg)
{
    return submit(link, cmd_create(link, NULL, 0, argc, argv, lens, cb, arg));
}

fm_cmd *fm_link_script(fm_link *link, fm_script *script, int nkeys, int argc,
                       const char **argv, const size_t *lens, fm_link_cb *cb,
                       void *arg)
{
    return submit(link, cmd_create(link, script, nkeys, argc, argv, lens, cb, arg));
}

int fm_link_cancel(fm_cmd *cmd)
{
    if (cmd->state == CMD_QUEUED) {
        queue_unlink(cmd->link, cmd);
        free(cmd);
        return 1;
    }
    cmd->cancelled = 1;
    return 0;
}

int fm_cmd_transient(const fm_cmd *cmd)
{
    return cmd->transient;
}

/* ---- connection machine ---- */

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
        ctx_connect(ctx);
        break;
    case ST_RESOLVING:
        /* Its callback reports UV_ECANCELED and takes the failure path. */
        uv_cancel((uv_req_t *)&ctx->gai);
        break;
    case ST_CONNECTING:
    case ST_SETUP:
        ctx_lost(ctx, "timed out connecting");
        break;
    default:
        break;
    }
}

static void schedule_reconnect(fm_ctx *ctx)
{
    fm_link *link = ctx->link;

    ctx->state = ST_IDLE;
    if (link->closing)
        return;
    ctx->attempt++;
    uv_timer_start(&ctx->timer, on_ctx_timer, (uint64_t)backoff_ms(link, ctx->attempt), 0);
}

/* The context is gone or going; hiredis calls on_disconnect (when it had
 * connected) after failing every pending command with a NULL reply. */
static void ctx_lost(fm_ctx *ctx, const char *why)
{
    fm_link *link = ctx->link;
    int was_ready = ctx->state == ST_READY || ctx->state == ST_LOST;
    redisAsyncContext *ac = ctx->ac;

    if (why != NULL)
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "%s", why);
    if (!ctx->logged_down && !link->closing) {
        fm_log_warn("redis %s link %s: %s", ctx_names[ctx->kind],
                    was_ready ? "lost" : "not established", ctx->lasterr);
        ctx->logged_down = 1;
    }
    if (was_ready)
        link->stats.disconnects++;
    if (ctx->kind == CTX_SUB) {
        for (size_t i = link->nchannels; i-- > 0;) {
            link->channels[i].state = CH_NONE;
            if (!link->channels[i].wanted)
                drop_channel(link, &link->channels[i]);
        }
        if (was_ready && link->sub.down)
            link->sub.down(link->sub.arg);
    }
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
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "%s",
                 ac->errstr[0] ? ac->errstr : "connection closed");
    ctx_lost(ctx, NULL);
}

/* The link works again: backoff starts over, the recovery is logged once. */
static void ctx_recovered(fm_ctx *ctx)
{
    ctx->suspect = 0;
    ctx->attempt = 0;
    ctx->lasterr[0] = '\0';
    if (ctx->logged_down) {
        fm_log_info("redis %s link up", ctx_names[ctx->kind]);
        ctx->logged_down = 0;
    } else {
        fm_log_debug("redis %s link up", ctx_names[ctx->kind]);
    }
}

static void ctx_ready(fm_ctx *ctx)
{
    fm_link *link = ctx->link;

    uv_timer_stop(&ctx->timer);
    ctx->state = ST_READY;
    link->stats.connects++;
    if (!ctx->suspect)
        ctx_recovered(ctx);
    if (ctx->kind == CTX_CMD)
        send_queue(link);
    else
        sub_send_all(link);
}

static void on_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_ctx *ctx = ac->data;
    redisReply *reply = r;
    fm_script *script = privdata;

    if (reply == NULL || ctx == NULL || ctx->state != ST_SETUP)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[128];
        snprintf(why, sizeof(why), "setup failed: %.100s", reply->str);
        ctx_lost(ctx, why);
        return;
    }
    if (script != NULL && reply->type == REDIS_REPLY_STRING && reply->len == 40)
        memcpy(script->sha, reply->str, 41);
    if (--ctx->setup_pending == 0)
        ctx_ready(ctx);
}

static int setup_command(fm_ctx *ctx, void *privdata, int argc, const char **argv)
{
    size_t lens[4];

    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    if (redisAsyncCommandArgv(ctx->ac, on_setup_reply, privdata, argc, argv, lens) != REDIS_OK)
        return -1;
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
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "%s", ac->errstr);
        ctx_lost(ctx, NULL);
        return;
    }
    cfg = ctx->link->cfg;
    ctx->state = ST_SETUP;
    ctx->setup_pending = 0;
    if (cfg->redis_password && cfg->redis_user)
        rc |= setup_command(ctx, NULL, 3, (const char *[]){"AUTH", cfg->redis_user, cfg->redis_password});
    else if (cfg->redis_password)
        rc |= setup_command(ctx, NULL, 2, (const char *[]){"AUTH", cfg->redis_password});
    if (ctx->kind == CTX_CMD) {
        if (cfg->redis_db != 0) {
            snprintf(db, sizeof(db), "%d", cfg->redis_db);
            rc |= setup_command(ctx, NULL, 2, (const char *[]){"SELECT", db});
        }
        for (int i = 0; i < ctx->link->nscripts; i++)
            rc |= setup_command(ctx, ctx->link->scripts[i], 3,
                                (const char *[]){"SCRIPT", "LOAD", ctx->link->scripts[i]->body});
    }
    /* A first SUBSCRIBE answered with an error (-LOADING) crashes hiredis
     * 0.14; a PING first proves the server takes commands. It also gives the
     * command context something to wait for when there is nothing else. */
    rc |= setup_command(ctx, NULL, 1, (const char *[]){"PING"});
    if (rc != 0)
        ctx_lost(ctx, "could not send setup commands");
}

static void ctx_attach(fm_ctx *ctx, redisAsyncContext *ac)
{
    fm_link *link = ctx->link;

    if (ac == NULL) {
        ctx_lost(ctx, "out of memory");
        return;
    }
    if (ac->err) {
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "%s", ac->errstr);
        redisAsyncFree(ac);
        ctx_lost(ctx, NULL);
        return;
    }
    ac->data = ctx;
    /* Over TCP, a peer that vanished without a FIN or RST is found out. */
    if (link->cfg->redis.path == NULL)
        redisEnableKeepAlive(&ac->c);
    if (fm_redis_uv_attach(ac, link->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        ctx_lost(ctx, "could not watch the socket");
        return;
    }
    ctx->ac = ac;
    ctx->state = ST_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    fm_ctx *ctx = req->data;
    fm_link *link = ctx->link;
    char ip[64];

    link->open_handles--;
    if (link->closing) {
        uv_freeaddrinfo(res);
        if (link->open_handles == 0)
            free(link);
        return;
    }
    if (status != 0 || res == NULL) {
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "resolving %s: %s",
                 link->cfg->redis.host, status ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        ctx_lost(ctx, NULL);
        return;
    }
    if (res->ai_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
    else
        uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    /* A numeric address: hiredis's own getaddrinfo(3) call cannot block. */
    ctx_attach(ctx, redisAsyncConnect(ip, link->cfg->redis.port));
}

static void ctx_connect(fm_ctx *ctx)
{
    fm_link *link = ctx->link;
    const fm_config *cfg = link->cfg;

    uv_timer_start(&ctx->timer, on_ctx_timer, (uint64_t)cfg->request_timeout_ms, 0);
    if (cfg->redis.path != NULL) {
        ctx_attach(ctx, redisAsyncConnectUnix(cfg->redis.path));
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    int rc;

    snprintf(port, sizeof(port), "%d", cfg->redis.port);
    ctx->gai.data = ctx;
    ctx->state = ST_RESOLVING;
    rc = uv_getaddrinfo(link->loop, &ctx->gai, on_resolved, cfg->redis.host, port, &hints);
    if (rc != 0) {
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "resolving: %s", uv_strerror(rc));
        ctx_lost(ctx, NULL);
        return;
    }
    link->open_handles++;
}

/* ---- pub/sub ---- */

static channel *find_channel(fm_link *link, const char *name, size_t len)
{
    for (size_t i = 0; i < link->nchannels; i++)
        if (link->channels[i].len == len && memcmp(link->channels[i].name, name, len) == 0)
            return &link->channels[i];
    return NULL;
}

static void drop_channel(fm_link *link, channel *ch)
{
    free(ch->name);
    *ch = link->channels[--link->nchannels];
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_link *link = privdata;
    redisReply *reply = r, *kind, *name;
    channel *ch;

    if (reply == NULL || link->closing)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        fm_log_warn("redis pub/sub: unexpected reply type %d", reply->type);
        return;
    }
    kind = reply->element[0];
    name = reply->element[1];
    if (strcmp(kind->str, "message") == 0) {
        redisReply *payload = reply->element[2];
        if (payload->type == REDIS_REPLY_STRING && link->sub.message)
            link->sub.message(name->str, (size_t)name->len, payload->str,
                              (size_t)payload->len, link->sub.arg);
        return;
    }
    ch = find_channel(link, name->str, (size_t)name->len);
    if (ch == NULL)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        ch->state = CH_SUBSCRIBED;
        if (link->sub.subscribed)
            link->sub.subscribed(ch->name, ch->len, link->sub.arg);
    } else if (strcmp(kind->str, "unsubscribe") == 0) {
        ch->state = CH_NONE;
        /* Wanted again while the UNSUBSCRIBE was in flight: hiredis dropped
         * the callback with the unsubscribe, so subscribe anew only now. */
        if (ch->wanted)
            sub_send_all(link);
        else
            drop_channel(link, ch);
    }
}

static int sub_send(fm_link *link, channel *ch, const char *verb)
{
    const char *argv[2] = {verb, ch->name};
    size_t lens[2] = {strlen(verb), ch->len};

    return redisAsyncCommandArgv(link->ctx[CTX_SUB].ac, on_sub_reply, link, 2, argv, lens) ==
           REDIS_OK ? 0 : -1;
}

static void sub_send_all(fm_link *link)
{
    if (link->ctx[CTX_SUB].state != ST_READY)
        return;
    for (size_t i = 0; i < link->nchannels; i++) {
        channel *ch = &link->channels[i];

        if (ch->wanted && ch->state == CH_NONE && sub_send(link, ch, "SUBSCRIBE") == 0)
            ch->state = CH_SUBSCRIBING;
    }
}

int fm_link_subscribe(fm_link *link, const char *name, size_t len)
{
    channel *ch = find_channel(link, name, len);

    if (ch == NULL) {
        channel *grown = realloc(link->channels, (link->nchannels + 1) * sizeof(*grown));
        if (grown == NULL)
            return -1;
        link->channels = grown;
        ch = &link->channels[link->nchannels];
        ch->name = malloc(len + 1);
        if (ch->name == NULL)
            return -1;
        memcpy(ch->name, name, len);
        ch->name[len] = '\0';
        ch->len = len;
        ch->state = CH_NONE;
        link->nchannels++;
    }
    ch->wanted = 1;
    if (ch->state == CH_SUBSCRIBED)
        return 1;
    sub_send_all(link);
    return 0;
}

int fm_link_unsubscribe(fm_link *link, const char *name, size_t len)
{
    channel *ch = find_channel(link, name, len);

    if (ch == NULL)
        return 0;
    ch->wanted = 0;
    if (ch->state == CH_NONE) {
        drop_channel(link, ch);
        return 0;
    }
    if (ch->state == CH_SUBSCRIBED && link->ctx[CTX_SUB].state == ST_READY &&
        sub_send(link, ch, "UNSUBSCRIBE") == 0)
        ch->state = CH_UNSUBSCRIBING;
    return 0;
}

/* ---- life cycle ---- */

static void on_handle_closed(uv_handle_t *h)
{
    fm_link *link = h->data;

    if (--link->open_handles == 0)
        free(link);
}

fm_link *fm_link_create(uv_loop_t *loop, const fm_config *cfg)
{
    fm_link *link = calloc(1, sizeof(*link));

    if (link == NULL)
        return NULL;
    link->loop = loop;
    link->cfg = cfg;
    for (int k = 0; k < 2; k++) {
        fm_ctx *ctx = &link->ctx[k];

        ctx->link = link;
        ctx->kind = k;
        ctx->state = ST_IDLE;
        uv_timer_init(loop, &ctx->timer);
        ctx->timer.data = ctx;
        link->open_handles++;
    }
    uv_timer_init(loop, &link->retry_timer);
    link->retry_timer.data = link;
    link->open_handles++;
    return link;
}

int fm_link_start(fm_link *link)
{
    ctx_connect(&link->ctx[CTX_CMD]);
    ctx_connect(&link->ctx[CTX_SUB]);
    return 0;
}

int fm_link_register_script(fm_link *link, fm_script *script)
{
    if (link->nscripts == MAX_SCRIPTS)
        return -1;
    link->scripts[link->nscripts++] = script;
    return 0;
}

void fm_link_set_sub_handler(fm_link *link, const fm_link_sub_handler *h)
{
    link->sub = *h;
}

void fm_link_set_config(fm_link *link, const fm_config *cfg)
{
    link->cfg = cfg;
}

int fm_link_ready(const fm_link *link)
{
    return link->ctx[CTX_CMD].state == ST_READY;
}

int fm_link_sub_ready(const fm_link *link)
{
    return link->ctx[CTX_SUB].state == ST_READY;
}

void fm_link_get_stats(const fm_link *link, fm_link_stats *out)
{
    *out = link->stats;
    out->queued = link->queued;
}

void fm_link_free(fm_link *link)
{
    if (link == NULL)
        return;
    link->closing = 1;
    while (link->head != NULL) {
        fm_cmd *cmd = link->head;
        queue_unlink(link, cmd);
        cmd_finish(cmd, FM_LINK_DOWN, NULL);
    }
    for (int k = 0; k < 2; k++) {
        fm_ctx *ctx = &link->ctx[k];

        if (ctx->state == ST_RESOLVING)
            uv_cancel((uv_req_t *)&ctx->gai);
        if (ctx->ac != NULL) {
            redisAsyncContext *ac = ctx->ac;
            ctx->ac = NULL;
            ac->data = NULL;
            redisAsyncFree(ac);
        }
        uv_close((uv_handle_t *)&ctx->timer, on_handle_closed);
        ctx->timer.data = link;
    }
    for (size_t i = 0; i < link->nchannels; i++)
        free(link->channels[i].name);
    free(link->channels);
    link->channels = NULL;
    link->nchannels = 0;
    uv_close((uv_handle_t *)&link->retry_timer, on_handle_closed);
}
