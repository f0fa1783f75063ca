/* sentinel.h -- the master that Redis Sentinel names, found without
 * blocking the loop, and followed through failovers.
 *
 * Asking (fm_sentinel_ask): a round asks the sentinels in turn, each with
 * FM_SENTINEL_ASK_MS (at most request_timeout_ms) to connect, take AUTH
 * (redis_sentinel_password) and answer SENTINEL get-master-addr-by-name,
 * until a majority of redis_sentinels name the same master. When the
 * sentinels run out first, the round's answer is the master named most
 * often (the first named, on a tie), and when none named one, why not:
 * the most telling failure (a sentinel's own refusal before a connection
 * that failed). The order of asking is that of redis_sentinels, except
 * that the first to name the last round's answer goes first and those
 * whose last ask failed go last. Each sentinel's connection stays open
 * for the next round. Whoever asks while a round runs shares its answer.
 *
 * Following: the master the daemon follows is the first round's answer;
 * it changes when a round's majority names another, or when a
 * sentinel announces +switch-master. Both call the switch hook. A
 * sentinel that lags behind a failover names the old master for a while
 * (the others tell it through the Redis servers, every 2 s), and the old
 * master takes writes for seconds after SENTINEL FAILOVER: one such
 * answer must not move the link back there, so a round only moves it on
 * a majority. A round that finds no majority leaves the link where it is,
 * and only a context that has no master goes where the round's answer
 * says (its setup proves with ROLE that the server is a master).
 *
 * Checking: every FM_SENTINEL_CHECK_MS a round runs (unless one runs),
 * so that a switch whose announcement never came is followed all the
 * same, one round later.
 *
 * Watching: one sentinel at a time holds a subscription to +switch-master,
 * on a connection of its own. A switch of our master calls the switch hook
 * with the new address; that sentinel, which announced the switch, is
 * asked first from then on, and a round that was running is asked again,
 * since its answer may predate the switch. A stopped sentinel keeps its
 * TCP connections open and says nothing, so every FM_SENTINEL_CHECK_MS the
 * watched one must answer a probe within the ask's time. A watcher that
 * loses its sentinel, or finds it silent, moves on to the next one, with
 * the link's backoff; once subscribed, it starts a round, for the switch
 * it may have missed. */
#ifndef FM_SENTINEL_H
#define FM_SENTINEL_H

#include <uv.h>

#include "config.h"
#include "list.h"
#include "tls.h"

#define FM_SENTINEL_ASK_MS 1000
/* A failover announced where nobody listened is found one check later: the
 * old master takes writes (lost ones) for seconds after SENTINEL FAILOVER
 * and the sentinels themselves look at their servers every second, so
 * checking more often would gain little and checking less would keep
 * writing there longer. A check that finds the sentinels agreeing is one
 * command on a kept connection to each of a majority of them. */
#define FM_SENTINEL_CHECK_MS 1000
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
 * next fm_sentinel_set_config. tls (NULL: none) outlives the sentinel. */
fm_sentinel *fm_sentinel_create(uv_loop_t *loop, const fm_config *cfg, fm_tls *tls,
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
