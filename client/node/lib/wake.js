// WakeSignaler: the @flowmonkey/redis RedisWakeSignaler API over fmredisd's
// wake.* operations. Wakes reach this process as events on its Client's
// connection; the Client subscribes again by itself after a reconnect.
//
// Events: "error" (a handler failed, or a resubscription did; only when
// no onError option is given), "redis" ("down"/"up": the daemon's link to
// Redis, whose wakes in between may be lost), "resubscribed" (the
// subscription is back after the connection to the daemon dropped, and
// wakes in between may be lost). After either of the last two, a worker
// runs its poll sweep.

import { EventEmitter } from 'node:events';

import { batches } from './batch.js';
import { FmredisError } from './errors.js';
import { emitGuarded, reportError } from './listeners.js';
import { attach } from './manager.js';
import { countOption } from './options.js';

const DEFAULT_MAX_BATCH = 10000;

export class WakeSignaler extends EventEmitter {
  constructor(client, options) {
    super();
    const a = attach(client, options, (o) => ({
      channel: o.channel,
      group: o.group,
      onError: o.onError,
      maxBatch: countOption('maxBatch', o.maxBatch, DEFAULT_MAX_BATCH),
    }));
    this.client = a.client;
    this._owned = a.owned;
    this.channel = a.settings.channel;
    this.group = a.settings.group;
    this.onError = a.settings.onError;
    this.maxBatch = a.settings.maxBatch;
    this._handlers = [];
    this._sub = null;
  }

  _fields(fields) {
    if (this.channel !== undefined) fields.channel = this.channel;
    return fields;
  }

  // Publishes a wake for executionId; resolves with the number of Redis
  // subscribers that got it (one per subscribed fmredisd, not per worker).
  async signal(executionId) {
    const reply = await this.client._request('wake.signal', this._fields({ execution_id: executionId }), {});
    return reply.receivers;
  }

  // Resolves with the number of wakes published.
  async signalMany(executionIds) {
    const parts = batches(executionIds, this.maxBatch, this.client.maxRequestBytes);
    const replies = await Promise.all(parts.map((ids) =>
      this.client._request('wake.signal_many', this._fields({ execution_ids: ids }), {})));
    return replies.reduce((n, r) => n + r.signaled, 0);
  }

  // The package's publish(): a wake payload carries only the id and a
  // timestamp, so metadata cannot travel with it.
  async publish(executionId, metadata) {
    if (metadata !== undefined) {
      throw new FmredisError('unsupported', 'publish: a wake carries only the execution id; metadata cannot be sent', { op: 'wake.signal' });
    }
    return this.signal(executionId);
  }

  // Calls handler(executionId, event) for every wake on the channel
  // (with opts.group, or the group option, only for the wakes the daemon
  // hands this subscriber in turn among the group's). Resolves once the
  // daemon confirmed the subscription. Calling it again adds a handler;
  // a different group replaces the subscription's group.
  async subscribe(handler, opts = {}) {
    if (typeof handler !== 'function') throw new TypeError('subscribe: handler must be a function');
    const group = opts.group !== undefined ? opts.group : this.group;
    if (this._sub === null) this._sub = this._newSub();
    const sub = this._sub;
    this._handlers.push(handler);
    try {
      await this.client._subscribe(sub, group);
    } catch (err) {
      this._handlers = this._handlers.filter((h) => h !== handler);
      if (this._handlers.length === 0 && this._sub === sub && !sub.active) {
        this._sub = null;
        await this.client._unsubscribe(sub);
      }
      throw err;
    }
  }

  _newSub() {
    const sub = {
      channel: this.channel,
      name: undefined,
      group: undefined,
      active: false,
      dropped: false,
      retryTimer: null,
      deliver: (event) => {
        const handlers = this._handlers;
        for (const h of handlers) {
          // Each handler runs on its own, after the client finished reading;
          // its failure is reported and changes nothing else.
          Promise.resolve()
            .then(() => (this._sub === sub ? h(event.execution_id, event) : undefined))
            .catch((err) => this._report(err));
        }
      },
      // Run inside the client's read of the socket, and in a promise
      // callback: listeners that throw are reported like handlers.
      onRedis: (state) => emitGuarded(this, 'redis', [state], (err) => this._report(err, 'a "redis" listener')),
      onResubscribed: () => emitGuarded(this, 'resubscribed', [], (err) => this._report(err, 'a "resubscribed" listener')),
      onResubscribeError: (err) => this._report(err, 'a resubscription'),
    };
    return sub;
  }

  _report(err, what = 'a wake handler') {
    reportError(this, this.onError, what, err);
  }

  // Stops delivery at once and unsubscribes.
  async unsubscribe() {
    const sub = this._sub;
    this._sub = null;
    this._handlers = [];
    if (sub !== null) await this.client._unsubscribe(sub);
  }

  // Unsubscribes, and closes the Client this signaler made for itself.
  async close() {
    try {
      await this.unsubscribe();
    } finally {
      if (this._owned) await this.client.close();
    }
  }
}
