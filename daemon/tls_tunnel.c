/* tls_tunnel.c -- one TLS session to Redis, pumped on the loop.
 *
 *   hiredis <--Unix socket--> plain | tunnel: SSL + memory BIOs | tcp <--TCP--> Redis
 *
 * Ciphertext read from the TCP connection goes into OpenSSL's input BIO and
 * comes out of SSL_read as plaintext for hiredis; what hiredis writes goes
 * through SSL_write into the output BIO and onto the TCP connection. The
 * plaintext end is read only once the handshake is done, so hiredis's
 * first commands wait in the socket meanwhile.
 *
 * Each direction writes with uv_try_write first and queues only what the
 * socket did not take. When a side's queue passes FM_TLS_HIGH_WATER, the
 * other side is no longer read until it drains: a reply of many megabytes
 * flows at the pace hiredis reads it, never all into memory at once.
 *
 * Ends: a TLS or socket failure closes both sides at once, with why written
 * to the owner's buffer first. Redis closing the connection shuts the
 * plaintext end down after what was already decrypted, so that hiredis
 * reads Redis's last reply (an error saying why, often) before the end. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>

#include "log.h"
#include "tls_int.h"

#define FM_TLS_HIGH_WATER (1u << 20)
#define FM_TLS_KEEPALIVE_S 15   /* as hiredis sets on its own TCP connections */

struct fm_tls_tunnel {
    uv_tcp_t tcp;           /* ciphertext, to Redis */
    uv_pipe_t plain;        /* plaintext, to hiredis */
    uv_connect_t connect;
    uv_shutdown_t shutdown;
    SSL *ssl;
    BIO *in, *out;          /* owned by ssl */
    char *err;              /* the owner's; NULL once it let go */
    size_t errlen;
    char peer[INET6_ADDRSTRLEN + 8];   /* "address:port", for messages */
    int handles;            /* open; the memory goes with the last */
    unsigned owned : 1;     /* fm_tls_close not yet called */
    unsigned closing : 1;
    unsigned established : 1;
    unsigned tcp_paused : 1;    /* Redis not read: hiredis's side is full */
    unsigned plain_paused : 1;  /* hiredis not read: Redis's side is full */
};

typedef struct send_req {
    uv_write_t w;
    fm_tls_tunnel *t;
    char data[];
} send_req;

/* Both read callbacks consume their buffer before returning. */
static char rbuf[64 * 1024];

static void pump(fm_tls_tunnel *t);

static void on_closed(uv_handle_t *h)
{
    fm_tls_tunnel *t = h->data;

    if (--t->handles == 0 && !t->owned) {
        SSL_free(t->ssl);
        free(t);
    }
}

static void close_all(fm_tls_tunnel *t)
{
    if (t->closing)
        return;
    t->closing = 1;
    uv_close((uv_handle_t *)&t->tcp, on_closed);
    uv_close((uv_handle_t *)&t->plain, on_closed);
}

static void fail(fm_tls_tunnel *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(fm_tls_tunnel *t, const char *fmt, ...)
{
    va_list ap;

    if (t->closing)
        return;
    if (t->err != NULL) {
        va_start(ap, fmt);
        vsnprintf(t->err, t->errlen, fmt, ap);
        va_end(ap);
    }
    close_all(t);
}

static void fail_ssl(fm_tls_tunnel *t, int rc)
{
    char why[256];

    fm_tls_why(t->ssl, rc, why, sizeof(why));
    if (t->established)
        fail(t, "TLS with %s: %s", t->peer, why);
    else
        fail(t, "TLS handshake with %s failed: %s", t->peer, why);
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_plain_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

/* Reading a side starts again once the queue it fed has drained. */
static void resume(fm_tls_tunnel *t)
{
    if (t->closing)
        return;
    if (t->tcp_paused && uv_stream_get_write_queue_size((uv_stream_t *)&t->plain) == 0) {
        t->tcp_paused = 0;
        uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_tcp_read);
    }
    if (t->plain_paused && uv_stream_get_write_queue_size((uv_stream_t *)&t->tcp) == 0) {
        t->plain_paused = 0;
        uv_read_start((uv_stream_t *)&t->plain, on_alloc, on_plain_read);
    }
}

static void on_sent(uv_write_t *w, int status)
{
    send_req *r = (send_req *)w;
    fm_tls_tunnel *t = r->t;

    free(r);
    if (status < 0) {
        fail(t, "TLS with %s: %s", t->peer, uv_strerror(status));
        return;
    }
    resume(t);
}

/* Writes what the socket takes now and queues the rest; a queue past the
 * high-water mark stops reading the side that feeds it. */
static int send_to(fm_tls_tunnel *t, uv_stream_t *s, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    send_req *r;
    int n = uv_try_write(s, &b, 1);

    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0)
        return n;
    if ((size_t)n == len)
        return 0;
    r = malloc(sizeof(*r) + len - (size_t)n);
    if (r == NULL)
        return UV_ENOMEM;
    r->t = t;
    memcpy(r->data, data + n, len - (size_t)n);
    b = uv_buf_init(r->data, (unsigned)(len - (size_t)n));
    if ((n = uv_write(&r->w, s, &b, 1, on_sent)) != 0) {
        free(r);
        return n;
    }
    if (uv_stream_get_write_queue_size(s) > FM_TLS_HIGH_WATER) {
        if (s == (uv_stream_t *)&t->plain && !t->tcp_paused) {
            t->tcp_paused = 1;
            uv_read_stop((uv_stream_t *)&t->tcp);
        } else if (s == (uv_stream_t *)&t->tcp && !t->plain_paused && t->established) {
            t->plain_paused = 1;
            uv_read_stop((uv_stream_t *)&t->plain);
        }
    }
    return 0;
}

/* Sends what OpenSSL wrote to its output BIO: records, alerts, handshake
 * messages. */
static int flush_out(fm_tls_tunnel *t)
{
    char *p;
    long n = BIO_get_mem_data(t->out, &p);
    int rc;

    if (n <= 0)
        return 0;
    rc = send_to(t, (uv_stream_t *)&t->tcp, p, (size_t)n);
    (void)BIO_reset(t->out);
    if (rc != 0)
        fail(t, "TLS with %s: %s", t->peer, uv_strerror(rc));
    return rc;
}

static void handshake(fm_tls_tunnel *t)
{
    int rc = SSL_do_handshake(t->ssl);

    if (flush_out(t) != 0)
        return;
    if (rc != 1) {
        if (SSL_get_error(t->ssl, rc) != SSL_ERROR_WANT_READ)
            fail_ssl(t, rc);
        return;
    }
    t->established = 1;
    fm_log_debug("TLS with %s: %s, %s", t->peer, SSL_get_version(t->ssl),
                 SSL_get_cipher_name(t->ssl));
    uv_read_start((uv_stream_t *)&t->plain, on_alloc, on_plain_read);
}

/* Redis ended the session: what it said last still reaches hiredis, then
 * the end of the stream. */
static void on_shut(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void end_from_redis(fm_tls_tunnel *t)
{
    if (t->closing)
        return;
    uv_read_stop((uv_stream_t *)&t->tcp);
    uv_read_stop((uv_stream_t *)&t->plain);
    if (uv_shutdown(&t->shutdown, (uv_stream_t *)&t->plain, on_shut) != 0)
        close_all(t);
}

/* Decrypts whatever whole records the input BIO holds. */
static void pump(fm_tls_tunnel *t)
{
    int n = 0;

    while (!t->closing && (n = SSL_read(t->ssl, rbuf, (int)sizeof(rbuf))) > 0) {
        int rc = send_to(t, (uv_stream_t *)&t->plain, rbuf, (size_t)n);

        if (rc != 0) {
            fail(t, "TLS with %s: passing a reply on: %s", t->peer, uv_strerror(rc));
            return;
        }
    }
    if (t->closing)
        return;
    /* A read may have to answer (a key update): it goes out now. */
    if (flush_out(t) != 0)
        return;
    switch (SSL_get_error(t->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        break;
    case SSL_ERROR_ZERO_RETURN:
        end_from_redis(t);
        break;
    default:
        fail_ssl(t, n);
        break;
    }
}

static void on_tcp_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fm_tls_tunnel *t = s->data;

    (void)buf;
    if (n == 0)
        return;
    if (n == UV_EOF) {
        if (t->established)
            end_from_redis(t);
        else
            fail(t, "TLS handshake with %s failed: the server closed the connection", t->peer);
        return;
    }
    if (n < 0) {
        fail(t, "TLS with %s: %s", t->peer, uv_strerror((int)n));
        return;
    }
    if (BIO_write(t->in, rbuf, (int)n) != (int)n) {
        fail(t, "TLS with %s: out of memory", t->peer);
        return;
    }
    if (!t->established) {
        handshake(t);
        if (!t->established)
            return;
    }
    pump(t);
}

static void on_plain_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fm_tls_tunnel *t = s->data;
    int rc;

    (void)buf;
    if (n == 0)
        return;
    if (n < 0) {
        /* hiredis closed its end: its context is gone or going. */
        close_all(t);
        return;
    }
    rc = SSL_write(t->ssl, rbuf, (int)n);
    if (rc != (int)n) {
        fail_ssl(t, rc);
        return;
    }
    flush_out(t);
}

static void on_connected(uv_connect_t *req, int status)
{
    fm_tls_tunnel *t = req->data;

    if (t->closing)
        return;
    if (status < 0) {
        fail(t, "connecting to %s: %s", t->peer, uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&t->tcp, 1);
    uv_tcp_keepalive(&t->tcp, 1, FM_TLS_KEEPALIVE_S);
    uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_tcp_read);
    handshake(t);
}

/* The tunnels' listeners live in a directory of the daemon's own, made at
 * the first tunnel: the service's runtime directory when it has one. */
static int make_dir(fm_tls *tls, char *err, size_t errlen)
{
    const char *base = getenv("RUNTIME_DIRECTORY");
    size_t n;

    if (tls->dir[0] != '\0')
        return 0;
    if (base == NULL || *base == '\0')
        base = "/tmp";
    /* systemd lists several runtime directories with ':'. */
    n = strcspn(base, ":");
    if (n + sizeof("/fmredisd-tls.XXXXXX") > sizeof(tls->dir)) {
        snprintf(err, errlen, "TLS: the runtime directory's path is too long for a socket");
        return -1;
    }
    snprintf(tls->dir, sizeof(tls->dir), "%.*s/fmredisd-tls.XXXXXX", (int)n, base);
    if (mkdtemp(tls->dir) == NULL) {
        snprintf(err, errlen, "TLS: making a directory in %.*s: %s", (int)n, base,
                 strerror(errno));
        tls->dir[0] = '\0';
        return -1;
    }
    return 0;
}

/* A socket pair whose one end is hiredis's: hiredis connects to a listener
 * that lives for this call alone, in a directory only the daemon's user
 * can enter, and the peer is checked to be this very process. The far end,
 * or -1 with the reason in err. */
static int pair_with_hiredis(fm_tls *tls, redisAsyncContext **acp, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    redisAsyncContext *ac;
    int lfd, fd = -1;

    *acp = NULL;
    if (make_dir(tls, err, errlen) != 0)
        return -1;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%u", tls->dir, tls->seq++);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1) != 0) {
        snprintf(err, errlen, "TLS: a socket for hiredis in %s: %s", tls->dir, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    /* A Unix stream connect is queued at once: the accept below finds it. */
    ac = redisAsyncConnectUnix(sa.sun_path);
    unlink(sa.sun_path);
    if (ac == NULL || ac->err) {
        snprintf(err, errlen, "TLS: hiredis's socket: %s", ac ? ac->errstr : "out of memory");
        goto fail;
    }
    fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
        snprintf(err, errlen, "TLS: hiredis's socket: %s", strerror(errno));
        goto fail;
    }
    if (cred.pid != getpid()) {
        snprintf(err, errlen, "TLS: another process (pid %ld) connected to hiredis's socket",
                 (long)cred.pid);
        goto fail;
    }
    close(lfd);
    *acp = ac;
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    close(lfd);
    if (ac != NULL)
        redisAsyncFree(ac);
    return -1;
}

static void peer_name(const struct sockaddr *addr, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port;

    if (addr->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)addr, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
        snprintf(buf, len, "[%s]:%d", ip, port);
    } else {
        uv_ip4_name((const struct sockaddr_in *)addr, ip, sizeof(ip));
        port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
        snprintf(buf, len, "%s:%d", ip, port);
    }
}

fm_tls_tunnel *fm_tls_open(fm_tls *tls, uv_loop_t *loop, const struct sockaddr *addr,
                           const char *host, redisAsyncContext **ac, char *err, size_t errlen)
{
    fm_tls_tunnel *t = calloc(1, sizeof(*t));
    int fd, rc;

    *ac = NULL;
    if (t == NULL) {
        snprintf(err, errlen, "TLS: out of memory");
        return NULL;
    }
    peer_name(addr, t->peer, sizeof(t->peer));
    t->ssl = fm_tls_session(tls, host, err, errlen);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
        if (t->ssl != NULL)
            snprintf(err, errlen, "TLS: out of memory");
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    /* An empty input BIO means "wait for more", not the end. */
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out);
    if ((fd = pair_with_hiredis(tls, ac, err, errlen)) < 0) {
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    t->err = err;
    t->errlen = errlen;
    t->owned = 1;
    t->handles = 2;
    uv_tcp_init(loop, &t->tcp);
    uv_pipe_init(loop, &t->plain, 0);
    t->tcp.data = t->plain.data = t->connect.data = t;
    if ((rc = uv_pipe_open(&t->plain, fd)) != 0)
        close(fd);
    else
        rc = uv_tcp_connect(&t->connect, &t->tcp, addr, on_connected);
    if (rc != 0) {
        snprintf(err, errlen, "connecting to %s: %s", t->peer, uv_strerror(rc));
        fm_tls_close(t);
        redisAsyncFree(*ac);
        *ac = NULL;
        return NULL;
    }
    return t;
}

void fm_tls_close(fm_tls_tunnel *t)
{
    t->owned = 0;
    t->err = NULL;
    if (!t->closing) {
        /* A close_notify, if the socket takes it now; Redis copes without. */
        if (t->established && SSL_shutdown(t->ssl) >= 0)
            flush_out(t);
        close_all(t);
    }
    if (t->handles == 0) {
        SSL_free(t->ssl);
        free(t);
    }
}
