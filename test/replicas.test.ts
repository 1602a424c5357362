// Several replicas sharing one Redis (REDIS_URL), as real server processes on real ports next to a
// real redis-server: a module uploaded to one runs by id on another and a delete through one is
// 404 on all (whatever each has prepared); the store's caps, the rate limit and the per-key
// concurrency quota hold across the fleet; a SIGKILLed replica's quota slot comes back when its
// lease lapses; and while Redis is away every replica stays up, reports not ready, and refuses
// what needs Redis with 503 backend_unavailable, until Redis is back.

import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { moduleIdOf } from '../dist/src/store/module-id.js';
import { type ChildServer, spawnServer } from './helpers/child-server.js';
import { type Answer, call, type Fleet, startFleet, waitReady } from './helpers/fleet.js';
import { b64 } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const ADD = wat(`(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`);
const SPIN = wat(`(module (func (export "spin") (loop br 0)))`);
const KEY_STORE = 'store-key-0123456789abcdef';
const KEY_RATE = 'rate-key-0123456789abcdef';
const KEY_QUOTA = 'quota-key-0123456789abcdef';
const KEY_KILL = 'kill-key-0123456789abcdef';
const KEY_CAPS = 'caps-key-0123456789abcdef';
const RATE_LIMIT = 12;
const LEASE_MS = 3_000;
const STORE_MAX_MODULES = 2;

const auth = (key: string) => ({ authorization: `Bearer ${key}` });
/** The non-secret id the server gives a key (src/callers/api-keys.ts). */
const keyIdOf = (key: string) => `key-${createHash('sha256').update(key).digest('hex').slice(0, 8)}`;
/** A run that lasts until its deadline: 10^12 fuel (the fleet's WASMBOX_FUEL_MAX) outlasts any of
 *  these deadlines, where the default maximum, 10^10, ran out in under 8 s on a fast machine. */
const SPIN_FUEL = 1_000_000_000_000;
const spinRun = (timeoutMs: number) => ({ module: b64(SPIN), function: 'spin', limits: { fuel: SPIN_FUEL, timeoutMs } });

let fleet: Fleet;
let inspect: Redis;
let a: string;
let b: string;

/** Slots a key holds in the fleet-wide quota right now (lapsed leases not counted). */
async function leasesHeld(key: string): Promise<number> {
  const [seconds, micros] = await inspect.time();
  const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  return inspect.zcount(`wasmbox:quota:${keyIdOf(key)}`, now + 1, '+inf');
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  fleet = await startFleet(2, {
    // One key per test: each has its own rate budget.
    WASMBOX_API_KEYS: [KEY_STORE, KEY_RATE, KEY_QUOTA, KEY_KILL, KEY_CAPS].join(','),
    WASMBOX_RATE_LIMIT: String(RATE_LIMIT),
    WASMBOX_MAX_CONCURRENT_PER_KEY: '1',
    WASMBOX_CONCURRENCY_LEASE_MS: String(LEASE_MS),
    WASMBOX_STORE_MAX_MODULES: String(STORE_MAX_MODULES),
    WASMBOX_FUEL_MAX: String(SPIN_FUEL),
  });
  [a, b] = fleet.replicas.map((r) => r.url) as [string, string];
  inspect = new Redis(fleet.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  inspect.on('error', () => {});
  await inspect.connect();
}, 60_000);

afterAll(async () => {
  inspect?.disconnect();
  await fleet?.close();
});

describe('the shared module store', () => {
  it('runs by id on replica B a module uploaded to replica A, and a second upload on B finds it stored', async () => {
    const id = moduleIdOf(ADD);
    const up = await call(a, 'POST', '/modules', ADD, auth(KEY_STORE));
    expect(up.status).toBe(201);
    expect(up.body.moduleId).toBe(id);
    const run = await call(b, 'POST', '/execute', { moduleId: id, function: 'add', args: [40, 2] }, auth(KEY_STORE));
    expect(run.status).toBe(200);
    expect(run.body.results).toEqual([42]);
    // B prepared it itself: prepared modules are local to each replica.
    expect(run.body.telemetry.moduleCached).toBe(false);
    const described = await call(b, 'GET', `/modules/${id}`, undefined, auth(KEY_STORE));
    expect(described.status).toBe(200);
    expect(described.body.storedAt).toBe(up.body.storedAt);
    const again = await call(b, 'POST', '/modules', ADD, auth(KEY_STORE));
    expect(again.status).toBe(200);
    expect(again.body.storedAt).toBe(up.body.storedAt);
  });

  it('answers 404 module_not_found on replica A for a module deleted through replica B, although A has it prepared', async () => {
    const id = moduleIdOf(ADD);
    const onA = await call(a, 'POST', '/execute', { moduleId: id, function: 'add', args: [1, 2] }, auth(KEY_STORE));
    expect(onA.body.telemetry.moduleCached).toBe(true); // in A's prepared cache
    expect((await call(b, 'DELETE', `/modules/${id}`, undefined, auth(KEY_STORE))).status).toBe(204);
    const run = await call(a, 'POST', '/execute', { moduleId: id, function: 'add', args: [1, 2] }, auth(KEY_STORE));
    expect(run.status).toBe(404);
    expect(run.body.error.code).toBe('module_not_found');
    expect((await call(a, 'GET', `/modules/${id}`, undefined, auth(KEY_STORE))).body.error.code).toBe('module_not_found');
    expect((await call(a, 'DELETE', `/modules/${id}`, undefined, auth(KEY_STORE))).status).toBe(404);
  });
});

describe('the store caps across replicas', () => {
  it(`holds WASMBOX_STORE_MAX_MODULES=${STORE_MAX_MODULES} for the fleet: the third module is 409 store_full on either replica until one is deleted`, async () => {
    const modules = [1, 2, 3].map((n) => wat(`(module (func (export "f") (result i32) i32.const ${n}))`));
    expect((await call(a, 'POST', '/modules', modules[0]!, auth(KEY_CAPS))).status).toBe(201);
    expect((await call(b, 'POST', '/modules', modules[1]!, auth(KEY_CAPS))).status).toBe(201);
    const full = await call(a, 'POST', '/modules', modules[2]!, auth(KEY_CAPS));
    expect(full.status).toBe(409);
    expect(full.body.error.code).toBe('store_full');
    expect(full.body.error.message).toContain(`WASMBOX_STORE_MAX_MODULES`);
    expect((await call(b, 'POST', '/modules', modules[2]!, auth(KEY_CAPS))).status).toBe(409);
    expect((await call(b, 'DELETE', `/modules/${moduleIdOf(modules[0]!)}`, undefined, auth(KEY_CAPS))).status).toBe(204);
    expect((await call(a, 'POST', '/modules', modules[2]!, auth(KEY_CAPS))).status).toBe(201);
    for (const m of modules.slice(1)) expect((await call(a, 'DELETE', `/modules/${moduleIdOf(m)}`, undefined, auth(KEY_CAPS))).status).toBe(204);
  });
});

describe('the rate limit across replicas', () => {
  it(`lets ${RATE_LIMIT} requests a minute through split over A and B, then refuses the next on either with 429 rate_limited`, async () => {
    const unknown = `/modules/sha256:${'0'.repeat(64)}`;
    const answers: Answer[] = [];
    for (let i = 0; i < RATE_LIMIT; i++) answers.push(await call(i % 2 ? b : a, 'GET', unknown, undefined, auth(KEY_RATE)));
    expect(answers.map((r) => r.status)).toEqual(Array(RATE_LIMIT).fill(404));
    // One count across the fleet: the remaining budget falls with every request, whichever replica took it.
    expect(answers.map((r) => Number(r.headers['ratelimit-remaining']))).toEqual(Array.from({ length: RATE_LIMIT }, (_, i) => RATE_LIMIT - 1 - i));
    for (const replica of [a, b]) {
      const refused = await call(replica, 'GET', unknown, undefined, auth(KEY_RATE));
      expect(refused.status).toBe(429);
      expect(refused.body.error.code).toBe('rate_limited');
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    }
    // Another caller has its own budget.
    expect((await call(b, 'GET', unknown, undefined, auth(KEY_STORE))).status).toBe(404);
  });
});

describe('the per-key concurrency quota across replicas', () => {
  it('refuses on B a second run for a key whose one allowed run is in flight on A, past the lease time (renewed), and takes it once A finishes', async () => {
    const first = call(a, 'POST', '/execute', spinRun(LEASE_MS + 5_000), auth(KEY_QUOTA));
    await waitFor(async () => (await leasesHeld(KEY_QUOTA)) === 1);
    // Past the lease: A renews it while the run goes on.
    await new Promise((r) => setTimeout(r, LEASE_MS + 500));
    const second = await call(b, 'POST', '/execute', { module: b64(ADD), function: 'add', args: [1, 1] }, auth(KEY_QUOTA));
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('rate_limited');
    expect(second.body.error.message).toContain('across the replicas');
    expect(second.headers['retry-after']).toBe('1');
    // Uploads count too.
    expect((await call(b, 'POST', '/modules', ADD, auth(KEY_QUOTA))).status).toBe(429);
    expect((await first).body.outcome).toBe('timeout');
    expect(await leasesHeld(KEY_QUOTA)).toBe(0);
    expect((await call(b, 'POST', '/execute', { module: b64(ADD), function: 'add', args: [1, 1] }, auth(KEY_QUOTA))).status).toBe(200);
  });

  it("gives back a SIGKILLed replica's slot once its lease lapses", async () => {
    const doomed = await fleet.add();
    const running = call(doomed.url, 'POST', '/execute', spinRun(25_000), auth(KEY_KILL)).catch((err: Error) => err);
    await waitFor(async () => (await leasesHeld(KEY_KILL)) === 1);
    doomed.child.kill('SIGKILL');
    const killedAt = Date.now();
    expect(await running).toBeInstanceOf(Error); // its connection died with it
    // Its slot is still taken: the lease has not lapsed yet.
    const refused = await call(a, 'POST', '/execute', { module: b64(ADD), function: 'add', args: [2, 2] }, auth(KEY_KILL));
    expect(refused.status).toBe(429);
    // Watched in Redis rather than by polling the API (every try would count against the rate limit).
    await waitFor(async () => (await leasesHeld(KEY_KILL)) === 0);
    const lapsedAfterMs = Date.now() - killedAt;
    const answer = await call(a, 'POST', '/execute', { module: b64(ADD), function: 'add', args: [2, 2] }, auth(KEY_KILL));
    expect(answer.status).toBe(200);
    expect(answer.body.results).toEqual([4]);
    expect(lapsedAfterMs).toBeLessThan(LEASE_MS + 10_000);
  });
});

/** The value of an unlabelled series in GET /metrics. */
async function metric(base: string, name: string): Promise<number | undefined> {
  const text = String((await call(base, 'GET', '/metrics')).body);
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('while Redis is away', () => {
  let late: ChildServer | null = null;

  it('keeps every replica alive and not ready, refuses what needs Redis with 503 backend_unavailable, and recovers when Redis is back', async () => {
    expect(await metric(a, 'wasmbox_redis_connected')).toBe(1);
    await fleet.redis.stop();
    try {
      for (const replica of [a, b]) {
        expect((await call(replica, 'GET', '/healthz')).status).toBe(200);
        expect(await metric(replica, 'wasmbox_redis_connected')).toBe(0);
        const readyz = async () => (await call(replica, 'GET', '/readyz')).body?.error?.code;
        await waitFor(async () => (await readyz()) === 'backend_unavailable');
        for (const [method, path, body] of [
          ['POST', '/modules', ADD],
          ['POST', '/execute', { moduleId: moduleIdOf(ADD), function: 'add', args: [1, 2] }],
          ['POST', '/execute', { module: b64(ADD), function: 'add', args: [1, 2] }],
          ['GET', `/modules/${moduleIdOf(ADD)}`, undefined],
        ] as const) {
          const res = await call(replica, method, path, body, auth(KEY_STORE));
          expect(res.status, `${method} ${path}`).toBe(503);
          expect(res.body.error.code).toBe('backend_unavailable');
          expect(res.body.error.message).toContain('REDIS_URL');
          expect(res.headers['retry-after']).toBe('2');
          // The rate limit is the first thing a keyed request needs from Redis.
          expect(res.body.error.message).toContain('rate limit');
        }
      }
      // Counted as refusals, by code.
      expect(await metric(a, 'wasmbox_refusals_total{code="backend_unavailable"}')).toBeGreaterThanOrEqual(4);
      // A replica started now starts without Redis: alive, not ready.
      late = await spawnServer({ ...fleet.env, REDIS_URL: fleet.redis.url });
      fleet.replicas.push(late);
      expect((await call(late.url, 'GET', '/healthz')).status).toBe(200);
      // (Its worker pool may still be starting: then readiness says that first.)
      await waitFor(async () => (await call(late!.url, 'GET', '/readyz')).body?.error?.code === 'backend_unavailable');
    } finally {
      await fleet.redis.start();
    }
    await waitReady(late!);
    for (const r of fleet.replicas.slice(0, 2)) {
      await waitReady(r);
      expect(r.exited()).toBeNull();
    }
    const up = await call(b, 'POST', '/modules', ADD, auth(KEY_STORE));
    expect(up.status).toBe(201); // the restarted Redis is empty (no persistence in tests)
    expect((await call(a, 'POST', '/execute', { moduleId: moduleIdOf(ADD), function: 'add', args: [1, 2] }, auth(KEY_STORE))).body.results).toEqual([3]);
    expect((await call(late!.url, 'POST', '/execute', { moduleId: moduleIdOf(ADD), function: 'add', args: [3, 4] }, auth(KEY_STORE))).body.results).toEqual([7]);
    expect(await metric(a, 'wasmbox_redis_connected')).toBe(1);
  });

  it('closes its Redis connection when it shuts down on SIGTERM, and exits 0', async () => {
    const connections = async () =>
      String(await inspect.client('LIST'))
        .split('\n')
        .filter((l) => / name=wasmbox /.test(l)).length;
    const before = await connections();
    expect(before).toBe(3); // A, B and the late replica: one shared connection each
    await late!.close();
    expect(late!.exited()).toEqual({ code: 0, signal: null });
    await waitFor(async () => (await connections()) === before - 1);
  });
});
