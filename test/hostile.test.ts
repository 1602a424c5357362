// Hostile guests against one real server: each must end in a clean, documented outcome (200 with
// fuel_exhausted, timeout, stack_overflow, trap, or a 4xx refusal), never a 5xx, and afterwards the
// server must still answer ordinary requests correctly and promptly. Big modules are generated.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnServer } from './helpers/child-server.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';
import { leb } from './helpers/leb.js';

const MIB = 1_048_576;
const FUEL_MAX = 10_000_000_000;

let server: TestServer;
/** Every status this file received, to prove at the end that none was a 5xx. */
const statuses: Array<{ what: string; status: number }> = [];

beforeAll(async () => {
  // A generous preparation limit: modules at engine limits (100,000 functions) take seconds to
  // prepare, and a loaded CI machine must not turn that into module_too_complex.
  server = await startServer({ WASMBOX_FUEL_MAX: String(FUEL_MAX), WASMBOX_TIMEOUT_MS_MAX: '10000', WASMBOX_PREPARE_TIMEOUT_MS: '30000' });
});
afterAll(async () => {
  await server?.close();
});

async function exec(what: string, module: string, fn: string, args: unknown[] = [], limits?: Record<string, number>) {
  const res = await server.execute({ module, function: fn, args, ...(limits && { limits }) });
  statuses.push({ what, status: res.status });
  expect(res.status, `${what}: ${JSON.stringify(res.body).slice(0, 500)}`).toBeLessThan(500);
  return res;
}


/** Signed LEB128 of an i32. */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
}

/** A module of exported functions of type () -> i32 with no locals; `body` is the code after the
 *  local declarations, ending with its final `end`. With `start`, a start function of type
 *  () -> () (`i32.const 1 drop`: 2 fuel with its entry) is added after them, not exported. */
function moduleOf(funcs: Array<{ name: string; body: number[] }>, { start = false } = {}): Uint8Array {
  const vec = (items: number[][]): number[] => [...leb(items.length), ...items.flat()];
  const section = (id: number, content: number[]): number[] => [id, ...leb(content.length), ...content];
  const name = (s: string): number[] => [...leb(s.length), ...Buffer.from(s)];
  const bodies = funcs.map((f) => [0x00, ...f.body]);
  if (start) bodies.push([0x00, 0x41, 0x01, 0x1a, 0x0b]);
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, 0x00, 0x01, 0x7f], [0x60, 0x00, 0x00]])),
    ...section(3, vec([...funcs.map(() => [0x00]), ...(start ? [[0x01]] : [])])),
    ...section(7, vec(funcs.map((f, i) => [...name(f.name), 0x00, ...leb(i)]))),
    ...(start ? section(8, leb(funcs.length)) : []),
    ...section(10, vec(bodies.map((code) => [...leb(code.length), ...code]))),
  ];
  return Uint8Array.from(bytes);
}

const ADD = b64(wat('(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))'));

describe('runaway loops', () => {
  const SPIN = b64(wat('(module (func (export "spin") (loop $l (br $l))))'));

  it('an infinite loop with low fuel ends in fuel_exhausted with fuelConsumed == fuelLimit', async () => {
    const res = await exec('spin, low fuel', SPIN, 'spin', [], { fuel: 10_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
    expect(res.body.telemetry).toMatchObject({ fuelConsumed: 10_000, fuelLimit: 10_000 });
  });

  it('an infinite loop in the start function ends in fuel_exhausted before the export runs', async () => {
    const m = b64(wat('(module (func $s (loop $l (br $l))) (start $s) (func (export "f") (result i32) (i32.const 1)))'));
    const res = await exec('spin in start', m, 'f', [], { fuel: 10_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
    expect(res.body.results).toBeUndefined();
  });

  it('an infinite loop with a huge budget is stopped at timeoutMs: outcome timeout', async () => {
    const res = await exec('spin, huge fuel', SPIN, 'spin', [], { fuel: FUEL_MAX, timeoutMs: 200 });
    expect(res.body.outcome).toBe('timeout');
    // the deadline stopped it (the budget would have lasted far longer), whatever the machine's load
    expect(res.body.telemetry.durationNs).toBeGreaterThanOrEqual(200e6);
  });

  it('an infinite loop in the start function with a huge budget is stopped at timeoutMs', async () => {
    const m = b64(wat('(module (func $s (loop $l (br $l))) (start $s) (func (export "g") (result i32) (i32.const 2)))'));
    const res = await exec('spin in start, huge fuel', m, 'g', [], { fuel: FUEL_MAX, timeoutMs: 200 });
    expect(res.body.outcome).toBe('timeout');
  });

  it('a loop of call_indirect ends in fuel_exhausted', async () => {
    const m = b64(
      wat(`(module (type $t (func)) (table funcref (elem $nop))
        (func $nop)
        (func (export "f") (loop $l (call_indirect (type $t) (i32.const 0)) (br $l))))`),
    );
    const res = await exec('call_indirect loop', m, 'f', [], { fuel: 100_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
    expect(res.body.telemetry.fuelConsumed).toBe(100_000);
  });

  it('a loop that throws and catches its own exception forever ends in fuel_exhausted', async () => {
    const m = b64(wat('(module (tag $e) (func (export "f") (loop $l (try (do (throw $e)) (catch_all)) (br $l))))'));
    const res = await exec('throw/catch loop', m, 'f', [], { fuel: 100_000, timeoutMs: 10_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
  });
});

describe('runaway recursion', () => {
  const RECURSE = b64(
    wat(`(module
      (func $r (export "r") (call $r))
      (func $fat (export "fat") (param i64) (local i64 i64 i64 i64 i64 i64 i64 i64)
        (call $fat (i64.add (local.get 0) (i64.const 1)))))`),
  );

  it('with low fuel ends in fuel_exhausted', async () => {
    const res = await exec('recursion, low fuel', RECURSE, 'r', [], { fuel: 10_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
    expect(res.body.telemetry.fuelConsumed).toBe(10_000);
  });

  it('without a practical fuel limit ends in stack_overflow', async () => {
    for (const fn of ['r', 'fat']) {
      const args = fn === 'fat' ? ['0'] : [];
      const res = await exec(`recursion ${fn}, huge fuel`, RECURSE, fn, args, { fuel: FUEL_MAX, timeoutMs: 10_000 });
      expect(res.body.outcome).toBe('stack_overflow');
      expect(res.body.trap).toMatchObject({ kind: 'stack_overflow' });
      expect(res.body.telemetry.fuelConsumed).toBeLessThanOrEqual(FUEL_MAX);
    }
  });
});

describe('runaway memory', () => {
  it('memory.grow forever ends cleanly: fuel_exhausted with the memory at its limit', async () => {
    const m = b64(wat('(module (memory 1) (func (export "f") (loop $l (drop (memory.grow (i32.const 1))) (br $l))))'));
    const res = await exec('grow forever', m, 'f', [], { fuel: 1_000_000, memoryMb: 16, timeoutMs: 10_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
    expect(res.body.telemetry.memoryPeakBytes).toBe(16 * MIB);
  });

  it('memory.grow of a huge delta forever ends cleanly', async () => {
    const m = b64(wat('(module (memory 1) (func (export "f") (loop $l (drop (memory.grow (i32.const 0x7fffffff))) (br $l))))'));
    const res = await exec('huge grow forever', m, 'f', [], { fuel: 1_000_000, timeoutMs: 10_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
    expect(res.body.telemetry.memoryPeakBytes).toBe(65_536);
  });

  it('a loop filling 16 MiB per iteration ends in fuel_exhausted on 10^6 fuel, quickly (not timeout)', async () => {
    const m = b64(wat('(module (memory 256) (func (export "f") (loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 0x1000000)) (br $l))))'));
    const res = await exec('fill forever', m, 'f', [], { fuel: 1_000_000, memoryMb: 16, timeoutMs: 10_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
    expect(res.body.telemetry.fuelConsumed).toBe(1_000_000);
    // fuel_exhausted rather than timeout at 10 s: fuel, not the clock, stopped it
  });

  it('a loop copying 8 MiB per iteration ends in fuel_exhausted on 10^6 fuel, quickly', async () => {
    const m = b64(wat('(module (memory 256) (func (export "f") (loop $l (memory.copy (i32.const 0) (i32.const 0x800000) (i32.const 0x800000)) (br $l))))'));
    const res = await exec('copy forever', m, 'f', [], { fuel: 1_000_000, memoryMb: 16, timeoutMs: 10_000 });
    // fuel_exhausted rather than timeout at 10 s: fuel, not the clock, stopped it
    expect(res.body.outcome).toBe('fuel_exhausted');
  });

  it('a loop of small in-bounds fills runs until its fuel is gone, charged per byte', async () => {
    const m = b64(wat('(module (memory 1) (func (export "f") (loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 1000)) (br $l))))'));
    const res = await exec('small fills forever', m, 'f', [], { fuel: 1_000_000, timeoutMs: 10_000 });
    expect(res.body.outcome).toBe('fuel_exhausted');
  });

  it('an out-of-bounds fill of 4 GiB traps at once (memory_out_of_bounds), not fuel_exhausted', async () => {
    const m = b64(wat('(module (memory 1) (func (export "f") (memory.fill (i32.const 1) (i32.const 7) (i32.const -1))))'));
    const res = await exec('4 GiB fill', m, 'f', [], { fuel: 1_000_000 });
    expect(res.body.outcome).toBe('trap');
    expect(res.body.trap).toMatchObject({ kind: 'memory_out_of_bounds' });
    expect(res.body.telemetry.fuelConsumed).toBe(5);
  });

  it('an active data segment out of bounds traps at instantiation', async () => {
    const m = b64(wat('(module (memory 1) (data (i32.const 65535) "ab") (func (export "f") (result i32) (i32.const 1)))'));
    const res = await exec('data segment out of bounds', m, 'f');
    expect(res.body.outcome).toBe('trap');
    expect(res.body.trap).toMatchObject({ kind: 'memory_out_of_bounds' });
    expect(res.body.results).toBeUndefined();
    expect(res.body.telemetry.fuelConsumed).toBe(0);
  });

  it('an active element segment out of bounds traps at instantiation', async () => {
    const m = b64(wat('(module (table 1 funcref) (elem (i32.const 1) $f) (func $f (export "f") (result i32) (i32.const 1)))'));
    const res = await exec('elem segment out of bounds', m, 'f');
    expect(res.body.outcome).toBe('trap');
    expect(res.body.trap).toMatchObject({ kind: 'table_out_of_bounds' });
  });
});

describe('runaway tables', () => {
  it('table.grow by 0xffffffff returns -1', async () => {
    const m = b64(wat('(module (table $t 0 funcref) (func (export "f") (result i32) (table.grow $t (ref.null func) (i32.const 0xffffffff))))'));
    const res = await exec('table.grow 0xffffffff', m, 'f', [], { fuel: 1_000_000 });
    expect(res.body).toMatchObject({ outcome: 'ok', results: [-1] });
  });

  it('table.grow forever ends cleanly at the table cap', async () => {
    const m = b64(
      wat(`(module (table $t 0 funcref)
        (func (export "f") (result i32)
          (loop $l (br_if $l (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))))
          (table.size $t)))`),
    );
    const res = await exec('table.grow forever', m, 'f', [], { timeoutMs: 10_000 });
    expect(res.body).toMatchObject({ outcome: 'ok', results: [server.config.maxTableElements] });
  });
});

describe('big and deep modules', () => {
  const brTable = (n: number): string =>
    b64(
      wat(`(module (func (export "f") (param i32) (result i32)
        (block (block (br_table ${Array.from({ length: n }, (_, i) => (i % 2 ? '0' : '1')).join(' ')} 0 (local.get 0))) (return (i32.const 10)))
        (i32.const 20)))`),
    );

  it('a br_table with 100,000 targets is refused as invalid_module (over V8\'s br_table limit), not a 5xx', async () => {
    const res = await server.execute({ module: brTable(100_000), function: 'f', args: [0] });
    statuses.push({ what: 'br_table 100k', status: res.status });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_module');
    expect(res.body.error.message).toMatch(/br_table/);
  });

  it('a br_table with 65,000 targets runs, charged 1 like any br_table', async () => {
    const m = brTable(65_000);
    for (const [arg, result] of [
      [0, 20],
      [1, 10],
      [64_999, 10],
      [5_000_000, 10],
    ] as const) {
      const res = await exec(`br_table ${arg}`, m, 'f', [arg]);
      expect(res.body).toMatchObject({ outcome: 'ok', results: [result] });
      // entry, local.get, br_table, const
      expect(res.body.telemetry.fuelConsumed).toBe(4);
    }
  });

  it('10,000 nested blocks and 10,000 nested loops run', async () => {
    // Built as a binary: wabt's text parser takes minutes on this nesting.
    const N = 10_000;
    const blocks = [...Array(N).fill([0x02, 0x40]).flat(), 0x0c, ...leb(N / 2), ...Array(N).fill(0x0b), 0x41, 0x01, 0x0b];
    const loops = [...Array(N).fill([0x03, 0x40]).flat(), ...Array(N).fill(0x0b), 0x41, 0x02, 0x0b];
    const m = b64(moduleOf([{ name: 'blocks', body: blocks }, { name: 'loops', body: loops }]));
    const b = await exec('nested blocks', m, 'blocks');
    expect(b.body).toMatchObject({ outcome: 'ok', results: [1] });
    // entry, br, const
    expect(b.body.telemetry.fuelConsumed).toBe(3);
    const l = await exec('nested loops', m, 'loops');
    expect(l.body).toMatchObject({ outcome: 'ok', results: [2] });
    expect(l.body.telemetry.fuelConsumed).toBe(2);
  });

  it('a module of 20,000 functions, each calling the previous, runs with exact fuel', async () => {
    const N = 20_000;
    const funcs = [`(func $f0 (result i32) (i32.const 0))`];
    for (let i = 1; i < N; i++) funcs.push(`(func $f${i} (result i32) (i32.add (call $f${i - 1}) (i32.const 1)))`);
    const m = b64(wat(`(module ${funcs.join('\n')} (export "last" (func $f${N - 1})))`));
    const res = await exec('20,000 functions', m, 'last', [], { timeoutMs: 10_000 });
    expect(res.body).toMatchObject({ outcome: 'ok', results: [N - 1] });
    // $f0: entry, const = 2; every other: entry, call, const, add = 4
    expect(res.body.telemetry.fuelConsumed).toBe(2 + 4 * (N - 1));
  });

  it('a module of 30,000 exported functions is accepted and any of them can be called', async () => {
    const N = 30_000;
    const funcs = Array.from({ length: N }, (_, i) => `(func (export "e${i}") (result i32) (i32.const ${i}))`);
    const m = b64(wat(`(module ${funcs.join('\n')})`));
    const res = await exec('30,000 exports', m, `e${N - 1}`, [], { timeoutMs: 10_000 });
    expect(res.body).toMatchObject({ outcome: 'ok', results: [N - 1] });
    expect(res.body.telemetry.fuelConsumed).toBe(2);
  });

  it('a function of 200,000 straight-line instructions runs with exact fuel', async () => {
    const N = 100_000;
    const m = b64(wat(`(module (func (export "f") (result i32) (local i32) ${'(local.set 0 (i32.const 1))\n'.repeat(N)} (local.get 0)))`));
    const res = await exec('long function', m, 'f', [], { timeoutMs: 10_000 });
    expect(res.body).toMatchObject({ outcome: 'ok', results: [1] });
    expect(res.body.telemetry.fuelConsumed).toBe(1 + 2 * N + 1);
  });
});

describe('modules at engine limits', () => {
  /** V8's maximum number of exports: the service must not add any of its own. */
  const MAX_EXPORTS = 100_000;
  const exportsModule = (start: boolean): string =>
    b64(moduleOf(Array.from({ length: MAX_EXPORTS }, (_, i) => ({ name: `e${i}`, body: [0x41, ...sleb(i), 0x0b] })), { start }));

  it("a module with 100,000 exported functions (V8's maximum) runs ok by name: metering adds no exports", async () => {
    const m = exportsModule(false);
    for (const i of [0, 54_321, MAX_EXPORTS - 1]) {
      const res = await exec('100,000 exports', m, `e${i}`, [], { timeoutMs: 10_000 });
      expect(res.body).toMatchObject({ outcome: 'ok', results: [i] });
      expect(res.body.telemetry.fuelConsumed).toBe(2);
    }
  });

  it('a module with 100,000 exports and a start function runs ok, the start function run and charged first', async () => {
    const res = await exec('100,000 exports and start', exportsModule(true), `e${MAX_EXPORTS - 1}`, [], { timeoutMs: 10_000 });
    expect(res.body).toMatchObject({ outcome: 'ok', results: [MAX_EXPORTS - 1] });
    // start: entry + i32.const (drop is free); the export: entry + i32.const
    expect(res.body.telemetry.fuelConsumed).toBe(4);
  });

  it("a function at V8's local-count limit is refused with a 4xx when metering cannot add its scratch locals, never a 5xx", async () => {
    const m = b64(
      wat(`(module (memory 1)
        (func (export "f") (result i32) (local ${'i32 '.repeat(49_999)})
          (memory.fill (i32.const 0) (i32.const 0) (i32.const 10)) (i32.const 1)))`),
    );
    const res = await server.execute({ module: m, function: 'f' });
    statuses.push({ what: '50,000 locals', status: res.status });
    if (res.status === 200) {
      expect(res.body).toMatchObject({ outcome: 'ok', results: [1] });
    } else {
      expect(res.status).toBe(422);
      expect(res.body.error.code).toBe('module_too_complex');
    }
  });
});

describe('metering cannot be made to blow up the code', () => {
  /** One function whose body is `count` empty loops in a row, written directly. */
  function emptyLoops(count: number): Uint8Array {
    const body = [0x00, ...Array.from({ length: count }, () => [0x03, 0x40, 0x0b]).flat(), 0x0b];
    const section = (id: number, content: number[]): number[] => [id, ...leb(content.length), ...content];
    return Uint8Array.from([
      0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
      ...section(1, [1, 0x60, 0, 0]),
      ...section(3, [1, 0]),
      ...section(7, [1, 1, 0x66, 0, 0]),
      ...section(10, [1, ...leb(body.length), ...body]),
    ]);
  }

  it('a module of nothing but empty loops, which metering would grow about twelvefold, is 422 module_too_complex saying why', async () => {
    const res = await server.execute({ module: b64(emptyLoops(1_000_000)), function: 'f' });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.error.code).toBe('module_too_complex');
    expect(res.body.error.message).toContain('times larger');
  });

  it('a few empty loops are fine (the cap is relative, with slack for small modules)', async () => {
    const res = await server.execute({ module: b64(emptyLoops(1000)), function: 'f' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.outcome).toBe('ok');
  });
});

describe('the engine running out of room is a refusal or an outcome, never a 5xx', () => {
  it('a module whose preparation exhausts the preparation worker\'s heap is refused 422 module_too_complex, every time, and the next module prepares', async () => {
    // 1,000,000 empty functions (V8's maximum): 4 MB of bytes, but a parsed body and a type entry
    // each on the preparation worker's heap, far more than 32 MiB.
    const N = 1_000_000;
    const section = (id: number, content: number[]): number[] => [id, ...leb(content.length), ...content];
    const funcs = [...leb(N), ...new Array<number>(N).fill(0)];
    const code = [...leb(N)];
    for (let i = 0; i < N; i++) code.push(2, 0x00, 0x0b);
    const big = Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...section(1, [1, 0x60, 0, 0]), ...section(3, funcs), ...section(7, [1, 1, 0x66, 0, 0]), ...section(10, code)]);
    const small = await startServer({ WASMBOX_PREPARE_HEAP_MB: '32' });
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const res = await small.execute({ module: b64(big), function: 'f', limits: { timeoutMs: 10_000 } });
        statuses.push({ what: 'preparation out of heap', status: res.status });
        expect(res.status, JSON.stringify(res.body)).toBe(422);
        expect(res.body.error.code).toBe('module_too_complex');
        expect(res.body.error.message).toMatch(/preparation heap of 32 MiB/);
      }
      // The worker that died was replaced: preparation still works.
      const ok = await small.execute({ module: ADD, function: 'add', args: [2, 3] });
      expect(ok.body).toMatchObject({ outcome: 'ok', results: [5] });
    } finally {
      await small.close();
    }
  }, 60_000);

  it('when the engine cannot allocate a linear memory the run ends in memory_limit_exceeded saying so; runs without one still work', async (ctx) => {
    // Each wasm memory reserves address space (about 10 GB on V8 11): under an 8 GB cap the
    // server runs but no memory can be created (ENGINE-NOTES). How much V8 reserves differs by
    // version: where the server itself cannot start under the cap (Node 22's own HTTP parser is
    // wasm), or where the memory still fits, the condition cannot be produced this way and the
    // test says so instead of passing.
    let child: Awaited<ReturnType<typeof spawnServer>>;
    try {
      child = await spawnServer({ WASMBOX_WORKERS: '1' }, { virtualMemoryKb: 8_000_000 });
    } catch (err) {
      ctx.skip(`this engine cannot start the server under an 8 GB address-space cap: ${String(err).slice(0, 120)}`);
      return;
    }
    try {
      const withMemory = await child.execute({ module: b64(wat('(module (memory 1) (func (export "f") (result i32) (i32.const 7)))')), function: 'f' });
      expect(withMemory.status, JSON.stringify(withMemory.body)).toBe(200);
      if (withMemory.body.outcome === 'ok') {
        ctx.skip('this engine reserves less address space per memory: the memory fits under the cap');
        return;
      }
      expect(withMemory.body).toMatchObject({ outcome: 'memory_limit_exceeded' });
      expect(withMemory.body.message).toMatch(/could not allocate the module's linear memory/);
      // A WASI program without a memory needs none from the engine either.
      const wasi = wat('(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32))) (func (export "_start") (call $exit (i32.const 3))))');
      const exited = await child.execute({ module: b64(wasi), wasi: {} });
      expect(exited.status, JSON.stringify(exited.body)).toBe(200);
      expect(exited.body).toMatchObject({ outcome: 'exited', exitCode: 3 });
      const add = await child.execute({ module: ADD, function: 'add', args: [2, 3] });
      expect(add.body).toMatchObject({ outcome: 'ok', results: [5] });
      expect(child.exited()).toBeNull();
    } finally {
      await child.close();
    }
  }, 60_000);
});

describe('after all of that', () => {
  it('the server still adds correctly and quickly: 20 concurrent adds succeed', async () => {
    const t0 = Date.now();
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => exec(`add ${i}`, ADD, 'add', [i, 1000])));
    all.forEach((res, i) => {
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ outcome: 'ok', results: [i + 1000] });
      expect(res.body.telemetry.fuelConsumed).toBe(4);
    });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('no request in this file got a 5xx', () => {
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.filter((s) => s.status >= 500)).toEqual([]);
  });
});
