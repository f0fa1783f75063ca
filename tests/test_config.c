/* test_config.c -- fmredisd.conf, --name value and $REDIS_URL: the parser
 * (daemon/config.c, linked in) tested directly, and the binary's `-t` and
 * SIGHUP reload tested through real processes.
 *
 * Files are written into one temporary directory per TCase (an unchecked
 * fixture makes it and removes it). Tests that look at $REDIS_URL set or
 * clear it themselves; each runs in its own forked process. */
#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fm_tests.h"
#include "harness.h"
#include "log.h"
#include "proc.h"
#include "wire.h"

#define TCASE_TIMEOUT 30
#define RUN_MS 10000

static char dir[256];

/* ---- helpers ------------------------------------------------------------ */

static void dir_up(void)
{
    snprintf(dir, sizeof(dir), "/tmp/fmtest-config.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void dir_down(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[600];

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

/* dir/name (free it). */
static char *path_of(const char *name)
{
    char *p = NULL;

    ck_assert_int_ge(asprintf(&p, "%s/%s", dir, name), 0);
    return p;
}

/* Writes text to dir/name (replacing it) and returns the path (free it). */
static char *write_file(const char *name, const char *text)
{
    char *path = path_of(name), *tmp = NULL;
    FILE *f;

    /* Whole or nothing: a reloading daemon never sees half a file. */
    ck_assert_int_ge(asprintf(&tmp, "%s.tmp", path), 0);
    f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
    free(tmp);
    return path;
}

/* Loads file (or none) with the overrides given as name, value, ...,
 * NULL. Returns the configuration, or NULL with the message in err. */
static fm_config *load_args(const char *file, const char *const *over, char *err, size_t errlen)
{
    const char *names[16], *values[16];
    fm_config_args args = {.file = file, .names = names, .values = values};

    for (size_t i = 0; over != NULL && over[i] != NULL; i += 2) {
        ck_assert_uint_lt(args.nover, 16);
        names[args.nover] = over[i];
        values[args.nover++] = over[i + 1];
    }
    err[0] = '\0';
    return fm_config_load(&args, err, errlen);
}

/* Loads text as a configuration file; fails the test when it is refused. */
static fm_config *load_ok(const char *text, const char *const *over)
{
    char err[600], *path = text ? write_file("test.conf", text) : NULL;
    fm_config *cfg = load_args(path, over, err, sizeof(err));

    ck_assert_msg(cfg != NULL, "refused: %s\n--- file ---\n%s", err, text ? text : "(none)");
    free(path);
    return cfg;
}

/* Loads text as a file that must be refused with a message holding every
 * one of the NULL-terminated needles; "@" in a needle stands for the file's
 * path. */
static void expect_refused(const char *text, const char *const *over, ...)
{
    char err[600], *path = text ? write_file("test.conf", text) : NULL;
    fm_config *cfg = load_args(path, over, err, sizeof(err));
    const char *needle;
    va_list ap;

    ck_assert_msg(cfg == NULL, "accepted:\n%s", text ? text : "(overrides only)");
    va_start(ap, over);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        char *want = NULL;
        const char *at = strchr(needle, '@');

        if (at != NULL)
            want = wire_strf("%.*s%s%s", (int)(at - needle), needle, path, at + 1);
        ck_assert_msg(strstr(err, want ? want : needle) != NULL,
                      "message \"%s\" lacks \"%s\" (file: %s)", err, want ? want : needle,
                      text ? text : "(none)");
        free(want);
    }
    va_end(ap);
    free(path);
}

/* Runs the daemon binary with args (NULL-terminated); returns its status. */
static int run_daemon(fmt_proc *p, const char *const *args)
{
    const char *argv[16] = {fmt_daemon_path()};
    int n = 1;

    for (int i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return fmt_run(p, argv, NULL, NULL, RUN_MS);
}

/* ---- the contract's directives ------------------------------------------ */

typedef enum { K_STR, K_INT, K_MODE, K_LEVEL, K_FORMAT } kind;

typedef struct directive_case {
    const char *name;
    kind k;
    size_t off;
    const char *def;    /* the contract's default as text; NULL: unset */
    const char *other;  /* another valid value; NULL: tested elsewhere */
} directive_case;

#define F(f) offsetof(fm_config, f)
static const directive_case contract[] = {
    {"socket", K_STR, F(socket), "/run/fmredisd/fmredisd.sock", "/tmp/fmtest-other.sock"},
    {"socket_mode", K_MODE, F(socket_mode), "0660", "0600"},
    {"socket_group", K_STR, F(socket_group), NULL, "0"},
    {"redis_url", K_STR, F(redis_url), "redis://127.0.0.1:6379/0", "redis://other:6380/1"},
    {"redis_password_file", K_STR, F(redis_password_file), NULL, NULL},
    {"request_timeout_ms", K_INT, F(request_timeout_ms), "5000", "250"},
    {"lock_key_prefix", K_STR, F(lock_key_prefix), "fm:lock:", "other:lock:"},
    {"lock_default_ttl_ms", K_INT, F(lock_default_ttl_ms), "30000", "2147483647"},
    {"lock_retry_delay_ms", K_INT, F(lock_retry_delay_ms), "100", "1"},
    {"lock_max_retries", K_INT, F(lock_max_retries), "50", "0"},
    {"lock_release_channel", K_STR, F(lock_release_channel), "fm:lock:released", "rel"},
    {"wake_channel", K_STR, F(wake_channel), "fm:wake", "other:wake"},
    {"cache_key_prefix", K_STR, F(cache_key_prefix), "fm:exec:", "other:exec:"},
    {"cache_ttl_ms", K_INT, F(cache_ttl_ms), "60000", "1"},
    {"max_clients", K_INT, F(max_clients), "4096", "10"},
    {"max_frame_bytes", K_INT, F(max_frame_bytes), "1048576", "4096"},
    {"max_inflight_per_client", K_INT, F(max_inflight_per_client), "256", "1"},
    {"max_batch", K_INT, F(max_batch), "10000", "1"},
    {"max_output_bytes", K_INT, F(max_output_bytes), "67108864", "1048576"},
    {"log_level", K_LEVEL, F(log_level), "info", "debug"},
    {"reconnect_step_ms", K_INT, F(reconnect_step_ms), "50", "10"},
    {"reconnect_max_ms", K_INT, F(reconnect_max_ms), "2000", "60000"},
    {"allow_uids", K_STR, F(allow_uids), NULL, "0 1"},
    {"allow_gids", K_STR, F(allow_gids), NULL, "0,1"},
    {"redis_sentinels", K_STR, F(redis_sentinels), NULL, NULL},
    {"redis_sentinel_master", K_STR, F(redis_sentinel_master), NULL, NULL},
    {"redis_cluster_nodes", K_STR, F(redis_cluster_nodes), NULL, NULL},
    {"redis_sentinel_password", K_STR, F(redis_sentinel_password), NULL, NULL},
    {"lock_value_format", K_FORMAT, F(lock_value_format), "token", "flowmonkey-json"},
};
#undef F
#define NCONTRACT (sizeof(contract) / sizeof(contract[0]))

/* The directive's value in cfg as the file would spell it; NULL: unset. */
static const char *value_text(const fm_config *cfg, const directive_case *d)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    static const char *const formats[] = {"token", "flowmonkey-json"};
    static char buf[64];
    const char *p = (const char *)cfg + d->off;
    int level;

    switch (d->k) {
    case K_STR:
        return *(char *const *)p;
    case K_INT:
        snprintf(buf, sizeof(buf), "%lld", (long long)*(const int64_t *)p);
        return buf;
    case K_MODE:
        snprintf(buf, sizeof(buf), "0%o", (unsigned)*(const int *)p);
        return buf;
    case K_LEVEL:
        level = *(const int *)p;
        return level >= 0 && level < 4 ? levels[level] : "?";
    case K_FORMAT:
        level = *(const int *)p;
        return level >= 0 && level < 2 ? formats[level] : "?";
    }
    return "?";
}

static void assert_value(const fm_config *cfg, const directive_case *d, const char *want,
                         const char *how)
{
    const char *got = value_text(cfg, d);

    if (want == NULL)
        ck_assert_msg(got == NULL || *got == '\0', "%s %s: want unset, got \"%s\"", how,
                      d->name, got);
    else
        ck_assert_msg(got != NULL && strcmp(got, want) == 0, "%s %s: want \"%s\", got \"%s\"",
                      how, d->name, want, got ? got : "(unset)");
}

START_TEST(test_every_default_of_the_contract)
{
    fm_config *cfg;

    unsetenv("REDIS_URL");
    cfg = load_ok(NULL, NULL);
    for (size_t i = 0; i < NCONTRACT; i++)
        assert_value(cfg, &contract[i], contract[i].def, "default");
    /* What the default URL means. */
    ck_assert_str_eq(cfg->redis.host, "127.0.0.1");
    ck_assert_int_eq(cfg->redis.port, 6379);
    ck_assert_ptr_null(cfg->redis.path);
    ck_assert_int_eq(cfg->redis_db, 0);
    ck_assert_ptr_null(cfg->redis_user);
    ck_assert_ptr_null(cfg->redis_password);
    ck_assert_uint_eq(cfg->nuids + cfg->ngids, 0);
    fm_config_free(cfg);
}
END_TEST

START_TEST(test_every_contract_directive_is_known)
{
    for (size_t i = 0; i < NCONTRACT; i++) {
        int found = 0;

        for (size_t j = 0; j < fm_config_count(); j++)
            found |= strcmp(fm_config_name(j), contract[i].name) == 0;
        ck_assert_msg(found, "directive %s is missing", contract[i].name);
    }
    ck_assert_ptr_null(fm_config_name(fm_config_count()));
}
END_TEST

/* Each directive can be set in the file and as --name value. */
START_TEST(test_every_directive_from_file_and_command_line)
{
    unsetenv("REDIS_URL");
    for (size_t i = 0; i < NCONTRACT; i++) {
        const directive_case *d = &contract[i];
        const char *over[] = {d->name, d->other, NULL};
        char *text;
        fm_config *cfg;

        if (d->other == NULL)
            continue;
        text = wire_strf("%s %s\n", d->name, d->other);
        cfg = load_ok(text, NULL);
        assert_value(cfg, d, d->other, "file");
        fm_config_free(cfg);
        cfg = load_ok(NULL, over);
        assert_value(cfg, d, d->other, "--name");
        fm_config_free(cfg);
        free(text);
    }
}
END_TEST

START_TEST(test_check_only_with_defaults_exits_0)
{
    static const char *const args[] = {"-t", NULL};
    fmt_proc p;

    unsetenv("REDIS_URL");
    ck_assert_int_eq(run_daemon(&p, args), 0);
    fmt_proc_free(&p);
}
END_TEST

/* ---- the file ----------------------------------------------------------- */

START_TEST(test_comments_and_blank_lines)
{
    fm_config *cfg = load_ok("# a comment\n"
                             "\n"
                             "   \t\n"
                             "   # an indented comment\n"
                             "#max_batch 1\n"
                             "\tmax_batch \t 7 \t\n"
                             "# max_batch 2\n"
                             "cache_key_prefix c#1\n",
                             NULL);

    ck_assert_int_eq(cfg->max_batch, 7);
    /* A '#' inside a value is part of it. */
    ck_assert_str_eq(cfg->cache_key_prefix, "c#1");
    fm_config_free(cfg);
}
END_TEST

START_TEST(test_values_are_trimmed_and_may_be_quoted)
{
    fm_config *cfg = load_ok("wake_channel   two words  \n"
                             "lock_key_prefix \"  spaced  \"\n"
                             "cache_key_prefix \"say \\\"hi\\\" \\\\ bye\"\n"
                             "lock_release_channel \"# not a comment\"\n"
                             "socket \"/tmp/quoted path.sock\"\n"
                             "max_batch \"12\"\n",
                             NULL);

    ck_assert_str_eq(cfg->wake_channel, "two words");
    ck_assert_str_eq(cfg->lock_key_prefix, "  spaced  ");
    ck_assert_str_eq(cfg->cache_key_prefix, "say \"hi\" \\ bye");
    ck_assert_str_eq(cfg->lock_release_channel, "# not a comment");
    ck_assert_str_eq(cfg->socket, "/tmp/quoted path.sock");
    ck_assert_int_eq(cfg->max_batch, 12);
    fm_config_free(cfg);
}
END_TEST

START_TEST(test_bad_quoting_is_an_error_naming_the_line)
{
    expect_refused("# one\nwake_channel \"unterminated\n", NULL, "@:2:", NULL);
    expect_refused("wake_channel \"a\\nb\"\n", NULL, "@:1:", NULL);
    expect_refused("wake_channel \"a\" b\n", NULL, "@:1:", NULL);
    expect_refused("\n\nwake_channel\n", NULL, "@:3:", NULL);
}
END_TEST

START_TEST(test_the_last_directive_wins)
{
    fm_config *cfg = load_ok("max_batch 5\nwake_channel a\nmax_batch 7\nwake_channel b\n", NULL);

    ck_assert_int_eq(cfg->max_batch, 7);
    ck_assert_str_eq(cfg->wake_channel, "b");
    fm_config_free(cfg);
}
END_TEST

START_TEST(test_unknown_directive_names_file_and_line)
{
    static const char text[] = "max_batch 5\n\n# comment\nnonsense 1\n";

    expect_refused(text, NULL, "@:4:", "nonsense", NULL);
    /* Names are case-sensitive. */
    expect_refused("MAX_BATCH 5\n", NULL, "@:1:", "MAX_BATCH", NULL);
}
END_TEST

START_TEST(test_unknown_directive_through_the_binary)
{
    char *path = write_file("bad.conf", "# fine\nmax_batch 5\nnonsense 1\n");
    char *want = wire_strf("%s:3", path);
    const char *const args[] = {"-t", "-c", path, NULL};
    fmt_proc p;

    ck_assert_int_eq(run_daemon(&p, args), 1);
    ck_assert_msg(strstr(p.text[2], want) != NULL, "stderr: %s", p.text[2]);
    ck_assert_msg(strstr(p.text[2], "nonsense") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    free(want);
    free(path);
}
END_TEST

START_TEST(test_valid_file_through_the_binary)
{
    char *path = write_file("good.conf", "# fine\nmax_batch 5\nlog_level debug\n");
    const char *const args[] = {"-t", "-c", path, NULL};
    fmt_proc p;

    ck_assert_int_eq(run_daemon(&p, args), 0);
    fmt_proc_free(&p);
    free(path);
}
END_TEST

START_TEST(test_missing_file_is_an_error_naming_it)
{
    char *path = path_of("does-not-exist.conf");
    const char *const args[] = {"-t", "-c", path, NULL};
    char err[600];
    fmt_proc p;

    ck_assert_ptr_null(load_args(path, NULL, err, sizeof(err)));
    ck_assert_msg(strstr(err, path) != NULL, "message: %s", err);
    ck_assert_int_eq(run_daemon(&p, args), 1);
    ck_assert_msg(strstr(p.text[2], path) != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    free(path);
}
END_TEST

/* Each of the n lines, as line 2 of a file that goes on with rest, is refused
 * with a message naming the file, the line and the directive. */
static void expect_line_2_refused(const char *const *lines, size_t n, const char *rest)
{
    for (size_t i = 0; i < n; i++) {
        char *text = wire_strf("# line one\n%s\n%s", lines[i], rest);
        char name[64];

        sscanf(lines[i], "%63s", name);
        expect_refused(text, NULL, "@:2:", name, NULL);
        free(text);
    }
}

START_TEST(test_bad_values_name_file_line_and_directive)
{
    static const char *const lines[] = {
        "request_timeout_ms abc", "request_timeout_ms 12x", "request_timeout_ms 1.5",
        "request_timeout_ms 1e3", "request_timeout_ms 0x10", "request_timeout_ms +5",
        "request_timeout_ms -5", "request_timeout_ms 0", "request_timeout_ms 2147483648",
        "request_timeout_ms 99999999999999999999", "request_timeout_ms \"\"",
        "lock_default_ttl_ms 0", "lock_retry_delay_ms 0", "lock_max_retries -1",
        "cache_ttl_ms 0", "max_clients 0", "max_clients many", "max_batch 0",
        "max_inflight_per_client 0", "max_frame_bytes -1", "max_output_bytes x",
        "reconnect_step_ms 0", "reconnect_max_ms 0",
        "socket_mode 0999", "socket_mode 8", "socket_mode rw", "socket_mode -1",
        "socket_mode 01777777",
        "log_level verbose", "log_level 3", "log_level \"\"",
        "socket \"\"",
    };

    expect_line_2_refused(lines, sizeof(lines) / sizeof(lines[0]), "");
}
END_TEST

/* Values checked once the whole file is read (a URL, user names, a
 * password file) are bad values too: the message still names the line. */
START_TEST(test_values_checked_after_reading_name_file_and_line)
{
    static const char *const lines[] = {
        "redis_url http://host",
        "redis_url rediss://host:tls",
        "allow_uids no-such-user-fmtest",
        "allow_gids no-such-group-fmtest",
        "redis_password_file /nonexistent/fmtest-password",
    };

    expect_line_2_refused(lines, sizeof(lines) / sizeof(lines[0]), "max_batch 5\n");
}
END_TEST

START_TEST(test_control_characters_in_values_are_refused)
{
    expect_refused("# one\nwake_channel a\001b\n", NULL, "@:2:", "wake_channel", NULL);
}
END_TEST

START_TEST(test_socket_path_of_108_bytes_is_refused)
{
    char p107[108], p108[109], *text;
    fm_config *cfg;
    const char *over[] = {"socket", p108, NULL};

    p107[0] = p108[0] = '/';
    memset(p107 + 1, 's', 106);
    memset(p108 + 1, 's', 107);
    p107[107] = p108[108] = '\0';

    text = wire_strf("socket %s\n", p107);
    cfg = load_ok(text, NULL);
    ck_assert_str_eq(cfg->socket, p107);
    fm_config_free(cfg);
    free(text);

    text = wire_strf("# one\nsocket %s\n", p108);
    expect_refused(text, NULL, "@:2:", "socket", NULL);
    expect_refused(NULL, over, "socket", NULL);
    free(text);
}
END_TEST

/* ---- the command line --------------------------------------------------- */

START_TEST(test_command_line_wins_over_the_file)
{
    static const char *const over[] = {"max_batch", "9", "wake_channel", "cli", NULL};
    fm_config *cfg = load_ok("max_batch 5\nwake_channel file\ncache_ttl_ms 7\n", over);
    char err[600];
    fm_config_args args;
    char a0[] = "fmredisd", a1[] = "--max_batch=11", a2[] = "--cache_ttl_ms", a3[] = "8";
    char *argv[] = {a0, a1, a2, a3, NULL};

    ck_assert_int_eq(cfg->max_batch, 9);
    ck_assert_str_eq(cfg->wake_channel, "cli");
    ck_assert_int_eq(cfg->cache_ttl_ms, 7);
    fm_config_free(cfg);

    /* As the daemon parses its argv: --name value and --name=value. */
    ck_assert_int_eq(fm_config_parse_args(4, argv, &args, err, sizeof(err)), 0);
    cfg = fm_config_load(&args, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_eq(cfg->max_batch, 11);
    ck_assert_int_eq(cfg->cache_ttl_ms, 8);
    fm_config_free(cfg);
    fm_config_args_free(&args);
}
END_TEST

START_TEST(test_bad_command_line_values_are_refused)
{
    static const char *const unknown[] = {"nonsense", "1", NULL};
    static const char *const bad[] = {"max_batch", "0", NULL};

    expect_refused(NULL, unknown, "nonsense", NULL);
    expect_refused(NULL, bad, "max_batch", NULL);
    /* The command line does not excuse an error in the file. */
    expect_refused("nonsense 1\n", (const char *const[]){"max_batch", "9", NULL}, "@:1:", NULL);
}
END_TEST

START_TEST(test_command_line_through_the_binary)
{
    char *path = write_file("cli.conf", "max_batch 5\n");
    const char *const good[] = {"-t", "-c", path, "--max_batch", "9", NULL};
    const char *const bad[] = {"-t", "-c", path, "--max_batch", "0", NULL};
    const char *const unknown[] = {"-t", "--nonsense", "1", NULL};
    fmt_proc p;

    ck_assert_int_eq(run_daemon(&p, good), 0);
    fmt_proc_free(&p);
    ck_assert_int_eq(run_daemon(&p, bad), 1);
    ck_assert_msg(strstr(p.text[2], "max_batch") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    ck_assert_int_eq(run_daemon(&p, unknown), 1);
    ck_assert_msg(strstr(p.text[2], "nonsense") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    free(path);
}
END_TEST

/* A frame's length is 32 bits, and so is the length the flush hands on. */
START_TEST(test_max_output_bytes_fits_a_frame_length)
{
    static const char *const over[] = {"-t", "--max_output_bytes", "4294967296", NULL};
    static const char *const max[] = {"-t", "--max_output_bytes", "4294967295", NULL};
    fmt_proc p;

    unsetenv("REDIS_URL");
    ck_assert_int_eq(run_daemon(&p, over), 1);
    ck_assert_msg(strstr(p.text[2], "max_output_bytes") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    ck_assert_msg(run_daemon(&p, max) == 0, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
}
END_TEST

/* ---- redis_url ---------------------------------------------------------- */

START_TEST(test_redis_url_from_the_environment)
{
    static const char *const over[] = {"redis_url", "redis://cli:3/4", NULL};
    fm_config *cfg;

    setenv("REDIS_URL", "redis://envhost:7000/2", 1);
    cfg = load_ok(NULL, NULL);
    ck_assert_str_eq(cfg->redis_url, "redis://envhost:7000/2");
    ck_assert_str_eq(cfg->redis.host, "envhost");
    ck_assert_int_eq(cfg->redis.port, 7000);
    ck_assert_int_eq(cfg->redis_db, 2);
    fm_config_free(cfg);

    /* The file and the command line both win over the environment. */
    cfg = load_ok("redis_url redis://filehost/1\n", NULL);
    ck_assert_str_eq(cfg->redis.host, "filehost");
    ck_assert_int_eq(cfg->redis_db, 1);
    fm_config_free(cfg);
    cfg = load_ok("redis_url redis://filehost/1\n", over);
    ck_assert_str_eq(cfg->redis.host, "cli");
    fm_config_free(cfg);

    setenv("REDIS_URL", "bogus://x", 1);
    expect_refused(NULL, NULL, "redis_url", "bogus://x", NULL);
    /* A file that names its own URL does not care. */
    cfg = load_ok("redis_url redis://filehost/1\n", NULL);
    fm_config_free(cfg);
    unsetenv("REDIS_URL");
}
END_TEST

typedef struct url_case {
    const char *url;
    const char *host, *path;    /* one of them is NULL */
    int port, db;
    const char *user, *password;
} url_case;

START_TEST(test_redis_url_forms)
{
    static const url_case cases[] = {
        {"redis://host", "host", NULL, 6379, 0, NULL, NULL},
        {"redis://host/", "host", NULL, 6379, 0, NULL, NULL},
        {"redis://host:6380", "host", NULL, 6380, 0, NULL, NULL},
        {"redis://host:6380/5", "host", NULL, 6380, 5, NULL, NULL},
        {"redis://10.0.0.1/15", "10.0.0.1", NULL, 6379, 15, NULL, NULL},
        {"redis://user:pass@host", "host", NULL, 6379, 0, "user", "pass"},
        {"redis://user:p%40ss%2Fw%3a@host:1/2", "host", NULL, 1, 2, "user", "p@ss/w:"},
        {"redis://:secret@host", "host", NULL, 6379, 0, NULL, "secret"},
        {"redis://us%40er:pw@host", "host", NULL, 6379, 0, "us@er", "pw"},
        {"unix:///var/run/redis.sock", NULL, "/var/run/redis.sock", 0, 0, NULL, NULL},
        {"unix:///var/run/redis.sock?db=3", NULL, "/var/run/redis.sock", 0, 3, NULL, NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const url_case *c = &cases[i];
        const char *over[] = {"redis_url", c->url, NULL};
        fm_config *cfg = load_ok(NULL, over);

        if (c->host != NULL) {
            ck_assert_msg(cfg->redis.host && strcmp(cfg->redis.host, c->host) == 0,
                          "%s: host %s", c->url, cfg->redis.host);
            ck_assert_msg(cfg->redis.port == c->port, "%s: port %d", c->url, cfg->redis.port);
        } else {
            ck_assert_msg(cfg->redis.path && strcmp(cfg->redis.path, c->path) == 0,
                          "%s: path %s", c->url, cfg->redis.path);
            ck_assert_ptr_null(cfg->redis.host);
        }
        ck_assert_msg(cfg->redis_db == c->db, "%s: db %d", c->url, cfg->redis_db);
        ck_assert_msg((c->user == NULL) == (cfg->redis_user == NULL) &&
                      (c->user == NULL || strcmp(c->user, cfg->redis_user) == 0),
                      "%s: user %s", c->url, cfg->redis_user);
        ck_assert_msg((c->password == NULL) == (cfg->redis_password == NULL) &&
                      (c->password == NULL || strcmp(c->password, cfg->redis_password) == 0),
                      "%s: password %s", c->url, cfg->redis_password);
        fm_config_free(cfg);
    }
}
END_TEST

START_TEST(test_bad_redis_urls_are_refused)
{
    static const char *const urls[] = {
        "http://host", "redis:/host", "host:6379", "redis://", "redis://:pw@",
        "redis://host:0", "redis://host:65536", "redis://host:port", "redis://host:",
        "redis://host/db", "redis://host/-1", "redis://us%zzer:pw@host", "redis://u:p%4@host",
        "unix://", "unix://relative/path", "unix:///path?db=x", "unix:///path?database=1",
    };

    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        const char *over[] = {"redis_url", urls[i], NULL};
        char *text = wire_strf("# one\nredis_url %s\n", urls[i]);

        expect_refused(NULL, over, "redis_url", NULL);
        expect_refused(text, NULL, "redis_url", NULL);
        free(text);
    }
}
END_TEST

/* rediss:// is redis:// over TLS: the same parts, and TLS on. */
START_TEST(test_rediss_urls_turn_tls_on)
{
    static const char *const plain[] = {"redis_url", "redis://host:6380/1", NULL};
    static const char *const tls[] = {"redis_url", "rediss://us%40er:pw@host:6380/2", NULL};
    static const char *const bare[] = {"redis_url", "rediss://10.0.0.1", NULL};
    fm_config *cfg = load_ok(NULL, plain);

    ck_assert_int_eq(cfg->redis_tls, 0);
    fm_config_free(cfg);
    cfg = load_ok(NULL, tls);
    ck_assert_int_eq(cfg->redis_tls, 1);
    ck_assert_str_eq(cfg->redis.host, "host");
    ck_assert_int_eq(cfg->redis.port, 6380);
    ck_assert_int_eq(cfg->redis_db, 2);
    ck_assert_str_eq(cfg->redis_user, "us@er");
    ck_assert_str_eq(cfg->redis_password, "pw");
    ck_assert_int_eq(cfg->redis_tls_verify, 1);
    ck_assert_ptr_null(cfg->redis_tls_key);
    fm_config_free(cfg);
    cfg = load_ok(NULL, bare);
    ck_assert_int_eq(cfg->redis_tls, 1);
    ck_assert_str_eq(cfg->redis.host, "10.0.0.1");
    ck_assert_int_eq(cfg->redis.port, 6379);
    fm_config_free(cfg);
    expect_refused(NULL, (const char *const[]){"redis_url", "rediss://", NULL}, "redis_url",
                   NULL);
}
END_TEST

/* A TLS directive means nothing without TLS: refused, naming it, rather
 * than ignored. */
START_TEST(test_tls_directives_need_rediss)
{
    static const char *const names[] = {"redis_tls_ca_file", "redis_tls_ca_dir",
        "redis_tls_server_name", "redis_tls_cert_file", "redis_tls_key_file",
        "redis_tls_verify"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *over[] = {"redis_url", "redis://host", names[i], "yes", NULL};
        char *text = wire_strf("redis_url unix:///run/redis.sock\n%s yes\n", names[i]);

        expect_refused(NULL, over, names[i], "rediss://", NULL);
        expect_refused(text, NULL, names[i], "rediss://", NULL);
        /* A certificate and its key go together (the next test). */
        over[1] = "rediss://host";
        if (strstr(names[i], "_cert_") == NULL && strstr(names[i], "_key_") == NULL)
            fm_config_free(load_ok(NULL, over));
        free(text);
    }
    expect_refused(NULL, (const char *const[]){"redis_url", "rediss://host", "redis_tls_verify",
                                               "maybe", NULL}, "redis_tls_verify", NULL);
}
END_TEST

/* A client certificate and its key go together; the key is the credential
 * redis-tls-key when the unit loads one (LoadCredential=), else
 * redis_tls_key_file. */
START_TEST(test_tls_client_key_goes_with_its_certificate)
{
    char *cred = path_of("redis-tls-key");
    const char *both[] = {"redis_url", "rediss://host", "redis_tls_cert_file", "/c.pem",
                          "redis_tls_key_file", "/k.pem", "redis_tls_verify", "no", NULL};
    static const char *const cert[] = {"redis_url", "rediss://host", "redis_tls_cert_file",
                                       "/c.pem", NULL};
    static const char *const key[] = {"redis_url", "rediss://host", "redis_tls_key_file",
                                      "/k.pem", NULL};
    static const char *const none[] = {"redis_url", "rediss://host", NULL};
    fm_config *cfg = load_ok(NULL, both);

    ck_assert_str_eq(cfg->redis_tls_key, "/k.pem");
    ck_assert_str_eq(cfg->redis_tls_cert_file, "/c.pem");
    ck_assert_int_eq(cfg->redis_tls_verify, 0);
    fm_config_free(cfg);
    expect_refused(NULL, cert, "redis_tls_cert_file", "redis_tls_key_file", NULL);
    expect_refused(NULL, key, "redis_tls_key_file", "redis_tls_cert_file", NULL);

    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    /* The variable alone (another credential's) changes nothing. */
    cfg = load_ok(NULL, both);
    ck_assert_str_eq(cfg->redis_tls_key, "/k.pem");
    fm_config_free(cfg);
    free(write_file("redis-tls-key", "not read by the parser\n"));
    cfg = load_ok(NULL, both);
    ck_assert_str_eq(cfg->redis_tls_key, cred);
    fm_config_free(cfg);
    cfg = load_ok(NULL, cert);
    ck_assert_str_eq(cfg->redis_tls_key, cred);
    fm_config_free(cfg);
    expect_refused(NULL, none, "$CREDENTIALS_DIRECTORY/redis-tls-key", "redis_tls_cert_file",
                   NULL);
    unlink(cred);
    unsetenv("CREDENTIALS_DIRECTORY");
    free(cred);
}
END_TEST

/* The files are read at the start, so that fmredisd -t finds a bad one. */
START_TEST(test_tls_files_are_checked_by_check_only)
{
    char *ca = write_file("ca.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n"
                                    "-----END CERTIFICATE-----\n");
    const char *missing[] = {"-t", "--redis_url", "rediss://host", "--redis_tls_ca_file",
                             "/nonexistent/fmtest-ca.pem", NULL};
    const char *broken[] = {"-t", "--redis_url", "rediss://host", "--redis_tls_ca_file", ca,
                            NULL};
    static const char *const fine[] = {"-t", "--redis_url", "rediss://host", NULL};
    fmt_proc p;

    ck_assert_int_eq(run_daemon(&p, missing), 1);
    ck_assert_msg(strstr(p.text[2], "redis_tls_ca_file /nonexistent/fmtest-ca.pem: No such file")
                  != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    ck_assert_int_eq(run_daemon(&p, broken), 1);
    ck_assert_msg(strstr(p.text[2], "redis_tls_ca_file") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    /* The system's CA store. */
    ck_assert_int_eq(run_daemon(&p, fine), 0);
    fmt_proc_free(&p);
    free(ca);
}
END_TEST

/* Malformed URLs holding the user "admin" and the password "Sup3rS3cret",
 * sometimes split by an unescaped '/', ':' or '@'. Each must be refused
 * with a message that names redis_url and holds no piece of the user info,
 * however the parser cut the URL up. */
static const char *const leaky_urls[] = {
    "Redis://admin:Sup3rS3cret@host:6379/0",    /* the scheme's case */
    "redis//:Sup3rS3cret@host:6379/0",          /* no "://" */
    "http://admin:Sup3rS3cret@host",            /* another scheme */
    "admin:Sup3rS3cret@host:6379",              /* none at all */
    "redis://admin:Sup3r/S3cret@host:6379/0",   /* '/': "port" and "db" hold it */
    "redis://admin:Sup3r@S3cret@host:6379/0",   /* '@': the "host" holds it */
    "redis://admin:Sup3r:S3cret@host:6379/x",
    "redis://admin:Sup3rS3cret@host:0/0",
    "redis://admin:Sup3rS3cret@host:port",
    "redis://admin:Sup3rS3cret@host/-1",
    "redis://admin:Sup3rS3cret@",
    "redis://admin:Sup3rS3cret@[::1",
    "redis://ad%zzmin:Sup3rS3cret@host",
    "redis://admin:Sup3r%4S3cret@host",
};
static const char *const url_secrets[] = {"admin", "Sup3r", "S3cret", NULL};
#define NLEAKY (sizeof(leaky_urls) / sizeof(leaky_urls[0]))

static void assert_no_secret(const char *text, const char *url, const char *how)
{
    for (size_t i = 0; url_secrets[i] != NULL; i++)
        ck_assert_msg(strstr(text, url_secrets[i]) == NULL, "%s %s: \"%s\" printed in: %s",
                      how, url, url_secrets[i], text);
}

/* fmredisd -t with args refuses the URL without printing its user info. */
static void expect_quiet_refusal(const char *const *args, const char *url, const char *how)
{
    fmt_proc p;

    ck_assert_msg(run_daemon(&p, args) == 1, "%s %s accepted: %s", how, url, p.text[1]);
    ck_assert_msg(strstr(p.text[2], "redis_url") != NULL, "%s %s: %s", how, url, p.text[2]);
    assert_no_secret(p.text[1], url, how);
    assert_no_secret(p.text[2], url, how);
    fmt_proc_free(&p);
}

START_TEST(test_url_password_not_in_messages_from_the_parser)
{
    for (size_t i = 0; i < NLEAKY; i++) {
        const char *over[] = {"redis_url", leaky_urls[i], NULL};
        char *text = wire_strf("# one\nredis_url %s\n", leaky_urls[i]);
        char *path = write_file("leaky.conf", text), err[600];

        unsetenv("REDIS_URL");
        ck_assert_ptr_null(load_args(path, NULL, err, sizeof(err)));
        ck_assert_msg(strstr(err, ":2: redis_url") != NULL, "file: %s", err);
        assert_no_secret(err, leaky_urls[i], "file");
        ck_assert_ptr_null(load_args(NULL, over, err, sizeof(err)));
        ck_assert_msg(strstr(err, "redis_url") != NULL, "--redis_url: %s", err);
        assert_no_secret(err, leaky_urls[i], "--redis_url");
        setenv("REDIS_URL", leaky_urls[i], 1);
        ck_assert_ptr_null(load_args(NULL, NULL, err, sizeof(err)));
        ck_assert_msg(strstr(err, "$REDIS_URL: redis_url") != NULL, "$REDIS_URL: %s", err);
        assert_no_secret(err, leaky_urls[i], "$REDIS_URL");
        free(path);
        free(text);
    }
    unsetenv("REDIS_URL");
}
END_TEST

/* What is left of a redacted URL still says where the error is. (Not
 * expect_refused: its needles take '@' for the file's path.) */
START_TEST(test_url_messages_show_the_url_without_its_user_info)
{
    static const char *const cases[][2] = {
        {"Redis://admin:Sup3rS3cret@host:6379/0", "\"Redis://***@host:6379/0\""},
        {"redis//:Sup3rS3cret@host:6379/0", "\"***@host:6379/0\""},
        {"redis://a:b/c@host:6379/x", "\"redis://***@host:6379/x\""},
        {"redis://host:port", "\"redis://host:port\""},   /* no user info: whole */
    };
    char err[600];

    unsetenv("REDIS_URL");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *over[] = {"redis_url", cases[i][0], NULL};

        ck_assert_ptr_null(load_args(NULL, over, err, sizeof(err)));
        ck_assert_msg(strstr(err, cases[i][1]) != NULL, "message \"%s\" lacks %s", err,
                      cases[i][1]);
    }
}
END_TEST

START_TEST(test_url_password_not_printed_from_the_file)
{
    unsetenv("REDIS_URL");
    for (size_t i = 0; i < NLEAKY; i++) {
        char *text = wire_strf("redis_url %s\n", leaky_urls[i]);
        char *path = write_file("leaky.conf", text);
        const char *const args[] = {"-t", "-c", path, NULL};

        expect_quiet_refusal(args, leaky_urls[i], "-c");
        free(path);
        free(text);
    }
}
END_TEST

START_TEST(test_url_password_not_printed_from_the_command_line)
{
    unsetenv("REDIS_URL");
    for (size_t i = 0; i < NLEAKY; i++) {
        const char *const args[] = {"-t", "--redis_url", leaky_urls[i], NULL};
        char *joined = wire_strf("--redis_url=%s", leaky_urls[i]);
        const char *const args_eq[] = {"-t", joined, NULL};

        expect_quiet_refusal(args, leaky_urls[i], "--redis_url");
        expect_quiet_refusal(args_eq, leaky_urls[i], "--redis_url=");
        free(joined);
    }
}
END_TEST

START_TEST(test_url_password_not_printed_from_the_environment)
{
    static const char *const args[] = {"-t", NULL};

    for (size_t i = 0; i < NLEAKY; i++) {
        setenv("REDIS_URL", leaky_urls[i], 1);
        expect_quiet_refusal(args, leaky_urls[i], "$REDIS_URL");
    }
    unsetenv("REDIS_URL");
}
END_TEST

START_TEST(test_redis_password_file)
{
    static const struct {
        const char *content, *password;
    } cases[] = {
        {"s3cret\n", "s3cret"},
        {"s3cret", "s3cret"},
        {"with space \n", "with space "},
    };
    char *missing = path_of("no-password-file");
    const char *over_missing[] = {"redis_password_file", missing, NULL};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *pw = write_file("password", cases[i].content);
        char *text = wire_strf("redis_password_file %s\n", pw);
        fm_config *cfg = load_ok(text, NULL);

        ck_assert_str_eq(cfg->redis_password_file, pw);
        ck_assert_str_eq(cfg->redis_password, cases[i].password);
        fm_config_free(cfg);
        free(text);
        free(pw);
    }
    expect_refused(NULL, over_missing, "redis_password_file", missing, NULL);
    free(missing);
}
END_TEST

/* $CREDENTIALS_DIRECTORY/redis-password (systemd's LoadCredential=) wins
 * over redis_password_file, which wins over the URL; the credential is read
 * by the same rules as the file. */
START_TEST(test_credential_wins_over_the_password_file_and_the_url)
{
    static const char *const url[] = {"redis_url", "redis://:from-url@127.0.0.1:7000", NULL};
    char *file = write_file("password", "from-file\n");
    char *cred = path_of("redis-password");
    const char *with_file[] = {"redis_url", url[1], "redis_password_file", file, NULL};
    fm_config *cfg;

    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    /* The variable alone (another credential's) changes nothing. */
    cfg = load_ok(NULL, url);
    ck_assert_str_eq(cfg->redis_password, "from-url");
    fm_config_free(cfg);
    cfg = load_ok(NULL, with_file);
    ck_assert_str_eq(cfg->redis_password, "from-file");
    fm_config_free(cfg);

    free(write_file("redis-password", "from-credential\r\n"));
    cfg = load_ok(NULL, with_file);
    ck_assert_str_eq(cfg->redis_password, "from-credential");
    ck_assert_ptr_null(cfg->redis_user);
    fm_config_free(cfg);
    cfg = load_ok(NULL, url);
    ck_assert_str_eq(cfg->redis_password, "from-credential");
    fm_config_free(cfg);

    /* An ACL user from the URL, its password from the credential. */
    {
        static const char *const user[] = {"redis_url", "redis://fmuser:@127.0.0.1:7000", NULL};

        cfg = load_ok(NULL, user);
        ck_assert_str_eq(cfg->redis_user, "fmuser");
        ck_assert_str_eq(cfg->redis_password, "from-credential");
        fm_config_free(cfg);
    }

    /* An unusable credential is an error that names it, never its text. */
    free(write_file("redis-password", "\n"));
    expect_refused(NULL, url, "$CREDENTIALS_DIRECTORY/redis-password", "empty", NULL);
    unlink(cred);
    unsetenv("CREDENTIALS_DIRECTORY");
    free(cred);
    free(file);
}
END_TEST

/* ---- socket_group -------------------------------------------------------- */

START_TEST(test_socket_group_is_a_name_or_a_gid)
{
    static const struct {
        const char *value;
        int rc;
        gid_t gid;
    } cases[] = {
        {"root", 0, 0}, {"0", 0, 0}, {"4242", 0, 4242}, {"no-such-group-fmtest", -1, 0},
    };
    char err[600];
    fm_config *cfg;
    gid_t gid;

    cfg = load_ok(NULL, NULL);
    ck_assert_int_eq(fm_config_socket_gid(cfg, &gid, err, sizeof(err)), 1);
    fm_config_free(cfg);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *over[] = {"socket_group", cases[i].value, NULL};

        cfg = load_ok(NULL, over);
        gid = 99999;
        err[0] = '\0';
        ck_assert_int_eq(fm_config_socket_gid(cfg, &gid, err, sizeof(err)), cases[i].rc);
        if (cases[i].rc == 0)
            ck_assert_uint_eq(gid, cases[i].gid);
        else
            ck_assert_msg(strstr(err, "socket_group") && strstr(err, cases[i].value),
                          "message: %s", err);
        fm_config_free(cfg);
    }
    expect_refused("socket_group \"\"\n", NULL, "@:1:", "socket_group", NULL);
}
END_TEST

/* -t looks the group up too: a typo is found before the start. */
START_TEST(test_unknown_socket_group_through_the_binary)
{
    static const char *const bad[] = {"-t", "--socket_group", "no-such-group-fmtest", NULL};
    static const char *const good[] = {"-t", "--socket_group", "root", NULL};
    fmt_proc p;

    ck_assert_int_eq(run_daemon(&p, bad), 1);
    ck_assert_msg(strstr(p.text[2], "socket_group: no such group \"no-such-group-fmtest\""),
                  "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    ck_assert_int_eq(run_daemon(&p, good), 0);
    fmt_proc_free(&p);
}
END_TEST

/* ---- high availability -------------------------------------------------- */

/* The parsed addresses, as "host port, host port". */
static void expect_addrs(const fm_redis_addr *a, size_t n, const char *want)
{
    char got[512] = "";
    size_t len = 0;

    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%s %d", i ? ", " : "",
                                a[i].host, a[i].port);
    ck_assert_str_eq(got, want);
}

START_TEST(test_sentinels_and_cluster_together_are_an_error)
{
    expect_refused("redis_sentinels a:26379 b:26379\nredis_sentinel_master mymaster\n"
                   "redis_cluster_nodes c:7000 d:7000\n",
                   NULL, "redis_sentinels", "redis_cluster_nodes", NULL);
}
END_TEST

START_TEST(test_cluster_nodes_are_parsed_and_need_database_0)
{
    static const char *const cluster[] = {"redis_cluster_nodes", "c:7000, [::1]:7001 e", NULL};
    static const char *const db1[] = {"redis_cluster_nodes", "c:7000", "redis_url",
                                      "redis://127.0.0.1:6379/1", NULL};
    static const char *const bad[] = {"redis_cluster_nodes", "c:70000", NULL};
    char err[600];
    fm_config *cfg = load_args(NULL, cluster, err, sizeof(err));

    ck_assert_msg(cfg != NULL, "refused: %s", err);
    expect_addrs(cfg->cluster_nodes, cfg->ncluster_nodes, "c 7000, ::1 7001, e 6379");
    fm_config_free(cfg);
    expect_refused(NULL, db1, "database 0 only", "database 1", NULL);
    expect_refused(NULL, bad, "redis_cluster_nodes: bad port", NULL);
}
END_TEST

START_TEST(test_sentinel_directives_go_together)
{
    static const char *const alone[] = {"redis_sentinels", "a:26379", NULL};
    static const char *const master[] = {"redis_sentinel_master", "mymaster", NULL};
    static const char *const password[] = {"redis_sentinel_password", "pw", NULL};

    expect_refused(NULL, alone, "redis_sentinels and redis_sentinel_master go together", NULL);
    expect_refused(NULL, master, "redis_sentinels and redis_sentinel_master go together", NULL);
    /* A sentinel directive alone is never silently ignored. */
    expect_refused(NULL, password, "redis_sentinel_password needs redis_sentinels", NULL);
}
END_TEST

START_TEST(test_sentinel_addresses_are_parsed)
{
    fm_config *cfg = load_ok("redis_sentinels 10.0.0.1:26380, sentinel-b [::1]:5000 "
                             "[fe80::1]\nredis_sentinel_master mymaster\n"
                             "redis_sentinel_password pw\n", NULL);
    fmt_proc p;

    expect_addrs(cfg->sentinels, cfg->nsentinels,
                 "10.0.0.1 26380, sentinel-b 26379, ::1 5000, fe80::1 26379");
    ck_assert_str_eq(cfg->redis_sentinel_master, "mymaster");
    ck_assert_str_eq(cfg->redis_sentinel_password, "pw");
    fm_config_free(cfg);
    ck_assert_int_eq(run_daemon(&p, (const char *const[]){"-t", "--redis_sentinels",
                                                          "127.0.0.1:26379",
                                                          "--redis_sentinel_master", "m",
                                                          NULL}), 0);
    fmt_proc_free(&p);
}
END_TEST

START_TEST(test_bad_sentinel_addresses_are_refused)
{
    static const char *const bad[][2] = {
        {"a:0", "bad port"}, {"a:65536", "bad port"}, {"a:x", "bad port"}, {"a:", "bad port"},
        {":26379", "missing host"}, {"[::1", "unterminated [IPv6 address]"},
        {"[::1]x", "unexpected text after ]"}, {"::1:26379", "IPv6 address needs [brackets]"},
        {" , ", "no address in"},
        {"user@host:26379", "not a host name or address"}, {"a/b", "not a host name or address"},
        {"[::1/64]:1", "not a host name or address"}, {"[a%b]:1", "not a host name or address"},
        {"a b c d e f g h i j k l m n o p q", "too many addresses"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *over[] = {"redis_sentinels", bad[i][0], "redis_sentinel_master", "m", NULL};

        expect_refused(NULL, over, "redis_sentinels: ", bad[i][1], NULL);
    }
}
END_TEST

/* ---- compatibility with @flowmonkey/redis ------------------------------- */

static void assert_layout(const fm_config *cfg, const char *lock, const char *cache,
                          const char *wake, int format)
{
    ck_assert_str_eq(cfg->lock_key_prefix, lock);
    ck_assert_str_eq(cfg->cache_key_prefix, cache);
    ck_assert_str_eq(cfg->wake_channel, wake);
    ck_assert_int_eq(cfg->lock_value_format, format);
}

START_TEST(test_compat_published_sets_the_published_names_and_json_locks)
{
    fm_config *cfg = load_ok("compat flowmonkey-published\n", NULL);

    assert_layout(cfg, "lock:", "exec:", "flowmonkey:wake", FM_LOCKVAL_FLOWMONKEY_JSON);
    /* Nothing else changes: the release channel is fmredisd's own. */
    ck_assert_str_eq(cfg->lock_release_channel, "fm:lock:released");
    ck_assert_int_eq(cfg->cache_ttl_ms, 60000);
    fm_config_free(cfg);
    cfg = load_ok(NULL, (const char *const[]){"compat", "flowmonkey-published", NULL});
    assert_layout(cfg, "lock:", "exec:", "flowmonkey:wake", FM_LOCKVAL_FLOWMONKEY_JSON);
    fm_config_free(cfg);
}
END_TEST

START_TEST(test_compat_readme_is_the_defaults)
{
    fm_config *cfg = load_ok("compat flowmonkey-published\ncompat flowmonkey-readme\n", NULL);

    assert_layout(cfg, "fm:lock:", "fm:exec:", "fm:wake", FM_LOCKVAL_TOKEN);
    fm_config_free(cfg);
}
END_TEST

/* compat stands for its four lines where it is written: later lines, and
 * the command line, win over it as over any directive. */
START_TEST(test_compat_is_overridden_by_later_lines_and_the_command_line)
{
    fm_config *cfg = load_ok("wake_channel early\ncompat flowmonkey-published\n"
                             "cache_key_prefix app:exec:\n",
                             (const char *const[]){"lock_value_format", "token", NULL});

    assert_layout(cfg, "lock:", "app:exec:", "flowmonkey:wake", FM_LOCKVAL_TOKEN);
    fm_config_free(cfg);
    cfg = load_ok("lock_key_prefix mine:\n",
                  (const char *const[]){"compat", "flowmonkey-published", NULL});
    assert_layout(cfg, "lock:", "exec:", "flowmonkey:wake", FM_LOCKVAL_FLOWMONKEY_JSON);
    fm_config_free(cfg);
}
END_TEST

START_TEST(test_bad_compat_and_lock_value_format_are_refused)
{
    expect_refused("compat flowmonkey\n", NULL, "@:1: compat: expected flowmonkey-readme or "
                   "flowmonkey-published, got \"flowmonkey\"", NULL);
    expect_refused("lock_value_format json\n", NULL, "@:1: lock_value_format: expected token "
                   "or flowmonkey-json, got \"json\"", NULL);
    expect_refused(NULL, (const char *const[]){"lock_value_format", "", NULL},
                   "--lock_value_format: expected token or flowmonkey-json", NULL);
}
END_TEST

/* ---- the example file --------------------------------------------------- */

/* Whether text names word with no identifier character on either side. */
static int mentions(const char *text, const char *word)
{
    size_t n = strlen(word);

    for (const char *p = strstr(text, word); p != NULL; p = strstr(p + 1, word)) {
        int before = p > text && (p[-1] == '_' || isalnum((unsigned char)p[-1]));
        int after = p[n] == '_' || isalnum((unsigned char)p[n]);

        if (!before && !after)
            return 1;
    }
    return 0;
}

START_TEST(test_example_file_is_valid_and_mentions_every_directive)
{
    char *path = wire_strf("%s/fmredisd.conf.example", fmt_srcdir());
    const char *const args[] = {"-t", "-c", path, NULL};
    char *text;
    FILE *f = fopen(path, "r");
    long size;
    fmt_proc p;

    ck_assert_msg(f != NULL, "%s is missing", path);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    rewind(f);
    text = calloc(1, (size_t)size + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    fclose(f);

    unsetenv("REDIS_URL");
    ck_assert_msg(run_daemon(&p, args) == 0, "%s: %s", path, p.text[2]);
    fmt_proc_free(&p);
    for (size_t i = 0; i < fm_config_count(); i++)
        ck_assert_msg(mentions(text, fm_config_name(i)), "%s does not mention %s", path,
                      fm_config_name(i));
    free(text);
    free(path);
}
END_TEST

/* ---- SIGHUP ------------------------------------------------------------- */

/* Whether one line of text holds both a and b. */
static int line_with(const char *text, const char *a, const char *b)
{
    for (const char *p = strstr(text, a); p != NULL; p = strstr(p + 1, a)) {
        const char *start = p, *end = strchr(p, '\n');

        while (start > text && start[-1] != '\n')
            start--;
        if (end == NULL)
            end = p + strlen(p);
        for (const char *q = strstr(start, b); q != NULL && q < end; q = strstr(q + 1, b))
            return 1;
    }
    return 0;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;

    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* A fresh client's ping; the daemon logs its connection (at debug) before
 * it answers, so the log is complete up to the connect once this returns. */
static void ping_fresh(const char *sock)
{
    int fd = wire_connect(sock);

    wire_expect_ok(fd, "{\"op\":\"ping\",\"id\":1}", "1");
    close(fd);
}

#define CONNECTED_LOG ": connected\n"   /* "debug: client N: connected" */

START_TEST(test_sighup_reloads_and_keeps_going_after_a_broken_file)
{
    char *sock = path_of("hup.sock"), *conf, *text, *reloaded;
    const char *argv[] = {fmt_daemon_path(), "-c", NULL, NULL};
    struct stat st;
    size_t before;
    fmt_proc p;

    text = wire_strf("socket %s\nredis_url unix://%s/no-redis.sock\nlog_level info\n"
                "socket_mode 0660\nrequest_timeout_ms 5000\n", sock, dir);
    conf = write_file("hup.conf", text);
    free(text);
    argv[2] = conf;
    reloaded = wire_strf("reloaded %s", conf);
    ck_assert_int_eq(fmt_proc_start(&p, argv, NULL, NULL), 0);
    ck_assert_msg(fmt_wait_until(fmt_socket_accepts, sock, RUN_MS), "the daemon did not start");

    /* At info, connections are not logged. */
    ping_fresh(sock);
    fmt_proc_drain(&p);
    ck_assert_msg(strstr(p.text[2], CONNECTED_LOG) == NULL, "log: %s", p.text[2]);

    text = wire_strf("socket %s\nredis_url unix://%s/no-redis.sock\nlog_level debug\n"
                "socket_mode 0600\nsocket_group 1\nrequest_timeout_ms 4000\n", sock, dir);
    free(write_file("hup.conf", text));
    free(text);
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    ck_assert_msg(fmt_proc_expect(&p, 2, reloaded, RUN_MS), "no reload in the log: %s",
                  p.text[2]);
    ck_assert_msg(line_with(p.text[2], "socket_mode", "restart"),
                  "socket_mode not named as needing a restart: %s", p.text[2]);
    ck_assert_msg(line_with(p.text[2], "socket_group", "restart"),
                  "socket_group not named as needing a restart: %s", p.text[2]);
    ck_assert_msg(line_with(p.text[2], "request_timeout_ms", "changed"), "log: %s", p.text[2]);
    ck_assert_msg(line_with(p.text[2], "log_level", "changed"), "log: %s", p.text[2]);
    /* socket_mode and socket_group wait for a restart; log_level applies
     * at once. */
    ck_assert_int_eq(stat(sock, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0660);
    ck_assert_uint_eq(st.st_gid, getgid());
    ping_fresh(sock);
    fmt_proc_drain(&p);
    ck_assert_msg(strstr(p.text[2], CONNECTED_LOG) != NULL, "debug not applied: %s", p.text[2]);

    /* A broken file is logged and ignored: debug stays on. */
    free(write_file("hup.conf", "log_level error\nbogus_directive 1\n"));
    ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
    ck_assert_msg(fmt_proc_expect(&p, 2, "reload failed", RUN_MS), "log: %s", p.text[2]);
    text = wire_strf("%s:2:", conf);
    ck_assert_msg(line_with(p.text[2], "reload failed", text), "log: %s", p.text[2]);
    free(text);
    before = count_of(p.text[2], CONNECTED_LOG);
    ping_fresh(sock);
    fmt_proc_drain(&p);
    ck_assert_uint_eq(count_of(p.text[2], CONNECTED_LOG), before + 1);

    ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
    ck_assert_int_eq(fmt_proc_wait(&p, RUN_MS), 0);
    fmt_proc_free(&p);
    free(reloaded);
    free(conf);
    free(sock);
}
END_TEST

/* A daemon whose URL holds a password, reloaded with each malformed URL in
 * turn: neither its start, its Redis link nor the failed reloads log any
 * piece of the user info. */
START_TEST(test_sighup_reload_does_not_log_the_url_password)
{
    char *sock = path_of("hup.sock"), *conf, *text;
    const char *argv[] = {fmt_daemon_path(), "-c", NULL, NULL};
    fmt_proc p;

    unsetenv("REDIS_URL");
    /* Port 1 refuses at once: the link logs its failures meanwhile. */
    text = wire_strf("socket %s\nredis_url redis://admin:Sup3rS3cret@127.0.0.1:1/0\n", sock);
    conf = write_file("hup.conf", text);
    free(text);
    argv[2] = conf;
    ck_assert_int_eq(fmt_proc_start(&p, argv, NULL, NULL), 0);
    ck_assert_msg(fmt_wait_until(fmt_socket_accepts, sock, RUN_MS), "the daemon did not start");

    for (size_t i = 0; i < NLEAKY; i++) {
        /* i comment lines first, so each failure names a line of its own. */
        char *want = wire_strf("%s:%zu: redis_url", conf, i + 2);
        char *comments = calloc(i + 1, 2);

        ck_assert_ptr_nonnull(comments);
        for (size_t j = 0; j < i; j++)
            memcpy(comments + 2 * j, "#\n", 2);
        text = wire_strf("%ssocket %s\nredis_url %s\n", comments, sock, leaky_urls[i]);
        free(write_file("hup.conf", text));
        ck_assert_int_eq(kill(p.pid, SIGHUP), 0);
        ck_assert_msg(fmt_proc_expect(&p, 2, want, RUN_MS), "no failed reload of %s: %s",
                      leaky_urls[i], p.text[2]);
        free(comments);
        free(text);
        free(want);
    }
    ck_assert_int_eq(kill(p.pid, SIGTERM), 0);
    ck_assert_int_eq(fmt_proc_wait(&p, RUN_MS), 0);
    assert_no_secret(p.text[2], "(the daemon's log)", "SIGHUP");
    fmt_proc_free(&p);
    free(conf);
    free(sock);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name)
{
    return fmt_tcase(s, name, dir_up, dir_down, TCASE_TIMEOUT);
}

Suite *fm_suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc;

    tc = tcase(s, "directives");
    tcase_add_test(tc, test_every_default_of_the_contract);
    tcase_add_test(tc, test_every_contract_directive_is_known);
    tcase_add_test(tc, test_every_directive_from_file_and_command_line);
    tcase_add_test(tc, test_check_only_with_defaults_exits_0);

    tc = tcase(s, "file");
    tcase_add_test(tc, test_comments_and_blank_lines);
    tcase_add_test(tc, test_values_are_trimmed_and_may_be_quoted);
    tcase_add_test(tc, test_bad_quoting_is_an_error_naming_the_line);
    tcase_add_test(tc, test_the_last_directive_wins);
    tcase_add_test(tc, test_unknown_directive_names_file_and_line);
    tcase_add_test(tc, test_unknown_directive_through_the_binary);
    tcase_add_test(tc, test_valid_file_through_the_binary);
    tcase_add_test(tc, test_missing_file_is_an_error_naming_it);
    tcase_add_test(tc, test_bad_values_name_file_line_and_directive);
    tcase_add_test(tc, test_values_checked_after_reading_name_file_and_line);
    tcase_add_test(tc, test_control_characters_in_values_are_refused);
    tcase_add_test(tc, test_socket_path_of_108_bytes_is_refused);

    tc = tcase(s, "command_line");
    tcase_add_test(tc, test_command_line_wins_over_the_file);
    tcase_add_test(tc, test_bad_command_line_values_are_refused);
    tcase_add_test(tc, test_command_line_through_the_binary);
    tcase_add_test(tc, test_max_output_bytes_fits_a_frame_length);

    tc = tcase(s, "redis_url");
    tcase_add_test(tc, test_redis_url_from_the_environment);
    tcase_add_test(tc, test_redis_url_forms);
    tcase_add_test(tc, test_bad_redis_urls_are_refused);
    tcase_add_test(tc, test_rediss_urls_turn_tls_on);
    tcase_add_test(tc, test_tls_directives_need_rediss);
    tcase_add_test(tc, test_tls_client_key_goes_with_its_certificate);
    tcase_add_test(tc, test_tls_files_are_checked_by_check_only);
    tcase_add_test(tc, test_url_password_not_in_messages_from_the_parser);
    tcase_add_test(tc, test_url_messages_show_the_url_without_its_user_info);
    tcase_add_test(tc, test_url_password_not_printed_from_the_file);
    tcase_add_test(tc, test_url_password_not_printed_from_the_command_line);
    tcase_add_test(tc, test_url_password_not_printed_from_the_environment);
    tcase_add_test(tc, test_redis_password_file);
    tcase_add_test(tc, test_credential_wins_over_the_password_file_and_the_url);

    tc = tcase(s, "socket_group");
    tcase_add_test(tc, test_socket_group_is_a_name_or_a_gid);
    tcase_add_test(tc, test_unknown_socket_group_through_the_binary);

    tc = tcase(s, "high_availability");
    tcase_add_test(tc, test_sentinels_and_cluster_together_are_an_error);
    tcase_add_test(tc, test_cluster_nodes_are_parsed_and_need_database_0);
    tcase_add_test(tc, test_sentinel_directives_go_together);
    tcase_add_test(tc, test_sentinel_addresses_are_parsed);
    tcase_add_test(tc, test_bad_sentinel_addresses_are_refused);

    tc = tcase(s, "compat");
    tcase_add_test(tc, test_compat_published_sets_the_published_names_and_json_locks);
    tcase_add_test(tc, test_compat_readme_is_the_defaults);
    tcase_add_test(tc, test_compat_is_overridden_by_later_lines_and_the_command_line);
    tcase_add_test(tc, test_bad_compat_and_lock_value_format_are_refused);

    tc = tcase(s, "example");
    tcase_add_test(tc, test_example_file_is_valid_and_mentions_every_directive);

    tc = tcase(s, "reload");
    tcase_add_test(tc, test_sighup_reloads_and_keeps_going_after_a_broken_file);
    tcase_add_test(tc, test_sighup_reload_does_not_log_the_url_password);
    return s;
}
