/* admin.c -- hello, ping and stats: the operations about the daemon itself. */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "reply.h"

typedef struct asvc {
    fm_core *core;
} asvc;

static void op_hello(fm_req *req, const fm_request *msg)
{
    fm_conn *conn = req->conn;
    const char *server = fm_config_version();
    fm_proto_err err;
    size_t len;
    int found;

    if (fm_request_string(msg, "client_name", 0, FM_NAME_MAX, conn->client_name, &len, &found,
                          &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (fm_req_ok_start(req) == NULL)
        return;
    fm_reply_put_int(conn, "protocol", FM_PROTOCOL_VERSION);
    fm_reply_put_str(conn, "server", server, strlen(server));
    fm_req_ok_finish(req);
}

/* A "down" says why when the link knows (a refused AUTH, a refused
 * connect), so an operator need not read the log to tell a wrong password
 * from a stopped Redis. */
static void answer_ping(fm_req *req, int up)
{
    const char *why = up ? NULL : fm_link_error(((const asvc *)req->svc)->core->link);
    fm_conn *conn = fm_req_ok_start(req);

    if (conn == NULL)
        return;
    fm_reply_put_str(conn, "redis", up ? "up" : "down", up ? 2 : 4);
    if (why != NULL)
        fm_reply_put_str(conn, "redis_error", why, strlen(why));
    fm_req_ok_finish(req);
}

/* A ping is answered "down" in an outage, never with an error. */
static void ping_result(fm_req *req, fm_link_status status, redisReply *reply)
{
    answer_ping(req, status == FM_LINK_OK && reply->type == REDIS_REPLY_STATUS);
}

static void ping_expired(fm_req *req)
{
    fm_req_withdraw(req);
    answer_ping(req, 0);
}

static void op_ping(fm_req *req, const fm_request *msg)
{
    const asvc *as = req->svc;
    fm_proto_err err;
    int redis = 0;

    if (fm_request_bool(msg, "redis", &redis, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (!redis || !fm_link_ready(as->core->link)) {
        answer_ping(req, fm_link_ready(as->core->link));
        return;
    }
    req->on_result = ping_result;
    req->on_timer = ping_expired;
    fm_req_run(req, &(fm_req_cmd){.argc = 1, .argv = (const char *[]){"PING"},
                                  .lens = (const size_t[]){4}});
}

static void op_stats(fm_req *req, const fm_request *msg)
{
    const fm_core *core = ((const asvc *)req->svc)->core;
    fm_conn *conn = fm_req_ok_start(req);
    fm_link_stats ls;

    if (conn == NULL)
        return;
    fm_link_get_stats(core->link, &ls);
    fm_reply_put_int(conn, "clients", (int64_t)core->conns.n);
    fm_reply_put_int(conn, "inflight", (int64_t)core->reqs.inflight);
    fm_reply_put_int(conn, "connections_total", (int64_t)core->conns.total);
    fm_reply_put_int(conn, "rejected_clients", (int64_t)core->conns.rejected);
    fm_reply_put_int(conn, "protocol_errors", (int64_t)core->conns.protocol_errors);
    fm_reply_open(conn, "redis");
    fm_reply_put_bool(conn, "connected", fm_link_ready(core->link));
    fm_reply_put_bool(conn, "subscriber_connected", fm_link_sub_ready(core->link));
    fm_reply_put_int(conn, "connects", (int64_t)ls.connects);
    fm_reply_put_int(conn, "disconnects", (int64_t)ls.disconnects);
    fm_reply_put_int(conn, "commands", (int64_t)ls.commands);
    fm_reply_put_int(conn, "retries", (int64_t)ls.retries);
    fm_reply_put_int(conn, "queued", (int64_t)ls.queued);
    fm_reply_put_int(conn, "refused", (int64_t)ls.refused);
    fm_reply_close(conn);
    fm_core_put_stats(core, conn);
    fm_req_ok_finish(req);
}

static void *admin_create(fm_core *core, int slot)
{
    asvc *as = calloc(1, sizeof(*as));

    if (as != NULL)
        as->core = core;
    return as;
}

static const fm_op admin_ops[] = {
    {"hello", op_hello},
    {"ping", op_ping},
    {"stats", op_stats},
};

const fm_service fm_admin_service = {
    .name = "admin",
    .ops = admin_ops,
    .nops = sizeof(admin_ops) / sizeof(admin_ops[0]),
    .create = admin_create,
    .free = free,
};
