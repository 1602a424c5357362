// Every value type edge through POST /execute on a real server: arguments decoded by the
// function's own signature, results encoded back to JSON, and the refusals with their messages.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const MODULE = b64(
  wat(`(module
    (func (export "id_i32") (param i32) (result i32) local.get 0)
    (func (export "id_i64") (param i64) (result i64) local.get 0)
    (func (export "id_f32") (param f32) (result f32) local.get 0)
    (func (export "id_f64") (param f64) (result f64) local.get 0)
    ;; 1 when the argument arrived in the guest as the bit pattern of -1 (0xffffffff)
    (func (export "is_all_ones") (param i32) (result i32) local.get 0 i32.const -1 i32.eq)
    (func (export "add_i32") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "add_i64") (param i64 i64) (result i64) local.get 0 local.get 1 i64.add)
    ;; i64 unsigned comparison in the guest: proves 2^64-1 arrives as all ones
    (func (export "i64_is_all_ones") (param i64) (result i32) local.get 0 i64.const -1 i64.eq)
    (func (export "i64_big") (result i64) i64.const 9007199254740993)
    (func (export "i32_min") (result i32) i32.const 0x80000000)
    (func (export "f32_tenth") (result f32) f32.const 0.1)
    (func (export "f32_third") (result f32) f32.const 1.0 f32.const 3.0 f32.div)
    (func (export "f32_max") (result f32) f32.const 0x1.fffffep+127)
    (func (export "f32_min_denormal") (result f32) f32.const 0x1p-149)
    (func (export "f64_tenth") (result f64) f64.const 0.1)
    (func (export "f64_third") (result f64) f64.const 1.0 f64.const 3.0 f64.div)
    (func (export "f32_div") (param f32 f32) (result f32) local.get 0 local.get 1 f32.div)
    (func (export "f64_div") (param f64 f64) (result f64) local.get 0 local.get 1 f64.div)
    (func (export "f32_neg_zero") (result f32) f32.const -0)
    (func (export "f64_neg_zero") (result f64) f64.const -0)
    ;; 1 when the argument is negative zero (sign bit set and equal to zero)
    (func (export "f64_is_neg_zero") (param f64) (result i32)
      local.get 0 i64.reinterpret_f64 i64.const 0x8000000000000000 i64.eq)
    (func (export "f32_is_neg_zero") (param f32) (result i32)
      local.get 0 i32.reinterpret_f32 i32.const 0x80000000 i32.eq)
    (func (export "f64_is_nan") (param f64) (result i32) local.get 0 local.get 0 f64.ne)
    (func (export "f32_nan_payload") (result f32) i32.const 0x7fc00001 f32.reinterpret_i32)
    (func (export "swap") (param i32 i64 f32 f64) (result f64 f32 i64 i32)
      local.get 3 local.get 2 local.get 1 local.get 0)
    (func (export "pair") (result i32 i32) i32.const 1 i32.const 2)
    (func (export "nothing"))
    (func (export "nothing_with_param") (param i64))
    (func (export "takes_v128") (param v128))
    (func (export "returns_v128") (result v128) v128.const i64x2 0 0)
    (func (export "takes_externref") (param externref))
    (func (export "returns_funcref") (result funcref) ref.null func)
    (func (export "mixed_ref_result") (result i32 externref) i32.const 0 ref.null extern)
  )`),
);

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.close();
});

async function call(fn: string, args: unknown[]): Promise<{ status: number; body: any }> {
  return server.execute({ module: MODULE, function: fn, args });
}

/** Runs and expects outcome ok; returns the results. */
async function results(fn: string, args: unknown[] = []): Promise<unknown[]> {
  const res = await call(fn, args);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body.outcome, JSON.stringify(res.body)).toBe('ok');
  return res.body.results;
}

/** Expects 400 invalid_arguments; returns the message. */
async function refusedArgs(fn: string, args: unknown[]): Promise<string> {
  const res = await call(fn, args);
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body).toEqual({ error: { code: 'invalid_arguments', message: expect.any(String) }, requestId: expect.any(String) });
  return res.body.error.message;
}

/** The raw JSON body, for numbers JSON.stringify cannot write (beyond 2^53). */
async function rawCall(fn: string, argsJson: string): Promise<{ status: number; body: any }> {
  return server.post('/execute', `{"module":"${MODULE}","function":"${fn}","args":${argsJson}}`);
}

describe('i32 through /execute', () => {
  it('accepts the bounds -2^31 and 2^31-1 and returns them unchanged', async () => {
    expect(await results('id_i32', [-2147483648])).toEqual([-2147483648]);
    expect(await results('id_i32', [2147483647])).toEqual([2147483647]);
  });

  it('accepts 2^32-1 as an argument, which the guest sees as all ones and which reads back as signed -1', async () => {
    expect(await results('is_all_ones', [4294967295])).toEqual([1]);
    expect(await results('id_i32', [4294967295])).toEqual([-1]);
    expect(await results('id_i32', [2147483648])).toEqual([-2147483648]);
  });

  it('returns results as signed numbers', async () => {
    expect(await results('i32_min')).toEqual([-2147483648]);
    expect(await results('add_i32', [2147483647, 1])).toEqual([-2147483648]);
  });

  it('accepts integer strings as arguments, including negative and unsigned ones', async () => {
    expect(await results('add_i32', ['-5', '7'])).toEqual([2]);
    expect(await results('id_i32', ['4294967295'])).toEqual([-1]);
    expect(await results('id_i32', ['-2147483648'])).toEqual([-2147483648]);
  });

  it('refuses values out of [-2^31, 2^32-1] with invalid_arguments showing the signature', async () => {
    for (const bad of [4294967296, -2147483649, '4294967296', '-2147483649']) {
      const msg = await refusedArgs('id_i32', [bad]);
      expect(msg).toContain('args[0]: expected an i32');
      expect(msg).toContain('signature: id_i32(i32) -> i32');
    }
  });

  it('refuses non-integers, non-decimal strings, booleans and null with invalid_arguments', async () => {
    for (const bad of [1.5, '1.5', 'abc', '0x10', true, null, [], {}]) {
      const msg = await refusedArgs('add_i32', [1, bad]);
      expect(msg).toMatch(/^args\[1\]: expected an i32 .*; signature: add_i32\(i32, i32\) -> i32$/);
    }
  });
});

describe('i64 through /execute', () => {
  it('accepts and returns the full signed range as decimal strings', async () => {
    expect(await results('id_i64', ['-9223372036854775808'])).toEqual(['-9223372036854775808']);
    expect(await results('id_i64', ['9223372036854775807'])).toEqual(['9223372036854775807']);
    expect(await results('id_i64', ['0'])).toEqual(['0']);
  });

  it('accepts unsigned strings up to 2^64-1, which wrap to signed', async () => {
    expect(await results('i64_is_all_ones', ['18446744073709551615'])).toEqual([1]);
    expect(await results('id_i64', ['18446744073709551615'])).toEqual(['-1']);
    expect(await results('id_i64', ['9223372036854775808'])).toEqual(['-9223372036854775808']);
  });

  it('keeps values above 2^53 exact in both directions', async () => {
    expect(await results('i64_big')).toEqual(['9007199254740993']);
    expect(await results('add_i64', ['9007199254740993', '2'])).toEqual(['9007199254740995']);
    expect(await results('id_i64', ['1234567890123456789'])).toEqual(['1234567890123456789']);
  });

  it('returns i64 results as strings even when they are small', async () => {
    expect(await results('add_i64', ['2', '3'])).toEqual(['5']);
  });

  it('accepts safe-integer JSON numbers as arguments', async () => {
    expect(await results('id_i64', [9007199254740991])).toEqual(['9007199254740991']);
    expect(await results('id_i64', [-9007199254740991])).toEqual(['-9007199254740991']);
    expect(await results('add_i64', [40, 2])).toEqual(['42']);
  });

  it('refuses JSON numbers beyond 2^53, telling the caller to send a decimal string', async () => {
    const res = await rawCall('id_i64', '[9007199254740993]');
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_arguments');
    expect(res.body.error.message).toContain('i64 values beyond 2^53 must be passed as decimal strings');
    expect(res.body.error.message).toContain('signature: id_i64(i64) -> i64');
    const msg = await refusedArgs('id_i64', [2 ** 53]);
    expect(msg).toContain('decimal strings');
  });

  it('refuses strings outside [-2^63, 2^64-1], floats and non-decimal strings', async () => {
    for (const bad of ['18446744073709551616', '-9223372036854775809', '1e3', '1.0', 1.5, 'NaN', true]) {
      const msg = await refusedArgs('id_i64', [bad]);
      expect(msg).toMatch(/^args\[0\]: expected an i64 .*; signature: id_i64\(i64\) -> i64$/);
    }
  });
});

describe('f32 through /execute', () => {
  it('returns the shortest decimal that reads back to the same f32 (0.1f32 is 0.1)', async () => {
    expect(await results('f32_tenth')).toEqual([0.1]);
    expect(await results('f32_third')).toEqual([0.33333334]);
    expect(await results('f32_max')).toEqual([3.4028235e38]);
    expect(await results('f32_min_denormal')).toEqual([1e-45]);
  });

  it('writes the short form into the response text, not the f32 expanded to f64', async () => {
    const res = await server.post('/execute', { module: MODULE, function: 'f32_tenth' });
    expect(res.status).toBe(200);
    expect(res.body.results).toEqual([0.1]);
    const raw = await fetch(`${server.url}/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ module: MODULE, function: 'f32_tenth' }),
    });
    const text = await raw.text();
    expect(text).toContain('"results":[0.1]');
    expect(text).not.toContain('0.10000000149');
  });

  it('rounds an argument to the nearest f32 and returns it in shortest form', async () => {
    expect(await results('id_f32', [0.1])).toEqual([0.1]);
    expect(await results('id_f32', [16777217])).toEqual([16777216]);
    expect(await results('id_f32', [-2.5])).toEqual([-2.5]);
  });

  it('accepts and returns "NaN", "Infinity", "-Infinity" and "-0"', async () => {
    expect(await results('id_f32', ['NaN'])).toEqual(['NaN']);
    expect(await results('id_f32', ['Infinity'])).toEqual(['Infinity']);
    expect(await results('id_f32', ['-Infinity'])).toEqual(['-Infinity']);
    expect(await results('id_f32', ['-0'])).toEqual(['-0']);
    expect(await results('f32_is_neg_zero', ['-0'])).toEqual([1]);
    expect(await results('f32_is_neg_zero', [0])).toEqual([0]);
  });

  it('encodes special results computed by the guest as the strings', async () => {
    expect(await results('f32_div', [1, 0])).toEqual(['Infinity']);
    expect(await results('f32_div', [-1, 0])).toEqual(['-Infinity']);
    expect(await results('f32_div', [0, 0])).toEqual(['NaN']);
    expect(await results('f32_neg_zero')).toEqual(['-0']);
    expect(await results('f32_nan_payload')).toEqual(['NaN']);
  });

  it('overflows a finite argument beyond the f32 range to "Infinity"', async () => {
    expect(await results('id_f32', [1e300])).toEqual(['Infinity']);
  });

  it('refuses numeric strings and other spellings of the specials', async () => {
    for (const bad of ['1.5', 'nan', 'inf', '+Infinity', null, true]) {
      const msg = await refusedArgs('id_f32', [bad]);
      expect(msg).toContain('args[0]: expected an f32');
      expect(msg).toContain('signature: id_f32(f32) -> f32');
    }
  });
});

describe('f64 through /execute', () => {
  it('returns finite values as JSON numbers, in shortest round-trip form', async () => {
    expect(await results('f64_tenth')).toEqual([0.1]);
    expect(await results('f64_third')).toEqual([1 / 3]);
    expect(await results('id_f64', [1.7976931348623157e308])).toEqual([1.7976931348623157e308]);
    expect(await results('id_f64', [5e-324])).toEqual([5e-324]);
    expect(await results('id_f64', [-123.456])).toEqual([-123.456]);
  });

  it('accepts and returns "NaN", "Infinity", "-Infinity" and "-0"', async () => {
    expect(await results('id_f64', ['NaN'])).toEqual(['NaN']);
    expect(await results('f64_is_nan', ['NaN'])).toEqual([1]);
    expect(await results('id_f64', ['Infinity'])).toEqual(['Infinity']);
    expect(await results('id_f64', ['-Infinity'])).toEqual(['-Infinity']);
    expect(await results('id_f64', ['-0'])).toEqual(['-0']);
    expect(await results('f64_is_neg_zero', ['-0'])).toEqual([1]);
  });

  it('encodes special results computed by the guest as the strings', async () => {
    expect(await results('f64_div', [1, 0])).toEqual(['Infinity']);
    expect(await results('f64_div', [-1, 0])).toEqual(['-Infinity']);
    expect(await results('f64_div', [0, 0])).toEqual(['NaN']);
    expect(await results('f64_div', [-1, 'Infinity'])).toEqual(['-0']);
    expect(await results('f64_neg_zero')).toEqual(['-0']);
  });

  it('refuses numeric strings and other spellings of the specials', async () => {
    for (const bad of ['0.1', 'NAN', '-inf', null, [], {}]) {
      const msg = await refusedArgs('id_f64', [bad]);
      expect(msg).toContain('args[0]: expected an f64');
      expect(msg).toContain('signature: id_f64(f64) -> f64');
    }
  });
});

describe('multi-value and zero-result functions', () => {
  it('returns every result of a multi-value function in order, each by its type', async () => {
    expect(await results('swap', [-1, '9223372036854775807', 0.1, '-0'])).toEqual(['-0', 0.1, '9223372036854775807', -1]);
    expect(await results('swap', [4294967295, '-1', 'NaN', 'Infinity'])).toEqual(['Infinity', 'NaN', '-1', -1]);
    expect(await results('pair')).toEqual([1, 2]);
  });

  it('answers results: [] for a function that returns nothing', async () => {
    const res = await call('nothing', []);
    expect(res.status).toBe(200);
    expect(res.body.outcome).toBe('ok');
    expect(res.body.results).toEqual([]);
    expect(await results('nothing_with_param', ['5'])).toEqual([]);
  });

  it('treats a missing args field as no arguments', async () => {
    const res = await server.execute({ module: MODULE, function: 'pair' });
    expect(res.status).toBe(200);
    expect(res.body.results).toEqual([1, 2]);
  });
});

describe('types without a JSON encoding', () => {
  it('refuses a v128 parameter with invalid_arguments naming the type and signature', async () => {
    expect(await refusedArgs('takes_v128', [])).toBe('takes_v128(v128) -> () takes a v128, which cannot be passed as JSON');
    // whatever is passed for it
    expect(await refusedArgs('takes_v128', ['0'])).toContain('takes a v128');
  });

  it('refuses a v128 result before running the function', async () => {
    expect(await refusedArgs('returns_v128', [])).toBe('returns_v128() -> v128 returns a v128, which cannot be returned as JSON');
  });

  it('refuses reference-type parameters and results', async () => {
    expect(await refusedArgs('takes_externref', [null])).toBe(
      'takes_externref(externref) -> () takes an externref, which cannot be passed as JSON',
    );
    expect(await refusedArgs('returns_funcref', [])).toBe('returns_funcref() -> funcref returns a funcref, which cannot be returned as JSON');
    expect(await refusedArgs('mixed_ref_result', [])).toBe(
      'mixed_ref_result() -> (i32, externref) returns an externref, which cannot be returned as JSON',
    );
  });
});

describe('argument count', () => {
  it('refuses too many and too few arguments with the expected count and signature', async () => {
    expect(await refusedArgs('add_i32', [1, 2, 3])).toBe('expected 2 arguments, got 3; signature: add_i32(i32, i32) -> i32');
    expect(await refusedArgs('add_i32', [1])).toBe('expected 2 arguments, got 1; signature: add_i32(i32, i32) -> i32');
    expect(await refusedArgs('add_i32', [])).toBe('expected 2 arguments, got 0; signature: add_i32(i32, i32) -> i32');
    expect(await refusedArgs('nothing', [1])).toBe('expected 0 arguments, got 1; signature: nothing() -> ()');
    expect(await refusedArgs('id_i64', [])).toBe('expected 1 argument, got 0; signature: id_i64(i64) -> i64');
  });

  it('reports the first bad argument by index with the full signature', async () => {
    const msg = await refusedArgs('swap', [1, '2', 3, 'four']);
    expect(msg).toMatch(/^args\[3\]: expected an f64 .*got "four"; signature: swap\(i32, i64, f32, f64\) -> \(f64, f32, i64, i32\)$/);
  });
});
