/* fm_error.h -- the contract's error codes, shared by daemon and client. */
#ifndef FM_ERROR_H
#define FM_ERROR_H

#include <stddef.h>

typedef enum fm_errcode {
    FM_E_OK = 0,
    FM_E_BAD_FRAME,
    FM_E_FRAME_TOO_LARGE,
    FM_E_BAD_JSON,
    FM_E_BAD_REQUEST,
    FM_E_UNKNOWN_OP,
    FM_E_REDIS_UNAVAILABLE,
    FM_E_TIMEOUT,
    FM_E_REDIS_ERROR,
    FM_E_TOO_MANY_REQUESTS,
    FM_E_TOO_MANY_CLIENTS,
    FM_E_FORBIDDEN,
    FM_E_SHUTTING_DOWN,
    FM_E_INTERNAL,
    FM_E_COUNT
} fm_errcode;

/* The wire name of a code ("bad_json", ...); "internal" for out-of-range. */
const char *fm_errcode_name(fm_errcode code);

/* A code and a human message, as validation helpers report them. */
typedef struct fm_proto_err {
    fm_errcode code;
    char msg[192];
} fm_proto_err;

/* Fills err and returns -1, so validators can `return fm_proto_fail(...)`. */
int fm_proto_fail(fm_proto_err *err, fm_errcode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
