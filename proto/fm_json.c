/* fm_json.c -- strict JSON validation (RFC 8259) and span navigation.
 *
 * The validator is one forward pass with an explicit stack of open
 * containers, so hostile nesting costs a bounded array, never C stack.
 * Member names of every open object are collected in one scratch array
 * (hash of the decoded name, raw span); when an object closes its slice is
 * heap-sorted by (hash, decoded bytes) and neighbours are compared. Heapsort
 * keeps duplicate detection O(n log n) even for names chosen to collide, and
 * sorts in place, so a validation does at most one growing allocation (none
 * while the open objects hold at most 16 names in all).
 *
 * Navigation re-scans spans of validated text: a string is skipped by its
 * escapes, a container by counting brackets outside strings. That is O(size
 * of the container) per lookup and needs no parse tree. The lookups that
 * are made often enough to matter go through spans the validator notes as
 * it passes them: the root object's members (a request's fields, a reply's
 * results), so a field after a large value costs no second scan of it, and
 * the members of one member of the root (a get_many reply's executions),
 * so a hundred executions are not walked again to find one another. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fm_json.h"
#include "fm_utf8.h"

#define FM_JSON_STR_(x) #x
#define FM_JSON_STR(x) FM_JSON_STR_(x)

/* A member name seen in a still-open object. */
#define SMALL_OBJECT 16

typedef struct fm_json_member {
    const unsigned char *p;     /* the name, quotes included */
    size_t len;
    uint64_t hash;              /* of the decoded bytes */
} fm_json_member;

/* Members noted as the validator passes them: the first cap of n. */
typedef struct fm_json_noter {
    fm_json_pair *m;
    size_t cap, n;
} fm_json_noter;

typedef struct fm_json_validator {
    const unsigned char *text, *p, *end;
    const char *why;
    const unsigned char *at;
    fm_json_member *m;          /* names of the open objects, innermost last */
    size_t n, cap;
    fm_json_member local[16];
    fm_json_noter idx;          /* the root object's members (cap 0: none) */
    fm_json_noter sub;          /* those of the member mem asks for */
    fm_json_members *mem;       /* or NULL */
    int sub_seen;               /* a root member of mem's name went by */
    int sub_next;               /* the root member's value comes next */
    int sub_on;                 /* the open object at depth 2 is noted */
    int escaped;                /* the last string checked held an escape */
    int trusted;                /* fm_json_scan: no UTF-8 or duplicate checks */
} fm_json_validator;

/* Reads the decoded bytes of a validated string one at a time, so names can
 * be hashed, compared and measured without a buffer. */
typedef struct fm_json_reader {
    const unsigned char *p, *end;   /* raw content between the quotes */
    unsigned char buf[4];           /* pending bytes of a decoded escape */
    unsigned i, n;
} fm_json_reader;

static int is_ws(unsigned c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(unsigned c)
{
    if (is_digit(c))
        return (int)(c - '0');
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    return -1;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    unsigned v = 0;

    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);

        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* ---- Decoded reading of validated strings ------------------------------- */

static void reader_init(fm_json_reader *r, const char *s, size_t len)
{
    r->p = (const unsigned char *)s + 1;
    r->end = (const unsigned char *)s + (len >= 2 ? len - 1 : 1);
    r->i = r->n = 0;
}

/* The next decoded byte, or -1 at the end. */
static int reader_next(fm_json_reader *r)
{
    unsigned cp = 0, lo = 0xDC00;
    unsigned char c;

    if (r->i < r->n)
        return r->buf[r->i++];
    if (r->p >= r->end)
        return -1;
    if (*r->p != '\\')
        return *r->p++;
    c = r->p[1];
    r->p += 2;
    switch (c) {
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u': break;
    default: return c;          /* '"', '\\' and '/' stand for themselves */
    }
    hex4(r->p, r->end, &cp);
    r->p += 4;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        hex4(r->p + 2, r->end, &lo);
        r->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp < 0x80)
        return (int)cp;
    if (cp < 0x800) {
        r->buf[0] = (unsigned char)(0xC0 | cp >> 6);
        r->n = 2;
    } else if (cp < 0x10000) {
        r->buf[0] = (unsigned char)(0xE0 | cp >> 12);
        r->buf[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        r->n = 3;
    } else {
        r->buf[0] = (unsigned char)(0xF0 | cp >> 18);
        r->buf[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        r->buf[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        r->n = 4;
    }
    r->buf[r->n - 1] = (unsigned char)(0x80 | (cp & 0x3F));
    r->i = 1;
    return r->buf[0];
}

/* The hash of a decoded name takes it eight bytes at a time, as a
 * little-endian word (zero-padded at the end), so that a name with escapes,
 * decoded byte by byte, hashes like its plain twin. Collisions only cost a
 * compare. */
#define HASH_SEED 0x9E3779B97F4A7C15ULL

static uint64_t hash_word(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0xff51afd7ed558ccdULL;
    return h ^ h >> 32;
}

/* n <= 8 bytes as a little-endian word, zero-padded. */
static uint64_t load_le(const unsigned char *p, size_t n)
{
    unsigned char b[8] = {0};
    uint64_t w;

    memcpy(b, p, n);
    memcpy(&w, b, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* plain: the name holds no escape, so its raw bytes are the decoded ones
 * (the common case, which check_string() has already found out). */
static uint64_t name_hash(const unsigned char *p, size_t len, int plain)
{
    fm_json_reader r;
    uint64_t h = HASH_SEED, w = 0;
    size_t n = 0;
    int c;

    if (plain) {
        const unsigned char *q = p + 1, *end = p + len - 1;

        for (; end - q >= 8; q += 8)
            h = hash_word(h, load_le(q, 8));
        return hash_word(h, load_le(q, (size_t)(end - q)) ^ (uint64_t)len << 59);
    }
    reader_init(&r, (const char *)p, len);
    while ((c = reader_next(&r)) >= 0) {
        w |= (uint64_t)c << 8 * (n % 8);
        if (++n % 8 == 0) {
            h = hash_word(h, w);
            w = 0;
        }
    }
    return hash_word(h, w ^ (uint64_t)(n + 2) << 59);
}

static int member_cmp(const fm_json_member *a, const fm_json_member *b)
{
    fm_json_reader ra, rb;
    int ca, cb;

    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    reader_init(&ra, (const char *)a->p, a->len);
    reader_init(&rb, (const char *)b->p, b->len);
    do {
        ca = reader_next(&ra);
        cb = reader_next(&rb);
    } while (ca == cb && ca >= 0);
    return ca < cb ? -1 : ca > cb;
}

static void sift_down(fm_json_member *m, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        fm_json_member t;

        if (child >= n)
            return;
        if (child + 1 < n && member_cmp(&m[child], &m[child + 1]) < 0)
            child++;
        if (member_cmp(&m[root], &m[child]) >= 0)
            return;
        t = m[root];
        m[root] = m[child];
        m[child] = t;
        root = child;
    }
}

static void sort_members(fm_json_member *m, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(m, i, n);
    for (size_t i = n; i-- > 1;) {
        fm_json_member t = m[0];

        m[0] = m[i];
        m[i] = t;
        sift_down(m, 0, i);
    }
}

/* ---- Validation --------------------------------------------------------- */

static int fail(fm_json_validator *v, const unsigned char *at, const char *why)
{
    v->why = why;
    v->at = at;
    return -1;
}

/* Inlined: most calls find no whitespace at all. */
static inline void skip_ws(fm_json_validator *v)
{
    while (v->p < v->end && *v->p <= ' ' && is_ws(*v->p))
        v->p++;
}

/* Whether any of the 8 bytes of x is a control character, a quote, a
 * backslash or not ASCII: the bytes a string scan must look at one by one.
 * (The classic SWAR zero-byte test, on x and on x with each target xored
 * away.) */
static int word_special(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t quote = x ^ (ones * '"'), bslash = x ^ (ones * '\\');

    return ((x - ones * 0x20) | ((quote - ones) & ~quote) | ((bslash - ones) & ~bslash) |
            x) & high ? 1 : 0;
}

/* 1 for the bytes a string holds as they are: printable ASCII (DEL too,
 * as RFC 8259 allows) but the quote (0x22) and the backslash (0x5c). */
static const unsigned char plain_byte[256] = {
    [0x20] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    [0x30] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    [0x40] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    [0x50] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    [0x60] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    [0x70] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

static int check_string(fm_json_validator *v)
{
    const unsigned char *p = v->p + 1, *end = v->end;

    v->escaped = 0;
    while (p < end) {
        unsigned c, cp;
        size_t n;
        uint64_t w;

        /* Plain ASCII, eight bytes at a time, then byte by byte. */
        while (end - p >= 8 && (memcpy(&w, p, 8), !word_special(w)))
            p += 8;
        while (p < end && plain_byte[*p])
            p++;
        if (p == end)
            break;
        c = *p;

        if (c == '"') {
            v->p = p + 1;
            return 0;
        }
        if (c < 0x20)
            return fail(v, p, "control character in string");
        if (c < 0x80 && c != '\\') {
            p++;
            continue;
        }
        if (c >= 0x80) {
            if (v->trusted)
                n = 1;
            else if ((n = fm_utf8_seq_len(p, (size_t)(end - p))) == 0)
                return fail(v, p, "invalid UTF-8");
            p += n;
            continue;
        }
        v->escaped = 1;
        if (end - p < 2)
            break;
        switch (p[1]) {
        case '"': case '\\': case '/':
        case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            continue;
        case 'u':
            break;
        default:
            return fail(v, p, "invalid escape");
        }
        if (hex4(p + 2, end, &cp) != 0)
            return fail(v, p, "invalid \\u escape");
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return fail(v, p, "unpaired surrogate");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            /* The pair must follow at once, or no code point is named. */
            if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
                hex4(p + 8, end, &cp) != 0 || cp < 0xDC00 || cp > 0xDFFF)
                return fail(v, p, "unpaired surrogate");
            p += 6;
        }
        p += 6;
    }
    return fail(v, end, "unterminated string");
}

static int check_digits(fm_json_validator *v)
{
    if (v->p >= v->end || !is_digit(*v->p))
        return fail(v, v->p, "invalid number");
    while (v->p < v->end && is_digit(*v->p))
        v->p++;
    return 0;
}

static int check_number(fm_json_validator *v)
{
    if (*v->p == '-')
        v->p++;
    if (v->p < v->end && *v->p == '0') {
        v->p++;
        if (v->p < v->end && is_digit(*v->p))
            return fail(v, v->p - 1, "leading zero in number");
    } else if (check_digits(v) != 0) {
        return -1;
    }
    if (v->p < v->end && *v->p == '.') {
        v->p++;
        if (check_digits(v) != 0)
            return -1;
    }
    if (v->p < v->end && (*v->p == 'e' || *v->p == 'E')) {
        v->p++;
        if (v->p < v->end && (*v->p == '+' || *v->p == '-'))
            v->p++;
        if (check_digits(v) != 0)
            return -1;
    }
    return 0;
}

static int check_literal(fm_json_validator *v, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(v->end - v->p) < n || memcmp(v->p, word, n) != 0)
        return fail(v, v->p, "invalid literal");
    v->p += n;
    return 0;
}

static int push_member(fm_json_validator *v, const unsigned char *name,
                       size_t len, int plain)
{
    if (v->n == v->cap) {
        size_t cap = v->cap * 2;
        fm_json_member *m;

        if (cap > SIZE_MAX / sizeof(*m))
            return fail(v, name, "out of memory");
        if (v->m == v->local) {
            m = malloc(cap * sizeof(*m));
            if (m != NULL)
                memcpy(m, v->local, sizeof(v->local));
        } else {
            m = realloc(v->m, cap * sizeof(*m));
        }
        if (m == NULL)
            return fail(v, name, "out of memory");
        v->m = m;
        v->cap = cap;
    }
    v->m[v->n].p = name;
    v->m[v->n].len = len;
    v->m[v->n].hash = name_hash(name, len, plain);
    v->n++;
    return 0;
}

/* Checks the names of the object that just closed, whose names start at
 * m[base], and drops them from the scratch array. */
static int close_object(fm_json_validator *v, size_t base)
{
    fm_json_member *m = v->m + base;
    size_t n = v->n - base;

    /* Small objects, the usual ones, compare every pair's hashes: cheaper
     * than sorting. Large ones sort, to stay O(n log n). */
    if (n <= SMALL_OBJECT) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = 0; j < i; j++)
                if (m[i].hash == m[j].hash && member_cmp(&m[i], &m[j]) == 0)
                    return fail(v, m[i].p, "duplicate member name");
        v->n = base;
        return 0;
    }
    sort_members(m, n);
    for (size_t i = 1; i < n; i++)
        if (member_cmp(&m[i - 1], &m[i]) == 0)
            return fail(v, m[i - 1].p > m[i].p ? m[i - 1].p : m[i].p,
                        "duplicate member name");
    v->n = base;
    return 0;
}

static fm_json_type type_of(char c)
{
    switch (c) {
    case '{': return FM_JSON_OBJECT;
    case '[': return FM_JSON_ARRAY;
    case '"': return FM_JSON_STRING;
    case 't': return FM_JSON_TRUE;
    case 'f': return FM_JSON_FALSE;
    case 'n': return FM_JSON_NULL;
    default: return FM_JSON_NUMBER;
    }
}

/* Notes a member's name; its value starts at val. */
static void note_name(fm_json_noter *t, const unsigned char *name, size_t len,
                      const unsigned char *val)
{
    if (t->n >= t->cap)
        return;
    t->m[t->n].name.type = FM_JSON_STRING;
    t->m[t->n].name.p = (const char *)name;
    t->m[t->n].name.len = len;
    t->m[t->n].val.p = (const char *)val;
}

/* The value of the member noted last ends at end. */
static void note_end(fm_json_noter *t, const unsigned char *end)
{
    fm_json_val *val;

    if (t->n < t->cap) {
        val = &t->m[t->n].val;
        val->type = type_of(*val->p);
        val->len = (size_t)((const char *)end - val->p);
    }
    t->n++;
}

/* A root member's name went by: whether it is the one whose members are
 * to be noted. Only its first occurrence counts, as for every lookup. */
static void note_root_name(fm_json_validator *v, const unsigned char *name, size_t len)
{
    fm_json_val n = {FM_JSON_STRING, (const char *)name, len};

    if (v->mem == NULL || v->sub_seen)
        return;
    v->sub_seen = v->sub_next = fm_json_string_eq(&n, v->mem->name, v->mem->name_len);
}

/* A value is parsed in state VALUE; an object member's name and colon in
 * NAME; what may follow a value (a comma, a closing bracket, the end) in
 * NEXT. open[] holds, per open container, the scratch index where its
 * names begin, or SIZE_MAX for an array. */
static int validate(fm_json_validator *v, fm_json_val *root)
{
    enum { VALUE, NAME, NEXT } st = VALUE;
    size_t open[FM_JSON_MAX_DEPTH];
    size_t depth = 0;
    const unsigned char *name, *name_end;

    skip_ws(v);
    root->p = (const char *)v->p;
    for (;;) {
        unsigned c = v->p < v->end ? *v->p : 0;
        int object;

        if (st == NAME) {
            if (c != '"')
                return fail(v, v->p, v->p < v->end ? "expected a member name"
                                                   : "unexpected end of text");
            name = v->p;
            if (check_string(v) != 0 ||
                (!v->trusted && push_member(v, name, (size_t)(v->p - name), !v->escaped) != 0))
                return -1;
            name_end = v->p;
            skip_ws(v);
            if (v->p >= v->end || *v->p != ':')
                return fail(v, v->p, "expected ':'");
            v->p++;
            skip_ws(v);
            if (depth == 1) {
                note_name(&v->idx, name, (size_t)(name_end - name), v->p);
                note_root_name(v, name, (size_t)(name_end - name));
            } else if (depth == 2 && v->sub_on) {
                note_name(&v->sub, name, (size_t)(name_end - name), v->p);
            }
            st = VALUE;
            continue;
        }
        if (st == NEXT) {
            if (depth == 0)
                break;
            object = open[depth - 1] != SIZE_MAX;
            if (depth == 1) {
                if (object)
                    note_end(&v->idx, v->p);
                v->sub_next = 0;
            } else if (depth == 2 && v->sub_on) {
                note_end(&v->sub, v->p);
            }
            skip_ws(v);
            c = v->p < v->end ? *v->p : 0;
            if (c == ',') {
                v->p++;
                skip_ws(v);
                st = object ? NAME : VALUE;
            } else if (c == (object ? '}' : ']')) {
                v->p++;
                if (object && close_object(v, open[depth - 1]) != 0)
                    return -1;
                if (--depth == 1)
                    v->sub_on = 0;
            } else if (v->p >= v->end) {
                return fail(v, v->p, "unexpected end of text");
            } else {
                return fail(v, v->p, object ? "expected ',' or '}'"
                                            : "expected ',' or ']'");
            }
            continue;
        }
        st = NEXT;
        switch (c) {
        case '{':
        case '[':
            if (depth == FM_JSON_MAX_DEPTH)
                return fail(v, v->p, "nesting deeper than "
                            FM_JSON_STR(FM_JSON_MAX_DEPTH) " levels");
            open[depth++] = c == '{' ? v->n : SIZE_MAX;
            if (depth == 2 && v->sub_next && c == '{') {
                v->mem->found = 1;
                v->sub_on = 1;
            }
            v->p++;
            skip_ws(v);
            if (v->p < v->end && *v->p == (c == '{' ? '}' : ']')) {
                v->p++;
                if (--depth == 1)
                    v->sub_on = 0;
            } else {
                st = c == '{' ? NAME : VALUE;
            }
            break;
        case '"':
            if (check_string(v) != 0)
                return -1;
            break;
        case 't':
            if (check_literal(v, "true") != 0)
                return -1;
            break;
        case 'f':
            if (check_literal(v, "false") != 0)
                return -1;
            break;
        case 'n':
            if (check_literal(v, "null") != 0)
                return -1;
            break;
        default:
            if (c == '-' || is_digit(c)) {
                if (check_number(v) != 0)
                    return -1;
                break;
            }
            return fail(v, v->p, v->p < v->end ? "expected a value"
                                               : "unexpected end of text");
        }
    }
    root->type = type_of(*root->p);
    root->len = (size_t)(v->p - (const unsigned char *)root->p);
    skip_ws(v);
    if (v->p != v->end)
        return fail(v, v->p, "trailing characters after the value");
    return 0;
}

static int run(const char *text, size_t len, int trusted, fm_json_val *root,
               fm_json_index *index, fm_json_members *members, const char **why,
               size_t *at)
{
    fm_json_validator v;
    fm_json_val r;
    int rc;

    memset(&v, 0, sizeof(v));
    if (index != NULL) {
        v.idx.m = index->m;
        v.idx.cap = FM_JSON_INDEX_MAX;
    }
    if (members != NULL) {
        members->found = 0;
        v.mem = members;
        v.sub.m = members->m;
        v.sub.cap = members->cap;
    }
    v.trusted = trusted;
    v.text = v.p = (const unsigned char *)text;
    v.end = v.text + len;
    v.m = v.local;
    v.cap = sizeof(v.local) / sizeof(v.local[0]);
    rc = validate(&v, &r);
    if (v.m != v.local)
        free(v.m);
    if (rc != 0) {
        if (why != NULL)
            *why = v.why;
        if (at != NULL)
            *at = (size_t)(v.at - v.text);
        return -1;
    }
    if (index != NULL) {
        index->n = v.idx.n < FM_JSON_INDEX_MAX ? v.idx.n : FM_JSON_INDEX_MAX;
        index->complete = r.type == FM_JSON_OBJECT && v.idx.n <= FM_JSON_INDEX_MAX;
    }
    if (members != NULL)
        members->n = v.sub.n;
    if (root != NULL)
        *root = r;
    return 0;
}

int fm_json_validate(const char *text, size_t len, fm_json_val *root,
                     const char **why, size_t *at)
{
    return run(text, len, 0, root, NULL, NULL, why, at);
}

int fm_json_validate_indexed(const char *text, size_t len, fm_json_val *root,
                             fm_json_index *index, const char **why,
                             size_t *at)
{
    return run(text, len, 0, root, index, NULL, why, at);
}

int fm_json_scan(const char *text, size_t len, fm_json_val *root, fm_json_index *index,
                 fm_json_members *members, const char **why, size_t *at)
{
    return run(text, len, 1, root, index, members, why, at);
}

/* ---- Navigation over validated text ------------------------------------- */

static const char *nav_ws(const char *p, const char *end)
{
    while (p < end && is_ws((unsigned char)*p))
        p++;
    return p;
}

/* Past the closing quote of the string starting at p. memchr finds the
 * candidates quickly; a quote preceded by an odd run of backslashes is
 * escaped and the search goes on. */
static const char *nav_string(const char *p, const char *end)
{
    const char *start = ++p, *q;

    while (p < end && (q = memchr(p, '"', (size_t)(end - p))) != NULL) {
        size_t bs = 0;

        while (q - bs > start && q[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (bs % 2 == 0)
            return q + 1;
        p = q + 1;
    }
    return end;
}

/* Whether a string value holds no escape: its decoded text is its raw
 * text, the common case that needs no decoding. */
static int string_plain(const fm_json_val *s)
{
    return s->len >= 2 && memchr(s->p + 1, '\\', s->len - 2) == NULL;
}

/* The value starting at p; p < end. */
static fm_json_val nav_value(const char *p, const char *end)
{
    fm_json_val v;
    const char *q = p;
    size_t depth = 0;

    v.type = type_of(*p);
    v.p = p;
    if (v.type == FM_JSON_STRING) {
        q = nav_string(q, end);
    } else if (v.type == FM_JSON_OBJECT || v.type == FM_JSON_ARRAY) {
        while (q < end) {
            char c = *q;

            if (c == '"') {
                q = nav_string(q, end);
                continue;
            }
            q++;
            if (c == '[' || c == '{')
                depth++;
            else if ((c == ']' || c == '}') && --depth == 0)
                break;
        }
    } else {
        while (q < end && *q != ',' && *q != ']' && *q != '}' &&
               !is_ws((unsigned char)*q))
            q++;
    }
    v.len = (size_t)(q - p);
    return v;
}

void fm_json_iter_init(fm_json_iter *it, const fm_json_val *container)
{
    it->object = container->type == FM_JSON_OBJECT;
    if (it->object || container->type == FM_JSON_ARRAY) {
        it->p = container->p + 1;
        it->end = container->p + container->len - 1;
    } else {
        it->p = it->end = container->p;
    }
}

int fm_json_iter_next(fm_json_iter *it, fm_json_val *name, fm_json_val *val)
{
    const char *p = nav_ws(it->p, it->end);
    fm_json_val v;

    if (p < it->end && *p == ',')
        p = nav_ws(p + 1, it->end);
    if (p >= it->end)
        return 0;
    if (it->object) {
        v = nav_value(p, it->end);
        if (name != NULL)
            *name = v;
        p = nav_ws(p + v.len, it->end);
        p = nav_ws(p + 1, it->end);     /* the ':' */
        if (p >= it->end)
            return 0;
    }
    v = nav_value(p, it->end);
    if (val != NULL)
        *val = v;
    it->p = p + v.len;
    return 1;
}

int fm_json_object_get(const fm_json_val *obj, const char *name,
                       size_t name_len, fm_json_val *out)
{
    fm_json_iter it;
    fm_json_val n, v;

    if (obj->type != FM_JSON_OBJECT)
        return 0;
    fm_json_iter_init(&it, obj);
    while (fm_json_iter_next(&it, &n, &v)) {
        if (fm_json_string_eq(&n, name, name_len)) {
            if (out != NULL)
                *out = v;
            return 1;
        }
    }
    return 0;
}

int fm_json_index_get(const fm_json_index *index, const fm_json_val *root,
                      const char *name, size_t name_len, fm_json_val *out)
{
    if (!index->complete)
        return fm_json_object_get(root, name, name_len, out);
    for (size_t i = 0; i < index->n; i++) {
        if (fm_json_string_eq(&index->m[i].name, name, name_len)) {
            if (out != NULL)
                *out = index->m[i].val;
            return 1;
        }
    }
    return 0;
}

size_t fm_json_count(const fm_json_val *container)
{
    fm_json_iter it;
    size_t n = 0;

    fm_json_iter_init(&it, container);
    while (fm_json_iter_next(&it, NULL, NULL))
        n++;
    return n;
}

int fm_json_string_decode(const fm_json_val *s, char *out, size_t cap,
                          size_t *out_len, int *ctrl)
{
    fm_json_reader r;
    size_t n = 0;
    int c, has_ctrl = 0;

    if (string_plain(s)) {
        /* Raw control characters never pass validation; DEL may. */
        n = s->len - 2;
        if (n <= cap && out != NULL)
            memcpy(out, s->p + 1, n);
        if (n < cap)
            out[n] = '\0';
        if (out_len != NULL)
            *out_len = n;
        if (ctrl != NULL)
            *ctrl = memchr(s->p + 1, 0x7f, n) != NULL;
        return n <= cap ? 0 : -1;
    }

    reader_init(&r, s->p, s->len);
    while ((c = reader_next(&r)) >= 0) {
        if (c < 0x20 || c == 0x7f)
            has_ctrl = 1;
        if (n < cap)
            out[n] = (char)c;
        n++;
    }
    if (n < cap)
        out[n] = '\0';
    if (out_len != NULL)
        *out_len = n;
    if (ctrl != NULL)
        *ctrl = has_ctrl;
    return n <= cap ? 0 : -1;
}

size_t fm_json_string_len(const fm_json_val *s)
{
    fm_json_reader r;
    size_t n = 0;

    if (string_plain(s))
        return s->len - 2;

    reader_init(&r, s->p, s->len);
    while (reader_next(&r) >= 0)
        n++;
    return n;
}

int fm_json_string_eq(const fm_json_val *s, const char *text, size_t n)
{
    fm_json_reader r;
    size_t i = 0;
    int c;

    if (s->len - 2 < n)
        return 0;   /* an escape only ever shortens the text */
    if (string_plain(s))
        return s->len - 2 == n && memcmp(s->p + 1, text, n) == 0;

    reader_init(&r, s->p, s->len);
    while ((c = reader_next(&r)) >= 0)
        if (i >= n || (unsigned char)text[i++] != c)
            return 0;
    return i == n;
}

int fm_json_int64(const fm_json_val *num, int64_t min, int64_t max,
                  int64_t *out)
{
    const char *p = num->p, *end = num->p + num->len;
    int neg;
    uint64_t u = 0, limit;
    int64_t v;

    if (num->type != FM_JSON_NUMBER || p == end)
        return -1;
    neg = *p == '-';
    p += neg;
    if (p == end)
        return -1;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; p < end; p++) {
        unsigned d;

        if (!is_digit((unsigned char)*p))
            return -1;      /* a fraction or an exponent */
        d = (unsigned)(*p - '0');
        if (u > (limit - d) / 10)
            return -1;
        u = u * 10 + d;
    }
    /* -(u - 1) - 1 reaches INT64_MIN without overflowing. */
    v = neg && u > 0 ? -(int64_t)(u - 1) - 1 : (int64_t)u;
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}
