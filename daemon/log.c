/* log.c -- stderr logging. Each line is written with one write(2), so lines
 * from a daemon and its children never interleave mid-line. No timestamps:
 * journald and test harnesses add their own. When stderr is the journal's
 * stream, each line starts with its syslog priority ("<4>"), which journald
 * takes off and keeps as the entry's priority, so `journalctl -p` filters. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static fm_log_level current = FM_LOG_INFO;
static int to_journal;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
static const char *const level_prefixes[] = {"<3>", "<4>", "<6>", "<7>"};

/* systemd sets JOURNAL_STREAM to "device:inode" of the stream it connects
 * to stderr; a stderr redirected since (by a shell, a test) no longer
 * matches, and keeps the plain format. */
void fm_log_detect_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char *end;

    to_journal = 0;
    if (v == NULL || fstat(STDERR_FILENO, &st) != 0)
        return;
    errno = 0;
    dev = strtoull(v, &end, 10);
    if (end == v || *end != ':' || errno != 0)
        return;
    v = end + 1;
    ino = strtoull(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0)
        return;
    to_journal = dev == (unsigned long long)st.st_dev && ino == (unsigned long long)st.st_ino;
}

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
    __attribute__((format(printf, 3, 0)));
static void vlog(fm_log_level level, const char *note, const char *fmt, va_list ap)
{
    char line[1024];
    int n, m;

    n = snprintf(line, sizeof(line), "%sfmredisd[%d]: %s: ",
                 to_journal ? level_prefixes[level] : "", (int)getpid(), level_names[level]);
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
