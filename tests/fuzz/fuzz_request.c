/* fuzz_request.c -- libFuzzer target for the strict JSON validator and the
 * request helpers (proto/fm_json.h, proto/fm_request.h).
 *
 * The input is one frame body. It goes through fm_request_parse() as the
 * daemon does it; when the text is valid JSON, every value in it is then
 * visited and cross-checked:
 *   - each value's span validates on its own, to the same type and span;
 *   - strings: the decoded length agrees between decode, string_len and
 *     string_eq, the decoded bytes are well-formed UTF-8, the control
 *     character flag is right, and re-encoding then validating gives the
 *     same bytes back;
 *   - numbers: fm_json_int64 agrees with strtoll on integer literals;
 *   - containers: iteration agrees with fm_json_count, and every member is
 *     what fm_json_object_get finds under its decoded name (names are
 *     unique after validation);
 *   - the root object's index (fm_json_validate_indexed) holds exactly the
 *     members iteration finds, and fm_request's lookups go through it.
 * When the request parses, every field helper is run on every member name
 * and on the names the daemon uses, with buffers of exactly the size the
 * helper may write (so ASan sees one byte too many). Besides, a reference
 * validator written separately from RFC 8259 must agree with
 * fm_json_validate on every input, and decode every string the same way.
 * fm_json_scan (the validation without UTF-8 and duplicate checks that
 * libfmredis runs on replies) must accept every valid text with the same
 * root, refuse only for what it does not check, and leave what it accepts
 * navigable within the text. Any disagreement aborts. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm_buf.h"
#include "fm_json.h"
#include "fm_request.h"
#include "fm_utf8.h"

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "fuzz_request: %s:%d: check failed: %s\n",      \
                    __FILE__, __LINE__, #cond);                             \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* Helpers are called for at most this many member names per object, so a
 * body of thousands of members costs the fuzzer no quadratic time. */
#define MAX_NAMES 24
/* Members per object whose lookup by name is cross-checked. */
#define MAX_LOOKUPS 64

static const char *const ops[] = {
    "hello", "ping", "stats", "lock.acquire", "lock.release", "lock.extend",
    "lock.is_locked", "wake.signal", "wake.signal_many", "wake.subscribe",
    "wake.unsubscribe", "cache.get", "cache.set", "cache.invalidate",
    "cache.invalidate_many", "cache.get_many", NULL
};

/* Member names the daemon asks for (and one it never does). */
static const char *const fields[] = {
    "id", "op", "client_name", "redis", "key", "ttl", "retry_delay",
    "max_retries", "on_disconnect", "auto_extend", "token", "execution_id",
    "execution_ids", "execution", "channel", "group", "nope", NULL
};

static const char *const modes[] = {"release", "keep", NULL};

/* Whether p[0..n) is well-formed UTF-8 (NUL and controls allowed). */
static int utf8_ok(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t k;

        if (p[i] < 0x80) {
            i++;
            continue;
        }
        k = fm_utf8_seq_len(p + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* ---- A reference validator ------------------------------------------------
 *
 * Written from RFC 8259 and RFC 3629 alone, as plainly as possible (recursive
 * descent, quadratic duplicate check, a decoded copy of every string), so
 * that fm_json_validate can be held to it: both must accept exactly the same
 * texts, and decode every string to the same bytes. */

typedef struct ref {
    const unsigned char *p, *end;
    int depth;
} ref;

typedef struct ref_str {
    unsigned char *b;
    size_t n, cap;
} ref_str;

static void ref_put(ref_str *s, unsigned c)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->b = realloc(s->b, s->cap);
        CHECK(s->b != NULL);
    }
    s->b[s->n++] = (unsigned char)c;
}

static void ref_ws(ref *r)
{
    while (r->p < r->end &&
           (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int ref_in(const ref *r, size_t i, unsigned lo, unsigned hi)
{
    return r->p + i < r->end && r->p[i] >= lo && r->p[i] <= hi;
}

/* One UTF-8 sequence (RFC 3629 section 4), copied to out. */
static int ref_utf8(ref *r, ref_str *out)
{
    unsigned c = *r->p;
    size_t n;

    if (c >= 0xC2 && c <= 0xDF)
        n = ref_in(r, 1, 0x80, 0xBF) ? 2 : 0;
    else if (c == 0xE0)
        n = ref_in(r, 1, 0xA0, 0xBF) && ref_in(r, 2, 0x80, 0xBF) ? 3 : 0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
        n = ref_in(r, 1, 0x80, 0xBF) && ref_in(r, 2, 0x80, 0xBF) ? 3 : 0;
    else if (c == 0xED)
        n = ref_in(r, 1, 0x80, 0x9F) && ref_in(r, 2, 0x80, 0xBF) ? 3 : 0;
    else if (c == 0xF0)
        n = ref_in(r, 1, 0x90, 0xBF) && ref_in(r, 2, 0x80, 0xBF) &&
            ref_in(r, 3, 0x80, 0xBF) ? 4 : 0;
    else if (c >= 0xF1 && c <= 0xF3)
        n = ref_in(r, 1, 0x80, 0xBF) && ref_in(r, 2, 0x80, 0xBF) &&
            ref_in(r, 3, 0x80, 0xBF) ? 4 : 0;
    else if (c == 0xF4)
        n = ref_in(r, 1, 0x80, 0x8F) && ref_in(r, 2, 0x80, 0xBF) &&
            ref_in(r, 3, 0x80, 0xBF) ? 4 : 0;
    else
        n = 0;
    for (size_t i = 0; i < n; i++)
        ref_put(out, r->p[i]);
    r->p += n;
    return n ? 0 : -1;
}

static int ref_hex4(ref *r, unsigned *out)
{
    unsigned v = 0;

    if (r->end - r->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        unsigned c = r->p[i];

        if (c >= '0' && c <= '9')
            v = v * 16 + (c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v = v * 16 + (c - 'A' + 10);
        else
            return -1;
    }
    r->p += 4;
    *out = v;
    return 0;
}

static void ref_put_cp(ref_str *s, unsigned cp)
{
    if (cp < 0x80) {
        ref_put(s, cp);
    } else if (cp < 0x800) {
        ref_put(s, 0xC0 | cp >> 6);
        ref_put(s, 0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        ref_put(s, 0xE0 | cp >> 12);
        ref_put(s, 0x80 | (cp >> 6 & 0x3F));
        ref_put(s, 0x80 | (cp & 0x3F));
    } else {
        ref_put(s, 0xF0 | cp >> 18);
        ref_put(s, 0x80 | (cp >> 12 & 0x3F));
        ref_put(s, 0x80 | (cp >> 6 & 0x3F));
        ref_put(s, 0x80 | (cp & 0x3F));
    }
}

/* A string at r->p (its opening quote), decoded into out. */
static int ref_string(ref *r, ref_str *out)
{
    r->p++;
    for (;;) {
        unsigned c, cp, lo;

        if (r->p >= r->end)
            return -1;
        c = *r->p;
        if (c == '"') {
            r->p++;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c >= 0x80) {
            if (ref_utf8(r, out) != 0)
                return -1;
            continue;
        }
        if (c != '\\') {
            ref_put(out, c);
            r->p++;
            continue;
        }
        if (r->end - r->p < 2)
            return -1;
        c = r->p[1];
        r->p += 2;
        switch (c) {
        case '"': ref_put(out, '"'); continue;
        case '\\': ref_put(out, '\\'); continue;
        case '/': ref_put(out, '/'); continue;
        case 'b': ref_put(out, '\b'); continue;
        case 'f': ref_put(out, '\f'); continue;
        case 'n': ref_put(out, '\n'); continue;
        case 'r': ref_put(out, '\r'); continue;
        case 't': ref_put(out, '\t'); continue;
        case 'u': break;
        default: return -1;
        }
        if (ref_hex4(r, &cp) != 0)
            return -1;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return -1;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
                return -1;
            r->p += 2;
            if (ref_hex4(r, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        ref_put_cp(out, cp);
    }
}

static int ref_digits(ref *r)
{
    const unsigned char *start = r->p;

    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    return r->p > start ? 0 : -1;
}

static int ref_number(ref *r)
{
    if (*r->p == '-')
        r->p++;
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else if (!ref_in(r, 0, '1', '9') || ref_digits(r) != 0)
        return -1;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (ref_digits(r) != 0)
            return -1;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (ref_digits(r) != 0)
            return -1;
    }
    return 0;
}

static int ref_word(ref *r, const char *w)
{
    size_t n = strlen(w);

    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
        return -1;
    r->p += n;
    return 0;
}

static int ref_value(ref *r);

static int ref_object(ref *r)
{
    ref_str *names = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;

    r->p++;
    ref_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return 0;
    }
    for (;;) {
        ref_str name = {0};

        ref_ws(r);
        if (r->p >= r->end || *r->p != '"' || ref_string(r, &name) != 0) {
            free(name.b);
            break;
        }
        for (size_t i = 0; i < n && rc == -1; i++)
            if (names[i].n == name.n &&
                (name.n == 0 || memcmp(names[i].b, name.b, name.n) == 0))
                rc = -2;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            names = realloc(names, cap * sizeof(*names));
            CHECK(names != NULL);
        }
        names[n++] = name;
        if (rc == -2)
            break;          /* a duplicate */
        ref_ws(r);
        if (r->p >= r->end || *r->p != ':')
            break;
        r->p++;
        if (ref_value(r) != 0)
            break;
        ref_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            rc = 0;
        }
        break;
    }
    for (size_t i = 0; i < n; i++)
        free(names[i].b);
    free(names);
    return rc == 0 ? 0 : -1;
}

static int ref_array(ref *r)
{
    r->p++;
    ref_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return 0;
    }
    for (;;) {
        if (ref_value(r) != 0)
            return -1;
        ref_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return 0;
        }
        return -1;
    }
}

static int ref_value(ref *r)
{
    int rc;

    ref_ws(r);
    if (r->p >= r->end)
        return -1;
    switch (*r->p) {
    case '{':
    case '[':
        if (++r->depth > FM_JSON_MAX_DEPTH)
            return -1;
        rc = *r->p == '{' ? ref_object(r) : ref_array(r);
        r->depth--;
        return rc;
    case '"': {
        ref_str s = {0};

        rc = ref_string(r, &s);
        free(s.b);
        return rc;
    }
    case 't': return ref_word(r, "true");
    case 'f': return ref_word(r, "false");
    case 'n': return ref_word(r, "null");
    default:
        if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
            return ref_number(r);
        return -1;
    }
}

/* Whether text[0..len) is one JSON value with optional whitespace around. */
static int ref_validate(const char *text, size_t len)
{
    ref r = {(const unsigned char *)text, (const unsigned char *)text + len, 0};

    if (ref_value(&r) != 0)
        return 0;
    ref_ws(&r);
    return r.p == r.end;
}

static void check_valid_span(const fm_json_val *v)
{
    fm_json_val again;
    const char *why = NULL;
    size_t at = 0;

    CHECK(fm_json_validate(v->p, v->len, &again, &why, &at) == 0);
    CHECK(again.type == v->type);
    CHECK(again.p == v->p && again.len == v->len);
}

static void check_string(const fm_json_val *s)
{
    size_t n = 0, n2 = 0, len;
    int ctrl = -1, ctrl2 = 0, rc;
    char *out;
    fm_buf b;
    fm_json_val re;

    CHECK(s->type == FM_JSON_STRING);
    CHECK(s->len >= 2 && s->p[0] == '"' && s->p[s->len - 1] == '"');

    /* Measuring and decoding agree, and a decode never grows the text. */
    rc = fm_json_string_decode(s, NULL, 0, &n, &ctrl);
    CHECK(rc == (n == 0 ? 0 : -1));
    len = fm_json_string_len(s);
    CHECK(len == n);
    CHECK(n <= s->len - 2);

    /* Exactly n + 1 bytes: the decode plus its NUL. */
    out = malloc(n + 1);
    CHECK(out != NULL);
    CHECK(fm_json_string_decode(s, out, n + 1, &n2, &ctrl2) == 0);
    CHECK(n2 == n && out[n] == '\0' && ctrl2 == ctrl);
    /* Exactly n bytes still fits (without the NUL); n - 1 does not. */
    if (n > 0) {
        CHECK(fm_json_string_decode(s, out, n, &n2, NULL) == 0 && n2 == n);
        CHECK(fm_json_string_decode(s, out, n - 1, &n2, NULL) == -1 && n2 == n);
        CHECK(fm_json_string_decode(s, out, n + 1, &n2, NULL) == 0);
    }

    {
        int has_ctrl = 0;

        for (size_t i = 0; i < n; i++)
            if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] == 0x7f)
                has_ctrl = 1;
        CHECK(has_ctrl == ctrl);
    }
    /* Validation let only well-formed UTF-8 and paired surrogates in. */
    CHECK(utf8_ok((const unsigned char *)out, n));
    /* The reference decodes the span to the same bytes. */
    {
        ref r = {(const unsigned char *)s->p,
                 (const unsigned char *)s->p + s->len, 0};
        ref_str d = {0};

        CHECK(ref_string(&r, &d) == 0 && r.p == r.end);
        CHECK(d.n == n && (n == 0 || memcmp(d.b, out, n) == 0));
        free(d.b);
    }

    CHECK(fm_json_string_eq(s, out, n) == 1);
    if (n > 0) {
        CHECK(fm_json_string_eq(s, out, n - 1) == 0);
        out[n - 1] ^= 1;
        CHECK(fm_json_string_eq(s, out, n) == 0);
        out[n - 1] ^= 1;
    }

    /* The writer's encoding of the decoded text is valid JSON that decodes
     * to the same bytes. */
    fm_buf_init(&b);
    fm_buf_put_json_string(&b, out, n);
    CHECK(!b.oom);
    CHECK(fm_json_validate(b.data, b.len, &re, NULL, NULL) == 0);
    CHECK(re.type == FM_JSON_STRING);
    CHECK(fm_json_string_eq(&re, out, n) == 1);
    fm_buf_free(&b);
    free(out);
}

static void check_number(const fm_json_val *v)
{
    char text[64];
    int64_t x = 0, y = 0;
    int integer = 1;
    long long want;
    char *end;

    CHECK(v->len > 0);
    for (size_t i = 0; i < v->len; i++)
        if (v->p[i] == '.' || v->p[i] == 'e' || v->p[i] == 'E')
            integer = 0;
    if (v->len >= sizeof(text)) {
        /* Too long for any int64 when it is an integer literal. */
        CHECK(fm_json_int64(v, INT64_MIN, INT64_MAX, &x) == -1);
        return;
    }
    memcpy(text, v->p, v->len);
    text[v->len] = '\0';
    errno = 0;
    want = strtoll(text, &end, 10);
    if (integer && errno == 0 && *end == '\0') {
        CHECK(fm_json_int64(v, INT64_MIN, INT64_MAX, &x) == 0);
        CHECK(x == want);
        /* The contract's id range is a sub-range with the same answers. */
        if (x >= -FM_INT_ID_MAX && x <= FM_INT_ID_MAX)
            CHECK(fm_json_int64(v, -FM_INT_ID_MAX, FM_INT_ID_MAX, &y) == 0 && y == x);
        else
            CHECK(fm_json_int64(v, -FM_INT_ID_MAX, FM_INT_ID_MAX, &y) == -1);
        if (x > INT64_MIN)
            CHECK(fm_json_int64(v, x, x, &y) == 0 && y == x);
        if (x < INT64_MAX)
            CHECK(fm_json_int64(v, x + 1, INT64_MAX, &y) == -1);
    } else {
        /* A fraction, an exponent, or out of int64's range. */
        CHECK(fm_json_int64(v, INT64_MIN, INT64_MAX, &x) == -1);
    }
}

static void check_value(const fm_json_val *v, const char *lo, const char *hi);

static void check_container(const fm_json_val *c)
{
    fm_json_iter it;
    fm_json_val name, val, got;
    size_t count = 0;

    CHECK(c->len >= 2);
    fm_json_iter_init(&it, c);
    while (fm_json_iter_next(&it, &name, &val)) {
        count++;
        if (c->type == FM_JSON_OBJECT)
            check_string(&name);
        /* The lookup is O(object) each: bounded to keep this linear-ish. */
        if (c->type == FM_JSON_OBJECT && count <= MAX_LOOKUPS) {
            size_t n;
            char *dec;

            CHECK(name.p > c->p && name.p + name.len < val.p);
            /* Names are unique, so the lookup finds exactly this member. */
            n = fm_json_string_len(&name);
            dec = malloc(n + 1);
            CHECK(dec != NULL);
            fm_json_string_decode(&name, dec, n + 1, &n, NULL);
            CHECK(fm_json_object_get(c, dec, n, &got) == 1);
            CHECK(got.p == val.p && got.len == val.len && got.type == val.type);
            free(dec);
        }
        check_value(&val, c->p + 1, c->p + c->len - 1);
    }
    CHECK(fm_json_count(c) == count);
    if (c->type != FM_JSON_OBJECT)
        CHECK(fm_json_object_get(c, "id", 2, &got) == 0);
}

/* Checks v and everything in it; v must lie within [lo, hi). */
static void check_value(const fm_json_val *v, const char *lo, const char *hi)
{
    CHECK(v->p >= lo && v->p + v->len <= hi && v->len > 0);
    check_valid_span(v);
    switch (v->type) {
    case FM_JSON_STRING:
        check_string(v);
        break;
    case FM_JSON_NUMBER:
        check_number(v);
        break;
    case FM_JSON_OBJECT:
    case FM_JSON_ARRAY:
        check_container(v);
        break;
    case FM_JSON_NULL:
        CHECK(v->len == 4 && memcmp(v->p, "null", 4) == 0);
        break;
    case FM_JSON_TRUE:
        CHECK(v->len == 4 && memcmp(v->p, "true", 4) == 0);
        break;
    case FM_JSON_FALSE:
        CHECK(v->len == 5 && memcmp(v->p, "false", 5) == 0);
        break;
    }
}

/* Text fm_json_scan accepted and fm_json_validate did not (invalid UTF-8,
 * a repeated name): every value is navigated, decoded and counted, within
 * the text, as a client of the daemon navigates its replies. */
static void walk_scanned(const fm_json_val *v, const char *lo, const char *hi)
{
    fm_json_iter it;
    fm_json_val name, val, got;
    size_t count = 0, n, out;
    char *dec;
    int64_t i64;

    CHECK(v->p >= lo && v->p + v->len <= hi && v->len > 0);
    switch (v->type) {
    case FM_JSON_STRING:
        n = fm_json_string_len(v);
        dec = malloc(n + 1);
        CHECK(dec != NULL);
        CHECK(fm_json_string_decode(v, dec, n + 1, &out, NULL) == 0 && out == n);
        CHECK(fm_json_string_eq(v, dec, n));
        free(dec);
        break;
    case FM_JSON_NUMBER:
        (void)fm_json_int64(v, INT64_MIN, INT64_MAX, &i64);
        break;
    case FM_JSON_OBJECT:
    case FM_JSON_ARRAY:
        fm_json_iter_init(&it, v);
        while (fm_json_iter_next(&it, &name, &val)) {
            if (v->type == FM_JSON_OBJECT) {
                walk_scanned(&name, v->p + 1, v->p + v->len - 1);
                /* A repeated name finds its first occurrence, at or before. */
                if (++count <= MAX_LOOKUPS) {
                    n = fm_json_string_len(&name);
                    dec = malloc(n + 1);
                    CHECK(dec != NULL);
                    fm_json_string_decode(&name, dec, n + 1, &n, NULL);
                    CHECK(fm_json_object_get(v, dec, n, &got) == 1 && got.p <= val.p);
                    free(dec);
                }
            } else {
                count++;
            }
            walk_scanned(&val, v->p + 1, v->p + v->len - 1);
        }
        CHECK(fm_json_count(v) == count);
        break;
    default:
        break;
    }
}

/* The first n members of obj are m[0..n), as iteration finds them. */
static void check_pairs(const fm_json_val *obj, const fm_json_pair *m, size_t n)
{
    fm_json_val name, val;
    fm_json_iter it;
    size_t i = 0;

    fm_json_iter_init(&it, obj);
    while (i < n && fm_json_iter_next(&it, &name, &val)) {
        CHECK(m[i].name.p == name.p && m[i].name.len == name.len);
        CHECK(m[i].val.p == val.p && m[i].val.len == val.len && m[i].val.type == val.type);
        i++;
    }
    CHECK(i == n);
}

/* An index holds the root's members as iteration finds them, and says it
 * holds them all exactly when they fit. */
static void check_index(const fm_json_val *root, const fm_json_index *idx)
{
    if (root->type != FM_JSON_OBJECT) {
        CHECK(!idx->complete);
        return;
    }
    check_pairs(root, idx->m, idx->n);
    CHECK(idx->complete == (fm_json_count(root) <= FM_JSON_INDEX_MAX));
}

/* What a scan notes as it passes is what navigation finds afterwards: the
 * root's members (its index), and the members of the root's first member
 * (looked up by its name: its first occurrence counts) when that is an
 * object, the first NOTED of them with a count of all. */
#define NOTED 8

static void check_scan_notes(const char *body, size_t size, const fm_json_val *root)
{
    fm_json_pair m[NOTED];
    fm_json_members mem = {.name = "", .m = m, .cap = NOTED};
    fm_json_val again, name, val;
    fm_json_index idx;
    fm_json_iter it;
    char *dec = NULL;
    size_t n = 0;

    if (root->type == FM_JSON_OBJECT) {
        fm_json_iter_init(&it, root);
        if (fm_json_iter_next(&it, &name, NULL)) {
            n = fm_json_string_len(&name);
            dec = malloc(n + 1);
            CHECK(dec != NULL);
            fm_json_string_decode(&name, dec, n + 1, &n, NULL);
            mem.name = dec;
            mem.name_len = n;
        }
    }
    CHECK(fm_json_scan(body, size, &again, &idx, &mem, NULL, NULL) == 0);
    CHECK(again.p == root->p && again.len == root->len && again.type == root->type);
    check_index(root, &idx);
    if (fm_json_object_get(root, mem.name, mem.name_len, &val) && val.type == FM_JSON_OBJECT) {
        CHECK(mem.found && mem.n == fm_json_count(&val));
        check_pairs(&val, m, mem.n < NOTED ? mem.n : NOTED);
    } else {
        CHECK(!mem.found && mem.n == 0);
    }
    free(dec);
}

/* The scan cannot tell a byte >= 0x80 from a letter, so it must judge the
 * text exactly as it judges the text with every such byte made a 'z' (a
 * letter no escape, number or literal holds); and
 * on that text (which has no UTF-8 to check) it must agree with the
 * validator, reason and offset included, but for repeated names. */
static void check_scan_by_ascii(const char *body, size_t size)
{
    char *ascii = malloc(size ? size : 1);
    fm_json_val r1, r2, r3;
    const char *w1 = NULL, *w2 = NULL, *w3 = NULL;
    size_t a1 = 0, a2 = 0, a3 = 0;
    int s1, s2, v3;

    CHECK(ascii != NULL);
    for (size_t i = 0; i < size; i++)
        ascii[i] = (unsigned char)body[i] >= 0x80 ? 'z' : body[i];
    s1 = fm_json_scan(body, size, &r1, NULL, NULL, &w1, &a1);
    s2 = fm_json_scan(ascii, size, &r2, NULL, NULL, &w2, &a2);
    CHECK(s1 == s2);
    if (s1 == 0)
        CHECK(r1.type == r2.type && r1.p - body == r2.p - ascii && r1.len == r2.len);
    else
        CHECK(strcmp(w1, w2) == 0 && a1 == a2);
    v3 = fm_json_validate(ascii, size, &r3, &w3, &a3);
    if (v3 == 0)
        CHECK(s2 == 0 && r3.type == r2.type && r3.p == r2.p && r3.len == r2.len);
    else if (strcmp(w3, "duplicate member name") != 0 && strcmp(w3, "out of memory") != 0)
        CHECK(s2 != 0 && strcmp(w2, w3) == 0 && a2 == a3);
    free(ascii);
}

static void check_err(const fm_proto_err *err, fm_errcode code)
{
    CHECK(err->code == code);
    CHECK(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
    CHECK(err->msg[0] != '\0');
}

/* Every field helper on the member called name (a C string, so it may be a
 * prefix of a decoded name holding NUL). */
static void exercise_field(const fm_request *req, const char *name)
{
    static const size_t maxes[] = {1, 7, FM_NAME_MAX, FM_KEY_MAX};
    static const int64_t ranges[][2] = {
        {1, FM_MS_MAX}, {0, FM_MS_MAX}, {-FM_INT_ID_MAX, FM_INT_ID_MAX},
        {INT64_MIN, INT64_MAX}, {5, 5},
    };
    fm_json_val v, arr;
    fm_proto_err err;
    int present = fm_json_object_get(&req->root, name, strlen(name), &v);

    for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
        size_t max = maxes[i], len = 99;
        int found = 7;
        char *out = malloc(max + 1);    /* exactly what the contract allows */

        CHECK(out != NULL);
        for (int required = 0; required <= 1; required++) {
            memset(&err, 0, sizeof(err));
            if (fm_request_string(req, name, required, max, out, &len, &found,
                                  &err) == 0) {
                CHECK(found == present);
                if (present) {
                    CHECK(v.type == FM_JSON_STRING);
                    CHECK(len > 0 && len <= max && out[len] == '\0');
                    CHECK(fm_json_string_eq(&v, out, len));
                    for (size_t k = 0; k < len; k++)
                        CHECK((unsigned char)out[k] >= 0x20 &&
                              (unsigned char)out[k] != 0x7f);
                } else {
                    CHECK(!required && len == 0 && out[0] == '\0');
                }
            } else {
                check_err(&err, FM_E_BAD_REQUEST);
                CHECK(found == present);
                CHECK(present || required);
            }
            /* found and len may be NULL. */
            fm_request_string(req, name, required, max, out, NULL, NULL, &err);
        }
        if (present) {
            int rc = fm_request_check_string(&v, name, max, out, &len, &err);

            CHECK(rc == 0 || err.code == FM_E_BAD_REQUEST);
        }
        free(out);
    }

    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        int64_t x = -42;

        memset(&err, 0, sizeof(err));
        if (fm_request_int(req, name, ranges[i][0], ranges[i][1], &x, &err) == 0) {
            if (present) {
                CHECK(v.type == FM_JSON_NUMBER);
                CHECK(x >= ranges[i][0] && x <= ranges[i][1]);
            } else {
                CHECK(x == -42);
            }
        } else {
            CHECK(present);
            check_err(&err, FM_E_BAD_REQUEST);
        }
    }

    {
        int b = 7;

        if (fm_request_bool(req, name, &b, &err) == 0) {
            if (present)
                CHECK((v.type == FM_JSON_TRUE && b == 1) ||
                      (v.type == FM_JSON_FALSE && b == 0));
            else
                CHECK(b == 7);
        } else {
            CHECK(present && v.type != FM_JSON_TRUE && v.type != FM_JSON_FALSE);
            check_err(&err, FM_E_BAD_REQUEST);
        }
    }

    {
        int e = -1;

        if (fm_request_enum(req, name, modes, &e, &err) == 0) {
            if (present)
                CHECK(e >= 0 && e <= 1 &&
                      fm_json_string_eq(&v, modes[e], strlen(modes[e])));
            else
                CHECK(e == -1);
        } else {
            CHECK(present);
            check_err(&err, FM_E_BAD_REQUEST);
        }
        /* A one-choice list and a list longer than the message's buffer. */
        {
            static const char *const one[] = {"keep", NULL};
            static const char *const many[] = {
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                "cccccccccccccccccccccccccccccc", "dddddddddddddddddddddddddddddd",
                "eeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "ffffffffffffffffffffffffffffff",
                NULL};

            if (fm_request_enum(req, name, one, &e, &err) != 0)
                check_err(&err, FM_E_BAD_REQUEST);
            if (fm_request_enum(req, name, many, &e, &err) != 0)
                check_err(&err, FM_E_BAD_REQUEST);
        }
    }

    {
        static const size_t counts[] = {0, 1, 3, 1000};
        size_t count = 12345;

        for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
            if (fm_request_string_array(req, name, counts[i], FM_KEY_MAX, &arr,
                                        &count, &err) == 0) {
                fm_json_iter it;
                fm_json_val el;
                size_t seen = 0;
                char *out = malloc(FM_KEY_MAX + 1);

                CHECK(out != NULL);
                CHECK(present && arr.type == FM_JSON_ARRAY);
                CHECK(arr.p == v.p && arr.len == v.len);
                CHECK(count <= counts[i] && count == fm_json_count(&arr));
                /* What the daemon then does: decode without re-checking. */
                fm_json_iter_init(&it, &arr);
                while (fm_json_iter_next(&it, NULL, &el)) {
                    size_t len;

                    CHECK(fm_request_check_string(&el, "el", FM_KEY_MAX, out,
                                                  &len, &err) == 0);
                    seen++;
                }
                CHECK(seen == count);
                free(out);
            } else {
                check_err(&err, FM_E_BAD_REQUEST);
            }
        }
    }

    {
        fm_json_val obj;

        if (fm_request_object(req, name, &obj, &err) == 0) {
            char *id = malloc(FM_KEY_MAX + 1);
            fm_json_val idv;
            size_t len;

            CHECK(id != NULL);
            CHECK(present && obj.type == FM_JSON_OBJECT && obj.p == v.p);
            /* cache.set's next step: the execution's own id. */
            if (fm_json_object_get(&obj, "id", 2, &idv))
                fm_request_check_string(&idv, "execution.id", FM_KEY_MAX, id,
                                        &len, &err);
            free(id);
        } else {
            CHECK(!present || v.type != FM_JSON_OBJECT);
            check_err(&err, FM_E_BAD_REQUEST);
        }
    }
}

static void check_request(const fm_request *req)
{
    fm_json_iter it;
    fm_json_val name, val;
    size_t names = 0;
    int matches = 0;

    CHECK(req->root.type == FM_JSON_OBJECT);
    CHECK(req->op.type == FM_JSON_STRING && fm_json_string_len(&req->op) > 0);
    if (req->has_id) {
        int64_t x;

        CHECK(req->id.type == FM_JSON_NUMBER || req->id.type == FM_JSON_STRING);
        if (req->id.type == FM_JSON_NUMBER)
            CHECK(fm_json_int64(&req->id, -FM_INT_ID_MAX, FM_INT_ID_MAX, &x) == 0);
        else
            CHECK(fm_json_string_len(&req->id) <= FM_ID_STRING_MAX);
    } else {
        CHECK(fm_json_object_get(&req->root, "id", 2, NULL) == 0);
    }

    /* At most one op name matches, and exactly when the decoded op is it. */
    for (int i = 0; ops[i] != NULL; i++) {
        int is = fm_request_op_is(req, ops[i]);

        CHECK(is == fm_json_string_eq(&req->op, ops[i], strlen(ops[i])));
        matches += is;
    }
    CHECK(matches <= 1);

    for (int i = 0; fields[i] != NULL; i++)
        exercise_field(req, fields[i]);

    /* And the names this body actually has. */
    fm_json_iter_init(&it, &req->root);
    while (names < MAX_NAMES && fm_json_iter_next(&it, &name, &val)) {
        size_t n = fm_json_string_len(&name);
        char *dec = malloc(n + 1);

        CHECK(dec != NULL);
        fm_json_string_decode(&name, dec, n + 1, &n, NULL);
        exercise_field(req, dec);   /* up to a NUL, if the name has one */
        free(dec);
        names++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    fm_json_val root;
    const char *why = NULL;
    size_t at = 0;
    fm_request req;
    fm_proto_err err;
    int valid, rc;

    valid = fm_json_validate(body, size, &root, &why, &at) == 0;
    check_scan_by_ascii(body, size);
    /* The scan checks all but UTF-8 and repeated names: it accepts what
     * the validator accepts, the same way, and refuses only for the rest. */
    {
        fm_json_val sroot;
        const char *swhy = NULL;

        if (fm_json_scan(body, size, &sroot, NULL, NULL, &swhy, NULL) == 0) {
            CHECK(!valid || (sroot.p == root.p && sroot.len == root.len &&
                             sroot.type == root.type));
            check_scan_notes(body, size, &sroot);
            if (!valid) {
                CHECK(strcmp(why, "invalid UTF-8") == 0 ||
                      strcmp(why, "duplicate member name") == 0 ||
                      strcmp(why, "out of memory") == 0);
                walk_scanned(&sroot, body, body + size);
            }
        } else {
            CHECK(!valid && swhy != NULL);
        }
    }
    memset(&err, 0, sizeof(err));
    rc = fm_request_parse(body, size, &req, &err);

    /* Both validators accept exactly the same texts (unless memory ran out,
     * which is not the text's fault). */
    if (valid || strcmp(why, "out of memory") != 0) {
        if (ref_validate(body, size) != valid) {
            fprintf(stderr, "fuzz_request: fm_json_validate %s, the reference "
                    "%s (%s at %zu)\n", valid ? "accepts" : "refuses",
                    valid ? "refuses" : "accepts", valid ? "-" : why, at);
            abort();
        }
    }

    if (!valid) {
        CHECK(why != NULL && why[0] != '\0');
        CHECK(at <= size);
        CHECK(rc == -1 && !req.has_id);
        check_err(&err, strcmp(why, "out of memory") == 0 ? FM_E_INTERNAL
                                                           : FM_E_BAD_JSON);
        return 0;
    }

    /* A validated document validates again, the same way, and the index
     * of its root's members is what iteration finds. */
    {
        fm_json_val again;
        fm_json_index idx;

        CHECK(fm_json_validate_indexed(body, size, &again, &idx, NULL,
                                       NULL) == 0);
        CHECK(again.type == root.type && again.p == root.p &&
              again.len == root.len);
        check_index(&root, &idx);
    }
    CHECK(root.p >= body && root.p + root.len <= body + size);
    check_value(&root, body, body + size);

    if (root.type != FM_JSON_OBJECT) {
        CHECK(rc == -1 && !req.has_id);
        check_err(&err, FM_E_BAD_JSON);
        return 0;
    }
    CHECK(req.root.p == root.p && req.root.len == root.len);
    if (rc != 0) {
        /* An unusable id, or no usable op. */
        check_err(&err, FM_E_BAD_REQUEST);
        if (req.has_id)
            CHECK(fm_json_object_get(&root, "id", 2, NULL) == 1);
        return 0;
    }
    check_request(&req);
    return 0;
}
