/* link-test.c -- a worker that check-deb-root.sh builds inside the test
 * root against the installed libfmredis-dev, with pkg-config's flags alone.
 *
 *   link-test          the header and the library it runs with are the same
 *                      version, and connecting to a missing socket is the
 *                      library's I/O error, not a crash
 *   link-test SOCKET   says hello to the daemon on SOCKET and prints its
 *                      name; exits 2 when it cannot connect */
#include <stdio.h>
#include <string.h>

#include <fmredis.h>

static int hello(const char *path)
{
    fm_client *c = fm_connect(path, 5000);
    if (c == NULL) {
        fprintf(stderr, "fm_connect: out of memory\n");
        return 1;
    }
    fm_hello_info info;
    int rc = 0;
    if (fm_client_err(c) != FM_ERR_NONE) {
        fprintf(stderr, "connect: %s\n", fm_client_errstr(c));
        rc = 2;
    } else if (fm_hello(c, "check-deb", &info) != 0) {
        fprintf(stderr, "hello: %s\n", fm_client_errstr(c));
        rc = 1;
    } else {
        printf("hello: %s, protocol %lld\n", info.server, (long long)info.protocol);
    }
    fm_client_free(c);
    return rc;
}

int main(int argc, char **argv)
{
    if (strcmp(fm_version(), FMREDIS_VERSION) != 0
        || fm_version_number() != FMREDIS_VERSION_HEX) {
        fprintf(stderr, "header %s, library %s\n", FMREDIS_VERSION, fm_version());
        return 1;
    }
    if (argc > 1)
        return hello(argv[1]);
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
