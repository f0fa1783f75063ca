/* test_client.c -- libfmredis against a scripted fake daemon.
 *
 * Some behaviours of the library need the daemon in states a real one hardly
 * ever reaches (a reply held back until the client's send buffer is full, and
 * sent at one exact moment). These tests play the daemon: a thread of the
 * test's process listens on a Unix socket in a private temporary directory
 * and follows a script, step by step with the test body. Each side waits for
 * the other on a condition with a deadline, never with a fixed sleep.
 *
 * Cleanup survives a failed assertion: the thread dies with the test's
 * process (Check's fork mode), its state is on the heap and freed only once
 * joined (without fork, a failing test must not pull it from under the
 * thread), and the directory is made and removed by an unchecked fixture in
 * the runner. */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cJSON.h>

#include "fm_tests.h"
#include "fmredis.h"
#include "harness.h"

#define STEP_MS 10000           /* bound of every wait for the other side */

static char tmpdir[256];        /* the fixture's private directory */

/* ---- fixture: the private directory -------------------------------------- */

static void dir_up(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/fm-client-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        abort();
    }
}

/* Removes the sockets the tests left (also those of a failed test). */
static void dir_down(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        char path[512];

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* ---- the fake daemon --------------------------------------------------- */

/* How far the fake daemon got, and how far the test lets it go. */
enum fake_step { SRV_START, SRV_A1_READ, SRV_READ_ONE, SRV_A1_GRANTED, SRV_DONE };
enum test_go { GO_NONE, GO_READ_ONE, GO_DRAIN, GO_GRANT_A1 };

typedef struct fake fake;
struct fake {
    char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int lfd, fd, fd2;           /* fd2: a second connection */
    int (*script)(fake *);
    pthread_t thread;
    atomic_int step;            /* enum fake_step, set by the thread */
    atomic_int go;              /* enum test_go, set by the test */
    /* Written by the thread; read by the test once it is joined. */
    int64_t a1_id, a2_id;
    int released_a1, released_a2;
    int frames;                 /* frames read */
    char releases[1024];        /* the releases read, for messages */
    char why[256];              /* what went wrong first, "" if nothing */
};

static int fake_fail(fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fake_fail(fake *f, const char *fmt, ...)
{
    va_list ap;

    if (f->why[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(f->why, sizeof(f->why), fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Waits until *v is at least want: 1 when it got there within STEP_MS. */
static int reached(atomic_int *v, int want)
{
    int64_t end = fmt_now_ms() + STEP_MS;

    while (atomic_load(v) < want) {
        if (fmt_now_ms() >= end)
            return 0;
        poll(NULL, 0, 1);
    }
    return 1;
}

/* Bytes the client sent that the fake daemon has not read yet. */
static int unread(const fake *f)
{
    int n = 0;

    return ioctl(f->fd, FIONREAD, &n) == 0 ? n : -1;
}

/* The next frame on fd, parsed; NULL (and no failure noted) when none came
 * within timeout_ms. */
static cJSON *fake_read_on(fake *f, int fd, int timeout_ms)
{
    char *text = fmt_raw_recv(fd, timeout_ms, NULL);
    cJSON *req;

    if (text == NULL)
        return NULL;
    f->frames++;
    req = cJSON_Parse(text);
    if (!cJSON_IsObject(req)) {
        fake_fail(f, "frame %d is not a JSON object: %.100s", f->frames, text);
        cJSON_Delete(req);
        req = NULL;
    }
    free(text);
    return req;
}

static cJSON *fake_read(fake *f, int timeout_ms)
{
    return fake_read_on(f, f->fd, timeout_ms);
}

static int fake_accept(fake *f)
{
    struct pollfd pfd = {f->lfd, POLLIN, 0};

    if (poll(&pfd, 1, STEP_MS) != 1)
        return -1;
    return accept(f->lfd, NULL, NULL);
}

static int fake_send_on(fake *f, int fd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fake_send_on(fake *f, int fd, const char *fmt, ...)
{
    char body[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (fmt_raw_send(fd, body, (size_t)n) != 0)
        return fake_fail(f, "could not send %s", body);
    return 0;
}

static int fake_grant(fake *f, int64_t id, const char *token, int fence)
{
    return fake_send_on(f, f->fd, "{\"id\":%lld,\"ok\":true,\"token\":\"%s\",\"fence\":%d}",
                        (long long)id, token, fence);
}

static const char *str_member(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    return cJSON_IsString(v) ? v->valuestring : "";
}

static int64_t id_member(const cJSON *o)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");

    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

#define PONG "{\"id\":%lld,\"ok\":true,\"redis\":\"up\"}"
#define A1_KEY "client:a1"
#define A2_KEY "client:a2"
#define A1_TOKEN "token-of-a1"
#define A2_TOKEN "token-of-a2"

/* Notes a release (answered as done); answers pings; notes A2's acquire
 * (never answered here). Other requests are ignored. */
static int fake_serve(fake *f, const cJSON *req)
{
    const char *op = str_member(req, "op");
    int64_t id = id_member(req);

    if (strcmp(op, "ping") == 0)
        return fake_send_on(f, f->fd, PONG, (long long)id);
    if (strcmp(op, "lock.acquire") == 0 && strcmp(str_member(req, "key"), A2_KEY) == 0)
        f->a2_id = id;
    if (strcmp(op, "lock.release") != 0)
        return 0;
    snprintf(f->releases + strlen(f->releases), sizeof(f->releases) - strlen(f->releases),
             " %s/%s", str_member(req, "key"), str_member(req, "token"));
    if (strcmp(str_member(req, "token"), A1_TOKEN) == 0)
        f->released_a1 = strcmp(str_member(req, "key"), A1_KEY) == 0;
    if (strcmp(str_member(req, "token"), A2_TOKEN) == 0)
        f->released_a2 = strcmp(str_member(req, "key"), A2_KEY) == 0;
    return fake_send_on(f, f->fd, "{\"id\":%lld,\"ok\":true,\"released\":true}", (long long)id);
}

/* Accepts the client and reads its acquire A1, whose reply it holds back. */
static int script_hold_a1(fake *f)
{
    cJSON *req;

    if ((f->fd = fake_accept(f)) < 0)
        return fake_fail(f, "no client connected");
    req = fake_read(f, STEP_MS);
    if (req == NULL)
        return fake_fail(f, "A1 never arrived");
    if (strcmp(str_member(req, "op"), "lock.acquire") == 0 &&
        strcmp(str_member(req, "key"), A1_KEY) == 0)
        f->a1_id = id_member(req);
    cJSON_Delete(req);
    if (f->a1_id < 0)
        return fake_fail(f, "the first request is not A1's acquire");
    atomic_store(&f->step, SRV_A1_READ);
    return 0;
}

/* With the client's send buffer full, reads one frame: room for exactly one
 * more request, A2. Once A2 is in, sends A1's late grant while A2 waits, so
 * the client's release of A1 finds the buffer full again. */
static int script_grant_a1_during_a2(fake *f)
{
    int64_t end;
    cJSON *req;
    int before;

    if (!reached(&f->go, GO_READ_ONE))
        return fake_fail(f, "the test never filled the send buffer");
    req = fake_read(f, STEP_MS);
    if (req == NULL)
        return fake_fail(f, "no filler request to read");
    cJSON_Delete(req);
    before = unread(f);
    atomic_store(&f->step, SRV_READ_ONE);
    for (end = fmt_now_ms() + STEP_MS; unread(f) <= before; poll(NULL, 0, 1))
        if (fmt_now_ms() >= end)
            return fake_fail(f, "A2 never arrived");
    if (fake_grant(f, f->a1_id, A1_TOKEN, 1) != 0)
        return -1;
    atomic_store(&f->step, SRV_A1_GRANTED);
    return 0;
}

/* Once A2 timed out: reads all that waits, grants A2 late, then serves until
 * both late locks were released (or the client stops sending). */
static int script_grant_a2_late(fake *f)
{
    cJSON *req;

    if (!reached(&f->go, GO_DRAIN))
        return fake_fail(f, "A2 never returned");
    while (unread(f) > 0) {
        req = fake_read(f, STEP_MS);
        if (req == NULL || fake_serve(f, req) != 0) {
            cJSON_Delete(req);
            return fake_fail(f, "the stream broke while draining");
        }
        cJSON_Delete(req);
    }
    if (f->a2_id < 0)
        return fake_fail(f, "A2's acquire was not among the frames read");
    if (fake_grant(f, f->a2_id, A2_TOKEN, 2) != 0)
        return -1;
    for (int64_t end = fmt_now_ms() + STEP_MS; !(f->released_a1 && f->released_a2);) {
        int64_t left = end - fmt_now_ms();

        req = left > 0 ? fake_read(f, (int)left) : NULL;
        if (req == NULL)
            return 0;   /* the test reports what is missing */
        if (fake_serve(f, req) != 0) {
            cJSON_Delete(req);
            return -1;
        }
        cJSON_Delete(req);
    }
    return 0;
}

static int script_full_buffer(fake *f)
{
    if (script_hold_a1(f) != 0 || script_grant_a1_during_a2(f) != 0)
        return -1;
    return script_grant_a2_late(f);
}

/* When told (the client's send buffer full), sends A1's late grant; then
 * expects the client on a new connection, whose first frame must be a
 * request of its own, never a release left over from the first one. */
static int script_reconnect(fake *f)
{
    cJSON *req;
    int ok;

    if (script_hold_a1(f) != 0)
        return -1;
    if (!reached(&f->go, GO_GRANT_A1))
        return fake_fail(f, "the test never filled the send buffer");
    if (fake_grant(f, f->a1_id, A1_TOKEN, 1) != 0)
        return -1;
    atomic_store(&f->step, SRV_A1_GRANTED);
    if ((f->fd2 = fake_accept(f)) < 0)
        return fake_fail(f, "the client never connected again");
    req = fake_read_on(f, f->fd2, STEP_MS);
    if (req == NULL)
        return fake_fail(f, "nothing came on the new connection");
    ok = strcmp(str_member(req, "op"), "ping") == 0;
    if (!ok)
        fake_fail(f, "the new connection began with %s", str_member(req, "op"));
    else
        fake_send_on(f, f->fd2, PONG, (long long)id_member(req));
    cJSON_Delete(req);
    return ok ? 0 : -1;
}

static void *fake_run(void *arg)
{
    fake *f = arg;

    f->script(f);
    atomic_store(&f->step, SRV_DONE);
    return NULL;
}

/* Listens (before the client connects, so there is no race) and starts the
 * script. */
static fake *fake_start(const char *name, int (*script)(fake *))
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    fake *f = calloc(1, sizeof(*f));

    ck_assert_ptr_nonnull(f);
    f->fd = f->fd2 = -1;
    f->script = script;
    f->a1_id = f->a2_id = -1;
    atomic_init(&f->step, SRV_START);
    atomic_init(&f->go, GO_NONE);
    ck_assert_int_lt(snprintf(f->sock, sizeof(f->sock), "%s/%s", tmpdir, name),
                     (int)sizeof(f->sock));
    memcpy(sa.sun_path, f->sock, sizeof(f->sock));
    unlink(f->sock);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(f->lfd, 0);
    ck_assert_msg(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(f->lfd, 4) == 0,
                  "cannot listen on %s", f->sock);
    ck_assert_int_eq(pthread_create(&f->thread, NULL, fake_run, f), 0);
    return f;
}

/* Waits for the script to reach want; fails the test, with the script's
 * complaint, when it ended early or got stuck. */
static void await_step(fake *f, int want)
{
    int got = reached(&f->step, want);
    int done = atomic_load(&f->step) == SRV_DONE;

    ck_assert_msg(got && !(done && f->why[0] != '\0'), "fake daemon: %s",
                  done ? f->why : "did not get there in time");
}

/* Joins the script (which ends by itself within its deadlines). */
static void fake_join(fake *f)
{
    pthread_join(f->thread, NULL);
    if (f->fd >= 0)
        close(f->fd);
    if (f->fd2 >= 0)
        close(f->fd2);
    close(f->lfd);
    unlink(f->sock);
}

/* ---- late grants while the send buffer is full -------------------------- */

#define A1_TIMEOUT_MS 200
#define A2_TIMEOUT_MS 1500
#define FILL_TIMEOUT_MS 20      /* each filler call */
#define LONG_TIMEOUT_MS 6000    /* the client's timeout while A2 waits */
#define SLACK_MS 1000           /* how late a timed-out call may return */

/* Sends requests that nobody reads until one cannot go out at all: the
 * client's send buffer is full then. Each is a ping whose call times out. */
static void fill_send_buffer(fm_client *c)
{
    fm_client_set_timeout(c, FILL_TIMEOUT_MS);
    for (int i = 0; i < 1000; i++) {
        int rc = fm_ping(c, 0, NULL);

        ck_assert_msg(rc == FM_ERR && fm_client_err(c) == FM_ERR_TIMEOUT && fm_client_connected(c),
                      "filler %d: %s", i, fm_client_errstr(c));
        if (strstr(fm_client_errstr(c), "sending") != NULL)
            return;
    }
    ck_abort_msg("1000 unread requests fit in the client's send buffer");
}

/* A client of f whose acquire A1 timed out (the script holds its reply
 * back), with its send buffer then full of requests nobody reads. */
static fm_client *orphan_then_full_buffer(fake *f)
{
    fm_lock_opts o1 = {.timeout_ms = A1_TIMEOUT_MS};
    fm_client *c = fm_connect(f->sock, STEP_MS);
    int tiny = 1, rc;
    fm_lock lk;

    ck_assert_ptr_nonnull(c);
    ck_assert_msg(fm_client_connected(c), "connect: %s", fm_client_errstr(c));
    /* The kernel's minimum (a few KiB): a handful of unread requests fill it. */
    ck_assert_int_eq(setsockopt(fm_client_fd(c), SOL_SOCKET, SO_SNDBUF, &tiny, sizeof(tiny)), 0);
    rc = fm_lock_acquire(c, A1_KEY, &o1, &lk);
    ck_assert_msg(rc == FM_ERR && fm_client_err(c) == FM_ERR_TIMEOUT, "A1: %s",
                  fm_client_errstr(c));
    await_step(f, SRV_A1_READ);
    fill_send_buffer(c);
    /* A release sent from inside the reader used to block for this long. */
    fm_client_set_timeout(c, LONG_TIMEOUT_MS);
    return c;
}

/* A late grant that arrives while a call waits, when the client's send
 * buffer is full, is released later, and the release neither makes the call
 * overrun its deadline nor hides that the call's own request went out: the
 * call, an acquire that then times out, is remembered, and its own late
 * grant is released too. */
START_TEST(test_late_grants_are_released_when_the_send_buffer_is_full)
{
    fm_lock_opts o2 = {.timeout_ms = A2_TIMEOUT_MS};
    fake *f = fake_start("full.sock", script_full_buffer);
    fm_client *c = orphan_then_full_buffer(f);
    int64_t t0, took, end;
    fm_event ev;
    fm_lock lk;
    int rc;

    atomic_store(&f->go, GO_READ_ONE);
    await_step(f, SRV_READ_ONE);
    t0 = fmt_now_ms();
    rc = fm_lock_acquire(c, A2_KEY, &o2, &lk);
    took = fmt_now_ms() - t0;
    atomic_store(&f->go, GO_DRAIN);
    ck_assert_msg(rc == FM_ERR && fm_client_err(c) == FM_ERR_TIMEOUT && fm_client_connected(c),
                  "A2: %s", fm_client_errstr(c));
    ck_assert_msg(atomic_load(&f->step) >= SRV_A1_GRANTED,
                  "A1's late grant was not sent while A2 waited");

    /* The next call sends what waited first; then the client keeps reading,
     * as a worker waiting for events does, until A2's late grant came. */
    fmt_ok(c, fm_ping(c, 0, NULL), "ping after A2");
    /* The script stops waiting for releases by itself within STEP_MS. */
    for (end = fmt_now_ms() + 2 * STEP_MS; atomic_load(&f->step) != SRV_DONE;) {
        ck_assert_msg(fmt_now_ms() < end, "the fake daemon never finished");
        if (fm_event_wait(c, &ev, 50) == FM_OK)
            fm_event_clear(&ev);
        ck_assert_msg(fm_client_connected(c), "closed: %s", fm_client_errstr(c));
    }
    fake_join(f);

    ck_assert_msg(f->why[0] == '\0', "fake daemon: %s", f->why);
    ck_assert_msg(f->released_a1 && f->released_a2 && took <= A2_TIMEOUT_MS + SLACK_MS,
                  "A1's lock released: %s, A2's: %s (releases read:%s); "
                  "A2 returned after %lld ms, its deadline was %d ms",
                  f->released_a1 ? "yes" : "no", f->released_a2 ? "yes" : "no",
                  f->releases[0] ? f->releases : " none", (long long)took, A2_TIMEOUT_MS);
    fm_client_free(c);
    free(f);
}
END_TEST

/* A poll loop's fm_event_read() that meets a late grant while the send
 * buffer is full does not block on the release; and a release still unsent
 * when the connection closes is dropped with it, never sent first on the
 * next connection (where the tail of a frame would corrupt the stream). */
START_TEST(test_unsent_release_is_dropped_with_its_connection)
{
    fake *f = fake_start("reconnect.sock", script_reconnect);
    fm_client *c = orphan_then_full_buffer(f);
    struct pollfd pfd = {fm_client_fd(c), POLLIN, 0};
    int64_t t0, took;
    fm_event ev;
    int rc;

    atomic_store(&f->go, GO_GRANT_A1);
    await_step(f, SRV_A1_GRANTED);
    ck_assert_msg(poll(&pfd, 1, STEP_MS) == 1, "A1's late grant never made the fd readable");
    t0 = fmt_now_ms();
    rc = fm_event_read(c, &ev);
    took = fmt_now_ms() - t0;
    ck_assert_msg(rc == FM_NONE, "fm_event_read: %d (%s)", rc, fm_client_errstr(c));
    ck_assert_msg(took < SLACK_MS, "fm_event_read blocked for %lld ms", (long long)took);

    fmt_ok(c, fm_client_reconnect(c), "reconnect");
    rc = fm_ping(c, 0, NULL);
    fake_join(f);
    ck_assert_msg(f->why[0] == '\0', "fake daemon: %s", f->why);
    fmt_ok(c, rc, "ping on the new connection");
    fm_client_free(c);
    free(f);
}
END_TEST

Suite *fm_suite_client(void)
{
    Suite *s = suite_create("client");
    TCase *tc = fmt_tcase(s, "fake_daemon", dir_up, dir_down, 30);

    tcase_add_test(tc, test_late_grants_are_released_when_the_send_buffer_is_full);
    tcase_add_test(tc, test_unsent_release_is_dropped_with_its_connection);
    return s;
}
