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
 * to the owner's buffer first; until the session is up, that buffer says
 * what it waits for, so a deadline that ends it can say so too. Redis
 * closing the connection shuts the plaintext end down after what was
 * already decrypted, so that hiredis reads Redis's last reply (an error
 * saying why, often) before the end.
 *
 * OpenSSL's error queue is the thread's, shared by every tunnel: it is
 * emptied before each call into a session, so that one tunnel's failure can
 * never be read as another's. */
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
    unsigned ended : 1;         /* Redis closed: no side is read again */
    unsigned answered : 1;      /* Redis sent hiredis something */
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

/* Ends the tunnel with why for its owner: "TLS with PEER: ...", or
 * "TLS handshake with PEER failed: ..." while the session was not up. */
static void fail(fm_tls_tunnel *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(fm_tls_tunnel *t, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    ERR_clear_error();
    if (t->closing)
        return;
    if (t->err != NULL) {
        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        if (t->established)
            snprintf(t->err, t->errlen, "TLS with %s: %s", t->peer, why);
        else
            snprintf(t->err, t->errlen, "TLS handshake with %s failed: %s", t->peer, why);
    }
    close_all(t);
}

/* Says what the session waits for, in the owner's buffer. */
static void waiting(fm_tls_tunnel *t, const char *what)
{
    if (t->err != NULL)
        snprintf(t->err, t->errlen, "TLS handshake with %s: %s", t->peer, what);
}

static int flush_out(fm_tls_tunnel *t);

/* A session call failed: its reason first, then the alert OpenSSL wrote
 * for the server, if the socket takes it. */
static void fail_ssl(fm_tls_tunnel *t, int rc)
{
    char why[256];

    fm_tls_why(t->ssl, rc, why, sizeof(why));
    flush_out(t);
    fail(t, "%s", why);
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
    if (t->closing || t->ended)
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

/* The TCP connection failed, or (err UV_EOF) ended. In TLS 1.3 a server
 * that wants a client certificate ends the session after our handshake is
 * done, and its alert is lost when it resets the connection, whichever of
 * our reads and writes meets the reset first: such an end says what it
 * most likely means. */
static void fail_socket(fm_tls_tunnel *t, int err)
{
    const char *what = err == UV_EOF ? "closed" : uv_strerror(err);

    if (t->established && !t->answered)
        fail(t, "%s right after the handshake: the server refused the session (does it require "
             "a client certificate?)", what);
    else
        fail(t, "%s", what);
}

static void on_sent(uv_write_t *w, int status)
{
    send_req *r = (send_req *)w;
    fm_tls_tunnel *t = r->t;

    free(r);
    if (status < 0) {
        fail_socket(t, status);
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
 * messages. 0, or a libuv error for the caller to report. */
static int flush_out(fm_tls_tunnel *t)
{
    char *p;
    long n = BIO_get_mem_data(t->out, &p);
    int rc;

    if (n <= 0 || t->closing)
        return 0;
    rc = send_to(t, (uv_stream_t *)&t->tcp, p, (size_t)n);
    (void)BIO_reset(t->out);
    return rc;
}

static int flush_or_fail(fm_tls_tunnel *t)
{
    int rc = flush_out(t);

    if (rc != 0)
        fail_socket(t, rc);
    return rc;
}

static void handshake(fm_tls_tunnel *t)
{
    int rc;

    ERR_clear_error();
    rc = SSL_do_handshake(t->ssl);
    if (rc != 1 && SSL_get_error(t->ssl, rc) != SSL_ERROR_WANT_READ) {
        fail_ssl(t, rc);
        return;
    }
    if (flush_or_fail(t) != 0 || rc != 1)
        return;
    t->established = 1;
    if (t->err != NULL)
        t->err[0] = '\0';
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
    if (t->closing || t->ended)
        return;
    t->ended = 1;
    uv_read_stop((uv_stream_t *)&t->tcp);
    uv_read_stop((uv_stream_t *)&t->plain);
    if (uv_shutdown(&t->shutdown, (uv_stream_t *)&t->plain, on_shut) != 0)
        close_all(t);
}

/* Decrypts whatever whole records the input BIO holds, gathered into
 * rbuf so that hiredis gets them in as few writes as fit. */
static void pump(fm_tls_tunnel *t)
{
    size_t used = 0;
    int n, rc = 0;

    ERR_clear_error();
    for (;;) {
        n = SSL_read(t->ssl, rbuf + used, (int)(sizeof(rbuf) - used));
        if (n > 0) {
            used += (size_t)n;
            t->answered = 1;
        }
        if (used > 0 && (n <= 0 || used == sizeof(rbuf))) {
            rc = send_to(t, (uv_stream_t *)&t->plain, rbuf, used);
            used = 0;
        }
        if (n <= 0 || rc != 0)
            break;
    }
    if (rc != 0) {
        fail(t, "passing a reply on: %s", uv_strerror(rc));
        return;
    }
    switch (SSL_get_error(t->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        /* A read may have to answer (a key update): it goes out now. */
        flush_or_fail(t);
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
    if (n == UV_EOF && t->established && t->answered) {
        end_from_redis(t);
        return;
    }
    if (n == UV_EOF && !t->established) {
        fail(t, "the server closed the connection");
        return;
    }
    if (n < 0) {
        fail_socket(t, (int)n);
        return;
    }
    if (BIO_write(t->in, rbuf, (int)n) != (int)n) {
        fail(t, "out of memory");
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
    ERR_clear_error();
    rc = SSL_write(t->ssl, rbuf, (int)n);
    if (rc != (int)n) {
        fail_ssl(t, rc);
        return;
    }
    flush_or_fail(t);
}

static void on_connected(uv_connect_t *req, int status)
{
    fm_tls_tunnel *t = req->data;

    if (t->closing)
        return;
    if (status < 0) {
        /* Before any TLS: said as hiredis would say it. */
        if (t->err != NULL)
            snprintf(t->err, t->errlen, "connecting to %s: %s", t->peer, uv_strerror(status));
        close_all(t);
        return;
    }
    uv_tcp_nodelay(&t->tcp, 1);
    uv_tcp_keepalive(&t->tcp, 1, FM_TLS_KEEPALIVE_S);
    uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_tcp_read);
    waiting(t, "no answer from the server (is it a TLS port?)");
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
    if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        snprintf(err, errlen, "TLS: a socket for hiredis: %s", strerror(errno));
        return -1;
    }
    for (int tries = 0;; tries++) {
        if (make_dir(tls, err, errlen) != 0) {
            close(lfd);
            return -1;
        }
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%u", tls->dir, tls->seq++);
        if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        if (errno != ENOENT || tries == 1) {
            snprintf(err, errlen, "TLS: a socket for hiredis in %s: %s", tls->dir,
                     strerror(errno));
            close(lfd);
            return -1;
        }
        /* The directory vanished (a clean-up of /tmp): made anew, once. */
        tls->dir[0] = '\0';
    }
    if (listen(lfd, 1) != 0) {
        snprintf(err, errlen, "TLS: a socket for hiredis in %s: %s", tls->dir, strerror(errno));
        unlink(sa.sun_path);
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
    snprintf(err, errlen, "connecting to %s: no answer", t->peer);
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
        ERR_clear_error();
        if (t->established && !t->ended && SSL_shutdown(t->ssl) >= 0)
            flush_out(t);
        ERR_clear_error();
        close_all(t);
    }
    if (t->handles == 0) {
        SSL_free(t->ssl);
        free(t);
    }
}
