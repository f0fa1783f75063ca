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
 * cancels what is still queued here and lets what was sent come back late.
 *
 * Fair queuing. Every client's commands share the one command connection,
 * and Redis answers them in order: a client pouring large reads would sit
 * in front of everyone else's small requests. So each client has a flow,
 * and what a flow may have out at Redis is bounded, by count and by the
 * estimated bytes of its replies (learnt from the flow's own past reads)
 * and requests; the rest waits here, and waiting flows are served in turn.
 * Small commands are never held back by others' bulk ones: at most a
 * bounded window of bulk bytes is ever in front of them. The daemon's own
 * commands (releases and extensions of held locks) have a flow no bound
 * applies to. */
#ifndef FM_LINK_H
#define FM_LINK_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "config.h"

typedef struct fm_link fm_link;
typedef struct fm_cmd fm_cmd;
typedef struct fm_flow fm_flow;

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
    /* Redis will not have the channel (its ACL forbids it to this user);
     * the link has dropped it. */
    void (*refused)(const char *channel, size_t clen, const char *why, void *arg);
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

/* A client's flow (see "Fair queuing" above). It lives while its owner
 * holds it or a command of it is in the link, so the owner may release it
 * with commands still out. NULL out of memory. */
fm_flow *fm_link_flow_create(void);
void fm_link_flow_release(fm_flow *flow);

/* Submits a command for flow (NULL: the daemon's own); its arguments are
 * copied. reads: how many keys' values its reply brings (GET 1, MGET n),
 * whose size the flow's past reads estimate; 0 for replies of fixed size.
 * Returns NULL when out of memory (cb is then never called). */
fm_cmd *fm_link_command(fm_link *link, fm_flow *flow, size_t reads, int argc,
                        const char **argv, const size_t *lens, fm_link_cb *cb, void *arg);
/* Submits EVALSHA of a registered script with nkeys keys then args. */
fm_cmd *fm_link_script(fm_link *link, fm_flow *flow, fm_script *script, int nkeys,
                       int argc, const char **argv, const size_t *lens, fm_link_cb *cb,
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

/* Pub/sub channel set, restored after every reconnect. A channel new to
 * the link is first checked against the Redis user's ACL on the command
 * connection, since hiredis 0.14 drops a subscribed connection on a
 * refused SUBSCRIBE; a refusal is reported through `refused`. Returns 1
 * when the channel is subscribed already (nothing more is reported), 0
 * when `subscribed` or `refused` will follow, -1 out of memory. */
int fm_link_subscribe(fm_link *link, const char *channel, size_t len);
int fm_link_unsubscribe(fm_link *link, const char *channel, size_t len);

/* Counters for stats. */
typedef struct fm_link_stats {
    uint64_t connects;
    uint64_t disconnects;
    uint64_t commands;
    uint64_t retries;       /* transient errors and NOSCRIPT re-sends */
    uint64_t refused;       /* channels the ACL would not let us subscribe */
    size_t queued;          /* waiting for the link, or for their turn */
} fm_link_stats;
void fm_link_get_stats(const fm_link *link, fm_link_stats *out);

#endif
