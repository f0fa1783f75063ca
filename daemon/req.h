/* req.h -- requests, and the one runner of their Redis commands.
 *
 * A request is created when a frame is dispatched, and answered exactly
 * once: a success (fm_req_ok*), an error (fm_req_fail*), or nothing
 * (fm_req_drop, when nobody can hear the answer). A request outlives its
 * connection when a Redis command for it is still out: the reply then finds
 * req->conn NULL (detach, don't dangle).
 *
 * Services never touch the link: they run a command through fm_req_run()
 * (or its three short forms) and get its outcome through the request's
 * callbacks. The runner calls exactly one of them per command, and frees
 * the request itself once it is answered, no command of it is out and its
 * timer is closed; no service frees a request. Like hiredis's
 * __redisRunCallback, one function runs every callback:
 *
 *   on_reply    a reply that is not an error, while the request waits;
 *               errors, link loss and the deadline become the contract's
 *               error replies
 *   on_result   instead of on_reply, when set: every outcome while the
 *               request waits, errors and link loss included
 *   on_late     the outcome of a command whose request was already
 *               answered (deadline, client gone): undo what it did
 *   on_timer    the request's timer; by default the deadline, which
 *               withdraws the command and fails the request
 *   on_settle   the request was answered: the service lets go of it */
#ifndef FM_REQ_H
#define FM_REQ_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "conn.h"
#include "fm_error.h"
#include "fm_request.h"
#include "latency.h"
#include "link_cmd.h"
#include "list.h"

typedef struct fm_req fm_req;

/* What every request shares: where commands go, and the counts a shutdown
 * waits on. */
typedef struct fm_reqs {
    uv_loop_t *loop;
    const fm_config *cfg;
    fm_link *link;
    size_t inflight;            /* requests not answered yet */
    size_t lingering;           /* commands of answered requests, at Redis */
} fm_reqs;

/* An operation's counters, and the latency of its requests: from dispatch
 * until answered (or dropped, its client gone), rounded up to whole us. */
typedef struct fm_op_stats {
    uint64_t calls;
    uint64_t errors;
    fm_latency latency;
} fm_op_stats;

typedef void fm_req_cb(fm_req *req);
typedef void fm_req_reply_cb(fm_req *req, redisReply *reply);
typedef void fm_req_result_cb(fm_req *req, fm_link_status status, redisReply *reply);

struct fm_req {
    fm_reqs *reqs;
    fm_conn *conn;              /* NULL once the connection is gone */
    fm_list in_conn;            /* conn->reqs, until answered */
    fm_op_stats *stats;         /* its operation's */
    void *svc;                  /* its service's state */
    uint64_t born_ns;           /* uv_hrtime() at dispatch, for its latency */
    fm_cmd *cmd;                /* the Redis command out for it, if any */
    int answered;               /* replied to, dropped, or abandoned */
    int timer_used;
    uv_timer_t timer;
    uint64_t deadline;          /* uv_now() based, ms; 0: not set yet */
    fm_req_reply_cb *on_reply;
    fm_req_result_cb *on_result;
    fm_req_result_cb *on_late;
    fm_req_cb *on_timer;
    fm_req_cb *on_settle;
    size_t reply_start;         /* offset of the reply being built */
    char *id;                   /* exact JSON text of the id, or NULL */
    size_t idlen;
    char idbuf[32];
    void *data;                 /* the service's state for it, freed with it */
};

/* A command to run: EVALSHA of script with nkeys keys when script is set,
 * a write Redis tracks the key of (fm_link_tracked) when tracked is set,
 * argv as it is otherwise. reads: keys whose values the reply brings (GET
 * 1, MGET n, a script that returns a key's value 1), for the link's fair
 * queuing. */
typedef struct fm_req_cmd {
    fm_script *script;
    int tracked;
    int nkeys;
    size_t reads;
    int argc;
    const char **argv;
    const size_t *lens;
} fm_req_cmd;

fm_req *fm_req_create(fm_reqs *reqs, fm_conn *conn, fm_op_stats *stats, void *svc,
                      const fm_request *msg);
/* Allocates the service's state for a request, freed with it; NULL when out
 * of memory (the request was then answered with `internal`). */
void *fm_req_data(fm_req *req, size_t size);

/* Runs a command for the request, which waits for it until its deadline
 * (request_timeout_ms from the first command, unless set before). */
void fm_req_run(fm_req *req, const fm_req_cmd *cmd);
void fm_req_command(fm_req *req, int argc, const char **argv, const size_t *lens,
                    fm_req_reply_cb *on_reply);
void fm_req_read(fm_req *req, size_t reads, int argc, const char **argv, const size_t *lens,
                 fm_req_reply_cb *on_reply);
void fm_req_script(fm_req *req, fm_script *script, int nkeys, int argc, const char **argv,
                   const size_t *lens, fm_req_reply_cb *on_reply);
/* A command of the daemon's own, for no request (releases and extensions
 * of locks whose holders are gone or busy elsewhere): on the link's own
 * flow, which no bound holds back; cb gets its outcome, exactly once.
 * Returns -1 when nothing was sent (out of memory). */
int fm_reqs_own(fm_reqs *reqs, const fm_req_cmd *cmd, fm_link_cb *cb, void *arg);
/* Takes back the command out for it, if it is still queued at the link;
 * one already written comes back to on_late. */
void fm_req_withdraw(fm_req *req);

/* Arms the request's timer at now + ms (see on_timer). */
void fm_req_timer(fm_req *req, uint64_t ms);
/* Sets the deadline now + ms and arms the timer for it. */
void fm_req_deadline(fm_req *req, uint64_t ms);
/* What the deadline does when the service set no on_timer. */
void fm_req_expire(fm_req *req);

/* Whether an answer can still reach the client: not answered yet, and its
 * connection neither gone nor doomed. */
int fm_req_listening(const fm_req *req);
/* Ends a request nobody will hear the answer of. */
void fm_req_drop(fm_req *req);
/* Builds a success reply; finish with fm_req_ok_finish. Returns NULL when
 * the request needs no reply any more: answered, or its connection gone or
 * doomed. It is then over (dropped). */
fm_conn *fm_req_ok_start(fm_req *req);
void fm_req_ok_finish(fm_req *req);
/* A success reply without fields, or with one. */
void fm_req_ok(fm_req *req);
void fm_req_ok_int(fm_req *req, const char *name, int64_t v);
void fm_req_ok_bool(fm_req *req, const char *name, int v);
void fm_req_fail(fm_req *req, fm_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Maps a link failure or a Redis error reply to the contract's error. */
void fm_req_fail_redis(fm_req *req, fm_link_status status, const redisReply *reply);

/* The connection is closing: every request of it is abandoned. */
void fm_req_abandon_all(fm_conn *conn);

#endif
