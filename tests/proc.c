/* proc.c -- child processes with captured output, for the tests. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "proc.h"

#define INPUT_MAX 65536

static void child(const char *const *argv, const char *const *env, int in,
                  const int out[2], const int err[2], pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    setpgid(0, 0);
    dup2(in, STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    for (int i = 0; env && env[i]; i++)
        putenv((char *)env[i]);
    /* The test runner may ignore SIGPIPE; the program under test must not
     * inherit that. */
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int fmt_proc_start(fmt_proc *p, const char *const *argv, const char *const *env,
                   const char *input)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    size_t inlen = input ? strlen(input) : 0;
    pid_t parent = getpid();

    memset(p, 0, sizeof(*p));
    p->fd[0] = p->fd[1] = p->fd[2] = -1;
    p->status = -1;
    for (int i = 1; i <= 2; i++) {
        p->text[i] = calloc(1, 1);
        if (p->text[i] == NULL)
            return -1;
    }
    if (inlen > INPUT_MAX || pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
        pipe2(err, O_CLOEXEC) != 0)
        goto fail;
    /* The input fits the pipe's buffer: written whole before the child runs. */
    if (inlen > 0 && write(in[1], input, inlen) != (ssize_t)inlen)
        goto fail;
    close(in[1]);
    in[1] = -1;
    p->pid = fork();
    if (p->pid < 0)
        goto fail;
    if (p->pid == 0)
        child(argv, env, in[0], out, err, parent);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    p->fd[1] = out[0];
    p->fd[2] = err[0];
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    p->pid = 0;
    return -1;
}

/* Appends one read from stream i; closes it at EOF. */
static void read_stream(fmt_proc *p, int i)
{
    char buf[4096];
    ssize_t n = read(p->fd[i], buf, sizeof(buf));
    char *grown;

    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0) {
        close(p->fd[i]);
        p->fd[i] = -1;
        return;
    }
    grown = realloc(p->text[i], p->len[i] + (size_t)n + 1);
    if (grown == NULL)
        abort();
    memcpy(grown + p->len[i], buf, (size_t)n);
    p->len[i] += (size_t)n;
    grown[p->len[i]] = '\0';
    p->text[i] = grown;
}

/* One poll over the open streams, reading what is ready. 0 when both are
 * at EOF, else 1. */
static int pump(fmt_proc *p, int timeout_ms)
{
    struct pollfd pfd[2];
    int idx[2], n = 0;

    for (int i = 1; i <= 2; i++) {
        if (p->fd[i] >= 0) {
            pfd[n] = (struct pollfd){p->fd[i], POLLIN, 0};
            idx[n++] = i;
        }
    }
    if (n == 0)
        return 0;
    if (poll(pfd, (nfds_t)n, timeout_ms) > 0)
        for (int k = 0; k < n; k++)
            if (pfd[k].revents != 0)
                read_stream(p, idx[k]);
    return 1;
}

int fmt_proc_expect(fmt_proc *p, int stream, const char *needle, int timeout_ms)
{
    int64_t end = fmt_now_ms() + timeout_ms;

    for (;;) {
        int64_t left = end - fmt_now_ms();

        if (strstr(p->text[stream], needle) != NULL)
            return 1;
        if (left <= 0 || p->fd[stream] < 0)
            return 0;
        pump(p, (int)left);
    }
}

void fmt_proc_drain(fmt_proc *p)
{
    size_t before;

    do {
        before = p->len[1] + p->len[2];
        pump(p, 0);
    } while (p->len[1] + p->len[2] != before);
}

static int decode(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

static void kill_group(fmt_proc *p)
{
    if (p->pid > 0) {
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
}

int fmt_proc_wait(fmt_proc *p, int timeout_ms)
{
    int64_t end = fmt_now_ms() + timeout_ms;
    int status;

    for (;;) {
        int64_t left = end - fmt_now_ms();

        if (left <= 0) {
            kill_group(p);
            return -1;
        }
        /* Output first: a child blocked on a full pipe never exits. */
        if (pump(p, (int)(left < 50 ? left : 50)))
            continue;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            p->status = decode(status);
            return p->status;
        }
        /* Both streams closed but the child lives on (it closed them, or
         * handed them on): nothing to read, so wait for the exit itself. */
        poll(NULL, 0, 5);
    }
}

void fmt_proc_free(fmt_proc *p)
{
    kill_group(p);
    for (int i = 1; i <= 2; i++) {
        if (p->fd[i] >= 0)
            close(p->fd[i]);
        p->fd[i] = -1;
        free(p->text[i]);
        p->text[i] = NULL;
    }
}

int fmt_run(fmt_proc *p, const char *const *argv, const char *const *env,
            const char *input, int timeout_ms)
{
    if (fmt_proc_start(p, argv, env, input) != 0)
        return -1;
    return fmt_proc_wait(p, timeout_ms);
}
