/* lock.h -- the lock service: lock.acquire, release, extend, is_locked, the
 * push hand-off of released locks to waiting acquires, and the locks held
 * for connections (held.h).
 *
 * Redis holds what the Node package writes (SET <prefix><key> <token> NX PX
 * <ttl>); release and extend are Lua scripts that compare the token first
 * (lockcmd.h). Fences: see fence.h. */
#ifndef FM_LOCK_H
#define FM_LOCK_H

#include "core.h"

extern const fm_service fm_lock_service;

#endif
