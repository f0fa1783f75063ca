// ExecutionCache: the @flowmonkey/redis RedisExecutionCache API over
// fmredisd's cache.* operations. The daemon stores an execution's JSON text
// as sent; with bigNumbers this side keeps the digits too (lib/json.js).

import { batches } from './batch.js';
import { FmredisError } from './errors.js';
import { stringifyExact } from './json.js';
import { attach, prefixCheck } from './manager.js';
import { countOption, intOption } from './options.js';

const DEFAULT_MAX_BATCH = 10000;

export class ExecutionCache {
  constructor(client, options) {
    const a = attach(client, options, (o) => ({
      keyPrefix: o.keyPrefix,
      ttl: intOption('ttl', o.ttl),
      bigNumbers: o.bigNumbers,
      maxBatch: countOption('maxBatch', o.maxBatch, DEFAULT_MAX_BATCH),
      precheck: prefixCheck(o.keyPrefix, 'cache_key_prefix'),
    }));
    this.client = a.client;
    this._owned = a.owned;
    this.keyPrefix = a.settings.keyPrefix;
    this.ttl = a.settings.ttl;
    this.bigNumbers = a.settings.bigNumbers ?? this.client.bigNumbers;
    this.maxBatch = a.settings.maxBatch;
    this._precheck = a.settings.precheck;
  }

  // options.fresh: read Redis, not the daemon's near cache.
  async get(id, options) {
    const fields = { execution_id: id };
    if (options?.fresh) fields.fresh = true;
    const reply = await this.client._request('cache.get', fields,
      { precheck: this._precheck, exact: this.bigNumbers });
    return reply.execution ?? null;
  }

  // Stores execution (an object with a string id) for ttl ms (the
  // manager's ttl, else the daemon's cache_ttl_ms).
  async set(execution, ttl) {
    const text = this.bigNumbers ? stringifyExact(execution) : JSON.stringify(execution);
    if (text === undefined) {
      throw new FmredisError('bad_request', 'cache.set: execution must be an object with a string id', { op: 'cache.set' });
    }
    const fields = {};
    ttl = ttl ?? this.ttl;
    if (ttl !== undefined) fields.ttl = ttl;
    await this.client._request('cache.set', fields, { raw: ['execution', text], precheck: this._precheck });
  }

  async invalidate(id) {
    await this.client._request('cache.invalidate', { execution_id: id }, { precheck: this._precheck });
  }

  async invalidateMany(ids) {
    const parts = batches(ids, this.maxBatch, this.client.maxRequestBytes);
    await Promise.all(parts.map((part) =>
      this.client._request('cache.invalidate_many', { execution_ids: part }, { precheck: this._precheck })));
  }

  // A Map of the ids that are cached, in the order of ids; options as get's.
  async getMany(ids, options) {
    const parts = batches(ids, this.maxBatch, this.client.maxRequestBytes);
    const replies = await Promise.all(parts.map((part) =>
      this.client._request('cache.get_many',
        options?.fresh ? { execution_ids: part, fresh: true } : { execution_ids: part },
        { precheck: this._precheck, exact: this.bigNumbers })));
    const found = new Map();
    for (const reply of replies) {
      const executions = reply.executions ?? {};
      for (const id of Object.keys(executions)) found.set(id, executions[id]);
    }
    const out = new Map();
    for (const id of ids) if (found.has(id)) out.set(id, found.get(id));
    return out;
  }

  // Closes the Client this cache made for itself; a shared one stays.
  async close() {
    if (this._owned) await this.client.close();
  }
}
