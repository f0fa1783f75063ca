/* latency.c -- see latency.h. */
#include <string.h>

#include "latency.h"

static size_t bucket_of(uint64_t us)
{
    int msb;

    if (us < FM_LATENCY_SUB)
        return (size_t)us;
    msb = 63 - __builtin_clzll(us);
    if (msb >= FM_LATENCY_TOP)
        return FM_LATENCY_BUCKETS - 1;
    return FM_LATENCY_SUB + (size_t)(msb - 4) * FM_LATENCY_SUB +
           (size_t)((us >> (msb - 4)) & (FM_LATENCY_SUB - 1));
}

/* The largest value bucket b counts (the last bucket: see the caller). */
static uint64_t bucket_top(size_t b)
{
    size_t g, s;

    if (b < FM_LATENCY_SUB)
        return b;
    g = (b - FM_LATENCY_SUB) / FM_LATENCY_SUB;
    s = (b - FM_LATENCY_SUB) % FM_LATENCY_SUB;
    return (((uint64_t)FM_LATENCY_SUB + s) << g) + ((uint64_t)1 << g) - 1;
}

void fm_latency_record(fm_latency *l, uint64_t us, uint64_t now_ms)
{
    uint64_t period = now_ms / FM_LATENCY_PERIOD_MS;
    fm_hist *h = &l->h[period % 2];

    if (h->period != period) {
        /* Two periods back, or older: its turn has come again. */
        memset(h, 0, sizeof(*h));
        h->period = period;
    }
    h->counts[bucket_of(us)]++;
    h->n++;
    if (us > h->max_us)
        h->max_us = us;
    l->count++;
    l->sum_us += us;
}

/* Whether h counts a period of the window that ends at now_ms. */
static int in_window(const fm_hist *h, uint64_t now_ms)
{
    uint64_t period = now_ms / FM_LATENCY_PERIOD_MS;

    return h->n > 0 && (h->period == period || h->period + 1 == period);
}

void fm_latency_read(const fm_latency *l, uint64_t now_ms, const double *qs, size_t nq,
                     uint64_t *out, fm_latency_view *view)
{
    const fm_hist *hs[2];
    size_t nh = 0, q = 0;
    uint64_t seen = 0;

    view->n = view->max_us = 0;
    for (int i = 0; i < 2; i++) {
        if (in_window(&l->h[i], now_ms)) {
            hs[nh++] = &l->h[i];
            view->n += l->h[i].n;
            if (l->h[i].max_us > view->max_us)
                view->max_us = l->h[i].max_us;
        }
    }
    memset(out, 0, nq * sizeof(*out));
    /* One pass: each quantile is the first bucket where the running count
     * reaches its rank, ceil(q * n). */
    for (size_t b = 0; b < FM_LATENCY_BUCKETS && q < nq && view->n > 0; b++) {
        for (size_t i = 0; i < nh; i++)
            seen += hs[i]->counts[b];
        while (q < nq && (double)seen >= qs[q] * (double)view->n) {
            uint64_t top = bucket_top(b);

            out[q++] = b == FM_LATENCY_BUCKETS - 1 || top > view->max_us ? view->max_us : top;
        }
    }
}

uint64_t fm_latency_window_ms(uint64_t started_ms, uint64_t now_ms)
{
    uint64_t start = now_ms / FM_LATENCY_PERIOD_MS * FM_LATENCY_PERIOD_MS;

    start = start >= FM_LATENCY_PERIOD_MS ? start - FM_LATENCY_PERIOD_MS : 0;
    if (start < started_ms)
        start = started_ms;
    return now_ms - start;
}
