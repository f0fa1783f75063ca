/* tls_int.h -- what tls.c (the settings and OpenSSL's words) shares with
 * tls_tunnel.c (the sessions on the loop). */
#ifndef FM_TLS_INT_H
#define FM_TLS_INT_H

#include <openssl/ssl.h>

#include "tls.h"

#define FM_TLS_DIR_MAX 80   /* leaves room for "/<n>" in a sun_path */

struct fm_tls {
    SSL_CTX *ctx;
    char *server_name;      /* redis_tls_server_name, or NULL: each host */
    char dir[FM_TLS_DIR_MAX + 1];  /* the tunnels' listeners; "" until the first */
    unsigned seq;           /* the next listener's name */
};

/* A client session for host (or redis_tls_server_name): SNI for a name,
 * and the certificate checked against the name or the IP address. NULL
 * with the reason in err. */
SSL *fm_tls_session(fm_tls *tls, const char *host, char *err, size_t errlen);
/* What went wrong in a session, in words: a certificate refused says which
 * check failed (an unknown CA, a name mismatch, an expired certificate),
 * anything else what OpenSSL reported. Empties OpenSSL's error queue. */
void fm_tls_why(SSL *ssl, int rc, char *buf, size_t len);

#endif
