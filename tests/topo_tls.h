/* topo_tls.h -- TLS for the tests: a private CA and certificates made with
 * the openssl command, and redis-server serving TLS with them on a
 * 127.0.0.1 port, beside the harness's plain Unix socket, through which
 * the tests assert what landed in Redis.
 *
 * The certificates live in a temporary directory of their own. Make them
 * in an unchecked fixture: they then belong to the runner, and the
 * fixture's teardown removes them also when a test failed (and the
 * process's exit, when the fixture itself failed). A process has one set
 * at a time. Each helper fails the running test, saying what went wrong,
 * when it cannot do its part (so the bench, bench/tls.c, runs them as a
 * test of its own). */
#ifndef FM_TOPO_TLS_H
#define FM_TOPO_TLS_H

#include <hiredis/hiredis.h>

#include "harness.h"

#define FMT_TLS_PATH 320

typedef struct fmt_tls_certs {
    char dir[256];
    char log[FMT_TLS_PATH];     /* what every openssl run printed */
    char ca[FMT_TLS_PATH];      /* the CA that signs the next three */
    char ca_dir[FMT_TLS_PATH];  /* ca alone, hashed as OpenSSL looks it up */
    char server_cert[FMT_TLS_PATH], server_key[FMT_TLS_PATH];   /* localhost, 127.0.0.1 */
    char client_cert[FMT_TLS_PATH], client_key[FMT_TLS_PATH];   /* for mutual TLS */
    char expired_cert[FMT_TLS_PATH];    /* server_key's, valid only in January 2020 */
    /* Signed by another CA, which nothing trusts; the same names. */
    char other_cert[FMT_TLS_PATH], other_key[FMT_TLS_PATH];
} fmt_tls_certs;

/* Makes every certificate above, in a fresh directory (removing the set
 * this process made before, if still there). */
void fmt_tls_certs_make(fmt_tls_certs *c);
/* Removes the directory and all it holds (kept with FMT_KEEP_LOGS set). */
void fmt_tls_certs_remove(fmt_tls_certs *c);

/* Which certificate a TLS Redis presents. */
typedef enum fmt_tls_cert {
    FMT_TLS_GOOD,       /* server_cert: the CA's, valid now */
    FMT_TLS_OTHER_CA,   /* other_cert, sent without its CA */
    FMT_TLS_EXPIRED,    /* expired_cert */
} fmt_tls_cert;

/* A redis-server with TLS. Not to be copied: r.extra points into extra,
 * which fmt_redis_restart(&t->r) reads again. */
typedef struct fmt_tls_redis {
    fmt_redis r;                /* r.sock: the plain Unix socket */
    int port;                   /* the TLS port on 127.0.0.1 */
    char url[64];               /* rediss://127.0.0.1:<port> */
    /* A plain port on 127.0.0.1 as well, for tests that check Redis over
     * TCP (ops_suite.c) and the bench's daemon over plain TCP
     * (bench/tls.c); never a test's daemon's. */
    int plain_port;
    char port_arg[16], plain_arg[16];
    const char *extra[16];
} fmt_tls_redis;

/* Starts redis-server serving TLS with cert;
 * auth_clients: it then requires a client certificate signed by the CA
 * (c->ca, whatever cert is).
 * c must outlive t (restarts read its paths again). Stop it with
 * fmt_redis_stop(&t->r). */
void fmt_tls_redis_start(fmt_tls_redis *t, const fmt_tls_certs *c, fmt_tls_cert cert,
                         int auth_clients);

/* openssl s_server on 127.0.0.1, which speaks no Redis (it answers each
 * line reversed): it presents other_cert, or server_cert to a client that
 * asks for localhost by SNI, and logs "CONNECTION ESTABLISHED" for every
 * handshake that completed. */
typedef struct fmt_tls_sni_server {
    pid_t pid;
    int port;
    char url[64];               /* rediss://127.0.0.1:<port> */
    char log[FMT_TLS_PATH];     /* in c->dir */
} fmt_tls_sni_server;

void fmt_tls_sni_server_start(fmt_tls_sni_server *s, const fmt_tls_certs *c);
void fmt_tls_sni_server_stop(fmt_tls_sni_server *s);

/* ---- topologies over TLS (topo_sentinel.c, topo_cluster.c) ---- */

#define FMT_TLS_TOPO_ARGS 18

/* What makes a server of a topology serve TLS on port_arg beside its
 * plain port, with server_cert, and speak TLS to the others: replication
 * and, with cluster set, the cluster bus. Its own connections to the
 * others present client_cert: a cluster bus asks every peer for a
 * certificate, and server_cert is for servers only (serverAuth).
 * Appended to args from n on (FMT_TLS_TOPO_ARGS at most), not
 * NULL-terminated; returns the new count. */
int fmt_tls_topo_args(const char **args, int n, const fmt_tls_certs *c, const char *port_arg,
                      int cluster);

/* How many clients of the Redis or sentinel that c (a plain connection)
 * is on came in through 127.0.0.1:port: an application's, which leaves
 * out c itself, replicas (flag S) and sentinels (named sentinel-...).
 * Redis 7.0's CLIENT LIST shows no TLS flag, but each client's laddr,
 * and so the port, plain or TLS, it came through. -1 when CLIENT LIST
 * fails. */
int fmt_tls_app_clients(redisContext *c, int port);
/* Whether no application is on c's server through plain_port; those
 * through tls_port are added to *apps. Frees c; 0 when c is NULL or
 * CLIENT LIST fails. */
int fmt_tls_only(redisContext *c, int plain_port, int tls_port, int *apps);

#endif
