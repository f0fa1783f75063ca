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
#include "keys.h"
#include "lock.h"
#include "lockcmd.h"
#include "log.h"
#include "map.h"
#include "reply.h"
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
    int contended;                  /* found the lock held, waits (ls->contended) */
    char token[FM_TOKEN_LEN + 1];
    char value[FM_LOCKVAL_MAX];     /* what the lock's key holds (lock_value_format) */
    char ttlbuf[24];
    size_t keylen, rkeylen, fkeylen;
    char key[FM_KEY_MAX + 1];       /* as the client gave it */
    char rkey[FM_RKEY_MAX + 1];     /* <prefix><key> */
    char fkey[FM_FENCE_KEY_MAX + 1];
} acquire;

typedef struct lsvc {
    fm_core *core;
    fm_script acquire;
    fm_lockcmd cmd;
    fm_held_set held;
    fm_fence *fence;
    fm_map waiting;                 /* every acquire not yet answered, by rkey */
    size_t contended;               /* of those, the ones that found it held */
    int listener;                   /* for lock_release_channel */
} lsvc;

static size_t lock_key(const lsvc *ls, const char *key, size_t len, char *out)
{
    return fm_key_make(ls->core->cfg->lock_key_prefix, key, len, out);
}

/* ---- lock.acquire ---- */

static void acquire_attempt(fm_req *req);

static void acquire_unlink(fm_req *req)
{
    acquire *a = req->data;
    lsvc *ls = req->svc;

    ls->contended -= (size_t)a->contended;
    a->contended = 0;
    if (!a->waiting)
        return;
    fm_map_remove(&ls->waiting, &a->node);
    a->waiting = 0;
}

/* Releases a lock that Redis granted to nobody who will hear of it. */
static void release_orphan(lsvc *ls, const acquire *a)
{
    if (fm_lockcmd_release(&ls->cmd, a->rkey, a->rkeylen, a->token, FM_TOKEN_LEN) != 0)
        fm_log_warn("could not release an orphaned lock; it expires with its TTL");
}

/* Redis granted the lock: the client gets it, and the daemon keeps track of
 * it when it is to be released on disconnect or extended. A grant nobody
 * will hear of goes back at once, "keep" or not: a client cannot release a
 * lock it never learnt it holds. */
static void acquire_taken(fm_req *req, long long fence)
{
    acquire *a = req->data;
    lsvc *ls = req->svc;
    fm_conn *conn = req->conn;

    if (!fm_req_listening(req)) {
        release_orphan(ls, a);
        fm_req_drop(req);
        return;
    }
    if ((a->release_on_close || a->auto_extend) &&
        fm_held_add(&ls->held, conn, a->key, a->keylen, a->rkey, a->rkeylen, a->token, a->ttl,
                    a->release_on_close, a->auto_extend) != 0) {
        release_orphan(ls, a);
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

/* A lost link leaves it unknown whether Redis ran the attempt: the
 * token-checked release, sent once the link is back, undoes it if it did
 * and does nothing if it did not (the token is this attempt's). */
static int maybe_granted(fm_link_status status, const redisReply *reply)
{
    return status != FM_LINK_OK || reply->type == REDIS_REPLY_INTEGER;
}

static void acquire_late(fm_req *req, fm_link_status status, redisReply *reply)
{
    if (maybe_granted(status, reply))
        release_orphan(req->svc, req->data);
}

static void acquire_result(fm_req *req, fm_link_status status, redisReply *reply)
{
    acquire *a = req->data;
    uint64_t now, left;

    if (status != FM_LINK_OK || reply->type == REDIS_REPLY_ERROR) {
        if (maybe_granted(status, reply))
            release_orphan(req->svc, a);
        fm_req_fail_redis(req, status, reply);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER) {
        /* Reads through the near cache that arrive from now wait until
         * every invalidation Redis sent before this grant is in: the
         * holder before may have written what the new one reads. */
        fm_link_fence(((lsvc *)req->svc)->core->link);
        acquire_taken(req, reply->integer);
        return;
    }
    now = uv_now(req->reqs->loop);
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
    if (!a->contended) {
        a->contended = 1;
        ((lsvc *)req->svc)->contended++;
    }
    left = req->deadline - now;
    fm_req_timer(req, (uint64_t)a->retry_delay < left ? (uint64_t)a->retry_delay : left);
}

static void acquire_timer(fm_req *req)
{
    acquire *a = req->data;

    /* The deadline, or the end of a retry wait. */
    if (req->cmd != NULL || uv_now(req->reqs->loop) >= req->deadline) {
        if (req->cmd != NULL)
            fm_req_expire(req);
        else
            acquire_not_taken(req);
        return;
    }
    a->retries_left--;
    acquire_attempt(req);
}

static void on_release_notice(const char *channel, size_t clen, const char *rkey, size_t len,
                              void *arg)
{
    lsvc *ls = arg;
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
    lsvc *ls = req->svc;
    const char *argv[] = {a->rkey, a->fkey, a->value, a->ttlbuf};
    size_t lens[] = {a->rkeylen, a->fkeylen, 0, strlen(a->ttlbuf)};

    /* A release notice can be handled in the loop turn in which the
     * deadline passed, before the deadline's timer ran. */
    if (uv_now(req->reqs->loop) >= req->deadline) {
        acquire_not_taken(req);
        return;
    }
    lens[2] = fm_token_value(ls->core->cfg->lock_value_format, a->token, a->ttl, a->value);
    fm_req_run(req, &(fm_req_cmd){.script = &ls->acquire, .nkeys = 2, .argc = 4, .argv = argv,
                                  .lens = lens});
}

static void op_acquire(fm_req *req, const fm_request *msg)
{
    static const char *const modes[] = {"release", "keep", NULL};
    lsvc *ls = req->svc;
    const fm_config *cfg = ls->core->cfg;
    int64_t delay = cfg->lock_retry_delay_ms, retries = cfg->lock_max_retries;
    int mode = 0;
    fm_proto_err err;
    acquire *a = fm_req_data(req, sizeof(*a));

    if (a == NULL)
        return;
    a->ttl = cfg->lock_default_ttl_ms;
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
    a->rkeylen = lock_key(ls, a->key, a->keylen, a->rkey);
    snprintf(a->ttlbuf, sizeof(a->ttlbuf), "%lld", (long long)a->ttl);
    a->fkeylen = fm_fence_key(ls->fence, cfg->lock_key_prefix, a->rkey, a->rkeylen, a->fkey);
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
    req->on_result = acquire_result;
    req->on_late = acquire_late;
    req->deadline = uv_now(req->reqs->loop) + (uint64_t)cfg->request_timeout_ms +
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
    kt->rkeylen = lock_key(req->svc, key, keylen, kt->rkey);
    return kt;
}

static void forget(fm_req *req)
{
    const keytok *kt = req->data;

    if (req->conn != NULL)
        fm_held_forget(&((lsvc *)req->svc)->held, req->conn, kt->rkey, kt->rkeylen, kt->token,
                       kt->toklen);
}

static void release_done(fm_req *req, redisReply *reply)
{
    fm_conn *conn = fm_req_ok_start(req);

    if (conn == NULL)
        return;
    fm_reply_put_bool(conn, "released", reply->integer == 1);
    if (reply->integer != 1)
        fm_reply_put_str(conn, "reason", reply->integer == 0 ? "not_held" : "not_owner",
                         reply->integer == 0 ? 8 : 9);
    fm_req_ok_finish(req);
}

static void op_release(fm_req *req, const fm_request *msg)
{
    lsvc *ls = req->svc;
    keytok *kt = key_and_token(req, msg);

    if (kt == NULL)
        return;
    /* The client is done with the lock whatever Redis answers: the daemon
     * stops extending it now, and a release that fails leaves it to its
     * TTL, not to extensions nobody wants any more. */
    forget(req);
    fm_lockcmd_release_for(&ls->cmd, req, kt->rkey, kt->rkeylen, kt->token, kt->toklen,
                           release_done);
}

static void extend_done(fm_req *req, redisReply *reply)
{
    const keytok *kt = req->data;

    if (reply->integer != 1)
        forget(req);
    else if (req->conn != NULL)
        fm_held_extended(&((lsvc *)req->svc)->held, req->conn, kt->rkey, kt->rkeylen, kt->token,
                         kt->toklen, kt->ttl);
    fm_req_ok_bool(req, "extended", reply->integer == 1);
}

static void op_extend(fm_req *req, const fm_request *msg)
{
    lsvc *ls = req->svc;
    fm_proto_err err;
    keytok *kt = key_and_token(req, msg);

    if (kt == NULL)
        return;
    kt->ttl = ls->core->cfg->lock_default_ttl_ms;
    if (fm_request_int(msg, "ttl", 1, FM_MS_MAX, &kt->ttl, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    fm_lockcmd_extend_for(&ls->cmd, req, kt->rkey, kt->rkeylen, kt->token, kt->toklen, kt->ttl,
                          extend_done);
}

static void is_locked_done(fm_req *req, redisReply *reply)
{
    fm_req_ok_bool(req, "locked", reply->integer > 0);
}

static void op_is_locked(fm_req *req, const fm_request *msg)
{
    char key[FM_KEY_MAX + 1], rkey[FM_RKEY_MAX + 1];
    size_t keylen, rkeylen;
    fm_proto_err err;

    if (fm_request_string(msg, "key", 1, FM_KEY_MAX, key, &keylen, NULL, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    rkeylen = lock_key(req->svc, key, keylen, rkey);
    fm_req_command(req, 2, (const char *[]){"EXISTS", rkey}, (size_t[]){6, rkeylen},
                   is_locked_done);
}

/* ---- service ---- */

static void on_channel_refused(const char *channel, size_t clen, const char *why, void *arg)
{
    fm_log_error("lock_release_channel %.*s: %s; waiting acquires fall back to their retry "
                 "timers", (int)clen, channel, why);
}

static void lock_free(void *state)
{
    lsvc *ls = state;

    fm_fence_free(ls->fence);
    fm_map_free(&ls->waiting);
    free(ls);
}

static void *lock_create(fm_core *core, int slot)
{
    lsvc *ls = calloc(1, sizeof(*ls));
    const char *ch = core->cfg->lock_release_channel;

    if (ls == NULL)
        return NULL;
    ls->core = core;
    ls->acquire = (fm_script){.name = "acquire", .body = fm_lua_acquire};
    ls->held = (fm_held_set){.lc = &ls->cmd, .loop = core->loop, .slot = slot};
    ls->fence = fm_fence_create();
    ls->listener = fm_link_listen(core->link, &(fm_link_listener){
        .message = on_release_notice, .refused = on_channel_refused, .arg = ls});
    /* Subscribed for the daemon's whole life: the push hand-off listens
     * here. */
    if (ls->fence == NULL || ls->listener < 0 ||
        fm_link_register_script(core->link, &ls->acquire) != 0 ||
        fm_lockcmd_init(&ls->cmd, core) != 0 ||
        fm_link_subscribe(core->link, ls->listener, ch, strlen(ch)) < 0) {
        lock_free(ls);
        return NULL;
    }
    return ls;
}

/* Every acquire still waiting is answered shutting_down; an attempt still
 * queued at the link is withdrawn, not sent to be undone. */
static void lock_shutdown(void *state)
{
    lsvc *ls = state;
    fm_map_node *n, *next;

    for (n = fm_map_first(&ls->waiting); n != NULL; n = next) {
        fm_req *req = fm_map_entry(n, acquire, node)->req;

        next = fm_map_after(&ls->waiting, n);
        fm_req_withdraw(req);
        fm_req_fail(req, FM_E_SHUTTING_DOWN, "the daemon is shutting down");
    }
}

static void lock_conn_closed(void *state, fm_conn *conn)
{
    lsvc *ls = state;

    fm_held_conn_closed(&ls->held, conn);
}

static size_t lock_busy(const void *state)
{
    const lsvc *ls = state;

    return ls->cmd.releasing;
}

static void lock_put_stats(const void *state, fm_conn *conn)
{
    const lsvc *ls = state;

    fm_reply_put_int(conn, "locks_held", (int64_t)ls->held.count);
    fm_reply_put_int(conn, "locks_auto_extended", (int64_t)ls->held.auto_extended);
    fm_reply_put_int(conn, "lock_auto_extensions", (int64_t)ls->held.extensions);
    fm_reply_put_int(conn, "lock_acquires_waiting", (int64_t)ls->contended);
}

static const fm_op lock_ops[] = {
    {"lock.acquire", op_acquire},
    {"lock.release", op_release},
    {"lock.extend", op_extend},
    {"lock.is_locked", op_is_locked},
};

const fm_service fm_lock_service = {
    .name = "lock",
    .ops = lock_ops,
    .nops = sizeof(lock_ops) / sizeof(lock_ops[0]),
    .create = lock_create,
    .conn_closed = lock_conn_closed,
    .shutdown = lock_shutdown,
    .busy = lock_busy,
    .put_stats = lock_put_stats,
    .free = lock_free,
};
