/* cli_prom.h -- `fmredis stats --prometheus`: the daemon's stats reply in
 * the Prometheus text exposition format (version 0.0.4), as
 * node_exporter's textfile collector reads it. docs/METRICS.md lists every
 * metric and the stats member it comes from. */
#ifndef FM_CLI_PROM_H
#define FM_CLI_PROM_H

#include <stddef.h>
#include <stdio.h>

/* Writes the metrics of the stats reply json[0..len) to out. 0, or -1 when
 * the reply is not a JSON object of stats (nothing useful written). */
int cli_prom_write(FILE *out, const char *json, size_t len);

#endif
