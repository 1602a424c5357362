// Section "bodies": what a 16 MiB JSON request costs everyone else. The service (a child process,
// default configuration) receives POST /execute with a module of about 12 MiB in base64 (the
// largest body its default 16 MiB limit takes), one request at a time, while a probe client (in a
// thread of its own: bench/probe-worker.ts) sends GET /healthz back to back on its own connection.
// A probe waits for as long as the event loop is blocked, so each request's "stall" is the sum,
// over the probes started while it was in flight, of their latency beyond the probe's quiet median
// (measured before, the same way). Reported per request: the
// total stall and the longest single probe, and the server's own event-loop lag maximum over the
// whole run (prom-client's nodejs_eventloop_lag_max_seconds, reset at each scrape).
//
// The module is examples/add.wasm padded with a custom section (different bytes per request, so
// no request is a cache hit), so what is measured is the body (parse, check, decode, hash) and
// the preparation's hand-offs, not instrumenting 12 MiB of code.
//
// Everything goes to 127.0.0.1 and the run is bounded in count.

import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { Agent, request } from 'undici';
import { ROOT, type SectionOptions, type SectionResult, fmt, median, met, quantile, sleep, table, withCustomSection } from './lib.js';
import { type ServerProcess, startServer } from './server-process.js';

/** Total event-loop stall one 16 MiB JSON request may cause (issue: at most 20 ms). */
const TARGET_STALL_MS = 20;
const BODY_LIMIT = 16 * 1024 * 1024;

/** CPU time of the server's main thread (its event loop), in ms. */
function mainThreadCpuMs(server: ServerProcess): number | null {
  const s = server.mainThreadCpuSeconds();
  return s === null ? null : s * 1000;
}

async function lagMaxMs(server: ServerProcess): Promise<number | null> {
  const res = await request(`${server.baseUrl}/metrics`);
  const text = await res.body.text();
  const m = /^nodejs_eventloop_lag_max_seconds\s+([0-9.eE+-]+)$/m.exec(text);
  return m ? Number(m[1]) * 1000 : null;
}

export async function bodiesSection(options: SectionOptions): Promise<SectionResult> {
  const requests = options.quick ? 3 : 8;
  const add = readFileSync(`${ROOT}examples/add.wasm`);
  // JSON overhead: {"module":"...","function":"add","args":[5,10]} is about 50 bytes.
  const moduleBytes = Math.floor(((BODY_LIMIT - 256) * 3) / 4) - add.length - 16;
  // A fresh server's first big requests cost its main thread two to three times what later ones
  // do (measured: about 90 ms for each of the first four, then 30 to 40, with a new connection per
  // request as with one kept alive: the process warms up, not the connection). Each server gets
  // this many first, reported apart, so the table's figures are a running server's.
  const warmUps = options.quick ? 1 : 4;
  const big = (i: number): Buffer => {
    const m = withCustomSection(add, 'pad', moduleBytes, 0x41 + i);
    // Encoded beforehand, and touched: the sender's own work must not be in the measurement.
    return Buffer.from(JSON.stringify({ module: m.toString('base64'), function: 'add', args: [5, 10] }));
  };
  const bodies: Buffer[] = [];
  for (let i = 0; i < requests; i++) bodies.push(big(i));
  const warmUpBodies: Buffer[] = [];
  for (let i = 0; i < warmUps; i++) warmUpBodies.push(big(requests + i));
  const server = await startServer('wasmbox');
  const childCpu0 = server.cpuSeconds();
  const bigAgent = new Agent({ connections: 1 });
  const problems: string[] = [];
  const missed: string[] = [];
  const epoch = (): number => performance.timeOrigin + performance.now();
  /** Probes for `ms`, or until `until` settles; returns [start, latency] pairs. */
  const probing = (until: Promise<unknown>): Promise<number[]> => {
    const worker = new Worker(new URL('./probe-worker.js', import.meta.url), { workerData: { url: `${server.baseUrl}/healthz` } });
    const done = new Promise<number[]>((resolve, reject) => {
      worker.once('message', (m: number[] | { error: string }) => (Array.isArray(m) ? resolve(m) : reject(new Error(m.error))));
      worker.once('error', reject);
    });
    void until.finally(() => worker.postMessage('stop'));
    return done.finally(() => worker.terminate());
  };
  try {
    // Pass 1, no probes: the main thread's CPU time per request, a trivial run first for scale.
    const trivial = JSON.stringify({ module: add.toString('base64'), function: 'add', args: [5, 10] });
    const cpuOf = async (body: string | Buffer): Promise<number | null> => {
      const c0 = mainThreadCpuMs(server);
      const res = await request(`${server.baseUrl}/execute`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, dispatcher: bigAgent });
      await res.body.dump();
      await sleep(50); // the response's last writes and the request's cleanup
      const c1 = mainThreadCpuMs(server);
      return c0 === null || c1 === null ? null : c1 - c0;
    };
    const trivialCpu: number[] = [];
    for (let i = 0; i < 20; i++) trivialCpu.push((await cpuOf(trivial)) ?? NaN);
    const warmUpCpu: number[] = [];
    for (const body of warmUpBodies) warmUpCpu.push((await cpuOf(body)) ?? NaN);
    const bigCpu: number[] = [];
    for (let i = 0; i < requests; i++) bigCpu.push((await cpuOf(bodies[(i + 1) % requests]!)) ?? NaN);

    // The floor: a bare Fastify server (bench/http-bare-server.ts) receiving the same bodies and
    // discarding them as they stream in, measured the same way.
    const bare = await startServer('bare');
    const sinkCpu: number[] = [];
    const sinkWarmUpCpu: number[] = [];
    try {
      const sink = async (body: Buffer): Promise<number> => {
        const c0 = mainThreadCpuMs(bare);
        const res = await request(`${bare.baseUrl}/sink`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, dispatcher: bigAgent });
        await res.body.dump();
        await sleep(50);
        const c1 = mainThreadCpuMs(bare);
        return c0 === null || c1 === null ? NaN : c1 - c0;
      };
      for (const body of warmUpBodies) sinkWarmUpCpu.push(await sink(body));
      for (let i = 0; i < requests; i++) sinkCpu.push(await sink(bodies[i]!));
    } finally {
      await bare.stop();
    }

    // Pass 2: the same big requests while /healthz is probed.
    const quietPairs = await probing(sleep(1500));
    const quiet = quietPairs.filter((_, i) => i % 2 === 1);
    const base = median(quiet);
    await lagMaxMs(server); // resets the server's lag histogram

    const windows: [number, number][] = [];
    const walls: number[] = [];
    let finished!: () => void;
    const allSent = new Promise<void>((resolve) => {
      finished = resolve;
    });
    const probes = probing(allSent);
    await sleep(300);
    for (let i = 0; i < requests; i++) {
      const t0 = epoch();
      const res = await request(`${server.baseUrl}/execute`, {
        method: 'POST',
        body: bodies[i]!,
        headers: { 'content-type': 'application/json' },
        dispatcher: bigAgent,
      });
      const answer = (await res.body.json()) as { outcome?: string; results?: unknown[]; error?: { code: string } };
      const t1 = epoch();
      windows.push([t0, t1]);
      walls.push(t1 - t0);
      if (res.statusCode !== 200 || answer.outcome !== 'ok' || JSON.stringify(answer.results) !== '[15]') {
        problems.push(`bodies: request ${i + 1} answered ${res.statusCode} ${JSON.stringify(answer).slice(0, 200)}`);
      }
      await sleep(200);
    }
    finished();
    const pairs = await probes;
    const rows: string[][] = [];
    const stalls: number[] = [];
    const longest: number[] = [];
    windows.forEach(([t0, t1], i) => {
      const lat: number[] = [];
      for (let k = 0; k < pairs.length; k += 2) if (pairs[k]! >= t0 && pairs[k]! < t1) lat.push(pairs[k + 1]!);
      const stall = lat.reduce((sum, ms) => sum + Math.max(0, ms - base), 0);
      stalls.push(stall);
      longest.push(Math.max(0, ...lat));
      rows.push([String(i + 1), fmt(bodies[i]!.length / 2 ** 20, 2), fmt(walls[i]!, 0), String(lat.length), fmt(Math.max(0, ...lat), 1), fmt(stall, 1)]);
    });
    const lagMax = await lagMaxMs(server);
    const worst = Math.max(...stalls);
    const worstCpu = Math.max(...bigCpu);
    if (!(worstCpu <= TARGET_STALL_MS)) missed.push(`bodies: a 16 MiB JSON request took ${fmt(worstCpu, 1)} ms of the event loop's time (target ≤ ${TARGET_STALL_MS} ms)`);
    const markdown = [
      '## Big bodies: the event loop while 16 MiB JSON requests arrive',
      '',
      `POST /execute with a ${fmt(moduleBytes / 2 ** 20, 1)} MiB module in base64 (bodies just under the default 16 MiB limit), one at a time, ` +
        `while GET /healthz is probed back to back on another connection (quiet probe median ${fmt(base, 2)} ms, p99 ${fmt(quantile(quiet, 0.99), 2)} ms). ` +
        "Event-loop time: the server main thread's CPU time per request (/proc schedstat; no probes then), which a busy machine does not inflate, " +
        `after ${warmUps} warm-up requests of 16 MiB (reported apart). ` +
        "Stall: the sum of the probes' latency beyond the quiet median while the request was in flight, which also counts the time the thread waited for a core.",
      '',
      table(['request', 'body MiB', 'request ms', 'probes', 'longest probe ms', 'stall ms'], rows),
      '',
      table(
        ['measure', 'value', 'target', 'result'],
        [
          ['event-loop time per 16 MiB request, worst', `${fmt(worstCpu, 1)} ms`, `≤ ${TARGET_STALL_MS} ms`, met(worstCpu <= TARGET_STALL_MS)],
          ['event-loop time per 16 MiB request, median', `${fmt(median(bigCpu), 1)} ms`, '', ''],
          ['the same bodies received and discarded by a bare Fastify route, median / worst', `${fmt(median(sinkCpu), 1)} / ${fmt(Math.max(...sinkCpu), 1)} ms`, '', ''],
          [
            `the ${warmUps} warm-up requests on the fresh server: wasmbox / bare route, each`,
            `${warmUpCpu.map((ms) => fmt(ms, 1)).join(', ')} / ${sinkWarmUpCpu.map((ms) => fmt(ms, 1)).join(', ')} ms`,
            '',
            '',
          ],
          ['wasmbox beyond merely receiving the body (medians)', `${fmt(median(bigCpu) - median(sinkCpu), 1)} ms`, '', ''],
          ['event-loop time per trivial request (add by base64), median', `${fmt(median(trivialCpu), 2)} ms`, '', ''],
          ['probe stall per 16 MiB request, median / worst', `${fmt(median(stalls), 1)} / ${fmt(worst, 1)} ms`, '', ''],
          ['longest single probe delay, worst', `${fmt(Math.max(...longest), 1)} ms`, '', ''],
          ['server event-loop lag max (prom-client)', lagMax === null ? 'n/a' : `${fmt(lagMax, 1)} ms`, '', ''],
        ],
      ),
    ].join('\n');
    const cpu1 = server.cpuSeconds();
    return {
      markdown,
      data: { requests, moduleBytes, probeMedianMs: base, warmUpCpuMs: warmUpCpu, sinkWarmUpCpuMs: sinkWarmUpCpu, bigCpuMs: bigCpu, sinkCpuMs: sinkCpu, trivialCpuMs: trivialCpu, stalls, longest, lagMaxMs: lagMax },
      ok: problems.length === 0,
      problems,
      missed,
      childCpuSeconds: cpu1 !== null && childCpu0 !== null ? cpu1 - childCpu0 : null,
    };
  } finally {
    await bigAgent.close();
    await server.stop();
  }
}
