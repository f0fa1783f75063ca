/* tls.h -- TLS to Redis, below hiredis.
 *
 * hiredis 0.14 has no TLS, so the daemon runs each TLS session itself. A
 * tunnel holds the TCP connection to Redis and its OpenSSL session, and
 * gives hiredis a Unix socket whose far end it pumps through that session
 * on the loop. hiredis, the link, its deadlines and its backoff see a plain
 * connection that answers late while the handshake runs and closes when
 * TLS fails; the tunnel writes why into a buffer its owner reads then.
 *
 * The Unix socket is made by connect(2) and accept(2) on a listener that
 * lives for one call, in a directory of the daemon's own (mode 0700), since
 * hiredis 0.14 can take no ready-made descriptor. */
#ifndef FM_TLS_H
#define FM_TLS_H

#include <stddef.h>
#include <sys/socket.h>

#include <hiredis/async.h>
#include <uv.h>

#include "config.h"

typedef struct fm_tls fm_tls;
typedef struct fm_tls_tunnel fm_tls_tunnel;

/* The redis_tls_* settings of cfg (which uses rediss://) with their files
 * read: the CA store, the client certificate and its key. NULL with the
 * reason in err (a file missing or unreadable, a key that does not match its
 * certificate). Reads files: at the start or for -t, never on the loop. */
fm_tls *fm_tls_create(const fm_config *cfg, char *err, size_t errlen);
/* Tunnels still open keep what they use of it. */
void fm_tls_free(fm_tls *tls);

/* Starts a TLS session with the server at addr, whose certificate must name
 * host (or redis_tls_server_name), and returns the tunnel with *ac, a
 * hiredis context connected to its plaintext end and not yet on any loop.
 * When the tunnel fails later, it writes why into err (errlen), before the
 * context sees its socket close: err must outlive the tunnel. NULL with the
 * reason in err. */
fm_tls_tunnel *fm_tls_open(fm_tls *tls, uv_loop_t *loop, const struct sockaddr *addr,
                           const char *host, redisAsyncContext **ac, char *err, size_t errlen);
/* Ends the tunnel; it writes no error after this, and its memory goes
 * when its handles have closed. */
void fm_tls_close(fm_tls_tunnel *t);

#endif
