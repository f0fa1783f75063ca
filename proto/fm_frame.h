/* fm_frame.h -- length-prefixed framing: a 4-byte big-endian length, then
 * that many bytes of JSON.
 *
 * The reader is fed bytes in any split and hands out whole frame bodies, like
 * hiredis's reply reader: it does no I/O. A header announcing 0 bytes or more
 * than max_body is an error at once; the body behind it is never read. */
#ifndef FM_FRAME_H
#define FM_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "fm_error.h"
#include "fm_wire.h"

enum {
    FM_FRAME_NEED = 0,  /* no whole frame buffered yet */
    FM_FRAME_OK = 1,    /* *body and *len name the next frame */
    FM_FRAME_ERR = -1   /* framing error: see reader->err; the stream is dead */
};

typedef struct fm_frame_reader {
    unsigned char *buf;
    size_t start;       /* first unconsumed byte */
    size_t len;         /* bytes buffered, from buf[0] */
    size_t cap;
    size_t max_body;
    fm_errcode err;     /* FM_E_BAD_FRAME or FM_E_FRAME_TOO_LARGE after ERR */
    uint32_t err_len;   /* the offending announced length */
} fm_frame_reader;

fm_frame_reader *fm_frame_reader_create(size_t max_body);
void fm_frame_reader_free(fm_frame_reader *r);

/* Copies n bytes in. Returns 0, or -1 when memory ran out. */
int fm_frame_reader_feed(fm_frame_reader *r, const void *data, size_t n);

/* Zero-copy feeding for readers that fill memory themselves (libuv's alloc
 * callback): space() gives at least `want` writable bytes, commit() says how
 * many were written. space() returns NULL when memory ran out. */
void *fm_frame_reader_space(fm_frame_reader *r, size_t want, size_t *avail);
void fm_frame_reader_commit(fm_frame_reader *r, size_t n);

/* The next whole frame. The body stays valid until the next feed or space
 * call on the reader. */
int fm_frame_reader_next(fm_frame_reader *r, const char **body, size_t *len);

/* Bytes buffered that no frame has handed out yet. */
size_t fm_frame_reader_pending(const fm_frame_reader *r);

/* Gives the buffer back when nothing is pending, so an idle connection
 * holds no read memory. */
void fm_frame_reader_trim(fm_frame_reader *r);

#endif
