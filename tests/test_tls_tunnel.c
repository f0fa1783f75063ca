/* test_tls_tunnel.c -- the TLS layer on its own (daemon/tls.c,
 * tls_tunnel.c under redis_uv.c), in this process: a hiredis context
 * through a tunnel to a redis-server serving TLS, on a loop of the test's
 * own. Many megabytes both ways, the failures a tunnel writes for its
 * owner (a refused certificate, a refused connect, a server that never
 * answers), one tunnel's failure leaving another alone, Redis's last reply
 * before it closes, the listeners' directory made anew, and a context freed
 * in mid-transfer leaving no handle and, under make check-san, no leak. The
 * daemon's use of it is test_tls.c's. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm_tests.h"
#include "redis_uv.h"
#include "tls_int.h"
#include "topo_tls.h"

#define DEADLINE_MS 20000       /* room for valgrind and two CPU hogs */
#define BIG (8u << 20)          /* one value, in one reply */

static fmt_tls_certs certs;

static void certs_up(void)
{
    fmt_tls_certs_make(&certs);
}

static void certs_down(void)
{
    fmt_tls_certs_remove(&certs);
}

/* One hiredis context through one tunnel, and what happened to it. */
typedef struct run {
    uv_loop_t loop;
    uv_timer_t deadline;
    fm_config *cfg;
    fm_tls *tls;
    redisAsyncContext *ac;
    char why[256];              /* the tunnel's words (redis_uv.h) */
    char end[256];              /* why the context ended */
    int connected, ended, replies;
    const char *want;           /* the status on_status counts */
    char *big;                  /* BIG bytes written, to be read back */
} run;

static void on_deadline(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    run *r = ac->data;

    r->connected = status == REDIS_OK ? 1 : -1;
    if (status != REDIS_OK) {
        snprintf(r->end, sizeof(r->end), "%s", fm_redis_uv_why(ac, r->why));
        r->ac = NULL;
        r->ended = 1;
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    run *r = ac->data;

    (void)status;
    if (r == NULL)          /* run_free's own */
        return;
    snprintf(r->end, sizeof(r->end), "%s", fm_redis_uv_why(ac, r->why));
    r->ac = NULL;
    r->ended = 1;
}

/* Settings as the daemon would read them, for rediss://127.0.0.1:port. */
static void run_init(run *r, int port, const char *ca)
{
    char url[64], err[512];
    const char *names[] = {"redis_url", "redis_tls_ca_file"}, *values[2];
    fm_config_args args = {.names = names, .values = values, .nover = 2};

    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "rediss://127.0.0.1:%d", port);
    values[0] = url;
    values[1] = ca;
    r->cfg = fm_config_load(&args, err, sizeof(err));
    ck_assert_msg(r->cfg != NULL, "%s", err);
    r->tls = fm_tls_create(r->cfg, err, sizeof(err));
    ck_assert_msg(r->tls != NULL, "%s", err);
    ck_assert_int_eq(uv_loop_init(&r->loop), 0);
    uv_timer_init(&r->loop, &r->deadline);
    uv_timer_start(&r->deadline, on_deadline, DEADLINE_MS, 0);
}

/* Opens the context (NULL: fm_redis_uv_connect refused, r->why says why). */
static redisAsyncContext *run_open(run *r, int port)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    char ports[8];

    snprintf(ports, sizeof(ports), "%d", port);
    ck_assert_int_eq(getaddrinfo("127.0.0.1", ports, &hints, &res), 0);
    r->ac = fm_redis_uv_connect(&r->loop, r->tls, res, port, "127.0.0.1", r->why,
                                sizeof(r->why));
    if (r->ac != NULL) {
        r->ac->data = r;
        redisAsyncSetConnectCallback(r->ac, on_connect);
        redisAsyncSetDisconnectCallback(r->ac, on_disconnect);
    }
    return r->ac;
}

/* Runs the loop until cond holds, or fails the test at the deadline. */
static void run_until(run *r, int (*cond)(run *r), const char *what)
{
    while (!cond(r)) {
        ck_assert_msg(uv_is_active((uv_handle_t *)&r->deadline),
                      "%s: not within %d ms (the tunnel said \"%s\")", what, DEADLINE_MS, r->why);
        uv_run(&r->loop, UV_RUN_ONCE);
    }
}

static int ended(run *r) { return r->ended; }
static int two_replies(run *r) { return r->replies >= 2; }

/* Frees the context if still there, then lets every handle close: a
 * tunnel that kept one would leave the loop unclosable. */
static void run_free(run *r)
{
    if (r->ac != NULL) {
        redisAsyncContext *ac = r->ac;

        r->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&r->deadline, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&r->loop), 0);
    fm_tls_free(r->tls);
    fm_config_free(r->cfg);
    free(r->big);
}

static void on_set(redisAsyncContext *ac, void *reply, void *priv)
{
    run *r = priv;
    redisReply *rep = reply;

    (void)ac;
    ck_assert_ptr_nonnull(rep);
    ck_assert_msg(rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0,
                  "SET: %s", rep->str);
    r->replies++;
}

static void on_get(redisAsyncContext *ac, void *reply, void *priv)
{
    run *r = priv;
    redisReply *rep = reply;

    (void)ac;
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
    ck_assert_uint_eq((size_t)rep->len, BIG);
    ck_assert_msg(memcmp(rep->str, r->big, BIG) == 0, "GET: the bytes differ");
    r->replies++;
}

static char *random_bytes(size_t n)
{
    char *b = malloc(n);

    ck_assert_ptr_nonnull(b);
    srand(7);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)rand();
    return b;
}

/* 8 MB up in one command and down in one reply: both directions pass the
 * high-water mark, so reading pauses and resumes on each side. */
START_TEST(test_tunnel_carries_8_mb_each_way_byte_for_byte)
{
    fmt_tls_redis t;
    redisContext *plain;
    redisReply *len;
    run r;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_GOOD, 0);
    run_init(&r, t.port, certs.ca);
    r.big = random_bytes(BIG);
    ck_assert_ptr_nonnull(run_open(&r, t.port));
    redisAsyncCommand(r.ac, on_set, &r, "SET tunnel:big %b", r.big, (size_t)BIG);
    redisAsyncCommand(r.ac, on_get, &r, "GET tunnel:big");
    run_until(&r, two_replies, "SET and GET of 8 MB");
    ck_assert_int_eq(r.connected, 1);
    /* What Redis holds, over the plain socket. */
    plain = fmt_redis_connect(&t.r);
    len = fmt_redis_cmd(plain, "STRLEN tunnel:big");
    ck_assert_int_eq(len->integer, BIG);
    freeReplyObject(len);
    redisFree(plain);
    run_free(&r);
    fmt_redis_stop(&t.r);
}
END_TEST

/* Counts the replies that are the status r->want. */
static void on_status(redisAsyncContext *ac, void *reply, void *priv)
{
    run *r = priv;
    redisReply *rep = reply;

    (void)ac;
    if (rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, r->want) == 0)
        r->replies++;
}

/* Redis answers QUIT, then closes: the answer still reaches hiredis, then
 * the end, which is no TLS failure. */
START_TEST(test_redis_closing_delivers_its_last_reply_first)
{
    fmt_tls_redis t;
    run r;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_GOOD, 0);
    run_init(&r, t.port, certs.ca);
    ck_assert_ptr_nonnull(run_open(&r, t.port));
    r.want = "OK";
    redisAsyncCommand(r.ac, on_status, &r, "QUIT");
    run_until(&r, ended, "the end after QUIT");
    ck_assert_int_eq(r.replies, 1);
    ck_assert_str_eq(r.why, "");
    run_free(&r);
    fmt_redis_stop(&t.r);
}
END_TEST

/* A certificate the CA did not sign: the handshake fails, and the tunnel
 * says why before hiredis sees its socket close. */
START_TEST(test_failed_handshake_is_named_before_the_end)
{
    fmt_tls_redis t;
    char want[64];
    run r;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_OTHER_CA, 0);
    run_init(&r, t.port, certs.ca);
    ck_assert_ptr_nonnull(run_open(&r, t.port));
    redisAsyncCommand(r.ac, NULL, NULL, "PING");
    run_until(&r, ended, "the end of a failed handshake");
    snprintf(want, sizeof(want), "TLS handshake with 127.0.0.1:%d failed: ", t.port);
    ck_assert_msg(strncmp(r.end, want, strlen(want)) == 0 && strstr(r.end, "unknown CA"),
                  "ended with \"%s\"", r.end);
    run_free(&r);
    fmt_redis_stop(&t.r);
}
END_TEST

START_TEST(test_refused_connect_is_named)
{
    int p = fmt_unused_port();
    char want[64];
    run r;

    run_init(&r, p, certs.ca);
    ck_assert_ptr_nonnull(run_open(&r, p));
    run_until(&r, ended, "the end of a refused connect");
    snprintf(want, sizeof(want), "connecting to 127.0.0.1:%d: connection refused", p);
    ck_assert_str_eq(r.end, want);
    run_free(&r);
}
END_TEST

/* Part of a reply is in hiredis's reader: the rest is on its way. */
static int mid_reply(run *r)
{
    return r->ac != NULL && r->ac->c.reader->len > 0;
}

/* The context freed while 8 MB are on their way (written, queued, in
 * OpenSSL's buffers): every handle closes, nothing is left behind. */
START_TEST(test_freeing_mid_transfer_leaves_nothing)
{
    fmt_tls_redis t;
    redisContext *plain;
    char *big = random_bytes(BIG);
    run r;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_GOOD, 0);
    plain = fmt_redis_connect(&t.r);
    freeReplyObject(fmt_redis_cmd(plain, "SET tunnel:big %b", big, (size_t)BIG));
    redisFree(plain);
    free(big);
    run_init(&r, t.port, certs.ca);
    ck_assert_ptr_nonnull(run_open(&r, t.port));
    for (int i = 0; i < 4; i++)
        redisAsyncCommand(r.ac, NULL, NULL, "GET tunnel:big");
    run_until(&r, mid_reply, "the first bytes of a reply");
    ck_assert_int_eq(r.ended, 0);
    run_free(&r);
    fmt_redis_stop(&t.r);
}
END_TEST

/* A fake server on the test's loop: it accepts, and then either says
 * nothing or sends `bytes` and resets the connection. */
typedef struct fake {
    uv_tcp_t listener;
    uv_tcp_t peer;
    uv_write_t w;
    const char *bytes;
    size_t len;
    int port;
    int accepted;
} fake;

static void on_fake_written(uv_write_t *w, int status)
{
    fake *f = w->data;

    (void)status;
    uv_tcp_close_reset(&f->peer, NULL);
}

static void on_fake_conn(uv_stream_t *s, int status)
{
    fake *f = s->data;
    uv_buf_t b = uv_buf_init((char *)f->bytes, (unsigned)f->len);

    ck_assert_int_eq(status, 0);
    uv_tcp_init(s->loop, &f->peer);
    ck_assert_int_eq(uv_accept(s, (uv_stream_t *)&f->peer), 0);
    f->accepted = 1;
    f->w.data = f;
    if (f->len > 0)
        ck_assert_int_eq(uv_write(&f->w, (uv_stream_t *)&f->peer, &b, 1, on_fake_written), 0);
}

static void fake_start(fake *f, uv_loop_t *loop, const char *bytes, size_t len)
{
    struct sockaddr_in sa;
    int n = sizeof(sa);

    memset(f, 0, sizeof(*f));
    f->bytes = bytes;
    f->len = len;
    uv_tcp_init(loop, &f->listener);
    f->listener.data = f;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    ck_assert_int_eq(uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&f->listener, 4, on_fake_conn), 0);
    ck_assert_int_eq(uv_tcp_getsockname(&f->listener, (struct sockaddr *)&sa, &n), 0);
    f->port = ntohs(sa.sin_port);
}

static void fake_stop(fake *f)
{
    uv_close((uv_handle_t *)&f->listener, NULL);
    /* A peer that was sent bytes closed itself. */
    if (f->accepted && f->len == 0)
        uv_close((uv_handle_t *)&f->peer, NULL);
}

static int waiting_for_answer(run *r)
{
    return strstr(r->why, "no answer from the server (is it a TLS port?)") != NULL;
}

/* A server that accepts and never answers the handshake: the tunnel says
 * so in its owner's buffer, for the deadline that ends it to report. */
START_TEST(test_silent_server_is_named_while_waiting)
{
    fake f;
    run r;

    run_init(&r, 1, certs.ca);
    fake_start(&f, &r.loop, NULL, 0);
    ck_assert_ptr_nonnull(run_open(&r, f.port));
    run_until(&r, waiting_for_answer, "the tunnel saying it waits for the server");
    ck_assert_int_eq(r.ended, 0);
    redisAsyncFree(r.ac);
    r.ac = NULL;
    fake_stop(&f);
    run_free(&r);
}
END_TEST

static int one_pong(run *r)
{
    return r->replies >= 1;
}

/* OpenSSL's error queue is the thread's: a tunnel that fails on a broken
 * record must leave nothing there for a healthy one to trip on. */
START_TEST(test_one_tunnels_failure_leaves_another_alone)
{
    static const char broken[] = {0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00};
    fmt_tls_redis t;
    run good, bad;
    fake f;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_GOOD, 0);
    run_init(&good, t.port, certs.ca);
    ck_assert_ptr_nonnull(run_open(&good, t.port));
    good.want = "PONG";
    redisAsyncCommand(good.ac, on_status, &good, "PING");
    run_until(&good, one_pong, "a first PONG");
    /* The second tunnel on the first one's loop, so that both share it. */
    run_init(&bad, 1, certs.ca);
    fake_start(&f, &good.loop, broken, sizeof(broken));
    {
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
        char port[8];

        snprintf(port, sizeof(port), "%d", f.port);
        ck_assert_int_eq(getaddrinfo("127.0.0.1", port, &hints, &res), 0);
        bad.ac = fm_redis_uv_connect(&good.loop, bad.tls, res, f.port, "127.0.0.1", bad.why,
                                     sizeof(bad.why));
        ck_assert_ptr_nonnull(bad.ac);
        bad.ac->data = &bad;
        redisAsyncSetConnectCallback(bad.ac, on_connect);
        redisAsyncSetDisconnectCallback(bad.ac, on_disconnect);
        redisAsyncCommand(bad.ac, NULL, NULL, "PING");
    }
    while (!bad.ended) {
        ck_assert_msg(uv_is_active((uv_handle_t *)&good.deadline), "the broken server's end");
        uv_run(&good.loop, UV_RUN_ONCE);
    }
    ck_assert_msg(strstr(bad.end, "TLS handshake with 127.0.0.1:") == bad.end, "%s", bad.end);
    redisAsyncCommand(good.ac, on_status, &good, "PING");
    run_until(&good, two_replies, "a PONG after the other tunnel failed");
    ck_assert_int_eq(good.ended, 0);
    fake_stop(&f);
    run_free(&good);
    /* bad's loop never ran a handle. */
    run_free(&bad);
    fmt_redis_stop(&t.r);
}
END_TEST

/* The listeners' directory removed behind the daemon's back (a clean-up of
 * /tmp): the next tunnel makes it anew. */
START_TEST(test_vanished_directory_is_made_anew)
{
    fmt_tls_redis t;
    char gone[sizeof(((fm_tls *)0)->dir)];
    run r;

    fmt_tls_redis_start(&t, &certs, FMT_TLS_GOOD, 0);
    run_init(&r, t.port, certs.ca);
    ck_assert_ptr_nonnull(run_open(&r, t.port));
    r.want = "PONG";
    redisAsyncCommand(r.ac, on_status, &r, "PING");
    run_until(&r, one_pong, "a PONG");
    snprintf(gone, sizeof(gone), "%s", r.tls->dir);
    ck_assert_int_eq(rmdir(gone), 0);
    redisAsyncFree(r.ac);
    ck_assert_ptr_nonnull(run_open(&r, t.port));
    redisAsyncCommand(r.ac, on_status, &r, "PING");
    run_until(&r, two_replies, "a PONG through a new directory");
    ck_assert_str_ne(r.tls->dir, gone);
    run_free(&r);
    fmt_redis_stop(&t.r);
}
END_TEST

Suite *fm_suite_tls_tunnel(void)
{
    Suite *s = suite_create("tls_tunnel");
    TCase *tc = fmt_tcase(s, "tunnel", certs_up, certs_down, 120);

    tcase_add_test(tc, test_tunnel_carries_8_mb_each_way_byte_for_byte);
    tcase_add_test(tc, test_redis_closing_delivers_its_last_reply_first);
    tcase_add_test(tc, test_failed_handshake_is_named_before_the_end);
    tcase_add_test(tc, test_refused_connect_is_named);
    tcase_add_test(tc, test_freeing_mid_transfer_leaves_nothing);
    tcase_add_test(tc, test_silent_server_is_named_while_waiting);
    tcase_add_test(tc, test_one_tunnels_failure_leaves_another_alone);
    tcase_add_test(tc, test_vanished_directory_is_made_anew);
    return s;
}
