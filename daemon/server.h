/* server.h -- the daemon itself: the listening socket, signals, reload and
 * shutdown, around the core (core.h) its services plug into. */
#ifndef FM_SERVER_H
#define FM_SERVER_H

#include <uv.h>

#include "config.h"
#include "core.h"
#include "listen.h"
#include "notify.h"
#include "tls.h"

typedef struct fm_server {
    uv_loop_t *loop;
    fm_config *cfg;
    fm_config_args args;
    fm_tls *tls;                /* with rediss:// only */
    fm_core core;
    fm_listener listener;
    fm_notify notify;
    uv_prepare_t flusher;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t shutdown_timer;
    int phase;                  /* RUNNING, DRAINING, CLOSING, STOPPED */
} fm_server;

/* Listens (bound or handed over: listen.h), plugs the services in and starts the link;
 * srv->loop, srv->cfg and (with rediss://) srv->tls are set. */
int fm_server_start(fm_server *srv);
/* Frees what the server owns once the loop has stopped. */
void fm_server_free(fm_server *srv);

#endif
