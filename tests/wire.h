/* wire.h -- the raw protocol for tests: frames sent as given, replies
 * checked to be one strict JSON object (by proto's validator, since cJSON
 * accepts too much) before cJSON reads them; and the servers a test needs.
 * Every helper fails the running test when the daemon does not hold up its
 * side. */
#ifndef FM_WIRE_H
#define FM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "harness.h"

#define WIRE_REPLY_MS 5000  /* what a reply that needs no waiting may take */

/* A connection to the daemon's socket. */
int wire_connect(const char *sock);
/* One frame holding json (strlen(json) bytes). */
void wire_send(int fd, const char *json);
/* Appends one frame holding body to a buffer of pipelined requests (an
 * open_memstream), so that a test can send them in one write. */
void wire_frame_put(FILE *f, const char *body);
/* The next frame's body, NUL-terminated (caller frees), checked to be one
 * strict JSON object. len may be NULL. */
char *wire_recv_text(int fd, int timeout_ms, size_t *len);
/* The same, parsed (caller deletes). */
cJSON *wire_recv(int fd, int timeout_ms);
/* wire_send, then the next frame within WIRE_REPLY_MS. */
cJSON *wire_call(int fd, const char *json);

/* id: the JSON text of the id the reply must carry (compared as JSON
 * values), or NULL when it must carry none. */
void wire_assert_id(const cJSON *reply, const char *id);
void wire_assert_ok(const cJSON *reply, const char *id);
void wire_assert_error(const cJSON *reply, const char *code, const char *id);
/* wire_call + wire_assert_ok/wire_assert_error + cJSON_Delete. */
void wire_expect_ok(int fd, const char *json, const char *id);
void wire_expect_error(int fd, const char *json, const char *code, const char *id);

/* A formatted string (caller frees), for building requests and texts. */
char *wire_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A string member of the reply, or NULL. */
const char *wire_str(const cJSON *reply, const char *name);

/* Pings the daemon on a fresh connection: whether the reply (within
 * WIRE_REPLY_MS) holds needle. Never fails the test, so that it can be a
 * condition for fmt_wait_until. */
int wire_ping_says(const char *sock, const char *needle);

/* cache.set of execution (one JSON object, with its "id") with a TTL of an
 * hour; the reply must be ok. */
void wire_cache_set(int fd, const char *execution);
/* A cache.get of id must answer with exactly this execution text. */
void wire_expect_cached(int fd, const char *id, const char *execution);
/* The text of a reply to a cache.get must carry exactly this execution. */
void wire_assert_execution(const char *reply_text, const char *execution);
/* wire_cache_set over a connection of its own. */
void wire_store(const char *sock, const char *execution);
/* A fresh connection is served (a ping), and a cache.get of id there
 * answers with exactly this execution: what was stored is intact. */
void wire_assert_serving(const char *sock, const char *id, const char *execution);
/* An integer member of the daemon's stats reply ("clients", "inflight"). */
long long wire_stats_int(int fd, const char *name);

/* Waits, up to timeout_ms, until the stats member `name` is `want` (asked
 * on a connection of its own); fails the test otherwise. */
void wire_await_stat(const char *sock, const char *name, long long want, int timeout_ms);

/* A member of the "redis" object of the daemon's stats (bools as 0/1), on a
 * connection of its own. */
int64_t wire_link_stat(const char *sock, const char *name);

/* Waits (bounded) until the daemon's ping says its Redis link is up. */
void wire_wait_redis_up(const char *sock);

/* Servers for a test that must start, or the test fails. They belong to
 * the process that starts them: the runner in a fixture, else the test.
 * wire_daemon_start does not wait for Redis; wire_daemon_up waits until
 * the daemon's link is up. */
void wire_daemon_start(fmt_daemon *d, const char *redis_url, const char *const *extra);
void wire_daemon_up(fmt_daemon *d, const char *redis_url, const char *const *extra);
/* A Redis (with redis_extra) and a daemon on it (with extra), once the
 * daemon has reached it. */
void wire_pair_start(fmt_redis *r, fmt_daemon *d, const char *const *redis_extra,
                     const char *const *extra);
void wire_pair_stop(fmt_redis *r, fmt_daemon *d);

/* A condition for fmt_wait_until: the file path (a daemon's log) holds
 * needle. arg is a wire_log_wait. */
typedef struct wire_log_wait {
    const char *path, *needle;
} wire_log_wait;
int wire_log_holds(void *arg);

/* A lock on key through c with ttl_ms, which must be granted. */
fm_lock wire_lock_take(fm_client *c, const char *key, int64_t ttl_ms);

/* Redis itself, for asserting its side of things: a connection, a command
 * that must not fail (caller frees the reply), one whose reply must be an
 * integer. The formats are hiredis's (%s, %b for binary). */
redisContext *wire_redis_open(const fmt_redis *srv);
redisReply *wire_redis_ok(redisContext *c, const char *fmt, ...);
/* Subscribers Redis counts for channel (PUBSUB NUMSUB). */
long long wire_redis_numsub(redisContext *c, const char *channel);
/* Whether Redis comes to count `want` subscribers for channel within
 * timeout_ms. */
int wire_numsub_becomes(redisContext *c, const char *channel, long long want, int timeout_ms);
long long wire_redis_int(redisContext *c, const char *fmt, ...);
/* How many times Redis ran cmd ("get", "client|tracking") so far, from
 * INFO commandstats. */
long long wire_redis_calls(redisContext *c, const char *cmd);

/* GET as a malloc'd NUL-terminated string (len may be NULL), NULL when the
 * key is missing; the value must be exactly `want`, byte for byte. */
char *wire_redis_get(redisContext *c, const char *key, size_t *len);
void wire_assert_redis_value(redisContext *c, const char *key, const char *want);

/* A Redis connection SUBSCRIBEd to channel, whose reads time out after
 * WIRE_REPLY_MS; the payload (malloc'd) of its next message, which must
 * come on channel within that time. */
redisContext *wire_sub_open(const fmt_redis *srv, const char *channel);
char *wire_sub_next(redisContext *sub, const char *channel);
/* A wall-clock timestamp (ms since the epoch) within WIRE_REPLY_MS of now. */
void wire_assert_recent_ms(int64_t ts, const char *what);
/* The Node package's wake payload for id, byte for byte:
 * {"executionId":"<id>","timestamp":<digits>} with a recent timestamp. */
void wire_assert_wake_payload(const char *payload, const char *id);

/* Whether the daemon runs natively: not under valgrind (then the process
 * is the tool) nor with ASan (whose quarantine holds freed memory). Latency
 * and memory bounds are the tool's otherwise. */
int wire_native_daemon(pid_t pid);
/* How much longer than natively a bound may take: 1, or 20 under a tool. */
int wire_slowdown(const fmt_daemon *d);
/* The resident memory of a process, in KiB. */
long wire_rss_kib(pid_t pid);

#endif
