// The messages that cross the thread boundary, imported by both sides. Only plain data (and
// compiled WebAssembly.Module objects, which V8 shares between threads) crosses; guest failures
// are results, not thrown errors.

import type { MessagePort } from 'node:worker_threads';
import type { GuestLayout } from '../limits/guest-imports.js';
import type { FuncSig, JsonValue, WasmArg } from '../values/codec.js';

export interface ExportDescription {
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
  /** Functions only (shared by every export of the same type: never mutate). */
  params?: readonly string[];
  results?: readonly string[];
}

export interface ImportDescription {
  module: string;
  name: string;
  kind: 'function' | 'table' | 'memory' | 'global' | 'tag';
}

/** What callers see of a module (the guest's own exports and imports, never the hidden ones). */
export interface ModuleDescription {
  size: number;
  exports: ExportDescription[];
  imports: ImportDescription[];
  /** The module's own linear memory, in 64 KiB pages; null when it has none. */
  memory: { minPages: number; maxPages: number | null; shared: boolean } | null;
  tables: { elementType: string; min: number; max: number | null }[];
  hasStart: boolean;
}

/** A preparation thread's workerData (src/worker/pool.ts). */
export interface PrepareWorkerData {
  /** Warm up on a generated module when the thread starts (src/worker/warmup.ts). */
  warmUp: boolean;
  /** The warm-up state every preparation thread shares with the pools (warmUpState()). */
  warmState?: SharedArrayBuffer;
}

/** Int32 cells of the warm-up state (src/worker/warmup.ts) shared by the pools and every
 *  preparation thread. */
export const WARM_ACTIVE = 0; // real preparations waiting or running, kept by the main thread
export const WARM_DONE = 1; // threads whose warm-up has ended, for whatever reason
export const WARM_ROUNDS = 2; // warm-up rounds done, every thread together
const WARM_CELLS = 3;

export function warmUpState(): SharedArrayBuffer {
  return new SharedArrayBuffer(WARM_CELLS * Int32Array.BYTES_PER_ELEMENT);
}

export interface PrepareTask {
  bytes: Uint8Array;
  maxTableElements: number;
  /** BigInt64Array[1]: the worker stores the epoch in µs when it starts, so the preparation
   *  deadline counts from then, not from queueing (time in the queue is not the module's fault). */
  startedAt: SharedArrayBuffer;
}

/** WebAssembly text to compile to a binary (prepare.ts compileText), before preparation. */
export interface CompileTextTask {
  text: string;
  /** As PrepareTask.startedAt. */
  startedAt: SharedArrayBuffer;
}

export type CompileTextResult =
  | { ok: true; bytes: Uint8Array }
  | {
      ok: false;
      code: 'invalid_module' | 'module_too_complex';
      /** invalid_module: the first problem, with its line and column when the compiler located it. */
      message: string;
    };

export interface PrepareTimings {
  validateNs: number;
  instrumentNs: number;
  compileNs: number;
  /** Warm-up rounds the thread had done before this preparation (src/worker/warmup.ts). */
  warmUpRounds: number;
}

export type PrepareResult =
  | {
      ok: true;
      module: WebAssembly.Module;
      description: ModuleDescription;
      functions: Record<string, FuncSig>;
      /** What the runner creates for the module (memory, tables, hidden globals, start). */
      layout: GuestLayout;
      instrumentedSize: number;
      /** What keeping this result costs the main thread: heap of the description and export
       *  lists plus the compiled module's native memory (src/service/cache-weight.ts). */
      weightBytes: number;
      /** The module imports WASI preview1 functions (all checked against their signatures). */
      wasi: boolean;
      timings: PrepareTimings;
    }
  | {
      ok: false;
      code: 'invalid_module' | 'unsupported_import' | 'module_too_complex';
      message: string;
      /** A deadline miss: it may be load rather than the module, so it is not cached. */
      transient?: true;
    };

/** How a task names its compiled module. Runner threads keep the modules they have been sent
 *  (runner.ts), so a task carries only the key once the threads have it; a thread that does not
 *  have it answers MissingModule and is sent the module. */
export interface ModuleRef {
  /** Absent when the threads are expected to have it already under moduleKey. */
  module?: WebAssembly.Module;
  /** The module's content address (its compiled form is deterministic). */
  moduleKey: string;
  /** What keeping it costs (PrepareResult.weightBytes): bounds a thread's own cache. */
  moduleWeight: number;
}

/** A runner thread's answer to a task that named a module it does not hold. */
export interface MissingModule {
  missingModule: true;
}

export interface RunTask extends ModuleRef {
  layout: GuestLayout;
  functionName: string;
  sig: FuncSig;
  args: WasmArg[];
  fuelLimit: number;
  memoryLimitPages: number;
  /** Wall-clock limit of the run (WASI sleeps are bounded by it). */
  timeoutMs: number;
  /** Present for WASI runs: the program's argv, environment, stdin and output caps. */
  wasi?: WasiTask;
  /** BigInt64Array[1]: the worker stores the epoch in µs (clock.ts) when the guest starts, so the
   *  main thread measures the deadline from then, not from queueing. */
  startedAt: SharedArrayBuffer;
  /** The run's fuel account as of its last slice boundary (src/wasi/fuel.ts, PROGRESS_*): live
   *  progress, and the figures a terminated run reports. */
  progress: SharedArrayBuffer;
}

/** A batch: calls of one prepared module, each on a fresh instance, in one runner task
 *  (runner.ts runBatch). The batch's deadline, `timeoutMs` from when the thread starts it, bounds
 *  every call; a call not started by then is answered without running. */
export interface BatchTask extends ModuleRef {
  layout: GuestLayout;
  calls: BatchCallTask[];
  timeoutMs: number;
  /** Where WASI calls mirror their output, one call at a time (each call starts it afresh). */
  output?: SharedArrayBuffer;
  startedAt: SharedArrayBuffer;
  /** The current call's fuel account (as RunTask.progress); reset at each call. */
  progress: SharedArrayBuffer;
  /** Int32Array[1]: the index of the call running now (-1 before the first), for the main thread
   *  when it must terminate the thread. */
  current: SharedArrayBuffer;
  /** Each finished call's result is posted here as { index, result }, so the calls that finished
   *  keep their answers if the thread is terminated during a later one. */
  journal: MessagePort;
}

export interface BatchCallTask {
  functionName: string;
  sig: FuncSig;
  args: WasmArg[];
  fuelLimit: number;
  memoryLimitPages: number;
  /** The call's own wall-clock limit; the batch's deadline may cut it shorter. */
  timeoutMs: number;
  wasi?: Omit<WasiTask, 'output'>;
}

export interface WasiTask {
  args: string[];
  env: Record<string, string>;
  stdin: Uint8Array;
  stdoutLimitBytes: number;
  stderrLimitBytes: number;
  /** Output mirrored as it is written (src/wasi/output.ts), readable after a kill. */
  output: SharedArrayBuffer;
}

/** What a WASI run adds to its result. */
export interface WasiResult {
  /** The code the program exited with (0 when _start returned); null when it did not exit. */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

export type TrapKind =
  | 'unreachable'
  | 'memory_out_of_bounds'
  | 'table_out_of_bounds'
  | 'integer_divide_by_zero'
  | 'integer_overflow'
  | 'invalid_conversion_to_integer'
  | 'indirect_call_to_null'
  | 'indirect_call_type_mismatch'
  | 'unaligned_atomic'
  | 'uncaught_exception'
  | 'stack_overflow'
  | 'other';

export const TRAP_KINDS: readonly TrapKind[] = [
  'unreachable',
  'memory_out_of_bounds',
  'table_out_of_bounds',
  'integer_divide_by_zero',
  'integer_overflow',
  'invalid_conversion_to_integer',
  'indirect_call_to_null',
  'indirect_call_type_mismatch',
  'unaligned_atomic',
  'uncaught_exception',
  'stack_overflow',
  'other',
];

export type Outcome = 'ok' | 'trap' | 'stack_overflow' | 'fuel_exhausted' | 'memory_limit_exceeded' | 'timeout' | 'exited';

export interface RunResult {
  outcome: Outcome;
  results?: JsonValue[];
  trap?: { kind: TrapKind; message: string };
  /** Why, for outcomes other than ok and trap (memory_limit_exceeded, timeout). */
  message?: string;
  /** Exact for completed runs and for timeouts; capped at the limit when exhausted; for a run
   *  whose thread had to be terminated, as of its last slice boundary. */
  fuelConsumed: number;
  memoryPeakBytes: number;
  /** The guest could not be reached at its deadline (blocked in an atomic wait, a host call past
   *  its grace) or exhausted its thread's heap, and its thread was terminated and replaced. */
  threadKilled?: true;
  /** Guest execution: the start function plus the called export. */
  durationNs: number;
  instantiateNs: number;
  /** Set on the main thread (src/worker/pool.ts): how long the run waited, after it was handed to
   *  the run pool, for a thread to start it (behind the run ahead of it on a thread). */
  waitedNs?: number;
  /** WASI runs only. */
  wasi?: WasiResult;
}
