/* meminfo.h -- what `stats` with redis_info reports of Redis's memory: the
 * fields of INFO memory it needs, and whether the eviction policy can take
 * lock keys away (docs/METRICS.md explains which policies do, and why). */
#ifndef FM_MEMINFO_H
#define FM_MEMINFO_H

#include <stddef.h>
#include <stdint.h>

typedef struct fm_meminfo {
    int64_t used_memory;
    int64_t maxmemory;
    char policy[32];
} fm_meminfo;

/* Reads INFO memory's text. 0, or -1 when a field is missing or malformed. */
int fm_meminfo_parse(const char *text, size_t len, fm_meminfo *mi);
/* A sentence for operators when the policy can evict lock keys (written
 * into out, cap bytes), or NULL when it cannot (noeviction). */
const char *fm_meminfo_warning(const fm_meminfo *mi, char *out, size_t cap);

#endif
