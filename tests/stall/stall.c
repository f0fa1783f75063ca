/* stall.c -- a test-only LD_PRELOAD library that holds a process still at
 * one chosen moment: right after epoll_wait(2) has returned events, before
 * libuv reads the clock again and runs their callbacks.
 *
 * Some races in an event loop need a loop turn whose events are handled
 * after a timer has come due but before it ran. Stopping the process with
 * SIGSTOP does not make one: epoll_wait returns EINTR on SIGCONT, and libuv
 * then runs its timers first. Stalling inside the return path does.
 *
 * Armed by creating the file named by $FM_STALL_FILE: the next epoll_wait
 * that returns events removes it and sleeps $FM_STALL_MS (300 by default).
 * Each return costs one unlink(2), which only the processes the tests start
 * with this library preloaded pay. */
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

/* The stall, when armed and events came back. */
static void after_wait(int n)
{
    const char *file = getenv("FM_STALL_FILE"), *ms = getenv("FM_STALL_MS");

    if (n > 0 && file != NULL && unlink(file) == 0) {
        long stall = ms != NULL ? atol(ms) : 300;
        struct timespec ts = {stall / 1000, stall % 1000 * 1000000L};

        while (nanosleep(&ts, &ts) != 0)
            ;
    }
}

/* libuv calls one or the other, depending on the loop's signal mask. */
int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout)
{
    static int (*real)(int, struct epoll_event *, int, int);
    int n;

    if (real == NULL)
        real = (int (*)(int, struct epoll_event *, int, int))dlsym(RTLD_NEXT, "epoll_wait");
    n = real(epfd, events, maxevents, timeout);
    after_wait(n);
    return n;
}

int epoll_pwait(int epfd, struct epoll_event *events, int maxevents, int timeout,
                const sigset_t *sigmask)
{
    static int (*real)(int, struct epoll_event *, int, int, const sigset_t *);
    int n;

    if (real == NULL)
        real = (int (*)(int, struct epoll_event *, int, int, const sigset_t *))dlsym(
            RTLD_NEXT, "epoll_pwait");
    n = real(epfd, events, maxevents, timeout, sigmask);
    after_wait(n);
    return n;
}
