// Immediates of the instructions a function body may hold: how many bytes follow each opcode.
// Walkers of function bodies (the fuel pass, the limiter's global renumbering) skip immediates
// with these and refuse what they do not know, rather than guess at its length.

import type { Reader } from './bytes.js';
import { UnsupportedFeature, VALTYPE_BYTES } from './module.js';

export function skipBlockType(r: Reader): void {
  const b = r.bytes[r.pos]!;
  if (b === 0x40 || VALTYPE_BYTES[b] !== undefined) {
    r.pos++;
  } else if (b >= 0x40 && b < 0x80) {
    throw new UnsupportedFeature(`block type 0x${b.toString(16)} (typed references / GC) is not supported`);
  } else {
    r.skipLeb(5); // s33 type index
  }
}

export function skipMemArg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) {
    if (r.u32() !== 0) throw new UnsupportedFeature('multiple memories are not supported');
  }
  r.skipLeb();
}

export function skipFcImmediates(r: Reader, sub: number): void {
  switch (sub) {
    case 0: case 1: case 2: case 3: case 4: case 5: case 6: case 7:
      return; // saturating truncations
    case 8: // memory.init data mem
    case 10: // memory.copy mem mem
    case 12: // table.init elem table
    case 14: // table.copy table table
      r.u32();
      r.u32();
      return;
    case 9: // data.drop
    case 11: // memory.fill mem
    case 13: // elem.drop
    case 15: // table.grow
    case 16: // table.size
    case 17: // table.fill
      r.u32();
      return;
    default:
      throw new UnsupportedFeature(`instruction 0xfc ${sub} is not supported by this service`);
  }
}

export function skipSimdImmediates(r: Reader, sub: number): void {
  if (sub <= 0x0b || sub === 0x5c || sub === 0x5d) {
    skipMemArg(r); // loads, stores, load_zero
  } else if (sub === 0x0c || sub === 0x0d) {
    r.skip(16); // v128.const, i8x16.shuffle
  } else if (sub >= 0x15 && sub <= 0x22) {
    r.skip(1); // extract/replace lane
  } else if (sub >= 0x54 && sub <= 0x5b) {
    skipMemArg(r); // load/store lane
    r.skip(1);
  } else if (sub > 0x113) {
    throw new UnsupportedFeature(`SIMD instruction 0xfd ${sub} is not supported by this service`);
  }
}

export function skipAtomicImmediates(r: Reader, sub: number): void {
  if (sub === 0x03) {
    r.skip(1); // atomic.fence
  } else if (sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e)) {
    skipMemArg(r);
  } else {
    throw new UnsupportedFeature(`atomic instruction 0xfe ${sub} is not supported by this service`);
  }
}

export function unsupportedOpcodeMessage(op: number): string {
  const known: Record<number, string> = {
    0x0a: 'throw_ref (exception references)',
    0x14: 'call_ref (typed function references)',
    0x15: 'return_call_ref (typed function references)',
    0x1f: 'try_table (exception references)',
    0xd3: 'ref.eq (GC)',
    0xd4: 'ref.as_non_null (typed function references)',
    0xd5: 'br_on_null (typed function references)',
    0xd6: 'br_on_non_null (typed function references)',
    0xfb: 'GC instructions',
  };
  return `instruction ${known[op] ?? `0x${op.toString(16)}`} is not supported by this service`;
}
