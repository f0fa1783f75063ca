/* fuzz_config.c -- libFuzzer target for the configuration file parser and
 * the redis_url parser (daemon/config.c): they read a root-owned file and
 * handle the Redis password, so what they print matters as much as what
 * they accept.
 *
 * The input's first byte picks its layout. Bit 0 clear: the rest is one
 * configuration file, NUL bytes and all. Bit 0 set: the rest is split at
 * NUL bytes into a file, a URL and the content of a password file. A URL
 * with two tabs, head TAB mid TAB tail, is rebuilt as
 *     head "Pw_1" mid "Pw_2" "@" tail
 * so the two halves of a marker password sit before an '@' however
 * malformed the rest is (mid may hold '/', ':' or '@'); another URL is used
 * as it is. The file goes into a memfd, loaded as /proc/self/fd/N.
 *
 * Each input is loaded seven ways: the file alone (twice), the file with
 * --redis_url URL, --redis_url URL alone (as fm_config_parse_args builds
 * it from "--redis_url URL" and from "--redis_url=URL"), the file with
 * $REDIS_URL=URL, and the file with a line "redis_url URL" added. Any
 * broken invariant aborts:
 *   - a load returns a configuration, or a non-empty message that fits in
 *     the length it was given (the bytes past it are a canary);
 *   - no message, and no host or path of an accepted configuration (the
 *     daemon logs them at start), holds a half of the marker. The check is
 *     skipped when the input holds a half anywhere else (for hosts and
 *     paths, also once percent-decoded). Each half holds '_', which no URL
 *     scheme can, so the one part before an '@' that messages may show (a
 *     scheme such as "redis://") can never be one. A unix:// URL has no
 *     user info: its path may hold an '@' and is logged, so paths and hosts
 *     are not checked when the URL is one;
 *   - an accepted configuration has a socket, a URL, exactly one of a host
 *     and a path, a port and database in range, no directive this version
 *     refuses, max_output_bytes within a frame length, and the password of
 *     the password file when it names one;
 *   - loading is deterministic: the same input, the same outcome;
 *   - the sources agree: an error in a line of the file wins over the
 *     command line and the environment, and otherwise --redis_url,
 *     $REDIS_URL and the file's line accept the same URLs, with the same
 *     message (prefixed by where the URL came from) for those they
 *     refuse; except that a conflict between directives, found once all
 *     are read, may be one the URL makes, cures or changes;
 *   - after fm_config_carry_restart, only live directives differ from the
 *     running configuration; every fm_config_free afterwards is clean
 *     (ASan).
 *
 * Files: every redis_password_file line is rewritten to name a second memfd
 * that holds the input's password content, so read_password_file is fuzzed
 * with that content, and the fuzzer never opens a path its input names
 * (/dev/stdin or a FIFO would block it, /proc files make it flaky).
 * allow_uids and allow_gids are kept as they are: getpwnam and getgrnam
 * read /etc/passwd and /etc/group, which is quick and does not change
 * during a run. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "fuzz_config: %s:%d: check failed: %s\n",       \
                    __FILE__, __LINE__, #cond);                             \
            abort();                                                        \
        }                                                                   \
    } while (0)

#define ERRLEN 1000             /* what the parser is told it may write */
#define CANARY 0xA5             /* what the bytes past it must keep */

static const char *const halves[] = {"Pw_1", "Pw_2"};

/* A growing byte string; the fuzzer's inputs are small. */
typedef struct text {
    char *p;
    size_t n;
} text;

typedef struct load {
    fm_config *cfg;
    char err[ERRLEN + 24];
} load;

/* What the checks of one input need to know. */
typedef struct input {
    text file;          /* with its redis_password_file lines rewritten */
    text url;           /* NUL-terminated; empty when there is none */
    const char *pass;   /* the password file's content */
    size_t passlen;
    int has_url;
    int secret;         /* the marker halves are in the URL's user info only */
    int secret_host;    /* ... nor, decoded, after its last '@' or in the file */
    int url_unix;
} input;

static int conf_fd = -1, pass_fd = -1;
static char conf_path[32], pass_path[32];
static size_t url_index;    /* redis_url's bit in fm_config.given */

static void put(text *t, const void *p, size_t n)
{
    char *grown = realloc(t->p, t->n + n + 1);

    CHECK(grown != NULL);
    t->p = grown;
    memcpy(t->p + t->n, p, n);
    t->n += n;
    t->p[t->n] = '\0';
}

static void puts_text(text *t, const char *s)
{
    put(t, s, strlen(s));
}

static size_t count_of(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle), count = 0;
    const char *p = hay, *end = hay + n;

    while (p < end && (p = memmem(p, (size_t)(end - p), needle, k)) != NULL) {
        count++;
        p++;
    }
    return count;
}

/* Whether s[0..n), percent-decoded where it can be, holds needle: the
 * host is decoded before the daemon logs it, so "%50w_1" is no leak. */
static int decoded_has(const char *s, size_t n, const char *needle)
{
    char *d = malloc(n + 1);
    size_t k = 0;
    int found;

    CHECK(d != NULL);
    for (size_t i = 0; i < n; i++) {
        char hex[3] = {0};

        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            memcpy(hex, s + i + 1, 2);
            d[k++] = (char)strtoul(hex, NULL, 16);
            i += 2;
        } else {
            d[k++] = s[i];
        }
    }
    found = count_of(d, k, needle) > 0;
    free(d);
    return found;
}

static void fill(int fd, const char *p, size_t n)
{
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(n == 0 || pwrite(fd, p, n, 0) == (ssize_t)n);
}

static int memfd(const char *name, char *path, size_t len)
{
    int fd = memfd_create(name, 0);

    CHECK(fd >= 0);
    snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    conf_fd = memfd("fuzz_config.conf", conf_path, sizeof(conf_path));
    pass_fd = memfd("fuzz_config.password", pass_path, sizeof(pass_path));
    while (fm_config_name(url_index) && strcmp(fm_config_name(url_index), "redis_url") != 0)
        url_index++;
    CHECK(fm_config_name(url_index) != NULL);
    return 0;
}

/* Whether line[0..n) sets redis_password_file, tokenised as load_file
 * does: blanks, then the name up to a blank. */
static int names_password_file(const char *line, size_t n)
{
    static const char name[] = "redis_password_file";
    size_t i = 0, k = sizeof(name) - 1;

    while (i < n && strchr(" \t\v\f\r", line[i]) != NULL && line[i] != '\0')
        i++;
    return n - i >= k && memcmp(line + i, name, k) == 0 &&
           (i + k == n || (line[i + k] != '\0' && strchr(" \t\v\f\r", line[i + k]) != NULL));
}

/* The file text with every redis_password_file naming the password memfd. */
static void rewrite_file(text *out, const char *p, size_t n)
{
    const char *end = p + n;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

        if (names_password_file(p, len)) {
            puts_text(out, "redis_password_file ");
            puts_text(out, pass_path);
        } else {
            put(out, p, len);
        }
        if (nl != NULL)
            put(out, "\n", 1);
        p += len + (nl != NULL);
    }
    if (out->p == NULL)
        put(out, "", 0);
}

/* The URL section: with two tabs, the marker is planted in its user info. */
static void build_url(input *in, const char *p, size_t n)
{
    const char *t1 = memchr(p, '\t', n);
    const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(p + n - t1 - 1)) : NULL;

    in->has_url = 1;
    if (t2 == NULL) {
        put(&in->url, p, n);
        return;
    }
    put(&in->url, p, (size_t)(t1 - p));
    puts_text(&in->url, halves[0]);
    put(&in->url, t1 + 1, (size_t)(t2 - t1 - 1));
    puts_text(&in->url, halves[1]);
    puts_text(&in->url, "@");
    put(&in->url, t2 + 1, (size_t)(p + n - t2 - 1));
    in->secret = 1;
}

static void split_input(input *in, const uint8_t *data, size_t size)
{
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *nul;

    memset(in, 0, sizeof(*in));
    in->pass = "";
    if ((data[0] & 1) == 0 || (nul = memchr(p, '\0', (size_t)(end - p))) == NULL) {
        rewrite_file(&in->file, p, (size_t)(end - p));
        put(&in->url, "", 0);
        return;
    }
    rewrite_file(&in->file, p, (size_t)(nul - p));
    p = nul + 1;
    nul = memchr(p, '\0', (size_t)(end - p));
    build_url(in, p, nul ? (size_t)(nul - p) : (size_t)(end - p));
    if (nul != NULL) {
        in->pass = nul + 1;
        in->passlen = (size_t)(end - nul - 1);
    }
    in->url_unix = strncmp(in->url.p, "unix://", 7) == 0;
    /* The check means something only if the halves are nowhere else. */
    for (int i = 0; i < 2 && in->secret; i++)
        in->secret = count_of(in->url.p, in->url.n, halves[i]) == 1 &&
                     count_of(in->file.p, in->file.n, halves[i]) == 0 &&
                     count_of(in->pass, in->passlen, halves[i]) == 0;
    if (in->secret) {
        const char *at = memrchr(in->url.p, '@', in->url.n);
        size_t n = in->url.n - (size_t)(at + 1 - in->url.p);

        in->secret_host = 1;
        for (int i = 0; i < 2; i++)
            in->secret_host &= !decoded_has(at + 1, n, halves[i]) &&
                               !decoded_has(in->file.p, in->file.n, halves[i]);
    }
}

static void check_quiet(const input *in, int secret, const char *s)
{
    for (int i = 0; i < 2 && secret && s != NULL; i++) {
        if (strstr(s, halves[i]) != NULL) {
            fprintf(stderr, "fuzz_config: the marker shows in \"%s\" (URL \"%s\")\n", s,
                    in->url.p);
            abort();
        }
    }
}

/* What read_password_file makes of the content: one "\n", then one "\r",
 * come off the end. NULL when it must refuse it. */
static char *expected_password(const input *in)
{
    size_t n = in->passlen;

    if (n > 4096)
        return NULL;
    if (n > 0 && in->pass[n - 1] == '\n')
        n--;
    if (n > 0 && in->pass[n - 1] == '\r')
        n--;
    if (n == 0 || memchr(in->pass, '\0', n) != NULL)
        return NULL;
    return strndup(in->pass, n);
}

/* A sentinel's or a seed's host: a name, an IPv4 address, or what goes
 * between an IPv6 address's brackets; never a piece of a URL. */
static int host_ok(const char *host)
{
    /* Only an address given in brackets (IPv6) may hold ':' and a zone. */
    const char *extra = strchr(host, ':') != NULL ? ".-_:%" : ".-_";

    for (const char *p = host; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr(extra, *p) == NULL)
            return 0;
    return 1;
}

static void check_config(const input *in, const fm_config *cfg)
{
    size_t socklen;

    CHECK(cfg->socket != NULL && cfg->redis_url != NULL);
    socklen = strlen(cfg->socket);
    CHECK(socklen >= 1 && socklen <= FM_SOCKET_PATH_MAX);
    CHECK((cfg->redis.host == NULL) != (cfg->redis.path == NULL));
    if (cfg->redis.host != NULL)
        CHECK(cfg->redis.host[0] != '\0' && cfg->redis.port >= 1 && cfg->redis.port <= 65535);
    else
        CHECK(cfg->redis.path[0] == '/');
    CHECK(cfg->redis_db >= 0);
    CHECK(cfg->socket_mode >= 0 && cfg->socket_mode <= 0777);
    CHECK(cfg->log_level >= 0 && cfg->log_level <= 3);
    CHECK(cfg->lock_value_format == FM_LOCKVAL_TOKEN ||
          cfg->lock_value_format == FM_LOCKVAL_FLOWMONKEY_JSON);
    CHECK(cfg->reconnect_step_ms <= cfg->reconnect_max_ms);
    CHECK(cfg->max_output_bytes >= 65536 && cfg->max_output_bytes <= UINT32_MAX);
    /* Sentinel's directives come together, with at least one address. */
    CHECK((cfg->redis_sentinels == NULL) == (cfg->redis_sentinel_master == NULL));
    CHECK(cfg->redis_sentinel_password == NULL || cfg->redis_sentinels != NULL);
    CHECK((cfg->redis_sentinels == NULL) == (cfg->nsentinels == 0));
    CHECK(cfg->nsentinels <= FM_SENTINELS_MAX);
    for (size_t i = 0; i < cfg->nsentinels; i++)
        CHECK(cfg->sentinels[i].host[0] != '\0' && cfg->sentinels[i].port >= 1 &&
              cfg->sentinels[i].port <= 65535 && host_ok(cfg->sentinels[i].host));
    /* Cluster seeds: at least one address, database 0, no sentinels. */
    CHECK((cfg->redis_cluster_nodes == NULL) == (cfg->ncluster_nodes == 0));
    CHECK(cfg->ncluster_nodes <= FM_CLUSTER_SEEDS_MAX);
    CHECK(cfg->ncluster_nodes == 0 || (cfg->redis_db == 0 && cfg->nsentinels == 0));
    for (size_t i = 0; i < cfg->ncluster_nodes; i++)
        CHECK(cfg->cluster_nodes[i].host[0] != '\0' && cfg->cluster_nodes[i].port >= 1 &&
              cfg->cluster_nodes[i].port <= 65535 && host_ok(cfg->cluster_nodes[i].host));
    CHECK((cfg->uids == NULL) == (cfg->nuids == 0));
    CHECK((cfg->gids == NULL) == (cfg->ngids == 0));
    CHECK(cfg->redis_file_password == NULL);
    if (cfg->redis_password_file != NULL) {
        char *want = expected_password(in);

        CHECK(want != NULL && cfg->redis_password != NULL);
        CHECK(strcmp(cfg->redis_password, want) == 0);
        free(want);
    }
    if (!in->url_unix) {
        check_quiet(in, in->secret_host, cfg->redis.host);
        check_quiet(in, in->secret_host, cfg->redis.path);
    }
}

static void check_load(const input *in, const load *l)
{
    for (size_t i = ERRLEN; i < sizeof(l->err); i++)
        CHECK((unsigned char)l->err[i] == CANARY);
    if (l->cfg != NULL) {
        check_config(in, l->cfg);
        return;
    }
    CHECK(memchr(l->err, '\0', ERRLEN) != NULL);
    CHECK(l->err[0] != '\0');
    check_quiet(in, in->secret, l->err);
}

/* Sets $REDIS_URL to value, or unsets it (NULL). Through putenv and a
 * buffer of our own: glibc's setenv keeps every value it was ever given,
 * which over millions of runs adds up. */
static void set_redis_url(const char *value)
{
    static char *buf;
    static size_t cap;
    size_t need;

    if (value == NULL) {
        CHECK(unsetenv("REDIS_URL") == 0);
        return;
    }
    need = sizeof("REDIS_URL=") + strlen(value);
    if (need > cap) {
        char *grown = malloc(need);

        CHECK(grown != NULL);
        snprintf(grown, need, "REDIS_URL=%s", value);
        CHECK(putenv(grown) == 0);
        free(buf);              /* no longer in the environment */
        buf = grown;
        cap = need;
        return;
    }
    snprintf(buf, cap, "REDIS_URL=%s", value);
    CHECK(putenv(buf) == 0);
}

/* Loads file (or none) with --redis_url url (or none), with $REDIS_URL set
 * to env or unset. */
static void load_with(const input *in, load *l, const char *file, const char *url,
                      const char *env)
{
    const char *names[] = {"redis_url"}, *values[] = {url};
    fm_config_args args = {.file = file, .nover = url != NULL, .names = names,
                           .values = values};

    set_redis_url(env);
    memset(l->err, CANARY, sizeof(l->err));
    l->cfg = fm_config_load(&args, l->err, ERRLEN);
    check_load(in, l);
}

/* --redis_url url as the daemon's command line gives it: two arguments,
 * or one with '='. */
static void load_argv(const input *in, load *l, int joined)
{
    char prog[] = "fmredisd", flag[] = "--redis_url";
    char *eq = malloc(in->url.n + sizeof(flag) + 1);
    char *argv[] = {prog, joined ? eq : flag, in->url.p, NULL};
    fm_config_args args;
    char err[ERRLEN];

    CHECK(eq != NULL);
    snprintf(eq, in->url.n + sizeof(flag) + 1, "%s=%s", flag, in->url.p);
    CHECK(fm_config_parse_args(joined ? 2 : 3, argv, &args, err, sizeof(err)) == 0);
    CHECK(args.nover == 1 && strcmp(args.names[0], "redis_url") == 0);
    CHECK(strcmp(args.values[0], in->url.p) == 0);
    set_redis_url(NULL);
    memset(l->err, CANARY, sizeof(l->err));
    l->cfg = fm_config_load(&args, l->err, ERRLEN);
    check_load(in, l);
    fm_config_args_free(&args);
    free(eq);
}

static void no_difference(const char *name, int live, void *arg)
{
    (void)live;
    (void)arg;
    fprintf(stderr, "fuzz_config: %s differs\n", name);
    abort();
}

static void only_live(const char *name, int live, void *arg)
{
    (void)arg;
    if (!live) {
        fprintf(stderr, "fuzz_config: %s was carried over, and differs\n", name);
        abort();
    }
}

/* Two loads of the same things end alike. */
static void check_same(const load *a, const load *b)
{
    CHECK((a->cfg == NULL) == (b->cfg == NULL));
    if (a->cfg != NULL)
        fm_config_diff(a->cfg, b->cfg, no_difference, NULL);
    else
        CHECK(strcmp(a->err, b->err) == 0);
}

/* What a URL decodes to is the same whichever source gave it. */
static void check_same_url(const fm_config *a, const fm_config *b)
{
    CHECK((a->redis.host == NULL) == (b->redis.host == NULL));
    CHECK(a->redis.host == NULL || strcmp(a->redis.host, b->redis.host) == 0);
    CHECK((a->redis.path == NULL) == (b->redis.path == NULL));
    CHECK(a->redis.path == NULL || strcmp(a->redis.path, b->redis.path) == 0);
    CHECK(a->redis.port == b->redis.port && a->redis_db == b->redis_db);
    CHECK(a->redis_tls == b->redis_tls);
    CHECK((a->redis_user == NULL) == (b->redis_user == NULL));
    CHECK(a->redis_user == NULL || strcmp(a->redis_user, b->redis_user) == 0);
    CHECK(strcmp(a->redis_url, b->redis_url) == 0);
}

/* l refused the URL that alone refused, with the same message after
 * l's prefix (where the URL came from). */
static void check_same_refusal(const load *l, const load *alone, const char *prefix)
{
    size_t n, m;

    CHECK(l->cfg == NULL && alone->cfg == NULL);
    n = strlen(prefix);
    m = strlen(alone->err + 2);
    CHECK(strncmp(alone->err, "--", 2) == 0);
    CHECK(strncmp(l->err, prefix, n) == 0);
    CHECK(strlen(l->err) >= n + m && strcmp(l->err + strlen(l->err) - m, alone->err + 2) == 0);
}

/* l loaded the valid file with the URL that alone loaded on its own,
 * given as prefix says. The same URLs are accepted, and refused with
 * alone's message after the prefix; but a URL alone accepts may conflict
 * with the file's directives (a database other than 0 with
 * redis_cluster_nodes, a redis_tls_* directive without rediss://), a refusal
 * that blames no line and no source of the URL. */
static void check_with_url(const load *l, const load *alone, const char *prefix)
{
    if (l->cfg != NULL) {
        CHECK(alone->cfg != NULL);
        check_same_url(l->cfg, alone->cfg);
    } else if (alone->cfg == NULL) {
        check_same_refusal(l, alone, prefix);
    } else {
        CHECK(strncmp(l->err, conf_path, strlen(conf_path)) != 0);
        CHECK(strncmp(l->err, "--", 2) != 0 && strncmp(l->err, "$REDIS_URL", 10) != 0);
    }
}

/* The file alone was refused once every line was read: its directives
 * conflict. A URL from the command line or the environment can make, cure
 * or change such a conflict (redis_cluster_nodes with the database the URL
 * names, redis_tls_* directives with its scheme), so the load may go
 * either way; but no line of the file is to blame, and what it accepts is
 * the URL alone's. */
static void check_after_conflict(const load *l, const load *file0, const load *alone,
                                 const char *prefix)
{
    CHECK(l->cfg != NULL || strncmp(l->err, conf_path, strlen(conf_path)) != 0);
    if (l->cfg != NULL) {
        CHECK(alone->cfg != NULL);
        check_same_url(l->cfg, alone->cfg);
    } else if (alone->cfg == NULL && strcmp(l->err, file0->err) != 0) {
        /* A refusal that is not the file's conflict is the URL's own. */
        check_same_refusal(l, alone, prefix);
    }
}

/* Whether the URL reads back the same as a file's value: no control
 * character, nothing the line parser trims or unquotes. */
static int file_safe(const text *url)
{
    if (url->n == 0 || url->p[0] == ' ' || url->p[0] == '"' || url->p[url->n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < url->n; i++)
        if ((unsigned char)url->p[i] < 0x20 || url->p[i] == 0x7f)
            return 0;
    return 1;
}

/* The file, then the command line, then $REDIS_URL, then a file line: all
 * against the file alone (file0) and the URL alone (alone). */
static void check_sources(const input *in, const load *file0, const load *alone)
{
    int file_failed = file0->cfg == NULL;
    int in_file = !file_failed && (file0->cfg->given >> url_index & 1);
    int named = file_failed && strncmp(file0->err, conf_path, strlen(conf_path)) == 0;
    load l;

    /* --redis_url after the file. */
    load_with(in, &l, conf_path, in->url.p, NULL);
    if (named) {
        CHECK(l.cfg == NULL && strcmp(l.err, file0->err) == 0);
    } else if (file_failed) {
        check_after_conflict(&l, file0, alone, "--");
    } else {
        check_with_url(&l, alone, "--");
    }
    fm_config_free(l.cfg);

    /* $REDIS_URL, which a file's redis_url (and an empty value) overrides. */
    load_with(in, &l, conf_path, NULL, in->url.p);
    if (named || in_file || in->url.n == 0) {
        check_same(&l, file0);
    } else if (file_failed) {
        check_after_conflict(&l, file0, alone, "$REDIS_URL: ");
    } else {
        check_with_url(&l, alone, "$REDIS_URL: ");
    }
    fm_config_free(l.cfg);

    /* A line of the file. */
    if (!file_safe(&in->url))
        return;
    {
        text t = {0};

        put(&t, in->file.p, in->file.n);
        puts_text(&t, "\nredis_url ");
        put(&t, in->url.p, in->url.n);
        puts_text(&t, "\n");
        fill(conf_fd, t.p, t.n);
        free(t.p);
    }
    load_with(in, &l, conf_path, NULL, NULL);
    if (named) {
        CHECK(l.cfg == NULL && strcmp(l.err, file0->err) == 0);
    } else if (!file_failed) {
        check_with_url(&l, alone, conf_path);
    }
    fm_config_free(l.cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in;
    load file0, again, alone, joined;

    if (size == 0)
        return 0;
    split_input(&in, data, size);
    fill(conf_fd, in.file.p, in.file.n);
    fill(pass_fd, in.pass, in.passlen);

    load_with(&in, &file0, conf_path, NULL, NULL);
    load_with(&in, &again, conf_path, NULL, NULL);
    check_same(&file0, &again);

    if (in.has_url) {
        load_argv(&in, &alone, 0);
        load_argv(&in, &joined, 1);
        check_same(&alone, &joined);
        if (alone.cfg == NULL)
            CHECK(strncmp(alone.err, "--redis_url: ", 13) == 0);
        else
            CHECK(strcmp(alone.cfg->redis_url, in.url.p) == 0);
        check_sources(&in, &file0, &alone);
        /* A reload to the URL keeps what needs a restart. */
        if (file0.cfg != NULL && alone.cfg != NULL) {
            fm_config_carry_restart(alone.cfg, again.cfg);
            fm_config_diff(alone.cfg, file0.cfg, only_live, NULL);
        }
        fm_config_free(alone.cfg);
        fm_config_free(joined.cfg);
    }
    fm_config_free(file0.cfg);
    fm_config_free(again.cfg);
    free(in.file.p);
    free(in.url.p);
    return 0;
}
