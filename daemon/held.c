/* held.c -- release-on-disconnect and auto-extension of held locks.
 *
 * Each connection keeps the locks it holds through this daemon in a map
 * keyed by token (map.h), so a release or an extension finds its entry in
 * constant time however many the connection holds. Every entry has one
 * timer: the ticks of its auto-extension, or else the lock's expiry, at
 * which the entry leaves. A lock that expired in Redis is no longer the
 * connection's to release, and a connection that takes locks by the
 * thousand with short TTLs and never releases them must not make the
 * daemon carry them (memory, and one release script each at the close)
 * for as long as it lives. The timer starts when the grant arrives, after
 * Redis set the TTL, so an entry leaves no earlier than its lock.
 *
 * An entry outlives its connection while a release or an extension for it
 * is still at Redis (detach, don't dangle): it is freed only when it is let
 * go, has no command out, and its timer is closed. srv->releasing counts
 * releases in flight, so a shutdown can wait for them before it closes the
 * link. */
#include <stdlib.h>
#include <string.h>

#include "held.h"
#include "lock.h"
#include "log.h"

struct fm_held {
    fm_server *srv;
    fm_conn *conn;              /* NULL once let go */
    fm_map_node node;           /* in conn->held, by token */
    int release_on_close;
    int auto_extend;
    int pending;                /* commands out for it */
    int extending;              /* one of them is an extension */
    uv_timer_t timer;           /* extension ticks, or the lock's expiry */
    int64_t ttl;
    size_t keylen, rkeylen, toklen;
    const char *key, *rkey, *token;     /* in data, each NUL-terminated */
    char data[];
};

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void maybe_free(fm_held *h)
{
    if (h->conn != NULL || h->pending > 0)
        return;
    if (!uv_is_closing((uv_handle_t *)&h->timer))
        uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

/* Off the connection's map: nothing more is done for it. */
static void let_go(fm_held *h)
{
    if (h->conn == NULL)
        return;
    fm_map_remove(&h->conn->held, &h->node);
    h->conn = NULL;
    h->srv->locks_held--;
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

static void on_expired(uv_timer_t *t)
{
    let_go(t->data);
}

/* (Re)starts the entry's timer for a TTL of ttl ms from now. */
static void arm(fm_held *h, int64_t ttl)
{
    uint64_t every = (uint64_t)ttl / 3;

    h->ttl = ttl;
    if (h->auto_extend)
        uv_timer_start(&h->timer, on_extend_timer, every ? every : 1, every ? every : 1);
    else
        uv_timer_start(&h->timer, on_expired, (uint64_t)ttl, 0);
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

static const char *put(char **w, const char *s, size_t len)
{
    char *p = *w;

    memcpy(p, s, len);
    p[len] = '\0';
    *w += len + 1;
    return p;
}

int fm_held_add(fm_conn *conn, const char *key, size_t keylen, const char *rkey,
                size_t rkeylen, const char *token, int64_t ttl, int release_on_close,
                int auto_extend)
{
    size_t toklen = strlen(token);
    fm_held *h = malloc(sizeof(*h) + keylen + rkeylen + toklen + 3);
    char *w;

    if (h == NULL)
        return -1;
    memset(h, 0, sizeof(*h));
    w = h->data;
    h->key = put(&w, key, keylen);
    h->rkey = put(&w, rkey, rkeylen);
    h->token = put(&w, token, toklen);
    h->keylen = keylen;
    h->rkeylen = rkeylen;
    h->toklen = toklen;
    if (fm_map_insert(&conn->held, &h->node, h->token, toklen) != 0) {
        free(h);
        return -1;
    }
    h->srv = conn->srv;
    h->conn = conn;
    h->release_on_close = release_on_close;
    h->auto_extend = auto_extend;
    conn->srv->locks_held++;
    uv_timer_init(conn->srv->loop, &h->timer);
    h->timer.data = h;
    arm(h, ttl);
    return 0;
}

static fm_held *find(fm_conn *conn, const char *rkey, size_t rkeylen, const char *token,
                     size_t toklen)
{
    for (fm_map_node *n = fm_map_find(&conn->held, token, toklen); n != NULL;
         n = fm_map_next(n)) {
        fm_held *h = fm_map_entry(n, fm_held, node);

        if (h->rkeylen == rkeylen && memcmp(h->rkey, rkey, rkeylen) == 0)
            return h;
    }
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

    /* The client's own extension sets the TTL the daemon keeps up, or the
     * new expiry; a TTL too short to extend in time stays the client's
     * business. */
    if (h != NULL)
        arm(h, ttl);
}

void fm_held_conn_closed(fm_conn *conn)
{
    fm_map_node *n, *next;

    for (n = fm_map_first(&conn->held); n != NULL; n = next) {
        fm_held *h = fm_map_entry(n, fm_held, node);

        next = fm_map_after(&conn->held, n);
        if (h->release_on_close && h->srv->link != NULL &&
            fm_lock_send_release(h->srv, h->rkey, h->rkeylen, h->token, h->toklen,
                                 on_released, h) == 0) {
            h->pending++;
            h->srv->releasing++;
        }
        let_go(h);
    }
}
