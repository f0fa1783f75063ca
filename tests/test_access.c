/* test_access.c -- who may use the daemon, and the secrets it uses:
 * socket_group with real users made for the test, and Redis AUTH against
 * real redis-servers (requirepass, an ACL user; the password from the URL,
 * redis_password_file and $CREDENTIALS_DIRECTORY), a wrong password, and
 * that a password never shows where others can read it.
 *
 * The users: a group, a member of it, a user outside it, and a member the
 * daemon itself runs as. An unchecked fixture makes them in the runner
 * with names holding the runner's pid and removes them after the TCase,
 * also when a test failed (the suite runs as root). Processes that act as
 * one of them are forked and drop root for good (fmt_become) before they
 * touch the socket. */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "fm_tests.h"
#include "harness.h"
#include "proc.h"
#include "wire.h"

#define GROUP_TIMEOUT 60
#define AUTH_TIMEOUT 60
#define RUN_MS 15000
#define CHILD_EACCES 13     /* a child's exit status: connect(2) said EACCES */

/* ---- users made for the TCase -------------------------------------------- */

static char group[32], member[32], outsider[32], daemon_user[32];
static int users_made;

/* Runs an administration tool; 0 when it exited 0. */
static int run_tool(const char *const *argv)
{
    fmt_proc p;
    int rc = fmt_run(&p, argv, NULL, NULL, RUN_MS);

    if (rc != 0)
        fprintf(stderr, "test_access: %s exited %d: %s", argv[0], rc, p.text[2]);
    fmt_proc_free(&p);
    return rc;
}

static int add_user(const char *name, const char *groups)
{
    /* No home, no group of its own (its primary group is the system's
     * default), no login shell. */
    const char *plain[] = {"useradd", "-M", "-N", "-s", "/usr/sbin/nologin", name, NULL};
    const char *member_of[] = {"useradd", "-M", "-N", "-s", "/usr/sbin/nologin",
                               "-G", groups, name, NULL};

    return run_tool(groups ? member_of : plain);
}

static void users_down(void)
{
    const char *const users[] = {member, outsider, daemon_user};

    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++)
        if (users[i][0] != '\0' && getpwnam(users[i]) != NULL)
            run_tool((const char *const[]){"userdel", users[i], NULL});
    if (group[0] != '\0' && getgrnam(group) != NULL)
        run_tool((const char *const[]){"groupdel", group, NULL});
    users_made = 0;
}

/* Failures here are not assertions (this runs in the runner): every test
 * asserts users_made instead, so a missing useradd fails them all. */
static void users_up(void)
{
    int pid = (int)getpid();

    snprintf(group, sizeof(group), "fmt-sock-%d", pid);
    snprintf(member, sizeof(member), "fmt-in-%d", pid);
    snprintf(outsider, sizeof(outsider), "fmt-out-%d", pid);
    snprintf(daemon_user, sizeof(daemon_user), "fmt-d-%d", pid);
    users_made = run_tool((const char *const[]){"groupadd", group, NULL}) == 0 &&
                 add_user(member, group) == 0 && add_user(outsider, NULL) == 0 &&
                 add_user(daemon_user, group) == 0;
    if (!users_made)
        users_down();
}

static void assert_users(void)
{
    ck_assert_msg(users_made, "the test users could not be made (useradd/groupadd as root)");
}

/* ---- acting as one of them ----------------------------------------------- */

typedef int (*as_user_fn)(const char *sock, const char *arg);

/* Runs fn(sock, arg) in a child that became user; returns its exit status
 * (126: could not become the user). fn must not use Check. */
static int as_user(const char *user, as_user_fn fn, const char *sock, const char *arg)
{
    pid_t pid = fork();
    int st;

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (fmt_become(user) != 0)
            _exit(126);
        _exit(fn(sock, arg));
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* connect(2) alone: CHILD_EACCES when the socket's permissions refuse it,
 * 0 when it connects, 1 otherwise. */
static int try_connect(const char *sock, const char *unused)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0), rc;

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    if (rc != 0)
        return errno == EACCES ? CHILD_EACCES : 1;
    close(fd);
    return 0;
}

/* A worker's whole use: a lock through libfmredis, kept past the
 * connection so that the test finds it in Redis. 0 when taken. */
static int take_lock(const char *sock, const char *key)
{
    fm_client *c = fm_connect(sock, 5000);
    fm_lock_opts o;
    fm_lock lk;
    int ok;

    if (c == NULL || fm_client_err(c) != FM_ERR_NONE) {
        fprintf(stderr, "take_lock: %s\n", c ? fm_client_errstr(c) : "out of memory");
        fm_client_free(c);
        return 2;
    }
    fm_lock_opts_init(&o);
    o.ttl_ms = 60000;
    o.on_disconnect = FM_ON_DISCONNECT_KEEP;
    ok = fm_lock_acquire(c, key, &o, &lk) == FM_OK && lk.acquired;
    if (!ok)
        fprintf(stderr, "take_lock: %s\n", fm_client_errstr(c));
    fm_client_free(c);
    return ok ? 0 : 3;
}

/* The socket is the group's with socket_mode; a member takes a lock (found
 * in Redis); the outsider is refused by the kernel at connect(2). */
static void assert_group_rules(const fmt_daemon *d, fmt_redis *r, const char *key)
{
    struct group *gr = getgrnam(group);
    redisContext *rc = fmt_redis_connect(r);
    char *rkey = wire_strf("fm:lock:%s", key);
    struct stat st;

    ck_assert_ptr_nonnull(gr);
    ck_assert_int_eq(lstat(d->sock, &st), 0);
    ck_assert_msg(st.st_gid == gr->gr_gid, "the socket's group is %u, want %u (%s)",
                  (unsigned)st.st_gid, (unsigned)gr->gr_gid, group);
    ck_assert_uint_eq(st.st_mode & 07777, 0660);
    /* The harness's directory is private; members must get through it. */
    ck_assert_int_eq(chmod(d->dir, 0711), 0);

    ck_assert_int_eq(as_user(member, take_lock, d->sock, key), 0);
    ck_assert_ptr_nonnull(rc);
    ck_assert_int_eq(wire_redis_int(rc, "EXISTS %s", rkey), 1);
    ck_assert_int_eq(as_user(outsider, try_connect, d->sock, NULL), CHILD_EACCES);
    ck_assert_int_eq(as_user(outsider, take_lock, d->sock, "fmt-outsider"), 2);
    ck_assert_int_eq(wire_redis_int(rc, "EXISTS fm:lock:fmt-outsider"), 0);
    redisFree(rc);
    free(rkey);
}

/* ---- socket_group ---------------------------------------------------------- */

START_TEST(test_socket_group_lets_members_in_and_keeps_others_out)
{
    const char *const extra[] = {"--socket_group", group, "--socket_mode", "0660", NULL};
    fmt_redis r;
    fmt_daemon d;

    assert_users();
    ck_assert_msg(fmt_redis_start(&r, NULL) == 0, "redis-server did not start");
    wire_daemon_up(&d, r.url, extra);
    assert_group_rules(&d, &r, "access-root-daemon");
    wire_pair_stop(&r, &d);
}
END_TEST

/* The daemon needs no root for its group: a member may give its files to
 * the group (chown(2) allows that without CAP_CHOWN). */
START_TEST(test_daemon_as_a_member_gives_the_socket_its_group)
{
    /* Its Redis must let another user in, through a private directory. */
    static const char *const redis_extra[] = {"--unixsocketperm", "777", NULL};
    const char *const extra[] = {"--socket_group", group, "--socket_mode", "0660", NULL};
    fmt_daemon_opts o = {.listen_fd = -1, .user = daemon_user};
    struct passwd *pw;
    struct stat st;
    fmt_redis r;
    fmt_daemon d;

    assert_users();
    ck_assert_msg(fmt_redis_start(&r, redis_extra) == 0, "redis-server did not start");
    ck_assert_int_eq(chmod(r.dir, 0711), 0);
    ck_assert_msg(fmt_daemon_start_as(&d, r.url, extra, &o) == 0, "fmredisd did not start as %s",
                  daemon_user);
    wire_wait_redis_up(d.sock);
    pw = getpwnam(daemon_user);
    ck_assert_ptr_nonnull(pw);
    ck_assert_int_eq(lstat(d.sock, &st), 0);
    ck_assert_uint_eq(st.st_uid, pw->pw_uid);
    assert_group_rules(&d, &r, "access-member-daemon");
    wire_pair_stop(&r, &d);
}
END_TEST

/* A daemon that may not give its socket to the group does not start, says
 * why, and leaves no socket behind. */
START_TEST(test_daemon_outside_the_group_does_not_start)
{
    const char *const extra[] = {"--socket_group", group, NULL};
    fmt_daemon_opts o = {.listen_fd = -1, .user = outsider};
    fmt_daemon d;
    char *log;

    assert_users();
    ck_assert_int_ne(fmt_daemon_start_as(&d, NULL, extra, &o), 0);
    log = fmt_slurp(d.log);
    ck_assert_msg(strstr(log, "socket_group: cannot give") != NULL && strstr(log, group) != NULL &&
                  strstr(log, "neither a member of it") != NULL, "log: %s", log);
    ck_assert_msg(access(d.sock, F_OK) != 0 && errno == ENOENT, "%s was left behind", d.sock);
    free(log);
    fmt_daemon_stop(&d);
}
END_TEST

/* Under socket activation the unit's SocketGroup= sets the group: the
 * daemon leaves the socket it was handed as it is, and says so. */
START_TEST(test_socket_activation_leaves_the_group_to_the_unit)
{
    const char *const extra[] = {"--socket_group", group, NULL};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char dir[64], *log;
    struct stat before, after;
    fmt_daemon d;
    int fd;

    assert_users();
    snprintf(dir, sizeof(dir), "/tmp/fmtest-activation.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/listen.sock", dir);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(lstat(sa.sun_path, &before), 0);
    ck_assert_int_eq(fmt_daemon_start_as(&d, NULL, extra, &(fmt_daemon_opts){.listen_fd = fd}),
                     0);
    ck_assert_msg(fmt_wait_until(fmt_socket_accepts, sa.sun_path, 10000), "not serving");
    ck_assert(wire_ping_says(sa.sun_path, "\"redis\":\"down\""));
    ck_assert_int_eq(lstat(sa.sun_path, &after), 0);
    ck_assert_uint_eq(after.st_gid, before.st_gid);
    log = fmt_slurp(d.log);
    ck_assert_msg(strstr(log, "socket_group") != NULL && strstr(log, "is not applied") != NULL,
                  "log: %s", log);
    free(log);
    fmt_daemon_stop(&d);
    close(fd);
    unlink(sa.sun_path);
    rmdir(dir);
}
END_TEST

/* ---- Redis AUTH ------------------------------------------------------------ */

#define SECRET "Pw-4417-zq7-not-for-logs"
#define WRONG "Wrong-8812-pw-not-for-logs"

/* The commands, keys and channels the docs give an ACL user for the daemon
 * (docs/PROTOCOL.md §13.3): this test proves they are enough. */
#define ACL_RULES "~fm:* &fm:* +ping +select +script|load +evalsha +eval +get +set +del " \
                  "+mget +exists +publish +subscribe +unsubscribe +incr +pexpire +pttl " \
                  "+multi +exec +client|id +client|tracking &__redis__:invalidate"

/* A 127.0.0.1 port nobody listens on now (never 6379: the kernel hands out
 * ephemeral ports). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    ck_assert_int_ne(port, 6379);
    return port;
}

/* A redis-server whose users need a password, with what a test needs
 * around it. Everything it holds is undone by secured_stop. */
typedef struct secured {
    fmt_redis r;
    fmt_daemon d;
    redisContext *rc;           /* allowed everything, for Redis's side */
    char port[8];               /* its 127.0.0.1 port, when it has one */
    const char *extra[5];       /* its arguments: they must outlive it */
    char dir[64];               /* for secret files: the test's own, 0700 */
    char tcp_url[64];           /* redis://USERINFO@127.0.0.1:port */
} secured;

/* Starts Redis (tcp: also on a 127.0.0.1 port of its own) and runs setup
 * on it, a command that gives a user its password (%s: SECRET). */
static void secured_start(secured *s, int tcp, const char *setup)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/fmtest-secret.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    if (tcp) {
        snprintf(s->port, sizeof(s->port), "%d", free_port());
        s->extra[0] = "--port";
        s->extra[1] = s->port;
        s->extra[2] = "--bind";
        s->extra[3] = "127.0.0.1";
    }
    ck_assert_msg(fmt_redis_start(&s->r, s->extra) == 0, "redis-server did not start");
    s->rc = wire_redis_open(&s->r);
    freeReplyObject(wire_redis_ok(s->rc, setup, SECRET));
}

/* The URL of the TCP port with userinfo ("fmredisd:", ":" SECRET, ...). */
static const char *secured_url(secured *s, const char *userinfo)
{
    snprintf(s->tcp_url, sizeof(s->tcp_url), "redis://%s@127.0.0.1:%s", userinfo, s->port);
    return s->tcp_url;
}

/* dir/name holding text; returns the path (free it). */
static char *secret_file(const secured *s, const char *name, const char *text)
{
    char *path = wire_strf("%s/%s", s->dir, name);
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static void secured_stop(secured *s)
{
    static const char *const files[] = {"redis.pass", "redis-password", "wrong.pass"};
    char path[128];

    redisFree(s->rc);
    wire_pair_stop(&s->r, &s->d);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", s->dir, files[i]);
        unlink(path);
    }
    rmdir(s->dir);
}

/* Locks, wakes and the cache all work, each with its effect in Redis. rc is
 * a connection to that Redis already allowed to read everything. */
static void assert_ops_work(const char *sock, redisContext *rc)
{
    int fd = wire_connect(sock), sub = wire_connect(sock);
    cJSON *reply;
    char *req, *event;

    /* lock */
    reply = wire_call(fd, "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"auth-lock\"}");
    wire_assert_ok(reply, "1");
    ck_assert_ptr_nonnull(wire_str(reply, "token"));
    ck_assert_int_eq(wire_redis_int(rc, "EXISTS fm:lock:auth-lock"), 1);
    req = wire_strf("{\"op\":\"lock.release\",\"id\":2,\"key\":\"auth-lock\",\"token\":\"%s\"}",
                    wire_str(reply, "token"));
    wire_expect_ok(fd, req, "2");
    ck_assert_int_eq(wire_redis_int(rc, "EXISTS fm:lock:auth-lock"), 0);
    free(req);
    cJSON_Delete(reply);

    /* wake: subscribed in Redis, a signal reaches the subscriber */
    wire_expect_ok(sub, "{\"op\":\"wake.subscribe\",\"id\":3}", "3");
    ck_assert_int_ge(wire_redis_numsub(rc, "fm:wake"), 1);
    reply = wire_call(fd, "{\"op\":\"wake.signal\",\"id\":4,\"execution_id\":\"auth-exec\"}");
    wire_assert_ok(reply, "4");
    ck_assert_int_ge(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(reply, "receivers")), 1);
    cJSON_Delete(reply);
    event = wire_recv_text(sub, WIRE_REPLY_MS, NULL);
    ck_assert_msg(event != NULL && strstr(event, "\"execution_id\":\"auth-exec\"") != NULL,
                  "no wake: %s", event ? event : "(nothing)");
    free(event);
    wire_expect_ok(fd, "{\"op\":\"wake.signal_many\",\"id\":5,\"execution_ids\":[\"a\",\"b\"]}",
                   "5");

    /* cache */
    wire_cache_set(fd, "{\"id\":\"auth-cached\",\"n\":1}");
    {
        redisReply *got = wire_redis_ok(rc, "GET fm:exec:auth-cached");

        ck_assert_str_eq(got->str, "{\"id\":\"auth-cached\",\"n\":1}");
        freeReplyObject(got);
    }
    wire_expect_cached(fd, "auth-cached", "{\"id\":\"auth-cached\",\"n\":1}");
    wire_expect_ok(fd, "{\"op\":\"cache.get_many\",\"id\":6,\"execution_ids\":[\"auth-cached\"],"
                   "\"fresh\":true}", "6");
    wire_expect_ok(fd, "{\"op\":\"cache.invalidate\",\"id\":7,\"execution_id\":\"auth-cached\"}",
                   "7");
    ck_assert_int_eq(wire_redis_int(rc, "EXISTS fm:exec:auth-cached"), 0);
    close(sub);
    close(fd);
}

/* Whether the n bytes at p hold needle. */
static int holds(const char *p, size_t n, const char *needle)
{
    return memmem(p, n, needle, strlen(needle)) != NULL;
}

/* A reply's text (ping, stats) must not hold secret. */
static void assert_reply_quiet(const char *sock, const char *request, const char *secret)
{
    int fd = wire_connect(sock);
    char *text;

    wire_send(fd, request);
    text = wire_recv_text(fd, WIRE_REPLY_MS, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, secret) == NULL, "%s answered with the password: %s", request,
                  text);
    free(text);
    close(fd);
}

/* secret is not in the daemon's log, its ping and stats replies, nor (when
 * it came from a file) its command line. */
static void assert_secret_nowhere(const fmt_daemon *d, const char *secret, int from_file)
{
    char *log = fmt_slurp(d->log), path[64], cmdline[8192];
    size_t n = 0;
    FILE *f;

    ck_assert_msg(strstr(log, secret) == NULL, "the log holds the password:\n%s", log);
    free(log);
    assert_reply_quiet(d->sock, "{\"op\":\"ping\",\"redis\":true}", secret);
    assert_reply_quiet(d->sock, "{\"op\":\"stats\"}", secret);
    if (!from_file)
        return;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)d->pid);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    n = fread(cmdline, 1, sizeof(cmdline), f);
    fclose(f);
    ck_assert_uint_gt(n, 0);
    ck_assert_msg(!holds(cmdline, n, secret), "/proc/%d/cmdline holds the password", (int)d->pid);
}

#define REQUIREPASS "CONFIG SET requirepass %s"
#define ACL_USER "ACL SETUSER fmredisd on >%s " ACL_RULES

/* fmt_wait_until: the daemon's stats say near_tracking is true. */
static int near_tracking(void *sock)
{
    int fd = wire_connect(sock);
    cJSON *r = wire_call(fd, "{\"op\":\"stats\"}");
    int on = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "near_tracking"));

    cJSON_Delete(r);
    close(fd);
    return on;
}

/* Every operation works through the daemon, and secret shows nowhere. */
static void assert_secured_daemon(secured *s, const char *secret, int from_file)
{
    assert_ops_work(s->d.sock, s->rc);
    assert_secret_nowhere(&s->d, secret, from_file);
}

/* The default user with requirepass, the password in the URL. */
START_TEST(test_requirepass_from_the_url)
{
    secured s;

    secured_start(&s, 1, REQUIREPASS);
    wire_daemon_up(&s.d, secured_url(&s, ":" SECRET), NULL);
    assert_secured_daemon(&s, SECRET, 0);
    secured_stop(&s);
}
END_TEST

/* A user made with the docs' rules, name and password in the URL. The ACL
 * forbids channels outside fm:*: a subscribe to one is refused to its
 * request, and the link does not flap. */
START_TEST(test_acl_user_from_the_url)
{
    secured s;
    int fd;

    secured_start(&s, 1, ACL_USER);
    wire_daemon_up(&s.d, secured_url(&s, "fmredisd:" SECRET), NULL);
    assert_secured_daemon(&s, SECRET, 0);
    ck_assert_msg(fmt_wait_until(near_tracking, s.d.sock, 10000),
                  "the docs' rules did not let the near cache arm");
    fd = wire_connect(s.d.sock);
    wire_expect_error(fd, "{\"op\":\"wake.subscribe\",\"id\":1,\"channel\":\"other:x\"}",
                      "redis_error", "1");
    wire_expect_ok(fd, "{\"op\":\"wake.subscribe\",\"id\":2,\"channel\":\"fm:x\"}", "2");
    ck_assert_int_eq(wire_link_stat(s.d.sock, "disconnects"), 0);
    ck_assert_int_eq(wire_link_stat(s.d.sock, "refused"), 1);
    close(fd);
    secured_stop(&s);
}
END_TEST

/* A user that may not run the near cache's transaction (the docs' rules
 * but MULTI): every operation still works, through Redis, and the log
 * says why the near cache is unused. */
START_TEST(test_acl_user_without_the_near_caches_commands)
{
    wire_log_wait w;
    secured s;

    secured_start(&s, 1, ACL_USER " -multi");
    wire_daemon_up(&s.d, secured_url(&s, "fmredisd:" SECRET), NULL);
    w.path = s.d.log;
    w.needle = "near cache unused: the Redis user may not run PTTL, MULTI or EXEC";
    ck_assert_msg(fmt_wait_until(wire_log_holds, &w, 10000), "no reason in the log");
    assert_secured_daemon(&s, SECRET, 0);
    ck_assert(!near_tracking(s.d.sock));
    secured_stop(&s);
}
END_TEST

/* requirepass over the Unix socket, whose URL carries no password: it
 * comes from redis_password_file. */
START_TEST(test_requirepass_from_the_password_file)
{
    secured s;
    char *pw;

    secured_start(&s, 0, REQUIREPASS);
    pw = secret_file(&s, "redis.pass", SECRET "\n");
    wire_daemon_up(&s.d, s.r.url, (const char *const[]){"--redis_password_file", pw, NULL});
    assert_secured_daemon(&s, SECRET, 1);
    secured_stop(&s);
    free(pw);
}
END_TEST

/* The ACL user's name in the URL, its password in the service manager's
 * credential, which wins over a (wrong) redis_password_file. */
START_TEST(test_acl_user_from_the_credentials_directory)
{
    secured s;
    char *cred, *wrong, *env;

    secured_start(&s, 1, ACL_USER);
    cred = secret_file(&s, "redis-password", SECRET "\n");
    wrong = secret_file(&s, "wrong.pass", WRONG "\n");
    env = wire_strf("CREDENTIALS_DIRECTORY=%s", s.dir);
    ck_assert_int_eq(fmt_daemon_start_as(&s.d, secured_url(&s, "fmredisd:"),
                                         (const char *const[]){"--redis_password_file", wrong,
                                                               NULL},
                                         &(fmt_daemon_opts){.env = (const char *const[]){env,
                                                                                         NULL},
                                                            .listen_fd = -1}), 0);
    wire_wait_redis_up(s.d.sock);
    assert_secured_daemon(&s, SECRET, 1);
    assert_secret_nowhere(&s.d, WRONG, 1);
    secured_stop(&s);
    free(env);
    free(wrong);
    free(cred);
}
END_TEST

static long long connections_received(redisContext *rc)
{
    redisReply *info = wire_redis_ok(rc, "INFO stats");
    const char *at = strstr(info->str, "total_connections_received:");
    long long n;

    ck_assert_ptr_nonnull(at);
    n = atoll(at + strlen("total_connections_received:"));
    freeReplyObject(info);
    return n;
}

static int count_in(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

#define BACKOFF_MAX_MS 400
#define WINDOW_MS 2000

/* A wrong password: said once per connection in the log and in ping, never
 * the password itself; requests fail as in an outage; the daemon retries
 * with its backoff (a bounded rate of connections), and once Redis takes
 * that password the link comes up without a restart. */
START_TEST(test_wrong_password_is_a_clear_error_and_retried_with_backoff)
{
    const char *extra[] = {"--reconnect_step_ms", "100", "--reconnect_max_ms", "400",
                           "--request_timeout_ms", "500", "--redis_password_file", NULL, NULL};
    wire_log_wait w;
    secured s;
    cJSON *reply;
    long long before, made;
    char *pw, *log, *text;
    int fd;

    secured_start(&s, 0, REQUIREPASS);
    pw = secret_file(&s, "redis.pass", WRONG "\n");
    extra[7] = pw;
    wire_daemon_start(&s.d, s.r.url, extra);

    /* The command link's refusal: ping reports that link's, and the
     * pub/sub link, with less to set up, may be refused first. */
    w.path = s.d.log;
    w.needle = "redis command link not established: Redis refused AUTH: WRONGPASS";
    ck_assert_msg(fmt_wait_until(wire_log_holds, &w, 10000), "no refused AUTH in the log");

    fd = wire_connect(s.d.sock);
    reply = wire_call(fd, "{\"op\":\"ping\",\"id\":1}");
    wire_assert_ok(reply, "1");
    ck_assert_str_eq(wire_str(reply, "redis"), "down");
    ck_assert_msg(wire_str(reply, "redis_error") != NULL &&
                  strstr(wire_str(reply, "redis_error"), "Redis refused AUTH: WRONGPASS") != NULL,
                  "redis_error: %s", wire_str(reply, "redis_error"));
    cJSON_Delete(reply);
    /* A request meanwhile fails as in an outage, and says nothing secret. */
    wire_send(fd, "{\"op\":\"cache.get\",\"id\":2,\"execution_id\":\"x\"}");
    text = wire_recv_text(fd, 10000, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, "redis_unavailable") != NULL, "reply: %s", text);
    ck_assert_msg(strstr(text, WRONG) == NULL && strstr(text, SECRET) == NULL, "reply: %s", text);
    free(text);

    /* Retrying, not flapping: over the window, at most one attempt per
     * connection every BACKOFF_MAX_MS once the backoff is at its top (plus
     * the attempts on the way up), and at least one. */
    before = connections_received(s.rc);
    poll(NULL, 0, WINDOW_MS);
    made = connections_received(s.rc) - before;
    ck_assert_msg(made >= 1 && made <= 2 * (WINDOW_MS / BACKOFF_MAX_MS + 4),
                  "%lld connections in %d ms", made, WINDOW_MS);
    log = fmt_slurp(s.d.log);
    ck_assert_msg(count_in(log, "Redis refused AUTH") <= 2, "logged more than once per "
                  "connection:\n%s", log);
    free(log);
    assert_secret_nowhere(&s.d, WRONG, 1);
    assert_secret_nowhere(&s.d, SECRET, 1);

    /* Redis now takes the daemon's password: it gets in by itself. */
    freeReplyObject(wire_redis_ok(s.rc, "CONFIG SET requirepass %s", WRONG));
    wire_wait_redis_up(s.d.sock);
    wire_expect_ok(fd, "{\"op\":\"cache.get\",\"id\":3,\"execution_id\":\"x\"}", "3");
    close(fd);
    secured_stop(&s);
    free(pw);
}
END_TEST

#define WITHHELD "an error whose text held the password (withheld)"

/* No error text should hold the password, but a weak one can stand in an
 * ordinary message: "refused" in "Connection refused". Masking it in place
 * would spell it out ("Connection *******"), so the whole text is
 * withheld, in the log, ping and stats alike. */
START_TEST(test_an_error_text_holding_the_password_is_withheld_whole)
{
    char dir[] = "/tmp/fmtest-secret.XXXXXX", *pw, url[64];
    const char *extra[] = {"--redis_password_file", NULL, NULL};
    fmt_daemon d;
    wire_log_wait w;
    cJSON *reply, *last;
    char *log;
    FILE *f;
    int fd;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    pw = wire_strf("%s/redis.pass", dir);
    f = fopen(pw, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs("refused\n", f), 0);
    ck_assert_int_eq(fclose(f), 0);
    extra[1] = pw;
    /* Nobody listens there: every attempt ends in "Connection refused". */
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", free_port());
    wire_daemon_start(&d, url, extra);

    /* The command link's, which ping reports (the pub/sub link's may come
     * first). */
    w.path = d.log;
    w.needle = "redis command link not established: " WITHHELD;
    ck_assert_msg(fmt_wait_until(wire_log_holds, &w, 10000), "nothing withheld in the log");
    fd = wire_connect(d.sock);
    reply = wire_call(fd, "{\"op\":\"ping\",\"id\":1}");
    wire_assert_ok(reply, "1");
    ck_assert_str_eq(wire_str(reply, "redis_error"), WITHHELD);
    cJSON_Delete(reply);
    reply = wire_call(fd, "{\"op\":\"stats\",\"id\":2}");
    wire_assert_ok(reply, "2");
    /* Of either connection, whichever failed last. */
    last = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(reply, "redis"),
                                            "last_error");
    ck_assert(cJSON_IsString(last));
    ck_assert_msg(strcmp(last->valuestring, "command: " WITHHELD) == 0 ||
                  strcmp(last->valuestring, "pub/sub: " WITHHELD) == 0,
                  "last_error: %s", last->valuestring);
    cJSON_Delete(reply);
    close(fd);
    log = fmt_slurp(d.log);
    ck_assert_msg(strstr(log, "refused") == NULL, "the log holds the password:\n%s", log);
    free(log);
    fmt_daemon_stop(&d);
    unlink(pw);
    rmdir(dir);
    free(pw);
}
END_TEST

Suite *fm_suite_access(void)
{
    Suite *s = suite_create("access");
    TCase *tc = fmt_tcase(s, "socket_group", users_up, users_down, GROUP_TIMEOUT);

    tcase_add_test(tc, test_socket_group_lets_members_in_and_keeps_others_out);
    tcase_add_test(tc, test_daemon_as_a_member_gives_the_socket_its_group);
    tcase_add_test(tc, test_daemon_outside_the_group_does_not_start);
    tcase_add_test(tc, test_socket_activation_leaves_the_group_to_the_unit);

    tc = fmt_tcase(s, "auth", NULL, NULL, AUTH_TIMEOUT);
    tcase_add_test(tc, test_requirepass_from_the_url);
    tcase_add_test(tc, test_acl_user_from_the_url);
    tcase_add_test(tc, test_acl_user_without_the_near_caches_commands);
    tcase_add_test(tc, test_requirepass_from_the_password_file);
    tcase_add_test(tc, test_acl_user_from_the_credentials_directory);
    tcase_add_test(tc, test_wrong_password_is_a_clear_error_and_retried_with_backoff);
    tcase_add_test(tc, test_an_error_text_holding_the_password_is_withheld_whole);
    return s;
}
