#!/usr/bin/env node
// The wake pattern of the @flowmonkey/redis README, end to end, through
// fmredisd: an in-memory store holds executions that wait for a time
// (wakeAt) or for an API call (resume); a poller signals the due ones, the
// resume path signals the one it resumed, and several workers, each with
// its own connection to the daemon as separate processes would have, run
// every execution they are woken for under withLock. Every worker gets
// every wake (or, with --group, the daemon hands each wake to one of
// them); the lock and the execution's status make each run once.
//
//   FMREDISD_SOCKET=/path/fmredisd.sock node examples/node/wake-pattern.js [--workers N] [--group NAME]
//
// Prints what happened and exits 0 when every execution ran exactly once,
// 1 otherwise. Programs that installed the package (npm install
// ./client/node) import from 'fmredis' instead of the path below.

import { parseArgs } from 'node:util';

import { LockManager, WakeSignaler, createClient } from '../../client/node/index.js';

const { values: args } = parseArgs({
  options: {
    workers: { type: 'string', default: '4' },
    group: { type: 'string' },
    timeout: { type: 'string', default: '20000' },
  },
});
const WORKERS = Number(args.workers);
const DEADLINE = Date.now() + Number(args.timeout);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the store and the engine (in memory; a database in real life) -------

const executions = new Map();
const t0 = Date.now();
for (let i = 0; i < 12; i++) {
  // Due now, or within the next second and a half.
  executions.set(`timer-${i}`, { id: `timer-${i}`, status: 'waiting', wakeAt: t0 + (i % 4) * 500 });
}
for (let i = 0; i < 4; i++) {
  executions.set(`approval-${i}`, { id: `approval-${i}`, status: 'paused' });
}
executions.set('tomorrow', { id: 'tomorrow', status: 'waiting', wakeAt: t0 + 86400000 });
const expected = [...executions.keys()].filter((id) => id !== 'tomorrow');

const store = {
  async findWaiting(limit) {
    return [...executions.values()].filter((e) => e.status === 'waiting').slice(0, limit);
  },
};

const ran = new Map();       // execution id -> workers that ran it
const stats = { wakes: 0, skipped: 0, notAcquired: 0, errors: 0, signals: 0, busy: 0 };

function engineFor(worker) {
  return {
    // Runs an execution that is due or resumed; one that another worker
    // has run already is left alone. Called under the execution's lock.
    async run(executionId) {
      const e = executions.get(executionId);
      const runnable = e && (e.status === 'ready' || (e.status === 'waiting' && e.wakeAt <= Date.now()));
      if (!runnable) {
        stats.skipped++;
        return;
      }
      e.status = 'running';
      await sleep(10 + Math.floor(Math.random() * 20));
      e.status = 'done';
      ran.set(executionId, [...(ran.get(executionId) ?? []), worker]);
    },
    async resume(id, body) {
      const e = executions.get(id);
      e.status = 'ready';
      e.input = body;
    },
  };
}

// ---- workers ------------------------------------------------------------------

const clients = [];
const signalers = [];
for (let w = 1; w <= WORKERS; w++) {
  const redis = createClient({ clientName: `wake-pattern-worker-${w}` });
  clients.push(redis);
  const lockManager = new LockManager(redis);
  const engine = engineFor(`worker-${w}`);
  const signaler = new WakeSignaler(redis, {
    group: args.group,
    onError: (err) => {
      if (err.code === 'lock_not_acquired') stats.notAcquired++;
      else {
        stats.errors++;
        console.error(`worker-${w}:`, err);
      }
    },
  });
  signalers.push(signaler);

  // All workers: Listen for wake signals
  await signaler.subscribe(async (executionId) => {
    stats.wakes++;
    stats.busy++;
    try {
      await lockManager.withLock(executionId, async () => {
        await engine.run(executionId);
      });
    } finally {
      stats.busy--;
    }
  });
}

// ---- the poller and the API -------------------------------------------------

const apiClient = createClient({ clientName: 'wake-pattern-api' });
clients.push(apiClient);
const signaler = new WakeSignaler(apiClient);
const api = engineFor('api');

// Worker 1: Polls for waiting executions
async function pollWaiting() {
  const waiting = await store.findWaiting(100);
  const now = Date.now();

  for (const exec of waiting) {
    if (exec.wakeAt && exec.wakeAt <= now) {
      await signaler.signal(exec.id);
      stats.signals++;
    }
  }
}

// Worker 2: Handles API resume requests (POST /executions/:id/resume)
async function resume(id, body) {
  await api.resume(id, body);
  await signaler.signal(id);  // Wake immediately
  stats.signals++;
}

const done = () => expected.every((id) => executions.get(id).status === 'done');
let resumed = 0;
while (!done() && Date.now() < DEADLINE) {
  await pollWaiting();
  if (resumed < 4) {
    await resume(`approval-${resumed}`, { approvedBy: `user-${resumed}` });
    resumed++;
  }
  await sleep(100);
}
// Every wake sent reaches every worker (with --group, one of them), and
// under load the poller may have signaled an execution again before its
// first wake was handled. Wait for the last wakes, and for handlers still
// waiting for a lock (they find those executions done), so that the counts
// below add up.
const wakesDue = () => stats.signals * (args.group ? 1 : WORKERS);
while ((stats.wakes < wakesDue() || stats.busy > 0) && Date.now() < DEADLINE) await sleep(20);

// ---- report -------------------------------------------------------------------

for (const s of signalers) await s.unsubscribe();
await Promise.all(clients.map((c) => c.close()));

const perWorker = new Map();
for (const [id, workers] of ran) {
  console.log(`${id.padEnd(12)} ran by ${workers.join(', ')}`);
  for (const w of workers) perWorker.set(w, (perWorker.get(w) ?? 0) + 1);
}
console.log(`signals sent: ${stats.signals}; wakes received: ${stats.wakes} by ${WORKERS} workers${args.group ? ` in group "${args.group}"` : ''}`);
console.log(`runs per worker: ${[...perWorker].map(([w, n]) => `${w} ${n}`).join(', ')}`);
console.log(`wakes for executions already run: ${stats.skipped}; lock not acquired: ${stats.notAcquired}; errors: ${stats.errors}`);

const missing = expected.filter((id) => !ran.has(id));
const twice = [...ran].filter(([, workers]) => workers.length > 1).map(([id]) => id);
const early = ran.has('tomorrow');
if (missing.length || twice.length || early || stats.errors) {
  if (missing.length) console.log(`NOT RUN: ${missing.join(', ')}`);
  if (twice.length) console.log(`RAN MORE THAN ONCE: ${twice.join(', ')}`);
  if (early) console.log('RAN BEFORE ITS TIME: tomorrow');
  process.exitCode = 1;
} else {
  console.log(`ok: all ${expected.length} executions ran exactly once; "tomorrow" still waits`);
}
