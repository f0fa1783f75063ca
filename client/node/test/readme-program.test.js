// Programs written against the @flowmonkey/redis README (in test-support/),
// with only the import and the connection object changed, run against a
// real daemon.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { PACKAGE_DIR, runNode, startServers, until } from '../test-support/helper.js';

const fixture = (name) => path.join(PACKAGE_DIR, 'test-support', name);

describe('against a daemon with the default layout', () => {
  let servers;
  before(async () => {
    servers = await startServers();
  });
  after(async () => {
    await servers.stop();
  });

  it('runs the README program to the end', async () => {
    const r = await runNode(fixture('readme-program.js'), [], { FMREDISD_SOCKET: servers.socket });
    assert.equal(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.match(r.stdout, /^readme program: ok$/m);
    assert.match(r.stdout, /^wake pattern: 11 executions ran once each with 2 workers$/m);
    assert.match(r.stdout, /^Wake signal for exec-sig$/m);
    // What it left in Redis: the cached execution it kept, under the
    // README's prefix and TTL; no locks.
    assert.equal(await servers.redisCli('GET', 'fm:exec:exec-kept'), '{"id":"exec-kept","status":"done"}');
    const left = Number(await servers.redisCli('PTTL', 'fm:exec:exec-kept'));
    assert.ok(left > 30000 && left <= 60000, `PTTL ${left}`);
    assert.equal(await servers.redisCli('EXISTS', 'fm:exec:exec-cached'), '0');
    assert.equal(await servers.redisCli('KEYS', 'fm:lock:exec*'), '');
  });

  it('refuses the README\'s other key prefixes, naming the directives', async () => {
    const r = await runNode(fixture('readme-prefixes.js'), [], { FMREDISD_SOCKET: servers.socket });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^lock: key_prefix_mismatch: .*"lock_key_prefix myapp:fm:lock:"/m);
    assert.match(r.stdout, /^cache: key_prefix_mismatch: .*"cache_key_prefix myapp:fm:exec:"/m);
    // The channel is a request's argument, so wakes work.
    assert.match(r.stdout, /^wake: ok prefixed$/m);
    assert.equal(await servers.redisCli('KEYS', '*prefixed*'), '');
  });
});

describe('against a daemon configured with the README\'s key prefixes', () => {
  let servers;
  before(async () => {
    servers = await startServers(['--lock_key_prefix', 'myapp:fm:lock:', '--cache_key_prefix', 'myapp:fm:exec:']);
  });
  after(async () => {
    await servers.stop();
  });

  it('writes under them', async () => {
    const releases = servers.subscribe('fm:lock:released');
    await releases.ready;
    const r = await runNode(fixture('readme-prefixes.js'), [], { FMREDISD_SOCKET: servers.socket });
    assert.equal(r.code, 0, r.stderr);
    const token = /^lock: ok ([0-9a-f]+)$/m.exec(r.stdout)?.[1];
    assert.ok(token, r.stdout);
    assert.match(r.stdout, /^cache: ok$/m);
    assert.match(r.stdout, /^wake: ok prefixed$/m);
    assert.equal(await servers.redisCli('GET', 'myapp:fm:exec:prefixed'), '{"id":"prefixed"}');
    // The program's connection closed, which released its lock: the
    // release names the lock's Redis key.
    await until(() => releases.messages().includes('myapp:fm:lock:prefixed'), 'the release of myapp:fm:lock:prefixed');
    assert.equal(await servers.redisCli('EXISTS', 'myapp:fm:lock:prefixed'), '0');
    await releases.close();
  });
});
