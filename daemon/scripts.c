/* scripts.c -- see scripts.h. Release and extend compare the token in the
 * same script as the change, never GET-then-DEL from the client side. */
#include "scripts.h"

/* A script that fails half-way keeps what it did: when the fence cannot be
 * counted (a counter someone overwrote, or one at its maximum), the lock
 * just set goes again, so an acquire answered with an error leaves none. */
const char fm_lua_acquire[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  local fence = redis.pcall('INCR', KEYS[2])\n"
    "  if type(fence) == 'table' and fence.err then\n"
    "    redis.call('DEL', KEYS[1])\n"
    "  end\n"
    "  return fence\n"
    "end\n"
    "return false\n";

/* Whether lock value v is held under token t: v is the token itself, or
 * (lock_value_format flowmonkey-json, and the @flowmonkey/redis code) JSON
 * whose "owner" is the token. Both forms are read whatever the format, so
 * the format can change on SIGHUP with locks held, and a value either side
 * wrote never makes the other's script fail: what does not decode is simply
 * not owned. Nothing longer than a token of 512 bytes in that JSON could be
 * owned, so a big value is not decoded at all: every release of the key
 * would stall Redis on it. */
#define OWNS                                                             \
    "local function owns(v, t)\n"                                       \
    "  if v == t then return true end\n"                                \
    "  if string.byte(v, 1) ~= 123 or #v > 4096 then return false end\n" \
    "  local ok, d = pcall(cjson.decode, v)\n"                          \
    "  return ok and type(d) == 'table' and d.owner == t\n"             \
    "end\n"

const char fm_lua_release[] =
    OWNS
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return 0 end\n"
    "if not owns(v, ARGV[1]) then return -1 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('PUBLISH', ARGV[2], KEYS[1])\n"
    "return 1\n";

const char fm_lua_extend[] =
    OWNS
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and owns(v, ARGV[1]) then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";

/* One round trip for a whole batch. */
const char fm_lua_signal_many[] =
    "for i = 2, #ARGV do redis.call('PUBLISH', ARGV[1], ARGV[i]) end\n"
    "return #ARGV - 1\n";

/* Whether this connection's user may SUBSCRIBE to ARGV[1], asked without
 * subscribing (redis.acl_check_cmd is Redis 7's; before it, 1: cannot
 * tell). See link_sub.c. */
const char fm_lua_sub_probe[] =
    "if redis.acl_check_cmd and not redis.acl_check_cmd('subscribe', ARGV[1]) then\n"
    "  return 0\n"
    "end\n"
    "return 1\n";

/* Whether this user may run PTTL on a cache key (ARGV[1]), as the near
 * cache's scripts do, and MULTI and EXEC, its writes' transaction
 * (link_track.c); 1 when the server cannot tell. */
const char fm_lua_track_probe[] =
    "if redis.acl_check_cmd and not (redis.acl_check_cmd('pttl', ARGV[1]) and\n"
    "    redis.acl_check_cmd('multi') and redis.acl_check_cmd('exec')) then\n"
    "  return 0\n"
    "end\n"
    "return 1\n";

/* The near cache's read of one key (cache_near.c): its value with its
 * time to live, so that a copy kept in the daemon expires no later than
 * the key. A key named in KEYS and read in a script is tracked (CLIENT
 * TRACKING) like a GET. PTTL is -1 for a key without one. */
const char fm_lua_cache_read[] =
    "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}\n";

/* The times to live of the keys in ARGV, after an MGET of them (tracked)
 * brought their values. Redis 7.0 remembers every key in KEYS again at
 * each read a script makes, so a script reading n declared keys costs n
 * squared: these are not declared, and this script tracks nothing. */
const char fm_lua_cache_ttls[] =
    "local r = {}\n"
    "for i = 1, #ARGV do r[i] = redis.call('PTTL', ARGV[i]) end\n"
    "return r\n";
