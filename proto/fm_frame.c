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
    if (r->start > 0) {
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

int fm_frame_reader_next(fm_frame_reader *r, const char **body, size_t *len)
{
    const unsigned char *h;
    uint32_t n;

    if (r->err != FM_E_OK)
        return FM_FRAME_ERR;
    if (r->len - r->start < FM_FRAME_HEADER_LEN)
        return FM_FRAME_NEED;
    h = r->buf + r->start;
    n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (n == 0 || n > r->max_body) {
        r->err = n == 0 ? FM_E_BAD_FRAME : FM_E_FRAME_TOO_LARGE;
        r->err_len = n;
        return FM_FRAME_ERR;
    }
    if (r->len - r->start - FM_FRAME_HEADER_LEN < n)
        return FM_FRAME_NEED;
    *body = (const char *)h + FM_FRAME_HEADER_LEN;
    *len = n;
    r->start += FM_FRAME_HEADER_LEN + n;
    if (r->start == r->len)
        r->start = r->len = 0;
    return FM_FRAME_OK;
}
