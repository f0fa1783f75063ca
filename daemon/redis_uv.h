/* redis_uv.h -- hiredis async events on a libuv loop.
 *
 * hiredis 0.14's own libuv adapter returns early when libuv reports a socket
 * error, so over TCP a refused connect or a reset peer never reaches hiredis
 * and the link hangs. This adapter hands such errors to hiredis, whose read
 * or connect check then sees them and disconnects properly. */
#ifndef FM_REDIS_UV_H
#define FM_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

#include "tls.h"

/* Returns REDIS_OK, or REDIS_ERR (context left unattached). */
int fm_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);
/* Connects to the first address uv_getaddrinfo found (which it frees) on
 * port, numeric so that hiredis's own getaddrinfo(3) call cannot block, and
 * takes the context onto the loop with TCP keepalive: directly, or through
 * a TLS tunnel (tls.h) when tls is not NULL, whose certificate must name
 * host. NULL with the reason in why. A tunnel that fails later writes why
 * there before the context sees its socket close, so why must outlive the
 * context; fm_redis_uv_why then names the context's end. */
redisAsyncContext *fm_redis_uv_connect(uv_loop_t *loop, fm_tls *tls, struct addrinfo *res,
                                       int port, const char *host, char *why, size_t whylen);
/* Why a context ended: what the layer below wrote to why, else hiredis's
 * error. */
const char *fm_redis_uv_why(const redisAsyncContext *ac, const char *why);
/* Takes a context just made by redisAsyncConnect* (NULL: out of memory)
 * onto the loop, with TCP keepalive when asked: 0, or -1 with why filled
 * in and the context freed. */
int fm_redis_uv_start(redisAsyncContext *ac, uv_loop_t *loop, int keepalive, char *why,
                      size_t whylen);

#endif
