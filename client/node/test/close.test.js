// close() leaves nothing behind that keeps the process alive.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, it } from 'node:test';

import { PACKAGE_DIR, runNode, startServers } from '../test-support/helper.js';

let servers;
before(async () => {
  servers = await startServers();
});
after(async () => {
  await servers.stop();
});

it('a program that closes its clients ends by itself', async () => {
  const r = await runNode(path.join(PACKAGE_DIR, 'test-support/close-program.js'), [],
    { FMREDISD_SOCKET: servers.socket }, 20000);
  assert.equal(r.signal, null, `killed after 20 s: a handle kept it alive; stdout: ${r.stdout} stderr: ${r.stderr}`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^pending request: closed$/m);
  assert.match(r.stdout, /^left: \[\]$/m);
  // Its locks went with its connections.
  assert.equal(await servers.redisCli('EXISTS', 'fm:lock:close-lock'), '0');
});
