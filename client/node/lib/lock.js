// LockManager: the @flowmonkey/redis RedisLockManager API over fmredisd's
// lock.* operations. The daemon waits and retries an acquire itself, so an
// acquire is one request; withLock lets the daemon extend the lock while fn
// runs (auto_extend) and learns from it when the lock is lost.

import { LockLostError, LockNotAcquiredError } from './errors.js';
import { attach, prefixCheck } from './manager.js';
import { intOption } from './options.js';

export class LockManager {
  constructor(client, options) {
    const a = attach(client, options, (o) => ({
      keyPrefix: o.keyPrefix,
      // Left undefined, the daemon's defaults apply.
      defaultTTL: intOption('defaultTTL', o.defaultTTL),
      retryDelay: intOption('retryDelay', o.retryDelay),
      maxRetries: intOption('maxRetries', o.maxRetries, undefined, 0),
      precheck: prefixCheck(o.keyPrefix, 'lock_key_prefix'),
    }));
    this.client = a.client;
    this._owned = a.owned;
    this.keyPrefix = a.settings.keyPrefix;
    this.defaultTTL = a.settings.defaultTTL;
    this.retryDelay = a.settings.retryDelay;
    this.maxRetries = a.settings.maxRetries;
    this._precheck = a.settings.precheck;
  }

  _acquireRequest(key, opts) {
    const fields = { key };
    const ttl = opts.ttl ?? this.defaultTTL;
    const retryDelay = opts.retryDelay ?? this.retryDelay;
    const maxRetries = opts.maxRetries ?? this.maxRetries;
    if (ttl !== undefined) fields.ttl = ttl;
    if (retryDelay !== undefined) fields.retry_delay = retryDelay;
    if (maxRetries !== undefined) fields.max_retries = maxRetries;
    if (opts.onDisconnect !== undefined) fields.on_disconnect = opts.onDisconnect;
    if (opts.autoExtend !== undefined) fields.auto_extend = opts.autoExtend;
    const timeout = this.client.acquireTimeout(retryDelay, maxRetries);
    return { fields, opts: { timeout, precheck: this._precheck } };
  }

  // The token, or null when another holder kept the lock through every
  // retry (retryDelay × maxRetries, waiting in the daemon).
  async acquire(key, ttl) {
    const lock = await this.acquireLock(key, { ttl });
    return lock === null ? null : lock.token;
  }

  // acquire() with every lock.acquire argument and the fence:
  // {token, fence} or null. opts: ttl, retryDelay, maxRetries (ms; the
  // manager's options by default), onDisconnect ("release" or "keep"),
  // autoExtend (bool).
  async acquireLock(key, opts = {}) {
    const { fields, opts: ro } = this._acquireRequest(key, opts);
    const reply = await this.client._request('lock.acquire', fields, ro);
    return typeof reply.token === 'string' ? { token: reply.token, fence: reply.fence } : null;
  }

  async release(key, token) {
    const reply = await this.client._request('lock.release', { key, token }, { precheck: this._precheck });
    return reply.released === true;
  }

  // Sets the lock's remaining TTL to ttl (the manager's defaultTTL, else
  // the daemon's lock_default_ttl_ms); false when token no longer holds it.
  async extend(key, token, ttl) {
    const fields = { key, token };
    ttl = ttl ?? this.defaultTTL;
    if (ttl !== undefined) fields.ttl = ttl;
    const reply = await this.client._request('lock.extend', fields, { precheck: this._precheck });
    return reply.extended === true;
  }

  async isLocked(key) {
    const reply = await this.client._request('lock.is_locked', { key }, { precheck: this._precheck });
    return reply.locked === true;
  }

  // Runs fn holding the lock, which the daemon extends every ttl/3 while
  // fn runs, and releases it afterwards, also when fn throws. fn gets an
  // AbortSignal that aborts (with a LockLostError) if the lock is lost
  // meanwhile, and {key, token, fence}. Rejects with LockNotAcquiredError
  // when the lock could not be had, and with LockLostError (after fn
  // settled; fn's own error as its cause) when it was lost while fn ran:
  // the daemon said so (lock.lost), the connection ended, or the release
  // found the lock gone or someone else's (not_held, not_owner).
  async withLock(key, fn, ttl) {
    if (typeof fn !== 'function') throw new TypeError('withLock: fn must be a function');
    const { fields, opts } = this._acquireRequest(key, { ttl, autoExtend: true });
    const got = await this.client._acquireWatched(fields, opts);
    if (got === null) throw new LockNotAcquiredError(key);
    const { token, fence, held } = got;
    const controller = new AbortController();
    // Deferred so that abort listeners never run inside the client's read
    // of the socket.
    const abort = (reason) => queueMicrotask(() => controller.abort(new LockLostError(key, reason)));
    if (held.lost !== null) abort(held.lost);
    else held.onLost = abort;

    let failed = false;
    let result;
    let error;
    try {
      result = await fn(controller.signal, { key, token, fence });
    } catch (err) {
      failed = true;
      error = err;
    }
    held.onLost = null;
    const lost = held.lost;
    if (lost !== null) throw new LockLostError(key, lost, failed ? { cause: error } : undefined);

    let reply;
    try {
      reply = await this.client._releaseNow(key, token);
    } catch (err) {
      // The daemon stopped extending the lock when it got the release,
      // whatever Redis answered (or the connection ended and released it):
      // a release that failed leaves the lock to its TTL.
      this.client._forgetLock(held);
      throw failed ? error : err;
    }
    this.client._forgetLock(held);
    // Lost before the daemon's next extension could tell: expired, or
    // taken from us.
    if (reply.released !== true) throw new LockLostError(key, reply.reason, failed ? { cause: error } : undefined);
    if (failed) throw error;
    return result;
  }

  // Closes the Client this manager made for itself; a shared one stays.
  async close() {
    if (this._owned) await this.client.close();
  }
}
