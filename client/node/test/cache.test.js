// ExecutionCache: every method and what it leaves in Redis, keyPrefix,
// and numbers that a double cannot hold (bigNumbers).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  ExactNumber,
  ExecutionCache,
  FmredisError,
  KeyPrefixError,
  RedisExecutionCache,
  createClient,
  parseExact,
  stringifyExact,
} from '../index.js';
import { startServers } from '../test-support/helper.js';

let servers;
let client;
let cache;
before(async () => {
  servers = await startServers();
  client = createClient({ socket: servers.socket });
  cache = new ExecutionCache(client);
});
after(async () => {
  await client.close();
  await servers.stop();
});

const pttl = async (key) => Number(await servers.redisCli('PTTL', key));

describe('get, set, invalidate', () => {
  it('set stores the JSON under the cache prefix with the ttl option', async () => {
    const c = new RedisExecutionCache(client, { keyPrefix: 'fm:exec:', ttl: 20000 });
    const exec = { id: 'c1', status: 'waiting', wakeAt: 1764100000000, context: { a: [1, 2, 'x'] } };
    await c.set(exec);
    assert.equal(await servers.redisCli('GET', 'fm:exec:c1'), JSON.stringify(exec));
    const left = await pttl('fm:exec:c1');
    assert.ok(left > 10000 && left <= 20000, `PTTL ${left}`);
    assert.deepEqual(await c.get('c1'), exec);
  });

  it('set takes a ttl argument, else the daemon\'s cache_ttl_ms', async () => {
    await cache.set({ id: 'c2' }, 5000);
    const left = await pttl('fm:exec:c2');
    assert.ok(left > 2000 && left <= 5000, `PTTL ${left}`);
    await cache.set({ id: 'c2' });
    const left2 = await pttl('fm:exec:c2');
    assert.ok(left2 > 50000 && left2 <= 60000, `PTTL ${left2}`);
  });

  it('get is null on a miss, and reads what others wrote', async () => {
    assert.equal(await cache.get('nothing-here'), null);
    await servers.redisCli('SET', 'fm:exec:c3', '{"id":"c3","by":"node"}');
    assert.deepEqual(await cache.get('c3'), { id: 'c3', by: 'node' });
  });

  it('get and getMany with fresh read Redis, not the daemon\'s near cache', async () => {
    const calls = async (cmd) => {
      const info = await servers.redisCli('INFO', 'commandstats');
      const m = new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(info);
      return m ? Number(m[1]) : 0;
    };
    await cache.set({ id: 'cf' });
    const gets = await calls('get');
    const mgets = await calls('mget');
    assert.deepEqual(await cache.get('cf', { fresh: true }), { id: 'cf' });
    assert.deepEqual([...(await cache.getMany(['cf'], { fresh: true })).keys()], ['cf']);
    assert.equal(await calls('get'), gets + 1);
    assert.equal(await calls('mget'), mgets + 1);
    // Without it, the copy the daemon kept when it wrote cf.
    assert.deepEqual(await cache.get('cf'), { id: 'cf' });
    assert.equal(await calls('get'), gets + 1);
  });

  it('invalidate deletes the key', async () => {
    await cache.set({ id: 'c4' });
    assert.equal(await servers.redisCli('EXISTS', 'fm:exec:c4'), '1');
    await cache.invalidate('c4');
    assert.equal(await servers.redisCli('EXISTS', 'fm:exec:c4'), '0');
    assert.equal(await cache.get('c4'), null);
    await cache.invalidate('c4');
  });

  it('getMany returns a Map of the hits in the order asked', async () => {
    await cache.set({ id: 'm-b', n: 2 });
    await cache.set({ id: 'm-a', n: 1 });
    const m = await cache.getMany(['m-b', 'm-missing', 'm-a', 'm-b']);
    assert.ok(m instanceof Map);
    assert.deepEqual([...m.entries()], [['m-b', { id: 'm-b', n: 2 }], ['m-a', { id: 'm-a', n: 1 }]]);
    assert.equal((await cache.getMany([])).size, 0);
  });

  it('invalidateMany deletes every key', async () => {
    await cache.set({ id: 'i1' });
    await cache.set({ id: 'i2' });
    await cache.set({ id: 'i3' });
    await cache.invalidateMany(['i1', 'i2', 'i-none']);
    assert.equal(await servers.redisCli('EXISTS', 'fm:exec:i1', 'fm:exec:i2', 'fm:exec:i3'), '1');
    await cache.invalidateMany([]);
  });

  it('splits lists longer than max_batch', async () => {
    const small = new ExecutionCache(client, { maxBatch: 100 });
    const ids = Array.from({ length: 250 }, (_, i) => `s${i}`);
    await Promise.all(ids.map((id) => small.set({ id })));
    const calls = async () => (await client.stats()).ops['cache.get_many'].calls;
    const before = await calls();
    const m = await small.getMany(ids);
    assert.equal(await calls(), before + 3);
    assert.deepEqual([...m.keys()], ids);
    await small.invalidateMany(ids);
    assert.equal(await servers.redisCli('EXISTS', ...ids.map((id) => `fm:exec:${id}`)), '0');
  });

  it('refuses an execution that is no object, with the daemon\'s code', async () => {
    await assert.rejects(cache.set(undefined), (err) => err instanceof FmredisError && err.code === 'bad_request');
    await assert.rejects(cache.set({ status: 'no id' }), { code: 'bad_request' });
    await assert.rejects(cache.set([1, 2]), { code: 'bad_request' });
    await assert.rejects(cache.get(''), { code: 'bad_request' });
  });

  it('rejects operations when keyPrefix is not the daemon\'s cache_key_prefix', async () => {
    const other = new ExecutionCache(client, { keyPrefix: 'myapp:exec:' });
    for (const op of [() => other.get('p'), () => other.set({ id: 'p' }), () => other.invalidate('p'),
      () => other.invalidateMany(['p']), () => other.getMany(['p'])]) {
      await assert.rejects(op(), (err) => err instanceof KeyPrefixError && /cache_key_prefix myapp:exec:/.test(err.message));
    }
    assert.equal(await servers.redisCli('EXISTS', 'fm:exec:p', 'myapp:exec:p'), '0');
  });
});

describe('big numbers', () => {
  const text = '{"id":"big","count":12345678901234567890,"neg":-9007199254740993,'
    + '"safe":9007199254740991,"amount":1234567890.123456789,"tiny":1e-400,"huge":1e400,'
    + '"plain":0.1,"sci":1.50e3,"nested":[{"x":100000000000000000000000000001}]}';

  it('come back exactly: BigInt for integers, ExactNumber for the rest', async () => {
    const exact = new ExecutionCache(client, { bigNumbers: true });
    await servers.redisCli('SET', 'fm:exec:big', text);
    const e = await exact.get('big');
    assert.equal(e.count, 12345678901234567890n);
    assert.equal(e.neg, -9007199254740993n);
    assert.equal(e.safe, 9007199254740991);
    assert.ok(e.amount instanceof ExactNumber);
    assert.equal(e.amount.text, '1234567890.123456789');
    assert.equal(e.tiny.text, '1e-400');
    assert.equal(e.huge.text, '1e400');
    assert.equal(e.plain, 0.1);
    assert.equal(e.sci, 1500);
    assert.equal(e.nested[0].x, 100000000000000000000000000001n);

    // And go back with their digits.
    await exact.set({ ...e, id: 'big2' });
    const stored = await servers.redisCli('GET', 'fm:exec:big2');
    assert.match(stored, /"count":12345678901234567890,/);
    assert.match(stored, /"neg":-9007199254740993,/);
    assert.match(stored, /"amount":1234567890.123456789,/);
    assert.match(stored, /"tiny":1e-400,"huge":1e400,/);
    assert.match(stored, /"x":100000000000000000000000000001/);
    assert.deepEqual(parseExact(stored), { ...e, id: 'big2' });

    const m = await exact.getMany(['big', 'big2']);
    assert.equal(m.get('big2').count, 12345678901234567890n);
    assert.equal(m.get('big').amount.text, '1234567890.123456789');
  });

  it('is the Client\'s option too', async () => {
    const c2 = createClient({ socket: servers.socket, bigNumbers: true });
    const viaClient = new ExecutionCache(c2);
    await viaClient.set({ id: 'big3', n: 2n ** 70n });
    assert.equal(await servers.redisCli('GET', 'fm:exec:big3'), '{"id":"big3","n":1180591620717411303424}');
    assert.equal((await viaClient.get('big3')).n, 2n ** 70n);
    await c2.close();
  });

  it('are doubles without the option', async () => {
    await servers.redisCli('SET', 'fm:exec:big', text);
    const e = await cache.get('big');
    assert.equal(typeof e.count, 'number');
    await assert.rejects(cache.set({ id: 'b', n: 1n }), TypeError);
  });
});

describe('parseExact and stringifyExact', () => {
  it('parse like JSON.parse where a double is exact', () => {
    const samples = ['{"a":[1,-0,0.5,1e21,-2.5e-7,true,false,null,"s\\u00e9\\n\\"",{}],"":[]}',
      '"plain"', '[]', ' {"x" : 1 } ', '{"__proto__":{"polluted":1}}', '"\\ud83d\\ude00"'];
    for (const s of samples) assert.deepEqual(parseExact(s), JSON.parse(s));
    const proto = parseExact('{"__proto__":{"polluted":1}}');
    assert.equal(Object.getPrototypeOf(proto), Object.prototype);
    assert.deepEqual(Object.keys(proto), ['__proto__']);
    assert.ok(Object.is(parseExact('-0'), -0));
  });

  it('refuse what JSON.parse refuses', () => {
    for (const s of ['{', '[1,]', '{"a":1,}', '01', '1.', '.5', '"\u0001"', 'nul', '{"a" 1}', '[1] x', '"\\x"', '']) {
      assert.throws(() => parseExact(s), SyntaxError, s);
    }
  });

  it('stringify like JSON.stringify for plain values', () => {
    const d = new Date(0);
    const v = { a: [1, undefined, () => 1, NaN], b: undefined, d, s: 'é"\\', n: null, nested: { t: true } };
    assert.equal(stringifyExact(v), JSON.stringify(v));
    assert.equal(stringifyExact(undefined), undefined);
    const cyc = {};
    cyc.self = cyc;
    assert.throws(() => stringifyExact(cyc), TypeError);
  });

  it('ExactNumber holds only JSON numbers', () => {
    assert.throws(() => new ExactNumber('1e'), TypeError);
    assert.throws(() => new ExactNumber('0x10'), TypeError);
    const n = new ExactNumber('0.30000000000000000001');
    assert.equal(stringifyExact({ n }), '{"n":0.30000000000000000001}');
    assert.equal(JSON.stringify({ n }), '{"n":"0.30000000000000000001"}');
    assert.equal(+n, 0.3);
  });
});
