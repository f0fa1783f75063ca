/* token.h -- lock tokens: 128 bits from getrandom(2), as 32 hex digits. */
#ifndef FM_TOKEN_H
#define FM_TOKEN_H

#define FM_TOKEN_LEN 32

/* Writes FM_TOKEN_LEN hex digits and a NUL. Returns 0, or -1 when the
 * kernel gave no randomness. */
int fm_token_new(char out[FM_TOKEN_LEN + 1]);

#endif
