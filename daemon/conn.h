/* conn.h -- client connections: the socket, frames in, output out.
 *
 * A connection (fm_conn) owns its frame reader, its output and its share
 * of the Redis link (flow). It knows nothing of requests or services: it
 * hands whole frames to its set's handler, and tells the handler when it
 * is closing, so that what hangs on it (requests, held locks, wake
 * subscriptions) can let go. Services keep their per-connection state in
 * its slots (svc), each under the number the core gave it.
 *
 * A connection that has to go while others are being served (its output
 * overflowed, memory ran out) is only marked doomed; the flusher closes it
 * at the end of the loop turn, so no loop over connections or subscribers
 * ever sees one vanish under it. */
#ifndef FM_CONN_H
#define FM_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "config.h"
#include "fm_buf.h"
#include "fm_frame.h"
#include "link_cmd.h"
#include "list.h"
#include "outq.h"

#define FM_CONN_SLOTS 4

typedef struct fm_conn fm_conn;
typedef struct fm_conns fm_conns;

/* fm_conn.flags */
enum {
    FM_CONN_WRITING = 1 << 0,           /* a uv_write is in progress */
    FM_CONN_FLUSH_PENDING = 1 << 1,     /* on the set's flush list */
    FM_CONN_DOOMED = 1 << 2,            /* the flusher closes it */
    FM_CONN_CLOSE_AFTER_WRITE = 1 << 3, /* its last frame is on the way */
    FM_CONN_CLOSING = 1 << 4,           /* fm_conn_close ran; libuv frees it */
    FM_CONN_PAUSED = 1 << 5             /* not read until its output drains */
};

struct fm_conn {
    fm_conns *set;
    uint64_t serial;            /* for logs */
    unsigned flags;
    uv_pipe_t pipe;
    fm_flow *flow;              /* its share of the Redis command link */
    fm_frame_reader *reader;
    fm_buf out;                 /* replies being built (reply.c) */
    fm_outq outq;               /* sealed and shared frames, and the write */
    uv_write_t wreq;
    fm_list in_set;             /* set->all */
    fm_list in_flush;           /* set->flush */
    fm_list in_paused;          /* set->paused, while FM_CONN_PAUSED */
    uint64_t stalled_since;     /* paused: uv_now() of its output's last move */
    fm_list reqs;               /* its requests in flight (req.c) */
    size_t inflight;
    void *svc[FM_CONN_SLOTS];   /* the services' state for it */
    int let_go;                 /* the services let go of it (core.c) */
    char client_name[FM_NAME_MAX + 1];
};

/* What the owner of the set does with its connections' events. */
typedef struct fm_conn_handler {
    /* A whole frame arrived. */
    void (*frame)(fm_conn *conn, const char *body, size_t len, void *arg);
    /* The stream broke the framing: code and a message for the client.
     * Nothing more is read from it. */
    void (*bad_frame)(fm_conn *conn, fm_errcode code, const char *msg, void *arg);
    /* The connection is closing: it is off the set, and gone once this
     * returns (its memory stays until libuv lets go of its handle). */
    void (*closing)(fm_conn *conn, void *arg);
    void *arg;
} fm_conn_handler;

struct fm_conns {
    uv_loop_t *loop;
    const fm_config *cfg;
    fm_conn_handler h;
    fm_list all;                /* every open connection */
    fm_list flush;              /* those with output to write this turn */
    size_t n;
    uint64_t next_serial;
    uint64_t total;             /* accepted since start */
    uint64_t rejected;          /* turned away at the door */
    uint64_t protocol_errors;   /* bad frames, bad JSON, bad ids, unknown ops */
    int draining;               /* the daemon shuts down: nobody is paused */
    fm_list paused;             /* connections not read until they drain */
    uv_timer_t stall_timer;     /* runs while any is paused */
    char readbuf[65536];        /* every read lands here first */
};

void fm_conns_init(fm_conns *set, uv_loop_t *loop, const fm_config *cfg,
                   const fm_conn_handler *h);
/* Closes the set's timer; its connections are closed already. */
void fm_conns_close(fm_conns *set);
void fm_conns_set_config(fm_conns *set, const fm_config *cfg);
/* The daemon begins to shut down: the requests of clients paused behind
 * their output run now (to be answered shutting_down), and none is paused
 * again. */
void fm_conns_drain(fm_conns *set);
/* Writes what every connection scheduled this loop turn; the server's
 * flusher calls it once per turn. */
void fm_conns_flush(fm_conns *set);
/* Output the open connections hold, built or queued and not yet written:
 * in all, and the most one holds (stats; a walk over every connection). */
void fm_conns_output(const fm_conns *set, size_t *total, size_t *max);
/* The first open connection, or NULL. */
fm_conn *fm_conns_first(const fm_conns *set);

/* Accepts a client on listener. It reads nothing until fm_conn_start(),
 * so a client refused at the door can be sent its reason first. NULL when
 * nothing could be accepted or set up. */
fm_conn *fm_conn_accept(fm_conns *set, uv_stream_t *listener);
int fm_conn_start(fm_conn *conn);
/* The peer's credentials; -1 when they cannot be read. */
int fm_conn_peer(const fm_conn *conn, struct ucred *cred);

void fm_conn_close(fm_conn *conn);
/* Closes once the output queued now is written. */
void fm_conn_close_after_write(fm_conn *conn);
/* Turns the client away once its reason, queued now, is written. */
void fm_conn_reject(fm_conn *conn);
/* Has the connection closed by the flusher, at the end of this loop turn. */
void fm_conn_doom(fm_conn *conn);
/* Whether the connection may take output (neither closing nor doomed). */
int fm_conn_alive(const fm_conn *conn);
/* Has the output written this loop turn. */
void fm_conn_schedule_flush(fm_conn *conn);
/* Writes what is queued now; see conn.c. */
void fm_conn_flush(fm_conn *conn);
/* Whether a write of its output is still in progress. */
int fm_conn_writing(const fm_conn *conn);
/* Counts a request the client got wrong (stats: protocol_errors). */
void fm_conn_protocol_error(fm_conn *conn);

#endif
