/* fm_tests.h -- the suites of build/fm-tests. Each test file exports one. */
#ifndef FM_TESTS_H
#define FM_TESTS_H

#include <check.h>

Suite *fm_suite_proto(void);

#endif
