/* lockcmd.h -- the token-checked release and extension of a lock, which a
 * client's request and the daemon's own tracking of held locks both send.
 *
 * Both are Lua scripts that compare the token first; a release publishes
 * the lock's key on lock_release_channel, which wakes acquires waiting for
 * it (on this daemon and any other). A release nobody waits for (a lock
 * of a client that went away, a grant that came too late) is counted until
 * Redis answers it: a shutdown waits for those before the link closes. */
#ifndef FM_LOCKCMD_H
#define FM_LOCKCMD_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

typedef struct fm_lockcmd {
    fm_core *core;
    fm_script release, extend;
    size_t releasing;           /* releases nobody waits for, at Redis */
} fm_lockcmd;

/* Registers the scripts with the link; -1 when that fails. */
int fm_lockcmd_init(fm_lockcmd *lc, fm_core *core);

/* For a client's request: the reply reaches on_reply (the script's 1, 0 or
 * -1; 1 or 0 for an extension). */
void fm_lockcmd_release_for(fm_lockcmd *lc, fm_req *req, const char *rkey, size_t rlen,
                            const char *token, size_t toklen, fm_req_reply_cb *on_reply);
void fm_lockcmd_extend_for(fm_lockcmd *lc, fm_req *req, const char *rkey, size_t rlen,
                           const char *token, size_t toklen, int64_t ttl,
                           fm_req_reply_cb *on_reply);

/* For the daemon itself, on its own flow. A release is logged and counted,
 * never reported; an extension's outcome reaches cb. Return 0, or -1 when
 * nothing was sent (out of memory). */
int fm_lockcmd_release(fm_lockcmd *lc, const char *rkey, size_t rlen, const char *token,
                       size_t toklen);
int fm_lockcmd_extend(fm_lockcmd *lc, const char *rkey, size_t rlen, const char *token,
                      size_t toklen, int64_t ttl, fm_link_cb *cb, void *arg);

#endif
