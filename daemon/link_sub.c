/* link_sub.c -- the pub/sub channel set, kept subscribed across reconnects.
 *
 * hiredis 0.14 treats an error reply on a subscribed connection as fatal
 * and drops the connection; a Redis whose ACL forbids a channel answers
 * SUBSCRIBE with NOPERM. Resubscribing after such a drop would flap the
 * link for every subscriber, dozens of times a second, because one client
 * asked for one channel. So a channel new to the link is first put to the
 * ACL on the command connection (redis.acl_check_cmd, Redis 7), and only a
 * channel found allowed reaches the pub/sub connection. Should the ACL
 * change in between, the NOPERM that drops the connection names no
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

static channel *find_channel(fm_link *link, const char *name, size_t len)
{
    fm_map_node *n = fm_map_find(&link->channels, name, len);

    return n != NULL ? fm_map_entry(n, channel, node) : NULL;
}

static void drop_channel(fm_link *link, channel *ch)
{
    fm_map_remove(&link->channels, &ch->node);
    free(ch);
}

/* Drops the channel and tells its owner, the name still at hand: off the
 * map first, so that nothing the owner does finds it. */
static void refuse(fm_link *link, channel *ch, const char *why)
{
    fm_map_remove(&link->channels, &ch->node);
    link->stats.refused++;
    fm_log_limited(FM_LOG_WARN, "redis: not subscribing to %.*s: %s", (int)ch->len, ch->name, why);
    if (link->sub.refused != NULL)
        link->sub.refused(ch->name, ch->len, why, link->sub.arg);
    free(ch);
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
    if (strcmp(kind->str, "message") == 0) {
        redisReply *payload = reply->element[2];
        if (payload->type == REDIS_REPLY_STRING && link->sub.message)
            link->sub.message(name->str, (size_t)name->len, payload->str,
                              (size_t)payload->len, link->sub.arg);
        return;
    }
    ch = find_channel(link, name->str, (size_t)name->len);
    if (ch == NULL)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        ch->state = CH_SUBSCRIBED;
        /* Nobody wants it any more: it was let go while its SUBSCRIBE
         * was on the way. */
        if (!ch->wanted) {
            fm_link_unsubscribe(link, ch->name, ch->len);
            return;
        }
        if (link->sub.subscribed)
            link->sub.subscribed(ch->name, ch->len, link->sub.arg);
    } else if (strcmp(kind->str, "unsubscribe") == 0) {
        ch->state = CH_NONE;
        /* Wanted again while the UNSUBSCRIBE was in flight: hiredis dropped
         * the callback with the unsubscribe, so subscribe anew only now. */
        if (ch->wanted)
            fm_link_sub_ready_hook(link);
        else
            drop_channel(link, ch);
    }
}

static int sub_send(fm_link *link, channel *ch, const char *verb)
{
    const char *argv[2] = {verb, ch->name};
    size_t lens[2] = {strlen(verb), ch->len};

    return redisAsyncCommandArgv(link->ctx[CTX_SUB].ac, on_sub_reply, link, 2, argv, lens) ==
           REDIS_OK ? 0 : -1;
}

void fm_link_sub_ready_hook(fm_link *link)
{
    if (link->ctx[CTX_SUB].state != ST_READY)
        return;
    for (fm_map_node *n = fm_map_first(&link->channels); n != NULL;
         n = fm_map_after(&link->channels, n)) {
        channel *ch = fm_map_entry(n, channel, node);

        if (ch->wanted && ch->allowed && ch->state == CH_NONE &&
            sub_send(link, ch, "SUBSCRIBE") == 0) {
            ch->state = CH_SUBSCRIBING;
            ch->sent_seq = ++link->sub_seq;
        }
    }
}

static void on_probe(fm_link_status status, redisReply *reply, void *arg)
{
    channel *ch = arg;
    fm_link *link = ch->link;

    ch->state = CH_NONE;
    if (link->closing)
        return;
    if (!ch->wanted) {
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
    fm_link_sub_ready_hook(link);
}

static void probe(fm_link *link, channel *ch)
{
    const char *argv[] = {ch->name};

    if (fm_link_script(link, NULL, &link->sub_probe, 0, 1, argv, &ch->len, on_probe, ch) != NULL)
        ch->state = CH_PROBING;
}

void fm_link_cmd_ready_hook(fm_link *link)
{
    for (fm_map_node *n = fm_map_first(&link->channels); n != NULL;
         n = fm_map_after(&link->channels, n)) {
        channel *ch = fm_map_entry(n, channel, node);

        if (ch->wanted && !ch->allowed && ch->state == CH_NONE)
            probe(link, ch);
    }
}

int fm_link_subscribe(fm_link *link, const char *name, size_t len)
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
    ch->wanted = 1;
    if (ch->state == CH_SUBSCRIBED)
        return 1;
    if (!ch->allowed && ch->state == CH_NONE)
        probe(link, ch);
    else
        fm_link_sub_ready_hook(link);
    return 0;
}

int fm_link_unsubscribe(fm_link *link, const char *name, size_t len)
{
    channel *ch = find_channel(link, name, len);

    if (ch == NULL)
        return 0;
    ch->wanted = 0;
    if (ch->state == CH_NONE) {
        drop_channel(link, ch);
        return 0;
    }
    if (ch->state == CH_SUBSCRIBED && link->ctx[CTX_SUB].state == ST_READY &&
        sub_send(link, ch, "UNSUBSCRIBE") == 0)
        ch->state = CH_UNSUBSCRIBING;
    return 0;
}

void fm_link_sub_lost(fm_link *link, const char *why)
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
    for (n = fm_map_first(&link->channels); n != NULL; n = next) {
        channel *ch = fm_map_entry(n, channel, node);

        next = fm_map_after(&link->channels, n);
        if (ch->state == CH_PROBING)
            continue;
        ch->state = CH_NONE;
        if (!ch->wanted)
            drop_channel(link, ch);
    }
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
