// Value codec: JSON arguments -> WebAssembly JS API arguments, and wasm results -> JSON.
//
// Contract:
//   i32      integer number (an integer string is accepted as an argument); results are signed
//   i64      decimal string (a safe-integer number is accepted as an argument); signed results
//   f32/f64  number when finite and not -0, otherwise "NaN" | "Infinity" | "-Infinity" | "-0"
//   other    (v128, funcref, externref) refused as argument or result

export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';
export type JsonValue = number | string;
export type WasmArg = number | bigint; // what WebAssembly's JS API takes: i64 as bigint, others as number
export interface FuncSig {
  params: readonly ValType[];
  results: readonly ValType[];
}

export type DecodeResult = { ok: true; values: WasmArg[] } | { ok: false; message: string };

const I32_MIN = -(2 ** 31);
const U32_MAX = 2 ** 32 - 1;
const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;

const DECIMAL = /^-?\d+$/;
const FLOAT_SPECIALS: Readonly<Record<string, number>> = {
  NaN: NaN,
  Infinity: Infinity,
  '-Infinity': -Infinity,
  '-0': -0,
};

const EXPECTED: Readonly<Record<'i32' | 'i64' | 'f32' | 'f64', string>> = {
  i32: `an i32 (an integer in [${I32_MIN}, ${U32_MAX}], as a number or a decimal string)`,
  i64: `an i64 (an integer in [${I64_MIN}, ${U64_MAX}], as a decimal string or a safe-integer number)`,
  f32: 'an f32 (floats are JSON numbers, or one of the strings "NaN", "Infinity", "-Infinity", "-0")',
  f64: 'an f64 (floats are JSON numbers, or one of the strings "NaN", "Infinity", "-Infinity", "-0")',
};

function isJsonType(t: ValType): t is 'i32' | 'i64' | 'f32' | 'f64' {
  return t === 'i32' || t === 'i64' || t === 'f32' || t === 'f64';
}

/** "add(i32, i32) -> i32", "f() -> ()", "pair(i64) -> (i32, f64)" */
export function formatSignature(name: string, sig: FuncSig): string {
  const results = sig.results.length === 1 ? sig.results[0]! : `(${sig.results.join(', ')})`;
  return `${name}(${sig.params.join(', ')}) -> ${results}`;
}

/** "an externref", "a v128". */
function article(t: ValType): string {
  return t === 'externref' ? 'an' : 'a';
}

/** Why the signature cannot be called through JSON, or null when it only uses i32/i64/f32/f64.
 *  The reason reads as a predicate, e.g. "takes a v128, which cannot be passed as JSON", so callers
 *  can prefix it with the formatted signature. */
export function unsupportedSignatureReason(sig: FuncSig): string | null {
  const param = sig.params.find((t) => !isJsonType(t));
  if (param !== undefined) return `takes ${article(param)} ${param}, which cannot be passed as JSON`;
  const result = sig.results.find((t) => !isJsonType(t));
  if (result !== undefined) return `returns ${article(result)} ${result}, which cannot be returned as JSON`;
  return null;
}

/** Short, safe rendering of an arbitrary argument for error messages. */
function describe(v: unknown): string {
  if (typeof v === 'string') {
    return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  }
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || v === undefined || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

/** Parses a /^-?\d+$/ string exactly; null if the syntax is wrong. Strings longer than any
 *  in-range value (after leading zeros) map to a sentinel out of range, so a huge digit string
 *  costs nothing to refuse. */
function parseDecimal(s: string): bigint | null {
  if (!DECIMAL.test(s)) return null;
  const neg = s.startsWith('-');
  const digits = (neg ? s.slice(1) : s).replace(/^0+(?=\d)/, '');
  if (digits.length > 20) return neg ? -(2n ** 80n) : 2n ** 80n;
  const n = BigInt(digits);
  return neg ? -n : n;
}

type One = { ok: true; value: WasmArg } | { ok: false; detail?: string };

function decodeOne(type: 'i32' | 'i64' | 'f32' | 'f64', v: unknown): One {
  switch (type) {
    case 'i32': {
      if (typeof v === 'number' && Number.isInteger(v) && v >= I32_MIN && v <= U32_MAX) {
        return { ok: true, value: v | 0 }; // wraps [2^31, 2^32) to signed; -0 -> 0
      }
      if (typeof v === 'string') {
        const n = parseDecimal(v);
        if (n !== null && n >= BigInt(I32_MIN) && n <= BigInt(U32_MAX)) {
          return { ok: true, value: Number(n) | 0 };
        }
      }
      return { ok: false };
    }
    case 'i64': {
      if (typeof v === 'number' && Number.isInteger(v)) {
        if (Number.isSafeInteger(v)) return { ok: true, value: BigInt(v) };
        // JSON parsing already rounded it, so the intended value is unknown.
        return {
          ok: false,
          detail: 'i64 values beyond 2^53 must be passed as decimal strings, since JSON numbers lose precision there',
        };
      }
      if (typeof v === 'string') {
        const n = parseDecimal(v);
        if (n !== null && n >= I64_MIN && n <= U64_MAX) {
          return { ok: true, value: BigInt.asIntN(64, n) }; // wraps [2^63, 2^64) to signed
        }
      }
      return { ok: false };
    }
    case 'f32':
    case 'f64': {
      // Finite numbers pass as-is: the JS API itself rounds to f32 where needed.
      if (typeof v === 'number' && Number.isFinite(v)) return { ok: true, value: v };
      if (typeof v === 'string' && Object.hasOwn(FLOAT_SPECIALS, v)) {
        return { ok: true, value: FLOAT_SPECIALS[v]! };
      }
      return { ok: false };
    }
  }
}

/** Validates and converts JSON args. Never throws; messages name the signature and the bad index. */
export function decodeArgs(name: string, sig: FuncSig, args: readonly unknown[]): DecodeResult {
  const signature = formatSignature(name, sig);
  const reason = unsupportedSignatureReason(sig);
  if (reason !== null) return { ok: false, message: `${signature} ${reason}` };
  if (!Array.isArray(args)) {
    return { ok: false, message: `args must be an array, got ${describe(args)}; signature: ${signature}` };
  }
  if (args.length !== sig.params.length) {
    const n = sig.params.length;
    return {
      ok: false,
      message: `expected ${n} argument${n === 1 ? '' : 's'}, got ${args.length}; signature: ${signature}`,
    };
  }
  const values: WasmArg[] = [];
  for (let i = 0; i < args.length; i++) {
    const type = sig.params[i]!;
    if (!isJsonType(type)) throw new Error('unreachable: unsupported types were refused above');
    const r = decodeOne(type, args[i]);
    if (!r.ok) {
      const detail = r.detail !== undefined ? `; ${r.detail}` : '';
      return {
        ok: false,
        message: `args[${i}]: expected ${EXPECTED[type]}, got ${describe(args[i])}${detail}; signature: ${signature}`,
      };
    }
    values.push(r.value);
  }
  return { ok: true, values };
}

/** Specials shared by f32 and f64; null when the value is an ordinary JSON number. */
function floatSpecial(x: number): string | null {
  if (Number.isNaN(x)) return 'NaN'; // every NaN payload collapses to "NaN"
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (Object.is(x, -0)) return '-0';
  return null;
}

/** Converts one wasm result (as the JS API returned it) to JSON. Throws on a type the
 *  contract does not represent or a JS value that does not match the type: both are caller bugs,
 *  since decodeArgs refuses such signatures before any call. */
export function encodeValue(type: ValType, v: unknown): JsonValue {
  switch (type) {
    case 'i32':
      if (typeof v !== 'number') break;
      return v | 0; // already signed from the JS API; |0 normalises defensively
    case 'i64':
      if (typeof v !== 'bigint') break;
      return BigInt.asIntN(64, v).toString();
    case 'f64':
      if (typeof v !== 'number') break;
      return floatSpecial(v) ?? v; // JSON.stringify prints the shortest round-trip form
    case 'f32': {
      if (typeof v !== 'number') break;
      const x = Math.fround(v);
      const special = floatSpecial(x);
      if (special !== null) return special;
      // f64 printing would show the f32's exact binary value (0.10000000149011612); instead
      // find the shortest decimal that reads back to the same f32. 9 digits always suffice.
      for (let p = 1; p <= 9; p++) {
        const s = x.toPrecision(p);
        if (Math.fround(Number(s)) === x) return Number(s);
      }
      return x;
    }
    default:
      throw new Error(`${article(type)} ${type} cannot be returned as JSON`);
  }
  throw new Error(`expected a JS ${type === 'i64' ? 'bigint' : 'number'} for a ${type} result, got ${describe(v)}`);
}

/** Converts what the JS API returned (undefined, one value, or an array for multi-value)
 *  into the JSON results array. */
export function encodeResults(sig: FuncSig, returned: unknown): JsonValue[] {
  const n = sig.results.length;
  if (n === 0) return [];
  if (n === 1) return [encodeValue(sig.results[0]!, returned)];
  if (!Array.isArray(returned) || returned.length !== n) {
    throw new Error(`expected an array of ${n} results, got ${describe(returned)}`);
  }
  return sig.results.map((t, i) => encodeValue(t, returned[i]));
}
