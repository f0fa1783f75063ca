/* server.c -- the daemon's top: accepting clients on the listening socket
 * (listen.c), the per-turn flusher, signals, reload and shutdown, and what
 * the service manager hears of them.
 *
 * Shutdown (SIGTERM, SIGINT) drains in three steps:
 *   DRAINING  the socket goes away at once so no new client arrives, waiting
 *             lock acquires and new requests get shutting_down, requests
 *             already at Redis get their answers (each within its deadline);
 *   CLOSING   nothing in flight: replies are flushed, connections closed, and
 *             the locks they held with on_disconnect "release" released;
 *   STOPPED   those releases answered, and every command of an answered
 *             request back from Redis (a late lock grant must be undone):
 *             the link closes, the loop ends.
 * A hard stop at request_timeout_ms + 0.5 s keeps the contract's bound even
 * when a client does not read or Redis does not answer.
 *
 * The service manager hears (notify.h) READY=1 once the socket listens and
 * the link is started, STATUS= at every change of the link, RELOADING=1
 * and READY=1 around a reload, and STOPPING=1 when the drain begins. */
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "cache.h"
#include "lock.h"
#include "log.h"
#include "notify.h"
#include "reply.h"
#include "server.h"
#include "wake.h"

enum { RUNNING, DRAINING, CLOSING, STOPPED };

/* The services, in the order of their operations in `stats`. */
static const fm_service *const services[] = {
    &fm_admin_service, &fm_lock_service, &fm_wake_service, &fm_cache_service,
};

static void close_clients(fm_server *srv);
static void stop(fm_server *srv);

/* Runs once per loop turn, before libuv blocks for I/O: every reply made
 * during the turn leaves in one write per connection. */
static void on_prepare(uv_prepare_t *p)
{
    fm_server *srv = p->data;
    fm_core *core = &srv->core;

    fm_conns_flush(&core->conns);
    if (srv->phase == DRAINING && core->reqs.inflight == 0)
        close_clients(srv);
    if (srv->phase == CLOSING && fm_core_busy(core) == 0 && core->reqs.lingering == 0)
        stop(srv);
}

static int peer_allowed(const fm_server *srv, const fm_conn *conn)
{
    const fm_config *cfg = srv->cfg;
    struct ucred cred;

    if (cfg->nuids == 0 && cfg->ngids == 0)
        return 1;
    if (fm_conn_peer(conn, &cred) != 0)
        return 0;
    /* root and the daemon's own user keep access to their own daemon. */
    if (cred.uid == 0 || cred.uid == getuid())
        return 1;
    for (size_t i = 0; i < cfg->nuids; i++)
        if (cfg->uids[i] == cred.uid)
            return 1;
    for (size_t i = 0; i < cfg->ngids; i++)
        if (cfg->gids[i] == cred.gid)
            return 1;
    fm_log_limited(FM_LOG_INFO, "refused a client with uid %d gid %d", (int)cred.uid, (int)cred.gid);
    return 0;
}

/* Sends one error frame and closes: for connections refused at the door. */
static void refuse(fm_conn *conn, fm_errcode code, const char *msg)
{
    fm_reply_error(conn, NULL, 0, code, msg);
    fm_conn_reject(conn);
}

static void on_connection(uv_stream_t *listener, int status)
{
    fm_server *srv = listener->data;
    fm_conn *conn;

    if (status < 0) {
        fm_log_limited(FM_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    conn = fm_conn_accept(&srv->core.conns, listener);
    if (conn == NULL)
        fm_log_limited(FM_LOG_WARN, "accept: could not set up a connection");
    else if ((int64_t)srv->core.conns.n > srv->cfg->max_clients)
        refuse(conn, FM_E_TOO_MANY_CLIENTS, "the daemon is at max_clients");
    else if (!peer_allowed(srv, conn))
        refuse(conn, FM_E_FORBIDDEN, "this uid/gid may not use the daemon");
    else
        fm_conn_start(conn);
}

/* ---- what the connections report ---- */

static void on_frame(fm_conn *conn, const char *body, size_t len, void *arg)
{
    fm_server *srv = arg;

    fm_core_dispatch(&srv->core, conn, body, len);
}

/* The stream is unusable: requests still in flight are abandoned, as if the
 * client had gone, and the error frame goes out before the close. */
static void on_bad_frame(fm_conn *conn, fm_errcode code, const char *msg, void *arg)
{
    fm_req_abandon_all(conn);
    fm_reply_error(conn, NULL, 0, code, msg);
    fm_conn_close_after_write(conn);
}

static void conn_gone(fm_server *srv);

static void on_conn_closing(fm_conn *conn, void *arg)
{
    fm_server *srv = arg;

    fm_req_abandon_all(conn);
    fm_core_conn_closed(&srv->core, conn);
    conn_gone(srv);
}

static void close_clients(fm_server *srv)
{
    fm_list *n, *next;

    srv->phase = CLOSING;
    fm_core_closing_all(&srv->core);
    for (n = srv->core.conns.all.next; n != &srv->core.conns.all; n = next) {
        fm_conn *conn = fm_list_entry(n, fm_conn, in_set);

        next = n->next;
        /* Whatever is still queued for it goes out before the close. */
        fm_conn_flush(conn);
        if (!fm_conn_writing(conn))
            fm_conn_close(conn);
        else
            fm_conn_close_after_write(conn);
    }
}

static void stop(fm_server *srv)
{
    srv->phase = STOPPED;
    fm_core_stop(&srv->core);
    fm_notify_close(&srv->notify);
    uv_close((uv_handle_t *)&srv->flusher, NULL);
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
    /* Closing the handles gave the signals back their default action: a
     * second SIGTERM on the way out (a supervisor that asks twice) must
     * not turn a clean exit into death by signal. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    conn_gone(srv);
    fm_log_info("stopped");
}

static void conn_gone(fm_server *srv)
{
    /* The hard-stop timer goes last: it may still have to cut off a client
     * that does not read its last replies. */
    if (srv->phase == STOPPED && srv->core.conns.n == 0 &&
        !uv_is_closing((uv_handle_t *)&srv->shutdown_timer))
        uv_close((uv_handle_t *)&srv->shutdown_timer, NULL);
}

static void on_shutdown_timer(uv_timer_t *t)
{
    fm_server *srv = t->data;
    fm_core *core = &srv->core;
    fm_conn *conn;

    if (core->reqs.inflight > 0 || fm_core_busy(core) > 0 || core->reqs.lingering > 0)
        fm_log_warn("shutdown: %zu requests, %zu lock releases and %zu late commands "
                    "unanswered at the deadline; stopping anyway",
                    core->reqs.inflight, fm_core_busy(core), core->reqs.lingering);
    else if (core->conns.n > 0)
        fm_log_warn("shutdown: clients not reading their last replies; closing them");
    if (srv->phase == DRAINING)
        close_clients(srv);
    while ((conn = fm_conns_first(&core->conns)) != NULL)
        fm_conn_close(conn);
    if (srv->phase == CLOSING)
        stop(srv);
}

static void begin_shutdown(fm_server *srv, int signum)
{
    if (srv->phase != RUNNING)
        return;
    fm_log_info("%s: shutting down, %zu requests in flight",
                signum == SIGINT ? "SIGINT" : "SIGTERM", srv->core.reqs.inflight);
    srv->phase = DRAINING;
    fm_notify_send(&srv->notify, "STOPPING=1");
    fm_listener_stop(&srv->listener);
    fm_core_shutdown(&srv->core);
    fm_conns_drain(&srv->core.conns);
    /* Every request in flight has a deadline within request_timeout_ms;
     * the rest of the contract's extra second is margin for the exit. */
    uv_timer_start(&srv->shutdown_timer, on_shutdown_timer,
                   (uint64_t)srv->cfg->request_timeout_ms + 500, 0);
    uv_unref((uv_handle_t *)&srv->shutdown_timer);
}

static void log_change(const char *name, int live, void *arg)
{
    (void)arg;
    if (live)
        fm_log_info("reload: %s changed", name);
    else
        fm_log_warn("reload: %s changed, but takes effect only after a restart", name);
}

static void reload(fm_server *srv)
{
    char err[512];
    fm_config *next;

    if (srv->args.file == NULL) {
        fm_log_info("SIGHUP: no configuration file (-c) to reload");
        return;
    }
    next = fm_config_load(&srv->args, err, sizeof(err));
    if (next == NULL) {
        fm_log_error("reload failed, keeping the running configuration: %s", err);
        return;
    }
    fm_config_diff(srv->cfg, next, log_change, NULL);
    fm_config_carry_restart(next, srv->cfg);
    fm_config_free(srv->cfg);
    srv->cfg = next;
    fm_log_set_level((fm_log_level)next->log_level);
    fm_core_set_config(&srv->core, next);
    fm_log_info("reloaded %s", srv->args.file);
}

/* Type=notify-reload wants RELOADING=1 with the time the reload began, and
 * READY=1 when it is over, whether or not it changed anything. Once
 * STOPPING=1 is said, a READY=1 would contradict it. */
static void notified_reload(fm_server *srv)
{
    struct timespec ts;

    if (srv->phase != RUNNING) {
        reload(srv);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    fm_notify_send(&srv->notify, "RELOADING=1\nMONOTONIC_USEC=%llu",
                   (unsigned long long)ts.tv_sec * 1000000 + (unsigned long long)ts.tv_nsec / 1000);
    reload(srv);
    fm_notify_send(&srv->notify, "READY=1");
}

static void on_signal(uv_signal_t *s, int signum)
{
    fm_server *srv = s->data;

    if (signum == SIGHUP)
        notified_reload(srv);
    else
        begin_shutdown(srv, signum);
}

static void on_link_state(int up, const char *why, void *arg)
{
    fm_server *srv = arg;

    if (up)
        fm_notify_send(&srv->notify, "STATUS=Redis: up");
    else
        fm_notify_send(&srv->notify, "STATUS=Redis: down: %s", why);
}

static void watch_signal(fm_server *srv, uv_signal_t *s, int signum)
{
    uv_signal_init(srv->loop, s);
    s->data = srv;
    uv_signal_start(s, on_signal, signum);
}

int fm_server_start(fm_server *srv)
{
    fm_link *link;

    uv_prepare_init(srv->loop, &srv->flusher);
    srv->flusher.data = srv;
    uv_prepare_start(&srv->flusher, on_prepare);
    uv_timer_init(srv->loop, &srv->shutdown_timer);
    srv->shutdown_timer.data = srv;
    watch_signal(srv, &srv->sig_term, SIGTERM);
    watch_signal(srv, &srv->sig_int, SIGINT);
    watch_signal(srv, &srv->sig_hup, SIGHUP);

    fm_notify_open(&srv->notify, srv->loop);

    /* The socket first: it is what most often refuses (another daemon). */
    if (fm_listener_start(&srv->listener, srv->loop, srv->cfg, on_connection, srv) != 0)
        return -1;
    link = fm_link_create(srv->loop, srv->cfg, srv->tls);
    if (link == NULL)
        return -1;
    fm_link_on_state(link, on_link_state, srv);
    fm_core_init(&srv->core, srv->loop, srv->cfg, link, &(fm_conn_handler){
        on_frame, on_bad_frame, on_conn_closing, srv});
    for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
        if (fm_core_register(&srv->core, services[i]) != 0)
            return -1;
    /* Said before the start: a connect that fails at once reports the
     * link down from within it, and that must not be overwritten. */
    fm_notify_send(&srv->notify, "READY=1\nSTATUS=Redis: connecting");
    return fm_link_start(link);
}

void fm_server_free(fm_server *srv)
{
    fm_notify_close(&srv->notify);
    fm_config_free(srv->cfg);
    srv->cfg = NULL;
    fm_tls_free(srv->tls);
    srv->tls = NULL;
}
