/* link.h -- the daemon's link to Redis: one server, the master Redis
 * Sentinel names, or the masters of a Redis Cluster.
 *
 * The link owns two hiredis async contexts, one for commands (shared by all
 * clients: pipelined by nature; in a Cluster one per master, each command
 * sent to its key's) and one for SUBSCRIBE, and everything about
 * keeping them usable: resolving and connecting without blocking the loop,
 * AUTH and SELECT, loading Lua scripts, reconnecting with backoff, retrying
 * commands that met a transient state (LOADING, BUSY, MASTERDOWN), and
 * re-sending EVALSHA as EVAL on NOSCRIPT. Services never touch a hiredis
 * context; they submit commands (link_cmd.h) and use channels
 * (link_sub.h), and get exactly one callback per command. */
#ifndef FM_LINK_H
#define FM_LINK_H

#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "link_cmd.h"
#include "link_sub.h"
#include "link_track.h"
#include "tls.h"

/* tls: NULL, or how to reach Redis over TLS (outlives the link). */
fm_link *fm_link_create(uv_loop_t *loop, const fm_config *cfg, fm_tls *tls);
/* Disconnects both contexts; every command still queued or in flight gets
 * FM_LINK_DOWN first. */
void fm_link_free(fm_link *link);

/* Starts connecting. Scripts and listeners must be registered before. */
int fm_link_start(fm_link *link);
/* Configuration values the link reads (backoff) may change on reload. */
void fm_link_set_config(fm_link *link, const fm_config *cfg);

/* The link as a whole is up when both its contexts are connected and set
 * up. The hook hears every change between up and down (the first loss or
 * failed attempt counts as one), with why when down: hiredis's or Redis's
 * error, which never holds the password (sent only as AUTH's argument).
 * One hook; the daemon's top registers it to tell the service manager. */
typedef void fm_link_state_fn(int up, const char *why, void *arg);
void fm_link_on_state(fm_link *link, fm_link_state_fn *fn, void *arg);

/* Whether commands are being sent right now (connected, set up). */
int fm_link_ready(const fm_link *link);
int fm_link_sub_ready(const fm_link *link);
/* Why the command connection is not ready ("Redis refused AUTH: WRONGPASS
 * ...", "Connection refused"), or NULL when it is or nothing failed yet.
 * Like the state hook's why, it never holds the password. */
const char *fm_link_error(const fm_link *link);

/* Counters for stats. */
typedef struct fm_link_stats {
    uint64_t connects;
    uint64_t disconnects;
    uint64_t commands;
    uint64_t retries;       /* transient errors and NOSCRIPT re-sends */
    uint64_t refused;       /* channels the ACL would not let us subscribe */
    size_t queued;          /* waiting for the link, or for their turn */
    uint64_t reconnects;    /* the command context up again after a loss */
    const char *last_error; /* "command: ..." or "pub/sub: ...", NULL: none */
    uint64_t last_error_age_ms;
    int64_t rtt_us;         /* the daemon's last PING, -1: not set up */
    int cluster;            /* the rest is a Cluster's; 0: not one */
    size_t masters;         /* in the slot map */
    size_t masters_ready;
    size_t slots_uncovered; /* no master in the map (all, before the first) */
    uint64_t redirects;     /* MOVED and ASK followed */
    uint64_t map_refreshes; /* slot maps taken */
} fm_link_stats;
void fm_link_get_stats(const fm_link *link, fm_link_stats *out);

#endif
