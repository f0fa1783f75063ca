/* sentinel.h -- the master that Redis Sentinel names, found without
 * blocking the loop, and followed through failovers.
 *
 * Asking (fm_sentinel_ask): the sentinels are asked in turn, in the order
 * of redis_sentinels except that the last one that answered goes first,
 * each with FM_SENTINEL_ASK_MS (at most request_timeout_ms) to connect,
 * take AUTH (redis_sentinel_password) and answer SENTINEL
 * get-master-addr-by-name. Whoever asks while a round runs shares its
 * answer. A round ends with an address or, when no sentinel gave one, with
 * why: the most telling failure (a sentinel's own refusal before a
 * connection that failed).
 *
 * Watching: one sentinel at a time holds a subscription to +switch-master,
 * on a connection of its own. A switch of our master calls the switch hook
 * with the new address; that sentinel, which announced the switch, is
 * asked first from then on, and a round that was running is asked again,
 * since its answer may predate the switch. A watcher that had to connect
 * again may have missed a switch: once subscribed, it checks with a round
 * and calls the hook when the sentinels name another master than before.
 * A watcher that loses its sentinel moves on to the next one, with the
 * link's backoff. */
#ifndef FM_SENTINEL_H
#define FM_SENTINEL_H

#include <uv.h>

#include "config.h"
#include "list.h"

#define FM_SENTINEL_ASK_MS 1000
#define FM_SENTINEL_HOST_MAX 256    /* a master's address as a sentinel gives it */

typedef struct fm_sentinel fm_sentinel;
typedef struct fm_sentinel_waiter fm_sentinel_waiter;

/* host NULL: no sentinel named the master, and why says what went wrong. */
typedef void fm_sentinel_answer_fn(fm_sentinel_waiter *ask, const char *host, int port,
                                   const char *why);
struct fm_sentinel_waiter {
    fm_list in_waiting;     /* on the sentinel's waiting list, while asking */
    fm_sentinel_answer_fn *fn;
};

/* The master moved to host:port; why says how it was learnt. */
typedef void fm_sentinel_switch_fn(const char *host, int port, const char *why, void *arg);

/* NULL when out of memory. cfg names the sentinels; it is read until the
 * next fm_sentinel_set_config. */
fm_sentinel *fm_sentinel_create(uv_loop_t *loop, const fm_config *cfg,
                                fm_sentinel_switch_fn *on_switch, void *arg);
/* Starts watching for switches. */
void fm_sentinel_start(fm_sentinel *s);
void fm_sentinel_set_config(fm_sentinel *s, const fm_config *cfg);
/* Asks for the master's address: fn is called once, never from within
 * this call, unless the ask is withdrawn first. */
void fm_sentinel_ask(fm_sentinel *s, fm_sentinel_waiter *ask, fm_sentinel_answer_fn *fn);
void fm_sentinel_withdraw(fm_sentinel_waiter *ask);
/* Withdraws nothing: every ask must be withdrawn or answered before. The
 * struct goes when its handles have closed. */
void fm_sentinel_free(fm_sentinel *s);

#endif
