// Section "batch": compile once, run many. 100 calls in one batch (POST /execute with `calls`)
// against the same 100 calls as 100 requests, on the service as a child process
// (bench/server-process.ts), the module stored once and run by moduleId either way, so both pay
// instantiation per call and neither pays preparation. Two guests: add(i, 1) (the request
// overhead is everything) and a loop of 100,000 iterations (guest time matters), and two
// clients for the singles: one request after another (a grader's loop), and 8 in flight at once
// (a client that parallelises). The ratio is the singles' wall time over the batch's.

import { request } from 'undici';
import { type SectionOptions, type SectionResult, fmt, met, median, table } from './lib.js';
import { startServer } from './server-process.js';

const CALLS = 100;
const REPS = 15;
const CONCURRENCY = 8;
/** A batch of trivial calls should be at least this many times faster than one request per call. */
const TARGET_RATIO_SEQUENTIAL = 5;

/** (module (func (export "add") (param i32 i32) (result i32) ...)
 *        (func (export "loop") (param i32) (result i32) count down from the argument)) */
const MODULE = (() => {
  const section = (id: number, content: number[]): number[] => [id, content.length, ...content];
  const name = (s: string): number[] => [s.length, ...Buffer.from(s)];
  const body = (locals: number[], code: number[]): number[] => [locals.length + code.length, ...locals, ...code];
  const code = [
    ...body([0x00], [0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b]), // local.get 0; local.get 1; i32.add
    // loop: local.get 0; i32.const 1; i32.sub; local.tee 0; br_if 0; end; local.get 0
    ...body([0x00], [0x03, 0x40, 0x20, 0x00, 0x41, 0x01, 0x6b, 0x22, 0x00, 0x0d, 0x00, 0x0b, 0x20, 0x00, 0x0b]),
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [2, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f]),
    ...section(3, [2, 0, 1]),
    ...section(7, [2, ...name('add'), 0, 0, ...name('loop'), 0, 1]),
    ...section(10, [2, ...code]),
  ]);
})();

interface Workload {
  name: string;
  call: (i: number) => { function: string; args: number[] };
}

const WORKLOADS: Workload[] = [
  { name: 'add(i, 1)', call: (i) => ({ function: 'add', args: [i, 1] }) },
  { name: 'loop(100000)', call: () => ({ function: 'loop', args: [100_000] }) },
];

export async function batchSection(options: SectionOptions): Promise<SectionResult> {
  const reps = options.quick ? 3 : REPS;
  const server = await startServer('wasmbox', { LOG_LEVEL: 'warn', WASMBOX_BATCH_MAX: String(CALLS) });
  const problems: string[] = [];
  const cpu0 = server.cpuSeconds();
  const post = async (body: unknown): Promise<any> => {
    const res = await request(`${server.baseUrl}/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const json = (await res.body.json()) as any;
    if (res.statusCode !== 200) throw new Error(`POST /execute answered ${res.statusCode}: ${JSON.stringify(json).slice(0, 300)}`);
    return json;
  };
  try {
    const stored = await request(`${server.baseUrl}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: MODULE });
    const storedBody = (await stored.body.json()) as { moduleId?: string };
    if (stored.statusCode !== 201 && stored.statusCode !== 200) throw new Error(`POST /modules answered ${stored.statusCode}: ${JSON.stringify(storedBody)}`);
    const moduleId = storedBody.moduleId!;

    const rows: string[][] = [];
    const data: Record<string, unknown> = {};
    let addRatio = 0;
    for (const w of WORKLOADS) {
      const calls = Array.from({ length: CALLS }, (_, i) => w.call(i));
      const expectOk = (outcomes: string[]): void => {
        const bad = outcomes.filter((o) => o !== 'ok');
        if (bad.length) problems.push(`${w.name}: ${bad.length} calls ended ${bad[0]}`);
      };
      const batch = async (): Promise<number> => {
        const t = performance.now();
        const body = await post({ moduleId, calls });
        const ms = performance.now() - t;
        expectOk(body.calls.map((c: { outcome: string }) => c.outcome));
        return ms;
      };
      const singles = async (concurrency: number): Promise<number> => {
        const t = performance.now();
        let next = 0;
        const outcomes: string[] = [];
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (next < calls.length) {
              const c = calls[next++]!;
              outcomes.push((await post({ moduleId, ...c })).outcome);
            }
          }),
        );
        const ms = performance.now() - t;
        expectOk(outcomes);
        return ms;
      };
      // Warm up: connections, the cache, the runner threads' compiled code.
      await batch();
      await singles(CONCURRENCY);
      const batchMs: number[] = [];
      const seqMs: number[] = [];
      const parMs: number[] = [];
      for (let r = 0; r < reps; r++) {
        batchMs.push(await batch());
        seqMs.push(await singles(1));
        parMs.push(await singles(CONCURRENCY));
      }
      const b = median(batchMs);
      const s = median(seqMs);
      const p = median(parMs);
      if (w.name.startsWith('add')) addRatio = s / b;
      options.log(`  ${w.name}: batch ${fmt(b, 2)} ms, sequential ${fmt(s, 2)} ms, ${CONCURRENCY} in flight ${fmt(p, 2)} ms`);
      rows.push([w.name, fmt(b, 2), fmt((b * 1000) / CALLS, 1), fmt(s, 2), `${fmt(s / b, 1)}x`, fmt(p, 2), `${fmt(p / b, 1)}x`]);
      data[w.name] = { batchMs, sequentialMs: seqMs, concurrentMs: parMs, ratioSequential: s / b, ratioConcurrent: p / b };
    }
    const cpuSeconds = cpu0 !== null ? (server.cpuSeconds() ?? cpu0) - cpu0 : null;
    const ok = addRatio >= TARGET_RATIO_SEQUENTIAL;
    const markdown = [
      '## batch: 100 calls in one batch against 100 requests',
      '',
      `The module stored once and run by moduleId; median of ${reps} repetitions of each, client-side wall time (127.0.0.1, keep-alive).`,
      '',
      table(
        ['guest', 'batch ms', 'batch µs/call', '100 requests, sequential, ms', 'ratio', `100 requests, ${CONCURRENCY} in flight, ms`, 'ratio'],
        rows,
        ['l', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
      `Target: a batch of trivial calls at least ${TARGET_RATIO_SEQUENTIAL}x faster than one request per call made one after another: ${fmt(addRatio, 1)}x, ${met(ok)}.`,
    ].join('\n');
    return { markdown, data, ok: problems.length === 0, problems, missed: ok ? [] : [`batch: ratio ${fmt(addRatio, 1)}x < ${TARGET_RATIO_SEQUENTIAL}x`], childCpuSeconds: cpuSeconds };
  } finally {
    await server.stop();
  }
}
