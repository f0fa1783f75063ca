/* reply.c -- frames built in place in a connection's output buffer.
 *
 * The 4-byte length is reserved first and patched when the object is
 * closed, so a reply costs no intermediate copy. Output past
 * max_output_bytes closes the connection: a client that stops reading must
 * not make the daemon hold unbounded memory on its behalf. */
#include <string.h>

#include "log.h"
#include "server.h"

static size_t frame_start(fm_conn *conn)
{
    size_t start = conn->out.len;

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

size_t fm_event_start(fm_conn *conn, const char *event)
{
    size_t start = frame_start(conn);

    fm_buf_puts(&conn->out, "{\"event\":\"");
    fm_buf_puts(&conn->out, event);
    fm_buf_putc(&conn->out, '"');
    return start;
}

/* Output just grew: cap it, or have it written this loop turn. */
static void queued(fm_conn *conn)
{
    const fm_config *cfg = conn->srv->cfg;

    if ((int64_t)(conn->out.len + conn->writing.len) > cfg->max_output_bytes) {
        fm_log_warn("client %llu: more than max_output_bytes (%lld) unread; closing",
                    (unsigned long long)conn->serial, (long long)cfg->max_output_bytes);
        fm_conn_doom(conn);
        return;
    }
    fm_server_schedule_flush(conn->srv, conn);
}

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
    fm_buf_patch_u32be(b, start, (uint32_t)(b->len - start - FM_FRAME_HEADER_LEN));
    queued(conn);
}

void fm_conn_send(fm_conn *conn, const char *frame, size_t len)
{
    if (!fm_conn_alive(conn))
        return;
    fm_buf_append(&conn->out, frame, len);
    if (conn->out.oom) {
        fm_log_error("client %llu: out of memory for an event; closing",
                     (unsigned long long)conn->serial);
        fm_conn_doom(conn);
        return;
    }
    queued(conn);
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

static void put_name(fm_conn *conn, const char *name)
{
    fm_buf_puts(&conn->out, ",\"");
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

void fm_reply_put_raw(fm_conn *conn, const char *name, const char *json, size_t len)
{
    put_name(conn, name);
    fm_buf_append(&conn->out, json, len);
}
