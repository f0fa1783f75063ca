/* lockcmd.c -- release and extend, for requests and for the daemon (see
 * lockcmd.h). */
#include <stdio.h>
#include <string.h>

#include "lockcmd.h"
#include "log.h"
#include "scripts.h"

/* The scripts' arguments: KEYS[1] the lock, ARGV[1] the token, ARGV[2] the
 * channel to publish on (release) or the TTL (extend). */
typedef struct args {
    const char *argv[3];
    size_t lens[3];
    char ttl[24];
} args;

static void release_args(const fm_lockcmd *lc, args *a, const char *rkey, size_t rlen,
                         const char *token, size_t toklen)
{
    const char *ch = lc->core->cfg->lock_release_channel;

    *a = (args){.argv = {rkey, token, ch}, .lens = {rlen, toklen, strlen(ch)}};
}

static void extend_args(args *a, const char *rkey, size_t rlen, const char *token,
                        size_t toklen, int64_t ttl)
{
    int n;

    *a = (args){.argv = {rkey, token, a->ttl}, .lens = {rlen, toklen, 0}};
    n = snprintf(a->ttl, sizeof(a->ttl), "%lld", (long long)ttl);
    a->lens[2] = (size_t)n;
}

int fm_lockcmd_init(fm_lockcmd *lc, fm_core *core)
{
    lc->core = core;
    lc->release = (fm_script){.name = "release", .body = fm_lua_release};
    lc->extend = (fm_script){.name = "extend", .body = fm_lua_extend};
    lc->releasing = 0;
    if (fm_link_register_script(core->link, &lc->release) != 0 ||
        fm_link_register_script(core->link, &lc->extend) != 0)
        return -1;
    return 0;
}

void fm_lockcmd_release_for(fm_lockcmd *lc, fm_req *req, const char *rkey, size_t rlen,
                            const char *token, size_t toklen, fm_req_reply_cb *on_reply)
{
    args a;

    release_args(lc, &a, rkey, rlen, token, toklen);
    fm_req_script(req, &lc->release, 1, 3, a.argv, a.lens, on_reply);
}

void fm_lockcmd_extend_for(fm_lockcmd *lc, fm_req *req, const char *rkey, size_t rlen,
                           const char *token, size_t toklen, int64_t ttl,
                           fm_req_reply_cb *on_reply)
{
    args a;

    extend_args(&a, rkey, rlen, token, toklen, ttl);
    fm_req_script(req, &lc->extend, 1, 3, a.argv, a.lens, on_reply);
}

static void on_released(fm_link_status status, redisReply *reply, void *arg)
{
    fm_lockcmd *lc = arg;

    lc->releasing--;
    if (status == FM_LINK_OK && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
        fm_log_debug("released a lock its holder can no longer release");
    else
        fm_log_debug("a lock its holder can no longer release was not released: it expires "
                     "with its TTL");
}

int fm_lockcmd_release(fm_lockcmd *lc, const char *rkey, size_t rlen, const char *token,
                       size_t toklen)
{
    args a;

    release_args(lc, &a, rkey, rlen, token, toklen);
    if (fm_reqs_own(&lc->core->reqs, &(fm_req_cmd){.script = &lc->release, .nkeys = 1,
                                                   .argc = 3, .argv = a.argv, .lens = a.lens},
                    on_released, lc) != 0)
        return -1;
    lc->releasing++;
    return 0;
}

int fm_lockcmd_extend(fm_lockcmd *lc, const char *rkey, size_t rlen, const char *token,
                      size_t toklen, int64_t ttl, fm_link_cb *cb, void *arg)
{
    args a;

    extend_args(&a, rkey, rlen, token, toklen, ttl);
    return fm_reqs_own(&lc->core->reqs, &(fm_req_cmd){.script = &lc->extend, .nkeys = 1,
                                                      .argc = 3, .argv = a.argv, .lens = a.lens},
                       cb, arg);
}
