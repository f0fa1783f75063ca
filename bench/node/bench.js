#!/usr/bin/env node
// Lock and cache pairs from Node, three ways against one private
// redis-server on a Unix socket:
//
//   fmredis     client/node through a private fmredisd (LockManager,
//               ExecutionCache), one Client;
//   node-redis  the `redis` v4 package, one connection, straight to Redis;
//   ioredis     the `ioredis` package, one connection, straight to Redis.
//
// The direct paths send what a program without the daemon would send for
// the same work: a lock pair is SET <key> <token> NX PX <ttl> and the
// daemon's token-checked release script by EVALSHA; a cache pair is
// SET <key> <json> PX <ttl> and GET, with JSON.stringify and JSON.parse.
// N concurrent callers (async loops in this one process) share each path's
// connection, as the handlers of one Node engine would. Every reply is
// checked: a lock must be granted and released, a read must return the
// execution just written.
//
//   FMREDISD=build/fmredisd node bench/node/bench.js [--seconds S] [--callers 1,8,32] [--only lock|cache]
//
// Prints a table: ops/s and latency per pair from the callers' view, the
// ratio of fmredis to each direct path, and CPU per pair of this process
// (node), fmredisd (fmd) and redis-server (rds).

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import IORedis from 'ioredis';
import { createClient as createNodeRedis } from 'redis';

import { ExecutionCache, LockManager, createClient } from '../../client/node/index.js';
import { startServers } from '../../client/node/test-support/helper.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '2' },
    callers: { type: 'string', default: '1,8,32' },
    only: { type: 'string' },
  },
});
const SECONDS = Number(args.seconds);
const WARMUP = 0.3;
const CALLERS = args.callers.split(',').map(Number);
const LOCK_TTL = 10000;
const CACHE_TTL = 60000;
const RELEASE_CHANNEL = 'fm:lock:released';
// The daemon's release script (PROTOCOL.md §12.3).
const RELEASE = `local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if v ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], KEYS[1])
return 1`;

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

// CPU seconds a process used so far.
function procCpu(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

// An execution of about 2 KB, shaped like bench/util.c's.
function execution(id) {
  const runData = {};
  for (let i = 0; JSON.stringify(runData).length < 1700; i++) {
    runData[`node-${i}`] = [{
      startTime: 1764115200000 + i * 7,
      executionTime: 3 + i,
      executionStatus: 'success',
      source: [{ previousNode: `node-${i ? i - 1 : 0}` }],
      data: { main: [[{ json: { orderId: 4000 + i, customer: `c-${String(17 * i).padStart(5, '0')}`,
        total: 100 + 13 * i + (i % 100) / 100, currency: 'EUR', note: 'café "deluxe"' } }]] },
    }];
  }
  return {
    id, workflowId: 'wf-5b1d0c2e9a7f4e13', mode: 'trigger', status: 'running', seq: '00000000',
    retryOf: null, finished: false, startedAt: '2025-11-26T00:00:00.000Z', waitTill: null,
    data: { resultData: { runData, lastNodeExecuted: `node-${Object.keys(runData).length - 1}` } },
  };
}

function fail(what) {
  throw new Error(`wrong reply: ${what}`);
}

function checkRead(got, id, seq) {
  if (got === null || got === undefined) fail(`cache get ${id}: a miss right after the set`);
  if (got.id !== id || got.seq !== seq) fail(`cache get ${id}: not the execution just set`);
}

// ---- the three paths -------------------------------------------------------

async function fmredisPath(servers) {
  const client = createClient({ socket: servers.socket, clientName: 'bench-node' });
  const locks = new LockManager(client, { defaultTTL: LOCK_TTL });
  const cache = new ExecutionCache(client, { ttl: CACHE_TTL });
  await client.ready();
  return {
    name: 'fmredis',
    async lock(key) {
      const token = await locks.acquire(key);
      if (token === null) fail(`acquire ${key}: not granted`);
      if (!(await locks.release(key, token))) fail(`release ${key}: not released`);
    },
    async cache(exec, seq) {
      exec.seq = seq;
      await cache.set(exec);
      checkRead(await cache.get(exec.id), exec.id, seq);
    },
    close: () => client.close(),
  };
}

async function nodeRedisPath(servers) {
  const r = createNodeRedis({ socket: { path: servers.redisSock } });
  await r.connect();
  const sha = await r.scriptLoad(RELEASE);
  return {
    name: 'node-redis',
    async lock(key) {
      const token = randomBytes(16).toString('hex');
      const rkey = `fm:lock:${key}`;
      if ((await r.set(rkey, token, { NX: true, PX: LOCK_TTL })) !== 'OK') fail(`SET NX ${rkey}: not granted`);
      if ((await r.evalSha(sha, { keys: [rkey], arguments: [token, RELEASE_CHANNEL] })) !== 1) fail(`release ${rkey}`);
    },
    async cache(exec, seq) {
      exec.seq = seq;
      const rkey = `fm:exec:${exec.id}`;
      await r.set(rkey, JSON.stringify(exec), { PX: CACHE_TTL });
      const text = await r.get(rkey);
      checkRead(text === null ? null : JSON.parse(text), exec.id, seq);
    },
    close: () => r.quit(),
  };
}

async function ioredisPath(servers) {
  const r = new IORedis({ path: servers.redisSock, lazyConnect: true });
  await r.connect();
  const sha = await r.script('LOAD', RELEASE);
  return {
    name: 'ioredis',
    async lock(key) {
      const token = randomBytes(16).toString('hex');
      const rkey = `fm:lock:${key}`;
      if ((await r.set(rkey, token, 'PX', LOCK_TTL, 'NX')) !== 'OK') fail(`SET NX ${rkey}: not granted`);
      if ((await r.evalsha(sha, 1, rkey, token, RELEASE_CHANNEL)) !== 1) fail(`release ${rkey}`);
    },
    async cache(exec, seq) {
      exec.seq = seq;
      const rkey = `fm:exec:${exec.id}`;
      await r.set(rkey, JSON.stringify(exec), 'PX', CACHE_TTL);
      const text = await r.get(rkey);
      checkRead(text === null ? null : JSON.parse(text), exec.id, seq);
    },
    close: () => r.quit(),
  };
}

// ---- running -------------------------------------------------------------------

// n callers run step back to back for `seconds`; each caller has its own
// key or execution, so they never contend.
async function measure(path, workload, n, seconds, servers) {
  const states = Array.from({ length: n }, (_, c) => ({
    key: `bench-${path.name}-${c}`,
    exec: execution(`bench-${path.name}-${c}`),
    i: 0,
  }));
  const step = workload === 'lock'
    ? (s) => path.lock(s.key)
    : (s) => path.cache(s.exec, String(s.i % 100000000).padStart(8, '0'));
  const lat = [];
  const run = async (record) => {
    const end = performance.now() + record.seconds * 1000;
    await Promise.all(states.map(async (s) => {
      while (performance.now() < end) {
        const t = performance.now();
        await step(s);
        s.i++;
        if (record.keep) lat.push(performance.now() - t);
      }
    }));
  };
  await run({ seconds: WARMUP, keep: false });
  const cpu0 = process.cpuUsage();
  const fmd0 = procCpu(servers.daemon.pid);
  const rds0 = procCpu(servers.redis.pid);
  const t0 = performance.now();
  await run({ seconds, keep: true });
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const ops = lat.length;
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] * 1000;
  const perOp = (sec) => (sec * 1e6) / ops;
  return {
    ops: ops / elapsed,
    p50: q(0.5),
    p99: q(0.99),
    node: perOp((cpu.user + cpu.system) / 1e6),
    fmd: perOp(procCpu(servers.daemon.pid) - fmd0),
    rds: perOp(procCpu(servers.redis.pid) - rds0),
  };
}

const fmt = (v, w, d = 1) => v.toFixed(d).padStart(w);

async function main() {
  const servers = await startServers();
  const pkg = (name) => JSON.parse(fs.readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version;
  try {
    const paths = [await fmredisPath(servers), await nodeRedisPath(servers), await ioredisPath(servers)];
    console.log(`bench-node: ${SECONDS} s per run, after ${WARMUP} s of warm-up; Node ${process.version}, `
      + `redis (node-redis) ${pkg('redis')}, ioredis ${pkg('ioredis')}; one connection per path, shared by the callers`);
    console.log('ops/s and latency per pair from the callers\' view; vs = fmredis ops/s / the direct path\'s;');
    console.log('us/op = CPU time per pair of this Node process (node), fmredisd (fmd) and redis-server (rds)');
    console.log(`load average at the start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    const units = { lock: 'acquire+release pair', cache: 'set+get pair of a ~2 KB execution' };
    for (const workload of ['lock', 'cache']) {
      if (args.only && args.only !== workload) continue;
      console.log(`\n${workload} (one op = ${units[workload]})`);
      console.log('callers  path           ops/s    p50 us    p99 us  vs node-redis  vs ioredis  node us/op  fmd us/op  rds us/op');
      for (const n of CALLERS) {
        const rows = [];
        for (const path of paths) rows.push([path.name, await measure(path, workload, n, SECONDS, servers)]);
        const [, fm] = rows[0];
        for (const [name, r] of rows) {
          const vs = name === 'fmredis'
            ? `${fmt(fm.ops / rows[1][1].ops, 12, 2)}x${fmt(fm.ops / rows[2][1].ops, 11, 2)}x`
            : `${'-'.padStart(13)}${'-'.padStart(12)}`;
          console.log(`${String(n).padStart(7)}  ${name.padEnd(11)}${fmt(r.ops, 9, 0)}${fmt(r.p50, 10)}${fmt(r.p99, 10)}`
            + `  ${vs}${fmt(r.node, 12)}${fmt(r.fmd, 11)}${fmt(r.rds, 11)}`);
        }
      }
    }
    for (const path of paths) await path.close();
  } finally {
    await servers.stop();
  }
}

await main();
