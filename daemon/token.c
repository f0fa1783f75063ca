/* token.c -- random tokens, drawn from a pool so that most acquires cost no
 * system call, and the lock values that carry them. getrandom(2) only
 * blocks before the kernel's pool is first initialised, long before a
 * daemon of ours runs. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "config.h"
#include "token.h"

_Static_assert(sizeof("{\"owner\":\"\",\"expiresAt\":-9223372036854775808}") + FM_TOKEN_LEN
                   <= FM_LOCKVAL_MAX, "a JSON lock value fits FM_LOCKVAL_MAX");

static unsigned char pool[512];
static size_t pool_left;

int fm_token_new(char out[FM_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *r;

    if (pool_left < FM_TOKEN_LEN / 2) {
        if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool))
            return -1;
        pool_left = sizeof(pool);
    }
    r = pool + sizeof(pool) - pool_left;
    for (int i = 0; i < FM_TOKEN_LEN / 2; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    /* Used randomness is wiped so that it cannot reappear in another form. */
    memset((void *)r, 0, FM_TOKEN_LEN / 2);
    pool_left -= FM_TOKEN_LEN / 2;
    out[FM_TOKEN_LEN] = '\0';
    return 0;
}

size_t fm_token_value(int format, const char *token, int64_t ttl, char out[FM_LOCKVAL_MAX])
{
    struct timespec now;
    int64_t ms;

    if (format == FM_LOCKVAL_TOKEN) {
        memcpy(out, token, FM_TOKEN_LEN + 1);
        return FM_TOKEN_LEN;
    }
    /* expiresAt is wall-clock time, as the package's Date.now() + ttl; it
     * says when the lock was meant to expire when it was taken (an
     * extension moves the TTL, not this field, as the package's own extend
     * does). A token is hex, so it needs no escaping. */
    clock_gettime(CLOCK_REALTIME, &now);
    ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + ttl;
    return (size_t)snprintf(out, FM_LOCKVAL_MAX, "{\"owner\":\"%s\",\"expiresAt\":%lld}", token,
                            (long long)ms);
}
