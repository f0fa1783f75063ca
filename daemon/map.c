/* map.c -- see map.h. Chained buckets, power-of-two sized; a resize moves
 * every node at once (the tables here hold thousands of nodes, not
 * millions, so incremental rehashing would not pay for its code). */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "map.h"

#define MIN_BUCKETS 8

static uint64_t sip_key[2];
static int sip_keyed;

static uint64_t rotl(uint64_t x, int b)
{
    return x << b | x >> (64 - b);
}

#define SIPROUND                                                            \
    do {                                                                    \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);          \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                              \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                              \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);          \
    } while (0)

static uint64_t load64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;   /* little-endian hosts only: the hash need not be portable */
}

/* SipHash-1-3: one compression round per word, three at the end. */
static uint64_t siphash13(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key, *end = p + (len & ~(size_t)7);
    uint64_t v0 = 0x736f6d6570736575ULL ^ sip_key[0], v1 = 0x646f72616e646f6dULL ^ sip_key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ sip_key[0], v3 = 0x7465646279746573ULL ^ sip_key[1];
    uint64_t m, b = (uint64_t)len << 56;

    for (; p != end; p += 8) {
        m = load64(p);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (int i = (int)(len & 7); i-- > 0;)
        b |= (uint64_t)p[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash(const char *key, size_t len)
{
    /* A failed getrandom leaves a fixed key: still a good hash, only not
     * one a hostile client cannot predict. It does not fail on Linux once
     * the pool is initialised, long before a daemon of ours runs. */
    if (!sip_keyed) {
        if (getrandom(sip_key, sizeof(sip_key), 0) != (ssize_t)sizeof(sip_key))
            sip_key[0] = 0x0123456789abcdefULL;
        sip_keyed = 1;
    }
    return siphash13(key, len);
}

void fm_map_init(fm_map *m)
{
    memset(m, 0, sizeof(*m));
}

void fm_map_free(fm_map *m)
{
    free(m->buckets);
    fm_map_init(m);
}

/* Moves every node into a table of n buckets; keeps the old one when
 * memory runs out, which costs only speed. */
static void resize(fm_map *m, size_t n)
{
    fm_map_node **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return;
    for (size_t i = 0; m->buckets != NULL && i <= m->mask; i++) {
        fm_map_node *node = m->buckets[i], *next;

        for (; node != NULL; node = next) {
            next = node->next;
            node->next = b[node->hash & (n - 1)];
            b[node->hash & (n - 1)] = node;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->mask = n - 1;
}

int fm_map_insert(fm_map *m, fm_map_node *n, const char *key, size_t len)
{
    fm_map_node **slot;

    if (m->buckets == NULL) {
        resize(m, MIN_BUCKETS);
        if (m->buckets == NULL)
            return -1;
    } else if (m->count > m->mask) {
        resize(m, (m->mask + 1) * 2);
    } else if (m->mask + 1 > MIN_BUCKETS && m->count < (m->mask + 1) / 8) {
        size_t size = m->mask + 1;

        while (size > MIN_BUCKETS && m->count < size / 8)
            size /= 2;
        resize(m, size);
    }
    n->key = key;
    n->len = len;
    n->hash = hash(key, len);
    slot = &m->buckets[n->hash & m->mask];
    n->next = *slot;
    *slot = n;
    m->count++;
    return 0;
}

void fm_map_remove(fm_map *m, fm_map_node *n)
{
    fm_map_node **slot = &m->buckets[n->hash & m->mask];

    while (*slot != n)
        slot = &(*slot)->next;
    *slot = n->next;
    n->next = NULL;
    /* Never a resize here: callers remove nodes while walking the nodes of
     * one key (fm_map_next), and a rehash would reorder their chain. The
     * table shrinks at the next insert instead, or goes when empty. */
    if (--m->count == 0)
        fm_map_free(m);
}

static int same(const fm_map_node *n, uint64_t h, const char *key, size_t len)
{
    return n->hash == h && n->len == len && memcmp(n->key, key, len) == 0;
}

fm_map_node *fm_map_find(const fm_map *m, const char *key, size_t len)
{
    uint64_t h;

    if (m->buckets == NULL)
        return NULL;
    h = hash(key, len);
    for (fm_map_node *n = m->buckets[h & m->mask]; n != NULL; n = n->next)
        if (same(n, h, key, len))
            return n;
    return NULL;
}

fm_map_node *fm_map_next(const fm_map_node *n)
{
    for (fm_map_node *x = n->next; x != NULL; x = x->next)
        if (same(x, n->hash, n->key, n->len))
            return x;
    return NULL;
}

static fm_map_node *first_from(const fm_map *m, size_t i)
{
    for (; m->buckets != NULL && i <= m->mask; i++)
        if (m->buckets[i] != NULL)
            return m->buckets[i];
    return NULL;
}

fm_map_node *fm_map_first(const fm_map *m)
{
    return first_from(m, 0);
}

fm_map_node *fm_map_after(const fm_map *m, const fm_map_node *n)
{
    return n->next != NULL ? n->next : first_from(m, (n->hash & m->mask) + 1);
}
