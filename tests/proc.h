/* proc.h -- running programs under test (fmredisd -t, the CLI, python3) as
 * child processes, with their standard output and error captured apart.
 *
 * A child runs in a process group of its own and gets PR_SET_PDEATHSIG, so
 * a failed assertion in the test never leaves it (or what it started)
 * behind; fmt_proc_free kills the group if it is still there. */
#ifndef FM_PROC_H
#define FM_PROC_H

#include <stddef.h>
#include <sys/types.h>

typedef struct fmt_proc {
    pid_t pid;              /* 0 once reaped */
    int fd[3];              /* read ends: [1] stdout, [2] stderr; -1 at EOF */
    char *text[3];          /* what was read so far, NUL-terminated */
    size_t len[3];
    int status;             /* exit code, 128 + signal, or -1 */
} fmt_proc;

/* Starts argv (argv[0] is looked up in $PATH) with the "NAME=value" strings
 * of env added to the environment (NULL-terminated, or NULL) and input on
 * its standard input (NULL: empty; at most 64 KiB). 0 or -1. */
int fmt_proc_start(fmt_proc *p, const char *const *argv, const char *const *env,
                   const char *input);
/* Reads stream 1 or 2 until it contains needle; 1 when it did within
 * timeout_ms, 0 otherwise. */
int fmt_proc_expect(fmt_proc *p, int stream, const char *needle, int timeout_ms);
/* Takes in whatever output is already there, without waiting. */
void fmt_proc_drain(fmt_proc *p);
/* Reads all output and reaps the child. Returns its status (exit code, or
 * 128 + signal), or -1 when it did not end within timeout_ms (it is then
 * killed). */
int fmt_proc_wait(fmt_proc *p, int timeout_ms);
/* Kills what is still running and frees the buffers. */
void fmt_proc_free(fmt_proc *p);

/* fmt_proc_start + fmt_proc_wait: the exit status, or -1. The output stays
 * in p until fmt_proc_free. */
int fmt_run(fmt_proc *p, const char *const *argv, const char *const *env,
            const char *input, int timeout_ms);

#endif
