/* cache_int.h -- the cache service's insides, shared by cache.c (the
 * operations, straight to Redis) and cache_near.c (the near cache's reads
 * and writes) and nothing else. */
#ifndef FM_CACHE_INT_H
#define FM_CACHE_INT_H

#include "core.h"
#include "list.h"
#include "near.h"

typedef struct fm_cache_svc {
    fm_core *core;
    uint64_t invalid;       /* cached values that were not JSON objects */
    fm_near *near;          /* NULL: none since the start */
    int near_failed;        /* out of memory once: kept, unused */
    size_t near_max;        /* the budget it has now */
    fm_script read, ttls;       /* its scripts (scripts.h) */
    fm_list fenced;         /* near reads waiting for a fence to pass */
    uint64_t fence_waits;   /* reads that waited */
    uint64_t fence_timeouts;    /* of those, the ones that went to Redis */
} fm_cache_svc;

/* A batch of decoded execution ids, in one allocation. */
typedef struct fm_idref {
    const char *p;
    size_t len;
} fm_idref;

typedef struct fm_idset {
    size_t n;
    size_t total;       /* bytes of all ids */
    fm_idref *ids;         /* right behind the struct, the text behind them */
} fm_idset;

/* <cache_key_prefix><id> into out (FM_RKEY_MAX + 1); its length. */
size_t fm_cache_key(const fm_cache_svc *cs, const char *id, size_t len, char *out);
/* Whether a value read from Redis may be handed out as an execution: one
 * JSON object (anyone with access to Redis can write these keys). */
int fm_cache_stored_ok(fm_cache_svc *cs, const redisReply *v);
/* Answers a get_many: vals[i] (NULL: a miss) is set->ids[i]'s. */
void fm_cache_put_many(fm_req *req, const fm_idset *set, const char *const *vals,
                       const size_t *lens);

/* cache_near.c */
int fm_cache_near_start(fm_cache_svc *cs);
void fm_cache_near_stop(fm_cache_svc *cs);
/* Whether a read may use the near cache now (armed, with a budget). */
int fm_cache_near_on(fm_cache_svc *cs);
void fm_cache_near_get(fm_req *req, const char *key, size_t keylen);
/* Takes the set. */
void fm_cache_near_get_many(fm_req *req, fm_idset *set);
/* cache.set through the near cache (only when fm_cache_near_on()). */
void fm_cache_near_set(fm_req *req, const char *key, size_t keylen, const char *val,
                       size_t vlen, int64_t ttl);
/* Every write of the daemon's to cache keys is announced to the near
 * cache, on or not (a read kept later must not have overtaken it): the
 * request gets room for n keys (and vlen bytes of value), then each key
 * is announced before the command goes out; the request's end ends them.
 * No-op without a near cache; -1 when the request was answered (out of
 * memory). */
int fm_cache_near_writes(fm_req *req, size_t n, size_t vlen);
void fm_cache_near_write_key(fm_req *req, size_t i, const char *key, size_t keylen);
void fm_cache_near_put_stats(const fm_cache_svc *cs, fm_conn *conn);

#endif
