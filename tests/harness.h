/* harness.h -- real servers for the tests: redis-server and fmredisd, each
 * started in a private temporary directory on a Unix socket of its own, and
 * always stopped, also when a test fails or the runner is killed.
 *
 * Servers started by a Check unchecked fixture belong to the runner process;
 * servers a test body starts belong to that test's forked process. Either
 * way they get PR_SET_PDEATHSIG, and the owner kills what it started at
 * exit, so nothing outlives the suite. */
#ifndef FM_HARNESS_H
#define FM_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <check.h>
#include <hiredis/hiredis.h>

#include "fmredis.h"

typedef struct fmt_redis {
    pid_t pid;
    char dir[256];
    char sock[300];
    char url[320];          /* unix://<sock> */
    const char *const *extra;   /* the start's extra arguments, kept for restarts */
} fmt_redis;

typedef struct fmt_daemon {
    pid_t pid;
    char dir[256];
    char sock[300];
    char log[300];
} fmt_daemon;

/* Starts redis-server on a fresh socket and waits until it answers PING.
 * extra: NULL-terminated redis-server arguments, or NULL. 0 or -1. */
int fmt_redis_start(fmt_redis *r, const char *const *extra);
/* Kills it with SIGKILL, keeping its directory and socket path. */
void fmt_redis_kill(fmt_redis *r);
/* Starts it again on the same socket and directory (after a kill), with the
 * same extra arguments (which must therefore outlive r). */
int fmt_redis_restart(fmt_redis *r);
void fmt_redis_stop(fmt_redis *r);
/* A synchronous hiredis connection for asserting Redis-side effects. */
redisContext *fmt_redis_connect(const fmt_redis *r);
/* Runs a command and returns its reply (caller frees); NULL on I/O error. */
redisReply *fmt_redis_cmd(redisContext *c, const char *fmt, ...);

/* Starts fmredisd against redis_url (NULL: a URL that refuses) with the
 * given extra "--name value" arguments (NULL-terminated, or NULL), and waits
 * until its socket accepts connections. 0 or -1. */
int fmt_daemon_start(fmt_daemon *d, const char *redis_url, const char *const *extra);
/* The daemon started the way a service manager starts a service. */
typedef struct fmt_daemon_opts {
    const char *const *env;     /* "NAME=value" added to its environment, or NULL */
    /* >= 0: handed over as its fd 3, with LISTEN_FDS=1 and LISTEN_PID set
     * to its own pid (known only after the fork). The start then does not
     * wait for d->sock, which the daemon does not bind. */
    int listen_fd;
    int journal;                /* JOURNAL_STREAM names its stderr (d->log) */
    /* Not NULL: the daemon runs as this user, with its groups (the test
     * runs as root), and d->dir is given to it so that it can bind there. */
    const char *user;
} fmt_daemon_opts;
/* fmt_daemon_start with o (NULL: as fmt_daemon_start). A daemon that exits
 * before its socket accepts fails the start at once; its log stays in
 * d->log until fmt_daemon_stop. */
int fmt_daemon_start_as(fmt_daemon *d, const char *redis_url, const char *const *extra,
                        const fmt_daemon_opts *o);
/* Makes the calling process (a child the test forked; the test runs as
 * root) the user, with the user's primary and supplementary groups, for
 * good. 0, or -1 with errno. */
int fmt_become(const char *user);
/* SIGTERM, then waits; SIGKILL if it does not exit within 10 s. Returns
 * what fmt_daemon_wait does: the exit code, 128 + signal, or -1 when it had
 * to be killed. */
int fmt_daemon_stop(fmt_daemon *d);
/* Waits up to timeout_ms for the daemon to exit by itself (after a signal
 * the test sent) and reaps it. Returns its exit code, 128 + signal, or -1
 * when it still runs (fmt_daemon_stop then ends it). */
int fmt_daemon_wait(fmt_daemon *d, int timeout_ms);

/* A TCase of s with the given timeout (seconds) whose up/down run as an
 * unchecked fixture: once for the TCase, in the runner, so that what up
 * starts belongs to the runner and down runs even when a test fails.
 * up and down both NULL: no fixture (the tests start their own servers). */
TCase *fmt_tcase(Suite *s, const char *name, void (*up)(void), void (*down)(void),
                 double timeout);

/* The text of a file, NUL-terminated (caller frees); the test fails when
 * it cannot be read. */
char *fmt_slurp(const char *path);

/* Any other server a topology starts (tests/topo_*.c): argv run with its
 * output to log, killed at exit by the process that started it, as the
 * harness's own servers are. fmt_reap kills it with sig and waits. */
pid_t fmt_spawn(const char *const *argv, const char *log);
void fmt_reap(pid_t *pid, int sig);

/* A TCP port on 127.0.0.1 where nothing listens (for now). */
int fmt_unused_port(void);

/* Monotonic milliseconds; wall-clock milliseconds since the epoch. */
int64_t fmt_now_ms(void);
int64_t fmt_wall_ms(void);
/* Polls cond(arg) every 5 ms until it is true or timeout_ms passes.
 * Returns 1 when it became true. */
int fmt_wait_until(int (*cond)(void *), void *arg, int timeout_ms);

/* Raw protocol, for tests that need to send what the library never would. */
int fmt_raw_connect(const char *sock);
/* Whether the socket (a const char *) accepts a connection now; a condition
 * for fmt_wait_until. */
int fmt_socket_accepts(void *sock);
int fmt_raw_send(int fd, const void *body, size_t len);   /* one frame */
int fmt_raw_write(int fd, const void *bytes, size_t len); /* bytes as is */
/* One frame body, NUL-terminated, malloc'd; NULL on timeout, EOF or error. */
char *fmt_raw_recv(int fd, int timeout_ms, size_t *len);
/* Reads and drops whatever arrives until the peer closes: 1 when it did
 * (EOF or a reset) within timeout_ms. total, when not NULL, gets the number
 * of bytes dropped. */
int fmt_raw_drain(int fd, int timeout_ms, size_t *total);
/* Whether the peer closed the connection within timeout_ms. */
int fmt_raw_closed(int fd, int timeout_ms);

/* libfmredis, checked (these fail the running test): a client of the
 * daemon, with the library's default timeout. */
fm_client *fmt_client(const fmt_daemon *d);
/* Fails the test with the client's error unless rc is FM_OK. */
void fmt_ok(fm_client *c, int rc, const char *what);

/* The path of a built program: $FMREDISD, $FMREDIS_CLI, or build/...; and
 * of the shared library: $FM_LIBFMREDIS, or build/libfmredis.so. */
const char *fmt_daemon_path(void);
const char *fmt_cli_path(void);
const char *fmt_lib_path(void);
/* The source tree ($FM_SRCDIR, or "."). */
const char *fmt_srcdir(void);

#endif
