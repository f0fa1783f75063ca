/* util.c -- clocks, samples, /proc readings and the cached execution. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int bench_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* What an n8n-style execution looks like in the cache: ids, status, times,
 * and per-node run data; nodes are added until the text passes 2 KB. */
size_t bench_execution_json(char *out, size_t cap, const char *id, size_t *seq_at)
{
    static const char head[] =
        "{\"id\":\"%s\",\"workflowId\":\"wf-5b1d0c2e9a7f4e13\",\"mode\":\"trigger\","
        "\"status\":\"running\",\"seq\":\"00000000\",\"retryOf\":null,\"finished\":false,"
        "\"startedAt\":\"2025-11-26T00:00:00.000Z\",\"waitTill\":null,"
        "\"data\":{\"resultData\":{\"runData\":{";
    static const char node[] =
        "%s\"node-%d\":[{\"startTime\":1764115200%03d,\"executionTime\":%d,"
        "\"executionStatus\":\"success\",\"source\":[{\"previousNode\":\"node-%d\"}],"
        "\"data\":{\"main\":[[{\"json\":{\"orderId\":%d,\"customer\":\"c-%05d\","
        "\"total\":%d.%02d,\"currency\":\"EUR\",\"note\":\"caf\\u00e9 \\\"deluxe\\\"\"}}]]}}]";
    static const char tail[] = "},\"lastNodeExecuted\":\"node-%d\"}}}";
    size_t len;
    int n, i;

    n = snprintf(out, cap, head, id);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    len = (size_t)n;
    for (i = 0; len < 1900; i++) {
        n = snprintf(out + len, cap - len, node, i ? "," : "", i, i * 7, 3 + i, i ? i - 1 : 0,
                     4000 + i, 17 * i, 100 + 13 * i, i % 100);
        if (n < 0 || (size_t)n >= cap - len)
            return 0;
        len += (size_t)n;
    }
    n = snprintf(out + len, cap - len, tail, i - 1);
    if (n < 0 || (size_t)n >= cap - len)
        return 0;
    if (seq_at != NULL)
        *seq_at = (size_t)(strstr(out, "\"seq\":\"") - out) + 7;
    return len + (size_t)n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

void bench_sort_samples(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
}


/* Nearest rank. */
double bench_percentile(const uint64_t *sorted, size_t n, double q)
{
    size_t rank;

    if (n == 0)
        return 0;
    rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1];
}

int bench_sample(bench_worker *w, uint64_t ns)
{
    if (w->nlat == w->caplat) {
        size_t cap = w->caplat ? 2 * w->caplat : 4096;
        uint64_t *p = realloc(w->lat, cap * sizeof(*p));

        if (p == NULL)
            return -1;
        w->lat = p;
        w->caplat = cap;
    }
    w->lat[w->nlat++] = ns;
    return 0;
}

/* Fields 14 and 15 of /proc/<pid>/stat, counted after the ')' that ends
 * the command name (which may itself hold spaces and parentheses). */
double bench_proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long ut, st;
    FILE *f;
    size_t n;
    char *p;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double bench_thread_cpu(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_THREAD, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

long bench_proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}
