// Value comparison and trap-kind expectations shared by the conformance suites.

import type { JsonValue } from '../src/values/codec.js';

/** Expected vs actual result lists: an expected "NaN" matches any "NaN"; everything else is exact
 *  (numbers by ===, strings by ===, so "-0" only matches "-0"), except f32 positions (when
 *  `types` is given), which compare as f32 values: the conformance data prints an f32 as the f64
 *  holding it (1.7000000476837158) while the service prints the shortest decimal that reads back
 *  to the same f32 (1.7), as the contract asks. */
export function resultsMatch(expected: readonly JsonValue[], actual: unknown, types?: readonly string[]): boolean {
  if (!Array.isArray(actual) || actual.length !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i];
    const a: unknown = actual[i];
    if (e === 'NaN') {
      if (a !== 'NaN') return false;
      continue;
    }
    if (types?.[i] === 'f32' && typeof e === 'number' && typeof a === 'number') {
      if (Math.fround(e) !== Math.fround(a)) return false;
      continue;
    }
    if (typeof e !== typeof a || e !== a) return false;
  }
  return true;
}

/** Spec trap message -> the trap.kind the service must report; null when unmapped (any trap). */
const SPEC_TRAP_KINDS: ReadonlyArray<[string, string]> = [
  ['unreachable', 'unreachable'],
  ['integer divide by zero', 'integer_divide_by_zero'],
  ['integer overflow', 'integer_overflow'],
  ['invalid conversion to integer', 'invalid_conversion_to_integer'],
  ['out of bounds memory access', 'memory_out_of_bounds'],
  ['undefined element', 'table_out_of_bounds'],
  ['out of bounds table access', 'table_out_of_bounds'],
  ['uninitialized element', 'indirect_call_to_null'],
  ['indirect call type mismatch', 'indirect_call_type_mismatch'],
  ['call stack exhausted', 'stack_overflow'],
];

export function expectedTrapKind(specTrap: string | undefined): string | null {
  if (specTrap === undefined) return null;
  for (const [msg, kind] of SPEC_TRAP_KINDS) if (specTrap.includes(msg)) return kind;
  return null;
}

export function isStackExhaustion(specTrap: string | undefined): boolean {
  return specTrap !== undefined && /call stack exhaust/i.test(specTrap);
}

export function show(v: unknown): string {
  const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x));
  if (s === undefined) return String(v);
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}
