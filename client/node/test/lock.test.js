// LockManager: every method, what it leaves in Redis, and withLock's
// release, refusal and loss.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  KeyPrefixError,
  LockLostError,
  LockManager,
  LockNotAcquiredError,
  RedisLockManager,
  createClient,
} from '../index.js';
import { startServers, until } from '../test-support/helper.js';

let servers;
let client;
let locks;
before(async () => {
  servers = await startServers();
  client = createClient({ socket: servers.socket });
  locks = new LockManager(client);
});
after(async () => {
  await client.close();
  await servers.stop();
});

const pttl = async (key) => Number(await servers.redisCli('PTTL', key));

describe('acquire, release, extend, isLocked', () => {
  it('acquire sets the lock key to the token with the ttl', async () => {
    const token = await locks.acquire('a1', 20000);
    assert.match(token, /^[0-9a-f]{32}$/);
    assert.equal(await servers.redisCli('GET', 'fm:lock:a1'), token);
    const left = await pttl('fm:lock:a1');
    assert.ok(left > 10000 && left <= 20000, `PTTL ${left}`);
    assert.equal(await locks.isLocked('a1'), true);
    assert.equal(await locks.release('a1', token), true);
    assert.equal(await servers.redisCli('EXISTS', 'fm:lock:a1'), '0');
    assert.equal(await locks.isLocked('a1'), false);
  });

  it('acquire without ttl uses defaultTTL, else the daemon default', async () => {
    const withDefault = new LockManager(client, { defaultTTL: 7000 });
    const t1 = await withDefault.acquire('a2');
    const left1 = await pttl('fm:lock:a2');
    assert.ok(left1 > 3000 && left1 <= 7000, `PTTL ${left1}`);
    await withDefault.release('a2', t1);
    const t2 = await locks.acquire('a2');
    const left2 = await pttl('fm:lock:a2');
    assert.ok(left2 > 20000 && left2 <= 30000, `PTTL ${left2} (lock_default_ttl_ms 30000)`);
    await locks.release('a2', t2);
  });

  it('acquire resolves null once retryDelay × maxRetries ran out', async () => {
    const token = await locks.acquire('a3', 30000);
    const impatient = new LockManager(client, { retryDelay: 100, maxRetries: 3 });
    const t0 = Date.now();
    assert.equal(await impatient.acquire('a3'), null);
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 5000, `waited ${took} ms for 3 retries of 100 ms`);
    assert.equal(await servers.redisCli('GET', 'fm:lock:a3'), token);
    await locks.release('a3', token);
  });

  it('release is false for a wrong token or a free lock, and leaves the holder alone', async () => {
    const token = await locks.acquire('a4', 30000);
    assert.equal(await locks.release('a4', 'not-the-token'), false);
    assert.equal(await servers.redisCli('GET', 'fm:lock:a4'), token);
    assert.equal(await locks.release('a4', token), true);
    assert.equal(await locks.release('a4', token), false);
  });

  it('extend sets the remaining ttl, only for the holder', async () => {
    const token = await locks.acquire('a5', 2000);
    assert.equal(await locks.extend('a5', token, 40000), true);
    const left = await pttl('fm:lock:a5');
    assert.ok(left > 30000 && left <= 40000, `PTTL ${left}`);
    assert.equal(await locks.extend('a5', 'other', 90000), false);
    assert.ok((await pttl('fm:lock:a5')) <= 40000);
    const withDefault = new LockManager(client, { defaultTTL: 9000 });
    assert.equal(await withDefault.extend('a5', token), true);
    const left2 = await pttl('fm:lock:a5');
    assert.ok(left2 > 5000 && left2 <= 9000, `PTTL ${left2}`);
    await locks.release('a5', token);
    assert.equal(await locks.extend('a5', token, 1000), false);
  });

  it('acquireLock returns fences that grow with each acquire of a key', async () => {
    const a = await locks.acquireLock('a6', { ttl: 5000 });
    await locks.release('a6', a.token);
    const b = await locks.acquireLock('a6', { ttl: 5000 });
    assert.ok(Number.isInteger(a.fence) && b.fence > a.fence);
    await locks.release('a6', b.token);
  });

  it('the closing connection releases its locks', async () => {
    const own = new LockManager({ socket: servers.socket });
    const token = await own.acquire('a7', 30000);
    assert.equal(await servers.redisCli('GET', 'fm:lock:a7'), token);
    await own.close();
    await until(async () => (await servers.redisCli('EXISTS', 'fm:lock:a7')) === '0', 'the lock to go with its connection');
  });
});

describe('withLock', () => {
  it('runs fn holding the lock and releases it', async () => {
    const result = await locks.withLock('w1', async (signal, lock) => {
      assert.equal(signal.aborted, false);
      assert.equal(await servers.redisCli('GET', 'fm:lock:w1'), lock.token);
      assert.equal(await locks.isLocked('w1'), true);
      return 42;
    }, 10000);
    assert.equal(result, 42);
    assert.equal(await servers.redisCli('EXISTS', 'fm:lock:w1'), '0');
  });

  it('releases the lock when fn throws, and rejects with its error', async () => {
    const boom = new Error('boom');
    await assert.rejects(locks.withLock('w2', async () => {
      assert.equal(await servers.redisCli('EXISTS', 'fm:lock:w2'), '1');
      throw boom;
    }), (err) => err === boom);
    assert.equal(await servers.redisCli('EXISTS', 'fm:lock:w2'), '0');
  });

  it('rejects with LockNotAcquiredError when another holder keeps the lock', async () => {
    const token = await locks.acquire('w3', 30000);
    const impatient = new LockManager(client, { retryDelay: 50, maxRetries: 2 });
    let ran = false;
    await assert.rejects(impatient.withLock('w3', async () => {
      ran = true;
    }), (err) => err instanceof LockNotAcquiredError && err.code === 'lock_not_acquired' && err.key === 'w3');
    assert.equal(ran, false);
    assert.equal(await servers.redisCli('GET', 'fm:lock:w3'), token);
    await locks.release('w3', token);
  });

  it('keeps the lock alive past its ttl while fn runs', async () => {
    await locks.withLock('w4', async () => {
      const t0 = Date.now();
      // Three ttls of 1000 ms: without the daemon's extensions (every
      // 333 ms) the key would be gone.
      while (Date.now() - t0 < 3000) {
        assert.equal(await servers.redisCli('EXISTS', 'fm:lock:w4'), '1');
        await new Promise((r) => setTimeout(r, 250));
      }
      const left = await pttl('fm:lock:w4');
      assert.ok(left > 0 && left <= 1000, `PTTL ${left}`);
    }, 1000);
    assert.equal(await servers.redisCli('EXISTS', 'fm:lock:w4'), '0');
  });

  it('rejects with LockLostError, and aborts fn\'s signal, when the lock is lost', async () => {
    // A 'lock.lost' listener that throws is reported; the loss still
    // reaches withLock.
    const reported = [];
    const onError = (err) => reported.push(err.message);
    const throwing = () => {
      throw new Error('lock.lost listener');
    };
    client.on('error', onError);
    client.once('lock.lost', throwing);
    let seen;
    const p = locks.withLock('w5', async (signal) => {
      // Gone from Redis: the daemon's next extension (every ttl/3) finds
      // it so and sends lock.lost.
      await servers.redisCli('DEL', 'fm:lock:w5');
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      seen = signal.reason;
      return 'finished anyway';
    }, 1000);
    await assert.rejects(p, (err) => err instanceof LockLostError && err.code === 'lock_lost'
      && err.reason === 'lock.lost' && err.key === 'w5');
    assert.ok(seen instanceof LockLostError);
    client.removeListener('error', onError);
    assert.deepEqual(reported, ['lock.lost listener']);
  });

  it('reports the loss after fn settles, with fn\'s own error as the cause', async () => {
    const own = new Error('fn failed too');
    const p = locks.withLock('w6', async (signal) => {
      await servers.redisCli('SET', 'fm:lock:w6', 'someone-else', 'PX', '30000');
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      throw own;
    }, 1000);
    await assert.rejects(p, (err) => err instanceof LockLostError && err.cause === own);
    // Someone else's lock is left alone.
    assert.equal(await servers.redisCli('GET', 'fm:lock:w6'), 'someone-else');
    await servers.redisCli('DEL', 'fm:lock:w6');
  });

  it('rejects with LockLostError when its release finds the lock gone', async () => {
    // ttl 30000: the daemon's first extension (at 10 s) would come long
    // after the release, so only the release can tell.
    const p = locks.withLock('w8', async () => {
      await servers.redisCli('DEL', 'fm:lock:w8');
      return 'done';
    }, 30000);
    await assert.rejects(p, (err) => err instanceof LockLostError && err.reason === 'not_held'
      && err.key === 'w8' && err.cause === undefined);
  });

  it('rejects with LockLostError when its release finds another holder, with fn\'s error as the cause', async () => {
    const own = new Error('fn failed');
    const p = locks.withLock('w9', async () => {
      await servers.redisCli('SET', 'fm:lock:w9', 'someone-else', 'PX', '30000');
      throw own;
    }, 30000);
    await assert.rejects(p, (err) => err instanceof LockLostError && err.reason === 'not_owner' && err.cause === own);
    assert.equal(await servers.redisCli('GET', 'fm:lock:w9'), 'someone-else');
    await servers.redisCli('DEL', 'fm:lock:w9');
  });

  it('releases ahead of requests that fill maxInflight, rather than leave the lock extended', async () => {
    const narrow = createClient({ socket: servers.socket, maxInflight: 2, timeout: 3000 });
    const patient = new LockManager(narrow, { retryDelay: 100, maxRetries: 100 });
    // Held from outside, so that two acquires wait in the daemon, each
    // holding one of the client's two places for some 10 s.
    await servers.redisCli('SET', 'fm:lock:busy-1', 'outsider', 'PX', '60000');
    await servers.redisCli('SET', 'fm:lock:busy-2', 'outsider', 'PX', '60000');
    const waiting = [];
    const result = await patient.withLock('w10', async () => {
      for (const key of ['busy-1', 'busy-2']) waiting.push(patient.acquire(key));
      await until(async () => (await client.stats()).lock_acquires_waiting === 2, 'both acquires to wait');
      return 'done';
    }, 1000);
    assert.equal(result, 'done');
    // Released, not left to the daemon's extensions every 333 ms.
    assert.equal(await servers.redisCli('EXISTS', 'fm:lock:w10'), '0');
    await servers.redisCli('DEL', 'fm:lock:busy-1', 'fm:lock:busy-2');
    for (const token of await Promise.all(waiting)) assert.equal(typeof token, 'string');
    await narrow.close();
  });

  it('runs README-style zero-argument functions one holder at a time', async () => {
    let inside = 0;
    let most = 0;
    const runs = Array.from({ length: 6 }, () => locks.withLock('w7', async () => {
      inside++;
      most = Math.max(most, inside);
      await new Promise((r) => setTimeout(r, 20));
      inside--;
    }));
    await Promise.all(runs);
    assert.equal(most, 1);
  });
});

describe('keyPrefix', () => {
  it('works when it is the daemon\'s lock_key_prefix', async () => {
    const same = new RedisLockManager(client, { keyPrefix: 'fm:lock:', defaultTTL: 5000 });
    const token = await same.acquire('p1');
    assert.equal(await servers.redisCli('GET', 'fm:lock:p1'), token);
    assert.equal(await same.release('p1', token), true);
  });

  it('rejects every operation, naming the directive, when it is not', async () => {
    const other = new RedisLockManager(client, { keyPrefix: 'myapp:lock:' });
    for (const op of [() => other.acquire('p2'), () => other.release('p2', 't'), () => other.extend('p2', 't'),
      () => other.isLocked('p2'), () => other.withLock('p2', async () => 1)]) {
      await assert.rejects(op(), (err) => err instanceof KeyPrefixError && err.code === 'key_prefix_mismatch'
        && /lock_key_prefix myapp:lock:/.test(err.message));
    }
    assert.equal(await servers.redisCli('KEYS', '*p2*'), '');
  });
});

describe('withLock against a daemon with max_inflight_per_client 2', () => {
  let small;
  before(async () => {
    small = await startServers(['--max_inflight_per_client', '2']);
  });
  after(async () => {
    await small.stop();
  });

  it('sends its release again after too_many_requests until the daemon takes it', async () => {
    // The client allows 256 in flight: its release is the third request,
    // which the daemon refuses while two acquires wait (for some 1 s).
    const c = createClient({ socket: small.socket });
    const patient = new LockManager(c, { retryDelay: 100, maxRetries: 10 });
    await small.redisCli('SET', 'fm:lock:busy-1', 'outsider', 'PX', '60000');
    await small.redisCli('SET', 'fm:lock:busy-2', 'outsider', 'PX', '60000');
    const probe = createClient({ socket: small.socket });
    let waiting;
    const result = await patient.withLock('t1', async () => {
      waiting = Promise.all(['busy-1', 'busy-2'].map((key) => patient.acquire(key)));
      await until(async () => (await probe.stats()).lock_acquires_waiting === 2, 'both acquires to wait');
      return 'done';
    }, 1000);
    assert.equal(result, 'done');
    assert.equal(await small.redisCli('EXISTS', 'fm:lock:t1'), '0');
    const release = (await probe.stats()).ops['lock.release'];
    assert.ok(release.errors >= 1, `the daemon refused the release at least once: ${JSON.stringify(release)}`);
    assert.deepEqual(await waiting, [null, null]);
    await c.close();
    await probe.close();
  });
});
