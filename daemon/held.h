/* held.h -- the locks a connection holds through this daemon.
 *
 * A daemon beside its workers sees them die: their socket closes. So every
 * lock acquired with on_disconnect "release" is released (token-checked) the
 * moment its connection closes, and every lock acquired with auto_extend is
 * extended every ttl/3 while its connection stays open. A release by the
 * client, an extension that finds the lock gone, or (for locks not
 * extended) the lock's expiry takes it off the connection's table. */
#ifndef FM_HELD_H
#define FM_HELD_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "lockcmd.h"

/* The lock service's tracking: where its tables hang on connections, and
 * how many locks are tracked. */
typedef struct fm_held_set {
    fm_lockcmd *lc;
    uv_loop_t *loop;
    int slot;                   /* conn->svc[slot] is the connection's table */
    size_t count;
    size_t auto_extended;       /* of count, those the daemon extends */
    uint64_t extensions;        /* extensions it sent for them, ever */
} fm_held_set;

/* Records a lock just acquired for conn. key is the client's key (for the
 * lock.lost event), rkey the Redis key. Returns 0, or -1 out of memory. */
int fm_held_add(fm_held_set *hs, fm_conn *conn, const char *key, size_t keylen,
                const char *rkey, size_t rkeylen, const char *token, int64_t ttl,
                int release_on_close, int auto_extend);
/* The client released the lock, or learnt it lost it: stop caring. */
void fm_held_forget(fm_held_set *hs, fm_conn *conn, const char *rkey, size_t rkeylen,
                    const char *token, size_t toklen);
/* The client extended the lock itself: auto-extension keeps the new TTL. */
void fm_held_extended(fm_held_set *hs, fm_conn *conn, const char *rkey, size_t rkeylen,
                      const char *token, size_t toklen, int64_t ttl);
/* The connection is closing (or the daemon is about to close it): release
 * what it asked to have released, stop extending the rest, and drop its
 * table. */
void fm_held_conn_closed(fm_held_set *hs, fm_conn *conn);

#endif
