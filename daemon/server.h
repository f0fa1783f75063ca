/* server.h -- the daemon's shared state, its connections and requests.
 *
 * One fm_server owns everything: the listening socket, the connections, the
 * Redis link and the services. A connection (fm_conn) owns its frame reader,
 * its output, its in-flight requests and its subscriptions; closing it is one
 * function, fm_conn_close(). A request (fm_req) outlives its connection when
 * a Redis command for it is still out: the reply then finds req->conn NULL
 * and is dropped (detach, don't dangle). */
#ifndef FM_SERVER_H
#define FM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "fm_buf.h"
#include "fm_error.h"
#include "fm_frame.h"
#include "fm_request.h"
#include "link.h"
#include "list.h"
#include "map.h"
#include "outq.h"

typedef struct fm_server fm_server;
typedef struct fm_conn fm_conn;
typedef struct fm_req fm_req;
typedef struct fm_op fm_op;
typedef struct fm_lock_service fm_lock_service;
typedef struct fm_wake_service fm_wake_service;
typedef struct fm_held fm_held;

struct fm_conn {
    fm_server *srv;
    uint64_t serial;            /* for logs */
    uv_pipe_t pipe;
    fm_flow *flow;              /* its share of the Redis command link */
    fm_frame_reader *reader;
    fm_buf out;                 /* replies being built, and queued behind outq */
    fm_outq outq;               /* shared frames, and a write in progress */
    uv_write_t wreq;
    int writing_active;
    int closing;                /* fm_conn_close ran; waiting for libuv */
    int close_after_write;      /* a framing error: flush, then close */
    int doomed;                 /* to be closed by the flusher */
    int flush_pending;          /* on srv's flush list */
    fm_conn *flush_next;
    fm_conn *prev, *next;       /* srv->conns */
    fm_req *reqs;               /* in flight, answered ones are gone */
    size_t inflight;
    fm_map held;                /* locks to release or extend for it, by token */
    fm_list wake_subs;          /* its wake channels, the wake service's */
    int wake_awaiting_up;       /* subscriptions to restore after "down" */
    char client_name[FM_NAME_MAX + 1];
};

typedef void fm_req_timer_cb(fm_req *req);
typedef void fm_req_reply_cb(fm_req *req, redisReply *reply);

struct fm_req {
    fm_conn *conn;              /* NULL once the connection is gone */
    fm_server *srv;
    const fm_op *op;
    fm_req *prev, *next;        /* conn->reqs */
    fm_cmd *cmd;                /* the Redis command out for it, if any */
    int answered;               /* replied to, or abandoned with its conn */
    int timer_used;
    uv_timer_t timer;
    uint64_t deadline;          /* uv_now() based, ms */
    fm_req_timer_cb *on_timer;  /* NULL: the deadline handler */
    fm_req_timer_cb *on_settle; /* the service lets go of it (answered) */
    fm_req_reply_cb *on_reply;  /* see fm_req_command() */
    size_t reply_start;         /* offset of the reply being built */
    char *id;                   /* exact JSON text of the id, or NULL */
    size_t idlen;
    char idbuf[32];
    void *data;                 /* the service's state, freed with it */
};

typedef struct fm_op_stats {
    uint64_t calls;
    uint64_t errors;
} fm_op_stats;

#define FM_MAX_OPS 32

struct fm_server {
    uv_loop_t *loop;
    fm_config *cfg;
    fm_config_args args;
    fm_link *link;
    uv_pipe_t listener;
    int listening;
    uv_prepare_t flusher;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t shutdown_timer;
    int shutting_down;
    fm_conn *conns;
    size_t nconns;
    uint64_t next_serial;
    fm_conn *flush_list;
    fm_lock_service *locks;
    fm_wake_service *wake;
    fm_op_stats op_stats[FM_MAX_OPS];
    uint64_t protocol_errors;   /* bad frames, bad JSON, bad ids, unknown ops */
    uint64_t cache_invalid;     /* cached values that were not JSON objects */
    uint64_t connections_total;
    uint64_t rejected_clients;
    size_t inflight;            /* requests not yet answered, all conns */
    size_t releasing;           /* lock releases nobody waits for, at Redis */
    size_t locks_held;          /* tracked for release on close or extension */
    size_t lingering;           /* commands of answered requests, at Redis */
    char readbuf[65536];        /* every read lands here first */
};

/* server.c */
/* Binds the socket and starts the link; srv->loop and srv->cfg are set. */
int fm_server_start(fm_server *srv);
/* Frees what the server owns once the loop has stopped. */
void fm_server_free(fm_server *srv);
void fm_server_schedule_flush(fm_server *srv, fm_conn *conn);
/* A connection closed; during shutdown the last one lets the loop end. */
void fm_server_conn_gone(fm_server *srv);

/* conn.c */
fm_conn *fm_conn_accept(fm_server *srv);
void fm_conn_close(fm_conn *conn);
/* Writes what is queued in conn->out; the server's flusher calls it. */
void fm_conn_flush(fm_conn *conn);
/* Whether the connection may take output (not closing). */
int fm_conn_alive(const fm_conn *conn);
/* Has the connection closed by the flusher, at the end of this loop turn. */
void fm_conn_doom(fm_conn *conn);

/* reply.c: building frames straight into conn->out. start() writes the frame
 * header and the opening of the object; the caller appends members as
 * ",\"name\":value"; finish() closes the frame and queues it. */
size_t fm_reply_ok_start(fm_conn *conn, const char *id, size_t idlen);
size_t fm_event_start(fm_conn *conn, const char *event);
void fm_reply_finish(fm_conn *conn, size_t start);
void fm_reply_error(fm_conn *conn, const char *id, size_t idlen,
                    fm_errcode code, const char *msg);
/* Queues a whole frame built elsewhere: a copy, or for a frame sent to
 * many, a reference. Either way the connection's max_output_bytes is
 * checked first, so an overflowing connection costs no copy. */
void fm_conn_send(fm_conn *conn, const char *frame, size_t len);
void fm_conn_send_shared(fm_conn *conn, fm_shared *f);
/* Whether n more bytes of output fit under max_output_bytes; when not, the
 * connection is doomed. For replies too large to build first and check
 * after. */
int fm_reply_room(fm_conn *conn, size_t n);
/* Appends ,"name":"value" with value JSON-escaped. */
void fm_reply_put_str(fm_conn *conn, const char *name, const char *v, size_t len);
void fm_reply_put_int(fm_conn *conn, const char *name, int64_t v);
void fm_reply_put_bool(fm_conn *conn, const char *name, int v);
void fm_reply_put_raw(fm_conn *conn, const char *name, const char *json, size_t len);

/* req.c */
fm_req *fm_req_create(fm_conn *conn, const fm_op *op, const fm_request *msg);
/* Allocates the service's state for a request, freed with it; NULL when out
 * of memory (the request was then answered with `internal`). */
void *fm_req_data(fm_req *req, size_t size);
/* Arms the request's timer at now + ms; when it fires req->on_timer (or the
 * deadline handler) runs. */
void fm_req_timer(fm_req *req, uint64_t ms);
/* Sets the deadline now + ms and arms the timer for it. */
void fm_req_deadline(fm_req *req, uint64_t ms);
/* Whether an answer can still reach the client: not answered yet, and its
 * connection neither gone nor doomed. */
int fm_req_listening(const fm_req *req);
/* Ends a request nobody will hear the answer of; it may be freed. */
void fm_req_drop(fm_req *req);
/* Builds a success reply; finish with fm_req_ok_finish. Returns NULL when
 * the request needs no reply any more: answered, or its connection gone or
 * doomed. It is then over (dropped), and may have been freed. */
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
/* Sends a command (or a script) for the request, with the request's
 * deadline (request_timeout_ms unless already set). A reply that is not an
 * error reaches on_reply while the request is still waiting; errors, link
 * loss and the deadline become the contract's error replies; late replies
 * are dropped. */
void fm_req_command(fm_req *req, int argc, const char **argv, const size_t *lens,
                    fm_req_reply_cb *on_reply);
/* The same for a command that reads `reads` keys (GET, MGET), whose reply
 * size the client's past reads estimate (see link.h, fair queuing). */
void fm_req_read(fm_req *req, size_t reads, int argc, const char **argv, const size_t *lens,
                 fm_req_reply_cb *on_reply);
void fm_req_script(fm_req *req, fm_script *script, int nkeys, int argc,
                   const char **argv, const size_t *lens, fm_req_reply_cb *on_reply);

/* Call first in a link callback: clears req->cmd and returns whether the
 * request was already answered or abandoned. If so, the caller undoes what
 * the late reply did, if anything, then calls fm_req_done(). */
int fm_req_command_done(fm_req *req);
/* Frees an answered request once nothing refers to it any more. */
void fm_req_done(fm_req *req);
/* What happens at the deadline when nothing else was asked for. */
void fm_req_expire(fm_req *req);
/* The connection went away: abandon the request. */
void fm_req_abandon(fm_req *req);

#endif
