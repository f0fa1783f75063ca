/* held.c -- release-on-disconnect and auto-extension of held locks.
 *
 * A held entry outlives its connection while a release or an extension for
 * it is still at Redis (detach, don't dangle): it is freed only when it is
 * let go, has no command out, and its timer is closed. srv->releasing
 * counts releases in flight, so a shutdown can wait for them before it
 * closes the link. */
#include <stdlib.h>
#include <string.h>

#include "held.h"
#include "lock.h"
#include "log.h"
#include "token.h"

struct fm_held {
    fm_server *srv;
    fm_conn *conn;              /* NULL once let go */
    fm_held *prev, *next;       /* conn->held */
    int release_on_close;
    int auto_extend;
    int pending;                /* commands out for it */
    int extending;              /* one of them is an extension */
    int timer_used;
    uv_timer_t timer;
    int64_t ttl;
    size_t keylen, rkeylen, toklen;
    char token[FM_KEY_MAX + 1];
    char key[FM_KEY_MAX + 1];
    char rkey[FM_RKEY_MAX + 1];
};

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void maybe_free(fm_held *h)
{
    if (h->conn != NULL || h->pending > 0)
        return;
    if (h->timer_used) {
        if (!uv_is_closing((uv_handle_t *)&h->timer))
            uv_close((uv_handle_t *)&h->timer, on_timer_closed);
        return;
    }
    free(h);
}

/* Off the connection's list: nothing more is done for it. */
static void let_go(fm_held *h)
{
    fm_conn *conn = h->conn;

    if (conn == NULL)
        return;
    if (h->prev)
        h->prev->next = h->next;
    else
        conn->held = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->prev = h->next = NULL;
    h->conn = NULL;
    if (h->timer_used)
        uv_timer_stop(&h->timer);
    maybe_free(h);
}

static void send_lost(fm_held *h)
{
    fm_conn *conn = h->conn;
    size_t start;

    if (!fm_conn_alive(conn))
        return;
    start = fm_event_start(conn, "lock.lost");
    fm_reply_put_str(conn, "key", h->key, h->keylen);
    fm_reply_finish(conn, start);
}

static void on_extended(fm_link_status status, redisReply *reply, void *arg)
{
    fm_held *h = arg;

    h->pending--;
    h->extending = 0;
    if (h->conn == NULL) {
        maybe_free(h);
        return;
    }
    /* Errors and a lost link are tried again at the next tick; the reply
     * that matters is Redis saying the token no longer holds the key. */
    if (status == FM_LINK_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        fm_log_info("client %llu: lock %s lost before its extension",
                    (unsigned long long)h->conn->serial, h->rkey);
        send_lost(h);
        let_go(h);
    }
}

static void on_extend_timer(uv_timer_t *t)
{
    fm_held *h = t->data;

    if (h->extending || h->srv->link == NULL)
        return;
    if (fm_lock_send_extend(h->srv, h->rkey, h->rkeylen, h->token, h->toklen, h->ttl,
                            on_extended, h) == 0) {
        h->pending++;
        h->extending = 1;
    }
}

static void on_released(fm_link_status status, redisReply *reply, void *arg)
{
    fm_held *h = arg;

    h->pending--;
    h->srv->releasing--;
    if (status == FM_LINK_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
        fm_log_debug("released %s for a client that went away", h->rkey);
    else
        fm_log_debug("%s was not released for a client that went away: it expires with its TTL",
                     h->rkey);
    maybe_free(h);
}

int fm_held_add(fm_conn *conn, const char *key, size_t keylen, const char *rkey,
                size_t rkeylen, const char *token, int64_t ttl, int release_on_close,
                int auto_extend)
{
    fm_held *h = calloc(1, sizeof(*h));
    size_t toklen = strlen(token);

    if (h == NULL)
        return -1;
    h->srv = conn->srv;
    h->conn = conn;
    h->release_on_close = release_on_close;
    h->auto_extend = auto_extend;
    h->ttl = ttl;
    memcpy(h->key, key, keylen);
    h->keylen = keylen;
    memcpy(h->rkey, rkey, rkeylen + 1);
    h->rkeylen = rkeylen;
    memcpy(h->token, token, toklen + 1);
    h->toklen = toklen;
    if (auto_extend) {
        uint64_t every = (uint64_t)ttl / 3;

        uv_timer_init(conn->srv->loop, &h->timer);
        h->timer.data = h;
        h->timer_used = 1;
        uv_timer_start(&h->timer, on_extend_timer, every, every);
    }
    h->next = conn->held;
    if (conn->held)
        conn->held->prev = h;
    conn->held = h;
    return 0;
}

static fm_held *find(fm_conn *conn, const char *rkey, size_t rkeylen, const char *token,
                     size_t toklen)
{
    for (fm_held *h = conn->held; h != NULL; h = h->next)
        if (h->rkeylen == rkeylen && memcmp(h->rkey, rkey, rkeylen) == 0 &&
            h->toklen == toklen && memcmp(h->token, token, toklen) == 0)
            return h;
    return NULL;
}

void fm_held_forget(fm_conn *conn, const char *rkey, size_t rkeylen, const char *token,
                    size_t toklen)
{
    fm_held *h = find(conn, rkey, rkeylen, token, toklen);

    if (h != NULL)
        let_go(h);
}

void fm_held_extended(fm_conn *conn, const char *rkey, size_t rkeylen, const char *token,
                      size_t toklen, int64_t ttl)
{
    fm_held *h = find(conn, rkey, rkeylen, token, toklen);
    uint64_t every = (uint64_t)ttl / 3;

    if (h == NULL || !h->auto_extend)
        return;
    /* The client's own extension sets the TTL the daemon keeps up from now
     * on; a TTL too short to extend in time stays the client's business. */
    h->ttl = ttl;
    uv_timer_start(&h->timer, on_extend_timer, every ? every : 1, every ? every : 1);
}

void fm_held_conn_closed(fm_conn *conn)
{
    while (conn->held != NULL) {
        fm_held *h = conn->held;

        if (h->release_on_close && h->srv->link != NULL &&
            fm_lock_send_release(h->srv, h->rkey, h->rkeylen, h->token, h->toklen,
                                 on_released, h) == 0) {
            h->pending++;
            h->srv->releasing++;
        }
        let_go(h);
    }
}
