/* conn.c -- one client connection: read frames, write output.
 *
 * Every read lands in the set's one read buffer and is fed to the
 * connection's frame reader; every whole frame goes to the set's handler
 * before the next read, and a reader left empty gives its memory back, so
 * an idle connection costs no read buffer. Output accumulates in `out`
 * (and, for frames shared with other connections, in `outq`, see outq.h)
 * and is written once per loop turn by fm_conns_flush, usually in one
 * writev(2); what the socket does not take at once goes to a uv_write,
 * while the next replies wait. An output buffer left empty and larger than
 * OUT_KEEP is given back, so one large reply does not stay with an idle
 * connection. A client whose output backs up past PAUSE_BYTES is not read
 * (and its frames already read wait) until the output drains: it is paced
 * by its own reading. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"

#define OUT_KEEP (64 * 1024)
/* Past this much output not yet written (or half of max_output_bytes,
 * when that is less), a client's next requests wait (unread, in its frame
 * reader) until the output drains. Answers that need no Redis round trip
 * (near-cache hits) would otherwise let one client pipeline
 * max_output_bytes of replies into one loop turn, holding the loop while
 * they are built and then being cut off for them. */
#define PAUSE_BYTES (1024 * 1024)
#define FLUSH_IOV 16

/* A closing connection is on no flush list: the flusher would write to a
 * handle on its way out. */
static int flags_legal(unsigned f)
{
    if ((f & FM_CONN_CLOSING) && (f & FM_CONN_FLUSH_PENDING))
        return 0;
    return 1;
}

void fm_conns_init(fm_conns *set, uv_loop_t *loop, const fm_config *cfg,
                   const fm_conn_handler *h)
{
    set->loop = loop;
    set->cfg = cfg;
    set->h = *h;
    fm_list_init(&set->all);
    fm_list_init(&set->flush);
    fm_list_init(&set->paused);
    uv_timer_init(loop, &set->stall_timer);
    set->stall_timer.data = set;
    /* It never keeps the loop alive: paused connections do. */
    uv_unref((uv_handle_t *)&set->stall_timer);
}

void fm_conns_close(fm_conns *set)
{
    uv_close((uv_handle_t *)&set->stall_timer, NULL);
}

void fm_conns_set_config(fm_conns *set, const fm_config *cfg)
{
    set->cfg = cfg;
}

fm_conn *fm_conns_first(const fm_conns *set)
{
    fm_list *n = fm_list_first(&set->all);

    return n != NULL ? fm_list_entry(n, fm_conn, in_set) : NULL;
}

void fm_conns_output(const fm_conns *set, size_t *total, size_t *max)
{
    const fm_list *n;

    *total = *max = 0;
    fm_list_each(n, &set->all) {
        const fm_conn *c = fm_list_entry(n, fm_conn, in_set);
        size_t q = c->out.len + c->outq.bytes;

        *total += q;
        if (q > *max)
            *max = q;
    }
}

int fm_conn_alive(const fm_conn *conn)
{
    return !(conn->flags & (FM_CONN_CLOSING | FM_CONN_CLOSE_AFTER_WRITE | FM_CONN_DOOMED));
}

int fm_conn_writing(const fm_conn *conn)
{
    return (conn->flags & FM_CONN_WRITING) != 0;
}

void fm_conn_protocol_error(fm_conn *conn)
{
    conn->set->protocol_errors++;
}

void fm_conn_schedule_flush(fm_conn *conn)
{
    if (conn->flags & (FM_CONN_FLUSH_PENDING | FM_CONN_CLOSING))
        return;
    conn->flags |= FM_CONN_FLUSH_PENDING;
    fm_list_push_back(&conn->set->flush, &conn->in_flush);
}

void fm_conns_flush(fm_conns *set)
{
    fm_list *n;

    while ((n = fm_list_first(&set->flush)) != NULL) {
        fm_conn *conn = fm_list_entry(n, fm_conn, in_flush);

        fm_list_remove(n);
        conn->flags &= ~FM_CONN_FLUSH_PENDING;
        fm_conn_flush(conn);
    }
}

void fm_conn_doom(fm_conn *conn)
{
    conn->flags |= FM_CONN_DOOMED;
    fm_conn_schedule_flush(conn);
}

void fm_conn_close_after_write(fm_conn *conn)
{
    conn->flags |= FM_CONN_CLOSE_AFTER_WRITE;
    fm_conn_schedule_flush(conn);
}

void fm_conn_reject(fm_conn *conn)
{
    conn->set->rejected++;
    fm_conn_close_after_write(conn);
}

static void on_closed(uv_handle_t *h)
{
    fm_conn *conn = h->data;

    assert(conn->inflight == 0 && fm_list_empty(&conn->reqs));
    fm_frame_reader_free(conn->reader);
    fm_buf_free(&conn->out);
    fm_outq_free(&conn->outq);
    /* Commands of its requests may still be at Redis: they hold the flow. */
    fm_link_flow_release(conn->flow);
    free(conn);
}

void fm_conn_close(fm_conn *conn)
{
    fm_conns *set = conn->set;

    if (conn->flags & FM_CONN_CLOSING)
        return;
    conn->flags |= FM_CONN_CLOSING;
    conn->flags &= ~FM_CONN_FLUSH_PENDING;
    fm_list_remove(&conn->in_flush);
    fm_list_remove(&conn->in_set);
    fm_list_remove(&conn->in_paused);
    set->n--;
    assert(flags_legal(conn->flags));
    set->h.closing(conn, set->h.arg);
    fm_log_debug("client %llu: closed", (unsigned long long)conn->serial);
    uv_close((uv_handle_t *)&conn->pipe, on_closed);
}

static void write_failed(fm_conn *conn, int rc)
{
    fm_log_debug("client %llu: write: %s", (unsigned long long)conn->serial, uv_strerror(rc));
    fm_conn_close(conn);
}

static int backlogged(const fm_conn *conn)
{
    size_t half = (size_t)conn->set->cfg->max_output_bytes / 2;

    /* Shutting down: what was held back is answered (shutting_down). */
    if (conn->set->draining)
        return 0;
    return conn->out.len + conn->outq.bytes > (half < PAUSE_BYTES ? half : PAUSE_BYTES);
}

static void run_frames(fm_conn *conn);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* A paused client whose output has not moved for request_timeout_ms is not
 * reading its replies: it is cut off as a slow reader, so that the
 * requests it sent meanwhile do not wait unanswered forever. */
static void on_stall_timer(uv_timer_t *t)
{
    fm_conns *set = t->data;
    uint64_t now = uv_now(set->loop), limit = (uint64_t)set->cfg->request_timeout_ms;
    fm_list *n, *next;

    for (n = set->paused.next; n != &set->paused; n = next) {
        fm_conn *conn = fm_list_entry(n, fm_conn, in_paused);

        next = n->next;
        if (now - conn->stalled_since < limit)
            continue;
        fm_log_limited(FM_LOG_INFO, "client %llu: does not read its replies; closing",
                       (unsigned long long)conn->serial);
        fm_conn_close(conn);
    }
    if (fm_list_empty(&set->paused))
        uv_timer_stop(t);
}

static void pause_reading(fm_conn *conn)
{
    fm_conns *set = conn->set;
    uint64_t every = (uint64_t)set->cfg->request_timeout_ms / 4 + 1;

    conn->flags |= FM_CONN_PAUSED;
    conn->stalled_since = uv_now(set->loop);
    uv_read_stop((uv_stream_t *)&conn->pipe);
    fm_list_push_back(&set->paused, &conn->in_paused);
    if (!uv_is_active((uv_handle_t *)&set->stall_timer))
        uv_timer_start(&set->stall_timer, on_stall_timer, every, every);
}
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

/* The output of a paused client went below the mark: the requests it
 * sent meanwhile run, and it is read again. */
static void resume(fm_conn *conn)
{
    if (!(conn->flags & FM_CONN_PAUSED) || backlogged(conn) || !fm_conn_alive(conn))
        return;
    conn->flags &= ~FM_CONN_PAUSED;
    fm_list_remove(&conn->in_paused);
    run_frames(conn);
    if (!(conn->flags & FM_CONN_PAUSED) && fm_conn_alive(conn) &&
        uv_read_start((uv_stream_t *)&conn->pipe, on_alloc, on_read) != 0)
        fm_conn_close(conn);
}

/* Everything queued went out. */
static void drained(fm_conn *conn)
{
    if (conn->out.cap > OUT_KEEP)
        fm_buf_free(&conn->out);
    if (conn->flags & FM_CONN_CLOSE_AFTER_WRITE)
        fm_conn_close(conn);
    else
        resume(conn);
}

static void on_write(uv_write_t *wr, int status)
{
    fm_conn *conn = wr->data;

    conn->flags &= ~FM_CONN_WRITING;
    fm_outq_written(&conn->outq);
    if (conn->flags & FM_CONN_CLOSING)
        return;
    if (status < 0) {
        write_failed(conn, status);
    } else if (conn->out.len > 0 || conn->outq.head != NULL) {
        /* Its reader took something: not stalled. */
        conn->stalled_since = uv_now(conn->set->loop);
        fm_conn_schedule_flush(conn);
        resume(conn);
    } else {
        drained(conn);
    }
}

/* The output in writing order: the sealed chunks, then `out`. */
static size_t gather(fm_conn *conn, uv_buf_t *iov, size_t max)
{
    size_t n = fm_outq_iov(&conn->outq, iov, max);

    if (conn->out.len > 0 && n < max)
        iov[n++] = uv_buf_init(conn->out.data, (unsigned)conn->out.len);
    return n;
}

static void out_of_memory(fm_conn *conn)
{
    fm_log_error("client %llu: out of memory writing; closing",
                 (unsigned long long)conn->serial);
    fm_conn_close(conn);
}

/* The socket usually takes everything at once: uv_try_write then costs
 * one writev(2) and no epoll_ctl(2); only a remainder goes through
 * uv_write, whose buffers must stay put until it completes, so `out` is
 * sealed into the queue first and the next replies start a buffer of their
 * own. */
void fm_conn_flush(fm_conn *conn)
{
    uv_buf_t small[FLUSH_IOV], *iov = small;
    size_t max = fm_outq_chunks(&conn->outq) + 1, n;
    int rc;

    if (conn->flags & FM_CONN_DOOMED) {
        fm_conn_close(conn);
        return;
    }
    if (conn->flags & (FM_CONN_CLOSING | FM_CONN_WRITING))
        return;
    if (max > FLUSH_IOV && (iov = malloc(max * sizeof(*iov))) == NULL) {
        out_of_memory(conn);
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
        out_of_memory(conn);
        goto out;
    }
    n = fm_outq_iov(&conn->outq, iov, max);
    fm_outq_start_write(&conn->outq);
    conn->wreq.data = conn;
    rc = uv_write(&conn->wreq, (uv_stream_t *)&conn->pipe, iov, (unsigned)n, on_write);
    if (rc < 0)
        write_failed(conn, rc);
    else
        conn->flags |= FM_CONN_WRITING;
out:
    if (iov != small)
        free(iov);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    fm_conn *conn = h->data;

    *buf = uv_buf_init(conn->set->readbuf, sizeof(conn->set->readbuf));
}

/* A framing error ends the connection: nothing more is read, and the
 * handler sends the error frame. */
static void framing_error(fm_conn *conn)
{
    fm_frame_reader *r = conn->reader;
    char msg[96];

    conn->set->protocol_errors++;
    if (r->err == FM_E_BAD_FRAME)
        snprintf(msg, sizeof(msg), "a frame length of 0 is not allowed");
    else
        snprintf(msg, sizeof(msg), "frame of %u bytes exceeds max_frame_bytes (%zu)",
                 (unsigned)r->err_len, r->max_body);
    uv_read_stop((uv_stream_t *)&conn->pipe);
    conn->set->h.bad_frame(conn, r->err, msg, conn->set->h.arg);
}

/* Runs the whole frames read so far, until the client's output is
 * backlogged: then it is paused, and its next frames wait where they are. */
static void run_frames(fm_conn *conn)
{
    fm_conns *set = conn->set;
    const char *body;
    size_t len;
    int rc;

    while (fm_conn_alive(conn)) {
        if (backlogged(conn)) {
            pause_reading(conn);
            break;
        }
        rc = fm_frame_reader_next(conn->reader, &body, &len);
        if (rc == FM_FRAME_NEED)
            break;
        if (rc == FM_FRAME_ERR) {
            framing_error(conn);
            return;
        }
        set->h.frame(conn, body, len, set->h.arg);
    }
    fm_frame_reader_trim(conn->reader);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fm_conn *conn = s->data;

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
    run_frames(conn);
}

void fm_conns_drain(fm_conns *set)
{
    fm_list *n, *next;

    set->draining = 1;
    for (n = set->all.next; n != &set->all; n = next) {
        next = n->next;
        resume(fm_list_entry(n, fm_conn, in_set));
    }
}

int fm_conn_peer(const fm_conn *conn, struct ucred *cred)
{
    socklen_t len = sizeof(*cred);
    uv_os_fd_t fd;

    if (uv_fileno((const uv_handle_t *)&conn->pipe, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) != 0)
        return -1;
    return 0;
}

fm_conn *fm_conn_accept(fm_conns *set, uv_stream_t *listener)
{
    fm_conn *conn = calloc(1, sizeof(*conn));

    if (conn == NULL)
        return NULL;
    conn->set = set;
    conn->serial = ++set->next_serial;
    conn->flow = fm_link_flow_create();
    fm_outq_init(&conn->outq);
    fm_list_init(&conn->in_flush);
    fm_list_init(&conn->in_paused);
    fm_list_init(&conn->reqs);
    conn->reader = fm_frame_reader_create((size_t)set->cfg->max_frame_bytes);
    uv_pipe_init(set->loop, &conn->pipe, 0);
    conn->pipe.data = conn;
    fm_list_push_back(&set->all, &conn->in_set);
    set->n++;
    set->total++;
    if (uv_accept(listener, (uv_stream_t *)&conn->pipe) != 0 || conn->reader == NULL ||
        conn->flow == NULL) {
        fm_conn_close(conn);
        return NULL;
    }
    return conn;
}

int fm_conn_start(fm_conn *conn)
{
    if (uv_read_start((uv_stream_t *)&conn->pipe, on_alloc, on_read) != 0) {
        fm_conn_close(conn);
        return -1;
    }
    fm_log_debug("client %llu: connected", (unsigned long long)conn->serial);
    return 0;
}
