// Section "http": requests/s and latency under load, on loopback, with autocannon.
//
// Where the server runs: in a CHILD PROCESS (`node dist/src/server.js`, exactly what `npm start`
// runs, with its default configuration apart from PORT/HOST), not in this process. On a 2-core
// machine everything competes for the same two cores anyway, but in one process autocannon's
// request generation and response parsing would run on the server's own event loop: every
// millisecond the load generator spends would be added to the server's latency and subtracted
// from its throughput, and the two could never overlap. As separate processes the OS schedules
// them side by side as it would a real client and server on one host; the remaining sharing (the
// client and the guest runner threads compete for cores) is made visible by the CPU columns: the
// server's CPU use (all its threads, from /proc) and the load generator's.
//
// The baseline is a bare Fastify server, also a child process (bench/http-bare-server.ts).
// Latency percentiles are computed from every response's own time (autocannon's histogram keeps
// whole milliseconds only). Any non-2xx response or socket error is a problem (non-zero exit).
//
// The scenarios are a list: a new row is one more entry in SCENARIOS (a setup that builds the
// request, a response check, an optional target); (c) was added that way.

import autocannon from 'autocannon';
import { request } from 'undici';
import { type ServerKind, type ServerProcess, startServer } from './server-process.js';
import { type SectionOptions, type SectionResult, withCustomSection, fmt, fmtInt, median, met, machineCpu, quantiles, table } from './lib.js';

const CONNECTIONS = 32;

/** add(i32, i32) -> i32, hand-assembled: (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add). */
export const ADD_WASM = Buffer.from('0061736d0100000001070160027f7f017f030201000707010361646400000a09010700200020016a0b', 'hex');


interface RequestSpec {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

interface Scenario {
  id: string;
  label: string;
  server: ServerKind;
  /** Builds the request once the server is up (the by-id scenario uploads its module here), or
   *  says why the scenario cannot run on this server (it is then listed as skipped). */
  setup(baseUrl: string): Promise<RequestSpec | { skip: string }>;
  /** Checks one response (before and after the load); returns what is wrong, or null. */
  check(status: number, body: unknown): string | null;
  target?: { rps: number; p99Ms: number };
}

/** POST /execute of add by moduleId (the module uploaded first). */
async function byIdAdd(base: string): Promise<RequestSpec | { skip: string }> {
  const res = await request(`${base}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: ADD_WASM });
  const text = await res.body.text();
  if (res.statusCode !== 201 && res.statusCode !== 200) return { skip: `POST /modules answered ${res.statusCode}: ${text.slice(0, 200)}` };
  const { moduleId } = JSON.parse(text) as { moduleId: string };
  return {
    method: 'POST',
    path: '/execute',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ moduleId, function: 'add', args: [5, 10] }),
  };
}

const SCENARIOS: Scenario[] = [
  {
    id: 'a',
    label: 'bare Fastify GET /hello (fixed JSON)',
    server: 'bare',
    setup: async () => ({ method: 'GET', path: '/hello' }),
    check: (status, body) => (status === 200 && (body as { hello?: string })?.hello === 'world' ? null : `status ${status}, body ${JSON.stringify(body)}`),
  },
  {
    id: 'b',
    label: 'POST /execute, JSON body, base64 module add(5,10)',
    server: 'wasmbox',
    setup: async () => ({
      method: 'POST',
      path: '/execute',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ module: ADD_WASM.toString('base64'), function: 'add', args: [5, 10] }),
    }),
    check: checkAdd,
    target: { rps: 3000, p99Ms: 20 },
  },
  {
    id: 'c',
    label: 'POST /execute by moduleId, add(5,10)',
    server: 'wasmbox',
    setup: byIdAdd,
    check: checkAdd,
    target: { rps: 3000, p99Ms: 10 },
  },
  {
    id: 'd',
    label: 'POST /execute, JSON body, base64 module add(5,10) padded to 100 KiB',
    server: 'wasmbox',
    setup: async () => ({
      method: 'POST',
      path: '/execute',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ module: ADD_100K_WASM.toString('base64'), function: 'add', args: [5, 10] }),
    }),
    check: checkAdd,
  },
  {
    id: 'e',
    label: 'POST /execute by moduleId, the same 100 KiB module',
    server: 'wasmbox',
    setup: async (base) => {
      const id = await storeModule(base, ADD_100K_WASM);
      if (typeof id !== 'string') return id;
      return {
        method: 'POST',
        path: '/execute',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ moduleId: id, function: 'add', args: [5, 10] }),
      };
    },
    check: checkAdd,
  },
];

/** POST /execute by moduleId against the bare route, requests/s (issue 14). */
const BARE_RATIO_TARGET = 0.35;
const BARE_RATIO_GOAL = 0.5;

/** By-id runs against base64 runs of the same module: (by id, base64, minimum ratio). */
const RATIO_TARGETS: readonly [string, string, number][] = [
  ['c', 'b', 1.5],
  ['e', 'd', 1.5],
];

/** The same add module padded to ~100 KiB with a custom section: the size of a small compiled
 *  program, so the bytes a base64 request carries (JSON parse, base64 decode, SHA-256) weigh as
 *  they do in practice. Rows (d) and (e) run this one module both ways. */
export const ADD_100K_WASM = withCustomSection(ADD_WASM, 'wasmbox-bench-padding', 100 * 1024 - 32);

async function storeModule(base: string, bytes: Uint8Array): Promise<string | { skip: string }> {
  const res = await request(`${base}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: bytes });
  const text = await res.body.text();
  if (res.statusCode !== 201 && res.statusCode !== 200) return { skip: `POST /modules answered ${res.statusCode}: ${text.slice(0, 200)}` };
  return (JSON.parse(text) as { moduleId: string }).moduleId;
}

function checkAdd(status: number, body: unknown): string | null {
  const b = body as { outcome?: string; results?: unknown[] } | null;
  return status === 200 && b?.outcome === 'ok' && b.results?.[0] === 15 ? null : `status ${status}, body ${JSON.stringify(body).slice(0, 300)}`;
}

async function probeOnce(baseUrl: string, spec: RequestSpec): Promise<{ status: number; body: unknown }> {
  const res = await request(baseUrl + spec.path, { method: spec.method, headers: spec.headers ?? {}, body: spec.body ?? null });
  const text = await res.body.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* keep the text */
  }
  return { status: res.statusCode, body };
}

interface LoadResult {
  durationS: number;
  requests: number;
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  serverCpuPercent: number | null;
  /** The server's main thread (its event loop): CPU time per response, in µs. */
  mainUsPerRequest: number | null;
  loadGenCpuPercent: number;
  /** CPU used by everything else on the machine meanwhile: other processes and kernel work charged
   *  to neither process; `irqCpuPercent` is the interrupt and softirq part of the machine's total. */
  otherCpuPercent: number | null;
  irqCpuPercent: number | null;
  autocannon: { rpsAverage: number; p50: number; p99: number };
}

async function load(server: ServerProcess, spec: RequestSpec, durationS: number): Promise<LoadResult> {
  const lat: number[] = [];
  const cpu0 = server.cpuSeconds();
  const main0 = server.mainThreadCpuSeconds();
  const m0 = machineCpu();
  const own0 = process.cpuUsage();
  const t0 = performance.now();
  const instance = autocannon({
    url: server.baseUrl + spec.path,
    method: spec.method,
    headers: spec.headers ?? {},
    ...(spec.body !== undefined && { body: spec.body }),
    connections: CONNECTIONS,
    pipelining: 1,
    duration: durationS,
    timeout: 10,
  });
  instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => {
    lat.push(ms);
  });
  const r = await instance;
  const wallS = (performance.now() - t0) / 1000;
  const cpu1 = server.cpuSeconds();
  const main1 = server.mainThreadCpuSeconds();
  const m1 = machineCpu();
  const own = process.cpuUsage(own0);
  const [p50, p90, p99, max] = quantiles(Float64Array.from(lat), [0.5, 0.9, 0.99, 1]);
  const serverCpuPercent = cpu0 !== null && cpu1 !== null ? ((cpu1 - cpu0) / wallS) * 100 : null;
  const loadGenCpuPercent = ((own.user + own.system) / 1e6 / wallS) * 100;
  const otherCpuPercent =
    m0 && m1 && serverCpuPercent !== null ? Math.max(0, ((m1.busy - m0.busy) / wallS) * 100 - serverCpuPercent - loadGenCpuPercent) : null;
  const irqCpuPercent = m0 && m1 ? ((m1.irq - m0.irq) / wallS) * 100 : null;
  const statusCodes: Record<string, number> = {};
  for (const [code, v] of Object.entries(r.statusCodeStats)) statusCodes[code] = v.count;
  return {
    durationS: r.duration,
    requests: lat.length,
    rps: lat.length / r.duration,
    p50Ms: p50!,
    p90Ms: p90!,
    p99Ms: p99!,
    maxMs: max!,
    meanMs: lat.reduce((a, v) => a + v, 0) / lat.length,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes,
    serverCpuPercent,
    mainUsPerRequest: main0 !== null && main1 !== null && lat.length > 0 ? ((main1 - main0) * 1e6) / lat.length : null,
    loadGenCpuPercent,
    otherCpuPercent,
    irqCpuPercent,
    autocannon: { rpsAverage: r.requests.average, p50: r.latency.p50, p99: r.latency.p99 },
  };
}

/** (c) on the default server against one that never hands a thread a run ahead, interleaved. */
async function prefetchComparison(
  options: SectionOptions,
  rounds: number,
  seconds: number,
): Promise<{ rows?: string[][]; rounds: number; seconds: number; problem?: string; data?: unknown }> {
  options.log(`  http: runs handed ahead or not: two servers, ${rounds} interleaved rounds of ${seconds} s`);
  const servers: ServerProcess[] = [];
  try {
    servers.push(await startServer('wasmbox'), await startServer('wasmbox', { WASMBOX_RUN_PREFETCH: '0' }));
    const specs: RequestSpec[] = [];
    for (const server of servers) {
      const spec = await byIdAdd(server.baseUrl);
      if ('skip' in spec) return { rounds, seconds, problem: `http prefetch comparison: ${spec.skip}` };
      specs.push(spec);
      await load(server, spec, 2);
    }
    const runs: LoadResult[][] = [[], []];
    for (let round = 0; round < rounds; round++) {
      for (const k of round % 2 === 0 ? [0, 1] : [1, 0]) runs[k]!.push(await load(servers[k]!, specs[k]!, seconds));
    }
    for (const r of runs.flat()) {
      if (r.non2xx || r.errors || r.timeouts) return { rounds, seconds, problem: `http prefetch comparison: ${r.non2xx} non-2xx responses, ${r.errors} errors, ${r.timeouts} timeouts` };
    }
    const med = (k: number, f: (r: LoadResult) => number): number => median(runs[k]!.map(f));
    const [rps1, rps0] = [med(0, (r) => r.rps), med(1, (r) => r.rps)];
    const [p991, p990] = [med(0, (r) => r.p99Ms), med(1, (r) => r.p99Ms)];
    return {
      rounds,
      seconds,
      rows: [
        ['default (WASMBOX_RUN_PREFETCH=1)', fmt(rps1, 0), fmt(med(0, (r) => r.p50Ms), 2), fmt(p991, 2), fmt(rps1 / rps0, 3), fmt(p991 / p990, 2)],
        ['WASMBOX_RUN_PREFETCH=0', fmt(rps0, 0), fmt(med(1, (r) => r.p50Ms), 2), fmt(p990, 2), '1.000', '1.00'],
      ],
      data: runs,
    };
  } finally {
    for (const server of servers) await server.stop();
  }
}

async function coldFirstRun(options: SectionOptions): Promise<{ row?: string[]; ok?: boolean; problem?: string }> {
  const { generateModule } = await import('../src/wasm/synthetic.js');
  const mod = generateModule(1024 * 1024, 7).bytes;
  options.log('  http: cold first run of a 1 MiB module on a fresh server');
  const server = await startServer('wasmbox');
  try {
    const t0 = performance.now();
    const up = await request(`${server.baseUrl}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: mod });
    const upBody = (await up.body.json()) as { moduleId?: string };
    const t1 = performance.now();
    if (up.statusCode !== 201 || !upBody.moduleId) return { problem: `cold: POST /modules answered ${up.statusCode}` };
    const run = await request(`${server.baseUrl}/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ moduleId: upBody.moduleId, function: 'main' }),
    });
    const runBody = (await run.body.json()) as { outcome?: string; telemetry?: { prepareNs?: number } };
    const t2 = performance.now();
    if (run.statusCode !== 200 || runBody.outcome !== 'ok') return { problem: `cold: first run answered ${run.statusCode} ${JSON.stringify(runBody).slice(0, 200)}` };
    const total = t2 - t0;
    return {
      ok: total < 300,
      row: [
        `${fmt(mod.length / 1024, 0)} KiB, generated`,
        fmt(t1 - t0, 1),
        fmt(t2 - t1, 1),
        fmt(total, 1),
        fmt((runBody.telemetry?.prepareNs ?? 0) / 1e6, 3),
        '< 300 ms',
        met(total < 300),
      ],
    };
  } finally {
    await server.stop();
  }
}

/** Rounds of one scenario, as one row: the median round's figures (each round's own p50/p99). */
function medianOfRounds(rounds: LoadResult[]): LoadResult {
  const med = (f: (r: LoadResult) => number | null): number | null => {
    const xs = rounds.map(f).filter((x): x is number => x !== null);
    return xs.length ? median(xs) : null;
  };
  const sum = (f: (r: LoadResult) => number): number => rounds.reduce((a, r) => a + f(r), 0);
  const statusCodes: Record<string, number> = {};
  for (const r of rounds) for (const [code, n] of Object.entries(r.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n;
  return {
    durationS: sum((r) => r.durationS),
    requests: sum((r) => r.requests),
    rps: med((r) => r.rps)!,
    p50Ms: med((r) => r.p50Ms)!,
    p90Ms: med((r) => r.p90Ms)!,
    p99Ms: med((r) => r.p99Ms)!,
    maxMs: Math.max(...rounds.map((r) => r.maxMs)),
    meanMs: med((r) => r.meanMs)!,
    non2xx: sum((r) => r.non2xx),
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    statusCodes,
    serverCpuPercent: med((r) => r.serverCpuPercent),
    mainUsPerRequest: med((r) => r.mainUsPerRequest),
    loadGenCpuPercent: med((r) => r.loadGenCpuPercent)!,
    otherCpuPercent: med((r) => r.otherCpuPercent),
    irqCpuPercent: med((r) => r.irqCpuPercent),
    autocannon: rounds[0]!.autocannon,
  };
}

export async function httpSection(options: SectionOptions): Promise<SectionResult> {
  // Every scenario's server is up at once and the scenarios are measured in interleaved rounds (the
  // order rotating), each row the median round: the machine's drift (other load, frequency) falls on
  // all of them alike, where one window each, one after the other, put the ratios at its mercy
  // (by id against the bare route: 0.21 to 0.26 in five rounds of one run).
  const warmS = options.quick ? 1 : 3;
  const rounds = options.quick ? 1 : 3;
  const roundS = options.quick ? 3 : 4;
  const durationS = rounds * roundS;
  const problems: string[] = [];
  const missed: string[] = [];
  const skipped: string[] = [];
  const results: (LoadResult & { id: string; label: string; server: ServerKind; target?: Scenario['target']; rounds: LoadResult[] })[] = [];

  const kinds = [...new Set(SCENARIOS.map((s) => s.server))];
  const servers = new Map<ServerKind, ServerProcess>();
  try {
    for (const kind of kinds) {
      options.log(`  http: starting the ${kind} server`);
      servers.set(kind, await startServer(kind));
    }
    const ready: { sc: Scenario; server: ServerProcess; spec: RequestSpec; rounds: LoadResult[] }[] = [];
    for (const sc of SCENARIOS) {
      const server = servers.get(sc.server)!;
      const spec = await sc.setup(server.baseUrl);
      if ('skip' in spec) {
        skipped.push(`(${sc.id}) ${sc.label}: skipped: ${spec.skip}`);
        options.log(`  http: ${skipped.at(-1)}`);
        continue;
      }
      const before = await probeOnce(server.baseUrl, spec);
      const wrong = sc.check(before.status, before.body);
      if (wrong) {
        problems.push(`http (${sc.id}) ${sc.label}: unexpected response before the load: ${wrong}`);
        continue;
      }
      options.log(`  http: (${sc.id}) ${sc.label}: warm-up ${warmS} s`);
      await load(server, spec, warmS);
      ready.push({ sc, server, spec, rounds: [] });
    }
    options.log(`  http: ${rounds} interleaved rounds of ${roundS} s per scenario at ${CONNECTIONS} connections`);
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < ready.length; i++) {
        const r = ready[(i + round) % ready.length]!;
        r.rounds.push(await load(r.server, r.spec, roundS));
      }
    }
    for (const { sc, server, spec, rounds: measured } of ready) {
      const after = await probeOnce(server.baseUrl, spec);
      const wrongAfter = sc.check(after.status, after.body);
      if (wrongAfter) problems.push(`http (${sc.id}): unexpected response after the load: ${wrongAfter}`);
      const r = medianOfRounds(measured);
      if (r.non2xx || r.errors || r.timeouts) {
        problems.push(`http (${sc.id}): ${r.non2xx} non-2xx responses (${JSON.stringify(r.statusCodes)}), ${r.errors} errors, ${r.timeouts} timeouts`);
      }
      results.push({ ...r, id: sc.id, label: sc.label, server: sc.server, ...(sc.target && { target: sc.target }), rounds: measured });
    }
  } finally {
    for (const [kind, server] of servers) {
      await server.stop();
      const tail = server.stderr().trim();
      if (tail) options.log(`  http: ${kind} server stderr:\n${tail}`);
    }
  }

  const base = results.find((r) => r.id === 'a');
  const rows = results.map((r) => {
    let target = '';
    let verdict = '';
    if (r.target) {
      const ok = r.rps >= r.target.rps && r.p99Ms < r.target.p99Ms;
      target = `≥ ${fmtInt(r.target.rps)} req/s, p99 < ${r.target.p99Ms} ms`;
      verdict = met(ok);
      if (!ok) missed.push(`http (${r.id}): ${fmt(r.rps, 0)} req/s, p99 ${fmt(r.p99Ms, 2)} ms (target ${target})`);
    }
    return [
      `(${r.id}) ${r.label}`,
      fmt(r.rps, 0),
      fmt(r.p50Ms, 2),
      fmt(r.p99Ms, 2),
      fmt(r.maxMs, 1),
      base ? fmt(r.rps / base.rps, 3) : '–',
      r.serverCpuPercent === null ? '–' : `${fmt(r.serverCpuPercent, 0)} %`,
      r.mainUsPerRequest === null ? '–' : fmt(r.mainUsPerRequest, 0),
      `${fmt(r.loadGenCpuPercent, 0)} %`,
      r.otherCpuPercent === null ? '–' : `${fmt(r.otherCpuPercent, 0)} %${r.irqCpuPercent === null ? '' : ` (irq ${fmt(r.irqCpuPercent, 0)} %)`}`,
      target,
      verdict,
    ];
  });
  const ratios = base
    ? results
        .filter((r) => r !== base)
        .map((r) => `(${r.id})/(a): ${fmt(r.rps / base.rps, 3)} of the requests/s, p99 ${fmt(r.p99Ms / base.p99Ms, 2)}x`)
    : [];
  // Issue 14: by id at least 0.35 of the bare route's requests/s in the same run (goal 0.5).
  const byIdRow = results.find((r) => r.id === 'c');
  const bareRatioRows: string[][] = [];
  if (base && byIdRow) {
    const ratio = byIdRow.rps / base.rps;
    if (ratio < BARE_RATIO_TARGET) missed.push(`http (c)/(a): ${fmt(ratio, 3)} of the bare route's requests/s (target ≥ ${BARE_RATIO_TARGET}, goal ${BARE_RATIO_GOAL})`);
    bareRatioRows.push(['(c) by id / (a) bare route', fmt(ratio, 3), `≥ ${BARE_RATIO_TARGET} (goal ${BARE_RATIO_GOAL})`, met(ratio >= BARE_RATIO_TARGET)]);
  }
  const ratioRows = RATIO_TARGETS.flatMap(([byId, b64, want]) => {
    const x = results.find((r) => r.id === byId);
    const y = results.find((r) => r.id === b64);
    if (!x || !y) return [];
    const ratio = x.rps / y.rps;
    if (ratio < want) missed.push(`http (${byId})/(${b64}): ${fmt(ratio, 2)}x the requests/s (target ≥ ${want}x)`);
    return [[`(${byId}) by id / (${b64}) base64`, fmt(ratio, 2), `≥ ${want}`, met(ratio >= want)]];
  });
  const ahead = await prefetchComparison(options, options.quick ? 2 : 4, options.quick ? 2 : 4);
  if (ahead.problem) problems.push(ahead.problem);
  const cold = await coldFirstRun(options);
  if (cold.problem) problems.push(cold.problem);
  if (cold.row && !cold.ok) missed.push(`http cold 1 MiB: ${cold.row[3]} ms (target < 300 ms)`);
  const markdown = [
    '## HTTP throughput and latency',
    '',
    `autocannon, ${CONNECTIONS} connections, no pipelining, 127.0.0.1; each scenario ${warmS} s warm-up, then ${rounds} rounds of ${roundS} s, ` +
      'the scenarios interleaved round by round (order rotating) with every server up at once; each row is the median round. ' +
      'Servers are child processes with their default configuration (the service logs one line per execution to /dev/null). ' +
      'Latency percentiles over every response of a round. "event loop µs/req": CPU time of the server\'s main thread per response ' +
      '(steadier than requests/s on a shared machine). CPU columns in % of one core (both cores = 200 %): the server (all its threads), ' +
      'the load generator (this process), and the rest of the machine meanwhile: other processes (a busy machine skews the numbers) and ' +
      'kernel work charged to neither; "irq" is the machine\'s interrupt/softirq time, mostly loopback TCP.',
    '',
    table(['scenario', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'req/s vs (a)', 'server CPU', 'event loop µs/req', 'load-gen CPU', 'other CPU', 'target', 'result'], rows),
    ...(ratios.length ? ['', ...ratios.map((s) => `- ratio ${s}`)] : []),
    ...skipped.map((s) => `- ${s}`),
    ...(bareRatioRows.length ? ['', table(['execute by id vs a bare Fastify route', 'req/s ratio', 'target', 'result'], bareRatioRows)] : []),
    ...(ratioRows.length ? ['', table(['by id vs base64 (same module)', 'req/s ratio', 'target', 'result'], ratioRows)] : []),
    ...(ahead.rows
      ? [
          '',
          `What handing each runner thread its next run ahead buys (src/worker/run-pool.ts): (c) on two servers alive at once, the default one and one with WASMBOX_RUN_PREFETCH=0 (a thread is handed a run only when it is free), ${ahead.rounds} rounds of ${ahead.seconds} s each, alternating which goes first; medians of the rounds.`,
          '',
          table(['server', 'req/s', 'p50 ms', 'p99 ms', 'req/s vs prefetch 0', 'p99 vs prefetch 0'], ahead.rows),
        ]
      : []),
    ...(cold.row
      ? [
          '',
          'Cold first run of a 1 MiB module through a fresh server, sent as soon as GET /readyz answers 200 (which waits for the preparation threads\' warm-up): POST /modules (application/wasm: upload, validate, instrument, compile, store), then the first POST /execute by id (instantiate, run). Wall times from this client, in ms.',
          '',
          table(['module', 'POST /modules', 'first run by id', 'total', 'server prepareNs (ms)', 'target', 'result'], [cold.row]),
        ]
      : []),
    ...(problems.length ? ['', ...problems.map((s) => `**PROBLEM** ${s}`)] : []),
  ].join('\n');
  return { markdown, data: { connections: CONNECTIONS, warmS, rounds, roundS, durationS, scenarios: results, skipped, prefetch: ahead.data ?? null }, ok: problems.length === 0, problems, missed };
}
