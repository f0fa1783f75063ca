/* link.h -- the daemon's link to Redis.
 *
 * The link owns two hiredis async contexts, one for commands (shared by all
 * clients: pipelined by nature) and one for SUBSCRIBE, and everything about
 * keeping them usable: resolving and connecting without blocking the loop,
 * AUTH and SELECT, loading Lua scripts, reconnecting with backoff, retrying
 * commands that met a transient state (LOADING, BUSY, MASTERDOWN), and
 * re-sending EVALSHA as EVAL on NOSCRIPT. Services never touch a hiredis
 * context; they submit commands and get exactly one callback per command.
 *
 * Deadlines belong to the caller (a request), not to the link: hiredis 0.14
 * cannot cancel a command once written, so a caller whose deadline passes
 * cancels what is still queued here and lets what was sent come back late. */
#ifndef FM_LINK_H
#define FM_LINK_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "config.h"

typedef struct fm_link fm_link;
typedef struct fm_cmd fm_cmd;

typedef enum fm_link_status {
    FM_LINK_OK,     /* reply is Redis's answer, possibly an error reply */
    FM_LINK_DOWN    /* the link was lost with the command in flight */
} fm_link_status;

/* reply is valid only during the call; NULL unless status is FM_LINK_OK. */
typedef void fm_link_cb(fm_link_status status, redisReply *reply, void *arg);

/* A Lua script a service uses; the link loads it on every connect. */
typedef struct fm_script {
    const char *name;   /* for logs */
    const char *body;
    char sha[41];       /* filled by SCRIPT LOAD */
} fm_script;

/* Pub/sub: what the subscribe context reports. */
typedef struct fm_link_sub_handler {
    void (*message)(const char *channel, size_t clen, const char *payload,
                    size_t plen, void *arg);
    void (*subscribed)(const char *channel, size_t clen, void *arg);
    void (*down)(void *arg);    /* the subscribe context was lost */
    void *arg;
} fm_link_sub_handler;

fm_link *fm_link_create(uv_loop_t *loop, const fm_config *cfg);
/* Disconnects both contexts; every command still queued or in flight gets
 * FM_LINK_DOWN first. */
void fm_link_free(fm_link *link);

/* Starts connecting. Scripts must be registered before. */
int fm_link_start(fm_link *link);
int fm_link_register_script(fm_link *link, fm_script *script);
void fm_link_set_sub_handler(fm_link *link, const fm_link_sub_handler *h);
/* Configuration values the link reads (backoff) may change on reload. */
void fm_link_set_config(fm_link *link, const fm_config *cfg);

/* Whether commands are being sent right now (connected, set up). */
int fm_link_ready(const fm_link *link);
int fm_link_sub_ready(const fm_link *link);

/* Submits a command; its arguments are copied. Returns NULL when out of
 * memory (cb is then never called). */
fm_cmd *fm_link_command(fm_link *link, int argc, const char **argv,
                        const size_t *lens, fm_link_cb *cb, void *arg);
/* Submits EVALSHA of a registered script with nkeys keys then args. */
fm_cmd *fm_link_script(fm_link *link, fm_script *script, int nkeys, int argc,
                       const char **argv, const size_t *lens, fm_link_cb *cb,
                       void *arg);

/* Withdraws a command whose caller no longer waits. Returns 1 when it was
 * still queued here: it is freed and its callback never runs. Returns 0 when
 * it was already written to Redis: its callback still runs once the reply
 * (or the link's loss) arrives. */
int fm_link_cancel(fm_cmd *cmd);

/* Whether Redis answered it "not now" (LOADING, BUSY, MASTERDOWN,
 * READONLY) at least once: a deadline then means Redis stayed unavailable,
 * not that it was silent. */
int fm_cmd_transient(const fm_cmd *cmd);

/* Pub/sub channel set, restored after every reconnect. Subscribing again to
 * a channel already subscribed only reports `subscribed` again. */
int fm_link_subscribe(fm_link *link, const char *channel, size_t len);
int fm_link_unsubscribe(fm_link *link, const char *channel, size_t len);

/* Counters for stats. */
typedef struct fm_link_stats {
    uint64_t connects;
    uint64_t disconnects;
    uint64_t commands;
    uint64_t retries;       /* transient errors and NOSCRIPT re-sends */
    size_t queued;
} fm_link_stats;
void fm_link_get_stats(const fm_link *link, fm_link_stats *out);

#endif
