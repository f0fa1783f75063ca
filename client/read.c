/* read.c -- libfmredis's frames in: each frame read is the reply the call
 * waits for, an event (queued), or a late reply of a call that timed out
 * (dropped, its lock given back if it was an acquire's). Also a call's whole
 * exchange (send, then wait for its reply) and the typed fields of the
 * reply, which stays in the reader's buffer and is parsed in place.
 *
 * Parsing never reads from the socket: wait_reply() and fm__fail_send() read,
 * then hand whole frames to fm__dispatch(). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmredis_int.h"

/* ------------------------------------------------------------------------ */
/* Reply values                                                             */

int fm__member(const fm_json_val *obj, const char *name, fm_json_val *out)
{
    return fm_json_object_get(obj, name, strlen(name), out);
}

/* A malloc'd NUL-terminated decoding of a string value, or NULL (OOM). */
static char *decode_dup(const fm_json_val *s)
{
    size_t n = fm_json_string_len(s), got;
    char *p = malloc(n + 1);

    if (p == NULL)
        return NULL;
    if (fm_json_string_decode(s, p, n + 1, &got, NULL) != 0) {
        free(p);
        return NULL;
    }
    p[got] = '\0';
    return p;
}

/* A member of a frame's root, found in the index its scan made. */
static int frame_member(const fm_json_index *idx, const fm_json_val *root, const char *name,
                        fm_json_val *out)
{
    return fm_json_index_get(idx, root, name, strlen(name), out);
}

int fm__reply_member(const fm_client *c, const char *name, fm_json_val *out)
{
    return frame_member(&c->rindex, &c->rroot, name, out);
}

char *fm__span_dup(const char *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s == NULL)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Decodes a string value into out[cap], NUL-terminated, truncated to fit
 * (on a UTF-8 boundary). */
static void copy_str(const fm_json_val *v, char *out, size_t cap)
{
    size_t n = fm_json_string_len(v), got;
    char *full;

    if (cap == 0)
        return;
    out[0] = '\0';
    if (n < cap) {
        if (fm_json_string_decode(v, out, cap, &got, NULL) == 0)
            out[got] = '\0';
        return;
    }
    full = decode_dup(v);
    if (full == NULL)
        return;
    n = cap - 1;
    while (n > 0 && ((unsigned char)full[n] & 0xc0) == 0x80)
        n--;
    memcpy(out, full, n);
    out[n] = '\0';
    free(full);
}

/* Decodes an optional string member into *out; a member of another type is
 * left out. Returns -1 only when memory ran out. */
int fm__opt_string(const fm_json_val *obj, const char *name, char **out)
{
    fm_json_val v;

    *out = NULL;
    if (!fm__member(obj, name, &v) || v.type != FM_JSON_STRING)
        return 0;
    *out = decode_dup(&v);
    return *out == NULL ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Matching frames to calls                                                 */

/* Whether two id values are the same JSON value (integers by value,
 * strings by decoded bytes). */
static int same_id(const fm_json_val *a, const fm_json_val *b)
{
    if (a->type != b->type)
        return 0;
    if (a->type == FM_JSON_NUMBER) {
        int64_t x, y;

        return fm_json_int64(a, -ID_MAX, ID_MAX, &x) == 0 &&
               fm_json_int64(b, -ID_MAX, ID_MAX, &y) == 0 && x == y;
    }
    if (a->type == FM_JSON_STRING) {
        size_t n = fm_json_string_len(a), got;
        char tmp[RAW_ID_MAX * 6 + 1];

        if (n >= sizeof(tmp) ||
            fm_json_string_decode(a, tmp, sizeof(tmp), &got, NULL) != 0)
            return 0;
        return fm_json_string_eq(b, tmp, got);
    }
    return 0;
}

/* Handles one frame. Returns 1 when it is the reply w waits for (then
 * c->rbody/rroot name it), 0 when it was queued or dropped, -1 on a fatal
 * error (the connection is closed, the error set). */
static int handle_frame(fm_client *c, const char *body, size_t len,
                        const want *w)
{
    fm_json_val root, okv, idv, ev;
    fm_json_index idx;
    const char *why = NULL;
    size_t at = 0;
    int has_ok, has_id;

    /* The daemon validated what its replies carry (executions from Redis
     * and from clients alike): they are scanned, not checked again, and
     * the scan notes the spans the call will look up. */
    if (fm_json_scan(body, len, &root, &idx, w->members, &why, &at) != 0)
        return fm__fail_close(c, FM_ERR_PROTOCOL,
                              "fmredisd sent invalid JSON (%s at byte %zu)",
                              why ? why : "?", at);
    if (root.type != FM_JSON_OBJECT)
        return fm__fail_close(c, FM_ERR_PROTOCOL,
                              "fmredisd sent a frame that is not an object");
    has_ok = frame_member(&idx, &root, "ok", &okv);
    if (!has_ok) {
        if (!frame_member(&idx, &root, "event", &ev))
            return fm__fail_close(c, FM_ERR_PROTOCOL, "fmredisd sent a frame "
                                  "with neither ok nor event");
        if (fm__queue_event(c, &root) != 0)
            return fm__fail_close(c, FM_ERR_OOM,
                                  "out of memory queueing an event");
        return 0;
    }
    if (okv.type != FM_JSON_TRUE && okv.type != FM_JSON_FALSE)
        return fm__fail_close(c, FM_ERR_PROTOCOL,
                              "fmredisd sent a reply whose ok is not a bool");
    has_id = frame_member(&idx, &root, "id", &idv);
    if (has_id && idv.type == FM_JSON_NUMBER) {
        int64_t id;

        if (fm_json_int64(&idv, -ID_MAX, ID_MAX, &id) == 0) {
            if (w->kind == WANT_ID && id == w->id)
                goto mine;
            if (c->orphans != NULL)
                fm__release_orphan(c, &root, id, okv.type == FM_JSON_TRUE);
        }
    }
    if (has_id && w->kind == WANT_RAW_ID && same_id(&idv, &w->raw_id))
        goto mine;
    if (!has_id) {
        /* An error without id answers a request the daemon could not read
         * (or precedes a close, e.g. forbidden): the call in progress is the
         * only candidate, since every request of ours carries an id. */
        if (w->kind == WANT_NO_ID ||
            (w->kind != WANT_EVENTS && okv.type == FM_JSON_FALSE))
            goto mine;
        if (okv.type == FM_JSON_FALSE) {
            fm_json_val e, code, msg;

            if (frame_member(&idx, &root, "error", &e) && e.type == FM_JSON_OBJECT &&
                fm__member(&e, "code", &code) && code.type == FM_JSON_STRING) {
                copy_str(&code, c->conn_code, sizeof(c->conn_code));
                c->conn_msg[0] = '\0';
                if (fm__member(&e, "message", &msg) &&
                    msg.type == FM_JSON_STRING)
                    copy_str(&msg, c->conn_msg, sizeof(c->conn_msg));
            }
        }
    }
    return 0;   /* a late reply: dropped */
mine:
    c->rbody = body;
    c->rlen = len;
    c->rroot = root;
    c->rindex = idx;
    return 1;
}

/* Hands every whole buffered frame to handle_frame(). Returns 1 when the
 * awaited reply was found (frames after it stay buffered), 0 when the
 * buffer holds no more whole frames, -1 on a fatal error. */
int fm__dispatch(fm_client *c, const want *w)
{
    const char *body;
    size_t len;
    int r;

    while ((r = fm_frame_reader_next(c->rd, &body, &len)) == FM_FRAME_OK) {
        int h = handle_frame(c, body, len, w);

        if (h != 0)
            return h;
        if (c->fd < 0)
            return -1;
    }
    if (r == FM_FRAME_ERR) {
        if (c->rd->err == FM_E_FRAME_TOO_LARGE)
            return fm__fail_close(c, FM_ERR_PROTOCOL,
                                  "reply of %lu bytes exceeds the client's "
                                  "limit of %zu", (unsigned long)c->rd->err_len,
                                  c->rd->max_body);
        return fm__fail_close(c, FM_ERR_PROTOCOL,
                              "fmredisd sent a frame of length 0");
    }
    return 0;
}

/* After the reply: queues the events already buffered behind it, so that
 * fm_client_has_events() tells the truth (they will not make the fd
 * readable). The reply's body is not moved by this: only reads move it. An
 * error here closes the connection but does not fail the call that already
 * has its reply; the next call reports it. */
static void drain_after_reply(fm_client *c)
{
    const char *body;
    size_t len;
    const want none = { .kind = WANT_EVENTS };
    fm_client_error err = c->err;
    char errstr[ERRSTR_MAX], errcode[ERRCODE_MAX];

    memcpy(errstr, c->errstr, sizeof(errstr));
    memcpy(errcode, c->errcode, sizeof(errcode));
    while (c->fd >= 0 &&
           fm_frame_reader_next(c->rd, &body, &len) == FM_FRAME_OK)
        if (handle_frame(c, body, len, &none) != 0)
            break;
    c->err = err;
    memcpy(c->errstr, errstr, sizeof(errstr));
    memcpy(c->errcode, errcode, sizeof(errcode));
}

/* Reads and dispatches until w's reply arrives or deadline passes. */
static int wait_reply(fm_client *c, const want *w, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd;
        int r = fm__dispatch(c, w);
        int t;
        ssize_t n;

        if (r == 1) {
            drain_after_reply(c);
            return FM_OK;
        }
        if (r < 0)
            return FM_ERR;
        t = fm__poll_timeout(deadline);
        if (t == 0)
            return fm__fail(c, FM_ERR_TIMEOUT, "no reply within %lld ms",
                            (long long)c->call_ms);
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        r = poll(&pfd, 1, t);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return fm__fail_close(c, FM_ERR_IO, "poll: %s", strerror(errno));
        }
        if (r == 0)
            continue;   /* the deadline check above reports it */
        n = fm__read_once(c);
        if (n == 0) {
            /* Whole frames before the EOF still count. */
            if (fm__dispatch(c, w) == 1) {
                drain_after_reply(c);
                return FM_OK;
            }
            if (c->fd < 0)
                return FM_ERR;
            return fm__fail_eof(c);
        }
        if (n == -2)
            return FM_ERR;
    }
}

/* After a failed send: the daemon may have said why before closing
 * (forbidden, too_many_clients, shutting_down...). Read what is there. */
int fm__fail_send(fm_client *c, const want *w)
{
    int e = errno;

    if (c->fd < 0 || c->err != FM_ERR_NONE)
        return FM_ERR;  /* fm__send_all already set it */
    for (;;) {
        ssize_t n = fm__read_once(c);
        int r;

        if (n == -2)
            return FM_ERR;
        r = fm__dispatch(c, w);
        if (r == 1) {
            /* The daemon's answer (frame_too_large, forbidden...) is the
             * call's error; the connection is gone all the same. */
            snprintf(c->closed_why, sizeof(c->closed_why),
                     "connection closed by fmredisd");
            fm__close_fd(c);
            return FM_OK;
        }
        if (r < 0)
            return FM_ERR;
        if (n <= 0)
            break;
    }
    if (c->conn_code[0] != '\0')
        return fm__fail_eof(c);
    if (e == EPIPE || e == ECONNRESET)
        return fm__fail_close(c, FM_ERR_CLOSED,
                              "connection closed by fmredisd");
    return fm__fail_close(c, FM_ERR_IO, "send: %s", strerror(e));
}

/* ------------------------------------------------------------------------ */
/* A call's exchange and its results                                        */

/* Sends the request in c->out (frame complete) and waits for the reply
 * matching w. FM_OK for ok:true; FM_ERR with FM_ERR_SERVER for ok:false (the
 * reply stays in c->rroot); FM_ERR otherwise. */
int fm__exchange(fm_client *c, const want *w, int64_t deadline)
{
    fm_json_val okv, e, v;

    if (fm__send_all(c, deadline) != FM_OK) {
        if (fm__fail_send(c, w) != FM_OK)
            return FM_ERR;
    } else if (wait_reply(c, w, deadline) != FM_OK) {
        return FM_ERR;
    }
    fm__reply_member(c, "ok", &okv);
    if (okv.type == FM_JSON_TRUE)
        return FM_OK;
    c->err = FM_ERR_SERVER;
    snprintf(c->errcode, sizeof(c->errcode), "internal");
    snprintf(c->errstr, sizeof(c->errstr), "fmredisd answered ok:false");
    if (fm__reply_member(c, "error", &e) && e.type == FM_JSON_OBJECT) {
        if (fm__member(&e, "code", &v) && v.type == FM_JSON_STRING)
            copy_str(&v, c->errcode, sizeof(c->errcode));
        if (fm__member(&e, "message", &v) && v.type == FM_JSON_STRING)
            copy_str(&v, c->errstr, sizeof(c->errstr));
    }
    return FM_ERR;
}

/* A result field of the reply, of the given type. */
int fm__result(fm_client *c, const char *name, fm_json_type type,
               fm_json_val *out)
{
    if (!fm__reply_member(c, name, out))
        return fm__fail(c, FM_ERR_PROTOCOL, "reply has no \"%s\"", name);
    if (out->type != type &&
        !(type == FM_JSON_TRUE && out->type == FM_JSON_FALSE))
        return fm__fail(c, FM_ERR_PROTOCOL, "reply's \"%s\" has the wrong type",
                        name);
    return FM_OK;
}

int fm__result_bool(fm_client *c, const char *name, int *out)
{
    fm_json_val v;

    if (fm__result(c, name, FM_JSON_TRUE, &v) != FM_OK)
        return FM_ERR;
    if (out != NULL)
        *out = v.type == FM_JSON_TRUE;
    return FM_OK;
}

int fm__result_int(fm_client *c, const char *name, int64_t *out)
{
    fm_json_val v;
    int64_t x;

    if (fm__result(c, name, FM_JSON_NUMBER, &v) != FM_OK)
        return FM_ERR;
    if (fm_json_int64(&v, INT64_MIN, INT64_MAX, &x) != 0)
        return fm__fail(c, FM_ERR_PROTOCOL, "reply's \"%s\" is not an integer",
                        name);
    if (out != NULL)
        *out = x;
    return FM_OK;
}

/* Copies a string result into out[cap] (truncated to fit). */
int fm__result_str(fm_client *c, const char *name, char *out, size_t cap)
{
    fm_json_val v;

    if (fm__result(c, name, FM_JSON_STRING, &v) != FM_OK)
        return FM_ERR;
    if (out != NULL)
        copy_str(&v, out, cap);
    return FM_OK;
}

/* Copies the span of a reply value: a malloc'd NUL-terminated string. */
int fm__copy_span(fm_client *c, const fm_json_val *v, char **out,
                  size_t *len)
{
    char *s = fm__span_dup(v->p, v->len);

    if (s == NULL)
        return fm__fail(c, FM_ERR_OOM, "out of memory copying the reply");
    *out = s;
    if (len != NULL)
        *len = v->len;
    return FM_OK;
}
