// The resource limits end to end, through the real server on a real port: every outcome a limit
// can produce (ok with exact fuel, fuel_exhausted, memory_limit_exceeded, timeout), the limits'
// validation, the telemetry they report, the table cap, threads (shared memory, atomics, a wait
// that never ends), and the worker's engine heap.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildServer, spawnServer } from './helpers/child-server.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const MIB = 1_048_576;
const PAGE = 65_536;
const MAX_TABLE = 1000;
const MAX = { fuel: 1_000_000_000, memoryMb: 64, timeoutMs: 10_000 };
const DEFAULTS = { fuel: 5_000_000, memoryMb: 8, timeoutMs: 2_000 };

let server: TestServer;
beforeAll(async () => {
  server = await startServer({
    WASMBOX_MAX_TABLE_ELEMENTS: String(MAX_TABLE),
    WASMBOX_FUEL_DEFAULT: String(DEFAULTS.fuel),
    WASMBOX_FUEL_MAX: String(MAX.fuel),
    WASMBOX_MEMORY_MB_DEFAULT: String(DEFAULTS.memoryMb),
    WASMBOX_MEMORY_MB_MAX: String(MAX.memoryMb),
    WASMBOX_TIMEOUT_MS_DEFAULT: String(DEFAULTS.timeoutMs),
    WASMBOX_TIMEOUT_MS_MAX: String(MAX.timeoutMs),
  });
});
afterAll(async () => {
  await server?.close();
});

/** POST /execute; every answer in this file must be 200 or a 4xx, never a 5xx. */
async function run(module: string, fn: string, args: unknown[] = [], limits?: Record<string, unknown>) {
  const res = await server.execute({ module, function: fn, args, ...(limits && { limits }) });
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(500);
  return res;
}

async function ok(module: string, fn: string, args: unknown[] = [], limits?: Record<string, unknown>) {
  const res = await run(module, fn, args, limits);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body.outcome, JSON.stringify(res.body)).toBe('ok');
  return res.body;
}

const PROGRAM = b64(
  wat(`(module
    (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
    (func $sum (export "sum") (param $n i32) (result i32) (local $i i32) (local $s i32)
      (block $done
        (loop $l
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $s (i32.add (local.get $s) (local.get $i)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l)))
      (local.get $s))
    (func $fac (export "fac") (param i64) (result i64)
      (if (result i64) (i64.eqz (local.get 0))
        (then (i64.const 1))
        (else (i64.mul (local.get 0) (call $fac (i64.sub (local.get 0) (i64.const 1)))))))
    (func (export "spin") (loop $l (br $l))))`),
);
const sumCost = (n: number): number => 13 * n + 6;

describe('outcome ok: exact fuel', () => {
  it('reports fuelConsumed exactly: add costs 4, sum(n) 13n + 6, fac(n) 10n + 5', async () => {
    const add = await ok(PROGRAM, 'add', [5, 10]);
    expect(add.results).toEqual([15]);
    expect(add.telemetry.fuelConsumed).toBe(4);
    for (const n of [0, 7, 1000]) {
      const body = await ok(PROGRAM, 'sum', [n]);
      expect(body.telemetry.fuelConsumed).toBe(sumCost(n));
    }
    const fac = await ok(PROGRAM, 'fac', ['20']);
    expect(fac.results).toEqual(['2432902008176640000']);
    expect(fac.telemetry.fuelConsumed).toBe(205);
  });

  it('echoes the fuel limit asked for, or the server default', async () => {
    expect((await ok(PROGRAM, 'add', [1, 2], { fuel: 1234 })).telemetry.fuelLimit).toBe(1234);
    expect((await ok(PROGRAM, 'add', [1, 2])).telemetry.fuelLimit).toBe(DEFAULTS.fuel);
  });

  it('completes with a budget of exactly the fuel needed', async () => {
    const body = await ok(PROGRAM, 'sum', [100], { fuel: sumCost(100) });
    expect(body.results).toEqual([4950]);
    expect(body.telemetry).toMatchObject({ fuelConsumed: sumCost(100), fuelLimit: sumCost(100) });
  });
});

describe('outcome fuel_exhausted', () => {
  it('reports fuel_exhausted with fuelConsumed == fuelLimit when the budget is one short', async () => {
    const limit = sumCost(100) - 1;
    const res = await run(PROGRAM, 'sum', [100], { fuel: limit });
    expect(res.status).toBe(200);
    expect(res.body.outcome).toBe('fuel_exhausted');
    expect(res.body.results).toBeUndefined();
    expect(res.body.telemetry).toMatchObject({ fuelConsumed: limit, fuelLimit: limit });
  });

  it('stops an infinite loop at its budget, for budgets of 1 to a million', async () => {
    for (const fuel of [1, 2, 1000, 1_000_000]) {
      const res = await run(PROGRAM, 'spin', [], { fuel });
      expect(res.body.outcome).toBe('fuel_exhausted');
      expect(res.body.telemetry).toMatchObject({ fuelConsumed: fuel, fuelLimit: fuel });
    }
  });

  it('never reports more fuel than the limit, whatever the budget', async () => {
    for (const fuel of [1, 3, 4, 5, 50, 1305, 1306, 1307]) {
      const res = await run(PROGRAM, 'sum', [100], { fuel });
      expect(res.body.telemetry.fuelConsumed).toBeLessThanOrEqual(fuel);
      expect(res.body.outcome).toBe(fuel >= sumCost(100) ? 'ok' : 'fuel_exhausted');
    }
  });
});

describe('outcome memory_limit_exceeded and memory telemetry', () => {
  const GROW = b64(
    wat(`(module
      (memory 1)
      (func (export "grow") (param i32) (result i32 i32) (memory.grow (local.get 0)) (memory.size))
      (func (export "grow2") (param i32 i32) (result i32 i32 i32)
        (memory.grow (local.get 0)) (memory.grow (local.get 1)) (memory.size)))`),
  );

  it('reports memoryLimitBytes == memoryMb * 1048576, and the default when unset', async () => {
    for (const memoryMb of [1, 3, 17, MAX.memoryMb]) {
      const body = await ok(PROGRAM, 'add', [1, 1], { memoryMb });
      expect(body.telemetry.memoryLimitBytes).toBe(memoryMb * MIB);
    }
    expect((await ok(PROGRAM, 'add', [1, 1])).telemetry.memoryLimitBytes).toBe(DEFAULTS.memoryMb * MIB);
  });

  it('reports memoryPeakBytes 0 for a module without memory and the initial size for one that does not grow', async () => {
    expect((await ok(PROGRAM, 'add', [1, 1])).telemetry.memoryPeakBytes).toBe(0);
    const m = b64(wat('(module (memory 3) (func (export "f") (result i32) (memory.size)))'));
    const body = await ok(m, 'f');
    expect(body.results).toEqual([3]);
    expect(body.telemetry.memoryPeakBytes).toBe(3 * PAGE);
  });

  it('refuses to instantiate a module whose initial memory is over memoryMb: memory_limit_exceeded', async () => {
    const over = b64(wat('(module (memory 17) (func (export "f") (result i32) (i32.const 1)))'));
    const res = await run(over, 'f', [], { memoryMb: 1 });
    expect(res.status).toBe(200);
    expect(res.body.outcome).toBe('memory_limit_exceeded');
    expect(res.body.results).toBeUndefined();
    expect(res.body.telemetry.memoryLimitBytes).toBe(MIB);
    // exactly at the limit (16 pages = 1 MiB) it runs
    const at = b64(wat('(module (memory 16) (func (export "f") (result i32) (i32.const 1)))'));
    const body = await ok(at, 'f', [], { memoryMb: 1 });
    expect(body.telemetry.memoryPeakBytes).toBe(MIB);
  });

  it('a memory.grow past memoryMb returns -1 and leaves the size unchanged; up to it succeeds', async () => {
    const refused = await ok(GROW, 'grow', [16], { memoryMb: 1 });
    expect(refused.results).toEqual([-1, 1]);
    expect(refused.telemetry.memoryPeakBytes).toBe(PAGE);
    const fits = await ok(GROW, 'grow', [15], { memoryMb: 1 });
    expect(fits.results).toEqual([1, 16]);
    expect(fits.telemetry.memoryPeakBytes).toBe(MIB);
  });

  it('reports the peak: a grow to the limit then a refused one leaves memoryPeakBytes at the limit', async () => {
    const body = await ok(GROW, 'grow2', [7, 100], { memoryMb: 1 });
    expect(body.results).toEqual([1, -1, 8]);
    expect(body.telemetry.memoryPeakBytes).toBe(8 * PAGE);
    const full = await ok(GROW, 'grow2', [15, 1], { memoryMb: 1 });
    expect(full.results).toEqual([1, -1, 16]);
    expect(full.telemetry.memoryPeakBytes).toBe(MIB);
  });

  it("a grow past the module's own maximum returns -1 even under a larger memoryMb", async () => {
    const m = b64(wat('(module (memory 1 2) (func (export "f") (param i32) (result i32) (memory.grow (local.get 0))))'));
    expect((await ok(m, 'f', [2], { memoryMb: 64 })).results).toEqual([-1]);
    expect((await ok(m, 'f', [1], { memoryMb: 64 })).results).toEqual([1]);
  });

  it('a refused grow followed by a trap on the memory it asked for is memory_limit_exceeded', async () => {
    const m = b64(
      wat(`(module (memory 1)
        (func (export "f") (param i32) (result i32)
          (drop (memory.grow (local.get 0)))
          (i32.load (i32.mul (local.get 0) (i32.const 65536)))))`),
    );
    const res = await run(m, 'f', [20], { memoryMb: 1 });
    expect(res.body.outcome).toBe('memory_limit_exceeded');
    expect(res.body.telemetry.memoryPeakBytes).toBe(PAGE);
  });

  it('a refused memory.grow costs only its base fuel, even on a tiny budget', async () => {
    const m = b64(wat('(module (memory 1) (func (export "f") (param i32) (result i32) (memory.grow (local.get 0))))'));
    const body = await ok(m, 'f', [1000], { memoryMb: 1, fuel: 10 });
    expect(body.results).toEqual([-1]);
    expect(body.telemetry.fuelConsumed).toBe(3);
  });
});

describe('table limit (WASMBOX_MAX_TABLE_ELEMENTS)', () => {
  const TABLE = b64(
    wat(`(module (table $t 10 funcref)
      (func (export "grow") (param i32) (result i32 i32) (table.grow $t (ref.null func) (local.get 0)) (table.size $t)))`),
  );

  it(`table.grow up to ${MAX_TABLE} elements succeeds and beyond returns -1 with the size unchanged`, async () => {
    expect((await ok(TABLE, 'grow', [MAX_TABLE - 10])).results).toEqual([10, MAX_TABLE]);
    expect((await ok(TABLE, 'grow', [MAX_TABLE - 9])).results).toEqual([-1, 10]);
  });

  it('table.grow by 0xffffffff returns -1 and costs only its base fuel', async () => {
    const body = await ok(TABLE, 'grow', [0xffffffff], { fuel: 100 });
    expect(body.results).toEqual([-1, 10]);
    // entry 1 + ref.null, local.get 2 + table.grow 1 + table.size 1
    expect(body.telemetry.fuelConsumed).toBe(5);
  });

  it('a module whose table starts above the cap is refused before running, with a 4xx naming the cap', async () => {
    const big = b64(wat(`(module (table ${MAX_TABLE + 1} funcref) (func (export "f")))`));
    const res = await server.execute({ module: big, function: 'f' });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(res.body.error.message).toContain(String(MAX_TABLE));
  });
});

describe('limit_out_of_range', () => {
  const cases: Array<[string, number]> = [
    ['fuel', 0],
    ['fuel', -1],
    ['fuel', MAX.fuel + 1],
    ['memoryMb', 0],
    ['memoryMb', MAX.memoryMb + 1],
    ['timeoutMs', 0],
    ['timeoutMs', -100],
    ['timeoutMs', MAX.timeoutMs + 1],
  ];
  for (const [name, value] of cases) {
    it(`refuses limits.${name} = ${value} with 400 limit_out_of_range giving the maximum`, async () => {
      const res = await server.execute({ module: PROGRAM, function: 'add', args: [1, 2], limits: { [name]: value } });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('limit_out_of_range');
      expect(res.body.error.message).toContain(name);
      expect(res.body.error.message).toContain(String(MAX[name as keyof typeof MAX]));
    });
  }

  it('accepts every limit at exactly 1 and exactly the maximum', async () => {
    for (const name of ['fuel', 'memoryMb', 'timeoutMs'] as const) {
      for (const value of [1, MAX[name]]) {
        const res = await server.execute({ module: PROGRAM, function: 'add', args: [1, 2], limits: { [name]: value } });
        expect(res.status, `${name}=${value}: ${JSON.stringify(res.body)}`).toBe(200);
        // A 1 ms deadline covers instantiation too, so on a busy machine it may pass first.
        const allowed = name === 'timeoutMs' && value === 1 ? ['ok', 'timeout'] : ['ok', 'fuel_exhausted'];
        expect(allowed).toContain(res.body.outcome);
      }
    }
  });

  it('refuses a non-integer limit with a 400 naming the field (invalid_request, as openapi.yaml documents)', async () => {
    for (const name of ['fuel', 'memoryMb', 'timeoutMs']) {
      const res = await server.execute({ module: PROGRAM, function: 'add', args: [1, 2], limits: { [name]: 1.5 } });
      expect(res.status).toBe(400);
      expect(['invalid_request', 'limit_out_of_range']).toContain(res.body.error.code);
      expect(res.body.error.message).toContain(name);
    }
  });
});

describe('outcome timeout', () => {
  it('stops an infinite loop with a huge fuel budget at timeoutMs: outcome timeout, telemetry present', async () => {
    const res = await run(PROGRAM, 'spin', [], { fuel: MAX.fuel, timeoutMs: 200 });
    expect(res.body.outcome).toBe('timeout');
    expect(res.body.telemetry).toMatchObject({ fuelLimit: MAX.fuel, memoryLimitBytes: DEFAULTS.memoryMb * MIB });
    if (res.body.telemetry.fuelConsumed !== null) expect(res.body.telemetry.fuelConsumed).toBeLessThanOrEqual(MAX.fuel);
    // stopped by the deadline, not by running to the end of its budget
    expect(res.body.telemetry.durationNs).toBeGreaterThanOrEqual(200e6);
  });
});

describe('threads: shared memory and atomics', () => {
  const SHARED = b64(
    wat(`(module
      (memory 1 2 shared)
      (func (export "atomics") (result i32 i32 i32 i32)
        (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 5)))
        (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 6)))
        (i32.atomic.load (i32.const 0))
        (i32.atomic.rmw.cmpxchg (i32.const 0) (i32.const 11) (i32.const 42))
        (i32.atomic.load (i32.const 0))
        (memory.atomic.notify (i32.const 0) (i32.const 1)))
      (func (export "wait_not_equal") (result i32)
        (memory.atomic.wait32 (i32.const 0) (i32.const 1) (i64.const -1)))
      (func (export "wait_briefly") (result i32)
        (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const 1000000)))
      (func (export "wait_forever") (result i32)
        (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1)))
      (func (export "grow") (result i32 i32) (memory.grow (i32.const 1)) (memory.size)))`),
  );

  it('runs atomic read-modify-write, cmpxchg, load and notify on shared memory', async () => {
    const body = await ok(SHARED, 'atomics');
    // 11 after two adds; cmpxchg returns the old 11; then 42; notify wakes no one: 0
    expect(body.results).toEqual([11, 11, 42, 0]);
    expect(body.telemetry.memoryPeakBytes).toBe(PAGE);
  });

  it('memory.atomic.wait32 returns 1 ("not-equal") and 2 ("timed-out") as the spec says', async () => {
    expect((await ok(SHARED, 'wait_not_equal')).results).toEqual([1]);
    expect((await ok(SHARED, 'wait_briefly')).results).toEqual([2]);
  });

  it('a shared memory grows within its maximum', async () => {
    const body = await ok(SHARED, 'grow');
    expect(body.results).toEqual([1, 2]);
    expect(body.telemetry.memoryPeakBytes).toBe(2 * PAGE);
  });

  it('a shared memory is capped by memoryMb below its own maximum: the grow past it returns -1', async () => {
    const m = b64(wat('(module (memory 1 100 shared) (func (export "f") (param i32) (result i32 i32) (memory.grow (local.get 0)) (memory.size)))'));
    expect((await ok(m, 'f', [20], { memoryMb: 1 })).results).toEqual([-1, 1]);
    const fits = await ok(m, 'f', [15], { memoryMb: 1 });
    expect(fits.results).toEqual([1, 16]);
    expect(fits.telemetry.memoryPeakBytes).toBe(MIB);
  });

  it('memory.atomic.wait32 with no timeout ends in outcome timeout at the deadline', async () => {
    const res = await run(SHARED, 'wait_forever', [], { timeoutMs: 300 });
    expect(res.status).toBe(200);
    expect(res.body.outcome).toBe('timeout');
    expect(res.body.telemetry).toMatchObject({ fuelLimit: DEFAULTS.fuel });
    // and the pool recovered
    expect((await ok(PROGRAM, 'add', [2, 3])).results).toEqual([5]);
  });
});

describe("worker heap exhaustion (tables live on the worker's engine heap)", () => {
  /** 20 tables of 100,000 funcref elements: far beyond a 32 MiB engine heap. */
  const MANY_TABLES = b64(
    wat(`(module ${Array.from({ length: 20 }, (_, i) => `(table $t${i} 100000 funcref)`).join(' ')}
      (func (export "f") (result i32) (i32.const 1)))`),
  );
  const ADD = b64(wat('(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))'));
  const HEAP_ENV = { WASMBOX_WORKER_HEAP_MB: '32', WASMBOX_MAX_TABLE_ELEMENTS: '100000' };

  it('reports memory_limit_exceeded when the tables exhaust the worker heap, and the server keeps serving', async () => {
    const s = await startServer(HEAP_ENV);
    try {
      const res = await s.execute({ module: MANY_TABLES, function: 'f', limits: { timeoutMs: 20_000 } });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.outcome).toBe('memory_limit_exceeded');
      expect(res.body.telemetry).toMatchObject({ fuelLimit: expect.any(Number), memoryLimitBytes: expect.any(Number) });
      const add = await s.execute({ module: ADD, function: 'add', args: [20, 22] });
      expect(add.body).toMatchObject({ outcome: 'ok', results: [42] });
    } finally {
      await s.close();
    }
  });

  // Run as a separate process: when this goes wrong it takes the whole server down.
  let child: ChildServer | undefined;
  afterAll(async () => {
    await child?.close();
  });

  it('a run that hits its deadline while exhausting the worker heap ends in timeout and the server process survives', async () => {
    child = await spawnServer(HEAP_ENV);
    const res = await child.execute({ module: MANY_TABLES, function: 'f', limits: { timeoutMs: 30 } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(['timeout', 'memory_limit_exceeded']).toContain(res.body.outcome);
    // the terminated worker finishes dying in the background: give it time, then check the process
    await new Promise((r) => setTimeout(r, 3_000));
    expect(child.exited(), child.stderr().slice(0, 1500)).toBeNull();
    const add = await child.execute({ module: ADD, function: 'add', args: [20, 22] });
    expect(add.body).toMatchObject({ outcome: 'ok', results: [42] });
  }, 30_000);

  it('refuses a table cap that a single table allocation could not fit in the heap slack, naming the variable', async () => {
    // One allocation past the worker's heap limit by more than Node's 16 MiB slack aborts the
    // whole process, so the configuration bounds every table to 1,000,000 elements (8 MB).
    const { loadConfig } = await import('../dist/src/config.js');
    expect(() => loadConfig({ WASMBOX_MAX_TABLE_ELEMENTS: '10000000' })).toThrow(/WASMBOX_MAX_TABLE_ELEMENTS/);
    // and to a quarter of the worker heap at 32 bytes per element
    expect(() => loadConfig({ WASMBOX_WORKER_HEAP_MB: '16', WASMBOX_MAX_TABLE_ELEMENTS: '1000000' })).toThrow(/WASMBOX_WORKER_HEAP_MB=16 allows at most 131072/);
  });

  it('a table.grow to the largest allowed cap on a small worker heap is ok or memory_limit_exceeded, never a crash of the server', async () => {
    const c = await spawnServer({ WASMBOX_WORKER_HEAP_MB: '16', WASMBOX_MAX_TABLE_ELEMENTS: '131072' });
    try {
      const m = b64(wat('(module (table $t 10 funcref) (func (export "f") (result i32) (table.grow $t (ref.null func) (i32.const 131000))))'));
      const res = await c.execute({ module: m, function: 'f', limits: { timeoutMs: 20_000 } }).catch((err: Error) => ({ status: 0, body: err.message }));
      await new Promise((r) => setTimeout(r, 500));
      expect(c.exited(), c.stderr().slice(0, 1500)).toBeNull();
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      if (res.body.outcome === 'ok') expect(res.body.results).toEqual([10]);
      else expect(res.body.outcome).toBe('memory_limit_exceeded');
      const add = await c.execute({ module: ADD, function: 'add', args: [20, 22] });
      expect(add.body).toMatchObject({ outcome: 'ok', results: [42] });
    } finally {
      await c.close();
    }
  }, 30_000);
});

describe('queue limits', () => {
  const SPIN = b64(wat('(module (func (export "spin") (loop $l (br $l))))'));
  const ADD = b64(wat('(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))'));

  /** Runs that have taken a worker so far (GET /metrics: the run lane's queue-wait count). */
  async function runsStarted(s: TestServer): Promise<number> {
    const m = /^wasmbox_queue_wait_seconds_count\{lane="run"\} (\d+)$/m.exec((await s.get('/metrics')).text);
    return m ? Number(m[1]) : 0;
  }

  it('refuses a run queued behind a busy worker with 503 overloaded and Retry-After, before its own timeoutMs and before the worker frees', { timeout: 90_000 }, async () => {
    // A fuel budget no machine spends in 10 s, so the busy run ends at its deadline (10^10, the
    // default maximum, runs out in about 7 s on an idle machine).
    const s = await startServer({ WASMBOX_WORKERS: '1', WASMBOX_QUEUE_TIMEOUT_MS: '300', WASMBOX_FUEL_MAX: '1000000000000000' });
    try {
      // Both modules prepared first, so what follows waits only for the worker. On a busy machine
      // the preparation thread may not start within this server's short queue timeout (503
      // overloaded): retry until they are prepared.
      const prepared = async (body: Record<string, unknown>) => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const res = await s.execute(body);
          if (res.status !== 503 || Date.now() > deadline) return res;
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      expect((await prepared({ module: SPIN, function: 'spin', limits: { fuel: 10_000 } })).body.outcome).toBe('fuel_exhausted');
      expect((await prepared({ module: ADD, function: 'add', args: [1, 2] })).body.results).toEqual([3]);

      // The only worker spins to a deadline far past the queue timeout; wait until it holds it.
      const before = await runsStarted(s);
      let busyAnswered = false;
      const busy = s.execute({ module: SPIN, function: 'spin', limits: { fuel: 1_000_000_000_000_000, timeoutMs: 10_000 } }).then((res) => {
        busyAnswered = true;
        return res;
      });
      const deadline = Date.now() + 30_000;
      while ((await runsStarted(s)) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(await runsStarted(s)).toBe(before + 1);

      // A second run, with a long deadline of its own, cannot start within the queue timeout:
      // refused at admission or while queued, in either case while the first still runs.
      const res = await s.post('/execute', { module: ADD, function: 'add', args: [1, 2], limits: { timeoutMs: 20_000 } });
      expect(res.status, JSON.stringify(res.body)).toBe(503);
      expect(res.body.error.code).toBe('overloaded');
      expect(Number(res.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(busyAnswered).toBe(false);

      expect((await busy).body.outcome).toBe('timeout');
      expect((await s.execute({ module: ADD, function: 'add', args: [1, 2] })).body.results).toEqual([3]);
    } finally {
      await s.close();
    }
  });});
