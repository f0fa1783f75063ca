/* fence.c -- the slot table behind fence counter names (see fence.h).
 *
 * Building the table tries short tags in order until every slot has one:
 * about 160,000 CRC16s of ~20 bytes (a few ms), once per prefix. When the
 * prefix holds a hash tag of its own, every name lands in the prefix's slot,
 * as every lock key does, and one tag serves. */
#include <stdlib.h>
#include <string.h>

#include "fence.h"
#include "slot.h"

#define FENCE_INFIX "\001fence:{"

struct fm_fence {
    char *prefix;                       /* the table is for this prefix */
    char (*tags)[FM_FENCE_TAG_MAX];     /* per slot, "" when none */
};

static size_t counter_name(const char *prefix, const char *tag, char *out)
{
    size_t n = strlen(prefix), t = strlen(tag);

    memcpy(out, prefix, n);
    memcpy(out + n, FENCE_INFIX, sizeof(FENCE_INFIX) - 1);
    n += sizeof(FENCE_INFIX) - 1;
    memcpy(out + n, tag, t);
    n += t;
    out[n++] = '}';
    out[n] = '\0';
    return n;
}

static int build(fm_fence *f, const char *prefix)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char name[FM_FENCE_KEY_MAX + 1], tag[FM_FENCE_TAG_MAX];
    size_t filled = 0;

    free(f->tags);
    free(f->prefix);
    f->tags = calloc(FM_SLOTS, sizeof(*f->tags));
    f->prefix = strdup(prefix);
    if (f->tags == NULL || f->prefix == NULL)
        return -1;
    for (unsigned long n = 0; n < 36UL * 36 * 36 * 36 && filled < FM_SLOTS; n++) {
        unsigned long v = n;
        int i = 0;
        unsigned slot;

        do {
            tag[i++] = digits[v % 36];
            v /= 36;
        } while (v != 0);
        tag[i] = '\0';
        slot = fm_slot(name, counter_name(prefix, tag, name));
        if (f->tags[slot][0] == '\0') {
            memcpy(f->tags[slot], tag, (size_t)i + 1);
            filled++;
        }
    }
    return 0;
}

fm_fence *fm_fence_create(void)
{
    return calloc(1, sizeof(fm_fence));
}

void fm_fence_free(fm_fence *f)
{
    if (f == NULL)
        return;
    free(f->tags);
    free(f->prefix);
    free(f);
}

size_t fm_fence_key(fm_fence *f, const char *prefix, const char *rkey, size_t rlen,
                    char *out)
{
    unsigned slot = fm_slot(rkey, rlen);

    if ((f->prefix == NULL || strcmp(f->prefix, prefix) != 0) && build(f, prefix) != 0)
        return 0;
    /* Unreachable when the table is whole: a lock key's slot always has a
     * counter, since the counter names share the prefix's hash tag. */
    if (f->tags[slot][0] == '\0')
        return 0;
    return counter_name(prefix, f->tags[slot], out);
}
