/* cache.c -- the execution cache: get, set, invalidate, and their batches.
 *
 * Values are the clients' JSON text, stored and returned byte for byte: a
 * reply splices the stored bytes in, never parsing and printing them again
 * (which would also change numbers: cJSON-style doubles lose digits). What
 * Redis hands back is still checked to be one JSON object, since anyone
 * with access to Redis can write these keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cache_int.h"
#include "keys.h"
#include "log.h"
#include "reply.h"

size_t fm_cache_key(const fm_cache_svc *cs, const char *id, size_t len, char *out)
{
    return fm_key_make(cs->core->cfg->cache_key_prefix, id, len, out);
}

static size_t cache_key(const fm_req *req, const char *id, size_t len, char *out)
{
    return fm_cache_key(req->svc, id, len, out);
}

int fm_cache_stored_ok(fm_cache_svc *cs, const redisReply *v)
{
    fm_json_val root;

    if (v->type != REDIS_REPLY_STRING)
        return 0;
    if (fm_json_validate(v->str, v->len, &root, NULL, NULL) == 0 && root.type == FM_JSON_OBJECT)
        return 1;
    cs->invalid++;
    fm_log_debug("cache: a stored value is not a JSON object; answered as a miss");
    return 0;
}

/* Whether the request asks to bypass the near cache; -1 answered. */
static int fresh_arg(fm_req *req, const fm_request *msg)
{
    int fresh = 0;
    fm_proto_err err;

    if (fm_request_bool(msg, "fresh", &fresh, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return -1;
    }
    return fresh;
}

static int id_arg(fm_req *req, const fm_request *msg, char *key, size_t *keylen)
{
    char id[FM_KEY_MAX + 1];
    size_t idlen;
    fm_proto_err err;

    if (fm_request_string(msg, "execution_id", 1, FM_KEY_MAX, id, &idlen, NULL, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return -1;
    }
    *keylen = cache_key(req, id, idlen, key);
    return 0;
}

static void get_done(fm_req *req, redisReply *reply)
{
    fm_conn *conn = fm_req_ok_start(req);

    if (conn == NULL)
        return;
    if (fm_cache_stored_ok(req->svc, reply))
        fm_reply_put_raw(conn, "execution", reply->str, reply->len);
    else
        fm_reply_put_raw(conn, "execution", "null", 4);
    fm_req_ok_finish(req);
}

static void op_get(fm_req *req, const fm_request *msg)
{
    char key[FM_RKEY_MAX + 1];
    size_t keylen;
    int fresh;

    if (id_arg(req, msg, key, &keylen) != 0 || (fresh = fresh_arg(req, msg)) < 0)
        return;
    if (!fresh && fm_cache_near_on(req->svc))
        fm_cache_near_get(req, key, keylen);
    else
        fm_req_read(req, 1, 2, (const char *[]){"GET", key}, (size_t[]){3, keylen}, get_done);
}

static void set_done(fm_req *req, redisReply *reply)
{
    (void)reply;
    fm_req_ok(req);
}

static void op_set(fm_req *req, const fm_request *msg)
{
    char id[FM_KEY_MAX + 1], key[FM_RKEY_MAX + 1], ttlbuf[24];
    size_t idlen, keylen;
    int64_t ttl = ((const fm_cache_svc *)req->svc)->core->cfg->cache_ttl_ms;
    fm_json_val exec, idv;
    fm_proto_err err;

    if (fm_request_object(msg, "execution", &exec, &err) != 0 ||
        fm_request_int(msg, "ttl", 1, FM_MS_MAX, &ttl, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (!fm_json_object_get(&exec, "id", 2, &idv)) {
        fm_req_fail(req, FM_E_BAD_REQUEST, "execution: needs a string member \"id\"");
        return;
    }
    if (fm_request_check_string(&idv, "execution.id", FM_KEY_MAX, id, &idlen, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    keylen = cache_key(req, id, idlen, key);
    if (fm_cache_near_on(req->svc)) {
        fm_cache_near_set(req, key, keylen, exec.p, exec.len, ttl);
        return;
    }
    if (fm_cache_near_writes(req, 1, 0) != 0)
        return;
    fm_cache_near_write_key(req, 0, key, keylen);
    snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)ttl);
    fm_req_command(req, 5, (const char *[]){"SET", key, exec.p, "PX", ttlbuf},
                   (size_t[]){3, keylen, exec.len, 2, strlen(ttlbuf)}, set_done);
}

static void invalidate_done(fm_req *req, redisReply *reply)
{
    (void)reply;
    fm_req_ok(req);
}

static void op_invalidate(fm_req *req, const fm_request *msg)
{
    char key[FM_RKEY_MAX + 1];
    size_t keylen;

    if (id_arg(req, msg, key, &keylen) != 0 || fm_cache_near_writes(req, 1, 0) != 0)
        return;
    fm_cache_near_write_key(req, 0, key, keylen);
    fm_req_command(req, 2, (const char *[]){"DEL", key}, (size_t[]){3, keylen},
                   invalidate_done);
}

static int cmp_id(const void *a, const void *b)
{
    const fm_idref *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);

    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

/* Decodes a validated id array; with `unique`, sorted with repeats dropped
 * (a reply object must not name a member twice). */
static fm_idset *read_ids(const fm_json_val *arr, size_t count, int unique)
{
    size_t total = 0, n = 0;
    fm_json_val name, v;
    fm_json_iter it;
    fm_idset *set;
    char *w;

    fm_json_iter_init(&it, arr);
    while (fm_json_iter_next(&it, &name, &v))
        total += fm_json_string_len(&v) + 1;
    set = malloc(sizeof(*set) + count * sizeof(fm_idref) + total);
    if (set == NULL)
        return NULL;
    set->ids = (fm_idref *)(set + 1);
    w = (char *)(set->ids + count);
    set->total = 0;
    fm_json_iter_init(&it, arr);
    while (fm_json_iter_next(&it, &name, &v)) {
        size_t len;

        fm_json_string_decode(&v, w, total, &len, NULL);
        set->ids[n].p = w;
        set->ids[n++].len = len;
        set->total += len;
        w += len + 1;
    }
    set->n = n;
    if (unique && n > 1) {
        qsort(set->ids, n, sizeof(*set->ids), cmp_id);
        set->n = 1;
        for (size_t i = 1; i < n; i++)
            if (cmp_id(&set->ids[i], &set->ids[set->n - 1]) != 0)
                set->ids[set->n++] = set->ids[i];
    }
    return set;
}

/* Sends <verb> <prefix><id>... for every id of the set; with `reads`, a
 * read of each key (MGET). */
static void batch_command(fm_req *req, const char *verb, int reads, const fm_idset *set,
                          fm_req_reply_cb *done)
{
    size_t plen = strlen(((const fm_cache_svc *)req->svc)->core->cfg->cache_key_prefix), i;
    const char **argv = malloc((set->n + 1) * sizeof(*argv));
    size_t *lens = malloc((set->n + 1) * sizeof(*lens));
    char *keys = malloc(set->n * plen + set->total + 1);

    if (argv == NULL || lens == NULL || keys == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
    } else {
        char *w = keys;

        argv[0] = verb;
        lens[0] = strlen(verb);
        for (i = 0; i < set->n; i++) {
            argv[i + 1] = w;
            lens[i + 1] = cache_key(req, set->ids[i].p, set->ids[i].len, w);
            if (!reads)
                fm_cache_near_write_key(req, i, w, lens[i + 1]);
            w += lens[i + 1];
        }
        fm_req_read(req, reads ? set->n : 0, (int)set->n + 1, argv, lens, done);
    }
    free(argv);
    free(lens);
    free(keys);
}

static int ids_arg(fm_req *req, const fm_request *msg, int unique, fm_idset **out)
{
    fm_json_val arr;
    size_t count;
    fm_proto_err err;

    if (fm_request_string_array(msg, "execution_ids",
                                (size_t)((const fm_cache_svc *)req->svc)->core->cfg->max_batch,
                                FM_KEY_MAX, &arr, &count, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return -1;
    }
    *out = read_ids(&arr, count, unique);
    if (*out == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return -1;
    }
    return 0;
}

static void invalidate_many_done(fm_req *req, redisReply *reply)
{
    fm_req_ok_int(req, "invalidated", reply->integer);
}

static void op_invalidate_many(fm_req *req, const fm_request *msg)
{
    fm_idset *set;

    if (ids_arg(req, msg, 1, &set) != 0)
        return;
    if (set->n == 0)
        fm_req_ok_int(req, "invalidated", 0);
    else if (fm_cache_near_writes(req, set->n, 0) == 0)
        batch_command(req, "DEL", 0, set, invalidate_many_done);
    free(set);
}

/* At most what fm_cache_put_many appends: every value, and each id
 * escaped. */
static size_t reply_size(const fm_idset *set, const size_t *lens)
{
    size_t n = 16 + set->total * 6 + set->n * 4;

    for (size_t i = 0; i < set->n; i++)
        n += lens[i];
    return n;
}

void fm_cache_put_many(fm_req *req, const fm_idset *set, const char *const *vals,
                       const size_t *lens)
{
    size_t size = reply_size(set, lens);
    fm_conn *conn;

    /* Checked before the copy: a reply that cannot be sent must not first
     * be built (max_output_bytes bounds what a client makes us hold). The
     * room is taken at once, not doubled into. */
    if (fm_req_listening(req) && !fm_reply_room(req->conn, size)) {
        fm_req_drop(req);
        return;
    }
    conn = fm_req_ok_start(req);
    if (conn == NULL)
        return;
    fm_reply_reserve(conn, size);
    fm_reply_open(conn, "executions");
    for (size_t i = 0; i < set->n; i++)
        if (vals[i] != NULL)
            fm_reply_put_member(conn, set->ids[i].p, set->ids[i].len, vals[i], lens[i]);
    fm_reply_close(conn);
    fm_req_ok_finish(req);
}

static void get_many_done(fm_req *req, redisReply *reply)
{
    const fm_idset *set = req->data;
    const char **vals;
    size_t *lens;

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != set->n) {
        fm_req_fail(req, FM_E_INTERNAL, "MGET answered %zu values for %zu keys",
                    reply->elements, set->n);
        return;
    }
    vals = calloc(set->n, sizeof(*vals));
    lens = calloc(set->n, sizeof(*lens));
    if (vals == NULL || lens == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
    } else {
        for (size_t i = 0; i < set->n; i++)
            if (fm_cache_stored_ok(req->svc, reply->element[i])) {
                vals[i] = reply->element[i]->str;
                lens[i] = reply->element[i]->len;
            }
        fm_cache_put_many(req, set, vals, lens);
    }
    free(vals);
    free(lens);
}

static void op_get_many(fm_req *req, const fm_request *msg)
{
    fm_idset *set;
    int fresh;

    if ((fresh = fresh_arg(req, msg)) < 0 || ids_arg(req, msg, 1, &set) != 0)
        return;
    if (set->n == 0) {
        fm_conn *conn = fm_req_ok_start(req);
        if (conn != NULL) {
            fm_reply_put_raw(conn, "executions", "{}", 2);
            fm_req_ok_finish(req);
        }
        free(set);
        return;
    }
    if (!fresh && fm_cache_near_on(req->svc)) {
        fm_cache_near_get_many(req, set);
        return;
    }
    /* The reply needs the ids again: the set stays with the request. */
    req->data = set;
    batch_command(req, "MGET", 1, set, get_many_done);
}

/* ---- service ---- */

static void *cache_create(fm_core *core, int slot)
{
    fm_cache_svc *cs = calloc(1, sizeof(*cs));

    (void)slot;
    if (cs == NULL)
        return NULL;
    cs->core = core;
    fm_list_init(&cs->fenced);
    if (fm_cache_near_start(cs) != 0) {
        free(cs);
        return NULL;
    }
    return cs;
}

static void cache_free(void *state)
{
    fm_cache_svc *cs = state;

    fm_cache_near_stop(cs);
    free(cs);
}

static void cache_put_stats(const void *state, fm_conn *conn)
{
    const fm_cache_svc *cs = state;

    fm_reply_put_int(conn, "cache_invalid", (int64_t)cs->invalid);
    fm_cache_near_put_stats(cs, conn);
}

static const fm_op cache_ops[] = {
    {"cache.get", op_get},
    {"cache.set", op_set},
    {"cache.invalidate", op_invalidate},
    {"cache.invalidate_many", op_invalidate_many},
    {"cache.get_many", op_get_many},
};

const fm_service fm_cache_service = {
    .name = "cache",
    .ops = cache_ops,
    .nops = sizeof(cache_ops) / sizeof(cache_ops[0]),
    .create = cache_create,
    .put_stats = cache_put_stats,
    .free = cache_free,
};
