/* main.c -- runs the suites of the test binary.
 *
 * FM_SUITE=name runs one suite only (proto, config, ops, errors, link, examples,
 * locks, faults, load, client, hostile, map, systemd, access,
 * metrics, slotmap, cluster,
 * sentinel, cluster_ops, compat, tls, tls_tunnel);
 * CK_RUN_CASE, CK_FORK and CK_VERBOSITY work as Check documents them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fm_tests.h"

static const struct {
    const char *name;
    Suite *(*make)(void);
} suites[] = {
    {"proto", fm_suite_proto},
    {"config", fm_suite_config},
    {"ops", fm_suite_ops},
    {"errors", fm_suite_errors},
    {"link", fm_suite_link},
    {"examples", fm_suite_examples},
    {"locks", fm_suite_locks},
    {"faults", fm_suite_faults},
    {"load", fm_suite_load},
    {"client", fm_suite_client},
    {"hostile", fm_suite_hostile},
    {"map", fm_suite_map},
    {"systemd", fm_suite_systemd},
    {"access", fm_suite_access},
    {"metrics", fm_suite_metrics},
    {"slotmap", fm_suite_slotmap},
    {"cluster", fm_suite_cluster},
    {"sentinel", fm_suite_sentinel},
    {"cluster_ops", fm_suite_cluster_ops},
    {"compat", fm_suite_compat},
    {"tls", fm_suite_tls},
    {"tls_tunnel", fm_suite_tls_tunnel},
    {"near", fm_suite_near},
};

int main(void)
{
    const char *only = getenv("FM_SUITE");
    SRunner *sr = NULL;
    int failed;

    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        if (only != NULL && *only != '\0' && strcmp(only, suites[i].name) != 0)
            continue;
        if (sr == NULL)
            sr = srunner_create(suites[i].make());
        else
            srunner_add_suite(sr, suites[i].make());
    }
    if (sr == NULL) {
        fprintf(stderr, "fm-tests: no suite named \"%s\"\n", only);
        return EXIT_FAILURE;
    }
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
