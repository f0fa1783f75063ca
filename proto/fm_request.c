/* fm_request.c -- the request envelope and the contract's field rules.
 *
 * Every helper looks its member up by exact (case-sensitive, decoded) name in
 * the validated body and says what is wrong in the contract's words, naming
 * the field. Null is never taken as "absent": a field that is present must
 * have its type, so a client that sends `"ttl": null` learns of it instead
 * of silently getting the default. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fm_request.h"

static int lookup(const fm_request *req, const char *name, fm_json_val *out)
{
    return fm_json_index_get(&req->index, &req->root, name, strlen(name), out);
}

static int fail_string(fm_proto_err *err, const char *what, size_t max)
{
    return fm_proto_fail(err, FM_E_BAD_REQUEST,
                         "%s: must be a non-empty string of at most %zu bytes "
                         "without control characters", what, max);
}

static int fail_required(fm_proto_err *err, const char *what)
{
    return fm_proto_fail(err, FM_E_BAD_REQUEST, "%s: required", what);
}

/* Whether v is a string that follows the key rules for max bytes. */
static int string_ok(const fm_json_val *v, size_t max)
{
    size_t n;
    int ctrl;

    if (v->type != FM_JSON_STRING)
        return 0;
    fm_json_string_decode(v, NULL, 0, &n, &ctrl);
    return n > 0 && n <= max && !ctrl;
}

int fm_request_parse(const char *body, size_t len, fm_request *req,
                     fm_proto_err *err)
{
    const char *why;
    size_t at;
    fm_json_val id;
    int64_t n;

    req->has_id = 0;
    if (fm_json_validate_indexed(body, len, &req->root, &req->index, &why,
                                 &at) != 0) {
        if (strcmp(why, "out of memory") == 0)
            return fm_proto_fail(err, FM_E_INTERNAL,
                                 "out of memory validating the request");
        return fm_proto_fail(err, FM_E_BAD_JSON, "invalid JSON at byte %zu: %s",
                             at, why);
    }
    if (req->root.type != FM_JSON_OBJECT)
        return fm_proto_fail(err, FM_E_BAD_JSON,
                             "the body must be one JSON object");

    if (lookup(req, "id", &id)) {
        int usable = id.type == FM_JSON_NUMBER
            ? fm_json_int64(&id, -FM_INT_ID_MAX, FM_INT_ID_MAX, &n) == 0
            : id.type == FM_JSON_STRING &&
              fm_json_string_len(&id) <= FM_ID_STRING_MAX;

        if (!usable)
            return fm_proto_fail(err, FM_E_BAD_REQUEST,
                                 "id: must be an integer from %lld to %lld "
                                 "or a string of at most %d bytes",
                                 -FM_INT_ID_MAX, FM_INT_ID_MAX,
                                 FM_ID_STRING_MAX);
        req->has_id = 1;
        req->id = id;
    }

    if (!lookup(req, "op", &req->op))
        return fail_required(err, "op");
    if (req->op.type != FM_JSON_STRING || fm_json_string_len(&req->op) == 0)
        return fm_proto_fail(err, FM_E_BAD_REQUEST,
                             "op: must be a non-empty string");
    return 0;
}

int fm_request_op_is(const fm_request *req, const char *name)
{
    return fm_json_string_eq(&req->op, name, strlen(name));
}

int fm_request_string(const fm_request *req, const char *name, int required,
                      size_t max, char *out, size_t *len, int *found,
                      fm_proto_err *err)
{
    fm_json_val v;

    if (found != NULL)
        *found = 0;
    if (len != NULL)
        *len = 0;
    if (!lookup(req, name, &v)) {
        out[0] = '\0';
        return required ? fail_required(err, name) : 0;
    }
    if (found != NULL)
        *found = 1;
    return fm_request_check_string(&v, name, max, out, len, err);
}

int fm_request_check_string(const fm_json_val *v, const char *what, size_t max,
                            char *out, size_t *len, fm_proto_err *err)
{
    size_t n;

    if (!string_ok(v, max))
        return fail_string(err, what, max);
    fm_json_string_decode(v, out, max + 1, &n, NULL);
    if (len != NULL)
        *len = n;
    return 0;
}

int fm_request_int(const fm_request *req, const char *name, int64_t min,
                   int64_t max, int64_t *out, fm_proto_err *err)
{
    fm_json_val v;

    if (!lookup(req, name, &v))
        return 0;
    if (fm_json_int64(&v, min, max, out) != 0)
        return fm_proto_fail(err, FM_E_BAD_REQUEST,
                             "%s: must be an integer from %" PRId64 " to %"
                             PRId64, name, min, max);
    return 0;
}

int fm_request_bool(const fm_request *req, const char *name, int *out,
                    fm_proto_err *err)
{
    fm_json_val v;

    if (!lookup(req, name, &v))
        return 0;
    if (v.type != FM_JSON_TRUE && v.type != FM_JSON_FALSE)
        return fm_proto_fail(err, FM_E_BAD_REQUEST,
                             "%s: must be true or false", name);
    *out = v.type == FM_JSON_TRUE;
    return 0;
}

int fm_request_enum(const fm_request *req, const char *name,
                    const char *const *choices, int *out, fm_proto_err *err)
{
    fm_json_val v;
    char list[128];
    size_t used = 0;

    if (!lookup(req, name, &v))
        return 0;
    for (int i = 0; choices[i] != NULL; i++) {
        if (v.type == FM_JSON_STRING &&
            fm_json_string_eq(&v, choices[i], strlen(choices[i]))) {
            *out = i;
            return 0;
        }
    }
    list[0] = '\0';
    for (int i = 0; choices[i] != NULL && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s\"%s\"",
                         i == 0 ? "" : choices[i + 1] ? ", " : " or ",
                         choices[i]);

        if (w < 0)
            break;
        used += (size_t)w;
    }
    return fm_proto_fail(err, FM_E_BAD_REQUEST, "%s: must be %s", name, list);
}

int fm_request_string_array(const fm_request *req, const char *name,
                            size_t max_count, size_t max_len, fm_json_val *arr,
                            size_t *count, fm_proto_err *err)
{
    fm_json_iter it;
    fm_json_val v;
    size_t n = 0;

    if (!lookup(req, name, arr))
        return fail_required(err, name);
    if (arr->type != FM_JSON_ARRAY)
        return fm_proto_fail(err, FM_E_BAD_REQUEST,
                             "%s: must be an array of at most %zu strings",
                             name, max_count);
    fm_json_iter_init(&it, arr);
    while (fm_json_iter_next(&it, NULL, &v)) {
        if (n == max_count)
            return fm_proto_fail(err, FM_E_BAD_REQUEST,
                                 "%s: must be an array of at most %zu strings",
                                 name, max_count);
        if (!string_ok(&v, max_len)) {
            char what[64];

            snprintf(what, sizeof(what), "%s[%zu]", name, n);
            return fail_string(err, what, max_len);
        }
        n++;
    }
    *count = n;
    return 0;
}

int fm_request_object(const fm_request *req, const char *name,
                      fm_json_val *out, fm_proto_err *err)
{
    if (!lookup(req, name, out))
        return fail_required(err, name);
    if (out->type != FM_JSON_OBJECT)
        return fm_proto_fail(err, FM_E_BAD_REQUEST, "%s: must be an object",
                             name);
    return 0;
}
