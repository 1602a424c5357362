// Section "jobs": what a job adds to a run. The service as a child process (bench/server-process.ts)
// with the in-process job queue; a module stored once and run by moduleId, one request at a time:
// - sync: POST /execute, client-side latency;
// - job, polled: POST /jobs, then GET /jobs/{jobId} every POLL_MS until done (what a client that
//   polls sees; the poll interval is part of it);
// - job, callback: POST /jobs with a callbackUrl, until the signed callback reaches a receiver in
//   this process (no polling in it: the queue's own added latency, plus one HTTP POST).
// For a trivial guest (add) and a guest that runs a few milliseconds (spin until its fuel is
// spent), so the added latency is seen both alone and against a real run.
//
// Then throughput: jobs per second, each job a guest of a few ms, submitted JOBS_IN_FLIGHT at a
// time and counted done when its signed callback arrives, through one replica with the in-process
// queue, through one replica on Redis (BullMQ), and through two replicas sharing that Redis
// (submissions alternate between them), each replica with one runner thread and one job slot: the
// ratio two/one is how the shared queue scales when replicas are added.

import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { type SectionOptions, type SectionResult, fmt, fmtInt, quantile, table } from './lib.js';
import { startRedisProcess } from './redis-process.js';
import { type ServerProcess, startServer } from './server-process.js';

const POLL_MS = 2;
const SECRET = 'bench-callback-secret-0123456789';

/** (module (func (export "add") (param i32 i32) (result i32) ...) (func (export "spin") (loop br 0))) */
const MODULE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x0a, 0x02, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x00, 0x00,
  0x03, 0x03, 0x02, 0x00, 0x01,
  0x07, 0x0e, 0x02, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, 0x04, 0x73, 0x70, 0x69, 0x6e, 0x00, 0x01,
  0x0a, 0x11, 0x02, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b,
]);

export async function jobsSection(options: SectionOptions): Promise<SectionResult> {
  const problems: string[] = [];
  // The callback receiver: resolves the waiter of each job id as its signed callback arrives.
  const waiting = new Map<string, (at: number) => void>();
  const early = new Map<string, number>();
  let badSignatures = 0;
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      const body = Buffer.concat(chunks);
      const expected = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
      if (req.headers['x-wasmbox-signature'] !== expected) badSignatures++;
      res.end();
      const id = String(req.headers['x-wasmbox-job-id']);
      const w = waiting.get(id);
      if (w) w(at);
      else early.set(id, at);
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as AddressInfo).port;
  const server = await startServer('wasmbox', {
    WASMBOX_WORKERS: '2',
    LOG_LEVEL: 'warn',
    WASMBOX_CALLBACK_ALLOWLIST: `127.0.0.1:${port}`,
    WASMBOX_CALLBACK_SECRET: SECRET,
  });
  const cpu0 = server.cpuSeconds();
  try {
    const base = server.baseUrl;
    const post = async (path: string, body: unknown): Promise<{ status: number; body: any }> => {
      const res = await request(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.statusCode, body: await res.body.json() };
    };
    const stored = await request(`${base}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: MODULE });
    const moduleId = ((await stored.body.json()) as { moduleId: string }).moduleId;

    const sync = async (run: object): Promise<number> => {
      const t = performance.now();
      const r = await post('/execute', { moduleId, ...run });
      if (r.status !== 200) problems.push(`/execute answered ${r.status}`);
      return performance.now() - t;
    };
    const polled = async (run: object): Promise<number> => {
      const t = performance.now();
      const r = await post('/jobs', { moduleId, ...run });
      if (r.status !== 202) {
        problems.push(`/jobs answered ${r.status}: ${JSON.stringify(r.body)}`);
        return Number.NaN;
      }
      for (;;) {
        const g = await request(`${base}/jobs/${r.body.jobId}`);
        const job = (await g.body.json()) as { status: string };
        if (job.status === 'done') return performance.now() - t;
        await new Promise((res) => setTimeout(res, POLL_MS));
      }
    };
    const called = async (run: object): Promise<number> => {
      const t = performance.now();
      const r = await post('/jobs', { moduleId, ...run, callbackUrl: `http://127.0.0.1:${port}/done` });
      if (r.status !== 202) {
        problems.push(`/jobs answered ${r.status}: ${JSON.stringify(r.body)}`);
        return Number.NaN;
      }
      const id = r.body.jobId as string;
      const at = early.get(id) ?? (await new Promise<number>((resolve) => waiting.set(id, resolve)));
      waiting.delete(id);
      early.delete(id);
      return at - t;
    };

    const guests = [
      { name: 'add (trivial)', run: { function: 'add', args: [2, 3] }, reps: options.quick ? 20 : 200 },
      { name: 'spin, 20M fuel (a few ms)', run: { function: 'spin', limits: { fuel: 20_000_000 } }, reps: options.quick ? 10 : 60 },
    ];
    const rows: string[][] = [];
    const data: Record<string, unknown> = {};
    for (const g of guests) {
      options.log(`  jobs: ${g.name}, ${g.reps} x (execute, job polled every ${POLL_MS} ms, job with callback)`);
      for (let i = 0; i < 5; i++) await sync(g.run); // warm: cached, both threads used
      const s: number[] = [];
      const p: number[] = [];
      const c: number[] = [];
      // Interleaved, so drifts in the machine's load fall on all three alike.
      for (let i = 0; i < g.reps; i++) {
        s.push(await sync(g.run));
        p.push(await polled(g.run));
        c.push(await called(g.run));
      }
      const s50 = quantile(s, 0.5);
      const row = (what: string, xs: number[]): string[] => {
        const x50 = quantile(xs, 0.5);
        return [g.name, what, fmtInt(xs.length), fmt(x50, 2), fmt(quantile(xs, 0.99), 2), what === 'POST /execute' ? '' : fmt(x50 - s50, 2), what === 'POST /execute' ? '1' : fmt(x50 / s50, 2)];
      };
      rows.push(row('POST /execute', s), row(`job, polled every ${POLL_MS} ms`, p), row('job, until its callback arrives', c));
      data[g.name] = {
        syncMs: { p50: s50, p99: quantile(s, 0.99) },
        polledMs: { p50: quantile(p, 0.5), p99: quantile(p, 0.99) },
        callbackMs: { p50: quantile(c, 0.5), p99: quantile(c, 0.99) },
      };
    }
    if (badSignatures > 0) problems.push(`jobs: ${badSignatures} callbacks did not verify against the secret`);
    const markdown = [
      '## Jobs: the latency a job adds',
      '',
      `The service as a child process with 2 runner threads and the in-process job queue; a stored module run by moduleId, one request at a time, the three ways interleaved. ` +
        `Job latency is from POST /jobs to seeing it done: by polling GET /jobs/{jobId} every ${POLL_MS} ms, or by the signed callback reaching a receiver (no polling). Times in ms; "added" and "ratio" are against the p50 of POST /execute of the same guest.`,
      '',
      table(['guest', 'how', 'n', 'p50', 'p99', 'added p50', 'ratio p50'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r']),
    ].join('\n');
    const cpu = (server.cpuSeconds() ?? 0) - (cpu0 ?? 0);
    await server.stop();
    const tp = await throughput(options, problems);
    data.throughput = tp.data;
    return { markdown: `${markdown}\n\n${tp.markdown}`, data, ok: problems.length === 0, problems, missed: [], childCpuSeconds: cpu + tp.cpuSeconds };
  } finally {
    await server.stop();
    await new Promise((r) => receiver.close(r));
  }
}

const JOBS_IN_FLIGHT = 16;
const THROUGHPUT_FUEL = 10_000_000;
const LATENCY_FUEL = 20_000_000;

/** Jobs per second through one replica (in-process queue, then Redis) and through two replicas
 *  sharing one Redis. */
async function throughput(options: SectionOptions, problems: string[]): Promise<{ markdown: string; data: Record<string, unknown>; cpuSeconds: number }> {
  const n = options.quick ? 60 : 400;
  // Callbacks: each job id must arrive exactly once.
  const arrivals = new Map<string, number>();
  let expected = new Set<string>();
  let outstanding = 0;
  let allArrived: () => void = () => {};
  let badSignatures = 0;
  const waiters = new Map<string, (at: number) => void>();
  const arrivedAt = new Map<string, number>();
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      arrivedAt.set(String(req.headers['x-wasmbox-job-id']), performance.now());
      const body = Buffer.concat(chunks);
      if (req.headers['x-wasmbox-signature'] !== `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`) badSignatures++;
      res.end();
      const id = String(req.headers['x-wasmbox-job-id']);
      const seen = (arrivals.get(id) ?? 0) + 1;
      arrivals.set(id, seen);
      if (seen === 1) waiters.get(id)?.(performance.now());
      if (seen === 1 && expected.has(id) && --outstanding === 0) allArrived();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as AddressInfo).port;
  const env = {
    WASMBOX_WORKERS: '1',
    WASMBOX_JOBS_CONCURRENCY: '1',
    LOG_LEVEL: 'warn',
    WASMBOX_CALLBACK_ALLOWLIST: `127.0.0.1:${port}`,
    WASMBOX_CALLBACK_SECRET: SECRET,
  };
  const servers: ServerProcess[] = [];
  let cpuSeconds = 0;
  const stopAll = async (): Promise<void> => {
    for (const s of servers.splice(0)) {
      cpuSeconds += s.cpuSeconds() ?? 0;
      await s.stop();
    }
  };

  /** Submits `count` jobs round robin over `bases`; jobs per second until the last callback. */
  const measure = async (bases: string[], count: number): Promise<number> => {
    const stored = await request(`${bases[0]}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: MODULE });
    const moduleId = ((await stored.body.json()) as { moduleId: string }).moduleId;
    expected = new Set();
    outstanding = count;
    const done = new Promise<void>((resolve) => (allArrived = resolve));
    const t0 = performance.now();
    let next = 0;
    const submitter = async (): Promise<void> => {
      while (next < count) {
        const i = next++;
        const res = await request(`${bases[i % bases.length]}/jobs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ moduleId, function: 'spin', limits: { fuel: THROUGHPUT_FUEL }, callbackUrl: `http://127.0.0.1:${port}/tp` }),
        });
        const body = (await res.body.json()) as { jobId?: string };
        if (res.statusCode !== 202 || !body.jobId) {
          problems.push(`jobs throughput: POST /jobs answered ${res.statusCode}: ${JSON.stringify(body).slice(0, 200)}`);
          if (--outstanding === 0) allArrived();
          continue;
        }
        expected.add(body.jobId);
        if (arrivals.has(body.jobId) && --outstanding === 0) allArrived();
      }
    };
    // Submissions keep JOBS_IN_FLIGHT requests open; the queue holds the rest.
    await Promise.all(Array.from({ length: JOBS_IN_FLIGHT }, submitter));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([done.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 180_000)))]);
    clearTimeout(timer);
    if (timedOut) problems.push(`jobs throughput: ${outstanding} of ${count} callbacks had not arrived after 180 s`);
    return count / ((performance.now() - t0) / 1000);
  };

  /** One at a time, interleaved: POST /execute, and a job until its callback arrives (ms each). */
  const latency = async (base: string, reps: number): Promise<{ sync: number[]; job: number[] }> => {
    const stored = await request(`${base}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: MODULE });
    const moduleId = ((await stored.body.json()) as { moduleId: string }).moduleId;
    const run = { moduleId, function: 'spin', limits: { fuel: LATENCY_FUEL } };
    const post = async (path: string, body: object): Promise<{ status: number; body: any }> => {
      const res = await request(base + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.statusCode, body: await res.body.json() };
    };
    const sync: number[] = [];
    const job: number[] = [];
    for (let i = 0; i < reps + 5; i++) {
      let t = performance.now();
      const r = await post('/execute', run);
      if (r.status !== 200) problems.push(`jobs on Redis: /execute answered ${r.status}`);
      if (i >= 5) sync.push(performance.now() - t);
      t = performance.now();
      const j = await post('/jobs', { ...run, callbackUrl: `http://127.0.0.1:${port}/lat` });
      if (j.status !== 202) {
        problems.push(`jobs on Redis: /jobs answered ${j.status}: ${JSON.stringify(j.body).slice(0, 200)}`);
        continue;
      }
      const id = j.body.jobId as string;
      const at = arrivedAt.get(id) ?? (await new Promise<number>((resolve) => waiters.set(id, resolve)));
      waiters.delete(id);
      if (i >= 5) job.push(at - t);
    }
    return { sync, job };
  };

  const rows: string[][] = [];
  const latencyRows: string[][] = [];
  const data: Record<string, unknown> = { jobs: n, fuel: THROUGHPUT_FUEL, inFlight: JOBS_IN_FLIGHT };
  try {
    options.log(`  jobs: throughput, ${n} jobs of ${THROUGHPUT_FUEL / 1e6}M fuel, in-process queue, one replica`);
    servers.push(await startServer('wasmbox', env));
    await measure([servers[0]!.baseUrl], Math.min(20, n));
    const local = await measure([servers[0]!.baseUrl], n);
    await stopAll();
    rows.push(['in-process queue, 1 replica', '1', fmt(local, 1), '']);
    data.inProcessPerS = local;

    const redis = await startRedisProcess();
    if (!redis) {
      rows.push(['Redis (BullMQ)', '-', 'skipped: no redis-server', '']);
    } else {
      try {
        options.log(`  jobs: throughput on Redis, one replica then two`);
        servers.push(await startServer('wasmbox', { ...env, REDIS_URL: redis.url }));
        const lat = await latency(servers[0]!.baseUrl, options.quick ? 10 : 60);
        const s50 = quantile(lat.sync, 0.5);
        const j50 = quantile(lat.job, 0.5);
        latencyRows.push(['POST /execute', fmtInt(lat.sync.length), fmt(s50, 2), fmt(quantile(lat.sync, 0.99), 2), '', '1']);
        latencyRows.push(['job on Redis, until its callback arrives', fmtInt(lat.job.length), fmt(j50, 2), fmt(quantile(lat.job, 0.99), 2), fmt(j50 - s50, 2), fmt(j50 / s50, 2)]);
        data.redisLatencyMs = { syncP50: s50, jobP50: j50, syncP99: quantile(lat.sync, 0.99), jobP99: quantile(lat.job, 0.99) };
        await measure([servers[0]!.baseUrl], Math.min(20, n));
        const one = await measure([servers[0]!.baseUrl], n);
        servers.push(await startServer('wasmbox', { ...env, REDIS_URL: redis.url }));
        await measure(servers.map((s) => s.baseUrl), Math.min(20, n));
        const two = await measure(servers.map((s) => s.baseUrl), n);
        await stopAll();
        rows.push(['Redis (BullMQ), 1 replica', '1', fmt(one, 1), fmt(one / local, 2) + ' of in-process']);
        rows.push(['Redis (BullMQ), 2 replicas', '2', fmt(two, 1), fmt(two / one, 2) + ' of 1 replica']);
        Object.assign(data, { redisOnePerS: one, redisTwoPerS: two, ratioTwoToOne: two / one });
      } finally {
        await stopAll();
        await redis.stop();
      }
    }
    const duplicates = [...arrivals.values()].filter((c) => c > 1).length;
    if (duplicates > 0) problems.push(`jobs throughput: ${duplicates} jobs had their callback delivered more than once`);
    if (badSignatures > 0) problems.push(`jobs throughput: ${badSignatures} callbacks did not verify against the secret`);
    data.duplicateCallbacks = duplicates;
  } finally {
    await stopAll();
    await new Promise((r) => receiver.close(r));
  }
  const markdown = [
    '## Jobs: throughput, one replica and two sharing Redis',
    '',
    `${n} jobs (spin, ${THROUGHPUT_FUEL / 1e6}M fuel: a few ms each) submitted by moduleId with ${JOBS_IN_FLIGHT} submissions in flight, each done when its signed callback arrives (every job's exactly once, checked). ` +
      'Each replica a child process with one runner thread and one job slot (WASMBOX_WORKERS=1, WASMBOX_JOBS_CONCURRENCY=1), so two replicas have twice the capacity of one; on a machine with fewer free cores than replicas the ratio is bounded by the cores. Submissions alternate between the replicas.',
    '',
    table(['queue', 'replicas', 'jobs/s', 'ratio'], rows, ['l', 'r', 'r', 'r']),
    ...(latencyRows.length > 0
      ? [
          '',
          `The latency a job adds on Redis (one replica, one at a time, interleaved): spin with ${LATENCY_FUEL / 1e6}M fuel, POST /execute against POST /jobs until its signed callback arrives. Times in ms.`,
          '',
          table(['how', 'n', 'p50', 'p99', 'added p50', 'ratio p50'], latencyRows, ['l', 'r', 'r', 'r', 'r', 'r']),
        ]
      : []),
  ].join('\n');
  return { markdown, data, cpuSeconds };
}
