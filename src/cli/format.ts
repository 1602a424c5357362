// Human-readable output: results, outcome lines, the telemetry table, module descriptions.

const group = (n: number): string => n.toLocaleString('en-US');

/** 0 B, 512 B, 64 KiB, 1.5 MiB, 20 MiB, 4 GiB. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const text = u === 0 ? String(v) : v >= 100 ? v.toFixed(0) : String(Number(v.toPrecision(3)));
  return `${text} ${units[u]}`;
}

/** 850 ns, 4.18 µs, 12.3 ms, 1.20 s. */
export function formatDuration(ns: number): string {
  if (ns < 1_000) return `${Math.round(ns)} ns`;
  const [v, unit] = ns < 1e6 ? [ns / 1e3, 'µs'] : ns < 1e9 ? [ns / 1e6, 'ms'] : [ns / 1e9, 's'];
  return `${v >= 100 ? v.toFixed(0) : v.toPrecision(3)} ${unit}`;
}

export interface TelemetryLike {
  /** Null only from a server older than the exact account at deadlines. */
  fuelConsumed: number | null;
  fuelLimit: number;
  memoryPeakBytes: number | null;
  memoryLimitBytes: number;
  durationNs: number;
  /** The guest could not be stopped in its thread, which was terminated: the account is as of its
   *  last fuel check. */
  threadKilled?: boolean;
}

/** The short table shown under a run: fuel, peak memory, duration (and the exit code of a WASI
 *  program). */
export function telemetryTable(outcome: string, t: TelemetryLike, extra: [string, string][] = []): string {
  const fuel =
    t.fuelConsumed === null
      ? `unknown (stopped mid-instruction) / ${group(t.fuelLimit)}`
      : `${group(t.fuelConsumed)} / ${group(t.fuelLimit)} (${percent(t.fuelConsumed, t.fuelLimit)})${t.threadKilled ? ', as of its last fuel check' : ''}`;
  const memory =
    t.memoryPeakBytes === null ? `unknown / ${formatBytes(t.memoryLimitBytes)}` : `${formatBytes(t.memoryPeakBytes)} / ${formatBytes(t.memoryLimitBytes)}`;
  const rows: [string, string][] = [
    ['outcome', outcome],
    ...extra,
    ['fuel', fuel],
    ['memory', memory],
    ['duration', `${formatDuration(t.durationNs)} (${group(t.durationNs)} ns)`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n') + '\n';
}

/** The live line of a run in flight: "running  fuel 12,345 / 100,000 (12%)  memory 64 KiB  1.20 s". */
export function progressLine(p: { fuelConsumed: number; memoryBytes: number; elapsedMs: number }, fuelLimit: number | null): string {
  const fuel = fuelLimit === null ? group(p.fuelConsumed) : `${group(p.fuelConsumed)} / ${group(fuelLimit)} (${percent(p.fuelConsumed, fuelLimit)})`;
  return `running  fuel ${fuel}  memory ${formatBytes(p.memoryBytes)}  ${formatDuration(p.elapsedMs * 1e6)}`;
}

function percent(part: number, whole: number): string {
  if (whole <= 0) return '-';
  const p = (part / whole) * 100;
  if (p === 0 || p === 100) return `${p}%`;
  if (p < 0.01) return '<0.01%';
  return `${p >= 10 ? p.toFixed(1) : p.toPrecision(2)}%`;
}

/** One line per result value; strings (i64, NaN, ...) unquoted. */
export function formatResults(results: readonly unknown[]): string {
  return results.map((v) => `${String(v)}\n`).join('');
}

interface DescriptionLike {
  moduleId: string;
  size: number;
  exports: { name: string; params: string[]; results: string[] }[];
  otherExports?: { name: string; kind: string }[];
  imports: { module: string; name: string; kind: string }[];
  memory: { minPages: number; maxPages: number | null; shared: boolean } | null;
  tables?: { elementType: string; min: number; max: number | null }[];
  hasStart?: boolean;
  storedAt?: string;
}

const PAGE = 65_536;

function pages(n: number): string {
  return `${group(n)} page${n === 1 ? '' : 's'} (${formatBytes(n * PAGE)})`;
}

/** What `wasmbox inspect` prints. */
export function describeText(d: DescriptionLike, where?: string): string {
  const rows: [string, string[]][] = [];
  rows.push(['module id', [d.moduleId]]);
  rows.push(['size', [`${group(d.size)} bytes`]]);
  const sig = (e: DescriptionLike['exports'][number]): string =>
    `${e.name}(${e.params.join(', ')}) -> ${e.results.length === 1 ? e.results[0] : `(${e.results.join(', ')})`}`;
  rows.push(['functions', d.exports.length ? d.exports.map(sig) : ['none exported']]);
  const others = d.otherExports ?? [];
  if (others.length) rows.push(['other exports', others.map((e) => `${e.name} (${e.kind})`)]);
  rows.push(['imports', d.imports.length ? d.imports.map((i) => `${i.module}.${i.name} (${i.kind})`) : ['none']]);
  if (d.memory) {
    const max = d.memory.maxPages === null ? 'no maximum' : `max ${pages(d.memory.maxPages)}`;
    rows.push(['memory', [`min ${pages(d.memory.minPages)}, ${max}${d.memory.shared ? ', shared' : ''}`]]);
  } else {
    rows.push(['memory', ['none']]);
  }
  const tables = d.tables ?? [];
  rows.push([
    'tables',
    tables.length
      ? tables.map((t) => `${t.elementType}, min ${group(t.min)} element${t.min === 1 ? '' : 's'}, ${t.max === null ? 'no maximum' : `max ${group(t.max)}`}`)
      : ['none'],
  ]);
  if (d.hasStart !== undefined) rows.push(['start function', [d.hasStart ? 'yes (runs before every call)' : 'no']]);
  if (where) rows.push(['stored on', [`${where}${d.storedAt ? ` since ${d.storedAt}` : ''}`]]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, lines]) => lines.map((line, i) => `${(i === 0 ? k : '').padEnd(width)}  ${line}`).join('\n')).join('\n') + '\n';
}
