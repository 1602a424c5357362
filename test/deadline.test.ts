// The deadline keeps the account (issue: accounting), through the real server on a real port: a
// run stopped at its deadline is a timeout with an exact fuelConsumed, its memory and its output,
// ended inside its thread, which is kept; the thread is terminated only when the guest cannot be
// reached (an atomic wait with no timeout), and the response says so; compilation happens at
// preparation, so a no-op in a huge module is not charged the engine's compiler.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { leb } from './helpers/leb.js';
import { wat } from './helpers/wat.js';

const FUEL_MAX = 1_000_000_000_000;
const PAGE = 65_536;

let server: TestServer;
beforeAll(async () => {
  server = await startServer({
    WASMBOX_FUEL_MAX: String(FUEL_MAX),
    WASMBOX_TIMEOUT_MS_MAX: '20000',
    WASMBOX_DEADLINE_GRACE_MS: '300',
  });
});
afterAll(async () => {
  await server?.close();
});

async function execute(body: Record<string, unknown>) {
  const res = await server.execute(body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

function expectIntegerAccount(body: { telemetry: Record<string, unknown> }): void {
  const t = body.telemetry;
  expect(Number.isInteger(t.fuelConsumed), JSON.stringify(t)).toBe(true);
  expect(Number.isInteger(t.memoryPeakBytes), JSON.stringify(t)).toBe(true);
  expect(t.fuelConsumed as number).toBeGreaterThanOrEqual(0);
  expect(t.fuelConsumed as number).toBeLessThanOrEqual(t.fuelLimit as number);
  expect(typeof t.threadKilled).toBe('boolean');
}

const SPIN = b64(
  wat(`(module
    (memory 3)
    (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
    (func (export "spin") (local $i i32)
      (drop (memory.grow (i32.const 2)))
      (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)))
    (func $f (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
    (func (export "spin_calls") (local $i i32)
      (loop $l (local.set $i (call $f (local.get $i))) (br $l)))
    ;; An interpreter's dispatch loop: large, calling nothing, every branch back a br (its fuel
    ;; checks sit at those branches, not at its header).
    (func (export "dispatch") (local $i i32) (local $s i32)
      (loop $l
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (block $c1 (block $c0
          (br_table $c0 $c1 (i32.and (local.get $i) (i32.const 1))))
          ${'(local.set $s (i32.add (local.get $s) (i32.const 1))) '.repeat(60)} (br $l))
        ${'(local.set $s (i32.xor (local.get $s) (i32.const 3))) '.repeat(60)} (br $l))))`),
);

/** A WASI program that prints "x" every 200 loop iterations (about 1,700 fuel), forever. */
const TICKER = b64(
  wat(`(module
    (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "\\10\\00\\00\\00\\01\\00\\00\\00")
    (data (i32.const 16) "x")
    (func (export "_start") (local $i i32)
      (loop $print
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $i (i32.const 0))
        (loop $spin
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $spin (i32.lt_u (local.get $i) (i32.const 200))))
        (br $print))))`),
);

describe('a run that reaches its deadline keeps its account', () => {
  it('ends in timeout inside its thread: integer fuelConsumed and memoryPeakBytes, threadKilled false, durationNs past the deadline', async () => {
    const body = await execute({ module: SPIN, function: 'spin', limits: { fuel: FUEL_MAX, timeoutMs: 200 } });
    expect(body.outcome).toBe('timeout');
    expect(body.message).toContain('200 ms');
    expectIntegerAccount(body);
    expect(body.telemetry.threadKilled).toBe(false);
    // It spun for 200 ms: far more than a few slices' worth of fuel.
    expect(body.telemetry.fuelConsumed).toBeGreaterThan(1_000_000);
    // The memory grew by 2 pages before the loop: 5 pages.
    expect(body.telemetry.memoryPeakBytes).toBe(5 * PAGE);
    expect(body.telemetry.durationNs).toBeGreaterThanOrEqual(200e6);
    // A guest that could be reached is stopped well within the grace; a generous bound.
    expect(body.telemetry.durationNs).toBeLessThan(200e6 + 150e6);
  });

  it('an interpreter\'s dispatch loop, checked at its branches back, also ends in timeout inside its thread', async () => {
    const body = await execute({ module: SPIN, function: 'dispatch', limits: { fuel: FUEL_MAX, timeoutMs: 200 } });
    expect(body.outcome).toBe('timeout');
    expectIntegerAccount(body);
    expect(body.telemetry.threadKilled).toBe(false);
    expect(body.telemetry.fuelConsumed).toBeGreaterThan(1_000_000);
    expect(body.telemetry.durationNs).toBeGreaterThanOrEqual(200e6);
    expect(body.telemetry.durationNs).toBeLessThan(200e6 + 150e6);
  });

  it('keeps the runner threads: the same thread ids before and after timeouts', async () => {
    const before = server.runnerThreadIds();
    expect(before.length).toBe(2);
    const runs = await Promise.all(
      ['spin', 'spin_calls', 'dispatch', 'spin_calls'].map((fn) => execute({ module: SPIN, function: fn, limits: { fuel: FUEL_MAX, timeoutMs: 100 } })),
    );
    for (const body of runs) {
      expect(body.outcome).toBe('timeout');
      expect(body.telemetry.threadKilled).toBe(false);
    }
    expect(server.runnerThreadIds()).toEqual(before);
    // and the same threads serve the next run at once
    expect((await execute({ module: SPIN, function: 'add', args: [2, 3] })).results).toEqual([5]);
    expect(server.runnerThreadIds()).toEqual(before);
  });

  it('the fuel a timeout reports is exact: the same program given exactly that much fuel does exactly the same work (same output)', async () => {
    const timedOut = await execute({ module: TICKER, wasi: {}, limits: { fuel: FUEL_MAX, timeoutMs: 150 } });
    expect(timedOut.outcome).toBe('timeout');
    expect(timedOut.exitCode).toBeNull();
    expect(timedOut.telemetry.threadKilled).toBe(false);
    const printed = timedOut.stdout as string;
    // Output so far is returned, and it is not capped (the comparison below is over all of it).
    expect(printed.length).toBeGreaterThan(3);
    expect(timedOut.stdoutTruncated).toBe(false);
    const fuel = timedOut.telemetry.fuelConsumed as number;

    const exhausted = await execute({ module: TICKER, wasi: {}, limits: { fuel, timeoutMs: 20_000 } });
    expect(exhausted.outcome).toBe('fuel_exhausted');
    expect(exhausted.telemetry.fuelConsumed).toBe(fuel);
    // A print every 200 iterations: an account off by more than about 1,700 fuel (let alone by a
    // slice, up to millions) would show as a different number of prints. The account at the
    // deadline is exact to the check where the run stopped.
    expect(exhausted.stdout).toBe(printed);
  });

  it('a WASI sleep past the deadline is cut there and the run ends in timeout inside its thread', async () => {
    // poll_oneoff with one relative clock subscription of 10 s
    const module = wat(`(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory 1)
      (func (export "_start")
        (i64.store (i32.const 24) (i64.const 10000000000))
        (loop $l (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))) (br $l))))`);
    const before = server.runnerThreadIds();
    const t0 = performance.now();
    const body = await execute({ module: b64(module), wasi: {}, limits: { timeoutMs: 200 } });
    expect(body.outcome).toBe('timeout');
    expect(body.telemetry.threadKilled).toBe(false);
    expectIntegerAccount(body);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(server.runnerThreadIds()).toEqual(before);
  });
});

describe('the backstop: a guest that cannot be reached has its thread terminated', () => {
  const SHARED = b64(
    wat(`(module
      (memory 1 4 shared)
      (func (export "wait_forever") (result i32)
        (drop (memory.grow (i32.const 1)))
        (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))`),
  );

  it('memory.atomic.wait32 with no timeout ends in timeout after the grace, threadKilled true, integer account as of its last check', async () => {
    const before = server.runnerThreadIds();
    const body = await execute({ module: SHARED, function: 'wait_forever', limits: { timeoutMs: 200 } });
    expect(body.outcome).toBe('timeout');
    expect(body.telemetry.threadKilled).toBe(true);
    expect(body.message).toContain('terminated');
    expectIntegerAccount(body);
    // The function entry check published its account before the wait (fuel is the entry's).
    expect(body.telemetry.fuelConsumed).toBeGreaterThanOrEqual(0);
    expect(body.telemetry.memoryPeakBytes).toBeGreaterThanOrEqual(PAGE);
    // deadline (200) + grace (300)
    expect(body.telemetry.durationNs).toBeGreaterThanOrEqual(500e6);
    // The thread was replaced; the pool serves the next run.
    expect(server.runnerThreadIds()).not.toEqual(before);
    expect((await execute({ module: SPIN, function: 'add', args: [1, 2] })).results).toEqual([3]);
  });
});

describe('every outcome carries an integer account', () => {
  const OUTCOMES = b64(
    wat(`(module
      (memory 1)
      (func (export "ok") (result i32) (i32.const 7))
      (func (export "trap") (unreachable))
      (func $deep (export "deep") (param i32) (result i32) (i32.add (call $deep (local.get 0)) (i32.const 1)))
      (func (export "burn") (loop $l (br $l)))
      (func (export "grow_then_trap") (drop (memory.grow (i32.const 1000))) (i32.store (i32.const 10000000) (i32.const 1))))`),
  );
  const EXIT = b64(
    wat(`(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory 1)
      (func (export "_start") (call $exit (i32.const 3))))`),
  );

  it.each([
    ['ok', { function: 'ok' }],
    ['trap', { function: 'trap' }],
    ['stack_overflow', { function: 'deep', args: [1] }],
    ['fuel_exhausted', { function: 'burn', limits: { fuel: 100_000 } }],
    ['memory_limit_exceeded', { function: 'grow_then_trap', limits: { memoryMb: 1 } }],
    ['timeout', { function: 'burn', limits: { fuel: FUEL_MAX, timeoutMs: 50 } }],
  ])('%s', async (outcome, request) => {
    const body = await execute({ module: OUTCOMES, ...request });
    expect(body.outcome).toBe(outcome);
    expectIntegerAccount(body);
    expect(body.telemetry.memoryPeakBytes).toBe(PAGE);
    expect(body.telemetry.threadKilled).toBe(false);
  });

  it('exited (WASI)', async () => {
    const body = await execute({ module: EXIT, wasi: {} });
    expect(body.outcome).toBe('exited');
    expect(body.exitCode).toBe(3);
    expectIntegerAccount(body);
  });
});

/** A module with a no-op export and a function of `depth` nested empty blocks, written directly
 *  (a text compiler would take longer than the engine). */
function nestedBlocks(depth: number): Uint8Array {
  const body = new Uint8Array(1 + 3 * depth + 1);
  body[0] = 0x00; // no locals
  for (let i = 0; i < depth; i++) {
    body[1 + 2 * i] = 0x02; // block
    body[2 + 2 * i] = 0x40; // empty type
  }
  body.fill(0x0b, 1 + 2 * depth); // the ends, and the function's
  const section = (id: number, content: number[] | Uint8Array): number[] => [id, ...leb(content.length), ...content];
  const code = [2, 2, 0x00, 0x0b, ...leb(body.length)];
  const head = [
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 0, 0]),
    ...section(3, [2, 0, 0]),
    ...section(7, [2, 4, 0x6e, 0x6f, 0x6f, 0x70, 0, 0, 3, 0x62, 0x69, 0x67, 0, 1]),
    10, ...leb(code.length + body.length),
  ];
  const out = new Uint8Array(head.length + code.length + body.length);
  out.set(head);
  out.set(code, head.length);
  out.set(body, head.length + code.length);
  return out;
}

describe('compilation is preparation, not guest time', () => {
  it('the no-op export of a module with a 300,000-deep function answers ok within 50 ms of guest time (compiling it there took 1.26 s); the compile shows in prepareNs', { timeout: 60_000 }, async () => {
    const module = b64(nestedBlocks(300_000));
    const body = await execute({ module, function: 'noop', limits: { timeoutMs: 1000 } });
    expect(body.outcome).toBe('ok');
    expect(body.telemetry.durationNs).toBeLessThan(50e6);
    // Compiling 300,000 nested blocks takes the engine hundreds of milliseconds: at preparation.
    expect(body.telemetry.prepareNs).toBeGreaterThan(body.telemetry.durationNs);
  });

  it('the no-op in a module with 1M nested blocks is ok within 50 ms of guest time, or refused at preparation (never a timeout)', { timeout: 120_000 }, async () => {
    const res = await server.execute({ module: b64(nestedBlocks(1_000_000)), function: 'noop', limits: { timeoutMs: 1000 } });
    if (res.status === 422) {
      expect(res.body.error.code).toBe('module_too_complex');
    } else {
      expect(res.status).toBe(200);
      expect(res.body.outcome).toBe('ok');
      expect(res.body.telemetry.durationNs).toBeLessThan(50e6);
    }
  });
});
