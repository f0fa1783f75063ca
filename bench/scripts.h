/* scripts.h -- the Lua scripts the direct path runs with EVALSHA.
 *
 * These MUST be byte for byte the daemon's (acquire_lua, release_lua and
 * extend_lua in daemon/lock.c, signal_many_lua in daemon/wake.c), or the
 * direct path would not measure what the daemon does. The bench checks it
 * at every start: once the daemon has loaded its scripts, the SHA1 of each
 * copy here must already be in Redis's script cache (SCRIPT EXISTS), which
 * only an identical text can achieve. */
#ifndef FM_BENCH_SCRIPTS_H
#define FM_BENCH_SCRIPTS_H

static const char bench_acquire_lua[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return redis.call('INCR', KEYS[2])\n"
    "end\n"
    "return false\n";

static const char bench_release_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return 0 end\n"
    "if v ~= ARGV[1] then return -1 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('PUBLISH', ARGV[2], KEYS[1])\n"
    "return 1\n";

static const char bench_extend_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";

static const char bench_signal_many_lua[] =
    "for i = 2, #ARGV do redis.call('PUBLISH', ARGV[1], ARGV[i]) end\n"
    "return #ARGV - 1\n";

#endif
