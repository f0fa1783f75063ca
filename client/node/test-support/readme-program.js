// A program written against the @flowmonkey/redis README, its snippets
// kept as they are there (TypeScript's annotations dropped). Two lines
// differ from the README: the import names this package, and the
// connection object is a Client of fmredisd instead of an ioredis
// connection. Around the snippets: a small in-memory engine and store, a
// stand-in for the HTTP app, and checks. It ends by itself (no
// process.exit) once everything is closed.

import assert from 'node:assert/strict';

import { RedisLockManager, RedisWakeSignaler, RedisExecutionCache } from 'fmredis';   // was '@flowmonkey/redis'
import { createClient } from 'fmredis';

const redis = createClient();   // was: new Redis(process.env.REDIS_URL)

// ---- the program's own parts -------------------------------------------

const runs = new Map();          // execution id -> times engine.run did work
const executions = new Map();    // the store's rows
const log = [];

const store = {
  async get(id) {
    const e = executions.get(id);
    return e ? { ...e } : null;
  },
  async update(execution) {
    executions.set(execution.id, { ...execution });
  },
  async delete(id) {
    executions.delete(id);
  },
  async findWaiting(limit) {
    return [...executions.values()].filter((e) => e.status === 'waiting').slice(0, limit);
  },
};

const engine = {
  // Runs an execution that is ready; a second run finds it done.
  async run(executionId) {
    const e = executions.get(executionId);
    if (!e || e.status === 'done') return;
    runs.set(executionId, (runs.get(executionId) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 5));
    e.status = 'done';
  },
  async resume(id, body) {
    const e = executions.get(id);
    e.status = 'ready';
    e.input = body;
  },
};

const routes = new Map();
const app = {
  post(path, handler) {
    routes.set(path, handler);
  },
};

async function request(path, params, body) {
  let sent;
  await routes.get(path)({ params, body }, { json: (v) => { sent = v; } });
  return sent;
}

async function until(what, cond) {
  const deadline = Date.now() + 10000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---- Quick Start -------------------------------------------------------

// Distributed locking
const lockManager = new RedisLockManager(redis, {
  keyPrefix: 'fm:lock:',
  defaultTTL: 30000,  // 30 seconds
});

// Wake signaling across instances
const signaler = new RedisWakeSignaler(redis, {
  channel: 'fm:wake',
});

// Execution caching
const cache = new RedisExecutionCache(redis, {
  keyPrefix: 'fm:exec:',
  ttl: 60000,  // 1 minute
});

// ---- Best Practices 1: Handle Connection Errors -------------------------

redis.on('error', (err) => {
  console.error('Redis error:', err);
});

redis.on('connect', () => {
  console.log('Redis connected');
});

redis.on('reconnecting', () => {
  console.log('Redis reconnecting...');
});

// ---- RedisLockManager -------------------------------------------------------

{
  const lockManager = new RedisLockManager(redis, {
    keyPrefix: 'fm:lock:',
    defaultTTL: 30000,
    retryDelay: 100,
    maxRetries: 50,
  });

  executions.set('exec-lock', { id: 'exec-lock', status: 'ready' });
  executions.set('exec-helper', { id: 'exec-helper', status: 'ready' });

  async function basicLocking(executionId) {
    // Acquire lock before running
    const lock = await lockManager.acquire(executionId);

    if (!lock) {
      console.log('Execution is locked by another worker');
      return;
    }

    try {
      // Safe to run - we have the lock
      await engine.run(executionId);
    } finally {
      // Always release the lock
      await lockManager.release(executionId, lock);
    }
  }
  await basicLocking('exec-lock');

  // Or use the helper
  const executionId = 'exec-helper';
  await lockManager.withLock(executionId, async () => {
    await engine.run(executionId);
  });

  // The rest of the Lock API.
  const token = await lockManager.acquire('exec-api', 10000);
  assert.equal(typeof token, 'string');
  assert.equal(await lockManager.isLocked('exec-api'), true);
  assert.equal(await lockManager.extend('exec-api', token, 20000), true);
  assert.equal(await lockManager.release('exec-api', token), true);
  assert.equal(await lockManager.isLocked('exec-api'), false);
  log.push('locks: acquire/release, withLock, extend, isLocked');
}

// ---- RedisWakeSignaler ------------------------------------------------------

{
  const signaler = new RedisWakeSignaler(redis, {
    channel: 'fm:wake',
  });
  for (const id of ['exec-sig', 'exec1', 'exec2', 'exec3']) executions.set(id, { id, status: 'ready' });
  const executionId = 'exec-sig';
  const [exec1, exec2, exec3] = ['exec1', 'exec2', 'exec3'];

  // Subscribe to wake signals
  await signaler.subscribe(async (executionId) => {
    console.log(`Wake signal for ${executionId}`);
    await engine.run(executionId);
  });

  // Signal a wake (called after resume)
  await signaler.signal(executionId);

  // Signal multiple
  await signaler.signalMany([exec1, exec2, exec3]);

  await until('four wakes', () => ['exec-sig', 'exec1', 'exec2', 'exec3'].every((id) => runs.get(id) === 1));

  // Cleanup on shutdown
  await signaler.unsubscribe();
  log.push('signaler: subscribe, signal, signalMany, unsubscribe');
}

// ---- Wake Pattern ----------------------------------------------------------

{
  const now0 = Date.now();
  for (let i = 0; i < 10; i++) {
    executions.set(`due-${i}`, { id: `due-${i}`, status: 'waiting', wakeAt: now0 - 1000 });
  }
  executions.set('later', { id: 'later', status: 'waiting', wakeAt: now0 + 3600000 });
  executions.set('paused', { id: 'paused', status: 'paused' });

  // Worker 1: Polls for waiting executions
  async function pollWaiting() {
    const waiting = await store.findWaiting(100);
    const now = Date.now();

    for (const exec of waiting) {
      if (exec.wakeAt && exec.wakeAt <= now) {
        await signaler.signal(exec.id);
      }
    }
  }

  // Worker 2: Handles API resume requests
  app.post('/executions/:id/resume', async (req, res) => {
    await engine.resume(req.params.id, req.body);
    await signaler.signal(req.params.id);  // Wake immediately
    res.json({ success: true });
  });

  // All workers: Listen for wake signals
  await signaler.subscribe(async (executionId) => {
    await lockManager.withLock(executionId, async () => {
      await engine.run(executionId);
    });
  });

  // A second worker, with its own connection, built the same way.
  const redis2 = createClient();
  const lockManager2 = new RedisLockManager(redis2, { keyPrefix: 'fm:lock:', defaultTTL: 30000 });
  const signaler2 = new RedisWakeSignaler(redis2, { channel: 'fm:wake' });
  await signaler2.subscribe(async (executionId) => {
    await lockManager2.withLock(executionId, async () => {
      await engine.run(executionId);
    });
  });

  await pollWaiting();
  assert.deepEqual(await request('/executions/:id/resume', { id: 'paused' }, { answer: 42 }), { success: true });
  const due = [...Array(10).keys()].map((i) => `due-${i}`);
  await until('every due execution and the resumed one to run', () =>
    [...due, 'paused'].every((id) => executions.get(id).status === 'done'));
  // Both workers got every wake; the lock and the store's status made each
  // execution run once.
  for (const id of [...due, 'paused']) assert.equal(runs.get(id), 1, id);
  assert.equal(executions.get('later').status, 'waiting');
  assert.equal(runs.has('later'), false);

  await signaler2.unsubscribe();
  await redis2.quit();
  log.push('wake pattern: 11 executions ran once each with 2 workers');
}

// ---- RedisExecutionCache ----------------------------------------------------

{
  const cache = new RedisExecutionCache(redis, {
    keyPrefix: 'fm:exec:',
    ttl: 60000,  // Cache for 1 minute
  });

  // Wrap your store
  class CachedStore {
    constructor(
      store,
      cache
    ) {
      this.store = store;
      this.cache = cache;
    }

    async get(id) {
      // Try cache first
      const cached = await this.cache.get(id);
      if (cached) return cached;

      // Load from database
      const exec = await this.store.get(id);
      if (exec) {
        await this.cache.set(exec);
      }
      return exec;
    }

    async update(execution) {
      await this.store.update(execution);
      await this.cache.set(execution);  // Update cache
    }

    async delete(id) {
      await this.store.delete(id);
      await this.cache.invalidate(id);  // Clear cache
    }
  }

  const cached = new CachedStore(store, cache);
  executions.set('exec-cached', { id: 'exec-cached', status: 'waiting', wakeAt: 1764100000000 });
  assert.equal(await cache.get('exec-cached'), null);
  assert.deepEqual(await cached.get('exec-cached'), { id: 'exec-cached', status: 'waiting', wakeAt: 1764100000000 });
  assert.deepEqual(await cache.get('exec-cached'), { id: 'exec-cached', status: 'waiting', wakeAt: 1764100000000 });
  await cached.update({ id: 'exec-cached', status: 'done' });
  assert.deepEqual(await cache.get('exec-cached'), { id: 'exec-cached', status: 'done' });
  await cached.update({ id: 'exec-kept', status: 'done' });

  // The rest of the Cache API.
  const many = await cache.getMany(['exec-cached', 'exec-none', 'exec-kept']);
  assert.deepEqual([...many.keys()], ['exec-cached', 'exec-kept']);
  await cached.delete('exec-cached');
  assert.equal(await cache.get('exec-cached'), null);
  await cache.set({ id: 'exec-tmp1' }, 5000);
  await cache.set({ id: 'exec-tmp2' });
  await cache.invalidateMany(['exec-tmp1', 'exec-tmp2']);
  assert.equal((await cache.getMany(['exec-tmp1', 'exec-tmp2'])).size, 0);
  log.push('cache: CachedStore get/update/delete, getMany, invalidateMany');
}

// The Quick Start's cache is the same as the one above.
assert.deepEqual(await cache.get('exec-kept'), { id: 'exec-kept', status: 'done' });

// ---- Best Practices 2: Graceful Shutdown -------------------------------------

process.on('SIGTERM', async () => {
  await signaler.unsubscribe();
  await redis.quit();
});

// The program is done: shut down the same way.
await signaler.unsubscribe();
await redis.quit();
process.removeAllListeners('SIGTERM');
console.log(log.join('\n'));
console.log('readme program: ok');
