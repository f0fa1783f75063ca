/* conn.c -- one client connection: read frames, dispatch, write replies.
 *
 * Every read lands in the server's one read buffer and is fed to the
 * connection's frame reader; every whole frame is dispatched before the
 * next read, and a reader left empty gives its memory back, so an idle
 * connection costs no read buffer. Output accumulates in `out` (and, for
 * frames shared with other connections, in `outq`, see outq.h) and is
 * written once per loop turn by the server's flusher, usually in one
 * writev(2); what the socket does not take at once goes to a uv_write,
 * while the next replies wait. An output buffer left empty and larger than
 * OUT_KEEP is given back, so one large reply does not stay with an idle
 * connection.
 *
 * A connection that has to go while others are being served (its output
 * overflowed, memory ran out) is only marked doomed; the flusher closes it.
 * So no loop over connections or subscribers ever sees one vanish under it. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "held.h"
#include "log.h"
#include "ops.h"
#include "server.h"
#include "wake.h"

#define OUT_KEEP (64 * 1024)
#define FLUSH_IOV 16

int fm_conn_alive(const fm_conn *conn)
{
    return !conn->closing && !conn->close_after_write && !conn->doomed;
}

void fm_conn_doom(fm_conn *conn)
{
    conn->doomed = 1;
    fm_server_schedule_flush(conn->srv, conn);
}

static void on_closed(uv_handle_t *h)
{
    fm_conn *conn = h->data;

    fm_frame_reader_free(conn->reader);
    fm_buf_free(&conn->out);
    fm_outq_free(&conn->outq);
    /* Commands of its requests may still be at Redis: they hold the flow. */
    fm_link_flow_release(conn->flow);
    free(conn);
}

void fm_conn_close(fm_conn *conn)
{
    fm_server *srv = conn->srv;

    if (conn->closing)
        return;
    conn->closing = 1;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    srv->nconns--;
    if (conn->flush_pending) {
        fm_conn **pp = &srv->flush_list;
        while (*pp != conn)
            pp = &(*pp)->flush_next;
        *pp = conn->flush_next;
        conn->flush_pending = 0;
    }
    while (conn->reqs != NULL)
        fm_req_abandon(conn->reqs);
    fm_held_conn_closed(conn);
    if (!fm_list_empty(&conn->wake_subs))
        fm_wake_conn_closed(srv->wake, conn);
    fm_log_debug("client %llu: closed", (unsigned long long)conn->serial);
    uv_close((uv_handle_t *)&conn->pipe, on_closed);
    fm_server_conn_gone(srv);
}

static void write_failed(fm_conn *conn, int rc)
{
    fm_log_debug("client %llu: write: %s", (unsigned long long)conn->serial, uv_strerror(rc));
    fm_conn_close(conn);
}

/* Everything queued went out. */
static void drained(fm_conn *conn)
{
    if (conn->out.cap > OUT_KEEP)
        fm_buf_free(&conn->out);
    if (conn->close_after_write)
        fm_conn_close(conn);
}

static void on_write(uv_write_t *wr, int status)
{
    fm_conn *conn = wr->data;

    conn->writing_active = 0;
    fm_outq_written(&conn->outq);
    if (conn->closing)
        return;
    if (status < 0)
        write_failed(conn, status);
    else if (conn->out.len > 0 || conn->outq.head != NULL)
        fm_server_schedule_flush(conn->srv, conn);
    else
        drained(conn);
}

/* The output in writing order: the sealed chunks, then `out`. */
static size_t gather(fm_conn *conn, uv_buf_t *iov, size_t max)
{
    size_t n = fm_outq_iov(&conn->outq, iov, max);

    if (conn->out.len > 0 && n < max)
        iov[n++] = uv_buf_init(conn->out.data, (unsigned)conn->out.len);
    return n;
}

/* Called by the server's flusher, once per loop turn at most. The socket
 * usually takes everything at once: uv_try_write then costs one writev(2)
 * and no epoll_ctl(2); only a remainder goes through uv_write, whose
 * buffers must stay put until it completes, so `out` is sealed into the
 * queue first and the next replies start a buffer of their own. */
void fm_conn_flush(fm_conn *conn)
{
    uv_buf_t small[FLUSH_IOV], *iov = small;
    size_t max = fm_outq_chunks(&conn->outq) + 1, n;
    int rc;

    if (conn->doomed) {
        fm_conn_close(conn);
        return;
    }
    if (conn->closing || conn->writing_active)
        return;
    if (max > FLUSH_IOV && (iov = malloc(max * sizeof(*iov))) == NULL) {
        fm_log_error("client %llu: out of memory writing; closing",
                     (unsigned long long)conn->serial);
        fm_conn_close(conn);
        return;
    }
    n = gather(conn, iov, max);
    if (n > 0) {
        rc = uv_try_write((uv_stream_t *)&conn->pipe, iov, (unsigned)n);
        if (rc < 0 && rc != UV_EAGAIN) {
            write_failed(conn, rc);
            goto out;
        }
        if (rc > 0)
            fm_buf_consume(&conn->out, fm_outq_consume(&conn->outq, (size_t)rc));
    }
    if (conn->out.len == 0 && conn->outq.head == NULL) {
        drained(conn);
        goto out;
    }
    if (conn->out.len > 0 && fm_outq_push_buf(&conn->outq, &conn->out) != 0) {
        fm_log_error("client %llu: out of memory writing; closing",
                     (unsigned long long)conn->serial);
        fm_conn_close(conn);
        goto out;
    }
    n = fm_outq_iov(&conn->outq, iov, max);
    fm_outq_start_write(&conn->outq);
    conn->wreq.data = conn;
    rc = uv_write(&conn->wreq, (uv_stream_t *)&conn->pipe, iov, (unsigned)n, on_write);
    if (rc < 0)
        write_failed(conn, rc);
    else
        conn->writing_active = 1;
out:
    if (iov != small)
        free(iov);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    fm_conn *conn = h->data;

    *buf = uv_buf_init(conn->srv->readbuf, sizeof(conn->srv->readbuf));
}

/* A framing error ends the connection: the error frame goes out first, and
 * nothing more is read. */
static void framing_error(fm_conn *conn)
{
    fm_frame_reader *r = conn->reader;
    char msg[96];

    conn->srv->protocol_errors++;
    if (r->err == FM_E_BAD_FRAME)
        snprintf(msg, sizeof(msg), "a frame length of 0 is not allowed");
    else
        snprintf(msg, sizeof(msg), "frame of %u bytes exceeds max_frame_bytes (%zu)",
                 (unsigned)r->err_len, r->max_body);
    uv_read_stop((uv_stream_t *)&conn->pipe);
    /* Requests still in flight are abandoned, as if the client had gone. */
    while (conn->reqs != NULL)
        fm_req_abandon(conn->reqs);
    fm_reply_error(conn, NULL, 0, r->err, msg);
    conn->close_after_write = 1;
    fm_server_schedule_flush(conn->srv, conn);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fm_conn *conn = s->data;
    const char *body;
    size_t len;
    int rc;

    if (n < 0) {
        if (n != UV_EOF)
            fm_log_debug("client %llu: read: %s", (unsigned long long)conn->serial,
                         uv_strerror((int)n));
        fm_conn_close(conn);
        return;
    }
    if (fm_frame_reader_feed(conn->reader, buf->base, (size_t)n) != 0) {
        fm_log_error("client %llu: out of memory reading; closing",
                     (unsigned long long)conn->serial);
        fm_conn_close(conn);
        return;
    }
    while (fm_conn_alive(conn) &&
           (rc = fm_frame_reader_next(conn->reader, &body, &len)) != FM_FRAME_NEED) {
        if (rc == FM_FRAME_ERR) {
            framing_error(conn);
            return;
        }
        fm_ops_dispatch(conn, body, len);
    }
    fm_frame_reader_trim(conn->reader);
}

static int peer_allowed(fm_server *srv, fm_conn *conn)
{
    const fm_config *cfg = srv->cfg;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    uv_os_fd_t fd;

    if (cfg->nuids == 0 && cfg->ngids == 0)
        return 1;
    if (uv_fileno((uv_handle_t *)&conn->pipe, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
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
    conn->srv->rejected_clients++;
    fm_reply_error(conn, NULL, 0, code, msg);
    conn->close_after_write = 1;
    fm_server_schedule_flush(conn->srv, conn);
}

fm_conn *fm_conn_accept(fm_server *srv)
{
    fm_conn *conn = calloc(1, sizeof(*conn));

    if (conn == NULL)
        return NULL;
    conn->srv = srv;
    conn->serial = ++srv->next_serial;
    conn->flow = fm_link_flow_create();
    fm_outq_init(&conn->outq);
    fm_list_init(&conn->wake_subs);
    conn->reader = fm_frame_reader_create((size_t)srv->cfg->max_frame_bytes);
    uv_pipe_init(srv->loop, &conn->pipe, 0);
    conn->pipe.data = conn;
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    srv->nconns++;
    srv->connections_total++;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&conn->pipe) != 0 ||
        conn->reader == NULL || conn->flow == NULL) {
        fm_conn_close(conn);
        return NULL;
    }
    if ((int64_t)srv->nconns > srv->cfg->max_clients) {
        refuse(conn, FM_E_TOO_MANY_CLIENTS, "the daemon is at max_clients");
        return conn;
    }
    if (!peer_allowed(srv, conn)) {
        refuse(conn, FM_E_FORBIDDEN, "this uid/gid may not use the daemon");
        return conn;
    }
    if (uv_read_start((uv_stream_t *)&conn->pipe, on_alloc, on_read) != 0) {
        fm_conn_close(conn);
        return NULL;
    }
    fm_log_debug("client %llu: connected", (unsigned long long)conn->serial);
    return conn;
}
