/* ops.h -- the table that maps `op` names to the services' handlers.
 *
 * Adding an operation touches that table and one service, nothing else. A
 * handler gets the request (already created, with its id) and the parsed
 * message; it validates its fields and answers now or later, exactly once. */
#ifndef FM_OPS_H
#define FM_OPS_H

#include "server.h"

typedef void fm_op_fn(fm_req *req, const fm_request *msg);

struct fm_op {
    const char *name;
    fm_op_fn *fn;
};

/* Parses one frame body and runs its operation on conn. */
void fm_ops_dispatch(fm_conn *conn, const char *body, size_t len);
void fm_ops_count_error(fm_server *srv, const fm_op *op);
/* Appends the "ops" object of `stats`. */
void fm_ops_put_stats(fm_server *srv, fm_conn *conn);

/* Handlers, one entry point per operation, in their services. */
fm_op_fn fm_lock_acquire, fm_lock_release, fm_lock_extend, fm_lock_is_locked;
fm_op_fn fm_wake_signal, fm_wake_signal_many, fm_wake_subscribe, fm_wake_unsubscribe;
fm_op_fn fm_cache_get, fm_cache_set, fm_cache_invalidate, fm_cache_invalidate_many,
    fm_cache_get_many;
fm_op_fn fm_admin_hello, fm_admin_ping, fm_admin_stats;

#endif
