import { describe, expect, it } from 'vitest';
import wabtInit from 'wabt';
import {
  decodeArgs,
  encodeResults,
  encodeValue,
  formatSignature,
  unsupportedSignatureReason,
  type FuncSig,
  type ValType,
  type WasmArg,
} from '../src/values/codec.js';

const sig = (params: ValType[], results: ValType[] = []): FuncSig => ({ params, results });

/** Decodes a single argument of the given type; returns the value or throws with the message. */
function decode1(type: ValType, arg: unknown): WasmArg {
  const r = decodeArgs('f', sig([type]), [arg]);
  if (!r.ok) throw new Error(r.message);
  return r.values[0]!;
}
function refusal(type: ValType, arg: unknown): string {
  const r = decodeArgs('f', sig([type]), [arg]);
  if (r.ok) throw new Error(`expected ${JSON.stringify(String(arg))} to be refused as ${type}`);
  return r.message;
}

describe('formatSignature', () => {
  it('prints a single result bare, several in parentheses, and none as ()', () => {
    expect(formatSignature('add', sig(['i32', 'i32'], ['i32']))).toBe('add(i32, i32) -> i32');
    expect(formatSignature('f', sig([]))).toBe('f() -> ()');
    expect(formatSignature('pair', sig(['i64'], ['i32', 'f64']))).toBe('pair(i64) -> (i32, f64)');
  });
});

describe('unsupportedSignatureReason', () => {
  it('accepts signatures using only i32, i64, f32 and f64', () => {
    expect(unsupportedSignatureReason(sig(['i32', 'i64', 'f32', 'f64'], ['f64', 'i64']))).toBeNull();
  });
  it('names an unsupported param or result type', () => {
    expect(unsupportedSignatureReason(sig(['v128']))).toMatch(/takes a v128/);
    expect(unsupportedSignatureReason(sig([], ['externref']))).toBe('returns an externref, which cannot be returned as JSON');
  });
});

describe('decodeArgs: i32', () => {
  it('accepts the signed bounds -2147483648 and 2147483647 unchanged', () => {
    expect(decode1('i32', -2147483648)).toBe(-2147483648);
    expect(decode1('i32', 2147483647)).toBe(2147483647);
  });
  it('wraps unsigned values above 2^31-1 to signed (4294967295 -> -1)', () => {
    expect(decode1('i32', 4294967295)).toBe(-1);
    expect(decode1('i32', 2147483648)).toBe(-2147483648);
    expect(decode1('i32', '4294967295')).toBe(-1);
  });
  it('refuses values outside [-2^31, 2^32-1] as number or string', () => {
    expect(refusal('i32', 4294967296)).toContain('got 4294967296');
    expect(refusal('i32', -2147483649)).toContain('args[0]: expected an i32');
    expect(refusal('i32', '4294967296')).toContain('got "4294967296"');
    expect(refusal('i32', '9'.repeat(1000))).toContain('expected an i32');
  });
  it('accepts decimal strings, including negative and leading zeros', () => {
    expect(decode1('i32', '-5')).toBe(-5);
    expect(decode1('i32', '007')).toBe(7);
  });
  it('turns -0 into 0', () => {
    expect(Object.is(decode1('i32', -0), 0)).toBe(true);
    expect(Object.is(decode1('i32', '-0'), 0)).toBe(true);
  });
  it('refuses floats, non-decimal strings, booleans, null, NaN and objects', () => {
    for (const bad of [1.5, '1.5', 'abc', '+5', ' 5', '0x10', '', true, null, NaN, Infinity, [1], { v: 1 }]) {
      expect(refusal('i32', bad)).toMatch(/^args\[0\]: expected an i32 .*; signature: f\(i32\) -> \(\)$/);
    }
  });
  it('gives the documented message naming index, expectation, value and signature', () => {
    const r = decodeArgs('add', sig(['i32', 'i32'], ['i32']), [1, 'abc']);
    expect(r).toEqual({
      ok: false,
      message:
        'args[1]: expected an i32 (an integer in [-2147483648, 4294967295], as a number or a decimal string), ' +
        'got "abc"; signature: add(i32, i32) -> i32',
    });
  });
});

describe('decodeArgs: i64', () => {
  it('accepts the signed bounds as decimal strings, returning bigint', () => {
    expect(decode1('i64', '-9223372036854775808')).toBe(-9223372036854775808n);
    expect(decode1('i64', '9223372036854775807')).toBe(9223372036854775807n);
  });
  it('wraps unsigned strings at or above 2^63 to signed (18446744073709551615 -> -1n)', () => {
    expect(decode1('i64', '18446744073709551615')).toBe(-1n);
    expect(decode1('i64', '9223372036854775808')).toBe(-9223372036854775808n);
  });
  it('refuses strings outside [-2^63, 2^64-1]', () => {
    expect(refusal('i64', '18446744073709551616')).toContain('expected an i64');
    expect(refusal('i64', '-9223372036854775809')).toContain('expected an i64');
  });
  it('accepts safe-integer numbers up to 9007199254740991 as bigint', () => {
    expect(decode1('i64', 9007199254740991)).toBe(9007199254740991n);
    expect(decode1('i64', -9007199254740991)).toBe(-9007199254740991n);
    expect(decode1('i64', -0)).toBe(0n);
  });
  it('refuses integer numbers beyond 2^53, telling the caller to use a decimal string', () => {
    const msg = refusal('i64', JSON.parse('9007199254740993'));
    expect(msg).toMatch(/^args\[0\]: expected an i64/);
    expect(msg).toContain('i64 values beyond 2^53 must be passed as decimal strings');
    expect(msg).toMatch(/; signature: f\(i64\) -> \(\)$/);
  });
  it('refuses floats, non-decimal strings, booleans and null', () => {
    for (const bad of [1.5, '1.5', 'abc', '1e3', true, null, NaN]) {
      expect(refusal('i64', bad)).toContain('args[0]: expected an i64');
    }
  });
});

describe('decodeArgs: f32 and f64', () => {
  it.each(['f32', 'f64'] as const)('%s accepts finite numbers as-is', (t) => {
    expect(decode1(t, 0.1)).toBe(0.1);
    expect(decode1(t, -1e300)).toBe(-1e300);
    expect(decode1(t, 42)).toBe(42);
  });
  it.each(['f32', 'f64'] as const)('%s accepts the special strings NaN, Infinity, -Infinity, -0', (t) => {
    expect(decode1(t, 'NaN')).toBeNaN();
    expect(decode1(t, 'Infinity')).toBe(Infinity);
    expect(decode1(t, '-Infinity')).toBe(-Infinity);
    expect(Object.is(decode1(t, '-0'), -0)).toBe(true);
  });
  it.each(['f32', 'f64'] as const)('%s refuses numeric strings and other values, explaining the float format', (t) => {
    for (const bad of ['1.5', 'nan', 'inf', '0', true, null, NaN]) {
      const msg = refusal(t, bad);
      expect(msg).toContain(`args[0]: expected an ${t}`);
      expect(msg).toContain('floats are JSON numbers, or one of the strings "NaN", "Infinity", "-Infinity", "-0"');
    }
  });
});

describe('decodeArgs: count and unsupported types', () => {
  it('refuses a wrong argument count with the signature', () => {
    const r = decodeArgs('add', sig(['i32', 'i32'], ['i32']), [1, 2, 3]);
    expect(r).toEqual({ ok: false, message: 'expected 2 arguments, got 3; signature: add(i32, i32) -> i32' });
    const r0 = decodeArgs('add', sig(['i32', 'i32'], ['i32']), []);
    expect(r0.ok === false && r0.message).toBe('expected 2 arguments, got 0; signature: add(i32, i32) -> i32');
  });
  it('accepts no arguments for a nullary function', () => {
    expect(decodeArgs('f', sig([]), [])).toEqual({ ok: true, values: [] });
  });
  it('converts a mixed argument list in order', () => {
    expect(decodeArgs('m', sig(['i32', 'i64', 'f32', 'f64']), ['-1', '5', 'NaN', 2.5])).toEqual({
      ok: true,
      values: [-1, 5n, NaN, 2.5],
    });
  });
  it('refuses v128, funcref and externref params regardless of the args given', () => {
    expect(decodeArgs('add', sig(['v128']), [])).toEqual({
      ok: false,
      message: 'add(v128) -> () takes a v128, which cannot be passed as JSON',
    });
    for (const t of ['funcref', 'externref'] as const) {
      const r = decodeArgs('g', sig(['i32', t]), [1, null]);
      const a = t === 'externref' ? 'an' : 'a';
      expect(r.ok === false && r.message).toBe(`g(i32, ${t}) -> () takes ${a} ${t}, which cannot be passed as JSON`);
    }
  });
  it('refuses functions with unsupported result types before any call', () => {
    const r = decodeArgs('h', sig([], ['i32', 'v128']), []);
    expect(r.ok === false && r.message).toBe('h() -> (i32, v128) returns a v128, which cannot be returned as JSON');
  });
  it('never throws on hostile input', () => {
    const weird = [Symbol('s'), () => 1, 10n, undefined, Object.create(null)];
    for (const w of weird) {
      for (const t of ['i32', 'i64', 'f32', 'f64'] as const) {
        expect(decodeArgs('f', sig([t]), [w]).ok).toBe(false);
      }
    }
    expect(decodeArgs('f', sig([]), 'nope' as unknown as unknown[]).ok).toBe(false);
  });
});

describe('encodeValue / encodeResults', () => {
  it('encodes i32 as a signed number', () => {
    expect(encodeValue('i32', -1)).toBe(-1);
    expect(encodeValue('i32', 2147483647)).toBe(2147483647);
  });
  it('encodes i64 as a signed decimal string', () => {
    expect(encodeValue('i64', -9223372036854775808n)).toBe('-9223372036854775808');
    expect(encodeValue('i64', 9223372036854775807n)).toBe('9223372036854775807');
    expect(encodeValue('i64', 0n)).toBe('0');
  });
  it.each(['f32', 'f64'] as const)('%s encodes NaN, ±Infinity and -0 as strings', (t) => {
    expect(encodeValue(t, NaN)).toBe('NaN');
    expect(encodeValue(t, Infinity)).toBe('Infinity');
    expect(encodeValue(t, -Infinity)).toBe('-Infinity');
    expect(encodeValue(t, -0)).toBe('-0');
    expect(encodeValue(t, 0)).toBe(0);
  });
  it('encodes f64 as the number itself', () => {
    expect(encodeValue('f64', 0.1)).toBe(0.1);
    expect(JSON.stringify(encodeValue('f64', 1 / 3))).toBe('0.3333333333333333');
  });
  it('encodes f32 as the shortest decimal that reads back to the same f32', () => {
    const cases: [number, string][] = [
      [0.1, '0.1'],
      [1 / 3, '0.33333334'],
      [1e-45, '1e-45'], // smallest denormal
      [3.4028234663852886e38, '3.4028235e+38'], // largest finite f32
      [16777217, '16777216'], // not representable; the f32 is 2^24
      [-2.5, '-2.5'],
      [1e38, '1e+38'],
    ];
    for (const [input, json] of cases) {
      const f = Math.fround(input);
      const out = encodeValue('f32', f);
      expect(JSON.stringify(out)).toBe(json);
      expect(Math.fround(out as number)).toBe(f);
    }
  });
  it('round-trips every f32 in a sample through the shortest form', () => {
    const buf = new Float32Array(1);
    const bits = new Uint32Array(buf.buffer);
    for (let i = 0; i < 20000; i++) {
      bits[0] = (i * 2654435761) >>> 0;
      const f = buf[0]!;
      const out = encodeValue('f32', f);
      if (typeof out === 'number') expect(Math.fround(out)).toBe(f);
    }
  });
  it('returns [] for a function without results (undefined)', () => {
    expect(encodeResults(sig([]), undefined)).toEqual([]);
  });
  it('wraps a single result in an array', () => {
    expect(encodeResults(sig([], ['i64']), -1n)).toEqual(['-1']);
  });
  it('encodes multi-value results from an array, each by its type', () => {
    expect(encodeResults(sig([], ['i32', 'i64', 'f32', 'f64']), [-1, 2n ** 63n - 1n, Math.fround(0.1), -0])).toEqual([
      -1,
      '9223372036854775807',
      0.1,
      '-0',
    ]);
  });
  it('throws on unsupported result types and mismatched shapes (caller bugs)', () => {
    expect(() => encodeValue('v128', 0)).toThrow(/v128/);
    expect(() => encodeValue('funcref', null)).toThrow(/funcref/);
    expect(() => encodeValue('i64', 1)).toThrow(/bigint/);
    expect(() => encodeResults(sig([], ['i32', 'i32']), 1)).toThrow(/array of 2/);
  });
});

describe('round trip through real wasm', async () => {
  const wat = `(module
    (func (export "id_i32") (param i32) (result i32) local.get 0)
    (func (export "id_i64") (param i64) (result i64) local.get 0)
    (func (export "id_f32") (param f32) (result f32) local.get 0)
    (func (export "id_f64") (param f64) (result f64) local.get 0)
    (func (export "swap") (param i32 i64 f32 f64) (result f64 f32 i64 i32)
      local.get 3 local.get 2 local.get 1 local.get 0))`;
  const wabt = await wabtInit();
  const mod = wabt.parseWat('t.wat', wat, { multi_value: true });
  const { buffer } = mod.toBinary({});
  mod.destroy();
  // The project's lib (ES2023 + @types/node 20) has no WebAssembly declarations; type the bit we use.
  const { WebAssembly: Wasm } = globalThis as unknown as {
    WebAssembly: { instantiate(b: Uint8Array): Promise<{ instance: { exports: Record<string, unknown> } }> };
  };
  const { instance } = await Wasm.instantiate(buffer);
  const exports = instance.exports as Record<string, (...a: WasmArg[]) => unknown>;

  function call(name: string, s: FuncSig, args: unknown[]) {
    const d = decodeArgs(name, s, args);
    if (!d.ok) throw new Error(d.message);
    return encodeResults(s, exports[name]!(...d.values));
  }

  it('identity functions return the canonical JSON form of each argument', () => {
    const cases: [ValType, unknown, unknown][] = [
      ['i32', 4294967295, -1],
      ['i32', '-2147483648', -2147483648],
      ['i64', '18446744073709551615', '-1'],
      ['i64', 9007199254740991, '9007199254740991'],
      ['i64', '-9223372036854775808', '-9223372036854775808'],
      ['f32', 0.1, 0.1],
      ['f32', 16777217, 16777216],
      ['f32', 1e-45, 1e-45],
      ['f32', 1e300, 'Infinity'], // the JS API rounds to f32
      ['f32', '-0', '-0'],
      ['f32', 'NaN', 'NaN'],
      ['f64', 0.1, 0.1],
      ['f64', '-Infinity', '-Infinity'],
      ['f64', '-0', '-0'],
      ['f64', 'NaN', 'NaN'],
    ];
    for (const [t, arg, expected] of cases) {
      expect(call(`id_${t}`, sig([t], [t]), [arg])).toEqual([expected]);
    }
  });
  it('a multi-value function returns all results in order', () => {
    const s = sig(['i32', 'i64', 'f32', 'f64'], ['f64', 'f32', 'i64', 'i32']);
    expect(call('swap', s, ['4294967295', '18446744073709551615', 0.1, 'Infinity'])).toEqual([
      'Infinity',
      0.1,
      '-1',
      -1,
    ]);
  });
});
