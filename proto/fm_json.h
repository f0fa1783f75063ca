/* fm_json.h -- strict JSON (RFC 8259) validation and navigation by byte span.
 *
 * cJSON is neither strict (it takes raw control characters, bad UTF-8, leading
 * zeros, duplicate names, and truncates at an escaped NUL) nor exact (numbers
 * become doubles). So every body is validated here first, in one pass that
 * checks grammar, UTF-8, duplicate member names and nesting depth; after that
 * the text is navigated in place. (The client, reading the daemon's replies
 * of text the daemon validated, runs the same pass without the UTF-8 and
 * duplicate checks: fm_json_scan.) A value is a span of the original text,
 * which is what lets ids and cached executions travel with their exact bytes.
 *
 * The navigation functions assume text that fm_json_validate() or
 * fm_json_scan() accepted. */
#ifndef FM_JSON_H
#define FM_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Deeper nesting is refused as bad JSON; it bounds every reader's work. */
#define FM_JSON_MAX_DEPTH 512

typedef enum fm_json_type {
    FM_JSON_NULL,
    FM_JSON_FALSE,
    FM_JSON_TRUE,
    FM_JSON_NUMBER,
    FM_JSON_STRING,
    FM_JSON_ARRAY,
    FM_JSON_OBJECT
} fm_json_type;

/* A value: its type and the exact text of it, p[0..len). For a string the
 * span includes the quotes. */
typedef struct fm_json_val {
    fm_json_type type;
    const char *p;
    size_t len;
} fm_json_val;

/* Validates text[0..len) as exactly one JSON value surrounded by optional
 * whitespace. On success returns 0 and sets *root. On failure returns -1 and
 * sets *why to a static message ("duplicate member name", "invalid UTF-8",
 * "nesting deeper than 512 levels", ...) and *at to the byte offset of the
 * problem. why and at may be NULL. Work is O(len log len) at worst, including
 * duplicate detection in objects with many members. The one failure that is
 * not the text's fault has why = "out of memory" (the scratch array of member
 * names could not grow). */
int fm_json_validate(const char *text, size_t len, fm_json_val *root,
                     const char **why, size_t *at);

/* A member of an object: its name (a string value) and its value. */
typedef struct fm_json_pair {
    fm_json_val name, val;
} fm_json_pair;

/* The members of a root object as the validator passed them: looking a
 * request's fields up in it costs no second scan of the text, which matters
 * when a field follows a large value (a cached execution). An object with
 * more members than fit is looked up by scanning, as any other object. */
#define FM_JSON_INDEX_MAX 16

typedef struct fm_json_index {
    size_t n;
    int complete;               /* every member of the root is in m[] */
    fm_json_pair m[FM_JSON_INDEX_MAX];
} fm_json_index;

/* The members of one object-valued member of the root, noted by
 * fm_json_scan() as it passes them: a reply's executions are found without
 * walking the reply a second time. The first root member of that name
 * counts, as for a lookup. */
typedef struct fm_json_members {
    const char *name;           /* set by the caller: the root member */
    size_t name_len;
    fm_json_pair *m;            /* set by the caller: room for cap members */
    size_t cap;
    int found;                  /* the root has it, and it is an object */
    size_t n;                   /* its members; m[] holds the first cap */
} fm_json_members;

/* fm_json_validate() without its checks of UTF-8 and of duplicate member
 * names, for text that was validated before it got here: replies of
 * fmredisd, which carry what it validated. Grammar, escapes and nesting
 * are still checked, so the navigation functions are as safe on what it
 * accepts; invalid UTF-8 passes as bytes, and a repeated name reads as its
 * first occurrence. It allocates nothing, so it never fails for memory.
 * It fills *index (as fm_json_validate_indexed() does) and *members when
 * they are not NULL; on failure their contents are unspecified. */
int fm_json_scan(const char *text, size_t len, fm_json_val *root, fm_json_index *index,
                 fm_json_members *members, const char **why, size_t *at);

/* fm_json_validate() that also fills *index when the root is an object
 * (index->complete is 0 for any other root). */
int fm_json_validate_indexed(const char *text, size_t len, fm_json_val *root,
                             fm_json_index *index, const char **why,
                             size_t *at);

/* fm_json_object_get() on the root that index was made with. */
int fm_json_index_get(const fm_json_index *index, const fm_json_val *root,
                      const char *name, size_t name_len, fm_json_val *out);

/* Iterates the members of an object or the elements of an array. */
typedef struct fm_json_iter {
    const char *p;
    const char *end;
    int object;
} fm_json_iter;

void fm_json_iter_init(fm_json_iter *it, const fm_json_val *container);
/* Returns 1 and the next element (for objects also its name, a string value
 * with quotes; name may be NULL), or 0 at the end. */
int fm_json_iter_next(fm_json_iter *it, fm_json_val *name, fm_json_val *val);

/* Finds the member whose decoded name equals name[0..name_len) exactly
 * (case-sensitive, escapes decoded). Returns 1 and *out, or 0. */
int fm_json_object_get(const fm_json_val *obj, const char *name,
                       size_t name_len, fm_json_val *out);

/* Number of elements of an array or members of an object. */
size_t fm_json_count(const fm_json_val *container);

/* Decodes a string value into out (not NUL-terminated unless room remains:
 * out[*out_len] = '\0' whenever *out_len < cap). Returns 0, or -1 when the
 * decoded text would exceed cap bytes (then *out_len is the full decoded
 * length). *ctrl is set to 1 when the decoded text holds a control character
 * (below 0x20, or 0x7f), escaped or not; ctrl may be NULL. With cap 0 (out
 * may then be NULL) it only measures: *out_len and *ctrl, nothing written. */
int fm_json_string_decode(const fm_json_val *s, char *out, size_t cap,
                          size_t *out_len, int *ctrl);

/* Decoded length of a string value, without decoding it into memory. */
size_t fm_json_string_len(const fm_json_val *s);

/* Whether a string value decodes to exactly text[0..n). */
int fm_json_string_eq(const fm_json_val *s, const char *text, size_t n);

/* Parses a number value that is an integer literal: no fraction, no
 * exponent, and within [min, max]. Returns 0 and *out, or -1. */
int fm_json_int64(const fm_json_val *num, int64_t min, int64_t max,
                  int64_t *out);

#endif
