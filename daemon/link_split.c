/* link_split.c -- a batch command in a Redis Cluster: MGET or DEL of keys
 * in several slots, which Redis would refuse whole (CROSSSLOT), sent as
 * one command per slot, each routed to its master, and answered as one.
 *
 * The caller holds one command, the batch, and gets one callback, as for
 * any command: the values of an MGET in the order of its keys, or the sum
 * of the DELs' counts. The answer is whole or none: should a part fail (an
 * error reply that no retry cured, or the link lost under it), the batch
 * fails with that, once every part is back. A part never answers for
 * another: an MGET's missing values are never passed off as misses.
 *
 * Parts are ordinary commands of the caller's flow, so fair queuing, the
 * retries of "not now", MOVED and ASK apply to each on its own. Their
 * values are copied as they come (hiredis frees a reply after its
 * callback), and the copies make up the one reply. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "link_int.h"

typedef struct part {
    struct fm_split *split;
    fm_cmd *cmd;                /* while out */
} part;

struct fm_split {
    fm_cmd *batch;              /* what the caller holds */
    int mget;                   /* values by key; else DEL's count */
    size_t nkeys;
    fm_slotbatch cut;
    part *parts;
    size_t nparts;
    size_t pending;             /* parts not back yet */
    int transient;              /* a part met "not now" */
    int down;                   /* a part met the link's loss */
    char *error;                /* the first error reply, copied */
    size_t errlen;
    long long count;
    redisReply *vals;           /* MGET: a copy per key, nil until it came */
    redisReply **elems;
};

static void split_free(struct fm_split *s)
{
    for (size_t i = 0; s->vals != NULL && i < s->nkeys; i++)
        free(s->vals[i].str);
    free(s->vals);
    free(s->elems);
    free(s->error);
    free(s->parts);
    fm_slotbatch_clear(&s->cut);
    fm_link_cmd_discard(s->batch);
    free(s);
}

static void note_error(struct fm_split *s, const char *str, size_t len)
{
    if (s->error != NULL || s->down)
        return;
    s->error = malloc(len + 1);
    if (s->error == NULL) {
        s->down = 1;
        return;
    }
    memcpy(s->error, str, len);
    s->error[len] = '\0';
    s->errlen = len;
}

/* Takes what an MGET part brought: element j is the value of the key at
 * order[first + j]. */
static void take_values(struct fm_split *s, const fm_slotgroup *g, const redisReply *r)
{
    for (size_t j = 0; j < g->count; j++) {
        const redisReply *e = r->element[j];
        redisReply *v = &s->vals[s->cut.order[g->first + j]];

        if (e->type != REDIS_REPLY_STRING)
            continue;
        v->str = malloc(e->len + 1);
        if (v->str == NULL) {
            note_error(s, "out of memory", 13);
            return;
        }
        memcpy(v->str, e->str, e->len);
        v->str[e->len] = '\0';
        v->len = e->len;
        v->type = REDIS_REPLY_STRING;
    }
}

static void answer(struct fm_split *s)
{
    fm_cmd *batch = s->batch;
    redisReply r = {0};

    if (s->down) {
        batch->cb(FM_LINK_DOWN, NULL, batch->arg);
        split_free(s);
        return;
    }
    if (s->error != NULL) {
        r.type = REDIS_REPLY_ERROR;
        r.str = s->error;
        r.len = s->errlen;
    } else if (s->mget) {
        r.type = REDIS_REPLY_ARRAY;
        r.elements = s->nkeys;
        r.element = s->elems;
    } else {
        r.type = REDIS_REPLY_INTEGER;
        r.integer = s->count;
    }
    batch->cb(FM_LINK_OK, &r, batch->arg);
    split_free(s);
}

static void on_part(fm_link_status status, redisReply *reply, void *arg)
{
    part *p = arg;
    struct fm_split *s = p->split;
    const fm_slotgroup *g = &s->cut.groups[p - s->parts];

    s->transient |= p->cmd->transient;
    p->cmd = NULL;
    s->pending--;
    if (status != FM_LINK_OK)
        s->down = 1;
    else if (reply->type == REDIS_REPLY_ERROR)
        note_error(s, reply->str, reply->len);
    else if (s->mget && reply->type == REDIS_REPLY_ARRAY && reply->elements == g->count)
        take_values(s, g, reply);
    else if (!s->mget && reply->type == REDIS_REPLY_INTEGER)
        s->count += reply->integer;
    else
        note_error(s, "ERR unexpected reply to a part of a batch", 41);
    if (s->pending == 0)
        answer(s);
}

/* The parts' commands: argv[0] and the keys of each group. NULL when out
 * of memory (none is sent then). */
static int make_parts(struct fm_split *s, fm_link *link, fm_flow *flow, const char **argv,
                      const size_t *lens)
{
    const char **pargv = malloc((s->nkeys + 1) * sizeof(*pargv));
    size_t *plens = malloc((s->nkeys + 1) * sizeof(*plens));
    int rc = 0;

    if (pargv == NULL || plens == NULL)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < s->nparts; i++) {
        const fm_slotgroup *g = &s->cut.groups[i];

        pargv[0] = argv[0];
        plens[0] = lens[0];
        for (size_t j = 0; j < g->count; j++) {
            pargv[j + 1] = argv[s->cut.order[g->first + j] + 1];
            plens[j + 1] = lens[s->cut.order[g->first + j] + 1];
        }
        s->parts[i].split = s;
        s->parts[i].cmd = fm_link_cmd_create(link, flow, s->mget ? g->count : 0, NULL, 0,
                                             (int)g->count + 1, pargv, plens, on_part,
                                             &s->parts[i]);
        if (s->parts[i].cmd == NULL)
            rc = -1;
    }
    free(pargv);
    free(plens);
    if (rc != 0)
        for (size_t i = 0; i < s->nparts; i++)
            if (s->parts[i].cmd != NULL)
                fm_link_cmd_discard(s->parts[i].cmd);
    return rc;
}

fm_cmd *fm_link_split(fm_link *link, fm_flow *flow, size_t reads, int argc,
                      const char **argv, const size_t *lens, fm_link_cb *cb, void *arg)
{
    struct fm_split *s = calloc(1, sizeof(*s));

    (void)reads;
    if (s == NULL)
        return NULL;
    s->nkeys = (size_t)argc - 1;
    s->mget = lens[0] == 4 && strncasecmp(argv[0], "MGET", 4) == 0;
    s->batch = fm_link_cmd_create(link, flow, 0, NULL, 0, 1, argv, lens, cb, arg);
    if (s->batch == NULL) {
        free(s);
        return NULL;
    }
    s->batch->split = s;
    if (fm_slotbatch_make(&s->cut, NULL, argv + 1, lens + 1, s->nkeys) != 0 ||
        (s->parts = calloc(s->cut.ngroups, sizeof(*s->parts))) == NULL ||
        (s->mget && ((s->vals = calloc(s->nkeys, sizeof(*s->vals))) == NULL ||
                     (s->elems = calloc(s->nkeys, sizeof(*s->elems))) == NULL))) {
        split_free(s);
        return NULL;
    }
    for (size_t i = 0; s->mget && i < s->nkeys; i++) {
        s->vals[i].type = REDIS_REPLY_NIL;
        s->elems[i] = &s->vals[i];
    }
    s->nparts = s->cut.ngroups;
    if (make_parts(s, link, flow, argv, lens) != 0) {
        split_free(s);
        return NULL;
    }
    /* Every part is counted before any is sent: none answers from within
     * a submit, but the link may be closing and drop one at once. */
    s->pending = s->nparts;
    for (size_t i = 0; i < s->nparts; i++)
        if (fm_link_cmd_submit(link, s->parts[i].cmd) == NULL) {
            s->parts[i].cmd = NULL;
            s->down = 1;
            s->pending--;
        }
    if (s->pending == 0) {
        split_free(s);
        return NULL;
    }
    return s->batch;
}

int fm_link_split_cancel(fm_cmd *batch)
{
    struct fm_split *s = batch->split;

    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].cmd != NULL && fm_link_cancel(s->parts[i].cmd)) {
            s->parts[i].cmd = NULL;
            s->pending--;
        }
    if (s->pending == 0) {
        split_free(s);
        return 1;
    }
    batch->cancelled = 1;
    return 0;
}

int fm_link_split_transient(const fm_cmd *batch)
{
    const struct fm_split *s = batch->split;

    if (s->transient)
        return 1;
    for (size_t i = 0; i < s->nparts; i++)
        if (s->parts[i].cmd != NULL && s->parts[i].cmd->transient)
            return 1;
    return 0;
}
