/* test_link.c -- the Redis link as a client sees it: the daemon starts and
 * serves without Redis, connects when Redis appears, re-sends scripts that
 * Redis forgot, and releases a lock Redis granted after the acquire was
 * already answered. Every test starts its own redis-server and daemon in
 * its body: they belong to the test's process and die with it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "fm_tests.h"
#include "fmredis.h"
#include "harness.h"
#include "wire.h"

typedef struct servers {
    fmt_redis redis;
    fmt_daemon daemon;
} servers;

static int ping_says_up(void *arg)
{
    int up = -1;

    return fm_ping(arg, 1, &up) == FM_OK && up == 1;
}

/* Reads the next pub/sub message on a subscribed hiredis connection. */
static redisReply *next_message(redisContext *sub)
{
    redisReply *msg = NULL;

    ck_assert_int_eq(redisGetReply(sub, (void **)&msg), REDIS_OK);
    ck_assert_int_eq(msg->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(msg->elements, 3);
    return msg;
}

START_TEST(test_daemon_without_redis_serves_and_connects_when_redis_appears)
{
    servers s;
    fm_client *c;
    int up = -1;

    wire_pair_start(&s.redis, &s.daemon, NULL, NULL);
    fmt_redis_kill(&s.redis);
    c = fmt_client(&s.daemon);
    ck_assert_int_eq(fm_ping(c, 1, &up), FM_OK);
    ck_assert_int_eq(up, 0);
    ck_assert_int_eq(fmt_redis_restart(&s.redis), 0);
    /* Reconnection waits at most reconnect_max_ms (2 s) between attempts. */
    ck_assert_msg(fmt_wait_until(ping_says_up, c, 4000), "the daemon did not reconnect");
    ck_assert_int_eq(fm_cache_set(c, "{\"id\":\"after\"}", 14, 1000), FM_OK);
    fm_client_free(c);
    wire_pair_stop(&s.redis, &s.daemon);
}
END_TEST

START_TEST(test_scripts_flushed_from_redis_are_sent_again)
{
    servers s;
    redisContext *r;
    fm_client *c;
    fm_lock lock;
    int released = 0;

    wire_pair_start(&s.redis, &s.daemon, NULL, NULL);
    r = fmt_redis_connect(&s.redis);
    freeReplyObject(fmt_redis_cmd(r, "SCRIPT FLUSH"));
    c = fmt_client(&s.daemon);
    ck_assert_int_eq(fm_lock_acquire(c, "flushed", NULL, &lock), FM_OK);
    ck_assert(lock.acquired);
    ck_assert_int_eq(fm_lock_release(c, "flushed", lock.token, &released, NULL), FM_OK);
    ck_assert(released);
    fm_client_free(c);
    redisFree(r);
    wire_pair_stop(&s.redis, &s.daemon);
}
END_TEST

START_TEST(test_acquire_answered_before_redis_took_the_lock_is_released)
{
    static const char *const args[] = {"--request_timeout_ms", "300", NULL};
    fm_lock_opts opts = {.max_retries = FM_LOCK_NO_RETRY};
    servers s;
    redisContext *sub, *r;
    redisReply *msg, *exists;
    fm_client *c;
    fm_lock lock;

    wire_pair_start(&s.redis, &s.daemon, NULL, args);
    sub = fmt_redis_connect(&s.redis);
    freeReplyObject(fmt_redis_cmd(sub, "SUBSCRIBE fm:lock:released"));
    c = fmt_client(&s.daemon);

    /* Redis takes the command but answers only after the deadline. */
    ck_assert_int_eq(kill(s.redis.pid, SIGSTOP), 0);
    ck_assert_int_eq(fm_lock_acquire(c, "orphan", &opts, &lock), FM_ERR);
    ck_assert_str_eq(fm_client_errcode(c), "timeout");
    ck_assert_int_eq(kill(s.redis.pid, SIGCONT), 0);

    /* The late grant is undone at once, token-checked, and published. */
    msg = next_message(sub);
    ck_assert_str_eq(msg->element[2]->str, "fm:lock:orphan");
    freeReplyObject(msg);
    r = fmt_redis_connect(&s.redis);
    exists = fmt_redis_cmd(r, "EXISTS fm:lock:orphan");
    ck_assert_int_eq(exists->integer, 0);
    freeReplyObject(exists);
    /* And the fence shows it had been taken. */
    ck_assert_int_eq(fm_lock_acquire(c, "orphan", NULL, &lock), FM_OK);
    ck_assert_int_eq(lock.fence, 2);
    fm_client_free(c);
    redisFree(sub);
    redisFree(r);
    wire_pair_stop(&s.redis, &s.daemon);
}
END_TEST

Suite *fm_suite_link(void)
{
    Suite *s = suite_create("link");
    TCase *tc = fmt_tcase(s, "link", NULL, NULL, 30);

    tcase_add_test(tc, test_daemon_without_redis_serves_and_connects_when_redis_appears);
    tcase_add_test(tc, test_scripts_flushed_from_redis_are_sent_again);
    tcase_add_test(tc, test_acquire_answered_before_redis_took_the_lock_is_released);
    return s;
}
