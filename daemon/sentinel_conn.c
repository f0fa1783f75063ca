/* sentinel_conn.c -- one connection to one sentinel (see sentinel_conn.h).
 *
 *   IDLE --open--> RESOLVING --> CONNECTING --> HELLO (AUTH, PING) --> UP
 *     ^                                                                 |
 *     +------------- fail (deadline, refusal, loss) or close <---------+
 *
 * The context's data is the connection while it is ours: a context we let
 * go has NULL there, so the replies hiredis still hands back (NULL ones as
 * it frees) and its disconnect find nobody. hiredis frees a context right
 * after a failed connect or a disconnect, and defers a free asked for
 * inside a reply callback until the callback returns; it must never be
 * freed from the connect callback, which it goes on using. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "redis_uv.h"
#include "sentinel_conn.h"

static void detach(fm_sconn *c)
{
    redisAsyncContext *ac = c->ac;

    c->ac = NULL;
    if (ac != NULL) {
        ac->data = NULL;
        redisAsyncFree(ac);
    }
}

void fm_sconn_close(fm_sconn *c)
{
    uv_timer_stop(&c->timer);
    c->state = SC_IDLE;
    detach(c);
}

void fm_sconn_fail(fm_sconn *c, const char *why, int answered)
{
    char text[sizeof(c->why)];

    if (c->state == SC_IDLE)
        return;
    /* why may be the context's errstr, which the close frees. */
    snprintf(text, sizeof(text), "%s", why);
    fm_sconn_close(c);
    c->on_fail(c, text, answered);
}

static void on_timer(uv_timer_t *t)
{
    fm_sconn *c = t->data;

    if (c->resolving) {
        /* Its callback reports the failure, once gai is free again. */
        c->expired = 1;
        uv_cancel((uv_req_t *)&c->gai);
        return;
    }
    if (c->why[0] == '\0')
        /* A TLS tunnel says what it still waits for. */
        snprintf(c->why, sizeof(c->why), "timed out%s%s", c->below[0] ? ": " : "", c->below);
    fm_sconn_fail(c, c->why, 0);
}

static void on_pong(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_sconn *c = ac->data;
    redisReply *reply = r;
    char why[128];

    (void)privdata;
    if (c == NULL || reply == NULL || c->state != SC_HELLO)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* NOAUTH: it wants a password we do not have. */
        snprintf(why, sizeof(why), "refused PING: %.90s", reply->str);
        fm_sconn_fail(c, why, 1);
        return;
    }
    c->state = SC_UP;
    c->on_up(c);
}

static void on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_sconn *c = ac->data;
    redisReply *reply = r;
    char why[128];

    (void)privdata;
    if (c == NULL || reply == NULL || c->state != SC_HELLO || reply->type != REDIS_REPLY_ERROR)
        return;
    /* Redis's refusal never echoes the password. */
    snprintf(why, sizeof(why), "refused AUTH: %.90s", reply->str);
    fm_sconn_fail(c, why, 1);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    fm_sconn *c = ac->data;

    if (c == NULL)
        return;
    if (status != REDIS_OK) {
        c->ac = NULL;       /* hiredis frees it after this */
        fm_sconn_fail(c, fm_redis_uv_why(ac, c->below), 0);
        return;
    }
    /* Not sent (out of memory): the deadline ends the attempt. */
    c->state = SC_HELLO;
    if (c->password != NULL)
        redisAsyncCommand(c->ac, on_auth, NULL, "AUTH %s", c->password);
    redisAsyncCommand(c->ac, on_pong, NULL, "PING");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    fm_sconn *c = ac->data;

    (void)status;
    if (c == NULL)
        return;
    c->ac = NULL;           /* hiredis frees it after this */
    fm_sconn_fail(c, fm_redis_uv_why(ac, c->below), 0);
}

static void connect_to(fm_sconn *c, struct addrinfo *res)
{
    /* With keepalive: the watcher's connection idles for days. */
    redisAsyncContext *ac = fm_redis_uv_connect(c->loop, c->tls, res, c->addr->port,
                                                c->addr->host, c->below, sizeof(c->below));

    if (ac == NULL) {
        fm_sconn_fail(c, c->below, 0);
        return;
    }
    ac->data = c;
    c->ac = ac;
    c->state = SC_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    fm_sconn *c = req->data;
    char why[128];

    c->resolving = 0;
    if (c->on_gone != NULL || c->state != SC_RESOLVING) {
        uv_freeaddrinfo(res);
        if (c->on_gone != NULL)
            c->on_gone(c);
        return;
    }
    if (c->expired || status != 0 || res == NULL) {
        snprintf(why, sizeof(why), "resolving: %s", c->expired ? "timed out"
                 : status != 0 ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        fm_sconn_fail(c, why, 0);
        return;
    }
    connect_to(c, res);
}

void fm_sconn_open(fm_sconn *c, const fm_redis_addr *addr, const char *password, int64_t ms)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    int rc;

    c->addr = addr;
    c->password = password;
    c->why[0] = '\0';
    c->expired = 0;
    c->state = SC_RESOLVING;
    uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
    snprintf(port, sizeof(port), "%d", addr->port);
    rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, addr->host, port, &hints);
    if (rc != 0) {
        /* Reported from the timer, as promised: never from within. */
        snprintf(c->why, sizeof(c->why), "resolving: %s", uv_strerror(rc));
        uv_timer_start(&c->timer, on_timer, 0, 0);
        return;
    }
    c->resolving = 1;
}

void fm_sconn_keep(fm_sconn *c)
{
    uv_timer_stop(&c->timer);
}

void fm_sconn_expect(fm_sconn *c, int64_t ms, const char *why)
{
    assert(c->state == SC_UP);
    snprintf(c->why, sizeof(c->why), "%s", why);
    uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

void fm_sconn_init(fm_sconn *c, uv_loop_t *loop, fm_tls *tls, void *data)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->tls = tls;
    c->data = data;
    c->gai.data = c;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
}

static void on_timer_closed(uv_handle_t *h)
{
    fm_sconn *c = h->data;

    c->on_gone(c);
}

int fm_sconn_release(fm_sconn *c, void (*gone)(fm_sconn *c))
{
    c->on_gone = gone;
    fm_sconn_close(c);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    if (!c->resolving)
        return 1;
    uv_cancel((uv_req_t *)&c->gai);
    return 2;
}
