// Unit tests of the fuel-metering transform (dist/src/metering/instrument.js), run in-process:
// each module is instrumented, instantiated the way the runner does it (test/helpers/metered.ts)
// and the fuel it consumed compared with a count worked out by hand under wasmtime's model:
// 1 per function entry, 1 per operator, nop/drop/block/loop/else/end/unreachable/return (and the
// exception-handling structure try/catch/catch_all/delegate) free, plus the per-unit charges of
// costs.ts for bulk memory and table operations and for memory.grow / table.grow.

import { describe, expect, it } from 'vitest';
import { DEFAULT_COSTS } from '../dist/src/metering/costs.js';
import { instrument } from '../dist/src/metering/instrument.js';
import { parseModule } from '../dist/src/wasm/module.js';
import { instantiateMetered, runMetered } from './helpers/metered.js';
import { wat, watText } from './helpers/wat.js';

const PER = DEFAULT_COSTS.perUnit;

/** A module exporting `f`, with `extra` fields before it. */
function mod(func: string, extra = ''): Uint8Array {
  return wat(`(module ${extra} (func (export "f") ${func}))`);
}

/** Fuel consumed by a completed call of `f` (fails if it trapped or ran out). */
function fuel(bytes: Uint8Array, args: unknown[] = []): { consumed: number; results: unknown } {
  const r = runMetered(bytes, { fn: 'f', args });
  if (r.trap) throw new Error(`expected f(${args.join(', ')}) to complete; it threw ${r.trap.message}`);
  expect(r.exhausted).toBe(false);
  return { consumed: r.consumed, results: r.results };
}

/** f(args) at every budget from 1 to two past `total`, the fuel a completed call needs: it completes,
 *  charged exactly `total`, from `total` on, and below it is exhausted, reporting no more than its
 *  limit. */
function expectExactAtEveryBudget(bytes: Uint8Array, args: unknown[], total: number): void {
  for (let limit = 1; limit <= total + 2; limit++) {
    const r = runMetered(bytes, { fn: 'f', args, fuel: limit });
    expect(r.consumed).toBeLessThanOrEqual(limit);
    expect(r.exhausted).toBe(limit < total);
    if (!r.exhausted) expect(r.consumed).toBe(total);
  }
}

const SUM_LOOP = `
  (func $sum (export "sum") (param $n i32) (result i32) (local $i i32) (local $s i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $s (i32.add (local.get $s) (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $s))`;
/** Per iteration: 4 (compare + br_if) + 4 (sum) + 4 (increment) + 1 (br); exit test 4; entry 1; result 1. */
const sumCost = (n: number): number => 13 * n + 6;

describe('metering: operators cost 1, function entry costs 1', () => {
  it('charges 1 for entry and 1 per operator: i32.const 1; i32.const 2; i32.add costs 4', () => {
    expect(fuel(mod('(result i32) i32.const 1 i32.const 2 i32.add'))).toEqual({ consumed: 4, results: 3 });
  });

  it('charges an empty function 1 (its entry)', () => {
    expect(fuel(mod('')).consumed).toBe(1);
  });

  it('charges local.get/set/tee and global.get/set 1 each', () => {
    const m = mod(
      `(param i32) (result i32) (local i32)
       (local.set 1 (local.get 0))
       (global.set $g (local.tee 1 (local.get 1)))
       (global.get $g)`,
      '(global $g (mut i32) (i32.const 0))',
    );
    // entry 1 + get,set 2 + get,tee,global.set 3 + global.get 1
    expect(fuel(m, [9])).toEqual({ consumed: 7, results: 9 });
  });

  it('charges select 1 like any operator', () => {
    const m = mod('(param i32) (result i32) (select (i32.const 1) (i32.const 2) (local.get 0))');
    expect(fuel(m, [0])).toEqual({ consumed: 5, results: 2 });
  });

  it('charges loads, stores and memory.size 1 each', () => {
    const m = mod('(result i32) (i32.store (i32.const 0) (i32.const 42)) (drop (memory.size)) (i32.load (i32.const 0))', '(memory 1)');
    // entry 1 + store 3 + memory.size 1 + load 2
    expect(fuel(m)).toEqual({ consumed: 7, results: 42 });
  });

  it('charges numeric operators 1 each: conversions, float, sign extension, saturating truncation', () => {
    expect(fuel(mod('(result f64) (f64.sqrt (f64.convert_i32_s (i32.const 16)))'))).toEqual({ consumed: 4, results: 4 });
    expect(fuel(mod('(result i32) (i32.extend8_s (i32.const 255))'))).toEqual({ consumed: 3, results: -1 });
    expect(fuel(mod('(result i32) (i32.trunc_sat_f64_s (f64.const 1e100))'))).toEqual({ consumed: 3, results: 2147483647 });
    expect(fuel(mod('(result i64) (i64.mul (i64.const 6) (i64.const 7))'))).toEqual({ consumed: 4, results: 42n });
  });

  it('charges SIMD operators 1 each', () => {
    const m = mod('(result i32) (i32x4.extract_lane 0 (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 10 20 30 40)))');
    expect(fuel(m)).toEqual({ consumed: 5, results: 11 });
  });

  it('charges atomic operators 1 each (shared memory)', () => {
    const m = mod('(result i32) (drop (i32.atomic.rmw.add (i32.const 0) (i32.const 5))) (i32.atomic.load (i32.const 0))', '(memory 1 1 shared)');
    // entry 1 + rmw.add 3 + load 2
    expect(fuel(m)).toEqual({ consumed: 6, results: 5 });
  });

  it('charges multi-value results and blocks with parameters by their operators only', () => {
    expect(fuel(mod('(result i32 i64) (i32.const 1) (i64.const 2)'))).toEqual({ consumed: 3, results: [1, 2n] });
    const m = mod('(result i32) (i32.const 1) (block (param i32) (result i32) (i32.const 2) (i32.add))');
    expect(fuel(m)).toEqual({ consumed: 4, results: 3 });
  });
});

describe('metering: the free operators cost nothing', () => {
  it('nop, drop, block, loop and end are free: only the entry and i32.const are charged', () => {
    expect(fuel(mod('nop nop (block) (loop) (block (nop) (block)) (drop (i32.const 0)) nop')).consumed).toBe(2);
  });

  it('unreachable is free, and the work before it is charged exactly (3 for two consts and the entry)', () => {
    const r = runMetered(mod('i32.const 0 i32.const 0 unreachable'), { fn: 'f' });
    expect(r.trap?.message).toMatch(/unreachable/);
    expect(r.exhausted).toBe(false);
    expect(r.consumed).toBe(3);
  });

  it('return is free and the code after it is never charged', () => {
    const m = mod('(result i32) (block (return (i32.const 5))) (drop (i32.add (i32.const 1) (i32.const 2))) (i32.const 9)');
    expect(fuel(m)).toEqual({ consumed: 2, results: 5 });
  });

  it('return in the middle of a nested block charges only what ran', () => {
    const m = mod(`(param i32) (result i32)
      (block (block
        (br_if 1 (local.get 0))
        (return (i32.const 5))))
      (i32.const 9)`);
    // taken: entry, local.get, br_if, const 9 = 4; not taken: entry, local.get, br_if, const 5 = 4
    expect(fuel(m, [1])).toEqual({ consumed: 4, results: 9 });
    expect(fuel(m, [0])).toEqual({ consumed: 4, results: 5 });
  });

  it('else is free: each arm of if/else pays only for its own operators', () => {
    const m = mod('(param i32) (result i32) (if (result i32) (local.get 0) (then (i32.add (i32.const 1) (i32.const 2))) (else (i32.const 9)))');
    // entry + local.get + if = 3, then-arm 3, else-arm 1
    expect(fuel(m, [1])).toEqual({ consumed: 6, results: 3 });
    expect(fuel(m, [0])).toEqual({ consumed: 4, results: 9 });
  });

  it('if without else, condition false, charges the test and the if only', () => {
    const m = mod('(param i32) (if (local.get 0) (then (drop (i32.const 1)) (drop (i32.const 2))))');
    expect(fuel(m, [1]).consumed).toBe(5);
    expect(fuel(m, [0]).consumed).toBe(3);
  });

  it('try, catch and catch_all are free; throw costs 1', () => {
    const tag = '(tag $e (param i32)) (tag $e0)';
    expect(fuel(mod('(result i32) (try (result i32) (do (throw $e (i32.const 5))) (catch $e))', tag))).toEqual({ consumed: 3, results: 5 });
    expect(fuel(mod('(result i32) (try (result i32) (do (throw $e (i32.const 5))) (catch $e (i32.const 1) (i32.add)))', tag))).toEqual({
      consumed: 5,
      results: 6,
    });
    expect(fuel(mod('(try (do (throw $e0)) (catch_all))', tag)).consumed).toBe(2);
    expect(fuel(mod('(try (do (nop)) (catch_all (drop (i32.const 1))))', tag)).consumed).toBe(1);
  });

  it('delegate is free', () => {
    const m = mod('(try (do (try (do (throw $e0)) (delegate 0))) (catch_all))', '(tag $e0)');
    expect(fuel(m).consumed).toBe(2);
  });
});

describe('metering: control flow is charged per operator actually executed', () => {
  it('br costs 1 and skips the rest of its block', () => {
    expect(fuel(mod('(block $b (br $b) (drop (i32.add (i32.const 1) (i32.const 2))))')).consumed).toBe(2);
  });

  it('br_if costs 1 whether taken or not; not taken runs the fall-through', () => {
    const m = mod('(param i32) (result i32) (block (br_if 0 (local.get 0)) (nop) (drop (i32.const 1))) (i32.const 7)');
    expect(fuel(m, [1])).toEqual({ consumed: 4, results: 7 });
    expect(fuel(m, [0])).toEqual({ consumed: 5, results: 7 });
  });

  it('br_table costs 1 whichever target it takes', () => {
    const m = mod(`(param i32) (result i32)
      (block (block (block (br_table 0 1 2 (local.get 0))) (return (i32.const 10))) (return (i32.const 11)))
      (i32.const 12)`);
    expect(fuel(m, [0])).toEqual({ consumed: 4, results: 10 });
    expect(fuel(m, [1])).toEqual({ consumed: 4, results: 11 });
    expect(fuel(m, [2])).toEqual({ consumed: 4, results: 12 });
    expect(fuel(m, [99])).toEqual({ consumed: 4, results: 12 });
  });

  it('a loop is charged for every iteration: sum(n) costs 13n + 6', () => {
    const m = wat(`(module ${SUM_LOOP})`);
    for (const n of [0, 1, 2, 10, 1000]) {
      const r = runMetered(m, { fn: 'sum', args: [n] });
      expect(r.trap).toBeNull();
      expect(r.results).toBe(n === 0 ? 0 : (n * (n - 1)) / 2);
      expect(r.consumed).toBe(sumCost(n));
    }
  });

  it('a countdown loop of 10 iterations costs entry + setup + iterations x operators (63, and 53 with local.tee)', () => {
    const m = mod(`(local i32)
      (local.set 0 (i32.const 10))
      (loop $l
        (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
        (br_if $l (local.get 0)))`);
    // setup: const, set (2); per iteration: get, const, sub, set, get, br_if (6): 1 + 2 + 60
    expect(fuel(m).consumed).toBe(63);
    // fuel.wast's shape, with local.tee: 5 per iteration, 1 + 2 + 50
    const five = mod(`(local i32)
      (local.set 0 (i32.const 10))
      (loop $l
        (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))
        (br_if $l))`);
    expect(fuel(five).consumed).toBe(53);
  });

  it('a call charges 1 for the call and the callee its own entry and body', () => {
    const m = wat(`(module
      (func $c (result i32) (i32.const 3))
      (func (export "f") (result i32) (i32.add (call $c) (i32.const 1))))`);
    // caller: entry, call, const, add = 4; callee: entry, const = 2
    expect(fuel(m)).toEqual({ consumed: 6, results: 4 });
  });

  it('recursion is charged per level: fac(n) costs 10n + 5', () => {
    const m = wat(`(module
      (func $fac (export "f") (param i64) (result i64)
        (if (result i64) (i64.eqz (local.get 0))
          (then (i64.const 1))
          (else (i64.mul (local.get 0) (call $fac (i64.sub (local.get 0) (i64.const 1))))))))`);
    expect(fuel(m, [0n])).toEqual({ consumed: 5, results: 1n });
    expect(fuel(m, [5n])).toEqual({ consumed: 55, results: 120n });
    expect(fuel(m, [20n])).toEqual({ consumed: 205, results: 2432902008176640000n });
  });

  it('call_indirect costs 1 plus the callee', () => {
    const m = wat(`(module
      (type $t (func (param i32) (result i32)))
      (table funcref (elem $dbl $inc))
      (func $dbl (type $t) (i32.mul (local.get 0) (i32.const 2)))
      (func $inc (type $t) (i32.add (local.get 0) (i32.const 1)))
      (func (export "f") (param i32 i32) (result i32) (call_indirect (type $t) (local.get 1) (local.get 0))))`);
    // caller: entry, 2 gets, call_indirect = 4; callee: entry, get, const, op = 4
    expect(fuel(m, [0, 21])).toEqual({ consumed: 8, results: 42 });
    expect(fuel(m, [1, 41])).toEqual({ consumed: 8, results: 42 });
  });

  it('a call_indirect that traps on a null entry is charged up to the call', () => {
    const m = wat(`(module (table 2 funcref) (func (export "f") (call_indirect (i32.const 1))))`);
    const r = runMetered(m, { fn: 'f' });
    expect(r.trap).toBeInstanceOf(WebAssembly.RuntimeError);
    expect(r.exhausted).toBe(false);
    expect(r.consumed).toBe(3);
  });

  it('return_call costs 1 plus the callee', () => {
    const m = wat(`(module
      (func $c (result i32) (i32.const 3))
      (func (export "f") (result i32) (return_call $c)))`);
    expect(fuel(m)).toEqual({ consumed: 4, results: 3 });
  });

  it('the start function is charged (entry + body) and runs exactly once', () => {
    const m = wat(`(module
      (global $n (mut i32) (i32.const 0))
      (func $s (global.set $n (i32.add (global.get $n) (i32.const 1))))
      (start $s)
      (func (export "f") (result i32) (global.get $n)))`);
    // start: entry, get, const, add, set = 5; f: entry, get = 2
    expect(fuel(m)).toEqual({ consumed: 7, results: 1 });
  });

  it('instantiating the metered module does not run the start function; the host does', () => {
    const m = wat(`(module
      (global $n (export "n") (mut i32) (i32.const 0))
      (func $s (global.set $n (i32.const 7)))
      (start $s))`);
    const { res, instance, guest } = instantiateMetered(m, { fuel: 1000n });
    expect(res.layout.start).toBe(true);
    expect((instance.exports.n as WebAssembly.Global).value).toBe(0);
    guest.call(null, []);
    expect((instance.exports.n as WebAssembly.Global).value).toBe(7);
    // entry, i32.const, global.set
    expect(guest.consumed()).toBe(3n);
  });
});

describe('metering: bulk operations charge per unit, checked before they run', () => {
  const memFill = mod('(param i32) (memory.fill (i32.const 0) (i32.const 0xab) (local.get 0))', '(memory 2)');

  it(`memory.fill of n bytes costs base + n * ${PER['memory.fill']}`, () => {
    for (const n of [0, 1, 1000, 65536, 131072]) {
      const r = runMetered(memFill, { fn: 'f', args: [n] });
      expect(r.trap).toBeNull();
      // entry 1 + 3 operands + memory.fill 1
      expect(r.consumed).toBe(5 + n * PER['memory.fill']);
      if (n > 0) expect(new Uint8Array(r.memory!.buffer)[n - 1]).toBe(0xab);
    }
  });

  it(`memory.copy of n bytes costs base + n * ${PER['memory.copy']}`, () => {
    const m = mod('(param i32) (memory.copy (i32.const 100000) (i32.const 0) (local.get 0))', '(memory 2) (data (i32.const 0) "hello")');
    for (const n of [0, 5, 30000]) {
      const r = runMetered(m, { fn: 'f', args: [n] });
      expect(r.trap).toBeNull();
      expect(r.consumed).toBe(5 + n * PER['memory.copy']);
    }
    const r = runMetered(m, { fn: 'f', args: [5] });
    expect(Buffer.from(new Uint8Array(r.memory!.buffer, 100000, 5)).toString()).toBe('hello');
  });

  it(`memory.init of n bytes costs base + n * ${PER['memory.init']}; data.drop costs 1`, () => {
    const m = mod('(param i32) (memory.init $d (i32.const 16) (i32.const 0) (local.get 0)) (data.drop $d)', '(memory 1) (data $d "0123456789")');
    for (const n of [0, 4, 10]) {
      const r = runMetered(m, { fn: 'f', args: [n] });
      expect(r.trap).toBeNull();
      // entry 1 + 3 operands + memory.init 1 + data.drop 1
      expect(r.consumed).toBe(6 + n * PER['memory.init']);
    }
  });

  it(`memory.grow of k pages costs base + k * ${PER['memory.grow']} and returns the old size`, () => {
    const m = mod('(param i32) (result i32) (memory.grow (local.get 0))', '(memory 1 10)');
    for (const k of [0, 1, 3, 9]) {
      const r = runMetered(m, { fn: 'f', args: [k] });
      expect(r.trap).toBeNull();
      expect(r.results).toBe(1);
      expect(r.consumed).toBe(3 + k * PER['memory.grow']);
      expect(r.memory!.buffer.byteLength).toBe((1 + k) * 65536);
    }
  });

  it('a memory.grow that fails (past the maximum) charges only its base and returns -1, even on a small budget', () => {
    const m = mod('(param i32) (result i32) (memory.grow (local.get 0))', '(memory 1 10)');
    for (const k of [10, 1000, 65536, -1]) {
      const big = runMetered(m, { fn: 'f', args: [k] });
      expect(big.results).toBe(-1);
      expect(big.consumed).toBe(3);
      const small = runMetered(m, { fn: 'f', args: [k], fuel: 10 });
      expect(small.trap).toBeNull();
      expect(small.exhausted).toBe(false);
      expect(small.results).toBe(-1);
      expect(small.consumed).toBe(3);
      expect(small.memory!.buffer.byteLength).toBe(65536);
    }
  });

  it('a memory.grow refused by the host memory limit (not the module maximum) also charges only its base', () => {
    const m = mod('(param i32) (result i32) (memory.grow (local.get 0))', '(memory 1)');
    const r = runMetered(m, { fn: 'f', args: [8], fuel: 100, memoryLimitPages: 4 });
    expect(r.results).toBe(-1);
    expect(r.exhausted).toBe(false);
    expect(r.consumed).toBe(3);
  });

  it(`table.grow of k elements costs base + k * ${PER['table.grow']}`, () => {
    const m = mod('(param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))', '(table $t 1 funcref)');
    for (const k of [0, 1, 500]) {
      const r = runMetered(m, { fn: 'f', args: [k] });
      expect(r.trap).toBeNull();
      expect(r.results).toBe(1);
      // entry 1 + ref.null, local.get 2 + table.grow 1
      expect(r.consumed).toBe(4 + k * PER['table.grow']);
    }
  });

  it('a table.grow past the table cap (or by 0xffffffff) returns -1 and charges only its base, even on a small budget', () => {
    const m = mod('(param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))', '(table $t 1 funcref)');
    for (const k of [1000, -1]) {
      const r = runMetered(m, { fn: 'f', args: [k], fuel: 100, maxTableElements: 1000 });
      expect(r.trap).toBeNull();
      expect(r.exhausted).toBe(false);
      expect(r.results).toBe(-1);
      expect(r.consumed).toBe(4);
    }
  });

  it(`table.fill, table.copy and table.init of n elements cost base + n per element; table.size and elem.drop cost 1`, () => {
    const extra = '(table $t 100 funcref) (func $g) (elem $e func $g $g $g $g $g $g $g $g)';
    const fill = mod('(param i32) (table.fill $t (i32.const 0) (ref.func $g) (local.get 0))', extra);
    const copy = mod('(param i32) (table.copy $t $t (i32.const 50) (i32.const 0) (local.get 0))', extra);
    const init = mod('(param i32) (table.init $t $e (i32.const 0) (i32.const 0) (local.get 0)) (elem.drop $e) (drop (table.size $t))', extra);
    for (const n of [0, 3, 8]) {
      expect(fuel(fill, [n]).consumed).toBe(5 + n * PER['table.fill']);
      expect(fuel(copy, [n]).consumed).toBe(5 + n * PER['table.copy']);
      // + elem.drop 1 + table.size 1
      expect(fuel(init, [n]).consumed).toBe(7 + n * PER['table.init']);
    }
  });

  it('a bulk operation over its budget never starts: memory.fill with one unit too few leaves memory untouched', () => {
    const n = 1000;
    const need = 5 + n * PER['memory.fill'];
    const short = runMetered(memFill, { fn: 'f', args: [n], fuel: need - 1 });
    expect(short.exhausted).toBe(true);
    expect(short.trap).not.toBeNull();
    expect(short.consumed).toBe(need - 1);
    expect(new Uint8Array(short.memory!.buffer).some((b) => b !== 0)).toBe(false);
    const exact = runMetered(memFill, { fn: 'f', args: [n], fuel: need });
    expect(exact.trap).toBeNull();
    expect(exact.exhausted).toBe(false);
    expect(exact.consumed).toBe(need);
  });

  it('a memory.grow over its budget ends the run as fuel exhausted; exactly enough completes', () => {
    const m = mod('(param i32) (result i32) (memory.grow (local.get 0))', '(memory 1 10)');
    const need = 3 + 2 * PER['memory.grow'];
    const short = runMetered(m, { fn: 'f', args: [2], fuel: need - 1 });
    expect(short.exhausted).toBe(true);
    expect(short.trap).toBeInstanceOf(WebAssembly.RuntimeError);
    expect(short.results).toBeUndefined();
    expect(short.consumed).toBe(need - 1);
    const exact = runMetered(m, { fn: 'f', args: [2], fuel: need });
    expect(exact.exhausted).toBe(false);
    expect(exact.results).toBe(1);
    expect(exact.consumed).toBe(need);
    expect(exact.memory!.buffer.byteLength).toBe(3 * 65536);
  });
});

describe('metering: a bulk operation that traps out of bounds charges only its base', () => {
  const cases: Array<[string, string, string, RegExp]> = [
    ['memory.fill past the end', '(memory.fill (i32.const 65530) (i32.const 1) (i32.const 1000000))', '(memory 1)', /out of bounds/],
    ['memory.fill at an offset past the end, length 0', '(memory.fill (i32.const 65537) (i32.const 1) (i32.const 0))', '(memory 1)', /out of bounds/],
    ['memory.copy from past the end', '(memory.copy (i32.const 0) (i32.const 60000) (i32.const 1000000))', '(memory 1)', /out of bounds/],
    ['memory.copy to past the end', '(memory.copy (i32.const 65000) (i32.const 0) (i32.const 1000))', '(memory 1)', /out of bounds/],
    ['memory.init past the data segment', '(memory.init $d (i32.const 0) (i32.const 0) (i32.const 1000000))', '(memory 1) (data $d "abc")', /out of bounds/],
    ['table.fill past the end', '(table.fill $t (i32.const 5) (ref.null func) (i32.const 1000000))', '(table $t 10 funcref)', /out of bounds/],
    ['table.copy past the end', '(table.copy $t $t (i32.const 0) (i32.const 5) (i32.const 1000000))', '(table $t 10 funcref)', /out of bounds/],
    ['table.init past the segment', '(table.init $t $e (i32.const 0) (i32.const 0) (i32.const 1000000))', '(table $t 10 funcref) (func $g) (elem $e func $g)', /out of bounds/],
    // The destination range fits; only the source segment is too short.
    ['memory.init reading past the end of its segment', '(memory.init $d (i32.const 0) (i32.const 1) (i32.const 1000))', '(memory 1) (data $d "abc")', /out of bounds/],
    ['table.init reading past the end of its segment', '(table.init $t $e (i32.const 0) (i32.const 0) (i32.const 500))', '(table $t 1000 funcref) (func $g) (elem $e func $g)', /out of bounds/],
    // An active segment is dropped once the module is instantiated: its length is then 0.
    ['memory.init from an active (already dropped) segment', '(memory.init $d (i32.const 0) (i32.const 0) (i32.const 1000))', `(memory 1) (data $d (i32.const 0) "${'x'.repeat(1000)}")`, /out of bounds/],
    ['table.init from an active (already dropped) segment', '(table.init $t $e (i32.const 0) (i32.const 0) (i32.const 500))', `(table $t 1000 funcref) (func $g) (elem $e (i32.const 0) func ${'$g '.repeat(500)})`, /out of bounds/],
  ];
  for (const [name, op, extra, message] of cases) {
    it(`${name}: traps out of bounds (not fuel exhaustion) on a 100-fuel budget, charged 5`, () => {
      const r = runMetered(mod(op, extra), { fn: 'f', fuel: 100 });
      expect(r.trap).toBeInstanceOf(WebAssembly.RuntimeError);
      expect(r.trap!.message).toMatch(message);
      expect(r.exhausted).toBe(false);
      // entry 1 + 3 operands + the operator's base 1
      expect(r.consumed).toBe(5);
    });
  }
});

describe('metering: a bulk operation on a dropped segment', () => {
  it('memory.init after data.drop traps out of bounds (not fuel exhaustion), charged only base', () => {
    const m = mod('(data.drop $d) (memory.init $d (i32.const 0) (i32.const 0) (i32.const 1000))', `(memory 1) (data $d "${'x'.repeat(1000)}")`);
    const r = runMetered(m, { fn: 'f', fuel: 100 });
    expect(r.trap?.message).toMatch(/out of bounds/);
    expect(r.exhausted).toBe(false);
    // entry 1 + data.drop 1 + 3 operands + memory.init 1
    expect(r.consumed).toBe(6);
  });

  it('table.init after elem.drop traps out of bounds (not fuel exhaustion), charged only base', () => {
    const m = mod(`(elem.drop $e) (table.init $t $e (i32.const 0) (i32.const 0) (i32.const 500))`, `(table $t 1000 funcref) (func $g) (elem $e func ${'$g '.repeat(500)})`);
    const r = runMetered(m, { fn: 'f', fuel: 100 });
    expect(r.trap?.message).toMatch(/out of bounds/);
    expect(r.exhausted).toBe(false);
    expect(r.consumed).toBe(6);
  });
});

describe('metering: exhaustion', () => {
  const sum = wat(`(module ${SUM_LOOP})`);

  it('a budget of exactly the needed fuel completes; one less is exhausted', () => {
    for (const n of [0, 1, 10, 100]) {
      const need = sumCost(n);
      const exact = runMetered(sum, { fn: 'sum', args: [n], fuel: need });
      expect(exact.trap).toBeNull();
      expect(exact.exhausted).toBe(false);
      expect(exact.consumed).toBe(need);
      const short = runMetered(sum, { fn: 'sum', args: [n], fuel: need - 1 });
      expect(short.exhausted).toBe(true);
      expect(short.consumed).toBe(need - 1);
    }
  });

  it('straight-line code that overspends a budget is exhausted even without a check after it', () => {
    const m = mod('(result i32) i32.const 1 i32.const 2 i32.add');
    expect(runMetered(m, { fn: 'f', fuel: 4 }).exhausted).toBe(false);
    const short = runMetered(m, { fn: 'f', fuel: 3 });
    expect(short.exhausted).toBe(true);
    expect(short.consumed).toBe(3);
  });

  it('the reported fuel never exceeds the limit, for every budget from 1 to past the need', () => {
    const n = 12;
    const need = sumCost(n);
    const fac = wat(`(module
      (func $fac (export "f") (param i64) (result i64)
        (if (result i64) (i64.eqz (local.get 0))
          (then (i64.const 1))
          (else (i64.mul (local.get 0) (call $fac (i64.sub (local.get 0) (i64.const 1))))))))`);
    for (let limit = 1; limit <= need + 5; limit++) {
      const r = runMetered(sum, { fn: 'sum', args: [n], fuel: limit });
      expect(r.consumed).toBeLessThanOrEqual(limit);
      expect(r.exhausted).toBe(limit < need);
      if (!r.exhausted) expect(r.consumed).toBe(need);
    }
    for (let limit = 1; limit <= 110; limit++) {
      const r = runMetered(fac, { fn: 'f', args: [10n], fuel: limit });
      expect(r.consumed).toBeLessThanOrEqual(limit);
      expect(r.exhausted).toBe(limit < 105);
    }
  });

  it('an infinite loop runs out of fuel instead of running forever', () => {
    const r = runMetered(mod('(loop $l (br $l))'), { fn: 'f', fuel: 10_000 });
    expect(r.exhausted).toBe(true);
    expect(r.trap).toBeInstanceOf(WebAssembly.RuntimeError);
    expect(r.consumed).toBe(10_000);
  });

  it('an infinite loop in the start function runs out of fuel', () => {
    const m = wat('(module (func $s (loop $l (br $l))) (start $s) (func (export "f") (result i32) (i32.const 1)))');
    const r = runMetered(m, { fn: 'f', fuel: 10_000 });
    expect(r.exhausted).toBe(true);
    expect(r.results).toBeUndefined();
  });

  it('unbounded recursion runs out of fuel before the stack does on a small budget', () => {
    const m = wat('(module (func $f (export "f") (call $f)))');
    const r = runMetered(m, { fn: 'f', fuel: 5_000 });
    expect(r.exhausted).toBe(true);
    expect(r.trap).toBeInstanceOf(WebAssembly.RuntimeError);
  });

  it('a guest try/catch_all cannot catch fuel exhaustion', () => {
    const m = wat(`(module
      (tag $e)
      (func $spin (loop $l (br $l)))
      (func (export "f") (result i32)
        (try (result i32) (do (loop $l (br $l)) (i32.const 0)) (catch_all (i32.const 42))))
      (func (export "g") (result i32)
        (try (result i32) (do (call $spin) (i32.const 0)) (catch_all (i32.const 42))))
      (func (export "h") (result i32)
        (try (result i32) (do (throw $e)) (catch_all (i32.const 42)))))`);
    for (const fn of ['f', 'g']) {
      const r = runMetered(m, { fn, fuel: 1_000 });
      expect(r.results).toBeUndefined();
      expect(r.trap).toBeInstanceOf(WebAssembly.RuntimeError);
      expect(r.exhausted).toBe(true);
    }
    // The handler itself works: a real exception is caught.
    expect(runMetered(m, { fn: 'h', fuel: 1_000 }).results).toBe(42);
  });
});

describe('metering: traps', () => {
  it('a trap after some work reports the work done before it', () => {
    const m = wat(`(module ${SUM_LOOP}
      (func (export "f") (param $n i32) (result i32)
        (drop (call $sum (local.get $n)))
        (i32.div_s (i32.const 1) (i32.const 0))))`);
    const n = 100;
    const r = runMetered(m, { fn: 'f', args: [n] });
    expect(r.trap?.message).toMatch(/divide by zero/);
    expect(r.exhausted).toBe(false);
    // entry, local.get, call = 3; the callee in full; then at most const, const, div_s
    const before = 3 + sumCost(n);
    expect(r.consumed).toBeGreaterThanOrEqual(before);
    expect(r.consumed).toBeLessThanOrEqual(before + 3);
  });

  it('a trap inside a loop reports every completed iteration', () => {
    // Stores 4 bytes at i*4096 for i = 0, 1, ...: the 17th store (i = 16) is out of bounds of 1 page.
    const m = mod(
      `(local $i i32)
       (loop $l
         (i32.store (i32.mul (local.get $i) (i32.const 4096)) (local.get $i))
         (local.set $i (i32.add (local.get $i) (i32.const 1)))
         (br $l))`,
      '(memory 1)',
    );
    const r = runMetered(m, { fn: 'f' });
    expect(r.trap?.message).toMatch(/memory access out of bounds/);
    // per iteration: get, const, mul, get, store (5) + get, const, add, set (4) + br (1) = 10
    expect(r.consumed).toBeGreaterThanOrEqual(1 + 16 * 10);
    expect(r.consumed).toBeLessThanOrEqual(1 + 16 * 10 + 5);
  });
});

describe('metering: the cost table is data', () => {
  it('a custom table changes every charge accordingly (entry 10, operator 2, memory.fill 3 per byte)', () => {
    const costs = { ...DEFAULT_COSTS, functionEntry: 10, operator: 2, perUnit: { ...DEFAULT_COSTS.perUnit, 'memory.fill': 3 } };
    const add = runMetered(mod('(result i32) i32.const 1 i32.const 2 i32.add'), { fn: 'f', costs });
    expect(add.consumed).toBe(10 + 3 * 2);
    const fill = runMetered(mod('(param i32) (memory.fill (i32.const 0) (i32.const 1) (local.get 0)) nop', '(memory 1)'), { fn: 'f', args: [100], costs });
    expect(fill.consumed).toBe(10 + 4 * 2 + 100 * 3);
  });

  it('the default table is wasmtime\'s: entry 1, operator 1, and exactly these free operators', () => {
    expect(DEFAULT_COSTS.functionEntry).toBe(1);
    expect(DEFAULT_COSTS.operator).toBe(1);
    expect([...DEFAULT_COSTS.free].sort()).toEqual(
      ['block', 'catch', 'catch_all', 'delegate', 'drop', 'else', 'end', 'loop', 'nop', 'return', 'try', 'unreachable'].sort(),
    );
  });
});

describe('metering: direct calls pass the count as a parameter (threaded copies)', () => {
  /** The instrumented module's function types by index, from V8 (via a name-free round trip). */
  const exportTypes = (bytes: Uint8Array): string[] =>
    WebAssembly.Module.exports(new WebAssembly.Module(bytes as BufferSource)).map((e) => `${e.name}:${e.kind}`);

  it('a directly called function gets a copy with an i64 count parameter and result; a function only exported does not', () => {
    const threaded = (src: string): string[] => {
      const { bytes } = instrument(wat(src), { maxTableElements: 100 });
      const m = parseModule(bytes);
      return m.types.filter((t) => t.params.at(-1) === 'i64' && t.results.at(-1) === 'i64').map((t) => `${t.params.join(',')}->${t.results.join(',')}`);
    };
    expect(threaded(`(module (func $g (param f64) (result f32) (f32.demote_f64 (local.get 0)))
      (func (export "f") (result f32) (call $g (f64.const 1))))`)).toEqual(['f64,i64->f32,i64']);
    expect(threaded(`(module (func $g (export "g") (param f64) (result f32) (f32.demote_f64 (local.get 0))))`)).toEqual([]);
  });

  it('a trap at the bottom of a deep direct recursion reports every level above it exactly', () => {
    const m = wat(`(module
      (func $down (param i32)
        (if (i32.eqz (local.get 0)) (then (unreachable)))
        (call $down (i32.sub (local.get 0) (i32.const 1))))
      (func (export "f") (param i32) (call $down (local.get 0))))`);
    for (const n of [0, 1, 10, 1000]) {
      const r = runMetered(m, { fn: 'f', args: [n] });
      expect(r.trap?.message).toMatch(/unreachable/);
      expect(r.exhausted).toBe(false);
      // f: entry, get, call = 3; each level above the bottom: entry, get, eqz, if, get, const, sub,
      // call = 8; the bottom: entry, get, eqz, if = 4 (unreachable is free)
      expect(r.consumed).toBe(3 + 8 * n + 4);
    }
  });

  it('a trap after a direct call returns includes the whole callee', () => {
    const m = wat(`(module ${SUM_LOOP}
      (func $work (param i32) (result i32) (call $sum (local.get 0)))
      (func (export "f") (param i32) (result i32)
        (drop (call $work (local.get 0)))
        (call $work (i32.const 5))
        (unreachable)))`);
    const n = 50;
    const r = runMetered(m, { fn: 'f', args: [n] });
    expect(r.trap?.message).toMatch(/unreachable/);
    // f: entry, get, call, drop, const, call = 6 (drop is free: 5); $work: entry, get, call = 3 each
    expect(r.consumed).toBe(5 + (3 + sumCost(n)) + (3 + sumCost(5)));
  });

  it('a function reached by a direct call, its export, call_indirect and ref.func gives one result and one count', () => {
    const m = wat(`(module
      (type $t (func (param i32) (result i32)))
      (table $tab 1 funcref)
      (elem (table $tab) (i32.const 0) func $tri)
      (elem declare func $tri)
      (func $tri (export "tri") (type $t)
        (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
          (else (i32.add (local.get 0) (call $tri (i32.sub (local.get 0) (i32.const 1)))))))
      (func (export "direct") (param i32) (result i32) (call $tri (local.get 0)))
      (table $late 1 funcref)
      (func (export "indirect") (param i32) (result i32) (call_indirect $tab (type $t) (local.get 0) (i32.const 0)))
      (func (export "byref") (param i32) (result i32)
        (table.set $late (i32.const 0) (ref.func $tri))
        (call_indirect $late (type $t) (local.get 0) (i32.const 0))))`);
    const own = runMetered(m, { fn: 'tri', args: [100] });
    expect(own.results).toBe(5050);
    const tri = own.consumed;
    // tri(n): n levels of entry, get, eqz, if, get, get, const, sub, call, add (10) and the last
    // level's entry, get, eqz, if, const (5)
    expect(tri).toBe(10 * 100 + 5);
    // each caller: entry, get, call = 3; call_indirect adds its index const; byref its const,
    // ref.func and table.set
    expect(runMetered(m, { fn: 'direct', args: [100] })).toMatchObject({ results: 5050, consumed: tri + 3 });
    expect(runMetered(m, { fn: 'indirect', args: [100] })).toMatchObject({ results: 5050, consumed: tri + 4 });
    expect(runMetered(m, { fn: 'byref', args: [100] })).toMatchObject({ results: 5050, consumed: tri + 7 });
  });

  it('the instrumented module exports exactly what the original does, with the same types', () => {
    const src = `(module
      (func $h (param i32 i64) (result i64) (i64.add (local.get 1) (i64.extend_i32_u (local.get 0))))
      (func (export "a") (param i32 i64) (result i64) (call $h (local.get 0) (local.get 1)))
      (export "h" (func $h)))`;
    const original = wat(src);
    const { bytes } = instrument(original, { maxTableElements: 100 });
    expect(exportTypes(bytes)).toEqual(exportTypes(original));
    expect(runMetered(original, { fn: 'h', args: [2, 40n] }).results).toBe(42n);
    expect(runMetered(original, { fn: 'a', args: [2, 40n] }).results).toBe(42n);
  });

  it('results, branches to the function label and multi-value results survive threading, charged as through call_indirect', () => {
    // The same callees, once reached by `call` (threaded) and once by call_indirect (not): the
    // counts must differ by exactly the index operand of each call_indirect.
    const callees = `
      (type $pair (func (param i32) (result i32 i64)))
      (type $one (func (param i32) (result i32)))
      (func $pair (type $pair) (param i32) (result i32 i64) (local $x i64) (local $y f64)
        (local.set $x (i64.extend_i32_s (local.get 0)))
        (local.set $y (f64.convert_i32_s (local.get 0)))
        (br_if 0 (i32.const 7) (local.get $x) (i32.lt_s (local.get 0) (i32.const 0)))
        (drop) (drop)
        (i32.trunc_f64_s (f64.mul (local.get $y) (f64.const 2))) (i64.mul (local.get $x) (local.get $x)))
      (func $sel (type $one) (param i32) (result i32)
        (block $a (result i32)
          (block $b (result i32) (br_table $a $b 2 (i32.const 10) (local.get 0)))
          (return (i32.add (i32.const 1))))
        (i32.add (i32.const 100)))
      (func $early (type $one) (param i32) (result i32)
        (if (i32.gt_s (local.get 0) (i32.const 5)) (then (br 1 (i32.const 99))))
        (i32.add (local.get 0) (i32.const 1)))`;
    const direct = wat(`(module ${callees}
      (func (export "pair") (param i32) (result i32 i64) (call $pair (local.get 0)))
      (func (export "sel") (param i32) (result i32) (call $sel (local.get 0)))
      (func (export "early") (param i32) (result i32) (call $early (local.get 0))))`);
    const indirect = wat(`(module ${callees}
      (table funcref (elem $pair $sel $early))
      (func (export "pair") (param i32) (result i32 i64) (call_indirect (type $pair) (local.get 0) (i32.const 0)))
      (func (export "sel") (param i32) (result i32) (call_indirect (type $one) (local.get 0) (i32.const 1)))
      (func (export "early") (param i32) (result i32) (call_indirect (type $one) (local.get 0) (i32.const 2))))`);
    const cases: Array<[string, number, unknown]> = [
      ['pair', -3, [7, -3n]],
      ['pair', 4, [8, 16n]],
      ['sel', 0, 110],
      ['sel', 1, 11],
      ['sel', 9, 10],
      ['early', 3, 4],
      ['early', 6, 99],
    ];
    for (const [fn, arg, expected] of cases) {
      const d = runMetered(direct, { fn, args: [arg] });
      const i = runMetered(indirect, { fn, args: [arg] });
      expect(d.trap, `${fn}(${arg})`).toBeNull();
      if (expected !== undefined) expect(d.results, `${fn}(${arg})`).toEqual(expected);
      expect(d.results, `${fn}(${arg})`).toEqual(i.results);
      expect(d.consumed, `${fn}(${arg})`).toBe(i.consumed - 1);
    }
  });

  it('tail calls between threaded functions stay tail calls: a million-deep mutual return_call does not exhaust the stack', () => {
    const m = wat(`(module
      (func $even (param i32) (result i32)
        (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 1))
          (else (return_call $odd (i32.sub (local.get 0) (i32.const 1))))))
      (func $odd (param i32) (result i32)
        (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
          (else (return_call $even (i32.sub (local.get 0) (i32.const 1))))))
      (func (export "f") (param i32) (result i32) (call $even (local.get 0))))`);
    const r = runMetered(m, { fn: 'f', args: [1_000_000] });
    expect(r.trap).toBeNull();
    expect(r.results).toBe(1);
    // f: 3; each step: entry, get, eqz, if, get, const, sub, return_call = 8; the last: entry, get, eqz, if, const = 5
    expect(r.consumed).toBe(3 + 8 * 1_000_000 + 5);
  });

  it('a directly called function that tail-calls through a table keeps its original signature and still runs deep', () => {
    const m = wat(`(module
      (type $t (func (param i32) (result i32)))
      (table funcref (elem $loop))
      (func $loop (type $t)
        (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 42))
          (else (return_call_indirect (type $t) (i32.sub (local.get 0) (i32.const 1)) (i32.const 0)))))
      (func (export "f") (param i32) (result i32) (call $loop (local.get 0))))`);
    const r = runMetered(m, { fn: 'f', args: [1_000_000] });
    expect(r.trap).toBeNull();
    expect(r.results).toBe(42);
    // f: 3; each step: entry, get, eqz, if, get, const, sub, const, return_call_indirect = 9; the last: 5
    expect(r.consumed).toBe(3 + 9 * 1_000_000 + 5);
  });

  it('an exception thrown in a threaded callee and caught by its caller keeps the callee\'s work in the count', () => {
    const m = wat(`(module
      (tag $e (param i32))
      (func $thrower (param i32) (result i32)
        (if (i32.gt_s (local.get 0) (i32.const 0)) (then (throw $e (local.get 0))))
        (i32.const 0))
      (func (export "f") (param i32) (result i32)
        (try (result i32)
          (do (call $thrower (local.get 0)))
          (catch $e (i32.add (i32.const 1000))))))`);
    // f: entry, get, call = 3; $thrower: entry, get, const, gt_s, if = 5, then get, throw = 2;
    // the handler: const, add = 2
    expect(runMetered(m, { fn: 'f', args: [7] })).toMatchObject({ results: 1007, consumed: 3 + 5 + 2 + 2 });
    // not thrown: $thrower's entry, get, const, gt_s, if, const = 6
    expect(runMetered(m, { fn: 'f', args: [0] })).toMatchObject({ results: 0, consumed: 3 + 6 });
  });

  it('a directly called function with many parameters (not threaded) and one with locals of every type are charged alike', () => {
    const params = Array.from({ length: 20 }, () => 'i32').join(' ');
    const sum = Array.from({ length: 19 }, () => 'i32.add').join(' ');
    const gets = Array.from({ length: 20 }, (_, k) => `local.get ${k}`).join(' ');
    const m = wat(`(module
      (func $many (param ${params}) (result i32) ${gets} ${sum})
      (func $locals (param i32) (result i32) (local i64 f32 f64 v128 funcref externref i32)
        (local.set 7 (i32.mul (local.get 0) (i32.const 3)))
        (local.set 1 (i64.const 5))
        (i32.add (local.get 7) (i32.wrap_i64 (local.get 1))))
      (func (export "f") (result i32)
        (i32.add
          (call $many ${Array.from({ length: 20 }, (_, k) => `(i32.const ${k + 1})`).join(' ')})
          (call $locals (i32.const 4)))))`);
    // $many: entry + 20 gets + 19 adds = 40; $locals: entry, get, const, mul, set, const, set, get, get, wrap, add = 11;
    // f: entry, 20 consts, call, const, call, add = 25
    expect(fuel(m)).toEqual({ consumed: 40 + 11 + 25, results: 210 + 17 });
  });
});

describe('metering: where the count is written back (after calls, at loop headers)', () => {
  // A threaded copy hands its count back to its caller without writing it to the global; the
  // caller writes it unless every path from the call reaches another write (a call, a loop
  // header) or leaves the function before anything could trap. And a loop whose body starts with
  // a call, after code that cannot trap, leaves its header's write to that call, and its check to
  // the callee's entry check when the callee has one. These prove the account stays what the
  // contract says in each case.
  const WORK = `${SUM_LOOP}
    (func $work (param i32) (result i32) (call $sum (local.get 0)))`;
  // The caller up to and including the call: entry, get, call = 3; $work: entry, get, call = 3.
  const before = (n: number): number => 3 + 3 + sumCost(n);

  // The functions that trap are themselves called directly (from `run`), so they are threaded
  // copies and call $work's copy; an exported function that no one calls directly would call
  // $work's wrapper, which writes the count itself. `run` adds entry, get, get, call_indirect = 4.
  const RUN = `(type $t (func (param i32) (result i32)))
    (table $tab 8 funcref)
    (func (export "run") (param $n i32) (param $which i32) (result i32)
      (call_indirect $tab (type $t) (local.get $n) (local.get $which)))`;

  it('a trap right after a direct call returns (memory access, division, inside an if, after a forward branch) includes the whole callee', () => {
    const m = wat(`(module (memory 1) ${WORK} ${RUN}
      (elem (table $tab) (i32.const 0) func $call0 $call1 $call2 $call3)
      (func $load (param i32) (result i32)
        (i32.load (i32.add (call $work (local.get 0)) (i32.const 70000))))
      (func $div (param i32) (result i32)
        (i32.div_u (call $work (local.get 0)) (i32.const 0)))
      (func $inif (param i32) (result i32)
        (if (result i32) (call $work (local.get 0))
          (then (i32.div_u (i32.const 1) (i32.const 0)))
          (else (i32.const 0))))
      (func $forward (param i32) (result i32)
        (block $b (drop (call $work (local.get 0))) (br $b))
        (i32.div_u (i32.const 1) (i32.const 0)))
      (func $call0 (param i32) (result i32) (call $load (local.get 0)))
      (func $call1 (param i32) (result i32) (call $div (local.get 0)))
      (func $call2 (param i32) (result i32) (call $inif (local.get 0)))
      (func $call3 (param i32) (result i32) (call $forward (local.get 0))))`);
    const n = 20;
    // run 4, $callK: entry, get, call = 3, then the trapping function up to its call and $work
    // (before). What runs after the return is straight-line code the account may be short by (the
    // if and the br are charged in the local, not yet written; the trapping block never charged).
    const messages = [/out of bounds/, /divide by zero/, /divide by zero/, /divide by zero/];
    messages.forEach((message, which) => {
      const r = runMetered(m, { fn: 'run', args: [n, which] });
      expect(r.trap?.message, `case ${which}`).toMatch(message);
      expect(r.consumed, `case ${which}`).toBe(4 + 3 + before(n));
    });
  });

  it('a callee that returns by return, by br or br_if to its label, or off its end hands back its whole count', () => {
    const m = wat(`(module ${SUM_LOOP} ${RUN}
      (elem (table $tab) (i32.const 0) func $viaRet $viaBr $viaBrIf $viaEnd)
      (func $ret (param i32) (result i32) (return (call $sum (local.get 0))))
      (func $br (param i32) (result i32) (br 0 (call $sum (local.get 0))))
      (func $brif (param i32) (result i32) (drop (br_if 0 (call $sum (local.get 0)) (i32.const 1))) (i32.const 0))
      (func $end (param i32) (result i32) (call $sum (local.get 0)))
      (func $viaRet (param i32) (result i32) (call $trapAfter (call $ret (local.get 0))))
      (func $viaBr (param i32) (result i32) (call $trapAfter (call $br (local.get 0))))
      (func $viaBrIf (param i32) (result i32) (call $trapAfter (call $brif (local.get 0))))
      (func $viaEnd (param i32) (result i32) (call $trapAfter (call $end (local.get 0))))
      (func $trapAfter (param i32) (result i32) (i32.div_u (local.get 0) (i32.const 0))))`);
    const n = 30;
    // run 4; $viaX: entry, get, call = 3, then the callee: entry, get, call = 3 and $sum, plus its
    // way out (return is free, br 1, const and br_if 2, the end free); then $viaX's call = 1
    // ($trapAfter's entry, get, const and div_u are one block, never charged)
    const outs = [0, 1, 2, 0];
    outs.forEach((out, which) => {
      const r = runMetered(m, { fn: 'run', args: [n, which] });
      expect(r.trap?.message, `case ${which}`).toMatch(/divide by zero/);
      expect(r.consumed, `case ${which}`).toBe(4 + 3 + 3 + sumCost(n) + out + 1);
    });
  });

  it('a trap inside a loop that starts with a call reports every completed iteration and the call before it', () => {
    const m = wat(`(module (memory 1)
      (func $leaf (param i32) (result i32) (local.get 0))
      (func $mid (param i32) (result i32) (call $leaf (local.get 0)))
      (func (export "f") (local $i i32)
        (loop $l
          (drop (call $mid (local.get $i)))
          (i32.store (i32.mul (local.get $i) (i32.const 4096)) (local.get $i))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $l))))`);
    const r = runMetered(m, { fn: 'f' });
    expect(r.trap?.message).toMatch(/memory access out of bounds/);
    // per iteration: get, call (2) + $mid: entry, get, call (3) + $leaf: entry, get (2) + get,
    // const, mul, get, store (5) + get, const, add, set (4) + br (1) = 17; the 17th (i = 16) stops at
    // its store, after its call: 2 + 3 + 2
    expect(r.consumed).toBe(1 + 16 * 17 + 7);
  });

  it('a loop whose body starts with a call still runs out of fuel: through a callee that checks, through a leaf, and with a conditional back edge', () => {
    const m = wat(`(module
      (func $leaf (result i32) (i32.const 1))
      (func $mid (result i32) (call $leaf))
      (func (export "viaMid") (loop $l (drop (call $mid)) (br $l)))
      (func (export "viaLeaf") (loop $l (drop (call $leaf)) (br $l)))
      (func (export "viaMidIf") (loop $l (br_if $l (call $mid)))))`);
    for (const fn of ['viaMid', 'viaLeaf', 'viaMidIf']) {
      for (const budget of [1, 10, 1_000, 100_000]) {
        const r = runMetered(m, { fn, fuel: budget });
        expect(r.exhausted, `${fn} ${budget}`).toBe(true);
        expect(r.consumed, `${fn} ${budget}`).toBe(budget);
        // Checked at least once per iteration: never more than one iteration (8 units) over.
        expect(Number(r.rawConsumed) - budget, `${fn} ${budget}`).toBeLessThanOrEqual(8);
      }
    }
  });

  it('leaving the writes out changes no count: completed runs and traps after calls are charged the same with every write kept', () => {
    const m = wat(`(module (memory 1) ${WORK} ${RUN}
      (elem (table $tab) (i32.const 0) func $fibloop $calls $trapAfterCall)
      (func $fibloop (param i32) (result i32) (local i32)
        (block
          (br_if 0 (i32.lt_u (local.get 0) (i32.const 2)))
          (loop
            (local.set 1 (i32.add (call $fibloop (i32.sub (local.get 0) (i32.const 1))) (local.get 1)))
            (br_if 0 (i32.gt_u (local.tee 0 (i32.sub (local.get 0) (i32.const 2))) (i32.const 1)))))
        (i32.add (local.get 0) (local.get 1)))
      (func $calls (param i32) (result i32) (local i32)
        (loop
          (local.set 1 (i32.add (local.get 1) (call $work (local.get 0))))
          (br_if 0 (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))
        (local.get 1))
      (func $trapAfterCall (param i32) (result i32)
        (i32.load (i32.add (call $work (local.get 0)) (i32.const 70000)))))`);
    for (const [which, n] of [[0, 15], [1, 40], [2, 25]] as const) {
      const elided = runMetered(m, { fn: 'run', args: [n, which] });
      const kept = runMetered(m, { fn: 'run', args: [n, which], elideWrites: false });
      expect(elided.results, `case ${which}`).toEqual(kept.results);
      expect(elided.trap?.message, `case ${which}`).toEqual(kept.trap?.message);
      expect(elided.consumed, `case ${which}`).toBe(kept.consumed);
      expect(elided.consumed, `case ${which}`).toBeGreaterThan(100);
    }
    // and the two instrumentations differ (the writes were left out)
    expect(Buffer.compare(Buffer.from(runMetered(m, { fn: 'run', args: [3, 0] }).bytes), Buffer.from(runMetered(m, { fn: 'run', args: [3, 0], elideWrites: false }).bytes))).not.toBe(0);
  });

  it('the loop-header writes are what keeps a trap inside a loop charged for its iterations: without them (the benchmark variant) completed runs cost the same, but the trap loses every iteration', () => {
    const m = wat(`(module (memory 1)
      (func $sum (export "sum") (param $n i32) (result i32) (local $i i32) (local $s i32)
        (loop $l
          (local.set $s (i32.add (local.get $s) (local.get $i)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
        (local.get $s))
      (func (export "sumTwice") (param $n i32) (result i32)
        (i32.add (call $sum (local.get $n)) (call $sum (local.get $n))))
      (func (export "trapAfter") (param $n i32) (local $i i32)
        (loop $l
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (if (i32.eq (local.get $i) (local.get $n)) (then (drop (i32.load (i32.const 70000)))))
          (br $l))))`);
    for (const [fn, n] of [['sum', 1_000], ['sumTwice', 700]] as const) {
      const kept = runMetered(m, { fn, args: [n] });
      const without = runMetered(m, { fn, args: [n], headerWrites: false });
      expect(without.results, fn).toEqual(kept.results);
      expect(without.consumed, fn).toBe(kept.consumed);
      expect(kept.consumed, fn).toBeGreaterThan(5 * n);
    }
    // A budget still stops the loop where it should.
    const small = runMetered(m, { fn: 'sum', args: [1_000_000], fuel: 5_000, headerWrites: false });
    expect(small.exhausted).toBe(true);
    expect(small.consumed).toBe(5_000);
    const kept = runMetered(m, { fn: 'trapAfter', args: [1_000] });
    const without = runMetered(m, { fn: 'trapAfter', args: [1_000], headerWrites: false });
    expect(kept.trap?.message).toMatch(/memory access out of bounds/);
    expect(without.trap?.message).toMatch(/memory access out of bounds/);
    // entry (1), then per iteration get, const, add, set (4) + get, get, eq, if (4) + br (1) = 9
    // (loop and end are free); the 1000th traps inside its if, after its header: the account is
    // exact to that header. Without the header writes nothing was written since the entry.
    expect(kept.consumed).toBe(1 + 999 * 9);
    expect(without.consumed).toBeLessThan(10);
  });

  it('mutual recursion through loops that start with calls runs out of fuel, or out of stack with its account up to the last call', () => {
    const m = wat(`(module
      (func $a (param i32) (loop $l (call $b (i32.add (local.get 0) (i32.const 1))) (br $l)))
      (func $b (param i32) (loop $l (call $a (i32.add (local.get 0) (i32.const 1))) (br $l)))
      (func (export "f") (call $a (i32.const 0))))`);
    const small = runMetered(m, { fn: 'f', fuel: 5_000 });
    expect(small.exhausted).toBe(true);
    expect(small.consumed).toBe(5_000);
    const deep = runMetered(m, { fn: 'f' });
    expect(deep.trap?.name).toBe('RangeError');
    expect(deep.exhausted).toBe(false);
    // f: entry, const, call = 3; every level: entry, get, const, add, call = 5, and the call that
    // overflowed was charged before it was made
    expect((deep.consumed - 3) % 5).toBe(0);
    expect(deep.consumed).toBeGreaterThan(3 + 5 * 1000);
  });
});

describe('metering: the transform preserves behaviour', () => {
  const program = wat(`(module
    (memory (export "mem") 1 4)
    (global $counter (export "counter") (mut i64) (i64.const 0))
    (type $bin (func (param i32 i32) (result i32)))
    (table funcref (elem $add $sub $mul))
    (func $add (type $bin) (i32.add (local.get 0) (local.get 1)))
    (func $sub (type $bin) (i32.sub (local.get 0) (local.get 1)))
    (func $mul (type $bin) (i32.mul (local.get 0) (local.get 1)))
    (func $fib (export "fib") (param i32) (result i32)
      (global.set $counter (i64.add (global.get $counter) (i64.const 1)))
      (if (result i32) (i32.lt_u (local.get 0) (i32.const 2))
        (then (local.get 0))
        (else (i32.add (call $fib (i32.sub (local.get 0) (i32.const 1))) (call $fib (i32.sub (local.get 0) (i32.const 2)))))))
    (func (export "dispatch") (param i32 i32 i32) (result i32)
      (call_indirect (type $bin) (local.get 1) (local.get 2) (i32.rem_u (local.get 0) (i32.const 3))))
    (func (export "classify") (param i32) (result i32)
      (block $c (block $b (block $a (br_table $a $b $c (local.get 0)))
        (return (i32.const 100))) (return (i32.const 200))) (i32.const 300))
    (func (export "swap") (param i64 f64) (result f64 i64) (local.get 1) (local.get 0))
    (func (export "floats") (param f32 f64) (result f64)
      (f64.add (f64.promote_f32 (f32.sqrt (local.get 0))) (f64.nearest (local.get 1))))
    (func (export "paint") (param $n i32) (result i32) (local $i i32) (local $h i32)
      (memory.fill (i32.const 1024) (local.get $n) (i32.const 4096))
      (memory.copy (i32.const 8192) (i32.const 1024) (i32.const 2048))
      (drop (memory.grow (i32.const 1)))
      (loop $l
        (local.set $h (i32.add (i32.mul (local.get $h) (i32.const 31)) (i32.load8_u offset=8192 (local.get $i))))
        (br_if $l (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1))) (i32.const 2048))))
      (i32.store (i32.const 0) (local.get $h))
      (local.get $h))
    (func (export "divide") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1))))`);

  const calls: Array<[string, unknown[]]> = [
    ['fib', [0]],
    ['fib', [1]],
    ['fib', [15]],
    ['dispatch', [0, 6, 7]],
    ['dispatch', [1, 6, 7]],
    ['dispatch', [5, 6, 7]],
    ['classify', [0]],
    ['classify', [1]],
    ['classify', [7]],
    ['swap', [-5n, 2.5]],
    ['floats', [2, 2.5]],
    ['floats', [-1, -0.5]],
    ['paint', [7]],
    ['paint', [255]],
    ['divide', [7, 2]],
    ['divide', [1, 0]],
    ['divide', [-2147483648, -1]],
  ];

  it('every export returns (or traps) the same with and without metering, with the same memory and globals', () => {
    const plain = new WebAssembly.Instance(new WebAssembly.Module(program), {});
    const { instance: metered, memory } = instantiateMetered(program, { fuel: 10n ** 15n });
    const outcome = (inst: WebAssembly.Instance, name: string, args: unknown[]): unknown => {
      try {
        return { ok: (inst.exports[name] as (...a: unknown[]) => unknown)(...args) };
      } catch (err) {
        return { trap: (err as Error).message };
      }
    };
    for (const [name, args] of calls) {
      const a = outcome(plain, name, args);
      const b = outcome(metered, name, args);
      expect(b, `${name}(${args.join(', ')})`).toEqual(a);
      expect((metered.exports.counter as WebAssembly.Global).value).toBe((plain.exports.counter as WebAssembly.Global).value);
    }
    // The metered module's exported memory is the host's imported one.
    expect(metered.exports.mem).toBe(memory);
    const plainMem = new Uint8Array((plain.exports.mem as WebAssembly.Memory).buffer);
    const meteredMem = new Uint8Array(memory!.buffer);
    expect(meteredMem.length).toBe(plainMem.length);
    expect(Buffer.compare(Buffer.from(meteredMem), Buffer.from(plainMem))).toBe(0);
  });

  it('the instrumented module imports its memory, its tables and the table of hidden accessors from "wasmbox" and exports exactly what the guest exported', () => {
    const res = instrument(program, { maxTableElements: 100 });
    expect(res.layout.memory).toEqual({ min: 1, max: 4, shared: false });
    const m = new WebAssembly.Module(res.bytes);
    expect(WebAssembly.Module.imports(m)).toEqual([
      { module: 'wasmbox', name: 'memory', kind: 'memory' },
      { module: 'wasmbox', name: 'table0', kind: 'table' },
      { module: 'wasmbox', name: 'hidden', kind: 'table' },
    ]);
    expect(WebAssembly.Module.exports(m)).toEqual(WebAssembly.Module.exports(new WebAssembly.Module(program)));
  });

  it('a guest export named like a service name is the guest\'s own: nothing is exported beside it', () => {
    const m = wat('(module (func (export "__wasmbox_fuel") (result i32) (i32.const 5)) (func (export "fuel") (result i32) (i32.const 6)))');
    const r = runMetered(m, { fn: '__wasmbox_fuel' });
    expect(r.results).toBe(5);
    expect(r.consumed).toBe(2);
    expect(runMetered(m, { fn: 'fuel' }).results).toBe(6);
    expect(WebAssembly.Module.exports(new WebAssembly.Module(r.bytes)).map((e) => e.name)).toEqual(['__wasmbox_fuel', 'fuel']);
  });
});

describe('metering: a large innermost loop keeps its check inline, and counts the same', () => {
  // A loop of k additions and a store at i * 4096 (out of bounds of one page from i = 16). Per
  // iteration: 4 (the exit test) + 4k (additions) + 5 (store) + 4 (increment) + 1 (br); exit test
  // 4, entry 1, result 1.
  const additions = (k: number): string => Array.from({ length: k }, () => '(local.set $s (i32.add (local.get $s) (i32.const 1)))').join(' ');
  const loopModule = (k: number): Uint8Array =>
    wat(`(module (memory 1)
      (func (export "f") (param $n i32) (result i32) (local $i i32) (local $s i32)
        (block $done
          (loop $l
            (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
            ${additions(k)}
            (i32.store (i32.mul (local.get $i) (i32.const 4096)) (local.get $s))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $l)))
        (local.get $s)))`);
  const perIteration = (k: number): number => 14 + 4 * k;
  const need = (k: number, n: number): number => perIteration(k) * n + 6;
  const LARGE = 200; // about 1,400 bytes of loop body: past INLINE_CHECK_LOOP_BYTES
  const large = loopModule(LARGE);
  /** Loops in the metered module's code (a wrapped loop adds one around the original). */
  const loopsIn = (bytes: Uint8Array): number => {
    const text = watText(instrument(bytes, { maxTableElements: 100 }).bytes);
    return (text.match(/^\s*loop\b/gm) ?? []).length;
  };

  it('is not wrapped, where a small loop is', () => {
    expect(loopsIn(large)).toBe(1);
    expect(loopsIn(loopModule(2))).toBe(2);
  });

  /** The branch hints of the metered module (metadata.code.branch_hint), as hint values per
   *  function index (0: unlikely). */
  const hintsIn = (bytes: Uint8Array): Map<number, number[]> => {
    const out = instrument(bytes, { maxTableElements: 100 }).bytes;
    const hints = new Map<number, number[]>();
    let at = 8;
    const leb = (): number => {
      let v = 0;
      let shift = 0;
      let b: number;
      do {
        b = out[at++]!;
        v += (b & 0x7f) * 2 ** shift;
        shift += 7;
      } while (b & 0x80);
      return v;
    };
    while (at < out.length) {
      const id = out[at++]!;
      const size = leb();
      const end = at + size;
      if (id === 0) {
        const nameLength = leb();
        const name = new TextDecoder().decode(out.subarray(at, at + nameLength));
        at += nameLength;
        if (name === 'metadata.code.branch_hint') {
          for (let fns = leb(); fns > 0; fns--) {
            const fn = leb();
            const values: number[] = [];
            for (let n = leb(); n > 0; n--) {
              leb(); // offset
              leb(); // size of the hint: 1
              values.push(out[at++]!);
            }
            hints.set(fn, values);
          }
        }
      }
      at = end;
    }
    return hints;
  };

  it('its check is the one left without a branch hint: a small loop and a large loop that calls keep theirs', () => {
    // f calls nothing, so its only check is the loop's.
    expect(hintsIn(large).get(0)).toBeUndefined();
    expect(hintsIn(loopModule(2)).get(0)).toEqual([0]);
    const calling = wat(`(module
      (func $g)
      (func (export "f") (param $n i32) (local $i i32) (local $s i32)
        (loop $l
          (call $g)
          ${additions(LARGE)}
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $n))))))`);
    // The entry check (f calls) and the loop's, both "unlikely".
    expect(hintsIn(calling).get(1)).toEqual([0, 0]);
  });

  it('completes on exactly the fuel it needs and is exhausted on any less, at every budget', () => {
    const n = 3;
    const total = need(LARGE, n);
    expect(fuel(large, [n]).consumed).toBe(total);
    expectExactAtEveryBudget(large, [n], total);
  });

  it('runs out of fuel when it does not end', () => {
    const r = runMetered(large, { fn: 'f', args: [-1], fuel: 1_000_000 });
    // i reaches 16 first and the store traps: an endless loop needs no memory access
    expect(r.trap?.message).toMatch(/memory access out of bounds/);
    const endless = mod(`(local $s i32) (loop $l ${additions(LARGE)} (br $l))`);
    const e = runMetered(endless, { fn: 'f', fuel: 1_000_000 });
    expect(e.exhausted).toBe(true);
    expect(e.consumed).toBe(1_000_000);
  });

  it('a trap inside it reports every completed iteration, exactly', () => {
    const r = runMetered(large, { fn: 'f', args: [100] });
    expect(r.trap?.message).toMatch(/memory access out of bounds/);
    // the entry and 16 whole iterations: the count as of the trapping iteration's loop header
    expect(r.consumed).toBe(1 + 16 * perIteration(LARGE));
  });
});

describe('metering: a large loop whose every branch back is a `br` (an interpreter\'s dispatch loop) checks at its back edges', () => {
  // An interpreter's shape: a dispatch (br_table) over three cases, each ending in `br $l`; the
  // loop is left by a `br_if` forward. i counts from 1; case i % 3; case 1 also stores at
  // i * 4096 (out of bounds of one page at i = 16).
  const K = 40; // additions per case: about 900 bytes of loop body, past INLINE_CHECK_LOOP_BYTES
  const additions = Array.from({ length: K }, () => '(local.set $s (i32.add (local.get $s) (i32.const 1)))').join(' ');
  const interpreter = (back: (kase: number) => string): Uint8Array =>
    wat(`(module (memory 1)
      (func (export "f") (param $n i32) (result i32) (local $i i32) (local $s i32)
        (block $done
          (loop $l
            (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (block $c2 (block $c1 (block $c0
              (br_table $c0 $c1 $c2 (i32.rem_u (local.get $i) (i32.const 3))))
              ${additions} ${back(0)})
              ${additions} (i32.store (i32.mul (local.get $i) (i32.const 4096)) (local.get $s)) ${back(1)})
            ${additions} ${back(2)}))
        (local.get $s)))`);
  const plainBack = interpreter(() => '(br $l)');
  // The same loop with one branch back a `br_if` (always taken: its i32.const costs 1 more).
  const conditionalBack = interpreter((kase) => (kase === 2 ? '(br_if $l (i32.const 1))' : '(br $l)'));
  // Per iteration i: exit test 4, increment 4, dispatch 4, the case's additions 4K and its br 1,
  // and case 1's store 5. Then the exit: its test 4 and the result 1; and the entry 1.
  const iteration = (i: number, conditional = false): number => 13 + 4 * K + (i % 3 === 1 ? 5 : 0) + (conditional && i % 3 === 2 ? 1 : 0);
  const need = (n: number, conditional = false): number => {
    let total = 1 + 4 + 1;
    for (let i = 1; i <= n; i++) total += iteration(i, conditional);
    return total;
  };
  /** The metered code's checks (`i64.gt_s` on the count, then the `if` that asks the host), and
   *  what each is followed by after its `end`. */
  const checksIn = (bytes: Uint8Array): string[] => {
    const lines = watText(instrument(bytes, { maxTableElements: 100 }).bytes).split('\n').map((l) => l.trim());
    const after: string[] = [];
    lines.forEach((line, i) => {
      if (line !== 'i64.gt_s' || !lines[i + 1]!.startsWith('if')) return;
      let j = i + 1;
      while (lines[j] !== 'end') j++;
      after.push(lines[j + 1]!.replace(/ .*/, ''));
    });
    return after;
  };

  it('has a check before each of its three `br`s back and none at its header (f is a leaf: no entry check)', () => {
    expect(checksIn(plainBack)).toEqual(['br', 'br', 'br']);
  });

  it('keeps its check at the header when any branch back is conditional (a `br_if`)', () => {
    expect(checksIn(conditionalBack)).toHaveLength(1);
  });

  it('counts the same as by hand, completes on exactly the fuel it needs and is exhausted on any less', () => {
    for (const [bytes, conditional] of [[plainBack, false], [conditionalBack, true]] as const) {
      const n = 5;
      const total = need(n, conditional);
      expect(fuel(bytes, [n]).consumed).toBe(total);
      expectExactAtEveryBudget(bytes, [n], total);
    }
  });

  it('runs out of fuel when it does not end: each iteration passes a check', () => {
    const endless = mod(`(local $s i32) (local $i i32)
      (loop $l
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (block $c1 (block $c0
          (br_table $c0 $c1 (i32.and (local.get $i) (i32.const 1))))
          ${additions} (br $l))
        ${additions} (br $l))`);
    expect(checksIn(endless)).toEqual(['br', 'br']);
    const e = runMetered(endless, { fn: 'f', fuel: 1_000_000 });
    expect(e.exhausted).toBe(true);
    expect(e.consumed).toBe(1_000_000);
  });

  it('a trap inside it reports every completed iteration, exactly: its header still writes the count', () => {
    const r = runMetered(plainBack, { fn: 'f', args: [100] });
    expect(r.trap?.message).toMatch(/memory access out of bounds/);
    // the entry and iterations 1-15: the count as of the trapping iteration's loop header
    let expected = 1;
    for (let i = 1; i <= 15; i++) expected += iteration(i);
    expect(r.consumed).toBe(expected);
  });
});
