/* link_track.h -- Redis server-assisted client-side caching on the link,
 * and the fence that orders what the two connections deliver.
 *
 * The command connection runs CLIENT TRACKING on REDIRECT <the pub/sub
 * connection's id> NOLOOP, and the pub/sub connection hears the
 * invalidations on __redis__:invalidate (RESP2: hiredis 0.14 has no RESP3).
 * Tracking is "armed" from the moment Redis confirmed it on the current
 * pair of connections: a read sent after that is tracked, and a write by
 * anyone else to a key it read is announced on the pub/sub connection.
 * When either connection drops, Redis forgets (or can no longer deliver)
 * what it tracked: the tracker hears `lost` and must forget everything.
 *
 * Replies and invalidations arrive on two sockets, so their order is not
 * the order Redis made them in. A fence restores it where it matters: a
 * round trip on the pub/sub connection (SUBSCRIBE again to the channel it
 * has, which hiredis 0.14 answers like any confirmation) sent after the
 * fence was raised comes back behind every invalidation Redis sent before
 * it read that SUBSCRIBE. It is sent once a read waits for a fence; all
 * the fences and reads of one loop turn share one round trip, and one is
 * out at a time. The same round trip, every
 * FM_LINK_PING_MS, proves the pub/sub connection alive: unanswered for
 * request_timeout_ms, it is dropped (and the tracker hears `lost`).
 *
 * Not in a Cluster: tracking is per node there, and the pub/sub connection
 * is on one node only. */
#ifndef FM_LINK_TRACK_H
#define FM_LINK_TRACK_H

#include <stddef.h>
#include <stdint.h>

typedef struct fm_link fm_link;

typedef struct fm_link_tracker {
    /* Tracking is on: reads sent from now are tracked. */
    void (*armed)(void *arg);
    /* Invalidations may have been lost (a connection dropped, or Redis
     * said every key, as after FLUSHALL): forget every key. */
    void (*lost)(void *arg);
    /* Someone wrote the key (or it expired, or was evicted). */
    void (*invalidate)(const char *key, size_t len, void *arg);
    /* Every fence up to seq is passed (or moot: tracking was lost). */
    void (*fenced)(uint64_t seq, void *arg);
    void *arg;
} fm_link_tracker;

/* Registers the one tracker, before the link starts; -1 when there is one
 * already, the link is a Cluster's, or out of memory. */
int fm_link_track(fm_link *link, const fm_link_tracker *t);
/* Whether tracking is armed now. */
int fm_link_tracking(const fm_link *link);
/* Raises a fence (a lock was granted): what the tracker learns from
 * `fenced` with this number or a higher one came behind every invalidation
 * Redis sent before the fence. 0 when nothing needs to wait (no tracking).
 * Nothing is sent for it until a read waits for it. */
uint64_t fm_link_fence(fm_link *link);
/* The fence a read arriving now must wait for, 0 when none is open; the
 * round trip that passes it is on its way once this was asked. */
uint64_t fm_link_fence_open(fm_link *link);

typedef struct fm_link_track_stats {
    uint64_t fences;        /* round trips on the pub/sub connection */
} fm_link_track_stats;
void fm_link_track_stats_get(const fm_link *link, fm_link_track_stats *out);

#endif
