/* fence.h -- where a lock's fence counter lives.
 *
 * Every lock key's fence counter is a per-hash-slot key in the lock key's
 * own slot, named <lock_key_prefix>\x01fence:{<tag>}, where <tag> is a short
 * string chosen so the name hashes to that slot:
 *   - the acquire script touches the lock and its counter in one slot, as
 *     Redis Cluster requires of a script;
 *   - Redis holds at most 16384 counters per prefix, however many distinct
 *     keys are ever locked (a counter per key would never expire: a leak);
 *   - the \x01 is a control character, which no lock or cache key may hold,
 *     so no <prefix><key> can ever name a counter.
 * Keys of one slot share a counter: a key's fences strictly increase, but
 * fences of different keys are not comparable. */
#ifndef FM_FENCE_H
#define FM_FENCE_H

#include <stddef.h>

#include "fm_wire.h"

#define FM_FENCE_TAG_MAX 8
#define FM_FENCE_KEY_MAX (FM_PREFIX_MAX + 16 + FM_FENCE_TAG_MAX)

typedef struct fm_fence fm_fence;

fm_fence *fm_fence_create(void);
void fm_fence_free(fm_fence *f);

/* Writes the counter key for lock key rkey[0..rlen) under prefix (at most
 * FM_PREFIX_MAX bytes) into out (FM_FENCE_KEY_MAX + 1 bytes) and returns its length,
 * or 0 when out of memory. The slot table is rebuilt when the prefix
 * changes (SIGHUP). */
size_t fm_fence_key(fm_fence *f, const char *prefix, const char *rkey, size_t rlen,
                    char *out);

#endif
