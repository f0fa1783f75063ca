// Real servers for the tests: a redis-server and an fmredisd in a private
// temp dir, both on Unix sockets there, started per test file and stopped
// by pid afterwards, also when a test fails or the process exits early.
// $FMREDISD names the daemon (default: the repository's build/fmredisd).

import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PACKAGE_DIR = path.resolve(here, '..');
export const REPO_DIR = path.resolve(PACKAGE_DIR, '../..');
export const FMREDISD = process.env.FMREDISD || path.join(REPO_DIR, 'build/fmredisd');

const started = new Set();   // child processes not yet reaped
const dirs = new Set();

// Whatever ends this process, nothing it started outlives it: a normal
// exit, or a signal (the test runner sends SIGTERM to a file that ran past
// --test-timeout; ^C and a closed terminal send SIGINT and SIGHUP), after
// which the signal is raised again so that the process still dies of it.
function cleanUp() {
  for (const child of started) {
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  started.clear();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}
process.on('exit', cleanUp);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.once(sig, () => {
    cleanUp();
    process.kill(process.pid, sig);
  });
}

// Polls fn (sync or async) until it returns a truthy value, which it
// returns; fails after timeout ms, saying what it waited for.
export async function until(fn, what, timeout = 10000, interval = 20) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

function startProcess(cmd, args, logPath) {
  const log = fs.openSync(logPath, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  started.add(child);
  // A child that could not be spawned (ENOENT) sends 'error' and never
  // 'exit'.
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      started.delete(child);
      resolve({ code, signal });
    });
    child.once('error', (error) => {
      if (child.pid !== undefined) return;
      started.delete(child);
      resolve({ code: null, signal: null, error });
    });
  });
  return child;
}

async function stopProcess(child, signal = 'SIGTERM', grace = 10000) {
  if (!started.has(child)) return child.exited;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), grace);
  const result = await child.exited;
  clearTimeout(timer);
  return result;
}

// One request over a fresh connection, without the client under test.
export function rawRequest(sockPath, request, timeout = 5000) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(sockPath);
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no reply from ${sockPath}`));
    }, timeout);
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.on('connect', () => {
      const body = Buffer.from(JSON.stringify(request));
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      s.write(Buffer.concat([head, body]));
    });
    s.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 4 || buf.length < 4 + buf.readUInt32BE(0)) return;
      clearTimeout(timer);
      s.destroy();
      resolve(JSON.parse(buf.toString('utf8', 4, 4 + buf.readUInt32BE(0))));
    });
  });
}

export class Servers {
  constructor(daemonArgs = []) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fmnode-'));
    dirs.add(this.dir);
    this.redisSock = path.join(this.dir, 'redis.sock');
    this.socket = path.join(this.dir, 'fm.sock');
    this.daemonArgs = daemonArgs;
    this.redis = null;
    this.daemon = null;
  }

  async start() {
    await this.startRedis();
    await this.startDaemon();
    return this;
  }

  async startRedis() {
    this.redis = startProcess('redis-server', [
      '--port', '0', '--unixsocket', this.redisSock, '--unixsocketperm', '700',
      '--save', '', '--appendonly', 'no', '--dir', this.dir,
    ], path.join(this.dir, 'redis.log'));
    await until(async () => (await this.redisCli('PING')) === 'PONG', 'redis-server');
  }

  async stopRedis() {
    if (this.redis) await stopProcess(this.redis);
    this.redis = null;
  }

  async startDaemon(extraArgs = []) {
    this.daemon = startProcess(FMREDISD, [
      '--socket', this.socket, '--redis_url', `unix://${this.redisSock}`, '--log_level', 'warn',
      ...this.daemonArgs, ...extraArgs,
    ], path.join(this.dir, 'fmredisd.log'));
    const daemon = this.daemon;
    await until(async () => {
      if (!started.has(daemon)) throw new Error(`fmredisd exited; log: ${this.log()}`);
      const r = await rawRequest(this.socket, { op: 'ping', id: 1, redis: true });
      return r.redis === 'up';
    }, 'fmredisd to answer with Redis up');
  }

  // SIGTERM drains the daemon (PROTOCOL.md §15); SIGKILL drops every
  // connection at once, as a crash would.
  async stopDaemon(signal = 'SIGTERM') {
    if (this.daemon) await stopProcess(this.daemon, signal);
    this.daemon = null;
  }

  async restartDaemon(signal = 'SIGTERM') {
    await this.stopDaemon(signal);
    await this.startDaemon();
  }

  log() {
    try {
      return fs.readFileSync(path.join(this.dir, 'fmredisd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  // redis-cli -s <sock> args...; resolves with its output, trimmed.
  redisCli(...args) {
    return new Promise((resolve, reject) => {
      execFile('redis-cli', ['-s', this.redisSock, ...args], { timeout: 10000 }, (err, stdout) => {
        if (err) reject(err);
        else resolve(stdout.replace(/\n$/, ''));
      });
    });
  }

  // A redis-cli SUBSCRIBE to channel: messages() lists the payloads it
  // got so far; ready resolves once Redis confirmed the subscription.
  subscribe(channel) {
    const child = spawn('redis-cli', ['-s', this.redisSock, 'SUBSCRIBE', channel],
      { stdio: ['ignore', 'pipe', 'ignore'] });
    started.add(child);
    // 'close' comes after 'exit', and also when the spawn failed.
    const exited = new Promise((resolve) => child.once('close', () => {
      started.delete(child);
      resolve();
    }));
    const lines = [];
    let partial = '';
    child.stdout.on('data', (d) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop();
      lines.push(...parts);
    });
    return {
      ready: until(() => lines.length >= 3, `redis-cli SUBSCRIBE ${channel}`),
      messages: () => {
        const out = [];
        for (let i = 0; i + 2 < lines.length; i++) {
          if (lines[i] === 'message') {
            out.push(lines[i + 2]);
            i += 2;
          }
        }
        return out;
      },
      close: () => {
        child.kill('SIGTERM');
        return exited;
      },
    };
  }

  async stop() {
    if (this.daemon) await stopProcess(this.daemon);
    if (this.redis) await stopProcess(this.redis);
    this.daemon = null;
    this.redis = null;
    fs.rmSync(this.dir, { recursive: true, force: true });
    dirs.delete(this.dir);
  }
}

export async function startServers(daemonArgs) {
  const s = new Servers(daemonArgs);
  try {
    return await s.start();
  } catch (err) {
    await s.stop();
    throw err;
  }
}

// Runs `node file args` with env added; resolves with {code, signal,
// stdout, stderr}, killing it after timeout ms.
export function runNode(file, args = [], env = {}, timeout = 60000) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      started.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
