/* redis_uv.c -- see redis_uv.h for why this is not hiredis's adapter. */
#include <stdlib.h>

#include "redis_uv.h"

typedef struct fm_redis_uv {
    redisAsyncContext *ac;   /* NULL once hiredis cleaned up */
    uv_poll_t poll;
    int events;
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
    p->events = (p->events | add) & ~del;
    if (p->events)
        uv_poll_start(&p->poll, p->events, on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void add_read(void *arg) { update(arg, UV_READABLE, 0); }
static void del_read(void *arg) { update(arg, 0, UV_READABLE); }
static void add_write(void *arg) { update(arg, UV_WRITABLE, 0); }
static void del_write(void *arg) { update(arg, 0, UV_WRITABLE); }

static void on_close(uv_handle_t *handle)
{
    free(handle->data);
}

/* hiredis frees the context right after this returns; the poll handle may
 * still be referenced by libuv until its close callback. */
static void cleanup(void *arg)
{
    fm_redis_uv *p = arg;

    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, on_close);
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
    p->ac = ac;
    p->poll.data = p;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return REDIS_OK;
}
