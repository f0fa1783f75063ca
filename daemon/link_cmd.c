/* link_cmd.c -- commands on the command connection: submission, fair
 * scheduling by flow, routing, replies, and retries of "not now" answers.
 *
 * A command waits in its flow's queue while the command context is not
 * READY, while earlier commands of its flow wait, while Redis asked to try
 * it again later (LOADING, BUSY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN;
 * READONLY), or while its flow is at its bounds. Flows with waiting
 * commands form a ring, and fm_link_pump serves them in turn, a few
 * commands each.
 *
 * In a Cluster a command goes to the master of its key's slot
 * (link_cluster.c), follows MOVED and ASK, and waits only behind the
 * commands of its own slot: one whose master is not ready is parked off
 * the queue until a master becomes ready or a new map comes (serve()).
 *
 * The bounds. A command's cost is the bytes Redis must read for it plus,
 * for reads, what its keys are estimated to bring back: the largest of the
 * flow's recent per-key sizes, decaying by a quarter with each smaller
 * read. Before its first read a flow knows nothing, and its first read
 * goes out alone in its flow, as if it were as large as a flow may have
 * out: a client that opens with a burst of large reads gets one of them in
 * front of the others, not the burst. That guess does not count against
 * the other flows (every new client makes one), so a host's workers
 * starting at once do not queue behind each other's first reads.
 *
 * Commands cheaper than BULK_MIN are small; a flow may have FLOW_MAX_OUT
 * commands out, of which bulk ones up to FLOW_MAX_BULK bytes, and all flows
 * together LINK_MAX_BULK bytes of bulk ones. The first bulk command the
 * link's bound holds back is reserved the next place: no other bulk
 * command goes before it, and once nothing else of its kind is out it goes,
 * however large, so that none waits for ever. What sits in front of a small request at Redis is
 * therefore at most LINK_MAX_BULK bytes, one more command, and the first
 * reads of clients new since, whatever clients do. Commands written to
 * Redis are owned by hiredis until their reply (or the link's loss) comes back. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "link_int.h"
#include "log.h"

#define TRANSIENT_RETRY_MS 25
#define FLOW_MAX_OUT 64
#define FLOW_MAX_BULK (512 * 1024)
#define LINK_MAX_BULK (2 * 1024 * 1024)
#define BULK_MIN (16 * 1024)
#define READ_EST_START FLOW_MAX_BULK
#define READ_EST_MIN 64
#define QUANTUM 16          /* commands a flow may send per turn of the ring */

static uint64_t next_seq;

/* ---- flows ---- */

static void flow_init(fm_flow *f)
{
    memset(f, 0, sizeof(*f));
    fm_list_init(&f->queue);
    fm_list_init(&f->in_ring);
    fm_list_init(&f->parked);
    fm_list_init(&f->in_parked);
    f->read_est = READ_EST_START;
    f->refs = 1;
}

fm_flow *fm_link_flow_create(void)
{
    fm_flow *f = malloc(sizeof(*f));

    if (f != NULL)
        flow_init(f);
    return f;
}

static void flow_unref(fm_flow *f)
{
    if (--f->refs == 0 && !f->own)
        free(f);
}

void fm_link_flow_release(fm_flow *f)
{
    if (f != NULL)
        flow_unref(f);
}

static fm_cmd *flow_head(const fm_flow *f)
{
    fm_list *n = fm_list_first(&f->queue);

    return n != NULL ? fm_list_entry(n, fm_cmd, in_flow) : NULL;
}

/* Queues cmd in its flow in submission order: commands Redis sent back to
 * wait (a retry) go before the flow's commands never sent, which are all
 * younger. A flow with waiting commands joins the back of the ring. */
static void enqueue(fm_link *link, fm_cmd *cmd, uint64_t retry_at)
{
    fm_flow *f = cmd->flow;
    fm_list *at;

    cmd->state = CMD_QUEUED;
    cmd->retry_at = retry_at;
    /* From the back: a new command belongs there, a retried one near the
     * front of a queue that is short then. */
    for (at = f->queue.prev; at != &f->queue; at = at->prev)
        if (fm_list_entry(at, fm_cmd, in_flow)->seq < cmd->seq)
            break;
    fm_list_insert_before(at->next, &cmd->in_flow);
    link->queued++;
    if (fm_list_empty(&f->in_ring)) {
        fm_list_push_back(&link->ring, &f->in_ring);
        link->ring_len++;
    }
}

static void dequeue(fm_link *link, fm_cmd *cmd)
{
    fm_flow *f = cmd->flow;

    fm_list_remove(&cmd->in_flow);
    link->queued--;
    if (link->reserved == cmd)
        link->reserved = NULL;
    if (fm_list_empty(&f->queue)) {
        fm_list_remove(&f->in_ring);
        link->ring_len--;
    }
}

/* ---- costs ---- */

static size_t estimate(const fm_flow *f, const fm_cmd *cmd)
{
    return cmd->req_bytes + cmd->reads * f->read_est;
}

/* A read of a flow that has read nothing yet: its size is a guess. */
static int guessed(const fm_flow *f, const fm_cmd *cmd)
{
    return cmd->reads > 0 && !f->read_seen;
}

static int may_go(fm_link *link, const fm_flow *f, fm_cmd *cmd)
{
    size_t cost;

    if (f->own)
        return 1;
    if (f->out >= FLOW_MAX_OUT)
        return 0;
    cost = estimate(f, cmd);
    if (cost < BULK_MIN)
        return 1;
    if (f->out_bytes > 0 && f->out_bytes + cost > FLOW_MAX_BULK)
        return 0;
    if (guessed(f, cmd))
        return 1;
    /* The first bulk command the window held back has the next place in
     * it: no other goes before it, or a large one could wait for ever
     * behind smaller ones that fill each gap. */
    if (link->reserved != NULL && link->reserved != cmd)
        return 0;
    if (link->bulk_bytes == 0 || link->bulk_bytes + cost <= LINK_MAX_BULK)
        return 1;
    link->reserved = cmd;
    return 0;
}

static void count_out(fm_link *link, fm_cmd *cmd)
{
    size_t cost = estimate(cmd->flow, cmd);

    cmd->flow->out++;
    cmd->cost = cost >= BULK_MIN ? cost : 0;
    cmd->link_cost = guessed(cmd->flow, cmd) ? 0 : cmd->cost;
    cmd->flow->out_bytes += cmd->cost;
    link->bulk_bytes += cmd->link_cost;
}

static void count_back(fm_link *link, fm_cmd *cmd)
{
    cmd->flow->out--;
    cmd->flow->out_bytes -= cmd->cost;
    link->bulk_bytes -= cmd->link_cost;
    cmd->cost = cmd->link_cost = 0;
}

static size_t reply_bytes(const redisReply *r)
{
    size_t n = 0;

    if (r->type == REDIS_REPLY_STRING)
        return r->len;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++)
            n += r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->len : 0;
    return n;
}

/* What a read brought teaches its flow: up at once, down slowly; the
 * first read replaces the guess outright. */
static void learn(fm_flow *f, const fm_cmd *cmd, const redisReply *r)
{
    size_t per_key, est;

    if (cmd->reads == 0)
        return;
    per_key = reply_bytes(r) / cmd->reads;
    est = f->read_seen ? f->read_est - f->read_est / 4 : 0;
    f->read_seen = 1;
    f->read_est = per_key > est ? per_key : est > READ_EST_MIN ? est : READ_EST_MIN;
}

/* ---- routing ---- */

/* Where cmd goes: the one command context, or in a Cluster its slot's
 * master (an ASK's node once); NULL while no master is known for it. */
static fm_ctx *target(fm_link *link, fm_cmd *cmd)
{
    if (link->cluster == NULL)
        return &link->ctx[CTX_CMD];
    if (cmd->ask != NULL && cmd->ask->retired)
        cmd->ask = NULL;
    if (cmd->ask != NULL)
        return cmd->ask;
    if (cmd->slot < 0)
        return fm_cluster_any(link->cluster);
    return fm_cluster_route(link->cluster, (unsigned)cmd->slot);
}

static int routed_ready(fm_link *link, fm_cmd *cmd)
{
    fm_ctx *ctx = target(link, cmd);

    return ctx != NULL && ctx->state == ST_READY;
}

/* The slot of a command's keys: the commands the services send name
 * their key first, but for those of no key. Scripts name theirs in
 * nkeys, and every script of ours keeps its keys in one slot. */
static int cmd_slot(const fm_cmd *cmd, int nkeys)
{
    static const char *const keyless[] = {"PING", "INFO", "PUBLISH"};
    int first = cmd->script ? 3 : 1;

    if (cmd->script ? nkeys == 0 : cmd->argc < 2)
        return -1;
    for (size_t i = 0; !cmd->script && i < sizeof(keyless) / sizeof(keyless[0]); i++)
        if (cmd->lens[0] == strlen(keyless[i]) &&
            strncasecmp(cmd->argv[0], keyless[i], cmd->lens[0]) == 0)
            return -1;
    return (int)fm_slot(cmd->argv[first], cmd->lens[first]);
}

/* ---- sending ---- */

static void cmd_finish(fm_cmd *cmd, fm_link_status status, redisReply *reply)
{
    fm_flow *f = cmd->flow;

    cmd->cb(status, reply, cmd->arg);
    free(cmd);
    flow_unref(f);
}

static void on_cmd_reply(redisAsyncContext *ac, void *r, void *privdata);

/* A tracked write goes as MULTI, the write, EXISTS of its key, EXEC; only
 * EXEC's reply is the command's. The replies before it are OK and QUEUED,
 * or an error: one that refused the write (READONLY, LOADING, OOM, ...)
 * makes EXEC answer EXECABORT, so the connection keeps, per transaction,
 * whether Redis took its MULTI and the first error it met, for its EXEC
 * (txn_reply). The parts' callbacks hold the connection, not the command:
 * should hiredis take the first parts and not the rest (out of memory),
 * the connection is dropped, since a MULTI left open would take in
 * whatever is sent next, and the parts' replies still come, after the
 * command went elsewhere. */
static void txn_part(fm_ctx *ctx, const redisReply *reply)
{
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && ctx->txn_err[0] == '\0')
        snprintf(ctx->txn_err, sizeof(ctx->txn_err), "%.*s", (int)reply->len, reply->str);
}

static void on_txn_begin(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_ctx *ctx = privdata;
    const redisReply *reply = r;

    (void)ac;
    ctx->txn_open = reply != NULL && reply->type != REDIS_REPLY_ERROR;
    ctx->txn_err[0] = '\0';
    txn_part(ctx, reply);
}

static void on_txn_part(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    txn_part(privdata, r);
}

static int txn_write(fm_ctx *ctx, fm_cmd *cmd)
{
    const char *exists[] = {"EXISTS", cmd->argv[1]};
    const size_t exists_lens[] = {6, cmd->lens[1]};

    if (redisAsyncCommand(ctx->ac, on_txn_begin, ctx, "MULTI") != REDIS_OK)
        return REDIS_ERR;
    if (redisAsyncCommandArgv(ctx->ac, on_txn_part, ctx, cmd->argc, cmd->argv,
                              cmd->lens) != REDIS_OK ||
        redisAsyncCommandArgv(ctx->ac, on_txn_part, ctx, 2, exists, exists_lens) != REDIS_OK ||
        redisAsyncCommand(ctx->ac, on_cmd_reply, cmd, "EXEC") != REDIS_OK) {
        fm_log_error("redis command link: out of memory within a transaction; reconnecting");
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "out of memory within a transaction");
        ctx->state = ST_LOST;
        redisAsyncDisconnect(ctx->ac);
        return REDIS_ERR;
    }
    return REDIS_OK;
}

static redisReply *error_reply(redisReply *err, const char *text, size_t len)
{
    memset(err, 0, sizeof(*err));
    err->type = REDIS_REPLY_ERROR;
    err->str = (char *)text;
    err->len = len;
    return err;
}

#define EXECABORT_BECAUSE "EXECABORT Transaction discarded because of: "
/* Redis 6.0's words for an EXEC on a server that became a replica after
 * the write was queued (6.2 on: EXECABORT ... because of: READONLY). */
#define EXEC_ON_REPLICA "ERR Transaction contains write commands but instance is now a " \
                        "read-only replica"

/* EXEC's reply as the tracked write's own: the write's reply, or what
 * refused it, so that a READONLY or a LOADING is dealt with as for any
 * command. A part refused at once (and, before Redis 6.0.6, EXEC) leaves
 * the error with the part and EXEC says EXECABORT; EXEC refused itself
 * says EXECABORT with the reason. A transaction that did not run as one
 * (MULTI or a read refused by the ACL, EXEC refused with the MULTI left
 * open, an EXEC of other shape) may have left the key untracked: the near
 * cache is disarmed, and a connection that may still be in MULTI is
 * dropped. */
static redisReply *txn_reply(fm_link *link, fm_ctx *ctx, redisReply *exec, redisReply *err)
{
    static const char odd[] = "ERR EXEC answered neither results nor an error";
    static const char readonly[] = "READONLY You can't write against a read only replica.";
    const size_t because = sizeof(EXECABORT_BECAUSE) - 1;
    redisReply *r = exec;
    const char *why;

    if (exec->type == REDIS_REPLY_ARRAY && exec->elements == 2 &&
        exec->element[1]->type == REDIS_REPLY_INTEGER)
        return exec->element[0];
    if (exec->type == REDIS_REPLY_ERROR && ctx->txn_open &&
        fm_link_reply_is(exec, "EXECABORT")) {
        if ((size_t)exec->len > because && memcmp(exec->str, EXECABORT_BECAUSE, because) == 0)
            r = error_reply(err, exec->str + because, (size_t)exec->len - because);
        else if (ctx->txn_err[0] != '\0')
            r = error_reply(err, ctx->txn_err, strlen(ctx->txn_err));
        /* The ACL forbids a part: every tracked write would fail alike. */
        if (fm_link_reply_is(r, "NOPERM"))
            fm_link_track_refused(link, r->str, (size_t)r->len);
        return r;
    }
    if (exec->type == REDIS_REPLY_ERROR &&
        strncmp(exec->str, EXEC_ON_REPLICA, sizeof(EXEC_ON_REPLICA) - 1) == 0)
        return error_reply(err, readonly, sizeof(readonly) - 1);
    if (ctx->txn_err[0] != '\0')
        why = ctx->txn_err;
    else if (exec->type == REDIS_REPLY_ERROR)
        why = exec->str;
    else if (exec->type == REDIS_REPLY_ARRAY && exec->elements == 2 &&
             exec->element[1]->type == REDIS_REPLY_ERROR)
        why = exec->element[1]->str;
    else
        why = "EXEC brought no read of the key";
    fm_link_track_refused(link, why, strlen(why));
    /* Commands written after it would be QUEUED, not run: they fail now
     * (the link's loss), rather than be answered as if they had run. */
    if (exec->type == REDIS_REPLY_ERROR && ctx->txn_open)
        fm_ctx_switch(ctx, NULL, 0, "EXEC refused, and its MULTI may be open");
    if (exec->type == REDIS_REPLY_ARRAY && exec->elements > 0)
        return exec->element[0];
    if (ctx->txn_err[0] != '\0')
        return error_reply(err, ctx->txn_err, strlen(ctx->txn_err));
    if (exec->type == REDIS_REPLY_ERROR)
        return exec;
    return error_reply(err, odd, sizeof(odd) - 1);
}

static int cmd_write(fm_cmd *cmd)
{
    fm_link *link = cmd->link;
    fm_ctx *ctx = target(link, cmd);

    if (ctx == NULL || ctx->state != ST_READY)
        return -1;
    /* ASK holds for the one command after ASKING, on that connection. */
    if (cmd->ask != NULL && redisAsyncCommand(ctx->ac, NULL, NULL, "ASKING") != REDIS_OK)
        return -1;
    if (cmd->script) {
        cmd->argv[0] = cmd->use_eval ? "EVAL" : "EVALSHA";
        cmd->lens[0] = strlen(cmd->argv[0]);
        cmd->argv[1] = cmd->use_eval ? cmd->script->body : cmd->script->sha;
        cmd->lens[1] = strlen(cmd->argv[1]);
    }
    /* Disarmed since it was submitted: what it writes is not kept. */
    if (cmd->tracked && !fm_link_tracking(link))
        cmd->tracked = 0;
    if ((cmd->tracked ? txn_write(ctx, cmd)
                      : redisAsyncCommandArgv(ctx->ac, on_cmd_reply, cmd, cmd->argc, cmd->argv,
                                              cmd->lens)) != REDIS_OK)
        return -1;
    cmd->state = CMD_SENT;
    cmd->ctx = ctx;
    cmd->ask = NULL;
    count_out(link, cmd);
    link->counts.commands++;
    return 0;
}

static void on_retry_timer(uv_timer_t *t)
{
    fm_link_pump(t->data);
}

/* A command the context did not take: back in its queue. While the link
 * is down its return is what pumps again; with the link up (hiredis ran
 * out of memory) nothing else might, so the retry timer does. */
static void write_refused(fm_link *link, fm_cmd *cmd)
{
    enqueue(link, cmd, 0);
    if (routed_ready(link, cmd) && !uv_is_active((uv_handle_t *)&link->retry_timer))
        uv_timer_start(&link->retry_timer, on_retry_timer, TRANSIENT_RETRY_MS, 0);
}

/* ---- parking (Cluster) ---- */

/* Takes a command whose master is not ready out of its flow's queue: the
 * flow's other commands go on to their masters, and a pump no longer
 * walks it. Parked in submission order (it comes from the queue, oldest
 * first), it goes back in that order. */
static void park(fm_link *link, fm_cmd *cmd)
{
    fm_flow *f = cmd->flow;
    fm_list *at;

    dequeue(link, cmd);
    link->queued++;
    for (at = f->parked.prev; at != &f->parked; at = at->prev)
        if (fm_list_entry(at, fm_cmd, in_flow)->seq < cmd->seq)
            break;
    fm_list_insert_before(at->next, &cmd->in_flow);
    cmd->state = CMD_PARKED;
    if (fm_list_empty(&f->in_parked))
        fm_list_push_back(&link->parked_flows, &f->in_parked);
}

static void unpark_one(fm_link *link, fm_cmd *cmd)
{
    fm_list_remove(&cmd->in_flow);
    link->queued--;
    if (fm_list_empty(&cmd->flow->parked))
        fm_list_remove(&cmd->flow->in_parked);
}

void fm_link_unpark(fm_link *link)
{
    fm_list *n;

    while ((n = fm_list_first(&link->parked_flows)) != NULL) {
        fm_flow *f = fm_list_entry(n, fm_flow, in_parked);
        fm_list *at = f->queue.next;

        /* Both lists are in submission order: one merge puts them back. */
        while (!fm_list_empty(&f->parked)) {
            fm_cmd *cmd = fm_list_entry(f->parked.next, fm_cmd, in_flow);

            unpark_one(link, cmd);
            while (at != &f->queue && fm_list_entry(at, fm_cmd, in_flow)->seq < cmd->seq)
                at = at->next;
            fm_list_insert_before(at, &cmd->in_flow);
            cmd->state = CMD_QUEUED;
            link->queued++;
        }
        if (fm_list_empty(&f->in_ring)) {
            fm_list_push_back(&link->ring, &f->in_ring);
            link->ring_len++;
        }
    }
}

/* Slots whose commands wait in a flow during one turn, in a Cluster: [1]
 * those parked, [0] those to be retried; one more bit each for the
 * commands of no key. Cleared on first use only: a healthy cluster never
 * needs it. */
typedef struct held_slots {
    int used;
    uint64_t bits[2][(FM_SLOTS + 1 + 63) / 64];
} held_slots;

static int bit(const held_slots *h, int kind, int slot)
{
    unsigned i = slot < 0 ? FM_SLOTS : (unsigned)slot;

    return h->used && (h->bits[kind][i / 64] >> (i % 64) & 1);
}

static int held(const held_slots *h, int slot)
{
    return bit(h, 0, slot) || bit(h, 1, slot);
}

static int parked_slot(const held_slots *h, int slot)
{
    return bit(h, 1, slot);
}

static void hold(held_slots *h, int slot, int parked)
{
    unsigned i = slot < 0 ? FM_SLOTS : (unsigned)slot;

    if (!h->used) {
        memset(h->bits, 0, sizeof(h->bits));
        h->used = 1;
    }
    h->bits[parked][i / 64] |= (uint64_t)1 << (i % 64);
}

/* Sends up to QUANTUM commands of f that may go now. Returns how many went,
 * or -1 when the context refused one (it is going down). *wake is lowered
 * to the earliest retry time of a command that must wait.
 *
 * A command that must wait (to be retried, or for its node) holds back
 * its flow. In a Cluster it holds back only the commands of its own slot,
 * which keep their order: a lost master, or a slot moving, must not stop
 * a client's (or the daemon's own lock extensions') commands to the other
 * masters. One waiting for its master is parked, with the commands of its
 * slot behind it, so that however many pile up for a lost master, a pump
 * never walks them; one waiting to be retried (25 ms) is passed over, at
 * most SKIP_MAX of them per turn. */
#define SKIP_MAX 256
static int serve(fm_link *link, fm_flow *f, uint64_t now, uint64_t *wake)
{
    fm_list *n, *next;
    held_slots h;
    size_t skipped = 0;
    int sent = 0;

    h.used = 0;
    for (n = f->queue.next; sent < QUANTUM && n != &f->queue; n = next) {
        fm_cmd *cmd = fm_list_entry(n, fm_cmd, in_flow);

        next = n->next;
        if (cmd->retry_at > now && (*wake == 0 || cmd->retry_at < *wake))
            *wake = cmd->retry_at;
        if (link->cluster != NULL && cmd->retry_at <= now &&
            (!routed_ready(link, cmd) || parked_slot(&h, cmd->slot))) {
            park(link, cmd);
            hold(&h, cmd->slot, 1);
            continue;
        }
        if (cmd->retry_at > now || held(&h, cmd->slot)) {
            if (link->cluster == NULL || ++skipped > SKIP_MAX)
                break;
            hold(&h, cmd->slot, 0);
            continue;
        }
        if (!routed_ready(link, cmd) || !may_go(link, f, cmd))
            break;
        dequeue(link, cmd);
        if (cmd_write(cmd) != 0) {
            write_refused(link, cmd);
            return -1;
        }
        sent++;
    }
    return sent;
}

void fm_link_pump(fm_link *link)
{
    uint64_t now = uv_now(link->loop), wake = 0;
    int progress = 1;

    /* Turns of the ring until one sends nothing. A flow that sent goes to
     * the back, so flows that were held back are served first next time
     * capacity comes free. */
    while (progress && link->ring_len > 0 &&
           (link->cluster != NULL || link->ctx[CTX_CMD].state == ST_READY)) {
        size_t visits = link->ring_len;
        fm_list *n = link->ring.next;

        progress = 0;
        while (visits-- > 0 && n != &link->ring) {
            fm_flow *f = fm_list_entry(n, fm_flow, in_ring);
            int sent;

            n = n->next;
            sent = serve(link, f, now, &wake);
            if (sent < 0)
                return;
            if (sent > 0 && !fm_list_empty(&f->in_ring)) {
                fm_list_remove(&f->in_ring);
                fm_list_push_back(&link->ring, &f->in_ring);
            }
            progress |= sent > 0;
        }
    }
    if (wake != 0)
        uv_timer_start(&link->retry_timer, on_retry_timer, wake - now, 0);
}

static void retry_later(fm_link *link, fm_cmd *cmd)
{
    cmd->transient = 1;
    link->counts.retries++;
    enqueue(link, cmd, uv_now(link->loop) + TRANSIENT_RETRY_MS);
    if (!uv_is_active((uv_handle_t *)&link->retry_timer))
        uv_timer_start(&link->retry_timer, on_retry_timer, TRANSIENT_RETRY_MS, 0);
}

/* Errors that say "not now" rather than "no": the command did not run. */
static int reply_transient(const redisReply *r)
{
    return fm_link_reply_is(r, "LOADING") || fm_link_reply_is(r, "BUSY") ||
           fm_link_reply_is(r, "MASTERDOWN") || fm_link_reply_is(r, "TRYAGAIN") ||
           fm_link_reply_is(r, "CLUSTERDOWN");
}

/* MOVED or ASK: "<slot> <host>:<port>", where an empty host is the node
 * that answered. Returns 1 when cmd was sent back to wait for its new
 * node, 0 when the reply is no redirection (or none we can follow: it
 * then goes to the caller as Redis's error). */
static int redirected(fm_link *link, fm_cmd *cmd, const redisReply *r)
{
    int ask = fm_link_reply_is(r, "ASK");
    char host[FM_SENTINEL_HOST_MAX];
    unsigned long slot;
    const char *colon;
    char *end;
    long port;
    fm_ctx *to = NULL;

    if (link->cluster == NULL || (!ask && !fm_link_reply_is(r, "MOVED")) ||
        r->len <= (ask ? 4 : 6))
        return 0;
    slot = strtoul(r->str + (ask ? 4 : 6), &end, 10);
    colon = memrchr(r->str, ':', r->len);
    if (slot >= FM_SLOTS || *end != ' ' || colon == NULL || colon < end)
        return 0;
    port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535 || (size_t)(colon - end - 1) >= sizeof(host))
        return 0;
    if (colon == end + 1)
        snprintf(host, sizeof(host), "%s", cmd->ctx->addr_host);
    else
        snprintf(host, sizeof(host), "%.*s", (int)(colon - end - 1), end + 1);
    if (ask && (to = fm_cluster_ask(link->cluster, host, (int)port)) == NULL)
        return 0;
    if (!ask)
        fm_cluster_moved(link->cluster, (unsigned)slot, host, (int)port);
    cmd->ask = to;
    cmd->transient = 1;
    link->counts.retries++;
    link->counts.redirects++;
    /* Nodes that keep sending it on (a map changing under us) are asked
     * at the pace of a retry, not in a tight loop. */
    if (++cmd->redirects > 3) {
        retry_later(link, cmd);
        return 1;
    }
    enqueue(link, cmd, 0);
    return 1;
}

/* We are talking to a replica now (a failover): reconnect, and run the
 * command on whatever master we find. The replies already on their way
 * arrive first (they meet READONLY too and queue up again); until a
 * command succeeds, the reconnects back off and log once. */
static void on_readonly(fm_link *link, redisAsyncContext *ac, fm_cmd *cmd)
{
    fm_ctx *ctx = cmd->ctx;

    cmd->transient = 1;
    link->counts.retries++;
    enqueue(link, cmd, 0);
    if (ctx->state == ST_READY) {
        snprintf(ctx->lasterr, sizeof(ctx->lasterr), "READONLY: the server is a replica now");
        ctx->suspect = 1;
        ctx->state = ST_LOST;
        redisAsyncDisconnect(ac);
    }
    if (link->cluster != NULL)
        fm_cluster_refresh(link->cluster);
}

static void on_cmd_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_cmd *cmd = privdata;
    fm_link *link = cmd->link;
    redisReply *reply = r, refused;

    count_back(link, cmd);
    if (reply == NULL) {
        /* The context is being torn down: nothing more may be written to
         * it, so mark it before the caller's callback submits anything. */
        if (cmd->ctx->state == ST_READY)
            cmd->ctx->state = ST_LOST;
        cmd_finish(cmd, FM_LINK_DOWN, NULL);
        return;
    }
    if (cmd->tracked)
        reply = txn_reply(link, cmd->ctx, reply, &refused);
    if (reply->type == REDIS_REPLY_ERROR && !cmd->cancelled && !link->closing) {
        if (cmd->script && fm_link_reply_is(reply, "NOSCRIPT")) {
            /* Script cache flushed (SCRIPT FLUSH, a restart we raced): EVAL
             * runs the body and caches it again. */
            link->counts.retries++;
            cmd->use_eval = 1;
            if (cmd_write(cmd) != 0)
                write_refused(link, cmd);
            return;
        }
        if (reply_transient(reply)) {
            if (link->cluster != NULL && fm_link_reply_is(reply, "CLUSTERDOWN"))
                fm_cluster_refresh(link->cluster);
            retry_later(link, cmd);
            return;
        }
        if (redirected(link, cmd, reply)) {
            fm_link_pump(link);
            return;
        }
        if (fm_link_reply_is(reply, "READONLY")) {
            on_readonly(link, ac, cmd);
            return;
        }
    }
    if (cmd->ctx->suspect && cmd->ctx->state == ST_READY)
        fm_ctx_recovered(cmd->ctx);
    learn(cmd->flow, cmd, reply);
    cmd_finish(cmd, FM_LINK_OK, reply);
    fm_link_pump(link);
}

/* ---- submission ---- */

int fm_link_register_script(fm_link *link, fm_script *script)
{
    if (link->nscripts == MAX_SCRIPTS)
        return -1;
    link->scripts[link->nscripts++] = script;
    return 0;
}

fm_cmd *fm_link_cmd_create(fm_link *link, fm_flow *flow, size_t reads, fm_script *script,
                           int nkeys, int argc, const char **argv, const size_t *lens,
                           fm_link_cb *cb, void *arg)
{
    int extra = script ? 3 : 0, total = argc + extra;
    size_t data = 0;
    char keys[16];
    fm_cmd *cmd;
    char *p;

    for (int i = 0; i < argc; i++)
        data += lens[i];
    cmd = malloc(sizeof(*cmd) + (size_t)total * (sizeof(char *) + sizeof(size_t)) +
                 data + sizeof(keys));
    if (cmd == NULL)
        return NULL;
    memset(cmd, 0, sizeof(*cmd));
    fm_list_init(&cmd->in_flow);
    cmd->link = link;
    cmd->flow = flow != NULL ? flow : &link->own;
    cmd->flow->refs++;
    cmd->seq = ++next_seq;
    cmd->reads = reads;
    cmd->req_bytes = data;
    cmd->script = script;
    cmd->cb = cb;
    cmd->arg = arg;
    cmd->argc = total;
    cmd->argv = (const char **)(cmd + 1);
    cmd->lens = (size_t *)(cmd->argv + total);
    p = (char *)(cmd->lens + total);
    if (script) {
        int n = snprintf(p, sizeof(keys), "%d", nkeys);
        cmd->argv[2] = p;
        cmd->lens[2] = (size_t)n;
        p += sizeof(keys);
    }
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], lens[i]);
        cmd->argv[extra + i] = p;
        cmd->lens[extra + i] = lens[i];
        p += lens[i];
    }
    cmd->slot = link->cluster != NULL ? cmd_slot(cmd, nkeys) : -1;
    return cmd;
}

void fm_link_cmd_discard(fm_cmd *cmd)
{
    flow_unref(cmd->flow);
    free(cmd);
}

/* Straight to Redis when its flow has nothing waiting and may send it;
 * into the flow's queue otherwise. */
fm_cmd *fm_link_cmd_submit(fm_link *link, fm_cmd *cmd)
{
    if (cmd == NULL)
        return NULL;
    if (link->closing) {
        fm_link_cmd_discard(cmd);
        return NULL;
    }
    if (fm_list_empty(&cmd->flow->queue) && routed_ready(link, cmd) &&
        may_go(link, cmd->flow, cmd)) {
        if (cmd_write(cmd) != 0)
            write_refused(link, cmd);
        return cmd;
    }
    enqueue(link, cmd, 0);
    /* In a Cluster, what waits in the flow may wait for another master
     * only: this one may still go to its own, now. */
    if (link->cluster != NULL && routed_ready(link, cmd)) {
        uint64_t wake = 0;

        serve(link, cmd->flow, uv_now(link->loop), &wake);
    }
    return cmd;
}

fm_cmd *fm_link_tracked(fm_link *link, fm_flow *flow, int argc, const char **argv,
                        const size_t *lens, fm_link_cb *cb, void *arg)
{
    fm_cmd *cmd = fm_link_cmd_create(link, flow, 0, NULL, 0, argc, argv, lens, cb, arg);

    assert(link->cluster == NULL);
    if (cmd != NULL)
        cmd->tracked = 1;
    return fm_link_cmd_submit(link, cmd);
}

fm_cmd *fm_link_script(fm_link *link, fm_flow *flow, fm_script *script, int nkeys,
                       size_t reads, int argc, const char **argv, const size_t *lens,
                       fm_link_cb *cb, void *arg)
{
    return fm_link_cmd_submit(link, fm_link_cmd_create(link, flow, reads, script, nkeys, argc,
                                                       argv, lens, cb, arg));
}

int fm_link_cmd_cancel(fm_cmd *cmd)
{
    if (cmd->state != CMD_SENT) {
        fm_flow *f = cmd->flow;

        if (cmd->state == CMD_PARKED)
            unpark_one(cmd->link, cmd);
        else
            dequeue(cmd->link, cmd);
        free(cmd);
        flow_unref(f);
        return 1;
    }
    cmd->cancelled = 1;
    return 0;
}

void fm_link_fail_waiting(fm_link *link)
{
    fm_link_unpark(link);
    while (link->ring_len > 0) {
        fm_cmd *cmd = flow_head(fm_list_entry(link->ring.next, fm_flow, in_ring));

        dequeue(link, cmd);
        cmd_finish(cmd, FM_LINK_DOWN, NULL);
    }
}

void fm_link_cmd_init(fm_link *link)
{
    fm_list_init(&link->ring);
    fm_list_init(&link->parked_flows);
    flow_init(&link->own);
    link->own.own = 1;
    uv_timer_init(link->loop, &link->retry_timer);
    link->retry_timer.data = link;
}
