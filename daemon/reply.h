/* reply.h -- frames built straight into a connection's output.
 *
 * Every byte a service sends a client goes through here: the frame's
 * length is reserved first and patched when the object is closed, so a
 * reply costs no intermediate copy, and output past max_output_bytes dooms
 * the connection (a client that stops reading must not make the daemon hold
 * unbounded memory on its behalf).
 *
 * A frame is built as: start (the header and the opening of the object),
 * members, finish. Members are written as ,"name":value; a member that
 * opens a nested object (fm_reply_open) is closed by fm_reply_close. */
#ifndef FM_REPLY_H
#define FM_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "fm_error.h"
#include "outq.h"

size_t fm_reply_ok_start(fm_conn *conn, const char *id, size_t idlen);
size_t fm_reply_event_start(fm_conn *conn, const char *event);
void fm_reply_finish(fm_conn *conn, size_t start);
/* A whole error frame. */
void fm_reply_error(fm_conn *conn, const char *id, size_t idlen, fm_errcode code,
                    const char *msg);

/* Members. name is a literal of the daemon's (not escaped); a value given
 * as a string is JSON-escaped, raw JSON is copied as it is. */
void fm_reply_put_str(fm_conn *conn, const char *name, const char *v, size_t len);
void fm_reply_put_int(fm_conn *conn, const char *name, int64_t v);
void fm_reply_put_bool(fm_conn *conn, const char *name, int v);
/* An integer that may be unknown: null unless known. */
void fm_reply_put_maybe(fm_conn *conn, const char *name, int known, int64_t v);
void fm_reply_put_raw(fm_conn *conn, const char *name, const char *json, size_t len);
/* A member whose name is data (escaped), with a raw JSON value. */
void fm_reply_put_member(fm_conn *conn, const char *name, size_t nlen, const char *json,
                         size_t len);
void fm_reply_open(fm_conn *conn, const char *name);
void fm_reply_close(fm_conn *conn);

/* Whether n more bytes of output fit under max_output_bytes; when not, the
 * connection is doomed. For replies too large to build first and check
 * after; the room is then taken at once, not doubled into. */
int fm_reply_room(fm_conn *conn, size_t n);
/* Makes room for n more bytes at once (after fm_reply_room said yes). */
void fm_reply_reserve(fm_conn *conn, size_t n);

/* Queues a whole frame built elsewhere: a copy, or for a frame sent to
 * many, a reference. Either way max_output_bytes is checked first, so an
 * overflowing connection costs no copy. */
void fm_reply_send(fm_conn *conn, const char *frame, size_t len);
void fm_reply_send_shared(fm_conn *conn, fm_shared *f);

#endif
