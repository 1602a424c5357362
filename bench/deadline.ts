// Section "deadline": how precisely a run ends at its deadline, and what the next run pays. The
// service as a child process (bench/server-process.ts); a module stored once, then RUNS times in
// a row: a spinning guest with an unlimited budget at timeoutMs TIMEOUT_MS (client-side latency
// minus the deadline is the overshoot), followed at once by a trivial run (add) on the same
// server, whose latency shows whether the runner was kept (a thread terminated at the deadline
// must be replaced first). Baseline, in the same run: the trivial run after another trivial run.
// And the backstop: a guest blocked in memory.atomic.wait32, which only terminating its thread
// can stop, so the table shows the grace it gets.

import { request } from 'undici';
import { type SectionOptions, type SectionResult, fmt, fmtInt, met, quantile, table } from './lib.js';
import { startServer } from './server-process.js';

const RUNS = 50;
const TIMEOUT_MS = 100;
const TARGET_OVERSHOOT_P99_MS = 5;
const TARGET_AFTER_P99_MS = 3;
const WORKERS = 2;

/** (module (memory 1 1 shared) (func (export "add") (param i32 i32) (result i32) ...)
 *  (func (export "spin") (loop br 0)) (func (export "wait") (result i32) (memory.atomic.wait32 ...))) */
const MODULE = (() => {
  const section = (id: number, content: number[]): number[] => [id, content.length, ...content];
  const name = (s: string): number[] => [s.length, ...Buffer.from(s)];
  const body = (code: number[]): number[] => [code.length + 1, 0x00, ...code];
  const code = [
    ...body([0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b]), // local.get 0; local.get 1; i32.add
    ...body([0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b]), // loop; br 0; end
    ...body([0x41, 0x00, 0x41, 0x00, 0x42, 0x7f, 0xfe, 0x01, 0x02, 0x00, 0x0b]), // wait32 (0, 0, -1)
  ];
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [3, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0, 0x60, 0, 1, 0x7f]),
    ...section(3, [3, 0, 1, 2]),
    ...section(5, [1, 0x03, 1, 1]),
    ...section(7, [3, ...name('add'), 0, 0, ...name('spin'), 0, 1, ...name('wait'), 0, 2]),
    ...section(10, [3, ...code]),
  ]);
})();

interface Timed {
  ms: number;
  body: { outcome: string; telemetry: { durationNs: number; fuelConsumed: number | null; threadKilled?: boolean } };
}

export async function deadlineSection(options: SectionOptions): Promise<SectionResult> {
  const runs = options.quick ? 10 : RUNS;
  const server = await startServer('wasmbox', { WASMBOX_WORKERS: String(WORKERS), LOG_LEVEL: 'warn', WASMBOX_FUEL_MAX: String(2 ** 53 - 1) });
  const problems: string[] = [];
  const cpu0 = server.cpuSeconds();
  try {
    const stored = await request(`${server.baseUrl}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: MODULE });
    const storedBody = (await stored.body.json()) as { moduleId?: string };
    if (stored.statusCode !== 201 && stored.statusCode !== 200) throw new Error(`POST /modules answered ${stored.statusCode}: ${JSON.stringify(storedBody)}`);
    const moduleId = storedBody.moduleId!;
    const execute = async (body: Record<string, unknown>): Promise<Timed> => {
      const t = performance.now();
      const res = await request(`${server.baseUrl}/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ moduleId, ...body }),
      });
      const parsed = (await res.body.json()) as Timed['body'];
      const ms = performance.now() - t;
      if (res.statusCode !== 200) problems.push(`${body.function}: status ${res.statusCode} ${JSON.stringify(parsed)}`);
      return { ms, body: parsed };
    };
    const trivial = { function: 'add', args: [2, 3] };
    const spin = { function: 'spin', limits: { fuel: 2 ** 53 - 1, timeoutMs: TIMEOUT_MS } };

    // Warm-up: the module prepared and cached, both runner threads used.
    for (let i = 0; i < 2 * WORKERS; i++) await execute(trivial);
    await execute(spin);

    const overshoot: number[] = [];
    const inGuest: number[] = [];
    const after: number[] = [];
    const baseline: number[] = [];
    let killed = 0;
    let withAccount = 0;
    options.log(`  deadline: ${runs} x (spin at timeoutMs ${TIMEOUT_MS}, then add; add, then add)`);
    for (let i = 0; i < runs; i++) {
      const s = await execute(spin);
      if (s.body.outcome !== 'timeout') problems.push(`spin ended ${s.body.outcome}, not timeout`);
      overshoot.push(s.ms - TIMEOUT_MS);
      inGuest.push(s.body.telemetry.durationNs / 1e6 - TIMEOUT_MS);
      if (s.body.telemetry.threadKilled) killed++;
      if (Number.isInteger(s.body.telemetry.fuelConsumed)) withAccount++;
      after.push((await execute(trivial)).ms);
      await execute(trivial);
      baseline.push((await execute(trivial)).ms);
    }

    // The backstop, a few times: the guest cannot be reached, its thread is terminated.
    const backstop: number[] = [];
    let backstopKilled = 0;
    const afterKill: number[] = [];
    for (let i = 0; i < (options.quick ? 2 : 5); i++) {
      const w = await execute({ function: 'wait', limits: { timeoutMs: TIMEOUT_MS } });
      backstop.push(w.ms - TIMEOUT_MS);
      if (w.body.telemetry.threadKilled) backstopKilled++;
      afterKill.push((await execute(trivial)).ms);
    }

    const q = (xs: number[], p: number): number => quantile(xs, p);
    const overP99 = q(overshoot, 0.99);
    const afterP99 = q(after, 0.99);
    const missed: string[] = [];
    if (!(overP99 <= TARGET_OVERSHOOT_P99_MS)) missed.push(`deadline: overshoot p99 ${fmt(overP99, 2)} ms > ${TARGET_OVERSHOOT_P99_MS} ms`);
    if (!(afterP99 <= TARGET_AFTER_P99_MS)) missed.push(`deadline: trivial run after a timeout p99 ${fmt(afterP99, 2)} ms > ${TARGET_AFTER_P99_MS} ms`);
    if (killed > 0) problems.push(`deadline: ${killed} of ${runs} spinning runs had their thread terminated (the fuel slices should have stopped them)`);
    if (withAccount !== runs) problems.push(`deadline: ${runs - withAccount} of ${runs} timeouts came without an integer fuelConsumed`);
    if (backstopKilled !== backstop.length) problems.push(`deadline: ${backstop.length - backstopKilled} blocked runs were not reported threadKilled`);

    const row = (what: string, xs: number[], target: string, ok: boolean | null): string[] => [
      what,
      fmtInt(xs.length),
      fmt(q(xs, 0.5), 2),
      fmt(q(xs, 0.99), 2),
      fmt(Math.max(...xs), 2),
      target,
      ok === null ? '' : met(ok),
    ];
    const markdown = [
      '## Deadline precision',
      '',
      `The service as a child process with ${WORKERS} runner threads; a stored module run by moduleId. ` +
        `A guest spinning with an unlimited budget at timeoutMs ${TIMEOUT_MS}, ${runs} times, each followed at once by a trivial run (add) and, as a baseline, a trivial run after a trivial run. ` +
        `Overshoot = client-side latency − timeoutMs; in-guest = durationNs − timeoutMs. Times in ms.`,
      '',
      table(
        ['measure', 'n', 'p50', 'p99', 'max', 'target', 'result'],
        [
          row('overshoot at the deadline (client-side)', overshoot, `p99 ≤ ${TARGET_OVERSHOOT_P99_MS}`, overP99 <= TARGET_OVERSHOOT_P99_MS),
          row('  of which in the guest (durationNs)', inGuest, '', null),
          row('trivial run right after a timeout', after, `p99 ≤ ${TARGET_AFTER_P99_MS}`, afterP99 <= TARGET_AFTER_P99_MS),
          row('trivial run after a trivial run (baseline)', baseline, '', null),
          row('backstop: blocked in wait32, overshoot (deadline + grace)', backstop, '', null),
          row('  trivial run right after the thread was replaced', afterKill, '', null),
        ],
      ),
      '',
      `Timeouts ended inside their thread (threadKilled false): ${runs - killed} of ${runs}; with an integer fuelConsumed: ${withAccount} of ${runs}. ` +
        `Blocked runs reported threadKilled: ${backstopKilled} of ${backstop.length}.`,
      ...(problems.length ? ['', ...problems.map((s) => `**PROBLEM** ${s}`)] : []),
    ].join('\n');
    return {
      markdown,
      data: { runs, timeoutMs: TIMEOUT_MS, overshoot, inGuest, after, baseline, backstop, afterKill, killed, withAccount },
      ok: problems.length === 0,
      problems,
      missed,
      childCpuSeconds: cpu0 === null ? null : (server.cpuSeconds() ?? cpu0) - cpu0,
    };
  } finally {
    await server.stop();
  }
}
