/* fm_tests.h -- the suites of build/fm-tests. Each test file exports one. */
#ifndef FM_TESTS_H
#define FM_TESTS_H

#include <check.h>

Suite *fm_suite_proto(void);    /* test_proto.c: framing, JSON, fields */
Suite *fm_suite_config(void);   /* test_config.c: fmredisd.conf, -t, --name */
Suite *fm_suite_ops(void);      /* test_ops.c: every operation via libfmredis */
Suite *fm_suite_errors(void);   /* test_errors.c: every error code, raw protocol */
Suite *fm_suite_link(void);     /* test_link.c: reconnect, scripts, late grants */
Suite *fm_suite_examples(void); /* test_examples.c: the CLI and the Python client */
Suite *fm_suite_locks(void);    /* test_locks.c: lock lifecycle, hand-off, wake groups */
Suite *fm_suite_faults(void);   /* test_faults.c: Redis killed, stopped, loading, busy, demoted */
Suite *fm_suite_load(void);     /* test_load.c: worker faults, limits, signals, 300 clients */
Suite *fm_suite_client(void);   /* test_client.c: libfmredis against a fake daemon; its exports */
Suite *fm_suite_hostile(void);  /* test_hostile.c: defects an outside review found */
Suite *fm_suite_map(void);      /* test_map.c: the daemon's keyed hash table */
Suite *fm_suite_systemd(void);  /* test_systemd.c: notify, watchdog, socket activation, journal */
Suite *fm_suite_access(void);   /* test_access.c: socket_group with real users, Redis AUTH, secrets */
Suite *fm_suite_metrics(void);  /* test_metrics.c: stats' numbers, redis_info, --prometheus */
Suite *fm_suite_slotmap(void);  /* test_slotmap.c: CLUSTER SLOTS replies, batches by slot */
Suite *fm_suite_cluster(void);  /* test_cluster.c: key slots, slot map, faults on a real cluster */
Suite *fm_suite_sentinel(void); /* test_sentinel.c: a Sentinel deployment, failovers, TLS */
Suite *fm_suite_compat(void);   /* test_compat.c: one Redis shared with the published Node code */
Suite *fm_suite_cluster_ops(void); /* test_cluster_ops.c: a cluster: moves, a kill, TLS */
Suite *fm_suite_tls(void);      /* test_tls.c: rediss://, certificate checks, mutual TLS */
Suite *fm_suite_near(void);       /* test_near.c: the near cache */
Suite *fm_suite_tls_tunnel(void); /* test_tls_tunnel.c: the TLS layer on its own */

#endif
