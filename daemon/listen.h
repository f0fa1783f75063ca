/* listen.h -- the daemon's listening socket: bound at the configured path,
 * or handed over by the service manager (socket activation). */
#ifndef FM_LISTEN_H
#define FM_LISTEN_H

#include <sys/un.h>

#include <uv.h>

#include "config.h"

typedef struct fm_listener {
    uv_pipe_t pipe;             /* pipe.data is the caller's */
    int open;
    int handed;                 /* the manager's socket: its path is not ours */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} fm_listener;

/* Serves on the socket the service manager passed, when LISTEN_PID and
 * LISTEN_FDS say it passed one to this process (fd 3, which must be a
 * listening AF_UNIX stream socket); else clears a stale socket at
 * cfg->socket and binds one there with cfg->socket_mode. cb gets every
 * connection, with pipe.data set to data. 0, or -1 (logged). */
int fm_listener_start(fm_listener *l, uv_loop_t *loop, const fm_config *cfg,
                      uv_connection_cb cb, void *data);
/* Closes the socket; unlinks its path when the daemon bound it. */
void fm_listener_stop(fm_listener *l);

#endif
