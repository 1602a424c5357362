// Batches: POST /execute with `calls` runs each call on a fresh instance of one prepared module,
// in order, in one runner task, and answers every call in full plus a summed telemetry. Against
// a real server on a real port, in all three body forms.

import { readFileSync } from 'node:fs';
import { FormData } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send } from './helpers/forms.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const FUEL_MAX = 1_000_000_000_000;
const BATCH_MAX = 8;

let server: TestServer;
beforeAll(async () => {
  server = await startServer({
    WASMBOX_BATCH_MAX: String(BATCH_MAX),
    WASMBOX_FUEL_MAX: String(FUEL_MAX),
    WASMBOX_MEMORY_MB_DEFAULT: '8',
    WASMBOX_MEMORY_MB_MAX: '16',
    WASMBOX_TIMEOUT_MS_MAX: '10000',
    WASMBOX_DEADLINE_GRACE_MS: '200',
  });
});
afterAll(async () => {
  await server?.close();
});

const MOD = wat(`(module
  (memory 1)
  (global $count (mut i32) (i32.const 0))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "bump") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (i32.add (global.get $count) (i32.load (i32.const 0))))
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  (func (export "spin") (loop $l (br $l)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "grow_then_store") (drop (memory.grow (i32.const 100))) (i32.store (i32.const 6000000) (i32.const 1))))`);
const MODULE = b64(MOD);

const execute = async (body: Record<string, unknown>): Promise<any> => {
  const res = await server.execute({ module: MODULE, ...body });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
};

function expectRefusal(res: { status: number; body: any }, status: number, code: string): string {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.error.code).toBe(code);
  return res.body.error.message as string;
}

describe('a batch answers every call, in order, each on a fresh instance', () => {
  it('runs each call on a fresh instance: globals and memory start anew for every call', async () => {
    const body = await execute({ calls: [{ function: 'bump' }, { function: 'bump' }, { function: 'bump' }] });
    expect(body.calls.map((c: any) => c.results)).toEqual([[2], [2], [2]]);
    expect(body.moduleId).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('keeps the order of the calls and gives each its own results', async () => {
    const calls = Array.from({ length: BATCH_MAX }, (_, i) => ({ function: 'add', args: [i, 100] }));
    const body = await execute({ calls });
    expect(body.calls.map((c: any) => c.results[0])).toEqual(calls.map((_, i) => i + 100));
    expect(body.calls.every((c: any) => c.outcome === 'ok')).toBe(true);
  });

  it('a trap, a fuel exhaustion and a memory refusal end only their own call', async () => {
    const body = await execute({
      calls: [
        { function: 'add', args: [1, 2] },
        { function: 'div', args: [1, 0] },
        { function: 'spin', limits: { fuel: 10_000 } },
        { function: 'grow_then_store', limits: { memoryMb: 1 } },
        { function: 'add', args: [3, 4] },
      ],
    });
    expect(body.calls.map((c: any) => c.outcome)).toEqual(['ok', 'trap', 'fuel_exhausted', 'memory_limit_exceeded', 'ok']);
    expect(body.calls[1].trap.kind).toBe('integer_divide_by_zero');
    expect(body.calls[2].telemetry.fuelConsumed).toBe(10_000);
    expect(body.calls[2].telemetry.fuelLimit).toBe(10_000);
    expect(body.calls[3].telemetry.memoryLimitBytes).toBe(1024 * 1024);
    expect(body.calls[4].results).toEqual([7]);
    expect(body.telemetry.outcomes).toEqual({ ok: 2, trap: 1, fuel_exhausted: 1, memory_limit_exceeded: 1 });
  });

  it('each call carries its own full answer; the batch telemetry sums fuel, limits and durations and takes the largest memory peak', async () => {
    const body = await execute({
      limits: { fuel: 50_000, memoryMb: 4 },
      calls: [
        { function: 'add', args: [1, 1] },
        { function: 'grow', args: [2] },
        { function: 'grow', args: [1], limits: { memoryMb: 8, fuel: 70_000 } },
      ],
    });
    for (const call of body.calls) {
      expect(Object.keys(call.telemetry).sort()).toEqual(['durationNs', 'fuelConsumed', 'fuelLimit', 'instantiateNs', 'memoryLimitBytes', 'memoryPeakBytes', 'threadKilled']);
      expect(call.moduleId).toBeUndefined();
    }
    expect(body.calls.map((c: any) => c.telemetry.memoryPeakBytes)).toEqual([65536, 3 * 65536, 2 * 65536]);
    expect(body.calls.map((c: any) => c.telemetry.fuelLimit)).toEqual([50_000, 50_000, 70_000]);
    const t = body.telemetry;
    const sum = (k: string): number => body.calls.reduce((n: number, c: any) => n + c.telemetry[k], 0);
    expect(t.calls).toBe(3);
    expect(t.fuelConsumed).toBe(sum('fuelConsumed'));
    expect(t.fuelConsumed).toBeGreaterThan(0);
    expect(t.fuelLimit).toBe(170_000);
    expect(t.durationNs).toBe(sum('durationNs'));
    expect(t.instantiateNs).toBe(sum('instantiateNs'));
    expect(t.memoryPeakBytes).toBe(3 * 65536);
    expect(t.memoryLimitBytes).toBe(8 * 1024 * 1024);
    expect(t).toMatchObject({ outcomes: { ok: 3 }, threadKilled: false, moduleCached: expect.any(Boolean) });
    expect(Number.isInteger(t.queueNs) && Number.isInteger(t.prepareNs)).toBe(true);
  });

  it('runs a stored module by moduleId, and a module sent as WebAssembly text', async () => {
    const stored = await server.post('/modules', { module: MODULE });
    expect([200, 201]).toContain(stored.status);
    const byId = await server.execute({ moduleId: stored.body.moduleId, calls: [{ function: 'add', args: [2, 2] }] });
    expect(byId.body.calls[0].results).toEqual([4]);
    const text = await server.execute({
      wat: '(module (func (export "sq") (param i64) (result i64) (i64.mul (local.get 0) (local.get 0))))',
      calls: [{ function: 'sq', args: ['3000000000'] }, { function: 'sq', args: [-4] }],
    });
    expect(text.body.calls.map((c: any) => c.results[0])).toEqual(['9000000000000000000', '16']);
  });
});

describe('one deadline for the batch', () => {
  it('a call the deadline cuts is a timeout; calls not started by then are timeouts that did not run and cost nothing', async () => {
    const t0 = performance.now();
    const body = await execute({
      limits: { timeoutMs: 300, fuel: FUEL_MAX },
      calls: [{ function: 'add', args: [1, 2] }, { function: 'spin' }, { function: 'add', args: [3, 4] }, { function: 'bump' }],
    });
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(body.calls.map((c: any) => c.outcome)).toEqual(['ok', 'timeout', 'timeout', 'timeout']);
    expect(body.calls[0].results).toEqual([3]);
    expect(body.calls[1].message).toContain('the batch reached its wall-clock limit of 300 ms during this call');
    expect(body.calls[1].telemetry.fuelConsumed).toBeGreaterThan(0);
    expect(body.calls[1].telemetry.threadKilled).toBe(false);
    for (const skipped of body.calls.slice(2)) {
      expect(skipped.message).toBe('not started: the batch reached its wall-clock limit of 300 ms before this call');
      expect(skipped.telemetry).toMatchObject({ fuelConsumed: 0, memoryPeakBytes: 0, durationNs: 0, instantiateNs: 0, threadKilled: false });
      expect(skipped.results).toBeUndefined();
    }
    expect(body.telemetry.outcomes).toEqual({ ok: 1, timeout: 3 });
  });

  it("a call's own timeoutMs ends that call, and the next calls still run", async () => {
    const body = await execute({
      limits: { timeoutMs: 5_000, fuel: FUEL_MAX },
      calls: [{ function: 'spin', limits: { timeoutMs: 50 } }, { function: 'add', args: [1, 1] }],
    });
    expect(body.calls[0].outcome).toBe('timeout');
    expect(body.calls[0].message).toContain('50 ms');
    expect(body.calls[0].telemetry.durationNs).toBeLessThan(2_000e6);
    expect(body.calls[1]).toMatchObject({ outcome: 'ok', results: [2] });
  });

  it('a guest that cannot be reached at the deadline has its thread terminated: finished calls keep their answers, the rest did not start', async () => {
    const shared = b64(
      wat(`(module
        (memory 1 4 shared)
        (func (export "one") (result i32) (i32.const 1))
        (func (export "wait_forever") (result i32)
          (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))`),
    );
    const before = server.runnerThreadIds();
    const res = await server.execute({
      module: shared,
      limits: { timeoutMs: 200 },
      calls: [{ function: 'one' }, { function: 'one' }, { function: 'wait_forever' }, { function: 'one' }],
    });
    expect(res.status).toBe(200);
    const calls = res.body.calls;
    expect(calls.slice(0, 2).map((c: any) => [c.outcome, c.results])).toEqual([
      ['ok', [1]],
      ['ok', [1]],
    ]);
    expect(calls[2]).toMatchObject({ outcome: 'timeout', telemetry: { threadKilled: true } });
    expect(calls[2].message).toContain('terminated');
    expect(calls[3]).toMatchObject({ outcome: 'timeout', telemetry: { fuelConsumed: 0, threadKilled: false } });
    expect(calls[3].message).toContain('not started');
    expect(res.body.telemetry.threadKilled).toBe(true);
    expect(server.runnerThreadIds()).not.toEqual(before);
    // The pool serves the next batch.
    expect((await execute({ calls: [{ function: 'add', args: [1, 2] }] })).calls[0].results).toEqual([3]);
  });
});

describe('a batch is checked whole before any call runs', () => {
  it('an unknown function in one call refuses the batch, naming the call', async () => {
    const message = expectRefusal(await server.execute({ module: MODULE, calls: [{ function: 'add', args: [1, 2] }, { function: 'nope' }] }), 400, 'function_not_found');
    expect(message).toMatch(/^calls\[1\]: the module exports no function named "nope"; exported functions: add\(i32, i32\)/);
  });

  it('wrong arguments in one call refuse the batch with the signature', async () => {
    const message = expectRefusal(await server.execute({ module: MODULE, calls: [{ function: 'add', args: [1] }] }), 400, 'invalid_arguments');
    expect(message).toMatch(/^calls\[0\]: /);
    expect(message).toContain('add(i32, i32)');
  });

  it("a call's limit above the server maximum is limit_out_of_range naming the call", async () => {
    const message = expectRefusal(
      await server.execute({ module: MODULE, calls: [{ function: 'bump' }, { function: 'bump', limits: { memoryMb: 17 } }] }),
      400,
      'limit_out_of_range',
    );
    expect(message).toBe('calls[1].limits.memoryMb must be an integer from 1 to 16 on this server; got 17');
  });

  it('more calls than WASMBOX_BATCH_MAX is invalid_request giving the maximum', async () => {
    const calls = Array.from({ length: BATCH_MAX + 1 }, () => ({ function: 'bump' }));
    const message = expectRefusal(await server.execute({ module: MODULE, calls }), 400, 'invalid_request');
    expect(message).toContain(`at most ${BATCH_MAX} calls in one batch`);
    expect(message).toContain(`got ${BATCH_MAX + 1}`);
  });

  it.each([
    ['calls with a top-level function', { calls: [{ function: 'bump' }], function: 'add' }, 'body.function: a batch ("calls") gives each call its own'],
    ['calls with top-level args', { calls: [{ function: 'bump' }], args: [] }, 'body.args: a batch ("calls") gives each call its own'],
    ['an empty batch', { calls: [] }, 'body.calls: must have at least one call'],
    ['calls that is not an array', { calls: {} }, 'body.calls: must be an array'],
    ['an unknown field in a call', { calls: [{ function: 'bump', fn: 1 }] }, 'body.calls[0]: unknown field "fn"'],
  ])('refuses %s as invalid_request naming the field', async (_name, body, expected) => {
    expect(expectRefusal(await server.execute({ module: MODULE, ...body }), 400, 'invalid_request')).toContain(expected);
  });
});

describe('WASI programs in a batch', () => {
  const CAT = b64(readFileSync(new URL('./wasi/programs/cat.wasm', import.meta.url)));

  it('each call gets its own stdin (a grader running one program on many inputs) and its own output', async () => {
    const body = await execute({
      module: CAT,
      wasi: { stdin: 'default input' },
      calls: [{ wasi: { stdin: 'case one' } }, { wasi: { stdin: 'case two' } }, {}],
    });
    expect(body.calls.map((c: any) => [c.outcome, c.exitCode, c.stdout])).toEqual([
      ['ok', 0, 'case one'],
      ['ok', 0, 'case two'],
      ['ok', 0, 'default input'],
    ]);
    expect(body.calls.map((c: any) => c.stderr)).toEqual(['cat: 8 bytes\n', 'cat: 8 bytes\n', 'cat: 13 bytes\n']);
  });

  it('a WASI module in a batch without wasi is unsupported_import, as for one run', async () => {
    expectRefusal(await server.execute({ module: CAT, calls: [{}] }), 400, 'unsupported_import');
  });
});

describe('the three body forms carry a batch', () => {
  const calls = [
    { function: 'add', args: [2, 3] },
    { function: 'div', args: [7, 0] },
  ];

  it('multipart/form-data: a "calls" field holding the JSON array', async () => {
    const form = new FormData();
    form.append('module', new Blob([MOD]), 'm.wasm');
    form.append('calls', JSON.stringify(calls));
    form.append('fuel', '5000');
    const res = await send(`${server.url}/execute`, 'POST', form);
    expect(res.status, res.text).toBe(200);
    expect(res.body.calls.map((c: any) => c.outcome)).toEqual(['ok', 'trap']);
    expect(res.body.calls[0].results).toEqual([5]);
    expect(res.body.calls[0].telemetry.fuelLimit).toBe(5000);
  });

  it('application/wasm: "calls" in the query string as JSON', async () => {
    const res = await send(`${server.url}/execute?calls=${encodeURIComponent(JSON.stringify(calls))}`, 'POST', MOD, { 'content-type': 'application/wasm' });
    expect(res.status, res.text).toBe(200);
    expect(res.body.calls.map((c: any) => c.outcome)).toEqual(['ok', 'trap']);
  });

  it('application/wasm: "calls" that is not JSON is invalid_request naming query.calls', async () => {
    const res = await send(`${server.url}/execute?calls=%5Bnope`, 'POST', MOD, { 'content-type': 'application/wasm' });
    expect(expectRefusal(res, 400, 'invalid_request')).toContain('query.calls: must be JSON');
  });
});

describe('metrics count every call of a batch', () => {
  it('wasmbox executions grow by the number of calls', async () => {
    const count = async (): Promise<number> => {
      const text = (await server.get('/metrics')).text;
      return text
        .split('\n')
        .filter((l) => /^wasmbox_executions_total\{[^}]*outcome="ok"/.test(l))
        .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
    };
    const before = await count();
    await execute({ calls: [{ function: 'bump' }, { function: 'bump' }, { function: 'bump' }] });
    expect((await count()) - before).toBe(3);
  });
});
