/* test_proto.c -- unit tests of proto/: framing, JSON strings out of fm_buf,
 * the strict validator, span navigation and the request field rules.
 *
 * Texts given to the validator are first copied into a buffer of exactly
 * their length, so a read past the end shows up under AddressSanitizer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fm_buf.h"
#include "fm_frame.h"
#include "fm_json.h"
#include "fm_request.h"
#include "fm_tests.h"

/* ---- helpers ------------------------------------------------------------ */

/* Validates s[0..n) from an exact-size copy. Returns NULL when accepted,
 * else the validator's reason; *at (may be NULL) gets the offset. */
static const char *why_n(const char *s, size_t n, size_t *at)
{
    char *copy = malloc(n ? n : 1);
    const char *why = NULL;
    size_t where = 0;
    fm_json_val root;
    int rc;

    ck_assert_ptr_nonnull(copy);
    memcpy(copy, s, n);
    rc = fm_json_validate(copy, n, &root, &why, &where);
    free(copy);
    if (at != NULL)
        *at = where;
    if (rc == 0)
        return NULL;
    ck_assert_ptr_nonnull(why);
    return why;
}

static const char *why_of(const char *s)
{
    return why_n(s, strlen(s), NULL);
}

static void assert_accepts(const char *const *cases)
{
    for (size_t i = 0; cases[i] != NULL; i++) {
        const char *why = why_of(cases[i]);

        ck_assert_msg(why == NULL, "rejected %s: %s", cases[i], why);
    }
}

typedef struct reject_case {
    const char *text;
    const char *why;
} reject_case;

static void assert_rejects(const reject_case *cases)
{
    for (size_t i = 0; cases[i].text != NULL; i++) {
        const char *why = why_of(cases[i].text);

        ck_assert_msg(why != NULL, "accepted %s", cases[i].text);
        ck_assert_msg(strcmp(why, cases[i].why) == 0,
                      "%s: got \"%s\", want \"%s\"", cases[i].text, why,
                      cases[i].why);
    }
}

/* The root value of a literal text that must validate. */
static fm_json_val val_of(const char *text)
{
    fm_json_val v;
    const char *why = NULL;

    ck_assert_msg(fm_json_validate(text, strlen(text), &v, &why, NULL) == 0,
                  "%s: %s", text, why);
    return v;
}

static int span_is(const fm_json_val *v, const char *text)
{
    return v->len == strlen(text) && memcmp(v->p, text, v->len) == 0;
}

static char *repeat(const char *unit, size_t n, const char *prefix,
                    const char *suffix)
{
    size_t ul = strlen(unit), pl = strlen(prefix), sl = strlen(suffix);
    char *s = malloc(pl + ul * n + sl + 1), *p;

    ck_assert_ptr_nonnull(s);
    memcpy(s, prefix, pl);
    p = s + pl;
    for (size_t i = 0; i < n; i++, p += ul)
        memcpy(p, unit, ul);
    memcpy(p, suffix, sl + 1);
    return s;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) +
           (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- framing ------------------------------------------------------------ */

#define NFRAMES 4

typedef struct frames {
    size_t n;
    char *body[16];
    size_t len[16];
} frames;

static void frames_free(frames *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->body[i]);
    f->n = 0;
}

/* Takes every whole frame out of r; returns the last next() result. */
static int drain(fm_frame_reader *r, frames *out)
{
    const char *body;
    size_t len;
    int rc;

    while ((rc = fm_frame_reader_next(r, &body, &len)) == FM_FRAME_OK) {
        ck_assert_uint_lt(out->n, 16);
        out->body[out->n] = malloc(len);
        ck_assert_ptr_nonnull(out->body[out->n]);
        memcpy(out->body[out->n], body, len);
        out->len[out->n++] = len;
    }
    return rc;
}

static void stream_build(fm_buf *b, char *big, const char **bodies)
{
    memset(big, 'x', 300);
    big[300] = '\0';
    bodies[0] = "{}";
    bodies[1] = "{\"op\":\"ping\",\"id\":1}";
    bodies[2] = big;
    bodies[3] = "7";
    fm_buf_init(b);
    for (int i = 0; i < NFRAMES; i++) {
        fm_buf_put_u32be(b, (uint32_t)strlen(bodies[i]));
        fm_buf_puts(b, bodies[i]);
    }
    ck_assert_int_eq(b->oom, 0);
}

static void assert_frames(const frames *got, const char **bodies)
{
    ck_assert_uint_eq(got->n, NFRAMES);
    for (int i = 0; i < NFRAMES; i++) {
        ck_assert_uint_eq(got->len[i], strlen(bodies[i]));
        ck_assert(memcmp(got->body[i], bodies[i], got->len[i]) == 0);
    }
}

START_TEST(test_frame_split_at_every_point_yields_same_frames)
{
    char big[301];
    const char *bodies[NFRAMES];
    fm_buf b;

    stream_build(&b, big, bodies);
    for (size_t k = 0; k <= b.len; k++) {
        fm_frame_reader *r = fm_frame_reader_create(1024);
        frames got = {0};

        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(fm_frame_reader_feed(r, b.data, k), 0);
        ck_assert_int_eq(drain(r, &got), FM_FRAME_NEED);
        ck_assert_int_eq(fm_frame_reader_feed(r, b.data + k, b.len - k), 0);
        ck_assert_int_eq(drain(r, &got), FM_FRAME_NEED);
        assert_frames(&got, bodies);
        ck_assert_uint_eq(fm_frame_reader_pending(r), 0);
        frames_free(&got);
        fm_frame_reader_free(r);
    }
    fm_buf_free(&b);
}
END_TEST

START_TEST(test_frame_byte_by_byte_yields_same_frames)
{
    char big[301];
    const char *bodies[NFRAMES];
    fm_frame_reader *r = fm_frame_reader_create(1024);
    frames got = {0};
    fm_buf b;

    stream_build(&b, big, bodies);
    for (size_t i = 0; i < b.len; i++) {
        ck_assert_int_eq(fm_frame_reader_feed(r, b.data + i, 1), 0);
        ck_assert_int_eq(drain(r, &got), FM_FRAME_NEED);
    }
    assert_frames(&got, bodies);
    frames_free(&got);
    fm_frame_reader_free(r);
    fm_buf_free(&b);
}
END_TEST

START_TEST(test_frame_zero_length_is_bad_frame)
{
    static const unsigned char in[] = {0, 0, 0, 2, '{', '}', 0, 0, 0, 0};
    fm_frame_reader *r = fm_frame_reader_create(1024);
    const char *body;
    size_t len;

    fm_frame_reader_feed(r, in, sizeof(in));
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_ERR);
    ck_assert_int_eq(r->err, FM_E_BAD_FRAME);
    ck_assert_uint_eq(r->err_len, 0);
    /* The stream is dead: more bytes change nothing. */
    fm_frame_reader_feed(r, in, 6);
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_ERR);
    fm_frame_reader_free(r);
}
END_TEST

START_TEST(test_frame_too_large_fails_on_header_alone)
{
    static const unsigned char over[] = {0, 0, 0, 17};
    static const unsigned char huge[] = {0xff, 0xff, 0xff, 0xff};
    fm_frame_reader *r = fm_frame_reader_create(16);
    const char *body;
    size_t len;

    fm_frame_reader_feed(r, over, sizeof(over));
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_ERR);
    ck_assert_int_eq(r->err, FM_E_FRAME_TOO_LARGE);
    ck_assert_uint_eq(r->err_len, 17);
    fm_frame_reader_free(r);

    r = fm_frame_reader_create(16);
    fm_frame_reader_feed(r, huge, sizeof(huge));
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_ERR);
    ck_assert_int_eq(r->err, FM_E_FRAME_TOO_LARGE);
    ck_assert_uint_eq(r->err_len, 0xffffffffu);
    fm_frame_reader_free(r);
}
END_TEST

START_TEST(test_frame_of_exactly_max_body_is_accepted)
{
    unsigned char in[4 + 16] = {0, 0, 0, 16};
    fm_frame_reader *r = fm_frame_reader_create(16);
    const char *body;
    size_t len;

    memset(in + 4, '1', 16);
    fm_frame_reader_feed(r, in, sizeof(in));
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_OK);
    ck_assert_uint_eq(len, 16);
    fm_frame_reader_free(r);
}
END_TEST

START_TEST(test_frame_truncated_needs_more)
{
    static const unsigned char in[] = {0, 0, 0, 11, '[', '1', ',', '2', ','};
    fm_frame_reader *r = fm_frame_reader_create(1024);
    const char *body;
    size_t len;

    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_NEED);
    fm_frame_reader_feed(r, in, 3);
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_NEED);
    fm_frame_reader_feed(r, in + 3, sizeof(in) - 3);
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_NEED);
    ck_assert_uint_eq(fm_frame_reader_pending(r), sizeof(in));
    fm_frame_reader_feed(r, "3,4,5]", 6);
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_OK);
    ck_assert_uint_eq(len, 11);
    ck_assert(memcmp(body, "[1,2,3,4,5]", 11) == 0);
    ck_assert_uint_eq(fm_frame_reader_pending(r), 0);
    fm_frame_reader_free(r);
}
END_TEST

START_TEST(test_frame_space_and_commit_feed_without_copy)
{
    static const unsigned char two[] = {0, 0, 0, 3, 'a', 'b', 'c',
                                        0, 0, 0, 2, 'd', 'e'};
    fm_frame_reader *r = fm_frame_reader_create(1024);
    const char *body;
    size_t len, avail;
    unsigned char *p;

    /* The first frame and half of the second. */
    p = fm_frame_reader_space(r, 9, &avail);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(avail, 9);
    memcpy(p, two, 9);
    fm_frame_reader_commit(r, 9);
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_OK);
    ck_assert(len == 3 && memcmp(body, "abc", 3) == 0);
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_NEED);
    ck_assert_uint_eq(fm_frame_reader_pending(r), 2);

    /* The rest, into space that the unconsumed tail was moved before. */
    p = fm_frame_reader_space(r, 4, &avail);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_ge(avail, 4);
    memcpy(p, two + 9, 4);
    fm_frame_reader_commit(r, 4);
    ck_assert_int_eq(fm_frame_reader_next(r, &body, &len), FM_FRAME_OK);
    ck_assert(len == 2 && memcmp(body, "de", 2) == 0);
    ck_assert_uint_eq(fm_frame_reader_pending(r), 0);
    fm_frame_reader_free(r);
}
END_TEST

/* ---- fm_buf JSON strings ------------------------------------------------ */

START_TEST(test_buf_json_string_round_trips_through_validator)
{
    char in[128 + 16];
    size_t n = 0, out_len;
    char out[sizeof(in) + 1];
    fm_json_val v;
    fm_buf b;
    int ctrl;

    for (int c = 0; c < 128; c++)
        in[n++] = (char)c;
    memcpy(in + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    n += 9;

    fm_buf_init(&b);
    fm_buf_put_json_string(&b, in, n);
    ck_assert_int_eq(b.oom, 0);
    for (size_t i = 0; i < b.len; i++)
        ck_assert((unsigned char)b.data[i] >= 0x20 &&
                  (unsigned char)b.data[i] != 0x7f);
    ck_assert_int_eq(fm_json_validate(b.data, b.len, &v, NULL, NULL), 0);
    ck_assert_int_eq(v.type, FM_JSON_STRING);
    ck_assert_int_eq(fm_json_string_decode(&v, out, sizeof(out), &out_len,
                                           &ctrl), 0);
    ck_assert_uint_eq(out_len, n);
    ck_assert(memcmp(out, in, n) == 0);
    ck_assert_int_eq(ctrl, 1);

    fm_buf_reset(&b);
    fm_buf_put_json_string(&b, "plain \"quoted\" \\ /", 18);
    ck_assert_int_eq(fm_json_validate(b.data, b.len, &v, NULL, NULL), 0);
    ck_assert(fm_json_string_eq(&v, "plain \"quoted\" \\ /", 18));
    fm_json_string_decode(&v, out, sizeof(out), &out_len, &ctrl);
    ck_assert_int_eq(ctrl, 0);
    fm_buf_free(&b);
}
END_TEST

/* ---- validator ---------------------------------------------------------- */

START_TEST(test_json_accepts_valid_texts)
{
    static const char *const ok[] = {
        "0", "-0", "1", "-1", "123", "1.5", "-0.0", "0e0", "1E+2", "1e-2",
        "1.25e10", "true", "false", "null", "\"\"", "\"abc\"", "[]", "{}",
        " [ ] ", "\t\n\r 1 \t\n\r", "[1,2,3]", "[[],[[]],{}]",
        "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
        "{ \"a\" : 1 , \"b\" : 2 }", "{\"\":1}", "{\"a\":1,\"A\":2}",
        "{\"a\":{\"a\":{\"a\":1}}}", "[{\"a\":1},{\"a\":2}]",
        "\"\x7f\"", "\"/\"",
        NULL
    };

    assert_accepts(ok);
}
END_TEST

START_TEST(test_json_accepts_big_numbers)
{
    static const char *const ok[] = {
        "123456789012345678901234567890", "-98765432109876543210987654321",
        "1e999", "-1e-999", "1.00000000000000000000000000001",
        "[18446744073709551616,9223372036854775808]",
        NULL
    };

    assert_accepts(ok);
}
END_TEST

START_TEST(test_json_rejects_empty_and_incomplete_texts)
{
    static const reject_case bad[] = {
        {"", "unexpected end of text"},
        {" \n\t", "unexpected end of text"},
        {"[", "unexpected end of text"},
        {"[1", "unexpected end of text"},
        {"[1,", "unexpected end of text"},
        {"{", "unexpected end of text"},
        {"{\"a\"", "expected ':'"},
        {"{\"a\":", "unexpected end of text"},
        {"{\"a\":1", "unexpected end of text"},
        {"\"abc", "unterminated string"},
        {"\"abc\\", "unterminated string"},
        /* Plain bytes to the very end, in whole 8-byte steps. */
        {"\"abcdefgh", "unterminated string"},
        {"{\"op\":\"abcdefghijklmnop", "unterminated string"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_rejects_trailing_commas)
{
    static const reject_case bad[] = {
        {"[1,]", "expected a value"},
        {"[1,2,]", "expected a value"},
        {"{\"a\":1,}", "expected a member name"},
        {"[,1]", "expected a value"},
        {"{,}", "expected a member name"},
        {"[1,,2]", "expected a value"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_rejects_bad_structure)
{
    static const reject_case bad[] = {
        {"]", "expected a value"},
        {"}", "expected a value"},
        {"[1 2]", "expected ',' or ']'"},
        {"[1:2]", "expected ',' or ']'"},
        {"{\"a\" 1}", "expected ':'"},
        {"{\"a\":}", "expected a value"},
        {"{\"a\":1 \"b\":2}", "expected ',' or '}'"},
        {"{a:1}", "expected a member name"},
        {"{1:1}", "expected a member name"},
        {"{'a':1}", "expected a member name"},
        {"'a'", "expected a value"},
        {"[1}", "expected ',' or ']'"},
        {"{\"a\":1]", "expected ',' or '}'"},
        {"/* c */ 1", "expected a value"},
        {"1 // c", "trailing characters after the value"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_rejects_leading_zeros)
{
    static const reject_case bad[] = {
        {"01", "leading zero in number"},
        {"-01", "leading zero in number"},
        {"00", "leading zero in number"},
        {"[007]", "leading zero in number"},
        {"00.5", "leading zero in number"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_rejects_malformed_numbers)
{
    static const reject_case bad[] = {
        {"-", "invalid number"},
        {"-a", "invalid number"},
        {"--1", "invalid number"},
        {"- 1", "invalid number"},
        {"1.", "invalid number"},
        {"1.e2", "invalid number"},
        {"1e", "invalid number"},
        {"1e+", "invalid number"},
        {"1E-", "invalid number"},
        {"[1e]", "invalid number"},
        {"+1", "expected a value"},
        {".5", "expected a value"},
        {"0x10", "trailing characters after the value"},
        {"1.5.2", "trailing characters after the value"},
        {"NaN", "expected a value"},
        {"Infinity", "expected a value"},
        {"-Infinity", "invalid number"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_rejects_bad_literals)
{
    static const reject_case bad[] = {
        {"tru", "invalid literal"},
        {"True", "expected a value"},
        {"nul", "invalid literal"},
        {"NULL", "expected a value"},
        {"fals", "invalid literal"},
        {"falsey", "trailing characters after the value"},
        {"[truex]", "expected ',' or ']'"},
        {"nil", "invalid literal"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_rejects_raw_control_characters_in_strings)
{
    static const reject_case bad[] = {
        {"\"a\x01" "b\"", "control character in string"},
        {"\"\t\"", "control character in string"},
        {"\"\n\"", "control character in string"},
        {"\"\r\"", "control character in string"},
        {"\"\x1f\"", "control character in string"},
        {"{\"a\x02\":1}", "control character in string"},
        {NULL, NULL}
    };

    assert_rejects(bad);
    ck_assert_str_eq(why_n("\"a\0b\"", 5, NULL), "control character in string");
}
END_TEST

START_TEST(test_json_escapes)
{
    static const char *const ok[] = {
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\\uABCD\\uabcd\"",
        "\"\\u00E9\\u00e9\\uFFFF\"", "\"\\u0000\"", "\"a\\u0000b\"",
        "\"\\u001f\\u007f\"",
        NULL
    };
    static const reject_case bad[] = {
        {"\"\\x41\"", "invalid escape"},
        {"\"\\'\"", "invalid escape"},
        {"\"\\a\"", "invalid escape"},
        {"\"\\ \"", "invalid escape"},
        {"\"\\U0041\"", "invalid escape"},
        {"\"\\0\"", "invalid escape"},
        {"\"\\u12\"", "invalid \\u escape"},
        {"\"\\u12G4\"", "invalid \\u escape"},
        {"\"\\u\"", "invalid \\u escape"},
        {"\"\\u004", "invalid \\u escape"},
        {NULL, NULL}
    };

    assert_accepts(ok);
    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_surrogates_must_pair)
{
    static const char *const ok[] = {
        "\"\\ud83d\\ude00\"", "\"\\uD83D\\uDE00\"", "\"\\udbff\\udfff\"",
        "\"\\ud800\\udc00x\"",
        NULL
    };
    static const reject_case bad[] = {
        {"\"\\ud83d\"", "unpaired surrogate"},
        {"\"\\ude00\"", "unpaired surrogate"},
        {"\"\\ud83dx\"", "unpaired surrogate"},
        {"\"\\ud83d\\u0041\"", "unpaired surrogate"},
        {"\"\\ud83d\\ud83d\"", "unpaired surrogate"},
        {"\"\\ude00\\ud83d\"", "unpaired surrogate"},
        {"\"\\ud83d\\n\"", "unpaired surrogate"},
        {"\"\\udbff\\ue000\"", "unpaired surrogate"},
        {NULL, NULL}
    };

    assert_accepts(ok);
    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_accepts_utf8_boundaries)
{
    static const char *const ok[] = {
        "\"\xc2\x80\"", "\"\xdf\xbf\"", "\"\xe0\xa0\x80\"",
        "\"\xed\x9f\xbf\"", "\"\xee\x80\x80\"", "\"\xef\xbf\xbf\"",
        "\"\xf0\x90\x80\x80\"", "\"\xf4\x8f\xbf\xbf\"",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
        "{\"\xc3\xa9\":\"\xe2\x82\xac\"}",
        NULL
    };

    assert_accepts(ok);
}
END_TEST

START_TEST(test_json_rejects_invalid_utf8)
{
    static const reject_case bad[] = {
        {"\"\x80\"", "invalid UTF-8"},               /* stray continuation */
        {"\"\xbf\"", "invalid UTF-8"},
        {"\"a\x80" "b\"", "invalid UTF-8"},
        {"\"\xc0\xaf\"", "invalid UTF-8"},           /* overlong '/' */
        {"\"\xc1\xbf\"", "invalid UTF-8"},
        {"\"\xe0\x80\xaf\"", "invalid UTF-8"},
        {"\"\xe0\x9f\xbf\"", "invalid UTF-8"},
        {"\"\xf0\x80\x80\xaf\"", "invalid UTF-8"},
        {"\"\xf0\x8f\xbf\xbf\"", "invalid UTF-8"},
        {"\"\xed\xa0\x80\"", "invalid UTF-8"},       /* U+D800 */
        {"\"\xed\xbf\xbf\"", "invalid UTF-8"},       /* U+DFFF */
        {"\"\xf4\x90\x80\x80\"", "invalid UTF-8"},   /* U+110000 */
        {"\"\xf5\x80\x80\x80\"", "invalid UTF-8"},
        {"\"\xf8\x88\x80\x80\x80\"", "invalid UTF-8"},
        {"\"\xfe\"", "invalid UTF-8"},
        {"\"\xff\"", "invalid UTF-8"},
        {"\"\xc3\"", "invalid UTF-8"},               /* truncated */
        {"\"\xe2\x82\"", "invalid UTF-8"},
        {"\"\xf0\x9f\x98\"", "invalid UTF-8"},
        {"\"\xc3(\"", "invalid UTF-8"},
        {"\"\xe2\x82", "invalid UTF-8"},             /* at the end of text */
        {"{\"\xff\":1}", "invalid UTF-8"},
        {"\xef\xbb\xbf{}", "expected a value"},      /* a BOM */
        {"[1]\xc3\xa9", "trailing characters after the value"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_only_four_whitespace_characters)
{
    static const reject_case bad[] = {
        {"\f1", "expected a value"},
        {"\v1", "expected a value"},
        {"1\f", "trailing characters after the value"},
        {"\xc2\xa0" "1", "expected a value"},        /* no-break space */
        {"[1,\v2]", "expected a value"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

START_TEST(test_json_rejects_trailing_garbage)
{
    static const reject_case bad[] = {
        {"1 2", "trailing characters after the value"},
        {"{} {}", "trailing characters after the value"},
        {"[]x", "trailing characters after the value"},
        {"\"a\"\"b\"", "trailing characters after the value"},
        {"null,", "trailing characters after the value"},
        {"{}}", "trailing characters after the value"},
        {NULL, NULL}
    };

    assert_rejects(bad);
    ck_assert_str_eq(why_n("{}\0", 3, NULL),
                     "trailing characters after the value");
}
END_TEST

START_TEST(test_json_rejects_duplicate_member_names)
{
    static const reject_case bad[] = {
        {"{\"a\":1,\"a\":2}", "duplicate member name"},
        {"{\"a\":1,\"b\":2,\"a\":3}", "duplicate member name"},
        {"{\"\":1,\"\":2}", "duplicate member name"},
        {NULL, NULL}
    };

    assert_rejects(bad);
}
END_TEST

/* fm_json_scan, what libfmredis runs on the daemon's replies: the
 * validator less its UTF-8 and duplicate-name checks. */
START_TEST(test_json_scan_skips_only_utf8_and_duplicate_checks)
{
    static const char *const passed[] = {
        "{\"a\":1,\"a\":2}", "[\"\xff\xfe\"]", "{\"\xc3\":\"\xed\xa0\x80\"}", NULL};
    static const char *const refused[] = {
        "{\"a\":1,}", "[\"\\x\"]", "[\"\\ud800\"]", "[01]", "[\"a\x01\"]", "{\"a\" 1}",
        "[1] x", "", NULL};
    const char *why;
    fm_json_val root, got;
    char deep[2 * FM_JSON_MAX_DEPTH + 3];

    for (size_t i = 0; passed[i] != NULL; i++) {
        ck_assert_msg(fm_json_validate(passed[i], strlen(passed[i]), NULL, NULL, NULL) != 0,
                      "validated: %s", passed[i]);
        ck_assert_msg(fm_json_scan(passed[i], strlen(passed[i]), &root, NULL, NULL, NULL,
                                   NULL) == 0,
                      "not scanned: %s", passed[i]);
        ck_assert_uint_eq(root.len, strlen(passed[i]));
    }
    for (size_t i = 0; refused[i] != NULL; i++) {
        why = NULL;
        ck_assert_msg(fm_json_scan(refused[i], strlen(refused[i]), &root, NULL, NULL, &why,
                                   NULL) != 0 && why != NULL, "scanned: %s", refused[i]);
        ck_assert_str_eq(why, why_of(refused[i]));
    }
    /* A repeated name reads as its first occurrence. */
    ck_assert_int_eq(fm_json_scan("{\"a\":1,\"a\":2}", 13, &root, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(fm_json_object_get(&root, "a", 1, &got), 1);
    ck_assert_int_eq(got.len, 1);
    ck_assert_int_eq(got.p[0], '1');
    /* Nesting is bounded as in the validator. */
    memset(deep, '[', FM_JSON_MAX_DEPTH + 1);
    memset(deep + FM_JSON_MAX_DEPTH + 1, ']', FM_JSON_MAX_DEPTH + 1);
    ck_assert_int_ne(fm_json_scan(deep, 2 * FM_JSON_MAX_DEPTH + 2, &root, NULL, NULL, NULL, NULL), 0);
    ck_assert_int_eq(fm_json_scan(deep + 1, 2 * FM_JSON_MAX_DEPTH, &root, NULL, NULL, NULL, NULL), 0);
}
END_TEST

START_TEST(test_json_duplicates_compare_decoded_names)
{
    static const reject_case bad[] = {
        {"{\"a\":1,\"\\u0061\":2}", "duplicate member name"},
        {"{\"\\u0061\":1,\"\\u0041\":2,\"a\":3}", "duplicate member name"},
        {"{\"\\u00e9\":1,\"\xc3\xa9\":2}", "duplicate member name"},
        {"{\"\\u00E9\":1,\"\\u00e9\":2}", "duplicate member name"},
        {"{\"\\/\":1,\"/\":2}", "duplicate member name"},
        {"{\"\xf0\x9f\x98\x80\":1,\"\\ud83d\\ude00\":2}",
         "duplicate member name"},
        {"{\"a\\u0000\":1,\"a\\u0000\":2}", "duplicate member name"},
        {NULL, NULL}
    };
    /* An escaped NUL is part of the name, not its end. */
    static const char *const ok[] = {
        "{\"a\\u0000\":1,\"a\":2}", "{\"a\\u0000b\":1,\"a\\u0000c\":2}",
        "{\"a\":1,\"A\":2,\"\\u00e9\":3,\"\\u00c9\":4}",
        NULL
    };

    assert_rejects(bad);
    assert_accepts(ok);
}
END_TEST

START_TEST(test_json_duplicates_found_at_any_depth)
{
    static const reject_case bad[] = {
        {"{\"x\":{\"b\":1,\"b\":2}}", "duplicate member name"},
        {"[{\"a\":1,\"b\":2,\"a\":3}]", "duplicate member name"},
        {"{\"a\":{\"c\":1},\"b\":{\"c\":2},\"a\":3}", "duplicate member name"},
        {"[[[{\"k\":[{\"z\":0,\"z\":0}]}]]]", "duplicate member name"},
        {"{\"a\":[{\"a\":1}],\"a\":2}", "duplicate member name"},
        {NULL, NULL}
    };
    /* The same name in different objects is no duplicate. */
    static const char *const ok[] = {
        "{\"a\":{\"a\":1},\"b\":{\"a\":2}}", "[{\"a\":1},{\"a\":1}]",
        "{\"a\":{\"b\":{\"c\":1}},\"b\":{\"c\":{\"a\":1}},\"c\":[{\"a\":1}]}",
        NULL
    };

    assert_rejects(bad);
    assert_accepts(ok);
}
END_TEST

START_TEST(test_json_duplicates_past_the_small_scratch)
{
    char name[16];
    fm_buf b;

    /* 40 members, nested inside another object: the scratch array grows,
     * and the outer object's names must survive the inner one closing. */
    fm_buf_init(&b);
    fm_buf_puts(&b, "{\"o1\":0,\"in\":{");
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "%s\"m%d\":0", i ? "," : "", i);
        fm_buf_puts(&b, name);
    }
    fm_buf_puts(&b, "},\"o2\":0");
    fm_buf_puts(&b, "}");
    ck_assert_ptr_null(why_n(b.data, b.len, NULL));
    b.len--;
    fm_buf_puts(&b, ",\"o1\":1}");
    ck_assert_str_eq(why_n(b.data, b.len, NULL), "duplicate member name");
    fm_buf_free(&b);
}
END_TEST

START_TEST(test_json_duplicate_offset_is_the_later_name)
{
    size_t at;

    ck_assert_str_eq(why_n("{\"a\":1,\"a\":2}", 13, &at),
                     "duplicate member name");
    ck_assert_uint_eq(at, 7);
    ck_assert_str_eq(why_n("{\"b\":1,\"a\":2,\"b\":3}", 19, &at),
                     "duplicate member name");
    ck_assert_uint_eq(at, 13);
}
END_TEST

/* n levels: n - 1 objects {"a": inside one array, around a 1. */
static char *nested(size_t n)
{
    char *open = repeat("{\"a\":", n - 1, "[", "1");
    char *s = repeat("}", n - 1, open, "]");

    free(open);
    return s;
}

START_TEST(test_json_depth_512_accepted_513_rejected)
{
    char *close512 = repeat("]", 512, "", "");
    char *close513 = repeat("]", 513, "", "");
    char *ok = repeat("[", 512, "", close512);
    char *bad = repeat("[", 513, "", close513);
    size_t at;

    ck_assert_ptr_null(why_of(ok));
    ck_assert_str_eq(why_n(bad, strlen(bad), &at),
                     "nesting deeper than 512 levels");
    ck_assert_uint_eq(at, 512);
    free(close512);
    free(close513);
    free(ok);
    free(bad);

    ok = nested(512);
    bad = nested(513);
    ck_assert_ptr_null(why_of(ok));
    ck_assert_str_eq(why_of(bad), "nesting deeper than 512 levels");
    free(ok);
    free(bad);
}
END_TEST

START_TEST(test_json_hostile_nesting_fails_cleanly)
{
    const size_t n = 1 << 20;
    char *s = malloc(n);
    size_t at;

    memset(s, '[', n);
    ck_assert_str_eq(why_n(s, n, &at), "nesting deeper than 512 levels");
    ck_assert_uint_eq(at, 512);
    for (size_t i = 0; i + 5 <= n; i += 5)
        memcpy(s + i, "{\"a\":", 5);
    ck_assert_str_eq(why_n(s, n - n % 5, NULL),
                     "nesting deeper than 512 levels");
    free(s);
}
END_TEST

START_TEST(test_json_100k_members_validate_fast)
{
    const int n = 100000;
    struct timespec t0;
    char name[32];
    fm_json_val root;
    fm_buf b;
    size_t at;

    fm_buf_init(&b);
    fm_buf_putc(&b, '{');
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%s\"member%d\":%d", i ? "," : "", i, i);
        fm_buf_puts(&b, name);
    }
    fm_buf_putc(&b, '}');
    ck_assert_int_eq(b.oom, 0);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(fm_json_validate(b.data, b.len, &root, NULL, NULL), 0);
    ck_assert_double_lt(seconds_since(&t0), 2.0);
    ck_assert_uint_eq(fm_json_count(&root), (size_t)n);

    /* One duplicate, at the very end. */
    b.len--;
    fm_buf_puts(&b, ",\"member4242\":0}");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_str_eq(why_n(b.data, b.len, &at), "duplicate member name");
    ck_assert_double_lt(seconds_since(&t0), 2.0);
    ck_assert_uint_eq(at, b.len - 15);
    fm_buf_free(&b);
}
END_TEST

START_TEST(test_json_same_hash_names_stay_fast)
{
    /* Names that share long prefixes and differ only in escape spelling
     * make every compare walk far; sorting must still be n log n. */
    const int n = 20000;
    struct timespec t0;
    char name[96];
    fm_buf b;

    fm_buf_init(&b);
    fm_buf_putc(&b, '{');
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name),
                 "%s\"\\u0070refix-prefix-prefix-prefix-%08d\":0",
                 i ? "," : "", i);
        fm_buf_puts(&b, name);
    }
    fm_buf_puts(&b, ",\"prefix-prefix-prefix-prefix-00019999\":0}");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_str_eq(why_n(b.data, b.len, NULL), "duplicate member name");
    ck_assert_double_lt(seconds_since(&t0), 2.0);
    fm_buf_free(&b);
}
END_TEST

START_TEST(test_json_reports_offset_of_problem)
{
    static const struct { const char *text; size_t at; } cases[] = {
        {"[1,]", 3},
        {"  x", 2},
        {"[\"\xff\"]", 2},
        {"[\"ab\\q\"]", 4},
        {"01", 0},
        {"[1", 2},
        {NULL, 0}
    };

    for (size_t i = 0; cases[i].text != NULL; i++) {
        size_t at;

        why_n(cases[i].text, strlen(cases[i].text), &at);
        ck_assert_msg(at == cases[i].at, "%s: offset %zu, want %zu",
                      cases[i].text, at, cases[i].at);
    }
}
END_TEST

START_TEST(test_json_root_span_excludes_whitespace)
{
    const char *text = " \n {\"a\" : [1, 2]}\t\r\n";
    fm_json_val v;

    ck_assert_int_eq(fm_json_validate(text, strlen(text), &v, NULL, NULL), 0);
    ck_assert_int_eq(v.type, FM_JSON_OBJECT);
    ck_assert(span_is(&v, "{\"a\" : [1, 2]}"));

    v = val_of("  -12.5e3 ");
    ck_assert_int_eq(v.type, FM_JSON_NUMBER);
    ck_assert(span_is(&v, "-12.5e3"));
    ck_assert_int_eq(val_of("null").type, FM_JSON_NULL);
    ck_assert_int_eq(val_of("true").type, FM_JSON_TRUE);
    ck_assert_int_eq(val_of("false").type, FM_JSON_FALSE);
    ck_assert_int_eq(val_of("[]").type, FM_JSON_ARRAY);
    ck_assert_int_eq(val_of("\"s\"").type, FM_JSON_STRING);
}
END_TEST

START_TEST(test_json_validates_only_the_given_length)
{
    const char *text = "[1]]garbage";

    ck_assert_int_eq(fm_json_validate(text, 3, NULL, NULL, NULL), 0);
    ck_assert_int_eq(fm_json_validate(text, 4, NULL, NULL, NULL), -1);
    ck_assert_ptr_nonnull(why_n("\"abc\"", 4, NULL));
    ck_assert_ptr_nonnull(why_n("true", 3, NULL));
    ck_assert_ptr_nonnull(why_n("12e5", 3, NULL));
}
END_TEST

/* ---- navigation --------------------------------------------------------- */

START_TEST(test_json_object_get_is_exact_and_case_sensitive)
{
    fm_json_val o = val_of("{\"op\":\"a\",\"Op\":\"b\",\"o\":1,\"opp\":2,"
                           "\"\\u0069d\":[1,{\"x\":2}],\"e\\u0301\":3,"
                           "\"\xc3\xa9\":4,\"z\\u0000\":5,\"z\":6}");
    fm_json_val v;

    ck_assert(fm_json_object_get(&o, "op", 2, &v) && span_is(&v, "\"a\""));
    ck_assert(fm_json_object_get(&o, "Op", 2, &v) && span_is(&v, "\"b\""));
    ck_assert(!fm_json_object_get(&o, "OP", 2, &v));
    ck_assert(fm_json_object_get(&o, "o", 1, &v) && span_is(&v, "1"));
    ck_assert(fm_json_object_get(&o, "opp", 3, &v) && span_is(&v, "2"));
    ck_assert(fm_json_object_get(&o, "id", 2, &v) &&
              span_is(&v, "[1,{\"x\":2}]"));
    ck_assert(fm_json_object_get(&o, "e\xcc\x81", 3, &v) && span_is(&v, "3"));
    ck_assert(fm_json_object_get(&o, "\xc3\xa9", 2, &v) && span_is(&v, "4"));
    ck_assert(fm_json_object_get(&o, "z\0", 2, &v) && span_is(&v, "5"));
    ck_assert(fm_json_object_get(&o, "z", 1, &v) && span_is(&v, "6"));
    ck_assert(!fm_json_object_get(&o, "x", 1, &v));     /* nested only */
    ck_assert(!fm_json_object_get(&o, "", 0, &v));

    v = val_of("[\"op\"]");
    ck_assert(!fm_json_object_get(&v, "op", 2, NULL));
}
END_TEST

START_TEST(test_json_index_holds_root_members_and_finds_like_object_get)
{
    static const char text[] =
        " { \"op\" : \"a\" , \"big\":{\"x\":[1,{\"y\":\"}\"}]},"
        "\"\\u0069d\":7,\"e\":[],\"s\":\"q\\\"\",\"n\":null } ";
    static const char *const names[] = {"op", "big", "id", "e", "s", "n"};
    static const char *const vals[] = {
        "\"a\"", "{\"x\":[1,{\"y\":\"}\"}]}", "7", "[]", "\"q\\\"\"", "null"
    };
    fm_json_index idx;
    fm_json_val root, v, w;

    ck_assert_int_eq(fm_json_validate_indexed(text, strlen(text), &root, &idx,
                                              NULL, NULL), 0);
    ck_assert(idx.complete);
    ck_assert_uint_eq(idx.n, 6);
    for (size_t i = 0; i < 6; i++) {
        ck_assert_msg(fm_json_index_get(&idx, &root, names[i],
                                        strlen(names[i]), &v), "%s", names[i]);
        ck_assert_msg(span_is(&v, vals[i]), "%s", names[i]);
        ck_assert(fm_json_object_get(&root, names[i], strlen(names[i]), &w));
        ck_assert(v.p == w.p && v.len == w.len && v.type == w.type);
    }
    ck_assert(!fm_json_index_get(&idx, &root, "x", 1, &v));    /* nested */
    ck_assert(!fm_json_index_get(&idx, &root, "o", 1, &v));
}
END_TEST

/* fm_json_scan notes the members of one member of the root as it passes
 * them: what libfmredis reads a get_many reply with. */
static fm_json_members scan_members(const char *text, const char *name, fm_json_pair *m,
                                    size_t cap)
{
    fm_json_members mem = {.name = name, .name_len = strlen(name), .m = m, .cap = cap};
    fm_json_val root;

    ck_assert_msg(fm_json_scan(text, strlen(text), &root, NULL, &mem, NULL, NULL) == 0,
                  "not scanned: %s", text);
    return mem;
}

START_TEST(test_json_scan_notes_the_members_of_a_root_member)
{
    static const char reply[] =
        "{\"ok\":true,\"id\":3,\"exe\\u0063utions\":{\"a\":{\"s\":\"}]\\\"{\",\"x\":[{}]},"
        " \"b\\\"\" : {} ,\"c\":{\"executions\":{\"no\":{}}}},\"executions\":{\"later\":{}}}";
    static const char *const names[] = {"\"a\"", "\"b\\\"\"", "\"c\""};
    static const char *const vals[] = {
        "{\"s\":\"}]\\\"{\",\"x\":[{}]}", "{}", "{\"executions\":{\"no\":{}}}"};
    fm_json_pair m[3], small[1];
    fm_json_members mem;

    /* The first occurrence, its name decoded; members nested deeper, and
     * brackets and quotes inside strings, are not members. */
    mem = scan_members(reply, "executions", m, 3);
    ck_assert(mem.found);
    ck_assert_uint_eq(mem.n, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_msg(span_is(&m[i].name, names[i]), "name %zu", i);
        ck_assert_msg(span_is(&m[i].val, vals[i]), "value %zu", i);
        ck_assert_int_eq(m[i].val.type, FM_JSON_OBJECT);
    }
    /* More members than room: the first ones and a count of all. */
    mem = scan_members(reply, "executions", small, 1);
    ck_assert(mem.found);
    ck_assert_uint_eq(mem.n, 3);
    ck_assert(span_is(&small[0].name, "\"a\""));
    /* An empty object is found; a value that is not an object, a name
     * that is not there, a member of a nested object or of an array root
     * is not (and a later object of the same name does not count). */
    mem = scan_members("{\"e\":{}}", "e", m, 3);
    ck_assert(mem.found && mem.n == 0);
    mem = scan_members("{\"e\":[{\"a\":1}],\"e\":{\"a\":1}}", "e", m, 3);
    ck_assert(!mem.found && mem.n == 0);
    mem = scan_members("{\"f\":{\"a\":1}}", "e", m, 3);
    ck_assert(!mem.found && mem.n == 0);
    mem = scan_members("{\"f\":{\"e\":{\"a\":1}}}", "e", m, 3);
    ck_assert(!mem.found && mem.n == 0);
    mem = scan_members("[{\"e\":{\"a\":1}}]", "e", m, 3);
    ck_assert(!mem.found && mem.n == 0);
}
END_TEST

START_TEST(test_json_index_of_large_or_non_object_roots_falls_back)
{
    char text[512];
    size_t len = 0;
    fm_json_index idx;
    fm_json_val root, v;

    /* 17 members: one more than the index holds. */
    len += (size_t)snprintf(text + len, sizeof(text) - len, "{");
    for (int i = 0; i < FM_JSON_INDEX_MAX + 1; i++)
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\"m%d\":%d",
                                i ? "," : "", i, i * 10);
    len += (size_t)snprintf(text + len, sizeof(text) - len, "}");
    ck_assert_int_eq(fm_json_validate_indexed(text, len, &root, &idx, NULL,
                                              NULL), 0);
    ck_assert(!idx.complete);
    ck_assert(fm_json_index_get(&idx, &root, "m16", 3, &v) &&
              span_is(&v, "160"));
    ck_assert(fm_json_index_get(&idx, &root, "m0", 2, &v) && span_is(&v, "0"));

    ck_assert_int_eq(fm_json_validate_indexed("{}", 2, &root, &idx, NULL,
                                              NULL), 0);
    ck_assert(idx.complete && idx.n == 0);
    ck_assert(!fm_json_index_get(&idx, &root, "a", 1, &v));

    ck_assert_int_eq(fm_json_validate_indexed("[{\"a\":1}]", 9, &root, &idx,
                                              NULL, NULL), 0);
    ck_assert(!idx.complete);
    ck_assert(!fm_json_index_get(&idx, &root, "a", 1, &v));
}
END_TEST

START_TEST(test_json_iter_walks_array_with_nested_values)
{
    fm_json_val a = val_of("[ 1 , \"a,]\\\"\" ,[2,[3]], {\"k\":\"}\"} ,true,"
                           "null , -0.5e1,[],{} ]");
    static const char *const want[] = {
        "1", "\"a,]\\\"\"", "[2,[3]]", "{\"k\":\"}\"}", "true", "null",
        "-0.5e1", "[]", "{}"
    };
    static const fm_json_type types[] = {
        FM_JSON_NUMBER, FM_JSON_STRING, FM_JSON_ARRAY, FM_JSON_OBJECT,
        FM_JSON_TRUE, FM_JSON_NULL, FM_JSON_NUMBER, FM_JSON_ARRAY,
        FM_JSON_OBJECT
    };
    fm_json_iter it;
    fm_json_val v;
    size_t i = 0;

    fm_json_iter_init(&it, &a);
    while (fm_json_iter_next(&it, NULL, &v)) {
        ck_assert_uint_lt(i, 9);
        ck_assert_msg(span_is(&v, want[i]), "element %zu", i);
        ck_assert_int_eq(v.type, types[i]);
        i++;
    }
    ck_assert_uint_eq(i, 9);
    ck_assert(!fm_json_iter_next(&it, NULL, &v));
}
END_TEST

START_TEST(test_json_iter_walks_object_names_and_values)
{
    fm_json_val o = val_of("{ \"a\" : {\"b\":[1,2]} , \"c\\\"\":\"d\" ,"
                           "\"e\":false}");
    fm_json_iter it;
    fm_json_val name, v;

    fm_json_iter_init(&it, &o);
    ck_assert(fm_json_iter_next(&it, &name, &v));
    ck_assert(span_is(&name, "\"a\"") && span_is(&v, "{\"b\":[1,2]}"));
    ck_assert(fm_json_iter_next(&it, &name, &v));
    ck_assert(span_is(&name, "\"c\\\"\"") && span_is(&v, "\"d\""));
    ck_assert(fm_json_iter_next(&it, NULL, &v));
    ck_assert_int_eq(v.type, FM_JSON_FALSE);
    ck_assert(!fm_json_iter_next(&it, &name, &v));

    o = val_of("{}");
    fm_json_iter_init(&it, &o);
    ck_assert(!fm_json_iter_next(&it, &name, &v));
}
END_TEST

START_TEST(test_json_count_counts_top_level_only)
{
    static const struct { const char *text; size_t count; } cases[] = {
        {"[]", 0},
        {"[ ]", 0},
        {"{ }", 0},
        {"[[1,2,3]]", 1},
        {"[1,\"2,3\",[4,5],{\"6\":7,\"8\":9}]", 4},
        {"{\"a\":[1,2],\"b\":{\"c\":1,\"d\":2},\"e\":\"x,y\"}", 3},
        {"\"not a container\"", 0},
        {NULL, 0}
    };

    for (size_t i = 0; cases[i].text != NULL; i++) {
        fm_json_val v = val_of(cases[i].text);

        ck_assert_msg(fm_json_count(&v) == cases[i].count,
                      "%s: count %zu, want %zu", cases[i].text,
                      fm_json_count(&v), cases[i].count);
    }
}
END_TEST

static int int64_of(const char *text, int64_t min, int64_t max, int64_t *out)
{
    fm_json_val v = val_of(text);

    return fm_json_int64(&v, min, max, out);
}

START_TEST(test_json_int64_range_of_ids)
{
    int64_t v;

    ck_assert_int_eq(int64_of("9007199254740991", -FM_INT_ID_MAX,
                              FM_INT_ID_MAX, &v), 0);
    ck_assert_int_eq(v, 9007199254740991LL);
    ck_assert_int_eq(int64_of("-9007199254740991", -FM_INT_ID_MAX,
                              FM_INT_ID_MAX, &v), 0);
    ck_assert_int_eq(v, -9007199254740991LL);
    ck_assert_int_eq(int64_of("9007199254740992", -FM_INT_ID_MAX,
                              FM_INT_ID_MAX, &v), -1);
    ck_assert_int_eq(int64_of("-9007199254740992", -FM_INT_ID_MAX,
                              FM_INT_ID_MAX, &v), -1);
}
END_TEST

START_TEST(test_json_int64_limits_and_overflow)
{
    int64_t v;

    ck_assert_int_eq(int64_of("9223372036854775807", INT64_MIN, INT64_MAX,
                              &v), 0);
    ck_assert(v == INT64_MAX);
    ck_assert_int_eq(int64_of("-9223372036854775808", INT64_MIN, INT64_MAX,
                              &v), 0);
    ck_assert(v == INT64_MIN);
    ck_assert_int_eq(int64_of("9223372036854775808", INT64_MIN, INT64_MAX,
                              &v), -1);
    ck_assert_int_eq(int64_of("-9223372036854775809", INT64_MIN, INT64_MAX,
                              &v), -1);
    ck_assert_int_eq(int64_of("18446744073709551616", INT64_MIN, INT64_MAX,
                              &v), -1);
    ck_assert_int_eq(int64_of("99999999999999999999999", INT64_MIN, INT64_MAX,
                              &v), -1);
    ck_assert_int_eq(int64_of("5", 1, 4, &v), -1);
    ck_assert_int_eq(int64_of("0", 1, 4, &v), -1);
    ck_assert_int_eq(int64_of("4", 1, 4, &v), 0);
    ck_assert_int_eq(v, 4);
}
END_TEST

START_TEST(test_json_int64_minus_zero_is_zero)
{
    int64_t v = 7;

    ck_assert_int_eq(int64_of("-0", 0, 10, &v), 0);
    ck_assert_int_eq(v, 0);
    ck_assert_int_eq(int64_of("0", 0, 10, &v), 0);
    ck_assert_int_eq(v, 0);
}
END_TEST

START_TEST(test_json_int64_refuses_fractions_and_exponents)
{
    static const char *const bad[] = {
        "1.0", "1e3", "1E3", "1e0", "10e-1", "0.0", "-0.0", "1.5", "\"1\"",
        "true", "null", "[1]", NULL
    };
    int64_t v = 42;

    for (size_t i = 0; bad[i] != NULL; i++)
        ck_assert_msg(int64_of(bad[i], INT64_MIN, INT64_MAX, &v) == -1,
                      "%s", bad[i]);
    ck_assert_int_eq(v, 42);
}
END_TEST

START_TEST(test_json_string_decode_to_utf8)
{
    fm_json_val s = val_of("\"a\\u00e9\\ud83d\\ude00\\u20AC\\\"\\\\\\/"
                           "\\b\\f\\n\\r\\t\xc3\xa9\"");
    static const char want[] = "a\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac\"\\/"
                               "\b\f\n\r\t\xc3\xa9";
    char out[64];
    size_t n;
    int ctrl = 0;

    ck_assert_int_eq(fm_json_string_decode(&s, out, sizeof(out), &n, &ctrl), 0);
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);
    ck_assert_int_eq(out[n], '\0');
    ck_assert_int_eq(ctrl, 1);
    ck_assert_uint_eq(fm_json_string_len(&s), sizeof(want) - 1);

    s = val_of("\"\\udbff\\udfff\\u0080\\u07ff\\u0800\\uffff\"");
    fm_json_string_decode(&s, out, sizeof(out), &n, &ctrl);
    ck_assert_uint_eq(n, 4 + 2 + 2 + 3 + 3);
    ck_assert(memcmp(out, "\xf4\x8f\xbf\xbf\xc2\x80\xdf\xbf\xe0\xa0\x80"
                          "\xef\xbf\xbf", n) == 0);
    ck_assert_int_eq(ctrl, 0);
}
END_TEST

START_TEST(test_json_string_decode_respects_cap)
{
    fm_json_val s = val_of("\"abcdef\"");
    char out[8];
    size_t n = 0;

    memset(out, '#', sizeof(out));
    ck_assert_int_eq(fm_json_string_decode(&s, out, 3, &n, NULL), -1);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(out[3], '#');

    memset(out, '#', sizeof(out));
    ck_assert_int_eq(fm_json_string_decode(&s, out, 6, &n, NULL), 0);
    ck_assert(memcmp(out, "abcdef", 6) == 0);
    ck_assert_int_eq(out[6], '#');      /* no room: not terminated */

    ck_assert_int_eq(fm_json_string_decode(&s, out, 7, &n, NULL), 0);
    ck_assert_str_eq(out, "abcdef");

    ck_assert_int_eq(fm_json_string_decode(&s, NULL, 0, &n, NULL), -1);
    ck_assert_uint_eq(n, 6);
    s = val_of("\"\"");
    ck_assert_int_eq(fm_json_string_decode(&s, NULL, 0, &n, NULL), 0);
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(test_json_string_decode_reports_control_characters)
{
    static const struct { const char *text; int ctrl; } cases[] = {
        {"\"a\\u0000b\"", 1}, {"\"\\u0001\"", 1}, {"\"\\u001f\"", 1},
        {"\"\\u001F\"", 1}, {"\"\\u007f\"", 1}, {"\"\x7f\"", 1},
        {"\"\\n\"", 1}, {"\"\\t\"", 1}, {"\"\\u0020\"", 0}, {"\"~\"", 0},
        {"\"\\u0080\"", 0}, {"\"\xc3\xa9\"", 0}, {"\"\"", 0},
        {NULL, 0}
    };
    char out[16];
    size_t n;
    int ctrl;

    for (size_t i = 0; cases[i].text != NULL; i++) {
        fm_json_val s = val_of(cases[i].text);

        ctrl = -1;
        fm_json_string_decode(&s, out, sizeof(out), &n, &ctrl);
        ck_assert_msg(ctrl == cases[i].ctrl, "%s", cases[i].text);
    }
    {
        fm_json_val s = val_of("\"a\\u0000b\"");

        fm_json_string_decode(&s, out, sizeof(out), &n, NULL);
        ck_assert_uint_eq(n, 3);
        ck_assert(memcmp(out, "a\0b", 3) == 0);
    }
}
END_TEST

START_TEST(test_json_string_len_and_eq_use_decoded_bytes)
{
    fm_json_val s = val_of("\"a\\u0000b\"");

    ck_assert_uint_eq(fm_json_string_len(&s), 3);
    ck_assert(fm_json_string_eq(&s, "a\0b", 3));
    ck_assert(!fm_json_string_eq(&s, "a", 1));
    ck_assert(!fm_json_string_eq(&s, "a\0bc", 4));
    ck_assert(!fm_json_string_eq(&s, "a\0c", 3));

    s = val_of("\"\\u00e9t\\u00E9\"");
    ck_assert_uint_eq(fm_json_string_len(&s), 5);
    ck_assert(fm_json_string_eq(&s, "\xc3\xa9t\xc3\xa9", 5));

    s = val_of("\"\"");
    ck_assert_uint_eq(fm_json_string_len(&s), 0);
    ck_assert(fm_json_string_eq(&s, "", 0));
    ck_assert(!fm_json_string_eq(&s, "x", 1));
}
END_TEST

/* ---- requests ----------------------------------------------------------- */

static int parse(const char *body, fm_request *req, fm_proto_err *err)
{
    return fm_request_parse(body, strlen(body), req, err);
}

/* A request that must parse. */
static fm_request req_of(const char *body)
{
    fm_request req;
    fm_proto_err err;

    ck_assert_msg(parse(body, &req, &err) == 0, "%s: %s", body, err.msg);
    return req;
}

/* A request that must be refused with code: the error, and in *req what the
 * parser left there (whether the reply may carry the id). */
static fm_proto_err refusal_of(const char *body, fm_errcode code,
                               fm_request *req)
{
    fm_proto_err err;

    ck_assert_msg(parse(body, req, &err) == -1, "%s: parsed", body);
    ck_assert_int_eq(err.code, code);
    return err;
}

START_TEST(test_request_integer_id_is_echoed_exactly)
{
    static const struct { const char *body, *id; } cases[] = {
        {"{\"op\":\"ping\",\"id\": 12}", "12"},
        {"{\"id\":0,\"op\":\"ping\"}", "0"},
        {"{\"id\":-0,\"op\":\"ping\"}", "-0"},
        {"{\"id\":9007199254740991,\"op\":\"ping\"}", "9007199254740991"},
        {"{\"id\":-9007199254740991,\"op\":\"ping\"}", "-9007199254740991"},
        {NULL, NULL}
    };

    for (size_t i = 0; cases[i].body != NULL; i++) {
        fm_request req = req_of(cases[i].body);

        ck_assert_int_eq(req.has_id, 1);
        ck_assert_int_eq(req.id.type, FM_JSON_NUMBER);
        ck_assert_msg(span_is(&req.id, cases[i].id), "%s", cases[i].body);
    }
}
END_TEST

START_TEST(test_request_string_id_keeps_its_literal)
{
    fm_request req = req_of("{\"op\":\"ping\",\"id\":\"a\\u00e9\\\"b\\/\"}");

    ck_assert_int_eq(req.has_id, 1);
    ck_assert_int_eq(req.id.type, FM_JSON_STRING);
    ck_assert(span_is(&req.id, "\"a\\u00e9\\\"b\\/\""));

    req = req_of("{\"op\":\"ping\",\"id\":\"\"}");
    ck_assert_int_eq(req.has_id, 1);
    ck_assert(span_is(&req.id, "\"\""));
}
END_TEST

START_TEST(test_request_without_id_has_no_id)
{
    fm_request req = req_of("{\"op\":\"ping\"}");

    ck_assert_int_eq(req.has_id, 0);
    ck_assert(fm_request_op_is(&req, "ping"));
}
END_TEST

START_TEST(test_request_string_id_of_256_bytes_is_the_limit)
{
    char *ok = repeat("x", 256, "{\"op\":\"p\",\"id\":\"", "\"}");
    char *bad = repeat("x", 257, "{\"op\":\"p\",\"id\":\"", "\"}");
    /* Bytes are counted decoded: 128 escaped e-acutes are 256 bytes. */
    char *esc_ok = repeat("\\u00e9", 128, "{\"op\":\"p\",\"id\":\"", "\"}");
    char *esc_bad = repeat("\\u00e9", 128, "{\"op\":\"p\",\"id\":\"x", "\"}");
    fm_request req;

    ck_assert_int_eq(req_of(ok).has_id, 1);
    ck_assert_int_eq(req_of(esc_ok).has_id, 1);
    refusal_of(bad, FM_E_BAD_REQUEST, &req);
    ck_assert_int_eq(req.has_id, 0);
    refusal_of(esc_bad, FM_E_BAD_REQUEST, &req);
    ck_assert_int_eq(req.has_id, 0);
    free(ok);
    free(bad);
    free(esc_ok);
    free(esc_bad);
}
END_TEST

START_TEST(test_request_unusable_id_is_bad_request_without_id)
{
    static const char *const ids[] = {
        "null", "1.5", "1.0", "1e3", "1E0", "0.0", "-0.0", "true", "false",
        "[]", "[1]", "{}", "{\"a\":1}", "9007199254740992",
        "-9007199254740992", "123456789012345678901234567890", NULL
    };
    char body[128];

    for (size_t i = 0; ids[i] != NULL; i++) {
        fm_request req;
        fm_proto_err err;

        snprintf(body, sizeof(body), "{\"op\":\"ping\",\"id\":%s}", ids[i]);
        err = refusal_of(body, FM_E_BAD_REQUEST, &req);
        ck_assert_int_eq(req.has_id, 0);
        ck_assert_str_eq(err.msg, "id: must be an integer from "
                         "-9007199254740991 to 9007199254740991 or a string "
                         "of at most 256 bytes");
    }
}
END_TEST

START_TEST(test_request_bad_id_is_reported_before_bad_op)
{
    fm_request req;
    fm_proto_err err = refusal_of("{\"id\":null}", FM_E_BAD_REQUEST, &req);

    ck_assert_int_eq(req.has_id, 0);
    ck_assert(strncmp(err.msg, "id:", 3) == 0);
}
END_TEST

/* Each body is refused as bad_json, and no id is taken from it. */
static void assert_bad_json_without_id(const char *const *bodies)
{
    for (size_t i = 0; bodies[i] != NULL; i++) {
        fm_request req;

        refusal_of(bodies[i], FM_E_BAD_JSON, &req);
        ck_assert_int_eq(req.has_id, 0);
    }
}

START_TEST(test_request_invalid_json_is_bad_json_without_id)
{
    static const char *const bodies[] = {
        "{\"id\":1,\"op\":\"ping\",}", "{\"id\":1,\"op\":\"ping\"",
        "{\"id\":1,\"op\":\"ping\"} x", "{\"id\":01,\"op\":\"ping\"}",
        "{\"id\":1,\"op\":\"ping\",\"id\":2}", "", "{\"id\":1,\"op\":'ping'}",
        NULL
    };

    assert_bad_json_without_id(bodies);
}
END_TEST

START_TEST(test_request_bad_json_message_says_where_and_why)
{
    fm_request req;
    fm_proto_err err;

    ck_assert_int_eq(parse("{\"op\":\"a\",\"op\":\"b\"}", &req, &err), -1);
    ck_assert_str_eq(err.msg, "invalid JSON at byte 10: duplicate member name");
    ck_assert_int_eq(parse("{\"op\":\"a\",}", &req, &err), -1);
    ck_assert_str_eq(err.msg,
                     "invalid JSON at byte 10: expected a member name");
}
END_TEST

START_TEST(test_request_raw_control_characters_are_bad_json)
{
    fm_request req;
    fm_proto_err err;

    refusal_of("{\"op\":\"x\",\"key\":\"a\x01" "b\"}", FM_E_BAD_JSON, &req);
    ck_assert_int_eq(fm_request_parse("{\"op\":\"x\",\"key\":\"a\0b\"}", 22,
                                      &req, &err), -1);
    ck_assert_int_eq(err.code, FM_E_BAD_JSON);
}
END_TEST

START_TEST(test_request_body_must_be_an_object)
{
    static const char *const bodies[] = {
        "[]", "[{\"op\":\"ping\"}]", "\"op\"", "1", "null", "true", NULL
    };

    assert_bad_json_without_id(bodies);
}
END_TEST

START_TEST(test_request_op_must_be_non_empty_string_and_keeps_id)
{
    static const char *const bodies[] = {
        "{\"id\":7}", "{\"id\":7,\"op\":null}", "{\"id\":7,\"op\":1}",
        "{\"id\":7,\"op\":\"\"}", "{\"id\":7,\"op\":true}",
        "{\"id\":7,\"op\":[\"ping\"]}", "{\"id\":7,\"op\":{}}", NULL
    };

    for (size_t i = 0; bodies[i] != NULL; i++) {
        fm_request req;
        fm_proto_err err = refusal_of(bodies[i], FM_E_BAD_REQUEST, &req);

        ck_assert_int_eq(req.has_id, 1);
        ck_assert(span_is(&req.id, "7"));
        ck_assert(strncmp(err.msg, "op:", 3) == 0);
    }
}
END_TEST

START_TEST(test_request_member_names_are_case_sensitive)
{
    fm_request req;
    fm_proto_err err = refusal_of("{\"OP\":\"ping\"}", FM_E_BAD_REQUEST, &req);

    ck_assert_str_eq(err.msg, "op: required");

    req = req_of("{\"op\":\"ping\",\"ID\":null,\"Id\":[]}");
    ck_assert_int_eq(req.has_id, 0);
    req = req_of("{\"op\":\"ping\",\"Op\":1}");
    ck_assert(fm_request_op_is(&req, "ping"));
}
END_TEST

START_TEST(test_request_escaped_member_names_match)
{
    fm_request req = req_of("{\"\\u006fp\":\"ping\",\"\\u0069d\":3}");

    ck_assert(fm_request_op_is(&req, "ping"));
    ck_assert_int_eq(req.has_id, 1);
    ck_assert(span_is(&req.id, "3"));
}
END_TEST

START_TEST(test_request_unknown_members_are_ignored)
{
    fm_request req = req_of("{\"x\":[1,{\"op\":null}],\"op\":\"ping\","
                            "\"z\":null,\"id\":\"q\"}");

    ck_assert(fm_request_op_is(&req, "ping"));
    ck_assert(span_is(&req.id, "\"q\""));
}
END_TEST

START_TEST(test_request_op_is_compares_decoded_name_exactly)
{
    fm_request req = req_of("{\"op\":\"lock\\u002eacquire\"}");

    ck_assert(fm_request_op_is(&req, "lock.acquire"));
    ck_assert(!fm_request_op_is(&req, "lock.acquir"));
    ck_assert(!fm_request_op_is(&req, "lock.acquire2"));
    ck_assert(!fm_request_op_is(&req, "LOCK.ACQUIRE"));
    ck_assert(!fm_request_op_is(&req, ""));
}
END_TEST

#define KEY_MSG(f, n) \
    f ": must be a non-empty string of at most " #n " bytes without control " \
    "characters"

START_TEST(test_request_string_decodes_a_valid_key)
{
    fm_request req = req_of("{\"op\":\"x\",\"key\":\"a\\u00e9b \\\"q\\\"\"}");
    char out[FM_KEY_MAX + 1];
    size_t len = 0;
    int found = 0;
    fm_proto_err err;

    ck_assert_int_eq(fm_request_string(&req, "key", 1, FM_KEY_MAX, out, &len,
                                       &found, &err), 0);
    ck_assert_int_eq(found, 1);
    ck_assert_uint_eq(len, 8);
    ck_assert_str_eq(out, "a\xc3\xa9" "b \"q\"");
}
END_TEST

START_TEST(test_request_string_missing)
{
    fm_request req = req_of("{\"op\":\"x\",\"Key\":\"k\"}");
    char out[FM_KEY_MAX + 1];
    size_t len = 9;
    int found = 9;
    fm_proto_err err;

    ck_assert_int_eq(fm_request_string(&req, "key", 1, FM_KEY_MAX, out, &len,
                                       &found, &err), -1);
    ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
    ck_assert_str_eq(err.msg, "key: required");
    ck_assert_int_eq(found, 0);

    ck_assert_int_eq(fm_request_string(&req, "channel", 0, FM_KEY_MAX, out,
                                       &len, &found, &err), 0);
    ck_assert_int_eq(found, 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(fm_request_string(&req, "channel", 0, FM_KEY_MAX, out,
                                       NULL, NULL, &err), 0);
}
END_TEST

START_TEST(test_request_string_null_wrong_type_or_empty)
{
    static const char *const vals[] = {
        "null", "1", "true", "[]", "[\"k\"]", "{}", "\"\"", NULL
    };
    char body[64], out[FM_KEY_MAX + 1];
    fm_proto_err err;

    for (size_t i = 0; vals[i] != NULL; i++) {
        fm_request req;

        snprintf(body, sizeof(body), "{\"op\":\"x\",\"channel\":%s}", vals[i]);
        req = req_of(body);
        for (int required = 0; required <= 1; required++) {
            ck_assert_msg(fm_request_string(&req, "channel", required,
                                            FM_KEY_MAX, out, NULL, NULL,
                                            &err) == -1, "%s", vals[i]);
            ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
            ck_assert_str_eq(err.msg, KEY_MSG("channel", 512));
        }
    }
}
END_TEST

static int string_field(const char *value, size_t max, size_t *len,
                        fm_proto_err *err)
{
    char *body = repeat(value, 1, "{\"op\":\"x\",\"f\":\"", "\"}");
    char *out = malloc(max + 1);
    fm_request req;
    int rc;

    ck_assert_ptr_nonnull(out);
    ck_assert_msg(parse(body, &req, err) == 0, "%s", err->msg);
    rc = fm_request_string(&req, "f", 1, max, out, len, NULL, err);
    if (rc == 0)
        ck_assert_uint_eq(strlen(out), *len);
    free(out);
    free(body);
    return rc;
}

START_TEST(test_request_string_key_limit_is_512_bytes)
{
    char *s512 = repeat("k", 512, "", ""), *s513 = repeat("k", 513, "", "");
    char *e512 = repeat("\\u00e9", 256, "", "");
    char *e513 = repeat("\\u00e9", 256, "k", "");
    size_t len;
    fm_proto_err err;

    ck_assert_int_eq(string_field(s512, FM_KEY_MAX, &len, &err), 0);
    ck_assert_uint_eq(len, 512);
    ck_assert_int_eq(string_field(e512, FM_KEY_MAX, &len, &err), 0);
    ck_assert_uint_eq(len, 512);
    ck_assert_int_eq(string_field(s513, FM_KEY_MAX, &len, &err), -1);
    ck_assert_str_eq(err.msg, KEY_MSG("f", 512));
    ck_assert_int_eq(string_field(e513, FM_KEY_MAX, &len, &err), -1);
    ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
    free(s512);
    free(s513);
    free(e512);
    free(e513);
}
END_TEST

START_TEST(test_request_string_name_limit_is_128_bytes)
{
    char *s128 = repeat("g", 128, "", ""), *s129 = repeat("g", 129, "", "");
    size_t len;
    fm_proto_err err;

    ck_assert_int_eq(string_field(s128, FM_NAME_MAX, &len, &err), 0);
    ck_assert_uint_eq(len, 128);
    ck_assert_int_eq(string_field(s129, FM_NAME_MAX, &len, &err), -1);
    ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
    ck_assert_str_eq(err.msg, KEY_MSG("f", 128));
    free(s128);
    free(s129);
}
END_TEST

START_TEST(test_request_string_escaped_control_chars)
{
    static const char *const vals[] = {
        "a\\u0001b", "a\\u0000b", "\\u0000", "\\u001f", "\\u007f", "a\\nb",
        "\\t", "a\x7f", NULL
    };
    size_t len;
    fm_proto_err err;

    for (size_t i = 0; vals[i] != NULL; i++) {
        ck_assert_msg(string_field(vals[i], FM_KEY_MAX, &len, &err) == -1,
                      "%s", vals[i]);
        ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
        ck_assert_str_eq(err.msg, KEY_MSG("f", 512));
    }
    ck_assert_int_eq(string_field("\\u0080 ~", FM_KEY_MAX, &len, &err), 0);
}
END_TEST

START_TEST(test_request_check_string_names_what_it_checks)
{
    fm_json_val v = val_of("{\"id\":\"\",\"x\":\"ok\"}"), id;
    char out[FM_KEY_MAX + 1];
    size_t len;
    fm_proto_err err;

    ck_assert(fm_json_object_get(&v, "id", 2, &id));
    ck_assert_int_eq(fm_request_check_string(&id, "execution.id", FM_KEY_MAX,
                                             out, &len, &err), -1);
    ck_assert_str_eq(err.msg, KEY_MSG("execution.id", 512));
    ck_assert(fm_json_object_get(&v, "x", 1, &id));
    ck_assert_int_eq(fm_request_check_string(&id, "x", 2, out, NULL, &err), 0);
    ck_assert_str_eq(out, "ok");
}
END_TEST

#define TTL_MSG "ttl: must be an integer from 1 to 2147483647"

START_TEST(test_request_int_absent_keeps_default)
{
    fm_request req = req_of("{\"op\":\"x\",\"TTL\":5}");
    int64_t ttl = 30000;
    fm_proto_err err;

    ck_assert_int_eq(fm_request_int(&req, "ttl", 1, FM_MS_MAX, &ttl, &err), 0);
    ck_assert_int_eq(ttl, 30000);
}
END_TEST

START_TEST(test_request_int_within_range)
{
    fm_request req = req_of("{\"op\":\"x\",\"ttl\":1,\"delay\":2147483647,"
                            "\"max_retries\":0}");
    int64_t v = -1;
    fm_proto_err err;

    ck_assert_int_eq(fm_request_int(&req, "ttl", 1, FM_MS_MAX, &v, &err), 0);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(fm_request_int(&req, "delay", 1, FM_MS_MAX, &v, &err), 0);
    ck_assert_int_eq(v, 2147483647);
    ck_assert_int_eq(fm_request_int(&req, "max_retries", 0, FM_MS_MAX, &v,
                                    &err), 0);
    ck_assert_int_eq(v, 0);
}
END_TEST

START_TEST(test_request_int_out_of_range_or_not_integer)
{
    static const char *const vals[] = {
        "0", "-1", "2147483648", "99999999999999999999", "1.0", "1e3",
        "1.5", "\"5\"", "null", "true", "[5]", "{}", NULL
    };
    char body[64];

    for (size_t i = 0; vals[i] != NULL; i++) {
        fm_request req;
        int64_t ttl = 77;
        fm_proto_err err;

        snprintf(body, sizeof(body), "{\"op\":\"x\",\"ttl\":%s}", vals[i]);
        req = req_of(body);
        ck_assert_msg(fm_request_int(&req, "ttl", 1, FM_MS_MAX, &ttl, &err)
                      == -1, "%s", vals[i]);
        ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
        ck_assert_str_eq(err.msg, TTL_MSG);
        ck_assert_int_eq(ttl, 77);
    }
}
END_TEST

START_TEST(test_request_bool_field)
{
    static const char *const bad[] = {
        "null", "0", "1", "\"true\"", "[]", "{}", NULL
    };
    fm_request req = req_of("{\"op\":\"x\",\"a\":true,\"b\":false}");
    char body[64];
    int v = 5;
    fm_proto_err err;

    ck_assert_int_eq(fm_request_bool(&req, "a", &v, &err), 0);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(fm_request_bool(&req, "b", &v, &err), 0);
    ck_assert_int_eq(v, 0);
    v = 5;
    ck_assert_int_eq(fm_request_bool(&req, "c", &v, &err), 0);
    ck_assert_int_eq(v, 5);
    for (size_t i = 0; bad[i] != NULL; i++) {
        snprintf(body, sizeof(body), "{\"op\":\"x\",\"redis\":%s}", bad[i]);
        req = req_of(body);
        ck_assert_int_eq(fm_request_bool(&req, "redis", &v, &err), -1);
        ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
        ck_assert_str_eq(err.msg, "redis: must be true or false");
        ck_assert_int_eq(v, 5);
    }
}
END_TEST

START_TEST(test_request_enum_field)
{
    static const char *const choices[] = {"release", "keep", NULL};
    static const char *const three[] = {"a", "b", "c", NULL};
    static const char *const bad[] = {
        "\"Keep\"", "\"\"", "null", "1", "\"release\\u0000\"", "[\"keep\"]",
        NULL
    };
    fm_request req = req_of("{\"op\":\"x\",\"on_disconnect\":\"k\\u0065ep\"}");
    char body[64];
    int v = 0;
    fm_proto_err err;

    ck_assert_int_eq(fm_request_enum(&req, "on_disconnect", choices, &v, &err),
                     0);
    ck_assert_int_eq(v, 1);
    v = 9;
    ck_assert_int_eq(fm_request_enum(&req, "other", choices, &v, &err), 0);
    ck_assert_int_eq(v, 9);
    for (size_t i = 0; bad[i] != NULL; i++) {
        snprintf(body, sizeof(body), "{\"op\":\"x\",\"on_disconnect\":%s}",
                 bad[i]);
        req = req_of(body);
        ck_assert_msg(fm_request_enum(&req, "on_disconnect", choices, &v,
                                      &err) == -1, "%s", bad[i]);
        ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
        ck_assert_str_eq(err.msg,
                         "on_disconnect: must be \"release\" or \"keep\"");
        ck_assert_int_eq(v, 9);
    }
    ck_assert_int_eq(fm_request_enum(&req, "on_disconnect", three, &v, &err),
                     -1);
    ck_assert_str_eq(err.msg, "on_disconnect: must be \"a\", \"b\" or \"c\"");
}
END_TEST

static int string_array(const char *arr, size_t max_count, size_t *count,
                        fm_proto_err *err)
{
    char *body = repeat(arr, 1, "{\"op\":\"x\",\"execution_ids\":", "}");
    fm_request req;
    fm_json_val a;
    int rc;

    ck_assert_msg(parse(body, &req, err) == 0, "%s", err->msg);
    rc = fm_request_string_array(&req, "execution_ids", max_count, FM_KEY_MAX,
                                 &a, count, err);
    if (rc == 0)
        ck_assert_int_eq(a.type, FM_JSON_ARRAY);
    free(body);
    return rc;
}

START_TEST(test_request_string_array_accepts_keys_and_empty)
{
    size_t n = 99;
    fm_proto_err err;

    ck_assert_int_eq(string_array("[\"a\",\"b\\u00e9\",\"c\"]", 10, &n, &err),
                     0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(string_array("[]", 10, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(string_array("[\"a\",\"b\",\"c\"]", 3, &n, &err), 0);
    ck_assert_uint_eq(n, 3);
}
END_TEST

START_TEST(test_request_string_array_over_max_count)
{
    size_t n;
    fm_proto_err err;

    ck_assert_int_eq(string_array("[\"a\",\"b\",\"c\",\"d\"]", 3, &n, &err),
                     -1);
    ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
    ck_assert_str_eq(err.msg,
                     "execution_ids: must be an array of at most 3 strings");
    ck_assert_int_eq(string_array("[\"a\"]", 0, &n, &err), -1);
}
END_TEST

START_TEST(test_request_string_array_checks_every_element)
{
    static const struct { const char *arr, *msg; } cases[] = {
        {"[1]", KEY_MSG("execution_ids[0]", 512)},
        {"[\"a\",null]", KEY_MSG("execution_ids[1]", 512)},
        {"[\"a\",\"b\",\"\"]", KEY_MSG("execution_ids[2]", 512)},
        {"[\"a\\u0000\"]", KEY_MSG("execution_ids[0]", 512)},
        {"[\"a\",[\"b\"]]", KEY_MSG("execution_ids[1]", 512)},
        {"[{}]", KEY_MSG("execution_ids[0]", 512)},
        {NULL, NULL}
    };
    size_t n;
    fm_proto_err err;
    char *long_id = repeat("x", 513, "[\"ok\",\"", "\"]");

    for (size_t i = 0; cases[i].arr != NULL; i++) {
        ck_assert_msg(string_array(cases[i].arr, 10, &n, &err) == -1, "%s",
                      cases[i].arr);
        ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
        ck_assert_str_eq(err.msg, cases[i].msg);
    }
    ck_assert_int_eq(string_array(long_id, 10, &n, &err), -1);
    ck_assert_str_eq(err.msg, KEY_MSG("execution_ids[1]", 512));
    free(long_id);
}
END_TEST

START_TEST(test_request_string_array_missing_or_not_array)
{
    static const char *const vals[] = {"null", "\"a\"", "{}", "1", NULL};
    fm_request req = req_of("{\"op\":\"x\"}");
    fm_json_val a;
    size_t n;
    fm_proto_err err;

    ck_assert_int_eq(fm_request_string_array(&req, "execution_ids", 10,
                                             FM_KEY_MAX, &a, &n, &err), -1);
    ck_assert_str_eq(err.msg, "execution_ids: required");
    for (size_t i = 0; vals[i] != NULL; i++) {
        ck_assert_int_eq(string_array(vals[i], 10, &n, &err), -1);
        ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
        ck_assert_str_eq(err.msg, "execution_ids: must be an array of at "
                         "most 10 strings");
    }
}
END_TEST

START_TEST(test_request_object_field)
{
    static const char *const bad[] = {"null", "[]", "\"{}\"", "1", NULL};
    fm_request req = req_of("{\"op\":\"x\",\"execution\":{\"id\":\"e1\","
                            "\"n\":100000000000000000001}}");
    char body[64];
    fm_json_val v;
    fm_proto_err err;

    ck_assert_int_eq(fm_request_object(&req, "execution", &v, &err), 0);
    ck_assert(span_is(&v, "{\"id\":\"e1\",\"n\":100000000000000000001}"));
    ck_assert_int_eq(fm_request_object(&req, "missing", &v, &err), -1);
    ck_assert_str_eq(err.msg, "missing: required");
    for (size_t i = 0; bad[i] != NULL; i++) {
        snprintf(body, sizeof(body), "{\"op\":\"x\",\"execution\":%s}", bad[i]);
        req = req_of(body);
        ck_assert_int_eq(fm_request_object(&req, "execution", &v, &err), -1);
        ck_assert_int_eq(err.code, FM_E_BAD_REQUEST);
        ck_assert_str_eq(err.msg, "execution: must be an object");
    }
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

Suite *fm_suite_proto(void)
{
    Suite *s = suite_create("proto");
    TCase *frame = tcase_create("frame");
    TCase *buf = tcase_create("buf");
    TCase *json = tcase_create("json");
    TCase *big = tcase_create("json_big");
    TCase *nav = tcase_create("json_nav");
    TCase *req = tcase_create("request");

    tcase_add_test(frame, test_frame_split_at_every_point_yields_same_frames);
    tcase_add_test(frame, test_frame_byte_by_byte_yields_same_frames);
    tcase_add_test(frame, test_frame_zero_length_is_bad_frame);
    tcase_add_test(frame, test_frame_too_large_fails_on_header_alone);
    tcase_add_test(frame, test_frame_of_exactly_max_body_is_accepted);
    tcase_add_test(frame, test_frame_truncated_needs_more);
    tcase_add_test(frame, test_frame_space_and_commit_feed_without_copy);
    suite_add_tcase(s, frame);

    tcase_add_test(buf, test_buf_json_string_round_trips_through_validator);
    suite_add_tcase(s, buf);

    tcase_add_test(json, test_json_accepts_valid_texts);
    tcase_add_test(json, test_json_accepts_big_numbers);
    tcase_add_test(json, test_json_rejects_empty_and_incomplete_texts);
    tcase_add_test(json, test_json_rejects_trailing_commas);
    tcase_add_test(json, test_json_rejects_bad_structure);
    tcase_add_test(json, test_json_rejects_leading_zeros);
    tcase_add_test(json, test_json_rejects_malformed_numbers);
    tcase_add_test(json, test_json_rejects_bad_literals);
    tcase_add_test(json, test_json_rejects_raw_control_characters_in_strings);
    tcase_add_test(json, test_json_escapes);
    tcase_add_test(json, test_json_surrogates_must_pair);
    tcase_add_test(json, test_json_accepts_utf8_boundaries);
    tcase_add_test(json, test_json_rejects_invalid_utf8);
    tcase_add_test(json, test_json_only_four_whitespace_characters);
    tcase_add_test(json, test_json_rejects_trailing_garbage);
    tcase_add_test(json, test_json_rejects_duplicate_member_names);
    tcase_add_test(json, test_json_duplicates_compare_decoded_names);
    tcase_add_test(json, test_json_scan_skips_only_utf8_and_duplicate_checks);
    tcase_add_test(json, test_json_duplicates_found_at_any_depth);
    tcase_add_test(json, test_json_duplicates_past_the_small_scratch);
    tcase_add_test(json, test_json_duplicate_offset_is_the_later_name);
    tcase_add_test(json, test_json_depth_512_accepted_513_rejected);
    tcase_add_test(json, test_json_reports_offset_of_problem);
    tcase_add_test(json, test_json_root_span_excludes_whitespace);
    tcase_add_test(json, test_json_validates_only_the_given_length);
    suite_add_tcase(s, json);

    /* Generous under sanitizers; the tests assert their own time bounds. */
    tcase_set_timeout(big, 60);
    tcase_add_test(big, test_json_hostile_nesting_fails_cleanly);
    tcase_add_test(big, test_json_100k_members_validate_fast);
    tcase_add_test(big, test_json_same_hash_names_stay_fast);
    suite_add_tcase(s, big);

    tcase_add_test(nav, test_json_object_get_is_exact_and_case_sensitive);
    tcase_add_test(nav, test_json_index_holds_root_members_and_finds_like_object_get);
    tcase_add_test(nav, test_json_index_of_large_or_non_object_roots_falls_back);
    tcase_add_test(nav, test_json_scan_notes_the_members_of_a_root_member);
    tcase_add_test(nav, test_json_iter_walks_array_with_nested_values);
    tcase_add_test(nav, test_json_iter_walks_object_names_and_values);
    tcase_add_test(nav, test_json_count_counts_top_level_only);
    tcase_add_test(nav, test_json_int64_range_of_ids);
    tcase_add_test(nav, test_json_int64_limits_and_overflow);
    tcase_add_test(nav, test_json_int64_minus_zero_is_zero);
    tcase_add_test(nav, test_json_int64_refuses_fractions_and_exponents);
    tcase_add_test(nav, test_json_string_decode_to_utf8);
    tcase_add_test(nav, test_json_string_decode_respects_cap);
    tcase_add_test(nav, test_json_string_decode_reports_control_characters);
    tcase_add_test(nav, test_json_string_len_and_eq_use_decoded_bytes);
    suite_add_tcase(s, nav);

    tcase_add_test(req, test_request_integer_id_is_echoed_exactly);
    tcase_add_test(req, test_request_string_id_keeps_its_literal);
    tcase_add_test(req, test_request_without_id_has_no_id);
    tcase_add_test(req, test_request_string_id_of_256_bytes_is_the_limit);
    tcase_add_test(req, test_request_unusable_id_is_bad_request_without_id);
    tcase_add_test(req, test_request_bad_id_is_reported_before_bad_op);
    tcase_add_test(req, test_request_invalid_json_is_bad_json_without_id);
    tcase_add_test(req, test_request_bad_json_message_says_where_and_why);
    tcase_add_test(req, test_request_raw_control_characters_are_bad_json);
    tcase_add_test(req, test_request_body_must_be_an_object);
    tcase_add_test(req, test_request_op_must_be_non_empty_string_and_keeps_id);
    tcase_add_test(req, test_request_member_names_are_case_sensitive);
    tcase_add_test(req, test_request_escaped_member_names_match);
    tcase_add_test(req, test_request_unknown_members_are_ignored);
    tcase_add_test(req, test_request_op_is_compares_decoded_name_exactly);
    tcase_add_test(req, test_request_string_decodes_a_valid_key);
    tcase_add_test(req, test_request_string_missing);
    tcase_add_test(req, test_request_string_null_wrong_type_or_empty);
    tcase_add_test(req, test_request_string_key_limit_is_512_bytes);
    tcase_add_test(req, test_request_string_name_limit_is_128_bytes);
    tcase_add_test(req, test_request_string_escaped_control_chars);
    tcase_add_test(req, test_request_check_string_names_what_it_checks);
    tcase_add_test(req, test_request_int_absent_keeps_default);
    tcase_add_test(req, test_request_int_within_range);
    tcase_add_test(req, test_request_int_out_of_range_or_not_integer);
    tcase_add_test(req, test_request_bool_field);
    tcase_add_test(req, test_request_enum_field);
    tcase_add_test(req, test_request_string_array_accepts_keys_and_empty);
    tcase_add_test(req, test_request_string_array_over_max_count);
    tcase_add_test(req, test_request_string_array_checks_every_element);
    tcase_add_test(req, test_request_string_array_missing_or_not_array);
    tcase_add_test(req, test_request_object_field);
    suite_add_tcase(s, req);
    return s;
}
