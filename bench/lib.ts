// Shared helpers of the benchmark suite: statistics, markdown tables, paths, a section's shape.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs as dist/bench/lib.js). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PROGRAMS_DIR = fileURLToPath(new URL('../../bench/programs/', import.meta.url));
export const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

export interface SectionOptions {
  /** Shorter runs (fewer reps, shorter load): a smoke test of the suite, not numbers to quote. */
  quick: boolean;
  /** Progress lines go to stderr, so stdout carries only the tables. */
  log: (message: string) => void;
}

export interface SectionResult {
  /** Markdown: a heading, one or more tables, notes. */
  markdown: string;
  /** Everything measured, for bench/results/*.json. */
  data: unknown;
  /** False when something was wrong (a mismatch, an error response): the run exits non-zero. */
  ok: boolean;
  /** Problems to repeat at the end of the run. */
  problems: string[];
  /** Targets missed (reported; the run exits non-zero on them only with --strict). */
  missed: string[];
  /** CPU seconds used by child processes the section started (its servers), so they do not count
   *  as other load on the machine. */
  childCpuSeconds?: number | null;
}

export type Section = (options: SectionOptions) => Promise<SectionResult>;

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/** Linear interpolation between closest ranks (the same as numpy's default). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/** Quantiles of a large sample, sorted once. */
export function quantiles(values: Float64Array, qs: readonly number[]): number[] {
  const s = Float64Array.from(values).sort();
  return qs.map((q) => {
    if (s.length === 0) return NaN;
    const pos = (s.length - 1) * q;
    const lo = Math.floor(pos);
    const hi = Math.ceil(pos);
    return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
  });
}

export function min(values: readonly number[]): number {
  return Math.min(...values);
}

export function geomean(values: readonly number[]): number {
  return Math.exp(values.reduce((a, v) => a + Math.log(v), 0) / values.length);
}

/** A number with `digits` decimals and thousands separators. */
export function fmt(v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function fmtInt(v: number | bigint): string {
  return v.toLocaleString('en-US');
}

export function fmtBytes(n: number): string {
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(2)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

export const met = (ok: boolean): string => (ok ? 'met' : '**MISSED**');

/** A markdown table; `align` is 'l' or 'r' per column (default: first left, others right). */
export function table(header: readonly string[], rows: readonly (readonly string[])[], align?: readonly ('l' | 'r')[]): string {
  const al = header.map((_, i) => align?.[i] ?? (i === 0 ? 'l' : 'r'));
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => (r[i] ?? '').length)));
  const cell = (s: string, i: number): string => (al[i] === 'l' ? s.padEnd(widths[i]!) : s.padStart(widths[i]!));
  const line = (r: readonly string[]): string => `| ${header.map((_, i) => cell(r[i] ?? '', i)).join(' | ')} |`;
  const sep = `| ${widths.map((w, i) => (al[i] === 'l' ? `:${'-'.repeat(w - 1)}` : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  return [line(header), sep, ...rows.map(line)].join('\n');
}

export const nowMs = (): number => performance.now();

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Linux USER_HZ: /proc/stat and /proc/<pid>/stat count CPU time in these ticks. */
export const CLK_TCK = 100;

/** CPU time of the whole machine, in seconds summed over cores (/proc/stat): busy (not idle or
 *  iowait), and the part of it spent on interrupts and softirqs (loopback TCP is mostly softirq
 *  work, which the kernel does not always charge to the process that caused it). */
export function machineCpu(): { busy: number; irq: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = v.reduce((a, x) => a + x, 0);
    return { busy: (total - v[3]! - v[4]!) / CLK_TCK, irq: (v[5]! + v[6]!) / CLK_TCK };
  } catch {
    return null;
  }
}


/** CPU the rest of the machine uses while this process sleeps for `ms`, in % of one core. */
export async function otherLoadPercent(ms = 1000): Promise<number | null> {
  const m0 = machineCpu();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(ms);
  const m1 = machineCpu();
  const own = process.cpuUsage(own0);
  if (!m0 || !m1) return null;
  const wallS = (performance.now() - t0) / 1000;
  return Math.max(0, ((m1.busy - m0.busy - (own.user + own.system) / 1e6) / wallS) * 100);
}

/** `module` with a custom section named `name` appended, carrying `payloadBytes` bytes. */
export function withCustomSection(module: Uint8Array, name: string, payloadBytes: number, fill = 0x5a): Buffer {
  const nameBytes = Buffer.from(name);
  const content = Buffer.concat([Buffer.from([nameBytes.length]), nameBytes, Buffer.alloc(payloadBytes, fill)]);
  const size: number[] = [];
  let n = content.length;
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    size.push(b);
  } while (n);
  return Buffer.concat([Buffer.from(module), Buffer.from([0, ...size]), content]);
}
