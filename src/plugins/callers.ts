// Who is calling, and how often they may: API keys (optional) and the per-caller rate limit
// (@fastify/rate-limit). Registered before the routes so that every route sees `request.caller`;
// the per-key concurrency quota is the execution service's (src/limits/concurrency.ts).
//
// - With keys configured, every route but the probes, /metrics and the playground page needs a valid key (401
//   unauthorized otherwise) and the caller is the key's non-secret id.
// - Without keys the caller is the client address (Fastify's request.ip: the peer, or the
//   forwarded client behind WASMBOX_TRUST_PROXY). It keys the rate limit and the round-robin
//   order of the queues; the concurrency quota applies to keys only, since behind a gateway
//   one address is every caller.

import { createRequire } from 'node:module';
import rateLimit, { type FastifyRateLimitOptions, type FastifyRateLimitStore, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { type ApiKey, matchKey, presentedKey } from '../callers/api-keys.js';
import { ServiceError } from '../errors.js';
import { isRedisUnavailable, type Redis, unavailable } from '../redis/index.js';

export interface Caller {
  /** Rate-limit and fairness key: `key-xxxxxxxx` or `addr:<ip>`. */
  id: string;
  /** The API key's id when keys are configured (for logs and metrics), else null. */
  keyId: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller;
  }
}

export interface CallersOptions {
  keys: readonly ApiKey[];
  /** Requests per minute per caller; 0 turns the rate limit off. */
  rateLimitPerMinute: number;
  /** When set, callers' counts live in Redis and the limit holds across every replica sharing it. */
  redis?: { client: Redis; prefix: string } | null;
}

/** Routes anyone may call: liveness, readiness and metrics (scraped by the platform), and the
 *  playground page (GET /, which asks for a key and sends it with the API calls it makes). */
const OPEN_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

const isOpen = (request: FastifyRequest): boolean => {
  const path = request.url.split('?', 1)[0]!;
  return OPEN_ROUTES.has(path) || (path === '/' && (request.method === 'GET' || request.method === 'HEAD'));
};

async function callers(app: FastifyInstance, options: CallersOptions): Promise<void> {
  const { keys } = options;
  app.decorateRequest('caller', null as unknown as Caller);

  app.addHook('onRequest', async (request, reply) => {
    if (keys.length === 0 || isOpen(request)) {
      request.caller = { id: `addr:${request.ip}`, keyId: null };
      return;
    }
    const presented = presentedKey(request.headers);
    const key = presented === null ? null : matchKey(keys, presented);
    if (!key) {
      reply.header('www-authenticate', 'Bearer realm="wasmbox"');
      throw new ServiceError(
        'unauthorized',
        presented === null
          ? 'this server needs an API key: send it as "Authorization: Bearer <key>" or "x-api-key: <key>"'
          : 'the API key is not valid on this server',
      );
    }
    request.caller = { id: key.id, keyId: key.id };
    request.log = request.log.child({ keyId: key.id });
  });

  if (options.rateLimitPerMinute > 0) {
    await app.register(rateLimit, {
      global: true,
      max: options.rateLimitPerMinute,
      timeWindow: 60_000,
      keyGenerator: (request) => request.caller?.id ?? `addr:${request.ip}`,
      ...(options.redis && { store: sharedRateLimitStore(options.redis.client, `${options.redis.prefix}rate:`) }),
      allowList: (request) => isOpen(request),
      // RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (the IETF draft's names) on every
      // answer, and Retry-After on a 429.
      enableDraftSpec: true,
      errorResponseBuilder: (_request, context) => {
        const seconds = Math.max(1, Math.ceil(context.ttl / 1000));
        return new ServiceError(
          'rate_limited',
          `over this server's rate limit of ${context.max} requests a minute for this caller; retry in ${seconds} s`,
          { 'retry-after': String(seconds) },
        );
      },
    });
  }
}

/** @fastify/rate-limit's own Redis store (one Lua script: INCR, and PEXPIRE on a window's first
 *  request), whose Redis failures become 503 backend_unavailable instead of a 500: while Redis is
 *  away the limit cannot be counted, and requests it would count are refused, not let through. */
type StoreCallback = Parameters<FastifyRateLimitStore['incr']>[1];
type RedisStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key: string) => FastifyRateLimitStore;
const PluginRedisStore = createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as RedisStoreCtor;

function sharedRateLimitStore(redis: Redis, nameSpace: string): FastifyRateLimitStoreCtor {
  const guard =
    (cb: StoreCallback): StoreCallback =>
    (err, result) =>
      cb(err && isRedisUnavailable(err) ? unavailable("this caller's rate limit", err) : err, result);
  class SharedStore implements FastifyRateLimitStore {
    private readonly inner: FastifyRateLimitStore;
    constructor(params: FastifyRateLimitOptions | FastifyRateLimitStore) {
      // A plain fixed window: continueExceeding and exponentialBackoff are not used here.
      this.inner = 'incr' in params ? params : new PluginRedisStore(false, false, redis, nameSpace);
    }
    incr(key: string, cb: StoreCallback, timeWindow: number, max: number): void {
      this.inner.incr(key, guard(cb), timeWindow, max);
    }
    child(routeOptions: Parameters<FastifyRateLimitStore['child']>[0]): FastifyRateLimitStore {
      return new SharedStore(this.inner.child(routeOptions));
    }
  }
  return SharedStore;
}

export default fp(callers, { name: 'wasmbox-callers', fastify: '5.x' });
