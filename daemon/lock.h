/* lock.h -- the lock service: lock.acquire, release, extend, is_locked, the
 * push hand-off of released locks to waiting acquires, and the commands the
 * held-lock tracking (held.c) sends.
 *
 * Redis holds what the Node package writes (SET <prefix><key> <token> NX PX
 * <ttl>); release and extend are Lua scripts that compare the token first.
 * Fences: see fence.h. */
#ifndef FM_LOCK_H
#define FM_LOCK_H

#include "server.h"

#define FM_RKEY_MAX (FM_PREFIX_MAX + FM_KEY_MAX)

fm_lock_service *fm_lock_service_create(fm_server *srv);
void fm_lock_service_free(fm_lock_service *ls);
/* Answers every acquire still waiting with shutting_down. */
void fm_lock_service_shutdown(fm_lock_service *ls);

/* A release of the lock whose Redis key is rkey was published (by this or
 * another daemon): acquires waiting for it try again now. */
void fm_lock_released(fm_lock_service *ls, const char *rkey, size_t len);

/* Token-checked release (publishing the key) and extension of a lock, for
 * locks no request waits on. Return 0, or -1 when nothing was sent. */
int fm_lock_send_release(fm_server *srv, const char *rkey, size_t rlen, const char *token,
                         size_t toklen, fm_link_cb *cb, void *arg);
int fm_lock_send_extend(fm_server *srv, const char *rkey, size_t rlen, const char *token,
                        size_t toklen, int64_t ttl, fm_link_cb *cb, void *arg);

#endif
