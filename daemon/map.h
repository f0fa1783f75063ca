/* map.h -- an intrusive hash table keyed by byte strings.
 *
 * The owner embeds an fm_map_node in its own struct and keeps the key bytes
 * alive for as long as the node is in the map; the map allocates only its
 * bucket array. Several nodes may share one key (every acquire waiting for
 * one lock): fm_map_find returns the first, fm_map_next the others.
 *
 * Keys come from clients, so the hash is SipHash-1-3 under a key drawn at
 * random once per process (as Redis's dict does): no client can choose keys
 * that pile up in one bucket and make lookups linear for everyone. The
 * table doubles past one node per bucket, halves below one per eight (at
 * the next insert), and goes when empty, so a connection that once held
 * 50,000 locks does not keep their buckets. */
#ifndef FM_MAP_H
#define FM_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fm_map_node {
    struct fm_map_node *next;   /* in its bucket */
    uint64_t hash;
    const char *key;
    size_t len;
} fm_map_node;

typedef struct fm_map {
    fm_map_node **buckets;      /* NULL until the first insert */
    size_t mask;                /* buckets - 1 */
    size_t count;
} fm_map;

void fm_map_init(fm_map *m);
/* Frees the bucket array; the nodes are their owners'. */
void fm_map_free(fm_map *m);
/* Adds n under key[0..len), which must outlive its stay. 0, or -1 out of
 * memory (n is then not in the map). */
int fm_map_insert(fm_map *m, fm_map_node *n, const char *key, size_t len);
/* Takes n out; n must be in m. Safe while walking one key's nodes with
 * fm_map_next, as long as the walk has taken the next node first. */
void fm_map_remove(fm_map *m, fm_map_node *n);
fm_map_node *fm_map_find(const fm_map *m, const char *key, size_t len);
/* The next node after n with n's key, or NULL. */
fm_map_node *fm_map_next(const fm_map_node *n);
/* Every node, in no particular order: fm_map_first, then fm_map_after
 * until NULL. The walk must not change the map; to drain one, take
 * fm_map_first again after each removal. */
fm_map_node *fm_map_first(const fm_map *m);
fm_map_node *fm_map_after(const fm_map *m, const fm_map_node *n);
/* The struct of type `type` whose member `member` is the node n. */
#define fm_map_entry(n, type, member) ((type *)(void *)((char *)(n) - offsetof(type, member)))

#endif
