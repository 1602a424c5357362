// `npm run conformance`: starts the real server in-process and runs
//   1. the WebAssembly spec suite (../shared/conformance/spec) through POST /execute, with a
//      differential check against unmetered in-process runs and the response invariants;
//   2. the fuel suite (../shared/conformance/fuel/fuel.wast) through the server's instrumentation.
// The last line is `N passed, M failed` over spec cases + fuel cases. Exit 0 only when everything
// passed and no request got a 5xx. WASMBOX_SHARED_DIR overrides the shared dir (default ../shared).

import { existsSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { show } from './compare.js';
import { type FuelReport, loadWabt, runFuelSuite } from './fuel.js';
import { type CaseFailure, type SpecReport, SPEC_LIMITS, runSpecSuite } from './spec.js';

const CONCURRENCY = 16;
const MAX_LISTED_FAILURES = 30;
const HARD_DEADLINE_MS = 115_000;

const started = performance.now();
const elapsed = (): string => `${((performance.now() - started) / 1000).toFixed(1)}s`;

function fail(message: string): never {
  console.error(message);
  console.log('0 passed, 1 failed');
  process.exit(1);
}

/** The environment with limits raised to at least what the spec cases send. An unset variable
 *  keeps the server default (all defaults already allow the cases); a set one below the need is
 *  raised. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: '0', HOST: '127.0.0.1' };
  if (env.LOG_LEVEL === undefined) env.LOG_LEVEL = 'silent';
  const atLeast = (name: string, need: number): void => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') return;
    const v = Number(raw);
    if (!Number.isFinite(v) || v < need) env[name] = String(need);
  };
  atLeast('WASMBOX_FUEL_MAX', SPEC_LIMITS.fuel);
  atLeast('WASMBOX_MEMORY_MB_MAX', SPEC_LIMITS.memoryMb);
  atLeast('WASMBOX_TIMEOUT_MS_MAX', SPEC_LIMITS.timeoutMs);
  atLeast('WASMBOX_QUEUE_MAX', CONCURRENCY * 4);
  atLeast('WASMBOX_QUEUE_TIMEOUT_MS', 60_000);
  return env;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]): string => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]!), sep, ...rows.slice(1).map(line)].join('\n');
}

/** Up to `max` failures, taken round-robin from each combination of causes (in file order), so one
 *  large group does not hide the others. */
function pickListed(failures: readonly CaseFailure[], max: number): CaseFailure[] {
  const groups = new Map<string, CaseFailure[]>();
  for (const f of failures) {
    const key = f.causes.join('+');
    const g = groups.get(key);
    if (g) g.push(f);
    else groups.set(key, [f]);
  }
  const picked = new Set<CaseFailure>();
  for (let round = 0; picked.size < max && picked.size < failures.length; round++) {
    for (const g of groups.values()) {
      const f = g[round];
      if (f !== undefined && picked.size < max) picked.add(f);
    }
  }
  return failures.filter((f) => picked.has(f));
}

function printSpec(spec: SpecReport): void {
  if (spec.failures.length === 0) return;
  const listed = pickListed(spec.failures, MAX_LISTED_FAILURES);
  const which = listed.length < spec.failures.length ? `; ${listed.length} listed, spread over the kinds of failure` : '';
  console.log(`\nSpec failures (${spec.failures.length}${which}):`);
  for (const f of listed) {
    console.log(`  ${f.id} [${f.causes.join(', ')}]`);
    console.log(`    expected: ${f.expected}`);
    console.log(`    got:      ${f.got}`);
    for (const d of f.details) console.log(`    note:     ${d}`);
  }
  const byCause = new Map<string, number>();
  for (const f of spec.failures) for (const c of f.causes) byCause.set(c, (byCause.get(c) ?? 0) + 1);
  console.log('\nSpec failures by cause:');
  for (const [c, n] of [...byCause].sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(5)}  ${c}`);
  const byFile = new Map<string, number>();
  for (const f of spec.failures) {
    const file = f.id.replace(/:\d+$/, '');
    byFile.set(file, (byFile.get(file) ?? 0) + 1);
  }
  console.log('\nSpec failures by file:');
  for (const [file, n] of [...byFile].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))) {
    console.log(`  ${String(n).padStart(5)}  ${file}`);
  }
}

function printFuel(fuel: FuelReport): void {
  if (fuel.failures.length === 0) return;
  console.log(`\nFuel mismatches (${fuel.failures.length}):`);
  for (const f of fuel.failures) {
    console.log(`  fuel.wast:${f.line}: expected ${f.expected}, got ${f.got}`);
    console.log(`    ${f.module}`);
  }
}

async function main(): Promise<number> {
  const sharedDir = path.resolve(process.cwd(), process.env.WASMBOX_SHARED_DIR || '../shared');
  const specDir = path.join(sharedDir, 'conformance', 'spec');
  const fuelWast = path.join(sharedDir, 'conformance', 'fuel', 'fuel.wast');
  const missing = [path.join(specDir, 'cases.jsonl'), fuelWast].filter((p) => !existsSync(p));
  if (missing.length > 0) {
    fail(
      `conformance data not found: ${missing.join(', ')}\n` +
        `The shared dir is ${sharedDir} (set WASMBOX_SHARED_DIR to point elsewhere; default ../shared from the project root).`,
    );
  }

  const deadline = setTimeout(() => {
    console.error(`conformance run exceeded its ${HARD_DEADLINE_MS / 1000}s bound (elapsed ${elapsed()}); aborting`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }, HARD_DEADLINE_MS);
  deadline.unref();

  const wabt = await loadWabt(); // before the server: see loadWabt
  const config = loadConfig(serverEnv());
  const app = await buildApp({ config, logger: false });
  let spec: SpecReport;
  let pool: Pool | null = null;
  try {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    if (address === null || typeof address === 'string') throw new Error(`unexpected server address ${show(address)}`);
    const origin = `http://127.0.0.1:${address.port}`;
    console.log(`wasmbox conformance: server at ${origin} (${config.workers} guest workers), shared dir ${sharedDir}`);
    pool = new Pool(origin, { connections: CONCURRENCY, headersTimeout: 30_000, bodyTimeout: 30_000 });
    spec = await runSpecSuite(pool, specDir, CONCURRENCY);
  } finally {
    await pool?.close().catch(() => {});
    await app.close();
  }
  const specSecs = elapsed();
  const fuel = await runFuelSuite(fuelWast, wabt);

  printSpec(spec);
  printFuel(fuel);

  console.log('');
  console.log(
    table([
      ['suite', 'total', 'passed', 'failed', '5xx'],
      ['spec (POST /execute)', String(spec.total), String(spec.passed), String(spec.failed), String(spec.fiveXx)],
      [
        '  differential (unmetered)',
        String(spec.diffCompared),
        String(spec.diffCompared - spec.diffMismatches),
        String(spec.diffMismatches),
        '-',
      ],
      ['  invariants (per response)', '-', '-', String(spec.invariantViolations), '-'],
      ['  trap kinds', '-', '-', String(spec.trapKindMismatches), '-'],
      ['fuel (fuel.wast)', String(fuel.total), String(fuel.passed), String(fuel.failed), '-'],
    ]),
  );
  console.log(`\nelapsed ${elapsed()} (spec suite done at ${specSecs})`);
  const passed = spec.passed + fuel.passed;
  const failed = spec.failed + fuel.failed;
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 && spec.fiveXx === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error('conformance run failed:', e instanceof Error ? (e.stack ?? e.message) : e);
    console.log('0 passed, 1 failed');
    process.exit(1);
  },
);
