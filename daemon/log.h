/* log.h -- one line per event on stderr, filtered by level. */
#ifndef FM_LOG_H
#define FM_LOG_H

#include <stdint.h>

typedef enum fm_log_level {
    FM_LOG_ERROR,
    FM_LOG_WARN,
    FM_LOG_INFO,
    FM_LOG_DEBUG
} fm_log_level;

void fm_log_set_level(fm_log_level level);
/* Prefixes lines with their syslog priority when $JOURNAL_STREAM says that
 * stderr is the journal. */
void fm_log_detect_journal(void);
int fm_log_enabled(fm_log_level level);
void fm_log(fm_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define fm_log_error(...) fm_log(FM_LOG_ERROR, __VA_ARGS__)
#define fm_log_warn(...) fm_log(FM_LOG_WARN, __VA_ARGS__)
#define fm_log_info(...) fm_log(FM_LOG_INFO, __VA_ARGS__)
#define fm_log_debug(...) \
    do { if (fm_log_enabled(FM_LOG_DEBUG)) fm_log(FM_LOG_DEBUG, __VA_ARGS__); } while (0)

/* For a line a peer can make the daemon repeat at its own pace (a refused
 * connection, an overflowing client, a forbidden channel): written at most
 * once a second from each call site, the next one saying how many were
 * left out, so that a hostile peer cannot fill the journal. */
typedef struct fm_log_limit {
    int64_t next_ms;
    uint64_t dropped;
} fm_log_limit;

void fm_log_rate(fm_log_limit *lim, fm_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define fm_log_limited(level, ...) \
    do { static fm_log_limit lim_; fm_log_rate(&lim_, level, __VA_ARGS__); } while (0)

#endif
