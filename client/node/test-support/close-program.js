// Uses every part of the client, closes everything, and then must end by
// itself: no process.exit, so a handle left open would keep it running.
// Prints the resources still active after close() (stdio aside).

import {
  ExecutionCache,
  LockManager,
  WakeSignaler,
  createClient,
} from 'fmredis';

console.log('start');
const baseline = process.getActiveResourcesInfo();

const client = createClient({ clientName: 'close-test' });
const locks = new LockManager(client);
const cache = new ExecutionCache(client, { bigNumbers: true });
const signaler = new WakeSignaler(client);

let woke;
const wake = new Promise((resolve) => {
  woke = resolve;
});
await signaler.subscribe(async (id) => woke(id));
await signaler.signal('close-1');
await wake;
await locks.withLock('close-lock', async () => {
  await cache.set({ id: 'close-exec', n: 2n ** 64n });
  await cache.get('close-exec');
}, 3000);
// A request that times out on the client: its late reply is still awaited.
await client.call('ping', { redis: true }, { timeout: 1 }).catch(() => {});

// Managers that own their clients, one of them never connected.
const own = new LockManager({ socket: process.env.FMREDISD_SOCKET });
await own.isLocked('close-lock');
const nowhere = new WakeSignaler({ socket: `${process.env.FMREDISD_SOCKET}.missing` });
const pending = nowhere.signal('x').catch((err) => err.code);

await client.close();
await own.close();
await nowhere.close();
console.log(`pending request: ${await pending}`);
const left = process.getActiveResourcesInfo();
for (const r of baseline) {
  const i = left.indexOf(r);
  if (i >= 0) left.splice(i, 1);
}
console.log(`left: ${JSON.stringify(left)}`);
