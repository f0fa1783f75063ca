/* test_examples.c -- the CLI (build/fmredis) and the Python example run as
 * child processes against a real daemon, as a user would run them: the
 * socket in $FMREDISD_SOCKET, results read from exit codes and output.
 *
 * One redis-server and one daemon per TCase (unchecked fixture). Where a
 * test needs a second party (a lock holder, a wake subscriber) it speaks
 * the raw protocol itself. Keys carry the test's name so tests never meet. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fm_tests.h"
#include "fm_wire.h"
#include "harness.h"
#include "proc.h"
#include "wire.h"

#define TCASE_TIMEOUT 30
#define RUN_MS 15000
#define EX_NO 1
#define EX_USAGE 2
#define EX_ERROR 3
#define EX_CONN 4
#define EX_LOCKED 75

static fmt_redis redis;
static fmt_daemon daemon0;

/* ---- fixture ------------------------------------------------------------ */

static void servers_up(void)
{
    wire_pair_start(&redis, &daemon0, NULL, NULL);
}

static void servers_down(void)
{
    wire_pair_stop(&redis, &daemon0);
}

/* ---- helpers ------------------------------------------------------------ */

static size_t count(const char *const *args)
{
    size_t n = 0;

    while (args[n] != NULL)
        n++;
    return n;
}

/* Starts fmredis args (NULL-terminated) with $FMREDISD_SOCKET=sock. */
static void start_cli(fmt_proc *p, const char *sock, const char *input, const char *const *args)
{
    const char *argv[32] = {fmt_cli_path()};
    char env_sock[400];
    const char *env[] = {env_sock, NULL};
    size_t n = count(args);

    ck_assert_uint_lt(n, 31);
    memcpy(argv + 1, args, (n + 1) * sizeof(*args));
    snprintf(env_sock, sizeof(env_sock), "FMREDISD_SOCKET=%s", sock);
    ck_assert_int_eq(fmt_proc_start(p, argv, env, input), 0);
}

/* Runs fmredis args against the fixture's daemon; output stays in p. */
static int run_cli(fmt_proc *p, const char *input, const char *const *args)
{
    start_cli(p, daemon0.sock, input, args);
    return fmt_proc_wait(p, RUN_MS);
}

/* Runs it and asserts its exit status and, unless out is NULL, the whole of
 * its standard output. */
static void expect_cli(int status, const char *out, const char *const *args)
{
    fmt_proc p;
    int got = run_cli(&p, NULL, args);

    ck_assert_msg(got == status, "fmredis %s ...: exit %d, want %d; stdout: %s; stderr: %s",
                  args[0], got, status, p.text[1], p.text[2]);
    if (out != NULL)
        ck_assert_msg(strcmp(p.text[1], out) == 0, "fmredis %s ...: stdout \"%s\", want \"%s\"",
                      args[0], p.text[1], out);
    fmt_proc_free(&p);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A raw connection that holds key until closed. */
static int hold_lock(const char *key)
{
    int fd = wire_connect(daemon0.sock);
    char req[256];
    cJSON *r;

    snprintf(req, sizeof(req), "{\"op\":\"lock.acquire\",\"id\":1,\"key\":\"%s\",\"ttl\":30000,"
             "\"max_retries\":0}", key);
    r = wire_call(fd, req);
    wire_assert_ok(r, "1");
    ck_assert_msg(wire_str(r, "token") != NULL, "%s is held already", key);
    cJSON_Delete(r);
    return fd;
}

/* Remaining TTL of a Redis key in ms (-2: no key). */
static long long redis_pttl(const char *key)
{
    redisContext *c = fmt_redis_connect(&redis);
    redisReply *r;
    long long ttl;

    ck_assert_ptr_nonnull(c);
    r = fmt_redis_cmd(c, "PTTL %s", key);
    ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER);
    ttl = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return ttl;
}

/* ---- usage -------------------------------------------------------------- */

/* fmredis args is a usage error: exit 2, nothing on stdout, says so. */
static void expect_usage_error(const char *const *args)
{
    fmt_proc p;

    ck_assert_int_eq(run_cli(&p, NULL, args), EX_USAGE);
    ck_assert_msg(p.len[1] == 0, "stdout: %s", p.text[1]);
    ck_assert_msg(strstr(p.text[2], "usage") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
}

START_TEST(test_cli_help_exits_0)
{
    fmt_proc p;

    ck_assert_int_eq(run_cli(&p, NULL, ARGS("--help")), 0);
    ck_assert_ptr_nonnull(strstr(p.text[1], "with-lock"));
    fmt_proc_free(&p);
}
END_TEST

START_TEST(test_cli_usage_errors_exit_2)
{
    const char *const *const cases[] = {
        ARGS("nope"),
        ARGS("lock"),
        ARGS("lock", "nope"),
        ARGS("cache", "get"),
        ARGS("lock", "acquire", "k", "--ttl", "abc"),
        ARGS("--bogus-option", "ping"),
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_usage_error(cases[i]);
    /* No command at all. */
    {
        const char *argv[] = {fmt_cli_path(), NULL};
        fmt_proc p;

        ck_assert_int_eq(fmt_run(&p, argv, NULL, NULL, RUN_MS), EX_USAGE);
        fmt_proc_free(&p);
    }
}
END_TEST

/* Each way of asking for one command's help prints that command's usage
 * (and no other's) on stdout and exits 0, without a daemon. */
START_TEST(test_cli_command_help_prints_that_command)
{
    const struct {
        const char *const *args;
        const char *has, *lacks;
    } cases[] = {
        {ARGS("help", "lock"), "lock release KEY TOKEN", "cache get"},
        {ARGS("lock", "--help"), "lock acquire KEY", "wake signal"},
        {ARGS("lock", "-h"), "lock status KEY", "with-lock KEY"},
        {ARGS("help", "lock", "acquire"), "lock acquire KEY [--ttl MS]", "lock release"},
        {ARGS("lock", "acquire", "--help"), "lock acquire KEY [--ttl MS]", "lock release"},
        {ARGS("lock", "acquire", "some-key", "-h"), "lock acquire KEY", "lock status"},
        {ARGS("with-lock", "--help"), "with-lock KEY", "lock acquire"},
        {ARGS("with-lock", "k", "--help", "--", "true"), "with-lock KEY", "lock acquire"},
        {ARGS("wake", "listen", "--help"), "wake listen [--channel C]", "wake signal"},
        {ARGS("cache", "--help"), "cache get-many [--fresh] ID...", "lock"},
        {ARGS("cache", "get", "-h"), "cache get [--fresh] ID", "cache set"},
        {ARGS("ping", "--help"), "ping [--redis]", "hello"},
        {ARGS("stats", "--help"), "stats", "raw"},
        {ARGS("raw", "--help"), "raw JSON | -", "stats"},
        {ARGS("help", "help"), "help [COMMAND [SUBCOMMAND]]", "ping"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fmt_proc p;

        /* No daemon: help never connects. */
        start_cli(&p, "/nonexistent/fmredisd.sock", NULL, cases[i].args);
        ck_assert_msg(fmt_proc_wait(&p, RUN_MS) == 0, "fmredis %s %s: exit %d; stderr: %s",
                      cases[i].args[0], cases[i].args[1], p.status, p.text[2]);
        ck_assert_msg(strncmp(p.text[1], "Usage: fmredis ", 15) == 0 &&
                      strstr(p.text[1], cases[i].has) != NULL &&
                      strstr(p.text[1], cases[i].lacks) == NULL,
                      "fmredis %s %s: stdout: %s", cases[i].args[0], cases[i].args[1], p.text[1]);
        ck_assert_msg(p.len[2] == 0, "stderr: %s", p.text[2]);
        fmt_proc_free(&p);
    }
}
END_TEST

/* `help` alone is --help; every command's usage in it is the one its own
 * help prints (one table: they cannot drift apart). */
START_TEST(test_cli_help_alone_is_the_general_usage)
{
    static const char *const commands[] = {"ping", "hello", "lock acquire", "lock release",
                                           "lock extend", "lock status", "with-lock",
                                           "wake signal", "wake listen", "cache get",
                                           "cache set", "cache invalidate", "cache get-many",
                                           "stats", "raw"};
    fmt_proc general, dashed;

    ck_assert_int_eq(run_cli(&general, NULL, ARGS("help")), 0);
    ck_assert_int_eq(run_cli(&dashed, NULL, ARGS("--help")), 0);
    ck_assert_str_eq(general.text[1], dashed.text[1]);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        char *words = wire_strf("%s", commands[i]), *sub = strchr(words, ' '), *line;
        fmt_proc one;

        if (sub != NULL)
            *sub++ = '\0';
        ck_assert_int_eq(run_cli(&one, NULL, sub ? ARGS("help", words, sub) : ARGS("help", words)),
                         0);
        /* "Usage: fmredis [-s SOCKET] [-t TIMEOUT_MS] lock acquire KEY ..." */
        line = strstr(one.text[1], commands[i]);
        ck_assert_ptr_nonnull(line);
        *strchr(line, '\n') = '\0';
        ck_assert_msg(strstr(general.text[1], line) != NULL, "\"%s\" is not in the general "
                      "usage", line);
        fmt_proc_free(&one);
        free(words);
    }
    fmt_proc_free(&general);
    fmt_proc_free(&dashed);
}
END_TEST

/* A command that does not exist has no help: a usage error. */
START_TEST(test_cli_help_of_an_unknown_command_exits_2)
{
    const char *const *const cases[] = {
        ARGS("help", "nope"),
        ARGS("help", "lock", "nope"),
        ARGS("help", "lock", "acquire", "more"),
        ARGS("nope", "--help"),
        ARGS("lock", "nope", "--help"),
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_usage_error(cases[i]);
}
END_TEST

/* After "--", -h is an argument: here the key. */
START_TEST(test_cli_dash_h_after_double_dash_is_an_argument)
{
    expect_cli(EX_NO, "unlocked\n", ARGS("lock", "status", "--", "-h"));
}
END_TEST

/* ---- ping, hello, raw --------------------------------------------------- */

START_TEST(test_cli_ping)
{
    expect_cli(0, "redis up\n", ARGS("ping"));
    expect_cli(0, "redis up\n", ARGS("ping", "--redis"));
}
END_TEST

START_TEST(test_cli_hello)
{
    expect_cli(0, "server fmredisd 0.1.0\nprotocol 1\n", ARGS("hello"));
}
END_TEST

START_TEST(test_cli_cannot_connect_exits_4)
{
    fmt_proc p;
    const char *over[] = {"-s", daemon0.sock, "ping", NULL};

    start_cli(&p, "/nonexistent/fmredisd.sock", NULL, ARGS("ping"));
    ck_assert_int_eq(fmt_proc_wait(&p, RUN_MS), EX_CONN);
    ck_assert_msg(strstr(p.text[2], "fmredis: ") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
    /* -s wins over $FMREDISD_SOCKET. */
    start_cli(&p, "/nonexistent/fmredisd.sock", NULL, over);
    ck_assert_int_eq(fmt_proc_wait(&p, RUN_MS), 0);
    ck_assert_str_eq(p.text[1], "redis up\n");
    fmt_proc_free(&p);
}
END_TEST

START_TEST(test_cli_raw_error_reply_exits_3)
{
    fmt_proc p;
    cJSON *r;

    ck_assert_int_eq(run_cli(&p, NULL, ARGS("raw", "{\"op\":\"nope\",\"id\":7}")), EX_ERROR);
    r = cJSON_Parse(p.text[1]);
    ck_assert_msg(r != NULL, "stdout: %s", p.text[1]);
    wire_assert_error(r, "unknown_op", "7");
    cJSON_Delete(r);
    ck_assert_msg(strstr(p.text[2], "unknown_op") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);

    expect_cli(0, NULL, ARGS("raw", "{\"op\":\"ping\"}"));
}
END_TEST

/* ---- locks -------------------------------------------------------------- */

START_TEST(test_cli_lock_acquire_then_status_shows_locked)
{
    char token[128];
    long long fence = 0;
    fmt_proc p;

    ck_assert_int_eq(run_cli(&p, NULL, ARGS("lock", "acquire", "ex-status", "--keep", "--ttl",
                                            "10000")), 0);
    ck_assert_msg(sscanf(p.text[1], "%127s %lld", token, &fence) == 2,
                  "stdout: %s", p.text[1]);
    ck_assert_int_ge(fence, 1);
    fmt_proc_free(&p);

    expect_cli(0, "locked\n", ARGS("lock", "status", "ex-status"));
    expect_cli(0, NULL, ARGS("lock", "release", "ex-status", token));
    expect_cli(EX_NO, "unlocked\n", ARGS("lock", "status", "ex-status"));
    expect_cli(EX_NO, NULL, ARGS("lock", "release", "ex-status", token));
}
END_TEST

START_TEST(test_cli_lock_extend_sets_the_ttl)
{
    char token[128];
    fmt_proc p;

    ck_assert_int_eq(run_cli(&p, NULL, ARGS("lock", "acquire", "ex-extend", "--keep", "--ttl",
                                            "5000")), 0);
    ck_assert_int_eq(sscanf(p.text[1], "%127s", token), 1);
    fmt_proc_free(&p);
    expect_cli(0, NULL, ARGS("lock", "extend", "ex-extend", token, "--ttl", "600000"));
    ck_assert_int_gt(redis_pttl("fm:lock:ex-extend"), 500000);
    expect_cli(EX_NO, NULL, ARGS("lock", "extend", "ex-extend", "not-the-token"));
    expect_cli(0, NULL, ARGS("lock", "release", "ex-extend", token));
}
END_TEST

START_TEST(test_cli_lock_held_by_another_exits_1)
{
    int holder = hold_lock("ex-held");

    expect_cli(EX_NO, "", ARGS("lock", "acquire", "ex-held", "--max-retries", "0"));
    close(holder);
}
END_TEST

/* Without --keep the lock goes with the CLI's connection (on_disconnect
 * "release", the default), as its --help says. */

START_TEST(test_cli_with_lock_exits_with_the_command_status)
{
    expect_cli(3, "", ARGS("with-lock", "ex-with", "--", "sh", "-c", "exit 3"));
    expect_cli(EX_NO, "unlocked\n", ARGS("lock", "status", "ex-with"));
    expect_cli(0, "", ARGS("with-lock", "ex-with", "--", "true"));
    expect_cli(127, "", ARGS("with-lock", "ex-with", "--", "/nonexistent/fmtest-command"));
    expect_cli(EX_NO, "unlocked\n", ARGS("lock", "status", "ex-with"));
}
END_TEST

START_TEST(test_cli_with_lock_holds_the_lock_while_the_command_runs)
{
    /* The command is the CLI itself, finding the socket in the environment
     * it inherits. */
    expect_cli(0, "locked\n", ARGS("with-lock", "ex-while", "--", fmt_cli_path(), "lock",
                                   "status", "ex-while"));
    expect_cli(EX_NO, "unlocked\n", ARGS("lock", "status", "ex-while"));
}
END_TEST

/* The daemon extends the lock while the command runs: here three times its
 * TTL (the wait is the point: the TTL must pass). */

START_TEST(test_cli_lock_without_keep_is_released_when_it_exits)
{
    expect_cli(0, NULL, ARGS("lock", "acquire", "ex-nokeep", "--ttl", "30000"));
    expect_cli(EX_NO, "unlocked\n", ARGS("lock", "status", "ex-nokeep"));
}
END_TEST

START_TEST(test_cli_with_lock_keeps_the_lock_past_its_ttl)
{
    expect_cli(0, "locked\n", ARGS("with-lock", "ex-extended", "--ttl", "200", "--", "sh", "-c",
                                   "sleep 0.6; exec \"$0\" lock status ex-extended",
                                   fmt_cli_path()));
    expect_cli(EX_NO, "unlocked\n", ARGS("lock", "status", "ex-extended"));
}
END_TEST

START_TEST(test_cli_with_lock_held_by_another_exits_75)
{
    int holder = hold_lock("ex-with-held");

    expect_cli(EX_LOCKED, "", ARGS("with-lock", "ex-with-held", "--max-retries", "0", "--",
                                   "sh", "-c", "echo ran"));
    close(holder);
}
END_TEST

/* ---- cache -------------------------------------------------------------- */

/* Digits a double would lose, a fraction's trailing zero, UTF-8, escapes. */
#define EXEC_JSON "{\"id\":\"ex-cache\",\"n\":12345678901234567890,\"f\":1.50," \
                  "\"s\":\"caf\xc3\xa9 \\\"q\\\"\",\"a\":[1,{\"b\":null}]}"

START_TEST(test_cli_cache_set_get_round_trip_is_exact)
{
    expect_cli(0, "", ARGS("cache", "set", EXEC_JSON));
    expect_cli(0, EXEC_JSON "\n", ARGS("cache", "get", "ex-cache"));
    expect_cli(0, "{\"ex-cache\":" EXEC_JSON "}\n",
               ARGS("cache", "get-many", "ex-cache", "ex-cache-missing"));
    expect_cli(0, "1\n", ARGS("cache", "invalidate", "ex-cache"));
    expect_cli(EX_NO, "", ARGS("cache", "get", "ex-cache"));
}
END_TEST

START_TEST(test_cli_cache_set_from_stdin)
{
    static const char json[] = "{\"id\":\"ex-stdin\",\"v\":1.0e3}";
    fmt_proc p;

    ck_assert_int_eq(run_cli(&p, json, ARGS("cache", "set", "--ttl", "60000", "-")), 0);
    fmt_proc_free(&p);
    expect_cli(0, "{\"id\":\"ex-stdin\",\"v\":1.0e3}\n", ARGS("cache", "get", "ex-stdin"));
    ck_assert_int_gt(redis_pttl("fm:exec:ex-stdin"), 50000);
}
END_TEST

START_TEST(test_cli_cache_set_refuses_an_execution_without_id)
{
    fmt_proc p;

    ck_assert_int_ne(run_cli(&p, NULL, ARGS("cache", "set", "{\"no\":\"id\"}")), 0);
    ck_assert_msg(strstr(p.text[2], "id") != NULL, "stderr: %s", p.text[2]);
    fmt_proc_free(&p);
}
END_TEST

/* ---- wake --------------------------------------------------------------- */

/* A raw connection subscribed to channel. */
static int subscriber(const char *channel)
{
    int fd = wire_connect(daemon0.sock);
    char req[256];

    snprintf(req, sizeof(req), "{\"op\":\"wake.subscribe\",\"id\":1,\"channel\":\"%s\"}", channel);
    wire_expect_ok(fd, req, "1");
    return fd;
}

/* The next frame on fd is a wake of id on channel. */
static void expect_wake(int fd, const char *channel, const char *id)
{
    cJSON *ev = wire_recv(fd, WIRE_REPLY_MS);

    ck_assert_str_eq(wire_str(ev, "event"), "wake");
    ck_assert_str_eq(wire_str(ev, "channel"), channel);
    ck_assert_str_eq(wire_str(ev, "execution_id"), id);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(ev, "ok"));
    cJSON_Delete(ev);
}

START_TEST(test_cli_wake_signal_reaches_a_subscriber)
{
    int fd = subscriber("ex-wake");

    expect_cli(0, "1\n", ARGS("wake", "signal", "ex-exec-1", "--channel", "ex-wake"));
    expect_wake(fd, "ex-wake", "ex-exec-1");
    expect_cli(0, "2\n", ARGS("wake", "signal", "ex-exec-2", "ex-exec-3", "--channel",
                              "ex-wake"));
    expect_wake(fd, "ex-wake", "ex-exec-2");
    expect_wake(fd, "ex-wake", "ex-exec-3");
    expect_cli(0, "0\n", ARGS("wake", "signal", "ex-exec-4", "--channel", "ex-nobody"));
    close(fd);
}
END_TEST

START_TEST(test_cli_wake_listen_prints_a_wake)
{
    int fd = wire_connect(daemon0.sock);
    fmt_proc p;

    start_cli(&p, daemon0.sock, NULL, ARGS("wake", "listen", "--channel", "ex-listen",
                                           "--count", "1", "--wait", "10000"));
    ck_assert_msg(fmt_proc_expect(&p, 1, "subscribed\tex-listen\n", RUN_MS),
                  "stdout: %s; stderr: %s", p.text[1], p.text[2]);
    wire_expect_ok(fd, "{\"op\":\"wake.signal\",\"id\":1,\"execution_id\":\"ex-heard\","
                       "\"channel\":\"ex-listen\"}", "1");
    ck_assert_int_eq(fmt_proc_wait(&p, RUN_MS), 0);
    ck_assert_msg(strstr(p.text[1], "\nwake\tex-listen\tex-heard\t") != NULL, "stdout: %s",
                  p.text[1]);
    fmt_proc_free(&p);
    close(fd);
}
END_TEST

/* ---- Python ------------------------------------------------------------- */

/* examples/python/example.py runs against the daemon with the package of
 * this source tree (client/python/fmredis), not an installed one: it says
 * where it took it from. -B: nothing is written into the tree. */
START_TEST(test_python_example_exits_0)
{
    char script[600], pkg[600], real[PATH_MAX], *from;
    const char *argv[] = {"python3", "-B", script, daemon0.sock, NULL};
    fmt_proc p;
    int status;

    snprintf(script, sizeof(script), "%s/examples/python/example.py", fmt_srcdir());
    ck_assert_msg(access(script, R_OK) == 0, "%s is missing", script);
    snprintf(pkg, sizeof(pkg), "%s/client/python/fmredis", fmt_srcdir());
    ck_assert_msg(realpath(pkg, real) != NULL, "%s is missing", pkg);
    status = fmt_run(&p, argv, NULL, NULL, RUN_MS);
    ck_assert_msg(status == 0, "exit %d\nstdout:\n%s\nstderr:\n%s", status, p.text[1],
                  p.text[2]);
    ck_assert_msg(strstr(p.text[1], "all checks passed") != NULL, "stdout: %s", p.text[1]);
    from = wire_strf("fmredis " FMREDIS_VERSION " from %s\n", real);
    ck_assert_msg(strncmp(p.text[1], from, strlen(from)) == 0, "stdout: %s, want first: %s",
                  p.text[1], from);
    free(from);
    fmt_proc_free(&p);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static TCase *tcase(Suite *s, const char *name)
{
    return fmt_tcase(s, name, servers_up, servers_down, TCASE_TIMEOUT);
}

Suite *fm_suite_examples(void)
{
    Suite *s = suite_create("examples");
    TCase *tc;

    tc = tcase(s, "cli");
    tcase_add_test(tc, test_cli_help_exits_0);
    tcase_add_test(tc, test_cli_usage_errors_exit_2);
    tcase_add_test(tc, test_cli_command_help_prints_that_command);
    tcase_add_test(tc, test_cli_help_alone_is_the_general_usage);
    tcase_add_test(tc, test_cli_help_of_an_unknown_command_exits_2);
    tcase_add_test(tc, test_cli_dash_h_after_double_dash_is_an_argument);
    tcase_add_test(tc, test_cli_ping);
    tcase_add_test(tc, test_cli_hello);
    tcase_add_test(tc, test_cli_cannot_connect_exits_4);
    tcase_add_test(tc, test_cli_raw_error_reply_exits_3);
    tcase_add_test(tc, test_cli_lock_acquire_then_status_shows_locked);
    tcase_add_test(tc, test_cli_lock_extend_sets_the_ttl);
    tcase_add_test(tc, test_cli_lock_held_by_another_exits_1);
    tcase_add_test(tc, test_cli_with_lock_exits_with_the_command_status);
    tcase_add_test(tc, test_cli_with_lock_holds_the_lock_while_the_command_runs);
    tcase_add_test(tc, test_cli_with_lock_held_by_another_exits_75);
    tcase_add_test(tc, test_cli_lock_without_keep_is_released_when_it_exits);
    tcase_add_test(tc, test_cli_with_lock_keeps_the_lock_past_its_ttl);
    tcase_add_test(tc, test_cli_cache_set_get_round_trip_is_exact);
    tcase_add_test(tc, test_cli_cache_set_from_stdin);
    tcase_add_test(tc, test_cli_cache_set_refuses_an_execution_without_id);
    tcase_add_test(tc, test_cli_wake_signal_reaches_a_subscriber);
    tcase_add_test(tc, test_cli_wake_listen_prints_a_wake);

    tc = tcase(s, "python");
    tcase_add_test(tc, test_python_example_exits_0);
    return s;
}
