// Redis connections (ioredis), for the state replicas share when REDIS_URL is set: the module
// store (src/store/redis-store.ts), the rate limit (src/plugins/callers.ts) and the per-key
// concurrency quota (src/limits/shared-concurrency.ts). Unset, nothing here is used and the server keeps
// its embedded, single-process behaviour.
//
// Two kinds of connection, one factory:
// - 'commands' (the app's one shared connection): a request never waits for Redis to come back.
//   enableOfflineQueue: false fails a command at once while disconnected; maxRetriesPerRequest: 1
//   fails a command caught by a dropped connection after one reconnection attempt; commandTimeout
//   bounds a command on a connection that hangs. The failure becomes 503 backend_unavailable
//   (unavailable() below), never a 500 and never a stuck request.
// - 'blocking' (for BullMQ's queues and workers): maxRetriesPerRequest: null and the offline queue
//   on, as BullMQ requires for its blocking commands (BRPOPLPUSH and friends wait as long as they
//   need; a worker resumes by itself when Redis comes back). No command timeout, for the same
//   reason.
// Both connect lazily (lazyConnect: true: the owner calls connect() when it is ready to handle
// failures) and reconnect forever with capped backoff; neither ever throws into the process: an
// 'error' listener is always attached (ioredis would otherwise re-emit connection errors as
// unhandled 'error' events, which end the process).

import type { Redis, RedisOptions } from 'ioredis';
import { ServiceError } from '../errors.js';

export type { Redis } from 'ioredis';

export type RedisPurpose = 'commands' | 'blocking';

export interface CreateRedisOptions {
  /** 'commands' (default): fail fast while Redis is away. 'blocking': wait for it (BullMQ). */
  purpose?: RedisPurpose;
  /** Connection name shown by CLIENT LIST (for operators). */
  connectionName?: string;
  /** Called with the first connection error of each outage (not once per reconnection attempt). */
  onError?: (err: Error) => void;
  /** Anything else to override (tests). */
  overrides?: Partial<RedisOptions>;
}

/** How long a command may take on the shared connection before it fails (503). */
export const REDIS_COMMAND_TIMEOUT_MS = 2_000;
/** How long establishing a connection may take before it is retried. */
export const REDIS_CONNECT_TIMEOUT_MS = 5_000;

/** Reconnection backoff: 50 ms, 100 ms, ... capped at 2 s, forever. */
export const reconnectDelayMs = (attempt: number): number => Math.min(attempt * 50, 2_000);

/** The ioredis options of each kind of connection (exported for BullMQ, which takes options). */
export function redisOptions(purpose: RedisPurpose = 'commands'): RedisOptions {
  const common: RedisOptions = {
    lazyConnect: true,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    retryStrategy: reconnectDelayMs,
    enableReadyCheck: true,
  };
  return purpose === 'commands'
    ? { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: REDIS_COMMAND_TIMEOUT_MS }
    : { ...common, enableOfflineQueue: true, maxRetriesPerRequest: null };
}

/** A client for `url` (redis://[user:password@]host[:port][/db] or rediss:// for TLS), not yet
 *  connected: call connect() (or send a command, for 'blocking'). ioredis is loaded here, on the
 *  first client: a server without REDIS_URL never loads it (nor BullMQ, src/app.ts), which keeps
 *  its main heap about 6.7 MiB smaller, and every full collection of that heap shorter. */
export async function createRedis(url: string, options: CreateRedisOptions = {}): Promise<Redis> {
  const { Redis: RedisClient } = await import('ioredis');
  const redis = new RedisClient(url, {
    ...redisOptions(options.purpose),
    ...(options.connectionName !== undefined && { connectionName: options.connectionName }),
    ...options.overrides,
  });
  // Report a failure once per outage, not once per reconnection attempt.
  let reported = false;
  redis.on('error', (err: Error) => {
    if (reported) return;
    reported = true;
    options.onError?.(err);
  });
  redis.on('ready', () => {
    reported = false;
  });
  return redis;
}

/** Starts connecting without waiting: the server starts (and answers /healthz) while Redis is
 *  away, reports not ready (/readyz) until it is reachable, and ioredis keeps retrying. */
export function connectInBackground(redis: Redis): void {
  if (redis.status === 'wait') redis.connect().catch(() => {});
}

/** Starts connecting and waits up to `timeoutMs` for the connection to be ready; false when it
 *  is not by then (ioredis keeps trying in the background). */
export async function connectWithin(redis: Redis, timeoutMs: number): Promise<boolean> {
  connectInBackground(redis);
  if (redis.status === 'ready') return true;
  return new Promise((resolve) => {
    const done = (ready: boolean): void => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      resolve(ready);
    };
    const onReady = (): void => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on('ready', onReady);
  });
}

/** Whether Redis answers now: connected and a PING comes back within the command timeout. */
export async function redisReachable(redis: Redis): Promise<boolean> {
  if (redis.status !== 'ready') return false;
  try {
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  }
}

/** Closes a client: QUIT (pending commands are answered first), or a hard disconnect when Redis
 *  is not reachable to answer it. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}

/** Redis error replies that say the server cannot serve now (loading, out of memory, a replica,
 *  ...), as opposed to a command the service got wrong. */
const UNAVAILABLE_REPLIES = /^(LOADING|OOM|READONLY|MASTERDOWN|BUSY|NOREPLICAS|MISCONF|TRYAGAIN|CLUSTERDOWN)\b/;

/** Whether `err` means "Redis cannot be reached or cannot serve now": a connection error, a
 *  command timeout, a connection closed mid-command, or one of the replies above. An error reply
 *  to a well-formed connection (a script error) is a bug, not an outage, and is not one. */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof ServiceError) return false;
  if (err.name === 'ReplyError') return UNAVAILABLE_REPLIES.test(err.message);
  // A mistake in the service's own code around the call is a bug (a 500), not an outage.
  if (err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError) return false;
  // Connection refused or reset, "Connection is closed.", "Stream isn't writeable ...", "Command
  // timed out", MaxRetriesPerRequestError: ioredis's ways of saying Redis is not there.
  return true;
}

/** The refusal for a request that needs shared state while Redis is unavailable; `err`, when
 *  given, is what Redis or the client said (an error reply such as OOM is named: the operator's
 *  fix differs from that of an outage). */
export function unavailable(what: string, err?: unknown): ServiceError {
  const reply = err instanceof Error && err.name === 'ReplyError' ? UNAVAILABLE_REPLIES.exec(err.message)?.[1] : undefined;
  const state = reply === undefined ? 'which this server cannot reach right now' : `which cannot serve it right now (it answered ${reply})`;
  return new ServiceError('backend_unavailable', `${what} is kept in Redis (REDIS_URL), ${state}; retry shortly`, { 'retry-after': '2' });
}

/** Runs a Redis operation; an outage becomes 503 backend_unavailable naming `what` needed it. */
export async function withRedis<T>(what: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (isRedisUnavailable(err)) throw unavailable(what, err);
    throw err;
  }
}
