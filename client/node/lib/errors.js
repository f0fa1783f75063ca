// Every error this package rejects with is an FmredisError carrying a
// `code`: the daemon's own code (docs/PROTOCOL.md §6) when the daemon said
// no, or one of the client-side codes below when the client gave up.

export class FmredisError extends Error {
  constructor(code, message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FmredisError';
    this.code = code;
    if (options.op !== undefined) this.op = options.op;
  }
}

// The connection dropped while the request was in flight: the daemon may or
// may not have acted on it (and released every lock the connection held).
export class ConnectionLostError extends FmredisError {
  constructor(message, options) {
    super('connection_lost', message, options);
    this.name = 'ConnectionLostError';
  }
}

// close() was called before the request was answered.
export class ClientClosedError extends FmredisError {
  constructor(message, options) {
    super('closed', message, options);
    this.name = 'ClientClosedError';
  }
}

// No reply within the client's own deadline (the daemon's bound plus a
// margin); the late reply, if one comes, is dropped.
export class ClientTimeoutError extends FmredisError {
  constructor(message, options) {
    super('client_timeout', message, options);
    this.name = 'ClientTimeoutError';
  }
}

// The daemon sent something this client cannot read, or speaks another
// protocol version.
export class ProtocolError extends FmredisError {
  constructor(message, options) {
    super('protocol_error', message, options);
    this.name = 'ProtocolError';
  }
}

// A manager's keyPrefix is not the daemon's lock_key_prefix or
// cache_key_prefix: the operation would have used other keys than the
// caller asked for.
export class KeyPrefixError extends FmredisError {
  constructor(message, options) {
    super('key_prefix_mismatch', message, options);
    this.name = 'KeyPrefixError';
  }
}

// withLock(): another holder kept the lock through every retry.
export class LockNotAcquiredError extends FmredisError {
  constructor(key, options) {
    super('lock_not_acquired', `lock "${key}" is held by another holder`, options);
    this.name = 'LockNotAcquiredError';
    this.key = key;
  }
}

// withLock(): the lock stopped being ours while fn ran. `reason` is
// "lock.lost" (the daemon's extension found it gone), "connection_lost"
// (the connection dropped, which releases it), "closed" (close()), or what
// the release answered: "not_held" (expired or deleted) or "not_owner"
// (another token holds it).
export class LockLostError extends FmredisError {
  constructor(key, reason, options) {
    super('lock_lost', `lock "${key}" was lost while held (${reason})`, options);
    this.name = 'LockLostError';
    this.key = key;
    this.reason = reason;
  }
}
