/* fmredis.c -- libfmredis: a blocking client of fmredisd.
 *
 * One client owns one socket, a frame reader, an output buffer, a buffer of
 * pending output and a queue of events. A call builds its request in the
 * output buffer (header first, patched once the body is known), sends it
 * under the call's deadline, then feeds the reader until the frame whose id
 * is the call's arrives. Every other frame met on the way is either an event
 * (queued) or a late reply of an earlier call that timed out (dropped, except
 * that a late acquire that won the lock is released, so a timed-out call
 * never leaves a lock behind on a live connection).
 *
 * Those releases are the only bytes the reader sends. It runs inside some
 * other call, so it must neither block (that call has its own deadline) nor
 * touch that call's request and state: it queues them as pending output,
 * sent without blocking, and before the first byte of any later request.
 *
 * The reply is not copied: its body stays in the reader's buffer, which is
 * only written by the next read, and the typed functions parse it in place
 * before returning. That keeps a 100 MiB get_many at one copy in memory.
 *
 * Errors that leave the byte stream in an unknown state (I/O, EOF, framing,
 * invalid JSON, a half-sent request) close the socket at once: a connection
 * the library cannot use any more should not keep locks held in the daemon.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fm_buf.h"
#include "fm_frame.h"
#include "fm_json.h"
#include "fmredis.h"

#define ERRSTR_MAX 256
#define ERRCODE_MAX 64
#define READ_CHUNK 65536
#define ID_MAX 9007199254740991LL /* 2^53 - 1: the contract's integer ids */
#define RAW_ID_MAX 256            /* longest usable string id */

typedef struct ev_node {
    struct ev_node *next;
    fm_event ev;
} ev_node;

/* An acquire whose call timed out: if its reply still brings a token, the
 * lock is released as soon as the reply arrives. */
typedef struct orphan {
    struct orphan *next;
    int64_t id;
    char *key;
} orphan;

/* What the reader waits for. */
typedef enum want_kind {
    WANT_EVENTS,        /* no call in progress */
    WANT_ID,            /* a reply with integer id `id` */
    WANT_RAW_ID,        /* a reply whose id equals the raw request's `raw_id` */
    WANT_NO_ID          /* the next reply without an id */
} want_kind;

typedef struct want {
    want_kind kind;
    int64_t id;
    fm_json_val raw_id;
} want;

struct fm_client {
    int fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int timeout_ms;
    size_t max_reply;
    int64_t next_id;
    int64_t call_ms;    /* the current call's timeout, for its message */
    int sent;           /* the current call's request went out whole; only
                           send_all() writes it */

    fm_frame_reader *rd;
    fm_buf out;         /* the current call's request */
    fm_buf pending;     /* whole frames the reader queued (releases of
                           orphans), minus what was sent of the first */

    /* The reply of the current call: a span of the reader's buffer. */
    const char *rbody;
    size_t rlen;
    fm_json_val rroot;

    ev_node *ev_head, *ev_tail;
    size_t ev_count;
    orphan *orphans;

    fm_client_error err;
    char errstr[ERRSTR_MAX];
    char errcode[ERRCODE_MAX];

    /* Why the connection was closed, for later calls. */
    char closed_why[ERRSTR_MAX];
    /* An error frame without id met while no call waited (forbidden,
     * too_many_clients, frame_too_large...): the reason of a close to come. */
    char conn_code[ERRCODE_MAX];
    char conn_msg[ERRSTR_MAX];
};

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

static void vset_err(fm_client *c, fm_client_error err, const char *fmt,
                     va_list ap) __attribute__((format(printf, 3, 0)));
static void vset_err(fm_client *c, fm_client_error err, const char *fmt,
                     va_list ap)
{
    c->err = err;
    c->errcode[0] = '\0';
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, ap);
}

static int fail(fm_client *c, fm_client_error err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(fm_client *c, fm_client_error err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vset_err(c, err, fmt, ap);
    va_end(ap);
    return FM_ERR;
}

static void drop_orphans(fm_client *c)
{
    while (c->orphans != NULL) {
        orphan *o = c->orphans;

        c->orphans = o->next;
        free(o->key);
        free(o);
    }
}

static void close_fd(fm_client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    /* Late replies can no longer come: nothing to release later either. */
    drop_orphans(c);
    /* Releases not sent die with the stream they belong to (the daemon
     * releases those locks on close, or they expire): a frame's tail must
     * never reach the next connection. */
    fm_buf_reset(&c->pending);
    c->pending.oom = 0;
}

/* Fails the call and closes the connection: the stream is unusable. */
static int fail_close(fm_client *c, fm_client_error err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_close(fm_client *c, fm_client_error err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vset_err(c, err, fmt, ap);
    va_end(ap);
    snprintf(c->closed_why, sizeof(c->closed_why), "%s", c->errstr);
    close_fd(c);
    return FM_ERR;
}

/* The daemon closed the stream. If it said why first (an error frame
 * without id), that is the error; else it is a plain close. */
static int fail_eof(fm_client *c)
{
    if (c->conn_code[0] != '\0') {
        fail_close(c, FM_ERR_SERVER, "%s", c->conn_msg);
        snprintf(c->errcode, sizeof(c->errcode), "%s", c->conn_code);
        return FM_ERR;
    }
    return fail_close(c, FM_ERR_CLOSED, "connection closed by fmredisd");
}

static void clear_err(fm_client *c)
{
    c->err = FM_ERR_NONE;
    c->errstr[0] = '\0';
    c->errcode[0] = '\0';
}

/* Fails because the connection is gone, saying why it was closed. */
static int fail_not_connected(fm_client *c)
{
    return fail(c, FM_ERR_CLOSED, "not connected%s%s",
                c->closed_why[0] ? ": " : "", c->closed_why);
}

/* The start of every call: clears the error; fails when closed. */
static int call_begin(fm_client *c)
{
    clear_err(c);
    c->rbody = NULL;
    if (c->fd < 0)
        return fail_not_connected(c);
    return FM_OK;
}

fm_client_error fm_client_err(const fm_client *c)
{
    return c->err;
}

const char *fm_client_errstr(const fm_client *c)
{
    return c->errstr;
}

const char *fm_client_errcode(const fm_client *c)
{
    return c->err == FM_ERR_SERVER ? c->errcode : "";
}

const char *fm_client_error_name(fm_client_error err)
{
    switch (err) {
    case FM_ERR_NONE: return "ok";
    case FM_ERR_IO: return "io";
    case FM_ERR_CLOSED: return "closed";
    case FM_ERR_TIMEOUT: return "timeout";
    case FM_ERR_PROTOCOL: return "protocol";
    case FM_ERR_SERVER: return "server";
    case FM_ERR_OOM: return "oom";
    case FM_ERR_ARG: return "invalid_argument";
    case FM_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown";
}

/* ------------------------------------------------------------------------ */
/* Time                                                                     */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline is an absolute monotonic time in ms, or -1 for none. */
static int64_t deadline_in(int64_t ms)
{
    if (ms < 0)
        return -1;
    if (ms > INT64_MAX / 4)
        ms = INT64_MAX / 4;
    return now_ms() + ms;
}

/* The poll(2) timeout left until deadline: -1 (none), 0 (passed), or ms. */
static int poll_timeout(int64_t deadline)
{
    int64_t left;

    if (deadline < 0)
        return -1;
    left = deadline - now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

static int effective_timeout(int timeout_ms)
{
    if (timeout_ms == FM_TIMEOUT_DEFAULT)
        return FM_DEFAULT_TIMEOUT_MS;
    return timeout_ms < 0 ? FM_TIMEOUT_NONE : timeout_ms;
}

/* ------------------------------------------------------------------------ */
/* Connection                                                               */

static int open_socket(fm_client *c)
{
    struct sockaddr_un sa;
    int fd, rc, flags;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(c, FM_ERR_IO, "socket: %s", strerror(errno));
    /* A stream connect to a Unix socket blocks only while the listener's
     * backlog is full, and honours SO_SNDTIMEO while it does. */
    if (c->timeout_ms > 0) {
        struct timeval tv = {
            .tv_sec = c->timeout_ms / 1000,
            .tv_usec = (c->timeout_ms % 1000) * 1000,
        };
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
    do
        rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;

        close(fd);
        if (e == EAGAIN || e == EINPROGRESS)
            return fail(c, FM_ERR_TIMEOUT, "connect to %s: timed out",
                        c->path);
        return fail(c, FM_ERR_IO, "connect to %s: %s", c->path, strerror(e));
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        int e = errno;

        close(fd);
        return fail(c, FM_ERR_IO, "fcntl: %s", strerror(e));
    }
    c->fd = fd;
    c->closed_why[0] = '\0';
    c->conn_code[0] = '\0';
    c->conn_msg[0] = '\0';
    return FM_OK;
}

fm_client *fm_connect(const char *socket_path, int timeout_ms)
{
    fm_client *c = calloc(1, sizeof(*c));
    const char *path = socket_path;

    if (c == NULL)
        return NULL;
    c->fd = -1;
    c->timeout_ms = effective_timeout(timeout_ms);
    c->max_reply = FM_DEFAULT_MAX_REPLY;
    c->next_id = 1;
    fm_buf_init(&c->out);
    fm_buf_init(&c->pending);
    c->rd = fm_frame_reader_create(c->max_reply);
    if (c->rd == NULL) {
        free(c);
        return NULL;
    }
    if (path == NULL || path[0] == '\0')
        path = getenv(FM_SOCKET_ENV);
    if (path == NULL || path[0] == '\0')
        path = FM_DEFAULT_SOCKET;
    if (strlen(path) >= sizeof(c->path)) {
        fail(c, FM_ERR_ARG, "socket path longer than %zu bytes: %s",
             sizeof(c->path) - 1, path);
        snprintf(c->closed_why, sizeof(c->closed_why), "%s", c->errstr);
        return c;
    }
    memcpy(c->path, path, strlen(path) + 1);
    if (open_socket(c) != FM_OK)
        snprintf(c->closed_why, sizeof(c->closed_why), "%s", c->errstr);
    return c;
}

static void free_events(fm_client *c)
{
    while (c->ev_head != NULL) {
        ev_node *n = c->ev_head;

        c->ev_head = n->next;
        fm_event_clear(&n->ev);
        free(n);
    }
    c->ev_tail = NULL;
    c->ev_count = 0;
}

void fm_client_free(fm_client *c)
{
    if (c == NULL)
        return;
    close_fd(c);
    free_events(c);
    fm_frame_reader_free(c->rd);
    fm_buf_free(&c->out);
    fm_buf_free(&c->pending);
    free(c);
}

static int reset_reader(fm_client *c)
{
    fm_frame_reader *rd = fm_frame_reader_create(c->max_reply);

    if (rd == NULL)
        return fail(c, FM_ERR_OOM, "out of memory");
    fm_frame_reader_free(c->rd);
    c->rd = rd;
    return FM_OK;
}

int fm_client_reconnect(fm_client *c)
{
    clear_err(c);
    c->rbody = NULL;
    close_fd(c);
    if (c->path[0] == '\0')
        return fail(c, FM_ERR_ARG, "%s", c->closed_why);
    if (reset_reader(c) != FM_OK)
        return FM_ERR;
    if (open_socket(c) != FM_OK) {
        snprintf(c->closed_why, sizeof(c->closed_why), "%s", c->errstr);
        return FM_ERR;
    }
    return FM_OK;
}

void fm_client_close(fm_client *c)
{
    if (c->fd >= 0)
        snprintf(c->closed_why, sizeof(c->closed_why),
                 "closed by fm_client_close()");
    close_fd(c);
}

int fm_client_connected(const fm_client *c)
{
    return c->fd >= 0;
}

const char *fm_client_socket_path(const fm_client *c)
{
    return c->path;
}

void fm_client_set_timeout(fm_client *c, int timeout_ms)
{
    c->timeout_ms = effective_timeout(timeout_ms);
}

int fm_client_timeout(const fm_client *c)
{
    return c->timeout_ms;
}

void fm_client_set_max_reply(fm_client *c, size_t max_bytes)
{
    if (max_bytes == 0)
        max_bytes = FM_DEFAULT_MAX_REPLY;
    if (max_bytes > UINT32_MAX)
        max_bytes = UINT32_MAX;
    c->max_reply = max_bytes;
    c->rd->max_body = max_bytes;
}

int fm_client_fd(const fm_client *c)
{
    return c->fd;
}

size_t fm_client_has_events(const fm_client *c)
{
    return c->ev_count;
}

/* ------------------------------------------------------------------------ */
/* Building frames                                                          */

/* A request frame is built at the end of a buffer: the call's request in
 * c->out, the reader's releases in c->pending, so neither overwrites the
 * other. */

static int64_t take_id(fm_client *c)
{
    int64_t id = c->next_id;

    c->next_id = c->next_id >= ID_MAX ? 1 : c->next_id + 1;
    return id;
}

/* Starts a frame at the end of b: a length to patch, then {"op":..,"id":N. */
static void frame_begin(fm_buf *b, const char *op, int64_t id)
{
    fm_buf_put_u32be(b, 0);
    fm_buf_puts(b, "{\"op\":");
    fm_buf_put_json_string(b, op, strlen(op));
    fm_buf_puts(b, ",\"id\":");
    fm_buf_put_i64(b, id);
}

static void frame_name(fm_buf *b, const char *name)
{
    fm_buf_putc(b, ',');
    fm_buf_put_json_string(b, name, strlen(name));
    fm_buf_putc(b, ':');
}

static void frame_str(fm_buf *b, const char *name, const char *v, size_t n)
{
    frame_name(b, name);
    fm_buf_put_json_string(b, v, n);
}

/* Closes the object of the frame begun at offset start and writes its
 * length (*body) into its header. -1 when memory ran out on the way (b->oom)
 * or the body is too large for the header. */
static int frame_end(fm_buf *b, size_t start, size_t *body)
{
    fm_buf_putc(b, '}');
    if (b->oom)
        return -1;
    *body = b->len - start - FM_FRAME_HEADER_LEN;
    if (*body > UINT32_MAX)
        return -1;
    fm_buf_patch_u32be(b, start, (uint32_t)*body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */

/* One send(2) that never blocks: the bytes sent, 0 when the socket's buffer
 * is full, or -1 on an error (errno set). */
static ssize_t send_some(int fd, const char *p, size_t n)
{
    ssize_t k;

    do
        k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return k;
}

/* Sends what the socket takes now of c->pending. 0 when all went out or the
 * socket is full (c->pending.len tells which); -1 on a send error (errno
 * set), the bytes kept. */
static int flush_pending(fm_client *c)
{
    while (c->pending.len > 0) {
        ssize_t n = send_some(c->fd, c->pending.data, c->pending.len);

        if (n < 0)
            return -1;
        if (n == 0)
            return 0;   /* full: the rest waits for the next flush */
        fm_buf_consume(&c->pending, (size_t)n);
    }
    return 0;
}

/* Queues a lock.release of an orphan's late lock behind the pending output
 * and sends what it can now; its reply is dropped like any late reply. This
 * runs in the reader, inside whatever call is in progress, so it neither
 * blocks nor fails that call: a send error stays for the next request's send
 * (or the next event read) to report, and if memory runs out the frame is
 * dropped whole and the lock goes on close or at its TTL. */
static void queue_release(fm_client *c, const char *key, const char *token,
                          size_t token_len)
{
    fm_buf *b = &c->pending;
    size_t start = b->len, body;

    assert(c->fd >= 0);     /* else the frame would go to the next stream */
    frame_begin(b, "lock.release", take_id(c));
    frame_str(b, "key", key, strlen(key));
    frame_str(b, "token", token, token_len);
    if (frame_end(b, start, &body) != 0) {
        b->len = start;     /* never half a frame */
        b->oom = 0;
        return;
    }
    (void)flush_pending(c);
}

/* Waits until the socket takes bytes again: 1, or 0 once deadline passed,
 * or -1 when poll failed (the connection is then closed). */
static int wait_writable(fm_client *c, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        int t = poll_timeout(deadline);
        int r = t == 0 ? 0 : poll(&pfd, 1, t);

        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return fail_close(c, FM_ERR_IO, "poll: %s", strerror(errno));
        if (r == 0 && poll_timeout(deadline) == 0)
            return 0;
    }
}

/* Sends c->out whole before deadline, after what c->pending still holds, so
 * that frames never interleave. A request only partly sent leaves the stream
 * mid-frame, so that timeout closes the connection; a request not begun
 * leaves it usable (a pending frame's tail simply goes first next time). On
 * a send error it returns FM_ERR with errno set and no error recorded: the
 * caller reads what the daemon said first (fail_send). */
static int send_all(fm_client *c, int64_t deadline)
{
    size_t off = 0;

    c->sent = 0;
    while (off < c->out.len) {
        ssize_t n = 0;
        int w;

        if (flush_pending(c) != 0)
            return FM_ERR;
        if (c->pending.len == 0) {
            n = send_some(c->fd, c->out.data + off, c->out.len - off);
            if (n < 0)
                return FM_ERR;
            off += (size_t)n;
        }
        if (n > 0)
            continue;
        w = wait_writable(c, deadline);
        if (w < 0)
            return FM_ERR;
        if (w == 0 && off == 0)
            return fail(c, FM_ERR_TIMEOUT, "timed out sending the request");
        if (w == 0)
            return fail_close(c, FM_ERR_TIMEOUT,
                              "timed out with the request partly sent");
    }
    c->sent = 1;
    return FM_OK;
}

/* ------------------------------------------------------------------------ */
/* Reading and dispatching frames                                           */

static int member(const fm_json_val *obj, const char *name, fm_json_val *out)
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

static char *span_dup(const char *p, size_t n)
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
static int opt_string(const fm_json_val *obj, const char *name, char **out)
{
    fm_json_val v;

    *out = NULL;
    if (!member(obj, name, &v) || v.type != FM_JSON_STRING)
        return 0;
    *out = decode_dup(&v);
    return *out == NULL ? -1 : 0;
}

static int queue_event(fm_client *c, const fm_json_val *root)
{
    ev_node *n = calloc(1, sizeof(*n));
    fm_event *ev;
    fm_json_val v;

    if (n == NULL)
        return -1;
    ev = &n->ev;
    ev->type = FM_EVENT_OTHER;
    ev->json = span_dup(root->p, root->len);
    ev->json_len = root->len;
    if (ev->json == NULL || opt_string(root, "event", &ev->name) != 0)
        goto oom;
    if (ev->name != NULL && strcmp(ev->name, "wake") == 0) {
        if (opt_string(root, "channel", &ev->channel) != 0 ||
            opt_string(root, "execution_id", &ev->execution_id) != 0)
            goto oom;
        if (member(root, "timestamp", &v) && v.type == FM_JSON_NUMBER &&
            fm_json_int64(&v, INT64_MIN, INT64_MAX, &ev->timestamp) == 0)
            ev->has_timestamp = 1;
        if (ev->execution_id != NULL)
            ev->type = FM_EVENT_WAKE;
    } else if (ev->name != NULL && strcmp(ev->name, "redis") == 0) {
        if (member(root, "state", &v) && v.type == FM_JSON_STRING) {
            if (fm_json_string_eq(&v, "up", 2)) {
                ev->type = FM_EVENT_REDIS;
                ev->redis_up = 1;
            } else if (fm_json_string_eq(&v, "down", 4)) {
                ev->type = FM_EVENT_REDIS;
                ev->redis_up = 0;
            }
        }
    } else if (ev->name != NULL && strcmp(ev->name, "lock.lost") == 0) {
        if (opt_string(root, "key", &ev->key) != 0)
            goto oom;
        if (ev->key != NULL)
            ev->type = FM_EVENT_LOCK_LOST;
    }
    if (c->ev_tail != NULL)
        c->ev_tail->next = n;
    else
        c->ev_head = n;
    c->ev_tail = n;
    c->ev_count++;
    return 0;
oom:
    fm_event_clear(ev);
    free(n);
    return -1;
}

static int pop_event(fm_client *c, fm_event *ev)
{
    ev_node *n = c->ev_head;

    if (n == NULL)
        return 0;
    c->ev_head = n->next;
    if (c->ev_head == NULL)
        c->ev_tail = NULL;
    c->ev_count--;
    *ev = n->ev;
    free(n);
    return 1;
}

void fm_event_clear(fm_event *ev)
{
    if (ev == NULL)
        return;
    free(ev->name);
    free(ev->channel);
    free(ev->execution_id);
    free(ev->key);
    free(ev->json);
    memset(ev, 0, sizeof(*ev));
}

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

/* A late reply of a timed-out acquire: forget it, and if it got the lock,
 * give the lock back (queue_release: the call in progress is not touched). */
static void release_orphan(fm_client *c, const fm_json_val *root, int64_t id,
                           int ok)
{
    orphan **pp, *o = NULL;
    fm_json_val tok;
    char token[FM_TOKEN_MAX + 1];
    size_t tlen;

    for (pp = &c->orphans; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            o = *pp;
            *pp = o->next;
            break;
        }
    }
    if (o == NULL)
        return;
    if (ok && member(root, "token", &tok) && tok.type == FM_JSON_STRING &&
        fm_json_string_decode(&tok, token, FM_TOKEN_MAX, &tlen, NULL) == 0)
        queue_release(c, o->key, token, tlen);
    free(o->key);
    free(o);
}

/* Handles one frame. Returns 1 when it is the reply w waits for (then
 * c->rbody/rroot name it), 0 when it was queued or dropped, -1 on a fatal
 * error (the connection is closed, the error set). */
static int handle_frame(fm_client *c, const char *body, size_t len,
                        const want *w)
{
    fm_json_val root, okv, idv, ev;
    const char *why = NULL;
    size_t at = 0;
    int has_ok, has_id;

    if (fm_json_validate(body, len, &root, &why, &at) != 0)
        return fail_close(c, FM_ERR_PROTOCOL,
                          "fmredisd sent invalid JSON (%s at byte %zu)",
                          why ? why : "?", at);
    if (root.type != FM_JSON_OBJECT)
        return fail_close(c, FM_ERR_PROTOCOL,
                          "fmredisd sent a frame that is not an object");
    has_ok = member(&root, "ok", &okv);
    if (!has_ok) {
        if (!member(&root, "event", &ev))
            return fail_close(c, FM_ERR_PROTOCOL,
                              "fmredisd sent a frame with neither ok nor event");
        if (queue_event(c, &root) != 0)
            return fail_close(c, FM_ERR_OOM, "out of memory queueing an event");
        return 0;
    }
    if (okv.type != FM_JSON_TRUE && okv.type != FM_JSON_FALSE)
        return fail_close(c, FM_ERR_PROTOCOL,
                          "fmredisd sent a reply whose ok is not a bool");
    has_id = member(&root, "id", &idv);
    if (has_id && idv.type == FM_JSON_NUMBER) {
        int64_t id;

        if (fm_json_int64(&idv, -ID_MAX, ID_MAX, &id) == 0) {
            if (w->kind == WANT_ID && id == w->id)
                goto mine;
            if (c->orphans != NULL)
                release_orphan(c, &root, id, okv.type == FM_JSON_TRUE);
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

            if (member(&root, "error", &e) && e.type == FM_JSON_OBJECT &&
                member(&e, "code", &code) && code.type == FM_JSON_STRING) {
                copy_str(&code, c->conn_code, sizeof(c->conn_code));
                c->conn_msg[0] = '\0';
                if (member(&e, "message", &msg) && msg.type == FM_JSON_STRING)
                    copy_str(&msg, c->conn_msg, sizeof(c->conn_msg));
            }
        }
    }
    return 0;   /* a late reply: dropped */
mine:
    c->rbody = body;
    c->rlen = len;
    c->rroot = root;
    return 1;
}

/* Reads once from the socket into the reader. Returns >0 bytes read, 0 at
 * EOF, -1 when nothing is there now (EAGAIN), -2 on error (set, closed). */
static ssize_t read_once(fm_client *c)
{
    size_t want_bytes = READ_CHUNK, avail, pend = fm_frame_reader_pending(c->rd);
    void *p;
    ssize_t n;

    /* Read a large frame's rest in one go rather than doubling the buffer
     * chunk by chunk. */
    if (pend >= FM_FRAME_HEADER_LEN) {
        const unsigned char *h = c->rd->buf + c->rd->start;
        uint32_t flen = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 |
                        (uint32_t)h[2] << 8 | h[3];

        if (flen <= c->rd->max_body &&
            (size_t)flen + FM_FRAME_HEADER_LEN > pend &&
            (size_t)flen + FM_FRAME_HEADER_LEN - pend > want_bytes)
            want_bytes = (size_t)flen + FM_FRAME_HEADER_LEN - pend;
    }
    p = fm_frame_reader_space(c->rd, want_bytes, &avail);
    if (p == NULL) {
        fail_close(c, FM_ERR_OOM, "out of memory reading a reply");
        return -2;
    }
    do
        n = recv(c->fd, p, avail, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        fm_frame_reader_commit(c->rd, (size_t)n);
        return n;
    }
    if (n == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return -1;
    if (errno == ECONNRESET)
        return 0;   /* the daemon went away: report it as a close */
    fail_close(c, FM_ERR_IO, "recv: %s", strerror(errno));
    return -2;
}

/* Hands every whole buffered frame to handle_frame(). Returns 1 when the
 * awaited reply was found (frames after it stay buffered), 0 when the
 * buffer holds no more whole frames, -1 on a fatal error. */
static int dispatch(fm_client *c, const want *w)
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
            return fail_close(c, FM_ERR_PROTOCOL,
                              "reply of %lu bytes exceeds the client's limit "
                              "of %zu", (unsigned long)c->rd->err_len,
                              c->rd->max_body);
        return fail_close(c, FM_ERR_PROTOCOL,
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
        int r = dispatch(c, w);
        int t;
        ssize_t n;

        if (r == 1) {
            drain_after_reply(c);
            return FM_OK;
        }
        if (r < 0)
            return FM_ERR;
        t = poll_timeout(deadline);
        if (t == 0)
            return fail(c, FM_ERR_TIMEOUT, "no reply within %lld ms",
                        (long long)c->call_ms);
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        r = poll(&pfd, 1, t);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return fail_close(c, FM_ERR_IO, "poll: %s", strerror(errno));
        }
        if (r == 0)
            continue;   /* the deadline check above reports it */
        n = read_once(c);
        if (n == 0) {
            /* Whole frames before the EOF still count. */
            if (dispatch(c, w) == 1) {
                drain_after_reply(c);
                return FM_OK;
            }
            if (c->fd < 0)
                return FM_ERR;
            return fail_eof(c);
        }
        if (n == -2)
            return FM_ERR;
    }
}

/* After a failed send: the daemon may have said why before closing
 * (forbidden, too_many_clients, shutting_down...). Read what is there. */
static int fail_send(fm_client *c, const want *w)
{
    int e = errno;

    if (c->fd < 0 || c->err != FM_ERR_NONE)
        return FM_ERR;  /* send_all already set it */
    for (;;) {
        ssize_t n = read_once(c);
        int r;

        if (n == -2)
            return FM_ERR;
        r = dispatch(c, w);
        if (r == 1) {
            /* The daemon's answer (frame_too_large, forbidden...) is the
             * call's error; the connection is gone all the same. */
            snprintf(c->closed_why, sizeof(c->closed_why),
                     "connection closed by fmredisd");
            close_fd(c);
            return FM_OK;
        }
        if (r < 0)
            return FM_ERR;
        if (n <= 0)
            break;
    }
    if (c->conn_code[0] != '\0')
        return fail_eof(c);
    if (e == EPIPE || e == ECONNRESET)
        return fail_close(c, FM_ERR_CLOSED, "connection closed by fmredisd");
    return fail_close(c, FM_ERR_IO, "send: %s", strerror(e));
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */

/* Starts the call's request in c->out; returns its id. */
static int64_t req_begin(fm_client *c, const char *op)
{
    int64_t id = take_id(c);

    fm_buf_reset(&c->out);
    c->out.oom = 0;
    frame_begin(&c->out, op, id);
    return id;
}

static void req_name(fm_client *c, const char *name)
{
    frame_name(&c->out, name);
}

static void req_str(fm_client *c, const char *name, const char *v)
{
    frame_str(&c->out, name, v, strlen(v));
}

static void req_int(fm_client *c, const char *name, int64_t v)
{
    req_name(c, name);
    fm_buf_put_i64(&c->out, v);
}

static void req_bool(fm_client *c, const char *name, int v)
{
    req_name(c, name);
    fm_buf_puts(&c->out, v ? "true" : "false");
}

static void req_str_array(fm_client *c, const char *name,
                          const char *const *v, size_t n)
{
    req_name(c, name);
    fm_buf_putc(&c->out, '[');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            fm_buf_putc(&c->out, ',');
        fm_buf_put_json_string(&c->out, v[i], strlen(v[i]));
    }
    fm_buf_putc(&c->out, ']');
}

/* Closes the request's object and writes its frame header. */
static int req_end(fm_client *c)
{
    size_t body = 0;

    if (frame_end(&c->out, 0, &body) == 0)
        return FM_OK;
    if (c->out.oom)
        return fail(c, FM_ERR_OOM, "out of memory building the request");
    return fail(c, FM_ERR_ARG, "request of %zu bytes is too large", body);
}

/* Sends the request in c->out (frame complete) and waits for the reply
 * matching w. FM_OK for ok:true; FM_ERR with FM_ERR_SERVER for ok:false (the
 * reply stays in c->rroot); FM_ERR otherwise. */
static int exchange(fm_client *c, const want *w, int64_t deadline)
{
    fm_json_val okv, e, v;

    if (send_all(c, deadline) != FM_OK) {
        if (fail_send(c, w) != FM_OK)
            return FM_ERR;
    } else if (wait_reply(c, w, deadline) != FM_OK) {
        return FM_ERR;
    }
    member(&c->rroot, "ok", &okv);
    if (okv.type == FM_JSON_TRUE)
        return FM_OK;
    c->err = FM_ERR_SERVER;
    snprintf(c->errcode, sizeof(c->errcode), "internal");
    snprintf(c->errstr, sizeof(c->errstr), "fmredisd answered ok:false");
    if (member(&c->rroot, "error", &e) && e.type == FM_JSON_OBJECT) {
        if (member(&e, "code", &v) && v.type == FM_JSON_STRING)
            copy_str(&v, c->errcode, sizeof(c->errcode));
        if (member(&e, "message", &v) && v.type == FM_JSON_STRING)
            copy_str(&v, c->errstr, sizeof(c->errstr));
    }
    return FM_ERR;
}

/* Finishes the request built in c->out (id `id`) and runs it with the given
 * timeout (ms, or FM_TIMEOUT_NONE). */
static int call_timeout(fm_client *c, int64_t id, int64_t timeout_ms)
{
    want w = { .kind = WANT_ID, .id = id };

    if (req_end(c) != FM_OK)
        return FM_ERR;
    c->call_ms = timeout_ms;
    return exchange(c, &w, deadline_in(timeout_ms));
}

static int call(fm_client *c, int64_t id)
{
    return call_timeout(c, id, c->timeout_ms);
}

/* A result field of the reply, of the given type. */
static int result(fm_client *c, const char *name, fm_json_type type,
                  fm_json_val *out)
{
    if (!member(&c->rroot, name, out))
        return fail(c, FM_ERR_PROTOCOL, "reply has no \"%s\"", name);
    if (out->type != type &&
        !(type == FM_JSON_TRUE && out->type == FM_JSON_FALSE))
        return fail(c, FM_ERR_PROTOCOL, "reply's \"%s\" has the wrong type",
                    name);
    return FM_OK;
}

static int result_bool(fm_client *c, const char *name, int *out)
{
    fm_json_val v;

    if (result(c, name, FM_JSON_TRUE, &v) != FM_OK)
        return FM_ERR;
    if (out != NULL)
        *out = v.type == FM_JSON_TRUE;
    return FM_OK;
}

static int result_int(fm_client *c, const char *name, int64_t *out)
{
    fm_json_val v;
    int64_t x;

    if (result(c, name, FM_JSON_NUMBER, &v) != FM_OK)
        return FM_ERR;
    if (fm_json_int64(&v, INT64_MIN, INT64_MAX, &x) != 0)
        return fail(c, FM_ERR_PROTOCOL, "reply's \"%s\" is not an integer",
                    name);
    if (out != NULL)
        *out = x;
    return FM_OK;
}

/* Copies a string result into out[cap] (truncated to fit). */
static int result_str(fm_client *c, const char *name, char *out, size_t cap)
{
    fm_json_val v;

    if (result(c, name, FM_JSON_STRING, &v) != FM_OK)
        return FM_ERR;
    if (out != NULL)
        copy_str(&v, out, cap);
    return FM_OK;
}

static int need(fm_client *c, const void *p, const char *what)
{
    if (p == NULL)
        return fail(c, FM_ERR_ARG, "%s must not be NULL", what);
    return FM_OK;
}

static int need_strs(fm_client *c, const char *const *v, size_t n)
{
    if (n > 0 && v == NULL)
        return fail(c, FM_ERR_ARG, "execution_ids must not be NULL");
    for (size_t i = 0; i < n; i++)
        if (v[i] == NULL)
            return fail(c, FM_ERR_ARG, "execution_ids[%zu] is NULL", i);
    return FM_OK;
}

/* Copies the span of a reply value: a malloc'd NUL-terminated string. */
static int copy_span(fm_client *c, const fm_json_val *v, char **out,
                     size_t *len)
{
    char *s = span_dup(v->p, v->len);

    if (s == NULL)
        return fail(c, FM_ERR_OOM, "out of memory copying the reply");
    *out = s;
    if (len != NULL)
        *len = v->len;
    return FM_OK;
}

/* ------------------------------------------------------------------------ */
/* Operations                                                               */

int fm_hello(fm_client *c, const char *client_name, fm_hello_info *info)
{
    int64_t id;
    int64_t proto;

    if (call_begin(c) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "hello");
    if (client_name != NULL)
        req_str(c, "client_name", client_name);
    if (call(c, id) != FM_OK || result_int(c, "protocol", &proto) != FM_OK)
        return FM_ERR;
    if (info != NULL) {
        info->protocol = proto;
        info->server[0] = '\0';
    }
    return result_str(c, "server", info ? info->server : NULL,
                      info ? sizeof(info->server) : 0);
}

int fm_ping(fm_client *c, int check_redis, int *redis_up)
{
    fm_json_val v;
    int64_t id;

    if (redis_up != NULL)
        *redis_up = -1;
    if (call_begin(c) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "ping");
    if (check_redis)
        req_bool(c, "redis", 1);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    if (redis_up != NULL && member(&c->rroot, "redis", &v) &&
        v.type == FM_JSON_STRING) {
        if (fm_json_string_eq(&v, "up", 2))
            *redis_up = 1;
        else if (fm_json_string_eq(&v, "down", 4))
            *redis_up = 0;
    }
    return FM_OK;
}

/* The wait an acquire may add to the client's timeout: retry_delay times
 * max_retries, with the contract's defaults for what the daemon decides. */
static int64_t acquire_wait(const fm_lock_opts *o)
{
    int64_t delay = o->retry_delay_ms > 0 ? o->retry_delay_ms
                                          : FM_LOCK_DEFAULT_RETRY_DELAY_MS;
    int64_t tries = o->max_retries > 0 ? o->max_retries
                    : o->max_retries == FM_LOCK_NO_RETRY
                        ? 0 : FM_LOCK_DEFAULT_MAX_RETRIES;

    if (tries != 0 && delay > INT64_MAX / 4 / tries)
        return INT64_MAX / 4;
    return delay * tries;
}

/* Remembers a timed-out acquire so its late lock is released. */
static void remember_orphan(fm_client *c, int64_t id, const char *key)
{
    orphan *o = malloc(sizeof(*o));

    if (o == NULL)
        return;     /* the daemon still releases it on close or TTL */
    o->key = span_dup(key, strlen(key));
    if (o->key == NULL) {
        free(o);
        return;
    }
    o->id = id;
    o->next = c->orphans;
    c->orphans = o;
}

int fm_lock_acquire(fm_client *c, const char *key, const fm_lock_opts *opts,
                    fm_lock *out)
{
    static const fm_lock_opts none;
    const fm_lock_opts *o = opts != NULL ? opts : &none;
    fm_json_val tok;
    int64_t id, timeout;
    size_t n;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (call_begin(c) != FM_OK || need(c, key, "key") != FM_OK ||
        need(c, out, "out") != FM_OK)
        return FM_ERR;
    if (o->max_retries < 0 && o->max_retries != FM_LOCK_NO_RETRY)
        return fail(c, FM_ERR_ARG, "max_retries must be >= 0 or "
                    "FM_LOCK_NO_RETRY");
    id = req_begin(c, "lock.acquire");
    req_str(c, "key", key);
    if (o->ttl_ms != 0)
        req_int(c, "ttl", o->ttl_ms);
    if (o->retry_delay_ms != 0)
        req_int(c, "retry_delay", o->retry_delay_ms);
    if (o->max_retries != 0)
        req_int(c, "max_retries",
                o->max_retries == FM_LOCK_NO_RETRY ? 0 : o->max_retries);
    if (o->on_disconnect == FM_ON_DISCONNECT_RELEASE)
        req_str(c, "on_disconnect", "release");
    else if (o->on_disconnect == FM_ON_DISCONNECT_KEEP)
        req_str(c, "on_disconnect", "keep");
    if (o->auto_extend)
        req_bool(c, "auto_extend", 1);

    if (o->timeout_ms > 0 || o->timeout_ms == FM_TIMEOUT_NONE)
        timeout = o->timeout_ms;
    else if (c->timeout_ms == FM_TIMEOUT_NONE)
        timeout = FM_TIMEOUT_NONE;
    else
        timeout = c->timeout_ms + acquire_wait(o);
    if (call_timeout(c, id, timeout) != FM_OK) {
        if (c->err == FM_ERR_TIMEOUT && c->fd >= 0 && c->sent)
            remember_orphan(c, id, key);
        return FM_ERR;
    }
    if (!member(&c->rroot, "token", &tok))
        return fail(c, FM_ERR_PROTOCOL, "reply has no \"token\"");
    if (tok.type == FM_JSON_NULL)
        return FM_OK;
    if (tok.type != FM_JSON_STRING)
        return fail(c, FM_ERR_PROTOCOL, "reply's \"token\" is not a string");
    if (fm_json_string_decode(&tok, out->token, FM_TOKEN_MAX, &n,
                              NULL) != 0) {
        out->token[0] = '\0';
        return fail(c, FM_ERR_PROTOCOL, "token of %zu bytes is longer than "
                    "%d", n, FM_TOKEN_MAX);
    }
    out->token[n] = '\0';
    out->token_len = n;
    if (result_int(c, "fence", &out->fence) != FM_OK) {
        out->token[0] = '\0';
        out->token_len = 0;
        return FM_ERR;
    }
    out->acquired = 1;
    return FM_OK;
}

int fm_lock_release(fm_client *c, const char *key, const char *token,
                    int *released, fm_release_reason *reason)
{
    fm_json_val v;
    int64_t id;
    int rel;

    if (released != NULL)
        *released = 0;
    if (reason != NULL)
        *reason = FM_RELEASE_OTHER;
    if (call_begin(c) != FM_OK || need(c, key, "key") != FM_OK ||
        need(c, token, "token") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "lock.release");
    req_str(c, "key", key);
    req_str(c, "token", token);
    if (call(c, id) != FM_OK || result_bool(c, "released", &rel) != FM_OK)
        return FM_ERR;
    if (released != NULL)
        *released = rel;
    if (reason != NULL) {
        if (rel)
            *reason = FM_RELEASE_DONE;
        else if (member(&c->rroot, "reason", &v) && v.type == FM_JSON_STRING) {
            if (fm_json_string_eq(&v, "not_held", 8))
                *reason = FM_RELEASE_NOT_HELD;
            else if (fm_json_string_eq(&v, "not_owner", 9))
                *reason = FM_RELEASE_NOT_OWNER;
        }
    }
    return FM_OK;
}

int fm_lock_extend(fm_client *c, const char *key, const char *token,
                   int64_t ttl_ms, int *extended)
{
    int64_t id;

    if (extended != NULL)
        *extended = 0;
    if (call_begin(c) != FM_OK || need(c, key, "key") != FM_OK ||
        need(c, token, "token") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "lock.extend");
    req_str(c, "key", key);
    req_str(c, "token", token);
    if (ttl_ms != 0)
        req_int(c, "ttl", ttl_ms);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return result_bool(c, "extended", extended);
}

int fm_lock_is_locked(fm_client *c, const char *key, int *locked)
{
    int64_t id;

    if (locked != NULL)
        *locked = 0;
    if (call_begin(c) != FM_OK || need(c, key, "key") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "lock.is_locked");
    req_str(c, "key", key);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return result_bool(c, "locked", locked);
}

int fm_with_lock(fm_client *c, const char *key, const fm_lock_opts *opts,
                 fm_lock_fn fn, void *arg, fm_with_lock_result *res)
{
    fm_with_lock_result local;
    fm_lock_opts o;
    int rc;

    if (res == NULL)
        res = &local;
    memset(res, 0, sizeof(*res));
    if (opts != NULL)
        o = *opts;
    else
        memset(&o, 0, sizeof(o));
    clear_err(c);
    if (fn == NULL)
        return fail(c, FM_ERR_ARG, "fn must not be NULL");
    if (o.ttl_ms != 0 && o.ttl_ms < 100)
        return fail(c, FM_ERR_ARG, "auto_extend needs a ttl of at least "
                    "100 ms, got %lld", (long long)o.ttl_ms);
    o.auto_extend = 1;
    if (fm_lock_acquire(c, key, &o, &res->lock) != FM_OK)
        return FM_ERR;
    if (!res->lock.acquired)
        return FM_OK;
    res->ran = 1;
    res->ret = fn(c, &res->lock, arg);
    rc = fm_lock_release(c, key, res->lock.token, &res->released, NULL);
    return rc;
}

int fm_wake_signal(fm_client *c, const char *execution_id,
                   const char *channel, int64_t *receivers)
{
    int64_t id;

    if (receivers != NULL)
        *receivers = 0;
    if (call_begin(c) != FM_OK ||
        need(c, execution_id, "execution_id") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "wake.signal");
    req_str(c, "execution_id", execution_id);
    if (channel != NULL)
        req_str(c, "channel", channel);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return result_int(c, "receivers", receivers);
}

int fm_wake_signal_many(fm_client *c, const char *const *execution_ids,
                        size_t n, const char *channel, int64_t *signaled)
{
    int64_t id;

    if (signaled != NULL)
        *signaled = 0;
    if (call_begin(c) != FM_OK || need_strs(c, execution_ids, n) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "wake.signal_many");
    req_str_array(c, "execution_ids", execution_ids, n);
    if (channel != NULL)
        req_str(c, "channel", channel);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return result_int(c, "signaled", signaled);
}

/* wake.subscribe and wake.unsubscribe: the optional channel (and group),
 * answered with the channel the daemon resolved. */
static int wake_channel_call(fm_client *c, const char *op, const char *channel,
                             const char *group, char *channel_out, size_t cap)
{
    int64_t id;

    if (channel_out != NULL && cap > 0)
        channel_out[0] = '\0';
    if (call_begin(c) != FM_OK)
        return FM_ERR;
    id = req_begin(c, op);
    if (channel != NULL)
        req_str(c, "channel", channel);
    if (group != NULL)
        req_str(c, "group", group);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return result_str(c, "channel", channel_out, cap);
}

int fm_wake_subscribe(fm_client *c, const char *channel, const char *group,
                      char *channel_out, size_t cap)
{
    return wake_channel_call(c, "wake.subscribe", channel, group, channel_out,
                             cap);
}

int fm_wake_unsubscribe(fm_client *c, const char *channel, char *channel_out,
                        size_t cap)
{
    return wake_channel_call(c, "wake.unsubscribe", channel, NULL,
                             channel_out, cap);
}

int fm_cache_get(fm_client *c, const char *execution_id, char **json,
                 size_t *len)
{
    fm_json_val v;
    int64_t id;

    if (json != NULL)
        *json = NULL;
    if (len != NULL)
        *len = 0;
    if (call_begin(c) != FM_OK ||
        need(c, execution_id, "execution_id") != FM_OK ||
        need(c, json, "json") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "cache.get");
    req_str(c, "execution_id", execution_id);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    if (!member(&c->rroot, "execution", &v))
        return fail(c, FM_ERR_PROTOCOL, "reply has no \"execution\"");
    if (v.type == FM_JSON_NULL)
        return FM_OK;
    if (v.type != FM_JSON_OBJECT)
        return fail(c, FM_ERR_PROTOCOL,
                    "reply's \"execution\" is neither an object nor null");
    return copy_span(c, &v, json, len);
}

int fm_cache_set(fm_client *c, const char *json, size_t len, int64_t ttl_ms)
{
    fm_json_val root, idv;
    const char *why = NULL;
    size_t at = 0;
    int64_t id;

    if (call_begin(c) != FM_OK || need(c, json, "json") != FM_OK)
        return FM_ERR;
    /* The text is pasted into the request: anything but one object would
     * change the request's meaning, so it is checked here. */
    if (fm_json_validate(json, len, &root, &why, &at) != 0)
        return fail(c, FM_ERR_ARG, "execution is not valid JSON: %s at byte "
                    "%zu", why ? why : "?", at);
    if (root.type != FM_JSON_OBJECT)
        return fail(c, FM_ERR_ARG, "execution is not a JSON object");
    if (!member(&root, "id", &idv) || idv.type != FM_JSON_STRING)
        return fail(c, FM_ERR_ARG, "execution has no string \"id\"");
    id = req_begin(c, "cache.set");
    req_name(c, "execution");
    fm_buf_append(&c->out, root.p, root.len);
    if (ttl_ms != 0)
        req_int(c, "ttl", ttl_ms);
    return call(c, id);
}

int fm_cache_invalidate(fm_client *c, const char *execution_id)
{
    int64_t id;

    if (call_begin(c) != FM_OK ||
        need(c, execution_id, "execution_id") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "cache.invalidate");
    req_str(c, "execution_id", execution_id);
    return call(c, id);
}

int fm_cache_invalidate_many(fm_client *c, const char *const *execution_ids,
                             size_t n, int64_t *invalidated)
{
    int64_t id;

    if (invalidated != NULL)
        *invalidated = 0;
    if (call_begin(c) != FM_OK || need_strs(c, execution_ids, n) != FM_OK)
        return FM_ERR;
    id = req_begin(c, "cache.invalidate_many");
    req_str_array(c, "execution_ids", execution_ids, n);
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return result_int(c, "invalidated", invalidated);
}

int fm_cache_get_many(fm_client *c, const char *const *execution_ids,
                      size_t n, fm_cache_entry **entries, size_t *count)
{
    fm_json_val obj, (*hit)[2];
    fm_json_iter it;
    fm_cache_entry *e;
    size_t k = 0, bytes, total = 0;
    char *s;
    int64_t id;
    int rc = FM_OK;

    if (entries != NULL)
        *entries = NULL;
    if (count != NULL)
        *count = 0;
    if (call_begin(c) != FM_OK || need_strs(c, execution_ids, n) != FM_OK ||
        need(c, entries, "entries") != FM_OK ||
        need(c, count, "count") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "cache.get_many");
    req_str_array(c, "execution_ids", execution_ids, n);
    if (call(c, id) != FM_OK ||
        result(c, "executions", FM_JSON_OBJECT, &obj) != FM_OK)
        return FM_ERR;
    if (n == 0)
        return FM_OK;

    /* The reply is walked once (each hit is a whole execution to step
     * over), noting the spans; it holds at most one hit per id asked for. */
    hit = malloc(n * sizeof(*hit));
    if (hit == NULL)
        return fail(c, FM_ERR_OOM, "out of memory reading %zu executions", n);
    fm_json_iter_init(&it, &obj);
    while (k < n && fm_json_iter_next(&it, &hit[k][0], &hit[k][1])) {
        if (hit[k][1].type != FM_JSON_OBJECT) {
            rc = fail(c, FM_ERR_PROTOCOL,
                      "an execution in the reply is not an object");
            goto done;
        }
        total += fm_json_string_len(&hit[k][0]) + 1 + hit[k][1].len + 1;
        k++;
    }
    if (k == n && fm_json_iter_next(&it, NULL, NULL)) {
        rc = fail(c, FM_ERR_PROTOCOL, "more executions than ids asked for");
        goto done;
    }
    if (k == 0)
        goto done;
    if (k > (SIZE_MAX - total) / sizeof(*e)) {
        rc = fail(c, FM_ERR_OOM, "reply too large");
        goto done;
    }

    /* One block: the entries, then each id and text, NUL-terminated. */
    bytes = k * sizeof(*e) + total;
    e = malloc(bytes);
    if (e == NULL) {
        rc = fail(c, FM_ERR_OOM, "out of memory copying %zu executions", k);
        goto done;
    }
    s = (char *)(e + k);
    for (size_t i = 0; i < k; i++) {
        size_t nl = fm_json_string_len(&hit[i][0]), got;

        e[i].id = s;
        fm_json_string_decode(&hit[i][0], s, nl + 1, &got, NULL);
        s[got] = '\0';
        s += nl + 1;
        e[i].json = s;
        e[i].len = hit[i][1].len;
        memcpy(s, hit[i][1].p, hit[i][1].len);
        s[hit[i][1].len] = '\0';
        s += hit[i][1].len + 1;
    }
    *entries = e;
    *count = k;
done:
    free(hit);
    return rc;
}

void fm_cache_entries_free(fm_cache_entry *entries, size_t count)
{
    (void)count;
    free(entries);
}

int fm_stats(fm_client *c, char **json, size_t *len)
{
    int64_t id;

    if (json != NULL)
        *json = NULL;
    if (len != NULL)
        *len = 0;
    if (call_begin(c) != FM_OK || need(c, json, "json") != FM_OK)
        return FM_ERR;
    id = req_begin(c, "stats");
    if (call(c, id) != FM_OK)
        return FM_ERR;
    return copy_span(c, &c->rroot, json, len);
}

int fm_call_raw(fm_client *c, const char *request, size_t len, char **reply,
                size_t *reply_len)
{
    fm_json_val root, idv;
    want w = { .kind = WANT_NO_ID };
    int rc;

    if (reply != NULL)
        *reply = NULL;
    if (reply_len != NULL)
        *reply_len = 0;
    if (call_begin(c) != FM_OK || need(c, request, "request") != FM_OK ||
        need(c, reply, "reply") != FM_OK)
        return FM_ERR;
    if (len == 0)
        return fail(c, FM_ERR_ARG, "empty request");
    if (len > UINT32_MAX)
        return fail(c, FM_ERR_ARG, "request of %zu bytes is too large", len);
    /* With a usable id the daemon echoes it: match on it. Otherwise the
     * reply comes without id (the daemon sends none for a missing or
     * unusable id, or an unreadable body). */
    if (fm_json_validate(request, len, &root, NULL, NULL) == 0 &&
        root.type == FM_JSON_OBJECT && member(&root, "id", &idv)) {
        int64_t x;

        if ((idv.type == FM_JSON_NUMBER &&
             fm_json_int64(&idv, -ID_MAX, ID_MAX, &x) == 0) ||
            (idv.type == FM_JSON_STRING &&
             fm_json_string_len(&idv) <= RAW_ID_MAX)) {
            w.kind = WANT_RAW_ID;
            w.raw_id = idv;
        }
    }
    fm_buf_reset(&c->out);
    c->out.oom = 0;
    fm_buf_put_u32be(&c->out, (uint32_t)len);
    fm_buf_append(&c->out, request, len);
    if (c->out.oom)
        return fail(c, FM_ERR_OOM, "out of memory building the request");
    c->call_ms = c->timeout_ms;
    rc = exchange(c, &w, deadline_in(c->timeout_ms));
    /* A server error learnt from a close notice has no reply to hand out. */
    if (rc != FM_OK && (c->err != FM_ERR_SERVER || c->rbody == NULL))
        return FM_ERR;
    if (copy_span(c, &c->rroot, reply, reply_len) != FM_OK)
        return FM_ERR;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Events                                                                   */

/* Hands out the oldest queued event (FM_OK), or fails once the queue is
 * empty and the connection is gone (FM_ERR); FM_NONE when neither. */
static int take_event(fm_client *c, fm_event *ev)
{
    if (pop_event(c, ev)) {
        clear_err(c);
        return FM_OK;
    }
    if (c->fd < 0) {
        if (c->err == FM_ERR_NONE)
            fail_not_connected(c);
        return FM_ERR;
    }
    return FM_NONE;
}

/* Reads once for events. At EOF the frames already buffered are queued
 * before the close is reported. Returns what read_once() returned. */
static ssize_t read_events(fm_client *c)
{
    const want none = { .kind = WANT_EVENTS };
    ssize_t n = read_once(c);

    if (n == 0) {
        dispatch(c, &none);
        if (c->fd >= 0)
            fail_eof(c);
    }
    return n;
}

/* Sends what it can of the pending releases between calls. A send error
 * means the connection is going: like a failed request, read what the
 * daemon said first, then close. */
static void flush_between_calls(fm_client *c)
{
    const want none = { .kind = WANT_EVENTS };

    if (c->fd >= 0 && flush_pending(c) != 0)
        fail_send(c, &none);
}

int fm_event_wait(fm_client *c, fm_event *ev, int timeout_ms)
{
    const want none = { .kind = WANT_EVENTS };
    int64_t deadline = deadline_in(timeout_ms < 0 ? -1 : timeout_ms);

    clear_err(c);
    if (ev == NULL)
        return fail(c, FM_ERR_ARG, "ev must not be NULL");
    memset(ev, 0, sizeof(*ev));
    for (;;) {
        struct pollfd pfd;
        int r = take_event(c, ev);

        if (r != FM_NONE)
            return r;
        if (dispatch(c, &none) < 0 || c->ev_count > 0)
            continue;
        flush_between_calls(c);
        if (c->fd < 0)
            continue;
        /* A timeout of 0 still takes what is readable now. Pending
         * releases also wait for the socket to take them. */
        pfd.fd = c->fd;
        pfd.events = POLLIN | (c->pending.len > 0 ? POLLOUT : 0);
        r = poll(&pfd, 1, poll_timeout(deadline));
        if (r < 0) {
            if (errno == EINTR)
                return fail(c, FM_ERR_INTERRUPTED,
                            "interrupted by a signal");
            fail_close(c, FM_ERR_IO, "poll: %s", strerror(errno));
            continue;
        }
        if (r == 0) {
            if (poll_timeout(deadline) == 0)
                return fail(c, FM_ERR_TIMEOUT, "no event within %d ms",
                            timeout_ms);
            continue;
        }
        if (pfd.revents != POLLOUT)     /* POLLOUT alone: nothing to read */
            read_events(c);
    }
}

int fm_event_read(fm_client *c, fm_event *ev)
{
    const want none = { .kind = WANT_EVENTS };

    clear_err(c);
    if (ev == NULL)
        return fail(c, FM_ERR_ARG, "ev must not be NULL");
    memset(ev, 0, sizeof(*ev));
    flush_between_calls(c);
    /* Bounded, so a flood of events cannot keep the caller here. */
    for (int i = 0; i < 64 && c->fd >= 0 && c->ev_count == 0; i++) {
        if (dispatch(c, &none) < 0 || c->ev_count > 0)
            break;
        if (read_events(c) <= 0)
            break;      /* nothing more now, EOF or error */
    }
    if (c->fd >= 0 && c->ev_count == 0)
        dispatch(c, &none);
    return take_event(c, ev);
}
