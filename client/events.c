/* events.c -- libfmredis's event queue: the events read while a call
 * waited, or by the event calls, in arrival order and never dropped, and
 * fm_event_wait() and fm_event_read(), which hand them out.
 *
 * Between calls the event calls are also where the pending releases of late
 * acquires go out (fm_client_fd() in fmredis.h says why a poll loop must
 * call them). */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "fmredis_int.h"

/* ------------------------------------------------------------------------ */
/* The queue                                                                */

int fm__queue_event(fm_client *c, const fm_json_val *root)
{
    ev_node *n = calloc(1, sizeof(*n));
    fm_event *ev;
    fm_json_val v;

    if (n == NULL)
        return -1;
    ev = &n->ev;
    ev->type = FM_EVENT_OTHER;
    ev->json = fm__span_dup(root->p, root->len);
    ev->json_len = root->len;
    if (ev->json == NULL || fm__opt_string(root, "event", &ev->name) != 0)
        goto oom;
    if (ev->name != NULL && strcmp(ev->name, "wake") == 0) {
        if (fm__opt_string(root, "channel", &ev->channel) != 0 ||
            fm__opt_string(root, "execution_id", &ev->execution_id) != 0)
            goto oom;
        if (fm__member(root, "timestamp", &v) && v.type == FM_JSON_NUMBER &&
            fm_json_int64(&v, INT64_MIN, INT64_MAX, &ev->timestamp) == 0)
            ev->has_timestamp = 1;
        if (ev->execution_id != NULL)
            ev->type = FM_EVENT_WAKE;
    } else if (ev->name != NULL && strcmp(ev->name, "redis") == 0) {
        if (fm__member(root, "state", &v) && v.type == FM_JSON_STRING) {
            if (fm_json_string_eq(&v, "up", 2)) {
                ev->type = FM_EVENT_REDIS;
                ev->redis_up = 1;
            } else if (fm_json_string_eq(&v, "down", 4)) {
                ev->type = FM_EVENT_REDIS;
                ev->redis_up = 0;
            }
        }
    } else if (ev->name != NULL && strcmp(ev->name, "lock.lost") == 0) {
        if (fm__opt_string(root, "key", &ev->key) != 0)
            goto oom;
        if (ev->key != NULL)
            ev->type = FM_EVENT_LOCK_LOST;
    }
    if (c->ev_tail != NULL)
        c->ev_tail->next = n;
    else
        c->ev_head = n;
    c->ev_tail = n;
    c->ev_count++;
    return 0;
oom:
    fm_event_clear(ev);
    free(n);
    return -1;
}

static int pop_event(fm_client *c, fm_event *ev)
{
    ev_node *n = c->ev_head;

    if (n == NULL)
        return 0;
    c->ev_head = n->next;
    if (c->ev_head == NULL)
        c->ev_tail = NULL;
    c->ev_count--;
    *ev = n->ev;
    free(n);
    return 1;
}

void fm__free_events(fm_client *c)
{
    while (c->ev_head != NULL) {
        ev_node *n = c->ev_head;

        c->ev_head = n->next;
        fm_event_clear(&n->ev);
        free(n);
    }
    c->ev_tail = NULL;
    c->ev_count = 0;
}

void fm_event_clear(fm_event *ev)
{
    if (ev == NULL)
        return;
    free(ev->name);
    free(ev->channel);
    free(ev->execution_id);
    free(ev->key);
    free(ev->json);
    memset(ev, 0, sizeof(*ev));
}

size_t fm_client_has_events(const fm_client *c)
{
    return c->ev_count;
}

/* ------------------------------------------------------------------------ */
/* Reading events                                                           */

/* Hands out the oldest queued event (FM_OK), or fails once the queue is
 * empty and the connection is gone (FM_ERR); FM_NONE when neither. */
static int take_event(fm_client *c, fm_event *ev)
{
    if (pop_event(c, ev)) {
        fm__clear_err(c);
        return FM_OK;
    }
    if (c->fd < 0) {
        if (c->err == FM_ERR_NONE)
            fm__fail_not_connected(c);
        return FM_ERR;
    }
    return FM_NONE;
}

/* Reads once for events. At EOF the frames already buffered are queued
 * before the close is reported. Returns what fm__read_once() returned. */
static ssize_t read_events(fm_client *c)
{
    const want none = { .kind = WANT_EVENTS };
    ssize_t n = fm__read_once(c);

    if (n == 0) {
        fm__dispatch(c, &none);
        if (c->fd >= 0)
            fm__fail_eof(c);
    }
    return n;
}

/* Sends what it can of the pending releases between calls. A send error
 * means the connection is going: like a failed request, read what the
 * daemon said first, then close. */
static void flush_between_calls(fm_client *c)
{
    const want none = { .kind = WANT_EVENTS };

    if (c->fd >= 0 && fm__flush_pending(c) != 0)
        fm__fail_send(c, &none);
}

int fm_event_wait(fm_client *c, fm_event *ev, int timeout_ms)
{
    const want none = { .kind = WANT_EVENTS };
    int64_t deadline = fm__deadline_in(timeout_ms < 0 ? -1 : timeout_ms);

    fm__clear_err(c);
    if (ev == NULL)
        return fm__fail(c, FM_ERR_ARG, "ev must not be NULL");
    memset(ev, 0, sizeof(*ev));
    for (;;) {
        struct pollfd pfd;
        int r = take_event(c, ev);

        if (r != FM_NONE)
            return r;
        if (fm__dispatch(c, &none) < 0 || c->ev_count > 0)
            continue;
        flush_between_calls(c);
        if (c->fd < 0)
            continue;
        /* A timeout of 0 still takes what is readable now. Pending
         * releases also wait for the socket to take them. */
        pfd.fd = c->fd;
        pfd.events = POLLIN | (c->pending.len > 0 ? POLLOUT : 0);
        r = poll(&pfd, 1, fm__poll_timeout(deadline));
        if (r < 0) {
            if (errno == EINTR)
                return fm__fail(c, FM_ERR_INTERRUPTED,
                                "interrupted by a signal");
            fm__fail_close(c, FM_ERR_IO, "poll: %s", strerror(errno));
            continue;
        }
        if (r == 0) {
            if (fm__poll_timeout(deadline) == 0)
                return fm__fail(c, FM_ERR_TIMEOUT, "no event within %d ms",
                                timeout_ms);
            continue;
        }
        if (pfd.revents != POLLOUT)     /* POLLOUT alone: nothing to read */
            read_events(c);
    }
}

int fm_event_read(fm_client *c, fm_event *ev)
{
    const want none = { .kind = WANT_EVENTS };

    fm__clear_err(c);
    if (ev == NULL)
        return fm__fail(c, FM_ERR_ARG, "ev must not be NULL");
    memset(ev, 0, sizeof(*ev));
    flush_between_calls(c);
    /* Bounded, so a flood of events cannot keep the caller here. */
    for (int i = 0; i < 64 && c->fd >= 0 && c->ev_count == 0; i++) {
        if (fm__dispatch(c, &none) < 0 || c->ev_count > 0)
            break;
        if (read_events(c) <= 0)
            break;      /* nothing more now, EOF or error */
    }
    if (c->fd >= 0 && c->ev_count == 0)
        fm__dispatch(c, &none);
    return take_event(c, ev);
}
