/* report.c -- the results as a table (stdout), CSV and JSON.
 *
 * CSV: one row per workload x clients x path (the TLS rows' paths are
 * daemon-tls, daemon-tcp and direct-tcp), then one row per hand-off
 * variant (workload "handoff_push"/"handoff_poll", clients = pairs, ops =
 * hand-offs, latencies in us; throughput columns empty). JSON: the same
 * rows plus the idle-client memory and the large get_many check. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* ---- table ---- */

static void table_head(FILE *out, const bench_result *r)
{
    fprintf(out, "\n%s (one op = %s)\n", r->workload, r->unit);
    fprintf(out, "%7s  %-10s  %9s  %9s  %9s  %9s  %7s  %9s  %9s  %9s  %8s\n", "clients",
            "path", "ops/s", "p50 us", "p99 us", "p99.9 us", "fmd/dir", "fmd us/op",
            "rds us/op", "cli us/op", "fmd RSS");
}

static void table_row(FILE *out, const bench_result *r)
{
    char ratio[16] = "-";

    if (r->ratio > 0)
        snprintf(ratio, sizeof(ratio), "%.2fx", r->ratio);
    fprintf(out, "%7d  %-10s  %9.0f  %9.1f  %9.1f  %9.1f  %7s  %9.1f  %9.1f  %9.1f  %6.1fMB\n",
            r->clients, r->path, r->ops_per_s, r->p50_us, r->p99_us, r->p999_us, ratio,
            r->fmd_cpu_us, r->redis_cpu_us, r->client_cpu_us, (double)r->fmd_rss_kb / 1024);
}

static void table_rows(FILE *out, const bench_result *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || strcmp(rows[i].workload, rows[i - 1].workload) != 0)
            table_head(out, &rows[i]);
        table_row(out, &rows[i]);
    }
}

/* What TLS adds per operation: daemon-tls minus daemon-tcp (the rows of
 * a workload are daemon-tls, daemon-tcp, direct-tcp). */
static void table_tls(FILE *out, const bench_report *r)
{
    fprintf(out, "\nTLS to Redis, one redis-server on 127.0.0.1: daemon-tls = fmredisd over "
                 "rediss:// (certificate\nverified), daemon-tcp = fmredisd over redis://, "
                 "direct-tcp = hiredis over TCP (no TLS);\nfmd/dir against direct-tcp\n");
    table_rows(out, r->tls, r->ntls);
    for (size_t i = 0; i + 2 < r->ntls; i += 3) {
        const bench_result *t = &r->tls[i], *p = &r->tls[i + 1];

        fprintf(out, "%s: TLS costs %+.1f us of fmredisd CPU, %+.1f us of redis-server CPU "
                     "per op; p50 %+.1f us, ops/s %+.0f %%\n",
                t->workload, t->fmd_cpu_us - p->fmd_cpu_us, t->redis_cpu_us - p->redis_cpu_us,
                t->p50_us - p->p50_us, (t->ops_per_s / p->ops_per_s - 1) * 100);
    }
}

void bench_report_table(FILE *out, const bench_report *r)
{
    fprintf(out, "fmredis-bench (%s): %.2f s per run; ops/s and latency from the clients' view;\n"
                 "fmd/dir = daemon ops/s / direct ops/s; us/op = CPU time per op of "
                 "fmredisd (fmd), redis-server (rds)\nand the bench's client threads (cli: "
                 "library + reply checks); fmd RSS at the end of the run (on direct\nrows: "
                 "what the daemon kept from earlier runs); wake is paced at 1,000 signals/s, "
                 "so its\nops/s (deliveries) only show whether a path kept up\n"
                 "load average at the start: %s\n", r->mode, r->run_seconds, r->loadavg);
    table_rows(out, r->results, r->nresults);
    if (r->ntls > 0)
        table_tls(out, r);
    fprintf(out, "\nlock hand-off latency (waiter's grant - holder's release; "
                 "retry_delay 100 ms)\n%-6s  %5s  %6s  %9s  %9s  %9s  %9s\n",
            "how", "pairs", "n", "p50 ms", "p99 ms", "max ms", "mean ms");
    for (int i = 0; i < 2; i++) {
        const bench_handoff *h = &r->handoff[i];

        fprintf(out, "%-6s  %5d  %6zu  %9.3f  %9.3f  %9.3f  %9.3f\n", h->variant, h->pairs,
                h->n, h->p50_ms, h->p99_ms, h->max_ms, h->mean_ms);
    }
    fprintf(out, "\ndaemon RSS with %d idle clients: %.1f MB (%.1f MB without: %+.1f KB, "
                 "%.0f bytes per client)\n",
            r->idle_clients, (double)r->idle_kb / 1024, (double)r->idle_base_kb / 1024,
            (double)(r->idle_kb - r->idle_base_kb),
            (double)(r->idle_kb - r->idle_base_kb) * 1024 / r->idle_clients);
    fprintf(out, "get_many of %zu ids through the daemon: %zu hits in one reply, %lld MGET "
                 "in Redis, %.1f ms\n", r->big_ids, r->big_hits, r->big_mget_calls, r->big_ms);
    fprintf(out, "total run time: %.1f s\n", r->total_seconds);
}

/* ---- files ---- */

/* The files list the matrix's rows, then the TLS rows: row i of both. */
static const bench_result *row(const bench_report *r, size_t i)
{
    return i < r->nresults ? &r->results[i] : &r->tls[i - r->nresults];
}

static FILE *open_out(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");

    if (f == NULL)
        bench_fail(err, errlen, "%s: %s", path, strerror(errno));
    return f;
}

static int close_out(FILE *f, const char *path, char *err, size_t errlen)
{
    int bad = ferror(f);

    if (fclose(f) != 0 || bad)
        return bench_fail(err, errlen, "writing %s failed", path);
    return 0;
}

int bench_report_csv(const char *path, const bench_report *r, char *err, size_t errlen)
{
    FILE *f = open_out(path, err, errlen);

    if (f == NULL)
        return -1;
    fprintf(f, "workload,unit,clients,path,ops,seconds,ops_per_s,p50_us,p99_us,p999_us,"
               "daemon_direct_ratio,fmd_cpu_us_per_op,redis_cpu_us_per_op,"
               "client_cpu_us_per_op,fmd_rss_kb\n");
    for (size_t i = 0; i < r->nresults + r->ntls; i++) {
        const bench_result *x = row(r, i);

        fprintf(f, "%s,\"%s\",%d,%s,%llu,%.3f,%.1f,%.1f,%.1f,%.1f,%.3f,%.2f,%.2f,%.2f,%ld\n",
                x->workload, x->unit, x->clients, x->path, (unsigned long long)x->ops,
                x->seconds, x->ops_per_s, x->p50_us, x->p99_us, x->p999_us, x->ratio,
                x->fmd_cpu_us, x->redis_cpu_us, x->client_cpu_us, x->fmd_rss_kb);
    }
    for (int i = 0; i < 2; i++) {
        const bench_handoff *h = &r->handoff[i];

        fprintf(f, "handoff_%s,\"hand-off\",%d,daemon,%zu,,,%.1f,%.1f,,,,,,\n", h->variant,
                h->pairs, h->n, h->p50_ms * 1e3, h->p99_ms * 1e3);
    }
    return close_out(f, path, err, errlen);
}

static void json_result(FILE *f, const bench_result *x, int last)
{
    fprintf(f, "    {\"workload\": \"%s\", \"unit\": \"%s\", \"clients\": %d, \"path\": \"%s\", "
               "\"ops\": %llu, \"seconds\": %.3f, \"ops_per_s\": %.1f, \"p50_us\": %.1f, "
               "\"p99_us\": %.1f, \"p999_us\": %.1f, \"daemon_direct_ratio\": %.3f, "
               "\"fmd_cpu_us_per_op\": %.2f, \"redis_cpu_us_per_op\": %.2f, "
               "\"client_cpu_us_per_op\": %.2f, \"fmd_rss_kb\": %ld}%s\n",
            x->workload, x->unit, x->clients, x->path, (unsigned long long)x->ops, x->seconds,
            x->ops_per_s, x->p50_us, x->p99_us, x->p999_us, x->ratio, x->fmd_cpu_us,
            x->redis_cpu_us, x->client_cpu_us, x->fmd_rss_kb, last ? "" : ",");
}

int bench_report_json(const char *path, const bench_report *r, char *err, size_t errlen)
{
    FILE *f = open_out(path, err, errlen);

    if (f == NULL)
        return -1;
    fprintf(f, "{\n  \"mode\": \"%s\",\n  \"cpus\": %ld,\n  \"loadavg\": \"%s\",\n"
               "  \"run_seconds\": %.3f,\n  \"total_seconds\": %.1f,\n  \"results\": [\n",
            r->mode, sysconf(_SC_NPROCESSORS_ONLN), r->loadavg, r->run_seconds,
            r->total_seconds);
    for (size_t i = 0; i < r->nresults + r->ntls; i++)
        json_result(f, row(r, i), i + 1 == r->nresults + r->ntls);
    fprintf(f, "  ],\n  \"handoff\": [\n");
    for (int i = 0; i < 2; i++) {
        const bench_handoff *h = &r->handoff[i];

        fprintf(f, "    {\"variant\": \"%s\", \"pairs\": %d, \"n\": %zu, \"p50_ms\": %.3f, "
                   "\"p99_ms\": %.3f, \"max_ms\": %.3f, \"mean_ms\": %.3f}%s\n",
                h->variant, h->pairs, h->n, h->p50_ms, h->p99_ms, h->max_ms, h->mean_ms,
                i ? "" : ",");
    }
    fprintf(f, "  ],\n  \"idle_clients\": {\"clients\": %d, \"baseline_rss_kb\": %ld, "
               "\"rss_kb\": %ld, \"delta_kb\": %ld},\n",
            r->idle_clients, r->idle_base_kb, r->idle_kb, r->idle_kb - r->idle_base_kb);
    fprintf(f, "  \"big_get_many\": {\"ids\": %zu, \"hits\": %zu, \"mget_calls\": %lld, "
               "\"ms\": %.1f}\n}\n",
            r->big_ids, r->big_hits, r->big_mget_calls, r->big_ms);
    return close_out(f, path, err, errlen);
}
