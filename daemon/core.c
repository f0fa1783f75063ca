/* core.c -- the service table: registration, dispatch of frames to the
 * services' operations, and the hooks. */
#include <assert.h>
#include <string.h>

#include "core.h"
#include "log.h"
#include "reply.h"

void fm_core_init(fm_core *core, uv_loop_t *loop, const fm_config *cfg, fm_link *link,
                  const fm_conn_handler *h)
{
    core->loop = loop;
    core->cfg = cfg;
    core->link = link;
    core->started_ms = uv_now(loop);
    fm_conns_init(&core->conns, loop, cfg, h);
    core->reqs = (fm_reqs){.loop = loop, .cfg = cfg, .link = link};
}

void fm_core_set_config(fm_core *core, const fm_config *cfg)
{
    core->cfg = cfg;
    core->reqs.cfg = cfg;
    fm_conns_set_config(&core->conns, cfg);
    fm_link_set_config(core->link, cfg);
}

int fm_core_register(fm_core *core, const fm_service *def)
{
    fm_core_svc *s = &core->svc[core->nsvc];

    if (core->nsvc == FM_SERVICES_MAX || core->nops + def->nops > FM_OPS_MAX) {
        fm_log_error("no room for the %s service", def->name);
        return -1;
    }
    s->def = def;
    s->first_op = core->nops;
    s->state = def->create(core, (int)core->nsvc);
    if (s->state == NULL) {
        fm_log_error("the %s service could not start", def->name);
        return -1;
    }
    core->nsvc++;
    core->nops += def->nops;
    return 0;
}

void fm_core_stop(fm_core *core)
{
    fm_link_free(core->link);
    core->link = core->reqs.link = NULL;
    /* Every command came back or failed with the link: nothing is owed. */
    assert(core->reqs.inflight == 0 && core->reqs.lingering == 0 && fm_core_busy(core) == 0);
    while (core->nsvc > 0) {
        fm_core_svc *s = &core->svc[--core->nsvc];

        if (s->def->free != NULL)
            s->def->free(s->state);
    }
    fm_conns_close(&core->conns);
}

void fm_core_conn_closed(fm_core *core, fm_conn *conn)
{
    if (conn->let_go)
        return;
    conn->let_go = 1;
    for (size_t i = 0; i < core->nsvc; i++)
        if (core->svc[i].def->conn_closed != NULL)
            core->svc[i].def->conn_closed(core->svc[i].state, conn);
}

void fm_core_closing_all(fm_core *core)
{
    fm_list *n;

    fm_list_each(n, &core->conns.all)
        fm_core_conn_closed(core, fm_list_entry(n, fm_conn, in_set));
}

void fm_core_shutdown(fm_core *core)
{
    core->shutting_down = 1;
    for (size_t i = 0; i < core->nsvc; i++)
        if (core->svc[i].def->shutdown != NULL)
            core->svc[i].def->shutdown(core->svc[i].state);
}

size_t fm_core_busy(const fm_core *core)
{
    size_t n = 0;

    for (size_t i = 0; i < core->nsvc; i++)
        if (core->svc[i].def->busy != NULL)
            n += core->svc[i].def->busy(core->svc[i].state);
    return n;
}

/* One operation's member of "ops" (docs/METRICS.md has the shape). */
static void put_op(fm_conn *conn, const char *name, const fm_op_stats *st, uint64_t now)
{
    static const double qs[] = {0.5, 0.99, 0.999};
    uint64_t q[3];
    fm_latency_view v;

    fm_latency_read(&st->latency, now, qs, 3, q, &v);
    fm_reply_open(conn, name);
    fm_reply_put_int(conn, "calls", (int64_t)st->calls);
    fm_reply_put_int(conn, "errors", (int64_t)st->errors);
    fm_reply_put_int(conn, "latency_samples", (int64_t)v.n);
    fm_reply_put_maybe(conn, "p50_us", v.n > 0, (int64_t)q[0]);
    fm_reply_put_maybe(conn, "p99_us", v.n > 0, (int64_t)q[1]);
    fm_reply_put_maybe(conn, "p999_us", v.n > 0, (int64_t)q[2]);
    fm_reply_put_maybe(conn, "max_us", v.n > 0, (int64_t)v.max_us);
    fm_reply_put_int(conn, "latency_count", (int64_t)st->latency.count);
    fm_reply_put_int(conn, "latency_sum_us", (int64_t)st->latency.sum_us);
    fm_reply_close(conn);
}

void fm_core_put_stats(const fm_core *core, fm_conn *conn)
{
    uint64_t now = uv_now(core->loop);

    for (size_t i = 0; i < core->nsvc; i++)
        if (core->svc[i].def->put_stats != NULL)
            core->svc[i].def->put_stats(core->svc[i].state, conn);
    fm_reply_put_int(conn, "latency_window_ms",
                     (int64_t)fm_latency_window_ms(core->started_ms, now));
    fm_reply_open(conn, "ops");
    for (size_t i = 0; i < core->nsvc; i++) {
        const fm_core_svc *s = &core->svc[i];

        for (size_t k = 0; k < s->def->nops; k++)
            put_op(conn, s->def->ops[k].name, &core->op_stats[s->first_op + k], now);
    }
    fm_reply_close(conn);
}

/* The operation msg names: its service and its counters. */
static const fm_op *find_op(fm_core *core, const fm_request *msg, fm_core_svc **svc,
                            fm_op_stats **stats)
{
    for (size_t i = 0; i < core->nsvc; i++) {
        fm_core_svc *s = &core->svc[i];

        for (size_t k = 0; k < s->def->nops; k++) {
            if (fm_request_op_is(msg, s->def->ops[k].name)) {
                *svc = s;
                *stats = &core->op_stats[s->first_op + k];
                return &s->def->ops[k];
            }
        }
    }
    return NULL;
}

static void refuse(fm_conn *conn, const fm_request *msg, fm_errcode code, const char *why)
{
    fm_reply_error(conn, msg->has_id ? msg->id.p : NULL, msg->id.len, code, why);
}

void fm_core_dispatch(fm_core *core, fm_conn *conn, const char *body, size_t len)
{
    fm_request msg;
    fm_proto_err err;
    fm_op_stats *stats;
    fm_core_svc *svc;
    const fm_op *op;
    fm_req *req;

    if (fm_request_parse(body, len, &msg, &err) != 0) {
        fm_conn_protocol_error(conn);
        refuse(conn, &msg, err.code, err.msg);
        return;
    }
    op = find_op(core, &msg, &svc, &stats);
    if (op == NULL) {
        fm_conn_protocol_error(conn);
        refuse(conn, &msg, FM_E_UNKNOWN_OP, "no such operation");
        return;
    }
    stats->calls++;
    if (core->shutting_down) {
        stats->errors++;
        refuse(conn, &msg, FM_E_SHUTTING_DOWN, "the daemon is shutting down");
        return;
    }
    if ((int64_t)conn->inflight >= core->cfg->max_inflight_per_client) {
        stats->errors++;
        refuse(conn, &msg, FM_E_TOO_MANY_REQUESTS,
               "more requests in flight than max_inflight_per_client");
        return;
    }
    req = fm_req_create(&core->reqs, conn, stats, svc->state, &msg);
    if (req == NULL) {
        stats->errors++;
        refuse(conn, &msg, FM_E_INTERNAL, "out of memory");
        return;
    }
    op->fn(req, &msg);
}
