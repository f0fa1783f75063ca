/* topo_tls.c -- certificates made with the openssl command, and
 * redis-server serving TLS with them (see topo_tls.h).
 *
 * Keys are EC P-256: a key takes milliseconds, where RSA 2048 takes up to
 * a second on a loaded machine. Certificates are signed with
 * `openssl x509 -req`, except the expired one: OpenSSL 3.0's x509 can only
 * start a validity at the present, so that one comes from `openssl ca`,
 * which takes -startdate/-enddate and needs a small database of its own. */
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "proc.h"
#include "topo_tls.h"

#define OPENSSL_MS 30000    /* one openssl run, on a loaded machine */
#define VALID_DAYS "30"

/* Extensions as a verifier expects them: a CA marked as one, a server
 * named by DNS and by IP (an IP host is checked against the IP names), and
 * leaf certificates that are no CA. The [ca] part is `openssl ca`'s
 * database; %s is the directory. */
static const char conf_format[] =
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n"
    "[ca_ext]\n"
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[server_ext]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
    "[client_ext]\n"
    "basicConstraints = critical, CA:FALSE\n"
    "keyUsage = critical, digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "[ca]\n"
    "default_ca = past\n"
    "[past]\n"
    "database = %s/index.txt\n"
    "serial = %s/serial\n"
    "new_certs_dir = %s\n"
    "default_md = sha256\n"
    "policy = any\n"
    "[any]\n"
    "commonName = supplied\n";

/* The certificates of this process, for the exit handler: a fixture that
 * fails after making them never reaches its teardown. */
static fmt_tls_certs *live;
static pid_t live_owner;
static int exit_hooked;

/* dir/name into out (FMT_TLS_PATH bytes). */
static void path_of(char *out, const fmt_tls_certs *c, const char *name)
{
    snprintf(out, FMT_TLS_PATH, "%s/%s", c->dir, name);
}

static void write_file(const fmt_tls_certs *c, const char *name, const char *text)
{
    char path[FMT_TLS_PATH];
    FILE *f;

    path_of(path, c, name);
    f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

/* Runs openssl with args (NULL-terminated), its output appended to the
 * log; fails the test with what it said unless it exits 0. */
static void openssl(const fmt_tls_certs *c, const char *const *args)
{
    const char *argv[40] = {"openssl"};
    int n = 1, rc;
    fmt_proc p;
    FILE *log;

    for (int i = 0; args[i] != NULL; i++) {
        ck_assert_int_lt(n, 39);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    rc = fmt_run(&p, argv, NULL, NULL, OPENSSL_MS);
    log = fopen(c->log, "a");
    if (log != NULL) {
        fputs("$", log);
        for (int i = 0; i < n; i++)
            fprintf(log, " %s", argv[i]);
        fprintf(log, "\n%s%s", p.text[1] ? p.text[1] : "", p.text[2] ? p.text[2] : "");
        fclose(log);
    }
    ck_assert_msg(rc == 0, "openssl %s exited %d: %s", args[0], rc,
                  p.text[2] ? p.text[2] : "(no output)");
    fmt_proc_free(&p);
}

/* A self-signed CA: dir/<name>.key and .crt. */
static void make_ca(const fmt_tls_certs *c, const char *conf, const char *name,
                    const char *subject)
{
    char key[FMT_TLS_PATH], crt[FMT_TLS_PATH], file[64];

    snprintf(file, sizeof(file), "%s.key", name);
    path_of(key, c, file);
    snprintf(file, sizeof(file), "%s.crt", name);
    path_of(crt, c, file);
    openssl(c, (const char *const[]){"req", "-config", conf, "-x509", "-new", "-newkey", "ec",
                                     "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                                     "-keyout", key, "-out", crt, "-subj", subject,
                                     "-days", VALID_DAYS, "-extensions", "ca_ext", NULL});
}

/* A key and a signing request: dir/<name>.key and .csr. */
static void make_request(const fmt_tls_certs *c, const char *conf, const char *name,
                         const char *subject)
{
    char key[FMT_TLS_PATH], csr[FMT_TLS_PATH], file[64];

    snprintf(file, sizeof(file), "%s.key", name);
    path_of(key, c, file);
    snprintf(file, sizeof(file), "%s.csr", name);
    path_of(csr, c, file);
    openssl(c, (const char *const[]){"req", "-config", conf, "-new", "-newkey", "ec",
                                     "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                                     "-keyout", key, "-out", csr, "-subj", subject, NULL});
}

/* dir/<name>.csr signed by the CA dir/<ca>.crt with the extensions ext,
 * valid from now on: dir/<name>.crt. */
static void sign(const fmt_tls_certs *c, const char *conf, const char *name, const char *ca,
                 const char *ext, const char *serial)
{
    char csr[FMT_TLS_PATH], crt[FMT_TLS_PATH], ca_crt[FMT_TLS_PATH], ca_key[FMT_TLS_PATH];
    char file[64];

    snprintf(file, sizeof(file), "%s.csr", name);
    path_of(csr, c, file);
    snprintf(file, sizeof(file), "%s.crt", name);
    path_of(crt, c, file);
    snprintf(file, sizeof(file), "%s.crt", ca);
    path_of(ca_crt, c, file);
    snprintf(file, sizeof(file), "%s.key", ca);
    path_of(ca_key, c, file);
    openssl(c, (const char *const[]){"x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                                     "-set_serial", serial, "-days", VALID_DAYS, "-extfile", conf,
                                     "-extensions", ext, "-out", crt, NULL});
}

/* server.csr signed by the CA for a day of January 2020. */
static void sign_expired(const fmt_tls_certs *c, const char *conf)
{
    char csr[FMT_TLS_PATH], ca_key[FMT_TLS_PATH];

    write_file(c, "index.txt", "");
    write_file(c, "serial", "1000\n");
    path_of(csr, c, "server.csr");
    path_of(ca_key, c, "ca.key");
    openssl(c, (const char *const[]){"ca", "-config", conf, "-batch", "-notext",
                                     "-cert", c->ca, "-keyfile", ca_key, "-in", csr,
                                     "-out", c->expired_cert, "-extensions", "server_ext",
                                     "-startdate", "20200101000000Z",
                                     "-enddate", "20200102000000Z", NULL});
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    remove(path);
    return 0;
}

void fmt_tls_certs_remove(fmt_tls_certs *c)
{
    if (c->dir[0] != '\0' && getenv("FMT_KEEP_LOGS") == NULL)
        nftw(c->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    c->dir[0] = '\0';
    if (live == c)
        live = NULL;
}

static void at_exit(void)
{
    if (live != NULL && live_owner == getpid())
        fmt_tls_certs_remove(live);
}

/* ca_dir: a copy of the CA under the name `openssl rehash` links to it. */
static void make_ca_dir(fmt_tls_certs *c)
{
    char *pem = fmt_slurp(c->ca);

    path_of(c->ca_dir, c, "cas");
    ck_assert_msg(mkdir(c->ca_dir, 0700) == 0, "cannot make %s", c->ca_dir);
    write_file(c, "cas/ca.crt", pem);
    free(pem);
    openssl(c, (const char *const[]){"rehash", c->ca_dir, NULL});
}

void fmt_tls_certs_make(fmt_tls_certs *c)
{
    char conf[FMT_TLS_PATH], *text = NULL;

    /* A set a failed fixture left behind goes first. */
    if (live != NULL && live_owner == getpid())
        fmt_tls_certs_remove(live);
    memset(c, 0, sizeof(*c));
    snprintf(c->dir, sizeof(c->dir), "/tmp/fmtest-tls.XXXXXX");
    ck_assert_msg(mkdtemp(c->dir) != NULL, "cannot make a directory for the certificates");
    if (!exit_hooked) {
        atexit(at_exit);
        exit_hooked = 1;
    }
    live = c;
    live_owner = getpid();
    path_of(c->log, c, "openssl.log");
    path_of(conf, c, "openssl.cnf");
    ck_assert_int_ge(asprintf(&text, conf_format, c->dir, c->dir, c->dir), 0);
    write_file(c, "openssl.cnf", text);
    free(text);

    path_of(c->ca, c, "ca.crt");
    path_of(c->server_cert, c, "server.crt");
    path_of(c->server_key, c, "server.key");
    path_of(c->client_cert, c, "client.crt");
    path_of(c->client_key, c, "client.key");
    path_of(c->expired_cert, c, "expired.crt");
    path_of(c->other_cert, c, "other.crt");
    path_of(c->other_key, c, "other.key");

    make_ca(c, conf, "ca", "/CN=fmredisd test CA");
    make_ca_dir(c);
    make_request(c, conf, "server", "/CN=fmredisd test server");
    sign(c, conf, "server", "ca", "server_ext", "1");
    make_request(c, conf, "client", "/CN=fmredisd test client");
    sign(c, conf, "client", "ca", "client_ext", "2");
    sign_expired(c, conf);
    make_ca(c, conf, "other-ca", "/CN=fmredisd unrelated CA");
    make_request(c, conf, "other", "/CN=fmredisd test server");
    sign(c, conf, "other", "other-ca", "server_ext", "3");
}

/* What makes a redis-server serve TLS on port_arg with cert (server_cert
 * by default), appended to args at n. Returns the new count; args is not
 * NULL-terminated. */
static int server_args(const char **args, int n, const fmt_tls_certs *c, fmt_tls_cert cert,
                       const char *port_arg, int auth_clients)
{
    const char *crt = cert == FMT_TLS_OTHER_CA ? c->other_cert
                    : cert == FMT_TLS_EXPIRED ? c->expired_cert : c->server_cert;

    args[n++] = "--tls-port";
    args[n++] = port_arg;
    args[n++] = "--tls-cert-file";
    args[n++] = crt;
    args[n++] = "--tls-key-file";
    args[n++] = cert == FMT_TLS_OTHER_CA ? c->other_key : c->server_key;
    /* The CA that checks client certificates. OpenSSL also sends it after
     * the server's certificate when it issued that one: the CA's
     * certificates then come with their root, other_cert alone. */
    args[n++] = "--tls-ca-cert-file";
    args[n++] = c->ca;
    args[n++] = "--tls-auth-clients";
    args[n++] = auth_clients ? "yes" : "no";
    return n;
}

int fmt_tls_topo_args(const char **args, int n, const fmt_tls_certs *c, const char *port_arg,
                      int cluster)
{
    n = server_args(args, n, c, FMT_TLS_GOOD, port_arg, 0);
    args[n++] = "--tls-client-cert-file";
    args[n++] = c->client_cert;
    args[n++] = "--tls-client-key-file";
    args[n++] = c->client_key;
    args[n++] = "--tls-replication";
    args[n++] = "yes";
    if (cluster) {
        args[n++] = "--tls-cluster";
        args[n++] = "yes";
    }
    return n;
}

void fmt_tls_redis_start(fmt_tls_redis *t, const fmt_tls_certs *c, fmt_tls_cert cert,
                         int auth_clients)
{
    int n = 0;

    memset(t, 0, sizeof(*t));
    t->port = fmt_unused_port();
    /* fmt_unused_port closes its probe: the same port may come twice. */
    do
        t->plain_port = fmt_unused_port();
    while (t->plain_port == t->port);
    snprintf(t->port_arg, sizeof(t->port_arg), "%d", t->port);
    snprintf(t->plain_arg, sizeof(t->plain_arg), "%d", t->plain_port);
    snprintf(t->url, sizeof(t->url), "rediss://127.0.0.1:%d", t->port);
    /* After the harness's --port 0, which it overrides; loopback only. */
    t->extra[n++] = "--port";
    t->extra[n++] = t->plain_arg;
    t->extra[n++] = "--bind";
    t->extra[n++] = "127.0.0.1";
    n = server_args(t->extra, n, c, cert, t->port_arg, auth_clients);
    t->extra[n] = NULL;
    ck_assert_msg(fmt_redis_start(&t->r, t->extra) == 0,
                  "redis-server with TLS on port %d did not start", t->port);
}

static int log_says_accept(void *arg)
{
    const fmt_tls_sni_server *s = arg;
    char *log = fmt_slurp(s->log);
    int yes = strstr(log, "ACCEPT") != NULL;

    free(log);
    return yes;
}

void fmt_tls_sni_server_start(fmt_tls_sni_server *s, const fmt_tls_certs *c)
{
    char accept[32];
    FILE *f;

    memset(s, 0, sizeof(*s));
    s->port = fmt_unused_port();
    snprintf(s->url, sizeof(s->url), "rediss://127.0.0.1:%d", s->port);
    snprintf(accept, sizeof(accept), "127.0.0.1:%d", s->port);
    snprintf(s->log, sizeof(s->log), "%s/s_server.%d.log", c->dir, s->port);
    /* There before the server writes to it, for log_says_accept. */
    f = fopen(s->log, "w");
    ck_assert_msg(f != NULL, "cannot write %s", s->log);
    fclose(f);
    /* -rev: it never reads its standard input, which may be closed. */
    s->pid = fmt_spawn((const char *const[]){"openssl", "s_server", "-rev", "-accept", accept,
                                             "-cert", c->other_cert, "-key", c->other_key,
                                             "-servername", "localhost",
                                             "-cert2", c->server_cert, "-key2", c->server_key,
                                             NULL}, s->log);
    ck_assert_msg(s->pid > 0 && fmt_wait_until(log_says_accept, s, OPENSSL_MS),
                  "openssl s_server did not start (see %s)", s->log);
}

void fmt_tls_sni_server_stop(fmt_tls_sni_server *s)
{
    fmt_reap(&s->pid, SIGKILL);
}

/* The value of one CLIENT LIST line's field name ("laddr=", say) at *at,
 * and its length; 0 when the line (len bytes) has no such field. */
static size_t field(const char *line, size_t len, const char *name, const char **at)
{
    size_t nlen = strlen(name);

    for (const char *p = line; p + nlen <= line + len; p++) {
        if ((p == line || p[-1] == ' ') && strncmp(p, name, nlen) == 0) {
            const char *end = p + nlen;

            while (end < line + len && *end != ' ')
                end++;
            *at = p + nlen;
            return (size_t)(end - *at);
        }
    }
    return 0;
}

/* Whether the line's field name holds value: the whole of it, or with
 * prefix set, its beginning. */
static int holds(const char *line, size_t len, const char *name, const char *value, int prefix)
{
    const char *v = "";
    size_t vlen = field(line, len, name, &v), want = strlen(value);

    return (prefix ? vlen >= want : vlen == want) && memcmp(v, value, want) == 0;
}

/* An application's connection through laddr, not self's: no replica
 * (flag S), no sentinel (its links are named sentinel-<id>-cmd and
 * -pubsub). */
static int app_line(const char *line, size_t len, const char *laddr, const char *self)
{
    const char *flags = "";
    size_t flen = field(line, len, "flags=", &flags);

    return holds(line, len, "laddr=", laddr, 0) && !holds(line, len, "id=", self, 0) &&
           memchr(flags, 'S', flen) == NULL && !holds(line, len, "name=", "sentinel-", 1);
}

int fmt_tls_app_clients(redisContext *c, int port)
{
    redisReply *id = redisCommand(c, "CLIENT ID"), *r = NULL;
    char laddr[32], self[32];
    int n = -1;

    if (id != NULL && id->type == REDIS_REPLY_INTEGER)
        r = redisCommand(c, "CLIENT LIST");
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        snprintf(laddr, sizeof(laddr), "127.0.0.1:%d", port);
        snprintf(self, sizeof(self), "%lld", id->integer);
        n = 0;
        for (const char *line = r->str; *line != '\0';) {
            const char *eol = strchr(line, '\n');
            size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);

            n += app_line(line, len, laddr, self);
            line += len + (eol != NULL);
        }
    }
    freeReplyObject(id);
    freeReplyObject(r);
    return n;
}

int fmt_tls_only(redisContext *c, int plain_port, int tls_port, int *apps)
{
    int plain = c != NULL ? fmt_tls_app_clients(c, plain_port) : -1;
    int tls = plain == 0 ? fmt_tls_app_clients(c, tls_port) : -1;

    redisFree(c);       /* takes NULL */
    if (tls < 0)
        return 0;
    *apps += tls;
    return 1;
}
