/* admin.c -- hello, ping and stats: the operations about the daemon itself.
 * stats gathers the other parts' numbers (docs/METRICS.md lists them all);
 * with redis_info it first asks Redis for INFO memory, through the runner,
 * under the request's deadline like any command, and answers without it
 * (saying why) when Redis cannot. */
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "meminfo.h"
#include "reply.h"

typedef struct asvc {
    fm_core *core;
} asvc;

/* The names this daemon uses in Redis, so that a client can tell whether
 * they are the ones its program expects (a Node program's keyPrefix). */
static void put_layout(fm_conn *conn, const fm_config *cfg)
{
    const char *format = fm_config_lockval_name(cfg);

    fm_reply_open(conn, "layout");
    fm_reply_put_str(conn, "lock_key_prefix", cfg->lock_key_prefix, strlen(cfg->lock_key_prefix));
    fm_reply_put_str(conn, "lock_release_channel", cfg->lock_release_channel,
                     strlen(cfg->lock_release_channel));
    fm_reply_put_str(conn, "lock_value_format", format, strlen(format));
    fm_reply_put_str(conn, "cache_key_prefix", cfg->cache_key_prefix,
                     strlen(cfg->cache_key_prefix));
    fm_reply_put_str(conn, "wake_channel", cfg->wake_channel, strlen(cfg->wake_channel));
    fm_reply_close(conn);
}

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
    put_layout(conn, ((const asvc *)req->svc)->core->cfg);
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

static void put_link(fm_conn *conn, const fm_link *link)
{
    fm_link_stats ls;

    fm_link_get_stats(link, &ls);
    fm_reply_open(conn, "redis");
    fm_reply_put_bool(conn, "connected", fm_link_ready(link));
    fm_reply_put_bool(conn, "subscriber_connected", fm_link_sub_ready(link));
    fm_reply_put_int(conn, "connects", (int64_t)ls.connects);
    fm_reply_put_int(conn, "disconnects", (int64_t)ls.disconnects);
    fm_reply_put_int(conn, "reconnects", (int64_t)ls.reconnects);
    fm_reply_put_int(conn, "commands", (int64_t)ls.commands);
    fm_reply_put_int(conn, "retries", (int64_t)ls.retries);
    fm_reply_put_int(conn, "queued", (int64_t)ls.queued);
    fm_reply_put_int(conn, "refused", (int64_t)ls.refused);
    fm_reply_put_maybe(conn, "rtt_us", ls.rtt_us >= 0, ls.rtt_us);
    if (ls.last_error != NULL)
        fm_reply_put_str(conn, "last_error", ls.last_error, strlen(ls.last_error));
    else
        fm_reply_put_raw(conn, "last_error", "null", 4);
    fm_reply_put_maybe(conn, "last_error_age_ms", ls.last_error != NULL,
                       (int64_t)ls.last_error_age_ms);
    fm_reply_put_maybe(conn, "cluster_masters", ls.cluster, (int64_t)ls.masters);
    fm_reply_put_maybe(conn, "cluster_masters_ready", ls.cluster, (int64_t)ls.masters_ready);
    fm_reply_put_maybe(conn, "cluster_slots_uncovered", ls.cluster, (int64_t)ls.slots_uncovered);
    fm_reply_put_maybe(conn, "cluster_redirects", ls.cluster, (int64_t)ls.redirects);
    fm_reply_put_maybe(conn, "cluster_map_refreshes", ls.cluster, (int64_t)ls.map_refreshes);
    fm_reply_close(conn);
}

static void put_redis_info(fm_conn *conn, const fm_meminfo *mi)
{
    char buf[400];
    const char *warning = fm_meminfo_warning(mi, buf, sizeof(buf));

    fm_reply_open(conn, "redis_info");
    fm_reply_put_int(conn, "used_memory", mi->used_memory);
    fm_reply_put_int(conn, "maxmemory", mi->maxmemory);
    fm_reply_put_str(conn, "maxmemory_policy", mi->policy, strlen(mi->policy));
    if (warning != NULL)
        fm_reply_put_str(conn, "warning", warning, strlen(warning));
    fm_reply_close(conn);
}

/* mi: Redis's memory, when asked for (redis_info) and Redis answered;
 * else NULL, and why says why it is missing when it was asked for. */
static void answer_stats(fm_req *req, const fm_meminfo *mi, const char *why)
{
    const fm_core *core = ((const asvc *)req->svc)->core;
    size_t out_total, out_max;
    fm_conn *conn;

    /* Before this reply adds to its own connection's output. */
    fm_conns_output(&core->conns, &out_total, &out_max);
    if ((conn = fm_req_ok_start(req)) == NULL)
        return;
    fm_reply_put_int(conn, "clients", (int64_t)core->conns.n);
    fm_reply_put_int(conn, "inflight", (int64_t)core->reqs.inflight);
    fm_reply_put_int(conn, "connections_total", (int64_t)core->conns.total);
    fm_reply_put_int(conn, "rejected_clients", (int64_t)core->conns.rejected);
    fm_reply_put_int(conn, "protocol_errors", (int64_t)core->conns.protocol_errors);
    fm_reply_put_int(conn, "output_queued_bytes", (int64_t)out_total);
    fm_reply_put_int(conn, "output_queued_max_bytes", (int64_t)out_max);
    put_link(conn, core->link);
    fm_core_put_stats(core, conn);
    if (mi != NULL) {
        put_redis_info(conn, mi);
    } else if (why != NULL) {
        fm_reply_open(conn, "redis_info");
        fm_reply_put_str(conn, "error", why, strlen(why));
        fm_reply_close(conn);
    }
    fm_req_ok_finish(req);
}

/* stats answers whatever Redis does: a scrape during an outage must still
 * tell "Redis is down" from "the daemon is gone". */
static void info_result(fm_req *req, fm_link_status status, redisReply *reply)
{
    fm_meminfo mi;

    if (status != FM_LINK_OK)
        answer_stats(req, NULL, "Redis is unavailable");
    else if (reply->type == REDIS_REPLY_ERROR)
        answer_stats(req, NULL, "Redis refused INFO memory");
    else if (reply->type != REDIS_REPLY_STRING ||
             fm_meminfo_parse(reply->str, (size_t)reply->len, &mi) != 0)
        answer_stats(req, NULL, "INFO memory lacked used_memory, maxmemory or maxmemory_policy");
    else
        answer_stats(req, &mi, NULL);
}

static void info_expired(fm_req *req)
{
    fm_req_withdraw(req);
    answer_stats(req, NULL, "Redis did not answer INFO memory in time");
}

static void op_stats(fm_req *req, const fm_request *msg)
{
    const asvc *as = req->svc;
    fm_proto_err err;
    int redis_info = 0;

    if (fm_request_bool(msg, "redis_info", &redis_info, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (!redis_info) {
        answer_stats(req, NULL, NULL);
        return;
    }
    if (!fm_link_ready(as->core->link)) {
        answer_stats(req, NULL, "Redis is unavailable");
        return;
    }
    req->on_result = info_result;
    req->on_timer = info_expired;
    fm_req_run(req, &(fm_req_cmd){.argc = 2, .argv = (const char *[]){"INFO", "memory"},
                                  .lens = (const size_t[]){4, 6}});
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
