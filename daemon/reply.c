/* reply.c -- frames built in place in a connection's output buffer (see
 * reply.h). */
#include <string.h>

#include "log.h"
#include "reply.h"

/* Output piling up behind a write in progress goes on in a fresh buffer:
 * growing one ever larger would copy all of it at each doubling. */
#define SEAL_AT (256 * 1024)

static size_t frame_start(fm_conn *conn)
{
    size_t start;

    if (fm_conn_writing(conn) && conn->out.len >= SEAL_AT)
        fm_outq_push_buf(&conn->outq, &conn->out);
    start = conn->out.len;

    fm_buf_put_u32be(&conn->out, 0);
    return start;
}

size_t fm_reply_ok_start(fm_conn *conn, const char *id, size_t idlen)
{
    size_t start = frame_start(conn);

    if (id != NULL) {
        fm_buf_puts(&conn->out, "{\"id\":");
        fm_buf_append(&conn->out, id, idlen);
        fm_buf_puts(&conn->out, ",\"ok\":true");
    } else {
        fm_buf_puts(&conn->out, "{\"ok\":true");
    }
    return start;
}

size_t fm_reply_event_start(fm_conn *conn, const char *event)
{
    size_t start = frame_start(conn);

    fm_buf_puts(&conn->out, "{\"event\":\"");
    fm_buf_puts(&conn->out, event);
    fm_buf_putc(&conn->out, '"');
    return start;
}

static void overflow(fm_conn *conn)
{
    fm_log_limited(FM_LOG_WARN, "client %llu: more than max_output_bytes (%lld) unread; closing",
                (unsigned long long)conn->serial, (long long)conn->set->cfg->max_output_bytes);
    fm_conn_doom(conn);
}

static size_t queued(const fm_conn *conn)
{
    return conn->out.len + conn->outq.bytes;
}

int fm_reply_room(fm_conn *conn, size_t n)
{
    size_t max = (size_t)conn->set->cfg->max_output_bytes;

    if (!fm_conn_alive(conn))
        return 0;
    if (queued(conn) > max || n > max - queued(conn)) {
        overflow(conn);
        return 0;
    }
    return 1;
}

void fm_reply_reserve(fm_conn *conn, size_t n)
{
    fm_buf_reserve(&conn->out, n);
}

/* Output just grew: cap it, or have it written this loop turn. */
static void grew(fm_conn *conn)
{
    if (queued(conn) > (size_t)conn->set->cfg->max_output_bytes)
        overflow(conn);
    else
        fm_conn_schedule_flush(conn);
}

/* A frame too large for the connection's output never gets its length
 * written: it is cut off and the connection doomed. max_output_bytes is at
 * most UINT32_MAX (config.c), so every frame that stays can be framed. */
void fm_reply_finish(fm_conn *conn, size_t start)
{
    fm_buf *b = &conn->out;

    fm_buf_putc(b, '}');
    if (b->oom) {
        fm_log_error("client %llu: out of memory for a reply; closing",
                     (unsigned long long)conn->serial);
        fm_conn_doom(conn);
        return;
    }
    if (queued(conn) > (size_t)conn->set->cfg->max_output_bytes) {
        b->len = start;
        overflow(conn);
        return;
    }
    fm_buf_patch_u32be(b, start, (uint32_t)(b->len - start - FM_FRAME_HEADER_LEN));
    fm_conn_schedule_flush(conn);
}

void fm_reply_send(fm_conn *conn, const char *frame, size_t len)
{
    if (!fm_reply_room(conn, len))
        return;
    fm_buf_append(&conn->out, frame, len);
    if (conn->out.oom) {
        fm_log_error("client %llu: out of memory for an event; closing",
                     (unsigned long long)conn->serial);
        fm_conn_doom(conn);
        return;
    }
    grew(conn);
}

/* Below this a copy costs less than a chunk of its own. */
#define SHARE_MIN 4096

void fm_reply_send_shared(fm_conn *conn, fm_shared *f)
{
    if (f->len < SHARE_MIN) {
        fm_reply_send(conn, f->data, f->len);
        return;
    }
    if (!fm_reply_room(conn, f->len))
        return;
    /* What `out` holds goes before the shared frame. */
    if ((conn->out.len > 0 && fm_outq_push_buf(&conn->outq, &conn->out) != 0) ||
        fm_outq_push_shared(&conn->outq, f) != 0) {
        fm_log_error("client %llu: out of memory for an event; closing",
                     (unsigned long long)conn->serial);
        fm_conn_doom(conn);
        return;
    }
    fm_conn_schedule_flush(conn);
}

void fm_reply_error(fm_conn *conn, const char *id, size_t idlen,
                    fm_errcode code, const char *msg)
{
    size_t start = frame_start(conn);

    fm_buf_putc(&conn->out, '{');
    if (id != NULL) {
        fm_buf_puts(&conn->out, "\"id\":");
        fm_buf_append(&conn->out, id, idlen);
        fm_buf_putc(&conn->out, ',');
    }
    fm_buf_puts(&conn->out, "\"ok\":false,\"error\":{\"code\":\"");
    fm_buf_puts(&conn->out, fm_errcode_name(code));
    fm_buf_puts(&conn->out, "\",\"message\":");
    fm_buf_put_json_string(&conn->out, msg, strlen(msg));
    fm_buf_putc(&conn->out, '}');
    fm_reply_finish(conn, start);
}

/* The comma, unless the member is the first of an object just opened. */
static void put_sep(fm_conn *conn)
{
    if (conn->out.len == 0 || conn->out.data[conn->out.len - 1] != '{')
        fm_buf_putc(&conn->out, ',');
}

static void put_name(fm_conn *conn, const char *name)
{
    put_sep(conn);
    fm_buf_putc(&conn->out, '"');
    fm_buf_puts(&conn->out, name);
    fm_buf_puts(&conn->out, "\":");
}

void fm_reply_put_str(fm_conn *conn, const char *name, const char *v, size_t len)
{
    put_name(conn, name);
    fm_buf_put_json_string(&conn->out, v, len);
}

void fm_reply_put_int(fm_conn *conn, const char *name, int64_t v)
{
    put_name(conn, name);
    fm_buf_put_i64(&conn->out, v);
}

void fm_reply_put_bool(fm_conn *conn, const char *name, int v)
{
    put_name(conn, name);
    fm_buf_puts(&conn->out, v ? "true" : "false");
}

void fm_reply_put_maybe(fm_conn *conn, const char *name, int known, int64_t v)
{
    if (known)
        fm_reply_put_int(conn, name, v);
    else
        fm_reply_put_raw(conn, name, "null", 4);
}

void fm_reply_put_raw(fm_conn *conn, const char *name, const char *json, size_t len)
{
    put_name(conn, name);
    fm_buf_append(&conn->out, json, len);
}

void fm_reply_put_member(fm_conn *conn, const char *name, size_t nlen, const char *json,
                         size_t len)
{
    put_sep(conn);
    fm_buf_put_json_string(&conn->out, name, nlen);
    fm_buf_putc(&conn->out, ':');
    fm_buf_append(&conn->out, json, len);
}

void fm_reply_open(fm_conn *conn, const char *name)
{
    put_name(conn, name);
    fm_buf_putc(&conn->out, '{');
}

void fm_reply_close(fm_conn *conn)
{
    fm_buf_putc(&conn->out, '}');
}
