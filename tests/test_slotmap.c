/* test_slotmap.c -- the slot map (daemon/slotmap.c) on replies built by
 * hand: CLUSTER SLOTS replies of every wrong shape are refused whole with
 * the old map kept, random reply trees never crash it nor leave an
 * inconsistent map, and batches refuse keys of slots nobody serves. The
 * map against a real cluster: test_cluster.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "fm_tests.h"
#include "slotmap.h"

/* Node [host, port, id, metadata] and entry [start, end, master, replica]
 * as Redis 7.0 writes them. */
#define NODE(port) "*4\r\n$9\r\n127.0.0.1\r\n:" #port "\r\n$3\r\nid1\r\n*0\r\n"
#define ENTRY(start, end, mport, rport) \
    "*4\r\n:" #start "\r\n:" #end "\r\n" NODE(mport) NODE(rport)
#define GOOD "*3\r\n" ENTRY(0, 5460, 7000, 7003) ENTRY(5461, 10922, 7001, 7004) \
    ENTRY(10923, 16383, 7002, 7005)

/* A reply tree from RESP text, as hiredis builds it off the wire. (One
 * assertion at the end: each costs a write to the runner, and the random
 * test makes 20000 trees.) */
static redisReply *resp(const char *text, size_t len)
{
    redisReader *rd = redisReaderCreate();
    void *reply = NULL;

    if (rd != NULL) {
        if (redisReaderFeed(rd, text, len) == REDIS_OK)
            redisReaderGetReply(rd, &reply);
        redisReaderFree(rd);
    }
    if (reply == NULL)
        ck_abort_msg("not one whole RESP value: %s", text);
    return reply;
}

static int update_text(fm_slotmap *m, const char *text, size_t len, const char *seed,
                       char *err, size_t errlen)
{
    redisReply *r = resp(text, len);
    int rc = fm_slotmap_update(m, r, seed, err, errlen);

    freeReplyObject(r);
    return rc;
}

static fm_slotmap *good_map(void)
{
    fm_slotmap *m = fm_slotmap_create();
    char err[200] = "";

    ck_assert_ptr_nonnull(m);
    ck_assert_msg(update_text(m, GOOD, strlen(GOOD), NULL, err, sizeof(err)) == 0, "%s", err);
    return m;
}

static int owner_port(const fm_slotmap *m, unsigned slot)
{
    long i = fm_slotmap_owner(m, slot);

    return i < 0 ? -1 : fm_slotmap_node_at(m, (size_t)i)->addr.port;
}

START_TEST(test_slotmap_reads_cluster_slots)
{
    fm_slotmap *m = good_map();
    const fm_slotmap_node *n;

    ck_assert(fm_slotmap_covered(m));
    ck_assert_uint_eq(fm_slotmap_count(m), 3);
    ck_assert_int_eq(owner_port(m, 0), 7000);
    ck_assert_int_eq(owner_port(m, 5460), 7000);
    ck_assert_int_eq(owner_port(m, 5461), 7001);
    ck_assert_int_eq(owner_port(m, 16383), 7002);
    ck_assert_int_eq(fm_slotmap_owner(m, FM_SLOTS), -1);
    n = fm_slotmap_node_at(m, 1);
    ck_assert_str_eq(n->addr.host, "127.0.0.1");
    ck_assert_uint_eq(n->nreplicas, 1);
    ck_assert_int_eq(n->replicas[0].port, 7004);
    ck_assert_ptr_null(fm_slotmap_node_at(m, 3));
    fm_slotmap_free(m);
}
END_TEST

START_TEST(test_slotmap_takes_partial_and_split_maps)
{
    /* A master with two ranges is one node; uncovered slots have none. */
    static const char split[] = "*2\r\n" ENTRY(0, 9, 7000, 7003) ENTRY(20, 29, 7000, 7003);
    /* A nil endpoint means "the host you asked" (unknown-endpoint). */
    static const char nil_host[] = "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$-1\r\n:7000\r\n";
    static const char empty_host[] = "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$0\r\n\r\n:7000\r\n";
    static const char odd_replicas[] = "*1\r\n*6\r\n:0\r\n:16383\r\n"
                                       "*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"
                                       "*2\r\n$1\r\n?\r\n:7001\r\n"
                                       "*2\r\n$9\r\n127.0.0.1\r\n:0\r\n"
                                       "*2\r\n$9\r\n127.0.0.1\r\n:7003\r\n";
    fm_slotmap *m = fm_slotmap_create();
    char err[200] = "";

    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(update_text(m, "*0\r\n", 4, NULL, err, sizeof(err)), 0);
    ck_assert_uint_eq(fm_slotmap_count(m), 0);
    ck_assert(!fm_slotmap_covered(m));
    ck_assert_int_eq(update_text(m, split, sizeof(split) - 1, NULL, err, sizeof(err)), 0);
    ck_assert_uint_eq(fm_slotmap_count(m), 1);
    ck_assert_int_eq(owner_port(m, 25), 7000);
    ck_assert_int_eq(fm_slotmap_owner(m, 15), -1);
    ck_assert(!fm_slotmap_covered(m));
    ck_assert_int_eq(update_text(m, nil_host, sizeof(nil_host) - 1, "10.1.2.3", err,
                                 sizeof(err)), 0);
    ck_assert(fm_slotmap_covered(m));
    ck_assert_str_eq(fm_slotmap_node_at(m, 0)->addr.host, "10.1.2.3");
    ck_assert_int_eq(update_text(m, nil_host, sizeof(nil_host) - 1, NULL, err, sizeof(err)),
                     FM_SLOTMAP_MALFORMED);
    /* So is an empty one: a node that never met another knows no address
     * of its own (a cluster of one, its slots just assigned). */
    ck_assert_int_eq(update_text(m, empty_host, sizeof(empty_host) - 1, "10.1.2.4", err,
                                 sizeof(err)), 0);
    ck_assert_str_eq(fm_slotmap_node_at(m, 0)->addr.host, "10.1.2.4");
    /* A replica no connection can be made to is left out, the map taken. */
    ck_assert_int_eq(update_text(m, odd_replicas, sizeof(odd_replicas) - 1, NULL, err,
                                 sizeof(err)), 0);
    ck_assert_uint_eq(fm_slotmap_node_at(m, 0)->nreplicas, 1);
    ck_assert_int_eq(fm_slotmap_node_at(m, 0)->replicas[0].port, 7003);
    fm_slotmap_free(m);
}
END_TEST

/* host: a whole RESP value, its \r\n included. */
#define N3(host, port) "*3\r\n" host ":" #port "\r\n$2\r\nid\r\n"
#define ONE(start, end, node) "*1\r\n*3\r\n:" #start "\r\n:" #end "\r\n" node
#define HOST "$9\r\n127.0.0.1\r\n"

static const struct {
    const char *name;
    const char *text;
    size_t len;     /* 0: strlen (the text holds no NUL) */
} bad[] = {
    {"status", "+OK\r\n", 0},
    {"error", "-ERR This instance has cluster support disabled\r\n", 0},
    {"integer", ":3\r\n", 0},
    {"nil", "$-1\r\n", 0},
    {"nil array", "*-1\r\n", 0},
    {"entry not an array", "*1\r\n:5\r\n", 0},
    {"entry nil", "*1\r\n*-1\r\n", 0},
    {"entry without master", "*1\r\n*2\r\n:0\r\n:1\r\n", 0},
    {"start a string", "*1\r\n*3\r\n$1\r\n0\r\n:1\r\n" N3(HOST, 7000), 0},
    {"end nil", "*1\r\n*3\r\n:0\r\n$-1\r\n" N3(HOST, 7000), 0},
    {"start after end", ONE(10, 9, N3(HOST, 7000)), 0},
    {"negative start", ONE(-1, 9, N3(HOST, 7000)), 0},
    {"end past the last slot", ONE(0, 16384, N3(HOST, 7000)), 0},
    {"huge end", ONE(0, 9223372036854775807, N3(HOST, 7000)), 0},
    {"master not an array", ONE(0, 1, "$9\r\n127.0.0.1\r\n"), 0},
    {"master without port", ONE(0, 1, "*1\r\n" HOST), 0},
    {"empty host", ONE(0, 1, N3("$0\r\n\r\n", 7000)), 0},
    {"unknown host ?", ONE(0, 1, N3("$1\r\n?\r\n", 7000)), 0},
    {"host an integer", ONE(0, 1, N3(":1\r\n", 7000)), 0},
    {"host with NUL", ONE(0, 1, "*2\r\n$3\r\na\0b\r\n:7000\r\n"),
     sizeof(ONE(0, 1, "*2\r\n$3\r\na\0b\r\n:7000\r\n")) - 1},
    {"port zero", ONE(0, 1, N3(HOST, 0)), 0},
    {"port too big", ONE(0, 1, N3(HOST, 65536)), 0},
    {"port negative", ONE(0, 1, N3(HOST, -7000)), 0},
    {"port a string", ONE(0, 1, "*2\r\n" HOST "$4\r\n7000\r\n"), 0},
    {"replica not an array", "*1\r\n*4\r\n:0\r\n:1\r\n" N3(HOST, 7000) ":1\r\n", 0},
    {"slot listed twice", "*2\r\n" ENTRY(0, 10, 7000, 7003) ENTRY(10, 20, 7001, 7004), 0},
    {"range listed twice", "*2\r\n" ENTRY(0, 10, 7000, 7003) ENTRY(0, 10, 7000, 7003), 0},
    {"good then bad", "*2\r\n" ENTRY(0, 10, 7000, 7003) "*1\r\n:1\r\n", 0},
};

START_TEST(test_slotmap_refuses_malformed_replies_whole)
{
    fm_slotmap *m = good_map();
    char host300[400], err[200];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);

        err[0] = '\0';
        ck_assert_msg(update_text(m, bad[i].text, len, NULL, err, sizeof(err))
                      == FM_SLOTMAP_MALFORMED, "%s: accepted", bad[i].name);
        ck_assert_msg(strncmp(err, "CLUSTER SLOTS: ", 15) == 0, "%s: message \"%s\"",
                      bad[i].name, err);
        /* The old map stands. */
        ck_assert(fm_slotmap_covered(m));
        ck_assert_uint_eq(fm_slotmap_count(m), 3);
        ck_assert_int_eq(owner_port(m, 0), 7000);
        ck_assert_int_eq(owner_port(m, 16383), 7002);
    }
    /* A host longer than any name. */
    snprintf(host300, sizeof(host300),
             "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$300\r\n%0300d\r\n:7000\r\n", 0);
    ck_assert_int_eq(update_text(m, host300, strlen(host300), NULL, err, sizeof(err)),
                     FM_SLOTMAP_MALFORMED);
    ck_assert_int_eq(fm_slotmap_update(m, NULL, NULL, err, sizeof(err)), FM_SLOTMAP_MALFORMED);
    ck_assert_int_eq(owner_port(m, 0), 7000);
    fm_slotmap_free(m);
}
END_TEST

/* Random RESP: values of every type, arrays shaped like CLUSTER SLOTS
 * more often than not, so that most of the parser is reached. */
static void gen(char **p, char *end, int depth, int shaped, unsigned *seed);

static void put(char **p, char *end, const char *s, size_t n)
{
    if ((size_t)(end - *p) > n) {
        memcpy(*p, s, n);
        *p += n;
    }
}

static void gen_scalar(char **p, char *end, unsigned *seed)
{
    static const char *const ints[] = {"-1", "0", "1", "5460", "16383", "16384", "7000",
                                       "65535", "65536", "-9223372036854775807",
                                       "9223372036854775807"};
#define S(text) {text, sizeof(text) - 1}
    static const struct {
        const char *text;
        size_t len;
    } strs[] = {S("$0\r\n\r\n"), S("$1\r\n?\r\n"), S("$9\r\n127.0.0.1\r\n"), S("$3\r\na\0b\r\n"),
                S("$4\r\n7000\r\n"), S("$-1\r\n"), S("+OK\r\n"), S("-MOVED 1 h:1\r\n")};
#undef S
    char buf[64];

    if (rand_r(seed) % 2) {
        unsigned i = (unsigned)rand_r(seed) % (sizeof(ints) / sizeof(ints[0]));
        int n = snprintf(buf, sizeof(buf), ":%s\r\n", ints[i]);

        put(p, end, buf, (size_t)n);
    } else {
        unsigned i = (unsigned)rand_r(seed) % (sizeof(strs) / sizeof(strs[0]));

        put(p, end, strs[i].text, strs[i].len);
    }
}

static void gen_array(char **p, char *end, int depth, int count, int shaped, unsigned *seed)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "*%d\r\n", count);

    put(p, end, buf, (size_t)n);
    for (int i = 0; i < count; i++)
        gen(p, end, depth + 1, shaped && rand_r(seed) % 8 != 0, seed);
}

static void gen(char **p, char *end, int depth, int shaped, unsigned *seed)
{
    char buf[32];
    int n;

    if (shaped && depth == 1) {         /* an entry: start, end, nodes */
        int start = (int)(rand_r(seed) % FM_SLOTS), count = 3 + (int)(rand_r(seed) % 3);

        n = snprintf(buf, sizeof(buf), "*%d\r\n:%d\r\n:%d\r\n", count, start,
                     start + (int)(rand_r(seed) % 64));
        put(p, end, buf, (size_t)n);
        for (int i = 2; i < count; i++)
            gen(p, end, 2, rand_r(seed) % 8 != 0, seed);
    } else if (shaped && depth == 2) {  /* a node: host, port, id */
        n = snprintf(buf, sizeof(buf), ":%u\r\n", 7000 + rand_r(seed) % 4);
        put(p, end, "*3\r\n", 4);
        if (rand_r(seed) % 6 == 0)
            gen_scalar(p, end, seed);
        else
            put(p, end, "$9\r\n127.0.0.1\r\n", 15);
        if (rand_r(seed) % 6 == 0)
            gen_scalar(p, end, seed);
        else
            put(p, end, buf, (size_t)n);
        put(p, end, "$2\r\nid\r\n", 8);
    } else if (depth < 4 && rand_r(seed) % 3 != 0) {
        gen_array(p, end, depth, (int)(rand_r(seed) % 5) - (rand_r(seed) % 16 == 0), shaped, seed);
    } else {
        gen_scalar(p, end, seed);
    }
}

/* Whether a map that was taken holds together. Plain checks: a Check
 * assertion costs a write to the runner, too slow for 16384 slots a round. */
static int consistent(const fm_slotmap *m)
{
    for (unsigned s = 0; s < FM_SLOTS; s++) {
        long i = fm_slotmap_owner(m, s);

        if (i < -1 || i >= (long)fm_slotmap_count(m))
            return 0;
    }
    for (size_t i = 0; i < fm_slotmap_count(m); i++) {
        const fm_slotmap_node *n = fm_slotmap_node_at(m, i);

        if (strlen(n->addr.host) == 0 || strcmp(n->addr.host, "?") == 0 || n->addr.port < 1
            || n->addr.port > 65535)
            return 0;
        for (size_t r = 0; r < n->nreplicas; r++)
            if (n->replicas[r].port < 1 || n->replicas[r].port > 65535)
                return 0;
    }
    return 1;
}

START_TEST(test_slotmap_survives_random_replies)
{
    enum { ROUNDS = 20000 };
    static char text[1 << 16];
    fm_slotmap *m = fm_slotmap_create();
    unsigned seed = 777;
    int taken = 0, refused = 0;
    char err[200];

    ck_assert_ptr_nonnull(m);
    for (int round = 0; round < ROUNDS; round++) {
        char *p = text;
        int rc;

        gen_array(&p, text + sizeof(text), 0, (int)(rand_r(&seed) % 6), rand_r(&seed) % 4 != 0,
                  &seed);
        rc = update_text(m, text, (size_t)(p - text), rand_r(&seed) % 2 ? "seed" : NULL, err,
                         sizeof(err));
        if (rc != 0 && rc != FM_SLOTMAP_MALFORMED)
            ck_abort_msg("round %d: %d", round, rc);
        /* A refused reply leaves the map as it was (checked when taken). */
        if (rc == 0 && !consistent(m))
            ck_abort_msg("round %d: an inconsistent map was taken", round);
        taken += rc == 0;
        refused += rc != 0;
    }
    /* Both ways were taken often enough to mean something. */
    ck_assert_int_gt(taken, ROUNDS / 20);
    ck_assert_int_gt(refused, ROUNDS / 20);
    fm_slotmap_free(m);
}
END_TEST

/* A key whose slot is in [lo, hi]. */
static void key_in(unsigned lo, unsigned hi, char *out, size_t size)
{
    for (unsigned i = 0;; i++) {
        snprintf(out, size, "k%u", i);
        if (fm_slot(out, strlen(out)) >= lo && fm_slot(out, strlen(out)) <= hi)
            return;
    }
}

START_TEST(test_batch_refuses_keys_nobody_serves)
{
    static const char half[] = "*1\r\n" ENTRY(0, 8191, 7000, 7003);
    fm_slotmap *m = fm_slotmap_create();
    char served[16], unserved[16], err[200];
    const char *keys[3] = {served, unserved, served};
    size_t lens[3];
    fm_slotbatch b;

    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(update_text(m, half, sizeof(half) - 1, NULL, err, sizeof(err)), 0);
    key_in(0, 8191, served, sizeof(served));
    key_in(8192, FM_SLOTS - 1, unserved, sizeof(unserved));
    lens[0] = lens[2] = strlen(served);
    lens[1] = strlen(unserved);
    ck_assert_int_eq(fm_slotbatch_make(&b, m, keys, lens, 3), FM_SLOTMAP_UNCOVERED);
    ck_assert_ptr_null(b.order);
    ck_assert_uint_eq(b.ngroups, 0);
    /* Without it: one group, the key twice, in batch order. */
    keys[1] = served;
    lens[1] = lens[0];
    ck_assert_int_eq(fm_slotbatch_make(&b, m, keys, lens, 3), 0);
    ck_assert_uint_eq(b.ngroups, 1);
    ck_assert_uint_eq(b.groups[0].count, 3);
    ck_assert_uint_eq(b.groups[0].slot, fm_slot(served, lens[0]));
    for (size_t i = 0; i < 3; i++)
        ck_assert_uint_eq(b.order[i], i);
    fm_slotbatch_clear(&b);
    ck_assert_int_eq(fm_slotbatch_make(&b, m, keys, lens, 0), 0);
    ck_assert_uint_eq(b.ngroups, 0);
    fm_slotbatch_clear(&b);
    fm_slotmap_free(m);
}
END_TEST

Suite *fm_suite_slotmap(void)
{
    Suite *s = suite_create("slotmap");
    TCase *tc = tcase_create("replies");

    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_slotmap_reads_cluster_slots);
    tcase_add_test(tc, test_slotmap_takes_partial_and_split_maps);
    tcase_add_test(tc, test_slotmap_refuses_malformed_replies_whole);
    tcase_add_test(tc, test_slotmap_survives_random_replies);
    tcase_add_test(tc, test_batch_refuses_keys_nobody_serves);
    suite_add_tcase(s, tc);
    return s;
}
