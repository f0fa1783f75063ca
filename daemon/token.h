/* token.h -- lock tokens: 128 bits from getrandom(2), as 32 hex digits,
 * and the lock values that carry them in Redis. */
#ifndef FM_TOKEN_H
#define FM_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define FM_TOKEN_LEN 32
#define FM_LOCKVAL_MAX 96      /* {"owner":"<token>","expiresAt":<int64>} fits */

/* Writes FM_TOKEN_LEN hex digits and a NUL. Returns 0, or -1 when the
 * kernel gave no randomness. */
int fm_token_new(char out[FM_TOKEN_LEN + 1]);

/* Writes the lock value of token in format (fm_lockval) for a lock of ttl
 * ms taken now, with a NUL; returns its length. */
size_t fm_token_value(int format, const char *token, int64_t ttl, char out[FM_LOCKVAL_MAX]);

#endif
