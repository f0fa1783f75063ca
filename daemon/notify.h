/* notify.h -- telling the service manager how the daemon is doing, with the
 * notify protocol of sd_notify(3) and without libsystemd: one datagram of
 * "NAME=value" lines per message to $NOTIFY_SOCKET, and the watchdog's
 * keep-alive when $WATCHDOG_USEC asks for one. Without NOTIFY_SOCKET every
 * call does nothing. Nothing here is ever fatal: a message that cannot go
 * is dropped, and the first failure is logged. */
#ifndef FM_NOTIFY_H
#define FM_NOTIFY_H

#include <sys/socket.h>
#include <sys/un.h>

#include <uv.h>

typedef struct fm_notify {
    int fd;                     /* -1: nobody to tell */
    struct sockaddr_un addr;
    socklen_t addrlen;
    int logged;                 /* a failure was logged: no more of them */
    uv_timer_t watchdog;
    int watching;               /* the timer was set up (and must be closed) */
} fm_notify;

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (and leaves them in
 * the environment, as sd_notify does by default); starts the watchdog's
 * timer on loop when the watchdog is meant for this process. */
void fm_notify_open(fm_notify *n, uv_loop_t *loop);
/* Sends one message; fmt makes its "NAME=value" lines. */
void fm_notify_send(fm_notify *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Stops the watchdog (its handle closes with the loop's next turn) and
 * closes the socket. */
void fm_notify_close(fm_notify *n);

#endif
