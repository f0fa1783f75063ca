/* redis_admin.c -- what the bench itself asks of Redis, apart from any
 * measured path: the script check, pre-populating executions, INFO
 * commandstats and PUBSUB NUMSUB. */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "bench.h"
#include "scripts.h"   /* daemon/: the daemon's own script texts */

static redisContext *admin_connect(const bench_env *env, char *err, size_t errlen)
{
    struct timeval tv = {10, 0};
    redisContext *rc = redisConnectUnixWithTimeout(env->redis_sock, tv);

    if (rc == NULL || rc->err || redisSetTimeout(rc, tv) != REDIS_OK) {
        bench_fail(err, errlen, "connecting to Redis at %s: %s", env->redis_sock,
                   rc ? rc->errstr : "out of memory");
        if (rc != NULL)
            redisFree(rc);
        return NULL;
    }
    return rc;
}

/* A reply of the expected type, or NULL with err set (and nothing to free). */
static redisReply *expect(redisContext *rc, redisReply *r, int type, const char *what,
                          char *err, size_t errlen)
{
    if (r == NULL) {
        bench_fail(err, errlen, "%s: %s", what, rc->errstr);
        return NULL;
    }
    if (r->type != type) {
        bench_fail(err, errlen, "%s: %s", what,
                   r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* ---- the scripts ---- */

/* Whether Redis's script cache holds a script with this SHA1: after the
 * daemon loaded its scripts, only an identical copy's SHA1 is there. */
static int script_check(redisContext *rc, const char *name, const char *body, char sha[41],
                        char *err, size_t errlen)
{
    redisReply *r;
    int ok;

    /* The SHA1 as Redis computes it, without caching the body. */
    r = expect(rc, redisCommand(rc, "EVAL %s 0 %s", "return redis.sha1hex(ARGV[1])", body),
               REDIS_REPLY_STRING, "redis.sha1hex", err, errlen);
    if (r == NULL)
        return -1;
    ok = r->len == 40;
    if (ok)
        memcpy(sha, r->str, 41);
    freeReplyObject(r);
    if (!ok)
        return bench_fail(err, errlen, "redis.sha1hex: not a SHA1");
    r = expect(rc, redisCommand(rc, "SCRIPT EXISTS %s", sha), REDIS_REPLY_ARRAY,
               "SCRIPT EXISTS", err, errlen);
    if (r == NULL)
        return -1;
    ok = r->elements == 1 && r->element[0]->type == REDIS_REPLY_INTEGER &&
         r->element[0]->integer == 1;
    freeReplyObject(r);
    if (!ok)
        return bench_fail(err, errlen, "the %s script of daemon/scripts.c is not what the "
                          "daemon under test loaded: its SHA1 %s is not in Redis's script "
                          "cache (a stale daemon binary?)", name, sha);
    /* Loaded again, as the daemon does: it must come back the same. */
    r = expect(rc, redisCommand(rc, "SCRIPT LOAD %s", body), REDIS_REPLY_STRING,
               "SCRIPT LOAD", err, errlen);
    if (r == NULL)
        return -1;
    ok = strcmp(r->str, sha) == 0;
    freeReplyObject(r);
    return ok ? 0 : bench_fail(err, errlen, "SCRIPT LOAD of %s: another SHA1", name);
}

int bench_redis_check_scripts(bench_env *env, char *err, size_t errlen)
{
    char extend[41], signal_many[41];
    redisContext *rc = admin_connect(env, err, errlen);
    int bad;

    if (rc == NULL)
        return -1;
    bad = script_check(rc, "acquire", fm_lua_acquire, env->sha_acquire, err, errlen) ||
          script_check(rc, "release", fm_lua_release, env->sha_release, err, errlen) ||
          script_check(rc, "extend", fm_lua_extend, extend, err, errlen) ||
          script_check(rc, "signal_many", fm_lua_signal_many, signal_many, err, errlen);
    redisFree(rc);
    return bad ? -1 : 0;
}

/* ---- data and counters ---- */

/* Pipelined SET <cache key> <json> PX <ttl>, with a TTL that outlives the
 * bench. */
int bench_populate(const bench_env *env, const bench_batch *b, char *err, size_t errlen)
{
    redisContext *rc = admin_connect(env, err, errlen);
    int bad = 0;

    if (rc == NULL)
        return -1;
    for (size_t i = 0; i < b->n && !bad; i++)
        bad = redisAppendCommand(rc, "SET %s%s %b PX %d", BENCH_CACHE_PREFIX, b->ids[i],
                                 b->json[i], b->len[i], BENCH_CACHE_TTL_MS * 100) != REDIS_OK;
    for (size_t i = 0; i < b->n && !bad; i++) {
        void *r = NULL;

        bad = redisGetReply(rc, &r) != REDIS_OK ||
              expect(rc, r, REDIS_REPLY_STATUS, "SET", err, errlen) == NULL;
        if (!bad)
            freeReplyObject(r);
    }
    if (bad && rc->err)
        bench_fail(err, errlen, "SET: %s", rc->errstr);
    redisFree(rc);
    return bad ? -1 : 0;
}

/* calls=N of cmdstat_<cmd> in INFO commandstats (0 when never called). */
int bench_redis_calls(const bench_env *env, const char *cmd, long long *calls, char *err,
                      size_t errlen)
{
    redisContext *rc = admin_connect(env, err, errlen);
    redisReply *r;
    char needle[64];
    const char *p;

    if (rc == NULL)
        return -1;
    r = expect(rc, redisCommand(rc, "INFO commandstats"), REDIS_REPLY_STRING,
               "INFO commandstats", err, errlen);
    if (r != NULL) {
        snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", cmd);
        p = strstr(r->str, needle);
        *calls = p ? strtoll(p + strlen(needle), NULL, 10) : 0;
        freeReplyObject(r);
    }
    redisFree(rc);
    return r ? 0 : -1;
}

/* PUBSUB NUMSUB <channel>: how many connections subscribe to it. */
int bench_redis_numsub(const bench_env *env, const char *channel, long long *n, char *err,
                       size_t errlen)
{
    redisContext *rc = admin_connect(env, err, errlen);
    redisReply *r;
    int ok;

    if (rc == NULL)
        return -1;
    r = expect(rc, redisCommand(rc, "PUBSUB NUMSUB %s", channel), REDIS_REPLY_ARRAY,
               "PUBSUB NUMSUB", err, errlen);
    ok = r != NULL && r->elements == 2 && r->element[1]->type == REDIS_REPLY_INTEGER;
    if (ok)
        *n = r->element[1]->integer;
    else if (r != NULL)
        bench_fail(err, errlen, "PUBSUB NUMSUB: unexpected reply");
    if (r != NULL)
        freeReplyObject(r);
    redisFree(rc);
    return ok ? 0 : -1;
}

int bench_redis_await_subscribers(const bench_env *env, long long n, int timeout_ms,
                                  char *err, size_t errlen)
{
    uint64_t end = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
    long long subs;

    for (;;) {
        if (bench_redis_numsub(env, BENCH_RELEASE_CHANNEL, &subs, err, errlen) != 0)
            return -1;
        if (subs == n)
            return 0;
        if (bench_now_ns() > end)
            return bench_fail(err, errlen, "Redis counts %lld subscribers of "
                              BENCH_RELEASE_CHANNEL " after %d ms, not %lld", subs,
                              timeout_ms, n);
        bench_sleep_ns(5000000);
    }
}
