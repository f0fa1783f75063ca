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
    if (args.length) assert.match(r.stdout, /wakes received: 16 by 4 workers in group "workers"/);
    // No lock is left behind (the daemon's fence counters, named with a
    // 0x01 byte, stay).
    const keys = (await servers.redisCli('KEYS', 'fm:lock:*')).split('\n');
    assert.deepEqual(keys.filter((k) => k !== '' && !k.includes('\x01')), []);
  });
}
