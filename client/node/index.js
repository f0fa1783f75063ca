// fmredis: the Node.js client of fmredisd, and drop-in replacements for the
// RedisLockManager, RedisWakeSignaler and RedisExecutionCache classes of
// @flowmonkey/redis. See README.md.

export { Client, createClient, DEFAULT_SOCKET } from './lib/client.js';
export { LockManager } from './lib/lock.js';
export { WakeSignaler } from './lib/wake.js';
export { ExecutionCache } from './lib/cache.js';
export {
  FmredisError,
  ConnectionLostError,
  ClientClosedError,
  ClientTimeoutError,
  ProtocolError,
  KeyPrefixError,
  LockNotAcquiredError,
  LockLostError,
} from './lib/errors.js';
export { ExactNumber, parseExact, stringifyExact } from './lib/json.js';

// The names @flowmonkey/redis exports.
export { LockManager as RedisLockManager } from './lib/lock.js';
export { WakeSignaler as RedisWakeSignaler } from './lib/wake.js';
export { ExecutionCache as RedisExecutionCache } from './lib/cache.js';
