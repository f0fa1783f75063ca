// The @flowmonkey/redis README's "Key Prefixes" snippet, with the import
// and the connection object changed as in readme-program.js. Key prefixes
// are fmredisd's configuration: against a daemon configured with them the
// managers work; against another, each operation rejects with
// KeyPrefixError. Prints one line per manager: "ok" or the error.

import { RedisLockManager, RedisWakeSignaler, RedisExecutionCache } from 'fmredis';   // was '@flowmonkey/redis'
import { createClient } from 'fmredis';

const redis = createClient();   // was: new Redis(process.env.REDIS_URL)

const lockManager = new RedisLockManager(redis, {
  keyPrefix: 'myapp:fm:lock:',
});

const signaler = new RedisWakeSignaler(redis, {
  channel: 'myapp:fm:wake',
});

const cache = new RedisExecutionCache(redis, {
  keyPrefix: 'myapp:fm:exec:',
});

const report = (what) => (err) => console.log(`${what}: ${err.code}: ${err.message}`);

await lockManager.acquire('prefixed', 60000).then((token) => console.log(`lock: ok ${token}`), report('lock'));
await cache.set({ id: 'prefixed' }).then(() => console.log('cache: ok'), report('cache'));
let woke;
const wake = new Promise((resolve) => { woke = resolve; });
await signaler.subscribe(async (id) => woke(id));
await signaler.signal('prefixed');
console.log(`wake: ok ${await wake}`);
await signaler.unsubscribe();
await redis.quit();
