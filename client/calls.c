/* calls.c -- libfmredis's operations: each builds its request in the
 * client's output buffer, runs it through fm__exchange() and reads its
 * result fields. Also the late acquires: an acquire that timed out is
 * remembered, and if its reply still brings a lock, that lock is released.
 *
 * One function per operation of docs/PROTOCOL.md section 8, in its order,
 * with fm_with_lock() beside the locks and fm_call_raw() last. */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fmredis_int.h"

/* ------------------------------------------------------------------------ */
/* Building frames                                                          */

static int64_t take_id(fm_client *c)
{
    int64_t id = c->next_id;

    c->next_id = c->next_id >= ID_MAX ? 1 : c->next_id + 1;
    return id;
}

/* Starts a frame at the end of b: a length to patch, then {"op":..,"id":N. */
static void frame_begin(fm_buf *b, const char *op, int64_t id)
{
    fm_buf_put_u32be(b, 0);
    fm_buf_puts(b, "{\"op\":");
    fm_buf_put_json_string(b, op, strlen(op));
    fm_buf_puts(b, ",\"id\":");
    fm_buf_put_i64(b, id);
}

static void frame_name(fm_buf *b, const char *name)
{
    fm_buf_putc(b, ',');
    fm_buf_put_json_string(b, name, strlen(name));
    fm_buf_putc(b, ':');
}

static void frame_str(fm_buf *b, const char *name, const char *v, size_t n)
{
    frame_name(b, name);
    fm_buf_put_json_string(b, v, n);
}

/* Closes the object of the frame begun at offset start and writes its
 * length (*body) into its header. -1 when memory ran out on the way (b->oom)
 * or the body is too large for the header. */
static int frame_end(fm_buf *b, size_t start, size_t *body)
{
    fm_buf_putc(b, '}');
    if (b->oom)
        return -1;
    *body = b->len - start - FM_FRAME_HEADER_LEN;
    if (*body > UINT32_MAX)
        return -1;
    fm_buf_patch_u32be(b, start, (uint32_t)*body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */

/* Starts the call's request in c->out; returns its id. */
static int64_t req_begin(fm_client *c, const char *op)
{
    int64_t id = take_id(c);

    fm_buf_reset(&c->out);
    c->out.oom = 0;
    frame_begin(&c->out, op, id);
    return id;
}

static void req_name(fm_client *c, const char *name)
{
    frame_name(&c->out, name);
}

static void req_str(fm_client *c, const char *name, const char *v)
{
    frame_str(&c->out, name, v, strlen(v));
}

static void req_int(fm_client *c, const char *name, int64_t v)
{
    req_name(c, name);
    fm_buf_put_i64(&c->out, v);
}

static void req_bool(fm_client *c, const char *name, int v)
{
    req_name(c, name);
    fm_buf_puts(&c->out, v ? "true" : "false");
}

static void req_str_array(fm_client *c, const char *name,
                          const char *const *v, size_t n)
{
    req_name(c, name);
    fm_buf_putc(&c->out, '[');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            fm_buf_putc(&c->out, ',');
        fm_buf_put_json_string(&c->out, v[i], strlen(v[i]));
    }
    fm_buf_putc(&c->out, ']');
}

/* Closes the request's object and writes its frame header. */
static int req_end(fm_client *c)
{
    size_t body = 0;

    if (frame_end(&c->out, 0, &body) == 0)
        return FM_OK;
    if (c->out.oom)
        return fm__fail(c, FM_ERR_OOM, "out of memory building the request");
    return fm__fail(c, FM_ERR_ARG, "request of %zu bytes is too large", body);
}

/* Finishes the request built in c->out (id `id`) and runs it with the given
 * timeout (ms, or FM_TIMEOUT_NONE). */
static int call_want(fm_client *c, const want *w, int64_t timeout_ms)
{
    if (req_end(c) != FM_OK)
        return FM_ERR;
    c->call_ms = timeout_ms;
    return fm__exchange(c, w, fm__deadline_in(timeout_ms));
}

static int call_timeout(fm_client *c, int64_t id, int64_t timeout_ms)
{
    want w = { .kind = WANT_ID, .id = id };

    return call_want(c, &w, timeout_ms);
}

static int call(fm_client *c, int64_t id)
{
    return call_timeout(c, id, c->timeout_ms);
}

static int need(fm_client *c, const void *p, const char *what)
{
    if (p == NULL)
        return fm__fail(c, FM_ERR_ARG, "%s must not be NULL", what);
    return FM_OK;
}

static int need_strs(fm_client *c, const char *const *v, size_t n)
{
    if (n > 0 && v == NULL)
        return fm__fail(c, FM_ERR_ARG, "execution_ids must not be NULL");
    for (size_t i = 0; i < n; i++)
        if (v[i] == NULL)
            return fm__fail(c, FM_ERR_ARG, "execution_ids[%zu] is NULL", i);
    return FM_OK;
}

/* ------------------------------------------------------------------------ */
/* Late acquires                                                            */

/* Queues a lock.release of an orphan's late lock behind the pending output
 * and sends what it can now; its reply is dropped like any late reply. This
 * runs in the reader, inside whatever call is in progress, so it neither
 * blocks nor fails that call: a send error stays for the next request's send
 * (or the next event read) to report, and if memory runs out the frame is
 * dropped whole and the lock goes on close or at its TTL. */
static void queue_release(fm_client *c, const char *key, const char *token,
                          size_t token_len)
{
    fm_buf *b = &c->pending;
    size_t start = b->len, body;

    assert(c->fd >= 0);     /* else the frame would go to the next stream */
    frame_begin(b, "lock.release", take_id(c));
    frame_str(b, "key", key, strlen(key));
    frame_str(b, "token", token, token_len);
    if (frame_end(b, start, &body) != 0) {
        b->len = start;     /* never half a frame */
        b->oom = 0;
        return;
    }
    (void)fm__flush_pending(c);
}

/* A late reply of a timed-out acquire: forget it, and if it got the lock,
 * give the lock back (queue_release: the call in progress is not touched). */
void fm__release_orphan(fm_client *c, const fm_json_val *root, int64_t id,
                        int ok)
{
    orphan **pp, *o = NULL;
    fm_json_val tok;
    char token[FM_TOKEN_MAX + 1];
    size_t tlen;

    for (pp = &c->orphans; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            o = *pp;
            *pp = o->next;
            break;
        }
    }
    if (o == NULL)
        return;
    if (ok && fm__member(root, "token", &tok) && tok.type == FM_JSON_STRING &&
        fm_json_string_decode(&tok, token, FM_TOKEN_MAX, &tlen, NULL) == 0)
        queue_release(c, o->key, token, tlen);
    free(o->key);
    free(o);
}

/* Remembers a timed-out acquire so its late lock is released. */
static void remember_orphan(fm_client *c, int64_t id, const char *key)
{
    orphan *o = malloc(sizeof(*o));

    if (o == NULL)
        return;     /* the daemon still releases it on close or TTL */
    o->key = fm__span_dup(key, strlen(key));
    if (o->key == NULL) {
        free(o);
        return;
    }
    o->id = id;
    o->next = c->orphans;
    c->orphans = o;
}

void fm__drop_orphans(fm_client *c)
{
    while (c->orphans != NULL) {
        orphan *o = c->orphans;

        c->orphans = o->next;
        free(o->key);
        free(o);
    }
}

/* ------------------------------------------------------------------------ */
/* Session                                                                  */

int fm_hello(fm_client *c, const char *client_name, fm_hello_info *info)
{
    int64_t id;
    int64_t proto;

    if (fm__call_begin(c) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "hello");
    if (client_name != NULL)
        req_str(c, "client_name", client_name);
    if (call(c, id) != FM_OK || fm__result_int(c, "protocol", &proto) != FM_OK)
        return FM_ERR;
    if (info != NULL) {
        info->protocol = proto;
        info->server[0] = '\0';
    }
    return fm__result_str(c, "server", info ? info->server : NULL,
                          info ? sizeof(info->server) : 0);
}

int fm_ping(fm_client *c, int check_redis, int *redis_up)
{
    fm_json_val v;
    int64_t id;

    if (redis_up != NULL)
        *redis_up = -1;
    if (fm__call_begin(c) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "ping");
    if (check_redis)
        req_bool(c, "redis", 1);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    if (redis_up != NULL && fm__reply_member(c, "redis", &v) &&
        v.type == FM_JSON_STRING) {
        if (fm_json_string_eq(&v, "up", 2))
            *redis_up = 1;
        else if (fm_json_string_eq(&v, "down", 4))
            *redis_up = 0;
    }
    return FM_OK;
}

/* ------------------------------------------------------------------------ */
/* Locks                                                                    */

/* The first fm_lock_opts to carry its size ended with timeout_ms: no
 * caller's struct is smaller. Fields added later lie beyond it, so a caller
 * built before them passes a size smaller than this library's. */
#define LOCK_OPTS_MIN_SIZE \
    (offsetof(fm_lock_opts, timeout_ms) + sizeof(int64_t))

void fm_lock_opts_init_size(fm_lock_opts *o, size_t size)
{
    /* The caller's bytes only: its struct may be smaller than ours. */
    memset(o, 0, size);
    o->size = size;
}

/* Copies the caller's options (NULL: none) into *o, a struct of this
 * library's size: the fields the caller's size covers, the defaults for the
 * rest. A larger struct (from a newer header) is taken only while the part
 * this library does not know is all 0, every field's default: an option it
 * would silently ignore is refused instead. */
static int lock_opts_read(fm_client *c, const fm_lock_opts *opts,
                          fm_lock_opts *o)
{
    const unsigned char *p = (const unsigned char *)opts;

    fm_lock_opts_init(o);
    if (opts == NULL)
        return FM_OK;
    if (opts->size < LOCK_OPTS_MIN_SIZE)
        return fm__fail(c, FM_ERR_ARG, "fm_lock_opts not set up by "
                        "fm_lock_opts_init()");
    for (size_t i = sizeof(*o); i < opts->size; i++)
        if (p[i] != 0)
            return fm__fail(c, FM_ERR_ARG, "fm_lock_opts sets an option "
                            "libfmredis %s does not know", FMREDIS_VERSION);
    memcpy(o, opts, opts->size < sizeof(*o) ? opts->size : sizeof(*o));
    o->size = sizeof(*o);
    return FM_OK;
}

/* The wait an acquire may add to the client's timeout: retry_delay times
 * max_retries, with the contract's defaults for what the daemon decides. */
static int64_t acquire_wait(const fm_lock_opts *o)
{
    int64_t delay = o->retry_delay_ms > 0 ? o->retry_delay_ms
                                          : FM_LOCK_DEFAULT_RETRY_DELAY_MS;
    int64_t tries = o->max_retries > 0 ? o->max_retries
                    : o->max_retries == FM_LOCK_NO_RETRY
                        ? 0 : FM_LOCK_DEFAULT_MAX_RETRIES;

    if (tries != 0 && delay > INT64_MAX / 4 / tries)
        return INT64_MAX / 4;
    return delay * tries;
}

int fm_lock_acquire(fm_client *c, const char *key, const fm_lock_opts *opts,
                    fm_lock *out)
{
    fm_lock_opts o;
    fm_json_val tok;
    int64_t id, timeout;
    size_t n;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (fm__call_begin(c) != FM_OK || need(c, key, "key") != FM_OK ||
        need(c, out, "out") != FM_OK || lock_opts_read(c, opts, &o) != FM_OK)
        return FM_ERR;
    if (o.max_retries < 0 && o.max_retries != FM_LOCK_NO_RETRY)
        return fm__fail(c, FM_ERR_ARG, "max_retries must be >= 0 or "
                        "FM_LOCK_NO_RETRY");
    id = req_begin(c, "lock.acquire");
    req_str(c, "key", key);
    if (o.ttl_ms != 0)
        req_int(c, "ttl", o.ttl_ms);
    if (o.retry_delay_ms != 0)
        req_int(c, "retry_delay", o.retry_delay_ms);
    if (o.max_retries != 0)
        req_int(c, "max_retries",
                o.max_retries == FM_LOCK_NO_RETRY ? 0 : o.max_retries);
    if (o.on_disconnect == FM_ON_DISCONNECT_RELEASE)
        req_str(c, "on_disconnect", "release");
    else if (o.on_disconnect == FM_ON_DISCONNECT_KEEP)
        req_str(c, "on_disconnect", "keep");
    if (o.auto_extend)
        req_bool(c, "auto_extend", 1);

    if (o.timeout_ms > 0 || o.timeout_ms == FM_TIMEOUT_NONE)
        timeout = o.timeout_ms;
    else if (c->timeout_ms == FM_TIMEOUT_NONE)
        timeout = FM_TIMEOUT_NONE;
    else
        timeout = c->timeout_ms + acquire_wait(&o);
    if (call_timeout(c, id, timeout) != FM_OK) {
        if (c->err == FM_ERR_TIMEOUT && c->fd >= 0 && c->sent)
            remember_orphan(c, id, key);
        return FM_ERR;
    }
    if (!fm__reply_member(c, "token", &tok))
        return fm__fail(c, FM_ERR_PROTOCOL, "reply has no \"token\"");
    if (tok.type == FM_JSON_NULL)
        return FM_OK;
    if (tok.type != FM_JSON_STRING)
        return fm__fail(c, FM_ERR_PROTOCOL,
                        "reply's \"token\" is not a string");
    if (fm_json_string_decode(&tok, out->token, FM_TOKEN_MAX, &n,
                              NULL) != 0) {
        out->token[0] = '\0';
        return fm__fail(c, FM_ERR_PROTOCOL, "token of %zu bytes is longer "
                        "than %d", n, FM_TOKEN_MAX);
    }
    out->token[n] = '\0';
    out->token_len = n;
    if (fm__result_int(c, "fence", &out->fence) != FM_OK) {
        out->token[0] = '\0';
        out->token_len = 0;
        return FM_ERR;
    }
    out->acquired = 1;
    return FM_OK;
}

int fm_lock_release(fm_client *c, const char *key, const char *token,
                    int *released, fm_release_reason *reason)
{
    fm_json_val v;
    int64_t id;
    int rel;

    if (released != NULL)
        *released = 0;
    if (reason != NULL)
        *reason = FM_RELEASE_OTHER;
    if (fm__call_begin(c) != FM_OK || need(c, key, "key") != FM_OK ||
        need(c, token, "token") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "lock.release");
    req_str(c, "key", key);
    req_str(c, "token", token);
    if (call(c, id) != FM_OK || fm__result_bool(c, "released", &rel) != FM_OK)
        return FM_ERR;
    if (released != NULL)
        *released = rel;
    if (reason != NULL) {
        if (rel)
            *reason = FM_RELEASE_DONE;
        else if (fm__reply_member(c, "reason", &v) &&
                 v.type == FM_JSON_STRING) {
            if (fm_json_string_eq(&v, "not_held", 8))
                *reason = FM_RELEASE_NOT_HELD;
            else if (fm_json_string_eq(&v, "not_owner", 9))
                *reason = FM_RELEASE_NOT_OWNER;
        }
    }
    return FM_OK;
}

int fm_lock_extend(fm_client *c, const char *key, const char *token,
                   int64_t ttl_ms, int *extended)
{
    int64_t id;

    if (extended != NULL)
        *extended = 0;
    if (fm__call_begin(c) != FM_OK || need(c, key, "key") != FM_OK ||
        need(c, token, "token") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "lock.extend");
    req_str(c, "key", key);
    req_str(c, "token", token);
    if (ttl_ms != 0)
        req_int(c, "ttl", ttl_ms);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return fm__result_bool(c, "extended", extended);
}

int fm_lock_is_locked(fm_client *c, const char *key, int *locked)
{
    int64_t id;

    if (locked != NULL)
        *locked = 0;
    if (fm__call_begin(c) != FM_OK || need(c, key, "key") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "lock.is_locked");
    req_str(c, "key", key);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return fm__result_bool(c, "locked", locked);
}

int fm_with_lock(fm_client *c, const char *key, const fm_lock_opts *opts,
                 fm_lock_fn fn, void *arg, fm_with_lock_result *res)
{
    fm_with_lock_result local;
    fm_lock_opts o;
    int rc;

    if (res == NULL)
        res = &local;
    memset(res, 0, sizeof(*res));
    fm__clear_err(c);
    if (fn == NULL)
        return fm__fail(c, FM_ERR_ARG, "fn must not be NULL");
    if (lock_opts_read(c, opts, &o) != FM_OK)
        return FM_ERR;
    if (o.ttl_ms != 0 && o.ttl_ms < 100)
        return fm__fail(c, FM_ERR_ARG, "auto_extend needs a ttl of at least "
                        "100 ms, got %lld", (long long)o.ttl_ms);
    o.auto_extend = 1;
    if (fm_lock_acquire(c, key, &o, &res->lock) != FM_OK)
        return FM_ERR;
    if (!res->lock.acquired)
        return FM_OK;
    res->ran = 1;
    res->ret = fn(c, &res->lock, arg);
    rc = fm_lock_release(c, key, res->lock.token, &res->released, NULL);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Wake signals                                                             */

int fm_wake_signal(fm_client *c, const char *execution_id,
                   const char *channel, int64_t *receivers)
{
    int64_t id;

    if (receivers != NULL)
        *receivers = 0;
    if (fm__call_begin(c) != FM_OK ||
        need(c, execution_id, "execution_id") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "wake.signal");
    req_str(c, "execution_id", execution_id);
    if (channel != NULL)
        req_str(c, "channel", channel);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return fm__result_int(c, "receivers", receivers);
}

int fm_wake_signal_many(fm_client *c, const char *const *execution_ids,
                        size_t n, const char *channel, int64_t *signaled)
{
    int64_t id;

    if (signaled != NULL)
        *signaled = 0;
    if (fm__call_begin(c) != FM_OK || need_strs(c, execution_ids, n) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "wake.signal_many");
    req_str_array(c, "execution_ids", execution_ids, n);
    if (channel != NULL)
        req_str(c, "channel", channel);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return fm__result_int(c, "signaled", signaled);
}

/* wake.subscribe and wake.unsubscribe: the optional channel (and group),
 * answered with the channel the daemon resolved. */
static int wake_channel_call(fm_client *c, const char *op, const char *channel,
                             const char *group, char *channel_out, size_t cap)
{
    int64_t id;

    if (channel_out != NULL && cap > 0)
        channel_out[0] = '\0';
    if (fm__call_begin(c) != FM_OK)
        return FM_ERR;
    id = req_begin(c, op);
    if (channel != NULL)
        req_str(c, "channel", channel);
    if (group != NULL)
        req_str(c, "group", group);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return fm__result_str(c, "channel", channel_out, cap);
}

int fm_wake_subscribe(fm_client *c, const char *channel, const char *group,
                      char *channel_out, size_t cap)
{
    return wake_channel_call(c, "wake.subscribe", channel, group, channel_out,
                             cap);
}

int fm_wake_unsubscribe(fm_client *c, const char *channel, char *channel_out,
                        size_t cap)
{
    return wake_channel_call(c, "wake.unsubscribe", channel, NULL,
                             channel_out, cap);
}

/* ------------------------------------------------------------------------ */
/* Execution cache                                                          */

static int need_flags(fm_client *c, unsigned flags)
{
    if ((flags & ~FM_CACHE_FRESH) != 0)
        return fm__fail(c, FM_ERR_ARG, "unknown cache flags 0x%x", flags);
    return FM_OK;
}

int fm_cache_get(fm_client *c, const char *execution_id, char **json,
                 size_t *len)
{
    return fm_cache_get_flags(c, execution_id, 0, json, len);
}

int fm_cache_get_flags(fm_client *c, const char *execution_id, unsigned flags,
                       char **json, size_t *len)
{
    fm_json_val v;
    int64_t id;

    if (json != NULL)
        *json = NULL;
    if (len != NULL)
        *len = 0;
    if (fm__call_begin(c) != FM_OK ||
        need(c, execution_id, "execution_id") != FM_OK ||
        need(c, json, "json") != FM_OK || need_flags(c, flags) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "cache.get");
    req_str(c, "execution_id", execution_id);
    if (flags & FM_CACHE_FRESH)
        req_bool(c, "fresh", 1);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    if (!fm__reply_member(c, "execution", &v))
        return fm__fail(c, FM_ERR_PROTOCOL, "reply has no \"execution\"");
    if (v.type == FM_JSON_NULL)
        return FM_OK;
    if (v.type != FM_JSON_OBJECT)
        return fm__fail(c, FM_ERR_PROTOCOL,
                        "reply's \"execution\" is neither an object nor null");
    return fm__copy_span(c, &v, json, len);
}

int fm_cache_set(fm_client *c, const char *json, size_t len, int64_t ttl_ms)
{
    fm_json_val root, idv;
    fm_json_index idx;
    const char *why = NULL;
    size_t at = 0;
    int64_t id;

    if (fm__call_begin(c) != FM_OK || need(c, json, "json") != FM_OK)
        return FM_ERR;
    /* The text is pasted into the request: anything but one object would
     * change the request's meaning, so it is checked here. */
    if (fm_json_validate_indexed(json, len, &root, &idx, &why, &at) != 0)
        return fm__fail(c, FM_ERR_ARG, "execution is not valid JSON: %s at "
                        "byte %zu", why ? why : "?", at);
    if (root.type != FM_JSON_OBJECT)
        return fm__fail(c, FM_ERR_ARG, "execution is not a JSON object");
    if (!fm_json_index_get(&idx, &root, "id", 2, &idv) || idv.type != FM_JSON_STRING)
        return fm__fail(c, FM_ERR_ARG, "execution has no string \"id\"");
    id = req_begin(c, "cache.set");
    req_name(c, "execution");
    fm_buf_append(&c->out, root.p, root.len);
    if (ttl_ms != 0)
        req_int(c, "ttl", ttl_ms);
    return call(c, id);
}

int fm_cache_invalidate(fm_client *c, const char *execution_id)
{
    int64_t id;

    if (fm__call_begin(c) != FM_OK ||
        need(c, execution_id, "execution_id") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "cache.invalidate");
    req_str(c, "execution_id", execution_id);
    return call(c, id);
}

int fm_cache_invalidate_many(fm_client *c, const char *const *execution_ids,
                             size_t n, int64_t *invalidated)
{
    int64_t id;

    if (invalidated != NULL)
        *invalidated = 0;
    if (fm__call_begin(c) != FM_OK || need_strs(c, execution_ids, n) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "cache.invalidate_many");
    req_str_array(c, "execution_ids", execution_ids, n);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return fm__result_int(c, "invalidated", invalidated);
}

int fm_cache_get_many(fm_client *c, const char *const *execution_ids,
                      size_t n, fm_cache_entry **entries, size_t *count)
{
    return fm_cache_get_many_flags(c, execution_ids, n, 0, entries, count);
}

int fm_cache_get_many_flags(fm_client *c, const char *const *execution_ids,
                            size_t n, unsigned flags, fm_cache_entry **entries,
                            size_t *count)
{
    fm_json_pair *hit = NULL;
    fm_json_members got;
    want w = { .kind = WANT_ID, .members = &got };
    fm_json_val obj;
    fm_cache_entry *e;
    size_t k, bytes, total = 0;
    char *s;
    int rc;

    if (entries != NULL)
        *entries = NULL;
    if (count != NULL)
        *count = 0;
    if (fm__call_begin(c) != FM_OK || need_strs(c, execution_ids, n) != FM_OK ||
        need(c, entries, "entries") != FM_OK ||
        need(c, count, "count") != FM_OK || need_flags(c, flags) != FM_OK)
        return FM_ERR;
    /* The reply holds at most one hit per id asked for: the scan of the
     * reply notes their spans (a hit is a whole execution, which is then
     * not walked a second time to find the next). */
    if (n > 0 && (hit = malloc(n * sizeof(*hit))) == NULL)
        return fm__fail(c, FM_ERR_OOM, "out of memory reading %zu executions", n);
    got = (fm_json_members){.name = "executions", .name_len = 10, .m = hit, .cap = n};
    w.id = req_begin(c, "cache.get_many");
    req_str_array(c, "execution_ids", execution_ids, n);
    if (flags & FM_CACHE_FRESH)
        req_bool(c, "fresh", 1);
    rc = call_want(c, &w, c->timeout_ms);
    if (rc != FM_OK || fm__result(c, "executions", FM_JSON_OBJECT, &obj) != FM_OK) {
        rc = FM_ERR;
        goto done;
    }
    k = got.n;
    if (k > n) {
        rc = fm__fail(c, FM_ERR_PROTOCOL, "more executions than ids asked for");
        goto done;
    }
    if (k == 0)
        goto done;
    for (size_t i = 0; i < k; i++) {
        if (hit[i].val.type != FM_JSON_OBJECT) {
            rc = fm__fail(c, FM_ERR_PROTOCOL, "an execution in the reply is not an object");
            goto done;
        }
        total += fm_json_string_len(&hit[i].name) + 1 + hit[i].val.len + 1;
    }
    if (k > (SIZE_MAX - total) / sizeof(*e)) {
        rc = fm__fail(c, FM_ERR_OOM, "reply too large");
        goto done;
    }

    /* One block: the entries, then each id and text, NUL-terminated. */
    bytes = k * sizeof(*e) + total;
    e = malloc(bytes);
    if (e == NULL) {
        rc = fm__fail(c, FM_ERR_OOM, "out of memory copying %zu executions", k);
        goto done;
    }
    s = (char *)(e + k);
    for (size_t i = 0; i < k; i++) {
        size_t nl = fm_json_string_len(&hit[i].name), len;

        e[i].id = s;
        fm_json_string_decode(&hit[i].name, s, nl + 1, &len, NULL);
        s[len] = '\0';
        s += nl + 1;
        e[i].json = s;
        e[i].len = hit[i].val.len;
        memcpy(s, hit[i].val.p, hit[i].val.len);
        s[hit[i].val.len] = '\0';
        s += hit[i].val.len + 1;
    }
    *entries = e;
    *count = k;
done:
    free(hit);
    return rc;
}

void fm_cache_entries_free(fm_cache_entry *entries, size_t count)
{
    (void)count;
    free(entries);
}

/* ------------------------------------------------------------------------ */
/* Stats and raw requests                                                   */

int fm_stats(fm_client *c, char **json, size_t *len)
{
    int64_t id;

    if (json != NULL)
        *json = NULL;
    if (len != NULL)
        *len = 0;
    if (fm__call_begin(c) != FM_OK || need(c, json, "json") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "stats");
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return fm__copy_span(c, &c->rroot, json, len);
}

int fm_call_raw(fm_client *c, const char *request, size_t len, char **reply,
                size_t *reply_len)
{
    fm_json_val root, idv;
    want w = { .kind = WANT_NO_ID };
    int rc;

    if (reply != NULL)
        *reply = NULL;
    if (reply_len != NULL)
        *reply_len = 0;
    if (fm__call_begin(c) != FM_OK || need(c, request, "request") != FM_OK ||
        need(c, reply, "reply") != FM_OK)
        return FM_ERR;
    if (len == 0)
        return fm__fail(c, FM_ERR_ARG, "empty request");
    if (len > UINT32_MAX)
        return fm__fail(c, FM_ERR_ARG, "request of %zu bytes is too large",
                        len);
    /* With a usable id the daemon echoes it: match on it. Otherwise the
     * reply comes without id (the daemon sends none for a missing or
     * unusable id, or an unreadable body). */
    if (fm_json_validate(request, len, &root, NULL, NULL) == 0 &&
        root.type == FM_JSON_OBJECT && fm__member(&root, "id", &idv)) {
        int64_t x;

        if ((idv.type == FM_JSON_NUMBER &&
             fm_json_int64(&idv, -ID_MAX, ID_MAX, &x) == 0) ||
            (idv.type == FM_JSON_STRING &&
             fm_json_string_len(&idv) <= RAW_ID_MAX)) {
            w.kind = WANT_RAW_ID;
            w.raw_id = idv;
        }
    }
    fm_buf_reset(&c->out);
    c->out.oom = 0;
    fm_buf_put_u32be(&c->out, (uint32_t)len);
    fm_buf_append(&c->out, request, len);
    if (c->out.oom)
        return fm__fail(c, FM_ERR_OOM, "out of memory building the request");
    c->call_ms = c->timeout_ms;
    rc = fm__exchange(c, &w, fm__deadline_in(c->timeout_ms));
    /* A server error learnt from a close notice has no reply to hand out. */
    if (rc != FM_OK && (c->err != FM_ERR_SERVER || c->rbody == NULL))
        return FM_ERR;
    if (fm__copy_span(c, &c->rroot, reply, reply_len) != FM_OK)
        return FM_ERR;
    return rc;
}
