// The connection going away: in-flight requests reject, held locks count
// as lost, the client reconnects by itself and subscribes again; and the
// daemon's own link to Redis going away.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  ConnectionLostError,
  ExecutionCache,
  LockLostError,
  LockManager,
  WakeSignaler,
  createClient,
} from '../index.js';
import { startServers, until } from '../test-support/helper.js';

let servers;
before(async () => {
  servers = await startServers();
});
after(async () => {
  await servers.stop();
});

describe('daemon restarts', () => {
  it('rejects in-flight requests and lost locks, then works again and resumes the subscription', async () => {
    const client = createClient({ socket: servers.socket, reconnectMaxDelay: 200 });
    const locks = new LockManager(client, { retryDelay: 100, maxRetries: 100 });
    const cache = new ExecutionCache(client);
    const signaler = new WakeSignaler(client);
    const got = [];
    const events = [];
    client.on('disconnect', () => events.push('disconnect'));
    client.on('connect', () => events.push('connect'));
    signaler.on('resubscribed', () => events.push('resubscribed'));
    await signaler.subscribe(async (id) => {
      got.push(id);
    });
    assert.deepEqual(events, ['connect']);
    events.length = 0;

    // A lock held by someone outside, so the acquire waits in the daemon.
    await servers.redisCli('SET', 'fm:lock:r-held', 'outsider', 'PX', '60000');
    const waiting = assert.rejects(locks.acquire('r-held'),
      (err) => err instanceof ConnectionLostError && err.code === 'connection_lost');
    let signal;
    const holding = assert.rejects(locks.withLock('r-mine', async (s) => {
      signal = s;
      await new Promise((resolve) => s.addEventListener('abort', resolve, { once: true }));
    }, 30000), (err) => err instanceof LockLostError && err.reason === 'connection_lost');
    // Held once fn runs: the key in Redis alone does not say that the grant
    // reached the client before the kill.
    await until(() => signal !== undefined, 'withLock to run fn under its lock');
    assert.equal(await servers.redisCli('EXISTS', 'fm:lock:r-mine'), '1');

    // As a crash would: no drain, every connection cut.
    await servers.stopDaemon('SIGKILL');
    await waiting;
    await holding;
    assert.equal(signal.aborted, true);

    // A request made while the daemon is gone waits for it.
    const queued = cache.set({ id: 'r-queued' });
    await servers.startDaemon();
    await queued;
    assert.equal(await servers.redisCli('EXISTS', 'fm:exec:r-queued'), '1');
    await until(() => events.includes('resubscribed'), 'the subscription to be restored');
    assert.deepEqual(events, ['disconnect', 'connect', 'resubscribed']);
    assert.equal(client.state, 'ready');

    await servers.redisCli('PUBLISH', 'fm:wake', 'after-restart');
    await until(() => got.includes('after-restart'), 'a wake after the restart');
    const token = await locks.acquire('r-new', 5000);
    assert.equal(await servers.redisCli('GET', 'fm:lock:r-new'), token);
    await locks.release('r-new', token);
    await servers.redisCli('DEL', 'fm:lock:r-held');
    await client.close();
  });

  it('comes back after a drained shutdown too', async () => {
    const unhandled = [];
    const onUnhandled = (err) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    const client = createClient({ socket: servers.socket, reconnectMaxDelay: 200 });
    const errors = [];
    const signaler = new WakeSignaler(client, { channel: 'drain', onError: (err) => errors.push(err.message) });
    const got = [];
    await signaler.subscribe((id) => {
      got.push(id);
    }, { group: 'g' });
    // A listener that throws is reported to onError; the next one still
    // runs. Listening before the restart: the resubscription may come
    // before restartDaemon() returns.
    signaler.on('resubscribed', () => {
      throw new Error('resubscribed listener');
    });
    let resubscribed = false;
    signaler.on('resubscribed', () => {
      resubscribed = true;
    });
    await servers.restartDaemon('SIGTERM');
    await until(() => resubscribed, "the second 'resubscribed' listener");
    process.removeListener('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, []);
    assert.deepEqual(errors, ['resubscribed listener']);
    await servers.redisCli('PUBLISH', 'drain', 'd1');
    await until(() => got.includes('d1'), 'the wake');
    // The group came back with the subscription.
    const stats = await client.stats();
    assert.equal(stats.wake_groups, 1);
    await client.close();
  });
});

describe('Redis restarts', () => {
  it('tells subscribers the daemon\'s link went down and came back', async () => {
    const signaler = new WakeSignaler({ socket: servers.socket });
    const states = [];
    const got = [];
    const errors = [];
    signaler.on('error', (err) => errors.push(err.message));
    // One that throws, read inside the client's read of the socket: the
    // next listener and the frames behind it are still served.
    signaler.on('redis', (state) => {
      throw new Error(`redis listener: ${state}`);
    });
    signaler.on('redis', (state) => states.push(state));
    await signaler.subscribe((id) => {
      got.push(id);
    });
    await servers.stopRedis();
    await until(() => states.includes('down'), 'redis down');
    await servers.startRedis();
    await until(() => states.includes('up'), 'redis up', 20000);
    assert.deepEqual(states, ['down', 'up']);
    await servers.redisCli('PUBLISH', 'fm:wake', 'after-redis');
    await until(() => got.includes('after-redis'), 'a wake after Redis came back');
    assert.deepEqual(errors, ['redis listener: down', 'redis listener: up']);
    await signaler.close();
  });
});
