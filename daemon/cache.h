/* cache.h -- the cache service: cache.get, set, invalidate, and their
 * batches. */
#ifndef FM_CACHE_H
#define FM_CACHE_H

#include "core.h"

extern const fm_service fm_cache_service;

#endif
