/* fm_error.c -- wire names of the contract's error codes. */
#include <stdarg.h>
#include <stdio.h>

#include "fm_error.h"

static const char *const names[FM_E_COUNT] = {
    [FM_E_OK] = "ok",
    [FM_E_BAD_FRAME] = "bad_frame",
    [FM_E_FRAME_TOO_LARGE] = "frame_too_large",
    [FM_E_BAD_JSON] = "bad_json",
    [FM_E_BAD_REQUEST] = "bad_request",
    [FM_E_UNKNOWN_OP] = "unknown_op",
    [FM_E_REDIS_UNAVAILABLE] = "redis_unavailable",
    [FM_E_TIMEOUT] = "timeout",
    [FM_E_REDIS_ERROR] = "redis_error",
    [FM_E_TOO_MANY_REQUESTS] = "too_many_requests",
    [FM_E_TOO_MANY_CLIENTS] = "too_many_clients",
    [FM_E_FORBIDDEN] = "forbidden",
    [FM_E_SHUTTING_DOWN] = "shutting_down",
    [FM_E_INTERNAL] = "internal",
};

const char *fm_errcode_name(fm_errcode code)
{
    if ((int)code < 0 || code >= FM_E_COUNT)
        return names[FM_E_INTERNAL];
    return names[code];
}

int fm_proto_fail(fm_proto_err *err, fm_errcode code, const char *fmt, ...)
{
    va_list ap;

    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -1;
}
