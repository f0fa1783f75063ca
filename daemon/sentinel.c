/* sentinel.c -- asking the sentinels for the master, and watching them for
 * switches (see sentinel.h).
 *
 * One fm_sconn per sentinel for asking, opened by the first round that
 * asks it and kept while it answers, and `watch`, which stays subscribed.
 * order[] is the order of asking. A round tallies the masters named in
 * names[]. A sentinel's failure is logged once, and its recovery once. One
 * timer, `tick`, runs the checks and the watched sentinel's probes. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sentinel.h"
#include "sentinel_conn.h"

typedef struct named {
    char host[FM_SENTINEL_HOST_MAX];
    int port;
    size_t votes;               /* sentinels that named it this round */
    size_t by;                  /* the first of them */
} named;

struct fm_sentinel {
    uv_loop_t *loop;
    const fm_config *cfg;
    size_t order[FM_SENTINELS_MAX];
    int down[FM_SENTINELS_MAX];     /* its last ask failed: logged, and asked last */
    fm_list waiting;                /* fm_sentinel_waiter */
    fm_sconn conn[FM_SENTINELS_MAX];    /* for asking each sentinel */
    size_t ask_idx;                 /* the sentinel being asked */
    size_t tried;                   /* places of order[] asked this round */
    int asking;                     /* a round runs */
    int again;                      /* a switch came during the round: ask again */
    named names[FM_SENTINELS_MAX];  /* the masters named this round, in that order */
    size_t nnames;
    char why[200];                  /* the round's most telling failure */
    int why_answered;
    fm_sconn watch;
    size_t watch_idx;
    int watch_attempt;
    int watch_logged;               /* its failure is logged */
    int watching;                   /* subscribed */
    int probing;                    /* a probe is out on the watch */
    char master[FM_SENTINEL_HOST_MAX];  /* the master followed; "" none yet */
    int master_port;
    uv_timer_t tick;
    fm_sentinel_switch_fn *on_switch;
    void *arg;
    int open;                       /* handles still to close, once freed */
};

static const fm_redis_addr *addr_of(const fm_sentinel *s, size_t idx)
{
    return &s->cfg->sentinels[idx];
}

static int64_t ask_ms(const fm_sentinel *s)
{
    return s->cfg->request_timeout_ms < FM_SENTINEL_ASK_MS ? s->cfg->request_timeout_ms
                                                          : FM_SENTINEL_ASK_MS;
}

static size_t place_of(const fm_sentinel *s, size_t idx)
{
    size_t p = 0;

    while (s->order[p] != idx)
        p++;
    return p;
}

static void to_front(fm_sentinel *s, size_t idx)
{
    size_t p = place_of(s, idx);

    memmove(&s->order[1], &s->order[0], p * sizeof(s->order[0]));
    s->order[0] = idx;
}

/* Neither hiredis's errors nor a sentinel's replies echo AUTH's argument;
 * should one ever do, the whole text is withheld (as link_ctx.c does). */
static const char *shown(const fm_sentinel *s, const char *why)
{
    const char *pw = s->cfg->redis_sentinel_password;

    return pw != NULL && strstr(why, pw) != NULL ? "an error whose text held the password "
                                                    "(withheld)" : why;
}

static void note_down(fm_sentinel *s, size_t idx, const char *why)
{
    if (s->down[idx])
        return;
    s->down[idx] = 1;
    fm_log_warn("sentinel %s:%d: %s", addr_of(s, idx)->host, addr_of(s, idx)->port, shown(s, why));
}

static void note_up(fm_sentinel *s, size_t idx)
{
    if (!s->down[idx])
        return;
    s->down[idx] = 0;
    fm_log_info("sentinel %s:%d answers again", addr_of(s, idx)->host, addr_of(s, idx)->port);
}

/* ---- rounds ---- */

static void round_start(fm_sentinel *s);

static void set_master(fm_sentinel *s, const char *host, int port)
{
    snprintf(s->master, sizeof(s->master), "%s", host);
    s->master_port = port;
}

static int is_master(const fm_sentinel *s, const char *host, int port)
{
    return strcmp(s->master, host) == 0 && s->master_port == port;
}

/* Those whose last ask failed go last, in their order: a sentinel that is
 * down costs its timeout only when the others could not decide. */
static void down_to_back(fm_sentinel *s)
{
    size_t n = s->cfg->nsentinels, kept[FM_SENTINELS_MAX], nkept = 0, p = 0;

    for (size_t i = 0; i < n; i++) {
        if (s->down[s->order[i]])
            kept[nkept++] = s->order[i];
        else
            s->order[p++] = s->order[i];
    }
    memcpy(&s->order[p], kept, nkept * sizeof(kept[0]));
}

/* The master named most often this round, the first named on a tie; NULL
 * when none was. */
static const named *plurality(const fm_sentinel *s)
{
    const named *best = NULL;

    for (size_t i = 0; i < s->nnames; i++)
        if (best == NULL || s->names[i].votes > best->votes)
            best = &s->names[i];
    return best;
}

/* Answers everyone who asked with n's master or, n NULL, with why; a
 * majority (decided) that names another master than the one followed is
 * a switch. The answers may ask again, for a round of their own. */
static void round_end(fm_sentinel *s, const named *n, int decided)
{
    int switched = 0, port = 0;
    size_t votes = 0;
    fm_list answered;
    char host[FM_SENTINEL_HOST_MAX], why[sizeof(s->why) + 64];

    s->asking = 0;
    if (s->again) {
        round_start(s);
        return;
    }
    if (n != NULL) {
        to_front(s, n->by);
        snprintf(host, sizeof(host), "%s", n->host);
        port = n->port;
        votes = n->votes;
        switched = decided && s->master[0] != '\0' && !is_master(s, host, port);
        if (switched || s->master[0] == '\0')
            set_master(s, host, port);
    }
    down_to_back(s);
    snprintf(why, sizeof(why), "no sentinel named the master \"%s\": %s",
             s->cfg->redis_sentinel_master, s->why);
    fm_list_init(&answered);
    while (!fm_list_empty(&s->waiting)) {
        fm_list *l = s->waiting.next;

        fm_list_remove(l);
        fm_list_push_back(&answered, l);
    }
    while (!fm_list_empty(&answered)) {
        fm_sentinel_waiter *ask = fm_list_entry(answered.next, fm_sentinel_waiter, in_waiting);

        fm_list_remove(&ask->in_waiting);
        ask->fn(ask, n != NULL ? host : NULL, port, n != NULL ? NULL : why);
    }
    if (switched) {
        fm_log_info("sentinel: the master \"%s\" is at %s:%d now, as %zu of %zu sentinels say",
                    s->cfg->redis_sentinel_master, host, port, votes, s->cfg->nsentinels);
        s->on_switch(host, port, "a majority of the sentinels name another master", s->arg);
    }
}

static int send_ask(fm_sconn *c);

static void round_next(fm_sentinel *s)
{
    fm_sconn *c;

    if (s->tried == s->cfg->nsentinels) {
        round_end(s, plurality(s), 0);
        return;
    }
    s->ask_idx = s->order[s->tried++];
    c = &s->conn[s->ask_idx];
    if (c->state != SC_UP) {
        fm_sconn_open(c, addr_of(s, s->ask_idx), s->cfg->redis_sentinel_password, ask_ms(s));
        return;
    }
    /* Kept from an earlier round. Not sent (out of memory): the deadline
     * ends the attempt, never from within this call. */
    fm_sconn_expect(c, ask_ms(s), "timed out");
    send_ask(c);
}

static void round_start(fm_sentinel *s)
{
    s->asking = 1;
    s->again = 0;
    s->tried = 0;
    s->nnames = 0;
    s->why[0] = '\0';
    s->why_answered = 0;
    round_next(s);
}

/* The asked sentinel named host:port. A majority of redis_sentinels, not
 * of those that answer, decides: a lagging minority must never outvote
 * the sentinels that took part in the failover. */
static void round_named(fm_sentinel *s, const char *host, int port)
{
    named *n = NULL;

    for (size_t i = 0; i < s->nnames && n == NULL; i++)
        if (strcmp(s->names[i].host, host) == 0 && s->names[i].port == port)
            n = &s->names[i];
    if (n == NULL) {
        n = &s->names[s->nnames++];
        snprintf(n->host, sizeof(n->host), "%s", host);
        n->port = port;
        n->votes = 0;
        n->by = s->ask_idx;
    }
    if (++n->votes > s->cfg->nsentinels / 2) {
        round_end(s, n, 1);
        return;
    }
    round_next(s);
}

static void ask_fail(fm_sconn *c, const char *why, int answered)
{
    fm_sentinel *s = c->data;
    size_t idx = (size_t)(c - s->conn);
    const fm_redis_addr *a = addr_of(s, idx);

    /* A kept connection that its sentinel closed between asks: the next
     * ask opens another. */
    if (!s->asking || idx != s->ask_idx)
        return;
    note_down(s, idx, why);
    /* A sentinel's own refusal (a wrong password, an unknown master) says
     * more than one out of reach. */
    if (s->why[0] == '\0' || (answered && !s->why_answered)) {
        snprintf(s->why, sizeof(s->why), "%s:%d: %s", a->host, a->port, shown(s, why));
        s->why_answered = answered;
    }
    round_next(s);
}

static void on_master(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_sconn *c = ac->data;
    redisReply *reply = r;
    fm_sentinel *s;
    char host[FM_SENTINEL_HOST_MAX], why[160];
    long port;

    (void)privdata;
    if (c == NULL || reply == NULL || c->state != SC_UP)
        return;
    s = c->data;
    /* Only the round's ask has a command out: one that timed out took its
     * connection with it. */
    assert(s->asking && c == &s->conn[s->ask_idx]);
    if (reply->type == REDIS_REPLY_NIL) {
        snprintf(why, sizeof(why), "does not know the master \"%.100s\"",
                 s->cfg->redis_sentinel_master);
        fm_sconn_fail(c, why, 1);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "refused SENTINEL: %.100s", reply->str);
        fm_sconn_fail(c, why, 1);
        return;
    }
    port = reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
           reply->element[0]->type == REDIS_REPLY_STRING &&
           reply->element[1]->type == REDIS_REPLY_STRING &&
           reply->element[0]->len > 0 && reply->element[0]->len < sizeof(host)
           ? strtol(reply->element[1]->str, NULL, 10) : 0;
    if (port < 1 || port > 65535) {
        fm_sconn_fail(c, "answered SENTINEL get-master-addr-by-name with no address", 1);
        return;
    }
    memcpy(host, reply->element[0]->str, reply->element[0]->len + 1);
    note_up(s, s->ask_idx);
    fm_sconn_keep(c);
    round_named(s, host, (int)port);
}

static int send_ask(fm_sconn *c)
{
    fm_sentinel *s = c->data;

    return redisAsyncCommand(c->ac, on_master, NULL, "SENTINEL get-master-addr-by-name %s",
                             s->cfg->redis_sentinel_master);
}

static void ask_up(fm_sconn *c)
{
    if (send_ask(c) != REDIS_OK)
        fm_sconn_fail(c, "could not send SENTINEL", 0);
}

void fm_sentinel_ask(fm_sentinel *s, fm_sentinel_waiter *ask, fm_sentinel_answer_fn *fn)
{
    ask->fn = fn;
    fm_list_push_back(&s->waiting, &ask->in_waiting);
    if (!s->asking)
        round_start(s);
}

void fm_sentinel_withdraw(fm_sentinel_waiter *ask)
{
    fm_list_remove(&ask->in_waiting);
}

/* ---- the watcher ---- */

static void watch_open(fm_sentinel *s)
{
    fm_sconn_open(&s->watch, addr_of(s, s->watch_idx), s->cfg->redis_sentinel_password,
                  ask_ms(s));
}

static void on_watch_retry(uv_timer_t *t)
{
    fm_sconn *c = t->data;

    watch_open(c->data);
}

static void watch_fail(fm_sconn *c, const char *why, int answered)
{
    fm_sentinel *s = c->data;
    const fm_redis_addr *a = addr_of(s, s->watch_idx);
    int64_t wait = ++s->watch_attempt * s->cfg->reconnect_step_ms;

    (void)answered;
    s->watching = 0;
    s->probing = 0;
    if (!s->watch_logged)
        fm_log_warn("sentinel %s:%d: not watching it for failovers: %s", a->host, a->port,
                    shown(s, why));
    s->watch_logged = 1;
    /* The next one in order: a sentinel that is down may stay down. */
    s->watch_idx = s->order[(place_of(s, s->watch_idx) + 1) % s->cfg->nsentinels];
    if (wait > s->cfg->reconnect_max_ms)
        wait = s->cfg->reconnect_max_ms;
    uv_timer_start(&c->timer, on_watch_retry, (uint64_t)wait, 0);
}

/* "<name> <old-ip> <old-port> <new-ip> <new-port>" */
static void on_switch_message(fm_sentinel *s, const char *text)
{
    char name[513], old[FM_SENTINEL_HOST_MAX], host[FM_SENTINEL_HOST_MAX], why[600];
    int old_port, port;

    if (sscanf(text, "%512s %255s %d %255s %d", name, old, &old_port, host, &port) != 5 ||
        strcmp(name, s->cfg->redis_sentinel_master) != 0)
        return;
    fm_log_info("sentinel %s:%d: the master \"%s\" switched from %s:%d to %s:%d",
                addr_of(s, s->watch_idx)->host, addr_of(s, s->watch_idx)->port, name, old,
                old_port, host, port);
    /* It has decided the switch (a sentinel announces one only for a newer
     * configuration than it had, never a lagging one): ask it first, and
     * ask again whatever a round running now would answer. */
    to_front(s, s->watch_idx);
    s->again = s->asking;
    set_master(s, host, port);
    snprintf(why, sizeof(why), "the sentinels switched the master to %s:%d", host, port);
    s->on_switch(host, port, why, s->arg);
}

static void on_watch_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_sconn *c = ac->data;
    redisReply *reply = r;
    fm_sentinel *s;

    (void)privdata;
    if (c == NULL || reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    s = c->data;
    if (strcmp(reply->element[0]->str, "subscribe") == 0) {
        fm_sconn_keep(c);
        s->probing = 0;
        if (s->watching)
            return;
        s->watching = 1;
        s->watch_attempt = 0;
        if (s->watch_logged)
            fm_log_info("sentinel %s:%d: watching it for failovers", addr_of(s, s->watch_idx)->host,
                        addr_of(s, s->watch_idx)->port);
        s->watch_logged = 0;
        /* A switch may have come while nobody watched. */
        if (!s->asking)
            round_start(s);
    } else if (strcmp(reply->element[0]->str, "message") == 0 &&
               reply->element[2]->type == REDIS_REPLY_STRING) {
        on_switch_message(s, reply->element[2]->str);
    }
}

static int send_subscribe(fm_sconn *c)
{
    return redisAsyncCommand(c->ac, on_watch_reply, NULL, "SUBSCRIBE +switch-master");
}

static void watch_up(fm_sconn *c)
{
    if (send_subscribe(c) != REDIS_OK)
        fm_sconn_fail(c, "could not send SUBSCRIBE", 0);
}

/* Proves that the watched sentinel still answers. hiredis 0.14 never
 * hands back the reply to a PING on a subscribed connection (it looks
 * ["pong", ""] up as a pattern), so the probe subscribes again to the
 * channel it has, which the sentinel answers as it did the first time.
 * Not sent (out of memory): the deadline ends the watch. */
static void watch_probe(fm_sentinel *s)
{
    char why[64];

    if (!s->watching || s->probing)
        return;
    snprintf(why, sizeof(why), "did not answer within %lld ms", (long long)ask_ms(s));
    fm_sconn_expect(&s->watch, ask_ms(s), why);
    s->probing = 1;
    send_subscribe(&s->watch);
}

/* ---- life ---- */

static void on_tick(uv_timer_t *t)
{
    fm_sentinel *s = t->data;

    watch_probe(s);
    /* Before the first master is known there is nothing to follow: the
     * contexts' own asks find it. */
    if (!s->asking && s->master[0] != '\0')
        round_start(s);
}

fm_sentinel *fm_sentinel_create(uv_loop_t *loop, const fm_config *cfg, fm_tls *tls,
                                fm_sentinel_switch_fn *on_switch, void *arg)
{
    fm_sentinel *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    assert(cfg->nsentinels > 0 && cfg->nsentinels <= FM_SENTINELS_MAX);
    s->loop = loop;
    s->cfg = cfg;
    s->on_switch = on_switch;
    s->arg = arg;
    fm_list_init(&s->waiting);
    for (size_t i = 0; i < cfg->nsentinels; i++) {
        s->order[i] = i;
        fm_sconn_init(&s->conn[i], loop, tls, s);
        s->conn[i].on_up = ask_up;
        s->conn[i].on_fail = ask_fail;
    }
    fm_sconn_init(&s->watch, loop, tls, s);
    s->watch.on_up = watch_up;
    s->watch.on_fail = watch_fail;
    uv_timer_init(loop, &s->tick);
    s->tick.data = s;
    return s;
}

void fm_sentinel_start(fm_sentinel *s)
{
    s->watch_idx = s->order[0];
    watch_open(s);
    uv_timer_start(&s->tick, on_tick, FM_SENTINEL_CHECK_MS, FM_SENTINEL_CHECK_MS);
}

void fm_sentinel_set_config(fm_sentinel *s, const fm_config *cfg)
{
    s->cfg = cfg;
}

static void gone(fm_sentinel *s)
{
    if (--s->open == 0)
        free(s);
}

static void on_gone(fm_sconn *c)
{
    gone(c->data);
}

static void on_tick_closed(uv_handle_t *h)
{
    gone(h->data);
}

void fm_sentinel_free(fm_sentinel *s)
{
    if (s == NULL)
        return;
    assert(fm_list_empty(&s->waiting));
    /* Released handles call back from the loop, never from within. */
    s->open = fm_sconn_release(&s->watch, on_gone) + 1;
    for (size_t i = 0; i < s->cfg->nsentinels; i++)
        s->open += fm_sconn_release(&s->conn[i], on_gone);
    uv_close((uv_handle_t *)&s->tick, on_tick_closed);
}
