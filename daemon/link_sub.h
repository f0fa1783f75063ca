/* link_sub.h -- pub/sub channels on the Redis link.
 *
 * A service registers a listener once and then uses channels: the link
 * counts each listener's uses of each channel, keeps a channel subscribed
 * while anyone uses it, restores it after every reconnect, and hands each
 * message to the listeners that use its channel. What hiredis 0.14 needs
 * of a subscribed connection (never zero channels, no error reply) is the
 * link's business alone (link_sub.c). */
#ifndef FM_LINK_SUB_H
#define FM_LINK_SUB_H

#include <stddef.h>

#include "link_cmd.h"

#define FM_LINK_LISTENERS 4

typedef struct fm_link_listener {
    void (*message)(const char *channel, size_t clen, const char *payload, size_t plen,
                    void *arg);
    /* A message whose payload is not a string: Redis's own (tracking
     * invalidations: an array of keys, or nil). May be NULL. */
    void (*message_reply)(const char *channel, size_t clen, const redisReply *payload,
                          void *arg);
    /* Redis confirmed the channel (again, after a reconnect). */
    void (*subscribed)(const char *channel, size_t clen, void *arg);
    /* Redis will not have the channel (its ACL forbids it to this user):
     * the link has dropped every use of it. */
    void (*refused)(const char *channel, size_t clen, const char *why, void *arg);
    void (*down)(void *arg);    /* the pub/sub connection was lost */
    void *arg;
} fm_link_listener;

/* Returns the listener's number for fm_link_subscribe(), or -1 when
 * FM_LINK_LISTENERS are registered. The listener is copied. */
int fm_link_listen(fm_link *link, const fm_link_listener *l);

/* One more use of the channel by listener `who`. A channel new to the link
 * is first checked against the Redis user's ACL on the command connection.
 * Returns 1 when the channel is subscribed already (nothing more is
 * reported for this use), 0 when `subscribed` or `refused` will follow,
 * -1 out of memory. */
int fm_link_subscribe(fm_link *link, int who, const char *channel, size_t len);
/* One use fewer; the link unsubscribes when nobody uses the channel. */
void fm_link_unsubscribe(fm_link *link, int who, const char *channel, size_t len);
/* Whether Redis has confirmed the channel (and no UNSUBSCRIBE is out). */
int fm_link_subscribed(fm_link *link, const char *channel, size_t len);

#endif
