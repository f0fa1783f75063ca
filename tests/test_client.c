/* test_client.c -- libfmredis on its own: against a fake daemon, and its
 * face (what the shared library exports, the version, option structs).
 *
 * Some behaviours of the library need the daemon in states a real one hardly
 * ever reaches (a reply held back until the client's send buffer is full, and
 * sent at one exact moment). These tests play the daemon: a thread of the
 * test's process listens on a Unix socket in a private temporary directory
 * and follows a script, step by step with the test body. Each side waits for
 * the other on a condition with a deadline, never with a fixed sleep. Where
 * no timing matters, there is no thread: the test plays the daemon itself,
 * and sends its answers before the request (a client's first has id 1).
 *
 * Cleanup survives a failed assertion: the thread dies with the test's
 * process (Check's fork mode), its state is on the heap and freed only once
 * joined (without fork, a failing test must not pull it from under the
 * thread), and the directory is made and removed by an unchecked fixture in
 * the runner. */
#include <ctype.h>
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

/* A fake daemon that listens, with no script: the test itself plays the
 * daemon, which a client's connect does not wait for (the listener's
 * backlog takes it). */
static fake *fake_listen(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    fake *f = calloc(1, sizeof(*f));

    ck_assert_ptr_nonnull(f);
    f->fd = f->fd2 = -1;
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
    return f;
}

/* Listens (before the client connects, so there is no race) and starts the
 * script. */
static fake *fake_start(const char *name, int (*script)(fake *))
{
    fake *f = fake_listen(name);

    f->script = script;
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

/* Closes the fake daemon's sockets (it stays allocated). */
static void fake_close(fake *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->fd2 >= 0)
        close(f->fd2);
    close(f->lfd);
    unlink(f->sock);
}

/* Joins the script (which ends by itself within its deadlines). */
static void fake_join(fake *f)
{
    pthread_join(f->thread, NULL);
    fake_close(f);
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
    fm_client *c = fm_connect(f->sock, STEP_MS);
    int tiny = 1, rc;
    fm_lock_opts o1;
    fm_lock lk;

    fm_lock_opts_init(&o1);
    o1.timeout_ms = A1_TIMEOUT_MS;
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
    fake *f = fake_start("full.sock", script_full_buffer);
    fm_client *c = orphan_then_full_buffer(f);
    int64_t t0, took, end;
    fm_lock_opts o2;
    fm_event ev;
    fm_lock lk;
    int rc;

    fm_lock_opts_init(&o2);
    o2.timeout_ms = A2_TIMEOUT_MS;
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

/* ---- the library's face: exports, version, options, the event count ---- */

#define NAMES_MAX 128
#define NAME_LEN 64

typedef struct names {
    size_t n;
    char v[NAMES_MAX][NAME_LEN];
} names;

static int names_has(const names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0)
            return 1;
    return 0;
}

static void names_add(names *s, const char *name, size_t len)
{
    ck_assert_msg(len < NAME_LEN && s->n < NAMES_MAX, "too many or too long names: %.*s",
                  (int)len, name);
    memcpy(s->v[s->n], name, len);
    s->v[s->n][len] = '\0';
    if (!names_has(s, s->v[s->n]))
        s->n++;
}

/* Blanks out comments and preprocessor lines (continued ones too), so that
 * what is left of the header is declarations. */
static void blank_comments_and_macros(char *p)
{
    int line_start = 1;

    while (*p != '\0') {
        if (p[0] == '/' && p[1] == '*') {
            char *end = strstr(p + 2, "*/");

            ck_assert_ptr_nonnull(end);
            memset(p, ' ', (size_t)(end + 2 - p));
            p = end + 2;
            continue;
        }
        if (line_start && *p == '#') {
            while (*p != '\0' && !(*p == '\n' && p[-1] != '\\'))
                *p++ = ' ';
            continue;
        }
        if (*p == '\n')
            line_start = 1;
        else if (*p != ' ')
            line_start = 0;
        p++;
    }
}

/* The functions client/fmredis.h declares: each fm_ name followed by '('
 * outside comments and macros (a macro such as fm_lock_opts_init() is not
 * a function of the library, and the function pointer type fm_lock_fn is
 * followed by ')'). */
static void header_functions(names *out)
{
    char path[512];
    char *text, *p;

    snprintf(path, sizeof(path), "%s/client/fmredis.h", fmt_srcdir());
    text = fmt_slurp(path);
    blank_comments_and_macros(text);
    out->n = 0;
    for (p = text; *p != '\0';) {
        char *id = p, *after;

        if (!(isalpha((unsigned char)*p) || *p == '_')) {
            p++;
            continue;
        }
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        for (after = p; isspace((unsigned char)*after); after++)
            ;
        if (*after == '(' && strncmp(id, "fm_", 3) == 0)
            names_add(out, id, (size_t)(p - id));
    }
    free(text);
    /* A parse that found nothing would let every check below pass. */
    ck_assert_msg(out->n >= 30, "only %zu functions found in %s", out->n, path);
}

/* The symbols the shared library defines for the programs that link it. */
static void exported_symbols(names *out)
{
    char cmd[600], line[512];
    FILE *nm;
    int st;

    snprintf(cmd, sizeof(cmd), "nm -D --defined-only --format=posix '%s' 2>&1",
             fmt_lib_path());
    nm = popen(cmd, "r");
    ck_assert_ptr_nonnull(nm);
    out->n = 0;
    while (fgets(line, sizeof(line), nm) != NULL)
        names_add(out, line, strcspn(line, " \n"));
    st = pclose(nm);
    ck_assert_msg(st == 0 && out->n > 0, "%s: exit status %d, %zu symbols%s%s", cmd, st,
                  out->n, out->n ? ", first: " : "", out->n ? out->v[0] : "");
}

/* What in `a` is not in `b`, as " name name...", or "" when nothing. */
static void names_missing(const names *a, const names *b, char *buf, size_t cap)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < a->n && len < cap; i++)
        if (!names_has(b, a->v[i]))
            len += (size_t)snprintf(buf + len, cap - len, " %s", a->v[i]);
}

/* libfmredis.so exports the functions fmredis.h declares, and nothing else:
 * an application that defines fm_buf_init (say) must not replace the
 * library's own. */
START_TEST(test_shared_library_exports_exactly_the_functions_of_the_header)
{
    static names api, exported;
    char extra[2048], hidden[2048];

    header_functions(&api);
    exported_symbols(&exported);
    names_missing(&exported, &api, extra, sizeof(extra));
    names_missing(&api, &exported, hidden, sizeof(hidden));
    ck_assert_msg(extra[0] == '\0', "%s exports names fmredis.h does not declare:%s",
                  fmt_lib_path(), extra);
    ck_assert_msg(hidden[0] == '\0', "%s does not export (FMREDIS_EXPORT missing?):%s",
                  fmt_lib_path(), hidden);
}
END_TEST

START_TEST(test_version_is_the_headers)
{
    char numbers[64];

    snprintf(numbers, sizeof(numbers), "%d.%d.%d", FMREDIS_VERSION_MAJOR,
             FMREDIS_VERSION_MINOR, FMREDIS_VERSION_PATCH);
    ck_assert_str_eq(fm_version(), FMREDIS_VERSION);
    ck_assert_str_eq(fm_version(), numbers);
    ck_assert_uint_eq(fm_version_number(), FMREDIS_VERSION_HEX);
    ck_assert_uint_eq(fm_version_number(), (unsigned)(FMREDIS_VERSION_MAJOR << 16 |
                                                      FMREDIS_VERSION_MINOR << 8 |
                                                      FMREDIS_VERSION_PATCH));
}
END_TEST

/* A client of a fake daemon that the test plays itself (f->fd). */
static fm_client *played_client(fake *f)
{
    fm_client *c = fm_connect(f->sock, STEP_MS);

    ck_assert_ptr_nonnull(c);
    ck_assert_msg(fm_client_connected(c), "connect: %s", fm_client_errstr(c));
    f->fd = fake_accept(f);
    ck_assert_int_ge(f->fd, 0);
    return c;
}

/* The request the client sent, which the test checks has exactly `members`
 * members. */
static cJSON *played_request(fake *f, int members)
{
    cJSON *req = fake_read(f, STEP_MS);

    ck_assert_msg(req != NULL, "no request came%s%s", f->why[0] ? ": " : "", f->why);
    ck_assert_msg(cJSON_GetArraySize(req) == members, "%d members expected in %s", members,
                  cJSON_PrintUnformatted(req));
    return req;
}

#define NOT_ACQUIRED "{\"id\":%d,\"ok\":true,\"token\":null}"

/* Every option of an fm_lock_opts_init() struct is the daemon's default:
 * none is sent. */
START_TEST(test_lock_opts_from_init_send_no_option)
{
    fake *f = fake_listen("opts-init.sock");
    fm_client *c = played_client(f);
    fm_lock_opts o;
    cJSON *req;
    fm_lock lk;

    fm_lock_opts_init(&o);
    ck_assert_uint_eq(o.size, sizeof(o));
    ck_assert(o.ttl_ms == 0 && o.retry_delay_ms == 0 && o.max_retries == 0 &&
              o.on_disconnect == FM_ON_DISCONNECT_DEFAULT && o.auto_extend == 0 &&
              o.timeout_ms == 0);
    /* Answered before it is asked: the client's first request has id 1. */
    ck_assert_int_eq(fake_send_on(f, f->fd, NOT_ACQUIRED, 1), 0);
    fmt_ok(c, fm_lock_acquire(c, "opts:init", &o, &lk), "lock.acquire");
    ck_assert(!lk.acquired);
    req = played_request(f, 3);
    ck_assert_str_eq(str_member(req, "op"), "lock.acquire");
    ck_assert_str_eq(str_member(req, "key"), "opts:init");
    cJSON_Delete(req);
    fm_client_free(c);
    fake_close(f);
    free(f);
}
END_TEST

static int never_runs(fm_client *c, const fm_lock *lock, void *arg)
{
    ck_abort_msg("fm_with_lock ran its function with refused options");
    return 0;
}

/* A struct that fm_lock_opts_init() did not set up is refused before
 * anything is sent, by both calls that take options. */
START_TEST(test_lock_opts_not_from_init_are_refused)
{
    fake *f = fake_listen("opts-zero.sock");
    fm_client *c = played_client(f);
    fm_lock_opts o = {.ttl_ms = 1000};
    fm_with_lock_result res;
    fm_lock lk;

    ck_assert_int_eq(fm_lock_acquire(c, "opts:zero", &o, &lk), FM_ERR);
    ck_assert_int_eq(fm_client_err(c), FM_ERR_ARG);
    ck_assert_msg(strstr(fm_client_errstr(c), "fm_lock_opts_init") != NULL, "%s",
                  fm_client_errstr(c));
    ck_assert_int_eq(fm_with_lock(c, "opts:zero", &o, never_runs, NULL, &res), FM_ERR);
    ck_assert_int_eq(fm_client_err(c), FM_ERR_ARG);
    ck_assert(!res.ran);
    ck_assert(fm_client_connected(c));
    ck_assert_int_eq(unread(f), 0);
    fm_client_free(c);
    fake_close(f);
    free(f);
}
END_TEST

/* A program built with a later fmredis.h passes a larger struct: the fields
 * this library knows are read, and the later ones are fine while they keep
 * their default (0); one that does not is refused rather than ignored. */
START_TEST(test_lock_opts_of_a_later_header_are_read_up_to_what_is_known)
{
    struct {
        fm_lock_opts o;
        int64_t later;          /* a field this library does not know */
    } big;
    fake *f = fake_listen("opts-later.sock");
    fm_client *c = played_client(f);
    const cJSON *ttl;
    cJSON *req;
    fm_lock lk;

    fm_lock_opts_init_size(&big.o, sizeof(big));
    ck_assert_uint_eq(big.o.size, sizeof(big));
    ck_assert_int_eq(big.later, 0);
    big.o.ttl_ms = 1234;
    big.later = 7;
    ck_assert_int_eq(fm_lock_acquire(c, "opts:later", &big.o, &lk), FM_ERR);
    ck_assert_int_eq(fm_client_err(c), FM_ERR_ARG);
    ck_assert_int_eq(unread(f), 0);

    big.later = 0;
    ck_assert_int_eq(fake_send_on(f, f->fd, NOT_ACQUIRED, 1), 0);
    fmt_ok(c, fm_lock_acquire(c, "opts:later", &big.o, &lk), "lock.acquire");
    req = played_request(f, 4);
    ttl = cJSON_GetObjectItemCaseSensitive(req, "ttl");
    ck_assert(cJSON_IsNumber(ttl) && ttl->valueint == 1234);
    cJSON_Delete(req);
    fm_client_free(c);
    fake_close(f);
    free(f);
}
END_TEST

#define WAKE_EVENT "{\"event\":\"wake\",\"channel\":\"ch\",\"execution_id\":\"e%d\"}"

/* fm_client_has_events() is the number of events queued: those read
 * before a call's reply and those behind it in the same read, counted down
 * as fm_event_read() hands them out. */
START_TEST(test_has_events_counts_the_events_queued)
{
    fake *f = fake_listen("events.sock");
    fm_client *c = played_client(f);
    fm_event ev;

    /* All sent before the ping, whose one read takes them all. */
    ck_assert_int_eq(fake_send_on(f, f->fd, WAKE_EVENT, 1), 0);
    ck_assert_int_eq(fake_send_on(f, f->fd, WAKE_EVENT, 2), 0);
    ck_assert_int_eq(fake_send_on(f, f->fd, PONG, 1LL), 0);
    ck_assert_int_eq(fake_send_on(f, f->fd, WAKE_EVENT, 3), 0);
    ck_assert_uint_eq(fm_client_has_events(c), 0);
    fmt_ok(c, fm_ping(c, 0, NULL), "ping");
    for (size_t left = 3; left > 0; left--) {
        char id[8];

        ck_assert_uint_eq(fm_client_has_events(c), left);
        ck_assert_int_eq(fm_event_read(c, &ev), FM_OK);
        snprintf(id, sizeof(id), "e%zu", 4 - left);
        ck_assert_str_eq(ev.execution_id, id);
        fm_event_clear(&ev);
    }
    ck_assert_uint_eq(fm_client_has_events(c), 0);
    ck_assert_int_eq(fm_event_read(c, &ev), FM_NONE);
    fm_client_free(c);
    fake_close(f);
    free(f);
}
END_TEST

/* The daemon validated what its replies carry, so the client walks them
 * without a second strict validation: bytes that are not UTF-8 and a
 * repeated member name pass (as the daemon sent them), while a reply that
 * is not JSON's grammar still ends the connection as a protocol error. */
START_TEST(test_replies_are_walked_not_validated_again)
{
    static const char odd[] = "{\"id\":\"e1\",\"note\":\"\xff\xfe\",\"n\":1,\"n\":2}";
    fake *f = fake_listen("walk.sock");
    fm_client *c = played_client(f);
    char *json = NULL;
    size_t len = 0;

    ck_assert_int_eq(fake_send_on(f, f->fd, "{\"id\":1,\"ok\":true,\"execution\":%s}", odd),
                     0);
    fmt_ok(c, fm_cache_get(c, "e1", &json, &len), "cache.get");
    ck_assert_uint_eq(len, strlen(odd));
    ck_assert(memcmp(json, odd, len) == 0);
    free(json);
    ck_assert_int_eq(fake_send_on(f, f->fd, "{\"id\":2,\"ok\":true,\"execution\":{\"id\":}}"),
                     0);
    ck_assert_int_eq(fm_cache_get(c, "e1", &json, &len), FM_ERR);
    ck_assert_int_eq(fm_client_err(c), FM_ERR_PROTOCOL);
    ck_assert(!fm_client_connected(c));
    ck_assert_msg(strstr(fm_client_errstr(c), "invalid JSON") != NULL, "%s",
                  fm_client_errstr(c));
    fm_client_free(c);
    fake_close(f);
    free(f);
}
END_TEST

/* The fake answers a get_many of two ids with reply: a protocol error
 * whose message holds why, and no entries. */
static void get_many_refused(fake *f, fm_client *c, const char *reply, const char *why)
{
    static const char *const ids[] = {"a", "b1"};
    fm_cache_entry *e = NULL;
    size_t n = 0;

    ck_assert_int_eq(fake_send_on(f, f->fd, "%s", reply), 0);
    ck_assert_int_eq(fm_cache_get_many(c, ids, 2, &e, &n), FM_ERR);
    ck_assert_int_eq(fm_client_err(c), FM_ERR_PROTOCOL);
    ck_assert_msg(strstr(fm_client_errstr(c), why) != NULL, "%s", fm_client_errstr(c));
    ck_assert(e == NULL && n == 0);
}

/* A get_many reads the executions of its own reply, noted as the reply is
 * scanned, and not those of the frames around it: a late reply of another
 * get_many before it (dropped) and one after it (drained with the events
 * behind the reply). Names are decoded; a reply with more executions than
 * ids, or an execution that is not an object, is a protocol error. */
START_TEST(test_get_many_reads_the_executions_of_its_own_reply)
{
    static const char a[] = "{\"id\":\"a\",\"v\":\"}]\\\"{\",\"w\":[{\"x\":{}}]}";
    static const char *const ids[] = {"a", "b1"};
    fake *f = fake_listen("many.sock");
    fm_client *c = played_client(f);
    fm_cache_entry *e = NULL;
    size_t n = 0;

    ck_assert_int_eq(fake_send_on(f, f->fd, "{\"id\":99,\"ok\":true,\"executions\":"
                                  "{\"x\":{},\"y\":{},\"z\":{}}}"), 0);
    ck_assert_int_eq(fake_send_on(f, f->fd, WAKE_EVENT, 1), 0);
    ck_assert_int_eq(fake_send_on(f, f->fd, "{\"id\":1,\"ok\":true,\"executions\":"
                                  "{\"a\":%s,\"b\\u0031\":{\"id\":\"b1\"}}}", a), 0);
    ck_assert_int_eq(fake_send_on(f, f->fd, "{\"id\":98,\"ok\":true,\"executions\":"
                                  "{\"q\":{}}}"), 0);
    ck_assert_int_eq(fake_send_on(f, f->fd, WAKE_EVENT, 2), 0);
    fmt_ok(c, fm_cache_get_many(c, ids, 2, &e, &n), "cache.get_many");
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(e[0].id, "a");
    ck_assert_str_eq(e[0].json, a);
    ck_assert_uint_eq(e[0].len, strlen(a));
    ck_assert_str_eq(e[1].id, "b1");
    ck_assert_str_eq(e[1].json, "{\"id\":\"b1\"}");
    fm_cache_entries_free(e, n);
    ck_assert_uint_eq(fm_client_has_events(c), 2);

    get_many_refused(f, c, "{\"id\":2,\"ok\":true,\"executions\":{\"a\":{},\"b1\":{},\"c\":{}}}",
                     "more executions");
    get_many_refused(f, c, "{\"id\":3,\"ok\":true,\"executions\":{\"a\":{},\"b1\":[]}}",
                     "not an object");
    fm_client_free(c);
    fake_close(f);
    free(f);
}
END_TEST

Suite *fm_suite_client(void)
{
    Suite *s = suite_create("client");
    TCase *tc = fmt_tcase(s, "fake_daemon", dir_up, dir_down, 30);
    TCase *face = fmt_tcase(s, "face", NULL, NULL, 10);

    tcase_add_test(tc, test_late_grants_are_released_when_the_send_buffer_is_full);
    tcase_add_test(tc, test_unsent_release_is_dropped_with_its_connection);
    tcase_add_test(tc, test_lock_opts_from_init_send_no_option);
    tcase_add_test(tc, test_lock_opts_not_from_init_are_refused);
    tcase_add_test(tc, test_lock_opts_of_a_later_header_are_read_up_to_what_is_known);
    tcase_add_test(tc, test_has_events_counts_the_events_queued);
    tcase_add_test(tc, test_replies_are_walked_not_validated_again);
    tcase_add_test(tc, test_get_many_reads_the_executions_of_its_own_reply);
    tcase_add_test(face, test_shared_library_exports_exactly_the_functions_of_the_header);
    tcase_add_test(face, test_version_is_the_headers);
    return s;
}
