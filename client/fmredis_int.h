/* fmredis_int.h -- what the files of libfmredis share, and nothing else.
 *
 * One client owns one socket, a frame reader, an output buffer, a buffer of
 * pending output and a queue of events. A call builds its request in the
 * output buffer (header first, patched once the body is known), sends it
 * under the call's deadline, then feeds the reader until the frame whose id
 * is the call's arrives. Every other frame met on the way is either an event
 * (queued) or a late reply of an earlier call that timed out (dropped, except
 * that a late acquire that won the lock is released, so a timed-out call
 * never leaves a lock behind on a live connection).
 *
 * Those releases are the only bytes the reader sends. It runs inside some
 * other call, so it must neither block (that call has its own deadline) nor
 * touch that call's request and state: it queues them as pending output,
 * sent without blocking, and before the first byte of any later request.
 *
 * The reply is not copied: its body stays in the reader's buffer, which is
 * only written by the next read, and the typed functions parse it in place
 * before returning. That keeps a 100 MiB get_many at one copy in memory.
 *
 * Errors that leave the byte stream in an unknown state (I/O, EOF, framing,
 * invalid JSON, a half-sent request) close the socket at once: a connection
 * the library cannot use any more should not keep locks held in the daemon.
 *
 * The files, one job each (as hiredis splits its own):
 *   fmredis.c  the client: its connection's life, settings, errors, version
 *   net.c      bytes on the socket: deadlines, sends that never block, reads
 *   read.c     frames in: the call's reply, events, late replies; a call's
 *              exchange and its typed results
 *   calls.c    the operations, and the release of late acquires' locks
 *   events.c   the event queue and the calls that hand events out
 *
 * What one file offers the others is named fm__* (libuv's uv__): never
 * exported (the library is built with hidden visibility), and apart from
 * the API's fm_* and the daemon's names. */
#ifndef FMREDIS_INT_H
#define FMREDIS_INT_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "fm_buf.h"
#include "fm_frame.h"
#include "fm_json.h"
#include "fmredis.h"

#define ERRSTR_MAX 256
#define ERRCODE_MAX 64
#define ID_MAX 9007199254740991LL /* 2^53 - 1: the contract's integer ids */
#define RAW_ID_MAX 256            /* longest usable string id */

typedef struct ev_node {
    struct ev_node *next;
    fm_event ev;
} ev_node;

/* An acquire whose call timed out: if its reply still brings a token, the
 * lock is released as soon as the reply arrives. */
typedef struct orphan {
    struct orphan *next;
    int64_t id;
    char *key;
} orphan;

/* What the reader waits for. */
typedef enum want_kind {
    WANT_EVENTS,        /* no call in progress */
    WANT_ID,            /* a reply with integer id `id` */
    WANT_RAW_ID,        /* a reply whose id equals the raw request's `raw_id` */
    WANT_NO_ID          /* the next reply without an id */
} want_kind;

typedef struct want {
    want_kind kind;
    int64_t id;
    fm_json_val raw_id;
    fm_json_members *members;   /* to note in the reply's scan, or NULL */
} want;

struct fm_client {
    int fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int timeout_ms;
    size_t max_reply;
    int64_t next_id;
    int64_t call_ms;    /* the current call's timeout, for its message */
    int sent;           /* the current call's request went out whole; only
                           fm__send_all() writes it */

    fm_frame_reader *rd;
    fm_buf out;         /* the current call's request */
    fm_buf pending;     /* whole frames the reader queued (releases of
                           orphans), minus what was sent of the first */

    /* The reply of the current call: a span of the reader's buffer. */
    const char *rbody;
    size_t rlen;
    fm_json_val rroot;
    fm_json_index rindex;       /* rroot's members */

    ev_node *ev_head, *ev_tail;
    size_t ev_count;
    orphan *orphans;

    fm_client_error err;
    char errstr[ERRSTR_MAX];
    char errcode[ERRCODE_MAX];

    /* Why the connection was closed, for later calls. */
    char closed_why[ERRSTR_MAX];
    /* An error frame without id met while no call waited (forbidden,
     * too_many_clients, frame_too_large...): the reason of a close to come. */
    char conn_code[ERRCODE_MAX];
    char conn_msg[ERRSTR_MAX];
};

/* fmredis.c: the call's error, and closing. Every fm__fail* returns FM_ERR;
 * fm__fail_close also closes the connection (the stream is unusable). */
int fm__fail(fm_client *c, fm_client_error err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int fm__fail_close(fm_client *c, fm_client_error err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int fm__fail_eof(fm_client *c);
int fm__fail_not_connected(fm_client *c);
void fm__clear_err(fm_client *c);
int fm__call_begin(fm_client *c);
void fm__close_fd(fm_client *c);

/* net.c: deadlines (absolute monotonic ms, -1 for none) and the socket. */
int64_t fm__deadline_in(int64_t ms);
int fm__poll_timeout(int64_t deadline);
int fm__flush_pending(fm_client *c);
int fm__send_all(fm_client *c, int64_t deadline);
ssize_t fm__read_once(fm_client *c);

/* read.c: frames in, and the reply's values. */
int fm__member(const fm_json_val *obj, const char *name, fm_json_val *out);
int fm__reply_member(const fm_client *c, const char *name, fm_json_val *out);
char *fm__span_dup(const char *p, size_t n);
int fm__opt_string(const fm_json_val *obj, const char *name, char **out);
int fm__dispatch(fm_client *c, const want *w);
int fm__fail_send(fm_client *c, const want *w);
int fm__exchange(fm_client *c, const want *w, int64_t deadline);
int fm__result(fm_client *c, const char *name, fm_json_type type,
               fm_json_val *out);
int fm__result_bool(fm_client *c, const char *name, int *out);
int fm__result_int(fm_client *c, const char *name, int64_t *out);
int fm__result_str(fm_client *c, const char *name, char *out, size_t cap);
int fm__copy_span(fm_client *c, const fm_json_val *v, char **out,
                  size_t *len);

/* calls.c: late acquires. */
void fm__release_orphan(fm_client *c, const fm_json_val *root, int64_t id,
                        int ok);
void fm__drop_orphans(fm_client *c);

/* events.c: the queue. */
int fm__queue_event(fm_client *c, const fm_json_val *root);
void fm__free_events(fm_client *c);

#endif
