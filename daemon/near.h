/* near.h -- the near cache: executions kept in the daemon's memory, as
 * the exact bytes that were validated when they entered, under their
 * Redis key.
 *
 * It holds at most max bytes (values, keys and bookkeeping), dropping the
 * least recently used entry first, and an entry no longer than its key
 * lives in Redis. It knows nothing of Redis: the cache service fills it
 * and tells it what Redis invalidated.
 *
 * A fill is a read (or the daemon's own write) on its way to Redis. It is
 * begun before the command goes out and ended with what came back; it
 * stores nothing when, since it began, Redis invalidated the key, the
 * daemon began a write of it, or the whole cache was forgotten (a new
 * epoch): the value it brings may be older than what Redis holds by then.
 * Nor when the daemon's own write of the key was in flight as it began:
 * the link sends different clients' commands in its own order, so the
 * read may reach Redis before that write, which (NOLOOP) brings no
 * invalidation. */
#ifndef FM_NEAR_H
#define FM_NEAR_H

#include <stddef.h>
#include <stdint.h>

typedef struct fm_near fm_near;
typedef struct fm_near_entry fm_near_entry;

typedef struct fm_near_fill {
    fm_near_entry *e;       /* NULL: nothing begun (or ended already) */
    uint64_t gen;
    uint64_t epoch;
    uint64_t sent_us;       /* the fill's TTL counts from here */
    int write;              /* the daemon's own write of the key */
    int tainted;            /* began beside an own write: keeps nothing */
} fm_near_fill;

typedef struct fm_near_stats {
    uint64_t hits;
    uint64_t misses;
    uint64_t fills;         /* values stored */
    uint64_t fills_dropped; /* reads that raced a write and were not kept */
    uint64_t invalidations; /* keys Redis said were written, that we held */
    uint64_t evictions;     /* for room */
    uint64_t expired;
    uint64_t flushes;       /* everything forgotten at once */
    size_t bytes;
    size_t entries;         /* holding a value */
} fm_near_stats;

/* max: the byte budget (0 would keep nothing; the caller does not create
 * one then). NULL out of memory. */
fm_near *fm_near_create(size_t max);
void fm_near_free(fm_near *n);
/* A new budget; entries go at once until it fits. */
void fm_near_set_max(fm_near *n, size_t max);

/* The value held for key, when there is one and it has not expired. The
 * bytes stay valid until the next call that changes the cache. */
int fm_near_get(fm_near *n, const char *key, size_t len, const char **val, size_t *vlen);

/* -1 out of memory (nothing begun: the read simply is not kept). */
int fm_near_fill_begin(fm_near *n, const char *key, size_t len, fm_near_fill *f);
/* val NULL: nothing to keep (a miss, an error, the request gone). pttl:
 * the key's time to live when read, in ms; -1 none. */
void fm_near_fill_end(fm_near *n, fm_near_fill *f, const char *val, size_t vlen, int64_t pttl);
/* The daemon's own write of key (SET or DEL): what is held goes, fills
 * out for it keep nothing, and so do those begun before it ends; its own
 * fill begins (ended with the value written, or NULL). -1 out of memory:
 * nothing begun, so a read could keep what this write replaces; the caller
 * must forget everything and keep nothing more. */
int fm_near_write_begin(fm_near *n, const char *key, size_t len, fm_near_fill *f);
/* Redis says the key changed. */
void fm_near_invalidate(fm_near *n, const char *key, size_t len);
/* Everything goes, and every fill out keeps nothing. */
void fm_near_flush(fm_near *n);

void fm_near_stats_get(const fm_near *n, fm_near_stats *out);

#endif
