/* fm_frame.c -- incremental frame decoder.
 *
 * Bytes accumulate in one buffer; consumed frames advance `start`, and the
 * unconsumed tail is moved to the front only when more room is needed, so a
 * read that carries many small frames costs no memmove per frame. */
#include <stdlib.h>
#include <string.h>

#include "fm_frame.h"

fm_frame_reader *fm_frame_reader_create(size_t max_body)
{
    fm_frame_reader *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->max_body = max_body;
    return r;
}

void fm_frame_reader_free(fm_frame_reader *r)
{
    if (r == NULL)
        return;
    free(r->buf);
    free(r);
}

size_t fm_frame_reader_pending(const fm_frame_reader *r)
{
    return r->len - r->start;
}

void *fm_frame_reader_space(fm_frame_reader *r, size_t want, size_t *avail)
{
    /* Compacting only when the tail lacks room keeps a large frame that
     * arrives in many reads from being moved once per read. */
    if (r->start > 0 && r->cap - r->len < want) {
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
    }
    if (r->cap - r->len < want) {
        size_t cap = r->cap ? r->cap : 4096;
        unsigned char *p;

        while (cap - r->len < want) {
            if (cap > SIZE_MAX / 2)
                return NULL;
            cap *= 2;
        }
        p = realloc(r->buf, cap);
        if (p == NULL)
            return NULL;
        r->buf = p;
        r->cap = cap;
    }
    *avail = r->cap - r->len;
    return r->buf + r->len;
}

void fm_frame_reader_commit(fm_frame_reader *r, size_t n)
{
    r->len += n;
}

int fm_frame_reader_feed(fm_frame_reader *r, const void *data, size_t n)
{
    size_t avail;
    void *p;

    if (n == 0)
        return 0;
    p = fm_frame_reader_space(r, n, &avail);
    if (p == NULL)
        return -1;
    memcpy(p, data, n);
    fm_frame_reader_commit(r, n);
    return 0;
}

/* The first frame of buf[0..len): OK with *body, *blen and *used (header
 * and body), NEED, or ERR with *err and *err_len. */
static int parse(const char *buf, size_t len, size_t max_body, const char **body,
                 size_t *blen, size_t *used, fm_errcode *err, uint32_t *err_len)
{
    const unsigned char *h = (const unsigned char *)buf;
    uint32_t n;

    if (len < FM_FRAME_HEADER_LEN)
        return FM_FRAME_NEED;
    n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (n == 0 || n > max_body) {
        *err = n == 0 ? FM_E_BAD_FRAME : FM_E_FRAME_TOO_LARGE;
        *err_len = n;
        return FM_FRAME_ERR;
    }
    if (len - FM_FRAME_HEADER_LEN < n)
        return FM_FRAME_NEED;
    *body = buf + FM_FRAME_HEADER_LEN;
    *blen = n;
    *used = FM_FRAME_HEADER_LEN + n;
    return FM_FRAME_OK;
}

int fm_frame_reader_next(fm_frame_reader *r, const char **body, size_t *len)
{
    size_t used;
    int rc;

    if (r->err != FM_E_OK)
        return FM_FRAME_ERR;
    /* Also keeps a trimmed reader's NULL buffer out of the arithmetic. */
    if (r->len - r->start < FM_FRAME_HEADER_LEN)
        return FM_FRAME_NEED;
    rc = parse((const char *)r->buf + r->start, r->len - r->start, r->max_body, body, len,
               &used, &r->err, &r->err_len);
    if (rc != FM_FRAME_OK)
        return rc;
    r->start += used;
    if (r->start == r->len)
        r->start = r->len = 0;
    return FM_FRAME_OK;
}

void fm_frame_reader_trim(fm_frame_reader *r)
{
    if (r->start != r->len)
        return;
    free(r->buf);
    r->buf = NULL;
    r->start = r->len = r->cap = 0;
}
