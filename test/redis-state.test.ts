// The state replicas share through Redis, driven directly against a real redis-server (the built
// classes from dist/, two clients standing for two replicas): the module store (content-addressed,
// idempotent, caps that hold across clients racing for the last slot, verification of what it
// reads, totals), the fleet-wide concurrency quota (a cap across clients, leases that lapse when
// their holder stops renewing and hold while it renews), and what both do while Redis is away.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { localConfig } from '../dist/src/cli/backend.js';
import { ConfigError, loadConfig } from '../dist/src/config.js';
import { SharedConcurrencyQuota } from '../dist/src/limits/shared-concurrency.js';
import { closeRedis, connectWithin, createRedis, isRedisUnavailable, redisOptions, unavailable } from '../dist/src/redis/index.js';
import { moduleIdOf } from '../dist/src/store/module-id.js';
import { REDIS_ENTRY_OVERHEAD_BYTES, RedisModuleStore } from '../dist/src/store/redis-store.js';
import { CorruptModuleError, StoreFullError } from '../dist/src/store/types.js';
import type { ModuleDescription } from '../dist/src/worker/protocol.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { startServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

function describeModule(bytes: Uint8Array): ModuleDescription {
  return { size: bytes.length, exports: [{ name: 'f', kind: 'function', params: [], results: ['i32'] }], imports: [], memory: null, tables: [], hasStart: false };
}

/** A distinct valid module per n. */
const moduleN = (n: number): Uint8Array => wat(`(module (func (export "f") (result i32) i32.const ${n}))`);

let redis: TestRedis;
const clients: Redis[] = [];
let prefixN = 0;

/** A fresh connected client (one per simulated replica). */
async function client(): Promise<Redis> {
  const c = await createRedis(redis.url);
  clients.push(c);
  expect(await connectWithin(c, 5_000)).toBe(true);
  return c;
}

/** A raw client for inspecting and damaging what the store wrote. */
async function raw(): Promise<Redis> {
  const c = new Redis(redis.url, { lazyConnect: true });
  c.on('error', () => {}); // reconnection noise while a test stops Redis
  clients.push(c);
  await c.connect();
  return c;
}

async function stores(n: number, caps: { maxBytes?: number; maxModules?: number } = {}): Promise<{ prefix: string; stores: RedisModuleStore[] }> {
  const prefix = `t${++prefixN}:`;
  const out: RedisModuleStore[] = [];
  for (let i = 0; i < n; i++) {
    const s = new RedisModuleStore({ redis: await client(), prefix, maxBytes: caps.maxBytes ?? 1 << 30, maxModules: caps.maxModules ?? 1000 });
    await s.open();
    out.push(s);
  }
  return { prefix, stores: out };
}

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const c of clients) await closeRedis(c).catch(() => {});
  await redis?.stop();
});

describe('REDIS_URL and its companions', () => {
  it('is off unless set, and takes redis:// and rediss:// URLs', () => {
    expect(loadConfig({}).redisUrl).toBeNull();
    expect(loadConfig({ REDIS_URL: 'redis://:pw@redis:6379/2' }).redisUrl).toBe('redis://:pw@redis:6379/2');
    expect(loadConfig({ REDIS_URL: 'rediss://redis.example:6380' }).redisUrl).toBe('rediss://redis.example:6380');
    expect(loadConfig({}).redisPrefix).toBe('wasmbox:');
    expect(loadConfig({}).concurrencyLeaseMs).toBe(30_000);
  });

  it('refuses a REDIS_URL that is not a Redis URL, naming the variable but never echoing its value (it may hold a password)', () => {
    for (const bad of ['http://user:hunter2@redis:6379', 'hunter2', 'redis//hunter2']) {
      let error: unknown;
      try {
        loadConfig({ REDIS_URL: bad });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toContain('REDIS_URL');
      expect((error as Error).message).toContain('redis:// or rediss://');
      expect((error as Error).message).not.toContain('hunter2');
    }
  });

  it('refuses a key prefix with spaces and a lease under 500 ms', () => {
    expect(() => loadConfig({ WASMBOX_REDIS_PREFIX: 'my prefix' })).toThrow(/WASMBOX_REDIS_PREFIX/);
    expect(() => loadConfig({ WASMBOX_CONCURRENCY_LEASE_MS: '100' })).toThrow(/WASMBOX_CONCURRENCY_LEASE_MS.*at least 500/);
  });

  it('is ignored by the command-line tool\'s local runs, which share nothing', () => {
    expect(localConfig({ REDIS_URL: 'not a url' }).redisUrl).toBeNull();
  });
});

describe('the Redis client settings', () => {
  it("fails fast on the shared connection, and waits on the one for BullMQ's blocking commands (maxRetriesPerRequest: null)", () => {
    expect(redisOptions('commands')).toMatchObject({ lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    expect(redisOptions('commands').commandTimeout).toBeGreaterThan(0);
    expect(redisOptions('blocking')).toMatchObject({ lazyConnect: true, enableOfflineQueue: true, maxRetriesPerRequest: null });
    expect(redisOptions('blocking').commandTimeout).toBeUndefined();
  });

  it('tells an outage or an unable Redis (OOM, LOADING, READONLY) from a bug: only the first become backend_unavailable', () => {
    const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });
    expect(isRedisUnavailable(new Error('connect ECONNREFUSED 127.0.0.1:6379'))).toBe(true);
    expect(isRedisUnavailable(new Error('Command timed out'))).toBe(true);
    expect(isRedisUnavailable(reply("OOM command not allowed when used memory > 'maxmemory'."))).toBe(true);
    expect(isRedisUnavailable(reply('LOADING Redis is loading the dataset in memory'))).toBe(true);
    expect(isRedisUnavailable(reply('ERR user_script:3: Script attempted to access nonexistent global variable'))).toBe(false);
    expect(isRedisUnavailable(new TypeError("Cannot read properties of undefined (reading 'x')"))).toBe(false);
    expect(unavailable('the module store', reply('OOM command not allowed')).message).toContain('it answered OOM');
    expect(unavailable('the module store', new Error('Connection is closed.')).message).toContain('cannot reach');
  });
});

describe('the Redis module store', () => {
  it('stores a module under its content address, answers it from another client, and a second put of the same bytes is idempotent', async () => {
    const { stores: [a, b] } = await stores(2);
    const bytes = moduleN(1);
    const id = moduleIdOf(bytes);
    const first = await a!.put(id, bytes, describeModule(bytes));
    expect(first.created).toBe(true);
    expect(await b!.has(id)).toBe(true);
    expect(Buffer.from((await b!.getBytes(id))!)).toEqual(Buffer.from(bytes));
    expect(await b!.getDescription(id)).toEqual(first.record);
    const again = await b!.put(id, bytes, describeModule(bytes));
    expect(again).toEqual({ created: false, record: first.record });
    expect(b!.usage().modules <= 1).toBe(true);
    expect(a!.usage()).toEqual({ modules: 1, bytes: bytes.length + Buffer.byteLength(JSON.stringify(first.record)) + REDIS_ENTRY_OVERHEAD_BYTES });
  });

  it('deletes a module for every client: has() turns false, reads answer null, a second delete answers false, the totals drop to zero', async () => {
    const { stores: [a, b] } = await stores(2);
    const bytes = moduleN(2);
    const id = moduleIdOf(bytes);
    await a!.put(id, bytes, describeModule(bytes));
    expect(await b!.delete(id)).toBe(true);
    expect(await a!.has(id)).toBe(false);
    expect(await a!.getBytes(id)).toBeNull();
    expect(await a!.getDescription(id)).toBeNull();
    expect(await a!.delete(id)).toBe(false);
    await a!.open(); // re-reads the totals
    expect(a!.usage()).toEqual({ modules: 0, bytes: 0 });
  });

  it('holds the module-count cap across clients racing for the last slots: exactly the cap is stored, the rest are store_full', async () => {
    const { stores: list } = await stores(3, { maxModules: 4 });
    const modules = Array.from({ length: 12 }, (_, i) => moduleN(100 + i));
    const results = await Promise.allSettled(modules.map((m, i) => list[i % 3]!.put(moduleIdOf(m), m, describeModule(m))));
    const stored = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(stored).toHaveLength(4);
    expect(refused).toHaveLength(8);
    for (const r of refused) {
      expect(r.reason).toBeInstanceOf(StoreFullError);
      expect(r.reason.message).toContain('WASMBOX_STORE_MAX_MODULES');
    }
    let present = 0;
    for (const m of modules) if (await list[0]!.has(moduleIdOf(m))) present++;
    expect(present).toBe(4);
  });

  it('holds the byte cap across clients, counting bytes, description and Redis overhead, and frees room on delete', async () => {
    const sample = moduleN(200);
    const perModule = sample.length + 400 + REDIS_ENTRY_OVERHEAD_BYTES; // description well under 400 bytes
    const { stores: [a, b] } = await stores(2, { maxBytes: 2 * perModule });
    const modules = Array.from({ length: 6 }, (_, i) => moduleN(200 + i));
    const results = await Promise.allSettled(modules.map((m, i) => (i % 2 ? a! : b!).put(moduleIdOf(m), m, describeModule(m))));
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    expect(refused[0]!.reason).toBeInstanceOf(StoreFullError);
    expect(refused[0]!.reason.message).toContain(`${REDIS_ENTRY_OVERHEAD_BYTES} bytes of Redis overhead`);
    expect(refused[0]!.reason.message).toContain('WASMBOX_STORE_MAX_MB');
    const storedIndex = results.findIndex((r) => r.status === 'fulfilled');
    expect(await a!.delete(moduleIdOf(modules[storedIndex]!))).toBe(true);
    const retry = modules[results.findIndex((r) => r.status === 'rejected')]!;
    expect((await b!.put(moduleIdOf(retry), retry, describeModule(retry))).created).toBe(true);
  });

  it('never returns bytes that do not match their id: a damaged copy is CorruptModuleError, quarantined and no longer stored', async () => {
    const { prefix, stores: [a] } = await stores(1);
    const bytes = moduleN(300);
    const id = moduleIdOf(bytes);
    await a!.put(id, bytes, describeModule(bytes));
    const r = await raw();
    const hex = id.slice('sha256:'.length);
    await r.hset(`${prefix}module:${hex}`, 'bytes', Buffer.from(moduleN(301)));
    await expect(a!.getBytes(id)).rejects.toBeInstanceOf(CorruptModuleError);
    expect(await a!.has(id)).toBe(false);
    expect(await r.keys(`${prefix}corrupt:${hex}:*`)).toHaveLength(1);
    expect(Number(await r.hget(`${prefix}store`, 'modules'))).toBe(0);
    // Uploading it again stores a good copy.
    expect((await a!.put(id, bytes, describeModule(bytes))).created).toBe(true);
  });
});

describe('the Redis module store under concurrency', () => {
  it('keeps its totals equal to what is stored, and every answer consistent, through random concurrent puts and deletes from three clients', async () => {
    const { prefix, stores: list } = await stores(3, { maxModules: 4 });
    const r = await raw();
    const modules = Array.from({ length: 6 }, (_, i) => moduleN(600 + i));
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 25; round++) {
      // A batch of operations in flight at once, on random clients and modules.
      const ops = Array.from({ length: 12 }, () => {
        const store = list[random(3)]!;
        const m = modules[random(modules.length)]!;
        const id = moduleIdOf(m);
        return random(2) === 0
          ? store.put(id, m, describeModule(m)).then(
              () => null,
              (err: unknown) => (err instanceof StoreFullError ? null : err),
            )
          : store.delete(id).then(() => null, (err: unknown) => err);
      });
      expect((await Promise.all(ops)).filter((e) => e !== null)).toEqual([]);
      // What is stored, from Redis itself, against the totals the caps are checked with.
      const keys = await r.keys(`${prefix}module:*`);
      let bytes = 0;
      for (const k of keys) bytes += Number(await r.hget(k, 'counted'));
      expect(keys.length).toBeLessThanOrEqual(4);
      expect(await r.hmget(`${prefix}store`, 'modules', 'bytes')).toEqual([String(keys.length), String(bytes)]);
      for (const m of modules) {
        const id = moduleIdOf(m);
        const stored = keys.includes(`${prefix}module:${id.slice('sha256:'.length)}`);
        expect(await list[random(3)]!.has(id)).toBe(stored);
        if (stored) expect(Buffer.from((await list[random(3)]!.getBytes(id))!)).toEqual(Buffer.from(m));
      }
    }
  });
});

describe('the Redis module store with a damaged description', () => {
  it('refuses to describe it (CorruptModuleError, quarantined), and an upload of the same bytes replaces a copy whose description is damaged', async () => {
    const { prefix, stores: [a] } = await stores(1);
    const r = await raw();
    const bytes = moduleN(500);
    const id = moduleIdOf(bytes);
    const hex = id.slice('sha256:'.length);
    await a!.put(id, bytes, describeModule(bytes));
    await r.hset(`${prefix}module:${hex}`, 'record', '{"moduleId":"sha256:someone-else"');
    await expect(a!.getDescription(id)).rejects.toBeInstanceOf(CorruptModuleError);
    expect(await a!.has(id)).toBe(false);
    const again = await a!.put(id, bytes, describeModule(bytes));
    expect(again.created).toBe(true);
    await r.hset(`${prefix}module:${hex}`, 'record', 'not json');
    const replaced = await a!.put(id, bytes, describeModule(bytes));
    expect(replaced.created).toBe(true);
    expect(await a!.getDescription(id)).toEqual(replaced.record);
    expect(Number(await r.hget(`${prefix}store`, 'modules'))).toBe(1);
  });
});

describe('the fleet-wide concurrency quota', () => {
  const quotas: SharedConcurrencyQuota[] = [];
  afterAll(async () => {
    for (const q of quotas) await q.close();
  });
  async function quota(prefix: string, max: number, leaseMs: number): Promise<SharedConcurrencyQuota> {
    const q = new SharedConcurrencyQuota({ redis: await client(), prefix, maxPerCaller: max, leaseMs });
    quotas.push(q);
    return q;
  }

  it('holds one cap across clients: the third slot is refused on either with rate_limited, and a returned slot can be taken again', async () => {
    const a = await quota('q1:', 2, 30_000);
    const b = await quota('q1:', 2, 30_000);
    const giveA = await a.take('key-1');
    await b.take('key-1');
    for (const q of [a, b]) {
      const refused = await q.take('key-1').then(
        () => null,
        (err: { code: string; message: string; headers: Record<string, string> }) => err,
      );
      expect(refused?.code).toBe('rate_limited');
      expect(refused?.message).toContain('across the replicas');
      expect(refused?.message).toContain('WASMBOX_MAX_CONCURRENT_PER_KEY=2');
      expect(refused?.headers['retry-after']).toBe('1');
    }
    // Another key is not affected.
    await a.take('key-2');
    giveA();
    giveA(); // idempotent
    await waitFor(async () => (await b.take('key-1').then(() => true, () => false)));
    await expect(a.take('key-1')).rejects.toMatchObject({ code: 'rate_limited' });
  });

  it('gives back the slots of a holder that stopped renewing once their lease lapses', async () => {
    const dead = await quota('q2:', 1, 700);
    const live = await quota('q2:', 1, 700);
    await dead.take('key-1');
    await dead.close(); // as a SIGKILLed replica: no renewal, no release
    await expect(live.take('key-1')).rejects.toMatchObject({ code: 'rate_limited' });
    const started = Date.now();
    await waitFor(async () => live.take('key-1').then(() => true, () => false));
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('keeps a slot past its lease time while its holder renews it', async () => {
    const holder = await quota('q3:', 1, 1_500);
    const other = await quota('q3:', 1, 1_500);
    await holder.take('key-1');
    await new Promise((r) => setTimeout(r, 4_000));
    await expect(other.take('key-1')).rejects.toMatchObject({ code: 'rate_limited' });
  });
});

describe('while Redis is away', () => {
  it('refuses store and quota operations with backend_unavailable (503, Retry-After) at once, and works again once Redis is back', async () => {
    const { stores: [a] } = await stores(1);
    const q = new SharedConcurrencyQuota({ redis: await client(), prefix: 'q4:', maxPerCaller: 1, leaseMs: 30_000 });
    const bytes = moduleN(400);
    const id = moduleIdOf(bytes);
    await a!.put(id, bytes, describeModule(bytes));
    const before = a!.usage();
    await redis.stop();
    try {
      for (const op of [() => a!.has(id), () => a!.getBytes(id), () => a!.put(id, bytes, describeModule(bytes)), () => a!.delete(id), () => q.take('key-1')]) {
        const started = Date.now();
        await expect(op()).rejects.toMatchObject({ code: 'backend_unavailable', status: 503, headers: { 'retry-after': '2' } });
        expect(Date.now() - started).toBeLessThan(5_000);
      }
      expect(a!.usage()).toEqual(before);
    } finally {
      await redis.start();
    }
    // Both clients reconnect by themselves. The restarted Redis is empty (no persistence in
    // tests): the module is gone, and new work goes through.
    await waitFor(async () => a!.has(id).then((has) => !has, () => false));
    expect((await a!.put(id, bytes, describeModule(bytes))).created).toBe(true);
    await waitFor(async () => q.take('key-1').then(() => true, () => false));
    await q.close();
  });
});

describe('a Redis that refuses the password', () => {
  it('leaves the server up but not ready, refusing what needs Redis with 503 backend_unavailable and logging the cause once', async () => {
    const guarded = await startRedis(['--requirepass', 'the-right-password']);
    const lines: string[] = [];
    const logger = { level: 'warn', stream: { write: (line: string) => void lines.push(line) } };
    const server = await startServer({ REDIS_URL: `redis://:the-wrong-password@127.0.0.1:${guarded.port}` }, { logger });
    try {
      // (Its worker pool may still be starting: then readiness says that first.)
      await waitFor(async () => (await server.get('/readyz')).body?.error?.code === 'backend_unavailable');
      expect((await server.get('/readyz')).status).toBe(503);
      const upload = await server.post('/modules', moduleN(700), { 'content-type': 'application/wasm' });
      expect(upload.status).toBe(503);
      expect(upload.body.error.code).toBe('backend_unavailable');
      expect((await server.get('/healthz')).status).toBe(200);
      const reported = lines.filter((l) => l.includes('Redis (REDIS_URL) is not reachable'));
      expect(reported).toHaveLength(1);
      expect(reported[0]).toMatch(/WRONGPASS|invalid password|NOAUTH/i);
      expect(lines.join('')).not.toContain('the-wrong-password');
    } finally {
      await server.close();
      await guarded.stop();
    }
  });
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}
