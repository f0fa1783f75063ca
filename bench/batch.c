/* batch.c -- the executions a get_many reads, and checking what came back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void batch_id(char *out, size_t cap, const char *prefix, size_t i)
{
    snprintf(out, cap, "%s%05zu", prefix, i);
}

void bench_batch_free(bench_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->ids != NULL)
            free((char *)b->ids[i]);
        if (b->json != NULL)
            free(b->json[i]);
    }
    free(b->ids);
    free(b->json);
    free(b->len);
    memset(b, 0, sizeof(*b));
}

int bench_batch_init(bench_batch *b, const char *prefix, size_t n, char *err, size_t errlen)
{
    char id[BENCH_KEY_MAX], json[BENCH_JSON_MAX];

    b->ids = calloc(n, sizeof(*b->ids));
    b->json = calloc(n, sizeof(*b->json));
    b->len = calloc(n, sizeof(*b->len));
    b->n = n;
    if (b->ids == NULL || b->json == NULL || b->len == NULL)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        batch_id(id, sizeof(id), prefix, i);
        b->len[i] = bench_execution_json(json, sizeof(json), id, NULL);
        b->ids[i] = strdup(id);
        b->json[i] = malloc(b->len[i] + 1);
        if (b->ids[i] == NULL || b->json[i] == NULL)
            goto oom;
        memcpy(b->json[i], json, b->len[i] + 1);
    }
    return 0;
oom:
    bench_batch_free(b);
    return bench_fail(err, errlen, "out of memory for %zu executions", n);
}

/* Index of id in b (ids are <prefix><number>), or b->n. */
static size_t find(const bench_batch *b, const char *id)
{
    size_t plen = strcspn(b->ids[0], "0123456789"), i;
    char *end;

    if (strncmp(id, b->ids[0], plen) != 0)
        return b->n;
    i = strtoul(id + plen, &end, 10);
    return *end == '\0' && i < b->n && strcmp(b->ids[i], id) == 0 ? i : b->n;
}

int bench_batch_check(const bench_batch *b, const bench_hit *hits, size_t count, char *err,
                      size_t errlen)
{
    char *seen;
    int rc = 0;

    if (count != b->n)
        return bench_fail(err, errlen, "get_many: %zu of %zu executions", count, b->n);
    seen = calloc(b->n ? b->n : 1, 1);
    if (seen == NULL)
        return bench_fail(err, errlen, "out of memory");
    for (size_t k = 0; k < count && rc == 0; k++) {
        size_t i = find(b, hits[k].id);

        if (i == b->n || seen[i])
            rc = bench_fail(err, errlen, "get_many: unexpected or repeated id %s", hits[k].id);
        else if (hits[k].len != b->len[i] || memcmp(hits[k].json, b->json[i], b->len[i]) != 0)
            rc = bench_fail(err, errlen, "get_many: execution %s is not what was stored",
                            hits[k].id);
        else
            seen[i] = 1;
    }
    free(seen);
    return rc;
}
