// Section "overload": the service driven to ten times its sustainable guest load, on loopback.
//
// Burst: 200 requests kept in flight for 10 s, each a guest that spins until its 2 s deadline,
// against a server with its default configuration (one runner thread per core): the machine can
// run `workers` of them at a time, so the burst is about 100 times what it can serve at once and
// more than ten times what it can serve within a queue timeout. Meanwhile /healthz is probed
// back to back. Reported: accepted runs (answered 200) and their latency, refusals (503 with
// Retry-After) and how fast they came, /healthz latency, and the server's peak RSS.
//
// Big bodies: 80 concurrent 15 MB JSON requests; reported: how many were accepted, how many
// refused early, and the server's peak RSS against baseline + WASMBOX_INFLIGHT_BODY_MB + margin.
//
// Every request loop is bounded in count and time and sends traffic to 127.0.0.1 only.

import { Agent, request } from 'undici';
import { type SectionOptions, type SectionResult, withCustomSection, fmt, fmtBytes, fmtInt, met, quantile, sleep, table } from './lib.js';
import { type ServerProcess, startServer } from './server-process.js';

/** (func (export "spin") (loop br 0)), hand-assembled. */
const SPIN_WASM = Buffer.from('0061736d0100000001040160000003020100070801047370696e00000a09010700034' + '00c000b0b', 'hex');

const BURST_CONCURRENCY = 200;
const BURST_SECONDS = 10;
const BURST_MAX_REQUESTS = 5_000;
const GUEST_TIMEOUT_MS = 2_000;
/** The deadline is the guest's own time; allow for thread start and measurement. */
const DEADLINE_SLACK_MS = 50;
const HEALTHZ_P99_TARGET_MS = 50;
/** Refusals must come quickly: well before the 10 s queue timeout a queued task would hit. */
const REFUSAL_P99_TARGET_MS = 2_500;

const BIG_CONCURRENCY = 80;
const BIG_BODY_BYTES = 15 * 1024 * 1024;
/** A JSON body is held about four times over while it is parsed, decoded and hashed (the raw
 *  bytes, the string, the base64 field, the module): the documented bound on what the in-flight
 *  cap lets the main thread hold. */
const BODY_EXPANSION = 4;
/** Margin for everything else the burst touches (allocator slack, worker heaps, the cache). */
const RSS_MARGIN_BYTES = 256 * 1024 * 1024;

interface Timed {
  status: number;
  ms: number;
  retryAfter: string | null;
  body: { outcome?: string; telemetry?: { durationNs?: number } } | null;
}

async function post(dispatcher: Agent, url: string, body: string | Buffer, headers: Record<string, string>): Promise<Timed> {
  const t0 = performance.now();
  try {
    const res = await request(url, { method: 'POST', body, headers, dispatcher });
    const text = await res.body.text();
    let parsed: Timed['body'] = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    const ra = res.headers['retry-after'];
    return { status: res.statusCode, ms: performance.now() - t0, retryAfter: typeof ra === 'string' ? ra : null, body: parsed };
  } catch {
    return { status: 0, ms: performance.now() - t0, retryAfter: null, body: null };
  }
}

/** Probes /healthz back to back until `stop` resolves; returns the latencies in ms. */
async function probeHealth(base: string, stop: Promise<void>): Promise<{ ms: number[]; failures: number }> {
  let done = false;
  void stop.then(() => {
    done = true;
  });
  const dispatcher = new Agent({ connections: 1 });
  const ms: number[] = [];
  let failures = 0;
  while (!done) {
    const t0 = performance.now();
    try {
      const res = await request(`${base}/healthz`, { dispatcher });
      await res.body.dump();
      if (res.statusCode !== 200) failures++;
    } catch {
      failures++;
    }
    ms.push(performance.now() - t0);
    await sleep(10);
  }
  await dispatcher.close();
  return { ms, failures };
}

async function burst(server: ServerProcess, log: SectionOptions['log'], seconds: number): Promise<string[][] & { missed?: string[] }> {
  const url = `${server.baseUrl}/execute`;
  const body = JSON.stringify({ module: SPIN_WASM.toString('base64'), function: 'spin', limits: { fuel: 10_000_000_000, timeoutMs: GUEST_TIMEOUT_MS } });
  const headers = { 'content-type': 'application/json' };
  const dispatcher = new Agent({ connections: BURST_CONCURRENCY, pipelining: 1 });
  const results: Timed[] = [];
  const endAt = performance.now() + seconds * 1000;
  let stopHealth!: () => void;
  const healthStop = new Promise<void>((r) => (stopHealth = r));
  const health = probeHealth(server.baseUrl, healthStop);
  log(`overload: ${BURST_CONCURRENCY} spinning guests in flight for ${seconds} s`);
  let sent = 0;
  const lane = async (): Promise<void> => {
    while (performance.now() < endAt && sent < BURST_MAX_REQUESTS) {
      sent++;
      results.push(await post(dispatcher, url, body, headers));
    }
  };
  await Promise.all(Array.from({ length: BURST_CONCURRENCY }, lane));
  stopHealth();
  const h = await health;
  await dispatcher.close();

  const accepted = results.filter((r) => r.status === 200);
  const refused = results.filter((r) => r.status === 503);
  const other = results.length - accepted.length - refused.length;
  const late = accepted.filter((r) => (r.body?.telemetry?.durationNs ?? 0) / 1e6 > GUEST_TIMEOUT_MS + DEADLINE_SLACK_MS).length;
  const refusedWithRetry = refused.filter((r) => r.retryAfter !== null).length;
  const hp50 = quantile(h.ms, 0.5);
  const hp99 = quantile(h.ms, 0.99);
  const rp99 = quantile(refused.map((r) => r.ms), 0.99);
  const rows = [
    ['requests sent', fmtInt(results.length), '', ''],
    ['accepted (200)', fmtInt(accepted.length), '', ''],
    ['accepted runs over their deadline', fmtInt(late), '0', met(late === 0)],
    ['accepted: client latency p50 / p99 ms', `${fmt(quantile(accepted.map((r) => r.ms), 0.5))} / ${fmt(quantile(accepted.map((r) => r.ms), 0.99))}`, '', ''],
    ['refused (503)', `${fmtInt(refused.length)} (${fmtInt(refusedWithRetry)} with Retry-After)`, 'all with Retry-After', met(refusedWithRetry === refused.length)],
    ['refused: latency p50 / p99 ms', `${fmt(quantile(refused.map((r) => r.ms), 0.5))} / ${fmt(rp99)}`, `p99 < ${REFUSAL_P99_TARGET_MS}`, met(refused.length === 0 || rp99 < REFUSAL_P99_TARGET_MS)],
    ['other answers or errors', fmtInt(other), '0', met(other === 0)],
    ['/healthz p50 / p99 ms', `${fmt(hp50)} / ${fmt(hp99)} (${fmtInt(h.ms.length)} probes, ${h.failures} failed)`, `p99 < ${HEALTHZ_P99_TARGET_MS}`, met(hp99 < HEALTHZ_P99_TARGET_MS && h.failures === 0)],
    ['server peak RSS', fmtBytes(server.peakRssBytes() ?? Number.NaN), '', ''],
  ];
  const missed: string[] = [];
  if (late > 0) missed.push(`${late} accepted runs exceeded their deadline`);
  if (hp99 >= HEALTHZ_P99_TARGET_MS) missed.push(`/healthz p99 ${fmt(hp99)} ms >= ${HEALTHZ_P99_TARGET_MS} ms under overload`);
  if (refused.length > 0 && rp99 >= REFUSAL_P99_TARGET_MS) missed.push(`refusal p99 ${fmt(rp99)} ms >= ${REFUSAL_P99_TARGET_MS} ms`);
  return Object.assign(rows, { missed });
}

/** An empty module padded with a custom section to `bytes` (its base64 JSON is about 4/3 of it). */
function paddedModule(bytes: number, nonce: number): Buffer {
  const head = Buffer.from('0061736d01000000', 'hex');
  const name = `pad${nonce}`;
  return withCustomSection(head, name, bytes - head.length - 6 - 1 - name.length, 0);
}

async function bigBodies(server: ServerProcess, log: SectionOptions['log'], inflightMb: number): Promise<string[][] & { missed?: string[] }> {
  const url = `${server.baseUrl}/modules`;
  // Base64 grows the module by 4/3: a module of 3/4 of the body size makes a 15 MB request.
  const moduleBytes = Math.floor(((BIG_BODY_BYTES - 64) * 3) / 4);
  const bodies = Array.from({ length: BIG_CONCURRENCY }, (_, i) => JSON.stringify({ module: paddedModule(moduleBytes, i).toString('base64') }));
  await sleep(500);
  const baseline = server.peakRssBytes() ?? 0;
  log(`overload: ${BIG_CONCURRENCY} concurrent ${fmtBytes(BIG_BODY_BYTES)} bodies`);
  const dispatcher = new Agent({ connections: BIG_CONCURRENCY });
  const results = await Promise.all(bodies.map((b) => post(dispatcher, url, b, { 'content-type': 'application/json' })));
  await dispatcher.close();
  const peak = server.peakRssBytes() ?? Number.NaN;
  const stored = results.filter((r) => r.status === 201 || r.status === 200).length;
  const refused = results.filter((r) => r.status === 503).length;
  const other = results.length - stored - refused;
  const bound = baseline + BODY_EXPANSION * inflightMb * 1048576 + RSS_MARGIN_BYTES;
  return Object.assign(
    [
      ['stored (201)', fmtInt(stored), '', ''],
      ['refused early (503)', fmtInt(refused), '', ''],
      ['other answers or errors', fmtInt(other), '0', met(other === 0)],
      ['peak RSS before the burst', fmtBytes(baseline), '', ''],
      ['peak RSS after', fmtBytes(peak), `≤ ${fmtBytes(bound)} (baseline + ${BODY_EXPANSION} x ${inflightMb} MiB cap + ${fmtBytes(RSS_MARGIN_BYTES)})`, met(peak <= bound)],
    ],
    { missed: peak > bound ? [`peak RSS ${fmtBytes(peak)} over ${fmtBytes(bound)} with ${BIG_CONCURRENCY} concurrent 15 MB bodies`] : [] },
  );
}

export async function overloadSection(options: SectionOptions): Promise<SectionResult> {
  const inflightMb = 128; // the default
  const server = await startServer('wasmbox', { LOG_LEVEL: 'warn', WASMBOX_INFLIGHT_BODY_MB: String(inflightMb), WASMBOX_BODY_LIMIT_BYTES: String(16 * 1024 * 1024) });
  const problems: string[] = [];
  let burstRows: Awaited<ReturnType<typeof burst>>;
  let bigRows: Awaited<ReturnType<typeof bigBodies>>;
  try {
    burstRows = await burst(server, options.log, options.quick ? 3 : BURST_SECONDS);
    await sleep(GUEST_TIMEOUT_MS + 500);
    bigRows = await bigBodies(server, options.log, inflightMb);
  } finally {
    await server.stop();
  }
  const header = ['measure', 'value', 'target', 'result'];
  const markdown = [
    '## Overload (ten times the sustainable guest load, loopback)',
    '',
    `${BURST_CONCURRENCY} requests in flight for ${options.quick ? 3 : BURST_SECONDS} s, each a guest spinning to its ${GUEST_TIMEOUT_MS} ms deadline; /healthz probed back to back.`,
    '',
    table(header, burstRows),
    '',
    `${BIG_CONCURRENCY} concurrent POST /modules of ${fmtBytes(BIG_BODY_BYTES)} JSON bodies (WASMBOX_INFLIGHT_BODY_MB=${inflightMb}).`,
    '',
    table(header, bigRows),
    '',
  ].join('\n');
  const missed = [...(burstRows.missed ?? []), ...(bigRows.missed ?? [])];
  return { markdown, data: { burst: burstRows, big: bigRows }, ok: problems.length === 0, problems, missed };
}
