/* test_cluster.c -- Redis Cluster groundwork against a real six-node
 * cluster (topo_cluster.c): key slots as CLUSTER KEYSLOT computes them, the
 * fence counter in its lock's slot (the real acquire script runs there
 * without CROSSSLOT), the slot map from CLUSTER SLOTS and its batches (one
 * MGET or DEL per slot, reassembled), publications from scripts reaching
 * subscribers on every node, and the topology's own faults: slots
 * moved by hand (ASK while half moved) and a master killed until its
 * replica serves its slots, and what a moving slot does to the acquire
 * script (TRYAGAIN until the move ends). Malformed replies: test_slotmap.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "fence.h"
#include "fm_tests.h"
#include "harness.h"
#include "keys.h"
#include "scripts.h"
#include "slot.h"
#include "slotmap.h"
#include "topo_cluster.h"

static fmt_cluster shared;

static void shared_up(void)
{
    ck_assert_msg(fmt_cluster_start(&shared) == 0, "the cluster did not start");
    fprintf(stderr, "cluster: six nodes started and settled in %lld ms\n",
            (long long)shared.start_ms);
}

static void shared_down(void)
{
    fmt_cluster_stop(&shared);
}

static redisContext *node(const fmt_cluster *c, int i)
{
    redisContext *ctx = fmt_cluster_connect(c, i);

    ck_assert_msg(ctx != NULL, "cannot connect to cluster node %d", i);
    return ctx;
}

/* CLUSTER KEYSLOT of n binary keys, pipelined. */
static void redis_keyslots(redisContext *ctx, char **keys, const size_t *lens, size_t n,
                           long long *slots)
{
    for (size_t i = 0; i < n; i++) {
        const char *argv[] = {"CLUSTER", "KEYSLOT", keys[i]};
        size_t argl[] = {7, 7, lens[i]};

        ck_assert_int_eq(redisAppendCommandArgv(ctx, 3, argv, argl), REDIS_OK);
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;

        ck_assert_int_eq(redisGetReply(ctx, (void **)&r), REDIS_OK);
        ck_assert_msg(r->type == REDIS_REPLY_INTEGER, "KEYSLOT %zu: %s", i,
                      r->type == REDIS_REPLY_ERROR ? r->str : "not an integer");
        slots[i] = r->integer;
        freeReplyObject(r);
    }
}

static char *dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);

    ck_assert_ptr_nonnull(s);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Keys of every shape the hash tag rule distinguishes, then random bytes
 * heavy in braces. */
static size_t keyslot_cases(char **keys, size_t *lens, size_t max)
{
    static const char *const fixed[] = {
        "", "a", "foo", "somekey", "123456789", "{user1000}.following",
        "{user1000}.followers", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{}", "{}{a}",
        "{{a}}", "{a", "a}", "}{a}", "{", "}", "{}a{b}", "x{y}z", "{ab}", "ab{", "fm:lock:{t}",
        "fm:lock:\001fence:{0}", NULL};
    unsigned seed = 12345;
    size_t n = 0;

    for (int i = 0; fixed[i]; i++, n++) {
        lens[n] = strlen(fixed[i]);
        keys[n] = dup_bytes(fixed[i], lens[n]);
    }
    /* Every byte value alone and inside a tag, NUL and '{' included. */
    for (int b = 0; b < 256; b++) {
        char one[4] = {'{', (char)b, '}', 'x'};

        lens[n] = 1;
        keys[n++] = dup_bytes(one + 1, 1);
        lens[n] = 4;
        keys[n++] = dup_bytes(one, 4);
    }
    for (size_t len = 1000; len <= 70000; len *= 8, n++) {
        keys[n] = malloc(len + 1);
        ck_assert_ptr_nonnull(keys[n]);
        for (size_t i = 0; i < len; i++)
            keys[n][i] = (char)('a' + i % 26);
        keys[n][len / 2] = '{';
        keys[n][len / 2 + 3] = '}';
        lens[n] = len;
    }
    while (n < max) {
        static const char alphabet[] = "{}{}ab\0\xff\x80z";
        size_t len = (size_t)(rand_r(&seed) % 24);

        keys[n] = malloc(len + 1);
        ck_assert_ptr_nonnull(keys[n]);
        for (size_t i = 0; i < len; i++)
            keys[n][i] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        lens[n++] = len;
    }
    return n;
}

START_TEST(test_slot_matches_cluster_keyslot)
{
    enum { N = 3000 };
    char **keys = calloc(N, sizeof(*keys));
    size_t *lens = calloc(N, sizeof(*lens)), n;
    long long *slots = calloc(N, sizeof(*slots));
    redisContext *ctx = node(&shared, 0);

    ck_assert(keys && lens && slots);
    n = keyslot_cases(keys, lens, N);
    redis_keyslots(ctx, keys, lens, n, slots);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fm_slot(keys[i], lens[i]) == slots[i],
                      "key %zu (%zu bytes): ours %u, Redis %lld", i, lens[i],
                      fm_slot(keys[i], lens[i]), slots[i]);
    /* The values Redis's documentation gives. */
    ck_assert_uint_eq(fm_slot("somekey", 7), 11058);
    ck_assert_uint_eq(fm_slot("foo{hash_tag}", 13), 2515);
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
    free(lens);
    free(slots);
    redisFree(ctx);
}
END_TEST

static fm_slotmap *map_from(const fmt_cluster *c, int i)
{
    redisContext *ctx = node(c, i);
    redisReply *r = fmt_redis_cmd(ctx, "CLUSTER SLOTS");
    fm_slotmap *m = fm_slotmap_create();
    char err[200] = "";

    ck_assert_ptr_nonnull(r);
    ck_assert_ptr_nonnull(m);
    ck_assert_msg(fm_slotmap_update(m, r, "127.0.0.1", err, sizeof(err)) == 0, "%s", err);
    freeReplyObject(r);
    redisFree(ctx);
    return m;
}

/* The cluster node listening on the map's node k. */
static int node_of(const fmt_cluster *c, const fm_slotmap *m, size_t k)
{
    const fm_slotmap_node *n = fm_slotmap_node_at(m, k);

    ck_assert_ptr_nonnull(n);
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        if (c->node[i].port == n->addr.port)
            return i;
    ck_abort_msg("the map names port %d, which is no cluster node", n->addr.port);
    return -1;
}

START_TEST(test_fence_counter_shares_its_lock_slot)
{
    static const char *const prefixes[] = {"fm:lock:", "{app}:lock:", "x{", "a}b{", NULL};
    char rkey[FM_RKEY_MAX + 1], fkey[FM_FENCE_KEY_MAX + 1], name[64];
    fm_slotmap *m = map_from(&shared, 0);
    fm_fence *f = fm_fence_create();
    redisContext *ctx[FMT_CLUSTER_NODES] = {0};

    ck_assert_ptr_nonnull(f);
    for (int p = 0; prefixes[p]; p++) {
        for (int k = 0; k < 200; k++) {
            long long slots[2];
            char *both[2] = {rkey, fkey};
            size_t lens[2], fn;
            int owner;
            redisReply *r;

            /* Plain keys, and keys that are a hash tag themselves, the
             * shape a "<prefix>{tag}" counter would collide with. */
            snprintf(name, sizeof(name), k % 2 ? "{%d}" : "job:%d", k);
            lens[0] = fm_key_make(prefixes[p], name, strlen(name), rkey);
            fn = fm_fence_key(f, prefixes[p], rkey, lens[0], fkey);
            ck_assert_uint_gt(fn, 0);
            lens[1] = fn;
            ck_assert_msg(strchr(fkey + strlen(prefixes[p]), '\001') == fkey + strlen(prefixes[p]),
                          "the counter's name after the prefix must start with \\x01");
            owner = node_of(&shared, m, (size_t)fm_slotmap_owner(m, fm_slot(rkey, lens[0])));
            if (ctx[owner] == NULL)
                ctx[owner] = node(&shared, owner);
            redis_keyslots(ctx[owner], both, lens, 2, slots);
            ck_assert_msg(slots[0] == slots[1], "%s: lock slot %lld, fence slot %lld", rkey,
                          slots[0], slots[1]);
            /* The real acquire script, on the slot's master: no CROSSSLOT. */
            r = fmt_redis_cmd(ctx[owner], "EVAL %s 2 %b %b tok 5000", fm_lua_acquire, rkey,
                              lens[0], fkey, fn);
            ck_assert_ptr_nonnull(r);
            ck_assert_msg(r->type == REDIS_REPLY_INTEGER, "acquire %s: %s", rkey,
                          r->type == REDIS_REPLY_ERROR ? r->str : "not a fence");
            freeReplyObject(r);
            freeReplyObject(fmt_redis_cmd(ctx[owner], "DEL %b", rkey, lens[0]));
        }
    }
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        if (ctx[i] != NULL)
            redisFree(ctx[i]);
    fm_fence_free(f);
    fm_slotmap_free(m);
}
END_TEST

START_TEST(test_slotmap_names_the_masters_redis_routes_to)
{
    fm_slotmap *m = map_from(&shared, 0);
    int masters[FMT_CLUSTER_MAX], nmasters = fmt_cluster_masters(&shared, masters);
    redisContext *ctx[FMT_CLUSTER_NODES];

    ck_assert(fm_slotmap_covered(m));
    ck_assert_int_eq(nmasters, 3);
    ck_assert_uint_eq(fm_slotmap_count(m), 3);
    for (size_t k = 0; k < fm_slotmap_count(m); k++) {
        const fm_slotmap_node *n = fm_slotmap_node_at(m, k);
        int i = node_of(&shared, m, k), is_master = 0;

        ck_assert_str_eq(n->addr.host, "127.0.0.1");
        for (int j = 0; j < nmasters; j++)
            is_master |= masters[j] == i;
        ck_assert(is_master);
        ck_assert_uint_eq(n->nreplicas, 1);
    }
    /* Every node's view gives the same owners. */
    for (int i = 1; i < FMT_CLUSTER_NODES; i++) {
        fm_slotmap *other = map_from(&shared, i);

        for (unsigned s = 0; s < FM_SLOTS; s++)
            ck_assert_int_eq(node_of(&shared, other, (size_t)fm_slotmap_owner(other, s)),
                             node_of(&shared, m, (size_t)fm_slotmap_owner(m, s)));
        fm_slotmap_free(other);
    }
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        ctx[i] = node(&shared, i);
    /* The owner takes the key; another master redirects to the owner. */
    for (int k = 0; k < 300; k++) {
        char key[32], moved[64];
        unsigned slot;
        int owner, other;
        redisReply *r;

        snprintf(key, sizeof(key), "route:%d", k);
        slot = fm_slot(key, strlen(key));
        owner = node_of(&shared, m, (size_t)fm_slotmap_owner(m, slot));
        other = masters[0] == owner ? masters[1] : masters[0];
        r = fmt_redis_cmd(ctx[owner], "SET %s %d", key, k);
        ck_assert_msg(r != NULL && r->type == REDIS_REPLY_STATUS, "SET %s at its owner", key);
        freeReplyObject(r);
        r = fmt_redis_cmd(ctx[other], "GET %s", key);
        snprintf(moved, sizeof(moved), "MOVED %u 127.0.0.1:%d", slot, shared.node[owner].port);
        ck_assert_msg(r != NULL && r->type == REDIS_REPLY_ERROR && strcmp(r->str, moved) == 0,
                      "GET %s elsewhere: expected %s", key, moved);
        freeReplyObject(r);
    }
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        redisFree(ctx[i]);
    fm_slotmap_free(m);
}
END_TEST

/* Runs cmd ("MGET" or "DEL") on every group of b, with the group's keys. */
static redisReply **run_groups(const fmt_cluster *c, const fm_slotmap *m, const fm_slotbatch *b,
                               char **keys, const size_t *lens, const char *cmd)
{
    redisReply **replies = calloc(b->ngroups, sizeof(*replies));

    ck_assert_ptr_nonnull(replies);
    for (size_t g = 0; g < b->ngroups; g++) {
        const fm_slotgroup *grp = &b->groups[g];
        const char **argv = calloc(grp->count + 1, sizeof(*argv));
        size_t *argl = calloc(grp->count + 1, sizeof(*argl));
        redisContext *ctx = node(c, node_of(c, m, grp->node));

        ck_assert(argv && argl);
        argv[0] = cmd;
        argl[0] = strlen(cmd);
        for (size_t j = 0; j < grp->count; j++) {
            argv[1 + j] = keys[b->order[grp->first + j]];
            argl[1 + j] = lens[b->order[grp->first + j]];
        }
        replies[g] = redisCommandArgv(ctx, (int)grp->count + 1, argv, argl);
        ck_assert_ptr_nonnull(replies[g]);
        ck_assert_msg(replies[g]->type != REDIS_REPLY_ERROR, "%s of group %zu: %s", cmd, g,
                      replies[g]->str);
        free(argv);
        free(argl);
        redisFree(ctx);
    }
    return replies;
}

static void free_replies(redisReply **replies, size_t n)
{
    for (size_t i = 0; i < n; i++)
        freeReplyObject(replies[i]);
    free(replies);
}

/* Groups are whole: the order is a permutation of the keys, each group's
 * keys hash to its slot in batch order, and a master's groups are adjacent. */
static void check_groups(const fm_slotbatch *b, const fm_slotmap *m, char **keys,
                         const size_t *lens, size_t n)
{
    char *seen = calloc(n, 1);
    char *done = calloc(fm_slotmap_count(m), 1);

    ck_assert(seen && done);
    for (size_t g = 0; g < b->ngroups; g++) {
        const fm_slotgroup *grp = &b->groups[g];

        ck_assert_int_eq(fm_slotmap_owner(m, grp->slot), (long)grp->node);
        if (g > 0 && b->groups[g - 1].node != grp->node) {
            ck_assert_msg(!done[grp->node], "master %zu's groups are not adjacent", grp->node);
            done[b->groups[g - 1].node] = 1;
        }
        for (size_t j = 0; j < grp->count; j++) {
            size_t k = b->order[grp->first + j];

            ck_assert_uint_lt(k, n);
            ck_assert(!seen[k]);
            seen[k] = 1;
            ck_assert_uint_eq(fm_slot(keys[k], lens[k]), grp->slot);
            if (j > 0)
                ck_assert_uint_lt(b->order[grp->first + j - 1], k);
        }
    }
    for (size_t k = 0; k < n; k++)
        ck_assert(seen[k]);
    free(seen);
    free(done);
}

START_TEST(test_batch_is_one_command_per_slot_and_reassembles)
{
    enum { N = 600 };
    fm_slotmap *m = map_from(&shared, 0);
    char **keys = calloc(N, sizeof(*keys));
    size_t *lens = calloc(N, sizeof(*lens)), deleted = 0, present = 0;
    fm_slotbatch b;
    redisReply **replies;

    ck_assert(keys && lens);
    /* Tagged keys share slots; some keys repeat; half of them exist. */
    for (size_t i = 0; i < N; i++) {
        char k[48];

        if (i % 3 == 0)
            snprintf(k, sizeof(k), "fm:exec:{grp%zu}:%zu", i % 7, i);
        else
            snprintf(k, sizeof(k), "fm:exec:job%zu", i % 5 == 1 ? 1 : i);
        lens[i] = strlen(k);
        keys[i] = dup_bytes(k, lens[i]);
    }
    for (size_t i = 0; i < N; i += 2) {
        long owner = fm_slotmap_owner(m, fm_slot(keys[i], lens[i]));
        redisContext *ctx = node(&shared, node_of(&shared, m, (size_t)owner));

        freeReplyObject(fmt_redis_cmd(ctx, "SET %b %b", keys[i], lens[i], keys[i], lens[i]));
        redisFree(ctx);
    }
    ck_assert_int_eq(fm_slotbatch_make(&b, m, (const char *const *)keys, lens, N), 0);
    check_groups(&b, m, keys, lens, N);
    ck_assert_uint_lt(b.ngroups, N);
    replies = run_groups(&shared, m, &b, keys, lens, "MGET");
    for (size_t g = 0; g < b.ngroups; g++) {
        ck_assert_uint_eq(replies[g]->elements, b.groups[g].count);
        for (size_t j = 0; j < b.groups[g].count; j++) {
            size_t k = b.order[b.groups[g].first + j];
            redisReply *v = replies[g]->element[j];
            /* A key that repeats exists when any of its copies was set. */
            int set = k % 2 == 0 || (k % 5 == 1 && k % 3 != 0);

            if (set) {
                ck_assert_int_eq(v->type, REDIS_REPLY_STRING);
                ck_assert_str_eq(v->str, keys[k]);
                present++;
            } else {
                ck_assert_int_eq(v->type, REDIS_REPLY_NIL);
            }
        }
    }
    ck_assert_uint_gt(present, 0);
    free_replies(replies, b.ngroups);
    replies = run_groups(&shared, m, &b, keys, lens, "DEL");
    for (size_t g = 0; g < b.ngroups; g++)
        deleted += (size_t)replies[g]->integer;
    free_replies(replies, b.ngroups);
    ck_assert_uint_gt(deleted, 0);
    replies = run_groups(&shared, m, &b, keys, lens, "MGET");
    for (size_t g = 0; g < b.ngroups; g++)
        for (size_t j = 0; j < replies[g]->elements; j++)
            ck_assert_int_eq(replies[g]->element[j]->type, REDIS_REPLY_NIL);
    free_replies(replies, b.ngroups);
    fm_slotbatch_clear(&b);
    ck_assert_ptr_null(b.order);
    for (size_t i = 0; i < N; i++)
        free(keys[i]);
    free(keys);
    free(lens);
    fm_slotmap_free(m);
}
END_TEST

/* A message on ctx (subscribed), within the connection's 2 s timeout: its
 * payload, malloc'd. */
static char *next_message(redisContext *ctx)
{
    redisReply *r = NULL;
    char *payload;

    ck_assert_int_eq(redisGetReply(ctx, (void **)&r), REDIS_OK);
    ck_assert(r->type == REDIS_REPLY_ARRAY && r->elements == 3);
    ck_assert_str_eq(r->element[0]->str, "message");
    payload = strdup(r->element[2]->str);
    ck_assert_ptr_nonnull(payload);
    freeReplyObject(r);
    return payload;
}

START_TEST(test_script_publish_reaches_subscribers_on_every_node)
{
    redisContext *sub[FMT_CLUSTER_NODES], *ctx;
    fm_slotmap *m = map_from(&shared, 0);
    const char *lock = "fm:lock:publish-test";
    int owner = node_of(&shared, m, (size_t)fm_slotmap_owner(m, fm_slot(lock, strlen(lock))));
    int other = (owner + 1) % FMT_CLUSTER_NODES;
    redisReply *r;

    for (int i = 0; i < FMT_CLUSTER_NODES; i++) {
        sub[i] = node(&shared, i);
        r = fmt_redis_cmd(sub[i], "SUBSCRIBE fm:wake fm:lock:released");
        ck_assert_ptr_nonnull(r);
        freeReplyObject(r);
        r = NULL;
        ck_assert_int_eq(redisGetReply(sub[i], (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    /* signal_many (no keys) on any node, release (a keyed script) on the
     * lock's master: the channel names are the single-Redis ones. */
    ctx = node(&shared, other);
    r = fmt_redis_cmd(ctx, "EVAL %s 0 fm:wake exec-1 exec-2", fm_lua_signal_many);
    ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 2);
    freeReplyObject(r);
    redisFree(ctx);
    ctx = node(&shared, owner);
    freeReplyObject(fmt_redis_cmd(ctx, "SET %s tok", lock));
    r = fmt_redis_cmd(ctx, "EVAL %s 1 %s tok fm:lock:released", fm_lua_release, lock);
    ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    /* Classic PUBLISH counts the subscribers of the node it ran on only. */
    r = fmt_redis_cmd(ctx, "PUBLISH fm:wake exec-3");
    ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    redisFree(ctx);
    /* Every node's subscriber gets all four, once each; the order of
     * messages from different nodes is not defined. */
    for (int i = 0; i < FMT_CLUSTER_NODES; i++) {
        static const char *const expected[] = {"exec-1", "exec-2", "fm:lock:publish-test",
                                               "exec-3"};
        int got[4] = {0};

        for (int k = 0; k < 4; k++) {
            char *payload = next_message(sub[i]);
            int known = 0;

            for (int e = 0; e < 4; e++) {
                if (strcmp(payload, expected[e]) == 0) {
                    ck_assert_msg(!got[e], "node %d: %s twice", i, payload);
                    got[e] = known = 1;
                }
            }
            ck_assert_msg(known, "node %d: unexpected message %s", i, payload);
            free(payload);
        }
        redisFree(sub[i]);
    }
    fm_slotmap_free(m);
}
END_TEST

/* The lowest slot the map gives to cluster node i, and a hash tag that
 * hashes to it. */
static unsigned slot_of_node(const fmt_cluster *c, const fm_slotmap *m, int i, char *tag,
                             size_t tagsize)
{
    for (unsigned s = 0; s < FM_SLOTS; s++) {
        if (node_of(c, m, (size_t)fm_slotmap_owner(m, s)) != i)
            continue;
        for (unsigned t = 0;; t++) {
            snprintf(tag, tagsize, "t%u", t);
            if (fm_slot(tag, strlen(tag)) == s)
                return s;
        }
    }
    ck_abort_msg("node %d serves no slot", i);
    return 0;
}

/* Starts c and picks two of its masters, a and b, and a slot of a with a
 * hash tag for it. Returns the slot. */
static unsigned start_and_pick(fmt_cluster *c, int *a, int *b, char *tag, size_t tagsize)
{
    int masters[FMT_CLUSTER_MAX];
    fm_slotmap *m;
    unsigned slot;

    ck_assert_msg(fmt_cluster_start(c) == 0, "the cluster did not start");
    ck_assert_int_eq(fmt_cluster_masters(c, masters), 3);
    *a = masters[0];
    *b = masters[1];
    m = map_from(c, *a);
    slot = slot_of_node(c, m, *a, tag, tagsize);
    fm_slotmap_free(m);
    return slot;
}

static redisReply *get(redisContext *ctx, const char *key)
{
    redisReply *r = fmt_redis_cmd(ctx, "GET %s", key);

    ck_assert_ptr_nonnull(r);
    return r;
}

START_TEST(test_half_moved_slot_answers_ask_then_moves)
{
    enum { KEYS = 10, HALF = 5, MORE = 20 };
    fmt_cluster c;
    int a, b, asked = 0;
    char tag[16], key[KEYS][32], ask[64], moved[64];
    redisContext *ca, *cb;
    fm_slotmap *m;
    unsigned slot = start_and_pick(&c, &a, &b, tag, sizeof(tag));
    int64_t t0;

    ca = node(&c, a);
    cb = node(&c, b);
    for (int k = 0; k < KEYS; k++) {
        snprintf(key[k], sizeof(key[k]), "{%s}:%d", tag, k);
        freeReplyObject(fmt_redis_cmd(ca, "SET %s %s", key[k], key[k]));
    }
    ck_assert_int_eq(fmt_cluster_move_begin(&c, slot, b), 0);
    ck_assert_int_eq(fmt_cluster_move_keys(&c, slot, b, HALF), 0);
    /* Half moved: the old owner still serves what it has and sends the
     * rest on with ASK; the new one takes them only after ASKING. */
    snprintf(ask, sizeof(ask), "ASK %u 127.0.0.1:%d", slot, c.node[b].port);
    snprintf(moved, sizeof(moved), "MOVED %u 127.0.0.1:%d", slot, c.node[a].port);
    for (int k = 0; k < KEYS; k++) {
        redisReply *r = get(ca, key[k]), *asking, *there;

        if (r->type == REDIS_REPLY_STRING) {
            ck_assert_str_eq(r->str, key[k]);
            freeReplyObject(r);
            continue;
        }
        ck_assert_msg(r->type == REDIS_REPLY_ERROR && strcmp(r->str, ask) == 0,
                      "GET %s at the old owner: expected %s", key[k], ask);
        freeReplyObject(r);
        asked++;
        r = get(cb, key[k]);
        ck_assert_msg(r->type == REDIS_REPLY_ERROR && strcmp(r->str, moved) == 0,
                      "GET %s at the new owner without ASKING: expected %s", key[k], moved);
        freeReplyObject(r);
        asking = fmt_redis_cmd(cb, "ASKING");
        ck_assert(asking != NULL && asking->type == REDIS_REPLY_STATUS);
        there = get(cb, key[k]);
        ck_assert_int_eq(there->type, REDIS_REPLY_STRING);
        ck_assert_str_eq(there->str, key[k]);
        freeReplyObject(asking);
        freeReplyObject(there);
    }
    ck_assert_int_eq(asked, HALF);
    m = map_from(&c, b);
    ck_assert_int_eq(node_of(&c, m, (size_t)fm_slotmap_owner(m, slot)), a);
    fm_slotmap_free(m);
    ck_assert_int_eq(fmt_cluster_move_keys(&c, slot, b, 0), 0);
    ck_assert_int_eq(fmt_cluster_move_end(&c, slot, b), 0);
    /* Moved: the old owner redirects for good, the new one serves all. */
    snprintf(moved, sizeof(moved), "MOVED %u 127.0.0.1:%d", slot, c.node[b].port);
    for (int k = 0; k < KEYS; k++) {
        redisReply *r = get(ca, key[k]);

        ck_assert_msg(r->type == REDIS_REPLY_ERROR && strcmp(r->str, moved) == 0,
                      "GET %s at the old owner after the move: expected %s", key[k], moved);
        freeReplyObject(r);
        r = get(cb, key[k]);
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        freeReplyObject(r);
    }
    /* A reshard of more slots; every node's map follows. */
    ck_assert_int_eq(fmt_cluster_wait_agreed(&c, slot, slot, b), 0);
    t0 = fmt_now_ms();
    ck_assert_int_eq(fmt_cluster_reshard(&c, a, b, MORE), 0);
    fprintf(stderr, "cluster: %d slots resharded and agreed on in %lld ms\n", MORE,
            (long long)(fmt_now_ms() - t0));
    for (int i = 0; i < FMT_CLUSTER_NODES; i++) {
        m = map_from(&c, i);
        ck_assert(fm_slotmap_covered(m));
        ck_assert_int_eq(node_of(&c, m, (size_t)fm_slotmap_owner(m, slot)), b);
        fm_slotmap_free(m);
    }
    redisFree(ca);
    redisFree(cb);
    fmt_cluster_stop(&c);
}
END_TEST

/* The acquire script on node i: its reply (caller frees). */
static redisReply *acquire(const fmt_cluster *c, int i, int asking, const char *rkey,
                           const char *fkey)
{
    redisContext *ctx = node(c, i);
    redisReply *r;

    if (asking)
        freeReplyObject(fmt_redis_cmd(ctx, "ASKING"));
    r = fmt_redis_cmd(ctx, "EVAL %s 2 %s %s tok 60000", fm_lua_acquire, rkey, fkey);
    ck_assert_ptr_nonnull(r);
    redisFree(ctx);
    return r;
}

static void expect_error(redisReply *r, const char *prefix, const char *what)
{
    ck_assert_msg(r->type == REDIS_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0,
                  "%s: expected %s..., got %s", what, prefix,
                  r->type == REDIS_REPLY_ERROR ? r->str : "no error");
    freeReplyObject(r);
}

static void expect_fence(redisReply *r, long long fence, const char *what)
{
    ck_assert_msg(r->type == REDIS_REPLY_INTEGER && r->integer == fence,
                  "%s: expected fence %lld, got %s", what, fence,
                  r->type == REDIS_REPLY_ERROR ? r->str : "another reply");
    freeReplyObject(r);
}

START_TEST(test_acquire_in_moving_slot_waits_for_the_move)
{
    fmt_cluster c;
    int a, b;
    char tag[16], rkey[FM_RKEY_MAX + 1], fkey[FM_FENCE_KEY_MAX + 1], ask[64];
    fm_fence *f = fm_fence_create();
    redisContext *ctx;
    unsigned slot = start_and_pick(&c, &a, &b, tag, sizeof(tag));

    ck_assert_ptr_nonnull(f);
    snprintf(rkey, sizeof(rkey), "fm:lock:{%s}job", tag);
    ck_assert_uint_gt(fm_fence_key(f, "fm:lock:", rkey, strlen(rkey), fkey), 0);
    /* Taken and released once: the slot now holds the counter, not the lock. */
    expect_fence(acquire(&c, a, 0, rkey, fkey), 1, "before the move");
    ctx = node(&c, a);
    freeReplyObject(fmt_redis_cmd(ctx, "DEL %s", rkey));
    redisFree(ctx);
    ck_assert_int_eq(fmt_cluster_move_begin(&c, slot, b), 0);
    /* Redis serves a two-key script on a moving slot only when it has both
     * keys: a free lock's acquire gets TRYAGAIN until the move ends. */
    expect_error(acquire(&c, a, 0, rkey, fkey), "TRYAGAIN", "at the source, counter there");
    ck_assert_int_eq(fmt_cluster_move_keys(&c, slot, b, 0), 0);
    snprintf(ask, sizeof(ask), "ASK %u 127.0.0.1:%d", slot, c.node[b].port);
    expect_error(acquire(&c, a, 0, rkey, fkey), ask, "at the source, keys moved");
    expect_error(acquire(&c, b, 1, rkey, fkey), "TRYAGAIN", "at the target after ASKING");
    ck_assert_int_eq(fmt_cluster_move_end(&c, slot, b), 0);
    /* Moved with its counter: the fence goes on from where it was. */
    expect_fence(acquire(&c, b, 0, rkey, fkey), 2, "after the move");
    fm_fence_free(f);
    fmt_cluster_stop(&c);
}
END_TEST

START_TEST(test_killed_master_replica_takes_over)
{
    fmt_cluster c;
    int a, b, p;
    char tag[16], key[32], dirs[FMT_CLUSTER_NODES][256];
    redisContext *ctx;
    redisReply *r;
    fm_slotmap *m;
    unsigned slot = start_and_pick(&c, &a, &b, tag, sizeof(tag));
    int64_t t0;

    snprintf(key, sizeof(key), "{%s}:kept", tag);
    ctx = node(&c, a);
    freeReplyObject(fmt_redis_cmd(ctx, "SET %s v", key));
    /* Replicated before the kill, so the promoted replica has it. */
    r = fmt_redis_cmd(ctx, "WAIT 1 5000");
    ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
    freeReplyObject(r);
    redisFree(ctx);
    t0 = fmt_now_ms();
    p = fmt_cluster_kill_master(&c, a, 30000);
    ck_assert_msg(p >= 0, "no replica took over");
    fprintf(stderr, "cluster: master killed, its replica served its slots after %lld ms\n",
            (long long)(fmt_now_ms() - t0));
    m = map_from(&c, p);
    ck_assert(fm_slotmap_covered(m));
    ck_assert_int_eq(node_of(&c, m, (size_t)fm_slotmap_owner(m, slot)), p);
    for (size_t k = 0; k < fm_slotmap_count(m); k++)
        ck_assert_int_ne(fm_slotmap_node_at(m, k)->addr.port, c.node[a].port);
    fm_slotmap_free(m);
    ctx = node(&c, p);
    r = get(ctx, key);
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, "v");
    freeReplyObject(r);
    redisFree(ctx);
    /* Stopping leaves nothing: directories (nodes.conf included) gone. */
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        snprintf(dirs[i], sizeof(dirs[i]), "%s", c.node[i].redis.dir);
    fmt_cluster_stop(&c);
    for (int i = 0; i < FMT_CLUSTER_NODES; i++)
        ck_assert_msg(access(dirs[i], F_OK) != 0, "%s is still there", dirs[i]);
}
END_TEST

Suite *fm_suite_cluster(void)
{
    Suite *s = suite_create("cluster");
    TCase *tc = fmt_tcase(s, "views", shared_up, shared_down, 30);

    tcase_add_test(tc, test_slot_matches_cluster_keyslot);
    tcase_add_test(tc, test_fence_counter_shares_its_lock_slot);
    tcase_add_test(tc, test_slotmap_names_the_masters_redis_routes_to);
    tcase_add_test(tc, test_batch_is_one_command_per_slot_and_reassembles);
    tcase_add_test(tc, test_script_publish_reaches_subscribers_on_every_node);
    tc = fmt_tcase(s, "faults", NULL, NULL, 60);
    tcase_add_test(tc, test_half_moved_slot_answers_ask_then_moves);
    tcase_add_test(tc, test_acquire_in_moving_slot_waits_for_the_move);
    tcase_add_test(tc, test_killed_master_replica_takes_over);
    return s;
}
