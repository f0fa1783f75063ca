/* near.c -- the near cache; see near.h.
 *
 * One hash map by key, one LRU list of the entries that hold a value. An
 * entry also stays, without a value, while fills are out for it: its
 * `gen`, bumped by every invalidation and write of the key, is what a
 * fill compares on its way back. Expiry is checked on each read against
 * the monotonic clock, with no timer: an expired entry found is dropped,
 * one never read again leaves by the LRU. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "list.h"
#include "map.h"
#include "near.h"

struct fm_near_entry {
    fm_map_node node;       /* n->map, by key */
    fm_list lru;            /* n->lru while it holds a value, newest first */
    fm_list in_all;         /* n->all */
    unsigned fills;         /* fills out for it */
    unsigned writes;        /* of those, the daemon's own writes */
    uint64_t gen;
    char *val;              /* NULL: none held */
    size_t vlen;
    uint64_t expires_us;    /* 0: never */
    size_t keylen;
    char key[];
};

struct fm_near {
    fm_map map;
    fm_list lru;
    fm_list all;            /* every entry, for a flush */
    size_t max;
    uint64_t epoch;         /* bumped by every flush */
    fm_near_stats stats;
};

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

static size_t cost(const fm_near_entry *e)
{
    return sizeof(*e) + e->keylen + e->vlen;
}

/* The entry goes once it holds nothing and no fill needs its gen. */
static void settle(fm_near *n, fm_near_entry *e)
{
    if (e->val != NULL || e->fills > 0)
        return;
    fm_map_remove(&n->map, &e->node);
    fm_list_remove(&e->in_all);
    free(e);
}

static void drop_value(fm_near *n, fm_near_entry *e)
{
    if (e->val == NULL)
        return;
    n->stats.bytes -= cost(e);
    n->stats.entries--;
    free(e->val);
    e->val = NULL;
    e->vlen = 0;
    fm_list_remove(&e->lru);
}

static fm_near_entry *find(const fm_near *n, const char *key, size_t len)
{
    fm_map_node *node = fm_map_find(&n->map, key, len);

    return node != NULL ? fm_map_entry(node, fm_near_entry, node) : NULL;
}

static fm_near_entry *find_or_add(fm_near *n, const char *key, size_t len)
{
    fm_near_entry *e = find(n, key, len);

    if (e != NULL)
        return e;
    e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->key, key, len);
    e->keylen = len;
    fm_list_init(&e->lru);
    if (fm_map_insert(&n->map, &e->node, e->key, len) != 0) {
        free(e);
        return NULL;
    }
    fm_list_push_back(&n->all, &e->in_all);
    return e;
}

static void evict_to(fm_near *n, size_t max)
{
    fm_list *last;

    while (n->stats.bytes > max && (last = n->lru.prev) != &n->lru) {
        fm_near_entry *e = fm_list_entry(last, fm_near_entry, lru);

        drop_value(n, e);
        settle(n, e);
        n->stats.evictions++;
    }
}

fm_near *fm_near_create(size_t max)
{
    fm_near *n = calloc(1, sizeof(*n));

    if (n == NULL)
        return NULL;
    fm_map_init(&n->map);
    fm_list_init(&n->lru);
    fm_list_init(&n->all);
    n->max = max;
    return n;
}

/* Drops every value, and the entries no fill waits for. */
static void empty(fm_near *n, int all)
{
    fm_list *l, *next;

    for (l = n->all.next; l != &n->all; l = next) {
        fm_near_entry *e = fm_list_entry(l, fm_near_entry, in_all);

        next = l->next;
        drop_value(n, e);
        /* The daemon frees its near cache after every request ended. */
        assert(!all || e->fills == 0);
        settle(n, e);
    }
}

void fm_near_free(fm_near *n)
{
    if (n == NULL)
        return;
    empty(n, 1);
    fm_map_free(&n->map);
    free(n);
}

void fm_near_set_max(fm_near *n, size_t max)
{
    n->max = max;
    evict_to(n, max);
}

int fm_near_get(fm_near *n, const char *key, size_t len, const char **val, size_t *vlen)
{
    fm_near_entry *e = find(n, key, len);

    if (e != NULL && e->val != NULL && e->expires_us != 0 && now_us() >= e->expires_us) {
        drop_value(n, e);
        settle(n, e);
        n->stats.expired++;
        e = NULL;
    }
    if (e == NULL || e->val == NULL) {
        n->stats.misses++;
        return 0;
    }
    n->stats.hits++;
    fm_list_remove(&e->lru);
    fm_list_push_front(&n->lru, &e->lru);
    *val = e->val;
    *vlen = e->vlen;
    return 1;
}

int fm_near_fill_begin(fm_near *n, const char *key, size_t len, fm_near_fill *f)
{
    fm_near_entry *e = find_or_add(n, key, len);

    f->e = e;
    if (e == NULL)
        return -1;
    e->fills++;
    f->gen = e->gen;
    f->epoch = n->epoch;
    f->sent_us = now_us();
    f->write = 0;
    f->tainted = e->writes > 0;
    return 0;
}

/* When a copy whose key had pttl ms left must go: counted from before the
 * command left, less a millisecond, since Redis rounds the TTL it reports
 * (and the moment it set it) to whole milliseconds. Never later than the
 * key. A TTL of 1 ms keeps nothing worth keeping (1 us). */
static uint64_t expiry(const fm_near_fill *f, int64_t pttl)
{
    uint64_t us = (uint64_t)pttl * 1000;

    return f->sent_us + (us > 1000 ? us - 1000 : 1);
}

/* Keeps val as e's value, when it fits at all. */
static void store(fm_near *n, fm_near_entry *e, const char *val, size_t vlen, uint64_t expires)
{
    char *copy;

    if (sizeof(*e) + e->keylen + vlen > n->max || (copy = malloc(vlen ? vlen : 1)) == NULL)
        return;
    memcpy(copy, val, vlen);
    drop_value(n, e);
    e->val = copy;
    e->vlen = vlen;
    e->expires_us = expires;
    n->stats.bytes += cost(e);
    n->stats.entries++;
    n->stats.fills++;
    fm_list_push_front(&n->lru, &e->lru);
    evict_to(n, n->max);
}

void fm_near_fill_end(fm_near *n, fm_near_fill *f, const char *val, size_t vlen, int64_t pttl)
{
    fm_near_entry *e = f->e;

    if (e == NULL)
        return;
    assert(e->fills > 0 && (!f->write || e->writes > 0));
    f->e = NULL;
    e->fills--;
    e->writes -= (unsigned)f->write;
    if (val != NULL) {
        if (f->epoch != n->epoch || f->gen != e->gen || f->tainted)
            n->stats.fills_dropped++;
        else if (pttl == -1 || pttl > 0)
            store(n, e, val, vlen, pttl > 0 ? expiry(f, pttl) : 0);
    }
    settle(n, e);
}

/* The key changed, or is about to: its value goes, fills out keep none. */
static void spoil(fm_near *n, fm_near_entry *e)
{
    e->gen++;
    drop_value(n, e);
}

int fm_near_write_begin(fm_near *n, const char *key, size_t len, fm_near_fill *f)
{
    fm_near_entry *e = find(n, key, len);

    if (e != NULL)
        spoil(n, e);
    if (fm_near_fill_begin(n, key, len, f) != 0)
        return -1;
    f->write = 1;
    f->e->writes++;
    return 0;
}

void fm_near_invalidate(fm_near *n, const char *key, size_t len)
{
    fm_near_entry *e = find(n, key, len);

    if (e == NULL)
        return;
    if (e->val != NULL)
        n->stats.invalidations++;
    spoil(n, e);
    settle(n, e);
}

void fm_near_flush(fm_near *n)
{
    n->epoch++;
    n->stats.flushes++;
    empty(n, 0);
}

void fm_near_stats_get(const fm_near *n, fm_near_stats *out)
{
    *out = n->stats;
}
