/* redis_uv.c -- see redis_uv.h for why this is not hiredis's adapter.
 *
 * Writes: hiredis asks for writability after every command it buffers.
 * Polling for it would cost two epoll_ctl(2) calls and a loop turn per
 * burst of commands, so a connected context instead writes once per loop
 * turn from an idle handle, with every command of the turn in one
 * write(2). Only what the socket does not take at once waits for
 * writability. An idle handle, not a prepare one: a command submitted from
 * a prepare callback (a client's request resumed by the flusher, say)
 * starts a handle that libuv runs only at the next turn, and an active
 * idle handle keeps libuv from blocking for I/O before that turn, where a
 * prepare handle would not: the command would wait for the next event. */
#include <stdio.h>
#include <stdlib.h>

#include "redis_uv.h"

typedef struct fm_redis_uv {
    redisAsyncContext *ac;   /* NULL once hiredis cleaned up */
    fm_tls_tunnel *tunnel;   /* below the context's socket, or NULL */
    uv_poll_t poll;
    uv_idle_t flush;
    int events;
    int flushing;           /* inside the turn's write */
    int open;               /* handles not yet closed */
} fm_redis_uv;

static void on_poll(uv_poll_t *handle, int status, int events)
{
    fm_redis_uv *p = handle->data;

    /* An error: let hiredis find it through the operation it waits for. A
     * pending connect is checked on writability (SO_ERROR), an established
     * link on readability (read(2) returns the error or EOF). */
    if (status < 0)
        events = p->events ? p->events : UV_READABLE;
    if (p->ac != NULL && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void update(fm_redis_uv *p, int add, int del)
{
    int ev = (p->events | add) & ~del;

    /* libuv 1.44's uv_poll_start takes the fd out of epoll and puts it back
     * even when the mask is unchanged: two epoll_ctl(2) calls for nothing. */
    if (ev == p->events)
        return;
    p->events = ev;
    if (p->events)
        uv_poll_start(&p->poll, p->events, on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void on_flush(uv_idle_t *h)
{
    fm_redis_uv *p = h->data;

    uv_idle_stop(h);
    if (p->ac == NULL)
        return;
    p->flushing = 1;
    redisAsyncHandleWrite(p->ac);
    p->flushing = 0;
}

static void add_read(void *arg) { update(arg, UV_READABLE, 0); }
static void del_read(void *arg) { update(arg, 0, UV_READABLE); }

static void add_write(void *arg)
{
    fm_redis_uv *p = arg;

    /* A connect in progress, or a write the socket did not take whole,
     * waits for writability; anything else goes out this loop turn. */
    if (p->flushing || !(p->ac->c.flags & REDIS_CONNECTED))
        update(p, UV_WRITABLE, 0);
    else
        uv_idle_start(&p->flush, on_flush);
}

static void del_write(void *arg) { update(arg, 0, UV_WRITABLE); }

static void on_close(uv_handle_t *handle)
{
    fm_redis_uv *p = handle->data;

    if (--p->open == 0)
        free(p);
}

/* hiredis frees the context right after this returns; the handles may
 * still be referenced by libuv until their close callbacks. */
static void cleanup(void *arg)
{
    fm_redis_uv *p = arg;

    p->ac = NULL;
    if (p->tunnel != NULL)
        fm_tls_close(p->tunnel);
    uv_close((uv_handle_t *)&p->poll, on_close);
    uv_close((uv_handle_t *)&p->flush, on_close);
}

int fm_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    fm_redis_uv *p;

    if (ac->ev.data != NULL)
        return REDIS_ERR;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return REDIS_ERR;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    uv_idle_init(loop, &p->flush);
    p->open = 2;
    p->ac = ac;
    p->poll.data = p;
    p->flush.data = p;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return REDIS_OK;
}

redisAsyncContext *fm_redis_uv_connect(uv_loop_t *loop, fm_tls *tls, struct addrinfo *res,
                                       int port, const char *host, char *why, size_t whylen)
{
    redisAsyncContext *ac;
    fm_tls_tunnel *tunnel;
    char ip[64];

    why[0] = '\0';
    if (tls == NULL) {
        if (res->ai_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof(ip));
        else
            uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof(ip));
        uv_freeaddrinfo(res);
        ac = redisAsyncConnect(ip, port);
        return fm_redis_uv_start(ac, loop, 1, why, whylen) == 0 ? ac : NULL;
    }
    /* uv_getaddrinfo was given the port: the address carries it. */
    tunnel = fm_tls_open(tls, loop, res->ai_addr, host, &ac, why, whylen);
    uv_freeaddrinfo(res);
    if (tunnel == NULL)
        return NULL;
    /* No keepalive on a Unix socket: the tunnel keeps the TCP one alive. */
    if (fm_redis_uv_start(ac, loop, 0, why, whylen) != 0) {
        fm_tls_close(tunnel);
        return NULL;
    }
    ((fm_redis_uv *)ac->ev.data)->tunnel = tunnel;
    return ac;
}

const char *fm_redis_uv_why(const redisAsyncContext *ac, const char *why)
{
    if (why[0] != '\0')
        return why;
    return ac->errstr[0] != '\0' ? ac->errstr : "connection closed";
}

int fm_redis_uv_start(redisAsyncContext *ac, uv_loop_t *loop, int keepalive, char *why,
                      size_t whylen)
{
    if (ac == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (ac->err) {
        snprintf(why, whylen, "%s", ac->errstr);
        redisAsyncFree(ac);
        return -1;
    }
    /* A peer that vanished without a FIN or RST is found out. */
    if (keepalive)
        redisEnableKeepAlive(&ac->c);
    if (fm_redis_uv_attach(ac, loop) != REDIS_OK) {
        snprintf(why, whylen, "could not watch the socket");
        redisAsyncFree(ac);
        return -1;
    }
    return 0;
}
