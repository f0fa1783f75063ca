/* scripts.h -- the Lua scripts fmredisd runs in Redis. Their text is part
 * of what lands in Redis (docs/PROTOCOL.md quotes them), and the benchmark
 * runs the very same text on its direct path. */
#ifndef FM_SCRIPTS_H
#define FM_SCRIPTS_H

/* KEYS: lock, fence counter. ARGV: lock value (token.h), ttl. The fence,
 * or nil; an error (and no lock) when the counter cannot be incremented. */
extern const char fm_lua_acquire[];
/* Release and extend take the token, and find it in a lock value of
 * either lock_value_format. */
/* KEYS: lock. ARGV: token, release channel. 1 released (and the key
 * published), 0 no lock, -1 held under another token. */
extern const char fm_lua_release[];
/* KEYS: lock. ARGV: token, ttl. 1 extended, 0 not held. */
extern const char fm_lua_extend[];
/* ARGV: channel, payloads... Publishes each; returns how many. */
extern const char fm_lua_signal_many[];
/* ARGV: channel. 1 when this user may subscribe to it (or the server
 * cannot tell), 0 when its ACL forbids it. */
extern const char fm_lua_sub_probe[];
/* ARGV: a cache key. 1 when this user may run PTTL on it, and MULTI and
 * EXEC (the near cache's writes), 0 not. */
extern const char fm_lua_track_probe[];
/* KEYS: a cache key. Its value (or nil) and its PTTL. */
extern const char fm_lua_cache_read[];
/* ARGV: cache keys (not declared: tracks nothing). Their PTTLs. */
extern const char fm_lua_cache_ttls[];

#endif
