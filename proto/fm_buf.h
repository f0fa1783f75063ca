/* fm_buf.h -- a growable byte buffer for building frames and replies.
 *
 * Append functions never fail loudly: on allocation failure the buffer sets
 * its sticky `oom` flag and ignores further appends, so a builder can chain
 * appends and check once at the end (the way stdio's ferror works). */
#ifndef FM_BUF_H
#define FM_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct fm_buf {
    char *data;
    size_t len;
    size_t cap;
    int oom;
} fm_buf;

void fm_buf_init(fm_buf *b);
void fm_buf_free(fm_buf *b);
void fm_buf_reset(fm_buf *b);            /* len = 0, memory and oom kept */
int fm_buf_reserve(fm_buf *b, size_t extra); /* 0, or -1 and oom set */

void fm_buf_append(fm_buf *b, const void *p, size_t n);
void fm_buf_puts(fm_buf *b, const char *s);
void fm_buf_putc(fm_buf *b, char c);
void fm_buf_put_i64(fm_buf *b, int64_t v);
void fm_buf_put_u32be(fm_buf *b, uint32_t v);
/* Overwrites 4 bytes at off (a frame length reserved earlier). */
void fm_buf_patch_u32be(fm_buf *b, size_t off, uint32_t v);
/* Appends s[0..n) as a JSON string literal, quotes included. UTF-8 is
 * copied byte for byte, '"', '\\' and control characters are escaped, and
 * bytes that are not well-formed UTF-8 become U+FFFD, so the result is
 * always valid JSON. */
void fm_buf_put_json_string(fm_buf *b, const char *s, size_t n);

/* Drops the first n bytes (a consumed prefix). */
void fm_buf_consume(fm_buf *b, size_t n);

#endif
