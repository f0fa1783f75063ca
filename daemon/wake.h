/* wake.h -- the wake service: signal, signal_many, subscribe, unsubscribe,
 * delivery of wakes to local subscribers, and Redis link events for them. */
#ifndef FM_WAKE_H
#define FM_WAKE_H

#include "server.h"

fm_wake_service *fm_wake_service_create(fm_server *srv);
void fm_wake_service_free(fm_wake_service *ws);
/* What the pub/sub link reports, routed here by the server. */
void fm_wake_message(fm_wake_service *ws, const char *channel, size_t clen,
                     const char *payload, size_t plen);
void fm_wake_subscribed(fm_wake_service *ws, const char *channel, size_t clen);
void fm_wake_link_down(fm_wake_service *ws);
/* Redis will not have this channel (its ACL forbids it): waiting subscribes
 * fail with redis_error, and the channel's subscribers are dropped. */
void fm_wake_refused(fm_wake_service *ws, const char *channel, size_t clen, const char *why);
/* Drops every subscription of a connection that is closing. */
void fm_wake_conn_closed(fm_wake_service *ws, fm_conn *conn);

#endif
