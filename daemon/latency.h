/* latency.h -- per-operation latency over a recent window, in fixed memory.
 *
 * A histogram has log-linear buckets over whole microseconds (HdrHistogram's
 * idea, cut down): 0..15 us one bucket each, then every power of two split
 * into 16 equal buckets, up to 2^32 us (71 minutes; longer is counted in the
 * last bucket). A quantile read from it is the upper bound of its bucket,
 * so it overstates by at most 1/16 (6.25 %), never understates, and is
 * never above the largest value seen.
 *
 * The window is two histograms that take turns, each covering one period
 * of FM_LATENCY_PERIOD_MS (60 s) of the loop's clock: the period now under
 * way and the one before it. A quantile covers both, so the last 60 to 120
 * seconds. Turning over is lazy, on the next record, and a reader looks at
 * the periods' numbers rather than trusting what is stored, so an operation
 * that went quiet shows an empty window, not old numbers; no timer is
 * needed. Recording is a few integer operations and never allocates. */
#ifndef FM_LATENCY_H
#define FM_LATENCY_H

#include <stddef.h>
#include <stdint.h>

#define FM_LATENCY_PERIOD_MS 60000
#define FM_LATENCY_SUB 16                       /* buckets per power of two */
#define FM_LATENCY_TOP 32                       /* values up to 2^32 us */
#define FM_LATENCY_BUCKETS (FM_LATENCY_SUB + (FM_LATENCY_TOP - 4) * FM_LATENCY_SUB)

typedef struct fm_hist {
    uint64_t period;            /* which period it counts */
    uint64_t n;
    uint64_t max_us;
    uint32_t counts[FM_LATENCY_BUCKETS];
} fm_hist;

typedef struct fm_latency {
    fm_hist h[2];               /* h[period % 2] counts that period */
    uint64_t count;             /* since start, for Prometheus' _count */
    uint64_t sum_us;            /* since start, for Prometheus' _sum */
} fm_latency;

/* One request took us microseconds; now_ms is the loop's clock. */
void fm_latency_record(fm_latency *l, uint64_t us, uint64_t now_ms);

/* What the window holds at now_ms: its number of samples, the largest, and
 * the quantiles qs[0..nq) (each in (0, 1], ascending) into out[]; all 0
 * when the window is empty. */
typedef struct fm_latency_view {
    uint64_t n;
    uint64_t max_us;
} fm_latency_view;
void fm_latency_read(const fm_latency *l, uint64_t now_ms, const double *qs, size_t nq,
                     uint64_t *out, fm_latency_view *view);

/* How far back the window reaches at now_ms, in ms (60000 to 120000 once
 * the daemon has run that long; started_ms is when it started). */
uint64_t fm_latency_window_ms(uint64_t started_ms, uint64_t now_ms);

#endif
