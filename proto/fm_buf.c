/* fm_buf.c -- growable byte buffer with a sticky out-of-memory flag. */
#include <stdlib.h>
#include <string.h>

#include "fm_buf.h"
#include "fm_utf8.h"

void fm_buf_init(fm_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void fm_buf_free(fm_buf *b)
{
    free(b->data);
    fm_buf_init(b);
}

void fm_buf_reset(fm_buf *b)
{
    b->len = 0;
}

int fm_buf_reserve(fm_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;

    if (b->oom)
        return -1;
    if (extra > SIZE_MAX - b->len) {
        b->oom = 1;
        return -1;
    }
    need = b->len + extra;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void fm_buf_append(fm_buf *b, const void *p, size_t n)
{
    if (n == 0 || fm_buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void fm_buf_puts(fm_buf *b, const char *s)
{
    fm_buf_append(b, s, strlen(s));
}

void fm_buf_putc(fm_buf *b, char c)
{
    if (fm_buf_reserve(b, 1) != 0)
        return;
    b->data[b->len++] = c;
}

void fm_buf_put_i64(fm_buf *b, int64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    /* Work in unsigned so INT64_MIN negates without overflow. */
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        tmp[--i] = '-';
    fm_buf_append(b, tmp + i, sizeof(tmp) - i);
}

void fm_buf_put_u32be(fm_buf *b, uint32_t v)
{
    if (fm_buf_reserve(b, 4) != 0)
        return;
    b->len += 4;
    fm_buf_patch_u32be(b, b->len - 4, v);
}

void fm_buf_patch_u32be(fm_buf *b, size_t off, uint32_t v)
{
    unsigned char *h = (unsigned char *)b->data + off;

    h[0] = (unsigned char)(v >> 24);
    h[1] = (unsigned char)(v >> 16);
    h[2] = (unsigned char)(v >> 8);
    h[3] = (unsigned char)v;
}

void fm_buf_put_json_string(fm_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    static const char replacement[] = "\xef\xbf\xbd";   /* U+FFFD */
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;

    fm_buf_putc(b, '"');
    while (i < n) {
        unsigned char c = u[i];
        char esc[6];
        size_t elen = 2, seq;

        if (c >= 0x80) {
            seq = fm_utf8_seq_len(u + i, n - i);
            if (seq != 0) {
                i += seq;
                continue;
            }
            /* Not UTF-8: the output must stay valid JSON text. */
            fm_buf_append(b, s + run, i - run);
            fm_buf_append(b, replacement, 3);
            run = ++i;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            i++;
            continue;
        }
        fm_buf_append(b, s + run, i - run);
        run = ++i;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        fm_buf_append(b, esc, elen);
    }
    fm_buf_append(b, s + run, n - run);
    fm_buf_putc(b, '"');
}

void fm_buf_consume(fm_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
