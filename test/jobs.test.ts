// Asynchronous jobs against the real server on a real port: POST /jobs validates like /execute
// and answers 202, GET /jobs/{jobId} shows queued, running (with live fuel) and done (with the
// body /execute would have answered), DELETE cancels, ownership by API key, expiry, bounds, and
// draining on SIGTERM. Callbacks are in job-callbacks.test.ts.

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnServer } from './helpers/child-server.js';
import { BOUNDARY, multipartBody } from './helpers/forms.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const GUEST = wat(`(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "spin") (loop $l br $l))
  (func (export "boom") unreachable))`);
const MODULE = b64(GUEST);
/** Spins until its fuel or deadline: long enough to be seen running and to be cancelled. */
const SPIN = { module: MODULE, function: 'spin', limits: { fuel: 10_000_000_000, timeoutMs: 60_000 } };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function call(base: string, method: 'GET' | 'DELETE' | 'POST', path: string, headers: Record<string, string> = {}, body?: unknown) {
  const res = await request(base + path, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

/** Polls the job until `until` holds (at most `withinMs`). */
async function waitFor(base: string, jobId: string, until: (job: any) => boolean, headers: Record<string, string> = {}, withinMs = 20_000): Promise<any> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const res = await call(base, 'GET', `/jobs/${jobId}`, headers);
    expect(res.status).toBe(200);
    if (until(res.body)) return res.body;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is still ${JSON.stringify(res.body)}`);
    await sleep(20);
  }
}

const isDone = (job: any): boolean => job.status === 'done';

describe('POST /jobs and GET /jobs/{jobId}', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_JOB_TTL_S: '1' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('answers 202 { jobId, status: queued } with a location, and the finished job carries the body /execute answers', async () => {
    const body = { module: MODULE, function: 'add', args: [5, 10] };
    const submitted = await s.post('/jobs', body);
    expect(submitted.status).toBe(202);
    expect(submitted.body).toEqual({ jobId: expect.any(String), status: 'queued' });
    expect(submitted.headers.location).toBe(`/jobs/${submitted.body.jobId}`);
    const job = await waitFor(s.url, submitted.body.jobId, isDone);
    const sync = await s.execute(body);
    expect(job).toMatchObject({ jobId: submitted.body.jobId, status: 'done', cancelled: false, createdAt: expect.any(String), finishedAt: expect.any(String) });
    expect(job.result.outcome).toBe('ok');
    expect(job.result.results).toEqual([15]);
    expect(Object.keys(job.result).sort()).toEqual(Object.keys(sync.body).sort());
    expect(job.result.moduleId).toBe(sync.body.moduleId);
    expect(job.result.telemetry.fuelConsumed).toBe(sync.body.telemetry.fuelConsumed);
    expect(Date.parse(job.expiresAt) - Date.parse(job.finishedAt)).toBe(1000);
  });

  it('runs a batch job (calls) and a job sent as WebAssembly text, answering what /execute answers', async () => {
    const batchBody = { module: MODULE, calls: [{ function: 'add', args: [1, 2] }, { function: 'boom' }, { function: 'add', args: [3, 4] }] };
    const batch = await s.post('/jobs', batchBody);
    expect(batch.status).toBe(202);
    const done = await waitFor(s.url, batch.body.jobId, isDone);
    const sync = await s.execute(batchBody);
    expect(done.result.calls.map((c: any) => c.outcome)).toEqual(['ok', 'trap', 'ok']);
    expect(done.result.calls.map((c: any) => c.results ?? null)).toEqual(sync.body.calls.map((c: any) => c.results ?? null));
    expect(done.result.telemetry.calls).toBe(3);
    expect(done.result.telemetry.fuelConsumed).toBe(sync.body.telemetry.fuelConsumed);

    const text = await s.post('/jobs', { wat: '(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))', function: 'add', args: [20, 22] });
    expect(text.status).toBe(202);
    const fromText = await waitFor(s.url, text.body.jobId, isDone);
    expect(fromText.result.results).toEqual([42]);
    const bad = await s.post('/jobs', { wat: '(module (func (export "f") (result i32) i32.const x))', function: 'f' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_module');
    expect(bad.body.error.message).toMatch(/line 1, column/);
  });

  it('reports a guest failure as a done job with the outcome /execute reports (trap), not as an error', async () => {
    const { body } = await s.post('/jobs', { module: MODULE, function: 'boom' });
    const job = await waitFor(s.url, body.jobId, isDone);
    expect(job.result.outcome).toBe('trap');
    expect(job.result.trap.kind).toBe('unreachable');
    expect(job.error).toBeUndefined();
  });

  it('takes the multipart and application/wasm forms, with callbackUrl among their fields', async () => {
    const form = multipartBody([
      { name: 'module', filename: 'guest.wasm', data: GUEST },
      { name: 'function', value: 'add' },
      { name: 'args', value: '[2,3]' },
    ]);
    const multipart = await request(`${s.url}/jobs`, { method: 'POST', body: form, headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` } });
    const m = (await multipart.body.json()) as any;
    expect(multipart.statusCode).toBe(202);
    expect((await waitFor(s.url, m.jobId, isDone)).result.results).toEqual([5]);

    const raw = await request(`${s.url}/jobs?function=add&args=7&args=8`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: GUEST });
    const w = (await raw.body.json()) as any;
    expect(raw.statusCode).toBe(202);
    expect((await waitFor(s.url, w.jobId, isDone)).result.results).toEqual([15]);

    // The field is read in each form (and refused here: this server has no callback allowlist).
    const withUrl = await request(`${s.url}/jobs?function=add&args=1&args=2&callbackUrl=http://127.0.0.1:1/`, {
      method: 'POST',
      headers: { 'content-type': 'application/wasm' },
      body: GUEST,
    });
    const refused = (await withUrl.body.json()) as any;
    expect(withUrl.statusCode).toBe(400);
    expect(refused.error.code).toBe('invalid_request');
    expect(refused.error.message).toMatch(/^callbackUrl: .*allowlist/);
  });

  it('refuses an invalid job with the same status and code /execute gives the same body, and queues nothing', async () => {
    const cases: Record<string, unknown>[] = [
      { module: b64(new Uint8Array([0, 97, 115, 109, 9, 9, 9, 9])), function: 'add' },
      { module: MODULE, function: 'sub' },
      { module: MODULE, function: 'add', args: [1] },
      { module: MODULE, function: 'add', args: [1, 2], limits: { fuel: 0 } },
      { module: MODULE, function: 'add', modul: 1 },
      { moduleId: `sha256:${'a'.repeat(64)}`, function: 'add' },
    ];
    const codes: string[] = [];
    for (const body of cases) {
      const sync = await s.execute(body);
      const job = await s.post('/jobs', body);
      expect(job.status, JSON.stringify(body).slice(0, 80)).toBe(sync.status);
      expect(job.body.error.code).toBe(sync.body.error.code);
      codes.push(job.body.error.code);
    }
    expect(codes).toEqual(['invalid_module', 'function_not_found', 'invalid_arguments', 'limit_out_of_range', 'invalid_request', 'module_not_found']);
    const metrics = await s.get('/metrics');
    expect(metrics.text).not.toMatch(/wasmbox_jobs\{status="queued"\} [1-9]/);
  });

  it('allows a timeoutMs above the synchronous maximum up to WASMBOX_JOB_TIMEOUT_MS_MAX, and refuses one above it', async () => {
    const over = s.config.limits.max.timeoutMs + 1;
    const sync = await s.execute({ module: MODULE, function: 'add', args: [1, 2], limits: { timeoutMs: over } });
    expect(sync.body.error.code).toBe('limit_out_of_range');
    const job = await s.post('/jobs', { module: MODULE, function: 'add', args: [1, 2], limits: { timeoutMs: over } });
    expect(job.status).toBe(202);
    expect((await waitFor(s.url, job.body.jobId, isDone)).result.outcome).toBe('ok');
    const jobMax = s.config.jobs.limits.max.timeoutMs;
    const tooLong = await s.post('/jobs', { module: MODULE, function: 'add', args: [1, 2], limits: { timeoutMs: jobMax + 1 } });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error.code).toBe('limit_out_of_range');
    expect(tooLong.body.error.message).toContain(`from 1 to ${jobMax}`);
  });

  it('shows a running job with the fuel it has consumed so far, growing; DELETE stops it: done, cancelled, its account kept', async () => {
    const threadsBefore = s.runnerThreadIds();
    const { body } = await s.post('/jobs', SPIN);
    const first = await waitFor(s.url, body.jobId, (j) => j.status === 'running' && j.progress.fuelConsumed > 0);
    expect(first.startedAt).toEqual(expect.any(String));
    const later = await waitFor(s.url, body.jobId, (j) => j.progress.fuelConsumed > first.progress.fuelConsumed);
    expect(later.status).toBe('running');

    const t = Date.now();
    const cancelled = await call(s.url, 'DELETE', `/jobs/${body.jobId}`);
    expect(Date.now() - t).toBeLessThan(5_000);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ jobId: body.jobId, status: 'done', cancelled: true });
    expect(cancelled.body.result).toBeUndefined();
    expect(cancelled.body.progress.fuelConsumed).toBeGreaterThanOrEqual(later.progress.fuelConsumed);
    // The same answer afterwards; a second DELETE changes nothing.
    const again = await call(s.url, 'DELETE', `/jobs/${body.jobId}`);
    expect(again.body).toEqual(cancelled.body);
    // Its thread was terminated and replaced.
    expect(s.runnerThreadIds()).not.toEqual(threadsBefore);
    expect(s.runnerThreadIds()).toHaveLength(threadsBefore.length);
  });

  it('answers 404 job_not_found for an unknown id, and for a finished job once WASMBOX_JOB_TTL_S has passed', async () => {
    const unknown = await call(s.url, 'GET', '/jobs/no-such-job');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('job_not_found');
    expect((await call(s.url, 'DELETE', '/jobs/no-such-job')).body.error.code).toBe('job_not_found');

    const { body } = await s.post('/jobs', { module: MODULE, function: 'add', args: [1, 1] });
    const job = await waitFor(s.url, body.jobId, isDone);
    await sleep(Math.max(0, Date.parse(job.expiresAt) - Date.now()) + 50);
    const expired = await call(s.url, 'GET', `/jobs/${body.jobId}`);
    expect(expired.status).toBe(404);
    expect(expired.body.error.code).toBe('job_not_found');
  });

  it('counts jobs in /metrics: submitted, finished by outcome, held by status', async () => {
    const metrics = (await s.get('/metrics')).text;
    expect(metrics).toMatch(/^wasmbox_jobs_submitted_total [1-9]/m);
    expect(metrics).toMatch(/^wasmbox_jobs_finished_total\{outcome="ok"\} [1-9]/m);
    expect(metrics).toMatch(/^wasmbox_jobs_finished_total\{outcome="trap"\} 1$/m);
    expect(metrics).toMatch(/^wasmbox_jobs_finished_total\{outcome="cancelled"\} 1$/m);
    expect(metrics).toMatch(/^wasmbox_jobs\{status="running"\} 0$/m);
  });
});

describe('job queue: order, cancellation of queued jobs, bounds', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_JOBS_CONCURRENCY: '1', WASMBOX_JOBS_MAX: '3' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('keeps jobs past WASMBOX_JOBS_CONCURRENCY queued; DELETE removes a queued one; past WASMBOX_JOBS_MAX held, 503 overloaded with Retry-After', async () => {
    const running = (await s.post('/jobs', SPIN)).body.jobId;
    await waitFor(s.url, running, (j) => j.status === 'running');
    const queued = (await s.post('/jobs', { module: MODULE, function: 'add', args: [1, 2] })).body.jobId;
    const third = (await s.post('/jobs', { module: MODULE, function: 'add', args: [3, 4] })).body.jobId;
    await sleep(100);
    expect((await call(s.url, 'GET', `/jobs/${queued}`)).body).toEqual({ jobId: queued, status: 'queued', createdAt: expect.any(String) });

    const full = await s.post('/jobs', { module: MODULE, function: 'add', args: [1, 2] });
    expect(full.status).toBe(503);
    expect(full.body.error.code).toBe('overloaded');
    expect(full.body.error.message).toContain('WASMBOX_JOBS_MAX');
    expect(Number(full.headers['retry-after'])).toBeGreaterThan(0);

    const cancelled = await call(s.url, 'DELETE', `/jobs/${queued}`);
    expect(cancelled.body).toMatchObject({ status: 'done', cancelled: true });
    expect(cancelled.body.startedAt).toBeUndefined();
    expect(cancelled.body.progress).toBeUndefined();
    await call(s.url, 'DELETE', `/jobs/${running}`);
    // The next queued job then runs.
    expect((await waitFor(s.url, third, isDone)).result.results).toEqual([7]);
    // A cancelled queued job never runs.
    expect((await call(s.url, 'GET', `/jobs/${queued}`)).body.result).toBeUndefined();
  });
});

describe('a job refused when it comes to run', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_JOBS_CONCURRENCY: '1' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('ends done with the error /execute would answer (module_not_found) when its stored module is deleted while it waits', async () => {
    const stored = await s.post('/modules', { module: MODULE });
    expect(stored.status).toBe(201);
    const moduleId = stored.body.moduleId as string;
    const blocker = (await s.post('/jobs', SPIN)).body.jobId;
    await waitFor(s.url, blocker, (j) => j.status === 'running');
    const byId = await s.post('/jobs', { moduleId, function: 'add', args: [1, 2] });
    expect(byId.status).toBe(202);
    expect((await call(s.url, 'DELETE', `/modules/${moduleId}`)).status).toBe(204);
    await call(s.url, 'DELETE', `/jobs/${blocker}`);
    const job = await waitFor(s.url, byId.body.jobId, isDone);
    expect(job).toMatchObject({ status: 'done', cancelled: false, error: { code: 'module_not_found', message: expect.stringContaining(moduleId) } });
    expect(job.result).toBeUndefined();
    expect((await s.get('/metrics')).text).toMatch(/^wasmbox_jobs_finished_total\{outcome="error"\} 1$/m);
  });
});

describe('jobs with API keys', () => {
  let s: TestServer;
  const A = { authorization: 'Bearer key-a-0123456789abcdef' };
  const B = { authorization: 'Bearer key-b-0123456789abcdef' };
  beforeAll(async () => {
    s = await startServer({ WASMBOX_API_KEYS: 'key-a-0123456789abcdef,key-b-0123456789abcdef', WASMBOX_JOBS_MAX_PER_KEY: '1' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it("gives a job only to the key that made it: another key's GET and DELETE are 404 job_not_found and leave it running", async () => {
    const submitted = await call(s.url, 'POST', '/jobs', A, SPIN);
    expect(submitted.status).toBe(202);
    const id = submitted.body.jobId;
    await waitFor(s.url, id, (j) => j.status === 'running', A);
    for (const method of ['GET', 'DELETE'] as const) {
      const other = await call(s.url, method, `/jobs/${id}`, B);
      expect(other.status).toBe(404);
      expect(other.body.error.code).toBe('job_not_found');
    }
    expect((await call(s.url, 'GET', `/jobs/${id}`)).status).toBe(401);
    expect((await call(s.url, 'GET', `/jobs/${id}`, A)).body.status).toBe('running');

    // One job queued or running per key here: A's second is 429, B's first is accepted.
    const second = await call(s.url, 'POST', '/jobs', A, { module: MODULE, function: 'add', args: [1, 2] });
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('rate_limited');
    expect(second.body.error.message).toContain('WASMBOX_JOBS_MAX_PER_KEY');
    const ofB = await call(s.url, 'POST', '/jobs', B, { module: MODULE, function: 'add', args: [1, 2] });
    expect(ofB.status).toBe(202);
    expect((await waitFor(s.url, ofB.body.jobId, isDone, B)).result.results).toEqual([3]);

    expect((await call(s.url, 'DELETE', `/jobs/${id}`, A)).body.cancelled).toBe(true);
    expect((await call(s.url, 'POST', '/jobs', A, { module: MODULE, function: 'add', args: [1, 2] })).status).toBe(202);
  });
});

describe('jobs on SIGTERM', () => {
  it('stops taking jobs (503 overloaded, then connection refused) and finishes the running one, whose callback is delivered, before exiting 0', async () => {
    const received: { body: any; at: number }[] = [];
    const receiver: Server = createServer((req: IncomingMessage, res) => {
      let text = '';
      req.on('data', (c) => (text += c));
      req.on('end', () => {
        received.push({ body: JSON.parse(text), at: Date.now() });
        res.end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const port = (receiver.address() as AddressInfo).port;
    const s = await spawnServer({
      WASMBOX_DRAIN_DELAY_MS: '0',
      WASMBOX_CALLBACK_ALLOWLIST: `127.0.0.1:${port}`,
      WASMBOX_CALLBACK_SECRET: 'a-test-secret-of-some-length',
    });
    try {
      // A job that runs about 1.5 s (it ends at its deadline as a timeout).
      const submit = await call(s.url, 'POST', '/jobs', {}, { ...SPIN, limits: { fuel: 10_000_000_000, timeoutMs: 1_500 }, callbackUrl: `http://127.0.0.1:${port}/done` });
      expect(submit.status).toBe(202);
      await waitFor(s.url, submit.body.jobId, (j) => j.status === 'running');
      const signalledAt = Date.now();
      s.child.kill('SIGTERM');
      // New jobs are refused: 503 overloaded, or no connection at all once the listener is closed.
      let refusal: string | null = null;
      for (let i = 0; i < 100 && refusal === null; i++) {
        try {
          const r = await call(s.url, 'POST', '/jobs', {}, { module: MODULE, function: 'add', args: [1, 2] });
          if (r.status === 503 && r.body.error.code === 'overloaded') refusal = '503 overloaded';
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') refusal = 'connection refused';
        }
        if (refusal === null) await sleep(20);
      }
      expect(refusal).not.toBeNull();
      expect(s.exited()).toBeNull();
      await new Promise<void>((resolve) => s.child.once('exit', () => resolve()));
      expect(s.exited()).toEqual({ code: 0, signal: null });
      expect(received).toHaveLength(1);
      expect(received[0]!.body).toMatchObject({ jobId: submit.body.jobId, status: 'done', result: { outcome: 'timeout' } });
      expect(received[0]!.at).toBeGreaterThan(signalledAt);
    } finally {
      await s.close();
      await new Promise((r) => receiver.close(r));
    }
  });
});
