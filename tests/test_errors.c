/* test_errors.c -- every error code of the contract, through the raw
 * protocol, against a real redis-server and fmredisd.
 *
 * Each TCase starts one redis-server and one daemon with the defaults in an
 * unchecked fixture (so they belong to the runner) and stores one cached
 * execution through the daemon. After every malformed input the tests check
 * that a fresh client is still served and that execution is intact. Tests
 * that need a daemon with other limits, or a Redis they can stop with
 * SIGSTOP, start their own servers in the test body: those belong to the
 * test's process and die with it, also when an assertion fails. */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm_tests.h"
#include "harness.h"
#include "wire.h"

#define TCASE_TIMEOUT 30
#define STORED_ID "errors-stored"
/* Digits a double would lose, and a fraction's trailing zero. */
#define STORED_JSON "{\"id\":\"" STORED_ID "\",\"n\":12345678901234567890,\"f\":1.50}"
#define SHORT_TIMEOUT "300"     /* request_timeout_ms of the outage tests */

static fmt_redis redis;
static fmt_daemon daemon0;      /* the defaults, on `redis` */

/* ---- helpers ------------------------------------------------------------ */

/* unit repeated n times. */
static char *repeat(const char *unit, size_t n)
{
    size_t len = strlen(unit);
    char *s = malloc(len * n + 1);

    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * len, unit, len);
    s[len * n] = '\0';
    return s;
}

/* A JSON string of unit repeated n times. */
static char *quoted_repeat(const char *unit, size_t n)
{
    char *s = repeat(unit, n), *q = wire_strf("\"%s\"", s);

    free(s);
    return q;
}

/* A JSON array of n distinct execution ids. */
static char *id_array(size_t n)
{
    char *s = malloc(n * 16 + 3), *w = s;

    ck_assert_ptr_nonnull(s);
    *w++ = '[';
    for (size_t i = 0; i < n; i++)
        w += sprintf(w, "%s\"b%zu\"", i ? "," : "", i);
    *w++ = ']';
    *w = '\0';
    return s;
}

/* A fresh client is served, and what was stored before is intact. */
static void assert_still_serving(const fmt_daemon *d)
{
    wire_assert_serving(d->sock, STORED_ID, STORED_JSON);
}

/* The connection is open and answers in order. */
static void assert_conn_usable(int fd)
{
    wire_expect_ok(fd, "{\"op\":\"ping\",\"id\":\"after\"}", "\"after\"");
}

/* The next frame is error `code` without id, and then the daemon closes. */
static void expect_error_then_closed(int fd, const char *code)
{
    cJSON *r = wire_recv(fd, WIRE_REPLY_MS);

    wire_assert_error(r, code, NULL);
    cJSON_Delete(r);
    ck_assert_msg(fmt_raw_closed(fd, WIRE_REPLY_MS), "connection still open after %s", code);
}

/* ---- fixture ------------------------------------------------------------ */

static void servers_up(void)
{
    wire_pair_start(&redis, &daemon0, NULL, NULL);
    wire_store(daemon0.sock, STORED_JSON);
}

static void servers_down(void)
{
    wire_pair_stop(&redis, &daemon0);
}

/* ---- framing ------------------------------------------------------------ */

/* A frame header alone, on a fresh connection, gets error `code` and a
 * close; the daemon goes on serving others. */
static void expect_header_refused(const char header[4], const char *code)
{
    int fd = wire_connect(daemon0.sock);

    ck_assert_int_eq(fmt_raw_write(fd, header, 4), 0);
    expect_error_then_closed(fd, code);
    close(fd);
    assert_still_serving(&daemon0);
}

START_TEST(test_bad_frame_zero_length_is_answered_then_closed)
{
    expect_header_refused("\0\0\0\0", "bad_frame");
}
END_TEST

/* What came before the bad header is answered; what follows is never read. */
START_TEST(test_bad_frame_mid_stream_ends_the_stream_there)
{
    static const char ping[] = "\0\0\0\x17{\"op\":\"ping\",\"id\":\"p1\"}";
    char stream[3 * sizeof(ping)];
    size_t n = 0;
    int fd = wire_connect(daemon0.sock);
    cJSON *r;

    memcpy(stream + n, ping, sizeof(ping) - 1);
    n += sizeof(ping) - 1;
    memcpy(stream + n, "\0\0\0\0", 4);
    n += 4;
    memcpy(stream + n, ping, sizeof(ping) - 1);
    n += sizeof(ping) - 1;
    ck_assert_int_eq(fmt_raw_write(fd, stream, n), 0);

    r = wire_recv(fd, WIRE_REPLY_MS);
    wire_assert_ok(r, "\"p1\"");
    cJSON_Delete(r);
    r = wire_recv(fd, WIRE_REPLY_MS);
    wire_assert_error(r, "bad_frame", NULL);
    cJSON_Delete(r);
    ck_assert_msg(fmt_raw_recv(fd, WIRE_REPLY_MS, NULL) == NULL,
                  "a frame after the bad header was answered");
    close(fd);
    assert_still_serving(&daemon0);
}
END_TEST

START_TEST(test_frame_too_large_is_answered_on_the_header_alone)
{
    static const char *const extra[] = {"--max_frame_bytes", "1024", NULL};
    static const unsigned char header[4] = {0, 0, 0x04, 0x01};   /* 1025 */
    fmt_daemon small;
    int fd;

    wire_daemon_start(&small, redis.url, extra);
    /* The header in one write, then one byte a write. */
    for (int bytewise = 0; bytewise <= 1; bytewise++) {
        fd = wire_connect(small.sock);
        for (int i = 0; i < 4; i += bytewise ? 1 : 4)
            ck_assert_int_eq(fmt_raw_write(fd, header + i, bytewise ? 1 : 4), 0);
        expect_error_then_closed(fd, "frame_too_large");
        close(fd);
    }
    assert_still_serving(&small);
    fmt_daemon_stop(&small);
}
END_TEST

START_TEST(test_frame_of_max_frame_bytes_is_accepted)
{
    static const char *const extra[] = {"--max_frame_bytes", "1024", NULL};
    static const char head[] = "{\"op\":\"ping\",\"id\":\"max\",\"pad\":\"";
    fmt_daemon small;
    char body[1025];
    size_t pad = 1024 - (sizeof(head) - 1) - 2;
    int fd;

    memcpy(body, head, sizeof(head) - 1);
    memset(body + sizeof(head) - 1, 'x', pad);
    memcpy(body + sizeof(head) - 1 + pad, "\"}", 3);
    ck_assert_uint_eq(strlen(body), 1024);

    wire_daemon_start(&small, redis.url, extra);
    fd = wire_connect(small.sock);
    wire_expect_ok(fd, body, "\"max\"");
    close(fd);
    fmt_daemon_stop(&small);
}
END_TEST

/* A length near 4 GiB is refused from the header: no buffer for it. */
START_TEST(test_frame_too_large_for_the_default_limit)
{
    expect_header_refused("\xff\xff\xff\xff", "frame_too_large");
}
END_TEST

/* Three requests, one of them answered by Redis (so replies may come in any
 * order), as one byte stream. */
static const char *const split_requests[] = {
    "{\"op\":\"ping\",\"id\":1}",
    "{\"op\":\"cache.get\",\"id\":2,\"execution_id\":\"" STORED_ID "\"}",
    "{\"op\":\"hello\",\"id\":\"three\",\"client_name\":\"split\"}",
};

static char *split_stream(size_t *len)
{
    char *s = malloc(512), *w = s;

    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(split_requests[i]);

        *w++ = 0;
        *w++ = 0;
        *w++ = (char)(n >> 8);
        *w++ = (char)n;
        memcpy(w, split_requests[i], n);
        w += n;
    }
    *len = (size_t)(w - s);
    return s;
}

/* Reads the three replies, in whatever order, and checks each. */
static void expect_split_replies(int fd, size_t offset)
{
    static const char *const ids[3] = {"1", "2", "\"three\""};
    int seen[3] = {0, 0, 0};

    for (int k = 0; k < 3; k++) {
        size_t len;
        char *text = wire_recv_text(fd, WIRE_REPLY_MS, &len);
        cJSON *r = cJSON_Parse(text);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
        int which = cJSON_IsNumber(id) ? (int)id->valuedouble - 1
                  : cJSON_IsString(id) && strcmp(id->valuestring, "three") == 0 ? 2 : -1;

        ck_assert_msg(which >= 0 && which < 3 && !seen[which],
                      "split at %zu: unexpected reply %s", offset, text);
        seen[which] = 1;
        wire_assert_ok(r, ids[which]);
        if (which == 1)
            ck_assert_msg(strstr(text, "\"execution\":" STORED_JSON) != NULL,
                          "split at %zu: %s", offset, text);
        if (which == 2)
            ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r, "protocol")->valueint, 1);
        cJSON_Delete(r);
        free(text);
    }
}

START_TEST(test_framing_split_at_every_offset_yields_three_replies)
{
    size_t len;
    char *stream = split_stream(&len);

    for (size_t k = 0; k <= len; k++) {
        int fd = wire_connect(daemon0.sock);

        ck_assert_int_eq(fmt_raw_write(fd, stream, k), 0);
        ck_assert_int_eq(fmt_raw_write(fd, stream + k, len - k), 0);
        expect_split_replies(fd, k);
        close(fd);
    }
    free(stream);
}
END_TEST

START_TEST(test_framing_byte_by_byte_yields_three_replies)
{
    size_t len;
    char *stream = split_stream(&len);
    int fd = wire_connect(daemon0.sock);

    for (size_t k = 0; k < len; k++)
        ck_assert_int_eq(fmt_raw_write(fd, stream + k, 1), 0);
    expect_split_replies(fd, 0);
    close(fd);
    free(stream);
}
END_TEST

/* ---- bad_json ----------------------------------------------------------- */

typedef struct bad_body {
    const char *what;
    const char *text;
    size_t len;
} bad_body;
#define BODY(what, s) {what, s, sizeof(s) - 1}

static const bad_body bad_json_bodies[] = {
    BODY("not JSON", "hello"),
    BODY("truncated", "{\"op\":\"ping\""),
    BODY("trailing garbage", "{\"op\":\"ping\",\"id\":1} x"),
    BODY("a second object", "{\"op\":\"ping\"}{\"op\":\"ping\"}"),
    BODY("trailing NUL", "{\"op\":\"ping\"}\0"),
    BODY("trailing comma in object", "{\"op\":\"ping\",\"id\":1,}"),
    BODY("trailing comma in array", "{\"op\":\"ping\",\"a\":[1,]}"),
    BODY("leading zero", "{\"op\":\"ping\",\"id\":1,\"n\":01}"),
    BODY("negative leading zero", "{\"op\":\"ping\",\"n\":-01}"),
    BODY("single quotes", "{'op':'ping'}"),
    BODY("raw control char in a string", "{\"op\":\"ping\",\"id\":1,\"s\":\"a\x01" "b\"}"),
    BODY("raw newline in a string", "{\"op\":\"ping\",\"s\":\"a\nb\"}"),
    BODY("invalid UTF-8", "{\"op\":\"ping\",\"id\":1,\"s\":\"\xff\"}"),
    BODY("truncated UTF-8", "{\"op\":\"ping\",\"s\":\"\xc3\"}"),
    BODY("overlong UTF-8 slash", "{\"op\":\"ping\",\"s\":\"\xc0\xaf\"}"),
    BODY("overlong UTF-8 three bytes", "{\"op\":\"ping\",\"s\":\"\xe0\x80\xaf\"}"),
    BODY("UTF-8 surrogate", "{\"op\":\"ping\",\"s\":\"\xed\xa0\x80\"}"),
    BODY("lone escaped surrogate", "{\"op\":\"ping\",\"s\":\"\\ud800\"}"),
    BODY("invalid UTF-8 in a name", "{\"op\":\"ping\",\"\xfe\":1}"),
    BODY("duplicate member names", "{\"op\":\"ping\",\"id\":1,\"id\":1}"),
    BODY("duplicate op", "{\"op\":\"ping\",\"op\":\"ping\"}"),
    BODY("duplicate names, one escaped", "{\"op\":\"ping\",\"\\u006fp\":\"ping\"}"),
    BODY("duplicate names deeper down", "{\"op\":\"ping\",\"x\":{\"a\":1,\"a\":2}}"),
    BODY("an array", "[{\"op\":\"ping\",\"id\":1}]"),
    BODY("a string", "\"ping\""),
    BODY("a number", "42"),
    BODY("null", "null"),
    BODY("only whitespace", " \n"),
    BODY("a non-JSON whitespace", "{\"op\":\"ping\"}\f"),
};

/* Each body gets bad_json without an id, and the connection stays usable. */
static void expect_bad_json(int fd, const bad_body *b)
{
    cJSON *r;

    ck_assert_int_eq(fmt_raw_send(fd, b->text, b->len), 0);
    r = wire_recv(fd, WIRE_REPLY_MS);
    if (!cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "ok")))
        ck_abort_msg("%s: accepted", b->what);
    wire_assert_error(r, "bad_json", NULL);
    cJSON_Delete(r);
    assert_conn_usable(fd);
}

START_TEST(test_bad_json_keeps_the_connection_open)
{
    int fd = wire_connect(daemon0.sock);

    for (size_t i = 0; i < sizeof(bad_json_bodies) / sizeof(bad_json_bodies[0]); i++)
        expect_bad_json(fd, &bad_json_bodies[i]);
    close(fd);
    assert_still_serving(&daemon0);
}
END_TEST

/* {"op":"ping","id":1,"x":[[...]]}: the object is one level, then levels-1
 * arrays. */
static char *nested_ping(size_t levels)
{
    char *open = repeat("[", levels - 1), *close_ = repeat("]", levels - 1);
    char *s = wire_strf("{\"op\":\"ping\",\"id\":\"deep\",\"x\":%s%s}", open, close_);

    free(open);
    free(close_);
    return s;
}

START_TEST(test_bad_json_nesting_deeper_than_512)
{
    int fd = wire_connect(daemon0.sock);
    char *ok = nested_ping(512), *deep = nested_ping(513);
    bad_body b = {"513 levels", deep, strlen(deep)};

    wire_expect_ok(fd, ok, "\"deep\"");
    expect_bad_json(fd, &b);
    free(ok);
    free(deep);
    close(fd);
    assert_still_serving(&daemon0);
}
END_TEST

START_TEST(test_insignificant_whitespace_is_accepted)
{
    int fd = wire_connect(daemon0.sock);

    wire_expect_ok(fd, " \t\r\n{ \"op\" : \"ping\" , \"id\" : 5 } \n", "5");
    close(fd);
}
END_TEST

/* ---- ids ---------------------------------------------------------------- */

static void expect_bad_id(int fd, const char *id)
{
    char *req = wire_strf("{\"op\":\"ping\",\"id\":%s}", id);

    wire_expect_error(fd, req, "bad_request", NULL);
    free(req);
}

START_TEST(test_bad_request_for_unusable_ids_without_id)
{
    static const char *const ids[] = {
        "null", "1.5", "1.0", "1e3", "1E3", "-0.0", "true", "false", "[1]", "{\"a\":1}", "[]",
        "9007199254740992", "-9007199254740992", "18446744073709551616",
        "100000000000000000000000",
    };
    int fd = wire_connect(daemon0.sock);
    char *quoted = quoted_repeat("s", 257), *quoted_multi = quoted_repeat("\\u00e9", 129);

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        expect_bad_id(fd, ids[i]);
    expect_bad_id(fd, quoted);          /* 257 bytes */
    expect_bad_id(fd, quoted_multi);    /* 258 bytes of UTF-8 from 129 escapes */
    assert_conn_usable(fd);
    free(quoted);
    free(quoted_multi);
    close(fd);
    assert_still_serving(&daemon0);
}
END_TEST

static void expect_id_echoed(int fd, const char *id)
{
    char *req = wire_strf("{\"op\":\"ping\",\"id\":%s}", id);
    char *text, *want = wire_strf("\"id\":%s", id);
    cJSON *r;

    wire_send(fd, req);
    text = wire_recv_text(fd, WIRE_REPLY_MS, NULL);
    r = cJSON_Parse(text);
    wire_assert_ok(r, id);
    /* Integers keep their digits: no exponent, no fraction. */
    if (id[0] != '"')
        ck_assert_msg(strstr(text, want) != NULL, "id %s echoed as %s", id, text);
    cJSON_Delete(r);
    free(text);
    free(want);
    free(req);
}

START_TEST(test_usable_ids_are_echoed_exactly)
{
    static const char *const ids[] = {
        "-9007199254740991", "9007199254740991", "0", "-1", "\"\"",
        "\"caf\\u00e9 \\\"quoted\\\" \\\\ \\/\"", "\"\xe2\x82\xac\"",
    };
    int fd = wire_connect(daemon0.sock);
    char *q256 = quoted_repeat("s", 256), *qe128 = quoted_repeat("\\u00e9", 128);

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        expect_id_echoed(fd, ids[i]);
    expect_id_echoed(fd, q256);     /* 256 bytes */
    expect_id_echoed(fd, qe128);    /* 256 bytes of UTF-8, 768 bytes of text */
    free(q256);
    free(qe128);
    close(fd);
}
END_TEST

/* ---- fields ------------------------------------------------------------- */

typedef struct field_case {
    const char *op;
    const char *args;   /* members after op, or "" */
} field_case;

static const field_case bad_fields[] = {
    /* key */
    {"lock.acquire", ""},
    {"lock.acquire", "\"key\":null"},
    {"lock.acquire", "\"key\":5"},
    {"lock.acquire", "\"key\":true"},
    {"lock.acquire", "\"key\":[\"k\"]"},
    {"lock.acquire", "\"key\":{\"k\":1}"},
    {"lock.acquire", "\"key\":\"\""},
    {"lock.acquire", "\"key\":\"a\\u0001b\""},
    {"lock.acquire", "\"key\":\"a\\u0000b\""},
    {"lock.acquire", "\"key\":\"\\u0000\""},
    {"lock.acquire", "\"key\":\"a\\nb\""},
    {"lock.acquire", "\"key\":\"a\\u001fb\""},
    {"lock.acquire", "\"key\":\"a\\u007fb\""},
    {"lock.acquire", "\"key\":\"a\x7f" "b\""},
    {"lock.acquire", "\"Key\":\"k\""},
    /* ttl, retry_delay, max_retries */
    {"lock.acquire", "\"key\":\"k\",\"ttl\":0"},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":-1"},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":2147483648"},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":1.5"},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":1000.0"},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":1e3"},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":\"100\""},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":null"},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":true"},
    {"lock.acquire", "\"key\":\"k\",\"ttl\":99999999999999999999"},
    {"lock.acquire", "\"key\":\"k\",\"retry_delay\":0"},
    {"lock.acquire", "\"key\":\"k\",\"retry_delay\":2147483648"},
    {"lock.acquire", "\"key\":\"k\",\"retry_delay\":null"},
    {"lock.acquire", "\"key\":\"k\",\"max_retries\":-1"},
    {"lock.acquire", "\"key\":\"k\",\"max_retries\":2.5"},
    {"lock.acquire", "\"key\":\"k\",\"max_retries\":2147483648"},
    /* on_disconnect, auto_extend */
    {"lock.acquire", "\"key\":\"k\",\"on_disconnect\":\"maybe\""},
    {"lock.acquire", "\"key\":\"k\",\"on_disconnect\":\"RELEASE\""},
    {"lock.acquire", "\"key\":\"k\",\"on_disconnect\":\"\""},
    {"lock.acquire", "\"key\":\"k\",\"on_disconnect\":null"},
    {"lock.acquire", "\"key\":\"k\",\"on_disconnect\":1"},
    {"lock.acquire", "\"key\":\"k\",\"auto_extend\":\"yes\""},
    {"lock.acquire", "\"key\":\"k\",\"auto_extend\":1"},
    {"lock.acquire", "\"key\":\"k\",\"auto_extend\":null"},
    {"lock.acquire", "\"key\":\"k\",\"auto_extend\":true,\"ttl\":50"},
    {"lock.acquire", "\"key\":\"k\",\"auto_extend\":true,\"ttl\":99"},
    /* release, extend, is_locked */
    {"lock.release", "\"key\":\"k\""},
    {"lock.release", "\"token\":\"t\""},
    {"lock.release", "\"key\":\"k\",\"token\":null"},
    {"lock.release", "\"key\":\"k\",\"token\":\"\""},
    {"lock.release", "\"key\":\"k\",\"token\":5"},
    {"lock.extend", "\"key\":\"k\""},
    {"lock.extend", "\"key\":\"k\",\"token\":\"t\",\"ttl\":0"},
    {"lock.extend", "\"key\":\"k\",\"token\":\"t\",\"ttl\":\"1000\""},
    {"lock.is_locked", ""},
    {"lock.is_locked", "\"key\":\"\""},
    /* wake */
    {"wake.signal", ""},
    {"wake.signal", "\"execution_id\":null"},
    {"wake.signal", "\"execution_id\":7"},
    {"wake.signal", "\"execution_id\":\"e\",\"channel\":\"\""},
    {"wake.signal", "\"execution_id\":\"e\",\"channel\":5"},
    {"wake.signal", "\"execution_id\":\"e\",\"channel\":\"c\\u0000\""},
    {"wake.signal_many", ""},
    {"wake.signal_many", "\"execution_ids\":null"},
    {"wake.signal_many", "\"execution_ids\":\"a\""},
    {"wake.signal_many", "\"execution_ids\":{\"a\":1}"},
    {"wake.signal_many", "\"execution_ids\":[\"a\",1]"},
    {"wake.signal_many", "\"execution_ids\":[\"a\",\"\"]"},
    {"wake.signal_many", "\"execution_ids\":[\"a\",null]"},
    {"wake.signal_many", "\"execution_ids\":[[\"a\"]]"},
    {"wake.signal_many", "\"execution_ids\":[\"a\\u0001\"]"},
    {"wake.subscribe", "\"group\":\"\""},
    {"wake.subscribe", "\"group\":5"},
    {"wake.subscribe", "\"group\":\"g\\u0002\""},
    {"wake.subscribe", "\"channel\":\"\""},
    {"wake.subscribe", "\"channel\":null"},
    {"wake.unsubscribe", "\"channel\":5"},
    /* cache */
    {"cache.get", ""},
    {"cache.get", "\"execution_id\":null"},
    {"cache.get", "\"execution_id\":5"},
    {"cache.get", "\"execution_id\":\"\""},
    {"cache.get", "\"execution_id\":\"x\\u0000y\""},
    {"cache.set", ""},
    {"cache.set", "\"execution\":null"},
    {"cache.set", "\"execution\":\"x\""},
    {"cache.set", "\"execution\":[\"x\"]"},
    {"cache.set", "\"execution\":5"},
    {"cache.set", "\"execution\":{}"},
    {"cache.set", "\"execution\":{\"ID\":\"x\"}"},
    {"cache.set", "\"execution\":{\"id\":5}"},
    {"cache.set", "\"execution\":{\"id\":null}"},
    {"cache.set", "\"execution\":{\"id\":[\"x\"]}"},
    {"cache.set", "\"execution\":{\"id\":\"\"}"},
    {"cache.set", "\"execution\":{\"id\":\"x\\u0001\"}"},
    {"cache.set", "\"execution\":{\"id\":\"x\\u0000\"}"},
    {"cache.set", "\"execution\":{\"id\":\"x\"},\"ttl\":0"},
    {"cache.set", "\"execution\":{\"id\":\"x\"},\"ttl\":1.5"},
    {"cache.invalidate", ""},
    {"cache.invalidate", "\"execution_id\":\"\""},
    {"cache.invalidate_many", ""},
    {"cache.invalidate_many", "\"execution_ids\":\"a\""},
    {"cache.invalidate_many", "\"execution_ids\":[\"a\",1]"},
    {"cache.get_many", ""},
    {"cache.get_many", "\"execution_ids\":\"a\""},
    {"cache.get_many", "\"execution_ids\":[\"a\",1]"},
    {"cache.get_many", "\"execution_ids\":[\"a\",{}]"},
    /* hello, ping */
    {"hello", "\"client_name\":5"},
    {"hello", "\"client_name\":\"\""},
    {"hello", "\"client_name\":null"},
    {"hello", "\"client_name\":\"a\\u001b[0m\""},
    {"ping", "\"redis\":\"yes\""},
    {"ping", "\"redis\":1"},
    {"ping", "\"redis\":null"},
};

/* Sends {"id":n,"op":op,args} and checks the reply: bad_request with id n,
 * or (good) a success with id n. */
static void expect_field(int fd, int n, const char *op, const char *args, int good)
{
    char *req = wire_strf("{\"id\":%d,\"op\":\"%s\"%s%s}", n, op, *args ? "," : "", args);
    char *id = wire_strf("%d", n);

    if (good)
        wire_expect_ok(fd, req, id);
    else
        wire_expect_error(fd, req, "bad_request", id);
    free(req);
    free(id);
}

START_TEST(test_bad_request_for_bad_fields_keeps_the_id)
{
    int fd = wire_connect(daemon0.sock);

    for (size_t i = 0; i < sizeof(bad_fields) / sizeof(bad_fields[0]); i++)
        expect_field(fd, (int)i, bad_fields[i].op, bad_fields[i].args, 0);
    assert_conn_usable(fd);
    close(fd);
    assert_still_serving(&daemon0);
}
END_TEST

/* The values right at each limit are accepted. */
static const field_case good_fields[] = {
    {"lock.acquire", "\"key\":\"errors-limit\",\"ttl\":2147483647,\"max_retries\":0,"
                     "\"retry_delay\":2147483647,\"on_disconnect\":\"release\""},
    {"lock.acquire", "\"key\":\"errors-limit-1\",\"ttl\":1,\"max_retries\":0,"
                     "\"on_disconnect\":\"keep\",\"auto_extend\":false"},
    {"lock.acquire", "\"key\":\"errors-limit-2\",\"ttl\":100,\"max_retries\":0,"
                     "\"auto_extend\":true"},
    {"cache.set", "\"execution\":{\"id\":\"errors-limit\"},\"ttl\":2147483647"},
    {"cache.get_many", "\"execution_ids\":[]"},
    {"cache.invalidate_many", "\"execution_ids\":[]"},
    {"wake.signal_many", "\"execution_ids\":[]"},
    {"ping", "\"redis\":true"},
    {"ping", "\"redis\":false"},
    {"lock.is_locked", "\"key\":\"k\",\"unknown_member\":[null,{\"x\":1}]"},
};

START_TEST(test_values_at_the_limits_are_accepted)
{
    int fd = wire_connect(daemon0.sock);

    for (size_t i = 0; i < sizeof(good_fields) / sizeof(good_fields[0]); i++)
        expect_field(fd, (int)i, good_fields[i].op, good_fields[i].args, 1);
    close(fd);
}
END_TEST

/* A string field of n bytes made of unit (1 or 2 bytes of UTF-8 each). */
static void expect_length(int fd, const char *op, const char *field, const char *extra,
                          const char *unit, size_t n, int good)
{
    char *s = repeat(unit, n);
    char *args = wire_strf("\"%s\":\"%s\"%s", field, s, extra);

    expect_field(fd, (int)n, op, args, good);
    free(s);
    free(args);
}

START_TEST(test_string_lengths_are_bytes_of_utf8)
{
    static const struct {
        const char *op, *field, *extra;
        size_t max;
    } limits[] = {
        {"lock.is_locked", "key", "", 512},
        {"lock.acquire", "key", ",\"max_retries\":0", 512},
        {"cache.get", "execution_id", "", 512},
        {"cache.invalidate", "execution_id", "", 512},
        {"wake.signal", "execution_id", "", 512},
        {"wake.signal", "channel", ",\"execution_id\":\"e\"", 512},
        {"wake.subscribe", "group", ",\"channel\":\"errors-group\"", 128},
        {"hello", "client_name", "", 128},
    };
    int fd = wire_connect(daemon0.sock);

    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        const char *op = limits[i].op, *f = limits[i].field, *x = limits[i].extra;
        size_t max = limits[i].max;

        expect_length(fd, op, f, x, "a", max, 1);
        expect_length(fd, op, f, x, "a", max + 1, 0);
        /* Two bytes a character: max/2 characters fill it, raw or escaped. */
        expect_length(fd, op, f, x, "\xc3\xa9", max / 2, 1);
        expect_length(fd, op, f, x, "\\u00e9", max / 2, 1);
        expect_length(fd, op, f, x, "\\u00e9", max / 2 + 1, 0);
    }
    close(fd);
    assert_still_serving(&daemon0);
}
END_TEST

static void expect_batch(int fd, const char *op, size_t n, int good)
{
    char *ids = id_array(n), *args = wire_strf("\"execution_ids\":%s", ids);

    expect_field(fd, (int)n, op, args, good);
    free(ids);
    free(args);
}

START_TEST(test_batches_over_max_batch_are_refused)
{
    static const char *const extra[] = {"--max_batch", "10", NULL};
    static const char *const ops[] = {"cache.get_many", "cache.invalidate_many",
                                      "wake.signal_many"};
    fmt_daemon small;
    int fd;

    wire_daemon_up(&small, redis.url, extra);
    fd = wire_connect(small.sock);
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        expect_batch(fd, ops[i], 10, 1);
        expect_batch(fd, ops[i], 11, 0);
    }
    close(fd);
    assert_still_serving(&small);
    fmt_daemon_stop(&small);
}
END_TEST

START_TEST(test_default_max_batch_is_10000)
{
    int fd = wire_connect(daemon0.sock);

    expect_batch(fd, "cache.get_many", 10000, 1);
    expect_batch(fd, "cache.get_many", 10001, 0);
    close(fd);
}
END_TEST

/* ---- ops ---------------------------------------------------------------- */

START_TEST(test_unknown_op_keeps_the_id)
{
    int fd = wire_connect(daemon0.sock);

    wire_expect_error(fd, "{\"op\":\"nope\",\"id\":1}", "unknown_op", "1");
    wire_expect_error(fd, "{\"op\":\"nope\"}", "unknown_op", NULL);
    wire_expect_error(fd, "{\"op\":\"lock\",\"id\":\"s\"}", "unknown_op", "\"s\"");
    wire_expect_error(fd, "{\"op\":\"ping \",\"id\":2}", "unknown_op", "2");
    wire_expect_error(fd, "{\"op\":\"lock.acquire.x\",\"id\":3,\"key\":\"k\"}", "unknown_op", "3");
    assert_conn_usable(fd);
    close(fd);
    assert_still_serving(&daemon0);
}
END_TEST

START_TEST(test_member_names_are_case_sensitive)
{
    int fd = wire_connect(daemon0.sock);

    /* "OP" is not "op": op is missing. */
    wire_expect_error(fd, "{\"OP\":\"ping\",\"id\":1}", "bad_request", "1");
    wire_expect_error(fd, "{\"Op\":\"ping\",\"id\":2}", "bad_request", "2");
    wire_expect_error(fd, "{\"op\":\"PING\",\"id\":3}", "unknown_op", "3");
    wire_expect_error(fd, "{\"op\":\"Lock.Acquire\",\"id\":4,\"key\":\"k\"}", "unknown_op", "4");
    /* "ID" is an unknown member: ignored, so the reply has no id. */
    wire_expect_ok(fd, "{\"op\":\"ping\",\"ID\":5}", NULL);
    /* "OP" beside "op" is just another member. */
    wire_expect_ok(fd, "{\"OP\":\"nope\",\"op\":\"ping\",\"id\":6}", "6");
    close(fd);
}
END_TEST

START_TEST(test_bad_request_for_missing_or_bad_op)
{
    int fd = wire_connect(daemon0.sock);

    wire_expect_error(fd, "{}", "bad_request", NULL);
    wire_expect_error(fd, "{\"id\":1}", "bad_request", "1");
    wire_expect_error(fd, "{\"op\":null,\"id\":2}", "bad_request", "2");
    wire_expect_error(fd, "{\"op\":\"\",\"id\":3}", "bad_request", "3");
    wire_expect_error(fd, "{\"op\":5,\"id\":4}", "bad_request", "4");
    wire_expect_error(fd, "{\"op\":[\"ping\"],\"id\":5}", "bad_request", "5");
    assert_conn_usable(fd);
    close(fd);
    assert_still_serving(&daemon0);
}
END_TEST

/* ---- Redis failures ----------------------------------------------------- */

typedef struct timed {
    cJSON *reply;
    int64_t ms;
} timed;

static timed timed_call(int fd, const char *json, int timeout_ms)
{
    int64_t start = fmt_now_ms();
    timed t;

    wire_send(fd, json);
    t.reply = wire_recv(fd, timeout_ms);
    t.ms = fmt_now_ms() - start;
    return t;
}

/* A daemon with the short request timeout and a Redis URL that refuses;
 * returns a connection to it. */
static int start_lonely(fmt_daemon *d)
{
    static const char *const extra[] = {"--request_timeout_ms", SHORT_TIMEOUT, NULL};

    wire_daemon_start(d, NULL, extra);
    return wire_connect(d->sock);
}

START_TEST(test_redis_unavailable_within_the_timeout)
{
    fmt_daemon lonely;
    int fd = start_lonely(&lonely);
    timed t;

    t = timed_call(fd, "{\"op\":\"cache.get\",\"id\":1,\"execution_id\":\"x\"}", 5000);
    wire_assert_error(t.reply, "redis_unavailable", "1");
    ck_assert_msg(t.ms >= 290 && t.ms <= 3000, "redis_unavailable after %lld ms",
                  (long long)t.ms);
    cJSON_Delete(t.reply);

    t = timed_call(fd, "{\"op\":\"cache.set\",\"id\":2,\"execution\":{\"id\":\"x\"}}", 5000);
    wire_assert_error(t.reply, "redis_unavailable", "2");
    cJSON_Delete(t.reply);
    close(fd);
    fmt_daemon_stop(&lonely);
}
END_TEST

START_TEST(test_ping_during_an_outage_is_ok_with_down)
{
    fmt_daemon lonely;
    int fd = start_lonely(&lonely);
    timed t;

    t = timed_call(fd, "{\"op\":\"ping\",\"id\":1}", WIRE_REPLY_MS);
    wire_assert_ok(t.reply, "1");
    ck_assert_str_eq(wire_str(t.reply, "redis"), "down");
    cJSON_Delete(t.reply);
    t = timed_call(fd, "{\"op\":\"ping\",\"id\":2,\"redis\":true}", WIRE_REPLY_MS);
    wire_assert_ok(t.reply, "2");
    ck_assert_str_eq(wire_str(t.reply, "redis"), "down");
    ck_assert_msg(t.ms <= 3000, "ping redis:true took %lld ms", (long long)t.ms);
    cJSON_Delete(t.reply);
    close(fd);
    fmt_daemon_stop(&lonely);
}
END_TEST

START_TEST(test_timeout_when_redis_does_not_answer_then_serves_again)
{
    static const char *const extra[] = {"--request_timeout_ms", SHORT_TIMEOUT, NULL};
    fmt_redis r;
    fmt_daemon d;
    int fd;
    timed t;

    wire_pair_start(&r, &d, NULL, extra);
    fd = wire_connect(d.sock);
    wire_cache_set(fd, "{\"id\":\"a\",\"v\":\"first\"}");
    wire_cache_set(fd, "{\"id\":\"b\",\"v\":\"second\"}");

    ck_assert_int_eq(kill(r.pid, SIGSTOP), 0);
    t = timed_call(fd, "{\"op\":\"cache.get\",\"fresh\":true,\"id\":1,\"execution_id\":\"a\"}", 5000);
    wire_assert_error(t.reply, "timeout", "1");
    ck_assert_msg(t.ms >= 290 && t.ms <= 3000, "timeout after %lld ms", (long long)t.ms);
    cJSON_Delete(t.reply);
    /* A ping that asks Redis is still ok, with "down". */
    t = timed_call(fd, "{\"op\":\"ping\",\"id\":2,\"redis\":true}", 5000);
    ck_assert_int_eq(kill(r.pid, SIGCONT), 0);
    wire_assert_ok(t.reply, "2");
    ck_assert_str_eq(wire_str(t.reply, "redis"), "down");
    ck_assert_msg(t.ms <= 3000, "ping after %lld ms", (long long)t.ms);
    cJSON_Delete(t.reply);

    /* The late replies to GET a and PING are dropped: b gets its own value,
     * and the next frame after it is the ping's. */
    wire_expect_cached(fd, "b", "{\"id\":\"b\",\"v\":\"second\"}");
    wire_expect_ok(fd, "{\"op\":\"ping\",\"id\":3,\"redis\":true}", "3");
    close(fd);
    wire_pair_stop(&r, &d);
}
END_TEST

/* The library's own deadline, when the daemon itself does not answer (it is
 * stopped): the call fails with FM_ERR_TIMEOUT at the client's timeout and
 * keeps the connection, and its late reply, when it comes, is dropped by id
 * so that the next call gets its own. */
START_TEST(test_client_call_times_out_when_the_daemon_does_not_answer)
{
    fmt_redis r;
    fmt_daemon d;
    fm_client *c;
    char *json = NULL;
    int64_t start, ms;

    wire_pair_start(&r, &d, NULL, NULL);
    wire_store(d.sock, "{\"id\":\"a\",\"v\":\"first\"}");
    wire_store(d.sock, "{\"id\":\"b\",\"v\":\"second\"}");
    c = fmt_client(&d);
    fm_client_set_timeout(c, 300);

    ck_assert_int_eq(kill(d.pid, SIGSTOP), 0);
    start = fmt_now_ms();
    ck_assert_int_eq(fm_cache_get(c, "a", &json, NULL), FM_ERR);
    ms = fmt_now_ms() - start;
    ck_assert_int_eq(kill(d.pid, SIGCONT), 0);
    ck_assert_int_eq(fm_client_err(c), FM_ERR_TIMEOUT);
    ck_assert_str_eq(fm_client_errstr(c), "no reply within 300 ms");
    ck_assert_msg(ms >= 300 && ms <= 1000, "timed out after %lld ms", (long long)ms);
    ck_assert(fm_client_connected(c));

    fmt_ok(c, fm_cache_get(c, "b", &json, NULL), "cache.get after the timeout");
    ck_assert_str_eq(json, "{\"id\":\"b\",\"v\":\"second\"}");
    free(json);
    fm_client_free(c);
    wire_pair_stop(&r, &d);
}
END_TEST

START_TEST(test_redis_error_carries_the_redis_text)
{
    redisContext *c = fmt_redis_connect(&redis);
    redisReply *rr;
    cJSON *r;
    const char *msg;
    int fd = wire_connect(daemon0.sock);

    ck_assert_ptr_nonnull(c);
    rr = fmt_redis_cmd(c, "LPUSH fm:exec:errors-wrongtype 1");
    ck_assert_ptr_nonnull(rr);
    freeReplyObject(rr);
    rr = fmt_redis_cmd(c, "LPUSH fm:lock:errors-wrongtype 1");
    ck_assert_ptr_nonnull(rr);
    freeReplyObject(rr);

    r = wire_call(fd, "{\"op\":\"cache.get\",\"id\":1,\"execution_id\":\"errors-wrongtype\"}");
    wire_assert_error(r, "redis_error", "1");
    msg = wire_str(cJSON_GetObjectItemCaseSensitive(r, "error"), "message");
    ck_assert_msg(strstr(msg, "WRONGTYPE") != NULL, "message: %s", msg);
    cJSON_Delete(r);

    /* A script meeting the wrong type says so too. */
    r = wire_call(fd, "{\"op\":\"lock.release\",\"id\":2,\"key\":\"errors-wrongtype\","
                      "\"token\":\"t\"}");
    wire_assert_error(r, "redis_error", "2");
    msg = wire_str(cJSON_GetObjectItemCaseSensitive(r, "error"), "message");
    ck_assert_msg(strstr(msg, "WRONGTYPE") != NULL, "message: %s", msg);
    cJSON_Delete(r);
    assert_conn_usable(fd);
    close(fd);
    redisFree(c);
}
END_TEST

START_TEST(test_too_many_requests_is_immediate)
{
    static const char *const extra[] = {"--max_inflight_per_client", "2",
                                        "--request_timeout_ms", "3000", NULL};
    static const char *const gets[] = {
        "{\"op\":\"cache.get\",\"id\":1,\"execution_id\":\"x\"}",
        "{\"op\":\"cache.get\",\"id\":2,\"execution_id\":\"x\"}",
        "{\"op\":\"cache.get\",\"id\":3,\"execution_id\":\"x\"}",
    };
    fmt_redis r;
    fmt_daemon d;
    int fd, other, seen = 0;
    int64_t start;
    cJSON *reply;

    wire_pair_start(&r, &d, NULL, extra);
    fd = wire_connect(d.sock);
    other = wire_connect(d.sock);
    ck_assert_int_eq(kill(r.pid, SIGSTOP), 0);
    start = fmt_now_ms();
    for (int i = 0; i < 3; i++)
        wire_send(fd, gets[i]);
    reply = wire_recv(fd, 5000);
    wire_assert_error(reply, "too_many_requests", "3");
    cJSON_Delete(reply);
    ck_assert_msg(fmt_now_ms() - start < 1000, "too_many_requests after %lld ms",
                  (long long)(fmt_now_ms() - start));
    /* The limit is per connection. */
    wire_send(other, gets[0]);
    ck_assert_int_eq(kill(r.pid, SIGCONT), 0);

    for (int i = 0; i < 2; i++) {
        const cJSON *id;

        reply = wire_recv(fd, 5000);
        id = cJSON_GetObjectItemCaseSensitive(reply, "id");
        ck_assert_msg(cJSON_IsNumber(id) && (id->valueint == 1 || id->valueint == 2) &&
                      !(seen & 1 << id->valueint), "unexpected reply");
        seen |= 1 << id->valueint;
        wire_assert_ok(reply, id->valueint == 1 ? "1" : "2");
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(reply, "execution")));
        cJSON_Delete(reply);
    }
    ck_assert_int_eq(seen, 6);
    reply = wire_recv(other, 5000);
    wire_assert_ok(reply, "1");
    cJSON_Delete(reply);
    /* Answered requests no longer count. */
    wire_expect_ok(fd, gets[2], "3");
    close(fd);
    close(other);
    wire_pair_stop(&r, &d);
}
END_TEST

/* A waiting lock.acquire does not hold up a ping behind it. */
START_TEST(test_replies_may_come_out_of_order)
{
    int holder = wire_connect(daemon0.sock), fd = wire_connect(daemon0.sock);
    cJSON *r;
    char *release;
    const char *token;

    r = wire_call(holder, "{\"op\":\"lock.acquire\",\"id\":\"h\",\"key\":\"errors-order\","
                          "\"ttl\":10000}");
    wire_assert_ok(r, "\"h\"");
    token = wire_str(r, "token");
    ck_assert_ptr_nonnull(token);
    release = wire_strf("{\"op\":\"lock.release\",\"id\":\"rel\",\"key\":\"errors-order\","
                   "\"token\":\"%s\"}", token);
    cJSON_Delete(r);

    wire_send(fd, "{\"op\":\"lock.acquire\",\"id\":\"wait\",\"key\":\"errors-order\","
                  "\"retry_delay\":50,\"max_retries\":40}");
    wire_send(fd, "{\"op\":\"ping\",\"id\":\"p\"}");
    r = wire_recv(fd, WIRE_REPLY_MS);
    wire_assert_ok(r, "\"p\"");
    cJSON_Delete(r);

    wire_expect_ok(holder, release, "\"rel\"");
    r = wire_recv(fd, WIRE_REPLY_MS);
    wire_assert_ok(r, "\"wait\"");
    ck_assert_ptr_nonnull(wire_str(r, "token"));
    cJSON_Delete(r);
    free(release);
    close(holder);
    close(fd);
}
END_TEST

/* A waiting acquire dies with its connection: after a framing error it never
 * takes the lock. */
START_TEST(test_framing_error_abandons_a_waiting_acquire)
{
    int holder = wire_connect(daemon0.sock), fd = wire_connect(daemon0.sock);
    int other = wire_connect(daemon0.sock);
    cJSON *r;
    char *release;

    r = wire_call(holder, "{\"op\":\"lock.acquire\",\"id\":\"h\",\"key\":\"errors-abandon\","
                          "\"ttl\":10000}");
    wire_assert_ok(r, "\"h\"");
    ck_assert_ptr_nonnull(wire_str(r, "token"));
    release = wire_strf("{\"op\":\"lock.release\",\"id\":\"rel\",\"key\":\"errors-abandon\","
                   "\"token\":\"%s\"}", wire_str(r, "token"));
    cJSON_Delete(r);

    wire_send(fd, "{\"op\":\"lock.acquire\",\"id\":\"wait\",\"key\":\"errors-abandon\","
                  "\"retry_delay\":20,\"max_retries\":200}");
    /* The ping's reply proves the acquire was read and is waiting. */
    wire_expect_ok(fd, "{\"op\":\"ping\",\"id\":\"p\"}", "\"p\"");
    ck_assert_int_eq(fmt_raw_write(fd, "\0\0\0\0", 4), 0);
    expect_error_then_closed(fd, "bad_frame");

    wire_expect_ok(holder, release, "\"rel\"");
    r = wire_call(other, "{\"op\":\"lock.acquire\",\"id\":\"o\",\"key\":\"errors-abandon\","
                         "\"max_retries\":10,\"retry_delay\":20}");
    wire_assert_ok(r, "\"o\"");
    ck_assert_msg(wire_str(r, "token") != NULL, "the abandoned acquire took the lock");
    cJSON_Delete(r);
    free(release);
    close(holder);
    close(fd);
    close(other);
}
END_TEST

/* Replies are bounded by the client's limit, not by max_frame_bytes. */
START_TEST(test_replies_may_exceed_max_frame_bytes)
{
    static const char *const extra[] = {"--max_frame_bytes", "1024", NULL};
    fmt_daemon small;
    char *pad = repeat("p", 900), *exec1, *exec2, *set, *text;
    size_t len;
    int fd;

    wire_daemon_up(&small, redis.url, extra);
    fd = wire_connect(small.sock);
    exec1 = wire_strf("{\"id\":\"errors-big1\",\"pad\":\"%s\"}", pad);
    exec2 = wire_strf("{\"id\":\"errors-big2\",\"pad\":\"%s\"}", pad);
    wire_cache_set(fd, exec1);
    wire_cache_set(fd, exec2);
    set = wire_strf("{\"op\":\"cache.get_many\",\"id\":1,"
               "\"execution_ids\":[\"errors-big1\",\"errors-big2\"]}");
    wire_send(fd, set);
    text = wire_recv_text(fd, WIRE_REPLY_MS, &len);
    ck_assert_uint_gt(len, 1024);
    ck_assert_ptr_nonnull(strstr(text, exec1));
    ck_assert_ptr_nonnull(strstr(text, exec2));
    free(text);
    free(set);
    free(exec1);
    free(exec2);
    free(pad);
    close(fd);
    fmt_daemon_stop(&small);
}
END_TEST

/* ---- refused at the door, and shutdown ---------------------------------- */

/* The connection at max_clients + 1 gets too_many_clients and is closed;
 * once a client leaves, a new one is served. */
static int serves_a_ping(void *sock)
{
    return wire_ping_says(sock, "\"ok\":true");
}

/* Whether the daemon counts exactly one client (the one asking). */
static int alone(void *fdp)
{
    cJSON *r = wire_call(*(int *)fdp, "{\"op\":\"stats\"}");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, "clients");
    int one = cJSON_IsNumber(n) && n->valuedouble == 1;

    cJSON_Delete(r);
    return one;
}

START_TEST(test_too_many_clients_is_sent_then_closed)
{
    static const char *const extra[] = {"--max_clients", "2", NULL};
    fmt_daemon d;
    int a, b, c;

    wire_daemon_start(&d, redis.url, extra);
    a = wire_connect(d.sock);
    /* The harness's probe connection may not be closed on the daemon's
     * side yet. */
    ck_assert(fmt_wait_until(alone, &a, WIRE_REPLY_MS));
    b = wire_connect(d.sock);
    wire_expect_ok(a, "{\"op\":\"ping\",\"id\":1}", "1");
    wire_expect_ok(b, "{\"op\":\"ping\",\"id\":2}", "2");
    c = wire_connect(d.sock);
    expect_error_then_closed(c, "too_many_clients");
    close(c);
    /* The two that came first are still served. */
    wire_expect_ok(a, "{\"op\":\"ping\",\"id\":3}", "3");
    close(a);
    ck_assert_msg(fmt_wait_until(serves_a_ping, d.sock, WIRE_REPLY_MS),
                  "no room for a new client after one left");
    close(b);
    fmt_daemon_stop(&d);
}
END_TEST

/* Connects as uid/gid `as` (the test runs as root) and returns the first
 * frame the daemon sends after a ping, or NULL. *closed: whether the
 * daemon closed the connection after it. */
static char *call_as(const char *sock, uid_t as, int *closed)
{
    int pfd[2];
    pid_t pid;
    char buf[4096];
    size_t n = 0;
    ssize_t got;
    int status;

    ck_assert_int_eq(pipe(pfd), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd;
        char *body;

        close(pfd[0]);
        if (setgid(as) != 0 || setuid(as) != 0)
            _exit(2);
        fd = fmt_raw_connect(sock);
        if (fd < 0)
            _exit(3);
        fmt_raw_send(fd, "{\"op\":\"ping\",\"id\":1}", 20);
        body = fmt_raw_recv(fd, WIRE_REPLY_MS, NULL);
        if (body != NULL && write(pfd[1], body, strlen(body)) < 0)
            _exit(4);
        _exit(fmt_raw_closed(fd, 1000) ? 10 : 11);
    }
    close(pfd[1]);
    while (n < sizeof(buf) - 1 && (got = read(pfd[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)got;
    close(pfd[0]);
    buf[n] = '\0';
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) >= 10,
                  "the client as uid %d failed: status %d", (int)as, status);
    *closed = WEXITSTATUS(status) == 10;
    return n > 0 ? strdup(buf) : NULL;
}

static void expect_peer(const char *allow, const char *code)
{
    const char *const extra[] = {"--allow_uids", allow, "--socket_mode", "0666", NULL};
    fmt_daemon d;
    int closed;
    char *text;
    cJSON *r;

    wire_daemon_start(&d, redis.url, extra);
    /* Let the other user reach the socket in our private directory. */
    ck_assert_int_eq(chmod(d.dir, 0711), 0);
    text = call_as(d.sock, 65534, &closed);
    ck_assert_msg(text != NULL, "allow_uids %s: no frame", allow);
    r = cJSON_Parse(text);
    ck_assert_ptr_nonnull(r);
    if (code != NULL) {
        wire_assert_error(r, code, NULL);
        ck_assert_msg(closed, "connection open after %s", code);
    } else {
        wire_assert_ok(r, "1");
    }
    cJSON_Delete(r);
    free(text);
    assert_still_serving(&d);
    fmt_daemon_stop(&d);
}

START_TEST(test_forbidden_peer_is_told_then_closed)
{
    if (geteuid() != 0)
        return;     /* needs root to connect as another user */
    expect_peer("4242", "forbidden");
    expect_peer("4242 65534", NULL);
}
END_TEST

/* SIGTERM: the waiting acquire gets shutting_down at once, a new request on
 * an open connection gets it too while a request is still at Redis, no new
 * connection is accepted, and the request at Redis still gets its answer. */
START_TEST(test_shutting_down_while_draining)
{
    fmt_redis rs;
    fmt_daemon d;
    int holder, waiter, busy;
    int64_t start;
    cJSON *r;

    wire_pair_start(&rs, &d, NULL, NULL);
    holder = wire_connect(d.sock);
    waiter = wire_connect(d.sock);
    busy = wire_connect(d.sock);
    wire_expect_ok(holder, "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"errors-drain\"}", "1");
    wire_send(waiter, "{\"op\":\"lock.acquire\",\"id\":\"wait\",\"key\":\"errors-drain\","
                      "\"retry_delay\":20,\"max_retries\":1000}");
    wire_expect_ok(waiter, "{\"op\":\"ping\",\"id\":\"p\"}", "\"p\"");

    ck_assert_int_eq(kill(rs.pid, SIGSTOP), 0);
    wire_send(busy, "{\"op\":\"cache.get\",\"id\":\"busy\",\"execution_id\":\"x\"}");
    /* The ping's reply proves the cache.get was read and sent on. */
    wire_expect_ok(busy, "{\"op\":\"ping\",\"id\":\"q\"}", "\"q\"");
    start = fmt_now_ms();
    ck_assert_int_eq(kill(d.pid, SIGTERM), 0);

    r = wire_recv(waiter, WIRE_REPLY_MS);
    wire_assert_error(r, "shutting_down", "\"wait\"");
    cJSON_Delete(r);
    ck_assert_msg(fmt_now_ms() - start < 1000, "the waiting acquire was answered after %lld ms",
                  (long long)(fmt_now_ms() - start));
    wire_expect_error(waiter, "{\"op\":\"ping\",\"id\":\"late\"}", "shutting_down",
                      "\"late\"");
    ck_assert_msg(fmt_raw_connect(d.sock) < 0, "a new connection was accepted while draining");

    ck_assert_int_eq(kill(rs.pid, SIGCONT), 0);
    r = wire_recv(busy, WIRE_REPLY_MS);
    wire_assert_ok(r, "\"busy\"");
    cJSON_Delete(r);
    ck_assert(fmt_raw_closed(busy, WIRE_REPLY_MS));
    ck_assert_int_eq(fmt_daemon_stop(&d), 0);
    close(holder);
    close(waiter);
    close(busy);
    fmt_redis_stop(&rs);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name)
{
    return fmt_tcase(s, name, servers_up, servers_down, TCASE_TIMEOUT);
}

Suite *fm_suite_errors(void)
{
    Suite *s = suite_create("errors");
    TCase *tc;

    tc = tcase(s, "framing");
    tcase_add_test(tc, test_bad_frame_zero_length_is_answered_then_closed);
    tcase_add_test(tc, test_bad_frame_mid_stream_ends_the_stream_there);
    tcase_add_test(tc, test_frame_too_large_is_answered_on_the_header_alone);
    tcase_add_test(tc, test_frame_of_max_frame_bytes_is_accepted);
    tcase_add_test(tc, test_frame_too_large_for_the_default_limit);
    tcase_add_test(tc, test_framing_split_at_every_offset_yields_three_replies);
    tcase_add_test(tc, test_framing_byte_by_byte_yields_three_replies);
    tcase_add_test(tc, test_framing_error_abandons_a_waiting_acquire);
    tcase_add_test(tc, test_replies_may_exceed_max_frame_bytes);

    tc = tcase(s, "bad_json");
    tcase_add_test(tc, test_bad_json_keeps_the_connection_open);
    tcase_add_test(tc, test_bad_json_nesting_deeper_than_512);
    tcase_add_test(tc, test_insignificant_whitespace_is_accepted);

    tc = tcase(s, "ids");
    tcase_add_test(tc, test_bad_request_for_unusable_ids_without_id);
    tcase_add_test(tc, test_usable_ids_are_echoed_exactly);

    tc = tcase(s, "fields");
    tcase_add_test(tc, test_bad_request_for_bad_fields_keeps_the_id);
    tcase_add_test(tc, test_values_at_the_limits_are_accepted);
    tcase_add_test(tc, test_string_lengths_are_bytes_of_utf8);
    tcase_add_test(tc, test_batches_over_max_batch_are_refused);
    tcase_add_test(tc, test_default_max_batch_is_10000);

    tc = tcase(s, "ops");
    tcase_add_test(tc, test_unknown_op_keeps_the_id);
    tcase_add_test(tc, test_member_names_are_case_sensitive);
    tcase_add_test(tc, test_bad_request_for_missing_or_bad_op);

    tc = tcase(s, "redis");
    tcase_add_test(tc, test_redis_unavailable_within_the_timeout);
    tcase_add_test(tc, test_ping_during_an_outage_is_ok_with_down);
    tcase_add_test(tc, test_timeout_when_redis_does_not_answer_then_serves_again);
    tcase_add_test(tc, test_client_call_times_out_when_the_daemon_does_not_answer);
    tcase_add_test(tc, test_redis_error_carries_the_redis_text);
    tcase_add_test(tc, test_too_many_requests_is_immediate);
    tcase_add_test(tc, test_replies_may_come_out_of_order);

    tc = tcase(s, "door");
    tcase_add_test(tc, test_too_many_clients_is_sent_then_closed);
    tcase_add_test(tc, test_forbidden_peer_is_told_then_closed);
    tcase_add_test(tc, test_shutting_down_while_draining);
    return s;
}
