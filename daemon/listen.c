/* listen.c -- the listening socket, bound by the daemon or handed over by
 * the service manager.
 *
 * Socket activation follows sd_listen_fds(3) without libsystemd: when
 * LISTEN_PID is this process and LISTEN_FDS is at least 1, the first
 * socket is fd 3. It must be a listening AF_UNIX stream socket, or the
 * start fails: serving a socket of the wrong kind would fail every worker
 * later and less clearly. The manager made that socket (its path, mode and
 * owner are the unit's), so the daemon skips the stale-socket check and
 * never unlinks it: workers that connect while the daemon restarts wait in
 * the kernel's queue instead of being refused. socket_mode and socket_group
 * are the unit's business then too (SocketMode=, SocketGroup=). The
 * variables stay in the environment, as sd_listen_fds(0) leaves them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"

#define HANDED_FD 3             /* SD_LISTEN_FDS_START */

/* A socket file left by a dead daemon is removed; one that answers belongs
 * to a live daemon, and we must not steal it. */
static int clear_stale_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) {
        fm_log_error("%s exists and is not a socket; not touching it", path);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (rc == 0) {
        fm_log_error("another daemon is answering on %s; not starting", path);
        return -1;
    }
    if (unlink(path) != 0) {
        fm_log_error("removing stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    fm_log_info("removed stale socket %s", path);
    return 0;
}

/* Gives the bound socket to socket_group. lchown(2), not chown(2): like
 * the mode (below), the group must not follow a symlink put at the path
 * after the bind. Without root (CAP_CHOWN) the kernel allows only a group
 * the daemon's user is a member of: EPERM says that. */
static int give_group(const char *path, gid_t gid, const char *group)
{
    if (lchown(path, (uid_t)-1, gid) == 0)
        return 0;
    if (errno == EPERM)
        fm_log_error("socket_group: cannot give %s to group %s: the daemon's user is "
                     "neither a member of it nor privileged (root with CAP_CHOWN)", path, group);
    else
        fm_log_error("socket_group: cannot give %s to group %s: %s", path, group, strerror(errno));
    return -1;
}

static int bind_socket(fm_listener *l, const fm_config *cfg)
{
    mode_t old_umask;
    char err[512];
    gid_t gid;
    int rc, grouped;

    /* Resolved before anything is touched, so a bad group leaves the path
     * alone; getgrnam(3) may block, which is fine before the loop runs. */
    grouped = fm_config_socket_gid(cfg, &gid, err, sizeof(err));
    if (grouped < 0) {
        fm_log_error("%s", err);
        return -1;
    }
    if (clear_stale_socket(cfg->socket) != 0)
        return -1;
    /* The socket is born with its mode: bind(2) applies the umask to 0777.
     * A chmod(2) after it would follow a symlink put at the path between
     * the two. Nothing else runs meanwhile to meet this umask (one thread;
     * libuv's pool creates no files). */
    old_umask = umask(~(mode_t)cfg->socket_mode & 0777);
    rc = uv_pipe_bind(&l->pipe, cfg->socket);
    umask(old_umask);
    if (rc != 0) {
        fm_log_error("binding %s: %s", cfg->socket, uv_strerror(rc));
        return -1;
    }
    if (grouped == 0 && give_group(cfg->socket, gid, cfg->socket_group) != 0) {
        unlink(cfg->socket);
        return -1;
    }
    snprintf(l->path, sizeof(l->path), "%s", cfg->socket);
    return 0;
}

/* Whether the manager passed this process a socket (variables inherited
 * from another process do not count). */
static int handed_over(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    char *end;
    long n;

    if (pid == NULL || fds == NULL)
        return 0;
    errno = 0;
    if (strtol(pid, &end, 10) != (long)getpid() || *end != '\0' || errno != 0) {
        fm_log_info("LISTEN_PID %s is not this process; binding a socket of its own", pid);
        return 0;
    }
    errno = 0;
    n = strtol(fds, &end, 10);
    if (*end != '\0' || errno != 0 || n < 1) {
        fm_log_warn("LISTEN_FDS \"%s\" passes no socket; binding a socket of its own", fds);
        return 0;
    }
    if (n > 1)
        fm_log_warn("the service manager passed %ld sockets; serving the first, fd 3", n);
    return 1;
}

/* The check sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) makes. */
static const char *unfit_reason(int fd, struct sockaddr_un *sa)
{
    socklen_t len = sizeof(int), salen = sizeof(*sa);
    int type = 0, listening = 0;

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
        return errno == ENOTSOCK ? "is not a socket" : strerror(errno);
    if (type != SOCK_STREAM)
        return "is not a stream socket";
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
        return strerror(errno);
    if (!listening)
        return "is not listening";
    memset(sa, 0, sizeof(*sa));
    if (getsockname(fd, (struct sockaddr *)sa, &salen) != 0)
        return strerror(errno);
    if (sa->sun_family != AF_UNIX)
        return "is not an AF_UNIX socket";
    return NULL;
}

static int open_handed(fm_listener *l, const fm_config *cfg)
{
    struct sockaddr_un sa;
    const char *why = unfit_reason(HANDED_FD, &sa);
    int rc;

    if (why != NULL) {
        fm_log_error("socket activation: fd 3 from the service manager %s; "
                     "a listening AF_UNIX stream socket is needed", why);
        return -1;
    }
    /* The manager keeps its own copy: ours must not leak into anything
     * the daemon might ever run. */
    if (fcntl(HANDED_FD, F_SETFD, FD_CLOEXEC) != 0) {
        fm_log_error("socket activation: fd 3: %s", strerror(errno));
        return -1;
    }
    rc = uv_pipe_open(&l->pipe, HANDED_FD);
    if (rc != 0) {
        fm_log_error("socket activation: taking fd 3: %s", uv_strerror(rc));
        return -1;
    }
    l->handed = 1;
    /* An abstract or unnamed socket has no path to show. */
    snprintf(l->path, sizeof(l->path), "%s", sa.sun_path[0] ? sa.sun_path : "(unnamed)");
    if (strcmp(l->path, cfg->socket) != 0)
        fm_log_info("socket activation: the configured socket %s is not used", cfg->socket);
    if (cfg->socket_group != NULL)
        fm_log_info("socket activation: socket_group %s is not applied; the socket unit's "
                    "SocketGroup= sets the group", cfg->socket_group);
    return 0;
}

int fm_listener_start(fm_listener *l, uv_loop_t *loop, const fm_config *cfg,
                      uv_connection_cb cb, void *data)
{
    int rc;

    memset(l, 0, sizeof(*l));
    uv_pipe_init(loop, &l->pipe, 0);
    l->pipe.data = data;
    rc = handed_over() ? open_handed(l, cfg) : bind_socket(l, cfg);
    if (rc == 0 && (rc = uv_listen((uv_stream_t *)&l->pipe, 511, cb)) != 0)
        fm_log_error("listening on %s: %s", l->path, uv_strerror(rc));
    if (rc != 0) {
        uv_close((uv_handle_t *)&l->pipe, NULL);
        return -1;
    }
    l->open = 1;
    if (l->handed)
        fm_log_info("listening on %s, fd 3 from the service manager (socket activation)",
                    l->path);
    else
        fm_log_info("listening on %s", l->path);
    return 0;
}

void fm_listener_stop(fm_listener *l)
{
    if (!l->open)
        return;
    l->open = 0;
    uv_close((uv_handle_t *)&l->pipe, NULL);
    if (!l->handed && unlink(l->path) != 0 && errno != ENOENT)
        fm_log_warn("removing %s: %s", l->path, strerror(errno));
}
