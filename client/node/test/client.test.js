// The Client: framing, pipelining, matching replies by id, the client-side
// limits and deadlines, and the error classes.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import {
  ClientClosedError,
  ClientTimeoutError,
  ExecutionCache,
  FmredisError,
  LockManager,
  ProtocolError,
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

// A daemon stand-in on a socket of our own, for what a real daemon never
// does (split frames, answer out of order on demand, send garbage).
function fakeDaemon(path, onRequest, hello = { protocol: 1, server: 'fake', layout: null }) {
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    const send = (obj) => {
      const body = Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj));
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      sock.write(Buffer.concat([head, body]));
    };
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const n = buf.readUInt32BE(0);
        const req = JSON.parse(buf.toString('utf8', 4, 4 + n));
        buf = buf.subarray(4 + n);
        if (req.op === 'hello') send({ id: req.id, ok: true, ...hello });
        else onRequest(req, send, sock);
      }
    });
    sock.on('error', () => {});
  });
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}

describe('pipelining', () => {
  it('answers a thousand concurrent calls, each with its own reply', async () => {
    const client = createClient({ socket: servers.socket });
    const cache = new ExecutionCache(client);
    const ids = Array.from({ length: 1000 }, (_, i) => `pipe-${i}`);
    await Promise.all(ids.map((id, i) => cache.set({ id, n: i })));
    const got = await Promise.all(ids.map((id) => cache.get(id)));
    got.forEach((e, i) => assert.deepEqual(e, { id: ids[i], n: i }));
    // More than max_inflight_per_client (256) at once: the client holds the
    // rest back, so the daemon never answers too_many_requests.
    const stats = await client.stats();
    assert.equal(stats.ops['cache.set'].errors, 0);
    assert.equal(stats.ops['cache.get'].errors, 0);
    assert.equal(await servers.redisCli('GET', 'fm:exec:pipe-999'), '{"id":"pipe-999","n":999}');
    await client.close();
  });

  it('lets a cache.get through while an acquire on the same connection waits for a held lock', async () => {
    const holder = new LockManager({ socket: servers.socket });
    const client = createClient({ socket: servers.socket });
    const locks = new LockManager(client, { retryDelay: 100, maxRetries: 100 });
    const cache = new ExecutionCache(client);
    await cache.set({ id: 'ooo', v: 1 });
    const token = await holder.acquire('ooo-lock', 30000);
    assert.ok(token);

    let acquired = false;
    const waiting = locks.acquire('ooo-lock', 5000).then((t) => {
      acquired = true;
      return t;
    });
    // Sent after the acquire on the same socket, answered before it.
    assert.deepEqual(await cache.get('ooo'), { id: 'ooo', v: 1 });
    assert.equal(await locks.isLocked('ooo-lock'), true);
    assert.equal(acquired, false);

    assert.equal(await holder.release('ooo-lock', token), true);
    const t2 = await waiting;
    assert.equal(typeof t2, 'string');
    assert.notEqual(t2, token);
    assert.equal(await servers.redisCli('GET', 'fm:lock:ooo-lock'), t2);
    await locks.release('ooo-lock', t2);
    await holder.close();
    await client.close();
  });

  it('matches replies that come in another order and frames split anywhere', async () => {
    const path = `${servers.dir}/fake-order.sock`;
    const held = [];
    const server = await fakeDaemon(path, (req, _send, sock) => {
      held.push(req);
      if (held.length < 3) return;
      // All three answered in reverse order, written one byte at a time.
      const frames = held.reverse().map((r) => {
        const body = Buffer.from(JSON.stringify({ id: r.id, ok: true, echo: r.n }));
        const head = Buffer.alloc(4);
        head.writeUInt32BE(body.length);
        return Buffer.concat([head, body]);
      });
      const all = Buffer.concat(frames);
      let i = 0;
      const drip = () => {
        if (i < all.length) {
          sock.write(all.subarray(i, i + 1));
          i++;
          setImmediate(drip);
        }
      };
      drip();
    });
    const client = createClient({ socket: path });
    const replies = await Promise.all([1, 2, 3].map((n) => client.call('echo', { n })));
    assert.deepEqual(replies.map((r) => r.echo), [1, 2, 3]);
    await client.close();
    await new Promise((r) => server.close(r));
  });

  it('reads a reply larger than the daemon would accept as a request', async () => {
    const client = createClient({ socket: servers.socket });
    const cache = new ExecutionCache(client);
    const blob = 'x'.repeat(600 * 1024);
    await cache.set({ id: 'big-1', blob });
    await cache.set({ id: 'big-2', blob });
    const m = await cache.getMany(['big-1', 'big-2']);
    assert.equal(m.size, 2);
    assert.equal(m.get('big-2').blob.length, blob.length);
    await client.close();
  });
});

describe('client-side limits', () => {
  it('refuses a request above maxRequestBytes without losing the connection or its locks', async () => {
    const client = createClient({ socket: servers.socket });
    const locks = new LockManager(client);
    const cache = new ExecutionCache(client);
    const token = await locks.acquire('limit-lock', 30000);
    await assert.rejects(cache.set({ id: 'too-big', blob: 'y'.repeat(1 << 20) }),
      (err) => err instanceof FmredisError && err.code === 'frame_too_large');
    // The lock is still held: the connection never dropped.
    assert.equal(await servers.redisCli('GET', 'fm:lock:limit-lock'), token);
    assert.equal(await locks.release('limit-lock', token), true);
    await client.close();
  });

  it('refuses a string that is not valid UTF-8 before sending it', async () => {
    const client = createClient({ socket: servers.socket });
    const cache = new ExecutionCache(client);
    await assert.rejects(cache.set({ id: 'sur', s: 'a\ud800b' }),
      (err) => err instanceof FmredisError && err.code === 'bad_request' && /surrogate/.test(err.message));
    // A well-formed pair and the text "\ud800" itself are fine.
    await cache.set({ id: 'sur', s: 'a\ud83d\ude00b', t: '\\ud800' });
    assert.deepEqual(await cache.get('sur'), { id: 'sur', s: 'a\ud83d\ude00b', t: '\\ud800' });
    await client.close();
  });
});

describe('the queue while not connected', () => {
  it('expires requests at the back of a long queue without walking it', async () => {
    // 60000 requests wait at the head; as many behind them expire at once.
    // Finding and cutting each out of the array would cost 60000² steps,
    // seconds; marking them costs milliseconds.
    const client = createClient({ socket: `${servers.dir}/nobody-queue.sock` });
    const n = 60000;
    const staying = [];
    for (let i = 0; i < n; i++) staying.push(client.call('ping', {}, { timeout: 60000 }).catch((err) => err.code));
    let last = 0;
    let expired = 0;
    const due = Date.now() + 1000;
    const going = [];
    for (let i = 0; i < n; i++) {
      going.push(client.call('ping', {}, { timeout: 1000 }).catch((err) => {
        assert.equal(err.code, 'client_timeout');
        expired++;
        last = Date.now();
      }));
    }
    await Promise.all(going);
    assert.equal(expired, n);
    assert.ok(last - due < 2500, `the last expiry came ${last - due} ms after its deadline`);
    await client.close();
    // The requests at the head were still queued, and close() rejects them.
    assert.deepEqual(new Set(await Promise.all(staying)), new Set(['closed']));
  });
});

describe('listeners that throw', () => {
  // Listeners run inside the client's own work: reading a chunk, answering
  // hello. One that throws (or an async one that rejects) is reported on
  // 'error' and changes nothing else: no reconnect, no frame left unread,
  // no unhandled rejection.
  it('are reported, and the client goes on as if they had not', async () => {
    const unhandled = [];
    const onUnhandled = (err) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    const client = createClient({ socket: servers.socket, timeout: 3000 });
    const errors = [];
    const reconnects = [];
    client.on('error', (err) => errors.push(err.message));
    client.on('reconnecting', (info) => reconnects.push(info));
    client.on('connect', () => {
      throw new Error('connect listener');
    });
    client.on('wake', (event) => {
      if (event.execution_id === 'lt-1') throw new Error('wake listener');
    });
    client.on('event', async (event) => {
      throw new Error(`async event listener: ${event.execution_id}`);
    });
    try {
      assert.equal(await client.ping(), 'up');
      const signaler = new WakeSignaler(client, { channel: 'listeners' });
      const got = [];
      await signaler.subscribe((id) => {
        got.push(id);
      });
      // Both wakes in one chunk, most likely: the second must still be read.
      await signaler.signalMany(['lt-1', 'lt-2']);
      await until(() => got.length === 2 && errors.length === 4, 'both wakes and every listener error');
      assert.deepEqual(got, ['lt-1', 'lt-2']);
      assert.deepEqual(errors.sort(), ['async event listener: lt-1', 'async event listener: lt-2',
        'connect listener', 'wake listener']);
      assert.deepEqual(reconnects, []);
      assert.equal(client.state, 'ready');
      await client.close();
      assert.deepEqual(unhandled, []);
    } finally {
      process.removeListener('unhandledRejection', onUnhandled);
    }
  });
});

describe('options in ms', () => {
  it('refuses what setTimeout or the daemon cannot take, naming the option', () => {
    const socket = servers.socket;
    for (const bad of [Infinity, 2 ** 31, 0, -1, 1.5, NaN, '100']) {
      for (const name of ['timeout', 'reconnectDelay', 'reconnectMaxDelay']) {
        assert.throws(() => createClient({ socket, [name]: bad }), (err) => err instanceof TypeError
          && err.message.includes(name), `${name}: ${bad}`);
      }
    }
    for (const name of ['maxInflight', 'maxRequestBytes', 'maxReplyBytes']) {
      assert.throws(() => createClient({ socket, [name]: 2.5 }), TypeError, name);
      assert.throws(() => createClient({ socket, [name]: Infinity }), TypeError, name);
    }
    // The daemon takes ttls and delays of 1 to 2^31-1, retries from 0.
    for (const [name, bad] of [['defaultTTL', 0], ['defaultTTL', 2 ** 31], ['retryDelay', 0],
      ['retryDelay', Infinity], ['maxRetries', -1], ['maxRetries', 2 ** 31], ['maxRetries', 0.5]]) {
      assert.throws(() => new LockManager({ socket, [name]: bad }), (err) => err instanceof TypeError
        && err.message.includes(name), `${name}: ${bad}`);
    }
    assert.throws(() => new ExecutionCache({ socket, ttl: 0 }), TypeError);
    assert.throws(() => new ExecutionCache({ socket, maxBatch: 0 }), TypeError);
    assert.throws(() => new WakeSignaler({ socket, maxBatch: 1.5 }), TypeError);
    // None of them left a Client of its own behind: the file's process
    // would not end (and this file would time out).
  });

  it('refuses such a timeout on a call or ready(), and takes the largest one', async () => {
    const client = createClient({ socket: servers.socket, timeout: 2147483647 });
    await assert.rejects(client.call('ping', {}, { timeout: Infinity }), TypeError);
    await assert.rejects(client.call('ping', {}, { timeout: 2 ** 31 }), TypeError);
    await assert.rejects(client.ready(2 ** 40), TypeError);
    await client.ready(2147483647);
    assert.equal(await client.ping(), 'up');
    await client.close();
  });

  it('caps an acquire\'s deadline at 2^31-1 ms, however long the daemon may wait', async () => {
    const client = createClient({ socket: servers.socket });
    const locks = new LockManager(client, { retryDelay: 2147483647, maxRetries: 2147483647 });
    assert.equal(client.acquireTimeout(2147483647, 2147483647), 2147483647);
    const lock = await locks.acquireLock('ms-cap', { ttl: 5000 });
    assert.equal(await servers.redisCli('GET', 'fm:lock:ms-cap'), lock.token);
    assert.equal(await locks.release('ms-cap', lock.token), true);
    await client.close();
  });
});

describe('requests the daemon could not answer by id', () => {
  // A body the daemon cannot read as one request (bad_json, or an id it
  // cannot use) is answered without an id: it would match no request, which
  // would wait for its deadline and hold its slot forever. One slot here,
  // so a leak would stop every later call.
  it('are refused before sending, with bad_request, and leave the client usable', async () => {
    const client = createClient({ socket: servers.socket, maxInflight: 1, timeout: 5000 });
    const cache = new ExecutionCache(client);
    const protocolErrors = async () => (await client.stats()).protocol_errors;
    const before = await protocolErrors();
    const nest = (levels) => {
      let v = 'core';
      for (let i = 0; i < levels; i++) v = i % 2 ? { v } : [v];
      return v;
    };
    const refused = [
      () => client.call('ping', null),
      () => client.call('ping', [1, 2]),
      () => client.call('ping', 'redis'),
      () => client.call('ping', new Map([['redis', true]])),
      () => client.call('ping', { op: 'stats' }),
      () => client.call('ping', { id: 7 }),
      () => client.call('ping', { toJSON: () => [1] }),
      () => client.call(undefined),
      () => client.call('cache.get', { execution_id: 'x', deep: nest(600) }),
      // The request object is the first level: the execution may have 511.
      () => cache.set({ id: 'deep', v: nest(511) }),
    ];
    for (const call of refused) {
      const t0 = Date.now();
      await assert.rejects(call(), (err) => err instanceof FmredisError && err.code === 'bad_request', String(call));
      assert.ok(Date.now() - t0 < 1000, `${call}: refused after ${Date.now() - t0} ms`);
    }
    await cache.set({ id: 'deep', v: nest(510) });
    assert.deepEqual(await cache.get('deep'), { id: 'deep', v: nest(510) });
    // Brackets inside strings (after escaped quotes and backslashes) nest nothing.
    const brackets = { id: 'brackets', s: `${'['.repeat(600)}\\"${'{'.repeat(600)}\\`, t: '"]'.repeat(600) };
    await cache.set(brackets);
    assert.deepEqual(await cache.get('brackets'), brackets);
    assert.equal(await client.ping(), 'up');
    // None of them reached the daemon.
    assert.equal(await protocolErrors(), before);
    await client.close();
  });

  it('that arrive anyway end the connection, failing the requests in flight at once', async () => {
    const path = `${servers.dir}/fake-anonymous.sock`;
    const server = await fakeDaemon(path, (req, send) => {
      if (req.op === 'boom') send({ ok: false, error: { code: 'bad_json', message: 'not strict JSON' } });
      else if (req.op === 'ping') send({ id: req.id, ok: true, redis: 'up' });
    });
    const client = createClient({ socket: path, timeout: 20000 });
    const events = [];
    client.on('disconnect', (err) => events.push(err));
    const t0 = Date.now();
    await assert.rejects(client.call('boom'), (err) => err.code === 'connection_lost'
      && /bad_json: not strict JSON/.test(err.message));
    assert.ok(Date.now() - t0 < 5000, `rejected after ${Date.now() - t0} ms`);
    assert.equal(events.length, 1);
    // It connected again.
    assert.equal(await client.ping(), 'up');
    await client.close();
    await new Promise((r) => server.close(r));
  });
});

describe('errors', () => {
  it('gives the daemon code of a refused request on an FmredisError', async () => {
    const client = createClient({ socket: servers.socket });
    const locks = new LockManager(client);
    await assert.rejects(locks.acquire(''), (err) => {
      assert.ok(err instanceof FmredisError);
      assert.ok(err instanceof Error);
      assert.equal(err.code, 'bad_request');
      assert.equal(err.op, 'lock.acquire');
      return true;
    });
    await assert.rejects(client.call('no.such.op'), { code: 'unknown_op' });
    await assert.rejects(locks.acquire('k', 0), { code: 'bad_request' });
    await assert.rejects(locks.withLock('k', async () => 1, 50), { code: 'bad_request' });
    // The connection is fine after them.
    assert.equal(await client.ping(), 'up');
    await client.close();
  });

  it('rejects with ClientTimeoutError past its deadline and gives back a lock granted too late', async () => {
    const holder = new LockManager({ socket: servers.socket });
    const client = createClient({ socket: servers.socket });
    const holderToken = await holder.acquire('late', 30000);
    const t0 = Date.now();
    await assert.rejects(
      client.call('lock.acquire', { key: 'late', retry_delay: 100, max_retries: 100 }, { timeout: 300 }),
      (err) => err instanceof ClientTimeoutError && err.code === 'client_timeout',
    );
    assert.ok(Date.now() - t0 < 3000);
    // The daemon grants the abandoned acquire once the holder lets go;
    // the client releases it at once, as nobody has its token.
    const releases = async () => (await client.stats()).ops['lock.release'].calls;
    const before = await releases();
    assert.equal(await holder.release('late', holderToken), true);
    await until(async () => (await releases()) === before + 2, "the holder's release and the client's");
    assert.equal(await servers.redisCli('EXISTS', 'fm:lock:late'), '0');
    await holder.close();
    await client.close();
  });

  it('rejects with ClientTimeoutError naming the cause while no daemon answers', async () => {
    const client = createClient({ socket: `${servers.dir}/nobody.sock`, timeout: 300 });
    await assert.rejects(client.ping(), (err) => err instanceof ClientTimeoutError && /ENOENT/.test(err.message));
    await client.close();
  });

  it('rejects with ClientClosedError after close()', async () => {
    const client = createClient({ socket: servers.socket });
    const locks = new LockManager(client);
    const holder = new LockManager({ socket: servers.socket });
    const token = await holder.acquire('closing', 30000);
    const waiting = assert.rejects(locks.acquire('closing'),
      (err) => err instanceof ClientClosedError && err.code === 'closed');
    await until(async () => (await holder.client.stats()).lock_acquires_waiting === 1, 'the acquire to wait');
    await client.close();
    await waiting;
    await assert.rejects(locks.isLocked('closing'), { code: 'closed' });
    await holder.release('closing', token);
    await holder.close();
  });

  it('closes for good when the daemon refuses its hello, with the daemon\'s error', async () => {
    const client = createClient({ socket: servers.socket, clientName: 'bad\u0001name' });
    await assert.rejects(client.ping(), (err) => err instanceof FmredisError && err.code === 'bad_request'
      && err.op === 'hello');
    assert.equal(client.state, 'closed');
    await client.close();
  });

  it('closes for good, with ProtocolError, when the daemon speaks another protocol', async () => {
    const path = `${servers.dir}/fake-v2.sock`;
    const server = await fakeDaemon(path, () => {}, { protocol: 2, server: 'future' });
    const client = createClient({ socket: path });
    await assert.rejects(client.ready(), (err) => err instanceof ProtocolError && err.code === 'protocol_error'
      && /protocol 2/.test(err.message));
    await assert.rejects(client.ping(), { code: 'protocol_error' });
    await client.close();
    await new Promise((r) => server.close(r));
  });

  it('reads nothing more of a chunk after a frame it could not read', async () => {
    const path = `${servers.dir}/fake-garbage-then-reply.sock`;
    const frame = (text) => {
      const body = Buffer.from(text);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      return Buffer.concat([head, body]);
    };
    const server = await fakeDaemon(path, (req, _send, sock) => {
      // Garbage, and the reply right behind it in the same write.
      sock.write(Buffer.concat([frame('{not json'), frame(JSON.stringify({ id: req.id, ok: true, redis: 'up' }))]));
    });
    const client = createClient({ socket: path });
    await client.ready();
    await assert.rejects(client.ping(), (err) => err.code === 'connection_lost' && /not JSON/.test(err.message));
    await client.close();
    await new Promise((r) => server.close(r));
  });

  it('closes for good, with the daemon\'s error, when the daemon forbids the connection', async () => {
    // What fmredisd does to a peer whose uid/gid allow_uids/allow_gids
    // leave out (root, which runs these tests, is always allowed): an error
    // frame without id, then the end of the connection.
    const path = `${servers.dir}/fake-forbidden.sock`;
    let connections = 0;
    const server = net.createServer((sock) => {
      connections++;
      const body = Buffer.from('{"ok":false,"error":{"code":"forbidden","message":"uid 1000 is not allowed"}}');
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      sock.end(Buffer.concat([head, body]));
      sock.on('error', () => {});
      sock.resume();
    });
    await new Promise((resolve) => server.listen(path, resolve));
    const client = createClient({ socket: path, reconnectDelay: 1, reconnectMaxDelay: 1 });
    const reconnects = [];
    client.on('reconnecting', (info) => reconnects.push(info));
    await assert.rejects(client.ping(), (err) => err instanceof FmredisError && err.code === 'forbidden'
      && /uid 1000 is not allowed/.test(err.message));
    assert.equal(client.state, 'closed');
    await assert.rejects(client.ping(), { code: 'forbidden' });
    assert.deepEqual(reconnects, []);
    assert.equal(connections, 1);
    await client.close();
    await new Promise((r) => server.close(r));
  });

  it('drops the connection and reconnects when the daemon sends something unreadable', async () => {
    const path = `${servers.dir}/fake-garbage.sock`;
    let conns = 0;
    const server = await fakeDaemon(path, (req, send) => {
      conns++;
      if (conns === 1) send('{not json');
      else send({ id: req.id, ok: true, redis: 'up' });
    });
    const client = createClient({ socket: path });
    await assert.rejects(client.ping(), (err) => err.code === 'connection_lost' && /not JSON/.test(err.message));
    assert.equal(await client.ping(), 'up');
    await client.close();
    await new Promise((r) => server.close(r));
  });
});

describe('a daemon at max_clients', () => {
  let full;
  before(async () => {
    full = await startServers(['--max_clients', '1']);
  });
  after(async () => {
    await full.stop();
  });

  it('is tried again after reconnectMaxDelay, not at once, and served once a place is free', async () => {
    const first = createClient({ socket: full.socket });
    await first.ready();
    const second = createClient({ socket: full.socket, reconnectDelay: 1, reconnectMaxDelay: 1500 });
    const reconnects = [];
    second.on('reconnecting', (info) => reconnects.push(info));
    const pinged = second.ping();
    await until(() => reconnects.length > 0, 'the refused client to plan its next attempt');
    assert.equal(reconnects[0].delay, 1500);
    await first.close();
    assert.equal(await pinged, 'up');
    assert.ok(reconnects.every((r) => r.delay === 1500), JSON.stringify(reconnects));
    // Few attempts in all: each one waited the longest delay.
    assert.ok(reconnects.length <= 5, JSON.stringify(reconnects));
    await second.close();
  });
});
