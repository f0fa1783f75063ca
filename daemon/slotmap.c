/* slotmap.c -- the slot map from CLUSTER SLOTS, and batches split by slot
 * (see slotmap.h).
 *
 * The reply is parsed into a fresh map that replaces the old one only when
 * the whole reply was good. Masters are found by a linear search of those
 * seen so far: Redis's documented ceiling for a cluster is 1000 nodes, and a
 * reply naming more masters than that is refused rather than searched
 * quadratically. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slotmap.h"

#define NODES_MAX 1000
#define NO_OWNER UINT16_MAX

struct fm_slotmap {
    fm_slotmap_node *nodes;
    size_t nnodes;
    uint16_t owner[FM_SLOTS];   /* index into nodes, or NO_OWNER */
};

static void clear_nodes(fm_slotmap *m)
{
    for (size_t i = 0; i < m->nnodes; i++)
        free(m->nodes[i].replicas);
    free(m->nodes);
    m->nodes = NULL;
    m->nnodes = 0;
}

fm_slotmap *fm_slotmap_create(void)
{
    fm_slotmap *m = calloc(1, sizeof(*m));

    if (m != NULL)
        memset(m->owner, 0xff, sizeof(m->owner));
    return m;
}

void fm_slotmap_free(fm_slotmap *m)
{
    if (m == NULL)
        return;
    clear_nodes(m);
    free(m);
}

__attribute__((format(printf, 3, 4)))
static int malformed(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return FM_SLOTMAP_MALFORMED;
}

/* A node as CLUSTER SLOTS gives it: [host, port, id, ...]. Only host and
 * port are used; what follows (the id, Redis 7's metadata) is not. A nil
 * host, or an empty one (a node that never learnt its own address, as one
 * that met no other), is the host that was asked. Returns 0, UNUSABLE
 * (with a message) for an endpoint no connection can be made to, or
 * FM_SLOTMAP_MALFORMED when the node is not even [host, port]. */
#define UNUSABLE 1
static int parse_addr(const redisReply *r, const char *seed_host, fm_slotmap_addr *out,
                      char *err, size_t errlen)
{
    const redisReply *host, *port;
    int asked;

    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2)
        return malformed(err, errlen, "CLUSTER SLOTS: a node is not an array of host and port");
    host = r->element[0];
    port = r->element[1];
    asked = host->type == REDIS_REPLY_NIL || (host->type == REDIS_REPLY_STRING && host->len == 0);
    if (asked && seed_host != NULL && strlen(seed_host) <= FM_SLOTMAP_HOST_MAX) {
        strcpy(out->host, seed_host);
    } else if (!asked && host->type == REDIS_REPLY_STRING && host->len <= FM_SLOTMAP_HOST_MAX
               && memchr(host->str, '\0', host->len) == NULL && strcmp(host->str, "?") != 0) {
        memcpy(out->host, host->str, host->len);
        out->host[host->len] = '\0';
    } else {
        malformed(err, errlen, "CLUSTER SLOTS: a node's endpoint is not a usable host");
        return UNUSABLE;
    }
    if (port->type != REDIS_REPLY_INTEGER || port->integer < 1 || port->integer > 65535) {
        malformed(err, errlen, "CLUSTER SLOTS: a node's port is not an integer in 1..65535");
        return UNUSABLE;
    }
    out->port = (int)port->integer;
    return 0;
}

static int same_addr(const fm_slotmap_addr *a, const fm_slotmap_addr *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* The replicas listed after the master in entry e (elements 3 onwards).
 * One whose endpoint is unusable ("?") is left out: the map routes to
 * masters only. */
static int parse_replicas(const redisReply *e, const char *seed_host, fm_slotmap_node *n,
                          char *err, size_t errlen)
{
    size_t count = e->elements - 3;
    int rc;

    n->replicas = count > 0 ? calloc(count, sizeof(*n->replicas)) : NULL;
    if (count > 0 && n->replicas == NULL)
        return FM_SLOTMAP_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        rc = parse_addr(e->element[3 + i], seed_host, &n->replicas[n->nreplicas], err, errlen);
        if (rc == FM_SLOTMAP_MALFORMED)
            return rc;
        n->nreplicas += rc == 0;
    }
    return 0;
}

/* The index of the entry's master in m, added when new. */
static int find_or_add(fm_slotmap *m, const fm_slotmap_addr *a, const redisReply *e,
                       const char *seed_host, size_t *index, char *err, size_t errlen)
{
    fm_slotmap_node *grown, *n;

    for (size_t i = 0; i < m->nnodes; i++) {
        if (same_addr(&m->nodes[i].addr, a)) {
            *index = i;
            return 0;
        }
    }
    if (m->nnodes == NODES_MAX)
        return malformed(err, errlen, "CLUSTER SLOTS: more than %d masters", NODES_MAX);
    grown = realloc(m->nodes, (m->nnodes + 1) * sizeof(*m->nodes));
    if (grown == NULL)
        return FM_SLOTMAP_ENOMEM;
    m->nodes = grown;
    n = &m->nodes[m->nnodes];
    memset(n, 0, sizeof(*n));
    n->addr = *a;
    *index = m->nnodes++;
    return parse_replicas(e, seed_host, n, err, errlen);
}

/* One entry: [start, end, master, replica...]. */
static int parse_entry(fm_slotmap *m, const redisReply *e, const char *seed_host,
                       char *err, size_t errlen)
{
    const redisReply *start, *end;
    fm_slotmap_addr master;
    size_t index = 0;
    int rc;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
        return malformed(err, errlen, "CLUSTER SLOTS: an entry is not an array of "
                                      "start, end and master");
    start = e->element[0];
    end = e->element[1];
    if (start->type != REDIS_REPLY_INTEGER || end->type != REDIS_REPLY_INTEGER
        || start->integer < 0 || start->integer > end->integer || end->integer >= FM_SLOTS)
        return malformed(err, errlen, "CLUSTER SLOTS: a slot range is not two integers "
                                      "0 <= start <= end < %d", FM_SLOTS);
    rc = parse_addr(e->element[2], seed_host, &master, err, errlen);
    if (rc == UNUSABLE)
        rc = FM_SLOTMAP_MALFORMED;
    if (rc == 0)
        rc = find_or_add(m, &master, e, seed_host, &index, err, errlen);
    if (rc != 0)
        return rc;
    for (long long s = start->integer; s <= end->integer; s++) {
        if (m->owner[s] != NO_OWNER)
            return malformed(err, errlen, "CLUSTER SLOTS: slot %lld is listed twice", s);
        m->owner[s] = (uint16_t)index;
    }
    return 0;
}

int fm_slotmap_update(fm_slotmap *m, const redisReply *reply, const char *seed_host,
                      char *err, size_t errlen)
{
    fm_slotmap *fresh;
    int rc = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY)
        return malformed(err, errlen, "CLUSTER SLOTS: the reply is not an array");
    fresh = fm_slotmap_create();
    if (fresh == NULL)
        return FM_SLOTMAP_ENOMEM;
    for (size_t i = 0; i < reply->elements && rc == 0; i++)
        rc = parse_entry(fresh, reply->element[i], seed_host, err, errlen);
    if (rc == 0) {
        clear_nodes(m);
        *m = *fresh;
        fresh->nodes = NULL;
        fresh->nnodes = 0;
    }
    fm_slotmap_free(fresh);
    return rc;
}

size_t fm_slotmap_count(const fm_slotmap *m)
{
    return m->nnodes;
}

const fm_slotmap_node *fm_slotmap_node_at(const fm_slotmap *m, size_t i)
{
    return i < m->nnodes ? &m->nodes[i] : NULL;
}

long fm_slotmap_owner(const fm_slotmap *m, unsigned slot)
{
    if (slot >= FM_SLOTS || m->owner[slot] == NO_OWNER)
        return -1;
    return m->owner[slot];
}

int fm_slotmap_covered(const fm_slotmap *m)
{
    for (unsigned s = 0; s < FM_SLOTS; s++)
        if (m->owner[s] == NO_OWNER)
            return 0;
    return 1;
}

typedef struct keyref {
    size_t node;
    unsigned slot;
    size_t at;
} keyref;

static int by_node_slot_index(const void *a, const void *b)
{
    const keyref *x = a, *y = b;

    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* Cuts the sorted refs into groups of one node and slot. */
static void cut_groups(fm_slotbatch *b, const keyref *refs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fm_slotgroup *g = b->ngroups > 0 ? &b->groups[b->ngroups - 1] : NULL;

        b->order[i] = refs[i].at;
        if (g != NULL && g->node == refs[i].node && g->slot == refs[i].slot) {
            g->count++;
            continue;
        }
        g = &b->groups[b->ngroups++];
        g->node = refs[i].node;
        g->slot = refs[i].slot;
        g->first = i;
        g->count = 1;
    }
}

int fm_slotbatch_make(fm_slotbatch *b, const fm_slotmap *m, const char *const *keys,
                      const size_t *lens, size_t n)
{
    keyref *refs;

    memset(b, 0, sizeof(*b));
    if (n == 0)
        return 0;
    refs = calloc(n, sizeof(*refs));
    b->order = calloc(n, sizeof(*b->order));
    b->groups = calloc(n, sizeof(*b->groups));
    if (refs == NULL || b->order == NULL || b->groups == NULL) {
        free(refs);
        fm_slotbatch_clear(b);
        return FM_SLOTMAP_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned slot = fm_slot(keys[i], lens[i]);
        long owner = m != NULL ? fm_slotmap_owner(m, slot) : 0;

        if (owner < 0) {
            free(refs);
            fm_slotbatch_clear(b);
            return FM_SLOTMAP_UNCOVERED;
        }
        refs[i] = (keyref){(size_t)owner, slot, i};
    }
    qsort(refs, n, sizeof(*refs), by_node_slot_index);
    cut_groups(b, refs, n);
    free(refs);
    return 0;
}

void fm_slotbatch_clear(fm_slotbatch *b)
{
    free(b->order);
    free(b->groups);
    memset(b, 0, sizeof(*b));
}
