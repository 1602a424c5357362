// What a prepared module imports from the host, in the "wasmbox" namespace, and the description
// of it that crosses from the preparation worker to the runner. The limiter (rewrite.ts) writes
// these imports into the module; src/worker/guest.ts creates the objects that satisfy them.
//
// Everything the host needs to reach inside a guest is an import, never an export: a module may
// use all of V8's 100,000 exports, and the caps live in the objects the host creates (a memory or
// table created with `maximum` at the cap cannot grow past it, whatever the module declares).
// This file is loaded by runner threads: types and constants only, no parser.

import type { Limits, RefType } from '../wasm/module.js';

export const HOST_MODULE = 'wasmbox';
export const MEMORY_IMPORT = 'memory';
/** A one-element funcref table holding the start function, which the host calls once the fuel
 *  budget is set (the start section would run it inside instantiation, unmeasured). */
export const START_TABLE_IMPORT = 'start';

export function tableImportName(i: number): string {
  return `table${i}`;
}

/**
 * The hidden globals, all mutable, in import order: they take the global indices right after the
 * module's own imported globals, and every global the module defines moves up by their count.
 * The host reads and writes them; the guest's code cannot name them.
 */
export const HIDDEN_GLOBALS = {
  /** i64: consumed - limit. The host sets -limit before the guest runs. */
  fuel: { value: 'i64', initial: 0n },
  /** i64: target page count of the last memory.grow that returned -1 (0: none). */
  growRefused: { value: 'i64', initial: 0n },
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
  /** The module has a start function, in the "wasmbox" "start" table. */
  start: boolean;
}
