// Differential test of the metering transform on generated modules: binaryen's translate-to-fuzz
// (`wasm-opt -ttf`) turns seeded random bytes into valid modules using the features V8 supports
// (MVP, bulk memory, sign extension, saturating float-to-int, multi-value, mutable globals). Each
// module runs twice in-process, unmetered (the original) and metered (the instrument() output with
// a budget it cannot exhaust); every exported function is called with fixed arguments, in the same
// order, and the two transcripts (results, trap classes, calls to the imported logging functions),
// the exported globals and the final memory contents must be identical.

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instrument } from '../dist/src/metering/instrument.js';
import { Guest } from '../dist/src/worker/guest.js';
import { prng } from '../dist/src/wasm/synthetic.js';

const run = promisify(execFile);
const GENERATOR = fileURLToPath(new URL('./helpers/ttf-generate.cjs', import.meta.url));
const WASM_OPT = fileURLToPath(new URL('../node_modules/binaryen/bin/wasm-opt', import.meta.url));
const FEATURES = [
  '--mvp-features',
  '--enable-bulk-memory',
  '--enable-sign-ext',
  '--enable-nontrapping-float-to-int',
  '--enable-multivalue',
  '--enable-mutable-globals',
];
const MODULES = 40;
const BUDGET = 10n ** 15n;
const MEMORY_EXPORT = '__differential_memory';


function randomBytes(seed: number): Uint8Array {
  const next = prng(seed);
  const size = 1024 + Math.floor(next() * 7 * 1024);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor(next() * 256);
  return out;
}

// --- A minimal section walker: adds an export of memory 0 to the original, so its memory can be
// compared (the generated modules define a memory but do not export it). Semantics are unchanged.

function readU32(b: Uint8Array, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = b[pos++]!;
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [result >>> 0, pos];
    shift += 7;
  }
}

function u32(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
}

function withMemoryExport(bytes: Uint8Array): Uint8Array {
  const entry = [...u32(MEMORY_EXPORT.length), ...Buffer.from(MEMORY_EXPORT), 0x02, 0x00];
  const out: number[] = [...bytes.subarray(0, 8)];
  let pos = 8;
  let done = false;
  const order = [0, 1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11]; // canonical section order (tag after memory)
  const rank = (id: number): number => order.indexOf(id);
  while (pos < bytes.length) {
    const id = bytes[pos]!;
    const [size, start] = readU32(bytes, pos + 1);
    const end = start + size;
    if (!done && id !== 0 && rank(id) > rank(7)) {
      out.push(0x07, ...u32(1 + entry.length), 1, ...entry); // no export section yet: add one
      done = true;
    }
    if (id === 7) {
      const [count, rest] = readU32(bytes, start);
      const content = [...u32(count + 1), ...bytes.subarray(rest, end), ...entry];
      out.push(0x07, ...u32(content.length), ...content);
      done = true;
    } else {
      out.push(...bytes.subarray(pos, end));
    }
    pos = end;
  }
  if (!done) out.push(0x07, ...u32(1 + entry.length), 1, ...entry);
  return Uint8Array.from(out);
}

// --- Running one module and writing down everything observable.

type Transcript = Array<Record<string, unknown>>;

/** A JSON-safe rendering that keeps what equality must see: -0, NaN, bigints. */
function show(v: unknown): unknown {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : Number.isNaN(v) ? 'NaN' : v;
  if (Array.isArray(v)) return v.map(show);
  return v;
}

function trapClass(err: unknown): string {
  if (err instanceof Error) return `${err.constructor.name}: ${err.message}`;
  return `thrown ${String(err)}`;
}

function argsFor(params: string[], set: number): unknown[] {
  const ints = [0, 7, -3];
  const floats = [0, 1.5, -2.25];
  return params.map((p, i) => {
    const k = (set + i) % 3;
    if (p === 'i32') return ints[k];
    if (p === 'i64') return BigInt(ints[k]!) * 1_000_000_007n;
    return set === 0 ? 0 : floats[k];
  });
}

interface FuncInfo {
  name: string;
  params: string[];
}

/** Parameter types of every exported function, from the type and function sections. */
function exportedFunctions(bytes: Uint8Array): FuncInfo[] {
  const VAL: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref' };
  const types: string[][] = [];
  const funcTypes: number[] = [];
  const exports: Array<[string, number]> = [];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos]!;
    const [size, start] = readU32(bytes, pos + 1);
    let p = start;
    const next = (): number => {
      const [v, q] = readU32(bytes, p);
      p = q;
      return v;
    };
    if (id === 1) {
      const n = next();
      for (let i = 0; i < n; i++) {
        p++; // 0x60
        const params = Array.from({ length: next() }, () => VAL[bytes[p++]!]!);
        const results = next();
        p += results; // one byte per numeric result type
        types.push(params);
      }
    } else if (id === 2) {
      const n = next();
      for (let i = 0; i < n; i++) {
        const moduleLen = next();
        p += moduleLen;
        const fieldLen = next();
        p += fieldLen;
        const kind = bytes[p++]!;
        if (kind !== 0) throw new Error(`test bug: only function imports are expected, got kind ${kind}`);
        funcTypes.push(next());
      }
    } else if (id === 3) {
      const n = next();
      for (let i = 0; i < n; i++) funcTypes.push(next());
    } else if (id === 7) {
      const n = next();
      for (let i = 0; i < n; i++) {
        const len = next();
        const name = Buffer.from(bytes.subarray(p, p + len)).toString('utf8');
        p += len;
        const kind = bytes[p++]!;
        const index = next();
        if (kind === 0) exports.push([name, index]);
      }
    }
    pos = start + size;
  }
  return exports.map(([name, index]) => ({ name, params: types[funcTypes[index]!]! }));
}

interface Run {
  transcript: Transcript;
  memory: Uint8Array | null;
  globals: Record<string, unknown>;
  fuelLeft: bigint | null;
  /** Metered: the account after instantiation and after each call (returned or trapped). */
  fuel: bigint[];
}

function execute(bytes: Uint8Array, funcs: FuncInfo[], metered: boolean, elideWrites = true): Run {
  const transcript: Transcript = [];
  const fuel: bigint[] = [];
  let log: unknown[] = [];
  let instance: WebAssembly.Instance | null = null;
  const funcExports = funcs.map((f) => f.name);
  const callExport = (index: number): unknown => {
    const name = funcExports[index];
    if (name === undefined || !instance) throw new Error(`call-export: no export ${index}`);
    const f = funcs[index]!;
    return (instance.exports[name] as (...a: unknown[]) => unknown)(...argsFor(f.params, 0));
  };
  const support: Record<string, (...a: any[]) => unknown> = {
    'log-i32': (v: number) => void log.push(['i32', v]),
    'log-i64': (v: bigint) => void log.push(['i64', show(v)]),
    'log-f32': (v: number) => void log.push(['f32', show(v)]),
    'log-f64': (v: number) => void log.push(['f64', show(v)]),
    sleep: (_ms: number, id: number) => id,
    'call-export': (index: number) => void callExport(index),
    'call-export-catch': (index: number) => {
      try {
        callExport(index);
        return 0;
      } catch {
        return 1;
      }
    },
  };
  const imports: WebAssembly.Imports = { 'fuzzing-support': support };

  let guest: Guest | null = null;
  try {
    if (metered) {
      // The runner's own guest code creates the memory, tables and hidden globals.
      const res = instrument(bytes, { maxTableElements: 100_000, elideWrites });
      const created = Guest.create({ module: new WebAssembly.Module(res.bytes), layout: res.layout, fuelLimit: BUDGET, memoryLimitPages: 65_536, imports });
      if (!(created instanceof Guest)) throw new Error(`the guest could not be created: ${created.message}`);
      const refused = created.instantiate();
      if (refused) throw created.instantiationError;
      guest = created;
      instance = created.instance!;
      created.call(null, []);
      fuel.push(created.consumed());
    } else {
      instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), imports);
    }
    transcript.push({ step: 'instantiate', log });
  } catch (err) {
    transcript.push({ step: 'instantiate', trap: trapClass(err), log });
    return { transcript, memory: null, globals: {}, fuelLeft: null, fuel };
  }

  for (const f of funcs) {
    for (const set of [0, 1]) {
      log = [];
      const args = argsFor(f.params, set);
      try {
        const result = (instance.exports[f.name] as (...a: unknown[]) => unknown)(...args);
        transcript.push({ call: f.name, args: show(args), result: show(result), log });
      } catch (err) {
        transcript.push({ call: f.name, args: show(args), trap: trapClass(err), log });
      }
      if (guest) fuel.push(guest.consumed());
    }
  }

  const globals: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(instance.exports)) {
    if (value instanceof WebAssembly.Global) {
      try {
        globals[name] = show(value.value);
      } catch {
        globals[name] = 'unreadable';
      }
    }
  }
  const mem = guest ? guest.memory : (instance.exports[MEMORY_EXPORT] as WebAssembly.Memory | undefined) ?? null;
  const fuelLeft = guest ? BUDGET - guest.consumed() : null;
  return { transcript, memory: mem ? new Uint8Array(mem.buffer.slice(0)) : null, globals, fuelLeft, fuel };
}

// --- Generation (once, in parallel) and the tests.

interface Generated {
  seed: number;
  bytes: Uint8Array;
}

const generated: Generated[] = [];
let dir = '';

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wasmbox-differential-'));
  const seeds = Array.from({ length: MODULES }, (_, i) => 1000 + i * 7919);
  const jobs: Array<[string, string]> = [];
  for (const seed of seeds) {
    const input = path.join(dir, `${seed}.bin`);
    await writeFile(input, randomBytes(seed));
    jobs.push([input, path.join(dir, `${seed}.wasm`)]);
  }
  // One process runs wasm-opt's main for every module (a process per module costs ~0.3-1 s each).
  await run(process.execPath, [GENERATOR, WASM_OPT, JSON.stringify({ features: FEATURES, jobs })], { timeout: 60_000 });
  for (const [i, seed] of seeds.entries()) generated.push({ seed, bytes: new Uint8Array(await readFile(jobs[i]![1])) });
}, 90_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('differential: metered and unmetered runs of generated modules agree', () => {
  it(`binaryen generated ${MODULES} valid modules that V8 accepts`, () => {
    expect(generated).toHaveLength(MODULES);
    for (const g of generated) expect(WebAssembly.validate(g.bytes), `seed ${g.seed}`).toBe(true);
  });

  it('every generated module instruments into a module V8 accepts, importing what the original did plus the service\'s "wasmbox" imports, and exporting exactly what it did', () => {
    for (const g of generated) {
      const res = instrument(g.bytes, { maxTableElements: 100_000 });
      expect(WebAssembly.validate(res.bytes), `seed ${g.seed}`).toBe(true);
      const before = WebAssembly.Module.imports(new WebAssembly.Module(g.bytes));
      const after = WebAssembly.Module.imports(new WebAssembly.Module(res.bytes));
      // Only the service's own "wasmbox" imports are added, after the module's own.
      expect(after.slice(0, before.length), `seed ${g.seed}`).toEqual(before);
      expect(after.slice(before.length).every((i) => i.module === 'wasmbox'), `seed ${g.seed}`).toBe(true);
      expect(WebAssembly.Module.exports(new WebAssembly.Module(res.bytes)), `seed ${g.seed}`).toEqual(WebAssembly.Module.exports(new WebAssembly.Module(g.bytes)));
    }
  });

  it('every export returns or traps identically, logs identically, and leaves identical globals and memory', () => {
    let calls = 0;
    let traps = 0;
    for (const g of generated) {
      const original = withMemoryExport(g.bytes);
      const funcs = exportedFunctions(g.bytes);
      const plain = execute(original, funcs, false);
      const metered = execute(g.bytes, funcs, true);
      const where = `seed ${g.seed}`;
      expect(metered.transcript, where).toEqual(plain.transcript);
      expect(metered.globals, where).toEqual(plain.globals);
      if (plain.memory || metered.memory) {
        expect(metered.memory?.length, where).toBe(plain.memory?.length);
        expect(Buffer.compare(Buffer.from(metered.memory!), Buffer.from(plain.memory!)), `${where}: memory differs`).toBe(0);
      }
      // the budget was never in reach
      if (metered.fuelLeft !== null) expect(metered.fuelLeft > 0n, where).toBe(true);
      calls += plain.transcript.length;
      traps += plain.transcript.filter((t) => 'trap' in t).length;
    }
    // the generated code must actually exercise something: many calls, some of them trapping
    expect(calls).toBeGreaterThan(MODULES * 4);
    expect(traps).toBeGreaterThan(0);
    expect(traps).toBeLessThan(calls);
  });

  it('leaving writes of the count out changes no account: after every call, returned or trapped, the fuel is what it is with every write kept', () => {
    let trapped = 0;
    for (const g of generated) {
      const funcs = exportedFunctions(g.bytes);
      const elided = execute(g.bytes, funcs, true);
      const kept = execute(g.bytes, funcs, true, false);
      const where = `seed ${g.seed}`;
      expect(elided.transcript, where).toEqual(kept.transcript);
      expect(elided.fuel.length, where).toBe(kept.fuel.length);
      elided.fuel.forEach((f, i) => expect(f, `${where}, after step ${i}: ${JSON.stringify(elided.transcript[i])?.slice(0, 120)}`).toBe(kept.fuel[i]));
      trapped += elided.transcript.filter((t) => 'trap' in t).length;
    }
    expect(trapped).toBeGreaterThan(0);
  });
});
