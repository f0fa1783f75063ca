/* link_cmd.h -- commands on the Redis link: what a caller submits, the one
 * callback it gets back, and the flows that share the command connection.
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
#ifndef FM_LINK_CMD_H
#define FM_LINK_CMD_H

#include <stddef.h>

#include <hiredis/hiredis.h>

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

/* Scripts are registered before the link starts; -1 when the table is
 * full. */
int fm_link_register_script(fm_link *link, fm_script *script);

/* A client's flow. It lives while its owner holds it or a command of it is
 * in the link, so the owner may release it with commands still out. NULL
 * out of memory. */
fm_flow *fm_link_flow_create(void);
void fm_link_flow_release(fm_flow *flow);

/* Submits a command for flow (NULL: the daemon's own); its arguments are
 * copied. reads: how many keys' values its reply brings (GET 1, MGET n),
 * whose size the flow's past reads estimate; 0 for replies of fixed size.
 * Returns NULL when out of memory (cb is then never called). */
fm_cmd *fm_link_command(fm_link *link, fm_flow *flow, size_t reads, int argc,
                        const char **argv, const size_t *lens, fm_link_cb *cb, void *arg);
/* Submits a write of one key, argv[1] (SET), that Redis is to track for
 * this connection from the write on: Redis tracks a key when it is read,
 * not written, so the write goes in a transaction with a read of its key
 * (MULTI, the write, EXISTS, EXEC), with nothing of anyone else's in
 * between; a Lua script would do the same at twice Redis's CPU. cb gets
 * the write's own reply, or the error that refused it. For a link to one
 * server, not a Cluster (the near cache, its one user, is off there). */
fm_cmd *fm_link_tracked(fm_link *link, fm_flow *flow, int argc, const char **argv,
                        const size_t *lens, fm_link_cb *cb, void *arg);
/* Submits EVALSHA of a registered script with nkeys keys then args. */
fm_cmd *fm_link_script(fm_link *link, fm_flow *flow, fm_script *script, int nkeys,
                       size_t reads, int argc, const char **argv, const size_t *lens,
                       fm_link_cb *cb, void *arg);

/* Withdraws a command whose caller no longer waits. Returns 1 when it was
 * still queued here: it is freed and its callback never runs. Returns 0 when
 * it was already written to Redis: its callback still runs once the reply
 * (or the link's loss) arrives. */
int fm_link_cancel(fm_cmd *cmd);

/* Whether Redis answered it "not now" (LOADING, BUSY, MASTERDOWN,
 * READONLY) at least once: a deadline then means Redis stayed unavailable,
 * not that it was silent. */
int fm_cmd_transient(const fm_cmd *cmd);
/* The caller's deadline passed with cmd unanswered. In a Cluster its
 * master may hang (stopped, or cut off) while its connection stays open,
 * and its replica may have taken over: the slot map is asked for again,
 * of another node. Before fm_link_cancel. */
void fm_link_overdue(fm_cmd *cmd);

#endif
