/* meminfo.c -- see meminfo.h. Lock keys are SET with PX, so every one has
 * a TTL; fence counters are INCRed and have none. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meminfo.h"

/* The value of "name:value\r\n" at the start of a line, into out. */
static int field(const char *text, size_t len, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name), i = 0, v;

    while (i + n < len) {
        if ((i == 0 || text[i - 1] == '\n') && memcmp(text + i, name, n) == 0 &&
            text[i + n] == ':') {
            i += n + 1;
            for (v = 0; i < len && text[i] != '\r' && text[i] != '\n'; i++) {
                if (v + 1 >= cap)
                    return -1;
                out[v++] = text[i];
            }
            out[v] = '\0';
            return v > 0 ? 0 : -1;
        }
        i++;
    }
    return -1;
}

static int int_field(const char *text, size_t len, const char *name, int64_t *out)
{
    char buf[32], *end;
    long long v;

    if (field(text, len, name, buf, sizeof(buf)) != 0)
        return -1;
    v = strtoll(buf, &end, 10);
    if (*end != '\0' || v < 0)
        return -1;
    *out = v;
    return 0;
}

int fm_meminfo_parse(const char *text, size_t len, fm_meminfo *mi)
{
    if (int_field(text, len, "used_memory", &mi->used_memory) != 0 ||
        int_field(text, len, "maxmemory", &mi->maxmemory) != 0 ||
        field(text, len, "maxmemory_policy", mi->policy, sizeof(mi->policy)) != 0)
        return -1;
    return 0;
}

const char *fm_meminfo_warning(const fm_meminfo *mi, char *out, size_t cap)
{
    const char *what;
    const char *when = mi->maxmemory == 0
                           ? " Not in effect while maxmemory is 0 (no limit), but it starts "
                             "as soon as a limit is set."
                           : "";

    if (strcmp(mi->policy, "noeviction") == 0)
        return NULL;
    if (strncmp(mi->policy, "volatile-", 9) == 0)
        what = "evicts keys that have a TTL, and every lock key has one: Redis can delete a "
               "held lock before its TTL ends, and another client then acquires it.";
    else if (strncmp(mi->policy, "allkeys-", 8) == 0)
        what = "evicts any key: Redis can delete a held lock before its TTL ends (another "
               "client then acquires it) and a fence counter (fences then start again).";
    else
        what = "is not noeviction: Redis may evict lock keys.";
    snprintf(out, cap, "maxmemory_policy %s %s Use noeviction.%s", mi->policy, what, when);
    return out;
}
