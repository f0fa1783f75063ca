/* notify.c -- sd_notify(3)'s datagram protocol, spoken directly: linking
 * libsystemd for a sendto(2) would make the build need it where systemd is
 * absent. One non-blocking datagram socket serves every message; a full
 * receive queue or a manager that went away costs the message, never a
 * stall of the loop. The watchdog's keep-alive runs from a timer of the
 * loop at half the interval the manager asked for (as sd_watchdog_enabled
 * advises), so a loop that stops turning stops the keep-alives. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"

/* A variable holding a positive decimal number, or 0. */
static unsigned long long env_number(const char *name)
{
    const char *v = getenv(name);
    unsigned long long x;
    char *end;

    if (v == NULL || *v < '0' || *v > '9')
        return 0;
    errno = 0;
    x = strtoull(v, &end, 10);
    return errno == 0 && *end == '\0' ? x : 0;
}

static void on_watchdog(uv_timer_t *t)
{
    fm_notify_send(t->data, "WATCHDOG=1");
}

/* WATCHDOG_PID, when set, names the process the watchdog is meant for: a
 * child that inherited the variables must not answer for its parent. */
static void start_watchdog(fm_notify *n, uv_loop_t *loop)
{
    unsigned long long usec = env_number("WATCHDOG_USEC");
    uint64_t every_ms;

    if (usec == 0)
        return;
    if (getenv("WATCHDOG_PID") != NULL && env_number("WATCHDOG_PID") != (unsigned long long)getpid()) {
        fm_log_info("notify: WATCHDOG_PID is another process's; no watchdog");
        return;
    }
    every_ms = usec / 2000 > 0 ? usec / 2000 : 1;
    uv_timer_init(loop, &n->watchdog);
    n->watchdog.data = n;
    uv_timer_start(&n->watchdog, on_watchdog, every_ms, every_ms);
    n->watching = 1;
    fm_log_info("notify: watchdog keep-alive every %llu ms", (unsigned long long)every_ms);
}

/* A path, or '@' for a name in the abstract namespace (a leading NUL). */
static int set_address(fm_notify *n, const char *where)
{
    size_t len = strlen(where);

    if (len < 2 || len > sizeof(n->addr.sun_path) || (where[0] != '/' && where[0] != '@'))
        return -1;
    if (where[0] == '/' && len == sizeof(n->addr.sun_path))
        return -1;              /* no room left for the path's NUL */
    memset(&n->addr, 0, sizeof(n->addr));
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, where, len);
    if (where[0] == '@')
        n->addr.sun_path[0] = '\0';
    /* An abstract name is exactly its bytes: no NUL counts after it. */
    n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (where[0] == '/'));
    return 0;
}

void fm_notify_open(fm_notify *n, uv_loop_t *loop)
{
    const char *where = getenv("NOTIFY_SOCKET");

    n->fd = -1;
    n->logged = 0;
    n->watching = 0;
    if (where == NULL || *where == '\0')
        return;
    if (set_address(n, where) != 0) {
        fm_log_warn("notify: NOTIFY_SOCKET \"%s\" is not a socket path or @name; "
                    "not notifying", where);
        return;
    }
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (n->fd < 0) {
        fm_log_warn("notify: socket: %s; not notifying", strerror(errno));
        return;
    }
    start_watchdog(n, loop);
}

void fm_notify_send(fm_notify *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int len;

    if (n->fd < 0)
        return;
    va_start(ap, fmt);
    len = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof(msg))
        len = (int)sizeof(msg) - 1;     /* a STATUS= line cut short */
    if (sendto(n->fd, msg, (size_t)len, MSG_NOSIGNAL, (struct sockaddr *)&n->addr,
               n->addrlen) >= 0 || n->logged)
        return;
    n->logged = 1;
    fm_log_warn("notify: sending to NOTIFY_SOCKET: %s (further failures not logged)",
                strerror(errno));
}

void fm_notify_close(fm_notify *n)
{
    if (n->watching) {
        n->watching = 0;
        uv_close((uv_handle_t *)&n->watchdog, NULL);
    }
    if (n->fd >= 0) {
        close(n->fd);
        n->fd = -1;
    }
}
