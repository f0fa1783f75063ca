/* fmredis.h -- libfmredis, the C client of fmredisd.
 *
 * fmredisd is a per-host daemon that gives local workers Redis-backed locks,
 * wake signals and an execution cache over a Unix socket (docs/PROTOCOL.md).
 * This library speaks that protocol for C programs.
 *
 * THE MODEL, IN SHORT
 *
 *   fm_client *c = fm_connect(NULL, 0);      // $FMREDISD_SOCKET or the default
 *   if (c == NULL || fm_client_err(c)) {     // NULL only when out of memory
 *       fprintf(stderr, "connect: %s\n", c ? fm_client_errstr(c) : "oom");
 *       ...
 *   }
 *   fm_lock lk;
 *   if (fm_lock_acquire(c, "job:42", NULL, &lk) != FM_OK) {
 *       // fm_client_err(c): FM_ERR_SERVER, FM_ERR_TIMEOUT, FM_ERR_IO, ...
 *       // fm_client_errcode(c): "redis_unavailable", ... for FM_ERR_SERVER
 *   } else if (lk.acquired) {
 *       ... work ...
 *       fm_lock_release(c, "job:42", lk.token, NULL, NULL);
 *   }
 *   fm_client_free(c);
 *
 * - One client is one blocking connection. There is no global state: use one
 *   client per thread (a client is not locked internally; sharing one between
 *   threads needs the caller's own mutex around every call).
 * - Every function that talks to the daemon returns FM_OK (0) or FM_ERR (-1).
 *   On FM_ERR the client says why: fm_client_err() (an fm_client_error),
 *   fm_client_errstr() (a message) and, for FM_ERR_SERVER (the daemon
 *   answered ok:false), fm_client_errcode() (the contract's code, such as
 *   "bad_request" or "redis_unavailable"). The error describes the last call
 *   only: every call starts by clearing it.
 * - Some errors leave the connection usable, others close it:
 *     usable:  FM_ERR_SERVER, FM_ERR_TIMEOUT (see below), FM_ERR_ARG,
 *              FM_ERR_INTERRUPTED, FM_ERR_OOM, and FM_ERR_PROTOCOL for a
 *              well-formed reply that lacks a result field;
 *     closed:  FM_ERR_IO, FM_ERR_CLOSED, FM_ERR_PROTOCOL for bytes that are not
 *              frames of JSON objects by JSON's grammar (the library trusts
 *              the daemon, which validated what it sends, for UTF-8 and
 *              unique member names), and FM_ERR_TIMEOUT when the request
 *              was only partly sent. fm_client_connected() tells which.
 *   Once closed, calls fail at once with FM_ERR_CLOSED; events that were
 *   already received can still be read. fm_client_reconnect() opens a new
 *   connection on the same client. Closing the connection makes the daemon
 *   release the locks it took with on_disconnect "release" (the default).
 * - Every call has a deadline: the client's timeout (set at connect, changed
 *   with fm_client_set_timeout()), counted on the monotonic clock from the
 *   start of the call to the arrival of its reply. lock.acquire waits longer
 *   (see fm_lock_opts.timeout_ms). A call that timed out leaves the
 *   connection usable: its reply, if it comes later, is recognized by its id
 *   and dropped. An acquire that timed out may still get the lock after the
 *   call returned: when that late reply arrives (during any later call or
 *   event read on the client) the library sends a release of that lock, at
 *   once if the socket takes it without blocking, else before the next
 *   request (see fm_client_fd() for poll loops). Closing the connection
 *   releases it too (on_disconnect "release"); a release not yet sent is
 *   then dropped.
 * - Requests carry an increasing integer id; replies are matched by it.
 * - Events (wakes, Redis link changes, lost locks) can arrive at any moment,
 *   also while a call waits for its reply. They are queued in arrival order
 *   and never dropped; read them with fm_event_wait() or, in a poll loop,
 *   fm_event_read() (see EVENTS below). The queue has no bound: a client
 *   that subscribes must read its events.
 * - Strings passed in (keys, tokens, ids, channels) are NUL-terminated UTF-8.
 *   The daemon enforces the contract's rules (non-empty, at most 512 bytes,
 *   no control characters) and answers FM_ERR_SERVER / "bad_request"
 *   otherwise. NULL where a string is required fails locally with FM_ERR_ARG.
 * - Integers are int64_t, times are milliseconds. For optional integer
 *   arguments 0 means "not given": the daemon then applies its configured
 *   default.
 * - The library never raises SIGPIPE (it sends with MSG_NOSIGNAL) and never
 *   prints anything.
 */
#ifndef FMREDIS_H
#define FMREDIS_H

#include <stddef.h>
#include <stdint.h>

#include "fm_wire.h"

/* The library is built with hidden visibility: only the functions marked
 * FMREDIS_EXPORT here are visible to the programs that link it, so its
 * internals (proto/'s fm_buf_*, fm_json_*, ...) can neither clash with a
 * program's own names nor be replaced by them (a test checks the list). */
#if defined(__GNUC__) && __GNUC__ >= 4
#define FMREDIS_EXPORT __attribute__((visibility("default")))
#else
#define FMREDIS_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Return values. */
#define FM_OK 0
#define FM_ERR (-1)
#define FM_NONE 1           /* fm_event_read(): no event is available now */

/* The socket used when neither an argument nor $FMREDISD_SOCKET names one. */
#define FM_DEFAULT_SOCKET "/run/fmredisd/fmredisd.sock"
#define FM_SOCKET_ENV "FMREDISD_SOCKET"

/* Timeouts. FM_TIMEOUT_DEFAULT (0) given to fm_connect() or
 * fm_client_set_timeout() means FM_DEFAULT_TIMEOUT_MS, which is above the
 * daemon's own default request_timeout_ms (5000) so that the daemon's
 * "timeout"/"redis_unavailable" answer normally arrives before the client
 * gives up. FM_TIMEOUT_NONE waits forever. */
#define FM_TIMEOUT_DEFAULT 0
#define FM_TIMEOUT_NONE (-1)
#define FM_DEFAULT_TIMEOUT_MS 10000

/* Replies larger than this (bytes of one frame) are refused with
 * FM_ERR_PROTOCOL and close the connection; see fm_client_set_max_reply(). */
#define FM_DEFAULT_MAX_REPLY (256u * 1024u * 1024u)

/* Longest key, channel, execution id or token of the contract, in bytes
 * (buffers here are one byte larger for the NUL). */
#define FM_STR_MAX FM_KEY_MAX
#define FM_TOKEN_MAX FM_STR_MAX

/* The contract's defaults, used only to compute how long an acquire may
 * wait when the caller leaves retry_delay_ms or max_retries to the daemon
 * (a daemon configured with larger values needs fm_lock_opts.timeout_ms). */
#define FM_LOCK_DEFAULT_RETRY_DELAY_MS 100
#define FM_LOCK_DEFAULT_MAX_RETRIES 50

/* ------------------------------------------------------------------------ */
/* Version                                                                  */

/* fm_wire.h gives the version of this header: FMREDIS_VERSION ("0.1.0"),
 * FMREDIS_VERSION_MAJOR, _MINOR and _PATCH, FMREDIS_VERSION_HEX (0x000100,
 * which orders versions), and FM_PROTOCOL_VERSION, the protocol spoken. A
 * program may run with a later library of the same soname than the one it
 * was built with; these two tell which it runs with. */

/* The running library's version, like FMREDIS_VERSION: "0.1.0". */
FMREDIS_EXPORT const char *fm_version(void);
/* The same as a number, like FMREDIS_VERSION_HEX:
 * (major << 16) | (minor << 8) | patch. */
FMREDIS_EXPORT unsigned int fm_version_number(void);

/* ------------------------------------------------------------------------ */
/* Clients and errors                                                       */

typedef struct fm_client fm_client;

typedef enum fm_client_error {
    FM_ERR_NONE = 0,    /* the last call succeeded */
    FM_ERR_IO,          /* connect/send/recv failed; errstr has strerror */
    FM_ERR_CLOSED,      /* the daemon closed the connection, or an earlier
                           error did; errstr says which */
    FM_ERR_TIMEOUT,     /* no reply (or no event) before the deadline */
    FM_ERR_PROTOCOL,    /* the daemon sent something malformed or too large */
    FM_ERR_SERVER,      /* the daemon answered ok:false: fm_client_errcode() */
    FM_ERR_OOM,         /* memory ran out */
    FM_ERR_ARG,         /* a bad argument, refused before anything was sent */
    FM_ERR_INTERRUPTED  /* fm_event_wait() only: a signal arrived while it
                           waited (check your flags, then wait again) */
} fm_client_error;

/* Connects to the daemon. socket_path NULL (or "") means $FMREDISD_SOCKET
 * when set and non-empty, else FM_DEFAULT_SOCKET. timeout_ms bounds the
 * connect and becomes the client's timeout for every call (FM_TIMEOUT_DEFAULT,
 * FM_TIMEOUT_NONE, or a positive number of ms).
 *
 * Like hiredis, this returns a client even when the connection failed: check
 * fm_client_err(c) (FM_ERR_IO, FM_ERR_TIMEOUT or FM_ERR_ARG). NULL is returned
 * only when memory ran out. Always release the client with fm_client_free().
 * No request is sent: call fm_hello() to check the daemon's protocol. */
FMREDIS_EXPORT fm_client *fm_connect(const char *socket_path, int timeout_ms);

/* Closes the connection (if open) and frees everything, queued events too.
 * NULL is allowed. */
FMREDIS_EXPORT void fm_client_free(fm_client *c);

/* Closes the current connection, if any, and connects again to the same
 * path. Queued events are kept; a partly received frame is dropped. */
FMREDIS_EXPORT int fm_client_reconnect(fm_client *c);

/* Closes the connection now (the daemon then releases the locks taken with
 * on_disconnect "release"); the client stays allocated. Later calls fail
 * with FM_ERR_CLOSED until fm_client_reconnect(). */
FMREDIS_EXPORT void fm_client_close(fm_client *c);

/* Whether the connection is open. */
FMREDIS_EXPORT int fm_client_connected(const fm_client *c);

/* The socket path the client connects to. */
FMREDIS_EXPORT const char *fm_client_socket_path(const fm_client *c);

/* The error of the last call, FM_ERR_NONE after a success. */
FMREDIS_EXPORT fm_client_error fm_client_err(const fm_client *c);
/* A human message for it ("" when none). Valid until the next call. */
FMREDIS_EXPORT const char *fm_client_errstr(const fm_client *c);
/* For FM_ERR_SERVER the daemon's error code ("bad_request", "timeout",
 * "redis_unavailable", "shutting_down", ...), else "". */
FMREDIS_EXPORT const char *fm_client_errcode(const fm_client *c);
/* A short fixed name of an fm_client_error: "io", "closed", "timeout",
 * "protocol", "server", "oom", "invalid_argument", "interrupted" or "ok". */
FMREDIS_EXPORT const char *fm_client_error_name(fm_client_error err);

/* The per-call timeout (FM_TIMEOUT_DEFAULT picks FM_DEFAULT_TIMEOUT_MS). */
FMREDIS_EXPORT void fm_client_set_timeout(fm_client *c, int timeout_ms);
FMREDIS_EXPORT int fm_client_timeout(const fm_client *c);

/* The largest reply frame accepted, in bytes (default FM_DEFAULT_MAX_REPLY;
 * at most 2^32-1, the framing's own limit). */
FMREDIS_EXPORT void fm_client_set_max_reply(fm_client *c, size_t max_bytes);

/* ------------------------------------------------------------------------ */
/* Session                                                                  */

typedef struct fm_hello_info {
    int64_t protocol;       /* FM_PROTOCOL_VERSION for this library */
    char server[129];       /* e.g. "fmredisd 0.1.0" (truncated to fit) */
} fm_hello_info;

/* hello: introduces the client (client_name may be NULL) and learns the
 * protocol version and server name. info may be NULL. */
FMREDIS_EXPORT int fm_hello(fm_client *c, const char *client_name,
                            fm_hello_info *info);

/* ping: check_redis non-zero also round-trips to Redis. *redis_up (may be
 * NULL) is 1 when the daemon says "up", 0 for "down", -1 when the reply has
 * no such field. A ping during a Redis outage still succeeds, with 0. */
FMREDIS_EXPORT int fm_ping(fm_client *c, int check_redis, int *redis_up);

/* ------------------------------------------------------------------------ */
/* Locks                                                                    */

typedef enum fm_on_disconnect {
    FM_ON_DISCONNECT_DEFAULT = 0,   /* not sent: the daemon's default, release */
    FM_ON_DISCONNECT_RELEASE,       /* released when this connection closes */
    FM_ON_DISCONNECT_KEEP           /* left to its TTL */
} fm_on_disconnect;

/* max_retries value asking for exactly one attempt (0 retries), since 0
 * already means "the daemon's default". */
#define FM_LOCK_NO_RETRY (-1)

/* Options of fm_lock_acquire() and fm_with_lock(). Pass NULL for the
 * defaults, or set up a struct with fm_lock_opts_init() and then set what
 * you need:
 *
 *   fm_lock_opts o;
 *   fm_lock_opts_init(&o);
 *   o.ttl_ms = 10000;
 *
 * Every option left as fm_lock_opts_init() set it (0) is not sent, and the
 * daemon's configured default applies (ttl 30000, retry_delay 100,
 * max_retries 50 by default).
 *
 * The struct can grow without breaking programs built against an older
 * libfmredis: later versions add fields at its end only, and
 * fm_lock_opts_init() records in `size` the size this program was compiled
 * with. The library reads only the fields that size covers and gives the
 * others their defaults. A struct not set up by fm_lock_opts_init() (a
 * `size` of 0, as from `= {0}` or `= {.ttl_ms = ...}`) fails with
 * FM_ERR_ARG. So does a struct from a later fmredis.h that sets a field
 * this library does not know, rather than have it ignored (such fields
 * left 0 are fine). */
typedef struct fm_lock_opts {
    size_t size;                /* set by fm_lock_opts_init(); never change */
    int64_t ttl_ms;             /* lock TTL, 1..2^31-1 */
    int64_t retry_delay_ms;     /* pause between attempts, 1..2^31-1 */
    int64_t max_retries;        /* attempts after the first; FM_LOCK_NO_RETRY
                                   for none */
    fm_on_disconnect on_disconnect;
    int auto_extend;            /* non-zero: the daemon extends the lock every
                                   ttl/3 while this connection is open (ttl
                                   must then be at least 100 when given) */
    /* Deadline of the whole acquire call, waiting included:
     *   0: the client's timeout plus retry_delay_ms * max_retries (taking the
     *      contract defaults, 100 and 50, for fields left to the daemon);
     *   > 0: exactly this many ms;  FM_TIMEOUT_NONE: no deadline. */
    int64_t timeout_ms;
    /* New fields go here, each with 0 meaning its default. */
} fm_lock_opts;

/* Fills *o with the defaults and records its size. Call it through the
 * macro, which passes the size of the struct as this program sees it (the
 * function is for bindings that cannot use macros: size is then the size of
 * the struct they allocated). */
#define fm_lock_opts_init(o) fm_lock_opts_init_size((o), sizeof(fm_lock_opts))
FMREDIS_EXPORT void fm_lock_opts_init_size(fm_lock_opts *o, size_t size);

/* The result of an acquire. */
typedef struct fm_lock {
    int acquired;                   /* 1: the lock is ours; 0: another holder
                                       kept it through all retries */
    char token[FM_TOKEN_MAX + 1];   /* when acquired; "" otherwise */
    size_t token_len;
    int64_t fence;                  /* when acquired: grows with every
                                       successful acquire of the key */
} fm_lock;

/* lock.acquire. FM_OK with out->acquired telling whether the lock was taken;
 * a lock held by someone else is not an error. opts may be NULL. */
FMREDIS_EXPORT int fm_lock_acquire(fm_client *c, const char *key,
                                   const fm_lock_opts *opts, fm_lock *out);

typedef enum fm_release_reason {
    FM_RELEASE_DONE = 0,        /* released */
    FM_RELEASE_NOT_HELD,        /* no lock on the key */
    FM_RELEASE_NOT_OWNER,       /* another token holds it */
    FM_RELEASE_OTHER            /* a reason this library does not know */
} fm_release_reason;

/* lock.release. *released (may be NULL) is 1 or 0; *reason (may be NULL)
 * says why not. Not releasing is not an error. */
FMREDIS_EXPORT int fm_lock_release(fm_client *c, const char *key,
                                   const char *token, int *released,
                                   fm_release_reason *reason);

/* lock.extend: sets the remaining TTL to ttl_ms (0: the daemon's default
 * TTL). *extended (may be NULL) is 0 when the token no longer holds it. */
FMREDIS_EXPORT int fm_lock_extend(fm_client *c, const char *key,
                                  const char *token, int64_t ttl_ms,
                                  int *extended);

/* lock.is_locked. */
FMREDIS_EXPORT int fm_lock_is_locked(fm_client *c, const char *key,
                                     int *locked);

/* fm_with_lock(): acquire, run fn, always release.
 *
 * The lock is acquired with auto_extend on (whatever opts says), so it stays
 * held while fn runs, however long, as long as the connection is open; its
 * TTL only matters if this process dies or hangs with the socket open. fn
 * receives the client (it may make calls on it, but must not close it) and
 * the lock. After fn returns the lock is released, even when fn failed.
 *
 * Returns FM_OK when the acquire and (if fn ran) the release completed:
 * res->ran says whether fn ran (0: the lock was held by others throughout),
 * res->ret is fn's return value, res->released whether the release found the
 * lock still ours (0 means it was lost while fn ran; a FM_EVENT_LOCK_LOST
 * event is queued then). Returns FM_ERR when the acquire or the release
 * failed; res->ran and res->ret are valid then too (if the release failed,
 * the daemon still releases the lock when the connection closes, or lets it
 * expire). res may be NULL. A given opts->ttl_ms below 100 is FM_ERR_ARG. */
typedef int (*fm_lock_fn)(fm_client *c, const fm_lock *lock, void *arg);

typedef struct fm_with_lock_result {
    int ran;
    int ret;
    int released;
    fm_lock lock;
} fm_with_lock_result;

FMREDIS_EXPORT int fm_with_lock(fm_client *c, const char *key,
                                const fm_lock_opts *opts, fm_lock_fn fn,
                                void *arg, fm_with_lock_result *res);

/* ------------------------------------------------------------------------ */
/* Wake signals                                                             */

/* wake.signal: publishes a wake for execution_id on channel (NULL: the
 * daemon's wake_channel). *receivers (may be NULL): PUBLISH's count. */
FMREDIS_EXPORT int fm_wake_signal(fm_client *c, const char *execution_id,
                                  const char *channel, int64_t *receivers);

/* wake.signal_many: one wake per id (n may be 0). *signaled (may be NULL):
 * how many ids were published. */
FMREDIS_EXPORT int fm_wake_signal_many(fm_client *c,
                                       const char *const *execution_ids,
                                       size_t n, const char *channel,
                                       int64_t *signaled);

/* wake.subscribe: after FM_OK every wake published on the channel reaches
 * this client as an FM_EVENT_WAKE event (with a group, the daemon's
 * subscribers of that group share the wakes round-robin). channel and group
 * may be NULL. The channel the daemon subscribed is copied to channel_out
 * (cap bytes, NUL-terminated, truncated to fit) unless it is NULL. */
FMREDIS_EXPORT int fm_wake_subscribe(fm_client *c, const char *channel,
                                     const char *group, char *channel_out,
                                     size_t cap);

/* wake.unsubscribe. Events already queued stay queued. */
FMREDIS_EXPORT int fm_wake_unsubscribe(fm_client *c, const char *channel,
                                       char *channel_out, size_t cap);

/* ------------------------------------------------------------------------ */
/* Execution cache                                                          */

/* cache.get: on a hit *json is a malloc'd, NUL-terminated copy of the cached
 * execution's exact JSON text (the bytes the daemon sent, never re-printed)
 * and *len its length; on a miss *json is NULL and *len 0. Free with free().
 * len may be NULL. */
FMREDIS_EXPORT int fm_cache_get(fm_client *c, const char *execution_id,
                                char **json, size_t *len);

/* Flags of fm_cache_get_flags() and fm_cache_get_many_flags(). */
#define FM_CACHE_FRESH 0x1u     /* read Redis, not the daemon's near cache */

/* fm_cache_get() with flags (0, or FM_CACHE_FRESH; others: FM_ERR_ARG). */
FMREDIS_EXPORT int fm_cache_get_flags(fm_client *c, const char *execution_id,
                                      unsigned flags, char **json, size_t *len);

/* cache.set: json[0..len) is the execution, a JSON object with a string
 * "id", sent verbatim (so numbers keep their digits). It is checked locally
 * first (strict JSON, one object, a string id): FM_ERR_ARG otherwise.
 * ttl_ms 0: the daemon's cache_ttl_ms. */
FMREDIS_EXPORT int fm_cache_set(fm_client *c, const char *json, size_t len,
                                int64_t ttl_ms);

/* cache.invalidate. */
FMREDIS_EXPORT int fm_cache_invalidate(fm_client *c, const char *execution_id);

/* cache.invalidate_many: *invalidated (may be NULL) is how many existed. */
FMREDIS_EXPORT int fm_cache_invalidate_many(fm_client *c,
                                            const char *const *execution_ids,
                                            size_t n, int64_t *invalidated);

/* One hit of fm_cache_get_many(). */
typedef struct fm_cache_entry {
    char *id;           /* NUL-terminated execution id */
    char *json;         /* NUL-terminated exact JSON text of the execution */
    size_t len;         /* strlen(json) unless the JSON itself holds \u0000 */
} fm_cache_entry;

/* cache.get_many: *entries gets the hits only, in the reply's order, *count
 * how many (*entries is NULL when 0). Free with fm_cache_entries_free(). */
FMREDIS_EXPORT int fm_cache_get_many(fm_client *c,
                                     const char *const *execution_ids,
                                     size_t n, fm_cache_entry **entries,
                                     size_t *count);
/* fm_cache_get_many() with flags, as fm_cache_get_flags(). */
FMREDIS_EXPORT int fm_cache_get_many_flags(fm_client *c,
                                           const char *const *execution_ids,
                                           size_t n, unsigned flags,
                                           fm_cache_entry **entries,
                                           size_t *count);
FMREDIS_EXPORT void fm_cache_entries_free(fm_cache_entry *entries,
                                          size_t count);

/* ------------------------------------------------------------------------ */
/* Stats and raw requests                                                   */

/* stats: *json is a malloc'd NUL-terminated copy of the whole reply object
 * (clients, redis, ops, ...), free with free(). len may be NULL. */
FMREDIS_EXPORT int fm_stats(fm_client *c, char **json, size_t *len);

/* Sends request[0..len) as one frame, exactly as given (no id is added),
 * and waits for its reply: the reply whose "id" equals the request's when
 * the request is a JSON object with a usable id, else the next reply with
 * no id (which is also what the daemon sends for unparsable requests).
 * Events arriving meanwhile are queued. Uses the client's timeout.
 *
 * *reply gets a malloc'd NUL-terminated copy of the reply text (free()),
 * *reply_len its length (may be NULL). Returns FM_OK for ok:true; for
 * ok:false it returns FM_ERR with FM_ERR_SERVER and STILL sets *reply, so a
 * caller can print it. On other errors *reply is NULL. A framing error the
 * daemon answers (frame_too_large) closes the connection. */
FMREDIS_EXPORT int fm_call_raw(fm_client *c, const char *request, size_t len,
                               char **reply, size_t *reply_len);

/* ------------------------------------------------------------------------ */
/* EVENTS                                                                   */
/*
 * Blocking use (a worker that sleeps until woken):
 *
 *   fm_wake_subscribe(c, NULL, "workers", NULL, 0);
 *   fm_event ev;
 *   for (;;) {
 *       if (fm_event_wait(c, &ev, 30000) != FM_OK) {
 *           if (fm_client_err(c) == FM_ERR_TIMEOUT) { sweep(); continue; }
 *           break;                                  // connection gone
 *       }
 *       if (ev.type == FM_EVENT_WAKE) run(ev.execution_id);
 *       else if (ev.type == FM_EVENT_REDIS && ev.redis_up) sweep();
 *       fm_event_clear(&ev);
 *   }
 *
 * Poll-loop use: watch fm_client_fd(c) for POLLIN, but first check
 * fm_client_has_events(c): events can already sit in the client's queue
 * (read while a call waited for its reply), and those never make the fd
 * readable again. So:
 *
 *   while (fm_client_has_events(c) || fd_is_readable || poll_timed_out) {
 *       int r = fm_event_read(c, &ev);     // never blocks
 *       if (r == FM_NONE) break;           // only part of a frame so far
 *       if (r == FM_ERR) { ...closed... }
 *       handle(&ev); fm_event_clear(&ev);
 *   }
 *
 * (poll_timed_out: see fm_client_fd() for why an idle loop also reads.)
 */

typedef enum fm_event_type {
    FM_EVENT_WAKE = 1,      /* channel, execution_id, timestamp */
    FM_EVENT_REDIS,         /* redis_up: the daemon's Redis link changed */
    FM_EVENT_LOCK_LOST,     /* key: an auto-extended lock was lost */
    FM_EVENT_OTHER          /* anything else: see name and json */
} fm_event_type;

/* One event. The strings belong to the event: fm_event_clear() frees them.
 * A string the event does not carry is NULL. */
typedef struct fm_event {
    fm_event_type type;
    char *name;             /* the "event" member: "wake", "redis", ... */
    char *channel;          /* wake */
    char *execution_id;     /* wake */
    int has_timestamp;      /* wake: whether the publisher sent a timestamp */
    int64_t timestamp;      /* ms since the epoch */
    int redis_up;           /* redis: 1 "up" (subscriptions restored: run a
                               poll sweep, wakes may have been missed), 0
                               "down" */
    char *key;              /* lock.lost: the key as the client gave it */
    char *json;             /* the whole event's JSON text */
    size_t json_len;
} fm_event;

/* Waits for the next event: returns a queued one at once, else reads until
 * one arrives. timeout_ms: FM_TIMEOUT_NONE (-1) waits forever, 0 takes only
 * what is already readable. FM_OK with *ev filled (free its strings with
 * fm_event_clear()). FM_ERR with FM_ERR_TIMEOUT when none came, or with
 * FM_ERR_INTERRUPTED when a caught signal interrupted the wait (both leave
 * the connection usable), or another error when the connection failed.
 * Replies that arrive meanwhile (late replies of timed-out calls) are
 * dropped. Calls, unlike this wait, carry on through signals. */
FMREDIS_EXPORT int fm_event_wait(fm_client *c, fm_event *ev, int timeout_ms);

/* Non-blocking: sends what the socket takes of the library's unsent bytes
 * (see fm_client_fd()), reads whatever bytes the socket holds now, then
 * returns FM_OK with the oldest queued event, FM_NONE when there is none, or
 * FM_ERR when the connection failed (only once the queue is empty). */
FMREDIS_EXPORT int fm_event_read(fm_client *c, fm_event *ev);

/* Frees an event's strings and zeroes it. NULL and cleared events are fine. */
FMREDIS_EXPORT void fm_event_clear(fm_event *ev);

/* The connection's file descriptor for poll/epoll (watch POLLIN), or -1 when
 * not connected. Do not read from or write to it.
 *
 * Between calls the library may hold a few unsent bytes: the release of a
 * lock that an acquire got after its call timed out, when the socket could
 * not take it at that moment (the daemon was not reading). Every call sends
 * them before its request; fm_event_wait() and fm_event_read() send what the
 * socket takes; nothing else does. So a poll loop that can sit idle should
 * give poll a timeout (a second, say) and call fm_event_read() when it
 * expires: until those bytes go out, that lock stays held (with auto_extend,
 * for as long as the connection stays open). */
FMREDIS_EXPORT int fm_client_fd(const fm_client *c);

/* The number of events queued in the client: received (during any call on
 * it) and not yet handed out by fm_event_read() or fm_event_wait(). While it
 * is not 0, fm_event_read() returns FM_OK with an event at once, whether or
 * not the fd is readable; those events never make it readable. */
FMREDIS_EXPORT size_t fm_client_has_events(const fm_client *c);

#ifdef __cplusplus
}
#endif

#endif
