/* link-test.c -- a worker built inside the test root by check-deb-root.sh
 * against the installed libfmredis-dev, with pkg-config's flags alone.
 * It checks that the header and the library it runs with are the same
 * version, and that a call into the library works: connecting to a socket
 * nobody listens on is the library's clear I/O error, not a crash. */
#include <stdio.h>
#include <string.h>

#include <fmredis.h>

int main(void)
{
    if (strcmp(fm_version(), FMREDIS_VERSION) != 0
        || fm_version_number() != FMREDIS_VERSION_HEX) {
        fprintf(stderr, "header %s, library %s\n", FMREDIS_VERSION, fm_version());
        return 1;
    }
    fm_client *c = fm_connect("/nonexistent/fmredisd.sock", 1000);
    if (c == NULL) {
        fprintf(stderr, "fm_connect: out of memory\n");
        return 1;
    }
    int ok = fm_client_err(c) == FM_ERR_IO && !fm_client_connected(c);
    printf("libfmredis %s: connect to a missing socket: %s (%s)\n", fm_version(),
           fm_client_error_name(fm_client_err(c)), fm_client_errstr(c));
    fm_client_free(c);
    return ok ? 0 : 1;
}
