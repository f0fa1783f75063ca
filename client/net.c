/* net.c -- libfmredis's bytes on the socket: deadlines on the monotonic
 * clock, sends that never block (a call's request, and the pending releases
 * that go before it), and one read into the frame reader.
 *
 * The socket is non-blocking; waiting is poll(2) up to the call's deadline,
 * so no send or read can outlive the call that made it. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "fmredis_int.h"

#define READ_CHUNK 65536

/* ------------------------------------------------------------------------ */
/* Time                                                                     */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline is an absolute monotonic time in ms, or -1 for none. */
int64_t fm__deadline_in(int64_t ms)
{
    if (ms < 0)
        return -1;
    if (ms > INT64_MAX / 4)
        ms = INT64_MAX / 4;
    return now_ms() + ms;
}

/* The poll(2) timeout left until deadline: -1 (none), 0 (passed), or ms. */
int fm__poll_timeout(int64_t deadline)
{
    int64_t left;

    if (deadline < 0)
        return -1;
    left = deadline - now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
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
int fm__flush_pending(fm_client *c)
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

/* Waits until the socket takes bytes again: 1, or 0 once deadline passed,
 * or -1 when poll failed (the connection is then closed). */
static int wait_writable(fm_client *c, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        int t = fm__poll_timeout(deadline);
        int r = t == 0 ? 0 : poll(&pfd, 1, t);

        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return fm__fail_close(c, FM_ERR_IO, "poll: %s", strerror(errno));
        if (r == 0 && fm__poll_timeout(deadline) == 0)
            return 0;
    }
}

/* Sends c->out whole before deadline, after what c->pending still holds, so
 * that frames never interleave. A request only partly sent leaves the stream
 * mid-frame, so that timeout closes the connection; a request not begun
 * leaves it usable (a pending frame's tail simply goes first next time). On
 * a send error it returns FM_ERR with errno set and no error recorded: the
 * caller reads what the daemon said first (fm__fail_send). */
int fm__send_all(fm_client *c, int64_t deadline)
{
    size_t off = 0;

    c->sent = 0;
    while (off < c->out.len) {
        ssize_t n = 0;
        int w;

        if (fm__flush_pending(c) != 0)
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
            return fm__fail(c, FM_ERR_TIMEOUT, "timed out sending the request");
        if (w == 0)
            return fm__fail_close(c, FM_ERR_TIMEOUT,
                                  "timed out with the request partly sent");
    }
    c->sent = 1;
    return FM_OK;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */

/* Reads once from the socket into the reader. Returns >0 bytes read, 0 at
 * EOF, -1 when nothing is there now (EAGAIN), -2 on error (set, closed). */
ssize_t fm__read_once(fm_client *c)
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
        fm__fail_close(c, FM_ERR_OOM, "out of memory reading a reply");
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
    fm__fail_close(c, FM_ERR_IO, "recv: %s", strerror(errno));
    return -2;
}
