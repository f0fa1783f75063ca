/* scripts.c -- see scripts.h. Release and extend compare the token in the
 * same script as the change, never GET-then-DEL from the client side. */
#include "scripts.h"

const char fm_lua_acquire[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return redis.call('INCR', KEYS[2])\n"
    "end\n"
    "return false\n";

const char fm_lua_release[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return 0 end\n"
    "if v ~= ARGV[1] then return -1 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('PUBLISH', ARGV[2], KEYS[1])\n"
    "return 1\n";

const char fm_lua_extend[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";

/* One round trip for a whole batch. */
const char fm_lua_signal_many[] =
    "for i = 2, #ARGV do redis.call('PUBLISH', ARGV[1], ARGV[i]) end\n"
    "return #ARGV - 1\n";
