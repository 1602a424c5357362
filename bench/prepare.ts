// Section "prepare": what it costs to get a module ready to run (validate + instrument + compile,
// i.e. src/worker/prepare.ts itself, loaded in a worker thread as the service's preparation pool
// loads it), for generated modules of about 100 KiB, 1 MiB and 5 MiB (src/wasm/synthetic.ts).
//
// - cold: the first preparation in a fresh worker (its JavaScript not yet optimised, as after a
//   start or a worker replacement);
// - uncached: later preparations of new bytes in the same worker, the median of five: warm means
//   V8 has optimized the preparing code, which for a 1 MiB module takes a few real modules after
//   the warm-up (the first two after it were still 20-60 % slower than the fifth);
// - cached: what the service pays when the same bytes come again (src/service/execute.ts):
//   moduleIdOf (SHA-256 of the bytes) and a PreparedCache hit. The base64 decode of the JSON body
//   comes before it on every request and is shown beside it, outside the target.
// Every preparation gets different bytes (a patched constant, the "nonce") so that V8's
// process-wide cache of compiled modules never turns a cold compile into a cache hit.
//
// Then the same through the service (buildApp in this process, fresh per size): the
// `telemetry.prepareNs` of a first and a second identical POST /execute, and their wall times.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ResourceLimits, Worker } from 'node:worker_threads';
import { request } from 'undici';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { moduleIdOf } from '../src/service/execute.js';
import { PreparedCache } from '../src/service/prepared-cache.js';
import { type GeneratedModule, generateModule, withNonce } from '../src/wasm/synthetic.js';
import { prepareResourceLimits } from '../src/worker/pool.js';
import { RESULTS_DIR, type SectionOptions, type SectionResult, fmt, fmtBytes, fmtInt, median, met, quantile, sleep, table } from './lib.js';
import type { PrepareReply, PrepareRequest } from './prepare-worker.js';

const TARGET_COLD_MS = 500; // for the 1 MiB module
/** Issue 14: preparing a 1 MiB module (validate, instrument, compile) in a warm worker. */
const TARGET_WARM_MS = 50;
const TARGET_CACHED_MS = 1;
const SIZES = [
  { label: '100 KiB', bytes: 100 * 1024, coldTarget: false },
  { label: '1 MiB', bytes: 1024 * 1024, coldTarget: true },
  { label: '5 MiB', bytes: 5 * 1024 * 1024, coldTarget: false },
];

class PrepareThread {
  private readonly worker: Worker;
  private pending: ((r: PrepareReply) => void) | null = null;
  /** The thread's load time and its warm-up (src/worker/warmup.ts), once both are done. */
  readonly loaded: Promise<{ loadMs: number; warmUpRounds: number; warmUpMs: number }>;

  constructor(resourceLimits: ResourceLimits) {
    this.worker = new Worker(new URL('./prepare-worker.js', import.meta.url), { resourceLimits });
    let loaded!: (l: { loadMs: number; warmUpRounds: number; warmUpMs: number }) => void;
    let failed!: (err: Error) => void;
    this.loaded = new Promise((resolve, reject) => {
      loaded = resolve;
      failed = reject;
    });
    this.worker.on('message', (msg: PrepareReply | { loaded: true; loadMs: number; warmUpRounds: number; warmUpMs: number }) => {
      if ('loaded' in msg) loaded(msg);
      else {
        const p = this.pending;
        this.pending = null;
        p?.(msg);
      }
    });
    this.worker.on('error', (err) => {
      failed(err);
      const p = this.pending;
      this.pending = null;
      p?.({ ok: false, wallMs: NaN, error: String(err) });
    });
  }

  prepare(req: PrepareRequest): Promise<PrepareReply> {
    return new Promise((resolve) => {
      this.pending = resolve;
      this.worker.postMessage(req);
    });
  }

  close(): Promise<number> {
    return this.worker.terminate();
  }
}

interface Phase {
  wallMs: number;
  validateMs: number;
  instrumentMs: number;
  compileMs: number;
}

interface SizeResult {
  label: string;
  size: number;
  functions: number;
  instrumentedSize: number;
  generateMs: number;
  workerLoadMs: number;
  warmUp: { rounds: number; ms: number };
  cold: Phase;
  uncached: Phase[];
  uncachedMedian: Phase;
  cached: { samples: number; medianMs: number; p99Ms: number; hashMedianMs: number; lookupMedianMs: number };
  base64DecodeMs: number;
  service: {
    first: { wallMs: number; prepareMs: number; moduleCached: boolean };
    second: { wallMs: number; prepareMs: number; moduleCached: boolean };
  } | null;
}

const medianPhase = (ps: Phase[]): Phase => ({
  wallMs: median(ps.map((p) => p.wallMs)),
  validateMs: median(ps.map((p) => p.validateMs)),
  instrumentMs: median(ps.map((p) => p.instrumentMs)),
  compileMs: median(ps.map((p) => p.compileMs)),
});

// Each preparation gets the next nonce, so no two prepared modules in this process share bytes.
let nonceCounter = 1;

export async function prepareSection(options: SectionOptions): Promise<SectionResult> {
  const config = loadConfig({});
  const uncachedReps = options.quick ? 1 : 5;
  const sizes = options.quick ? SIZES.slice(0, 2) : SIZES;
  const problems: string[] = [];
  const missed: string[] = [];
  const results: SizeResult[] = [];
  mkdirSync(path.join(RESULTS_DIR, 'modules'), { recursive: true });

  for (const s of sizes) {
    let t = performance.now();
    const gen: GeneratedModule = generateModule(s.bytes, 1);
    const generateMs = performance.now() - t;
    writeFileSync(path.join(RESULTS_DIR, 'modules', `gen-${s.label.replace(' ', '')}.wasm`), gen.bytes);
    options.log(`  prepare: ${s.label}: generated ${fmtBytes(gen.bytes.length)}, ${fmtInt(gen.functions)} functions in ${fmt(generateMs, 0)} ms`);

    // Cold and uncached, in a fresh preparation thread.
    // The preparation pool's resource limits.
    const thread = new PrepareThread(prepareResourceLimits(config));
    let prepared: Extract<PrepareReply, { ok: true }>['prepared'];
    let cold: Phase | null = null;
    const uncached: Phase[] = [];
    let instrumentedSize = 0;
    let workerLoadMs = NaN;
    let warmUp = { rounds: 0, ms: NaN };
    let failed = false;
    try {
      const l = await thread.loaded;
      workerLoadMs = l.loadMs;
      warmUp = { rounds: l.warmUpRounds, ms: l.warmUpMs };
      for (let i = 0; i <= uncachedReps; i++) {
        const bytes = withNonce(gen, ++nonceCounter);
        const r = await thread.prepare({ bytes, maxTableElements: config.maxTableElements, returnPrepared: i === uncachedReps });
        if (!r.ok) {
          problems.push(`prepare ${s.label}: preparation failed: ${r.error.slice(0, 500)}`);
          failed = true;
          break;
        }
        const phase = { wallMs: r.wallMs, validateMs: r.validateMs, instrumentMs: r.instrumentMs, compileMs: r.compileMs };
        if (i === 0) cold = phase;
        else uncached.push(phase);
        instrumentedSize = r.instrumentedSize;
        if (r.prepared) prepared = r.prepared;
      }
    } finally {
      await thread.close();
    }
    if (failed || !cold || !prepared) continue;

    // Cached: the service's lookup for bytes it has prepared before.
    const bytes = withNonce(gen, nonceCounter); // the bytes `prepared` came from
    const cache = new PreparedCache(config.cacheBytes);
    cache.set(moduleIdOf(bytes), { ...prepared, moduleId: moduleIdOf(bytes) });
    const samples: number[] = [];
    const hashes: number[] = [];
    const lookups: number[] = [];
    const until = performance.now() + (options.quick ? 300 : 1000);
    while (samples.length < 20 || (performance.now() < until && samples.length < 2000)) {
      const t0 = performance.now();
      const id = moduleIdOf(bytes);
      const t1 = performance.now();
      const hit = cache.get(id);
      const t2 = performance.now();
      if (!hit?.ok) {
        problems.push(`prepare ${s.label}: the cache did not return the prepared module`);
        break;
      }
      samples.push(t2 - t0);
      hashes.push(t1 - t0);
      lookups.push(t2 - t1);
    }
    const b64 = Buffer.from(bytes).toString('base64');
    const decodes: number[] = [];
    for (let i = 0; i < 20; i++) {
      t = performance.now();
      Buffer.from(b64, 'base64');
      decodes.push(performance.now() - t);
    }

    // Through the service.
    let service: SizeResult['service'] = null;
    try {
      service = await throughService(gen, s.label, options);
    } catch (err) {
      problems.push(`prepare ${s.label}: through the service: ${err instanceof Error ? err.message : String(err)}`);
    }

    results.push({
      label: s.label,
      size: gen.bytes.length,
      functions: gen.functions,
      instrumentedSize,
      generateMs,
      workerLoadMs,
      warmUp,
      cold,
      uncached,
      uncachedMedian: medianPhase(uncached),
      cached: {
        samples: samples.length,
        medianMs: median(samples),
        p99Ms: quantile(samples, 0.99),
        hashMedianMs: median(hashes),
        lookupMedianMs: median(lookups),
      },
      base64DecodeMs: median(decodes),
      service,
    });
  }

  const rows: string[][] = [];
  for (const r of results) {
    const coldOk = r.cold.wallMs < TARGET_COLD_MS;
    const cachedOk = r.cached.medianMs < TARGET_CACHED_MS;
    const isColdTarget = SIZES.find((s) => s.label === r.label)?.coldTarget ?? false;
    if (isColdTarget && !coldOk) missed.push(`prepare ${r.label}: cold ${fmt(r.cold.wallMs, 0)} ms ≥ ${TARGET_COLD_MS} ms`);
    const warmOk = r.uncachedMedian.wallMs <= TARGET_WARM_MS;
    if (isColdTarget && !warmOk) missed.push(`prepare ${r.label}: warm ${fmt(r.uncachedMedian.wallMs, 1)} ms > ${TARGET_WARM_MS} ms`);
    if (!cachedOk) missed.push(`prepare ${r.label}: cached ${fmt(r.cached.medianMs, 3)} ms ≥ ${TARGET_CACHED_MS} ms (SHA-256 of the bytes: ${fmt(r.cached.hashMedianMs, 3)} ms)`);
    const name = `${r.label} (${fmtBytes(r.size)}, ${fmtInt(r.functions)} fns → ${fmtBytes(r.instrumentedSize)})`;
    const phaseRow = (label: string, p: Phase, target: string, verdict: string): string[] => [
      name,
      label,
      fmt(p.validateMs, 1),
      fmt(p.instrumentMs, 1),
      fmt(p.compileMs, 1),
      fmt(p.wallMs, 1),
      target,
      verdict,
    ];
    rows.push(phaseRow(`1st in a fresh worker (after its warm-up: ${r.warmUp.rounds} rounds, ${fmt(r.warmUp.ms, 0)} ms)`, r.cold, isColdTarget ? `< ${TARGET_COLD_MS} ms` : '', isColdTarget ? met(coldOk) : ''));
    rows.push(phaseRow(`uncached, warm worker (median of ${r.uncached.length})`, r.uncachedMedian, isColdTarget ? `≤ ${TARGET_WARM_MS} ms` : '', isColdTarget ? met(warmOk) : ''));
    rows.push([
      name,
      `cached: sha256 + cache hit (median of ${fmtInt(r.cached.samples)}; p99 ${fmt(r.cached.p99Ms, 3)})`,
      '–',
      '–',
      '–',
      fmt(r.cached.medianMs, 3),
      `< ${TARGET_CACHED_MS} ms`,
      met(cachedOk),
    ]);
    rows.push([name, '(before it, per request: base64 decode of the JSON body)', '–', '–', '–', fmt(r.base64DecodeMs, 3), '', '']);
  }
  const serviceRows = results
    .filter((r) => r.service)
    .map((r) => [
      `${r.label} (${fmtBytes(r.size)})`,
      fmt(r.service!.first.wallMs, 1),
      fmt(r.service!.first.prepareMs, 1),
      fmt(r.service!.second.wallMs, 1),
      fmt(r.service!.second.prepareMs, 3),
      String(r.service!.second.moduleCached),
    ]);
  const markdown = [
    '## Module preparation (validate + instrument + compile)',
    '',
    'src/worker/prepare.ts in a worker thread with the preparation pool\'s limits; generated modules (src/wasm/synthetic.ts), new bytes for every ' +
      'preparation. A fresh thread first warms up (src/worker/warmup.ts: a generated 64 KiB module prepared until the rewriting code is optimized, 10 to 40 rounds, without compiling), as the service\'s threads do; ' +
      'its rounds and time are in the first row. "total" is the wall time of the whole call (validate = V8\'s validation of the original + parse; ' +
      'compile = V8\'s eager compilation of the instrumented module). Times in ms.',
    '',
    table(['module', 'phase', 'validate', 'instrument', 'compile', 'total', 'target', 'result'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r']),
    '',
    'Through the service (buildApp in-process, fresh per size, POST /execute of main() twice with the same JSON body; ' +
      'prepareNs is the service\'s own telemetry: from the decoded bytes (hash included) to the prepared module):',
    '',
    table(['module', '1st request wall ms', '1st prepareNs (ms)', '2nd request wall ms', '2nd prepareNs (ms)', '2nd moduleCached'], serviceRows),
    ...(problems.length ? ['', ...problems.map((p) => `**PROBLEM** ${p}`)] : []),
  ].join('\n');
  return { markdown, data: { sizes: results }, ok: problems.length === 0, problems, missed };
}

async function throughService(gen: GeneratedModule, label: string, options: SectionOptions): Promise<NonNullable<SizeResult['service']>> {
  const nonce = ++nonceCounter;
  const bytes = withNonce(gen, nonce);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-bench-'));
  const config = loadConfig({ WASMBOX_WORKERS: '1', PORT: '0', HOST: '127.0.0.1', WASMBOX_DATA_DIR: dataDir });
  const app = await buildApp({ config, logger: false });
  try {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no address');
    const url = `http://127.0.0.1:${address.port}/execute`;
    // Let the pools' threads load their code, as on a server that has been up for a moment.
    await sleep(1000);
    const body = JSON.stringify({ module: Buffer.from(bytes).toString('base64'), function: 'main', args: [] });
    const once = async (): Promise<{ wallMs: number; prepareMs: number; moduleCached: boolean }> => {
      const t = performance.now();
      const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const json = (await res.body.json()) as { outcome?: string; results?: unknown[]; telemetry?: { prepareNs: number; moduleCached: boolean } };
      const wallMs = performance.now() - t;
      if (res.statusCode !== 200 || json.outcome !== 'ok' || json.results?.[0] !== nonce || !json.telemetry) {
        throw new Error(`unexpected response ${res.statusCode}: ${JSON.stringify(json).slice(0, 300)}`);
      }
      return { wallMs, prepareMs: json.telemetry.prepareNs / 1e6, moduleCached: json.telemetry.moduleCached };
    };
    options.log(`  prepare: ${label}: through the service`);
    const first = await once();
    const second = await once();
    return { first, second };
  } finally {
    await app.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
