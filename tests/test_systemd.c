/* test_systemd.c -- the daemon as a systemd service, without systemd: the
 * test plays the service manager. It owns the notify socket and reads the
 * daemon's READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and STOPPING=1 in
 * order; it hands the daemon a listening socket as fd 3 (socket
 * activation); and it names the daemon's stderr in JOURNAL_STREAM to see
 * the syslog priorities the journal reads. Each test starts its own
 * servers in its body. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#include "fm_tests.h"
#include "harness.h"
#include "wire.h"

#define NOTE_MS 10000           /* for a message that waits for nothing */
#define LINK_MS 15000           /* for the link to go down or come back */
#define EXIT_MS 10000

/* The manager's side of the notify socket, and every message so far. */
typedef struct manager {
    char dir[64];
    char path[128];             /* NOTIFY_SOCKET's value */
    char env[160];              /* "NOTIFY_SOCKET=<path>" */
    int fd;
    char **msgs;
    size_t n;
} manager;

static void manager_open(manager *m, int abstract)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len;

    memset(m, 0, sizeof(*m));
    snprintf(m->dir, sizeof(m->dir), "/tmp/fmtest-sd.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(m->dir));
    if (abstract)
        snprintf(m->path, sizeof(m->path), "@fmtest-notify-%d", (int)getpid());
    else
        snprintf(m->path, sizeof(m->path), "%s/notify.sock", m->dir);
    snprintf(m->env, sizeof(m->env), "NOTIFY_SOCKET=%s", m->path);
    memcpy(sa.sun_path, m->path, strlen(m->path));
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(m->path));
    if (abstract)
        sa.sun_path[0] = '\0';
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(m->fd, 0);
    ck_assert_int_eq(bind(m->fd, (struct sockaddr *)&sa, len), 0);
}

static void manager_close(manager *m)
{
    char path[200];

    for (size_t i = 0; i < m->n; i++)
        free(m->msgs[i]);
    free(m->msgs);
    close(m->fd);
    for (const char *const *f = (const char *const[]){"notify.sock", "listen.sock",
                                 "fmredisd.conf", "file", NULL}; *f; f++) {
        snprintf(path, sizeof(path), "%s/%s", m->dir, *f);
        unlink(path);
    }
    rmdir(m->dir);
}

/* Takes in one message, if one comes within timeout_ms. */
static int manager_recv(manager *m, int timeout_ms)
{
    struct pollfd pfd = {m->fd, POLLIN, 0};
    char buf[1024];
    ssize_t len;

    if (poll(&pfd, 1, timeout_ms) <= 0)
        return 0;
    len = recv(m->fd, buf, sizeof(buf) - 1, 0);
    ck_assert_int_gt(len, 0);
    buf[len] = '\0';
    m->msgs = realloc(m->msgs, (m->n + 1) * sizeof(*m->msgs));
    ck_assert_ptr_nonnull(m->msgs);
    m->msgs[m->n] = strdup(buf);
    ck_assert_ptr_nonnull(m->msgs[m->n]);
    m->n++;
    return 1;
}

/* The line of msg that starts with prefix, or NULL. */
static const char *line_of(const char *msg, const char *prefix)
{
    size_t len = strlen(prefix);

    for (const char *p = msg; p != NULL; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, len) == 0)
            return p;
    return NULL;
}

/* The index of the first message from `from` on with a line starting with
 * prefix, receiving as needed; the test fails if none comes in time. So
 * that each wait starts after the one before, order is what is asserted. */
static size_t await_note(manager *m, size_t from, const char *prefix, int timeout_ms)
{
    int64_t end = fmt_now_ms() + timeout_ms;

    for (size_t i = from;; i++) {
        while (i >= m->n) {
            int64_t left = end - fmt_now_ms();

            ck_assert_msg(left > 0 && manager_recv(m, (int)left),
                          "no \"%s\" within %d ms (%zu messages)", prefix, timeout_ms, m->n);
        }
        if (line_of(m->msgs[i], prefix) != NULL)
            return i;
    }
}

static size_t count_notes(const manager *m, const char *prefix)
{
    size_t n = 0;

    for (size_t i = 0; i < m->n; i++)
        n += line_of(m->msgs[i], prefix) != NULL;
    return n;
}

static unsigned long long monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000 + (unsigned long long)ts.tv_nsec / 1000;
}

static void start_notified(fmt_daemon *d, const char *redis_url, const char *const *extra,
                           const char *const *env)
{
    fmt_daemon_opts o = {.env = env, .listen_fd = -1};

    ck_assert_msg(fmt_daemon_start_as(d, redis_url, extra, &o) == 0, "fmredisd did not start");
}

static char *write_config(const manager *m, const char *text)
{
    char *path = wire_strf("%s/fmredisd.conf", m->dir);
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* ---- notify ------------------------------------------------------------- */

START_TEST(test_notify_ready_reloading_ready_stopping_in_order)
{
    manager m;
    fmt_redis r;
    fmt_daemon d;
    const char *usec;
    unsigned long long before, after, at;
    size_t i;
    char *conf;

    manager_open(&m, 0);
    conf = write_config(&m, "cache_ttl_ms 60000\n");
    ck_assert_int_eq(fmt_redis_start(&r, NULL), 0);
    start_notified(&d, r.url, (const char *const[]){"-c", conf, NULL},
                   (const char *const[]){m.env, NULL});
    i = await_note(&m, 0, "READY=1", NOTE_MS);
    ck_assert_ptr_nonnull(line_of(m.msgs[i], "STATUS=Redis: "));
    i = await_note(&m, i + 1, "STATUS=Redis: up", LINK_MS);

    before = monotonic_usec();
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    i = await_note(&m, i + 1, "RELOADING=1", NOTE_MS);
    after = monotonic_usec();
    usec = line_of(m.msgs[i], "MONOTONIC_USEC=");
    ck_assert_msg(usec != NULL, "RELOADING=1 without MONOTONIC_USEC: \"%s\"", m.msgs[i]);
    at = strtoull(usec + strlen("MONOTONIC_USEC="), NULL, 10);
    ck_assert_msg(at >= before && at <= after, "MONOTONIC_USEC %llu is not in [%llu, %llu]",
                  at, before, after);
    i = await_note(&m, i + 1, "READY=1", NOTE_MS);

    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    await_note(&m, i + 1, "STOPPING=1", NOTE_MS);
    ck_assert_int_eq(fmt_daemon_wait(&d, EXIT_MS * wire_slowdown(&d)), 0);
    ck_assert_uint_eq(count_notes(&m, "STOPPING=1"), 1);
    fmt_daemon_stop(&d);
    fmt_redis_stop(&r);
    free(conf);
    manager_close(&m);
}
END_TEST

START_TEST(test_notify_status_follows_the_redis_link)
{
    manager m;
    fmt_redis r;
    fmt_daemon d;
    size_t i;

    manager_open(&m, 0);
    ck_assert_int_eq(fmt_redis_start(&r, NULL), 0);
    start_notified(&d, r.url, NULL, (const char *const[]){m.env, NULL});
    i = await_note(&m, 0, "STATUS=Redis: up", LINK_MS);
    fmt_redis_kill(&r);
    i = await_note(&m, i + 1, "STATUS=Redis: down: ", LINK_MS);
    ck_assert_int_eq(fmt_redis_restart(&r), 0);
    await_note(&m, i + 1, "STATUS=Redis: up", LINK_MS);
    fmt_daemon_stop(&d);
    fmt_redis_stop(&r);
    manager_close(&m);
}
END_TEST

/* Redis's answer to a wrong password is shown, the password is not. */
START_TEST(test_notify_status_shows_no_password)
{
    manager m;
    fmt_redis r;
    fmt_daemon d;
    redisContext *c;
    size_t i;
    char *pwfile;
    FILE *f;

    manager_open(&m, 0);
    pwfile = wire_strf("%s/file", m.dir);
    f = fopen(pwfile, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not-the-s3cret\n", f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(fmt_redis_start(&r, NULL), 0);
    c = fmt_redis_connect(&r);
    freeReplyObject(wire_redis_ok(c, "CONFIG SET requirepass the-real-one"));
    start_notified(&d, r.url, (const char *const[]){"--redis_password_file", pwfile, NULL},
                   (const char *const[]){m.env, NULL});
    i = await_note(&m, 0, "STATUS=Redis: down: ", LINK_MS);
    ck_assert_msg(strstr(m.msgs[i], "WRONGPASS") != NULL, "\"%s\"", m.msgs[i]);
    ck_assert_msg(strstr(m.msgs[i], "s3cret") == NULL, "\"%s\"", m.msgs[i]);
    redisFree(c);
    fmt_daemon_stop(&d);
    fmt_redis_stop(&r);
    free(pwfile);
    manager_close(&m);
}
END_TEST

START_TEST(test_notify_to_an_abstract_socket)
{
    manager m;
    fmt_daemon d;

    manager_open(&m, 1);
    start_notified(&d, NULL, NULL, (const char *const[]){m.env, NULL});
    await_note(&m, 0, "READY=1", NOTE_MS);
    fmt_daemon_stop(&d);
    manager_close(&m);
}
END_TEST

static int count_in(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

typedef struct reloads {
    const fmt_daemon *d;
    int want;
} reloads;

static int reloaded(void *arg)
{
    const reloads *r = arg;
    char *log = fmt_slurp(r->d->log);
    int n = count_in(log, "SIGHUP: no configuration file");

    free(log);
    return n >= r->want;
}

/* SIGHUP, then waits for the daemon to log it: two signals sent at once may
 * arrive as one. */
static void reload_and_wait(const fmt_daemon *d, int nth)
{
    ck_assert_int_eq(kill(d->pid, SIGHUP), 0);
    ck_assert_msg(fmt_wait_until(reloaded, &(reloads){d, nth}, NOTE_MS), "reload %d not logged",
                  nth);
}

/* Nobody at NOTIFY_SOCKET: one line in the log, and the daemon serves. */
START_TEST(test_notify_failure_is_logged_once_and_not_fatal)
{
    manager m;
    fmt_daemon d;
    char *env, *log;
    int lines;

    manager_open(&m, 0);
    env = wire_strf("NOTIFY_SOCKET=%s/nobody.sock", m.dir);
    start_notified(&d, NULL, NULL, (const char *const[]){env, "WATCHDOG_USEC=20000", NULL});
    reload_and_wait(&d, 1);
    reload_and_wait(&d, 2);
    ck_assert(wire_ping_says(d.sock, "\"ok\":true"));
    log = fmt_slurp(d.log);
    lines = count_in(log, "notify: sending");
    ck_assert_msg(lines == 1, "%d lines about failed notifications:\n%s", lines, log);
    free(log);
    free(env);
    fmt_daemon_stop(&d);
    manager_close(&m);
}
END_TEST

/* ---- the watchdog ------------------------------------------------------- */

START_TEST(test_watchdog_keeps_alive_at_half_the_interval)
{
    manager m;
    fmt_daemon d;
    int64_t spawned, elapsed;
    size_t i, sent;

    manager_open(&m, 0);
    spawned = fmt_now_ms();
    start_notified(&d, NULL, NULL, (const char *const[]){m.env, "WATCHDOG_USEC=200000", NULL});
    i = await_note(&m, 0, "READY=1", NOTE_MS);
    for (int k = 0; k < 5; k++)
        i = await_note(&m, i + 1, "WATCHDOG=1", NOTE_MS);
    while (manager_recv(&m, 0))
        ;
    /* A timer never fires early and started after the spawn: however late
     * this process read them, no more can have been sent than one per
     * 100 ms since then. */
    elapsed = fmt_now_ms() - spawned;
    sent = count_notes(&m, "WATCHDOG=1");
    ck_assert_msg(sent <= (size_t)(elapsed / 100 + 1), "%zu keep-alives in %lld ms", sent,
                  (long long)elapsed);
    fmt_daemon_stop(&d);
    manager_close(&m);
}
END_TEST

/* WATCHDOG_PID 1 is init's: inherited variables, not for this daemon. */
START_TEST(test_watchdog_for_another_pid_stays_off)
{
    manager m;
    fmt_daemon d;
    size_t i;

    manager_open(&m, 0);
    start_notified(&d, NULL, NULL,
                   (const char *const[]){m.env, "WATCHDOG_USEC=100000", "WATCHDOG_PID=1", NULL});
    i = await_note(&m, 0, "READY=1", NOTE_MS);
    /* Ten intervals with nothing to hear are the test itself. */
    while (manager_recv(&m, 500 * wire_slowdown(&d)))
        ;
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    await_note(&m, i + 1, "STOPPING=1", NOTE_MS);
    ck_assert_uint_eq(count_notes(&m, "WATCHDOG=1"), 0);
    ck_assert_int_eq(fmt_daemon_wait(&d, EXIT_MS * wire_slowdown(&d)), 0);
    fmt_daemon_stop(&d);
    manager_close(&m);
}
END_TEST

/* ---- socket activation -------------------------------------------------- */

static int listening_socket(const manager *m, char *path, size_t size)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    ck_assert_int_ge(fd, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/listen.sock", m->dir);
    snprintf(path, size, "%s", sa.sun_path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    return fd;
}

static int is_socket(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

START_TEST(test_socket_activation_serves_fd_3_and_leaves_its_path)
{
    manager m;
    fmt_redis r;
    fmt_daemon d;
    char path[200], *log;
    int fd;

    manager_open(&m, 0);
    fd = listening_socket(&m, path, sizeof(path));
    ck_assert_int_eq(fmt_redis_start(&r, NULL), 0);
    ck_assert_int_eq(fmt_daemon_start_as(&d, r.url, NULL,
                                         &(fmt_daemon_opts){.listen_fd = fd}), 0);
    /* The kernel queues this ping until the daemon serves. */
    wire_wait_redis_up(path);
    ck_assert(!is_socket(d.sock));
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    ck_assert_int_eq(fmt_daemon_wait(&d, EXIT_MS * wire_slowdown(&d)), 0);
    ck_assert_msg(is_socket(path), "the daemon removed the manager's socket");
    log = fmt_slurp(d.log);
    ck_assert_msg(strstr(log, "(socket activation)") != NULL, "%s", log);
    free(log);
    close(fd);
    fmt_daemon_stop(&d);
    fmt_redis_stop(&r);
    manager_close(&m);
}
END_TEST

/* fd 3 of every kind the daemon cannot serve: the start fails, saying why. */
START_TEST(test_socket_activation_refuses_what_it_cannot_serve)
{
    static const struct {
        int domain, type;
        const char *why;
    } cases[] = {
        {0, 0, "is not a socket"},
        {AF_UNIX, SOCK_DGRAM, "is not a stream socket"},
        {AF_UNIX, SOCK_STREAM, "is not listening"},
        {AF_INET, SOCK_STREAM, "is not an AF_UNIX socket"},
    };
    manager m;

    manager_open(&m, 0);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        char *file = wire_strf("%s/file", m.dir), *log;
        fmt_daemon d;
        int fd;

        if (cases[k].domain == 0)
            fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        else
            fd = socket(cases[k].domain, cases[k].type | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        /* Port 0: any free port, listening on loopback only. */
        if (cases[k].domain == AF_INET)
            ck_assert(bind(fd, (struct sockaddr *)&in, sizeof(in)) == 0 && listen(fd, 1) == 0);
        ck_assert_int_eq(fmt_daemon_start_as(&d, NULL, NULL,
                                             &(fmt_daemon_opts){.listen_fd = fd}), 0);
        ck_assert_int_eq(fmt_daemon_wait(&d, EXIT_MS * wire_slowdown(&d)), 1);
        log = fmt_slurp(d.log);
        ck_assert_msg(strstr(log, cases[k].why) != NULL, "no \"%s\" in:\n%s", cases[k].why, log);
        free(log);
        free(file);
        close(fd);
        fmt_daemon_stop(&d);
    }
    manager_close(&m);
}
END_TEST

START_TEST(test_listen_pid_of_another_process_binds_its_own_socket)
{
    fmt_daemon d;
    char *log;

    start_notified(&d, NULL, NULL, (const char *const[]){"LISTEN_PID=1", "LISTEN_FDS=1", NULL});
    ck_assert(wire_ping_says(d.sock, "\"ok\":true"));
    log = fmt_slurp(d.log);
    ck_assert_msg(strstr(log, "LISTEN_PID 1 is not this process") != NULL, "%s", log);
    free(log);
    fmt_daemon_stop(&d);
}
END_TEST

/* ---- journald's priorities ---------------------------------------------- */

/* A daemon that logs at every level (an error: a reload of a broken file),
 * stopped; its log. */
static char *log_of_every_level(const fmt_daemon_opts *o)
{
    manager m;
    fmt_daemon d;
    char *conf, *log;

    manager_open(&m, 0);
    conf = write_config(&m, "cache_ttl_ms 60000\n");
    ck_assert_int_eq(fmt_daemon_start_as(&d, NULL, (const char *const[]){"-c", conf, NULL}, o), 0);
    free(write_config(&m, "no_such_directive 1\n"));
    ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);
    ck_assert_int_eq(fmt_daemon_wait(&d, EXIT_MS * wire_slowdown(&d)), 0);
    log = fmt_slurp(d.log);
    fmt_daemon_stop(&d);
    free(conf);
    manager_close(&m);
    return log;
}

START_TEST(test_journal_stream_lines_carry_their_priority)
{
    static const char *const levels[][2] = {
        {"error", "<3>"}, {"warn", "<4>"}, {"info", "<6>"}, {"debug", "<7>"}};
    char *log = log_of_every_level(&(fmt_daemon_opts){.listen_fd = -1, .journal = 1});
    char *line, *save = NULL;
    int seen[4] = {0};

    for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int k = 0;

        while (k < 4 && strncmp(line, levels[k][1], 3) != 0)
            k++;
        ck_assert_msg(k < 4, "a line without a priority: \"%s\"", line);
        ck_assert_msg(strncmp(strchr(line, ' ') + 1, levels[k][0], strlen(levels[k][0])) == 0,
                      "\"%s\" has the wrong priority", line);
        seen[k] = 1;
    }
    for (int k = 0; k < 4; k++)
        ck_assert_msg(seen[k], "no %s line", levels[k][0]);
    free(log);
}
END_TEST

/* JOURNAL_STREAM that names another stream (stderr redirected since) is
 * not the journal: the lines stay as they were. */
START_TEST(test_without_the_journal_lines_have_no_priority)
{
    static const char *const env[] = {"JOURNAL_STREAM=1:1", NULL};
    char *log = log_of_every_level(&(fmt_daemon_opts){.env = env, .listen_fd = -1});
    char *line, *save = NULL;

    for (line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        ck_assert_msg(strncmp(line, "fmredisd[", 9) == 0, "\"%s\"", line);
    free(log);
}
END_TEST

Suite *fm_suite_systemd(void)
{
    Suite *s = suite_create("systemd");
    TCase *tc = fmt_tcase(s, "notify", NULL, NULL, 60);

    tcase_add_test(tc, test_notify_ready_reloading_ready_stopping_in_order);
    tcase_add_test(tc, test_notify_status_follows_the_redis_link);
    tcase_add_test(tc, test_notify_status_shows_no_password);
    tcase_add_test(tc, test_notify_to_an_abstract_socket);
    tcase_add_test(tc, test_notify_failure_is_logged_once_and_not_fatal);
    tc = fmt_tcase(s, "watchdog", NULL, NULL, 60);
    tcase_add_test(tc, test_watchdog_keeps_alive_at_half_the_interval);
    tcase_add_test(tc, test_watchdog_for_another_pid_stays_off);
    tc = fmt_tcase(s, "activation", NULL, NULL, 60);
    tcase_add_test(tc, test_socket_activation_serves_fd_3_and_leaves_its_path);
    tcase_add_test(tc, test_socket_activation_refuses_what_it_cannot_serve);
    tcase_add_test(tc, test_listen_pid_of_another_process_binds_its_own_socket);
    tc = fmt_tcase(s, "journal", NULL, NULL, 60);
    tcase_add_test(tc, test_journal_stream_lines_carry_their_priority);
    tcase_add_test(tc, test_without_the_journal_lines_have_no_priority);
    return s;
}
