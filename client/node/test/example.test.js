// examples/node/wake-pattern.js, run as a user would, against the test
// daemon.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, it } from 'node:test';

import { REPO_DIR, runNode, startServers } from '../test-support/helper.js';

const example = path.join(REPO_DIR, 'examples/node/wake-pattern.js');

let servers;
before(async () => {
  servers = await startServers();
});
after(async () => {
  await servers.stop();
});

for (const args of [[], ['--group', 'workers']]) {
  it(`runs every execution exactly once (${args.join(' ') || 'every worker gets every wake'})`, async () => {
    const r = await runNode(example, args, { FMREDISD_SOCKET: servers.socket });
    assert.equal(r.code, 0, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.match(r.stdout, /^ok: all 16 executions ran exactly once; "tomorrow" still waits$/m);
    assert.equal(r.stdout.match(/ ran by /g).length, 16);
    assert.equal(r.stderr, '');
    // Each wake sent reaches every worker, or with a group one of them. The
    // poller may signal an execution more than once under load, so the
    // count of signals is the example's own.
    const m = /^signals sent: (\d+); wakes received: (\d+) by 4 workers( in group "workers")?$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.equal(m[3] !== undefined, args.length > 0, r.stdout);
    const signals = Number(m[1]);
    assert.ok(signals >= 16, r.stdout);
    assert.equal(Number(m[2]), args.length ? signals : 4 * signals, r.stdout);
    // No lock is left behind (the daemon's fence counters, named with a
    // 0x01 byte, stay).
    const keys = (await servers.redisCli('KEYS', 'fm:lock:*')).split('\n');
    assert.deepEqual(keys.filter((k) => k !== '' && !k.includes('\x01')), []);
  });
}
