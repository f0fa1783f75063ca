/* ops.c -- dispatch: frame body -> parsed request -> handler. */
#include <string.h>

#include "log.h"
#include "ops.h"

static const fm_op ops[] = {
    {"hello", fm_admin_hello},
    {"ping", fm_admin_ping},
    {"stats", fm_admin_stats},
    {"lock.acquire", fm_lock_acquire},
    {"lock.release", fm_lock_release},
    {"lock.extend", fm_lock_extend},
    {"lock.is_locked", fm_lock_is_locked},
    {"wake.signal", fm_wake_signal},
    {"wake.signal_many", fm_wake_signal_many},
    {"wake.subscribe", fm_wake_subscribe},
    {"wake.unsubscribe", fm_wake_unsubscribe},
    {"cache.get", fm_cache_get},
    {"cache.set", fm_cache_set},
    {"cache.invalidate", fm_cache_invalidate},
    {"cache.invalidate_many", fm_cache_invalidate_many},
    {"cache.get_many", fm_cache_get_many},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

static const fm_op *find_op(const fm_request *msg)
{
    for (size_t i = 0; i < NOPS; i++)
        if (fm_request_op_is(msg, ops[i].name))
            return &ops[i];
    return NULL;
}

static size_t op_index(const fm_op *op)
{
    return (size_t)(op - ops);
}

void fm_ops_count_error(fm_server *srv, const fm_op *op)
{
    if (op != NULL)
        srv->op_stats[op_index(op)].errors++;
}

void fm_ops_put_stats(fm_server *srv, fm_conn *conn)
{
    fm_buf_puts(&conn->out, ",\"ops\":{");
    for (size_t i = 0; i < NOPS; i++) {
        if (i > 0)
            fm_buf_putc(&conn->out, ',');
        fm_buf_put_json_string(&conn->out, ops[i].name, strlen(ops[i].name));
        fm_buf_puts(&conn->out, ":{\"calls\":");
        fm_buf_put_i64(&conn->out, (int64_t)srv->op_stats[i].calls);
        fm_buf_puts(&conn->out, ",\"errors\":");
        fm_buf_put_i64(&conn->out, (int64_t)srv->op_stats[i].errors);
        fm_buf_putc(&conn->out, '}');
    }
    fm_buf_putc(&conn->out, '}');
}

void fm_ops_dispatch(fm_conn *conn, const char *body, size_t len)
{
    fm_server *srv = conn->srv;
    fm_request msg;
    fm_proto_err err;
    const fm_op *op;
    fm_req *req;

    if (fm_request_parse(body, len, &msg, &err) != 0) {
        srv->protocol_errors++;
        fm_reply_error(conn, msg.has_id ? msg.id.p : NULL, msg.id.len, err.code, err.msg);
        return;
    }
    op = find_op(&msg);
    if (op == NULL) {
        srv->protocol_errors++;
        fm_reply_error(conn, msg.has_id ? msg.id.p : NULL, msg.id.len, FM_E_UNKNOWN_OP,
                       "no such operation");
        return;
    }
    srv->op_stats[op_index(op)].calls++;
    if (srv->shutting_down) {
        srv->op_stats[op_index(op)].errors++;
        fm_reply_error(conn, msg.has_id ? msg.id.p : NULL, msg.id.len, FM_E_SHUTTING_DOWN,
                       "the daemon is shutting down");
        return;
    }
    if ((int64_t)conn->inflight >= srv->cfg->max_inflight_per_client) {
        srv->op_stats[op_index(op)].errors++;
        fm_reply_error(conn, msg.has_id ? msg.id.p : NULL, msg.id.len, FM_E_TOO_MANY_REQUESTS,
                       "more requests in flight than max_inflight_per_client");
        return;
    }
    req = fm_req_create(conn, op, &msg);
    if (req == NULL) {
        srv->op_stats[op_index(op)].errors++;
        fm_reply_error(conn, msg.has_id ? msg.id.p : NULL, msg.id.len, FM_E_INTERNAL,
                       "out of memory");
        return;
    }
    op->fn(req, &msg);
}
