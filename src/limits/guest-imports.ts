// What a prepared module imports from the host, in the "wasmbox" namespace, and the description
// of it that crosses from the preparation worker to the runner. The limiter (rewrite.ts) writes
// these imports into the module; src/worker/guest.ts creates the objects that satisfy them.
//
// Everything the host needs to reach inside a guest comes through an import, never an export: a
// module may use all of V8's 100,000 exports, and the caps live in the objects the host creates (a
// memory or table created with `maximum` at the cap cannot grow past it, whatever it declares).
// This file is loaded by runner threads: types and constants only, no parser.

import type { Limits, RefType } from '../wasm/module.js';

export const HOST_MODULE = 'wasmbox';
export const MEMORY_IMPORT = 'memory';
/**
 * A funcref table the host creates and the module fills (an active element segment the limiter
 * adds): after slot 0, a getter and a setter for each hidden global, then the start function when
 * there is one. The host reaches the hidden state through these functions, never through exports.
 * Slot 0 is the host's: its fuel-slice function (REFILL_SLOT).
 */
export const HIDDEN_TABLE_IMPORT = 'hidden';

export function tableImportName(i: number): string {
  return `table${i}`;
}

/**
 * The hidden globals, all mutable, defined by the module after its own globals. They are not
 * imports: V8 reaches an imported mutable global through one more indirection, which cost 20 %
 * on call-heavy code (fib, where every basic block adds to the fuel global), while the host only
 * touches them before and after a run and on host calls.
 */
export const HIDDEN_GLOBALS = {
  /** i64: consumed - limit. The host sets -limit before the guest runs. */
  fuel: { value: 'i64', initial: 0 },
  /** i64: target page count of the last memory.grow that returned -1 (0: none). */
  growRefused: { value: 'i64', initial: 0 },
  /** i32: the table index used by the last call_indirect. */
  indirectIndex: { value: 'i32', initial: -1 },
  /** i32: the table used by the last call_indirect (written only with several tables). */
  indirectTable: { value: 'i32', initial: 0 },
  /** f64: the operand of the last trapping float-to-int truncation, so the host can tell NaN
   *  (invalid conversion) from out of range (integer overflow); V8 reports both with one message. */
  truncOperand: { value: 'f64', initial: 0 },
} as const;

export type HiddenGlobalName = keyof typeof HIDDEN_GLOBALS;
export const HIDDEN_GLOBAL_NAMES = Object.keys(HIDDEN_GLOBALS) as HiddenGlobalName[];

/**
 * Slot of the host's fuel-slice function, `() -> i32`, which the host puts in the table before
 * instantiation. The fuel pass's checks reach it (through the limiter's appended `$slice`
 * function) when the current slice of fuel is spent: it grants the next slice and answers 0, or
 * answers 1 to end the run (budget spent, deadline passed, program exited), and `$slice` then
 * executes `unreachable`, a trap no guest handler can catch. See src/wasi/fuel.ts.
 */
export const REFILL_SLOT = 0;
/** Where the element segment starts: after the host's slot. */
export const FIRST_ACCESSOR_SLOT = 1;
/** Slots of the hidden table: getter of global i at 1 + 2i, setter at 2 + 2i, then the start function. */
export const getterSlot = (name: HiddenGlobalName): number => FIRST_ACCESSOR_SLOT + 2 * HIDDEN_GLOBAL_NAMES.indexOf(name);
export const setterSlot = (name: HiddenGlobalName): number => getterSlot(name) + 1;
export const START_SLOT = FIRST_ACCESSOR_SLOT + 2 * HIDDEN_GLOBAL_NAMES.length;
export const hiddenTableSize = (start: boolean): number => START_SLOT + (start ? 1 : 0);

/** What the host must create for one prepared module. */
export interface GuestLayout {
  /** The module's own memory, imported as "wasmbox" "memory"; the host lowers `max` to the
   *  request's limit. Null when the module defines none. */
  memory: Limits | null;
  /** The module's own tables, imported as "wasmbox" "table<i>", `max` already at the server's cap. */
  tables: { elemType: RefType; min: number; max: number }[];
  /** Index of tables[0] in the module's table index space (tables the module imports itself come
   *  first; the service refuses those, the transform keeps them). */
  firstTable: number;
  /** The module has a start function, in the hidden table's START_SLOT. */
  start: boolean;
}
