/* lock.c -- lock.acquire, lock.release, lock.extend, lock.is_locked.
 *
 * An acquire is one script run per attempt (SET NX PX, and on success INCR
 * of the fence counter in the same slot), retried on a libuv timer while
 * another holder has the lock. Its deadline covers the whole wait:
 * request_timeout_ms + retry_delay * max_retries. An attempt that Redis
 * carries out after its request was answered (deadline, client gone) may
 * have taken the lock: the late reply says so, and the lock is released at
 * once, token-checked, so it is never left to its TTL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock.h"
#include "log.h"
#include "ops.h"
#include "slot.h"
#include "token.h"

#define TAG_MAX 8
#define PREFIX_MAX 256
#define RKEY_MAX (PREFIX_MAX + FM_KEY_MAX)
#define FENCE_INFIX "\001fence:{"

typedef struct acquire {
    fm_req *req;
    struct acquire *prev, *next;    /* ls->acquiring */
    int64_t retries_left;
    int64_t retry_delay;
    char token[FM_TOKEN_LEN + 1];
    char ttl[24];
    size_t rkeylen, fkeylen;
    char rkey[RKEY_MAX + 1];        /* <prefix><key> */
    char fkey[PREFIX_MAX + sizeof(FENCE_INFIX) + TAG_MAX + 2];
} acquire;

struct fm_lock_service {
    fm_server *srv;
    fm_script acquire, release, extend;
    char *tags_prefix;              /* the prefix `tags` was built for */
    char (*tags)[TAG_MAX];          /* per slot: a tag whose fence key is in it */
    acquire *acquiring;
};

static const char acquire_lua[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return redis.call('INCR', KEYS[2])\n"
    "end\n"
    "return false\n";

/* 1 released, 0 no lock, -1 held under another token. */
static const char release_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return 0 end\n"
    "if v ~= ARGV[1] then return -1 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('PUBLISH', ARGV[2], KEYS[1])\n"
    "return 1\n";

static const char extend_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";

/* ---- keys ---- */

static size_t lock_key(const fm_server *srv, const char *key, size_t len, char *out)
{
    size_t plen = strlen(srv->cfg->lock_key_prefix);

    memcpy(out, srv->cfg->lock_key_prefix, plen);
    memcpy(out + plen, key, len);
    out[plen + len] = '\0';
    return plen + len;
}

static size_t fence_key(const char *prefix, const char *tag, char *out)
{
    size_t n = strlen(prefix);

    memcpy(out, prefix, n);
    memcpy(out + n, FENCE_INFIX, sizeof(FENCE_INFIX) - 1);
    n += sizeof(FENCE_INFIX) - 1;
    memcpy(out + n, tag, strlen(tag));
    n += strlen(tag);
    out[n++] = '}';
    out[n] = '\0';
    return n;
}

/* For every slot, a short tag that puts the prefix's fence key in that slot
 * (a Lua script may only touch keys of one slot). Short tags are tried in
 * order until all slots are covered; when the prefix itself holds a hash
 * tag, every key and every fence key share one slot and one tag does. */
static int build_tags(fm_lock_service *ls, const char *prefix)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char key[sizeof(((acquire *)0)->fkey)], tag[TAG_MAX];
    size_t filled = 0;

    free(ls->tags);
    free(ls->tags_prefix);
    ls->tags = calloc(FM_SLOTS, sizeof(*ls->tags));
    ls->tags_prefix = strdup(prefix);
    if (ls->tags == NULL || ls->tags_prefix == NULL)
        return -1;
    for (unsigned long n = 0; n < 36UL * 36 * 36 * 36 && filled < FM_SLOTS; n++) {
        unsigned long v = n;
        int i = 0;
        unsigned slot;

        do {
            tag[i++] = digits[v % 36];
            v /= 36;
        } while (v != 0);
        tag[i] = '\0';
        slot = fm_slot(key, fence_key(prefix, tag, key));
        if (ls->tags[slot][0] == '\0') {
            memcpy(ls->tags[slot], tag, (size_t)i + 1);
            filled++;
        }
    }
    return 0;
}

/* The fence key for a lock key, in the lock key's slot. */
static int lock_fence_key(fm_lock_service *ls, const char *rkey, size_t rlen, char *out,
                          size_t *outlen)
{
    const char *prefix = ls->srv->cfg->lock_key_prefix;
    unsigned slot = fm_slot(rkey, rlen);

    if ((ls->tags_prefix == NULL || strcmp(ls->tags_prefix, prefix) != 0) &&
        build_tags(ls, prefix) != 0)
        return -1;
    if (ls->tags[slot][0] == '\0')
        return -1;
    *outlen = fence_key(prefix, ls->tags[slot], out);
    return 0;
}

/* ---- lock.acquire ---- */

static void acquire_attempt(fm_req *req);

static void acquire_unlink(fm_req *req)
{
    acquire *a = req->data;
    fm_lock_service *ls = req->srv->locks;

    if (a->prev)
        a->prev->next = a->next;
    else if (ls != NULL && ls->acquiring == a)
        ls->acquiring = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->prev = a->next = NULL;
}

static void on_cleanup_release(fm_link_status status, redisReply *reply, void *arg)
{
    (void)arg;
    if (status == FM_LINK_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
        fm_log_debug("released a lock taken for a request that was already answered");
}

/* Releases a lock that Redis granted after its request was answered. */
static void release_orphan(fm_server *srv, const acquire *a)
{
    const char *ch = srv->cfg->lock_release_channel;
    const char *argv[] = {a->rkey, a->token, ch};
    size_t lens[] = {a->rkeylen, FM_TOKEN_LEN, strlen(ch)};

    if (srv->link == NULL ||
        fm_link_script(srv->link, &srv->locks->release, 1, 3, argv, lens,
                       on_cleanup_release, NULL) == NULL)
        fm_log_warn("could not release an orphaned lock; it expires with its TTL");
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

    if (fm_req_command_done(req)) {
        if (status == FM_LINK_OK && reply->type == REDIS_REPLY_INTEGER)
            release_orphan(req->srv, a);
        fm_req_done(req);
        return;
    }
    if (status != FM_LINK_OK || reply->type == REDIS_REPLY_ERROR) {
        fm_req_fail_redis(req, status, reply);
        return;
    }
    if (reply->type == REDIS_REPLY_INTEGER) {
        fm_conn *conn = fm_req_ok_start(req);

        if (conn != NULL) {
            fm_reply_put_str(conn, "token", a->token, FM_TOKEN_LEN);
            fm_reply_put_int(conn, "fence", reply->integer);
            fm_req_ok_finish(req);
        }
        return;
    }
    now = uv_now(req->srv->loop);
    if (a->retries_left <= 0 || now >= req->deadline) {
        acquire_not_taken(req);
        return;
    }
    a->retries_left--;
    left = req->deadline - now;
    fm_req_timer(req, (uint64_t)a->retry_delay < left ? (uint64_t)a->retry_delay : left);
}

static void acquire_timer(fm_req *req)
{
    /* The deadline, or the end of a retry wait. */
    if (req->cmd != NULL || uv_now(req->srv->loop) >= req->deadline) {
        if (req->cmd != NULL)
            fm_req_expire(req);
        else
            acquire_not_taken(req);
        return;
    }
    acquire_attempt(req);
}

static void acquire_attempt(fm_req *req)
{
    acquire *a = req->data;
    const char *argv[] = {a->rkey, a->fkey, a->token, a->ttl};
    size_t lens[] = {a->rkeylen, a->fkeylen, FM_TOKEN_LEN, strlen(a->ttl)};

    req->cmd = fm_link_script(req->srv->link, &req->srv->locks->acquire, 2, 4, argv, lens,
                              acquire_reply, req);
    if (req->cmd == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    fm_req_timer(req, req->deadline - uv_now(req->srv->loop));
}

void fm_lock_acquire(fm_req *req, const fm_request *msg)
{
    static const char *const modes[] = {"release", "keep", NULL};
    fm_server *srv = req->srv;
    fm_lock_service *ls = srv->locks;
    char key[FM_KEY_MAX + 1];
    size_t keylen;
    int64_t ttl = srv->cfg->lock_default_ttl_ms, delay = srv->cfg->lock_retry_delay_ms;
    int64_t retries = srv->cfg->lock_max_retries;
    int mode = 0, auto_extend = 0;
    fm_proto_err err;
    acquire *a;

    if (fm_request_string(msg, "key", 1, FM_KEY_MAX, key, &keylen, NULL, &err) != 0 ||
        fm_request_int(msg, "ttl", 1, FM_MS_MAX, &ttl, &err) != 0 ||
        fm_request_int(msg, "retry_delay", 1, FM_MS_MAX, &delay, &err) != 0 ||
        fm_request_int(msg, "max_retries", 0, FM_MS_MAX, &retries, &err) != 0 ||
        fm_request_enum(msg, "on_disconnect", modes, &mode, &err) != 0 ||
        fm_request_bool(msg, "auto_extend", &auto_extend, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (auto_extend && ttl < 100) {
        fm_req_fail(req, FM_E_BAD_REQUEST, "auto_extend: needs a ttl of at least 100 ms");
        return;
    }
    a = fm_req_data(req, sizeof(*a));
    if (a == NULL)
        return;
    a->req = req;
    a->retries_left = retries;
    a->retry_delay = delay;
    a->rkeylen = lock_key(srv, key, keylen, a->rkey);
    snprintf(a->ttl, sizeof(a->ttl), "%lld", (long long)ttl);
    if (lock_fence_key(ls, a->rkey, a->rkeylen, a->fkey, &a->fkeylen) != 0) {
        fm_req_fail(req, FM_E_INTERNAL, "no fence key for this lock key");
        return;
    }
    if (fm_token_new(a->token) != 0) {
        fm_req_fail(req, FM_E_INTERNAL, "no randomness for a token");
        return;
    }
    a->next = ls->acquiring;
    if (ls->acquiring)
        ls->acquiring->prev = a;
    ls->acquiring = a;
    req->on_settle = acquire_unlink;
    req->on_timer = acquire_timer;
    req->deadline = uv_now(srv->loop) + (uint64_t)srv->cfg->request_timeout_ms +
                    (uint64_t)delay * (uint64_t)retries;
    acquire_attempt(req);
}

/* ---- release, extend, is_locked ---- */

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

/* Reads key and token, the arguments release and extend share. */
static int key_and_token(fm_req *req, const fm_request *msg, char *rkey, size_t *rkeylen,
                         char *token, size_t *tokenlen)
{
    char key[FM_KEY_MAX + 1];
    size_t keylen;
    fm_proto_err err;

    if (fm_request_string(msg, "key", 1, FM_KEY_MAX, key, &keylen, NULL, &err) != 0 ||
        fm_request_string(msg, "token", 1, FM_KEY_MAX, token, tokenlen, NULL, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return -1;
    }
    *rkeylen = lock_key(req->srv, key, keylen, rkey);
    return 0;
}

void fm_lock_release(fm_req *req, const fm_request *msg)
{
    char rkey[RKEY_MAX + 1], token[FM_KEY_MAX + 1];
    size_t rkeylen, tokenlen;
    const char *ch = req->srv->cfg->lock_release_channel;

    if (key_and_token(req, msg, rkey, &rkeylen, token, &tokenlen) != 0)
        return;
    fm_req_script(req, &req->srv->locks->release, 1, 3,
                  (const char *[]){rkey, token, ch},
                  (size_t[]){rkeylen, tokenlen, strlen(ch)}, release_done);
}

static void extend_done(fm_req *req, redisReply *reply)
{
    fm_req_ok_bool(req, "extended", reply->integer == 1);
}

void fm_lock_extend(fm_req *req, const fm_request *msg)
{
    char rkey[RKEY_MAX + 1], token[FM_KEY_MAX + 1], ttlbuf[24];
    size_t rkeylen, tokenlen;
    int64_t ttl = req->srv->cfg->lock_default_ttl_ms;
    fm_proto_err err;

    if (key_and_token(req, msg, rkey, &rkeylen, token, &tokenlen) != 0)
        return;
    if (fm_request_int(msg, "ttl", 1, FM_MS_MAX, &ttl, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)ttl);
    fm_req_script(req, &req->srv->locks->extend, 1, 3,
                  (const char *[]){rkey, token, ttlbuf},
                  (size_t[]){rkeylen, tokenlen, strlen(ttlbuf)}, extend_done);
}

static void is_locked_done(fm_req *req, redisReply *reply)
{
    fm_req_ok_bool(req, "locked", reply->integer > 0);
}

void fm_lock_is_locked(fm_req *req, const fm_request *msg)
{
    char key[FM_KEY_MAX + 1], rkey[RKEY_MAX + 1];
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

    if (ls == NULL)
        return NULL;
    ls->srv = srv;
    ls->acquire = (fm_script){.name = "acquire", .body = acquire_lua};
    ls->release = (fm_script){.name = "release", .body = release_lua};
    ls->extend = (fm_script){.name = "extend", .body = extend_lua};
    if (fm_link_register_script(srv->link, &ls->acquire) != 0 ||
        fm_link_register_script(srv->link, &ls->release) != 0 ||
        fm_link_register_script(srv->link, &ls->extend) != 0 ||
        build_tags(ls, srv->cfg->lock_key_prefix) != 0) {
        fm_lock_service_free(ls);
        return NULL;
    }
    return ls;
}

void fm_lock_service_shutdown(fm_lock_service *ls)
{
    while (ls->acquiring != NULL)
        fm_req_fail(ls->acquiring->req, FM_E_SHUTTING_DOWN,
                    "the daemon is shutting down");
}

void fm_lock_service_free(fm_lock_service *ls)
{
    if (ls == NULL)
        return;
    free(ls->tags);
    free(ls->tags_prefix);
    free(ls);
}
