/* log.c -- stderr logging. Each line is written with one write(2), so lines
 * from a daemon and its children never interleave mid-line. No timestamps:
 * journald and test harnesses add their own. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static fm_log_level current = FM_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void fm_log_set_level(fm_log_level level)
{
    current = level;
}

int fm_log_enabled(fm_log_level level)
{
    return level <= current;
}

/* One line: prefix, message, and a note (or ""), in one write(2). */
static void vlog(fm_log_level level, const char *note, const char *fmt, va_list ap)
{
    char line[1024];
    int n, m;

    n = snprintf(line, sizeof(line), "fmredisd[%d]: %s: ", (int)getpid(),
                 level_names[level]);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    n = m < 0 ? n : n + m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    m = snprintf(line + n, sizeof(line) - (size_t)n - 1, "%s", note);
    n += m < (int)sizeof(line) - n - 1 ? m : (int)sizeof(line) - n - 2;
    line[n++] = '\n';
    /* A failed write to stderr has nowhere left to be reported. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void fm_log(fm_log_level level, const char *fmt, ...)
{
    va_list ap;

    if (!fm_log_enabled(level))
        return;
    va_start(ap, fmt);
    vlog(level, "", fmt, ap);
    va_end(ap);
}

void fm_log_rate(fm_log_limit *lim, fm_log_level level, const char *fmt, ...)
{
    struct timespec ts;
    char note[80] = "";
    int64_t now;
    va_list ap;

    if (!fm_log_enabled(level))
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now < lim->next_ms) {
        lim->dropped++;
        return;
    }
    if (lim->dropped > 0)
        snprintf(note, sizeof(note), " (and %llu more like it, not logged)",
                 (unsigned long long)lim->dropped);
    lim->next_ms = now + 1000;
    lim->dropped = 0;
    va_start(ap, fmt);
    vlog(level, note, fmt, ap);
    va_end(ap);
}
