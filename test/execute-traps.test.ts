// Every reachable trap kind of the worker protocol, the stack_overflow and timeout outcomes, and
// the pool's health afterwards, through POST /execute on a real server. Each 200 carries the
// telemetry the contract promises.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRAP_KINDS } from '../dist/src/worker/protocol.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.close();
});

const ADD = b64(wat(`(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`));

const ARITH = b64(
  wat(`(module
    (func (export "i32_div_s") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s)
    (func (export "i32_div_u") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_u)
    (func (export "i32_rem_s") (param i32 i32) (result i32) local.get 0 local.get 1 i32.rem_s)
    (func (export "i32_rem_u") (param i32 i32) (result i32) local.get 0 local.get 1 i32.rem_u)
    (func (export "i64_div_s") (param i64 i64) (result i64) local.get 0 local.get 1 i64.div_s)
    (func (export "i64_div_u") (param i64 i64) (result i64) local.get 0 local.get 1 i64.div_u)
    (func (export "i64_rem_s") (param i64 i64) (result i64) local.get 0 local.get 1 i64.rem_s)
    (func (export "i64_rem_u") (param i64 i64) (result i64) local.get 0 local.get 1 i64.rem_u)
    (func (export "i32_trunc_f32_s") (param f32) (result i32) local.get 0 i32.trunc_f32_s)
    (func (export "i32_trunc_f32_u") (param f32) (result i32) local.get 0 i32.trunc_f32_u)
    (func (export "i32_trunc_f64_s") (param f64) (result i32) local.get 0 i32.trunc_f64_s)
    (func (export "i64_trunc_f64_s") (param f64) (result i64) local.get 0 i64.trunc_f64_s)
    (func (export "i64_trunc_f64_u") (param f64) (result i64) local.get 0 i64.trunc_f64_u)
    (func (export "i32_trunc_sat_f32_s") (param f32) (result i32) local.get 0 i32.trunc_sat_f32_s)
  )`),
);

interface Run {
  status: number;
  body: any;
}

async function run(module: string, fn: string | undefined, args: unknown[] = [], limits?: Record<string, number>): Promise<Run> {
  const res = await server.execute({ module, ...(fn !== undefined && { function: fn }), args, ...(limits && { limits }) });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expectTelemetry(res.body, limits);
  return res;
}

/** Every 200 carries the contract's telemetry and the module's content address. */
function expectTelemetry(body: any, limits?: Record<string, number>): void {
  expect(body.moduleId).toMatch(/^sha256:[0-9a-f]{64}$/);
  const t = body.telemetry;
  expect(t, JSON.stringify(body)).toBeTypeOf('object');
  expect(Number.isInteger(t.fuelLimit) && t.fuelLimit >= 1).toBe(true);
  if (limits?.fuel !== undefined) expect(t.fuelLimit).toBe(limits.fuel);
  expect(Number.isInteger(t.memoryLimitBytes)).toBe(true);
  expect(t.memoryLimitBytes).toBe((limits?.memoryMb ?? server.config.limits.defaults.memoryMb) * 1048576);
  expect(Number.isInteger(t.durationNs) && t.durationNs >= 0).toBe(true);
  // null only when the run was killed (timeout); otherwise a count within the limit
  if (t.fuelConsumed !== null) {
    expect(Number.isInteger(t.fuelConsumed) && t.fuelConsumed >= 0).toBe(true);
    expect(t.fuelConsumed).toBeLessThanOrEqual(t.fuelLimit);
  }
  if (t.memoryPeakBytes !== null) {
    expect(Number.isInteger(t.memoryPeakBytes) && t.memoryPeakBytes >= 0).toBe(true);
    expect(t.memoryPeakBytes).toBeLessThanOrEqual(t.memoryLimitBytes);
  }
  expect(Object.keys(t)).toEqual(expect.arrayContaining(['fuelConsumed', 'fuelLimit', 'memoryPeakBytes', 'memoryLimitBytes', 'durationNs']));
}

/** Runs and expects outcome trap of this kind; returns the body. */
async function expectTrap(module: string, fn: string | undefined, args: unknown[], kind: string): Promise<any> {
  const { body } = await run(module, fn, args);
  expect(body, JSON.stringify(body)).toMatchObject({ outcome: 'trap', trap: { kind, message: expect.any(String) } });
  expect(body.trap.message.length).toBeGreaterThan(0);
  expect(body.results).toBeUndefined();
  expect(TRAP_KINDS).toContain(body.trap.kind);
  return body;
}

describe('unreachable', () => {
  it('reports trap kind unreachable, with the fuel spent before it', async () => {
    const m = b64(wat(`(module (func (export "f") (local i32) i32.const 1 local.set 0 unreachable))`));
    const body = await expectTrap(m, 'f', [], 'unreachable');
    expect(body.telemetry.fuelConsumed).toBeGreaterThan(0);
  });

  it('reports a trap in the start function, before the export runs', async () => {
    const m = b64(
      wat(`(module
        (memory 1)
        (func $init unreachable)
        (start $init)
        (func (export "f") (result i32) i32.const 7))`),
    );
    await expectTrap(m, 'f', [], 'unreachable');
  });
});

describe('memory_out_of_bounds', () => {
  const m = b64(
    wat(`(module
      (memory 1)
      (func (export "load") (param i32) (result i32) local.get 0 i32.load)
      (func (export "store64") (param i32) local.get 0 i64.const 1 i64.store)
      (func (export "fill") (param i32 i32) local.get 0 i32.const 0 local.get 1 memory.fill))`),
  );

  it('reports a load past the end of memory', async () => {
    await expectTrap(m, 'load', [65536], 'memory_out_of_bounds');
    await expectTrap(m, 'load', [65533], 'memory_out_of_bounds');
    await expectTrap(m, 'load', [-1], 'memory_out_of_bounds');
  });

  it('does not trap on the last in-bounds word', async () => {
    const { body } = await run(m, 'load', [65532]);
    expect(body).toMatchObject({ outcome: 'ok', results: [0] });
  });

  it('reports a store and a bulk memory.fill past the end', async () => {
    await expectTrap(m, 'store64', [65530], 'memory_out_of_bounds');
    await expectTrap(m, 'fill', [65000, 1000], 'memory_out_of_bounds');
  });

  it('reports an active data segment out of bounds as a trap at instantiation', async () => {
    const bad = b64(
      wat(`(module
        (memory 1)
        (data (i32.const 65535) "ab")
        (func (export "f") (result i32) i32.const 1))`),
    );
    const body = await expectTrap(bad, 'f', [], 'memory_out_of_bounds');
    expect(body.telemetry.fuelConsumed).toBe(0);
  });
});

describe('table_out_of_bounds', () => {
  it('reports table.get and call_indirect past the end of the table', async () => {
    const m = b64(
      wat(`(module
        (type $v (func))
        (table 2 funcref)
        (func (export "get") (param i32) local.get 0 table.get 0 drop)
        (func (export "call") (param i32) local.get 0 call_indirect (type $v)))`),
    );
    await expectTrap(m, 'get', [5], 'table_out_of_bounds');
    await expectTrap(m, 'call', [2], 'table_out_of_bounds');
  });

  it('reports an active element segment out of bounds as a trap at instantiation', async () => {
    const m = b64(
      wat(`(module
        (table 1 funcref)
        (func $g)
        (elem (i32.const 1) $g)
        (func (export "f")))`),
    );
    await expectTrap(m, 'f', [], 'table_out_of_bounds');
  });
});

describe('integer_divide_by_zero', () => {
  it.each([
    ['i32_div_s', [1, 0]],
    ['i32_div_u', [1, 0]],
    ['i32_rem_s', [1, 0]],
    ['i32_rem_u', [1, 0]],
    ['i64_div_s', ['1', '0']],
    ['i64_div_u', ['1', '0']],
    ['i64_rem_s', ['1', '0']],
    ['i64_rem_u', ['1', '0']],
  ] as const)('reports %s by zero', async (fn, args) => {
    await expectTrap(ARITH, fn, [...args], 'integer_divide_by_zero');
  });
});

describe('integer_overflow', () => {
  it('reports i32.div_s of INT_MIN by -1 and i64.div_s of INT64_MIN by -1', async () => {
    await expectTrap(ARITH, 'i32_div_s', [-2147483648, -1], 'integer_overflow');
    await expectTrap(ARITH, 'i64_div_s', ['-9223372036854775808', '-1'], 'integer_overflow');
  });

  it('does not trap on rem_s of INT_MIN by -1, which is 0', async () => {
    const { body } = await run(ARITH, 'i32_rem_s', [-2147483648, -1]);
    expect(body).toMatchObject({ outcome: 'ok', results: [0] });
  });

  // The float -> int truncation of an out-of-range finite value is integer_overflow (wasmtime's
  // IntegerOverflow); only NaN is invalid_conversion_to_integer.
  it('reports i32.trunc_f32_s of 3e9 (finite but out of range) as integer_overflow', async () => {
    await expectTrap(ARITH, 'i32_trunc_f32_s', [3e9], 'integer_overflow');
  });

  it('reports other out-of-range float -> int truncations, including infinities, as integer_overflow', async () => {
    await expectTrap(ARITH, 'i32_trunc_f32_u', [-1], 'integer_overflow');
    await expectTrap(ARITH, 'i32_trunc_f64_s', [2147483648], 'integer_overflow');
    await expectTrap(ARITH, 'i64_trunc_f64_s', [1e19], 'integer_overflow');
    await expectTrap(ARITH, 'i64_trunc_f64_u', ['Infinity'], 'integer_overflow');
    await expectTrap(ARITH, 'i32_trunc_f32_s', ['-Infinity'], 'integer_overflow');
  });

  it('does not trap on in-range truncations or saturating ones', async () => {
    expect((await run(ARITH, 'i32_trunc_f32_s', [-2147483648])).body.results).toEqual([-2147483648]);
    expect((await run(ARITH, 'i32_trunc_f64_s', [-2147483648.9])).body.results).toEqual([-2147483648]);
    expect((await run(ARITH, 'i32_trunc_sat_f32_s', [3e9])).body.results).toEqual([2147483647]);
    expect((await run(ARITH, 'i32_trunc_sat_f32_s', ['NaN'])).body.results).toEqual([0]);
  });
});

describe('invalid_conversion_to_integer', () => {
  it('reports truncation of NaN to an integer', async () => {
    await expectTrap(ARITH, 'i32_trunc_f32_s', ['NaN'], 'invalid_conversion_to_integer');
    await expectTrap(ARITH, 'i32_trunc_f32_u', ['NaN'], 'invalid_conversion_to_integer');
    await expectTrap(ARITH, 'i64_trunc_f64_u', ['NaN'], 'invalid_conversion_to_integer');
  });
});

describe('indirect calls', () => {
  const m = b64(
    wat(`(module
      (type $ret_i32 (func (result i32)))
      (type $take_i64 (func (param i64)))
      (table 3 funcref)
      (func $seven (result i32) i32.const 7)
      (elem (i32.const 0) $seven)
      (func (export "call") (param i32) (result i32) local.get 0 call_indirect (type $ret_i32))
      (func (export "call_wrong_type") (param i32) i64.const 0 local.get 0 call_indirect (type $take_i64)))`),
  );

  it('calls a populated entry of the right type', async () => {
    expect((await run(m, 'call', [0])).body).toMatchObject({ outcome: 'ok', results: [7] });
  });

  it('reports a call through a null table entry as indirect_call_to_null', async () => {
    const body = await expectTrap(m, 'call', [1], 'indirect_call_to_null');
    expect(body.trap.message).toBe('indirect call to a null table entry');
  });

  it('reports a call with the wrong signature as indirect_call_type_mismatch', async () => {
    const body = await expectTrap(m, 'call_wrong_type', [0], 'indirect_call_type_mismatch');
    expect(body.trap.message).toBe('indirect call signature mismatch');
  });

  it('distinguishes the two in a module with two tables, using the table the call names', async () => {
    const two = b64(
      wat(`(module
        (type $v (func))
        (table $a 2 funcref)
        (table $b 2 funcref)
        (func $f)
        (elem (table $a) (i32.const 0) func $f)
        (elem (table $b) (i32.const 1) func $f)
        (func (export "a") (param i32) local.get 0 call_indirect $a (type $v))
        (func (export "b") (param i32) local.get 0 call_indirect $b (type $v)))`),
    );
    expect((await run(two, 'a', [0])).body.outcome).toBe('ok');
    await expectTrap(two, 'a', [1], 'indirect_call_to_null');
    await expectTrap(two, 'b', [0], 'indirect_call_to_null');
    expect((await run(two, 'b', [1])).body.outcome).toBe('ok');
  });
});

describe('unaligned_atomic', () => {
  it('reports an atomic access at a misaligned address', async () => {
    const m = b64(
      wat(`(module
        (memory 1 1 shared)
        (func (export "load") (param i32) (result i32) local.get 0 i32.atomic.load)
        (func (export "rmw") (param i32) (result i64) local.get 0 i64.const 1 i64.atomic.rmw.add))`),
    );
    expect((await run(m, 'load', [4])).body).toMatchObject({ outcome: 'ok', results: [0] });
    await expectTrap(m, 'load', [1], 'unaligned_atomic');
    await expectTrap(m, 'rmw', [4], 'unaligned_atomic');
  });
});

describe('uncaught_exception', () => {
  it('reports an exception thrown by the guest and not caught', async () => {
    const m = b64(
      wat(`(module
        (tag $e (param i32))
        (func (export "throw") i32.const 42 throw $e)
        (func (export "caught") (result i32)
          try (result i32)
            i32.const 5 throw $e
          catch $e
          end))`),
    );
    await expectTrap(m, 'throw', [], 'uncaught_exception');
    expect((await run(m, 'caught')).body).toMatchObject({ outcome: 'ok', results: [5] });
  });
});

describe('stack_overflow', () => {
  const m = b64(
    wat(`(module
      (func $down (export "down") (param i32) (result i32)
        local.get 0 i32.const 1 i32.add call $down))`),
  );

  it('reports unbounded recursion as outcome stack_overflow with trap kind stack_overflow', async () => {
    const { body } = await run(m, 'down', [0], { fuel: 10_000_000_000, timeoutMs: 10_000 });
    expect(body).toMatchObject({ outcome: 'stack_overflow', trap: { kind: 'stack_overflow', message: expect.any(String) } });
    expect(body.telemetry.fuelConsumed).toBeGreaterThan(0);
  });

  it('still answers runs afterwards', async () => {
    const { body } = await run(ADD, 'add', [2, 3]);
    expect(body).toMatchObject({ outcome: 'ok', results: [5] });
    expect(body.telemetry.fuelConsumed).toBeGreaterThan(0);
  });
});

describe('every reachable trap kind is covered', () => {
  it('TRAP_KINDS holds the kinds exercised above plus other', () => {
    expect([...TRAP_KINDS].sort()).toEqual(
      [
        'unreachable',
        'memory_out_of_bounds',
        'table_out_of_bounds',
        'integer_divide_by_zero',
        'integer_overflow',
        'invalid_conversion_to_integer',
        'indirect_call_to_null',
        'indirect_call_type_mismatch',
        'unaligned_atomic',
        'uncaught_exception',
        'stack_overflow',
        'other',
      ].sort(),
    );
  });
});

describe('timeout', () => {
  const SPIN = b64(wat(`(module (func (export "spin") (loop $l br $l)))`));

  it('stops an infinite loop with plenty of fuel at its wall-clock limit: outcome timeout', async () => {
    const started = performance.now();
    const { body } = await run(SPIN, 'spin', [], { fuel: 10_000_000_000, timeoutMs: 300 });
    const elapsed = performance.now() - started;
    expect(body.outcome).toBe('timeout');
    expect(body.trap).toBeUndefined();
    expect(body.results).toBeUndefined();
    expect(body.telemetry.fuelLimit).toBe(10_000_000_000);
    expect(body.telemetry.durationNs).toBeGreaterThanOrEqual(300e6);
    expect(elapsed).toBeLessThan(10_000);
  });

  it('runs the same loop to fuel_exhausted when fuel, not time, is the smaller limit', async () => {
    const { body } = await run(SPIN, 'spin', [], { fuel: 10_000, timeoutMs: 10_000 });
    expect(body.outcome).toBe('fuel_exhausted');
    expect(body.telemetry.fuelConsumed).toBe(10_000);
  });

  it('leaves the pool healthy: a run right after a timeout works', async () => {
    await run(SPIN, 'spin', [], { fuel: 10_000_000_000, timeoutMs: 300 });
    const { body } = await run(ADD, 'add', [5, 10]);
    expect(body).toMatchObject({ outcome: 'ok', results: [15] });
  });

  it('leaves the pool healthy: several concurrent runs after timeouts on every worker all succeed', async () => {
    const spins = await Promise.all(
      Array.from({ length: server.config.workers }, () => server.execute({ module: SPIN, function: 'spin', limits: { fuel: 10_000_000_000, timeoutMs: 300 } })),
    );
    for (const s of spins) expect(s.body.outcome).toBe('timeout');
    const runs = await Promise.all(Array.from({ length: 8 }, (_, i) => server.execute({ module: ADD, function: 'add', args: [i, 100] })));
    runs.forEach((r, i) => {
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ outcome: 'ok', results: [i + 100] });
      expectTelemetry(r.body);
    });
    expect((await server.get('/readyz')).status).toBe(200);
  });
});
