/* cache_near.c -- the cache service's reads and writes through the near
 * cache (near.h), kept current by Redis's client-side caching (link_track.h).
 *
 * A read first waits for the fence open when it arrived, if any: a lock
 * granted before it may guard a write whose invalidation is still on its
 * way (docs/PROTOCOL.md, "the near cache"). Then the keys held are hits,
 * and the rest are read from Redis by one script that also brings each
 * key's TTL; what comes back is validated once, answered, and kept unless
 * a write raced it. A write (cache.set) goes through: its value is kept
 * once Redis has it, with its TTL, and the write goes in a transaction
 * with a read of the key (fm_link_tracked) so that Redis tells us of the
 * next write by anyone else. A read is tracked only on an armed link, so
 * a read that began unarmed keeps nothing (arming starts a new epoch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_int.h"
#include "keys.h"
#include "log.h"
#include "reply.h"
#include "scripts.h"

/* A read of n keys: cache.get (set NULL) or cache.get_many. */
typedef struct nread {
    fm_req *req;            /* whose data it is */
    fm_list in_fenced;      /* cs->fenced while it waits */
    uint64_t fence;         /* the one it waits for */
    int passed;             /* past its fence (or had none) */
    int bypass;             /* the fence took too long: Redis, unkept */
    fm_idset *set;             /* cache.get_many's ids, in the order of the keys */
    size_t n;
    const char **keys;      /* the Redis keys, in `text` */
    size_t *keylens;
    const char **vals;      /* NULL: a miss (yet) */
    size_t *lens;
    char *copies;           /* the hits' bytes while the misses are read */
    char *fetched;          /* get_many: the misses' values while their
                               TTLs are read */
    fm_near_fill fills[];   /* the keys read from Redis; then the arrays
                               above, then the keys' text */
} nread;

/* The daemon's own writes of n keys (cache.set: one, with its value to
 * keep; the invalidations: their DEL). */
typedef struct nwrite {
    size_t n;
    char *val;              /* behind the fills */
    size_t vlen;
    int64_t ttl;
    fm_near_fill fills[];
} nwrite;

int fm_cache_near_on(fm_cache_svc *cs)
{
    size_t max = (size_t)cs->core->cfg->cache_near_bytes;

    if (cs->near == NULL || cs->near_failed)
        return 0;
    if (max != cs->near_max) {
        fm_near_set_max(cs->near, max);
        cs->near_max = max;
    }
    return max > 0 && fm_link_tracking(cs->core->link);
}

/* ---- reads ---- */

static void end_fills(fm_cache_svc *cs, nread *nr)
{
    for (size_t i = 0; i < nr->n; i++)
        fm_near_fill_end(cs->near, &nr->fills[i], NULL, 0, 0);
}

static void read_settle(fm_req *req)
{
    nread *nr = req->data;

    fm_list_remove(&nr->in_fenced);
    /* A command still out comes back to read_late. */
    if (req->cmd == NULL)
        end_fills(req->svc, nr);
    free(nr->set);
    nr->set = NULL;
    free(nr->copies);
    nr->copies = NULL;
    free(nr->fetched);
    nr->fetched = NULL;
}

static void read_late(fm_req *req, fm_link_status status, redisReply *reply)
{
    (void)status;
    (void)reply;
    end_fills(req->svc, req->data);
}

static void answer(fm_req *req)
{
    nread *nr = req->data;
    fm_conn *conn;

    if (nr->set != NULL) {
        fm_cache_put_many(req, nr->set, nr->vals, nr->lens);
        return;
    }
    conn = fm_req_ok_start(req);
    if (conn == NULL)
        return;
    if (nr->vals[0] != NULL)
        fm_reply_put_raw(conn, "execution", nr->vals[0], nr->lens[0]);
    else
        fm_reply_put_raw(conn, "execution", "null", 4);
    fm_req_ok_finish(req);
}

/* Ends key i's fill with what Redis holds (v NULL: nothing to keep), and
 * answers with it when it is an execution. */
static void take(fm_req *req, size_t i, const redisReply *v, int64_t pttl)
{
    nread *nr = req->data;
    fm_cache_svc *cs = req->svc;

    if (v == NULL || !fm_cache_stored_ok(cs, v)) {
        fm_near_fill_end(cs->near, &nr->fills[i], NULL, 0, 0);
        return;
    }
    fm_near_fill_end(cs->near, &nr->fills[i], v->str, (size_t)v->len, pttl);
    nr->vals[i] = v->str;
    nr->lens[i] = (size_t)v->len;
}

/* cache.get: {value, PTTL}. */
static void read_done(fm_req *req, redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        fm_req_fail(req, FM_E_INTERNAL, "unexpected reply to the cache read");
        return;
    }
    take(req, 0, reply->element[0], reply->element[1]->integer);
    answer(req);
}

/* get_many: the TTLs of the values to keep, in the order of their keys. */
static void ttls_done(fm_req *req, redisReply *reply)
{
    nread *nr = req->data;
    fm_cache_svc *cs = req->svc;
    size_t j = 0;

    for (size_t i = 0; i < nr->n; i++) {
        int64_t pttl = 0;   /* no answer: nothing kept */

        if (nr->fills[i].e == NULL)
            continue;
        if (reply->type == REDIS_REPLY_ARRAY && j < reply->elements &&
            reply->element[j]->type == REDIS_REPLY_INTEGER)
            pttl = reply->element[j]->integer;
        j++;
        fm_near_fill_end(cs->near, &nr->fills[i], nr->vals[i], nr->lens[i], pttl);
    }
    answer(req);
}

/* get_many: the misses' values, from an MGET (tracked: its keys are
 * declared). Those to keep need their TTLs, read next; the reply goes with
 * this callback, so what was read is copied first. */
static void values_done(fm_req *req, redisReply *reply)
{
    nread *nr = req->data;
    fm_cache_svc *cs = req->svc;
    size_t nmiss = 0, nread_ = 0, nfill = 0, bytes = 0, j = 0;
    size_t *idx;
    const char **argv;
    size_t *lens;
    char *w;

    for (size_t i = 0; i < nr->n; i++)
        nmiss += nr->vals[i] == NULL;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != nmiss) {
        fm_req_fail(req, FM_E_INTERNAL, "MGET answered %zu values for %zu keys",
                    reply->elements, nmiss);
        return;
    }
    idx = malloc(nmiss * sizeof(*idx));
    if (idx == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < nr->n; i++) {
        redisReply *v;

        if (nr->vals[i] != NULL)
            continue;
        v = reply->element[j++];
        if (!fm_cache_stored_ok(cs, v)) {
            fm_near_fill_end(cs->near, &nr->fills[i], NULL, 0, 0);
            continue;
        }
        nr->vals[i] = v->str;
        nr->lens[i] = (size_t)v->len;
        idx[nread_++] = i;
        bytes += nr->lens[i];
        nfill += nr->fills[i].e != NULL;
    }
    if (nfill == 0) {
        free(idx);
        answer(req);
        return;
    }
    nr->fetched = malloc(bytes ? bytes : 1);
    argv = malloc(nfill * sizeof(*argv));
    lens = malloc(nfill * sizeof(*lens));
    if (nr->fetched == NULL || argv == NULL || lens == NULL) {
        free(idx);
        free(argv);
        free(lens);
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    w = nr->fetched;
    j = 0;
    for (size_t k = 0; k < nread_; k++) {
        size_t i = idx[k];

        memcpy(w, nr->vals[i], nr->lens[i]);
        nr->vals[i] = w;
        w += nr->lens[i];
        if (nr->fills[i].e != NULL) {
            argv[j] = nr->keys[i];
            lens[j++] = nr->keylens[i];
        }
    }
    fm_req_script(req, &cs->ttls, 0, (int)nfill, argv, lens, ttls_done);
    free(idx);
    free(argv);
    free(lens);
}

/* The hits' bytes, copied: the cache may change before the misses come. */
static int copy_hits(nread *nr)
{
    size_t total = 0;
    char *w;

    for (size_t i = 0; i < nr->n; i++)
        total += nr->vals[i] != NULL ? nr->lens[i] : 0;
    if (total == 0)
        return 0;
    nr->copies = malloc(total);
    if (nr->copies == NULL)
        return -1;
    w = nr->copies;
    for (size_t i = 0; i < nr->n; i++)
        if (nr->vals[i] != NULL) {
            memcpy(w, nr->vals[i], nr->lens[i]);
            nr->vals[i] = w;
            w += nr->lens[i];
        }
    return 0;
}

/* cache.get without keeping: a plain GET. */
static void plain_done(fm_req *req, redisReply *reply)
{
    take(req, 0, reply, 0);
    answer(req);
}

/* The keys not held go to Redis; with `on`, what comes back is kept. */
static void read_misses(fm_req *req, size_t nmiss, int on)
{
    nread *nr = req->data;
    fm_cache_svc *cs = req->svc;
    const char **argv;
    size_t *lens, j = 1;

    argv = malloc((nmiss + 1) * sizeof(*argv));
    lens = malloc((nmiss + 1) * sizeof(*lens));
    if (argv == NULL || lens == NULL || copy_hits(nr) != 0) {
        free(argv);
        free(lens);
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    argv[0] = nr->set == NULL ? "GET" : "MGET";
    lens[0] = strlen(argv[0]);
    for (size_t i = 0; i < nr->n; i++) {
        if (nr->vals[i] != NULL)
            continue;
        /* Out of memory: this one is read, not kept. */
        if (on)
            (void)fm_near_fill_begin(cs->near, nr->keys[i], nr->keylens[i], &nr->fills[i]);
        argv[j] = nr->keys[i];
        lens[j++] = nr->keylens[i];
    }
    if (nr->set != NULL) {
        fm_req_read(req, nmiss, (int)j, argv, lens, values_done);
    } else if (on) {
        /* Its value counts against the client's bulk bound like a GET's. */
        req->on_reply = read_done;
        fm_req_run(req, &(fm_req_cmd){.script = &cs->read, .nkeys = 1, .reads = 1, .argc = 1,
                                      .argv = argv + 1, .lens = lens + 1});
    } else {
        fm_req_read(req, 1, 2, argv, lens, plain_done);
    }
    free(argv);
    free(lens);
}

static void read_run(fm_req *req);

/* The fence did not pass in half the request's time (a pub/sub connection
 * behind a backlog): Redis itself is current, so it is read there. */
static void fence_timeout(fm_req *req)
{
    nread *nr = req->data;

    fm_list_remove(&nr->in_fenced);
    nr->bypass = 1;
    req->on_timer = NULL;
    ((fm_cache_svc *)req->svc)->fence_timeouts++;
    read_run(req);
}

static void read_run(fm_req *req)
{
    nread *nr = req->data;
    fm_cache_svc *cs = req->svc;
    uint64_t timeout = (uint64_t)cs->core->cfg->request_timeout_ms;
    uint64_t fence;
    size_t nmiss = 0;
    int on;

    if (!nr->passed && (fence = fm_link_fence_open(cs->core->link)) != 0) {
        nr->fence = fence;
        nr->passed = 1;
        fm_list_push_back(&cs->fenced, &nr->in_fenced);
        cs->fence_waits++;
        req->deadline = uv_now(req->reqs->loop) + timeout;
        req->on_timer = fence_timeout;
        fm_req_timer(req, timeout / 2);
        return;
    }
    nr->passed = 1;
    on = !nr->bypass && fm_cache_near_on(cs);
    for (size_t i = 0; i < nr->n; i++)
        if (!on || !fm_near_get(cs->near, nr->keys[i], nr->keylens[i], &nr->vals[i],
                                &nr->lens[i])) {
            nr->vals[i] = NULL;
            nmiss++;
        }
    if (nmiss == 0)
        answer(req);
    else
        read_misses(req, nmiss, on);
}

/* The request's read of n keys, keybytes of them in all; NULL answered. */
static nread *read_create(fm_req *req, size_t n, size_t keybytes)
{
    size_t each = sizeof(fm_near_fill) + sizeof(const char *) * 2 + sizeof(size_t) * 2;
    /* Each key is written with its NUL (keys.h). */
    nread *nr = fm_req_data(req, sizeof(*nr) + n * each + keybytes + n);
    char *p;

    if (nr == NULL)
        return NULL;
    fm_list_init(&nr->in_fenced);
    nr->req = req;
    nr->n = n;
    p = (char *)(nr->fills + n);
    nr->keys = (const char **)(void *)p;
    p += n * sizeof(const char *);
    nr->vals = (const char **)(void *)p;
    p += n * sizeof(const char *);
    nr->keylens = (size_t *)(void *)p;
    p += n * sizeof(size_t);
    nr->lens = (size_t *)(void *)p;
    req->on_settle = read_settle;
    req->on_late = read_late;
    return nr;
}

void fm_cache_near_get(fm_req *req, const char *key, size_t keylen)
{
    nread *nr = read_create(req, 1, keylen);
    char *k;

    if (nr == NULL)
        return;
    k = (char *)(nr->lens + 1);
    memcpy(k, key, keylen);
    nr->keys[0] = k;
    nr->keylens[0] = keylen;
    read_run(req);
}

void fm_cache_near_get_many(fm_req *req, fm_idset *set)
{
    fm_cache_svc *cs = req->svc;
    size_t plen = strlen(cs->core->cfg->cache_key_prefix);
    nread *nr = read_create(req, set->n, set->n * plen + set->total);
    char *w;

    if (nr == NULL) {
        free(set);
        return;
    }
    nr->set = set;
    w = (char *)(nr->lens + set->n);
    for (size_t i = 0; i < set->n; i++) {
        nr->keys[i] = w;
        nr->keylens[i] = fm_cache_key(cs, set->ids[i].p, set->ids[i].len, w);
        w += nr->keylens[i] + 1;
    }
    read_run(req);
}

/* Every read waiting for a fence up to seq goes on. */
static void on_fenced(uint64_t seq, void *arg)
{
    fm_cache_svc *cs = arg;
    fm_list *l;

    while ((l = fm_list_first(&cs->fenced)) != NULL) {
        nread *nr = fm_list_entry(l, nread, in_fenced);

        if (nr->fence > seq)
            break;
        fm_list_remove(l);
        /* Its deadline stays; only the fallback to Redis goes. */
        nr->req->on_timer = NULL;
        read_run(nr->req);
    }
}

/* ---- writes ---- */

static void end_writes(fm_req *req)
{
    fm_cache_svc *cs = req->svc;
    nwrite *nw = req->data;

    for (size_t i = 0; i < nw->n; i++)
        fm_near_fill_end(cs->near, &nw->fills[i], NULL, 0, 0);
}

static void write_settle(fm_req *req)
{
    /* A command still out comes back to write_late: until then it may
     * still reach Redis, and reads of its keys keep nothing. */
    if (req->cmd == NULL)
        end_writes(req);
}

static void write_late(fm_req *req, fm_link_status status, redisReply *reply)
{
    (void)status;
    (void)reply;
    end_writes(req);
}

/* Out of memory while beginning a write: a read could now keep what it
 * replaces, so nothing is kept from here on. */
static void give_up(fm_cache_svc *cs)
{
    fm_log_error("near cache: out of memory; turned off (every cache read goes to Redis)");
    fm_near_flush(cs->near);
    cs->near_failed = 1;
}

int fm_cache_near_writes(fm_req *req, size_t n, size_t vlen)
{
    fm_cache_svc *cs = req->svc;
    nwrite *nw;

    if (cs->near == NULL)
        return 0;
    nw = fm_req_data(req, sizeof(*nw) + n * sizeof(fm_near_fill) + vlen);
    if (nw == NULL)
        return -1;
    nw->n = n;
    nw->val = (char *)(nw->fills + n);
    req->on_settle = write_settle;
    req->on_late = write_late;
    return 0;
}

void fm_cache_near_write_key(fm_req *req, size_t i, const char *key, size_t keylen)
{
    fm_cache_svc *cs = req->svc;
    nwrite *nw = req->data;

    if (cs->near != NULL && !cs->near_failed &&
        fm_near_write_begin(cs->near, key, keylen, &nw->fills[i]) != 0)
        give_up(cs);
}

static void write_done(fm_req *req, redisReply *reply)
{
    nwrite *nw = req->data;

    (void)reply;
    fm_near_fill_end(((fm_cache_svc *)req->svc)->near, &nw->fills[0], nw->val, nw->vlen,
                     nw->ttl);
    fm_req_ok(req);
}

void fm_cache_near_set(fm_req *req, const char *key, size_t keylen, const char *val,
                       size_t vlen, int64_t ttl)
{
    nwrite *nw;
    char ttlbuf[24];
    int tlen;

    if (fm_cache_near_writes(req, 1, vlen) != 0)
        return;
    nw = req->data;
    memcpy(nw->val, val, vlen);
    nw->vlen = vlen;
    nw->ttl = ttl;
    fm_cache_near_write_key(req, 0, key, keylen);
    tlen = snprintf(ttlbuf, sizeof(ttlbuf), "%lld", (long long)ttl);
    req->on_reply = write_done;
    fm_req_run(req, &(fm_req_cmd){.tracked = 1, .argc = 5,
                                  .argv = (const char *[]){"SET", key, val, "PX", ttlbuf},
                                  .lens = (size_t[]){3, keylen, vlen, 2, (size_t)tlen}});
}

/* ---- the link's tracker ---- */

/* A read sent before tracking was armed is not tracked: the new epoch
 * keeps it from being kept. */
static void on_armed(void *arg)
{
    fm_cache_svc *cs = arg;

    fm_near_flush(cs->near);
    fm_log_debug("near cache: tracking on");
}

static void on_lost(void *arg)
{
    fm_cache_svc *cs = arg;

    fm_near_flush(cs->near);
}

static void on_invalidate(const char *key, size_t len, void *arg)
{
    fm_cache_svc *cs = arg;

    fm_near_invalidate(cs->near, key, len);
}

int fm_cache_near_start(fm_cache_svc *cs)
{
    const fm_config *cfg = cs->core->cfg;
    fm_link *link = cs->core->link;

    if (cfg->cache_near_bytes == 0)
        return 0;
    if (cfg->ncluster_nodes > 0) {
        fm_log_info("near cache off: Redis Cluster tracks keys per node, and this version "
                    "tracks on one connection (every cache read goes to Redis)");
        return 0;
    }
    cs->near_max = (size_t)cfg->cache_near_bytes;
    cs->near = fm_near_create(cs->near_max);
    if (cs->near == NULL)
        return -1;
    cs->read = (fm_script){.name = "cache_read", .body = fm_lua_cache_read};
    cs->ttls = (fm_script){.name = "cache_ttls", .body = fm_lua_cache_ttls};
    if (fm_link_register_script(link, &cs->read) != 0 ||
        fm_link_register_script(link, &cs->ttls) != 0 ||
        fm_link_track(link, &(fm_link_tracker){.armed = on_armed, .lost = on_lost,
                                                 .invalidate = on_invalidate,
                                                 .fenced = on_fenced, .arg = cs}) != 0) {
        fm_near_free(cs->near);
        cs->near = NULL;
        return -1;
    }
    return 0;
}

void fm_cache_near_stop(fm_cache_svc *cs)
{
    fm_near_free(cs->near);
    cs->near = NULL;
}

void fm_cache_near_put_stats(const fm_cache_svc *cs, fm_conn *conn)
{
    fm_near_stats ns = {0};
    fm_link_track_stats ts = {0};
    int on = cs->near != NULL && cs->near_max > 0;

    if (cs->near != NULL)
        fm_near_stats_get(cs->near, &ns);
    if (on)
        fm_link_track_stats_get(cs->core->link, &ts);
    fm_reply_put_bool(conn, "near_enabled", on);
    fm_reply_put_bool(conn, "near_tracking", on && fm_link_tracking(cs->core->link));
    fm_reply_put_int(conn, "near_max_bytes", on ? (int64_t)cs->near_max : 0);
    fm_reply_put_int(conn, "near_bytes", (int64_t)ns.bytes);
    fm_reply_put_int(conn, "near_entries", (int64_t)ns.entries);
    fm_reply_put_int(conn, "near_hits", (int64_t)ns.hits);
    fm_reply_put_int(conn, "near_misses", (int64_t)ns.misses);
    fm_reply_put_int(conn, "near_fills", (int64_t)ns.fills);
    fm_reply_put_int(conn, "near_fills_dropped", (int64_t)ns.fills_dropped);
    fm_reply_put_int(conn, "near_invalidations", (int64_t)ns.invalidations);
    fm_reply_put_int(conn, "near_evictions", (int64_t)ns.evictions);
    fm_reply_put_int(conn, "near_expired", (int64_t)ns.expired);
    fm_reply_put_int(conn, "near_flushes", (int64_t)ns.flushes);
    fm_reply_put_int(conn, "near_fence_waits", (int64_t)cs->fence_waits);
    fm_reply_put_int(conn, "near_fence_timeouts", (int64_t)cs->fence_timeouts);
    fm_reply_put_int(conn, "near_fences", (int64_t)ts.fences);
}
