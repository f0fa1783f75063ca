/* outq.c -- see outq.h. */
#include <stdlib.h>
#include <string.h>

#include "outq.h"

struct fm_chunk {
    fm_chunk *next;
    fm_shared *shared;          /* a shared frame, or NULL */
    fm_buf own;                 /* else bytes of this connection's */
    size_t off;                 /* bytes already written */
};

fm_shared *fm_shared_create(const char *frame, size_t len)
{
    fm_shared *f = malloc(sizeof(*f) + len);

    if (f == NULL)
        return NULL;
    f->refs = 1;
    f->len = len;
    memcpy(f->data, frame, len);
    return f;
}

void fm_shared_unref(fm_shared *f)
{
    if (f != NULL && --f->refs == 0)
        free(f);
}

static const char *chunk_data(const fm_chunk *c)
{
    return c->shared != NULL ? c->shared->data : c->own.data;
}

static size_t chunk_len(const fm_chunk *c)
{
    return c->shared != NULL ? c->shared->len : c->own.len;
}

static void chunk_free(fm_chunk *c)
{
    fm_shared_unref(c->shared);
    fm_buf_free(&c->own);
    free(c);
}

static void free_list(fm_chunk *c)
{
    while (c != NULL) {
        fm_chunk *next = c->next;

        chunk_free(c);
        c = next;
    }
}

void fm_outq_init(fm_outq *q)
{
    q->head = NULL;
    q->tail = &q->head;
    q->writing = NULL;
    q->bytes = 0;
}

void fm_outq_free(fm_outq *q)
{
    free_list(q->head);
    free_list(q->writing);
    fm_outq_init(q);
}

static void push(fm_outq *q, fm_chunk *c)
{
    *q->tail = c;
    q->tail = &c->next;
    q->bytes += chunk_len(c);
}

int fm_outq_push_buf(fm_outq *q, fm_buf *b)
{
    fm_chunk *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return -1;
    c->own = *b;
    fm_buf_init(b);
    push(q, c);
    return 0;
}

int fm_outq_push_shared(fm_outq *q, fm_shared *f)
{
    fm_chunk *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return -1;
    c->shared = f;
    f->refs++;
    push(q, c);
    return 0;
}

size_t fm_outq_iov(const fm_outq *q, uv_buf_t *iov, size_t max)
{
    size_t n = 0;

    for (const fm_chunk *c = q->head; c != NULL && n < max; c = c->next)
        iov[n++] = uv_buf_init((char *)chunk_data(c) + c->off, (unsigned)(chunk_len(c) - c->off));
    return n;
}

size_t fm_outq_chunks(const fm_outq *q)
{
    size_t n = 0;

    for (const fm_chunk *c = q->head; c != NULL; c = c->next)
        n++;
    return n;
}

size_t fm_outq_consume(fm_outq *q, size_t n)
{
    while (q->head != NULL && n > 0) {
        fm_chunk *c = q->head;
        size_t left = chunk_len(c) - c->off;

        if (n < left) {
            c->off += n;
            q->bytes -= n;
            return 0;
        }
        n -= left;
        q->bytes -= left;
        q->head = c->next;
        if (q->head == NULL)
            q->tail = &q->head;
        chunk_free(c);
    }
    return n;
}

void fm_outq_start_write(fm_outq *q)
{
    q->writing = q->head;
    q->head = NULL;
    q->tail = &q->head;
}

void fm_outq_written(fm_outq *q)
{
    for (fm_chunk *c = q->writing; c != NULL; c = c->next)
        q->bytes -= chunk_len(c) - c->off;
    free_list(q->writing);
    q->writing = NULL;
}
