/* main.c -- runs every suite of the test binary.
 *
 * FM_SUITE=name runs one suite only; CK_FORK, CK_RUN_CASE and CK_VERBOSITY
 * work as Check documents them. */
#include <stdlib.h>

#include "fm_tests.h"

int main(void)
{
    SRunner *sr = srunner_create(fm_suite_proto());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
