/* outq.h -- the sealed part of a connection's output.
 *
 * Replies are built in place in the connection's `out` buffer (reply.c).
 * What must leave before the next of them, but cannot stay in `out`, waits
 * here as a list of chunks: a frame shared with other connections (a wake
 * fanned out to every subscriber is built once, and each connection queues
 * a reference to it), or the bytes of `out` sealed behind such a frame or
 * handed to a write still in progress. */
#ifndef FM_OUTQ_H
#define FM_OUTQ_H

#include <stddef.h>

#include <uv.h>

#include "fm_buf.h"

/* An immutable frame with a reference count, for sending to many. */
typedef struct fm_shared {
    size_t refs;
    size_t len;
    char data[];
} fm_shared;

/* A copy of frame[0..len) with one reference, the creator's; NULL out of
 * memory. */
fm_shared *fm_shared_create(const char *frame, size_t len);
void fm_shared_unref(fm_shared *f);

typedef struct fm_chunk fm_chunk;

typedef struct fm_outq {
    fm_chunk *head, **tail;     /* waiting to be written, in order */
    fm_chunk *writing;          /* held by the write in progress */
    size_t bytes;               /* not yet written, in both lists */
} fm_outq;

void fm_outq_init(fm_outq *q);
void fm_outq_free(fm_outq *q);
/* Appends b's bytes, taking its memory (b is left empty). 0, or -1 out of
 * memory (b is left as it was). */
int fm_outq_push_buf(fm_outq *q, fm_buf *b);
/* Appends a reference to f. 0, or -1 out of memory. */
int fm_outq_push_shared(fm_outq *q, fm_shared *f);
/* Fills iov with the waiting chunks' unwritten bytes, in order; returns
 * how many it filled (at most max). */
size_t fm_outq_iov(const fm_outq *q, uv_buf_t *iov, size_t max);
size_t fm_outq_chunks(const fm_outq *q);
/* n bytes from the front were written: frees what is done. Returns what is
 * left of n once the waiting chunks are all written. */
size_t fm_outq_consume(fm_outq *q, size_t n);
/* The waiting chunks go to a write that takes them whole; they are held,
 * and still counted, until fm_outq_written. */
void fm_outq_start_write(fm_outq *q);
void fm_outq_written(fm_outq *q);

#endif
