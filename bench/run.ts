// `npm run bench [-- [--quick] [--strict] [section...]]`: the benchmark suite.
//
//   sections: http, metering, prepare, overload, deadline, bodies, jobs, batch (default: all, in that order)
//   --quick   shorter runs, to check the suite itself works (numbers not to be quoted)
//   --strict  also exit non-zero when a target is missed
//
// Tables (markdown) go to stdout, progress to stderr; everything measured is also written to
// bench/results/bench-<time>.json and bench/results/latest.json. The exit code is non-zero when a
// section found something wrong (a metered result differing from the unmetered one, an error
// response under load, a failed preparation), or, with --strict, when a target was missed.
// Everything runs on 127.0.0.1. The full run takes about 2-3 minutes on a 2-core machine.

import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bodiesSection } from './bodies.js';
import { batchSection } from './batch.js';
import { deadlineSection } from './deadline.js';
import { httpSection } from './http.js';
import { jobsSection } from './jobs.js';
import { RESULTS_DIR, type Section, type SectionResult, machineCpu, otherLoadPercent } from './lib.js';
import { meteringSection } from './metering.js';
import { overloadSection } from './overload.js';
import { prepareSection } from './prepare.js';

const SECTIONS: Record<string, Section> = {
  http: httpSection,
  metering: meteringSection,
  prepare: prepareSection,
  overload: overloadSection,
  deadline: deadlineSection,
  bodies: bodiesSection,
  jobs: jobsSection,
  batch: batchSection,
};

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: npm run bench -- [--quick] [--strict] [${Object.keys(SECTIONS).join('|')}]...\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const strict = args.includes('--strict');
const unknownFlags = args.filter((a) => a.startsWith('-') && a !== '--quick' && a !== '--strict');
if (unknownFlags.length) usage(`unknown option ${unknownFlags.join(', ')}`);
const names = args.filter((a) => !a.startsWith('-'));
for (const n of names) if (!SECTIONS[n]) usage(`unknown section "${n}"`);
const selected = names.length ? [...new Set(names)] : Object.keys(SECTIONS);

const log = (message: string): void => {
  process.stderr.write(`${message}\n`);
};

const started = new Date();
const t0 = performance.now();
const cpus = os.cpus();
// Benchmarks on a shared 2-core machine are only as good as the machine is quiet: measure what
// the rest of the machine uses before starting, and warn when it is more than a sliver.
const busyBefore = await otherLoadPercent(1000);
const BUSY_WARN = 15;
const header = [
  '# wasmbox benchmarks',
  '',
  `${started.toISOString()} · Node ${process.version} · ${os.availableParallelism()} cores (${cpus[0]?.model.trim() ?? 'unknown CPU'}) · ` +
    `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB · load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}` +
    (busyBefore !== null ? ` · other processes before the run: ${busyBefore.toFixed(0)} % of a core` : '') +
    (quick ? ' · **--quick: numbers not representative**' : ''),
  ...(busyBefore !== null && busyBefore > BUSY_WARN
    ? ['', `**WARNING: the machine is busy**: other processes used ${busyBefore.toFixed(0)} % of a core in the second before the run; the numbers below are pessimistic.`]
    : []),
].join('\n');
process.stdout.write(`${header}\n\n`);

const results: Record<string, SectionResult & { seconds: number; otherLoadPercent: number | null }> = {};
let failed = false;
for (const name of selected) {
  log(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${name}`);
  const s0 = performance.now();
  const m0 = machineCpu();
  const own0 = process.cpuUsage(); // all of this process's threads, workers included
  let r: SectionResult;
  try {
    r = await SECTIONS[name]!({ quick, log });
  } catch (err) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    r = { markdown: `## ${name}\n\n**PROBLEM** the section failed: ${message}`, data: null, ok: false, problems: [`${name}: ${message}`], missed: [] };
  }
  const seconds = (performance.now() - s0) / 1000;
  // What the rest of the machine used meanwhile. The http section runs its servers in child
  // processes and reports CPU per process itself; the others run entirely in this process.
  const m1 = machineCpu();
  const own = process.cpuUsage(own0);
  const children = r.childCpuSeconds ?? 0;
  const otherPercent =
    name !== 'http' && m0 && m1 ? Math.max(0, ((m1.busy - m0.busy - (own.user + own.system) / 1e6 - children) / seconds) * 100) : null;
  results[name] = { ...r, seconds, otherLoadPercent: otherPercent };
  if (!r.ok) failed = true;
  process.stdout.write(`${r.markdown}\n\n`);
  if (otherPercent !== null && otherPercent > BUSY_WARN) {
    process.stdout.write(`**WARNING**: other processes used ${otherPercent.toFixed(0)} % of a core during this section; its times are inflated and its ratios noisy.\n\n`);
  }
}

const problems = Object.values(results).flatMap((r) => r.problems);
const missed = Object.values(results).flatMap((r) => r.missed);
const totalS = (performance.now() - t0) / 1000;
const summary = [
  '## Summary',
  '',
  `${selected.join(', ')} in ${totalS.toFixed(0)} s.`,
  missed.length ? `Targets missed:\n${missed.map((m) => `- ${m}`).join('\n')}` : 'All targets met.',
  problems.length ? `\n**PROBLEMS** (exit code 1):\n${problems.map((p) => `- ${p}`).join('\n')}` : '',
].join('\n');
process.stdout.write(`${summary}\n`);

mkdirSync(RESULTS_DIR, { recursive: true });
const json = JSON.stringify(
  {
    startedAt: started.toISOString(),
    seconds: totalS,
    quick,
    node: process.version,
    cores: os.availableParallelism(),
    cpu: cpus[0]?.model ?? null,
    loadAverage: os.loadavg(),
    otherLoadPercentBefore: busyBefore,
    sections: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { seconds: v.seconds, otherLoadPercent: v.otherLoadPercent, ok: v.ok, problems: v.problems, missed: v.missed, data: v.data }])),
  },
  (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
  2,
);
const file = path.join(RESULTS_DIR, `bench-${started.toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, json);
writeFileSync(path.join(RESULTS_DIR, 'latest.json'), json);
log(`results: ${path.relative(process.cwd(), file)}`);

// Exit explicitly: keep-alive sockets of the HTTP clients would otherwise hold the process a few seconds.
process.exit(failed || (strict && missed.length > 0) ? 1 : 0);
