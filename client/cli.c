/* cli.c -- fmredis, the command-line client of fmredisd, for shells, cron
 * jobs and operators. It uses only the public API of libfmredis (and, for
 * stats --prometheus, proto's JSON reader: cli_prom.c).
 *
 * Output is meant for scripts: one value per line (or tab-separated fields),
 * nothing else on stdout; errors and "no" answers go to stderr as
 * "fmredis: <code>: <message>" and the exit status tells what happened.
 * Usage texts live in one table (usages): the general help and each
 * command's help (`help COMMAND`, `COMMAND --help`) are printed from it. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli_prom.h"
#include "fmredis.h"

enum {
    EX_OK = 0,
    EX_NO = 1,          /* the operation said no */
    EX_USAGE_ = 2,
    EX_DAEMON = 3,      /* fmredisd answered with an error */
    EX_CONN = 4,        /* cannot connect, connection lost, bad reply */
    EX_TIME = 5,        /* no answer in time */
    EX_TEMPFAIL_ = 75   /* with-lock: the lock was not free */
};

static const char usage_head[] =
"Usage: fmredis [-s SOCKET] [-t TIMEOUT_MS] COMMAND [ARGS...]\n"
"\n"
"Command-line client of fmredisd, the local daemon for Redis-backed locks,\n"
"wake signals and the execution cache.\n"
"\n"
"Options:\n"
"  -s, --socket SOCKET     daemon socket (default: $FMREDISD_SOCKET, else\n"
"                          " FM_DEFAULT_SOCKET ")\n"
"  -t, --timeout MS        timeout of each request (default 10000; 0 waits\n"
"                          forever); a lock acquire adds its retry wait\n"
"  -h, --help              show this text\n"
"  -V, --version           show the version\n"
"\n"
"Commands:\n";

static const char usage_tail[] =
"\n"
"Exit status:\n"
"  0   success\n"
"  1   the answer was no: lock not acquired, not released, not extended,\n"
"      not locked; cache miss; Redis down (ping --redis); listen timed out\n"
"  2   usage error\n"
"  3   fmredisd answered with an error (its code is printed)\n"
"  4   cannot connect, connection lost, or a malformed reply\n"
"  5   no answer within the timeout\n"
"  75  with-lock: the lock was not free\n"
"\n"
"Errors are printed to stderr as \"fmredis: CODE: MESSAGE\".\n";

/* Every command's usage, in the order of the general help. The general
 * help lists them all; `fmredis help COMMAND`, `COMMAND --help` and
 * `COMMAND SUBCOMMAND --help` print the entries of that command or that
 * subcommand alone. One table, so the two can never disagree. */
typedef struct usage {
    const char *name;       /* "lock acquire": the words that run it */
    const char *args;       /* what follows them, or "" */
    const char *text;       /* what it does: lines ending in \n */
    int group;              /* starts a group: a blank line before it */
} usage;

static const usage usages[] = {
    { "ping", "[--redis]",
      "prints \"redis up\" or \"redis down\"; with --redis\n"
      "the daemon also round-trips to Redis, and down\n"
      "exits 1\n", 0 },
    { "hello", "[--name NAME]",
      "prints the server name and protocol version\n", 0 },
    { "lock acquire", "KEY [--ttl MS] [--retry-delay MS] [--max-retries N] [--keep]",
      "prints \"TOKEN FENCE\"; exits 1 if another holder\n"
      "kept the lock through all retries. Without --keep\n"
      "the daemon releases the lock as soon as this\n"
      "command exits (it releases a closed connection's\n"
      "locks): in scripts use --keep (the lock then lasts\n"
      "until released or its TTL ends) or with-lock\n", 1 },
    { "lock release", "KEY TOKEN",
      "exits 1 if not released (not_held, not_owner)\n", 0 },
    { "lock extend", "KEY TOKEN [--ttl MS]",
      "sets the remaining TTL; exits 1 if not held\n", 0 },
    { "lock status", "KEY",
      "prints \"locked\" (exit 0) or \"unlocked\" (exit 1)\n", 0 },
    { "with-lock", "KEY [--ttl MS] [--retry-delay MS] [--max-retries N] -- COMMAND...",
      "runs COMMAND while holding the lock (extended by\n"
      "the daemon for as long as it runs), releases it,\n"
      "and exits with COMMAND's status (128+N if killed\n"
      "by signal N, 127 if not found); 75 if the lock\n"
      "was held by others through all retries. SIGTERM,\n"
      "SIGINT, SIGHUP and SIGQUIT sent to fmredis are\n"
      "passed on to COMMAND\n", 0 },
    { "wake signal", "ID... [--channel C]",
      "wakes the workers of each ID; prints the number\n"
      "of receivers (one ID) or of IDs signaled (several)\n", 1 },
    { "wake listen", "[--channel C] [--group G] [--count N] [--wait MS] [--json]",
      "subscribes, prints \"subscribed<TAB>CHANNEL\", then\n"
      "one line per event:\n"
      "  wake<TAB>CHANNEL<TAB>EXECUTION_ID<TAB>TIMESTAMP\n"
      "  redis<TAB>up|down\n"
      "  lock.lost<TAB>KEY\n"
      "(--json: each event's JSON instead, and no\n"
      "subscribed line). Stops after N wakes (exit 0),\n"
      "or when MS pass without reaching N (exit 1)\n", 0 },
    { "cache get", "[--fresh] ID",
      "prints the execution's JSON; exits 1 on a miss.\n"
      "--fresh reads Redis, not the daemon's near cache\n", 1 },
    { "cache set", "[--ttl MS] [JSON | -]",
      "stores an execution (a JSON object with a string\n"
      "\"id\"), from the argument or, with - or none,\n"
      "from standard input\n", 0 },
    { "cache invalidate", "ID...",
      "prints how many of the IDs were cached\n", 0 },
    { "cache get-many", "[--fresh] ID...",
      "prints one JSON object: ID -> execution, hits only\n", 0 },
    { "stats", "[--redis-info] [--prometheus]",
      "prints the daemon's stats reply as JSON; with\n"
      "--redis-info also Redis's memory and eviction\n"
      "policy (INFO memory); with --prometheus in the\n"
      "Prometheus text format (docs/METRICS.md)\n", 1 },
    { "raw", "JSON | -",
      "sends one request object as is and prints the\n"
      "reply (exit 3 when it says ok:false)\n", 0 },
    { "help", "[COMMAND [SUBCOMMAND]]",
      "prints the usage of one command (also:\n"
      "COMMAND --help), or this text\n", 0 },
};

#define NUSAGES (sizeof(usages) / sizeof(usages[0]))
#define USAGE_COL 26    /* where the general help's descriptions start */

/* Prints text's lines, each after indent spaces; the first after first
 * spaces instead (0: it follows what is already on the line). */
static void put_text(FILE *out, const char *text, int first, int indent)
{
    int pad = first;

    while (*text != '\0') {
        const char *nl = strchr(text, '\n');
        int len = nl ? (int)(nl - text) : (int)strlen(text);

        fprintf(out, "%*s%.*s\n", pad, "", len, text);
        text += len + (nl != NULL);
        pad = indent;
    }
}

static void usage_general(FILE *out)
{
    fputs(usage_head, out);
    for (size_t i = 0; i < NUSAGES; i++) {
        const usage *u = &usages[i];
        int n;

        if (u->group)
            fputc('\n', out);
        n = fprintf(out, "  %s%s%s", u->name, *u->args ? " " : "", u->args);
        if (n <= USAGE_COL - 2) {
            put_text(out, u->text, USAGE_COL - n, USAGE_COL);
        } else {
            fputc('\n', out);
            put_text(out, u->text, USAGE_COL, USAGE_COL);
        }
    }
    fputs(usage_tail, out);
}

/* Whether the entry belongs to the command given as words: "lock" holds
 * "lock acquire", and "lock acquire" itself. */
static int usage_of(const usage *u, const char *words)
{
    size_t n = strlen(words);

    return strncmp(u->name, words, n) == 0 && (u->name[n] == '\0' || u->name[n] == ' ');
}

/* Prints the usage of the command given as words, if there is one (out
 * NULL: only says whether there is). */
static int usage_command(FILE *out, const char *words)
{
    int found = 0;

    for (size_t i = 0; i < NUSAGES; i++) {
        const usage *u = &usages[i];

        if (!usage_of(u, words))
            continue;
        if (out == NULL)
            return 1;
        fprintf(out, "%sUsage: fmredis [-s SOCKET] [-t TIMEOUT_MS] %s%s%s\n", found ? "\n" : "",
                u->name, *u->args ? " " : "", u->args);
        put_text(out, u->text, 2, 2);
        found = 1;
    }
    if (found)
        fputs("\nOptions and exit statuses: fmredis --help\n", out);
    return found;
}

static int is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* `COMMAND --help`: the command's usage on stdout, and done. */
static void help_and_exit(const char *words) __attribute__((noreturn));
static void help_and_exit(const char *words)
{
    if (!usage_command(stdout, words))
        usage_error("no help for '%s'", words);
    exit(fflush(stdout) == 0 ? EX_OK : EX_CONN);
}

/* The child of with-lock, for the signal handler to forward signals to.
 * The only state outside main's frame: a signal handler needs it. */
static volatile sig_atomic_t child_pid;

/* What main parsed; commands connect only once their arguments are known
 * good, so a usage error is reported as one even without a daemon. */
typedef struct cli {
    const char *socket_path;
    int timeout;
    fm_client *c;
} cli;

static int client_fail(fm_client *c);

static fm_client *conn(cli *t)
{
    int rc;

    t->c = fm_connect(t->socket_path, t->timeout);
    if (t->c == NULL) {
        fputs("fmredis: oom: out of memory\n", stderr);
        exit(EX_CONN);
    }
    if (fm_client_err(t->c) == FM_ERR_NONE)
        return t->c;
    rc = client_fail(t->c);
    fm_client_free(t->c);
    exit(rc == EX_USAGE_ ? EX_CONN : rc);
}

static void usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("fmredis: usage: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'fmredis --help'.\n", stderr);
    exit(EX_USAGE_);
}

static void say(const char *code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void say(const char *code, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "fmredis: %s: ", code);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* The code printed for the client's error: the daemon's, or the library's
 * name for it. */
static const char *client_code(const fm_client *c)
{
    fm_client_error e = fm_client_err(c);

    return e == FM_ERR_SERVER ? fm_client_errcode(c) : fm_client_error_name(e);
}

/* Reports the client's error and returns the matching exit status. */
static int client_fail(fm_client *c)
{
    fprintf(stderr, "fmredis: %s: %s\n", client_code(c), fm_client_errstr(c));
    switch (fm_client_err(c)) {
    case FM_ERR_SERVER: return EX_DAEMON;
    case FM_ERR_TIMEOUT: return EX_TIME;
    case FM_ERR_ARG: return EX_USAGE_;
    default: return EX_CONN;
    }
}

/* ------------------------------------------------------------------------ */
/* Argument parsing of commands: "--name [value]" anywhere, "--" ends them. */

typedef struct opt {
    const char *name;
    int has_arg;
    const char *val;    /* the value, or "" for a flag that was given */
} opt;

static opt *find_opt(opt *opts, const char *name)
{
    for (; opts != NULL && opts->name != NULL; opts++)
        if (strcmp(opts->name, name) == 0)
            return opts;
    return NULL;
}

/* Collects the options of opts out of argv[0..argc) and compacts the rest
 * into argv, returning how many positional arguments are left. With
 * stop_after > 0, everything from the positional argument after the first
 * stop_after ones on (or after "--") is kept as is: a command line.
 * --help or -h where an option may stand prints the usage of cmd (the
 * command's words) and exits; after "--" they are arguments. */
static int parse_opts(int argc, char **argv, opt *opts, int stop_after,
                      int *cmd_at, const char *cmd)
{
    int n = 0, i;

    if (cmd_at != NULL)
        *cmd_at = -1;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        opt *o;

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (stop_after > 0 && n >= stop_after && a[0] != '-')
            break;
        if (is_help(a))
            help_and_exit(cmd);
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            argv[n++] = argv[i];
            continue;
        }
        o = find_opt(opts, a + 2);
        if (o == NULL)
            usage_error("unknown option %s", a);
        if (o->has_arg) {
            if (i + 1 >= argc)
                usage_error("%s needs a value", a);
            o->val = argv[++i];
        } else {
            o->val = "";
        }
    }
    if (cmd_at != NULL)
        *cmd_at = n;
    for (; i < argc; i++)
        argv[n++] = argv[i];
    return n;
}

static int64_t parse_int(const char *s, const char *what, int64_t min,
                         int64_t max)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "fmredis: usage: %s must be an integer from %lld to "
                "%lld, got '%s'\nTry 'fmredis --help'.\n", what,
                (long long)min, (long long)max, s);
        exit(EX_USAGE_);
    }
    return v;
}

#define MS_MAX 2147483647LL

static int64_t opt_ms(opt *opts, const char *name)
{
    opt *o = find_opt(opts, name);

    if (o == NULL || o->val == NULL)
        return 0;
    return parse_int(o->val, name, 1, MS_MAX);
}

static int opt_flag(opt *opts, const char *name)
{
    opt *o = find_opt(opts, name);

    return o != NULL && o->val != NULL;
}

static const char *opt_str(opt *opts, const char *name)
{
    opt *o = find_opt(opts, name);

    return o != NULL ? o->val : NULL;
}

static void need_args(int n, int min, int max, const char *cmd)
{
    if (n < min || (max >= 0 && n > max))
        usage_error("wrong number of arguments for '%s'", cmd);
}

/* Reads all of standard input. */
static char *read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);

    if (buf == NULL)
        return NULL;
    for (;;) {
        size_t got;

        if (n == cap) {
            char *p = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);

            if (p == NULL) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
        got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            if (ferror(stdin)) {
                free(buf);
                return NULL;
            }
            break;
        }
    }
    *len = n;
    return buf;
}

/* Text given as an argument, or standard input for "-" or none. */
static char *arg_or_stdin(int n, char **args, size_t *len, int *owned)
{
    char *s;

    *owned = 0;
    if (n == 1 && strcmp(args[0], "-") != 0) {
        *len = strlen(args[0]);
        return args[0];
    }
    s = read_stdin(len);
    if (s == NULL) {
        say("io", "cannot read standard input: %s", strerror(errno));
        exit(EX_CONN);
    }
    /* A trailing newline from echo or a file is not part of the request. */
    while (*len > 0 && (s[*len - 1] == '\n' || s[*len - 1] == '\r'))
        (*len)--;
    *owned = 1;
    return s;
}

static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */

static int cmd_ping(cli *t, int argc, char **argv)
{
    opt opts[] = { { "redis", 0, NULL }, { NULL, 0, NULL } };
    int n = parse_opts(argc, argv, opts, 0, NULL, "ping"), up, check;

    need_args(n, 0, 0, "ping");
    fm_client *c = conn(t);
    check = opt_flag(opts, "redis");
    if (fm_ping(c, check, &up) != FM_OK)
        return client_fail(c);
    printf("redis %s\n", up == 1 ? "up" : up == 0 ? "down" : "unknown");
    return check && up != 1 ? EX_NO : EX_OK;
}

static int cmd_hello(cli *t, int argc, char **argv)
{
    opt opts[] = { { "name", 1, NULL }, { NULL, 0, NULL } };
    int n = parse_opts(argc, argv, opts, 0, NULL, "hello");
    fm_hello_info info;

    need_args(n, 0, 0, "hello");
    fm_client *c = conn(t);
    if (fm_hello(c, opt_str(opts, "name"), &info) != FM_OK)
        return client_fail(c);
    printf("server %s\nprotocol %lld\n", info.server,
           (long long)info.protocol);
    return EX_OK;
}

/* Sets *lo up (fm_lock_opts_init) from the lock options of a command. */
static void lock_opts_from(opt *opts, fm_lock_opts *lo)
{
    const char *r = opt_str(opts, "max-retries");

    fm_lock_opts_init(lo);
    lo->ttl_ms = opt_ms(opts, "ttl");
    lo->retry_delay_ms = opt_ms(opts, "retry-delay");
    if (r != NULL) {
        lo->max_retries = parse_int(r, "max-retries", 0, MS_MAX);
        if (lo->max_retries == 0)
            lo->max_retries = FM_LOCK_NO_RETRY;
    }
}

static int cmd_lock(cli *t, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";

    if (is_help(sub))
        help_and_exit("lock");
    argc--;
    argv++;
    if (strcmp(sub, "acquire") == 0) {
        opt opts[] = { { "ttl", 1, NULL }, { "retry-delay", 1, NULL },
                       { "max-retries", 1, NULL }, { "keep", 0, NULL },
                       { NULL, 0, NULL } };
        int n = parse_opts(argc, argv, opts, 0, NULL, "lock acquire");
        fm_lock_opts lo;
        fm_lock lk;

        need_args(n, 1, 1, "lock acquire");
        lock_opts_from(opts, &lo);
        if (opt_flag(opts, "keep"))
            lo.on_disconnect = FM_ON_DISCONNECT_KEEP;
        fm_client *c = conn(t);
        if (fm_lock_acquire(c, argv[0], &lo, &lk) != FM_OK)
            return client_fail(c);
        if (!lk.acquired) {
            say("not_acquired", "lock '%s' is held by another client",
                argv[0]);
            return EX_NO;
        }
        printf("%s %lld\n", lk.token, (long long)lk.fence);
        return EX_OK;
    }
    if (strcmp(sub, "release") == 0) {
        int n = parse_opts(argc, argv, NULL, 0, NULL, "lock release"), released;
        fm_release_reason why;

        need_args(n, 2, 2, "lock release");
        fm_client *c = conn(t);
        if (fm_lock_release(c, argv[0], argv[1], &released, &why) != FM_OK)
            return client_fail(c);
        if (!released) {
            if (why == FM_RELEASE_NOT_HELD)
                say("not_held", "lock '%s' is not held", argv[0]);
            else if (why == FM_RELEASE_NOT_OWNER)
                say("not_owner", "another token holds lock '%s'", argv[0]);
            else
                say("not_released", "lock '%s' was not released", argv[0]);
            return EX_NO;
        }
        return EX_OK;
    }
    if (strcmp(sub, "extend") == 0) {
        opt opts[] = { { "ttl", 1, NULL }, { NULL, 0, NULL } };
        int n = parse_opts(argc, argv, opts, 0, NULL, "lock extend"), extended;
        int64_t ttl = opt_ms(opts, "ttl");

        need_args(n, 2, 2, "lock extend");
        fm_client *c = conn(t);
        if (fm_lock_extend(c, argv[0], argv[1], ttl, &extended) != FM_OK)
            return client_fail(c);
        if (!extended) {
            say("not_extended", "this token does not hold lock '%s'",
                argv[0]);
            return EX_NO;
        }
        return EX_OK;
    }
    if (strcmp(sub, "status") == 0) {
        int n = parse_opts(argc, argv, NULL, 0, NULL, "lock status"), locked;

        need_args(n, 1, 1, "lock status");
        fm_client *c = conn(t);
        if (fm_lock_is_locked(c, argv[0], &locked) != FM_OK)
            return client_fail(c);
        puts(locked ? "locked" : "unlocked");
        return locked ? EX_OK : EX_NO;
    }
    usage_error("unknown lock command '%s'", sub);
    return EX_USAGE_;
}

/* --- with-lock ----------------------------------------------------------- */

typedef struct run_ctx {
    char **argv;
    const char *key;
    int status;         /* the exit status to give */
} run_ctx;

/* Passes on signals that were sent to fmredis alone. A terminal's SIGINT or
 * SIGQUIT (si_code SI_KERNEL) already went to the whole foreground group,
 * the command included: forwarding it would deliver it twice. */
static void forward_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (child_pid > 0 && si != NULL && si->si_code <= 0)
        kill((pid_t)child_pid, sig);
}

static void on_sigchld(int sig)
{
    (void)sig;
}

static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };

static void drain_events(fm_client *c, run_ctx *ctx, int *conn_ok)
{
    fm_event ev;
    int r;

    while ((r = fm_event_read(c, &ev)) == FM_OK) {
        if (ev.type == FM_EVENT_LOCK_LOST && ev.key != NULL &&
            strcmp(ev.key, ctx->key) == 0)
            say("lock_lost", "lock '%s' was lost while the command ran",
                ctx->key);
        fm_event_clear(&ev);
    }
    if (r == FM_ERR) {
        say("closed", "lost the connection to fmredisd: %s; the lock is "
            "no longer extended", fm_client_errstr(c));
        *conn_ok = 0;
    }
}

static int run_command(fm_client *c, const fm_lock *lk, void *arg)
{
    run_ctx *ctx = arg;
    sigset_t block, old;
    struct sigaction sa;
    pid_t pid;
    int st, conn_ok = 1;

    (void)lk;
    /* Signals stay blocked from before the fork until the child's handlers
     * are reset and the parent knows the child's pid. SIGCHLD stays blocked
     * in the parent except inside ppoll, so its arrival cannot be missed
     * between waitpid and the wait. */
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(&block, forwarded[i]);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = forward_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaction(forwarded[i], &sa, NULL);

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        say("io", "fork: %s", strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        ctx->status = EX_CONN;
        return -1;
    }
    if (pid == 0) {
        int e;

        sa.sa_handler = SIG_DFL;
        sa.sa_flags = 0;
        for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
            sigaction(forwarded[i], &sa, NULL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        /* The daemon's socket is close-on-exec. */
        execvp(ctx->argv[0], ctx->argv);
        e = errno;
        fprintf(stderr, "fmredis: exec: %s: %s\n", ctx->argv[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    child_pid = pid;
    sigdelset(&block, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &block, NULL);   /* forwarded ones, not SIGCHLD */

    /* ppoll is interrupted by SIGCHLD only if a handler catches it. */
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;) {
        struct pollfd pfd;
        struct timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
        sigset_t wait_mask;
        pid_t w = waitpid(pid, &st, WNOHANG);

        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            say("io", "waitpid: %s", strerror(errno));
            st = 126 << 8;
            break;
        }
        if (conn_ok && fm_client_has_events(c))
            drain_events(c, ctx, &conn_ok);
        pfd.fd = conn_ok ? fm_client_fd(c) : -1;
        pfd.events = POLLIN;
        pfd.revents = 0;
        sigprocmask(SIG_SETMASK, NULL, &wait_mask);
        sigdelset(&wait_mask, SIGCHLD);
        if (ppoll(&pfd, 1, &ts, &wait_mask) > 0 && pfd.revents != 0)
            drain_events(c, ctx, &conn_ok);
    }
    child_pid = 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (WIFEXITED(st))
        ctx->status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        ctx->status = 128 + WTERMSIG(st);
    else
        ctx->status = 126;
    return ctx->status;
}

static int cmd_with_lock(cli *t, int argc, char **argv)
{
    opt opts[] = { { "ttl", 1, NULL }, { "retry-delay", 1, NULL },
                   { "max-retries", 1, NULL }, { NULL, 0, NULL } };
    int cmd_at, n = parse_opts(argc, argv, opts, 1, &cmd_at, "with-lock");
    fm_lock_opts lo;
    fm_with_lock_result res;
    run_ctx ctx;
    char **cmd;
    int rc;

    if (cmd_at < 1)
        usage_error("%s", "with-lock needs a KEY");
    if (cmd_at > 1)
        usage_error("unexpected argument '%s' before the command", argv[1]);
    if (n <= cmd_at)
        usage_error("%s", "with-lock needs a command to run");
    lock_opts_from(opts, &lo);
    if (lo.ttl_ms != 0 && lo.ttl_ms < 100)
        usage_error("%s", "with-lock needs --ttl of at least 100");
    fm_client *c = conn(t);
    cmd = calloc((size_t)(n - cmd_at) + 1, sizeof(*cmd));
    if (cmd == NULL) {
        say("oom", "%s", "out of memory");
        return EX_CONN;
    }
    memcpy(cmd, argv + cmd_at, (size_t)(n - cmd_at) * sizeof(*cmd));
    ctx.argv = cmd;
    ctx.key = argv[0];
    ctx.status = 0;
    rc = fm_with_lock(c, argv[0], &lo, run_command, &ctx, &res);
    free(cmd);
    if (!res.ran) {
        if (rc != FM_OK)
            return client_fail(c);
        say("not_acquired", "lock '%s' is held by another client", argv[0]);
        return EX_TEMPFAIL_;
    }
    if (rc != FM_OK)
        fprintf(stderr, "fmredis: %s: releasing lock '%s': %s\n",
                client_code(c), argv[0], fm_client_errstr(c));
    else if (!res.released)
        say("lock_lost", "lock '%s' was no longer held when the command "
            "ended", argv[0]);
    return ctx.status;
}

/* --- wake ---------------------------------------------------------------- */

static int cmd_wake(cli *t, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";

    if (is_help(sub))
        help_and_exit("wake");
    argc--;
    argv++;
    if (strcmp(sub, "signal") == 0) {
        opt opts[] = { { "channel", 1, NULL }, { NULL, 0, NULL } };
        int n = parse_opts(argc, argv, opts, 0, NULL, "wake signal");
        int64_t count;
        int rc;

        need_args(n, 1, -1, "wake signal");
        fm_client *c = conn(t);
        if (n == 1)
            rc = fm_wake_signal(c, argv[0], opt_str(opts, "channel"), &count);
        else
            rc = fm_wake_signal_many(c, (const char *const *)argv, (size_t)n,
                                     opt_str(opts, "channel"), &count);
        if (rc != FM_OK)
            return client_fail(c);
        printf("%lld\n", (long long)count);
        return EX_OK;
    }
    if (strcmp(sub, "listen") == 0) {
        opt opts[] = { { "channel", 1, NULL }, { "group", 1, NULL },
                       { "count", 1, NULL }, { "wait", 1, NULL },
                       { "json", 0, NULL }, { NULL, 0, NULL } };
        int n = parse_opts(argc, argv, opts, 0, NULL, "wake listen");
        const char *cs = opt_str(opts, "count");
        int64_t want = cs ? parse_int(cs, "count", 1, INT64_MAX) : 0, got = 0;
        int64_t wait_ms = opt_ms(opts, "wait");
        int json = opt_flag(opts, "json");
        char channel[FM_STR_MAX + 1];
        struct timespec start;

        need_args(n, 0, 0, "wake listen");
        fm_client *c = conn(t);
        if (fm_wake_subscribe(c, opt_str(opts, "channel"),
                              opt_str(opts, "group"), channel,
                              sizeof(channel)) != FM_OK)
            return client_fail(c);
        if (!json)
            printf("subscribed\t%s\n", channel);
        fflush(stdout);
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            fm_event ev;
            int timeout = FM_TIMEOUT_NONE;

            if (wait_ms > 0) {
                struct timespec now;
                int64_t spent;

                clock_gettime(CLOCK_MONOTONIC, &now);
                spent = (now.tv_sec - start.tv_sec) * 1000 +
                        (now.tv_nsec - start.tv_nsec) / 1000000;
                timeout = spent >= wait_ms ? 0 : (int)(wait_ms - spent);
            }
            if (fm_event_wait(c, &ev, timeout) != FM_OK) {
                if (fm_client_err(c) == FM_ERR_INTERRUPTED)
                    continue;
                if (fm_client_err(c) == FM_ERR_TIMEOUT)
                    return EX_NO;
                return client_fail(c);
            }
            if (json) {
                fwrite(ev.json, 1, ev.json_len, stdout);
                putchar('\n');
            } else if (ev.type == FM_EVENT_WAKE) {
                printf("wake\t%s\t%s\t", ev.channel ? ev.channel : "",
                       ev.execution_id);
                if (ev.has_timestamp)
                    printf("%lld", (long long)ev.timestamp);
                putchar('\n');
            } else if (ev.type == FM_EVENT_REDIS) {
                printf("redis\t%s\n", ev.redis_up ? "up" : "down");
            } else if (ev.type == FM_EVENT_LOCK_LOST) {
                printf("lock.lost\t%s\n", ev.key);
            } else {
                printf("%s\t%.*s\n", ev.name ? ev.name : "event",
                       (int)ev.json_len, ev.json);
            }
            fflush(stdout);
            if (ev.type == FM_EVENT_WAKE)
                got++;
            fm_event_clear(&ev);
            if (want > 0 && got >= want)
                return EX_OK;
        }
    }
    usage_error("unknown wake command '%s'", sub);
    return EX_USAGE_;
}

/* --- cache --------------------------------------------------------------- */

static int cmd_cache(cli *t, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";

    if (is_help(sub))
        help_and_exit("cache");
    argc--;
    argv++;
    if (strcmp(sub, "get") == 0) {
        opt opts[] = { { "fresh", 0, NULL }, { NULL, 0, NULL } };
        int n = parse_opts(argc, argv, opts, 0, NULL, "cache get");
        unsigned flags = opts[0].val != NULL ? FM_CACHE_FRESH : 0;
        char *json;
        size_t len;

        need_args(n, 1, 1, "cache get");
        fm_client *c = conn(t);
        if (fm_cache_get_flags(c, argv[0], flags, &json, &len) != FM_OK)
            return client_fail(c);
        if (json == NULL)
            return EX_NO;
        fwrite(json, 1, len, stdout);
        putchar('\n');
        free(json);
        return EX_OK;
    }
    if (strcmp(sub, "set") == 0) {
        opt opts[] = { { "ttl", 1, NULL }, { NULL, 0, NULL } };
        int n = parse_opts(argc, argv, opts, 0, NULL, "cache set"), owned, rc;
        size_t len;
        char *json;

        int64_t ttl = opt_ms(opts, "ttl");

        need_args(n, 0, 1, "cache set");
        json = arg_or_stdin(n, argv, &len, &owned);
        fm_client *c = conn(t);
        rc = fm_cache_set(c, json, len, ttl);
        if (owned)
            free(json);
        return rc == FM_OK ? EX_OK : client_fail(c);
    }
    if (strcmp(sub, "invalidate") == 0) {
        int n = parse_opts(argc, argv, NULL, 0, NULL, "cache invalidate");
        int64_t existed;

        need_args(n, 1, -1, "cache invalidate");
        fm_client *c = conn(t);
        if (fm_cache_invalidate_many(c, (const char *const *)argv, (size_t)n,
                                     &existed) != FM_OK)
            return client_fail(c);
        printf("%lld\n", (long long)existed);
        return EX_OK;
    }
    if (strcmp(sub, "get-many") == 0) {
        opt opts[] = { { "fresh", 0, NULL }, { NULL, 0, NULL } };
        int n = parse_opts(argc, argv, opts, 0, NULL, "cache get-many");
        unsigned flags = opts[0].val != NULL ? FM_CACHE_FRESH : 0;
        fm_cache_entry *e;
        size_t count;

        need_args(n, 1, -1, "cache get-many");
        fm_client *c = conn(t);
        if (fm_cache_get_many_flags(c, (const char *const *)argv, (size_t)n, flags,
                                    &e, &count) != FM_OK)
            return client_fail(c);
        putchar('{');
        for (size_t i = 0; i < count; i++) {
            if (i > 0)
                putchar(',');
            put_json_string(stdout, e[i].id);
            putchar(':');
            fwrite(e[i].json, 1, e[i].len, stdout);
        }
        puts("}");
        fm_cache_entries_free(e, count);
        return EX_OK;
    }
    usage_error("unknown cache command '%s'", sub);
    return EX_USAGE_;
}

static int cmd_stats(cli *t, int argc, char **argv)
{
    static const char with_info[] = "{\"op\":\"stats\",\"redis_info\":true}";
    opt opts[] = { { "prometheus", 0, NULL }, { "redis-info", 0, NULL }, { NULL, 0, NULL } };
    int n = parse_opts(argc, argv, opts, 0, NULL, "stats"), rc;
    char *json;
    size_t len;

    need_args(n, 0, 0, "stats");
    fm_client *c = conn(t);
    if (opt_flag(opts, "redis-info"))
        rc = fm_call_raw(c, with_info, sizeof(with_info) - 1, &json, &len);
    else
        rc = fm_stats(c, &json, &len);
    if (rc != FM_OK) {
        free(json);
        return client_fail(c);
    }
    if (opt_flag(opts, "prometheus")) {
        rc = cli_prom_write(stdout, json, len);
        free(json);
        if (rc != 0) {
            fputs("fmredis: bad_reply: the stats reply is not a stats object\n", stderr);
            return EX_CONN;
        }
        return EX_OK;
    }
    fwrite(json, 1, len, stdout);
    putchar('\n');
    free(json);
    return EX_OK;
}

static int cmd_raw(cli *t, int argc, char **argv)
{
    int owned, rc;
    size_t len, rlen;
    char *req, *reply;

    /* No option parsing: the request is taken as it is (a request is
     * never --help). */
    if (argc == 1 && is_help(argv[0]))
        help_and_exit("raw");
    need_args(argc, 0, 1, "raw");
    req = arg_or_stdin(argc, argv, &len, &owned);
    fm_client *c = conn(t);
    rc = fm_call_raw(c, req, len, &reply, &rlen);
    if (owned)
        free(req);
    if (reply != NULL) {
        fwrite(reply, 1, rlen, stdout);
        putchar('\n');
        free(reply);
    }
    return rc == FM_OK ? EX_OK : client_fail(c);
}

/* ------------------------------------------------------------------------ */

typedef int (*command_fn)(cli *t, int argc, char **argv);

static const struct command {
    const char *name;
    command_fn run;
} commands[] = {
    { "ping", cmd_ping },
    { "hello", cmd_hello },
    { "lock", cmd_lock },
    { "with-lock", cmd_with_lock },
    { "wake", cmd_wake },
    { "cache", cmd_cache },
    { "stats", cmd_stats },
    { "raw", cmd_raw },
};

static command_fn find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return commands[i].run;
    return NULL;
}

/* `fmredis help [COMMAND [SUBCOMMAND]]`. */
static int help(int argc, char **argv)
{
    char words[64];

    if (argc == 0) {
        usage_general(stdout);
        return EX_OK;
    }
    if (argc > 2)
        usage_error("%s", "help takes a command and perhaps a subcommand");
    snprintf(words, sizeof(words), "%s%s%s", argv[0], argc == 2 ? " " : "",
             argc == 2 ? argv[1] : "");
    if (usage_command(stdout, words))
        return EX_OK;
    if (argc == 2 && usage_command(NULL, argv[0]))
        usage_error("unknown %s command '%s'", argv[0], argv[1]);
    usage_error("unknown command '%s'", argv[0]);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *socket_path = NULL, *cmd;
    int timeout = FM_TIMEOUT_DEFAULT, ch, rc;
    command_fn run;
    cli t;

    opterr = 0;
    while ((ch = getopt_long(argc, argv, "+s:t:hV", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            socket_path = optarg;
            break;
        case 't':
            timeout = (int)parse_int(optarg, "-t", 0, INT_MAX);
            if (timeout == 0)
                timeout = FM_TIMEOUT_NONE;
            break;
        case 'h':
            usage_general(stdout);
            return EX_OK;
        case 'V':
            printf("fmredis %s (protocol %d)\n", FMREDIS_VERSION,
                   FM_PROTOCOL_VERSION);
            return EX_OK;
        default:
            if (optopt != 0)
                usage_error("bad option or missing value: -%c", optopt);
            usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        usage_error("%s", "no command given");
    cmd = argv[optind];
    argc -= optind + 1;
    argv += optind + 1;

    /* Usage errors come before connecting: check the command name now. */
    if (strcmp(cmd, "help") == 0)
        return help(argc, argv);
    run = find_command(cmd);
    if (run == NULL)
        usage_error("unknown command '%s'", cmd);

    t.socket_path = socket_path;
    t.timeout = timeout;
    t.c = NULL;
    rc = run(&t, argc, argv);
    fm_client_free(t.c);
    if (fflush(stdout) != 0 && rc == EX_OK) {
        say("io", "writing output: %s", strerror(errno));
        rc = EX_CONN;
    }
    return rc;
}
