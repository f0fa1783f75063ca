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
 * An entry outlives its connection while an extension for it is still at
 * Redis (detach, don't dangle): it is freed only when it is let go, has no
 * extension out, and its timer is closed. Releases carry their own copy
 * of the key and token (lockcmd.h), and need no entry. */
#include <stdlib.h>
#include <string.h>

#include "held.h"
#include "log.h"
#include "map.h"
#include "reply.h"

typedef struct fm_held {
    fm_held_set *hs;
    fm_conn *conn;              /* NULL once let go */
    fm_map_node node;           /* in the connection's table, by token */
    int release_on_close;
    int auto_extend;
    int extending;              /* an extension is at Redis */
    uv_timer_t timer;           /* extension ticks, or the lock's expiry */
    int64_t ttl;
    size_t keylen, rkeylen, toklen;
    const char *key, *rkey, *token;     /* in data, each NUL-terminated */
    char data[];
} fm_held;

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void maybe_free(fm_held *h)
{
    if (h->conn != NULL || h->extending)
        return;
    if (!uv_is_closing((uv_handle_t *)&h->timer))
        uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

/* Off the connection's map: nothing more is done for it. */
static fm_map *table(const fm_held_set *hs, const fm_conn *conn)
{
    return conn->svc[hs->slot];
}

static void let_go(fm_held *h)
{
    if (h->conn == NULL)
        return;
    fm_map_remove(table(h->hs, h->conn), &h->node);
    h->conn = NULL;
    h->hs->count--;
    h->hs->auto_extended -= (size_t)h->auto_extend;
    uv_timer_stop(&h->timer);
    maybe_free(h);
}

static void send_lost(fm_held *h)
{
    fm_conn *conn = h->conn;
    size_t start;

    if (!fm_conn_alive(conn))
        return;
    start = fm_reply_event_start(conn, "lock.lost");
    fm_reply_put_str(conn, "key", h->key, h->keylen);
    fm_reply_finish(conn, start);
}

static void on_extended(fm_link_status status, redisReply *reply, void *arg)
{
    fm_held *h = arg;

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

    if (h->extending)
        return;
    if (fm_lockcmd_extend(h->hs->lc, h->rkey, h->rkeylen, h->token, h->toklen, h->ttl,
                          on_extended, h) == 0) {
        h->extending = 1;
        h->hs->extensions++;
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

static const char *put(char **w, const char *s, size_t len)
{
    char *p = *w;

    memcpy(p, s, len);
    p[len] = '\0';
    *w += len + 1;
    return p;
}

int fm_held_add(fm_held_set *hs, fm_conn *conn, const char *key, size_t keylen,
                const char *rkey, size_t rkeylen, const char *token, int64_t ttl,
                int release_on_close, int auto_extend)
{
    size_t toklen = strlen(token);
    fm_map *t = table(hs, conn);
    fm_held *h;
    char *w;

    if (t == NULL && (t = conn->svc[hs->slot] = calloc(1, sizeof(*t))) == NULL)
        return -1;
    h = malloc(sizeof(*h) + keylen + rkeylen + toklen + 3);
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
    if (fm_map_insert(t, &h->node, h->token, toklen) != 0) {
        free(h);
        return -1;
    }
    h->hs = hs;
    h->conn = conn;
    h->release_on_close = release_on_close;
    h->auto_extend = auto_extend != 0;
    hs->count++;
    hs->auto_extended += (size_t)h->auto_extend;
    uv_timer_init(hs->loop, &h->timer);
    h->timer.data = h;
    arm(h, ttl);
    return 0;
}

static fm_held *find(const fm_held_set *hs, const fm_conn *conn, const char *rkey,
                     size_t rkeylen, const char *token, size_t toklen)
{
    fm_map *t = table(hs, conn);

    if (t == NULL)
        return NULL;
    for (fm_map_node *n = fm_map_find(t, token, toklen); n != NULL; n = fm_map_next(n)) {
        fm_held *h = fm_map_entry(n, fm_held, node);

        if (h->rkeylen == rkeylen && memcmp(h->rkey, rkey, rkeylen) == 0)
            return h;
    }
    return NULL;
}

void fm_held_forget(fm_held_set *hs, fm_conn *conn, const char *rkey, size_t rkeylen,
                    const char *token, size_t toklen)
{
    fm_held *h = find(hs, conn, rkey, rkeylen, token, toklen);

    if (h != NULL)
        let_go(h);
}

void fm_held_extended(fm_held_set *hs, fm_conn *conn, const char *rkey, size_t rkeylen,
                      const char *token, size_t toklen, int64_t ttl)
{
    fm_held *h = find(hs, conn, rkey, rkeylen, token, toklen);

    /* The client's own extension sets the TTL the daemon keeps up, or the
     * new expiry; a TTL too short to extend in time stays the client's
     * business. */
    if (h != NULL)
        arm(h, ttl);
}

void fm_held_conn_closed(fm_held_set *hs, fm_conn *conn)
{
    fm_map *t = table(hs, conn);
    fm_map_node *n;

    if (t == NULL)
        return;
    while ((n = fm_map_first(t)) != NULL) {
        fm_held *h = fm_map_entry(n, fm_held, node);

        if (h->release_on_close &&
            fm_lockcmd_release(hs->lc, h->rkey, h->rkeylen, h->token, h->toklen) != 0)
            fm_log_warn("could not release %s for a client that went away; it expires with "
                        "its TTL", h->rkey);
        let_go(h);
    }
    fm_map_free(t);
    free(t);
    conn->svc[hs->slot] = NULL;
}
