/* wake.c -- wake signals over Redis pub/sub, and their local delivery.
 *
 * The daemon subscribes once per channel, however many local subscribers it
 * has, and fans each message out: every subscriber without a group gets it,
 * and each group gets it once, round-robin among its members. A
 * wake.subscribe is answered only when Redis has confirmed the channel, so
 * every wake published after the reply is delivered.
 *
 * A wake is built once and shared by every subscriber's output (outq.h): a
 * large payload published by anyone with access to Redis costs its size
 * once, not once per subscriber. Channels are found through a keyed hash
 * (map.h), however many a client makes. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "list.h"
#include "log.h"
#include "map.h"
#include "reply.h"
#include "scripts.h"
#include "wake.h"

/* A connection's subscriptions (in its slot, conn->svc). */
typedef struct wconn {
    fm_list subs;                   /* wsub.in_conn */
    size_t awaiting_up;             /* subscriptions to restore after "down" */
} wconn;

/* One connection's subscription to one channel: on the channel's list
 * (delivery) and on the connection's (lookup, close). */
typedef struct wsub {
    fm_conn *conn;
    wconn *wc;                      /* conn's */
    struct wchan *chan;
    fm_list in_chan;                /* chan->subs */
    fm_list in_conn;                /* wc->subs */
    int awaiting_up;
    size_t glen;                    /* 0: no group */
    char group[FM_NAME_MAX + 1];
} wsub;

typedef struct wgroup {
    struct wgroup *next;
    uint64_t turn;
    size_t len;
    char name[FM_NAME_MAX + 1];
} wgroup;

typedef struct pending {
    fm_req *req;
    fm_list in_chan;                /* chan->waiting */
    struct wchan *chan;             /* NULL once off the list */
} pending;

typedef struct wchan {
    fm_map_node node;               /* ws->chans, by name */
    fm_list subs;
    wgroup *groups;
    fm_list waiting;                /* subscribes to answer on confirmation */
    /* Holds one use of the link's channel, however many subscribers: taken
     * by the first, given back when the last leaves, lost when Redis
     * refuses the channel (the link then drops it). */
    int linked;
    size_t len;
    char name[];
} wchan;

typedef struct wsvc {
    fm_core *core;
    int slot;                       /* conn->svc[slot] is its wconn */
    int listener;
    fm_map chans;
    fm_script signal_many;
    fm_buf frame;                   /* scratch for events sent to many */
} wsvc;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The Node package's payload, byte for byte: JSON.stringify of
 * {executionId, timestamp}. Ids hold no control characters, so the only
 * escapes either side writes are \" and \\. */
static void put_payload(fm_buf *b, const char *id, size_t len, int64_t ts)
{
    fm_buf_puts(b, "{\"executionId\":");
    fm_buf_put_json_string(b, id, len);
    fm_buf_puts(b, ",\"timestamp\":");
    fm_buf_put_i64(b, ts);
    fm_buf_putc(b, '}');
}

static wchan *find_chan(wsvc *ws, const char *name, size_t len)
{
    fm_map_node *n = fm_map_find(&ws->chans, name, len);

    return n != NULL ? fm_map_entry(n, wchan, node) : NULL;
}

/* ---- delivery ---- */

static void send_state(wsvc *ws, fm_conn *conn, const char *state)
{
    fm_buf *b = &ws->frame;

    fm_buf_reset(b);
    fm_buf_put_u32be(b, 0);
    fm_buf_puts(b, "{\"event\":\"redis\",\"state\":\"");
    fm_buf_puts(b, state);
    fm_buf_puts(b, "\"}");
    if (b->oom)
        return;
    fm_buf_patch_u32be(b, 0, (uint32_t)(b->len - FM_FRAME_HEADER_LEN));
    fm_reply_send(conn, b->data, b->len);
}

/* Builds the wake event for a message. A payload that is a JSON object with
 * a string executionId yields that id (its JSON text is reused as it is);
 * anything else is the execution id itself. */
static int build_wake(wsvc *ws, const wchan *c, const char *payload, size_t plen)
{
    fm_buf *b = &ws->frame;
    fm_json_val root, id, ts;

    fm_buf_reset(b);
    fm_buf_put_u32be(b, 0);
    fm_buf_puts(b, "{\"event\":\"wake\",\"channel\":");
    fm_buf_put_json_string(b, c->name, c->len);
    fm_buf_puts(b, ",\"execution_id\":");
    if (fm_json_validate(payload, plen, &root, NULL, NULL) == 0 &&
        root.type == FM_JSON_OBJECT &&
        fm_json_object_get(&root, "executionId", 11, &id) && id.type == FM_JSON_STRING) {
        fm_buf_append(b, id.p, id.len);
        if (fm_json_object_get(&root, "timestamp", 9, &ts) && ts.type == FM_JSON_NUMBER) {
            fm_buf_puts(b, ",\"timestamp\":");
            fm_buf_append(b, ts.p, ts.len);
        }
    } else {
        fm_buf_put_json_string(b, payload, plen);
    }
    fm_buf_putc(b, '}');
    if (b->oom)
        return -1;
    fm_buf_patch_u32be(b, 0, (uint32_t)(b->len - FM_FRAME_HEADER_LEN));
    return 0;
}

#define sub_of(n) fm_list_entry(n, wsub, in_chan)

static int in_group(const wsub *s, const wgroup *g)
{
    return s->glen == g->len && memcmp(s->group, g->name, g->len) == 0;
}

static void deliver(wchan *c, fm_shared *f)
{
    fm_list *n;

    fm_list_each(n, &c->subs)
        if (sub_of(n)->glen == 0)
            fm_reply_send_shared(sub_of(n)->conn, f);
    for (wgroup *g = c->groups; g != NULL; g = g->next) {
        size_t members = 0, pick;

        fm_list_each(n, &c->subs)
            members += in_group(sub_of(n), g);
        if (members == 0)
            continue;
        pick = (size_t)(g->turn++ % members);
        fm_list_each(n, &c->subs) {
            if (in_group(sub_of(n), g) && pick-- == 0) {
                fm_reply_send_shared(sub_of(n)->conn, f);
                break;
            }
        }
    }
}

static void on_message(const char *channel, size_t clen, const char *payload, size_t plen,
                       void *arg)
{
    wsvc *ws = arg;
    wchan *c = find_chan(ws, channel, clen);
    fm_shared *f;

    if (c == NULL || fm_list_empty(&c->subs))
        return;
    if (build_wake(ws, c, payload, plen) != 0 ||
        (f = fm_shared_create(ws->frame.data, ws->frame.len)) == NULL) {
        fm_log_error("out of memory building a wake event");
        return;
    }
    deliver(c, f);
    fm_shared_unref(f);
    /* The scratch buffer does not keep what one large payload needed. */
    if (ws->frame.cap > 64 * 1024)
        fm_buf_free(&ws->frame);
}

static void answer_subscribe(fm_req *req, const wchan *c)
{
    fm_conn *conn = fm_req_ok_start(req);

    if (conn == NULL)
        return;
    fm_reply_put_str(conn, "channel", c->name, c->len);
    fm_req_ok_finish(req);
}

static void chan_release(wsvc *ws, wchan *c);

/* Takes a waiting subscribe off its channel's list; returns the channel,
 * or NULL when it was on none. */
static wchan *pending_detach(pending *p)
{
    wchan *c = p->chan;

    fm_list_remove(&p->in_chan);
    p->chan = NULL;
    return c;
}

static pending *first_pending(const wchan *c)
{
    fm_list *n = fm_list_first(&c->waiting);

    return n != NULL ? fm_list_entry(n, pending, in_chan) : NULL;
}


static void on_subscribed(const char *channel, size_t clen, void *arg)
{
    wsvc *ws = arg;
    wchan *c = find_chan(ws, channel, clen);
    pending *p;
    fm_list *n;

    if (c == NULL)
        return;
    /* Each request leaves the list before it is answered: answering may
     * drop it instead (its connection is doomed), and the loop must end
     * whatever the answer did. */
    while ((p = first_pending(c)) != NULL) {
        pending_detach(p);
        answer_subscribe(p->req, c);
    }
    fm_list_each(n, &c->subs) {
        wsub *s = sub_of(n);

        if (!s->awaiting_up)
            continue;
        s->awaiting_up = 0;
        if (--s->wc->awaiting_up == 0)
            send_state(ws, s->conn, "up");
    }
    /* Everyone who asked may have left (or unsubscribed) meanwhile. */
    chan_release(ws, c);
}

static void on_down(void *arg)
{
    wsvc *ws = arg;

    for (fm_map_node *n = fm_map_first(&ws->chans); n != NULL; n = fm_map_after(&ws->chans, n)) {
        wchan *c = fm_map_entry(n, wchan, node);
        fm_list *x;

        fm_list_each(x, &c->subs) {
            wsub *s = sub_of(x);

            if (s->awaiting_up)
                continue;
            s->awaiting_up = 1;
            if (s->wc->awaiting_up++ == 0)
                send_state(ws, s->conn, "down");
        }
    }
}

/* ---- subscriptions ---- */

static void group_use(wchan *c, const char *name, size_t len)
{
    wgroup *g;

    if (len == 0)
        return;
    for (g = c->groups; g != NULL; g = g->next)
        if (g->len == len && memcmp(g->name, name, len) == 0)
            return;
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return;
    memcpy(g->name, name, len);
    g->len = len;
    g->next = c->groups;
    c->groups = g;
}

/* Frees groups no subscriber names any more. */
static void groups_prune(wchan *c)
{
    wgroup **pg = &c->groups;

    while (*pg != NULL) {
        wgroup *g = *pg;
        int used = 0;

        fm_list *n;

        fm_list_each(n, &c->subs)
            used |= in_group(sub_of(n), g);
        if (used) {
            pg = &g->next;
        } else {
            *pg = g->next;
            free(g);
        }
    }
}

static void chan_release(wsvc *ws, wchan *c)
{
    if (!fm_list_empty(&c->subs) || !fm_list_empty(&c->waiting))
        return;
    if (c->linked)
        fm_link_unsubscribe(ws->core->link, ws->listener, c->name, c->len);
    fm_map_remove(&ws->chans, &c->node);
    groups_prune(c);
    free(c);
}

static wconn *conn_subs(const wsvc *ws, const fm_conn *conn)
{
    return conn->svc[ws->slot];
}

static wsub *sub_find(const wsvc *ws, fm_conn *conn, const wchan *c)
{
    wconn *wc = conn_subs(ws, conn);
    fm_list *n;

    if (wc == NULL)
        return NULL;
    fm_list_each(n, &wc->subs)
        if (fm_list_entry(n, wsub, in_conn)->chan == c)
            return fm_list_entry(n, wsub, in_conn);
    return NULL;
}

static wsub *sub_add(const wsvc *ws, fm_conn *conn, wchan *c)
{
    wconn *wc = conn_subs(ws, conn);
    wsub *s;

    if (wc == NULL) {
        if ((wc = calloc(1, sizeof(*wc))) == NULL)
            return NULL;
        fm_list_init(&wc->subs);
        conn->svc[ws->slot] = wc;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return NULL;
    s->conn = conn;
    s->wc = wc;
    s->chan = c;
    fm_list_push_back(&c->subs, &s->in_chan);
    fm_list_push_back(&wc->subs, &s->in_conn);
    return s;
}

/* Ends a subscription. The connection's "up" may have waited for this
 * one alone: it is sent then, if the connection keeps any channel. */
static void sub_remove(wsvc *ws, wsub *s)
{
    wconn *wc = s->wc;

    fm_list_remove(&s->in_chan);
    fm_list_remove(&s->in_conn);
    if (s->awaiting_up && --wc->awaiting_up == 0 && !fm_list_empty(&wc->subs))
        send_state(ws, s->conn, "up");
    groups_prune(s->chan);
    free(s);
}

/* Ends conn's subscription to c, if it has one; c goes when unwanted. */
static void unsubscribe(wsvc *ws, fm_conn *conn, wchan *c)
{
    wsub *s = conn != NULL ? sub_find(ws, conn, c) : NULL;

    if (s != NULL)
        sub_remove(ws, s);
    chan_release(ws, c);
}

/* The request is over (answered, failed, or its connection gone): the
 * channel goes too when nobody else wants it. */
static void pending_settled(fm_req *req)
{
    wchan *c = req->data != NULL ? pending_detach(req->data) : NULL;

    if (c != NULL)
        chan_release(req->svc, c);
}

/* Fails a waiting subscribe: the client learns it is not subscribed, and
 * it is not. Returns its channel, which the caller releases when done. */
static wchan *fail_pending(fm_req *req, fm_errcode code, const char *why)
{
    wsvc *ws = req->svc;
    wchan *c = pending_detach(req->data);
    wsub *s = req->conn != NULL ? sub_find(ws, req->conn, c) : NULL;

    fm_req_fail(req, code, "%s", why);
    if (s != NULL)
        sub_remove(ws, s);
    return c;
}

static void subscribe_expired(fm_req *req)
{
    char why[96];

    snprintf(why, sizeof(why), "Redis did not confirm the subscription within %lld ms",
             (long long)req->reqs->cfg->request_timeout_ms);
    chan_release(req->svc, fail_pending(req, FM_E_REDIS_UNAVAILABLE, why));
}

static void on_refused(const char *channel, size_t clen, const char *why, void *arg)
{
    wsvc *ws = arg;
    wchan *c = find_chan(ws, channel, clen);
    char msg[300];

    if (c == NULL)
        return;
    c->linked = 0;
    snprintf(msg, sizeof(msg), "Redis refused the subscription: %s", why);
    for (pending *p; (p = first_pending(c)) != NULL;)
        fail_pending(p->req, FM_E_REDIS_ERROR, msg);
    if (!fm_list_empty(&c->subs))
        fm_log_limited(FM_LOG_WARN, "wake channel %.*s: %s; its subscribers get no more wakes",
                       (int)clen, channel, msg);
    /* Subscribed before the ACL changed: told, as for a lost link, that
     * wakes may be missed, since this channel's will be from now on. */
    while (!fm_list_empty(&c->subs)) {
        wsub *s = sub_of(c->subs.next);

        if (s->wc->awaiting_up == 0)
            send_state(ws, s->conn, "down");
        sub_remove(ws, s);
    }
    chan_release(ws, c);
}

/* Reads the optional channel argument, defaulting to wake_channel. */
static int channel_arg(fm_req *req, const fm_request *msg, char *out, size_t *len)
{
    fm_proto_err err;
    int found;

    if (fm_request_string(msg, "channel", 0, FM_KEY_MAX, out, len, &found, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return -1;
    }
    if (!found) {
        const char *dflt = ((const wsvc *)req->svc)->core->cfg->wake_channel;

        *len = strlen(dflt);
        memcpy(out, dflt, *len + 1);
    }
    return 0;
}

static void op_subscribe(fm_req *req, const fm_request *msg)
{
    wsvc *ws = req->svc;
    char name[FM_KEY_MAX + 1], group[FM_NAME_MAX + 1];
    size_t len, glen = 0;
    fm_proto_err err;
    pending *p;
    wchan *c;
    wsub *s;
    int rc;

    if (channel_arg(req, msg, name, &len) != 0)
        return;
    if (fm_request_string(msg, "group", 0, FM_NAME_MAX, group, &glen, NULL, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if ((p = fm_req_data(req, sizeof(*p))) == NULL)
        return;
    fm_list_init(&p->in_chan);
    c = find_chan(ws, name, len);
    if (c == NULL) {
        c = calloc(1, sizeof(*c) + len + 1);
        if (c == NULL) {
            fm_req_fail(req, FM_E_INTERNAL, "out of memory");
            return;
        }
        memcpy(c->name, name, len + 1);
        c->len = len;
        fm_list_init(&c->subs);
        fm_list_init(&c->waiting);
        if (fm_map_insert(&ws->chans, &c->node, c->name, c->len) != 0) {
            free(c);
            fm_req_fail(req, FM_E_INTERNAL, "out of memory");
            return;
        }
    }
    s = sub_find(ws, req->conn, c);
    if (s == NULL && (s = sub_add(ws, req->conn, c)) == NULL) {
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
        chan_release(ws, c);
        return;
    }
    /* Subscribing again replaces the group. */
    memcpy(s->group, group, glen);
    s->glen = glen;
    group_use(c, group, glen);
    groups_prune(c);

    if (c->linked) {
        rc = fm_link_subscribed(ws->core->link, c->name, c->len);
    } else {
        rc = fm_link_subscribe(ws->core->link, ws->listener, c->name, c->len);
        c->linked = rc >= 0;
    }
    if (rc == 1) {
        answer_subscribe(req, c);
        return;
    }
    if (rc < 0) {
        fm_conn *conn = req->conn;

        fm_req_fail(req, FM_E_INTERNAL, "out of memory");     /* may free req */
        unsubscribe(ws, conn, c);
        return;
    }
    p->req = req;
    p->chan = c;
    fm_list_push_back(&c->waiting, &p->in_chan);
    req->on_settle = pending_settled;
    req->on_timer = subscribe_expired;
    fm_req_deadline(req, (uint64_t)ws->core->cfg->request_timeout_ms);
}

static void op_unsubscribe(fm_req *req, const fm_request *msg)
{
    wsvc *ws = req->svc;
    char name[FM_KEY_MAX + 1];
    size_t len;
    fm_conn *conn;
    wchan *c;

    if (channel_arg(req, msg, name, &len) != 0)
        return;
    if ((c = find_chan(ws, name, len)) != NULL)
        unsubscribe(ws, req->conn, c);
    conn = fm_req_ok_start(req);
    if (conn == NULL)
        return;
    fm_reply_put_str(conn, "channel", name, len);
    fm_req_ok_finish(req);
}

static void wake_conn_closed(void *state, fm_conn *conn)
{
    wsvc *ws = state;
    wconn *wc = conn_subs(ws, conn);

    if (wc == NULL)
        return;
    while (!fm_list_empty(&wc->subs)) {
        wsub *s = fm_list_entry(wc->subs.next, wsub, in_conn);
        wchan *c = s->chan;

        sub_remove(ws, s);
        chan_release(ws, c);
    }
    free(wc);
    conn->svc[ws->slot] = NULL;
}

/* ---- signals ---- */

static void signal_done(fm_req *req, redisReply *reply)
{
    fm_req_ok_int(req, "receivers", reply->integer);
}

static void signal_many_done(fm_req *req, redisReply *reply)
{
    fm_req_ok_int(req, "signaled", reply->integer);
}

static void op_signal(fm_req *req, const fm_request *msg)
{
    char id[FM_KEY_MAX + 1], ch[FM_KEY_MAX + 1];
    size_t idlen, chlen;
    fm_proto_err err;
    fm_buf payload;

    if (fm_request_string(msg, "execution_id", 1, FM_KEY_MAX, id, &idlen, NULL, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (channel_arg(req, msg, ch, &chlen) != 0)
        return;
    fm_buf_init(&payload);
    put_payload(&payload, id, idlen, now_ms());
    if (payload.oom)
        fm_req_fail(req, FM_E_INTERNAL, "out of memory");
    else
        fm_req_command(req, 3, (const char *[]){"PUBLISH", ch, payload.data},
                       (size_t[]){7, chlen, payload.len}, signal_done);
    fm_buf_free(&payload);
}

static void op_signal_many(fm_req *req, const fm_request *msg)
{
    wsvc *ws = req->svc;
    char ch[FM_KEY_MAX + 1], id[FM_KEY_MAX + 1];
    size_t chlen, count, idlen, i, off;
    fm_json_val arr, name, v;
    fm_json_iter it;
    fm_proto_err err;
    const char **argv;
    size_t *lens, *ends;
    fm_buf payloads;
    int64_t ts = now_ms();

    if (fm_request_string_array(msg, "execution_ids", (size_t)ws->core->cfg->max_batch,
                                FM_KEY_MAX, &arr, &count, &err) != 0) {
        fm_req_fail(req, err.code, "%s", err.msg);
        return;
    }
    if (channel_arg(req, msg, ch, &chlen) != 0)
        return;
    if (count == 0) {
        fm_req_ok_int(req, "signaled", 0);
        return;
    }
    argv = malloc((count + 1) * sizeof(*argv));
    lens = malloc((count + 1) * sizeof(*lens));
    ends = malloc(count * sizeof(*ends));
    fm_buf_init(&payloads);
    if (argv == NULL || lens == NULL || ends == NULL)
        goto oom;
    fm_json_iter_init(&it, &arr);
    for (i = 0; fm_json_iter_next(&it, &name, &v); i++) {
        fm_request_check_string(&v, "execution_ids", FM_KEY_MAX, id, &idlen, &err);
        put_payload(&payloads, id, idlen, ts);
        ends[i] = payloads.len;
    }
    if (payloads.oom)
        goto oom;
    /* Pointers only once the buffer has stopped moving. */
    argv[0] = ch;
    lens[0] = chlen;
    for (i = 0, off = 0; i < count; off = ends[i++]) {
        argv[i + 1] = payloads.data + off;
        lens[i + 1] = ends[i] - off;
    }
    fm_req_script(req, &ws->signal_many, 0, (int)count + 1, argv, lens, signal_many_done);
    goto out;
oom:
    fm_req_fail(req, FM_E_INTERNAL, "out of memory");
out:
    free(argv);
    free(lens);
    free(ends);
    fm_buf_free(&payloads);
}

/* ---- service ---- */

static void wake_free(void *state)
{
    wsvc *ws = state;

    for (fm_map_node *n; (n = fm_map_first(&ws->chans)) != NULL;) {
        wchan *c = fm_map_entry(n, wchan, node);

        fm_map_remove(&ws->chans, n);
        while (!fm_list_empty(&c->subs))
            sub_remove(ws, sub_of(c->subs.next));
        groups_prune(c);
        free(c);
    }
    fm_buf_free(&ws->frame);
    free(ws);
}

static void *wake_create(fm_core *core, int slot)
{
    wsvc *ws = calloc(1, sizeof(*ws));

    if (ws == NULL)
        return NULL;
    ws->core = core;
    ws->slot = slot;
    fm_buf_init(&ws->frame);
    ws->signal_many = (fm_script){.name = "signal_many", .body = fm_lua_signal_many};
    ws->listener = fm_link_listen(core->link, &(fm_link_listener){
        .message = on_message, .subscribed = on_subscribed, .refused = on_refused,
        .down = on_down, .arg = ws});
    if (ws->listener < 0 || fm_link_register_script(core->link, &ws->signal_many) != 0) {
        wake_free(ws);
        return NULL;
    }
    return ws;
}

/* Counted when asked, not kept up: stats is rare, subscriptions are not. */
static void wake_put_stats(const void *state, fm_conn *conn)
{
    const wsvc *ws = state;
    size_t chans = 0, subs = 0, groups = 0;

    for (fm_map_node *n = fm_map_first(&ws->chans); n != NULL; n = fm_map_after(&ws->chans, n)) {
        const wchan *c = fm_map_entry(n, wchan, node);
        fm_list *s;

        chans += !fm_list_empty(&c->subs);
        fm_list_each(s, &c->subs)
            subs++;
        for (const wgroup *g = c->groups; g != NULL; g = g->next)
            groups++;
    }
    fm_reply_put_int(conn, "wake_channels", (int64_t)chans);
    fm_reply_put_int(conn, "wake_subscribers", (int64_t)subs);
    fm_reply_put_int(conn, "wake_groups", (int64_t)groups);
}

static const fm_op wake_ops[] = {
    {"wake.signal", op_signal},
    {"wake.signal_many", op_signal_many},
    {"wake.subscribe", op_subscribe},
    {"wake.unsubscribe", op_unsubscribe},
};

const fm_service fm_wake_service = {
    .name = "wake",
    .ops = wake_ops,
    .nops = sizeof(wake_ops) / sizeof(wake_ops[0]),
    .create = wake_create,
    .conn_closed = wake_conn_closed,
    .put_stats = wake_put_stats,
    .free = wake_free,
};
