// Type declarations of fmredis, the Node.js client of fmredisd.

import { EventEmitter } from 'node:events';

/** The socket used when neither the socket option nor $FMREDISD_SOCKET is set. */
export const DEFAULT_SOCKET: string;

/** The names the daemon uses in Redis, as its hello reports them. */
export interface Layout {
  lock_key_prefix: string;
  lock_release_channel: string;
  lock_value_format: string;
  cache_key_prefix: string;
  wake_channel: string;
}

export interface ClientOptions {
  /** Unix socket path; default $FMREDISD_SOCKET, then /run/fmredisd/fmredisd.sock. */
  socket?: string;
  /** Sent in hello; at most 128 bytes, no control characters. */
  clientName?: string;
  /** ms a request may take before it rejects with ClientTimeoutError (default 10000, above the daemon's 5000); lock acquires add retryDelay × maxRetries, up to 2147483647 in all. Every ms option is an integer from 1 to 2147483647, else TypeError. */
  timeout?: number;
  /** Parse cached executions exactly: big integers as BigInt, other inexact numbers as ExactNumber. */
  bigNumbers?: boolean;
  /** Requests in flight at once (default 256, the daemon's max_inflight_per_client); more wait in the client. A positive integer. */
  maxInflight?: number;
  /** Largest request frame, in bytes (default 1048576, the daemon's max_frame_bytes). */
  maxRequestBytes?: number;
  /** Largest reply frame accepted, in bytes (default 256 MiB). */
  maxReplyBytes?: number;
  /** First reconnect delay in ms (default 50), doubled per attempt... */
  reconnectDelay?: number;
  /** ...up to this (default 2000). */
  reconnectMaxDelay?: number;
}

export interface Reply {
  ok: true;
  id: number;
  [field: string]: unknown;
}

export interface WakeEvent {
  event: 'wake';
  channel: string;
  execution_id: string;
  timestamp?: number;
}

/** One pipelined connection to fmredisd; several managers may share it. */
export class Client extends EventEmitter {
  constructor(options?: ClientOptions);
  readonly socketPath: string;
  /** "connecting", "ready", "waiting" (to reconnect) or "closed". */
  readonly state: 'connecting' | 'ready' | 'waiting' | 'closed';
  /** The daemon's name, from hello (e.g. "fmredisd 0.1.0"). */
  readonly server: string | undefined;
  /** The daemon's layout from hello; null when it reports none. */
  readonly layout: Layout | null | undefined;
  readonly timeout: number;
  readonly bigNumbers: boolean;
  /** Resolves once connected and hello is answered; timeout in ms, 1 to 2147483647. */
  ready(timeout?: number): Promise<void>;
  /** Any operation: resolves with the ok:true reply, or rejects with FmredisError. fields must be a plain object without op or id (else bad_request, before sending). */
  call(op: string, fields?: Record<string, unknown>, opts?: { timeout?: number }): Promise<Reply>;
  ping(opts?: { redis?: boolean }): Promise<'up' | 'down'>;
  stats(): Promise<Reply>;
  /** The deadline an acquire with these values gets, in ms (at most 2147483647). */
  acquireTimeout(retryDelay?: number, maxRetries?: number): number;
  /** Ends the connection; unanswered requests reject with ClientClosedError. */
  close(): Promise<void>;
  /** close(), under the name ioredis and node-redis use. */
  quit(): Promise<void>;

  on(event: 'connect', listener: (info: { server: string; layout: Layout | null }) => void): this;
  on(event: 'disconnect', listener: (err: Error) => void): this;
  on(event: 'reconnecting', listener: (info: { attempt: number; delay: number }) => void): this;
  on(event: 'wake', listener: (event: WakeEvent) => void): this;
  on(event: 'redis', listener: (state: 'up' | 'down') => void): this;
  on(event: 'lock.lost', listener: (key: string) => void): this;
  on(event: 'event', listener: (event: Record<string, unknown>) => void): this;
  /** Only for a listener of the events above that threw or rejected (else that goes to stderr). */
  on(event: 'error', listener: (err: unknown) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

export function createClient(options?: ClientOptions): Client;

/** Connection settings a manager uses when it makes its own Client. */
export type OwnClientOptions = ClientOptions;

export interface LockManagerOptions extends OwnClientOptions {
  /** Must equal the daemon's lock_key_prefix, or every operation rejects with KeyPrefixError. */
  keyPrefix?: string;
  /** ms, 1 to 2147483647; absent: the daemon's lock_default_ttl_ms. */
  defaultTTL?: number;
  /** ms between the daemon's retries, 1 to 2147483647; absent: lock_retry_delay_ms. */
  retryDelay?: number;
  /** 0 to 2147483647; absent: lock_max_retries. */
  maxRetries?: number;
}

export interface HeldLock {
  key: string;
  token: string;
  fence: number;
}

export interface AcquireOptions {
  ttl?: number;
  retryDelay?: number;
  maxRetries?: number;
  onDisconnect?: 'release' | 'keep';
  autoExtend?: boolean;
}

export class LockManager {
  constructor(client?: Client | null, options?: LockManagerOptions);
  constructor(options: LockManagerOptions);
  readonly client: Client;
  acquire(key: string, ttl?: number): Promise<string | null>;
  release(key: string, token: string): Promise<boolean>;
  extend(key: string, token: string, ttl?: number): Promise<boolean>;
  withLock<T>(key: string, fn: (signal: AbortSignal, lock: HeldLock) => Promise<T> | T, ttl?: number): Promise<T>;
  isLocked(key: string): Promise<boolean>;
  /** acquire() with every lock.acquire argument, and the fence. */
  acquireLock(key: string, opts?: AcquireOptions): Promise<{ token: string; fence: number } | null>;
  /** Closes the Client the manager made for itself; a shared one stays open. */
  close(): Promise<void>;
}

export interface WakeSignalerOptions extends OwnClientOptions {
  /** Sent with every request; absent: the daemon's wake_channel. */
  channel?: string;
  /** The subscription's group (wakes round-robin among its subscribers on one daemon). */
  group?: string;
  /** Called with a handler's error (or a failed resubscription, or a "redis"/"resubscribed" listener's); else the "error" event, else stderr. */
  onError?: (err: unknown) => void;
  /** Ids per wake.signal_many request (default 10000, the daemon's max_batch). */
  maxBatch?: number;
}

export class WakeSignaler extends EventEmitter {
  constructor(client?: Client | null, options?: WakeSignalerOptions);
  constructor(options: WakeSignalerOptions);
  readonly client: Client;
  /** Resolves with PUBLISH's count of Redis subscribers. */
  signal(executionId: string): Promise<number>;
  /** Resolves with the number of wakes published. */
  signalMany(executionIds: string[]): Promise<number>;
  /** signal(); metadata is refused (code "unsupported"): a wake carries only the id. */
  publish(executionId: string, metadata?: undefined): Promise<number>;
  subscribe(handler: (executionId: string, event: WakeEvent) => unknown, opts?: { group?: string }): Promise<void>;
  unsubscribe(): Promise<void>;
  /** Unsubscribes, and closes the Client the signaler made for itself. */
  close(): Promise<void>;

  on(event: 'error', listener: (err: unknown) => void): this;
  on(event: 'redis', listener: (state: 'up' | 'down') => void): this;
  on(event: 'resubscribed', listener: () => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** A cached execution: an object with a string id. */
export interface Execution {
  id: string;
  [field: string]: unknown;
}

export interface ExecutionCacheOptions extends OwnClientOptions {
  /** Must equal the daemon's cache_key_prefix, or every operation rejects with KeyPrefixError. */
  keyPrefix?: string;
  /** ms, 1 to 2147483647; absent: the daemon's cache_ttl_ms. */
  ttl?: number;
  /** Exact numbers (BigInt, ExactNumber); default: the Client's bigNumbers. */
  bigNumbers?: boolean;
  /** Ids per get_many / invalidate_many request (default 10000, the daemon's max_batch). */
  maxBatch?: number;
}

export interface CacheReadOptions {
  /** Read Redis, bypassing the daemon's near cache (cache_near_bytes). */
  fresh?: boolean;
}

export class ExecutionCache<E extends { id: string } = Execution> {
  constructor(client?: Client | null, options?: ExecutionCacheOptions);
  constructor(options: ExecutionCacheOptions);
  readonly client: Client;
  /** fresh: read Redis, not the daemon's near cache. */
  get(id: string, options?: CacheReadOptions): Promise<E | null>;
  set(execution: E, ttl?: number): Promise<void>;
  invalidate(id: string): Promise<void>;
  invalidateMany(ids: string[]): Promise<void>;
  getMany(ids: string[], options?: CacheReadOptions): Promise<Map<string, E>>;
  /** Closes the Client the cache made for itself; a shared one stays open. */
  close(): Promise<void>;
}

export { LockManager as RedisLockManager, WakeSignaler as RedisWakeSignaler, ExecutionCache as RedisExecutionCache };

/** A JSON number kept as its exact text (bigNumbers). */
export class ExactNumber {
  constructor(text: string);
  readonly text: string;
  toString(): string;
  /** The nearest double. */
  valueOf(): number;
  /** The text, as a string. */
  toJSON(): string;
}

/** JSON.parse with integers beyond ±(2^53−1) as BigInt and other inexact numbers as ExactNumber. */
export function parseExact(text: string): unknown;
/** JSON.stringify that writes BigInt and ExactNumber as their digits. */
export function stringifyExact(value: unknown): string | undefined;

export class FmredisError extends Error {
  constructor(code: string, message: string, options?: { cause?: unknown; op?: string });
  /** The daemon's error code ("bad_request", "redis_unavailable", "timeout", ...) or a client-side one. */
  readonly code: string;
  /** The operation that failed, when one did. */
  readonly op?: string;
}
/** code "connection_lost": the connection dropped before the reply. */
export class ConnectionLostError extends FmredisError {
  constructor(message: string, options?: { cause?: unknown; op?: string });
}
/** code "closed": the client was closed. */
export class ClientClosedError extends FmredisError {
  constructor(message: string, options?: { cause?: unknown; op?: string });
}
/** code "client_timeout": no reply within the client's deadline. */
export class ClientTimeoutError extends FmredisError {
  constructor(message: string, options?: { cause?: unknown; op?: string });
}
/** code "protocol_error": the daemon sent something unreadable, or another protocol version. */
export class ProtocolError extends FmredisError {
  constructor(message: string, options?: { cause?: unknown; op?: string });
}
/** code "key_prefix_mismatch": a keyPrefix option differs from the daemon's. */
export class KeyPrefixError extends FmredisError {
  constructor(message: string, options?: { cause?: unknown; op?: string });
}
/** code "lock_not_acquired": withLock could not get the lock. */
export class LockNotAcquiredError extends FmredisError {
  constructor(key: string, options?: { cause?: unknown });
  readonly key: string;
}
/**
 * Why withLock's lock was lost: the daemon's extension found it gone (lock.lost), the
 * connection dropped or the client closed, or the release found it expired (not_held)
 * or held by another token (not_owner).
 */
export type LockLostReason = 'lock.lost' | 'connection_lost' | 'closed' | 'not_held' | 'not_owner';

/** code "lock_lost": the lock was lost while withLock's fn ran. */
export class LockLostError extends FmredisError {
  constructor(key: string, reason: LockLostReason, options?: { cause?: unknown });
  readonly key: string;
  readonly reason: LockLostReason;
}
