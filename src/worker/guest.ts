// Running one guest: create what the prepared module imports from the host (its memory with the
// request's cap, its tables, the table of hidden accessors with the host's fuel-slice function),
// instantiate, grant the first slice of fuel, run the start function, call the export, read the
// fuel back and classify how it ended. The deadline is kept here, in the guest's own thread: a
// check that finds its slice spent past the deadline ends the run as a trap, and the run is a
// timeout with its account, output and thread intact (src/wasi/fuel.ts). The
// runner thread, the tests (test/helpers/metered.ts, test/wasi-host.test.ts) and the benchmarks
// all run guests through this file, so what they measure and prove is the runner's own code.
//
// Every way a guest can end is a verdict here, never an exception: traps, stack exhaustion, fuel
// exhaustion, an engine that cannot allocate the memory or a table, an instantiation the engine
// refuses. Only a bug in the service itself (an error no guest can cause) is thrown.
//
// Loaded by runner threads: no parser, no binaryen (a runner killed at its deadline must be
// replaced in milliseconds).

import { performance } from 'node:perf_hooks';
import {
  type GuestLayout,
  HIDDEN_TABLE_IMPORT,
  type HiddenGlobalName,
  HOST_MODULE,
  MEMORY_IMPORT,
  REFILL_SLOT,
  START_SLOT,
  getterSlot,
  hiddenTableSize,
  setterSlot,
  tableImportName,
} from '../limits/guest-imports.js';
import { type FuelCell, GuestFuel } from '../wasi/fuel.js';
import { WASI_MODULE, type WasiHost } from '../wasi/preview1.js';
import type { Outcome, TrapKind } from './protocol.js';

const MAX_PAGES = 65_536;
const PAGE_BYTES = 65_536;
const nowNs = (): number => performance.now() * 1e6;

/** How a run ended, as the contract reports it. */
export interface Verdict {
  outcome: Outcome;
  trap?: { kind: TrapKind; message: string };
  /** Why, for outcomes other than ok and trap. */
  message?: string;
}

export interface GuestOptions {
  module: WebAssembly.Module;
  layout: GuestLayout;
  fuelLimit: bigint;
  /** The request's memory limit, in 64 KiB pages: the memory's maximum is lowered to it. */
  memoryLimitPages: number;
  /** Builds the WASI host once the fuel account exists (host calls are charged to it); the
   *  guest binds it to the memory and provides its imports. */
  wasi?: (fuel: GuestFuel) => WasiHost;
  /** Imports beyond the host's own, for modules that import functions of their own (the service
   *  refuses those; tests of the transform use them). */
  imports?: WebAssembly.Imports;
  /** The run's wall-clock limit, counted from the start of guest code (after instantiation): the
   *  first fuel check past it ends the run (outcome timeout). None: only fuel ends it. */
  timeoutMs?: number;
  /** Shared cell the fuel account is published to at every slice boundary (progressBuffer()). */
  progress?: SharedArrayBuffer;
  /** false: the module was instrumented without slices (InstrumentOptions.slices): the whole
   *  budget is granted at once. Default true. */
  slices?: boolean;
}

/**
 * The host's refill function must sit in a funcref table, which holds only WebAssembly functions:
 * a two-import module turns a JS function into one (re-exporting an imported function gives a
 * WebAssembly function that calls it). Its instances are pooled per thread: each forwards to the
 * refill of whichever guest holds it, so a run does not pay for instantiating one (about 7 µs).
 * A guest holds its wrapper until release() (the runner releases it when the run is over).
 */
let refillWrapper: WebAssembly.Module | null = null;
interface RefillWrapper {
  fn: WebAssembly.ExportValue;
  target: () => number;
}
const freeWrappers: RefillWrapper[] = [];
const MAX_FREE_WRAPPERS = 16;
/** What a released wrapper answers: "stop" (the guest then executes unreachable). */
const RELEASED = (): number => 1;

function takeRefillWrapper(refill: () => number): RefillWrapper {
  const pooled = freeWrappers.pop();
  if (pooled) {
    pooled.target = refill;
    return pooled;
  }
  // (module (import "h" "f" (func (result i32))) (export "f" (func 0)))
  refillWrapper ??= new WebAssembly.Module(
    Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7f, 2, 7, 1, 1, 0x68, 1, 0x66, 0, 0, 7, 5, 1, 1, 0x66, 0, 0),
  );
  const wrapper: RefillWrapper = { fn: null as unknown as WebAssembly.ExportValue, target: refill };
  wrapper.fn = new WebAssembly.Instance(refillWrapper, { h: { f: () => wrapper.target() } }).exports.f!;
  return wrapper;
}

export class Guest {
  instance: WebAssembly.Instance | null = null;
  /** What the engine threw when instantiation failed (tests compare it with an unmetered run). */
  instantiationError: unknown = null;
  private startFunction: (() => void) | null = null;
  /** The pooled refill wrapper this guest's table holds (takeRefillWrapper). */
  private wrapper: RefillWrapper | null = null;

  private constructor(
    readonly options: GuestOptions,
    readonly fuel: GuestFuel,
    readonly memory: WebAssembly.Memory | null,
    readonly tables: readonly WebAssembly.Table[],
    /** Filled by instantiation: the hidden globals' accessors, then the start function. */
    private readonly hiddenTable: WebAssembly.Table,
    readonly host: WasiHost | null,
  ) {}

  /**
   * Creates the host's side of the guest (instantiate() sets the budget). A verdict instead when
   * the module's memory starts above the request's limit or the engine cannot allocate the memory
   * or a table (a memory reserves about 10 GB of address space, whatever its size: a process can
   * run out of it).
   */
  static create(options: GuestOptions): Guest | Verdict {
    const { layout, memoryLimitPages } = options;
    let memory: WebAssembly.Memory | null = null;
    if (layout.memory) {
      const { min, shared } = layout.memory;
      if (min > memoryLimitPages) {
        return {
          outcome: 'memory_limit_exceeded',
          message: `the module's memory starts at ${min * PAGE_BYTES} bytes (${min} pages), over the limit of ${memoryLimitPages * PAGE_BYTES} bytes`,
        };
      }
      const maximum = Math.min(layout.memory.max ?? MAX_PAGES, memoryLimitPages);
      try {
        memory = new WebAssembly.Memory({ initial: min, maximum, shared } as WebAssembly.MemoryDescriptor);
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        return {
          outcome: 'memory_limit_exceeded',
          message: `the engine could not allocate the module's linear memory (${min} pages initially, up to ${maximum}): ${err.message}; the server is short of memory or address space, retry later`,
        };
      }
    }
    const tables: WebAssembly.Table[] = [];
    for (const [i, t] of layout.tables.entries()) {
      try {
        // null, explicitly: without it an externref table is filled with `undefined`, which is
        // not ref.null, where a table the module defines starts out null.
        tables.push(new WebAssembly.Table({ element: t.elemType === 'funcref' ? 'anyfunc' : 'externref', initial: t.min, maximum: t.max } as WebAssembly.TableDescriptor, null));
      } catch (err) {
        if (!(err instanceof RangeError)) throw err;
        return {
          outcome: 'memory_limit_exceeded',
          message: `the engine could not allocate table ${layout.firstTable + i} (${t.min} elements): ${err.message}`,
        };
      }
    }
    const size = hiddenTableSize(layout.start);
    const hiddenTable = new WebAssembly.Table({ element: 'anyfunc', initial: size, maximum: size });
    const fuel = new GuestFuel(options.fuelLimit, {
      ...(options.timeoutMs !== undefined && { timeoutMs: options.timeoutMs }),
      ...(options.progress && { progress: options.progress }),
      memoryBytes: () => (memory ? memory.buffer.byteLength : 0),
      ...(options.slices === false && { slices: false }),
    });
    const wrapper = takeRefillWrapper(fuel.refill);
    hiddenTable.set(REFILL_SLOT, wrapper.fn);
    const host = options.wasi ? options.wasi(fuel) : null;
    if (host && memory) host.bind(memory);
    const guest = new Guest(options, fuel, memory, tables, hiddenTable, host);
    guest.wrapper = wrapper;
    return guest;
  }

  /** Instantiates the module and sets the fuel budget; a verdict when instantiation fails (an
   *  out-of-bounds segment traps). No guest code runs before the budget is set: the start
   *  function is the host's to call. */
  instantiate(): Verdict | null {
    const own: Record<string, WebAssembly.ExportValue> = { [HIDDEN_TABLE_IMPORT]: this.hiddenTable };
    if (this.memory) own[MEMORY_IMPORT] = this.memory;
    this.tables.forEach((t, i) => {
      own[tableImportName(i)] = t;
    });
    const imports: WebAssembly.Imports = { ...this.options.imports, [HOST_MODULE]: own };
    if (this.host) imports[WASI_MODULE] = this.host.imports();
    try {
      this.instance = new WebAssembly.Instance(this.options.module, imports);
    } catch (err) {
      this.instantiationError = err;
      return this.classify(err);
    }
    this.fuel.attach(this.fuelCell());
    this.startFunction = this.options.layout.start ? (this.hiddenTable.get(START_SLOT) as () => void) : null;
    return null;
  }

  /** A hidden global's current value; null before a successful instantiation. */
  read(name: HiddenGlobalName): number | bigint | null {
    if (!this.instance) return null;
    return this.getter(name)() as number | bigint;
  }

  private fuelCell(): FuelCell {
    return {
      read: this.getter('fuel') as () => bigint,
      write: this.hiddenTable.get(setterSlot('fuel')) as (v: bigint) => void,
    };
  }

  private getter(name: HiddenGlobalName): () => unknown {
    return this.hiddenTable.get(getterSlot(name)) as () => unknown;
  }

  /** Runs the start function, if any, then `functionName` (null: the start function only).
   *  Returns what the export returned; throws what the guest threw. */
  call(functionName: string | null, args: readonly unknown[]): unknown {
    if (!this.instance) throw new Error('Guest.call before a successful instantiate()');
    if (this.startFunction) {
      const start = this.startFunction;
      this.startFunction = null; // once per instance, as the start section would
      start();
    }
    if (functionName === null) return undefined;
    const fn = this.instance.exports[functionName];
    if (typeof fn !== 'function') throw new Error(`the instance exports no function "${functionName}"`);
    return (fn as (...a: unknown[]) => unknown)(...args);
  }

  /** The run is over: the refill wrapper goes back to this thread's pool, and should the guest's
   *  code ever run again, its next check stops it. */
  release(): void {
    const w = this.wrapper;
    if (!w) return;
    this.wrapper = null;
    w.target = RELEASED;
    if (freeWrappers.length < MAX_FREE_WRAPPERS) freeWrappers.push(w);
  }

  /** Sets the budget again (benchmarks call one instance many times). */
  resetFuel(): void {
    this.fuel.attach(this.fuelCell());
  }

  /** Fuel consumed as the account says: may exceed the limit by one straight-line stretch. */
  consumed(): bigint {
    return this.fuel.consumed();
  }

  /** What a thrown error means for the guest. Errors no guest can cause are rethrown. */
  classify(err: unknown): Verdict {
    if (err instanceof RangeError) {
      if (/call stack/i.test(err.message)) {
        return { outcome: 'stack_overflow', trap: { kind: 'stack_overflow', message: 'call stack exhausted' } };
      }
      // The engine could not allocate something the guest needed (instance memory, a buffer).
      return { outcome: 'memory_limit_exceeded', message: `the engine could not allocate what the guest needed: ${err.message}` };
    }
    if (err instanceof WebAssembly.Exception) {
      return { outcome: 'trap', trap: { kind: 'uncaught_exception', message: 'a WebAssembly exception was thrown and not caught' } };
    }
    if (err instanceof WebAssembly.LinkError || err instanceof WebAssembly.CompileError) {
      // Preparation checked every import against what the host provides, so this is the engine
      // refusing the instance; the guest cannot run, which is what a trap at instantiation says.
      return { outcome: 'trap', trap: { kind: 'other', message: `the module could not be instantiated: ${engineMessage(err)}` } };
    }
    if (!(err instanceof WebAssembly.RuntimeError)) throw err;
    const message = engineMessage(err);
    let kind: TrapKind = 'other';
    if (/null function or function signature mismatch/.test(message)) {
      kind = this.indirectCallWasNull() ? 'indirect_call_to_null' : 'indirect_call_type_mismatch';
    } else if (/float unrepresentable in integer range/.test(message)) {
      // NaN has no integer value at all; anything else was merely out of range (wasmtime's split).
      kind = Number.isNaN(this.read('truncOperand') ?? Number.NaN) ? 'invalid_conversion_to_integer' : 'integer_overflow';
    } else {
      for (const [re, k] of TRAP_MESSAGES) {
        if (re.test(message)) {
          kind = k;
          break;
        }
      }
    }
    const trap = {
      kind,
      message: kind === 'indirect_call_to_null' ? 'indirect call to a null table entry' : kind === 'indirect_call_type_mismatch' ? 'indirect call signature mismatch' : message,
    };
    if (this.refusedGrowthExplainsTrap()) return { outcome: 'memory_limit_exceeded', trap };
    return { outcome: 'trap', trap };
  }

  private indirectCallWasNull(): boolean {
    const index = Number(this.read('indirectIndex') ?? -1);
    const tableIndex = Number(this.read('indirectTable') ?? 0);
    const table = this.tables[tableIndex - this.options.layout.firstTable];
    if (!table || index < 0 || index >= table.length) return false;
    return table.get(index) === null;
  }

  /** A trap after memory.grow was refused only because of the request's memory limit. */
  private refusedGrowthExplainsTrap(): boolean {
    const mem = this.options.layout.memory;
    if (!mem) return false;
    const target = Number(this.read('growRefused') ?? 0);
    return target > this.options.memoryLimitPages && target <= (mem.max ?? MAX_PAGES);
  }
}

const TRAP_MESSAGES: readonly [RegExp, TrapKind][] = [
  [/^unreachable/, 'unreachable'],
  [/memory access out of bounds|data segment.* out of bounds/, 'memory_out_of_bounds'],
  [/table index is out of bounds|element segment.* out of bounds|table access out of bounds/, 'table_out_of_bounds'],
  [/divide by zero|remainder by zero/, 'integer_divide_by_zero'],
  [/divide result unrepresentable/, 'integer_overflow'],
  [/unaligned/, 'unaligned_atomic'],
];

function engineMessage(err: Error): string {
  return err.message.replace(/^WebAssembly\.(Instance|Module)\(\): /, '');
}

export interface GuestRun {
  verdict: Verdict;
  /** The linear memory's size at the end (memory never shrinks: its peak); 0 without one. */
  memoryPeakBytes: number;
  /** What the export returned, when the verdict is ok (undefined for a WASI command). */
  returned: unknown;
  /** What the guest threw, when it did (a trap, an exit, a stack overflow); else null. */
  thrown: unknown;
  /** Fuel as the account says; may exceed the limit by one straight-line stretch. */
  rawConsumed: bigint;
  /** What the service reports: rawConsumed capped at the limit. */
  fuelConsumed: bigint;
  /** The exit code of a WASI program (0 when _start returned); null when it did not exit. */
  exitCode: number | null;
  /** Null when the host's side could not be created (the verdict says why). */
  guest: Guest | null;
  instantiateNs: number;
  /** Guest execution: the start function plus the called export. */
  durationNs: number;
}

/** One whole run, as the runner does it: create, instantiate, start, call, account, classify. */
export function runGuest(options: GuestOptions & { functionName: string | null; args: readonly unknown[] }): GuestRun {
  const created = Guest.create(options);
  if (!(created instanceof Guest)) {
    return { verdict: created, memoryPeakBytes: 0, returned: undefined, thrown: null, rawConsumed: 0n, fuelConsumed: 0n, exitCode: null, guest: null, instantiateNs: 0, durationNs: 0 };
  }
  const guest = created;
  const t0 = nowNs();
  const refused = guest.instantiate();
  const instantiateNs = nowNs() - t0;
  let verdict: Verdict = refused ?? { outcome: 'ok' };
  let returned: unknown;
  let thrown: unknown = null;
  let durationNs = 0;
  if (!refused) {
    guest.fuel.startClock();
    const t1 = nowNs();
    try {
      returned = guest.call(options.functionName, options.args);
    } catch (err) {
      thrown = err;
      // A WASI program that called proc_exit is judged by its exit code, however its code ended
      // (it may even have caught the unwinding exception; the host then halted it through fuel).
      // A guest stopped at a check past its deadline trapped on purpose: that is a timeout.
      verdict =
        guest.host?.exitCode != null
          ? { outcome: 'ok' }
          : guest.fuel.timedOut
            ? { outcome: 'timeout', message: `the run reached its wall-clock limit of ${options.timeoutMs} ms and was stopped` }
            : guest.classify(err);
    }
    durationNs = nowNs() - t1;
  }
  let exitCode: number | null = null;
  if (guest.host) {
    exitCode = guest.host.exitCode ?? (verdict.outcome === 'ok' ? 0 : null);
    // A command's _start returns nothing; its result is its exit code.
    if (verdict.outcome === 'ok' && exitCode !== 0) verdict = { outcome: 'exited' };
  }
  const limit = options.fuelLimit;
  const rawConsumed = guest.consumed();
  let fuelConsumed = rawConsumed;
  // Checks sit at function entries and in every loop (src/metering/instrument.ts), so a run can
  // pass its budget by one acyclic stretch of code before a check sees it; whatever it then did,
  // it ran out of fuel.
  if (rawConsumed > limit) {
    verdict = { outcome: 'fuel_exhausted' };
    fuelConsumed = limit;
    exitCode = null;
  }
  guest.fuel.finish();
  const memoryPeakBytes = guest.memory ? guest.memory.buffer.byteLength : 0;
  return { verdict, memoryPeakBytes, returned, thrown, rawConsumed, fuelConsumed, exitCode, guest, instantiateNs, durationNs };
}
