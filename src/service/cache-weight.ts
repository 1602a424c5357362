// What a prepared module costs to keep in the prepared-module cache, in bytes: the main-thread
// heap its description and export lists occupy once received from the preparation worker, plus
// the native memory of its compiled module. Computed in the preparation worker (the walk over
// 100,000 exports must not run on the main thread); structured clone keeps object identity within
// one message, so what is shared there (one signature object per function type) is shared on the
// main thread too and is counted once here.
//
// The constants model V8 on 64-bit Node (8-byte tagged slots, no pointer compression); they
// were checked against measured heap growth (test/prepared-cache.test.ts fills a cache to its
// budget with 90,000-export modules and checks the heap), and round up rather than down.

const SLOT = 8;
const OBJECT_HEADER = 3 * SLOT; // map, properties, elements
const ARRAY_HEADER = 4 * SLOT; // map, properties, elements, length
const FIXED_ARRAY_HEADER = 2 * SLOT; // map, length
const STRING_HEADER = 2 * SLOT; // map, hash + length
const HEAP_NUMBER = 2 * SLOT;
/** Objects with more own properties than this end up in dictionary mode. */
const FAST_PROPERTIES_MAX = 128;
/** A dictionary entry (key, value, details) at the load factor V8 keeps (about half full). */
const DICTIONARY_ENTRY = 3 * SLOT * 2;
/** Measured native cost of a compiled module beyond its wire bytes: 330-475 bytes a function
 *  (jump table slots, lazy-compilation tables, per-function metadata) before any is compiled. */
const NATIVE_PER_FUNCTION = 512;
/** Wire bytes kept by the engine, plus code compiled from them (machine code is a few times the
 *  size of the wasm it comes from). */
const NATIVE_PER_WIRE_BYTE = 4;

const align = (n: number): number => Math.ceil(n / SLOT) * SLOT;

function stringBytes(s: string): number {
  // One byte a character for Latin-1 strings, two otherwise.
  const twoByte = /[^\u0000-\u00ff]/.test(s);
  return align(STRING_HEADER + s.length * (twoByte ? 2 : 1));
}

/** Estimated V8 heap bytes of a plain-data value (objects, arrays, strings, numbers). */
export function estimateHeapBytes(value: unknown, seen: Set<object> = new Set()): number {
  switch (typeof value) {
    case 'string':
      return stringBytes(value);
    case 'number':
      return Number.isInteger(value) && Math.abs(value) < 2 ** 31 ? 0 : HEAP_NUMBER;
    case 'bigint':
      return align(STRING_HEADER + 8);
    case 'object':
      break;
    default:
      return 0;
  }
  if (value === null || seen.has(value)) return 0;
  seen.add(value);
  if (Array.isArray(value)) {
    let bytes = ARRAY_HEADER + FIXED_ARRAY_HEADER + value.length * SLOT;
    for (const v of value) bytes += estimateHeapBytes(v, seen);
    return bytes;
  }
  if (ArrayBuffer.isView(value)) return OBJECT_HEADER + 4 * SLOT; // the bytes themselves are off-heap
  const keys = Object.keys(value);
  let bytes = OBJECT_HEADER + (keys.length > FAST_PROPERTIES_MAX ? FIXED_ARRAY_HEADER + keys.length * DICTIONARY_ENTRY : keys.length * SLOT);
  for (const k of keys) {
    // Property names of fast objects are shared through their map; dictionary keys are their own.
    if (keys.length > FAST_PROPERTIES_MAX) bytes += stringBytes(k);
    bytes += estimateHeapBytes((value as Record<string, unknown>)[k], seen);
  }
  return bytes;
}

/** Native memory of a compiled module: its wire bytes, the code compiled from them, and the
 *  engine's per-function tables. */
export function estimateCompiledBytes(wireBytes: number, functionCount: number): number {
  return wireBytes * NATIVE_PER_WIRE_BYTE + functionCount * NATIVE_PER_FUNCTION;
}
