/* lock.c -- lock.acquire, lock.release, lock.extend, lock.is_locked.
 *
 * An acquire is one script run per attempt (SET NX PX, and on success INCR
 * of the fence counter in the same slot). While another holder has the lock
 * the acquire waits: for the publication of a release of that key (push
 * hand-off: released through any fmredisd), or for its retry timer, the
 * fallback for holders that release without publishing. Its deadline covers
 * the whole wait: request_timeout_ms + retry_delay * max_retries.
 *
 * Waiting acquires are found by their lock's Redis key (map.h), so a
 * release notice, which anyone who can publish on Redis can send, costs the
 * acquires of that key and no others.
 *
 * An attempt that Redis carries out after its request was answered
 * (deadline, client gone) may have taken the lock: the late reply says so,
 * and the lock is released at once, token-checked, never left to its TTL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fence.h"
#include "held.h"
#include "lock.h"
#include "log.h"
#include "ops.h"
#include "scripts.h"
#include "token.h"

typedef struct acquire {
    fm_req *req;
    fm_map_node node;               /* ls->waiting, by rkey */
    int waiting;                    /* in ls->waiting */
    int64_t retries_left;
    int64_t retry_delay;
    int64_t ttl;
    int release_on_close;
    int auto_extend;
    int pushed;                     /* a release came while an attempt was out */
    char token[FM_TOKEN_LEN + 1];
    char ttlbuf[24];
    size_t keylen, rkeylen, fkeylen;
    char key[FM_KEY_MAX + 1];       /* as the client gave it */
    char rkey[FM_RKEY_MAX + 1];     /* <prefix><key> */
    char fkey[FM_FENCE_KEY_MAX + 1];
} acquire;

struct fm_lock_service {
    fm_server *srv;
    fm_script acquire, release, extend;
    fm_fence *fence;
    fm_map waiting;                 /* every acquire not yet answered, by rkey */
};

static size_t lock_key(const fm_server *srv, const char *key, size_t len, char *out)
{
    size_t plen = strlen(srv->cfg->lock_key_prefix);

    memcpy(out, srv->cfg->lock_key_prefix, plen);
    memcpy(out + plen, key, len);
    out[plen + len] = '\0';
    return plen + len;
}

int fm_lock_send_release(fm_server *srv, const char *rkey, size_t rlen, const char *token,
                         size_t toklen, fm_link_cb *cb, void *arg)
{
    const char *ch = srv->cfg->lock_release_channel;

    return fm_link_script(srv->link, NULL, &srv->locks->release, 1, 3,
                          (const char *[]){rkey, token, ch},
                          (size_t[]){rlen, toklen, strlen(ch)}, cb, arg) ? 0 : -1;
}

int fm_lock_send_extend(fm_server *srv, const char *rkey, size_t rlen, const char *token,
                        size_t toklen, int64_t ttl, fm_link_cb *cb, void *arg)
{
    char ttlbuf[24];
    int n = snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)ttl);

    return fm_link_script(srv->link, NULL, &srv->locks->extend, 1, 3,
                          (const char *[]){rkey, token, ttlbuf},
                          (size_t[]){rlen, toklen, (size_t)n}, cb, arg) ? 0 : -1;
}

/* ---- lock.acquire ---- */

static void acquire_attempt(fm_req *req);

static void acquire_unlink(fm_req *req)
{
    acquire *a = req->data;

    if (!a->waiting)
        return;
    fm_map_remove(&req->srv->locks->waiting, &a->node);
    a->waiting = 0;
}

static void on_cleanup_release(fm_link_status status, redisReply *reply, void *arg)
{
    fm_server *srv = arg;

    srv->releasing--;
    if (status == FM_LINK_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
        fm_log_debug("released a lock taken for a request that was already answered");
}

/* Releases a lock that Redis granted after its request was answered. */
static void release_orphan(fm_server *srv, const acquire *a)
{
    if (srv->link == NULL ||
        fm_lock_send_release(srv, a->rkey, a->rkeylen, a->token, FM_TOKEN_LEN,
                             on_cleanup_release, srv) != 0) {
        fm_log_warn("could not release an orphaned lock; it expires with its TTL");
        return;
    }
    srv->releasing++;
}

/* Redis granted the lock: the client gets it, and the daemon keeps track of
 * it when it is to be released on disconnect or extended. A grant nobody
 * will hear of goes back at once, "keep" or not: a client cannot release a
 * lock it never learnt it holds. */
static void acquire_taken(fm_req *req, long long fence)
{
    acquire *a = req->data;
    fm_conn *conn = req->conn;

    if (!fm_req_listening(req)) {
        release_orphan(req->srv, a);
        fm_req_drop(req);
        return;
    }
    if ((a->release_on_close || a->auto_extend) &&
        fm_held_add(conn, a->key, a->keylen, a->rkey, a->rkeylen, a->token, a->ttl,
                    a->release_on_close, a->auto_extend) != 0) {
        release_orphan(req->srv, a);
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    conn = fm_req_ok_start(req);
    fm_reply_put_str(conn, "token", a->token, FM_TOKEN_LEN);
    fm_reply_put_int(conn, "fence", fence);
    fm_req_ok_finish(req);
}

/* Another holder kept the lock through every attempt. */
static void acquire_not_taken(fm_req *req)
{
    fm_conn *conn = fm_req_ok_start(req);

    if (conn == NULL)
        return;
    fm_reply_put_raw(conn, "token", "null", 4);
    fm_req_ok_finish(req);
}

static void acquire_reply(fm_link_status status, redisReply *reply, void *arg)
{
    fm_req *req = arg;
    acquire *a = req->data;
    uint64_t now, left;

    /* A lost link leaves it unknown whether Redis ran the attempt: the
     * token-checked release, sent once the link is back, undoes it if it
     * did and does nothing if it did not (the token is this attempt's). */
    if (fm_req_command_done(req)) {
        if (status != FM_LINK_OK || reply->type == REDIS_REPLY_INTEGER)
            release_orphan(req->srv, a);
        fm_req_done(req);
        return;
    }
    if (status != FM_LINK_OK || reply->type == REDIS_REPLY_ERROR) {
        if (status != FM_LINK_OK)
            release_orphan(req->srv, a);
        fm_req_fail_redis(req, status, reply);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER) {
        acquire_taken(req, reply->integer);
        return;
    }
    now = uv_now(req->srv->loop);
    if (now < req->deadline && a->pushed) {
        /* The release was published while this attempt was on its way. */
        a->pushed = 0;
        acquire_attempt(req);
        return;
    }
    if (a->retries_left <= 0 || now >= req->deadline) {
        acquire_not_taken(req);
        return;
    }
    left = req->deadline - now;
    fm_req_timer(req, (uint64_t)a->retry_delay < left ? (uint64_t)a->retry_delay : left);
}

static void acquire_timer(fm_req *req)
{
    acquire *a = req->data;

    /* The deadline, or the end of a retry wait. */
    if (req->cmd != NULL || uv_now(req->srv->loop) >= req->deadline) {
        if (req->cmd != NULL)
            fm_req_expire(req);
        else
            acquire_not_taken(req);
        return;
    }
    a->retries_left--;
    acquire_attempt(req);
}

void fm_lock_released(fm_lock_service *ls, const char *rkey, size_t len)
{
    fm_map_node *n, *next;

    /* A push-woken attempt costs no retry: the retry count bounds the
     * timer's polling, the deadline bounds the wait. An attempt may answer
     * its request (and take it off the map), never another's. */
    for (n = fm_map_find(&ls->waiting, rkey, len); n != NULL; n = next) {
        acquire *a = fm_map_entry(n, acquire, node);

        next = fm_map_next(n);
        if (a->req->cmd == NULL)
            acquire_attempt(a->req);
        else
            a->pushed = 1;
    }
}

static void acquire_attempt(fm_req *req)
{
    acquire *a = req->data;
    const char *argv[] = {a->rkey, a->fkey, a->token, a->ttlbuf};
    size_t lens[] = {a->rkeylen, a->fkeylen, FM_TOKEN_LEN, strlen(a->ttlbuf)};
    uint64_t now = uv_now(req->srv->loop);

    /* A release notice can be handled in the loop turn in which the
     * deadline passed, before the deadline's timer ran. */
    if (now >= req->deadline) {
        acquire_not_taken(req);
        return;
    }
    req->cmd = fm_link_script(req->srv->link, req->conn->flow, &req->srv->locks->acquire, 2, 4,
                              argv, lens, acquire_reply, req);
    if (req->cmd == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    fm_req_timer(req, req->deadline - now);
}

void fm_lock_acquire(fm_req *req, const fm_request *msg)
{
    static const char *const modes[] = {"release", "keep", NULL};
    fm_server *srv = req->srv;
    fm_lock_service *ls = srv->locks;
    int64_t delay = srv->cfg->lock_retry_delay_ms, retries = srv->cfg->lock_max_retries;
    int mode = 0;
    fm_proto_err err;
    acquire *a = fm_req_data(req, sizeof(*a));

    if (a == NULL)
        return;
    a->ttl = srv->cfg->lock_default_ttl_ms;
    if (fm_request_string(msg, "key", 1, FM_KEY_MAX, a->key, &a->keylen, NULL, &err) != 0 ||
        fm_request_int(msg, "ttl", 1, FM_MS_MAX, &a->ttl, &err) != 0 ||
        fm_request_int(msg, "retry_delay", 1, FM_MS_MAX, &delay, &err) != 0 ||
        fm_request_int(msg, "max_retries", 0, FM_MS_MAX, &retries, &err) != 0 ||
        fm_request_enum(msg, "on_disconnect", modes, &mode, &err) != 0 ||
        fm_request_bool(msg, "auto_extend", &a->auto_extend, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (a->auto_extend && a->ttl < 100) {
        fm_req_fail(req, FM_E_BAD_REQUEST, "auto_extend: needs a ttl of at least 100 ms");
        return;
    }
    a->req = req;
    a->release_on_close = mode == 0;
    a->retries_left = retries;
    a->retry_delay = delay;
    a->rkeylen = lock_key(srv, a->key, a->keylen, a->rkey);
    snprintf(a->ttlbuf, sizeof(a->ttlbuf), "%lld", (long long)a->ttl);
    a->fkeylen = fm_fence_key(ls->fence, srv->cfg->lock_key_prefix, a->rkey, a->rkeylen,
                              a->fkey);
    if (a->fkeylen == 0) {
        fm_req_fail(req, FM_E_INTERNAL, "no fence counter for this lock key");
        return;
    }
    if (fm_token_new(a->token) != 0) {
        fm_req_fail(req, FM_E_INTERNAL, "no randomness for a token");
        return;
    }
    if (fm_map_insert(&ls->waiting, &a->node, a->rkey, a->rkeylen) != 0) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    a->waiting = 1;
    req->on_settle = acquire_unlink;
    req->on_timer = acquire_timer;
    req->deadline = uv_now(srv->loop) + (uint64_t)srv->cfg->request_timeout_ms +
                    (uint64_t)delay * (uint64_t)retries;
    acquire_attempt(req);
}

/* ---- release, extend, is_locked ---- */

/* The arguments release and extend share, kept for their replies: a lock
 * the client released, or learnt it no longer holds, is no longer tracked. */
typedef struct keytok {
    int64_t ttl;                    /* extend only */
    size_t rkeylen, toklen;
    char rkey[FM_RKEY_MAX + 1];
    char token[FM_KEY_MAX + 1];
} keytok;

static keytok *key_and_token(fm_req *req, const fm_request *msg)
{
    char key[FM_KEY_MAX + 1];
    size_t keylen;
    fm_proto_err err;
    keytok *kt = fm_req_data(req, sizeof(*kt));

    if (kt == NULL)
        return NULL;
    if (fm_request_string(msg, "key", 1, FM_KEY_MAX, key, &keylen, NULL, &err) != 0 ||
        fm_request_string(msg, "token", 1, FM_KEY_MAX, kt->token, &kt->toklen, NULL,
                          &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return NULL;
    }
    kt->rkeylen = lock_key(req->srv, key, keylen, kt->rkey);
    return kt;
}

static void forget(fm_req *req)
{
    const keytok *kt = req->data;

    if (req->conn != NULL)
        fm_held_forget(req->conn, kt->rkey, kt->rkeylen, kt->token, kt->toklen);
}

static void release_done(fm_req *req, redisReply *reply)
{
    fm_conn *conn;

    forget(req);
    conn = fm_req_ok_start(req);
    if (conn == NULL)
        return;
    fm_reply_put_bool(conn, "released", reply->integer == 1);
    if (reply->integer != 1)
        fm_reply_put_str(conn, "reason", reply->integer == 0 ? "not_held" : "not_owner",
                         reply->integer == 0 ? 8 : 9);
    fm_req_ok_finish(req);
}

void fm_lock_release(fm_req *req, const fm_request *msg)
{
    const char *ch = req->srv->cfg->lock_release_channel;
    keytok *kt = key_and_token(req, msg);

    if (kt != NULL)
        fm_req_script(req, &req->srv->locks->release, 1, 3,
                      (const char *[]){kt->rkey, kt->token, ch},
                      (size_t[]){kt->rkeylen, kt->toklen, strlen(ch)}, release_done);
}

static void extend_done(fm_req *req, redisReply *reply)
{
    const keytok *kt = req->data;

    if (reply->integer != 1)
        forget(req);
    else if (req->conn != NULL)
        fm_held_extended(req->conn, kt->rkey, kt->rkeylen, kt->token, kt->toklen, kt->ttl);
    fm_req_ok_bool(req, "extended", reply->integer == 1);
}

void fm_lock_extend(fm_req *req, const fm_request *msg)
{
    char ttlbuf[24];
    fm_proto_err err;
    keytok *kt = key_and_token(req, msg);

    if (kt == NULL)
        return;
    kt->ttl = req->srv->cfg->lock_default_ttl_ms;
    if (fm_request_int(msg, "ttl", 1, FM_MS_MAX, &kt->ttl, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)kt->ttl);
    fm_req_script(req, &req->srv->locks->extend, 1, 3,
                  (const char *[]){kt->rkey, kt->token, ttlbuf},
                  (size_t[]){kt->rkeylen, kt->toklen, strlen(ttlbuf)}, extend_done);
}

static void is_locked_done(fm_req *req, redisReply *reply)
{
    fm_req_ok_bool(req, "locked", reply->integer > 0);
}

void fm_lock_is_locked(fm_req *req, const fm_request *msg)
{
    char key[FM_KEY_MAX + 1], rkey[FM_RKEY_MAX + 1];
    size_t keylen, rkeylen;
    fm_proto_err err;

    if (fm_request_string(msg, "key", 1, FM_KEY_MAX, key, &keylen, NULL, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    rkeylen = lock_key(req->srv, key, keylen, rkey);
    fm_req_command(req, 2, (const char *[]){"EXISTS", rkey}, (size_t[]){6, rkeylen},
                   is_locked_done);
}

/* ---- service ---- */

fm_lock_service *fm_lock_service_create(fm_server *srv)
{
    fm_lock_service *ls = calloc(1, sizeof(*ls));
    const char *ch = srv->cfg->lock_release_channel;

    if (ls == NULL)
        return NULL;
    ls->srv = srv;
    ls->acquire = (fm_script){.name = "acquire", .body = fm_lua_acquire};
    ls->release = (fm_script){.name = "release", .body = fm_lua_release};
    ls->extend = (fm_script){.name = "extend", .body = fm_lua_extend};
    ls->fence = fm_fence_create();
    /* Subscribed for the daemon's whole life: the push hand-off listens
     * here, and since the pub/sub context never drops to zero channels,
     * wake unsubscribes stay clear of hiredis 0.14's crash on UNSUBSCRIBE
     * of the last channel followed by SUBSCRIBE. */
    if (ls->fence == NULL ||
        fm_link_register_script(srv->link, &ls->acquire) != 0 ||
        fm_link_register_script(srv->link, &ls->release) != 0 ||
        fm_link_register_script(srv->link, &ls->extend) != 0 ||
        fm_link_subscribe(srv->link, ch, strlen(ch)) < 0) {
        fm_lock_service_free(ls);
        return NULL;
    }
    return ls;
}

void fm_lock_service_shutdown(fm_lock_service *ls)
{
    fm_map_node *n, *next;

    for (n = fm_map_first(&ls->waiting); n != NULL; n = next) {
        fm_req *req = fm_map_entry(n, acquire, node)->req;

        next = fm_map_after(&ls->waiting, n);
        /* An attempt still queued here is withdrawn, not sent to be undone. */
        if (req->cmd != NULL && fm_link_cancel(req->cmd))
            req->cmd = NULL;
        fm_req_fail(req, FM_E_SHUTTING_DOWN, "the daemon is shutting down");
    }
}

void fm_lock_service_free(fm_lock_service *ls)
{
    if (ls == NULL)
        return;
    fm_fence_free(ls->fence);
    fm_map_free(&ls->waiting);
    free(ls);
}
