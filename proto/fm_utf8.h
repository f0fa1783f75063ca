/* fm_utf8.h -- UTF-8 well-formedness, shared by the JSON validator and the
 * JSON string writer (which must never emit invalid UTF-8, whatever bytes a
 * Redis error message or a foreign pub/sub payload holds). */
#ifndef FM_UTF8_H
#define FM_UTF8_H

#include <stddef.h>

/* Length (2 to 4) of the well-formed multi-byte UTF-8 sequence at p, of
 * which avail bytes are readable, or 0. Rejects overlong forms, UTF-16
 * surrogates, code points above U+10FFFF, truncation and stray continuation
 * bytes (the table of RFC 3629, section 4). ASCII bytes also give 0: callers
 * handle them first. */
size_t fm_utf8_seq_len(const unsigned char *p, size_t avail);

#endif
