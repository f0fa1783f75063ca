/* keys.h -- Redis key names: a configured prefix, then the client's name
 * (lock keys, cache keys), as the Node package writes them. */
#ifndef FM_KEYS_H
#define FM_KEYS_H

#include <stddef.h>
#include <string.h>

#include "fm_wire.h"

/* The longest key name: a prefix and a name of the contract's limits. */
#define FM_RKEY_MAX (FM_PREFIX_MAX + FM_KEY_MAX)

/* Writes prefix + name into out (FM_RKEY_MAX + 1 bytes), NUL-terminated,
 * and returns its length. */
static inline size_t fm_key_make(const char *prefix, const char *name, size_t len, char *out)
{
    size_t plen = strlen(prefix);

    memcpy(out, prefix, plen);
    memcpy(out + plen, name, len);
    out[plen + len] = '\0';
    return plen + len;
}

#endif
