/* promtext.h -- a strict reader of the Prometheus text exposition format
 * (0.0.4), for testing `fmredis stats --prometheus`. It fails the running
 * test at the first line that breaks the format or fmredisd's conventions:
 *
 *   - every line is "# HELP name text", "# TYPE name type", or a sample
 *     "name{label="value",...} value"; no blank lines;
 *   - names match [a-zA-Z_:][a-zA-Z0-9_:]* and start with "fmredisd_";
 *     label names [a-zA-Z_][a-zA-Z0-9_]*, label values quoted with only
 *     \\, \" and \n as escapes;
 *   - one HELP and one TYPE per family, before its samples; a family's
 *     samples are contiguous; every sample belongs to a declared family
 *     (a summary's own name with a quantile label, or its _sum and _count);
 *   - counters end in _total; values are numbers or NaN;
 *   - no sample (name and labels) appears twice. */
#ifndef FM_PROMTEXT_H
#define FM_PROMTEXT_H

#include <stddef.h>

typedef struct prom_sample {
    char *series;           /* name{labels} exactly as written, or name */
    double value;
} prom_sample;

typedef struct prom_doc {
    prom_sample *samples;
    size_t n;
    char **types;           /* "family type" per TYPE line */
    size_t ntypes;
} prom_doc;

/* Checks text and keeps its samples. */
void prom_parse(prom_doc *doc, const char *text);
void prom_free(prom_doc *doc);
/* The value of a series ("fmredisd_clients", or
 * "fmredisd_op_calls_total{op=\"stats\"}"); fails the test when absent. */
double prom_value(const prom_doc *doc, const char *series);
/* Whether a family of that name and type ("counter", "gauge", "summary")
 * was declared. */
int prom_has_type(const prom_doc *doc, const char *fam, const char *type);

#endif
