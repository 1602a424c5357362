// Runs a module through the service's own fuel-metering transform (the built code in dist/) and
// instantiates it in-process, the way src/worker/runner.ts does: the module's memory is created by
// the host from the limits the transform reports and imported as ("wasmbox", "memory"), the fuel
// global is set to -limit, the (exported) start function is called, then the requested export.
// No worker, no server: the transform and the engine only.

import { instrument } from '../../dist/src/metering/instrument.js';
import type { CostTable } from '../../dist/src/metering/costs.js';

export interface MeteredOptions {
  /** Fuel budget; default 10^12 (effectively unlimited). */
  fuel?: number | bigint;
  /** Export to call after the start function; omit to run only the start function. */
  fn?: string;
  args?: unknown[];
  /** Cap on the memory's maximum, in pages (the request's memory limit). Default: the module's own. */
  memoryLimitPages?: number;
  maxTableElements?: number;
  costs?: CostTable;
  /** Extra imports for modules that import functions (the server refuses those; the transform does not). */
  imports?: WebAssembly.Imports;
}

export interface MeteredRun {
  /** The export's return value(s) as JS gives them (undefined, a value, or an array for multi-value). */
  results: unknown;
  /** Fuel consumed as the global says (limit + value): may exceed the limit by one straight-line stretch. */
  rawConsumed: bigint;
  /** What the host reports: min(rawConsumed, limit). */
  consumed: number;
  /** The host's verdict: the run went over its budget (whatever it then did). */
  exhausted: boolean;
  /** The error the run threw (a trap, a stack overflow, an uncaught exception); null when it returned. */
  trap: Error | null;
  instance: WebAssembly.Instance;
  memory: WebAssembly.Memory | null;
  hidden: ReturnType<typeof instrument>['hidden'];
  /** The instrumented bytes. */
  bytes: Uint8Array;
}

const MAX_PAGES = 65_536;
const UNLIMITED = 1_000_000_000_000n;

/** The transform's output, instantiated, with its memory: for tests that drive the instance. */
export function instantiateMetered(bytes: Uint8Array, opts: MeteredOptions = {}) {
  const res = instrument(bytes, { maxTableElements: opts.maxTableElements ?? 100_000, ...(opts.costs ? { costs: opts.costs } : {}) });
  let memory: WebAssembly.Memory | null = null;
  if (res.memory) {
    const limitPages = opts.memoryLimitPages ?? MAX_PAGES;
    const maximum = Math.min(res.memory.max ?? MAX_PAGES, limitPages);
    memory = new WebAssembly.Memory({ initial: res.memory.min, maximum, shared: res.memory.shared } as WebAssembly.MemoryDescriptor);
  }
  const imports: WebAssembly.Imports = { ...(opts.imports ?? {}) };
  if (memory) imports.wasmbox = { memory };
  const module = new WebAssembly.Module(res.bytes);
  const instance = new WebAssembly.Instance(module, imports);
  return { res, module, instance, memory };
}

/** Instruments, instantiates, sets the fuel, runs start and then `fn`; never throws for guest traps. */
export function runMetered(bytes: Uint8Array, opts: MeteredOptions = {}): MeteredRun {
  const limit = BigInt(opts.fuel ?? UNLIMITED);
  const { res, instance, memory } = instantiateMetered(bytes, opts);
  const fuel = instance.exports[res.hidden.fuel] as WebAssembly.Global;
  fuel.value = -limit;
  let results: unknown;
  let trap: Error | null = null;
  try {
    if (res.hidden.start) (instance.exports[res.hidden.start] as () => void)();
    if (opts.fn !== undefined) {
      const f = instance.exports[opts.fn];
      if (typeof f !== 'function') throw new Error(`test bug: no exported function ${opts.fn}`);
      results = (f as (...a: unknown[]) => unknown)(...(opts.args ?? []));
    }
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    if (err.message.startsWith('test bug')) throw err;
    trap = err;
  }
  const rawConsumed = limit + (fuel.value as bigint);
  const exhausted = rawConsumed > limit;
  return {
    results,
    rawConsumed,
    consumed: Number(exhausted ? limit : rawConsumed),
    exhausted,
    trap,
    instance,
    memory,
    hidden: res.hidden,
    bytes: res.bytes,
  };
}

/** Fuel a completed run consumed; fails loudly when the run trapped or ran out. */
export function fuelOf(bytes: Uint8Array, fn?: string, args: unknown[] = []): number {
  const r = runMetered(bytes, fn === undefined ? { args } : { fn, args });
  if (r.trap) throw new Error(`expected the run to complete, it threw: ${r.trap.message}`);
  if (r.exhausted) throw new Error('expected the run to complete, it ran out of fuel');
  return r.consumed;
}
