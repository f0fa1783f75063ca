/* log.c -- stderr logging. Each line is written with one write(2), so lines
 * from a daemon and its children never interleave mid-line. No timestamps:
 * journald and test harnesses add their own. */
#include <stdarg.h>
#include <stdio.h>
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

void fm_log(fm_log_level level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n, m;

    if (!fm_log_enabled(level))
        return;
    n = snprintf(line, sizeof(line), "fmredisd[%d]: %s: ", (int)getpid(),
                 level_names[level]);
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : n + m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* A failed write to stderr has nowhere left to be reported. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
