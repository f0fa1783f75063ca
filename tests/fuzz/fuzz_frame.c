/* fuzz_frame.c -- libFuzzer target for the frame reader (proto/fm_frame.h).
 *
 * The input describes both the stream and how it arrives:
 *
 *   byte 0      max_body choice (low 3 bits: see max_body_of), feeding
 *               mode (bits 3-4: feed(), space()/commit(), or per chunk) and
 *               whether to trim() after each round, as the daemon does
 *               (bit 5)
 *   byte 1      k, the number of chunk-size bytes that follow (0 to 15)
 *   k bytes     chunk sizes, used in turn (0 means 1, so every feed moves)
 *   the rest    the byte stream, fed chunk by chunk
 *
 * After every chunk the reader is drained until it needs more bytes or
 * fails, and its answers are compared with a model that decodes the whole
 * stream in one go. Any disagreement aborts, which libFuzzer reports as a
 * crash; memory errors are ASan's to find. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm_frame.h"

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "fuzz_frame: %s:%d: check failed: %s\n",        \
                    __FILE__, __LINE__, #cond);                             \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* Small limits make "too large" reachable; big ones make long waits. */
static size_t max_body_of(uint8_t b)
{
    static const size_t choices[8] = {1, 4, 16, 64, 255, 4096, 0xFFFFFFFFu,
                                      SIZE_MAX};

    return choices[b & 7];
}

/* What the stream holds, frame by frame, decoded from the whole of it. */
typedef struct model {
    const uint8_t *s;
    size_t n;
    size_t max_body;
    size_t pos;         /* start of the next frame's header */
    int err;            /* the header at pos is bad */
    uint32_t err_len;
} model;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* What the reader must answer to next() when `fed` bytes have arrived. */
static int model_next(model *m, size_t fed, size_t *off, size_t *len)
{
    uint32_t n;

    if (m->err)
        return FM_FRAME_ERR;
    if (fed - m->pos < FM_FRAME_HEADER_LEN)
        return FM_FRAME_NEED;
    n = be32(m->s + m->pos);
    if (n == 0 || n > m->max_body) {
        m->err = 1;
        m->err_len = n;
        return FM_FRAME_ERR;
    }
    if (fed - m->pos - FM_FRAME_HEADER_LEN < n)
        return FM_FRAME_NEED;
    *off = m->pos + FM_FRAME_HEADER_LEN;
    *len = n;
    m->pos += FM_FRAME_HEADER_LEN + n;
    return FM_FRAME_OK;
}

/* The most room ever needed at once: unconsumed bytes plus the request. */
static size_t high_water;

/* The buffer never grows past twice what was needed at once (or the first
 * 4096 bytes): consumed frames are reclaimed, so a client trickling many
 * frames cannot make it grow without bound. */
static void check_room(const fm_frame_reader *r, size_t want)
{
    if (fm_frame_reader_pending(r) + want > high_water)
        high_water = fm_frame_reader_pending(r) + want;
    CHECK(r->cap <= 4096 || r->cap / 2 < high_water);
}

/* Copies chunk into the reader through space()/commit(), asking for `want`
 * bytes of room (possibly less or more than the chunk). */
static void feed_by_space(fm_frame_reader *r, const uint8_t *p, size_t n,
                          size_t want)
{
    do {
        size_t avail = 0, take;
        unsigned char *dst = fm_frame_reader_space(r, want, &avail);

        CHECK(dst != NULL);
        CHECK(avail >= want);
        check_room(r, want);
        take = n < avail ? n : avail;
        memcpy(dst, p, take);
        fm_frame_reader_commit(r, take);
        p += take;
        n -= take;
    } while (n > 0);
}

/* Bodies handed out since the last feed: all must stay valid until then. */
typedef struct seen {
    const char *body;
    size_t off, len;
} seen;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *sizes, *s;
    size_t nsizes, n, fed = 0, chunk_i = 0, consumed = 0;
    fm_frame_reader *r;
    model m;
    unsigned mode, trim;
    seen *round;
    size_t round_cap;

    if (size < 2)
        return 0;
    mode = data[0] >> 3 & 3;
    trim = data[0] >> 5 & 1;
    nsizes = data[1] & 15;
    if (size < 2 + nsizes)
        return 0;
    sizes = data + 2;
    s = sizes + nsizes;
    n = size - 2 - nsizes;

    high_water = 0;
    memset(&m, 0, sizeof(m));
    m.s = s;
    m.n = n;
    m.max_body = max_body_of(data[0]);
    r = fm_frame_reader_create(m.max_body);
    CHECK(r != NULL);
    CHECK(fm_frame_reader_pending(r) == 0);
    /* Asking an empty reader, or feeding it nothing, changes nothing. */
    {
        const char *body;
        size_t len;

        CHECK(fm_frame_reader_next(r, &body, &len) == FM_FRAME_NEED);
        CHECK(fm_frame_reader_feed(r, "", 0) == 0);
        CHECK(fm_frame_reader_next(r, &body, &len) == FM_FRAME_NEED);
        fm_frame_reader_trim(r);
        CHECK(fm_frame_reader_pending(r) == 0);
    }

    /* At most one frame per 5 bytes of stream, so this bounds a round. */
    round_cap = n / 5 + 1;
    round = malloc(round_cap * sizeof(*round));
    CHECK(round != NULL);

    while (fed < n) {
        size_t c = nsizes ? sizes[chunk_i++ % nsizes] : n;
        int by_space;
        size_t nround = 0;

        if (c == 0)
            c = 1;
        if (c > n - fed)
            c = n - fed;
        by_space = mode == 1 || (mode == 2 && (chunk_i & 1)) ||
                   (mode == 3 && (c & 1));
        /* Room asked of space() is never 0 here: "at least nothing" is no
         * request, and an empty reader answers it with NULL. */
        if (by_space)
            feed_by_space(r, s + fed, c,
                          nsizes && sizes[(chunk_i + 1) % nsizes]
                              ? sizes[(chunk_i + 1) % nsizes] : c);
        else {
            CHECK(fm_frame_reader_feed(r, s + fed, c) == 0);
            check_room(r, 0);
        }
        fed += c;
        CHECK(fm_frame_reader_pending(r) == fed - consumed);

        for (;;) {
            const char *body = NULL;
            size_t len = 0, off = 0, mlen = 0;
            int got = fm_frame_reader_next(r, &body, &len);
            int want = model_next(&m, fed, &off, &mlen);

            CHECK(got == want);
            if (got == FM_FRAME_NEED)
                break;
            if (got == FM_FRAME_ERR) {
                /* The right code and length, and the error is sticky. */
                CHECK(r->err == (m.err_len == 0 ? FM_E_BAD_FRAME
                                                : FM_E_FRAME_TOO_LARGE));
                CHECK(r->err_len == m.err_len);
                CHECK(fm_frame_reader_next(r, &body, &len) == FM_FRAME_ERR);
                break;
            }
            CHECK(body != NULL);
            CHECK(len == mlen && len > 0 && len <= m.max_body);
            CHECK(memcmp(body, s + off, len) == 0);
            consumed += FM_FRAME_HEADER_LEN + len;
            CHECK(consumed == m.pos);
            CHECK(fm_frame_reader_pending(r) == fed - consumed);
            CHECK(nround < round_cap);
            round[nround].body = body;
            round[nround].off = off;
            round[nround].len = len;
            nround++;
        }
        /* Every body of this round is still intact (no feed since). */
        for (size_t i = 0; i < nround; i++)
            CHECK(memcmp(round[i].body, s + round[i].off, round[i].len) == 0);
        /* trim() gives the memory back only when nothing is pending, and
         * the reader then goes on as before (the next round's checks). */
        if (trim) {
            size_t pending = fm_frame_reader_pending(r);

            fm_frame_reader_trim(r);
            CHECK(fm_frame_reader_pending(r) == pending);
            CHECK(pending > 0 || r->cap == 0);
            /* A read of nothing (libuv's EAGAIN) right after a trim. */
            CHECK(fm_frame_reader_feed(r, "", 0) == 0);
            if (!m.err) {
                const char *body;
                size_t len, off, mlen;

                CHECK(fm_frame_reader_next(r, &body, &len) ==
                      model_next(&m, fed, &off, &mlen));
            }
        }
    }

    /* After a framing error nothing revives the stream, more bytes or not. */
    if (m.err) {
        const char *body;
        size_t len;

        CHECK(fm_frame_reader_feed(r, "\0\0\0\1x", 5) == 0);
        CHECK(fm_frame_reader_next(r, &body, &len) == FM_FRAME_ERR);
    } else {
        /* Whatever was not handed out is the unfinished tail. */
        CHECK(consumed == m.pos);
        CHECK(fm_frame_reader_pending(r) == n - consumed);
    }
    free(round);
    fm_frame_reader_free(r);
    return 0;
}
