/* fmredis.c -- libfmredis's client object: the life of its connection
 * (connect, reconnect, close, free), its settings, the error state every
 * call reports through, and the library's version.
 *
 * Closing is one function, fm__close_fd(), whoever closes: with the stream
 * go the late replies it could still bring and the bytes not yet sent on it
 * (fmredis_int.h has the whole model). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "fmredis_int.h"

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

int fm__fail(fm_client *c, fm_client_error err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vset_err(c, err, fmt, ap);
    va_end(ap);
    return FM_ERR;
}

void fm__close_fd(fm_client *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    /* Late replies can no longer come: nothing to release later either. */
    fm__drop_orphans(c);
    /* Releases not sent die with the stream they belong to (the daemon
     * releases those locks on close, or they expire): a frame's tail must
     * never reach the next connection. */
    fm_buf_reset(&c->pending);
    c->pending.oom = 0;
}

/* Fails the call and closes the connection: the stream is unusable. */
int fm__fail_close(fm_client *c, fm_client_error err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vset_err(c, err, fmt, ap);
    va_end(ap);
    snprintf(c->closed_why, sizeof(c->closed_why), "%s", c->errstr);
    fm__close_fd(c);
    return FM_ERR;
}

/* The daemon closed the stream. If it said why first (an error frame
 * without id), that is the error; else it is a plain close. */
int fm__fail_eof(fm_client *c)
{
    if (c->conn_code[0] != '\0') {
        fm__fail_close(c, FM_ERR_SERVER, "%s", c->conn_msg);
        snprintf(c->errcode, sizeof(c->errcode), "%s", c->conn_code);
        return FM_ERR;
    }
    return fm__fail_close(c, FM_ERR_CLOSED, "connection closed by fmredisd");
}

void fm__clear_err(fm_client *c)
{
    c->err = FM_ERR_NONE;
    c->errstr[0] = '\0';
    c->errcode[0] = '\0';
}

/* Fails because the connection is gone, saying why it was closed. */
int fm__fail_not_connected(fm_client *c)
{
    return fm__fail(c, FM_ERR_CLOSED, "not connected%s%s",
                    c->closed_why[0] ? ": " : "", c->closed_why);
}

/* The start of every call: clears the error; fails when closed. */
int fm__call_begin(fm_client *c)
{
    fm__clear_err(c);
    c->rbody = NULL;
    if (c->fd < 0)
        return fm__fail_not_connected(c);
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
/* Connection                                                               */

static int effective_timeout(int timeout_ms)
{
    if (timeout_ms == FM_TIMEOUT_DEFAULT)
        return FM_DEFAULT_TIMEOUT_MS;
    return timeout_ms < 0 ? FM_TIMEOUT_NONE : timeout_ms;
}

static int open_socket(fm_client *c)
{
    struct sockaddr_un sa;
    int fd, rc, flags;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fm__fail(c, FM_ERR_IO, "socket: %s", strerror(errno));
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
            return fm__fail(c, FM_ERR_TIMEOUT, "connect to %s: timed out",
                            c->path);
        return fm__fail(c, FM_ERR_IO, "connect to %s: %s", c->path,
                        strerror(e));
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        int e = errno;

        close(fd);
        return fm__fail(c, FM_ERR_IO, "fcntl: %s", strerror(e));
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
        fm__fail(c, FM_ERR_ARG, "socket path longer than %zu bytes: %s",
                 sizeof(c->path) - 1, path);
        snprintf(c->closed_why, sizeof(c->closed_why), "%s", c->errstr);
        return c;
    }
    memcpy(c->path, path, strlen(path) + 1);
    if (open_socket(c) != FM_OK)
        snprintf(c->closed_why, sizeof(c->closed_why), "%s", c->errstr);
    return c;
}

void fm_client_free(fm_client *c)
{
    if (c == NULL)
        return;
    fm__close_fd(c);
    fm__free_events(c);
    fm_frame_reader_free(c->rd);
    fm_buf_free(&c->out);
    fm_buf_free(&c->pending);
    free(c);
}

static int reset_reader(fm_client *c)
{
    fm_frame_reader *rd = fm_frame_reader_create(c->max_reply);

    if (rd == NULL)
        return fm__fail(c, FM_ERR_OOM, "out of memory");
    fm_frame_reader_free(c->rd);
    c->rd = rd;
    return FM_OK;
}

int fm_client_reconnect(fm_client *c)
{
    fm__clear_err(c);
    c->rbody = NULL;
    fm__close_fd(c);
    if (c->path[0] == '\0')
        return fm__fail(c, FM_ERR_ARG, "%s", c->closed_why);
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
    fm__close_fd(c);
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

/* ------------------------------------------------------------------------ */
/* Version                                                                  */

const char *fm_version(void)
{
    return FMREDIS_VERSION;
}

unsigned int fm_version_number(void)
{
    return FMREDIS_VERSION_HEX;
}
