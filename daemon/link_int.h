/* link_int.h -- the link's insides, shared by its files and nothing else.
 * From the bottom up: link_ctx.c (the contexts' connect machine),
 * link_cluster.c (a Cluster's slot map and its masters' contexts),
 * link_cmd.c (commands, flows, their scheduling and routing),
 * link_batch.c (commands as services submit them, batches cut by slot in
 * a Cluster), link_sub.c (pub/sub channels), link.c (the link's life
 * cycle, which ties them together).
 * A context tells its owner it is ready or lost through the hooks the
 * owner set, so the machine knows nothing of what runs on it. */
#ifndef FM_LINK_INT_H
#define FM_LINK_INT_H

#include <hiredis/async.h>
#include <uv.h>

#include "config.h"
#include "link.h"
#include "list.h"
#include "map.h"
#include "sentinel.h"
#include "slot.h"
#include "slotmap.h"

#define MAX_SCRIPTS 10

enum { ST_IDLE, ST_ASKING, ST_RESOLVING, ST_CONNECTING, ST_SETUP, ST_READY, ST_LOST };
enum { CTX_CMD, CTX_SUB };

typedef struct fm_ctx fm_ctx;
struct fm_ctx {
    fm_link *link;
    int kind;
    int state;
    redisAsyncContext *ac;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    fm_sentinel_waiter ask;    /* ST_ASKING: which master, with Sentinel */
    char host[FM_SENTINEL_HOST_MAX];    /* this attempt's server; "" over a Unix socket */
    int port;
    /* Where to connect when set (a Cluster's node), rather than where
     * redis_url or the sentinels say. */
    char addr_host[FM_SENTINEL_HOST_MAX];
    int addr_port;
    int retired;            /* a node that left the slot map: no reconnect */
    int draining;           /* retired while ready: its end is no loss */
    const char *stale;      /* why the host being resolved is no longer
                               wanted (the master switched, the node left) */
    int attempt;
    int setup_pending;      /* setup replies still to come */
    int setup_sent;         /* setup commands sent, in this order: */
    const char *setup_names[MAX_SCRIPTS + 4];   /* AUTH, ROLE, SELECT, scripts, PING */
    int logged_down;        /* loss logged; recovery not yet */
    int dropping;           /* we freed the context; on_disconnect follows */
    int suspect;            /* connected, but the server said READONLY: not
                               recovered until a command succeeds */
    int ever_ready;         /* a READY now is a reconnect */
    void (*on_ready)(fm_ctx *ctx);
    void (*on_lost)(fm_ctx *ctx, int was_ready);
    char lasterr[256];
    char below[256];        /* the TLS tunnel's failure (redis_uv.h) */
    int txn_open;           /* Redis took the MULTI of the transaction
                               being answered (link_cmd.c) */
    char txn_err[128];      /* the first error it met before its EXEC */
};

/* PARKED: in a Cluster, waiting for its master (lost, or not connected
 * yet) on its flow's parked list, out of the way of the flow's others. */
enum { CMD_QUEUED, CMD_PARKED, CMD_SENT };

struct fm_cmd {
    fm_link *link;
    fm_flow *flow;
    fm_list in_flow;        /* flow->queue while QUEUED, flow->parked while PARKED */
    uint64_t seq;           /* submission order */
    int state;
    int cancelled;
    int transient;          /* Redis said "not now" to it at least once */
    fm_script *script;
    int use_eval;           /* NOSCRIPT seen: send the body */
    int tracked;            /* a write sent in MULTI ... EXEC (fm_link_tracked) */
    int slot;               /* its keys' slot in a Cluster; -1: any node */
    fm_ctx *ask;            /* ASK: once to this node, after ASKING */
    fm_ctx *ctx;            /* where it was written, while SENT */
    int redirects;          /* MOVED and ASK answers so far */
    struct fm_batch *batch; /* a batch cut by slot (link_batch.c) */
    uint64_t retry_at;
    size_t reads;           /* keys whose values come back */
    size_t req_bytes;       /* what it costs Redis to read */
    size_t cost;            /* estimated while it is out, on its flow */
    size_t link_cost;       /* the part of it on link->bulk_bytes */
    fm_link_cb *cb;
    void *arg;
    int argc;               /* including the 3 script slots when script */
    const char **argv;
    size_t *lens;
};

/* A client's share of the command connection (link_cmd.c). */
struct fm_flow {
    fm_list queue;          /* commands waiting, in order */
    fm_list in_ring;        /* link->ring, while anything waits */
    fm_list parked;         /* commands PARKED, in submission order */
    fm_list in_parked;      /* link->parked, while it has any */
    int own;                /* the daemon's own: never held back */
    size_t out;             /* commands at Redis */
    size_t out_bytes;       /* their estimated cost, bulk ones only */
    size_t read_est;        /* bytes a key read of this flow brought lately */
    int read_seen;          /* read_est is learnt, not the first guess */
    size_t refs;            /* the owner's, and one per command */
};

typedef enum { CH_NONE, CH_PROBING, CH_SUBSCRIBING, CH_SUBSCRIBED, CH_UNSUBSCRIBING } ch_state;

typedef struct channel {
    fm_map_node node;       /* link->channels, by name */
    fm_link *link;
    ch_state state;
    size_t uses[FM_LINK_LISTENERS];
    size_t nuses;           /* all listeners' */
    int allowed;            /* the ACL probe said yes, or could not tell */
    uint64_t sent_seq;      /* when its SUBSCRIBE went out */
    size_t len;
    char name[];
} channel;

/* Client-side caching and the fence (link_track.c). */
typedef struct fm_link_trk {
    fm_link_tracker t;
    int wanted;             /* a tracker is registered */
    long long sub_id;       /* CLIENT ID of the pub/sub connection */
    int sub_id_known;       /* on the current pub/sub connection */
    int confirmed;          /* the channel confirmed on it */
    int asking;             /* CLIENT TRACKING out */
    uint64_t ask_gen;       /* gen when it went */
    int armed;
    uint64_t gen;           /* bumped by every loss */
    uint64_t fence_seq;     /* the last fence raised */
    uint64_t done_seq;      /* every fence up to it passed */
    uint64_t told_seq;      /* what the tracker heard of that */
    uint64_t wanted_seq;    /* the last fence a read waits for */
    int barrier_out;        /* a round trip out on the pub/sub connection
                               (which it outlives the command one on) */
    uint64_t barrier_seq;   /* the fence it covers */
    uint64_t barrier_sent_ms;
    uv_idle_t turn;         /* runs at the start of the next loop turn */
    fm_script probe;        /* may the user run PTTL? */
    fm_link_track_stats stats;
} fm_link_trk;

typedef struct fm_link_counts {
    uint64_t connects, disconnects, commands, retries, refused, reconnects, redirects;
} fm_link_counts;

/* The daemon's own PING on the command context, every FM_LINK_PING_MS and
 * at each connect, straight on the hiredis context: it measures Redis's
 * round trip behind what is already written, not the link's queues. */
#define FM_LINK_PING_MS 5000
typedef struct fm_link_rtt {
    uv_timer_t timer;
    int out;                /* a PING is at Redis */
    uint64_t sent_ns;
    int64_t last_us;        /* -1: none since the context came up */
} fm_link_rtt;

struct fm_link {
    uv_loop_t *loop;
    const fm_config *cfg;
    fm_tls *tls;            /* NULL: plain TCP */
    fm_ctx ctx[2];
    fm_sentinel *sentinel;  /* NULL: redis_url names the server */
    struct fm_cluster *cluster; /* NULL: not a Cluster */
    fm_script *scripts[MAX_SCRIPTS];
    int nscripts;
    fm_script sub_probe;    /* may this user subscribe to a channel? */
    fm_flow own;            /* the daemon's own commands */
    fm_list ring;           /* flows with waiting commands, served in turn */
    fm_list parked_flows;   /* flows with parked commands */
    size_t ring_len;
    size_t queued;          /* commands waiting, all flows */
    size_t bulk_bytes;      /* estimated cost of the bulk commands out */
    fm_cmd *reserved;       /* the bulk command next in, held back by it */
    uv_timer_t retry_timer;
    fm_map channels;
    size_t live;            /* channels SUBSCRIBING or SUBSCRIBED */
    struct channel *parked; /* the last live one, kept though unused */
    uint64_t sub_seq;
    fm_link_listener listeners[FM_LINK_LISTENERS];
    int nlisteners;
    fm_link_counts counts;
    fm_link_rtt rtt;
    fm_link_trk track;
    char last_error[272];   /* the last loss or failure, either context */
    uint64_t last_error_ms; /* its uv_now(); 0: none yet */
    fm_link_state_fn *on_state;
    void *state_arg;
    int reported_up;        /* what on_state heard last; -1: nothing yet */
    int closing;
    int open_handles;       /* handles and requests not yet closed, of
                               every context: */
    void (*release)(fm_link *link);     /* after the link closed, one of them
                                           did (link.c's; the last frees it) */
};

/* link_ctx.c */
void fm_ctx_init(fm_ctx *ctx, fm_link *link, int kind);
void fm_ctx_connect(fm_ctx *ctx);
/* Drops the hiredis context, if any, without reconnecting (the link is
 * closing); the timer is the caller's to close. */
void fm_ctx_close(fm_ctx *ctx);
/* The context works again: backoff starts over, the recovery is logged. */
void fm_ctx_recovered(fm_ctx *ctx);
/* The sentinels moved the master to host:port (host NULL: somewhere else,
 * ask them): a context on another server goes now, and every context
 * connects again without waiting out a backoff. */
void fm_ctx_switch(fm_ctx *ctx, const char *host, int port, const char *why);
/* Whether an error reply begins with this code ("NOSCRIPT", "LOADING"). */
int fm_link_reply_is(const redisReply *r, const char *code);
/* Whether a reply to ROLE says master. */
int fm_link_reply_is_master(const redisReply *r);
/* A node leaves the slot map: what it has out still comes back, then it
 * disconnects and stays so until fm_ctx_rejoin. */
void fm_ctx_retire(fm_ctx *ctx);
void fm_ctx_rejoin(fm_ctx *ctx);
/* "command", "pub/sub", with the node's address in a Cluster. */
const char *fm_ctx_name(const fm_ctx *ctx, char *buf, size_t len);

/* link_cmd.c */
void fm_link_cmd_init(fm_link *link);
/* Sends what may go now, flow by flow in turn. */
void fm_link_pump(fm_link *link);
/* Answers every waiting command with FM_LINK_DOWN (the link is closing). */
void fm_link_fail_waiting(fm_link *link);
/* A master became ready, or the slot map changed: parked commands go back
 * to their flows, to be sent or parked again. */
void fm_link_unpark(fm_link *link);
/* One command, as fm_link_command and fm_link_cancel are for any. */
fm_cmd *fm_link_cmd_create(fm_link *link, fm_flow *flow, size_t reads, fm_script *script,
                           int nkeys, int argc, const char **argv, const size_t *lens,
                           fm_link_cb *cb, void *arg);
/* Sends it, or queues it; NULL when the link is closing (cmd freed). */
fm_cmd *fm_link_cmd_submit(fm_link *link, fm_cmd *cmd);
int fm_link_cmd_cancel(fm_cmd *cmd);
/* Frees a command that never left the link. */
void fm_link_cmd_discard(fm_cmd *cmd);

/* link_cluster.c */
typedef struct fm_cluster fm_cluster;
/* A node's context runs the link's command hooks; changed follows each
 * new map (routes changed, the link may be up or down). */
fm_cluster *fm_cluster_create(fm_link *link, void (*ready)(fm_ctx *ctx),
                              void (*lost)(fm_ctx *ctx, int was_ready),
                              void (*changed)(fm_link *link));
void fm_cluster_start(fm_cluster *c);
/* The context of slot's master, or NULL while the map names none. */
fm_ctx *fm_cluster_route(const fm_cluster *c, unsigned slot);
/* A ready master's context, for commands of no key; NULL: none ready. */
fm_ctx *fm_cluster_any(const fm_cluster *c);
/* ASK: the context of the node at host:port, made (and connecting) when
 * new; NULL when the cluster has too many nodes. */
fm_ctx *fm_cluster_ask(fm_cluster *c, const char *host, int port);
/* Whether the map names host:port, as a master or a replica (a map of
 * no master names everyone). */
int fm_cluster_knows(const fm_cluster *c, const char *host, int port);
/* MOVED: slot is served at host:port now; the whole map is asked for
 * again. */
void fm_cluster_moved(fm_cluster *c, unsigned slot, const char *host, int port);
/* Asks for the slot map again soon (a node lost, CLUSTERDOWN). */
void fm_cluster_refresh(fm_cluster *c);
/* A command at ctx's node went unanswered past its deadline: that node
 * is asked for the map only when no other can be, for a request's time. */
void fm_cluster_suspect(fm_cluster *c, fm_ctx *ctx);
/* Every slot has a master, and each master's context is ready. */
int fm_cluster_ready(const fm_cluster *c);
/* Why not, or NULL. */
const char *fm_cluster_error(fm_cluster *c);
typedef struct fm_cluster_stats {
    size_t masters;             /* in the slot map */
    size_t masters_ready;
    size_t slots_uncovered;     /* all of them before the first map */
    uint64_t map_refreshes;
} fm_cluster_stats;
void fm_cluster_get_stats(const fm_cluster *c, fm_cluster_stats *out);
/* Sets where the pub/sub context goes next: the nodes in turn. */
void fm_cluster_sub_addr(fm_cluster *c, fm_ctx *ctx);
/* Drops every context and closes the handles (the link counts them);
 * fm_cluster_free frees the memory once they closed. */
void fm_cluster_close(fm_cluster *c);
void fm_cluster_free(fm_cluster *c);

/* link_sub.c */
int fm_link_sub_init(fm_link *link);
void fm_link_subscribe_all(fm_link *link);   /* SUBSCRIBE what needs it, if READY */
void fm_link_probe_ready(fm_link *link);    /* the command context is READY */
/* The pub/sub context is lost; why is hiredis's error, if any. */
void fm_link_sub_lost(fm_link *link, const char *why, int was_ready);
void fm_link_sub_free(fm_link *link);
/* SUBSCRIBE again to a channel that is subscribed: Redis answers with a
 * confirmation, in order with the messages. -1 when it cannot go now. */
int fm_link_sub_again(fm_link *link, const char *name, size_t len);

/* link_track.c */
void fm_link_track_init(fm_link *link);
/* The pub/sub connection's CLIENT ID, during its setup. */
void fm_link_track_sub_id(fm_link *link, long long id);
void fm_link_track_cmd_ready(fm_link *link);
void fm_link_track_cmd_lost(fm_link *link);
/* Redis would not run a tracked write as one transaction (link_cmd.c):
 * what is kept may not be tracked. Disarmed until a connection is made
 * again. */
void fm_link_track_refused(fm_link *link, const char *why, size_t len);
/* Every FM_LINK_PING_MS: the pub/sub connection's heartbeat. */
void fm_link_track_tick(fm_link *link);
/* Closes its handle (counted in open_handles). */
void fm_link_track_close(fm_link *link, uv_close_cb cb);

#endif
