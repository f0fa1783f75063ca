/* cli_prom.c -- see cli_prom.h. The reply is read with proto's strict JSON
 * reader (fm_json.h), by byte span: counters keep their exact digits.
 *
 * Prometheus' conventions, followed here: base units (seconds, bytes),
 * counters named *_total, one HELP and one TYPE line before a metric's
 * samples, NaN for a value that is not known (a quantile of an empty
 * window, the round trip while Redis is down). A metric the reply does not
 * carry (redis_info when not asked for) is left out whole. */
#include <stdlib.h>
#include <string.h>

#include "cli_prom.h"
#include "fm_json.h"

enum kind { GAUGE, COUNTER };

/* A metric of one stats member: at the top (obj NULL) or in an object. */
typedef struct metric {
    const char *obj, *member;
    const char *name;
    enum kind kind;
    double scale;               /* 0: print the integer as it is */
    const char *help;
} metric;

static const metric metrics[] = {
    {NULL, "clients", "fmredisd_clients", GAUGE, 0, "Open client connections."},
    {NULL, "inflight", "fmredisd_requests_inflight", GAUGE, 0,
     "Requests not answered yet, this scrape's stats request included."},
    {NULL, "connections_total", "fmredisd_connections_total", COUNTER, 0,
     "Client connections accepted."},
    {NULL, "rejected_clients", "fmredisd_rejected_clients_total", COUNTER, 0,
     "Client connections refused (too_many_clients, forbidden)."},
    {NULL, "protocol_errors", "fmredisd_protocol_errors_total", COUNTER, 0,
     "Framing errors, bad JSON, unusable ids or ops, unknown ops."},
    {NULL, "output_queued_bytes", "fmredisd_output_queued_bytes", GAUGE, 0,
     "Bytes of replies and events not yet written to clients, all clients."},
    {NULL, "output_queued_max_bytes", "fmredisd_output_queued_max_bytes", GAUGE, 0,
     "The most bytes not yet written to one client."},
    {NULL, "locks_held", "fmredisd_locks_held", GAUGE, 0,
     "Locks the daemon tracks for clients (release on close or auto-extend)."},
    {NULL, "locks_auto_extended", "fmredisd_locks_auto_extended", GAUGE, 0,
     "Held locks the daemon extends while their client stays connected."},
    {NULL, "lock_auto_extensions", "fmredisd_lock_auto_extensions_total", COUNTER, 0,
     "Extensions the daemon sent for auto-extended locks."},
    {NULL, "lock_acquires_waiting", "fmredisd_lock_acquires_waiting", GAUGE, 0,
     "Acquires that found their lock held and wait for it."},
    {NULL, "wake_channels", "fmredisd_wake_channels", GAUGE, 0,
     "Wake channels with local subscribers."},
    {NULL, "wake_subscribers", "fmredisd_wake_subscribers", GAUGE, 0,
     "Wake subscriptions of clients (one per client and channel)."},
    {NULL, "wake_groups", "fmredisd_wake_groups", GAUGE, 0,
     "Wake groups (one per channel and group name)."},
    {NULL, "cache_invalid", "fmredisd_cache_invalid_total", COUNTER, 0,
     "Cached values answered as misses because they were not JSON objects."},
    {NULL, "near_enabled", "fmredisd_near_enabled", GAUGE, 0,
     "1 when the daemon keeps a near cache (cache_near_bytes above 0, no Cluster)."},
    {NULL, "near_tracking", "fmredisd_near_tracking", GAUGE, 0,
     "1 while Redis tracks the daemon's reads (CLIENT TRACKING armed)."},
    {NULL, "near_max_bytes", "fmredisd_near_max_bytes", GAUGE, 0,
     "The near cache's byte budget."},
    {NULL, "near_bytes", "fmredisd_near_bytes", GAUGE, 0,
     "Bytes the near cache holds: values, keys and bookkeeping."},
    {NULL, "near_entries", "fmredisd_near_entries", GAUGE, 0,
     "Executions the near cache holds."},
    {NULL, "near_hits", "fmredisd_near_hits_total", COUNTER, 0,
     "Reads answered from the near cache."},
    {NULL, "near_misses", "fmredisd_near_misses_total", COUNTER, 0,
     "Reads the near cache did not hold."},
    {NULL, "near_fills", "fmredisd_near_fills_total", COUNTER, 0,
     "Values stored in the near cache (reads and writes)."},
    {NULL, "near_fills_dropped", "fmredisd_near_fills_dropped_total", COUNTER, 0,
     "Reads not kept because a write raced them."},
    {NULL, "near_invalidations", "fmredisd_near_invalidations_total", COUNTER, 0,
     "Held executions dropped because Redis said they changed."},
    {NULL, "near_evictions", "fmredisd_near_evictions_total", COUNTER, 0,
     "Executions dropped for room, least recently used first."},
    {NULL, "near_expired", "fmredisd_near_expired_total", COUNTER, 0,
     "Executions dropped because their Redis TTL ran out."},
    {NULL, "near_flushes", "fmredisd_near_flushes_total", COUNTER, 0,
     "Times the near cache was emptied at once."},
    {NULL, "near_fence_waits", "fmredisd_near_fence_waits_total", COUNTER, 0,
     "Reads that waited for a lock grant's fence."},
    {NULL, "near_fence_timeouts", "fmredisd_near_fence_timeouts_total", COUNTER, 0,
     "Reads whose fence did not pass in half of request_timeout_ms (read from Redis)."},
    {NULL, "near_fences", "fmredisd_near_fences_total", COUNTER, 0,
     "Round trips on the pub/sub connection (fences, heartbeats)."},
    {NULL, "latency_window_ms", "fmredisd_latency_window_seconds", GAUGE, 1e-3,
     "How far back the latency quantiles reach."},
    {"redis", "connected", "fmredisd_redis_connected", GAUGE, 0,
     "1 when the command connection to Redis is up and set up."},
    {"redis", "subscriber_connected", "fmredisd_redis_subscriber_connected", GAUGE, 0,
     "1 when the pub/sub connection to Redis is up."},
    {"redis", "connects", "fmredisd_redis_connects_total", COUNTER, 0,
     "Connections to Redis set up, both connections counted."},
    {"redis", "disconnects", "fmredisd_redis_disconnects_total", COUNTER, 0,
     "Connections to Redis lost, both connections counted."},
    {"redis", "reconnects", "fmredisd_redis_reconnects_total", COUNTER, 0,
     "Times the command connection came back after a loss."},
    {"redis", "commands", "fmredisd_redis_commands_total", COUNTER, 0,
     "Commands written to Redis."},
    {"redis", "retries", "fmredisd_redis_retries_total", COUNTER, 0,
     "Commands sent again after a transient error, NOSCRIPT or READONLY."},
    {"redis", "queued", "fmredisd_redis_queued", GAUGE, 0,
     "Commands waiting inside the daemon for the link or their turn."},
    {"redis", "refused", "fmredisd_redis_refused_total", COUNTER, 0,
     "Channels not subscribed because the Redis ACL forbids them."},
    {"redis", "rtt_us", "fmredisd_redis_rtt_seconds", GAUGE, 1e-6,
     "Round trip of the daemon's own PING to Redis (every 5 s); NaN while down."},
    {"redis", "last_error_age_ms", "fmredisd_redis_last_error_age_seconds", GAUGE, 1e-3,
     "Time since the Redis link last failed; NaN when it never did."},
    {"redis", "cluster_masters", "fmredisd_redis_cluster_masters", GAUGE, 0,
     "Masters in the Redis Cluster's slot map; NaN when not a Cluster."},
    {"redis", "cluster_masters_ready", "fmredisd_redis_cluster_masters_ready", GAUGE, 0,
     "Masters whose connection is up and set up; NaN when not a Cluster."},
    {"redis", "cluster_slots_uncovered", "fmredisd_redis_cluster_slots_uncovered", GAUGE, 0,
     "Hash slots with no master in the slot map; NaN when not a Cluster."},
    {"redis", "cluster_redirects", "fmredisd_redis_cluster_redirects_total", COUNTER, 0,
     "MOVED and ASK answers followed; NaN when not a Cluster."},
    {"redis", "cluster_map_refreshes", "fmredisd_redis_cluster_map_refreshes_total", COUNTER, 0,
     "Slot maps taken from CLUSTER SLOTS; NaN when not a Cluster."},
    {"redis_info", "used_memory", "fmredisd_redis_used_memory_bytes", GAUGE, 0,
     "Redis INFO used_memory."},
    {"redis_info", "maxmemory", "fmredisd_redis_maxmemory_bytes", GAUGE, 0,
     "Redis INFO maxmemory (0: no limit)."},
};

/* obj.member of the reply (obj NULL: the top). */
static int lookup(const fm_json_val *root, const char *obj, const char *member, fm_json_val *v)
{
    fm_json_val o = *root;

    if (obj != NULL && (!fm_json_object_get(root, obj, strlen(obj), &o) ||
                        o.type != FM_JSON_OBJECT))
        return 0;
    return fm_json_object_get(&o, member, strlen(member), v);
}

static void head(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample's value: an integer as the daemon wrote it, or scaled to the
 * base unit; booleans 1/0, null NaN. */
static void value(FILE *out, const fm_json_val *v, double scale)
{
    if (v->type == FM_JSON_TRUE || v->type == FM_JSON_FALSE)
        fputs(v->type == FM_JSON_TRUE ? "1" : "0", out);
    else if (v->type != FM_JSON_NUMBER)
        fputs("NaN", out);
    else if (scale == 0)
        fwrite(v->p, 1, v->len, out);
    else
        fprintf(out, "%.15g", strtod(v->p, NULL) * scale);
    fputc('\n', out);
}

/* A label value, escaped as the format wants (\\, \" and \n). */
static void label(FILE *out, const fm_json_val *s)
{
    size_t len;
    char *text;

    len = fm_json_string_len(s);
    text = malloc(len + 1);
    if (text == NULL)
        return;
    fm_json_string_decode(s, text, len + 1, &len, NULL);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\\' || text[i] == '"')
            fputc('\\', out);
        if (text[i] == '\n')
            fputs("\\n", out);
        else
            fputc(text[i], out);
    }
    free(text);
}

/* One sample per operation of ops.<op>.<member>, labelled op. */
static void per_op(FILE *out, const fm_json_val *ops, const char *member, const char *name,
                   const char *suffix, const char *quantile, double scale)
{
    fm_json_iter it;
    fm_json_val op, st, v;

    fm_json_iter_init(&it, ops);
    while (fm_json_iter_next(&it, &op, &st)) {
        if (st.type != FM_JSON_OBJECT || !fm_json_object_get(&st, member, strlen(member), &v))
            continue;
        fprintf(out, "%s%s{op=\"", name, suffix);
        label(out, &op);
        fputc('"', out);
        if (quantile != NULL)
            fprintf(out, ",quantile=\"%s\"", quantile);
        fputs("} ", out);
        value(out, &v, scale);
    }
}

static void put_ops(FILE *out, const fm_json_val *ops)
{
    static const char lat[] = "fmredisd_op_latency_seconds";

    head(out, "fmredisd_op_calls_total", "counter", "Requests per operation.");
    per_op(out, ops, "calls", "fmredisd_op_calls_total", "", NULL, 0);
    head(out, "fmredisd_op_errors_total", "counter",
         "Requests per operation answered with an error.");
    per_op(out, ops, "errors", "fmredisd_op_errors_total", "", NULL, 0);
    head(out, lat, "summary",
         "Request latency per operation, dispatch to answer; quantiles over the last "
         "60 to 120 s (fmredisd_latency_window_seconds), NaN when no request came.");
    per_op(out, ops, "p50_us", lat, "", "0.5", 1e-6);
    per_op(out, ops, "p99_us", lat, "", "0.99", 1e-6);
    per_op(out, ops, "p999_us", lat, "", "0.999", 1e-6);
    per_op(out, ops, "latency_sum_us", lat, "_sum", NULL, 1e-6);
    per_op(out, ops, "latency_count", lat, "_count", NULL, 0);
}

/* A one-sample gauge that carries a text as a label: *_info{...} 1. */
static void info(FILE *out, const fm_json_val *root, const char *obj, const char *member,
                 const char *name, const char *lname, const char *help)
{
    fm_json_val v;

    if (!lookup(root, obj, member, &v) || v.type != FM_JSON_STRING)
        return;
    head(out, name, "gauge", help);
    fprintf(out, "%s{%s=\"", name, lname);
    label(out, &v);
    fputs("\"} 1\n", out);
}

static void put_redis_info(FILE *out, const fm_json_val *root)
{
    fm_json_val ri, w;

    info(out, root, "redis_info", "maxmemory_policy", "fmredisd_redis_maxmemory_policy_info",
         "policy", "Redis maxmemory_policy, as a label.");
    /* Without its fields (Redis could not be asked), nothing is known. */
    if (!fm_json_object_get(root, "redis_info", 10, &ri) || ri.type != FM_JSON_OBJECT ||
        !fm_json_object_get(&ri, "maxmemory_policy", 16, &w))
        return;
    head(out, "fmredisd_redis_eviction_can_evict_locks", "gauge",
         "1 when Redis' maxmemory_policy can evict lock keys (see stats redis_info.warning).");
    fprintf(out, "fmredisd_redis_eviction_can_evict_locks %d\n",
            fm_json_object_get(&ri, "warning", 7, &w));
}

int cli_prom_write(FILE *out, const char *json, size_t len)
{
    fm_json_val root, ops, v;

    if (fm_json_validate(json, len, &root, NULL, NULL) != 0 || root.type != FM_JSON_OBJECT ||
        !fm_json_object_get(&root, "ops", 3, &ops) || ops.type != FM_JSON_OBJECT)
        return -1;
    for (size_t i = 0; i < sizeof(metrics) / sizeof(metrics[0]); i++) {
        const metric *m = &metrics[i];

        if (!lookup(&root, m->obj, m->member, &v))
            continue;
        head(out, m->name, m->kind == COUNTER ? "counter" : "gauge", m->help);
        fprintf(out, "%s ", m->name);
        value(out, &v, m->scale);
    }
    info(out, &root, "redis", "last_error", "fmredisd_redis_last_error_info", "error",
         "The Redis link's last error (no secrets), as a label.");
    put_ops(out, &ops);
    put_redis_info(out, &root);
    return 0;
}
