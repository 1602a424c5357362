// Jobs on the shared queue (REDIS_URL: BullMQ), with real server processes on real ports sharing a
// real redis-server: a job submitted to one replica is read and finished through another; a
// replica stopped with SIGTERM finishes the job it holds and leaves the queued ones to the next
// replica; a replica SIGKILLed mid-job loses nothing (another replica runs it again, and one
// result, one callback, is ever reported); a running job is cancelled through the replica that
// does not run it; callbacks arrive signed, once; finished jobs expire; and while Redis is away,
// POST /jobs is 503 backend_unavailable and the replica stays up.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildServer, spawnServer } from './helpers/child-server.js';
import { call, waitReady } from './helpers/fleet.js';
import { startRedis, type TestRedis } from './helpers/redis.js';
import { b64 } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const GUEST = wat(`(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "spin") (loop $l br $l))
  (func (export "count") (param $n i32) (result i32) (local $i i32)
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $i)))`);
const MODULE = b64(GUEST);
const KEY = 'jobs-key-0123456789abcdef';
const OTHER_KEY = 'other-key-0123456789abcdef';
const SECRET = 'test-callback-secret-0123456789';
/** Long enough that a job finished during a slow step (a replica restarting on a loaded machine) is
 *  still there when the test reads it; the expiry test waits it out. */
const TTL_S = 30;
/** Iterations of `count` that take about 5 s metered (measured in the first test). */
let LONG_COUNT = 50_000_000;

const auth = (key = KEY) => ({ authorization: `Bearer ${key}` });
/** The non-secret id the server gives a key (src/callers/api-keys.ts). */
const keyIdOf = (key: string) => `key-${createHash('sha256').update(key).digest('hex').slice(0, 8)}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const add = (a: number, b: number) => ({ module: MODULE, function: 'add', args: [a, b] });
const count = (n: number) => ({ module: MODULE, function: 'count', args: [n], limits: { fuel: 1_000_000_000_000, timeoutMs: 120_000 } });
const SPIN = { module: MODULE, function: 'spin', limits: { fuel: 1_000_000_000_000, timeoutMs: 120_000 } };

interface Delivery {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A callback receiver on 127.0.0.1 (the allowlist names the literal address). */
class Receiver {
  readonly deliveries: Delivery[] = [];
  private server!: Server;
  port = 0;
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.deliveries.push({ headers: req.headers, body: Buffer.concat(chunks) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }
  for(jobId: string): Delivery[] {
    return this.deliveries.filter((d) => d.headers['x-wasmbox-job-id'] === jobId);
  }
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function verify(body: Buffer, signature: unknown): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`);
  const got = Buffer.from(String(signature));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

let redis: TestRedis;
let inspect: Redis;
const receiver = new Receiver();
const replicas: ChildServer[] = [];
let env: Record<string, string>;

async function replica(): Promise<ChildServer> {
  const server = await spawnServer(env);
  replicas.push(server);
  await waitReady(server);
  return server;
}

async function submit(base: string, body: unknown, key = KEY): Promise<string> {
  const res = await call(base, 'POST', '/jobs', body, auth(key));
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  expect(res.body.status).toBe('queued');
  return res.body.jobId as string;
}

/** Polls through `base` until `until` holds. */
async function waitJob(base: string, jobId: string, until: (job: any) => boolean, withinMs = 30_000): Promise<any> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const res = await call(base, 'GET', `/jobs/${jobId}`, undefined, auth());
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    if (until(res.body)) return res.body;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is still ${JSON.stringify(res.body)}`);
    await sleep(25);
  }
}

const isDone = (job: any): boolean => job.status === 'done';
const isRunning = (job: any): boolean => job.status === 'running' && job.progress?.fuelConsumed > 0;

async function waitExit(server: ChildServer, withinMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const deadline = Date.now() + withinMs;
  while (!server.exited()) {
    if (Date.now() > deadline) throw new Error('the replica did not exit in time');
    await sleep(25);
  }
  return server.exited()!;
}

beforeAll(async () => {
  redis = await startRedis();
  await receiver.start();
  env = {
    REDIS_URL: redis.url,
    WASMBOX_API_KEYS: `${KEY},${OTHER_KEY}`,
    WASMBOX_JOBS_CONCURRENCY: '1',
    // Guests that run for seconds (metered code burns a few billion fuel a second).
    WASMBOX_FUEL_MAX: '1000000000000',
    // Submission checks the key's concurrency quota too (a preparation holds a slot): room for the
    // jobs these tests keep running while they submit more.
    WASMBOX_MAX_CONCURRENT_PER_KEY: '8',
    WASMBOX_JOBS_MAX_PER_KEY: '4',
    WASMBOX_JOBS_LOCK_MS: '1000',
    WASMBOX_JOB_TTL_S: String(TTL_S),
    WASMBOX_DRAIN_DELAY_MS: '0',
    WASMBOX_CONCURRENCY_LEASE_MS: '2000',
    WASMBOX_CALLBACK_ALLOWLIST: `127.0.0.1:${receiver.port}`,
    WASMBOX_CALLBACK_SECRET: SECRET,
  };
  inspect = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  inspect.on('error', () => {});
  await inspect.connect();
  await Promise.all([replica(), replica()]);
}, 60_000);

afterAll(async () => {
  inspect?.disconnect();
  await Promise.all(replicas.map((r) => r.close()));
  await receiver.close();
  await redis?.stop();
});

describe('jobs shared by two replicas through Redis (BullMQ)', () => {
  it('a job submitted to replica A is read through replica B, finishes with the body /execute answers, and is the same from both; another key gets 404', async () => {
    const [a, b] = replicas.map((r) => r.url) as [string, string];
    const jobId = await submit(a, add(40, 2));
    const fromB = await waitJob(b, jobId, isDone);
    expect(fromB.result.results).toEqual([42]);
    expect(fromB.result.outcome).toBe('ok');
    expect(fromB.cancelled).toBe(false);
    const fromA = await call(a, 'GET', `/jobs/${jobId}`, undefined, auth());
    expect(fromA.body).toEqual(fromB);
    for (const base of [a, b]) {
      const other = await call(base, 'GET', `/jobs/${jobId}`, undefined, auth(OTHER_KEY));
      expect(other.status).toBe(404);
      expect(other.body.error.code).toBe('job_not_found');
      expect((await call(base, 'DELETE', `/jobs/${jobId}`, undefined, auth(OTHER_KEY))).status).toBe(404);
    }
    // A long count, to size the runs the later tests need to still be running after several seconds (about
    // 10 s: two replicas starting on a loaded 2-core machine took more than 5 s), timed by the faster of
    // two probes: WebAssembly has no on-stack replacement, so a thread's first call of `count` may run in
    // the baseline compiler to its end, and a long job sized by such a slow first probe (on a loaded CI
    // machine) ran in the optimized code and ended before the test could act on it.
    let ms = Infinity;
    for (let probe = 0; probe < 2; probe++) {
      const r = await call(a, 'POST', '/execute', { ...count(20_000_000), limits: { fuel: 10_000_000_000, timeoutMs: 30_000 } }, auth());
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body.results).toEqual([20_000_000]);
      ms = Math.min(ms, r.body.telemetry.durationNs / 1e6);
    }
    LONG_COUNT = Math.min(2_000_000_000, Math.max(20_000_000, Math.round((20_000_000 * 10_000) / Math.max(1, ms))));
  }, 60_000);

  it('a callback arrives signed at a local receiver exactly once, and its state reads the same through both replicas', async () => {
    const [a, b] = replicas.map((r) => r.url) as [string, string];
    const callbackUrl = `http://127.0.0.1:${receiver.port}/hook`;
    const jobId = await submit(a, { ...add(1, 2), callbackUrl });
    const done = await waitJob(b, jobId, (j) => isDone(j) && j.callback?.delivered === true);
    expect(done.callback).toMatchObject({ attempts: 1, lastStatus: 204, delivered: true });
    await sleep(300);
    const got = receiver.for(jobId);
    expect(got).toHaveLength(1);
    expect(verify(got[0]!.body, got[0]!.headers['x-wasmbox-signature'])).toBe(true);
    const sent = JSON.parse(got[0]!.body.toString('utf8'));
    expect(sent.result.results).toEqual([3]);
    const { callback: _c, ...withoutCallback } = done;
    expect(sent).toEqual(withoutCallback);
    expect((await call(a, 'GET', `/jobs/${jobId}`, undefined, auth())).body.callback).toEqual(done.callback);
  }, 60_000);

  it('cancels a running job through the replica that does not run it: two running jobs, one per replica, each cancelled through a different replica', async () => {
    const [a, b] = replicas.map((r) => r.url) as [string, string];
    // One job slot per replica (WASMBOX_JOBS_CONCURRENCY=1): two jobs running at once run on
    // different replicas, so one of the two cancels below crosses replicas whichever runs which.
    const first = await submit(a, SPIN);
    const second = await submit(b, SPIN);
    await waitJob(a, first, isRunning);
    await waitJob(a, second, isRunning);
    const started = Date.now();
    const [c1, c2] = await Promise.all([call(a, 'DELETE', `/jobs/${first}`, undefined, auth()), call(b, 'DELETE', `/jobs/${second}`, undefined, auth())]);
    for (const c of [c1, c2]) {
      expect(c.status).toBe(200);
      expect(c.body.status).toBe('done');
      expect(c.body.cancelled).toBe(true);
      expect(c.body.progress.fuelConsumed).toBeGreaterThan(0);
      expect(c.body.result).toBeUndefined();
    }
    expect(Date.now() - started).toBeLessThan(5_000);
    // The cancelled result is the one result: the same through the other replica, and again later.
    await sleep(500);
    expect((await call(b, 'GET', `/jobs/${first}`, undefined, auth())).body).toEqual(c1.body);
    expect((await call(a, 'GET', `/jobs/${second}`, undefined, auth())).body).toEqual(c2.body);
  }, 60_000);

  it('cancels a queued job at once: it never runs', async () => {
    const [a, b] = replicas.map((r) => r.url) as [string, string];
    const busy = [await submit(a, SPIN), await submit(a, SPIN)];
    await waitJob(a, busy[0]!, isRunning);
    await waitJob(a, busy[1]!, isRunning);
    const queued = await submit(a, add(2, 2));
    expect((await call(b, 'GET', `/jobs/${queued}`, undefined, auth())).body.status).toBe('queued');
    const cancelled = await call(b, 'DELETE', `/jobs/${queued}`, undefined, auth());
    expect(cancelled.body).toMatchObject({ status: 'done', cancelled: true });
    expect(cancelled.body.startedAt).toBeUndefined();
    for (const id of busy) await call(a, 'DELETE', `/jobs/${id}`, undefined, auth());
    await sleep(500);
    const later = await call(a, 'GET', `/jobs/${queued}`, undefined, auth());
    expect(later.body).toEqual(cancelled.body);
    expect(await inspect.exists(`wasmbox:bull:jobs:${queued}`)).toBe(0);
  }, 60_000);

  it('WASMBOX_JOBS_MAX_PER_KEY holds across the fleet: a key with that many jobs queued or running is refused on every replica, and a finished one frees a place', async () => {
    const [a, b] = replicas.map((r) => r.url) as [string, string];
    const held = [];
    for (let i = 0; i < 4; i++) held.push(await submit(i % 2 === 0 ? a : b, SPIN, OTHER_KEY));
    for (const base of [a, b]) {
      const refused = await call(base, 'POST', '/jobs', add(1, 1), auth(OTHER_KEY));
      expect(refused.status).toBe(429);
      expect(refused.body.error.code).toBe('rate_limited');
      expect(refused.body.error.message).toMatch(/already has 4 jobs queued or running.*WASMBOX_JOBS_MAX_PER_KEY=4/);
    }
    // Another key is not held back by it.
    const mine = await submit(a, add(1, 1));
    // One queued and one running job cancelled: two places again, not more.
    const cancelled = await call(a, 'DELETE', `/jobs/${held[3]}`, undefined, auth(OTHER_KEY));
    expect(cancelled.body.cancelled).toBe(true);
    const again = await submit(b, add(2, 2), OTHER_KEY);
    expect((await call(a, 'POST', '/jobs', add(2, 2), auth(OTHER_KEY))).status).toBe(429);
    for (const id of held.slice(0, 3)) expect((await call(b, 'DELETE', `/jobs/${id}`, undefined, auth(OTHER_KEY))).body.status).toBe('done');
    await waitJob(a, mine, isDone);
    for (let done = false; !done; await sleep(25)) done = (await call(a, 'GET', `/jobs/${again}`, undefined, auth(OTHER_KEY))).body.status === 'done';
    // Every place given back: the count of the key's queued and running jobs is gone.
    expect(await inspect.hget('wasmbox:jobs:active', keyIdOf(OTHER_KEY))).toBeNull();
  }, 60_000);

  it('SIGTERM: the replica stops taking jobs, finishes the one it runs and exits 0; the jobs still queued finish on a replica started after', async () => {
    // Replica B goes first (idle), so A is the only one taking jobs.
    const b = replicas.pop()!;
    await b.close();
    const a = replicas[0]!;
    const long = await submit(a.url, count(LONG_COUNT));
    await waitJob(a.url, long, isRunning);
    const queued = [await submit(a.url, add(1, 1)), await submit(a.url, add(2, 3)), await submit(a.url, add(5, 8))];
    a.child.kill('SIGTERM');
    const exit = await waitExit(a);
    expect(exit.code).toBe(0);
    replicas.shift();
    // A took none of the queued jobs: all three wait in BullMQ's list.
    const waiting = await inspect.lrange('wasmbox:bull:jobs:wait', 0, -1);
    expect(waiting.sort()).toEqual([...queued].sort());
    const next = await replica();
    const drained = await waitJob(next.url, long, isDone);
    expect(drained.result.results).toEqual([LONG_COUNT]);
    const sums = [];
    for (const id of queued) sums.push((await waitJob(next.url, id, isDone)).result.results[0]);
    expect(sums).toEqual([2, 5, 13]);
  }, 120_000);

  it('SIGKILL mid-job loses nothing: another replica runs it again, and one result and one callback are ever reported', async () => {
    const victim = replicas[0]!;
    const callbackUrl = `http://127.0.0.1:${receiver.port}/kill`;
    const jobId = await submit(victim.url, { ...count(LONG_COUNT), callbackUrl });
    await waitJob(victim.url, jobId, isRunning);
    // Two more replicas, started while the only worker that could take the job runs it.
    const [c, d] = await Promise.all([replica(), replica()]);
    expect((await call(c.url, 'GET', `/jobs/${jobId}`, undefined, auth())).body.status).toBe('running');
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await waitExit(victim);
    replicas.splice(replicas.indexOf(victim), 1);
    const done = await waitJob(c.url, jobId, isDone, 60_000);
    expect(done.result.outcome).toBe('ok');
    expect(done.result.results).toEqual([LONG_COUNT]);
    // It ran again from the start on a surviving replica (within about twice WASMBOX_JOBS_LOCK_MS).
    expect(Date.parse(done.startedAt)).toBeGreaterThan(killedAt);
    const delivered = await waitJob(d.url, jobId, (j) => j.callback?.delivered === true);
    // The same job through the other replica (the callback's state aside: it moves on meanwhile).
    const { callback: _c, ...result } = done;
    const { callback: _d, ...sameResult } = delivered;
    expect(sameResult).toEqual(result);
    await sleep(500);
    const got = receiver.for(jobId);
    expect(got).toHaveLength(1);
    expect(verify(got[0]!.body, got[0]!.headers['x-wasmbox-signature'])).toBe(true);
    expect(JSON.parse(got[0]!.body.toString('utf8')).result.results).toEqual([LONG_COUNT]);
  }, 120_000);

  it('a finished job is 404 on every replica once WASMBOX_JOB_TTL_S has passed', async () => {
    const [c, d] = replicas.map((r) => r.url) as [string, string];
    const jobId = await submit(c, add(3, 4));
    const done = await waitJob(d, jobId, isDone);
    expect(Date.parse(done.expiresAt) - Date.parse(done.finishedAt)).toBe(TTL_S * 1000);
    await sleep(Math.max(0, Date.parse(done.expiresAt) - Date.now()) + 100);
    for (const base of [c, d]) {
      const res = await call(base, 'GET', `/jobs/${jobId}`, undefined, auth());
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('job_not_found');
    }
  }, 60_000);

  it('while Redis is away, POST /jobs and GET /jobs/{jobId} are 503 backend_unavailable and the replica stays up; jobs run again once it is back', async () => {
    const base = replicas[0]!.url;
    await redis.stop();
    const post = await call(base, 'POST', '/jobs', add(1, 2), auth());
    expect(post.status).toBe(503);
    expect(post.body.error.code).toBe('backend_unavailable');
    expect(post.body.error.message).toMatch(/Redis \(REDIS_URL\)/);
    const get = await call(base, 'GET', '/jobs/00000000-0000-4000-8000-000000000000', undefined, auth());
    expect(get.status).toBe(503);
    expect(get.body.error.code).toBe('backend_unavailable');
    expect(replicas.every((r) => r.exited() === null)).toBe(true);
    await redis.start();
    for (const r of replicas) await waitReady(r, 20_000);
    const jobId = await submit(base, add(20, 22));
    expect((await waitJob(replicas[1]!.url, jobId, isDone)).result.results).toEqual([42]);
  }, 60_000);
});


describe('a replica started while Redis is away', () => {
  it('takes and runs jobs once Redis is there (its worker is the only one)', async () => {
    for (const r of replicas.splice(0)) await r.close();
    await redis.stop();
    const late = await spawnServer(env);
    replicas.push(late);
    expect((await call(late.url, 'GET', '/readyz')).status).toBe(503);
    await redis.start();
    await waitReady(late, 20_000);
    const jobId = await submit(late.url, add(30, 12));
    expect((await waitJob(late.url, jobId, isDone, 15_000)).result.results).toEqual([42]);
  }, 60_000);
});

describe('a job refused for load when it comes to run', () => {
  it('goes back to the queue (delayed) and runs once there is room, instead of ending with the refusal', async () => {
    for (const r of replicas.splice(0)) await r.close();
    // One runner thread that is never handed a run ahead, two job slots and no run queue: a second
    // job that starts while the first runs is refused overloaded by the execution service.
    const only = await spawnServer({ ...env, WASMBOX_WORKERS: '1', WASMBOX_RUN_PREFETCH: '0', WASMBOX_JOBS_CONCURRENCY: '2', WASMBOX_QUEUE_MAX: '0' });
    replicas.push(only);
    await waitReady(only);
    const first = await submit(only.url, count(Math.round(LONG_COUNT / 2)));
    await waitJob(only.url, first, isRunning);
    const second = await submit(only.url, add(20, 1));
    const firstDone = await waitJob(only.url, first, isDone, 60_000);
    const secondDone = await waitJob(only.url, second, isDone, 60_000);
    expect(firstDone.result.results).toEqual([Math.round(LONG_COUNT / 2)]);
    expect(secondDone.error).toBeUndefined();
    expect(secondDone.result.results).toEqual([21]);
    expect(Date.parse(secondDone.finishedAt)).toBeGreaterThanOrEqual(Date.parse(firstDone.finishedAt));
    // It was taken, refused and put back at least once (BullMQ counts the starts).
    expect(Number(await inspect.hget(`wasmbox:bull:jobs:${second}`, 'ats'))).toBeGreaterThan(1);
  }, 60_000);
});

describe('a job BullMQ itself failed', () => {
  it('one whose replicas died more than twice (failed by the stalled-job check) reads done with an error, and gives its place back', async () => {
    for (const r of replicas.splice(0)) await r.close();
    // No replica is running: the job is made, taken and failed here, through BullMQ itself, as its
    // stalled-job check fails a job that stalled more than maxStalledCount times.
    const connection = { url: redis.url, maxRetriesPerRequest: null };
    const queue = new Queue('jobs', { connection, prefix: 'wasmbox:bull' });
    const worker = new Worker('jobs', null, { connection, prefix: 'wasmbox:bull', autorun: false });
    try {
      const jobId = '6f1c7a52-3b1d-4c47-9d0e-2a8f5e4b7c10';
      const now = Date.now();
      await queue.add('run', { owner: { caller: keyIdOf(KEY), keyId: keyIdOf(KEY) }, callbackUrl: null, fields: { args: [1, 2], function: 'add' }, createdAtMs: now }, { jobId });
      await inspect.hincrby('wasmbox:jobs:active', keyIdOf(KEY), 1);
      const held = Number(await inspect.hget('wasmbox:jobs:active', keyIdOf(KEY)));
      const job = await worker.getNextJob('test-token');
      expect(job?.id).toBe(jobId);
      await job!.moveToFailed(new Error('job stalled more than allowable limit'), 'test-token', false);
      const late = await replica();
      const res = await call(late.url, 'GET', `/jobs/${jobId}`, undefined, auth());
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: 'done', cancelled: false, error: { code: 'internal_error' } });
      expect(res.body.error.message).toMatch(/lost: the replicas running it stopped 3 times/);
      expect(res.body.result).toBeUndefined();
      expect((await call(late.url, 'GET', `/jobs/${jobId}`, undefined, auth())).body).toEqual(res.body);
      expect(Number((await inspect.hget('wasmbox:jobs:active', keyIdOf(KEY))) ?? 0)).toBe(held - 1);
    } finally {
      await worker.close();
      await queue.close();
    }
  }, 60_000);
});

describe('a job run again after its lock lapsed', () => {
  it('reports the result written first: the second run finds it, records no other and sends no callback', async () => {
    for (const r of replicas.splice(0)) await r.close();
    // A holder that took the job, wrote its result and lost its lock before BullMQ recorded the
    // end (a replica stalled past WASMBOX_JOBS_LOCK_MS): played here through BullMQ's own client.
    const connection = { url: redis.url, maxRetriesPerRequest: null };
    const queue = new Queue('jobs', { connection, prefix: 'wasmbox:bull' });
    const holder = new Worker('jobs', null, { connection, prefix: 'wasmbox:bull', autorun: false, lockDuration: 1_000 });
    try {
      const jobId = '0b6d2c1e-8f4a-4d3b-a1c9-5e7f2d8b4a61';
      const now = Date.now();
      const callbackUrl = `http://127.0.0.1:${receiver.port}/twice`;
      await queue.add('run', { owner: { caller: keyIdOf(KEY), keyId: keyIdOf(KEY) }, callbackUrl, fields: { args: [1, 2], function: 'add' }, createdAtMs: now }, { jobId });
      await inspect.hincrby('wasmbox:jobs:active', keyIdOf(KEY), 1);
      const job = await holder.getNextJob('holder-token');
      expect(job?.id).toBe(jobId);
      const first = { keyId: keyIdOf(KEY), callbackUrl, createdAtMs: now, startedAtMs: now, finishedAtMs: now + 1, expiresAtMs: now + 60_000, cancelled: false, result: { outcome: 'ok', results: [99] } };
      await inspect.set(`wasmbox:job:${jobId}:result`, JSON.stringify(first), 'PX', 60_000);
      // A replica's stalled-job check finds the lapsed lock and its worker runs the job again.
      const next = await replica();
      const deadline = Date.now() + 20_000;
      while ((await queue.getJobState(jobId)) !== 'completed') {
        if (Date.now() > deadline) throw new Error(`the job is still ${await queue.getJobState(jobId)}`);
        await sleep(50);
      }
      const read = await call(next.url, 'GET', `/jobs/${jobId}`, undefined, auth());
      expect(read.body.status).toBe('done');
      expect(read.body.result).toEqual({ outcome: 'ok', results: [99] });
      await sleep(300);
      expect(receiver.for(jobId)).toHaveLength(0);
    } finally {
      await holder.close();
      await queue.close();
    }
  }, 60_000);
});

describe('shutdown while Redis is away', () => {
  it('a replica SIGTERMed while Redis is down stops its worker and exits 0 within seconds, not at the shutdown backstop', async () => {
    const server = replicas.pop()!;
    await redis.stop();
    const started = Date.now();
    server.child.kill('SIGTERM');
    const exit = await waitExit(server, 30_000);
    expect(exit.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 60_000);
});
