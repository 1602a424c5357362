// Section "jobs": what a job adds to a run. The service as a child process (bench/server-process.ts)
// with the in-process job queue; a module stored once and run by moduleId, one request at a time:
// - sync: POST /execute, client-side latency;
// - job, polled: POST /jobs, then GET /jobs/{jobId} every POLL_MS until done (what a client that
//   polls sees; the poll interval is part of it);
// - job, callback: POST /jobs with a callbackUrl, until the signed callback reaches a receiver in
//   this process (no polling in it: the queue's own added latency, plus one HTTP POST).
// For a trivial guest (add) and a guest that runs a few milliseconds (spin until its fuel is
// spent), so the added latency is seen both alone and against a real run.

import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { type SectionOptions, type SectionResult, fmt, fmtInt, quantile, table } from './lib.js';
import { startServer } from './server-process.js';

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
    return { markdown, data, ok: problems.length === 0, problems, missed: [], childCpuSeconds: (server.cpuSeconds() ?? 0) - (cpu0 ?? 0) };
  } finally {
    await server.stop();
    await new Promise((r) => receiver.close(r));
  }
}
