/* link_track.c -- client-side caching and the fence; see link_track.h.
 *
 * Arming needs four things of the current pair of connections: the
 * pub/sub connection's id (asked during its setup), the invalidation
 * channel confirmed on it (Redis sends a RESP2 client its invalidations
 * only while it is in pub/sub mode), the command connection ready, and
 * Redis's OK to CLIENT TRACKING sent on it. Every loss bumps `gen`, so an
 * answer to an older CLIENT TRACKING arms nothing.
 *
 *   a connection lost --> gen++, disarmed, the tracker forgets everything
 *   id, channel, command connection --> CLIENT TRACKING --OK, same gen--> armed
 *
 * The fence: fm_link_fence() raises fence_seq, which costs nothing until a
 * read finds it open (fm_link_fence_open): then, at the start of the next
 * loop turn (an idle handle: every grant and read of this turn is in by
 * then, and libuv does not block for I/O first), one SUBSCRIBE goes out
 * covering every fence raised so far; its confirmation passes them all. While one is out, later fences wait for
 * the next. Grants that no read follows send nothing. */
#include <stdio.h>
#include <string.h>

#include "link_int.h"
#include "log.h"
#include "scripts.h"

#define CHANNEL "__redis__:invalidate"
#define CHANNEL_LEN (sizeof(CHANNEL) - 1)

static void on_turn(uv_idle_t *h);

/* The tracker hears of it from the idle handle, on a clean stack: what it
 * resumes sends commands, which must not happen inside a context's loss
 * (the context is being torn down) or inside hiredis's callbacks. */
static void pass_fences(fm_link *link, uint64_t seq)
{
    fm_link_trk *tr = &link->track;

    if (seq > tr->done_seq)
        tr->done_seq = seq;
    uv_idle_start(&tr->turn, on_turn);
}

/* Forgets everything tracked: nothing to wait for, nothing to trust. A
 * barrier still out on a pub/sub connection that stays is still answered
 * there, and stays counted (on_subscribed pairs answers with barriers). */
static void disarm(fm_link *link)
{
    fm_link_trk *tr = &link->track;
    int was = tr->armed;

    tr->gen++;
    tr->armed = 0;
    if (!was)
        return;
    tr->t.lost(tr->t.arg);
    pass_fences(link, tr->fence_seq);
}

static void try_arm(fm_link *link);

/* An answer to a step of arming: whether it still counts (the link goes
 * on, and it was asked on the pair of connections there is now; if not,
 * arming starts over on this one). */
static int still_asked(fm_link *link, fm_link_status status)
{
    fm_link_trk *tr = &link->track;

    tr->asking = 0;
    if (link->closing || status != FM_LINK_OK)
        return 0;
    if (tr->ask_gen != tr->gen) {
        try_arm(link);
        return 0;
    }
    return 1;
}

static void on_tracking(fm_link_status status, redisReply *reply, void *arg)
{
    fm_link *link = arg;
    fm_link_trk *tr = &link->track;

    if (!still_asked(link, status))
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        fm_log_limited(FM_LOG_WARN, "near cache unused: Redis refused CLIENT TRACKING: %.200s",
                       reply->str);
        return;
    }
    tr->armed = 1;
    tr->t.armed(tr->t.arg);
}

/* The near cache reads TTLs with PTTL in its scripts, and writes in a
 * transaction: a user whose ACL forbids them would see every read or
 * write fail, so tracking is not even asked. */
static void on_probe(fm_link_status status, redisReply *reply, void *arg)
{
    fm_link *link = arg;
    fm_link_trk *tr = &link->track;
    char id[24];
    const char *argv[] = {"CLIENT", "TRACKING", "on", "REDIRECT", id, "NOLOOP"};
    size_t lens[6] = {6, 8, 2, 8, 0, 6};

    if (!still_asked(link, status))
        return;
    if (reply->type != REDIS_REPLY_INTEGER || reply->integer != 1) {
        fm_log_limited(FM_LOG_WARN,
                       "near cache unused: the Redis user may not run PTTL, MULTI or EXEC%s%.200s",
                       reply->type == REDIS_REPLY_ERROR ? ": " : "",
                       reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        return;
    }
    lens[4] = (size_t)snprintf(id, sizeof(id), "%lld", tr->sub_id);
    if (fm_link_command(link, NULL, 0, 6, argv, lens, on_tracking, link) != NULL)
        tr->asking = 1;
}

/* Asked on the command connection once everything else is in place: the
 * ACL probe, then CLIENT TRACKING. With Sentinel, the two connections ask
 * the sentinels each on its own, and during a failover may be on two
 * servers for a while: tracking that redirects to an id on another server
 * would redirect to a stranger (or to no one). The sentinel machinery
 * brings them together (+switch-master moves both), and whichever arrives
 * last asks again (cmd ready, or the channel confirmed). */
static void try_arm(fm_link *link)
{
    fm_link_trk *tr = &link->track;
    const fm_ctx *cmd = &link->ctx[CTX_CMD], *sub = &link->ctx[CTX_SUB];
    const char *key = link->cfg->cache_key_prefix;
    size_t klen = strlen(key);

    if (!tr->wanted || tr->armed || tr->asking || !tr->sub_id_known || !tr->confirmed ||
        cmd->state != ST_READY)
        return;
    if (link->sentinel != NULL && (strcmp(cmd->host, sub->host) != 0 || cmd->port != sub->port))
        return;
    if (fm_link_script(link, NULL, &tr->probe, 0, 0, 1, &key, &klen, on_probe, link) != NULL) {
        tr->asking = 1;
        tr->ask_gen = tr->gen;
    }
}

static void send_barrier(fm_link *link)
{
    fm_link_trk *tr = &link->track;

    if (!tr->armed) {
        /* Nothing is tracked that a fence could order. */
        pass_fences(link, tr->fence_seq);
        return;
    }
    if (fm_link_sub_again(link, CHANNEL, CHANNEL_LEN) != 0) {
        /* No round trip, no order: what is held cannot be trusted. */
        disarm(link);
        return;
    }
    tr->barrier_out = 1;
    tr->barrier_seq = tr->fence_seq;
    tr->barrier_sent_ms = uv_now(link->loop);
    tr->stats.fences++;
}

/* Once per loop turn while there is something to do: tell the tracker
 * which fences passed, and send the barrier for the ones raised since. */
static void on_turn(uv_idle_t *h)
{
    fm_link *link = h->data;
    fm_link_trk *tr = &link->track;

    uv_idle_stop(h);
    if (tr->done_seq > tr->told_seq) {
        tr->told_seq = tr->done_seq;
        tr->t.fenced(tr->done_seq, tr->t.arg);
    }
    if (tr->wanted_seq > tr->done_seq && !tr->barrier_out)
        send_barrier(link);
}

/* ---- the channel's listener ---- */

static void on_subscribed(const char *chan, size_t clen, void *arg)
{
    fm_link *link = arg;
    fm_link_trk *tr = &link->track;

    (void)chan;
    (void)clen;
    if (!tr->confirmed) {
        tr->confirmed = 1;
        try_arm(link);
        return;
    }
    if (!tr->barrier_out)
        return;
    tr->barrier_out = 0;
    pass_fences(link, tr->barrier_seq);
}

static void on_invalidation(const char *chan, size_t clen, const redisReply *payload,
                            void *arg)
{
    fm_link *link = arg;
    fm_link_trk *tr = &link->track;

    (void)chan;
    (void)clen;
    /* nil: FLUSHALL, FLUSHDB; anything else unknown counts as all. */
    if (payload->type != REDIS_REPLY_ARRAY) {
        tr->t.lost(tr->t.arg);
        return;
    }
    for (size_t i = 0; i < payload->elements; i++) {
        const redisReply *k = payload->element[i];

        if (k->type == REDIS_REPLY_STRING)
            tr->t.invalidate(k->str, (size_t)k->len, tr->t.arg);
    }
}

/* A string published on the channel by someone: a key name at most. */
static void on_message(const char *chan, size_t clen, const char *payload, size_t plen,
                       void *arg)
{
    fm_link *link = arg;

    (void)chan;
    (void)clen;
    link->track.t.invalidate(payload, plen, link->track.t.arg);
}

static void on_sub_down(void *arg)
{
    fm_link *link = arg;
    fm_link_trk *tr = &link->track;

    tr->sub_id_known = 0;
    tr->confirmed = 0;
    tr->barrier_out = 0;
    disarm(link);
}

/* ---- the link's hooks ---- */

void fm_link_track_sub_id(fm_link *link, long long id)
{
    link->track.sub_id = id;
    link->track.sub_id_known = 1;
}

void fm_link_track_cmd_ready(fm_link *link)
{
    try_arm(link);
}

void fm_link_track_cmd_lost(fm_link *link)
{
    if (link->track.wanted)
        disarm(link);
}

void fm_link_track_refused(fm_link *link, const char *why, size_t len)
{
    if (!link->track.armed)
        return;
    fm_log_limited(FM_LOG_WARN, "near cache unused until Redis is reconnected: a write was not "
                   "run as one transaction: %.*s", (int)(len < 200 ? len : 200), why);
    disarm(link);
}

void fm_link_track_tick(fm_link *link)
{
    fm_link_trk *tr = &link->track;
    char why[96];

    if (!tr->armed)
        return;
    if (!tr->barrier_out) {
        send_barrier(link);
        return;
    }
    if (uv_now(link->loop) - tr->barrier_sent_ms < (uint64_t)link->cfg->request_timeout_ms)
        return;
    /* Invalidations may be stuck with it: what the near cache holds is
     * no longer known to be current. */
    snprintf(why, sizeof(why), "no answer on the pub/sub connection within %lld ms",
             (long long)link->cfg->request_timeout_ms);
    fm_ctx_switch(&link->ctx[CTX_SUB], NULL, 0, why);
}

void fm_link_track_init(fm_link *link)
{
    uv_idle_init(link->loop, &link->track.turn);
    link->track.turn.data = link;
}

void fm_link_track_close(fm_link *link, uv_close_cb cb)
{
    uv_close((uv_handle_t *)&link->track.turn, cb);
}

/* ---- the face ---- */

int fm_link_track(fm_link *link, const fm_link_tracker *t)
{
    fm_link_trk *tr = &link->track;
    int who;

    if (tr->wanted || link->cluster != NULL)
        return -1;
    tr->probe = (fm_script){.name = "track_probe", .body = fm_lua_track_probe};
    if (fm_link_register_script(link, &tr->probe) != 0)
        return -1;
    who = fm_link_listen(link, &(fm_link_listener){
        .message = on_message, .message_reply = on_invalidation, .subscribed = on_subscribed,
        .down = on_sub_down, .arg = link});
    if (who < 0)
        return -1;
    tr->t = *t;
    tr->wanted = 1;
    return fm_link_subscribe(link, who, CHANNEL, CHANNEL_LEN) < 0 ? -1 : 0;
}

int fm_link_tracking(const fm_link *link)
{
    return link->track.armed;
}

uint64_t fm_link_fence(fm_link *link)
{
    fm_link_trk *tr = &link->track;

    if (!tr->armed)
        return 0;
    return ++tr->fence_seq;
}

uint64_t fm_link_fence_open(fm_link *link)
{
    fm_link_trk *tr = &link->track;

    if (tr->fence_seq <= tr->done_seq)
        return 0;
    /* A read waits: the round trip goes out at the end of this turn (one
     * for every read and grant of it), or follows the one out now. */
    tr->wanted_seq = tr->fence_seq;
    if (!tr->barrier_out)
        uv_idle_start(&tr->turn, on_turn);
    return tr->fence_seq;
}

void fm_link_track_stats_get(const fm_link *link, fm_link_track_stats *out)
{
    *out = link->track.stats;
}
