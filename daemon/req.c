/* req.c -- the life of one request, and the runner of its commands.
 *
 * A request lives on its connection's list until it is answered. It is
 * freed only when it is answered (or abandoned), no Redis command for it is
 * out, and its timer is closed: whichever of those comes last frees it
 * (finish()). */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"
#include "reply.h"
#include "req.h"

fm_req *fm_req_create(fm_reqs *reqs, fm_conn *conn, fm_op_stats *stats, void *svc,
                      const fm_request *msg)
{
    fm_req *req = calloc(1, sizeof(*req));

    if (req == NULL)
        return NULL;
    req->reqs = reqs;
    req->conn = conn;
    req->stats = stats;
    req->svc = svc;
    req->born_ns = uv_hrtime();
    if (msg->has_id) {
        req->idlen = msg->id.len;
        req->id = req->idlen <= sizeof(req->idbuf) ? req->idbuf : malloc(req->idlen);
        if (req->id == NULL) {
            free(req);
            return NULL;
        }
        memcpy(req->id, msg->id.p, req->idlen);
    }
    fm_list_push_front(&conn->reqs, &req->in_conn);
    conn->inflight++;
    reqs->inflight++;
    return req;
}

void *fm_req_data(fm_req *req, size_t size)
{
    req->data = calloc(1, size);
    if (req->data == NULL)
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
    return req->data;
}

static void free_req(fm_req *req)
{
    assert(req->answered && req->cmd == NULL);
    if (req->id != req->idbuf)
        free(req->id);
    free(req->data);
    free(req);
}

static void on_timer_closed(uv_handle_t *h)
{
    free_req(h->data);
}

/* Frees an answered request once nothing refers to it any more. */
static void finish(fm_req *req)
{
    if (!req->answered || req->cmd != NULL)
        return;
    if (!req->timer_used) {
        free_req(req);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)&req->timer))
        uv_close((uv_handle_t *)&req->timer, on_timer_closed);
}

static void unlink_from_conn(fm_req *req)
{
    fm_list_remove(&req->in_conn);
    req->conn->inflight--;
}

/* Its latency: a clock read (vDSO, tens of ns) and a few integer ops. */
static void measure(fm_req *req)
{
    uint64_t us = (uv_hrtime() - req->born_ns + 999) / 1000;

    fm_latency_record(&req->stats->latency, us, uv_now(req->reqs->loop));
}

/* Marks the request answered: off its connection, counted out. */
static void settle(fm_req *req)
{
    if (req->answered)
        return;
    req->answered = 1;
    measure(req);
    /* A command already written still comes back; a shutdown waits for it,
     * since its reply may have to be undone (a late lock grant). */
    if (req->cmd != NULL)
        req->reqs->lingering++;
    if (req->on_settle != NULL)
        req->on_settle(req);
    if (req->timer_used)
        uv_timer_stop(&req->timer);
    if (req->conn != NULL)
        unlink_from_conn(req);
    req->reqs->inflight--;
}

/* ---- the runner ---- */

static void run_callback(fm_link_status status, redisReply *reply, void *arg)
{
    fm_req *req = arg;

    req->cmd = NULL;
    if (req->answered) {
        req->reqs->lingering--;
        if (req->on_late != NULL)
            req->on_late(req, status, reply);
        finish(req);
        return;
    }
    if (req->on_result != NULL)
        req->on_result(req, status, reply);
    else if (status != FM_LINK_OK || reply->type == REDIS_REPLY_ERROR)
        fm_req_fail_redis(req, status, reply);
    else
        req->on_reply(req, reply);
}

/* NULL when out of memory, or when the link is gone (the daemon stops). */
static fm_cmd *submit(fm_reqs *reqs, fm_flow *flow, const fm_req_cmd *c, fm_link_cb *cb,
                      void *arg)
{
    if (reqs->link == NULL)
        return NULL;
    if (c->script != NULL)
        return fm_link_script(reqs->link, flow, c->script, c->nkeys, c->reads, c->argc, c->argv,
                              c->lens, cb, arg);
    if (c->tracked)
        return fm_link_tracked(reqs->link, flow, c->argc, c->argv, c->lens, cb, arg);
    return fm_link_command(reqs->link, flow, c->reads, c->argc, c->argv, c->lens, cb, arg);
}

int fm_reqs_own(fm_reqs *reqs, const fm_req_cmd *c, fm_link_cb *cb, void *arg)
{
    return submit(reqs, NULL, c, cb, arg) != NULL ? 0 : -1;
}

void fm_req_run(fm_req *req, const fm_req_cmd *c)
{
    fm_reqs *reqs = req->reqs;
    uint64_t now = uv_now(reqs->loop);

    assert(req->cmd == NULL && !req->answered);
    req->cmd = submit(reqs, req->conn != NULL ? req->conn->flow : NULL, c, run_callback, req);
    if (req->cmd == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        return;
    }
    if (req->deadline == 0)
        req->deadline = now + (uint64_t)reqs->cfg->request_timeout_ms;
    fm_req_timer(req, req->deadline > now ? req->deadline - now : 0);
}

void fm_req_read(fm_req *req, size_t reads, int argc, const char **argv, const size_t *lens,
                 fm_req_reply_cb *on_reply)
{
    req->on_reply = on_reply;
    fm_req_run(req, &(fm_req_cmd){.reads = reads, .argc = argc, .argv = argv, .lens = lens});
}

void fm_req_command(fm_req *req, int argc, const char **argv, const size_t *lens,
                    fm_req_reply_cb *on_reply)
{
    fm_req_read(req, 0, argc, argv, lens, on_reply);
}

void fm_req_script(fm_req *req, fm_script *script, int nkeys, int argc, const char **argv,
                   const size_t *lens, fm_req_reply_cb *on_reply)
{
    req->on_reply = on_reply;
    fm_req_run(req, &(fm_req_cmd){.script = script, .nkeys = nkeys, .argc = argc,
                                  .argv = argv, .lens = lens});
}

void fm_req_withdraw(fm_req *req)
{
    if (req->cmd != NULL && fm_link_cancel(req->cmd))
        req->cmd = NULL;
}

/* ---- time ---- */

static void on_timer(uv_timer_t *t)
{
    fm_req *req = t->data;

    if (req->answered)
        return;
    if (req->on_timer != NULL)
        req->on_timer(req);
    else
        fm_req_expire(req);
}

void fm_req_timer(fm_req *req, uint64_t ms)
{
    if (!req->timer_used) {
        uv_timer_init(req->reqs->loop, &req->timer);
        req->timer.data = req;
        req->timer_used = 1;
    }
    uv_timer_start(&req->timer, on_timer, ms, 0);
}

void fm_req_deadline(fm_req *req, uint64_t ms)
{
    req->deadline = uv_now(req->reqs->loop) + ms;
    fm_req_timer(req, ms);
}

void fm_req_expire(fm_req *req)
{
    /* With the link up, a command Redis has not answered, or one still
     * waiting its turn behind commands Redis has not answered: that is a
     * timeout, and a late reply is dropped. With the link down, or Redis
     * answering "not now" all along, Redis could not be reached. */
    int slow = req->cmd != NULL && fm_link_ready(req->reqs->link) &&
               !fm_cmd_transient(req->cmd);
    long long ms = (long long)req->reqs->cfg->request_timeout_ms;

    if (slow)
        fm_link_overdue(req->cmd);
    fm_req_withdraw(req);
    if (slow) {
        fm_req_fail(req, FM_E_TIMEOUT, "Redis did not answer within %lld ms", ms);
    } else {
        fm_req_fail(req, FM_E_REDIS_UNAVAILABLE, "Redis could not be reached within %lld ms",
                    ms);
    }
}

/* ---- answers ---- */

int fm_req_listening(const fm_req *req)
{
    return !req->answered && req->conn != NULL && fm_conn_alive(req->conn);
}

void fm_req_drop(fm_req *req)
{
    settle(req);
    finish(req);
}

fm_conn *fm_req_ok_start(fm_req *req)
{
    if (req->answered)
        return NULL;
    /* Its connection is on its way out (doomed: closed at the end of this
     * turn): the request is over now, as it would be then, so that whoever
     * answers it in a loop sees it leave its list. */
    if (!fm_req_listening(req)) {
        fm_req_drop(req);
        return NULL;
    }
    req->reply_start = fm_reply_ok_start(req->conn, req->id, req->idlen);
    return req->conn;
}

void fm_req_ok_finish(fm_req *req)
{
    fm_conn *conn = req->conn;

    settle(req);
    fm_reply_finish(conn, req->reply_start);
    finish(req);
}

void fm_req_ok(fm_req *req)
{
    if (fm_req_ok_start(req) != NULL)
        fm_req_ok_finish(req);
}

void fm_req_ok_int(fm_req *req, const char *name, int64_t v)
{
    fm_conn *conn = fm_req_ok_start(req);

    if (conn == NULL)
        return;
    fm_reply_put_int(conn, name, v);
    fm_req_ok_finish(req);
}

void fm_req_ok_bool(fm_req *req, const char *name, int v)
{
    fm_conn *conn = fm_req_ok_start(req);

    if (conn == NULL)
        return;
    fm_reply_put_bool(conn, name, v);
    fm_req_ok_finish(req);
}

void fm_req_fail(fm_req *req, fm_errcode code, const char *fmt, ...)
{
    fm_conn *conn = req->conn;
    char msg[512];
    va_list ap;

    if (req->answered)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    req->stats->errors++;
    settle(req);
    if (conn != NULL && fm_conn_alive(conn))
        fm_reply_error(conn, req->id, req->idlen, code, msg);
    finish(req);
}

void fm_req_fail_redis(fm_req *req, fm_link_status status, const redisReply *reply)
{
    if (status == FM_LINK_DOWN)
        fm_req_fail(req, FM_E_REDIS_UNAVAILABLE, "the Redis link dropped with the request in flight");
    else if (reply->type == REDIS_REPLY_ERROR)
        fm_req_fail(req, FM_E_REDIS_ERROR, "%.*s", (int)(reply->len > 400 ? 400 : reply->len),
                    reply->str);
    else
        fm_req_fail(req, FM_E_INTERNAL, "unexpected Redis reply of type %d", reply->type);
}

void fm_req_abandon_all(fm_conn *conn)
{
    fm_list *n;

    while ((n = fm_list_first(&conn->reqs)) != NULL) {
        fm_req *req = fm_list_entry(n, fm_req, in_conn);

        /* Off the connection first: nothing may reach it any more. */
        unlink_from_conn(req);
        req->conn = NULL;
        fm_req_withdraw(req);
        settle(req);
        finish(req);
    }
}
