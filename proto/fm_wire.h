/* fm_wire.h -- the version and the wire's constants, in one place.
 *
 * The daemon, the library and the CLI take these from here, and the
 * Makefile reads the version and the library's soname from this file (as
 * hiredis reads its own from hiredis.h). It is installed beside fmredis.h
 * and holds nothing but macros. */
#ifndef FM_WIRE_CONSTANTS_H
#define FM_WIRE_CONSTANTS_H

#define FMREDIS_VERSION_MAJOR 0
#define FMREDIS_VERSION_MINOR 1
#define FMREDIS_VERSION_PATCH 0
/* The library's ABI; bumped whenever a change breaks binaries built
 * against an older libfmredis. */
#define FMREDIS_SOVERSION 0

#define FM_WIRE_STR_(x) #x
#define FM_WIRE_STR(x) FM_WIRE_STR_(x)
#define FMREDIS_VERSION                                                    \
    FM_WIRE_STR(FMREDIS_VERSION_MAJOR) "." FM_WIRE_STR(FMREDIS_VERSION_MINOR) \
    "." FM_WIRE_STR(FMREDIS_VERSION_PATCH)
/* One number that compares: 0x000100 for 0.1.0. */
#define FMREDIS_VERSION_HEX                                               \
    ((FMREDIS_VERSION_MAJOR << 16) | (FMREDIS_VERSION_MINOR << 8) | FMREDIS_VERSION_PATCH)

/* What `hello` answers as "protocol" (PROTOCOL.md, section 3). */
#define FM_PROTOCOL_VERSION 1

/* A frame: a 4-byte big-endian length, then that many bytes of JSON. */
#define FM_FRAME_HEADER_LEN 4

/* Limits of the contract, in bytes. */
#define FM_KEY_MAX 512          /* keys, channels, execution ids, tokens */
#define FM_NAME_MAX 128         /* group, client_name */
#define FM_ID_STRING_MAX 256    /* a request id given as a string */
#define FM_PREFIX_MAX 256       /* lock_key_prefix, cache_key_prefix */

#endif
