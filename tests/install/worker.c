/* worker.c -- a worker built against an installed libfmredis, with nothing
 * but `pkg-config --cflags --libs libfmredis` (tests/install/check-install.sh).
 *
 * worker KEY EXECUTION_ID: takes the lock KEY, stores the execution
 * {"id": EXECUTION_ID, "token": TOKEN} in the cache, prints
 * "held TOKEN FENCE", then does its "job": waiting until standard input
 * closes, so that the test can look at Redis while the lock is held. Then it
 * releases the lock and exits 0. Any failure exits 1 with the library's
 * message on stderr. */
#include <stdio.h>
#include <string.h>

#include <fmredis.h>

static int fail(fm_client *c, const char *what)
{
    fprintf(stderr, "worker: %s: %s %s\n", what,
            c ? fm_client_errstr(c) : "out of memory",
            c ? fm_client_errcode(c) : "");
    fm_client_free(c);
    return 1;
}

int main(int argc, char **argv)
{
    char json[2 * FM_KEY_MAX + 64];
    fm_client *c;
    fm_lock lk;
    int released = 0, n;

    if (argc != 3) {
        fputs("usage: worker KEY EXECUTION_ID\n", stderr);
        return 2;
    }
    /* The header and the library it runs with must be the same release. */
    if (strcmp(fm_version(), FMREDIS_VERSION) != 0) {
        fprintf(stderr, "worker: header %s, library %s\n", FMREDIS_VERSION, fm_version());
        return 1;
    }
    c = fm_connect(NULL, FM_TIMEOUT_DEFAULT);
    if (c == NULL || fm_client_err(c) != FM_ERR_NONE)
        return fail(c, "connect");
    if (fm_lock_acquire(c, argv[1], NULL, &lk) != FM_OK)
        return fail(c, "lock.acquire");
    if (!lk.acquired)
        return fail(c, "lock.acquire: held by another");
    n = snprintf(json, sizeof(json), "{\"id\":\"%s\",\"token\":\"%s\"}", argv[2], lk.token);
    if (n < 0 || (size_t)n >= sizeof(json))
        return fail(c, "execution id too long");
    if (fm_cache_set(c, json, (size_t)n, 0) != FM_OK)
        return fail(c, "cache.set");
    printf("held %s %lld\n", lk.token, (long long)lk.fence);
    fflush(stdout);

    while (getchar() != EOF)
        ;
    if (fm_lock_release(c, argv[1], lk.token, &released, NULL) != FM_OK)
        return fail(c, "lock.release");
    if (!released)
        return fail(c, "lock.release: lost before the release");
    fm_client_free(c);
    return 0;
}
