// One connection to fmredisd, shared by any number of managers.
//
// Frames are a 4-byte big-endian length and one JSON object (PROTOCOL.md
// §2). Requests are pipelined on one socket and carry an increasing integer
// id; replies, which may come in another order, are matched by it. Frames
// with "event" (wakes, Redis link changes, lost locks) are dispatched as
// they arrive.
//
// The connection's life: connect, send hello, and once hello is answered
// (its `layout` is what the managers' keyPrefix checks need) restore the
// wake subscriptions and send what was queued. When the socket drops, the
// requests in flight on it reject with ConnectionLostError (the daemon has
// released the connection's locks by then), and the client connects again
// with a capped exponential backoff (at the cap when the daemon refused
// the connection). Requests made while it is not connected wait in a
// queue, each bounded by its own deadline.

import net from 'node:net';
import { EventEmitter } from 'node:events';

import {
  ClientClosedError,
  ClientTimeoutError,
  ConnectionLostError,
  FmredisError,
  ProtocolError,
} from './errors.js';
import { parseExact } from './json.js';
import { emitGuarded, reportError } from './listeners.js';
import { MAX_MS, countOption, intOption, isPlainObject } from './options.js';

export const DEFAULT_SOCKET = '/run/fmredisd/fmredisd.sock';
const PROTOCOL = 1;
// The daemon answers within request_timeout_ms (5000 by default); this
// margin lets its own timeout or redis_unavailable arrive first.
const DEFAULT_TIMEOUT = 10000;
// The contract's lock_retry_delay_ms and lock_max_retries, used to size the
// deadline of an acquire that leaves them to the daemon.
const CONTRACT_RETRY_DELAY = 100;
const CONTRACT_MAX_RETRIES = 50;
// The daemon's defaults of max_inflight_per_client and max_frame_bytes.
const DEFAULT_MAX_INFLIGHT = 256;
const DEFAULT_MAX_REQUEST_BYTES = 1 << 20;
const DEFAULT_MAX_REPLY_BYTES = 256 << 20;
const DEFAULT_RECONNECT_DELAY = 50;
const DEFAULT_RECONNECT_MAX_DELAY = 2000;
const CLOSE_GRACE = 1000;

// JSON.stringify writes a lone surrogate as a \udXXX escape, and writes
// \u escapes for nothing else in that range. The daemon refuses such text
// as bad_json, with no id in the reply, so it must never be sent.
const LONE_SURROGATE = /(?<!\\)(?:\\\\)*\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}/;
// The daemon reads JSON nested at most this deep, the request object
// being the first level (PROTOCOL.md §16.1), and answers deeper with
// bad_json, again without an id.
const MAX_DEPTH = 512;

// Whether the JSON text nests arrays and objects deeper than max.
function nestsDeeper(text, max) {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // To the closing quote: the next one not escaped by a backslash.
      let q = i;
      for (;;) {
        q = text.indexOf('"', q + 1);
        let b = q - 1;
        while (text.charCodeAt(b) === 0x5c) b--;
        if ((q - 1 - b) % 2 === 0) break;
      }
      i = q;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return false;
}

export class Client extends EventEmitter {
  constructor(options = {}) {
    super();
    this.socketPath = options.socket || process.env.FMREDISD_SOCKET || DEFAULT_SOCKET;
    this.clientName = options.clientName;
    this.timeout = intOption('timeout', options.timeout, DEFAULT_TIMEOUT);
    this.bigNumbers = options.bigNumbers === true;
    this.maxInflight = countOption('maxInflight', options.maxInflight, DEFAULT_MAX_INFLIGHT);
    this.maxRequestBytes = countOption('maxRequestBytes', options.maxRequestBytes, DEFAULT_MAX_REQUEST_BYTES);
    this.maxReplyBytes = countOption('maxReplyBytes', options.maxReplyBytes, DEFAULT_MAX_REPLY_BYTES);
    this.reconnectDelay = intOption('reconnectDelay', options.reconnectDelay, DEFAULT_RECONNECT_DELAY);
    this.reconnectMaxDelay = intOption('reconnectMaxDelay', options.reconnectMaxDelay, DEFAULT_RECONNECT_MAX_DELAY);

    // "connecting" (socket or hello under way), "ready", "waiting" (for
    // the reconnect timer) or "closed".
    this.state = 'connecting';
    // From the current connection's hello: the daemon's name, and its
    // layout (key prefixes, channels), or null when it reports none.
    this.server = undefined;
    this.layout = undefined;

    this._nextId = 1;
    this._sock = null;
    // Requests not sent yet, oldest first, from _queueHead on. One that
    // expires is only marked (req.queued = false) and skipped later, so an
    // expiry costs O(1) however long the queue; _queued counts the others.
    this._queue = [];
    this._queueHead = 0;
    this._queued = 0;
    this._pending = new Map();      // id -> request sent on this socket
    this._inflight = 0;             // sent and unanswered, timed-out ones too
    this._orphans = new Map();      // id -> request that timed out after sending
    this._parked = [];              // releases refused with too_many_requests
    this._subs = new Map();         // channel -> subscription (client-side registry)
    this._autoLocks = new Map();    // key -> held auto_extend lock
    this._out = [];
    this._flushing = false;
    this._parts = null;             // the chunks of a frame split across reads
    this._partsLen = 0;
    this._attempt = 0;
    this._sockConnected = false;    // the current socket's connect came
    this._reconnectTimer = null;
    this._lastError = null;         // why the socket failed, for the messages
    this._lastConnectError = '';
    this._readyWaiters = [];
    this._closed = null;            // close()'s promise
    this._closedWith = null;        // the error a fatal close rejects with
    this._connect();
  }

  // ---- connection ------------------------------------------------------

  _connect() {
    this.state = 'connecting';
    this._sockConnected = false;
    const sock = net.createConnection(this.socketPath);
    this._sock = sock;
    sock.on('connect', () => this._onConnect(sock));
    sock.on('data', (chunk) => this._onData(sock, chunk));
    sock.on('error', (err) => {
      this._lastError = err;
    });
    sock.on('close', () => this._onClose(sock));
  }

  _onConnect(sock) {
    if (sock !== this._sock) return;
    this._sockConnected = true;
    const fields = this.clientName === undefined ? {} : { client_name: this.clientName };
    const req = this._make('hello', fields, { timeout: this.timeout });
    if (req.error) {
      this._fatal(req.error);
      return;
    }
    req.then = (reply) => this._onHello(reply);
    req.fail = (err) => {
      // A name the daemon refuses will be refused again: give up. Anything
      // else (no answer in time, shutting_down) is worth a new connection.
      if (err.code === 'bad_request') this._fatal(err);
      else if (err.code !== 'connection_lost' && err.code !== 'closed' && sock === this._sock) {
        this._lastError = err;
        sock.destroy();
      }
    };
    req.timer = setTimeout(() => this._expire(req), req.timeout);
    this._send(req);
  }

  _onHello(reply) {
    if (reply.protocol !== PROTOCOL) {
      this._fatal(new ProtocolError(`fmredisd speaks protocol ${reply.protocol}, this client ${PROTOCOL}`));
      return;
    }
    this.server = reply.server;
    this.layout = reply.layout && typeof reply.layout === 'object' ? reply.layout : null;
    this.state = 'ready';
    this._attempt = 0;
    // Those whose first subscribe is still on its way (queued, or failed
    // with the connection) are left to it.
    for (const sub of this._subs.values()) if (sub.active) this._sendSubscribe(sub, sub.group);
    this._drain();
    const waiters = this._readyWaiters;
    this._readyWaiters = [];
    for (const w of waiters) w.resolve();
    this._emitSafe('connect', { server: this.server, layout: this.layout });
  }

  _onClose(sock) {
    if (sock !== this._sock) return;
    this._sock = null;
    this._parts = null;
    this._out = [];
    const wasReady = this.state === 'ready';
    // Refused (see below), unless the daemon said why.
    const refused = this._sockConnected && !wasReady;
    let why = this._lastError ? `: ${this._lastError.message}` : '';
    if (refused && !(this._lastError instanceof FmredisError)) {
      why = `: fmredisd closed the connection before answering hello${this._lastError ? ` (${this._lastError.message})` : ''}`;
    }
    this._lastError = null;
    const pending = [...this._pending.values(), ...this._parked];
    this._pending.clear();
    this._orphans.clear();
    this._parked = [];
    this._inflight = 0;
    this._loseLocks('connection_lost');
    for (const req of pending) {
      clearTimeout(req.timer);
      this._fail(req, new ConnectionLostError(`connection to fmredisd lost before the reply to ${req.op}${why}`, { op: req.op }));
    }
    if (this.state === 'closed') return;
    for (const sub of this._subs.values()) clearTimeout(sub.retryTimer);
    this.state = 'waiting';
    this._attempt++;
    // A connection that ended before its hello was answered was refused
    // (too_many_clients: the daemon is at max_clients), or the daemon
    // closed it at once: its error frame may even be lost, since the
    // hello written after it fails with EPIPE and Node then drops what
    // was not read yet. A full daemon gains nothing from a crowd of quick
    // retries: such a connection is tried again after reconnectMaxDelay.
    const delay = refused ? this.reconnectMaxDelay
      : Math.min(this.reconnectDelay * 2 ** Math.min(this._attempt - 1, 30), this.reconnectMaxDelay);
    this._lastConnectError = why;
    if (wasReady) this._emitSafe('disconnect', new ConnectionLostError(`connection to fmredisd lost${why}`));
    this._emitSafe('reconnecting', { attempt: this._attempt, delay });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this.state === 'waiting') this._connect();
    }, delay);
  }

  // Every event of the client goes to its listeners through here (see
  // listeners.js): a listener that throws or rejects is reported on
  // 'error' when someone listens to that, else on stderr.
  _emitSafe(name, ...args) {
    emitGuarded(this, name, args, (err) => reportError(this, undefined, `a listener of the client's "${name}" event`, err));
  }

  // An error no reconnect can cure (a refused hello, another protocol):
  // the client closes and every request rejects with it.
  _fatal(err) {
    this._emitSafe('disconnect', err);
    this._shutdown(err);
  }

  // Resolves once the client is connected and hello is answered (at once
  // when it is); rejects when it closes first or after `timeout` ms.
  ready(timeout = this.timeout) {
    try {
      intOption('timeout', timeout);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.state === 'ready') return Promise.resolve();
    if (this.state === 'closed') return Promise.reject(this._closedError('ready'));
    return new Promise((resolve, reject) => {
      const w = {
        resolve: () => {
          clearTimeout(w.timer);
          resolve();
        },
        reject: (err) => {
          clearTimeout(w.timer);
          reject(err);
        },
      };
      w.timer = setTimeout(() => {
        this._readyWaiters = this._readyWaiters.filter((x) => x !== w);
        reject(new ClientTimeoutError(`not connected to fmredisd at ${this.socketPath} within ${timeout} ms${this._lastConnectError || ''}`));
      }, timeout);
      this._readyWaiters.push(w);
    });
  }

  _closedError(op) {
    return this._closedWith || new ClientClosedError(`the client is closed${op ? ` (${op})` : ''}`, { op });
  }

  // Ends the connection. Requests not answered yet reject with
  // ClientClosedError; the daemon releases this connection's locks taken
  // with on_disconnect "release". Nothing of the client keeps the process
  // alive afterwards. Resolves once the socket is closed.
  close() {
    if (this._closed) return this._closed;
    this._shutdown(null);
    return this._closed;
  }

  // The name ioredis and node-redis give close(), so that code written
  // against them (`await redis.quit()`) runs unchanged.
  quit() {
    return this.close();
  }

  _shutdown(err) {
    if (this._closed) return;
    this.state = 'closed';
    this._closedWith = err;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    const queued = this._takeQueue();
    const pending = [...this._pending.values(), ...this._parked];
    this._pending.clear();
    this._orphans.clear();
    this._parked = [];
    this._loseLocks('closed');
    for (const sub of this._subs.values()) clearTimeout(sub.retryTimer);
    this._subs.clear();
    for (const req of [...queued, ...pending]) {
      clearTimeout(req.timer);
      this._fail(req, err || new ClientClosedError(`the client was closed before the reply to ${req.op}`, { op: req.op }));
    }
    const waiters = this._readyWaiters;
    this._readyWaiters = [];
    for (const w of waiters) w.reject(err || new ClientClosedError('the client was closed'));
    const sock = this._sock;
    this._sock = null;
    if (sock === null || sock.destroyed) {
      this._closed = Promise.resolve();
      return;
    }
    this._closed = new Promise((resolve) => {
      const grace = setTimeout(() => sock.destroy(), CLOSE_GRACE);
      grace.unref();
      sock.once('close', () => {
        clearTimeout(grace);
        resolve();
      });
      sock.end();
    });
  }

  // ---- requests --------------------------------------------------------

  // Sends {op, id, ...fields} and resolves with the reply (ok:true), or
  // rejects with FmredisError (the daemon's code) or a client-side error.
  // opts.timeout: ms for this request (the client's timeout by default).
  // What the daemon would answer without an id (fields that are not an
  // object, or that hold op or id themselves) is refused here instead,
  // with bad_request: such a reply could not be matched to its request.
  call(op, fields = {}, opts = {}) {
    try {
      intOption('timeout', opts.timeout);
    } catch (err) {
      return Promise.reject(err);
    }
    if (typeof op !== 'string' || op === '') {
      return Promise.reject(new FmredisError('bad_request', 'call: op must be a non-empty string'));
    }
    if (!isPlainObject(fields)) {
      return Promise.reject(new FmredisError('bad_request', `${op}: fields must be a plain object`, { op }));
    }
    if (Object.hasOwn(fields, 'op') || Object.hasOwn(fields, 'id')) {
      return Promise.reject(new FmredisError('bad_request', `${op}: fields must not hold "op" or "id", which the client sets`, { op }));
    }
    return this._request(op, fields, opts);
  }

  ping(opts = {}) {
    return this._request('ping', opts.redis ? { redis: true } : {}, {}).then((r) => r.redis);
  }

  stats() {
    return this._request('stats', {}, {});
  }

  // opts: timeout (ms), raw (a member name and its JSON text, put into the
  // request as it is), precheck ((layout, server) => error or null, run
  // before the request is sent), exact (parse the reply with parseExact),
  // then (reply => result, run as the reply is read, before any later
  // frame).
  _request(op, fields, opts) {
    return new Promise((resolve, reject) => {
      if (this.state === 'closed') {
        reject(this._closedError(op));
        return;
      }
      const req = this._make(op, fields, opts);
      if (req.error) {
        reject(req.error);
        return;
      }
      req.resolve = resolve;
      req.reject = reject;
      req.timer = setTimeout(() => this._expire(req), req.timeout);
      if (this.state === 'ready' && this._queued === 0 && this._inflight < this.maxInflight) {
        if (this._precheck(req)) this._send(req);
      } else {
        req.queued = true;
        this._queue.push(req);
        this._queued++;
      }
    });
  }

  _make(op, fields, opts) {
    const id = this._nextId;
    this._nextId = id === Number.MAX_SAFE_INTEGER ? 1 : id + 1;
    const req = {
      id,
      op,
      frame: null,
      timeout: opts.timeout ?? this.timeout,
      precheck: opts.precheck,
      exact: opts.exact === true,
      then: opts.then,
      fail: null,
      key: op === 'lock.acquire' ? fields.key : undefined,
      resolve: null,
      reject: null,
      timer: null,
      error: null,
    };
    let body;
    try {
      const json = JSON.stringify(fields);
      if (json[0] !== '{') {
        req.error = new FmredisError('bad_request', `${op}: fields must be written as a JSON object (a toJSON made them ${json})`, { op });
        return req;
      }
      body = `{"op":${JSON.stringify(op)},"id":${id}`;
      if (json.length > 2) body += ',' + json.slice(1, -1);
      if (opts.raw) body += `,${JSON.stringify(opts.raw[0])}:${opts.raw[1]}`;
      body += '}';
    } catch (err) {
      req.error = err;
      return req;
    }
    if (body.includes('\\u') && LONE_SURROGATE.test(body)) {
      req.error = new FmredisError('bad_request', `${op}: a string holds an unpaired UTF-16 surrogate, which is not valid UTF-8`, { op });
      return req;
    }
    // Nesting past MAX_DEPTH takes at least twice as many brackets.
    if (body.length > 2 * MAX_DEPTH && nestsDeeper(body, MAX_DEPTH)) {
      req.error = new FmredisError('bad_request', `${op}: the request nests arrays and objects deeper than ${MAX_DEPTH} levels (the request itself is the first), which the daemon does not read`, { op });
      return req;
    }
    const n = Buffer.byteLength(body);
    if (n > this.maxRequestBytes) {
      req.error = new FmredisError('frame_too_large', `${op}: the request is ${n} bytes, above maxRequestBytes (${this.maxRequestBytes}, the daemon's max_frame_bytes); a larger frame would end the connection`, { op });
      return req;
    }
    const frame = Buffer.allocUnsafe(4 + n);
    frame.writeUInt32BE(n, 0);
    frame.write(body, 4);
    req.frame = frame;
    return req;
  }

  _precheck(req) {
    if (!req.precheck) return true;
    const err = req.precheck(this.layout, this.server);
    if (!err) return true;
    clearTimeout(req.timer);
    req.reject(err);
    return false;
  }

  _send(req) {
    this._pending.set(req.id, req);
    this._inflight++;
    this._out.push(req.frame);
    req.frame = null;
    if (!this._flushing) {
      this._flushing = true;
      process.nextTick(() => this._flush());
    }
  }

  // Writes what this tick's requests queued, in one system call.
  _flush() {
    this._flushing = false;
    const out = this._out;
    this._out = [];
    const sock = this._sock;
    if (sock === null || out.length === 0) return;
    if (out.length === 1) {
      sock.write(out[0]);
      return;
    }
    sock.cork();
    for (const b of out) sock.write(b);
    sock.uncork();
  }

  _drain() {
    while (this.state === 'ready' && this._queued > 0 && this._inflight < this.maxInflight) {
      const req = this._queue[this._queueHead];
      this._queue[this._queueHead++] = undefined;
      if (!req.queued) continue;
      this._unqueue(req);
      if (this._precheck(req)) this._send(req);
    }
  }

  _unqueue(req) {
    req.queued = false;
    if (--this._queued > 0) {
      // Drop the sent and expired entries before the head once they are
      // most of the array.
      if (this._queueHead > 1024 && this._queueHead * 2 > this._queue.length) {
        this._queue = this._queue.slice(this._queueHead);
        this._queueHead = 0;
      }
    } else {
      this._queue = [];
      this._queueHead = 0;
    }
  }

  // The requests still queued, in order; the queue is left empty.
  _takeQueue() {
    const out = [];
    for (let i = this._queueHead; i < this._queue.length; i++) {
      const req = this._queue[i];
      if (req !== undefined && req.queued) {
        req.queued = false;
        out.push(req);
      }
    }
    this._queue = [];
    this._queueHead = 0;
    this._queued = 0;
    return out;
  }

  _expire(req) {
    req.timer = null;
    if (req.queued) {
      this._unqueue(req);
      req.frame = null;
    } else if (this._pending.get(req.id) === req) {
      // Still counted in flight until its late reply comes, since the
      // daemon still counts it.
      this._pending.delete(req.id);
      this._orphans.set(req.id, req);
    } else {
      return;
    }
    const where = this.state === 'ready' ? '' : ` (not connected to ${this.socketPath}${this._lastConnectError || ''})`;
    this._fail(req, new ClientTimeoutError(`no reply to ${req.op} within ${req.timeout} ms${where}`, { op: req.op }));
  }

  _fail(req, err) {
    if (req.fail) req.fail(err);
    else if (req.reject) req.reject(err);
  }

  // ---- reading ---------------------------------------------------------

  // Frames are read straight out of each chunk. A frame split across
  // chunks is gathered in _parts and joined alone, so the rest of the
  // chunk that completes it is never copied. A frame that ends the
  // connection (one it cannot read, or the daemon's refusal) ends the
  // reading of the chunk too: sock.destroyed is set at once, this._sock
  // only at 'close'.
  _onData(sock, chunk) {
    if (sock !== this._sock || sock.destroyed) return;
    let off = 0;
    if (this._parts !== null) {
      this._parts.push(chunk);
      this._partsLen += chunk.length;
      if (this._partsLen < 4) return;
      const n = this._partsHeader();
      if (!this._frameSizeOk(sock, n)) return;
      if (this._partsLen < 4 + n) return;
      off = 4 + n - (this._partsLen - chunk.length);
      const parts = this._parts;
      parts[parts.length - 1] = chunk.subarray(0, off);
      this._parts = null;
      this._onFrame(sock, Buffer.concat(parts, 4 + n).toString('utf8', 4));
      if (sock !== this._sock || sock.destroyed) return;
    }
    while (chunk.length - off >= 4) {
      const n = chunk.readUInt32BE(off);
      if (!this._frameSizeOk(sock, n)) return;
      if (chunk.length - off - 4 < n) break;
      const text = chunk.toString('utf8', off + 4, off + 4 + n);
      off += 4 + n;
      this._onFrame(sock, text);
      if (sock !== this._sock || sock.destroyed) return;
    }
    if (off < chunk.length) {
      this._parts = [chunk.subarray(off)];
      this._partsLen = chunk.length - off;
    }
  }

  // The length of the frame being gathered, whose 4 header bytes may
  // themselves be split.
  _partsHeader() {
    let n = 0;
    let got = 0;
    for (const part of this._parts) {
      for (let i = 0; i < part.length && got < 4; i++, got++) n = n * 256 + part[i];
      if (got === 4) return n;
    }
    return n;
  }

  _frameSizeOk(sock, n) {
    if (n > 0 && n <= this.maxReplyBytes) return true;
    this._protocolError(sock, `fmredisd sent a frame of ${n} bytes (limit ${this.maxReplyBytes})`);
    return false;
  }

  _protocolError(sock, message) {
    this._lastError = new ProtocolError(message);
    sock.destroy();
  }

  _onFrame(sock, text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      this._protocolError(sock, `fmredisd sent a frame that is not JSON: ${err.message}`);
      return;
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      this._protocolError(sock, 'fmredisd sent a frame that is not a JSON object');
      return;
    }
    if (msg.ok === undefined) {
      if (typeof msg.event === 'string') this._onEvent(msg);
      return;
    }
    const id = msg.id;
    if (id === undefined) {
      this._onAnonymous(sock, msg);
      return;
    }
    let req = this._pending.get(id);
    const orphan = req === undefined;
    if (orphan) {
      req = this._orphans.get(id);
      if (req === undefined) return;
      this._orphans.delete(id);
    } else {
      this._pending.delete(id);
    }
    this._inflight--;
    clearTimeout(req.timer);
    if (this._parkIfRefused(req, msg)) return;
    // Any other reply frees a place in the daemon: a release refused for
    // want of one has it first.
    this._unpark();
    if (orphan) this._onOrphanReply(req, msg);
    else this._settle(req, msg, text);
    this._drain();
  }

  _settle(req, msg, text) {
    if (msg.ok !== true) {
      const e = msg.error || {};
      this._fail(req, new FmredisError(e.code || 'internal', `${req.op}: ${e.message || 'failed'}`, { op: req.op }));
      return;
    }
    let result = msg;
    try {
      if (req.exact) result = parseExact(text);
      if (req.then) result = req.then(result);
    } catch (err) {
      this._fail(req, err);
      return;
    }
    if (req.resolve) req.resolve(result);
  }

  // A reply without an id. Every request of this client carries one, and
  // what the daemon would answer without it (a body it cannot read, an id
  // it cannot use, nesting too deep) is refused before sending; so such a
  // reply means the two sides disagree about a request that cannot be
  // named. Leaving it would leave that request to its deadline and its
  // slot taken for good: the connection ends as on any protocol error,
  // the requests in flight reject with ConnectionLostError at once, and
  // the client connects again. (The daemon also ends the connection
  // itself after the framing errors bad_frame and frame_too_large.)
  //
  // Two such replies are the daemon refusing a new connection, before it
  // read anything. forbidden (this process's uid and gid are not in
  // allow_uids/allow_gids) would be said to every new connection: the
  // client closes with it, as for a refused hello, rather than hide the
  // misconfiguration behind a reconnect loop and timeouts.
  // too_many_clients (the daemon is at max_clients) may pass: the client
  // tries again, after reconnectMaxDelay (see _onClose).
  _onAnonymous(sock, msg) {
    const e = msg.error !== null && typeof msg.error === 'object' ? msg.error : {};
    if (e.code === 'forbidden') {
      this._fatal(new FmredisError('forbidden', `fmredisd refused this connection: ${e.message}`));
      return;
    }
    if (e.code === 'too_many_clients') {
      this._lastError = new FmredisError('too_many_clients', `fmredisd refused this connection: ${e.message}`);
      sock.destroy();
      return;
    }
    const what = e.code === undefined ? 'a reply without an id' : `${e.code}: ${e.message}`;
    this._protocolError(sock, `fmredisd answered a request without naming it (${what})`);
  }

  // A lock.acquire the caller gave up on that took the lock after all:
  // nobody knows its token, so it is given back at once (and it may have
  // asked for auto_extend, so as _releaseNow gives it back).
  _onOrphanReply(req, msg) {
    if (req.op === 'lock.acquire' && msg.ok === true && typeof msg.token === 'string') {
      this._releaseNow(req.key, msg.token).catch(() => {});
    }
  }

  _onEvent(msg) {
    switch (msg.event) {
      case 'wake': {
        const sub = this._subs.get(msg.channel);
        if (sub !== undefined && sub.active) sub.deliver(msg);
        this._emitSafe('wake', msg);
        break;
      }
      case 'redis':
        for (const sub of this._subs.values()) if (sub.active) sub.onRedis(msg.state);
        this._emitSafe('redis', msg.state);
        break;
      case 'lock.lost': {
        const held = this._autoLocks.get(msg.key);
        if (held !== undefined) {
          this._autoLocks.delete(msg.key);
          held.lose('lock.lost');
        }
        this._emitSafe('lock.lost', msg.key);
        break;
      }
      default:
        break;
    }
    this._emitSafe('event', msg);
  }

  // ---- locks held with auto_extend ---------------------------------------

  // Acquires with auto_extend and, in the same turn as the reply is read,
  // starts watching the lock, so a lock.lost right behind the reply is not
  // missed. Resolves with null, or {token, fence, held}; held.lost tells
  // whether it was lost, held.onLost(reason) is called once when it is.
  _acquireWatched(fields, opts) {
    return this._request('lock.acquire', fields, {
      ...opts,
      then: (reply) => {
        if (typeof reply.token !== 'string') return null;
        const held = {
          key: fields.key,
          lost: null,
          onLost: null,
          lose: (reason) => {
            if (held.lost !== null) return;
            held.lost = reason;
            if (held.onLost) held.onLost(reason);
          },
        };
        this._autoLocks.set(fields.key, held);
        return { token: reply.token, fence: reply.fence, held };
      },
    });
  }

  // Releases a lock this connection holds, such as withLock's, which the
  // daemon extends (auto_extend) until it receives the release: so the
  // release must reach it. It goes out at once, ahead of the queue and
  // past maxInflight, since a queued one could expire unsent and leave the
  // lock extended for as long as the connection lasts. When that is more
  // than the daemon's max_inflight_per_client and it answers
  // too_many_requests, the release waits for the next reply (which frees
  // a place) and goes again, for as long as the connection lasts: its end
  // releases the lock anyway. Resolves with the reply.
  _releaseNow(key, token) {
    return new Promise((resolve, reject) => {
      if (this.state !== 'ready') {
        reject(this.state === 'closed' ? this._closedError('lock.release')
          : new ConnectionLostError('lock.release: the connection that holds the lock is gone (and the daemon released it, unless it was taken with on_disconnect "keep")', { op: 'lock.release' }));
        return;
      }
      const req = this._make('lock.release', { key, token }, {});
      if (req.error) {
        reject(req.error);
        return;
      }
      req.resolve = resolve;
      req.reject = reject;
      req.again = req.frame;
      req.timer = setTimeout(() => this._expire(req), req.timeout);
      this._send(req);
    });
  }

  // A release of _releaseNow refused with too_many_requests waits in
  // _parked, without a deadline: the daemon answers each of the requests
  // that fill its places within its own bound.
  _parkIfRefused(req, msg) {
    if (req.again === undefined || msg.ok !== false || msg.error?.code !== 'too_many_requests') return false;
    req.timer = null;
    this._parked.push(req);
    return true;
  }

  _unpark() {
    const req = this._parked.shift();
    if (req === undefined) return;
    req.frame = req.again;
    req.timer = setTimeout(() => this._expire(req), req.timeout);
    this._send(req);
  }

  _forgetLock(held) {
    if (this._autoLocks.get(held.key) === held) this._autoLocks.delete(held.key);
  }

  _loseLocks(reason) {
    const held = [...this._autoLocks.values()];
    this._autoLocks.clear();
    for (const h of held) h.lose(reason);
  }

  // The deadline of an acquire: the client's timeout plus the wait the
  // daemon may spend retrying, at most the longest delay setTimeout keeps
  // (some 24 days; NaN from values the daemon will refuse gets it too).
  acquireTimeout(retryDelay, maxRetries) {
    const t = this.timeout + (retryDelay ?? CONTRACT_RETRY_DELAY) * (maxRetries ?? CONTRACT_MAX_RETRIES);
    return t <= MAX_MS ? t : MAX_MS;
  }

  // ---- wake subscriptions ------------------------------------------------

  // sub: {channel (as requested, or undefined for the daemon's default),
  // group, deliver(event), onRedis(state), onResubscribed(),
  // onResubscribeError(err)}. Registered under the channel's name, which
  // the reply names; kept across reconnects until _unsubscribe.
  //
  // The daemon keeps one subscription per channel and connection (another
  // subscribe would only replace its group), so one sub per channel: the
  // name is reserved for sub before the request goes out, in the same
  // turn as it is checked, and of two subscribers racing for a channel the
  // second is refused. The name is the channel asked for, else the
  // daemon's wake_channel, which hello reports: a subscribe made before
  // the first hello waits for it.
  async _subscribe(sub, group) {
    if (sub.name === undefined || this._subs.get(sub.name) !== sub) {
      if (sub.channel === undefined && this.layout === undefined) await this.ready();
      if (sub.dropped) return undefined;
      const name = sub.channel ?? this.layout?.wake_channel;
      if (name === undefined) {
        throw new FmredisError('bad_request', `wake.subscribe: ${this.server || 'the daemon'} does not report its wake_channel (its hello has no layout): give the subscriber a channel`, { op: 'wake.subscribe' });
      }
      const other = this._subs.get(name);
      if (other !== undefined && other !== sub) {
        throw new FmredisError('bad_request', `wake.subscribe: this Client already has a subscriber on "${name}"; a connection subscribes to a channel once, so use another Client`, { op: 'wake.subscribe' });
      }
      sub.name = name;
      this._subs.set(name, sub);
    }
    return this._sendSubscribe(sub, group, true);
  }

  _sendSubscribe(sub, group, first = false) {
    const fields = {};
    if (sub.channel !== undefined) fields.channel = sub.channel;
    if (group !== undefined) fields.group = group;
    const p = this._request('wake.subscribe', fields, {
      then: (reply) => {
        if (sub.dropped) {
          // Unsubscribed while this was on its way: undo it.
          if (this._subs.get(reply.channel) === undefined) {
            this._request('wake.unsubscribe', { channel: reply.channel }, {}).catch(() => {});
          }
          return reply.channel;
        }
        // The daemon's wake_channel changed across a reconnect.
        if (sub.name !== reply.channel && this._subs.get(sub.name) === sub) this._subs.delete(sub.name);
        sub.name = reply.channel;
        sub.group = group;
        sub.active = true;
        this._subs.set(reply.channel, sub);
        return reply.channel;
      },
    });
    if (first) return p;
    p.then(
      () => {
        if (!sub.dropped) sub.onResubscribed();
      },
      (err) => {
        if (this._subs.get(sub.name) !== sub || this.state === 'closed') return;
        sub.onResubscribeError(err);
        if (this.state !== 'ready') return;
        // Redis may be down: try again while the connection lasts.
        clearTimeout(sub.retryTimer);
        sub.retryTimer = setTimeout(() => {
          if (this._subs.get(sub.name) === sub && this.state === 'ready') this._sendSubscribe(sub, sub.group);
        }, this.reconnectMaxDelay);
      },
    );
    return p;
  }

  // Stops delivery at once; tells the daemon when connected (a connection
  // that dropped has lost its subscriptions already). A first subscribe
  // still on its way is undone when its reply comes.
  _unsubscribe(sub) {
    const wasActive = sub.active;
    sub.active = false;
    sub.dropped = true;
    clearTimeout(sub.retryTimer);
    if (sub.name === undefined || this._subs.get(sub.name) !== sub) return Promise.resolve();
    this._subs.delete(sub.name);
    if (!wasActive || this.state !== 'ready') return Promise.resolve();
    return this._request('wake.unsubscribe', { channel: sub.name }, {}).then(() => undefined);
  }
}

export function createClient(options) {
  return new Client(options);
}
