/* config.c -- the directive table, the file parser and derived settings.
 *
 * Everything about a directive lives in one row of `directives`: adding one
 * means adding a field to fm_config and a row here. Values are parsed the
 * same way wherever they come from (file, --name value, $REDIS_URL), so a
 * message for a bad value reads the same in every case. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "fm_wire.h"
#include "log.h"

/* T_ENUM values are one of a list of names (enum_names), stored as the
 * name's index in an int. T_COMPAT stores nothing: its value names a
 * preset of other directives (compat_presets), set as if written in its
 * place. */
typedef enum { T_STR, T_OPTSTR, T_INT, T_MODE, T_ENUM, T_COMPAT } dtype;

typedef struct directive {
    const char *name;
    dtype type;
    size_t off;
    int64_t min, max;   /* T_INT range; T_STR/T_OPTSTR: min length, max length */
    const char *def;    /* NULL: unset */
    int live;           /* applied on SIGHUP without a restart */
    /* Fills the fields derived from the value, so that a bad value is
     * reported where it was given (FILE:LINE, --name, $REDIS_URL). */
    int (*derive)(fm_config *cfg, char *err, size_t errlen);
} directive;

static int parse_redis_url(fm_config *cfg, char *err, size_t errlen);
static int read_password_file(fm_config *cfg, char *err, size_t errlen);
static int derive_uids(fm_config *cfg, char *err, size_t errlen);
static int derive_gids(fm_config *cfg, char *err, size_t errlen);
static int derive_sentinels(fm_config *cfg, char *err, size_t errlen);
static int derive_cluster_nodes(fm_config *cfg, char *err, size_t errlen);

#define F(f) offsetof(fm_config, f)
#define MS_MAX 2147483647LL
static const directive directives[] = {
    {"socket", T_STR, F(socket), 1, FM_SOCKET_PATH_MAX, "/run/fmredisd/fmredisd.sock", 0, NULL},
    {"socket_mode", T_MODE, F(socket_mode), 0, 0777, "0660", 0, NULL},
    {"socket_group", T_OPTSTR, F(socket_group), 1, 256, NULL, 0, NULL},
    {"redis_url", T_STR, F(redis_url), 1, 4096, "redis://127.0.0.1:6379/0", 0, parse_redis_url},
    {"redis_password_file", T_OPTSTR, F(redis_password_file), 1, 4096, NULL, 0, read_password_file},
    {"request_timeout_ms", T_INT, F(request_timeout_ms), 1, MS_MAX, "5000", 1, NULL},
    {"lock_key_prefix", T_STR, F(lock_key_prefix), 0, FM_PREFIX_MAX, "fm:lock:", 1, NULL},
    {"lock_default_ttl_ms", T_INT, F(lock_default_ttl_ms), 1, MS_MAX, "30000", 1, NULL},
    {"lock_retry_delay_ms", T_INT, F(lock_retry_delay_ms), 1, MS_MAX, "100", 1, NULL},
    {"lock_max_retries", T_INT, F(lock_max_retries), 0, MS_MAX, "50", 1, NULL},
    {"lock_release_channel", T_STR, F(lock_release_channel), 1, 512, "fm:lock:released", 0, NULL},
    {"wake_channel", T_STR, F(wake_channel), 1, 512, "fm:wake", 1, NULL},
    {"cache_key_prefix", T_STR, F(cache_key_prefix), 0, FM_PREFIX_MAX, "fm:exec:", 1, NULL},
    {"cache_ttl_ms", T_INT, F(cache_ttl_ms), 1, MS_MAX, "60000", 1, NULL},
    /* Live, but a daemon started without a near cache (0, or a Cluster)
     * keeps none until restarted (cache.c). */
    {"cache_near_bytes", T_INT, F(cache_near_bytes), 0, 1LL << 40, "67108864", 1, NULL},
    {"max_clients", T_INT, F(max_clients), 1, 1000000, "4096", 1, NULL},
    {"max_frame_bytes", T_INT, F(max_frame_bytes), 64, 1LL << 30, "1048576", 1, NULL},
    {"max_inflight_per_client", T_INT, F(max_inflight_per_client), 1, 1000000, "256", 1, NULL},
    {"max_batch", T_INT, F(max_batch), 1, 1000000, "10000", 1, NULL},
    {"max_output_bytes", T_INT, F(max_output_bytes), 65536, 4294967295LL, "67108864", 1, NULL},
    {"log_level", T_ENUM, F(log_level), 0, 0, "info", 1, NULL},
    {"reconnect_step_ms", T_INT, F(reconnect_step_ms), 1, MS_MAX, "50", 1, NULL},
    {"reconnect_max_ms", T_INT, F(reconnect_max_ms), 1, MS_MAX, "2000", 1, NULL},
    {"allow_uids", T_OPTSTR, F(allow_uids), 0, 4096, NULL, 1, derive_uids},
    {"allow_gids", T_OPTSTR, F(allow_gids), 0, 4096, NULL, 1, derive_gids},
    {"redis_sentinels", T_OPTSTR, F(redis_sentinels), 1, 4096, NULL, 0, derive_sentinels},
    {"redis_sentinel_master", T_OPTSTR, F(redis_sentinel_master), 1, 512, NULL, 0, NULL},
    {"redis_cluster_nodes", T_OPTSTR, F(redis_cluster_nodes), 1, 4096, NULL, 0, derive_cluster_nodes},
    {"redis_sentinel_password", T_OPTSTR, F(redis_sentinel_password), 1, 4096, NULL, 0, NULL},
    /* Live: the release and extend scripts read both values (scripts.c). */
    {"lock_value_format", T_ENUM, F(lock_value_format), 0, 0, "token", 1, NULL},
    {"compat", T_COMPAT, 0, 0, 0, NULL, 1, NULL},
    {"redis_tls_ca_file", T_OPTSTR, F(redis_tls_ca_file), 1, 4096, NULL, 0, NULL},
    {"redis_tls_ca_dir", T_OPTSTR, F(redis_tls_ca_dir), 1, 4096, NULL, 0, NULL},
    {"redis_tls_server_name", T_OPTSTR, F(redis_tls_server_name), 1, 253, NULL, 0, NULL},
    {"redis_tls_cert_file", T_OPTSTR, F(redis_tls_cert_file), 1, 4096, NULL, 0, NULL},
    {"redis_tls_key_file", T_OPTSTR, F(redis_tls_key_file), 1, 4096, NULL, 0, NULL},
    {"redis_tls_verify", T_ENUM, F(redis_tls_verify), 0, 0, "yes", 0, NULL},
};
#undef F
#define NDIRECTIVES (sizeof(directives) / sizeof(directives[0]))
_Static_assert(NDIRECTIVES <= 64, "fm_config.given has a bit per directive");

static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
/* In the order of fm_lockval. */
static const char *const lockval_names[] = {"token", "flowmonkey-json", NULL};
static const char *const yesno_names[] = {"no", "yes", NULL};

/* The names of each T_ENUM directive's values, by its field. */
static const struct {
    size_t off;
    const char *const *names;
} enums[] = {
    {offsetof(fm_config, log_level), level_names},
    {offsetof(fm_config, lock_value_format), lockval_names},
    {offsetof(fm_config, redis_tls_verify), yesno_names},
};

static const char *const *enum_names(const directive *d)
{
    for (size_t i = 0; i < sizeof(enums) / sizeof(enums[0]); i++)
        if (enums[i].off == d->off)
            return enums[i].names;
    assert(!"a T_ENUM directive without names");
    return NULL;
}

/* What `compat NAME` sets: the names and lock value of the @flowmonkey/redis
 * package, as its README documents them (fmredisd's defaults) or as its
 * published code writes them. compat_names is in the same order. */
typedef struct compat_preset {
    const char *lock_key_prefix, *cache_key_prefix, *wake_channel, *lock_value_format;
} compat_preset;

static const char *const compat_names[] = {"flowmonkey-readme", "flowmonkey-published", NULL};
static const compat_preset compat_presets[] = {
    {"fm:lock:", "fm:exec:", "fm:wake", "token"},
    {"lock:", "exec:", "flowmonkey:wake", "flowmonkey-json"},
};

const char *fm_config_lockval_name(const fm_config *cfg)
{
    return lockval_names[cfg->lock_value_format];
}

size_t fm_config_count(void)
{
    return NDIRECTIVES;
}

const char *fm_config_name(size_t i)
{
    return i < NDIRECTIVES ? directives[i].name : NULL;
}

static const directive *find_directive(const char *name, size_t len)
{
    for (size_t i = 0; i < NDIRECTIVES; i++)
        if (strlen(directives[i].name) == len &&
            memcmp(directives[i].name, name, len) == 0)
            return &directives[i];
    return NULL;
}

static int failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int failf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* How much of a value a message shows: enough to recognise it. */
#define SHOWN_MAX 256

/* Copies s into buf (len bytes) for a message, with everything before its
 * last '@' shown as "***": that is where a URL keeps its user name and
 * password. A malformed URL may hold '/', ':' or '@' unescaped in its
 * password, so the last '@' is the only boundary that never shows a piece
 * of it; the parser splits URLs there too, so what follows it (host, port,
 * database) is never user info. A leading scheme ("redis://", "Redis://")
 * stays, to say which kind of URL it was. Text without '@' is copied as it
 * is, truncated to fit. Every value or name a message echoes goes through
 * here, since nothing tells a URL from other text in the wrong place (a
 * value given to the wrong directive, "redis_url=..." taken for a name);
 * file paths do not: an '@' is common in them (fmredisd@main.conf). */
static const char *redact(const char *s, char *buf, size_t len)
{
    static const char scheme_chars[] = "abcdefghijklmnopqrstuvwxyz"
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.";
    const char *at = strrchr(s, '@');
    size_t scheme = 0;

    if (at == NULL) {
        snprintf(buf, len, "%s", s);
        return buf;
    }
    /* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://".
     * No scheme character is '@', so a scheme ends before at. */
    if (isalpha((unsigned char)s[0])) {
        scheme = strspn(s, scheme_chars);
        scheme = strncmp(s + scheme, "://", 3) == 0 ? scheme + 3 : 0;
    }
    snprintf(buf, len, "%.*s***%s", (int)scheme, s, at);
    return buf;
}

static int parse_int(const char *s, int base, int64_t *out)
{
    char *end;
    long long v;

    if (*s == '\0' || isspace((unsigned char)*s) || *s == '+')
        return -1;
    errno = 0;
    v = strtoll(s, &end, base);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int has_ctrl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* "a, b or c" for a message. */
static const char *one_of(const char *const *names, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; names[i] && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                 i == 0 ? "" : names[i + 1] ? ", " : " or ", names[i]);
    return buf;
}

static int set_value(fm_config *cfg, const directive *d, const char *val,
                     char *err, size_t errlen);

static int set_named(fm_config *cfg, const char *name, const char *val, char *err,
                     size_t errlen)
{
    const directive *d = find_directive(name, strlen(name));

    assert(d != NULL);
    return set_value(cfg, d, val, err, errlen);
}

/* Sets one directive from its textual value. */
static int set_value(fm_config *cfg, const directive *d, const char *val,
                     char *err, size_t errlen)
{
    char *base = (char *)cfg + d->off, shown[SHOWN_MAX], list[128];
    int64_t v;
    size_t n;
    char *copy;

    /* Kept for a refused value too: the load fails either way. */
    cfg->given |= 1ULL << (d - directives);
    switch (d->type) {
    case T_INT:
        if (parse_int(val, 10, &v) != 0 || v < d->min || v > d->max)
            return failf(err, errlen, "%s: expected an integer from %lld to %lld, got \"%s\"",
                         d->name, (long long)d->min, (long long)d->max,
                         redact(val, shown, sizeof(shown)));
        *(int64_t *)base = v;
        return 0;
    case T_MODE:
        if (parse_int(val, 8, &v) != 0 || v < d->min || v > d->max)
            return failf(err, errlen, "%s: expected an octal mode such as 0660, got \"%s\"",
                         d->name, redact(val, shown, sizeof(shown)));
        *(int *)base = (int)v;
        return 0;
    case T_ENUM:
        for (int i = 0; enum_names(d)[i]; i++) {
            if (strcmp(enum_names(d)[i], val) == 0) {
                *(int *)base = i;
                return 0;
            }
        }
        return failf(err, errlen, "%s: expected %s, got \"%s\"", d->name,
                     one_of(enum_names(d), list, sizeof(list)), redact(val, shown, sizeof(shown)));
    case T_COMPAT:
        for (int i = 0; compat_names[i]; i++) {
            const compat_preset *p = &compat_presets[i];

            if (strcmp(compat_names[i], val) == 0)
                return set_named(cfg, "lock_key_prefix", p->lock_key_prefix, err, errlen) ||
                       set_named(cfg, "cache_key_prefix", p->cache_key_prefix, err, errlen) ||
                       set_named(cfg, "wake_channel", p->wake_channel, err, errlen) ||
                       set_named(cfg, "lock_value_format", p->lock_value_format, err, errlen)
                           ? -1 : 0;
        }
        return failf(err, errlen, "%s: expected %s, got \"%s\"", d->name,
                     one_of(compat_names, list, sizeof(list)), redact(val, shown, sizeof(shown)));
    case T_STR:
    case T_OPTSTR:
        n = strlen(val);
        if ((int64_t)n < d->min || (int64_t)n > d->max || has_ctrl(val))
            return failf(err, errlen, "%s: expected %s%lld to %lld bytes without control characters",
                         d->name, d->min == 0 ? "" : "a value of ", (long long)d->min,
                         (long long)d->max);
        copy = strdup(val);
        if (copy == NULL)
            return failf(err, errlen, "out of memory");
        free(*(char **)base);
        *(char **)base = copy;
        return d->derive ? d->derive(cfg, err, errlen) : 0;
    }
    return failf(err, errlen, "%s: unhandled type", d->name);
}

/* Splits "name value" with the value optionally double-quoted, where \" and
 * \\ are the only escapes. Modifies line in place. */
static int split_line(char *line, char **name, char **value, const char **why)
{
    char *p = line, *v, *w;

    while (isspace((unsigned char)*p))
        p++;
    *name = p;
    while (*p && !isspace((unsigned char)*p))
        p++;
    if (*p != '\0')
        *p++ = '\0';
    while (isspace((unsigned char)*p))
        p++;
    /* An empty value must be written "", so a forgotten one is caught. */
    if (*p == '\0') {
        *why = "missing value (write \"\" for an empty one)";
        return -1;
    }
    v = p;
    p += strlen(p);
    while (p > v && isspace((unsigned char)p[-1]))
        *--p = '\0';
    if (*v != '"') {
        *value = v;
        return 0;
    }
    for (p = v + 1, w = v; *p && *p != '"'; p++) {
        if (*p == '\\') {
            p++;
            if (*p != '"' && *p != '\\') {
                *why = "only \\\" and \\\\ are escapes in a quoted value";
                return -1;
            }
        }
        *w++ = *p;
    }
    if (*p != '"' || p[1] != '\0') {
        *why = "unterminated quoted value";
        return -1;
    }
    *w = '\0';
    *value = v;
    return 0;
}

static int load_file(fm_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL, *name, *value, msg[512], shown[SHOWN_MAX];
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, rc = 0;

    if (f == NULL)
        return failf(err, errlen, "%s: %s", path, strerror(errno));
    while ((n = getline(&line, &cap, f)) >= 0) {
        const char *why = NULL;
        const directive *d;
        char *p = line;

        lineno++;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        if (strlen(line) != (size_t)n) {
            rc = failf(err, errlen, "%s:%d: NUL byte in line", path, lineno);
            break;
        }
        if (split_line(p, &name, &value, &why) != 0) {
            rc = failf(err, errlen, "%s:%d: %s", path, lineno, why);
            break;
        }
        d = find_directive(name, strlen(name));
        if (d == NULL) {
            rc = failf(err, errlen, "%s:%d: unknown directive \"%s\"", path, lineno,
                       redact(name, shown, sizeof(shown)));
            break;
        }
        if (set_value(cfg, d, value, msg, sizeof(msg)) != 0) {
            rc = failf(err, errlen, "%s:%d: %s", path, lineno, msg);
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc = failf(err, errlen, "%s: read error", path);
    free(line);
    fclose(f);
    return rc;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape, a NUL or
 * out of memory. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *w = out;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *w++ = s[i];
            continue;
        }
        if (i + 2 >= n) {
            free(out);
            return NULL;
        }
        int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        *w++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *w = '\0';
    return out;
}

static int parse_db(const char *s, size_t n, int *db)
{
    int64_t v;
    char tmp[16];

    if (n == 0 || n >= sizeof(tmp))
        return n == 0 ? 0 : -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (parse_int(tmp, 10, &v) != 0 || v < 0 || v > INT_MAX)
        return -1;
    *db = (int)v;
    return 0;
}

/* Fails with why and the URL, never a piece of it on its own: a piece cut
 * from a malformed URL can hold part of its password. */
static int url_fail(const char *u, const char *why, char *err, size_t errlen)
{
    char shown[SHOWN_MAX];

    return failf(err, errlen, "redis_url: %s \"%s\"", why, redact(u, shown, sizeof(shown)));
}

/* unix:///path[?db=N] */
static int parse_unix_url(fm_config *cfg, const char *u, char *err, size_t errlen)
{
    const char *path = u + 7, *q = strchr(path, '?');
    size_t n = q ? (size_t)(q - path) : strlen(path);

    if (n == 0 || path[0] != '/')
        return url_fail(u, "unix:// needs an absolute path, got", err, errlen);
    if ((cfg->redis.path = pct_decode(path, n)) == NULL)
        return url_fail(u, "bad percent-escape in the path of", err, errlen);
    if (q && (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, strlen(q + 4), &cfg->redis_db) != 0))
        return url_fail(u, "expected ?db=N after the path in", err, errlen);
    return 0;
}

/* user:password in p[0..n), which ends at the URL's last '@'. The user name
 * ends at the first ':'. An '@' or '/' in here can only be one the password
 * meant and did not escape: refused rather than guessed at (the URL grammar
 * has it escaped), and reported without showing where it was. */
static int parse_userinfo(fm_config *cfg, const char *u, const char *p, size_t n,
                          char *err, size_t errlen)
{
    const char *c = memchr(p, ':', n), *pw = c ? c + 1 : p;
    size_t pwlen = n - (size_t)(pw - p);

    if (memchr(p, '@', n) != NULL || memchr(p, '/', n) != NULL)
        return url_fail(u, "'@' or '/' not written as %40 or %2F in the user name or password of",
                        err, errlen);
    if (c != NULL && c > p && (cfg->redis_user = pct_decode(p, (size_t)(c - p))) == NULL)
        return url_fail(u, "bad percent-escape in the user name of", err, errlen);
    if (pwlen > 0 && (cfg->redis_password = pct_decode(pw, pwlen)) == NULL)
        return url_fail(u, "bad percent-escape in the password of", err, errlen);
    return 0;
}

/* host[:port] in p[0..end), with the host possibly a [IPv6 address]. */
static int parse_host_port(fm_config *cfg, const char *u, const char *p, const char *end,
                           char *err, size_t errlen)
{
    const char *hostend, *colon;
    char port[8];
    int64_t v;
    size_t n;

    if (*p == '[') {
        hostend = memchr(p, ']', (size_t)(end - p));
        if (hostend == NULL)
            return url_fail(u, "unterminated [IPv6 address] in", err, errlen);
        cfg->redis.host = strndup(p + 1, (size_t)(hostend - p - 1));
        colon = hostend + 1 < end && hostend[1] == ':' ? hostend + 1 : NULL;
        if (hostend + 1 < end && colon == NULL)
            return url_fail(u, "unexpected text after ] in", err, errlen);
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        hostend = colon ? colon : end;
        cfg->redis.host = pct_decode(p, (size_t)(hostend - p));
    }
    if (cfg->redis.host == NULL || cfg->redis.host[0] == '\0')
        return url_fail(u, "missing host in", err, errlen);
    cfg->redis.port = 6379;
    if (colon == NULL)
        return 0;
    n = (size_t)(end - colon - 1);
    if (n == 0 || n >= sizeof(port))
        return url_fail(u, "bad port in", err, errlen);
    memcpy(port, colon + 1, n);
    port[n] = '\0';
    if (parse_int(port, 10, &v) != 0 || v < 1 || v > 65535)
        return url_fail(u, "bad port in", err, errlen);
    cfg->redis.port = (int)v;
    return 0;
}

/* redis://[user:password@]host[:port][/db], the same with rediss:// (TLS),
 * or unix:///path[?db=N]. The user info runs to the last '@', as redact()
 * hides it: so the host, port and database never hold a piece of the
 * password, and the daemon may log them. */
static int parse_redis_url(fm_config *cfg, char *err, size_t errlen)
{
    const char *u = cfg->redis_url, *p, *at, *end;

    free(cfg->redis.host);
    free(cfg->redis.path);
    free(cfg->redis_user);
    free(cfg->redis_password);
    memset(&cfg->redis, 0, sizeof(cfg->redis));
    cfg->redis_user = cfg->redis_password = NULL;
    cfg->redis_db = 0;

    cfg->redis_tls = 0;

    if (strncmp(u, "unix://", 7) == 0)
        return parse_unix_url(cfg, u, err, errlen);
    if (strncmp(u, "rediss://", 9) == 0)
        cfg->redis_tls = 1;
    else if (strncmp(u, "redis://", 8) != 0)
        return url_fail(u, "expected redis://host[:port][/db], rediss://... or unix:///path, got",
                        err, errlen);
    p = u + (cfg->redis_tls ? 9 : 8);
    at = strrchr(p, '@');
    if (at != NULL) {
        if (parse_userinfo(cfg, u, p, (size_t)(at - p), err, errlen) != 0)
            return -1;
        p = at + 1;
    }
    end = p + strcspn(p, "/");
    if (parse_host_port(cfg, u, p, end, err, errlen) != 0)
        return -1;
    if (*end == '/' && parse_db(end + 1, strlen(end + 1), &cfg->redis_db) != 0)
        return url_fail(u, "bad database number in", err, errlen);
    return 0;
}

/* Reads a password from path into *out: what redis_password_file and the
 * service manager's credential hold. One trailing newline (or CRLF) is not
 * part of it, since editors and `echo` add one. what names the source in
 * messages, which never show the file's text. */
static int read_secret(const char *path, const char *what, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char buf[4097];
    size_t n;

    if (f == NULL)
        return failf(err, errlen, "%s: %s: %s", what, path, strerror(errno));
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    if (n == sizeof(buf))
        return failf(err, errlen, "%s: longer than 4096 bytes", what);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n == 0 || memchr(buf, '\0', n) != NULL)
        return failf(err, errlen, "%s: empty or holds a NUL byte", what);
    free(*out);
    *out = strndup(buf, n);
    return *out ? 0 : failf(err, errlen, "out of memory");
}

static int read_password_file(fm_config *cfg, char *err, size_t errlen)
{
    return read_secret(cfg->redis_password_file, "redis_password_file",
                       &cfg->redis_file_password, err, errlen);
}

/* systemd's LoadCredential=NAME:... puts a secret in
 * $CREDENTIALS_DIRECTORY/NAME, readable by the service alone. When that file
 * exists it wins over the directive that names a file, and over the URL:
 * the unit is the operator's last word. Absent, it is not an error: the
 * variable is set for any credential, not only this one. 1 with the path
 * in buf when the credential is there, 0 when not, -1 with err. */
static int credential(const char *name, char *buf, size_t len, char *err, size_t errlen)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");

    if (dir == NULL || *dir == '\0')
        return 0;
    if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len)
        return failf(err, errlen, "$CREDENTIALS_DIRECTORY: longer than %zu bytes", len);
    return access(buf, F_OK) == 0 || errno != ENOENT;
}

static int read_credential(fm_config *cfg, char *err, size_t errlen)
{
    char path[4096];
    int rc = credential("redis-password", path, sizeof(path), err, errlen);

    if (rc <= 0)
        return rc;
    return read_secret(path, "$CREDENTIALS_DIRECTORY/redis-password", &cfg->redis_file_password,
                       err, errlen);
}

/* The redis_tls_* directives mean something with rediss:// alone: one given
 * without it is refused, never silently ignored. The client key is the
 * credential redis-tls-key when the unit loads one, else
 * redis_tls_key_file; OpenSSL reads it when the daemon starts. */
static int finish_tls(fm_config *cfg, char *err, size_t errlen)
{
    static const char *const names[] = {"redis_tls_ca_file", "redis_tls_ca_dir",
        "redis_tls_server_name", "redis_tls_cert_file", "redis_tls_key_file", "redis_tls_verify"};
    char path[4096];
    int rc;

    free(cfg->redis_tls_key);
    cfg->redis_tls_key = NULL;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !cfg->redis_tls; i++) {
        const directive *d = find_directive(names[i], strlen(names[i]));

        if (cfg->given & 1ULL << (d - directives))
            return failf(err, errlen, "%s needs a rediss:// redis_url (TLS)", names[i]);
    }
    if (!cfg->redis_tls)
        return 0;
    if ((rc = credential("redis-tls-key", path, sizeof(path), err, errlen)) < 0)
        return -1;
    if (rc > 0 || cfg->redis_tls_key_file != NULL) {
        cfg->redis_tls_key = strdup(rc > 0 ? path : cfg->redis_tls_key_file);
        if (cfg->redis_tls_key == NULL)
            return failf(err, errlen, "out of memory");
    }
    if (cfg->redis_tls_cert_file != NULL && cfg->redis_tls_key == NULL)
        return failf(err, errlen, "redis_tls_cert_file needs its key: redis_tls_key_file, or "
                     "the credential redis-tls-key");
    if (cfg->redis_tls_cert_file == NULL && cfg->redis_tls_key != NULL)
        return failf(err, errlen, "%s needs redis_tls_cert_file, the certificate it goes with",
                     rc > 0 ? "$CREDENTIALS_DIRECTORY/redis-tls-key" : "redis_tls_key_file");
    return 0;
}

/* A list of numeric ids or names, separated by spaces or commas. */
static int parse_ids(const char *list, int groups, void **out, size_t *count,
                     char *err, size_t errlen)
{
    char *copy = strdup(list), *tok, *save = NULL, shown[SHOWN_MAX];
    unsigned *ids = NULL;
    size_t n = 0;

    if (copy == NULL)
        return failf(err, errlen, "out of memory");
    for (tok = strtok_r(copy, " ,\t", &save); tok; tok = strtok_r(NULL, " ,\t", &save)) {
        unsigned *grown = realloc(ids, (n + 1) * sizeof(*ids));
        int64_t v;

        if (grown == NULL) {
            free(copy);
            free(ids);
            return failf(err, errlen, "out of memory");
        }
        ids = grown;
        if (parse_int(tok, 10, &v) == 0 && v >= 0 && v <= UINT_MAX) {
            ids[n++] = (unsigned)v;
        } else if (!groups && getpwnam(tok) != NULL) {
            ids[n++] = getpwnam(tok)->pw_uid;
        } else if (groups && getgrnam(tok) != NULL) {
            ids[n++] = getgrnam(tok)->gr_gid;
        } else {
            failf(err, errlen, "%s: unknown %s \"%s\"", groups ? "allow_gids" : "allow_uids",
                  groups ? "group" : "user", redact(tok, shown, sizeof(shown)));
            free(copy);
            free(ids);
            return -1;
        }
    }
    free(copy);
    *out = ids;
    *count = n;
    return 0;
}

static int derive_uids(fm_config *cfg, char *err, size_t errlen)
{
    free(cfg->uids);
    cfg->uids = NULL;
    return parse_ids(cfg->allow_uids, 0, (void **)&cfg->uids, &cfg->nuids, err, errlen);
}

static int derive_gids(fm_config *cfg, char *err, size_t errlen)
{
    free(cfg->gids);
    cfg->gids = NULL;
    return parse_ids(cfg->allow_gids, 1, (void **)&cfg->gids, &cfg->ngids, err, errlen);
}

int fm_config_socket_gid(const fm_config *cfg, gid_t *gid, char *err, size_t errlen)
{
    char shown[SHOWN_MAX];
    struct group *gr;
    int64_t v;

    if (cfg->socket_group == NULL)
        return 1;
    /* A number is a gid, as chown(1) takes it; (gid_t)-1 would mean "leave
     * the group as it is" to chown(2). */
    if (parse_int(cfg->socket_group, 10, &v) == 0 && v >= 0 && v < (int64_t)(gid_t)-1) {
        *gid = (gid_t)v;
        return 0;
    }
    errno = 0;
    gr = getgrnam(cfg->socket_group);
    if (gr == NULL)
        return failf(err, errlen, "socket_group: %s \"%s\"",
                     errno != 0 ? strerror(errno) : "no such group",
                     redact(cfg->socket_group, shown, sizeof(shown)));
    *gid = gr->gr_gid;
    return 0;
}

static void free_addrs(fm_redis_addr *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(a[i].host);
    free(a);
}

/* Whether host[0..n) can name a server: a DNS name or an IPv4 address,
 * or (ipv6) what goes between brackets, zone included. A host holding '@'
 * or '/' is a URL pasted in the wrong place, which could never resolve. */
static int host_chars_ok(const char *host, size_t n, int ipv6)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];

        if (!isalnum(c) && c != '.' && c != '-' && c != '_' &&
            !(ipv6 && (c == ':' || c == '%')))
            return 0;
    }
    return 1;
}

/* One "host[:port]" or "[v6]:port" of an address list into a; why on error.
 * No percent-decoding: these are not URLs, and hold no secrets. */
static const char *parse_addr(const char *tok, int defport, fm_redis_addr *a)
{
    const char *end = tok + strlen(tok), *hostend, *colon;
    int bracketed = *tok == '[';
    int64_t v;

    if (bracketed) {
        hostend = strchr(tok, ']');
        if (hostend == NULL)
            return "unterminated [IPv6 address]";
        colon = hostend[1] == ':' ? hostend + 1 : NULL;
        if (hostend[1] != '\0' && colon == NULL)
            return "unexpected text after ]";
        tok++;
    } else {
        colon = strrchr(tok, ':');
        if (colon != NULL && memchr(tok, ':', (size_t)(colon - tok)) != NULL)
            return "an IPv6 address needs [brackets]";
        hostend = colon ? colon : end;
    }
    if (hostend == tok)
        return "missing host";
    /* A zone ('%') belongs to an IPv6 address, which has a ':'. */
    if (!host_chars_ok(tok, (size_t)(hostend - tok),
                       bracketed && memchr(tok, ':', (size_t)(hostend - tok)) != NULL))
        return "not a host name or address";
    a->port = defport;
    if (colon != NULL && (parse_int(colon + 1, 10, &v) != 0 || v < 1 || v > 65535))
        return "bad port";
    if (colon != NULL)
        a->port = (int)v;
    a->host = strndup(tok, (size_t)(hostend - tok));
    return a->host != NULL ? NULL : "out of memory";
}

/* A list of addresses separated by spaces or commas, for the
 * directive name; at most max. */
static int parse_addr_list(const char *list, const char *name, int defport, size_t max,
                           fm_redis_addr **out, size_t *count, char *err, size_t errlen)
{
    char *copy = strdup(list), *tok, *save = NULL, shown[SHOWN_MAX];
    fm_redis_addr *a = calloc(max, sizeof(*a));
    const char *why = NULL;
    size_t n = 0;

    if (copy == NULL || a == NULL)
        why = "out of memory";
    for (tok = why ? NULL : strtok_r(copy, " ,\t", &save); tok != NULL && why == NULL;
         tok = strtok_r(NULL, " ,\t", &save)) {
        if (n == max)
            why = "too many addresses";
        else if ((why = parse_addr(tok, defport, &a[n])) == NULL)
            n++;
    }
    if (why == NULL && n == 0)
        why = "no address in";
    if (why != NULL) {
        failf(err, errlen, "%s: %s \"%s\"", name, why, redact(list, shown, sizeof(shown)));
        free(copy);
        free_addrs(a, n);
        return -1;
    }
    free(copy);
    *out = a;
    *count = n;
    return 0;
}

static int derive_sentinels(fm_config *cfg, char *err, size_t errlen)
{
    free_addrs(cfg->sentinels, cfg->nsentinels);
    cfg->sentinels = NULL;
    cfg->nsentinels = 0;
    return parse_addr_list(cfg->redis_sentinels, "redis_sentinels", FM_SENTINEL_PORT,
                           FM_SENTINELS_MAX, &cfg->sentinels, &cfg->nsentinels, err, errlen);
}

static int derive_cluster_nodes(fm_config *cfg, char *err, size_t errlen)
{
    free_addrs(cfg->cluster_nodes, cfg->ncluster_nodes);
    cfg->cluster_nodes = NULL;
    cfg->ncluster_nodes = 0;
    return parse_addr_list(cfg->redis_cluster_nodes, "redis_cluster_nodes", FM_REDIS_PORT,
                           FM_CLUSTER_SEEDS_MAX, &cfg->cluster_nodes, &cfg->ncluster_nodes,
                           err, errlen);
}

/* Checks what no single directive can see. */
static int finish(fm_config *cfg, char *err, size_t errlen)
{
    if (cfg->redis_sentinels && cfg->redis_cluster_nodes)
        return failf(err, errlen, "redis_sentinels and redis_cluster_nodes exclude each other");
    /* A sentinel directive alone is never silently ignored. */
    if ((cfg->redis_sentinels != NULL) != (cfg->redis_sentinel_master != NULL))
        return failf(err, errlen, "redis_sentinels and redis_sentinel_master go together: "
                     "the sentinels, and the name of the master they watch");
    if (cfg->redis_sentinel_password && !cfg->redis_sentinels)
        return failf(err, errlen, "redis_sentinel_password needs redis_sentinels");
    /* A cluster has database 0 only; SELECT of another fails every node. */
    if (cfg->redis_cluster_nodes && cfg->redis_db != 0)
        return failf(err, errlen, "redis_cluster_nodes: a Redis Cluster has database 0 only, "
                     "but redis_url names database %d", cfg->redis_db);
    if (cfg->reconnect_step_ms > cfg->reconnect_max_ms)
        return failf(err, errlen, "reconnect_step_ms must not exceed reconnect_max_ms");
    /* The credential wins over the password file, which wins over a
     * password in the URL. */
    if (read_credential(cfg, err, errlen) != 0 || finish_tls(cfg, err, errlen) != 0)
        return -1;
    if (cfg->redis_file_password != NULL) {
        free(cfg->redis_password);
        cfg->redis_password = cfg->redis_file_password;
        cfg->redis_file_password = NULL;
    }
    return 0;
}

fm_config *fm_config_load(const fm_config_args *args, char *err, size_t errlen)
{
    fm_config *cfg = calloc(1, sizeof(*cfg));
    const char *env = getenv("REDIS_URL");
    const directive *url;
    char msg[512], shown[SHOWN_MAX];

    if (cfg == NULL) {
        failf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        if (directives[i].def && set_value(cfg, &directives[i], directives[i].def, err, errlen) != 0)
            goto fail;
    }
    cfg->given = 0;
    if (args->file && load_file(cfg, args->file, err, errlen) != 0)
        goto fail;
    for (size_t i = 0; i < args->nover; i++) {
        const directive *d = find_directive(args->names[i], strlen(args->names[i]));

        if (d == NULL) {
            failf(err, errlen, "--%s: unknown directive",
                  redact(args->names[i], shown, sizeof(shown)));
            goto fail;
        }
        if (set_value(cfg, d, args->values[i], msg, sizeof(msg)) != 0) {
            failf(err, errlen, "--%s", msg);
            goto fail;
        }
    }
    /* $REDIS_URL stands in for the default: a file or --redis_url wins. */
    url = find_directive("redis_url", 9);
    if (env != NULL && *env != '\0' && !(cfg->given & 1ULL << (url - directives)) &&
        set_value(cfg, url, env, msg, sizeof(msg)) != 0) {
        failf(err, errlen, "$REDIS_URL: %s", msg);
        goto fail;
    }
    if (finish(cfg, err, errlen) != 0)
        goto fail;
    return cfg;
fail:
    fm_config_free(cfg);
    return NULL;
}

void fm_config_free(fm_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < NDIRECTIVES; i++)
        if (directives[i].type == T_STR || directives[i].type == T_OPTSTR)
            free(*(char **)((char *)cfg + directives[i].off));
    free(cfg->redis.host);
    free(cfg->redis.path);
    free(cfg->redis_user);
    free(cfg->redis_password);
    free(cfg->redis_file_password);
    free(cfg->redis_tls_key);
    free_addrs(cfg->sentinels, cfg->nsentinels);
    free_addrs(cfg->cluster_nodes, cfg->ncluster_nodes);
    free(cfg->uids);
    free(cfg->gids);
    free(cfg);
}

static int value_differs(const fm_config *a, const fm_config *b, const directive *d)
{
    const char *pa = (const char *)a + d->off, *pb = (const char *)b + d->off;

    switch (d->type) {
    case T_INT:
        return *(const int64_t *)pa != *(const int64_t *)pb;
    case T_MODE:
    case T_ENUM:
        return *(const int *)pa != *(const int *)pb;
    case T_COMPAT:
        return 0;
    case T_STR:
    case T_OPTSTR: {
        const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
        return (sa == NULL) != (sb == NULL) || (sa && strcmp(sa, sb) != 0);
    }
    }
    return 0;
}

void fm_config_diff(const fm_config *a, const fm_config *b,
                    void (*fn)(const char *name, int live, void *arg), void *arg)
{
    for (size_t i = 0; i < NDIRECTIVES; i++)
        if (value_differs(a, b, &directives[i]))
            fn(directives[i].name, directives[i].live, arg);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fmredisd [-t] [-c FILE] [--DIRECTIVE VALUE ...]\n"
            "  -c FILE   read the configuration from FILE (fmredisd.conf)\n"
            "  -t        check the configuration and exit: 0 if valid, 1 if not\n"
            "  -v        print the version and exit\n"
            "Every directive of the file can be given as --name value; the\n"
            "command line wins over the file. Directives:\n");
    for (size_t i = 0; i < NDIRECTIVES; i++)
        fprintf(out, "  --%-24s [%s]\n", directives[i].name,
                directives[i].def ? directives[i].def : "unset");
}

int fm_config_parse_args(int argc, char **argv, fm_config_args *args,
                         char *err, size_t errlen)
{
    char shown[SHOWN_MAX];

    memset(args, 0, sizeof(*args));
    args->names = calloc((size_t)argc, sizeof(char *));
    args->values = calloc((size_t)argc, sizeof(char *));
    if (args->names == NULL || args->values == NULL)
        return failf(err, errlen, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
            printf("fmredisd " FMREDIS_VERSION "\n");
            return 1;
        } else if (strcmp(a, "-t") == 0) {
            args->check_only = 1;
        } else if (strcmp(a, "-c") == 0) {
            if (++i == argc)
                return failf(err, errlen, "-c needs a file name");
            args->file = argv[i];
        } else if (strncmp(a, "--", 2) == 0 && a[2] != '\0') {
            const char *eq = strchr(a + 2, '=');

            if (eq != NULL) {
                /* --name=value: the name is copied out of argv. */
                char *name = strndup(a + 2, (size_t)(eq - a - 2));
                if (name == NULL)
                    return failf(err, errlen, "out of memory");
                args->names[args->nover] = name;
                args->values[args->nover++] = eq + 1;
                continue;
            }
            if (++i == argc)
                return failf(err, errlen, "%s needs a value", redact(a, shown, sizeof(shown)));
            args->names[args->nover] = strdup(a + 2);
            if (args->names[args->nover] == NULL)
                return failf(err, errlen, "out of memory");
            args->values[args->nover++] = argv[i];
        } else {
            usage(stderr);
            return failf(err, errlen, "unexpected argument \"%s\"",
                         redact(a, shown, sizeof(shown)));
        }
    }
    return 0;
}

void fm_config_args_free(fm_config_args *args)
{
    for (size_t i = 0; i < args->nover; i++)
        free((char *)args->names[i]);
    free(args->names);
    free(args->values);
    memset(args, 0, sizeof(*args));
}

const char *fm_config_version(void)
{
    return "fmredisd " FMREDIS_VERSION;
}

void fm_config_carry_restart(fm_config *next, fm_config *cur)
{
    for (size_t i = 0; i < NDIRECTIVES; i++) {
        const directive *d = &directives[i];
        char *pn = (char *)next + d->off, *pc = (char *)cur + d->off;
        char tmp[sizeof(int64_t)];
        size_t size = d->type == T_INT ? sizeof(int64_t)
                    : d->type == T_MODE || d->type == T_ENUM ? sizeof(int)
                    : sizeof(char *);

        if (d->live || d->type == T_COMPAT)
            continue;
        memcpy(tmp, pn, size);
        memcpy(pn, pc, size);
        memcpy(pc, tmp, size);
    }
#define SWAP(field) do { __typeof__(next->field) t_ = next->field; \
        next->field = cur->field; cur->field = t_; } while (0)
    SWAP(redis);
    SWAP(redis_user);
    SWAP(redis_password);
    SWAP(redis_db);
    SWAP(redis_tls);
    SWAP(redis_tls_key);
    SWAP(sentinels);
    SWAP(nsentinels);
    SWAP(cluster_nodes);
    SWAP(ncluster_nodes);
#undef SWAP
}
