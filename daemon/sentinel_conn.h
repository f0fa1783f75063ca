/* sentinel_conn.h -- one connection to one sentinel, for sentinel.c only:
 * resolved with uv_getaddrinfo, connected through redis_uv, and proven to
 * take commands (AUTH when a password is set, then PING) before its owner
 * uses it, all within a deadline. A subscription may follow safely then:
 * hiredis 0.14 drops a subscribed connection on any error reply, and
 * crashes on one to the first SUBSCRIBE (NOAUTH). */
#ifndef FM_SENTINEL_CONN_H
#define FM_SENTINEL_CONN_H

#include <hiredis/async.h>
#include <uv.h>

#include "config.h"
#include "tls.h"

enum { SC_IDLE, SC_RESOLVING, SC_CONNECTING, SC_HELLO, SC_UP };

typedef struct fm_sconn fm_sconn;
struct fm_sconn {
    uv_loop_t *loop;
    fm_tls *tls;            /* NULL: plain TCP */
    redisAsyncContext *ac;
    uv_getaddrinfo_t gai;
    uv_timer_t timer;       /* the deadline (fm_sconn_expect's too); the owner's, while SC_IDLE */
    int state;
    int resolving;          /* gai is in use, until its callback */
    int expired;            /* the deadline passed while resolving */
    char why[320];          /* a failure to report from the timer */
    char below[256];        /* the TLS tunnel's failure (redis_uv.h) */
    const fm_redis_addr *addr;
    const char *password;   /* NULL: no AUTH */
    /* Connected and set up: the owner sends on c->ac now. */
    void (*on_up)(fm_sconn *c);
    /* Failed, and closed; answered: the sentinel itself refused (an error
     * reply), rather than being out of reach. */
    void (*on_fail)(fm_sconn *c, const char *why, int answered);
    void (*on_gone)(fm_sconn *c);   /* after fm_sconn_release */
    void *data;
};

void fm_sconn_init(fm_sconn *c, uv_loop_t *loop, fm_tls *tls, void *data);
/* Connects to addr with a deadline of ms; on_up or on_fail follows, never
 * from within this call. The connection must be SC_IDLE and not resolving. */
void fm_sconn_open(fm_sconn *c, const fm_redis_addr *addr, const char *password, int64_t ms);
/* Stops the deadline: the owner keeps the connection open. */
void fm_sconn_keep(fm_sconn *c);
/* Gives what the owner sends next on a connection that is up a deadline
 * of ms: passed before fm_sconn_keep, the connection fails with why. */
void fm_sconn_expect(fm_sconn *c, int64_t ms, const char *why);
/* Fails the connection: closes it and calls on_fail. From a reply
 * callback too. */
void fm_sconn_fail(fm_sconn *c, const char *why, int answered);
/* Closes it without a word (done, or the owner goes). */
void fm_sconn_close(fm_sconn *c);
/* Closes it for good: gone(c) follows once for each handle or request
 * still open (the timer, a resolution in flight); returns how many. */
int fm_sconn_release(fm_sconn *c, void (*gone)(fm_sconn *c));

#endif
