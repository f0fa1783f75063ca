/* link_batch.c -- the commands services submit as such (link_cmd.h), and
 * in a Redis Cluster the batches among them: MGET or DEL of keys in
 * several slots, which Redis would refuse whole (CROSSSLOT), sent as one
 * command per slot, each routed to its master, and answered as one.
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
    fm_cmd *batch;
    fm_cmd *cmd;                /* while out */
} part;

struct fm_batch {
    int mget;                   /* values by key; else DEL's count */
    size_t nkeys;
    fm_slotbatch cut;
    part *parts;
    size_t pending;             /* parts not back yet */
    int transient;              /* a part met "not now" */
    int down;                   /* a part met the link's loss */
    char *error;                /* the first error reply, copied */
    size_t errlen;
    long long count;
    redisReply *vals;           /* MGET: a copy per key, nil until it came */
    redisReply **elems;
};

/* ---- the answer ---- */

static void batch_free(fm_cmd *b)
{
    struct fm_batch *s = b->batch;

    for (size_t i = 0; s->vals != NULL && i < s->nkeys; i++)
        free(s->vals[i].str);
    free(s->vals);
    free(s->elems);
    free(s->error);
    free(s->parts);
    fm_slotbatch_clear(&s->cut);
    free(s);
    fm_link_cmd_discard(b);
}

static void note_error(struct fm_batch *s, const char *str, size_t len)
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
static void take_values(struct fm_batch *s, const fm_slotgroup *g, const redisReply *r)
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

static void answer(fm_cmd *b)
{
    struct fm_batch *s = b->batch;
    redisReply r = {0};

    if (s->down) {
        b->cb(FM_LINK_DOWN, NULL, b->arg);
        batch_free(b);
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
    b->cb(FM_LINK_OK, &r, b->arg);
    batch_free(b);
}

static void on_part(fm_link_status status, redisReply *reply, void *arg)
{
    part *p = arg;
    fm_cmd *b = p->batch;
    struct fm_batch *s = b->batch;
    const fm_slotgroup *g = &s->cut.groups[p - s->parts];

    s->transient |= p->cmd->transient;
    p->cmd = NULL;
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
    if (--s->pending == 0)
        answer(b);
}

/* ---- the parts ---- */

/* The parts' commands: argv[0] and the keys of each group. -1 when out of
 * memory (none was made then). */
static int make_parts(fm_cmd *b, fm_flow *flow, const char **argv, const size_t *lens)
{
    struct fm_batch *s = b->batch;
    const char **pargv = malloc((s->nkeys + 1) * sizeof(*pargv));
    size_t *plens = malloc((s->nkeys + 1) * sizeof(*plens));
    int rc = pargv != NULL && plens != NULL ? 0 : -1;

    for (size_t i = 0; rc == 0 && i < s->cut.ngroups; i++) {
        const fm_slotgroup *g = &s->cut.groups[i];

        pargv[0] = argv[0];
        plens[0] = lens[0];
        for (size_t j = 0; j < g->count; j++) {
            pargv[j + 1] = argv[s->cut.order[g->first + j] + 1];
            plens[j + 1] = lens[s->cut.order[g->first + j] + 1];
        }
        s->parts[i].batch = b;
        s->parts[i].cmd = fm_link_cmd_create(b->link, flow, s->mget ? g->count : 0, NULL, 0,
                                             (int)g->count + 1, pargv, plens, on_part,
                                             &s->parts[i]);
        if (s->parts[i].cmd == NULL)
            rc = -1;
    }
    free(pargv);
    free(plens);
    for (size_t i = 0; rc != 0 && i < s->cut.ngroups; i++)
        if (s->parts[i].cmd != NULL)
            fm_link_cmd_discard(s->parts[i].cmd);
    return rc;
}

static fm_cmd *batch_submit(fm_link *link, fm_flow *flow, int argc, const char **argv,
                            const size_t *lens, fm_link_cb *cb, void *arg)
{
    fm_cmd *b = fm_link_cmd_create(link, flow, 0, NULL, 0, 1, argv, lens, cb, arg);
    struct fm_batch *s = calloc(1, sizeof(*s));

    if (b == NULL || s == NULL) {
        free(s);
        if (b != NULL)
            fm_link_cmd_discard(b);
        return NULL;
    }
    b->batch = s;
    s->nkeys = (size_t)argc - 1;
    s->mget = lens[0] == 4 && strncasecmp(argv[0], "MGET", 4) == 0;
    if (fm_slotbatch_make(&s->cut, NULL, argv + 1, lens + 1, s->nkeys) != 0 ||
        (s->parts = calloc(s->cut.ngroups, sizeof(*s->parts))) == NULL ||
        (s->mget && ((s->vals = calloc(s->nkeys, sizeof(*s->vals))) == NULL ||
                     (s->elems = calloc(s->nkeys, sizeof(*s->elems))) == NULL)) ||
        make_parts(b, flow, argv, lens) != 0) {
        batch_free(b);
        return NULL;
    }
    for (size_t i = 0; s->mget && i < s->nkeys; i++) {
        s->vals[i].type = REDIS_REPLY_NIL;
        s->elems[i] = &s->vals[i];
    }
    /* Every part is counted before any is sent: none answers from within
     * a submit, but a closing link drops each at once. */
    s->pending = s->cut.ngroups;
    for (size_t i = 0; i < s->cut.ngroups; i++)
        if (fm_link_cmd_submit(link, s->parts[i].cmd) == NULL) {
            s->parts[i].cmd = NULL;
            s->pending--;
        }
    if (s->pending == 0) {
        batch_free(b);
        return NULL;
    }
    return b;
}

/* A batch whose keys are in more than one slot, in a Cluster. */
static int spans_slots(const fm_link *link, int argc, const char **argv, const size_t *lens)
{
    unsigned slot;

    if (link->cluster == NULL || argc < 3 ||
        !((lens[0] == 4 && strncasecmp(argv[0], "MGET", 4) == 0) ||
          (lens[0] == 3 && strncasecmp(argv[0], "DEL", 3) == 0)))
        return 0;
    slot = fm_slot(argv[1], lens[1]);
    for (int i = 2; i < argc; i++)
        if (fm_slot(argv[i], lens[i]) != slot)
            return 1;
    return 0;
}

/* ---- what services call ---- */

fm_cmd *fm_link_command(fm_link *link, fm_flow *flow, size_t reads, int argc,
                        const char **argv, const size_t *lens, fm_link_cb *cb, void *arg)
{
    if (spans_slots(link, argc, argv, lens))
        return batch_submit(link, flow, argc, argv, lens, cb, arg);
    return fm_link_cmd_submit(link, fm_link_cmd_create(link, flow, reads, NULL, 0, argc, argv,
                                                       lens, cb, arg));
}

int fm_link_cancel(fm_cmd *cmd)
{
    struct fm_batch *s = cmd->batch;

    if (s == NULL)
        return fm_link_cmd_cancel(cmd);
    for (size_t i = 0; i < s->cut.ngroups; i++)
        if (s->parts[i].cmd != NULL && fm_link_cmd_cancel(s->parts[i].cmd)) {
            s->parts[i].cmd = NULL;
            s->pending--;
            /* What comes back late must not pass for a whole answer. */
            s->down = 1;
        }
    if (s->pending == 0) {
        batch_free(cmd);
        return 1;
    }
    return 0;
}

void fm_link_overdue(fm_cmd *cmd)
{
    fm_cluster *c = cmd->link->cluster;

    if (c == NULL)
        return;
    if (cmd->batch == NULL && cmd->state == CMD_SENT)
        fm_cluster_suspect(c, cmd->ctx);
    fm_cluster_refresh(c);
}

int fm_cmd_transient(const fm_cmd *cmd)
{
    const struct fm_batch *s = cmd->batch;

    if (s == NULL)
        return cmd->transient;
    if (s->transient)
        return 1;
    for (size_t i = 0; i < s->cut.ngroups; i++)
        if (s->parts[i].cmd != NULL && s->parts[i].cmd->transient)
            return 1;
    return 0;
}
