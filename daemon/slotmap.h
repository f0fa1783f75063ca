/* slotmap.h -- a Redis Cluster slot map: which master serves each of the
 * 16384 hash slots, as a CLUSTER SLOTS reply tells it, and how a batch of
 * keys splits into one command per slot on each master.
 *
 * The map only reads replies: it never talks to Redis, so a reply of any
 * shape can be tested. A reply that does not have CLUSTER SLOTS's shape is
 * refused whole with a message (never half taken): a map that names a
 * wrong owner would send commands that only bounce with MOVED. */
#ifndef FM_SLOTMAP_H
#define FM_SLOTMAP_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "slot.h"

#define FM_SLOTMAP_HOST_MAX 255

/* What the functions return besides 0. */
enum {
    FM_SLOTMAP_ENOMEM = -1,
    FM_SLOTMAP_MALFORMED = -2,  /* the reply is not CLUSTER SLOTS's shape */
    FM_SLOTMAP_UNCOVERED = -3,  /* a key's slot has no master in the map */
};

typedef struct fm_slotmap_addr {
    char host[FM_SLOTMAP_HOST_MAX + 1];
    int port;
} fm_slotmap_addr;

/* A master and the replicas CLUSTER SLOTS listed with its first range.
 * Redis 7 lists only replicas whose replication offset is not 0: a replica
 * of a master that was never written to may be missing. */
typedef struct fm_slotmap_node {
    fm_slotmap_addr addr;
    fm_slotmap_addr *replicas;
    size_t nreplicas;
} fm_slotmap_node;

typedef struct fm_slotmap fm_slotmap;

/* An empty map: no slot covered. NULL when out of memory. */
fm_slotmap *fm_slotmap_create(void);
void fm_slotmap_free(fm_slotmap *m);

/* Replaces the map's contents with what reply (a CLUSTER SLOTS reply, as
 * hiredis's reader builds it: no NULL elements) says.
 * seed_host is the host the reply came from: a nil endpoint means "the host
 * you asked" (Redis's cluster-preferred-endpoint-type unknown-endpoint); NULL
 * refuses nil endpoints. Returns 0, FM_SLOTMAP_MALFORMED with a message in
 * err, or FM_SLOTMAP_ENOMEM; on failure the map keeps what it had. */
int fm_slotmap_update(fm_slotmap *m, const redisReply *reply, const char *seed_host,
                      char *err, size_t errlen);

/* The masters, in the order of their first range in the reply. */
size_t fm_slotmap_count(const fm_slotmap *m);
const fm_slotmap_node *fm_slotmap_node_at(const fm_slotmap *m, size_t i);
/* The index of slot's master, or -1 when no master serves it. */
long fm_slotmap_owner(const fm_slotmap *m, unsigned slot);
/* Whether every slot has a master. */
int fm_slotmap_covered(const fm_slotmap *m);

/* One command's worth of a batch: the keys order[first .. first + count)
 * all hash to slot, which master node serves. */
typedef struct fm_slotgroup {
    size_t node;
    unsigned slot;
    size_t first;
    size_t count;
} fm_slotgroup;

/* A batch of keys split by master and slot. The groups of one master are
 * adjacent, and within a group keys keep their batch order, so element j of
 * a group's MGET reply belongs to key order[first + j]. */
typedef struct fm_slotbatch {
    size_t *order;
    fm_slotgroup *groups;
    size_t ngroups;
} fm_slotbatch;

/* Splits keys[0..n) (lens[i] bytes each, full Redis key names) into b.
 * Returns 0, FM_SLOTMAP_UNCOVERED when a key's slot has no master (b is then
 * empty: a batch is sent whole or not at all), or FM_SLOTMAP_ENOMEM. With m
 * NULL the keys split by slot alone (every group's node is 0), for a
 * caller that routes each group when it sends it. */
int fm_slotbatch_make(fm_slotbatch *b, const fm_slotmap *m, const char *const *keys,
                      const size_t *lens, size_t n);
/* Frees what fm_slotbatch_make allocated; b is then empty. */
void fm_slotbatch_clear(fm_slotbatch *b);

#endif
