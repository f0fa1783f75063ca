// WakeSignaler: what signal and signalMany publish, delivery to handlers,
// groups, unsubscribe, and handlers that fail.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { FmredisError, RedisWakeSignaler, WakeSignaler, createClient } from '../index.js';
import { startServers, until } from '../test-support/helper.js';

let servers;
const opened = [];
before(async () => {
  servers = await startServers();
});
after(async () => {
  for (const c of opened) await c.close();
  await servers.stop();
});

function client() {
  const c = createClient({ socket: servers.socket });
  opened.push(c);
  return c;
}

// A signaler subscribed on a client of its own, collecting the ids it gets.
async function subscriber(options = {}, subscribeOpts) {
  const signaler = new WakeSignaler(client(), options);
  const got = [];
  await signaler.subscribe(async (id) => {
    got.push(id);
  }, subscribeOpts);
  return { signaler, got };
}

describe('signal and subscribe', () => {
  it('signal publishes the package\'s payload and reaches subscribers', async () => {
    const cli = servers.subscribe('fm:wake');
    await cli.ready;
    const { got } = await subscriber();
    const signaler = new RedisWakeSignaler(client(), { channel: 'fm:wake' });
    const before = Date.now();
    // One Redis subscriber for the daemon (however many local ones), one
    // for redis-cli.
    assert.equal(await signaler.signal('exec-1'), 2);
    await until(() => got.includes('exec-1'), 'the wake');
    await until(() => cli.messages().length === 1, 'redis-cli to see it');
    const payload = JSON.parse(cli.messages()[0]);
    assert.deepEqual(Object.keys(payload), ['executionId', 'timestamp']);
    assert.equal(payload.executionId, 'exec-1');
    assert.ok(payload.timestamp >= before - 1000 && payload.timestamp <= Date.now() + 1000);
    await cli.close();
  });

  it('signalMany publishes one wake per id', async () => {
    const { got } = await subscriber();
    const signaler = new WakeSignaler(client());
    assert.equal(await signaler.signalMany(['m1', 'm2', 'm3']), 3);
    await until(() => ['m1', 'm2', 'm3'].every((id) => got.includes(id)), 'three wakes');
    assert.equal(await signaler.signalMany([]), 0);
  });

  it('signalMany splits a list longer than max_batch', async () => {
    const { got } = await subscriber({ channel: 'many' });
    const signaler = new WakeSignaler(client(), { channel: 'many', maxBatch: 1000 });
    const ids = Array.from({ length: 2500 }, (_, i) => `b${i}`);
    const calls = async () => (await signaler.client.stats()).ops['wake.signal_many'].calls;
    const before = await calls();
    assert.equal(await signaler.signalMany(ids), 2500);
    assert.equal(await calls(), before + 3);
    await until(() => got.length === 2500, '2500 wakes');
    assert.deepEqual(new Set(got), new Set(ids));
  });

  it('hands the handler wakes that other publishers send', async () => {
    const { got } = await subscriber();
    await servers.redisCli('PUBLISH', 'fm:wake', '{"executionId":"from-node","timestamp":1}');
    await servers.redisCli('PUBLISH', 'fm:wake', 'bare-id');
    await until(() => got.includes('from-node') && got.includes('bare-id'), 'both wakes');
  });

  it('passes the whole event to the handler', async () => {
    const signaler = new WakeSignaler(client());
    const events = [];
    await signaler.subscribe((id, event) => {
      events.push(event);
    });
    await servers.redisCli('PUBLISH', 'fm:wake', '{"executionId":"ev","timestamp":1764100000000}');
    await until(() => events.some((e) => e.execution_id === 'ev'), 'the wake');
    const e = events.find((x) => x.execution_id === 'ev');
    assert.deepEqual(e, { event: 'wake', channel: 'fm:wake', execution_id: 'ev', timestamp: 1764100000000 });
  });

  it('keeps to its channel', async () => {
    const own = await subscriber({ channel: 'custom:wake' });
    const dflt = await subscriber();
    const signaler = new WakeSignaler(client(), { channel: 'custom:wake' });
    await signaler.signal('c1');
    await servers.redisCli('PUBLISH', 'fm:wake', 'c2');
    await until(() => own.got.includes('c1') && dflt.got.includes('c2'), 'both');
    await own.signaler.client.ping();
    await dflt.signaler.client.ping();
    assert.equal(own.got.includes('c2'), false);
    assert.equal(dflt.got.includes('c1'), false);
  });

  it('publish is signal, and refuses metadata it cannot carry', async () => {
    const { got } = await subscriber();
    const signaler = new WakeSignaler(client());
    await signaler.publish('pub-1');
    await until(() => got.includes('pub-1'), 'the wake');
    await assert.rejects(signaler.publish('pub-2', { reason: 'x' }),
      (err) => err instanceof FmredisError && err.code === 'unsupported');
  });
});

describe('groups', () => {
  it('gives each wake to one member of a group, and every wake to subscribers without one', async () => {
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await subscriber({ channel: 'grp' }, { group: 'workers' }));
    const watcher = await subscriber({ channel: 'grp' });
    const ids = Array.from({ length: 30 }, (_, i) => `g${i}`);
    await new WakeSignaler(client(), { channel: 'grp' }).signalMany(ids);
    await until(() => watcher.got.length === 30
      && members.reduce((n, m) => n + m.got.length, 0) === 30, 'every wake');
    const all = members.flatMap((m) => m.got).sort();
    assert.deepEqual(all, [...ids].sort());
    // Round-robin: ten each.
    assert.deepEqual(members.map((m) => m.got.length), [10, 10, 10]);
    assert.deepEqual([...watcher.got].sort(), [...ids].sort());
  });

  it('takes the group from the constructor\'s options too', async () => {
    const a = await subscriber({ channel: 'grp2', group: 'g' });
    const b = await subscriber({ channel: 'grp2', group: 'g' });
    await new WakeSignaler(client(), { channel: 'grp2' }).signalMany(['x1', 'x2', 'x3', 'x4']);
    await until(() => a.got.length + b.got.length === 4, 'four wakes');
    assert.deepEqual([a.got.length, b.got.length], [2, 2]);
  });
});

describe('unsubscribe and failing handlers', () => {
  it('unsubscribe stops delivery', async () => {
    const leaving = await subscriber({ channel: 'unsub' });
    const staying = await subscriber({ channel: 'unsub' });
    const signaler = new WakeSignaler(client(), { channel: 'unsub' });
    await signaler.signal('u1');
    await until(() => leaving.got.includes('u1') && staying.got.includes('u1'), 'u1 to both');
    await leaving.signaler.unsubscribe();
    await signaler.signal('u2');
    await until(() => staying.got.includes('u2'), 'u2');
    // A wake fanned out to it would be read before this reply.
    await leaving.signaler.client.ping();
    assert.deepEqual(leaving.got, ['u1']);
    const stats = await signaler.client.stats();
    assert.ok(stats.wake_subscribers >= 1);
    // It can subscribe again.
    await leaving.signaler.subscribe(async (id) => {
      leaving.got.push(id);
    });
    await signaler.signal('u3');
    await until(() => leaving.got.includes('u3'), 'u3 after subscribing again');
  });

  it('subscribes the daemon in Redis once, and takes each subscription back from the daemon', async () => {
    const numsub = async () => (await servers.redisCli('PUBSUB', 'NUMSUB', 'unsub-redis')).split('\n')[1];
    const probe = client();
    const subscribers = async () => (await probe.stats()).wake_subscribers;
    assert.equal(await numsub(), '0');
    const before = await subscribers();
    const a = await subscriber({ channel: 'unsub-redis' });
    const b = await subscriber({ channel: 'unsub-redis' });
    // One Redis subscription for the daemon, however many local ones.
    assert.equal(await numsub(), '1');
    assert.equal(await subscribers(), before + 2);
    await a.signaler.unsubscribe();
    assert.equal(await subscribers(), before + 1);
    await b.signaler.unsubscribe();
    assert.equal(await subscribers(), before);
  });

  it('reports a failing handler on "error" and goes on delivering', async () => {
    const signaler = new WakeSignaler(client(), { channel: 'err' });
    const errors = [];
    const got = [];
    signaler.on('error', (err) => errors.push(err));
    await signaler.subscribe(async (id) => {
      if (id === 'bad') throw new Error(`handler failed for ${id}`);
      got.push(id);
    });
    await signaler.subscribe((id) => {
      if (id === 'bad') throw new Error('sync throw');
    });
    await signaler.signalMany(['bad', 'good']);
    await until(() => got.includes('good') && errors.length === 2, 'the good wake and both errors');
    assert.deepEqual(errors.map((e) => e.message).sort(), ['handler failed for bad', 'sync throw']);
  });

  it('hands handler errors to onError when given', async () => {
    const errors = [];
    const signaler = new WakeSignaler(client(), { channel: 'err2', onError: (err) => errors.push(err) });
    await signaler.subscribe(async () => {
      throw new Error('nope');
    });
    await signaler.signal('x');
    await until(() => errors.length === 1, 'onError');
  });

  it('writes to stderr, without crashing, when nobody listens', async () => {
    const signaler = new WakeSignaler(client(), { channel: 'err3' });
    const printed = [];
    const saved = console.error;
    console.error = (...args) => printed.push(args);
    try {
      await signaler.subscribe(async () => {
        throw new Error('unheard');
      });
      await signaler.signal('x');
      await until(() => printed.length === 1, 'the report');
    } finally {
      console.error = saved;
    }
    assert.equal(printed[0][1].message, 'unheard');
  });

  it('refuses the second of two subscribers racing for one Client\'s channel', async () => {
    const c = client();
    const first = new WakeSignaler(c, { channel: 'race' });
    const second = new WakeSignaler(c, { channel: 'race' });
    const got = { first: [], second: [] };
    const results = await Promise.allSettled([
      first.subscribe((id) => got.first.push(id), { group: 'first' }),
      second.subscribe((id) => got.second.push(id), { group: 'second' }),
    ]);
    assert.equal(results[0].status, 'fulfilled');
    assert.equal(results[1].status, 'rejected');
    assert.ok(results[1].reason instanceof FmredisError && /already has a subscriber/.test(results[1].reason.message));
    // The first keeps the subscription, in its own group: another member
    // of "first" on another connection shares the wakes with it.
    const peer = await subscriber({ channel: 'race' }, { group: 'first' });
    await new WakeSignaler(client(), { channel: 'race' }).signalMany(['r1', 'r2', 'r3', 'r4']);
    await until(() => got.first.length + peer.got.length === 4, 'four wakes');
    assert.deepEqual([got.first.length, peer.got.length], [2, 2]);
    await c.ping();
    assert.deepEqual(got.second, []);
  });

  it('tells the daemon\'s default channel and its name apart before hello says it', async () => {
    // Made before the client is connected: the default channel's name is
    // not known yet.
    const c = client();
    const dflt = new WakeSignaler(c);
    const named = new WakeSignaler(c, { channel: 'fm:wake' });
    const results = await Promise.allSettled([dflt.subscribe(() => {}), named.subscribe(() => {})]);
    assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  });

  it('refuses a second subscriber on one Client\'s channel', async () => {
    const c = client();
    const first = new WakeSignaler(c, { channel: 'once' });
    await first.subscribe(() => {});
    await assert.rejects(new WakeSignaler(c, { channel: 'once' }).subscribe(() => {}),
      (err) => err instanceof FmredisError && /already has a subscriber/.test(err.message));
  });
});
