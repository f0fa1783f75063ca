/* test_map.c -- the daemon's keyed hash table (daemon/map.c), on its own:
 * every node findable under its key through growth and shrinking, nodes
 * sharing a key all visited, removal during a walk of one key, draining. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm_tests.h"
#include "map.h"

typedef struct item {
    fm_map_node node;
    int value;
    char key[16];
} item;

static item *items(int n, int distinct)
{
    item *it = calloc((size_t)n, sizeof(*it));

    ck_assert_ptr_nonnull(it);
    for (int i = 0; i < n; i++) {
        snprintf(it[i].key, sizeof(it[i].key), "k%d", i % distinct);
        it[i].value = i;
    }
    return it;
}

static int count_key(const fm_map *m, const char *key)
{
    int n = 0;

    for (fm_map_node *x = fm_map_find(m, key, strlen(key)); x != NULL; x = fm_map_next(x))
        n++;
    return n;
}

START_TEST(test_every_node_is_found_through_growth)
{
    enum { N = 5000 };
    item *it = items(N, N);
    fm_map m;

    fm_map_init(&m);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(fm_map_insert(&m, &it[i].node, it[i].key, strlen(it[i].key)), 0);
    ck_assert_uint_eq(m.count, N);
    for (int i = 0; i < N; i++) {
        fm_map_node *x = fm_map_find(&m, it[i].key, strlen(it[i].key));

        ck_assert_ptr_eq(x, &it[i].node);
        ck_assert_int_eq(fm_map_entry(x, item, node)->value, i);
    }
    ck_assert_ptr_null(fm_map_find(&m, "absent", 6));
    /* Removing most of them, then inserting again, shrinks the table. */
    for (int i = 0; i < N - 10; i++)
        fm_map_remove(&m, &it[i].node);
    ck_assert_int_eq(fm_map_insert(&m, &it[0].node, it[0].key, strlen(it[0].key)), 0);
    ck_assert_uint_lt(m.mask + 1, N / 4);
    for (int i = N - 10; i < N; i++)
        ck_assert_ptr_eq(fm_map_find(&m, it[i].key, strlen(it[i].key)), &it[i].node);
    fm_map_free(&m);
    free(it);
}
END_TEST

START_TEST(test_nodes_of_one_key_are_all_visited_and_removable_on_the_way)
{
    enum { N = 300, KEYS = 7 };
    item *it = items(N, KEYS);
    fm_map_node *x, *next;
    fm_map m;
    int seen = 0;

    fm_map_init(&m);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(fm_map_insert(&m, &it[i].node, it[i].key, strlen(it[i].key)), 0);
    for (int k = 0; k < KEYS; k++) {
        char key[16];

        snprintf(key, sizeof(key), "k%d", k);
        ck_assert_int_eq(count_key(&m, key), N / KEYS + (k < N % KEYS));
    }
    /* A walk of one key that removes each node it visits. */
    for (x = fm_map_find(&m, "k3", 2); x != NULL; x = next) {
        next = fm_map_next(x);
        ck_assert_str_eq(fm_map_entry(x, item, node)->key, "k3");
        fm_map_remove(&m, x);
        seen++;
    }
    ck_assert_int_eq(seen, N / KEYS + (3 < N % KEYS));
    ck_assert_int_eq(count_key(&m, "k3"), 0);
    ck_assert_int_eq(count_key(&m, "k4"), N / KEYS + (4 < N % KEYS));
    fm_map_free(&m);
    free(it);
}
END_TEST

START_TEST(test_a_walk_sees_every_node_and_draining_frees_the_table)
{
    enum { N = 1000 };
    item *it = items(N, N);
    char *seen = calloc(N, 1);
    fm_map_node *x, *next;
    fm_map m;

    fm_map_init(&m);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(fm_map_insert(&m, &it[i].node, it[i].key, strlen(it[i].key)), 0);
    for (x = fm_map_first(&m); x != NULL; x = fm_map_after(&m, x))
        seen[fm_map_entry(x, item, node)->value]++;
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(seen[i], 1);
    for (x = fm_map_first(&m); x != NULL; x = next) {
        next = fm_map_after(&m, x);
        fm_map_remove(&m, x);
    }
    ck_assert_uint_eq(m.count, 0);
    ck_assert_ptr_null(m.buckets);
    ck_assert_ptr_null(fm_map_first(&m));
    free(seen);
    free(it);
}
END_TEST

Suite *fm_suite_map(void)
{
    Suite *s = suite_create("map");
    TCase *tc = tcase_create("map");

    tcase_add_test(tc, test_every_node_is_found_through_growth);
    tcase_add_test(tc, test_nodes_of_one_key_are_all_visited_and_removable_on_the_way);
    tcase_add_test(tc, test_a_walk_sees_every_node_and_draining_frees_the_table);
    suite_add_tcase(s, tc);
    return s;
}
