/* harness.c -- starting and stopping real servers for the tests, and
 * talking to them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_CHILDREN 64
#define START_TIMEOUT_MS 10000

/* Children this process started, killed at exit by this process only (a
 * Check test forks the runner, and the fork must not kill the runner's). */
static pid_t children[MAX_CHILDREN];
static pid_t owner[MAX_CHILDREN];
static int atexit_done;

static void kill_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] > 0 && owner[i] == getpid()) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

static void track(pid_t pid)
{
    if (!atexit_done) {
        atexit(kill_children);
        atexit_done = 1;
    }
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            owner[i] = getpid();
            return;
        }
    }
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

TCase *fmt_tcase(Suite *s, const char *name, void (*up)(void), void (*down)(void),
                 double timeout)
{
    TCase *tc = tcase_create(name);

    if (up != NULL || down != NULL)
        tcase_add_unchecked_fixture(tc, up, down);
    tcase_set_timeout(tc, timeout);
    suite_add_tcase(s, tc);
    return tc;
}

int fmt_unused_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

    ck_assert(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    ck_assert(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int64_t clock_ms(clockid_t clock)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fmt_now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t fmt_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

int fmt_wait_until(int (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t end = fmt_now_ms() + timeout_ms;

    for (;;) {
        if (cond(arg))
            return 1;
        if (fmt_now_ms() >= end)
            return 0;
        poll(NULL, 0, 5);
    }
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v && *v ? v : def;
}

const char *fmt_daemon_path(void) { return env_or("FMREDISD", "build/fmredisd"); }
const char *fmt_cli_path(void) { return env_or("FMREDIS_CLI", "build/fmredis"); }
const char *fmt_lib_path(void) { return env_or("FM_LIBFMREDIS", "build/libfmredis.so"); }
const char *fmt_srcdir(void) { return env_or("FM_SRCDIR", "."); }

char *fmt_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    size_t cap = 0;

    ck_assert_msg(f != NULL, "cannot read %s", path);
    if (getdelim(&text, &cap, '\0', f) < 0) {
        free(text);
        text = strdup("");
    }
    fclose(f);
    ck_assert_ptr_nonnull(text);
    return text;
}

int fmt_become(const char *user)
{
    struct passwd *pw = getpwnam(user);

    if (pw == NULL) {
        errno = ENOENT;
        return -1;
    }
    /* Groups first: after setuid(2) they can no longer be set. */
    if (initgroups(user, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
        return -1;
    return 0;
}

/* In the child, what a service manager sets up before the exec. */
static void as_service(const fmt_daemon_opts *o)
{
    struct stat st;
    char v[64];

    for (int i = 0; o->env && o->env[i]; i++)
        putenv((char *)o->env[i]);
    if (o->listen_fd >= 0) {
        if (o->listen_fd == 3)
            fcntl(3, F_SETFD, 0);
        else
            dup2(o->listen_fd, 3);
        snprintf(v, sizeof(v), "%d", (int)getpid());
        setenv("LISTEN_PID", v, 1);
        setenv("LISTEN_FDS", "1", 1);
    }
    if (o->journal && fstat(STDERR_FILENO, &st) == 0) {
        snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
        setenv("JOURNAL_STREAM", v, 1);
    }
    if (o->user != NULL && fmt_become(o->user) != 0) {
        fprintf(stderr, "harness: cannot become user %s: %s\n", o->user, strerror(errno));
        _exit(126);
    }
}

/* fork + exec with stdout/stderr to log (or /dev/null), set up as a
 * service when o is not NULL. */
static pid_t spawn(const char *const *argv, const char *log, const fmt_daemon_opts *o)
{
    pid_t parent = getpid(), pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        if (o != NULL)
            as_service(o);
        setpgid(0, 0);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    track(pid);
    return pid;
}

static void reap(pid_t *pid, int sig)
{
    if (*pid <= 0)
        return;
    kill(*pid, sig);
    waitpid(*pid, NULL, 0);
    untrack(*pid);
    *pid = 0;
}

pid_t fmt_spawn(const char *const *argv, const char *log)
{
    return spawn(argv, log, NULL);
}

void fmt_reap(pid_t *pid, int sig)
{
    reap(pid, sig);
}

/* Whether a process we started has already exited (then it is reaped). */
static int exited(pid_t *pid)
{
    if (*pid > 0 && waitpid(*pid, NULL, WNOHANG) == *pid) {
        untrack(*pid);
        *pid = 0;
        return 1;
    }
    return 0;
}

int fmt_raw_connect(const char *sock)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int fmt_socket_accepts(void *sock)
{
    int fd = fmt_raw_connect(sock);

    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

static redisContext *connect_unix(const char *sock)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);

    if (c != NULL && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c != NULL)
        redisSetTimeout(c, tv);
    return c;
}

redisContext *fmt_redis_connect(const fmt_redis *r)
{
    return connect_unix(r->sock);
}

redisReply *fmt_redis_cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    void *reply;

    va_start(ap, fmt);
    reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    return reply;
}

static int redis_answers(void *arg)
{
    redisContext *c = connect_unix(((fmt_redis *)arg)->sock);
    redisReply *reply;
    int ok;

    if (c == NULL)
        return 0;
    reply = redisCommand(c, "PING");
    ok = reply != NULL && reply->type == REDIS_REPLY_STATUS;
    freeReplyObject(reply);
    redisFree(c);
    return ok;
}

static int redis_spawn(fmt_redis *r)
{
    /* Room for a cluster node over TLS (topo_cluster.c): 51 in all. */
    const char *argv[64] = {"redis-server", "--port", "0", "--unixsocket", r->sock,
                            "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                            "--dir", r->dir, "--daemonize", "no"};
    char log[300];
    int n = 15;

    for (int i = 0; r->extra && r->extra[i]; i++) {
        /* Dropping one would start another server than the test asked for. */
        if (n == (int)(sizeof(argv) / sizeof(argv[0])) - 1) {
            fprintf(stderr, "harness: too many redis-server arguments\n");
            return -1;
        }
        argv[n++] = r->extra[i];
    }
    argv[n] = NULL;
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    r->pid = spawn(argv, log, NULL);
    if (r->pid < 0)
        return -1;
    if (!fmt_wait_until(redis_answers, r, START_TIMEOUT_MS)) {
        fprintf(stderr, "harness: redis-server did not come up (see %s)\n", log);
        reap(&r->pid, SIGKILL);
        return -1;
    }
    return 0;
}

int fmt_redis_start(fmt_redis *r, const char *const *extra)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "/tmp/fmtest-redis.XXXXXX");
    if (mkdtemp(r->dir) == NULL)
        return -1;
    snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
    snprintf(r->url, sizeof(r->url), "unix://%s", r->sock);
    r->extra = extra;
    return redis_spawn(r);
}

void fmt_redis_kill(fmt_redis *r)
{
    reap(&r->pid, SIGKILL);
}

int fmt_redis_restart(fmt_redis *r)
{
    return redis_spawn(r);
}

/* Redis 7 keeps its append-only files in a directory of their own. */
static void remove_aof_dir(const char *dir)
{
    char path[400], file[700];
    struct dirent *e;
    DIR *d;

    snprintf(path, sizeof(path), "%s/appendonlydir", dir);
    d = opendir(path);
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
            unlink(file);
        }
    }
    closedir(d);
    rmdir(path);
}

/* Removes a test directory and the files our servers leave in it. */
static void remove_dir(const char *dir)
{
    static const char *const files[] = {"redis.sock", "redis.log", "fmredisd.sock",
                                        "fmredisd.log", "dump.rdb", "fmredisd.conf",
                                        "nodes.conf", NULL};
    char path[400];

    if (dir[0] == '\0')
        return;
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        unlink(path);
    }
    remove_aof_dir(dir);
    rmdir(dir);
}

void fmt_redis_stop(fmt_redis *r)
{
    reap(&r->pid, SIGKILL);
    remove_dir(r->dir);
    r->dir[0] = '\0';
}

/* The socket accepts, or the daemon is gone (not reaped here). */
static int up_or_gone(void *arg)
{
    const fmt_daemon *d = arg;
    siginfo_t si;

    if (fmt_socket_accepts((void *)d->sock))
        return 1;
    memset(&si, 0, sizeof(si));
    return waitid(P_PID, (id_t)d->pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == d->pid;
}

int fmt_daemon_start(fmt_daemon *d, const char *redis_url, const char *const *extra)
{
    return fmt_daemon_start_as(d, redis_url, extra, NULL);
}

int fmt_daemon_start_as(fmt_daemon *d, const char *redis_url, const char *const *extra,
                        const fmt_daemon_opts *o)
{
    const char *argv[64] = {fmt_daemon_path(), "--socket", d->sock, "--redis_url",
                            redis_url ? redis_url : "unix:///nonexistent/redis.sock",
                            "--log_level", "debug"};
    int n = 7;

    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/fmtest-daemon.XXXXXX");
    if (mkdtemp(d->dir) == NULL)
        return -1;
    snprintf(d->sock, sizeof(d->sock), "%s/fmredisd.sock", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/fmredisd.log", d->dir);
    argv[2] = d->sock;
    for (int i = 0; extra && extra[i] && n < 63; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    if (o != NULL && o->user != NULL) {
        struct passwd *pw = getpwnam(o->user);

        if (pw == NULL || chown(d->dir, pw->pw_uid, pw->pw_gid) != 0)
            return -1;
    }
    d->pid = spawn(argv, d->log, o);
    if (d->pid < 0)
        return -1;
    if (o != NULL && o->listen_fd >= 0)
        return 0;
    if (!fmt_wait_until(up_or_gone, d, START_TIMEOUT_MS) || exited(&d->pid)) {
        fprintf(stderr, "harness: fmredisd did not come up (see %s)\n", d->log);
        reap(&d->pid, SIGKILL);
        return -1;
    }
    return 0;
}

int fmt_daemon_wait(fmt_daemon *d, int timeout_ms)
{
    int64_t end = fmt_now_ms() + timeout_ms;
    int status;

    while (d->pid > 0) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            untrack(d->pid);
            d->pid = 0;
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
        }
        if (fmt_now_ms() >= end)
            return -1;
        poll(NULL, 0, 5);
    }
    return -1;
}

int fmt_daemon_stop(fmt_daemon *d)
{
    int status = -1;

    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        status = fmt_daemon_wait(d, 10000);
        if (status < 0)
            reap(&d->pid, SIGKILL);
    }
    if (getenv("FMT_KEEP_LOGS") == NULL)
        remove_dir(d->dir);
    d->dir[0] = '\0';
    return status;
}

int fmt_raw_write(int fd, const void *bytes, size_t len)
{
    const char *p = bytes;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int fmt_raw_send(int fd, const void *body, size_t len)
{
    unsigned char h[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8), (unsigned char)len};

    if (fmt_raw_write(fd, h, 4) != 0)
        return -1;
    return fmt_raw_write(fd, body, len);
}

static int read_full(int fd, void *buf, size_t len, int64_t end)
{
    char *p = buf;

    while (len > 0) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t left = end - fmt_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return -1;
        n = recv(fd, p, len, 0);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

char *fmt_raw_recv(int fd, int timeout_ms, size_t *len)
{
    int64_t end = fmt_now_ms() + timeout_ms;
    unsigned char h[4];
    size_t n;
    char *body;

    if (read_full(fd, h, 4, end) != 0)
        return NULL;
    n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    body = malloc(n + 1);
    if (body == NULL || read_full(fd, body, n, end) != 0) {
        free(body);
        return NULL;
    }
    body[n] = '\0';
    if (len)
        *len = n;
    return body;
}

int fmt_raw_drain(int fd, int timeout_ms, size_t *total)
{
    int64_t end = fmt_now_ms() + timeout_ms;
    char buf[16384];

    if (total != NULL)
        *total = 0;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int64_t left = end - fmt_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return 0;
        n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
        if (n < 0 && errno != EINTR)
            return 0;
        if (n > 0 && total != NULL)
            *total += (size_t)n;
    }
}

int fmt_raw_closed(int fd, int timeout_ms)
{
    return fmt_raw_drain(fd, timeout_ms, NULL);
}

fm_client *fmt_client(const fmt_daemon *d)
{
    fm_client *c = fm_connect(d->sock, FM_TIMEOUT_DEFAULT);

    ck_assert_ptr_nonnull(c);
    ck_assert_msg(fm_client_err(c) == FM_ERR_NONE, "connect %s: %s", d->sock,
                  fm_client_errstr(c));
    return c;
}

void fmt_ok(fm_client *c, int rc, const char *what)
{
    ck_assert_msg(rc == FM_OK, "%s: %s (%s) %s", what,
                  fm_client_error_name(fm_client_err(c)), fm_client_errcode(c),
                  fm_client_errstr(c));
}
