/* topo_sentinel.c -- a master, a replica and three sentinels for the tests
 * (see topo_sentinel.h). */
#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "topo_sentinel.h"

#define READY_MS 20000      /* sync, and the sentinels finding each other (hello: 2 s) */

/* The topology of this process that is up, for the exit handler. */
static fmt_sentinel_topo *live;
static pid_t live_owner;
static int exit_hooked;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    if (dir[0] != '\0')
        nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* The harness kills its children at exit too; this one also removes the
 * directory, which a failed test never reached fmt_sentinel_stop for. */
static void at_exit(void)
{
    if (live != NULL && live_owner == getpid()) {
        for (int i = 0; i < 3; i++)
            fmt_reap(&live->sentinel_pid[i], SIGKILL);
        for (int i = 0; i < 2; i++)
            fmt_reap(&live->redis_pid[i], SIGKILL);
        remove_tree(live->dir);
    }
}

redisContext *fmt_tcp_connect(int port)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

    if (c == NULL || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);       /* takes NULL */
        return NULL;
    }
    return c;
}

redisContext *fmt_sentinel_connect(const fmt_sentinel_topo *t, int i)
{
    redisContext *c = fmt_tcp_connect(t->sentinel_port[i]);
    redisReply *r;

    if (c == NULL || t->password == NULL)
        return c;
    r = redisCommand(c, "AUTH %s", t->password);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        redisFree(c);
        return NULL;
    }
    freeReplyObject(r);
    return c;
}

int fmt_sentinel_master_port(const fmt_sentinel_topo *t, int i)
{
    redisContext *c = fmt_sentinel_connect(t, i);
    redisReply *r;
    int port = -1;

    if (c == NULL)
        return -1;
    r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", FMT_SENTINEL_MASTER);
    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        port = atoi(r->element[1]->str);
    freeReplyObject(r);
    redisFree(c);
    return port;
}

int fmt_sentinel_node_of(const fmt_sentinel_topo *t, int port)
{
    for (int i = 0; i < 2; i++)
        if (t->redis_port[i] == port || (t->tls != NULL && t->redis_tls_port[i] == port))
            return i;
    return -1;
}

int fmt_sentinel_port(const fmt_sentinel_topo *t, int i)
{
    return t->tls != NULL ? t->redis_tls_port[i] : t->redis_port[i];
}

/* Over TLS, what makes a server or a sentinel serve TLS on port (written
 * into port_arg) and speak it to the others, appended to argv at n; the
 * new count. */
static int tls_args(const fmt_sentinel_topo *t, const char **argv, int n, char port_arg[16],
                    int port)
{
    if (t->tls == NULL)
        return n;
    snprintf(port_arg, 16, "%d", port);
    return fmt_tls_topo_args(argv, n, t->tls, port_arg, 0);
}

int fmt_redis_port_is_master(int port)
{
    redisContext *c = fmt_tcp_connect(port);
    redisReply *r;
    int yes;

    if (c == NULL)
        return 0;
    r = redisCommand(c, "ROLE");
    yes = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
          strcmp(r->element[0]->str, "master") == 0;
    freeReplyObject(r);
    redisFree(c);
    return yes;
}

typedef struct switched {
    const fmt_sentinel_topo *t;
    int from;
} switched;

static int all_switched(void *arg)
{
    const switched *sw = arg;

    for (int i = 0; i < 3; i++) {
        int port;

        if (sw->t->sentinel_pid[i] <= 0)
            continue;
        port = fmt_sentinel_master_port(sw->t, i);
        if (port < 0 || port == sw->from)
            return 0;
    }
    return 1;
}

int fmt_sentinel_await_switch(const fmt_sentinel_topo *t, int port, int timeout_ms)
{
    switched sw = {t, port};

    return fmt_wait_until(all_switched, &sw, timeout_ms);
}

/* ---- starting ---- */

static int replica_synced(void *arg)
{
    const fmt_sentinel_topo *t = arg;
    redisContext *c = fmt_tcp_connect(t->redis_port[1]);
    redisReply *r;
    int up;

    if (c == NULL)
        return 0;
    r = redisCommand(c, "INFO replication");
    up = r != NULL && r->type == REDIS_REPLY_STRING &&
         strstr(r->str, "master_link_status:up") != NULL;
    freeReplyObject(r);
    redisFree(c);
    return up;
}

/* Every sentinel sees the replica and the two others: a failover can be
 * agreed on and has somewhere to go. */
static int sentinels_ready(void *arg)
{
    const fmt_sentinel_topo *t = arg;

    for (int i = 0; i < 3; i++) {
        redisContext *c = fmt_sentinel_connect(t, i);
        redisReply *r;
        long others = -1, replicas = -1;

        if (c == NULL)
            return 0;
        r = redisCommand(c, "SENTINEL master %s", FMT_SENTINEL_MASTER);
        for (size_t k = 0; r != NULL && r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements;
             k += 2) {
            if (strcmp(r->element[k]->str, "num-other-sentinels") == 0)
                others = atol(r->element[k + 1]->str);
            else if (strcmp(r->element[k]->str, "num-slaves") == 0)
                replicas = atol(r->element[k + 1]->str);
        }
        freeReplyObject(r);
        redisFree(c);
        if (others != 2 || replicas != 1)
            return 0;
    }
    return 1;
}

static int answers(void *arg)
{
    redisContext *c = fmt_tcp_connect(*(int *)arg);
    redisReply *r;
    int ok;

    if (c == NULL)
        return 0;
    r = redisCommand(c, "PING");
    /* A sentinel with a password answers NOAUTH: it is up all the same. */
    ok = r != NULL && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
    return ok;
}

static int start_redis(fmt_sentinel_topo *t, int i)
{
    char port[16], master[16], tls_port[16], dir[300], log[320];
    const char *argv[32 + FMT_TLS_TOPO_ARGS] = {
        "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", dir, "--daemonize", "no", "--repl-diskless-sync-delay", "0"};
    int n = 15;

    snprintf(port, sizeof(port), "%d", t->redis_port[i]);
    snprintf(master, sizeof(master), "%d", fmt_sentinel_port(t, 0));
    snprintf(dir, sizeof(dir), "%s/redis%d", t->dir, i);
    snprintf(log, sizeof(log), "%s/redis%d.log", t->dir, i);
    if (mkdir(dir, 0700) != 0)
        return -1;
    if (i == 1) {
        argv[n++] = "--replicaof";
        argv[n++] = "127.0.0.1";
        argv[n++] = master;
    }
    n = tls_args(t, argv, n, tls_port, t->redis_tls_port[i]);
    argv[n] = NULL;
    t->redis_pid[i] = fmt_spawn(argv, log);
    if (t->redis_pid[i] < 0 || !fmt_wait_until(answers, &t->redis_port[i], READY_MS)) {
        fprintf(stderr, "topo_sentinel: redis %d did not come up (see %s)\n", i, log);
        return -1;
    }
    return 0;
}

static int start_sentinel(fmt_sentinel_topo *t, int i)
{
    char conf[300], log[320], tls_port[16];
    const char *argv[4 + FMT_TLS_TOPO_ARGS] = {"redis-server", conf, "--sentinel"};
    FILE *f;

    snprintf(conf, sizeof(conf), "%s/sentinel%d.conf", t->dir, i);
    snprintf(log, sizeof(log), "%s/sentinel%d.log", t->dir, i);
    f = fopen(conf, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
            "sentinel monitor %s 127.0.0.1 %d 2\n"
            "sentinel down-after-milliseconds %s %d\n"
            "sentinel failover-timeout %s %d\n"
            "sentinel parallel-syncs %s 1\n",
            t->sentinel_port[i], t->dir, FMT_SENTINEL_MASTER, fmt_sentinel_port(t, 0),
            FMT_SENTINEL_MASTER, FMT_SENTINEL_DOWN_MS, FMT_SENTINEL_MASTER,
            FMT_SENTINEL_FAILOVER_MS, FMT_SENTINEL_MASTER);
    /* The sentinels talk to each other too, with the same password. */
    if (t->password != NULL)
        fprintf(f, "requirepass \"%s\"\nsentinel sentinel-pass \"%s\"\n", t->password,
                t->password);
    fclose(f);
    argv[tls_args(t, argv, 3, tls_port, t->sentinel_tls_port[i])] = NULL;
    t->sentinel_pid[i] = fmt_spawn(argv, log);
    if (t->sentinel_pid[i] < 0 || !fmt_wait_until(answers, &t->sentinel_port[i], READY_MS)) {
        fprintf(stderr, "topo_sentinel: sentinel %d did not come up (see %s)\n", i, log);
        return -1;
    }
    return 0;
}

/* Ports taken one after another may repeat: fmt_unused_port closes its
 * probe. Distinct ones are insisted on. */
static void pick_ports(fmt_sentinel_topo *t)
{
    int *port[10] = {&t->redis_port[0], &t->redis_port[1], &t->sentinel_port[0],
                     &t->sentinel_port[1], &t->sentinel_port[2], &t->redis_tls_port[0],
                     &t->redis_tls_port[1], &t->sentinel_tls_port[0], &t->sentinel_tls_port[1],
                     &t->sentinel_tls_port[2]};

    for (int i = 0; i < (t->tls != NULL ? 10 : 5); i++) {
        int dup;

        do {
            *port[i] = fmt_unused_port();
            dup = 0;
            for (int k = 0; k < i; k++)
                dup |= *port[k] == *port[i];
        } while (dup);
    }
}

int fmt_sentinel_start(fmt_sentinel_topo *t, const char *password)
{
    return fmt_sentinel_start_tls(t, password, NULL);
}

int fmt_sentinel_start_tls(fmt_sentinel_topo *t, const char *password, const fmt_tls_certs *tls)
{
    int n = 0;

    memset(t, 0, sizeof(*t));
    t->password = password;
    t->tls = tls;
    snprintf(t->dir, sizeof(t->dir), "/tmp/fmtest-sentinel.XXXXXX");
    if (mkdtemp(t->dir) == NULL)
        return -1;
    if (!exit_hooked) {
        atexit(at_exit);
        exit_hooked = 1;
    }
    live = t;
    live_owner = getpid();
    pick_ports(t);
    for (int i = 0; i < 3; i++)
        n += snprintf(t->list + n, sizeof(t->list) - (size_t)n, "%s127.0.0.1:%d", i ? " " : "",
                      tls != NULL ? t->sentinel_tls_port[i] : t->sentinel_port[i]);
    if (start_redis(t, 0) != 0 || start_redis(t, 1) != 0)
        goto fail;
    if (!fmt_wait_until(replica_synced, t, READY_MS)) {
        fprintf(stderr, "topo_sentinel: the replica did not sync\n");
        goto fail;
    }
    for (int i = 0; i < 3; i++)
        if (start_sentinel(t, i) != 0)
            goto fail;
    if (!fmt_wait_until(sentinels_ready, t, READY_MS)) {
        fprintf(stderr, "topo_sentinel: the sentinels did not find each other and the replica"
                " (see %s)\n", t->dir);
        goto fail;
    }
    return 0;
fail:
    fmt_sentinel_stop(t);
    return -1;
}

void fmt_sentinel_stop(fmt_sentinel_topo *t)
{
    for (int i = 0; i < 3; i++)
        fmt_reap(&t->sentinel_pid[i], SIGKILL);
    for (int i = 0; i < 2; i++)
        fmt_reap(&t->redis_pid[i], SIGKILL);
    if (getenv("FMT_KEEP_LOGS") == NULL)
        remove_tree(t->dir);
    t->dir[0] = '\0';
    if (live == t)
        live = NULL;
}

/* ---- a sentinel that lags for ever ---- */

#define FAKE_CLIENTS 16     /* the daemon needs one per connection: two */

/* Answers one command; anything but what the daemon sends is refused. */
static void fake_answer(const fmt_fake_sentinel *f, int fd, const redisReply *cmd)
{
    char out[256], port[16];
    const char *name;
    int n;

    if (cmd->type != REDIS_REPLY_ARRAY || cmd->elements == 0 ||
        cmd->element[0]->type != REDIS_REPLY_STRING)
        return;
    name = cmd->element[0]->str;
    snprintf(port, sizeof(port), "%d", f->master_port);
    if (strcasecmp(name, "SENTINEL") == 0)
        n = snprintf(out, sizeof(out), "*2\r\n$9\r\n127.0.0.1\r\n$%zu\r\n%s\r\n",
                     strlen(port), port);
    else if (strcasecmp(name, "SUBSCRIBE") == 0 && cmd->elements == 2)
        n = snprintf(out, sizeof(out), "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%.100s\r\n:1\r\n",
                     cmd->element[1]->len, cmd->element[1]->str);
    else if (strcasecmp(name, "PING") == 0)
        n = snprintf(out, sizeof(out), "+PONG\r\n");
    else if (strcasecmp(name, "AUTH") == 0)
        n = snprintf(out, sizeof(out), "+OK\r\n");
    else
        n = snprintf(out, sizeof(out), "-ERR unknown command\r\n");
    send(fd, out, (size_t)n, MSG_NOSIGNAL);
}

/* Reads what a client sent and answers it: 0, or -1 when it is gone. */
static int fake_serve(const fmt_fake_sentinel *f, int fd, redisReader *rd)
{
    char buf[4096];
    ssize_t got = recv(fd, buf, sizeof(buf), 0);
    void *cmd;

    if (got <= 0 || redisReaderFeed(rd, buf, (size_t)got) != REDIS_OK)
        return -1;
    while (redisReaderGetReply(rd, &cmd) == REDIS_OK && cmd != NULL) {
        fake_answer(f, fd, cmd);
        freeReplyObject(cmd);
    }
    return rd->err ? -1 : 0;
}

static void *fake_run(void *arg)
{
    fmt_fake_sentinel *f = arg;
    struct pollfd pf[1 + FAKE_CLIENTS];
    redisReader *rd[FAKE_CLIENTS];
    int n = 0;

    while (!atomic_load(&f->stop)) {
        pf[0].fd = f->fd;
        pf[0].events = POLLIN;
        for (int k = 0; k < n; k++)
            pf[1 + k].events = POLLIN;
        /* A short wait, for the stop flag. */
        if (poll(pf, (nfds_t)(1 + n), 50) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (pf[1 + k].revents == 0 || fake_serve(f, pf[1 + k].fd, rd[k]) == 0)
                continue;
            close(pf[1 + k].fd);
            redisReaderFree(rd[k]);
            n--;
            pf[1 + k] = pf[1 + n];
            rd[k] = rd[n];
            k--;
        }
        if ((pf[0].revents & POLLIN) && n < FAKE_CLIENTS) {
            int fd = accept(f->fd, NULL, NULL);

            if (fd >= 0 && (rd[n] = redisReaderCreate()) != NULL) {
                pf[1 + n].fd = fd;
                pf[1 + n].revents = 0;
                n++;
            } else if (fd >= 0) {
                close(fd);
            }
        }
    }
    for (int k = 0; k < n; k++) {
        close(pf[1 + k].fd);
        redisReaderFree(rd[k]);
    }
    return NULL;
}

int fmt_fake_sentinel_start(fmt_fake_sentinel *f, int master_port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);

    memset(f, 0, sizeof(*f));
    f->master_port = master_port;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(f->fd, 16) != 0 || getsockname(f->fd, (struct sockaddr *)&a, &alen) != 0 ||
        pthread_create(&f->thread, NULL, fake_run, f) != 0) {
        perror("topo_sentinel: the fake sentinel");
        if (f->fd >= 0)
            close(f->fd);
        return -1;
    }
    f->port = ntohs(a.sin_port);
    return 0;
}

void fmt_fake_sentinel_stop(fmt_fake_sentinel *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->fd);
}
