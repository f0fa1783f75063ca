/* sentinel.c -- asking the sentinels for the master, and watching them for
 * switches (see sentinel.h).
 *
 * Two connections of fm_sconn: `ask`, which a round opens to one sentinel
 * after another until one names the master, and `watch`, which stays
 * subscribed. order[] is the order of asking: the sentinel that answered
 * last, or announced the last switch, goes to its front. A sentinel's
 * failure is logged once, and its recovery once. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sentinel.h"
#include "sentinel_conn.h"

struct fm_sentinel {
    uv_loop_t *loop;
    const fm_config *cfg;
    size_t order[FM_SENTINELS_MAX];
    int down[FM_SENTINELS_MAX];     /* its failure is logged, its recovery not yet */
    fm_list waiting;                /* fm_sentinel_waiter */
    fm_sconn ask;
    size_t ask_idx;                 /* the sentinel being asked */
    size_t tried;                   /* places of order[] asked this round */
    int asking;                     /* a round runs */
    int again;                      /* a switch came during the round: ask again */
    int checking;                   /* the round looks for a switch the watcher missed */
    char why[200];                  /* the round's most telling failure */
    int why_answered;
    fm_sconn watch;
    size_t watch_idx;
    int watch_attempt;
    int watch_logged;               /* its failure is logged */
    char master[FM_SENTINEL_HOST_MAX];  /* the master last named; "" none yet */
    int master_port;
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

/* Answers everyone who asked, with host:port or, host NULL, with why. The
 * answers may ask again, for a round of their own. */
static void round_end(fm_sentinel *s, const char *host, int port)
{
    int missed;
    fm_list answered;
    char why[sizeof(s->why) + 64];

    s->asking = 0;
    if (s->again) {
        round_start(s);
        return;
    }
    missed = host != NULL && s->checking && s->master[0] != '\0' && !is_master(s, host, port);
    s->checking = 0;
    if (host != NULL)
        set_master(s, host, port);
    snprintf(why, sizeof(why), "no sentinel named the master \"%s\": %s",
             s->cfg->redis_sentinel_master, s->why);
    fm_list_init(&answered);
    while (!fm_list_empty(&s->waiting)) {
        fm_list *n = s->waiting.next;

        fm_list_remove(n);
        fm_list_push_back(&answered, n);
    }
    while (!fm_list_empty(&answered)) {
        fm_sentinel_waiter *ask = fm_list_entry(answered.next, fm_sentinel_waiter, in_waiting);

        fm_list_remove(&ask->in_waiting);
        ask->fn(ask, host != NULL ? s->master : NULL, s->master_port, host != NULL ? NULL : why);
    }
    if (missed) {
        fm_log_info("sentinel: the master \"%s\" is at %s:%d now", s->cfg->redis_sentinel_master,
                    s->master, s->master_port);
        s->on_switch(s->master, s->master_port, "the sentinels name another master", s->arg);
    }
}

static void round_next(fm_sentinel *s)
{
    if (s->tried == s->cfg->nsentinels) {
        round_end(s, NULL, 0);
        return;
    }
    s->ask_idx = s->order[s->tried++];
    fm_sconn_open(&s->ask, addr_of(s, s->ask_idx), s->cfg->redis_sentinel_password, ask_ms(s));
}

static void round_start(fm_sentinel *s)
{
    s->asking = 1;
    s->again = 0;
    s->tried = 0;
    s->why[0] = '\0';
    s->why_answered = 0;
    round_next(s);
}

static void ask_fail(fm_sconn *c, const char *why, int answered)
{
    fm_sentinel *s = c->data;
    const fm_redis_addr *a = addr_of(s, s->ask_idx);

    note_down(s, s->ask_idx, why);
    /* A sentinel's own refusal (a wrong password, an unknown master) says
     * more than one out of reach. */
    if (s->why[0] == '\0' || (answered && !s->why_answered)) {
        snprintf(s->why, sizeof(s->why), "%s:%d %s", a->host, a->port, shown(s, why));
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
    to_front(s, s->ask_idx);
    fm_sconn_close(c);
    round_end(s, host, (int)port);
}

static void ask_up(fm_sconn *c)
{
    fm_sentinel *s = c->data;

    if (redisAsyncCommand(c->ac, on_master, NULL, "SENTINEL get-master-addr-by-name %s",
                          s->cfg->redis_sentinel_master) != REDIS_OK)
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
    /* It has decided the switch: ask it first, and ask again whatever a
     * round running now would answer. */
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
        s->watch_attempt = 0;
        if (s->watch_logged)
            fm_log_info("sentinel %s:%d: watching it for failovers", addr_of(s, s->watch_idx)->host,
                        addr_of(s, s->watch_idx)->port);
        s->watch_logged = 0;
        /* A switch may have come while nobody watched. */
        s->checking = 1;
        if (!s->asking)
            round_start(s);
    } else if (strcmp(reply->element[0]->str, "message") == 0 &&
               reply->element[2]->type == REDIS_REPLY_STRING) {
        on_switch_message(s, reply->element[2]->str);
    }
}

static void watch_up(fm_sconn *c)
{
    if (redisAsyncCommand(c->ac, on_watch_reply, NULL, "SUBSCRIBE +switch-master") != REDIS_OK)
        fm_sconn_fail(c, "could not send SUBSCRIBE", 0);
}

/* ---- life ---- */

fm_sentinel *fm_sentinel_create(uv_loop_t *loop, const fm_config *cfg,
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
    for (size_t i = 0; i < cfg->nsentinels; i++)
        s->order[i] = i;
    fm_list_init(&s->waiting);
    fm_sconn_init(&s->ask, loop, s);
    s->ask.on_up = ask_up;
    s->ask.on_fail = ask_fail;
    fm_sconn_init(&s->watch, loop, s);
    s->watch.on_up = watch_up;
    s->watch.on_fail = watch_fail;
    return s;
}

void fm_sentinel_start(fm_sentinel *s)
{
    s->watch_idx = s->order[0];
    watch_open(s);
}

void fm_sentinel_set_config(fm_sentinel *s, const fm_config *cfg)
{
    s->cfg = cfg;
}

static void on_gone(fm_sconn *c)
{
    fm_sentinel *s = c->data;

    if (--s->open == 0)
        free(s);
}

void fm_sentinel_free(fm_sentinel *s)
{
    if (s == NULL)
        return;
    assert(fm_list_empty(&s->waiting));
    /* Released handles call back from the loop, never from within. */
    s->open = fm_sconn_release(&s->ask, on_gone) + fm_sconn_release(&s->watch, on_gone);
}
