/* cache_int.h -- the cache service's insides, shared by cache.c (the
 * operations, straight to Redis) and cache_near.c (the near cache's reads
 * and writes) and nothing else. */
#ifndef FM_CACHE_INT_H
#define FM_CACHE_INT_H

#include "core.h"
#include "list.h"
#include "near.h"

typedef struct csvc {
    fm_core *core;
    uint64_t invalid;       /* cached values that were not JSON objects */
    fm_near *near;          /* NULL: none since the start */
    size_t near_max;        /* the budget it has now */
    fm_script read, ttls, write;    /* its scripts (scripts.h) */
    fm_list fenced;         /* near reads waiting for a fence to pass */
    uint64_t fence_waits;   /* reads that waited */
} csvc;

/* A batch of decoded execution ids, in one allocation. */
typedef struct idref {
    const char *p;
    size_t len;
} idref;

typedef struct idset {
    size_t n;
    size_t total;       /* bytes of all ids */
    idref *ids;         /* right behind the struct, the text behind them */
} idset;

/* <cache_key_prefix><id> into out (FM_RKEY_MAX + 1); its length. */
size_t fm_cache_key(const csvc *cs, const char *id, size_t len, char *out);
/* Whether a value read from Redis may be handed out as an execution: one
 * JSON object (anyone with access to Redis can write these keys). */
int fm_cache_stored_ok(csvc *cs, const redisReply *v);
/* Answers a get_many: vals[i] (NULL: a miss) is set->ids[i]'s. */
void fm_cache_put_many(fm_req *req, const idset *set, const char *const *vals,
                       const size_t *lens);

/* cache_near.c */
int fm_cache_near_start(csvc *cs);
void fm_cache_near_stop(csvc *cs);
/* Whether a read may use the near cache now (armed, with a budget). */
int fm_cache_near_on(csvc *cs);
void fm_cache_near_get(fm_req *req, const char *key, size_t keylen);
/* Takes the set. */
void fm_cache_near_get_many(fm_req *req, idset *set);
void fm_cache_near_set(fm_req *req, const char *key, size_t keylen, const char *val,
                       size_t vlen, int64_t ttl);
/* The daemon deletes the key: what is held of it goes. */
void fm_cache_near_forget(csvc *cs, const char *key, size_t keylen);
void fm_cache_near_put_stats(const csvc *cs, fm_conn *conn);

#endif
