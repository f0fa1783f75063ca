/* link_sub.c -- the pub/sub channel set, kept subscribed across reconnects.
 *
 * Each channel counts its uses by each listener; messages, confirmations
 * and refusals go to the listeners that use it. Two things hiredis 0.14
 * needs of a subscribed connection are kept here and nowhere else.
 *
 * Never zero channels: UNSUBSCRIBE of the last channel followed by a
 * SUBSCRIBE crashes it. So the last live channel is never unsubscribed; it
 * stays, unused ("parked"), until another channel is confirmed.
 *
 * No error reply: hiredis treats one on a subscribed connection as fatal
 * and drops the connection, and a Redis whose ACL forbids a channel
 * answers SUBSCRIBE with NOPERM. Resubscribing after such a drop would flap
 * the link for every subscriber, dozens of times a second, because one
 * client asked for one channel. So a channel new to the link is first put
 * to the ACL on the command connection (redis.acl_check_cmd, Redis 7), and
 * only a channel found allowed reaches the pub/sub connection. Should the
 * ACL change in between, the NOPERM that drops the connection names no
 * channel; replies come in order, so it belongs to the oldest SUBSCRIBE
 * not yet confirmed, and that channel is refused rather than tried again.
 *
 *   NONE --probe--> PROBING --allowed--> NONE --> SUBSCRIBING --> SUBSCRIBED
 *                      |                                            |
 *                   refused: dropped                         UNSUBSCRIBING */
#include <stdlib.h>
#include <string.h>

#include "link_int.h"
#include "log.h"
#include "scripts.h"

#define REFUSED_MSG "NOPERM: the Redis user's ACL does not allow this channel"

static int is_live(ch_state st)
{
    return st == CH_SUBSCRIBING || st == CH_SUBSCRIBED;
}

static void set_state(fm_link *link, channel *ch, ch_state st)
{
    link->live += (size_t)is_live(st) - (size_t)is_live(ch->state);
    ch->state = st;
}

static channel *find_channel(fm_link *link, const char *name, size_t len)
{
    fm_map_node *n = fm_map_find(&link->channels, name, len);

    return n != NULL ? fm_map_entry(n, channel, node) : NULL;
}

static void drop_channel(fm_link *link, channel *ch)
{
    set_state(link, ch, CH_NONE);
    if (link->parked == ch)
        link->parked = NULL;
    fm_map_remove(&link->channels, &ch->node);
    free(ch);
}

/* Drops the channel and tells its listeners, the name still at hand: off
 * the map first, so that nothing a listener does finds it. */
static void refuse(fm_link *link, channel *ch, const char *why)
{
    set_state(link, ch, CH_NONE);
    fm_map_remove(&link->channels, &ch->node);
    link->counts.refused++;
    fm_log_limited(FM_LOG_WARN, "redis: not subscribing to %.*s: %s", (int)ch->len, ch->name, why);
    for (int who = 0; who < link->nlisteners; who++)
        if (ch->uses[who] > 0 && link->listeners[who].refused != NULL)
            link->listeners[who].refused(ch->name, ch->len, why, link->listeners[who].arg);
    free(ch);
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata);

static int sub_send(fm_link *link, channel *ch, const char *verb)
{
    const char *argv[2] = {verb, ch->name};
    size_t lens[2] = {strlen(verb), ch->len};

    return redisAsyncCommandArgv(link->ctx[CTX_SUB].ac, on_sub_reply, link, 2, argv, lens) ==
           REDIS_OK ? 0 : -1;
}

/* Nobody uses the channel any more. */
static void release(fm_link *link, channel *ch)
{
    switch (ch->state) {
    case CH_NONE:
        drop_channel(link, ch);
        break;
    case CH_SUBSCRIBED:
        if (link->live < 2) {
            link->parked = ch;
            break;
        }
        if (link->ctx[CTX_SUB].state == ST_READY && sub_send(link, ch, "UNSUBSCRIBE") == 0) {
            if (link->parked == ch)
                link->parked = NULL;
            set_state(link, ch, CH_UNSUBSCRIBING);
        }
        break;
    default:
        /* A probe or a command is out: its answer looks again. */
        break;
    }
}

static void confirmed(fm_link *link, channel *ch)
{
    set_state(link, ch, CH_SUBSCRIBED);
    if (ch->nuses == 0) {
        release(link, ch);
        return;
    }
    if (link->parked != NULL && link->parked != ch)
        release(link, link->parked);
    for (int who = 0; who < link->nlisteners; who++)
        if (ch->uses[who] > 0 && link->listeners[who].subscribed != NULL)
            link->listeners[who].subscribed(ch->name, ch->len, link->listeners[who].arg);
}

static void deliver(fm_link *link, channel *ch, const redisReply *payload)
{
    for (int who = 0; who < link->nlisteners; who++) {
        const fm_link_listener *l = &link->listeners[who];

        if (ch->uses[who] == 0)
            continue;
        if (payload->type == REDIS_REPLY_STRING && l->message != NULL)
            l->message(ch->name, ch->len, payload->str, (size_t)payload->len, l->arg);
        else if (payload->type != REDIS_REPLY_STRING && l->message_reply != NULL)
            l->message_reply(ch->name, ch->len, payload, l->arg);
    }
}

static void on_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    fm_link *link = privdata;
    redisReply *reply = r, *kind, *name;
    channel *ch;

    if (reply == NULL || link->closing)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        fm_log_warn("redis pub/sub: unexpected reply type %d", reply->type);
        return;
    }
    kind = reply->element[0];
    name = reply->element[1];
    ch = find_channel(link, name->str, (size_t)name->len);
    if (ch == NULL)
        return;
    if (strcmp(kind->str, "message") == 0) {
        deliver(link, ch, reply->element[2]);
    } else if (strcmp(kind->str, "subscribe") == 0) {
        confirmed(link, ch);
    } else if (strcmp(kind->str, "unsubscribe") == 0) {
        set_state(link, ch, CH_NONE);
        /* Used again while the UNSUBSCRIBE was in flight: hiredis dropped
         * the callback with the unsubscribe, so subscribe anew only now. */
        if (ch->nuses > 0)
            fm_link_subscribe_all(link);
        else
            drop_channel(link, ch);
    }
}

void fm_link_subscribe_all(fm_link *link)
{
    if (link->ctx[CTX_SUB].state != ST_READY)
        return;
    for (fm_map_node *n = fm_map_first(&link->channels); n != NULL;
         n = fm_map_after(&link->channels, n)) {
        channel *ch = fm_map_entry(n, channel, node);

        if (ch->nuses > 0 && ch->allowed && ch->state == CH_NONE &&
            sub_send(link, ch, "SUBSCRIBE") == 0) {
            set_state(link, ch, CH_SUBSCRIBING);
            ch->sent_seq = ++link->sub_seq;
        }
    }
}

static void on_probe(fm_link_status status, redisReply *reply, void *arg)
{
    channel *ch = arg;
    fm_link *link = ch->link;

    set_state(link, ch, CH_NONE);
    if (link->closing)
        return;
    if (ch->nuses == 0) {
        drop_channel(link, ch);
        return;
    }
    /* The command link went: the probe is sent again when it is back. */
    if (status != FM_LINK_OK)
        return;
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        refuse(link, ch, REFUSED_MSG);
        return;
    }
    /* Allowed, or the server cannot tell (no ACL scripting API): the
     * SUBSCRIBE shows, and the classification of a NOPERM drop keeps that
     * from flapping. */
    ch->allowed = 1;
    fm_link_subscribe_all(link);
}

static void probe(fm_link *link, channel *ch)
{
    const char *argv[] = {ch->name};

    if (fm_link_script(link, NULL, &link->sub_probe, 0, 0, 1, argv, &ch->len, on_probe, ch) != NULL)
        ch->state = CH_PROBING;
}

void fm_link_probe_ready(fm_link *link)
{
    for (fm_map_node *n = fm_map_first(&link->channels); n != NULL;
         n = fm_map_after(&link->channels, n)) {
        channel *ch = fm_map_entry(n, channel, node);

        if (ch->nuses > 0 && !ch->allowed && ch->state == CH_NONE)
            probe(link, ch);
    }
}

int fm_link_listen(fm_link *link, const fm_link_listener *l)
{
    if (link->nlisteners == FM_LINK_LISTENERS)
        return -1;
    link->listeners[link->nlisteners] = *l;
    return link->nlisteners++;
}

int fm_link_subscribe(fm_link *link, int who, const char *name, size_t len)
{
    channel *ch = find_channel(link, name, len);

    if (ch == NULL) {
        ch = calloc(1, sizeof(*ch) + len + 1);
        if (ch == NULL)
            return -1;
        memcpy(ch->name, name, len);
        ch->len = len;
        ch->link = link;
        if (fm_map_insert(&link->channels, &ch->node, ch->name, len) != 0) {
            free(ch);
            return -1;
        }
    }
    ch->uses[who]++;
    ch->nuses++;
    if (link->parked == ch)
        link->parked = NULL;
    if (ch->state == CH_SUBSCRIBED)
        return 1;
    if (!ch->allowed && ch->state == CH_NONE)
        probe(link, ch);
    else
        fm_link_subscribe_all(link);
    return 0;
}

void fm_link_unsubscribe(fm_link *link, int who, const char *name, size_t len)
{
    channel *ch = find_channel(link, name, len);

    if (ch == NULL || ch->uses[who] == 0)
        return;
    ch->uses[who]--;
    if (--ch->nuses == 0)
        release(link, ch);
}

int fm_link_subscribed(fm_link *link, const char *name, size_t len)
{
    channel *ch = find_channel(link, name, len);

    return ch != NULL && ch->state == CH_SUBSCRIBED;
}

void fm_link_sub_lost(fm_link *link, const char *why, int was_ready)
{
    channel *culprit = NULL;
    fm_map_node *n, *next;

    for (n = fm_map_first(&link->channels); n != NULL; n = fm_map_after(&link->channels, n)) {
        channel *ch = fm_map_entry(n, channel, node);

        if (ch->state == CH_SUBSCRIBING &&
            (culprit == NULL || ch->sent_seq < culprit->sent_seq))
            culprit = ch;
    }
    if (culprit != NULL && strncmp(why, "NOPERM", 6) == 0)
        refuse(link, culprit, why);
    /* A probe is on the command connection, and comes back by itself. */
    link->parked = NULL;
    for (n = fm_map_first(&link->channels); n != NULL; n = next) {
        channel *ch = fm_map_entry(n, channel, node);

        next = fm_map_after(&link->channels, n);
        if (ch->state == CH_PROBING)
            continue;
        set_state(link, ch, CH_NONE);
        if (ch->nuses == 0)
            drop_channel(link, ch);
    }
    if (!was_ready)
        return;
    for (int who = 0; who < link->nlisteners; who++)
        if (link->listeners[who].down != NULL)
            link->listeners[who].down(link->listeners[who].arg);
}

int fm_link_sub_again(fm_link *link, const char *name, size_t len)
{
    channel *ch = find_channel(link, name, len);

    if (ch == NULL || ch->state != CH_SUBSCRIBED || link->ctx[CTX_SUB].state != ST_READY)
        return -1;
    return sub_send(link, ch, "SUBSCRIBE");
}

int fm_link_sub_init(fm_link *link)
{
    link->sub_probe = (fm_script){.name = "sub_probe", .body = fm_lua_sub_probe};
    return fm_link_register_script(link, &link->sub_probe);
}

void fm_link_sub_free(fm_link *link)
{
    fm_map_node *n;

    while ((n = fm_map_first(&link->channels)) != NULL)
        drop_channel(link, fm_map_entry(n, channel, node));
}
