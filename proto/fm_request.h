/* fm_request.h -- request envelope parsing and field validation, applying the
 * contract's rules (docs/PROTOCOL.md). Each helper returns 0 on success or -1
 * with err set to the contract's code (bad_json, bad_request, unknown_op is
 * left to the caller) and a message naming the field. */
#ifndef FM_REQUEST_H
#define FM_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "fm_error.h"
#include "fm_json.h"
#include "fm_wire.h"

#define FM_INT_ID_MAX 9007199254740991LL  /* 2^53 - 1 */
#define FM_MS_MAX 2147483647LL            /* 2^31 - 1 */

typedef struct fm_request {
    fm_json_val root;   /* the object */
    fm_json_index index;    /* its members */
    fm_json_val op;     /* a string value */
    int has_id;
    fm_json_val id;     /* exact text, to echo in the reply */
} fm_request;

/* Validates body as one strict JSON object and reads `id` and `op`.
 * Order matters for what the client gets back:
 *   not strict JSON / not an object      -> bad_json, has_id = 0
 *   id present but unusable              -> bad_request, has_id = 0
 *   op missing, null, not a non-empty string -> bad_request, id kept
 * On -1, req->has_id/req->id still say whether the reply may carry the id. */
int fm_request_parse(const char *body, size_t len, fm_request *req,
                     fm_proto_err *err);

/* Whether req's op is the given name. */
int fm_request_op_is(const fm_request *req, const char *name);

/* A string field with the key rules: non-empty, at most max bytes decoded,
 * no control characters (raw or escaped). Decodes into out, which must hold
 * max + 1 bytes; the result is NUL-terminated and *len set (len may be NULL).
 * Missing: -1 (bad_request) when required, else 0 with *len = 0 and *found = 0.
 * Present but null, wrong type, empty, too long or with control characters:
 * -1 (bad_request). found may be NULL. */
int fm_request_string(const fm_request *req, const char *name, int required,
                      size_t max, char *out, size_t *len, int *found,
                      fm_proto_err *err);

/* The same rules applied to a value already in hand (array elements, the
 * `id` of an execution); `what` names it in the message. */
int fm_request_check_string(const fm_json_val *v, const char *what, size_t max,
                            char *out, size_t *len, fm_proto_err *err);

/* An optional integer field within [min, max]; absent leaves *out as the
 * caller's default. Null, non-integer (1.0, 1e3), out of range: bad_request. */
int fm_request_int(const fm_request *req, const char *name, int64_t min,
                   int64_t max, int64_t *out, fm_proto_err *err);

/* An optional bool field; absent leaves *out. */
int fm_request_bool(const fm_request *req, const char *name, int *out,
                    fm_proto_err *err);

/* An optional string field that must be one of the NULL-terminated list of
 * choices; *out is the index of the choice, absent leaves *out. */
int fm_request_enum(const fm_request *req, const char *name,
                    const char *const *choices, int *out, fm_proto_err *err);

/* A required array of key-rule strings with at most max_count elements (an
 * empty array is valid). Sets *arr to the array value and *count; every
 * element is checked here, so callers may decode them without re-checking. */
int fm_request_string_array(const fm_request *req, const char *name,
                            size_t max_count, size_t max_len, fm_json_val *arr,
                            size_t *count, fm_proto_err *err);

/* A required object field; *out is its value. */
int fm_request_object(const fm_request *req, const char *name,
                      fm_json_val *out, fm_proto_err *err);

#endif
