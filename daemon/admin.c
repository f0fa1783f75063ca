/* admin.c -- hello, ping and stats: the operations about the daemon itself. */
#include <string.h>

#include "ops.h"

void fm_admin_hello(fm_req *req, const fm_request *msg)
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

static void answer_ping(fm_req *req, int up)
{
    fm_conn *conn = fm_req_ok_start(req);

    if (conn == NULL)
        return;
    fm_reply_put_str(conn, "redis", up ? "up" : "down", up ? 2 : 4);
    fm_req_ok_finish(req);
}

static void ping_reply(fm_link_status status, redisReply *reply, void *arg)
{
    fm_req *req = arg;

    if (fm_req_command_done(req)) {
        fm_req_done(req);
        return;
    }
    answer_ping(req, status == FM_LINK_OK && reply->type == REDIS_REPLY_STATUS);
}

/* A ping is answered "down" in an outage, never with an error. */
static void ping_expired(fm_req *req)
{
    if (req->cmd != NULL && fm_link_cancel(req->cmd))
        req->cmd = NULL;
    answer_ping(req, 0);
}

void fm_admin_ping(fm_req *req, const fm_request *msg)
{
    fm_server *srv = req->srv;
    fm_proto_err err;
    int redis = 0;
    size_t len = 4;

    if (fm_request_bool(msg, "redis", &redis, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (!redis || !fm_link_ready(srv->link)) {
        answer_ping(req, fm_link_ready(srv->link));
        return;
    }
    req->cmd = fm_link_command(srv->link, req->conn->flow, 0, 1, (const char *[]){"PING"}, &len,
                               ping_reply, req);
    if (req->cmd == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    req->on_timer = ping_expired;
    fm_req_deadline(req, (uint64_t)srv->cfg->request_timeout_ms);
}

void fm_admin_stats(fm_req *req, const fm_request *msg)
{
    fm_server *srv = req->srv;
    fm_conn *conn = fm_req_ok_start(req);
    fm_link_stats ls;

    (void)msg;
    if (conn == NULL)
        return;
    fm_link_get_stats(srv->link, &ls);
    fm_reply_put_int(conn, "clients", (int64_t)srv->nconns);
    fm_reply_put_int(conn, "inflight", (int64_t)srv->inflight);
    fm_reply_put_int(conn, "connections_total", (int64_t)srv->connections_total);
    fm_reply_put_int(conn, "rejected_clients", (int64_t)srv->rejected_clients);
    fm_reply_put_int(conn, "protocol_errors", (int64_t)srv->protocol_errors);
    fm_reply_put_int(conn, "cache_invalid", (int64_t)srv->cache_invalid);
    fm_reply_put_int(conn, "locks_held", (int64_t)srv->locks_held);
    fm_buf_puts(&conn->out, ",\"redis\":{\"connected\":");
    fm_buf_puts(&conn->out, fm_link_ready(srv->link) ? "true" : "false");
    fm_reply_put_bool(conn, "subscriber_connected", fm_link_sub_ready(srv->link));
    fm_reply_put_int(conn, "connects", (int64_t)ls.connects);
    fm_reply_put_int(conn, "disconnects", (int64_t)ls.disconnects);
    fm_reply_put_int(conn, "commands", (int64_t)ls.commands);
    fm_reply_put_int(conn, "retries", (int64_t)ls.retries);
    fm_reply_put_int(conn, "queued", (int64_t)ls.queued);
    fm_buf_putc(&conn->out, '}');
    fm_ops_put_stats(srv, conn);
    fm_req_ok_finish(req);
}
