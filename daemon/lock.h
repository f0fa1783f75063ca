/* lock.h -- the lock service: lock.acquire, release, extend, is_locked.
 *
 * Redis holds what the Node package writes (SET <prefix><key> <token> NX PX
 * <ttl>); release and extend are Lua scripts that compare the token first.
 * The fence counter of a lock lives in a per-hash-slot key in the lock's own
 * slot, named <prefix>\x01fence:{tag} (a control character, which no lock
 * key may hold, so no <prefix><key> can ever name it): at most 16384 such
 * counters per prefix, whatever the number of distinct keys ever locked. */
#ifndef FM_LOCK_H
#define FM_LOCK_H

#include "server.h"

fm_lock_service *fm_lock_service_create(fm_server *srv);
void fm_lock_service_free(fm_lock_service *ls);
/* Answers every acquire still waiting with shutting_down. */
void fm_lock_service_shutdown(fm_lock_service *ls);

#endif
