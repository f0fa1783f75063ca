/* core.h -- what the services plug into: the loop, the configuration, the
 * link, the connections and the requests, and the table of services.
 *
 * A service is a table (fm_service): its operations, and the hooks the
 * core calls when something happens that the service may care about. The
 * core names no service; the server registers them at start, in the order
 * their operations appear in `stats`. Each service's state is its own; a
 * request carries its service's state (req->svc), and a connection keeps a
 * slot for it (conn->svc[slot], slot being the number create() is given). */
#ifndef FM_CORE_H
#define FM_CORE_H

#include <stddef.h>

#include <uv.h>

#include "config.h"
#include "conn.h"
#include "fm_request.h"
#include "link.h"
#include "req.h"

#define FM_SERVICES_MAX FM_CONN_SLOTS
#define FM_OPS_MAX 32

typedef struct fm_core fm_core;

typedef void fm_op_fn(fm_req *req, const fm_request *msg);

/* One operation: its `op` name and its handler, which validates the
 * message's fields and answers the request now or later, exactly once. */
typedef struct fm_op {
    const char *name;
    fm_op_fn *fn;
} fm_op;

typedef struct fm_service {
    const char *name;
    const fm_op *ops;
    size_t nops;
    /* Returns the service's state, NULL when it cannot start. */
    void *(*create)(fm_core *core, int slot);
    /* Every hook below may be NULL. */
    /* A connection is closing: let go of what hangs on it (called once
     * per connection, see fm_core_conn_closed). */
    void (*conn_closed)(void *state, fm_conn *conn);
    /* The daemon begins to shut down; new requests are refused already. */
    void (*shutdown)(void *state);
    /* Commands of its own still at Redis, which the shutdown waits for. */
    size_t (*busy)(const void *state);
    /* Appends its members to the `stats` reply. */
    void (*put_stats)(const void *state, fm_conn *conn);
    void (*free)(void *state);
} fm_service;

typedef struct fm_core_svc {
    const fm_service *def;
    void *state;
    size_t first_op;            /* its ops' place in op_stats */
} fm_core_svc;

struct fm_core {
    uv_loop_t *loop;
    const fm_config *cfg;
    fm_link *link;
    fm_conns conns;
    fm_reqs reqs;
    int shutting_down;          /* requests are refused */
    fm_core_svc svc[FM_SERVICES_MAX];
    size_t nsvc;
    fm_op_stats op_stats[FM_OPS_MAX];
    size_t nops;
    uint64_t started_ms;        /* uv_now() at start: the latency window's floor */
};

/* Sets up the parts; the core owns the link from here on, the
 * configuration stays the server's. */
void fm_core_init(fm_core *core, uv_loop_t *loop, const fm_config *cfg, fm_link *link,
                  const fm_conn_handler *h);
/* The configuration was reloaded. */
void fm_core_set_config(fm_core *core, const fm_config *cfg);
/* Creates the service and plugs it in; -1 when it could not start. */
int fm_core_register(fm_core *core, const fm_service *def);
/* Closes the link (its last callbacks still reach the services), then
 * frees every service. */
void fm_core_stop(fm_core *core);

/* Parses one frame body and runs its operation on conn. */
void fm_core_dispatch(fm_core *core, fm_conn *conn, const char *body, size_t len);

/* The hooks, called on every service that has them. */
/* The services let go of the connection: when it closes, or earlier when
 * the shutdown is about to close every connection (fm_core_closing_all),
 * so that what must reach Redis for them (lock releases) goes while the
 * link is up. Once per connection; later calls do nothing. */
void fm_core_conn_closed(fm_core *core, fm_conn *conn);
void fm_core_closing_all(fm_core *core);
void fm_core_shutdown(fm_core *core);
size_t fm_core_busy(const fm_core *core);
/* Appends the services' members and the "ops" object of `stats`. */
void fm_core_put_stats(const fm_core *core, fm_conn *conn);

#endif
