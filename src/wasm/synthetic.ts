// Deterministic generator of large, realistic-looking WebAssembly modules: the preparation
// threads' warm-up (src/worker/warmup.ts), the benchmark's prepare section and the tests use it:
// thousands of functions with counted loops, nested blocks and ifs, br_if / br_table, i32/i64/f64
// arithmetic and comparisons, conversions, loads and stores, globals, direct and indirect calls.
// The binary is written directly (a WAT detour through wabt would take longer than what it
// measures at 5 MiB). Code is well-typed by construction; V8 validates every module anyway.
//
// Function 0 is `main: () -> i32` and returns a 5-byte padded i32 constant, the "nonce": patching
// it (withNonce) gives modules of identical size and shape but different bytes, so that V8's
// process-wide cache of compiled modules cannot turn a cold measurement into a warm one.

import { Writer } from './bytes.js';

const I32 = 0x7f;
const I64 = 0x7e;
const F64 = 0x7c;
type Val = typeof I32 | typeof I64 | typeof F64;

/** The module writer (src/wasm/bytes.ts) with the chaining calls the generator is written in. */
class Bytes extends Writer {
  override u8(...bs: number[]): this {
    for (const b of bs) super.u8(b);
    return this;
  }
  override u32(v: number): this {
    super.u32(v);
    return this;
  }
  /** Signed LEB128 for values in the safe-integer range (i32 and small i64 constants). */
  s(v: number): this {
    this.sNum(v);
    return this;
  }
  f64(v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.bytes(b);
    return this;
  }
  append(other: Bytes): this {
    this.bytes(other.view());
    return this;
  }
  override name(s: string): this {
    super.name(s);
    return this;
  }
  get len(): number {
    return this.length;
  }
}

/** mulberry32: small, fast, deterministic (the test suites use it too, for replayable runs). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FType {
  params: Val[];
  result: Val | null;
}

// Type 0 is main's; the others are what generated functions use.
const TYPES: FType[] = [
  { params: [], result: I32 },
  { params: [I32, I32], result: I32 },
  { params: [I32, I64, F64], result: I64 },
  { params: [I32], result: F64 },
  { params: [I32, I32], result: null },
];
const BODY_TYPES = [1, 2, 3, 4];
const GLOBALS = 2; // mutable i32
const MEMORY_PAGES = 1;
const ADDR_MASK = 0x7ff8;

export interface GeneratedModule {
  bytes: Uint8Array;
  /** Byte offset of main's 5-byte i32 constant. */
  nonceOffset: number;
  functions: number;
}

export function generateModule(targetBytes: number, seed = 1): GeneratedModule {
  const rnd = prng(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;

  const funcTypes: number[] = [0];
  const code = new Bytes();
  // main: no locals, i32.const <5-byte padded LEB>, end.
  const mainBody = Uint8Array.of(0x00, 0x41, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b);

  let estimate = 200;
  while (estimate < targetBytes) {
    const typeIndex = pick(BODY_TYPES);
    const body = genFunction(typeIndex, funcTypes.length);
    code.u32(body.len).append(body);
    funcTypes.push(typeIndex);
    // Body plus its entries in the function section (1 byte) and the element segment (2-3 bytes).
    estimate = 200 + code.len + mainBody.length + 1 + funcTypes.length * 4;
  }

  function genFunction(typeIndex: number, self: number): Bytes {
    const type = TYPES[typeIndex]!;
    const P = type.params.length;
    // Declared locals: 2 i64, 2 f64, 4 i32, then one i32 counter per loop.
    const locals: Record<Val, number[]> = { [I32]: [], [I64]: [], [F64]: [] } as Record<Val, number[]>;
    type.params.forEach((t, i) => locals[t].push(i));
    locals[I64].push(P, P + 1);
    locals[F64].push(P + 2, P + 3);
    locals[I32].push(P + 4, P + 5, P + 6, P + 7);
    let counters = 0;
    const b = new Bytes();
    // Label stack, innermost last: true for labels a forward br may target (block, if), false for loops.
    const labels: boolean[] = [];

    const leaf = (t: Val): void => {
      const r = rnd();
      if (r < 0.45) {
        b.u8(0x20).u32(pick(locals[t]));
        return;
      }
      if (t === I32 && r < 0.55) {
        b.u8(0x23).u32(int(GLOBALS));
        return;
      }
      if (t === I32) b.u8(0x41).s(int(2000) - 1000);
      else if (t === I64) b.u8(0x42).s(int(1_000_000) - 500_000);
      else b.u8(0x44).f64(Math.round(rnd() * 1e6) / 1e3);
    };

    const address = (d: number): void => {
      expr(I32, d + 1);
      b.u8(0x41).s(ADDR_MASK).u8(0x71); // i32.and
    };

    const expr = (t: Val, d: number): void => {
      if (d >= 3 || rnd() < 0.25) return leaf(t);
      const r = rnd();
      if (t === I32) {
        if (r < 0.4) {
          expr(I32, d + 1);
          expr(I32, d + 1);
          b.u8(pick([0x6a, 0x6b, 0x6c, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77]));
        } else if (r < 0.55) {
          expr(I32, d + 1);
          expr(I32, d + 1);
          b.u8(pick([0x46, 0x47, 0x48, 0x49, 0x4a, 0x4c, 0x4f]));
        } else if (r < 0.6) {
          expr(I64, d + 1);
          expr(I64, d + 1);
          b.u8(pick([0x51, 0x53, 0x56]));
        } else if (r < 0.65) {
          expr(F64, d + 1);
          expr(F64, d + 1);
          b.u8(pick([0x61, 0x63, 0x64]));
        } else if (r < 0.72) {
          expr(I32, d + 1);
          b.u8(pick([0x45, 0x67, 0x69]));
        } else if (r < 0.76) {
          expr(I64, d + 1);
          b.u8(0xa7); // i32.wrap_i64
        } else if (r < 0.9) {
          address(d);
          const [op, align] = pick([
            [0x28, 2],
            [0x2d, 0],
            [0x2e, 1],
          ] as const);
          b.u8(op).u32(align).u32(int(32) * 8);
        } else {
          expr(I32, d + 1);
          expr(I32, d + 1);
          expr(I32, d + 1);
          b.u8(0x1b); // select
        }
      } else if (t === I64) {
        if (r < 0.55) {
          expr(I64, d + 1);
          expr(I64, d + 1);
          b.u8(pick([0x7c, 0x7d, 0x7e, 0x83, 0x84, 0x85, 0x86, 0x88, 0x89]));
        } else if (r < 0.75) {
          expr(I32, d + 1);
          b.u8(pick([0xac, 0xad]));
        } else {
          address(d);
          b.u8(0x29).u32(3).u32(int(32) * 8);
        }
      } else {
        if (r < 0.5) {
          expr(F64, d + 1);
          expr(F64, d + 1);
          b.u8(pick([0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5]));
        } else if (r < 0.62) {
          expr(F64, d + 1);
          b.u8(pick([0x99, 0x9a, 0x9f, 0x9c]));
        } else if (r < 0.8) {
          expr(I32, d + 1);
          b.u8(0xb7); // f64.convert_i32_s
        } else if (r < 0.85) {
          expr(I64, d + 1);
          b.u8(0xb9); // f64.convert_i64_s
        } else {
          address(d);
          b.u8(0x2b).u32(3).u32(int(32) * 8);
        }
      }
    };

    const useResult = (t: Val | null): void => {
      if (t === null) return;
      if (rnd() < 0.3) b.u8(0x1a); // drop
      else b.u8(0x21).u32(pick(locals[t]));
    };

    const stmts = (count: number, d: number): void => {
      for (let i = 0; i < count; i++) stmt(d);
    };

    const stmt = (d: number): void => {
      const r = rnd();
      const nest = d < 3;
      if (r < 0.28 || (!nest && r < 0.5)) {
        const t = pick([I32, I32, I64, F64] as const);
        expr(t, 0);
        b.u8(0x21).u32(pick(locals[t]));
      } else if (r < 0.4) {
        address(0);
        const [t, op, align] = pick([
          [I32, 0x36, 2],
          [I64, 0x37, 3],
          [F64, 0x39, 3],
          [I32, 0x3a, 0],
        ] as const);
        expr(t, 1);
        b.u8(op).u32(align).u32(int(32) * 8);
      } else if (r < 0.44) {
        expr(I32, 1);
        b.u8(0x24).u32(int(GLOBALS));
      } else if (r < 0.5) {
        const forward = labels.map((ok, k) => (ok ? labels.length - 1 - k : -1)).filter((k) => k >= 0);
        if (forward.length === 0) return stmt(d);
        expr(I32, 1);
        b.u8(0x0d).u32(pick(forward)); // br_if to an enclosing block or if
      } else if (r < 0.64) {
        const callee = self > 1 ? 1 + int(self - 1) : 0;
        const ct = TYPES[funcTypes[callee]!]!;
        for (const p of ct.params) expr(p, 1);
        b.u8(0x10).u32(callee);
        useResult(ct.result);
      } else if (r < 0.68) {
        const ti = pick(BODY_TYPES);
        const ct = TYPES[ti]!;
        for (const p of ct.params) expr(p, 1);
        expr(I32, 2);
        b.u8(0x11).u32(ti).u8(0x00);
        useResult(ct.result);
      } else if (!nest) {
        stmt(d);
      } else if (r < 0.8) {
        // Counted loop: c = 0; block; loop; body; c += 1; br_if (c <u K) 0; end; end
        const c = P + 8 + counters++;
        b.u8(0x41, 0x00, 0x21).u32(c);
        b.u8(0x02, 0x40);
        labels.push(true);
        b.u8(0x03, 0x40);
        labels.push(false);
        stmts(1 + int(4), d + 1);
        b.u8(0x20).u32(c).u8(0x41, 0x01, 0x6a, 0x22).u32(c);
        b.u8(0x41).s(4 + int(200)).u8(0x49, 0x0d, 0x00);
        b.u8(0x0b);
        labels.pop();
        b.u8(0x0b);
        labels.pop();
      } else if (r < 0.92) {
        expr(I32, 1);
        b.u8(0x04, 0x40);
        labels.push(true);
        stmts(1 + int(3), d + 1);
        if (rnd() < 0.6) {
          b.u8(0x05);
          stmts(1 + int(3), d + 1);
        }
        b.u8(0x0b);
        labels.pop();
      } else {
        // switch: block $exit; block $c1; block $c0; br_table $c0 $c1 $exit; end; case 0; br $exit; end; case 1; end
        b.u8(0x02, 0x40);
        labels.push(true);
        b.u8(0x02, 0x40);
        labels.push(true);
        b.u8(0x02, 0x40);
        labels.push(true);
        expr(I32, 1);
        b.u8(0x0e, 0x02, 0x00, 0x01, 0x02);
        b.u8(0x0b);
        labels.pop();
        stmts(1 + int(2), d + 1);
        b.u8(0x0c, 0x01);
        b.u8(0x0b);
        labels.pop();
        stmts(1 + int(2), d + 1);
        b.u8(0x0b);
        labels.pop();
      }
    };

    stmts(4 + int(10), 0);
    if (type.result !== null) expr(type.result, 0);
    b.u8(0x0b);

    const out = new Bytes();
    out.u32(3).u32(2).u8(I64).u32(2).u8(F64).u32(4 + counters).u8(I32);
    return out.append(b);
  }

  // Assemble the module.
  const m = new Bytes();
  m.u8(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00);
  const section = (id: number, content: Bytes): number => {
    m.u8(id).u32(content.len);
    const start = m.len;
    m.append(content);
    return start;
  };
  const types = new Bytes().u32(TYPES.length);
  for (const t of TYPES) {
    types.u8(0x60).u32(t.params.length).u8(...t.params);
    if (t.result === null) types.u32(0);
    else types.u32(1).u8(t.result);
  }
  section(1, types);
  const funcs = new Bytes().u32(funcTypes.length);
  for (const t of funcTypes) funcs.u32(t);
  section(3, funcs);
  section(4, new Bytes().u32(1).u8(0x70, 0x01).u32(funcTypes.length).u32(funcTypes.length));
  section(5, new Bytes().u32(1).u8(0x01).u32(MEMORY_PAGES).u32(16));
  const globals = new Bytes().u32(GLOBALS);
  for (let g = 0; g < GLOBALS; g++) globals.u8(I32, 0x01, 0x41, 0x00, 0x0b);
  section(6, globals);
  const exports = new Bytes().u32(4);
  exports.name('main').u8(0x00).u32(0);
  exports.name('memory').u8(0x02).u32(0);
  exports.name('f1').u8(0x00).u32(Math.min(1, funcTypes.length - 1));
  exports.name('g0').u8(0x03).u32(0);
  section(7, exports);
  const elems = new Bytes().u32(1).u8(0x00, 0x41, 0x00, 0x0b).u32(funcTypes.length);
  for (let f = 0; f < funcTypes.length; f++) elems.u32(f);
  section(9, elems);
  const codeSection = new Bytes().u32(funcTypes.length);
  const countLen = codeSection.len;
  codeSection.u32(mainBody.length).u8(...mainBody);
  codeSection.append(code);
  const codeStart = section(10, codeSection);
  const data = new Bytes().u32(1).u8(0x00, 0x41, 0x00, 0x0b).u32(64);
  for (let i = 0; i < 64; i++) data.u8(int(256));
  section(11, data);

  // main's body: size (1 byte), local groups (1 byte), i32.const opcode (1 byte), then the LEB.
  const nonceOffset = codeStart + countLen + 3;
  return { bytes: m.finish(), nonceOffset, functions: funcTypes.length };
}

/** A copy of the module whose main() returns `nonce` (0 <= nonce < 2^31). */
export function withNonce(m: GeneratedModule, nonce: number): Uint8Array {
  const out = m.bytes.slice();
  const o = m.nonceOffset;
  out[o] = (nonce & 0x7f) | 0x80;
  out[o + 1] = ((nonce >>> 7) & 0x7f) | 0x80;
  out[o + 2] = ((nonce >>> 14) & 0x7f) | 0x80;
  out[o + 3] = ((nonce >>> 21) & 0x7f) | 0x80;
  out[o + 4] = (nonce >>> 28) & 0x07;
  return out;
}
