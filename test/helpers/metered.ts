// Runs a module through the service's own transform (the limiter and the fuel pass, built code in
// dist/) and the runner's own guest code (src/worker/guest.ts), in-process: the host creates the
// memory, tables and hidden globals the module imports from "wasmbox", sets the fuel, calls the
// start function, then the requested export. No worker, no server: the transform, the guest code
// and the engine only.

import { instrument } from '../../dist/src/metering/instrument.js';
import type { CostTable } from '../../dist/src/metering/costs.js';
import { Guest } from '../../dist/src/worker/guest.js';

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
  /** InstrumentOptions.elideWrites (default true, as the service runs it). */
  elideWrites?: boolean;
  /** InstrumentOptions.headerWrites (default true, as the service runs it). */
  headerWrites?: boolean;
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
  /** The runner's guest: its hidden globals, tables and classification. */
  guest: Guest;
  /** The instrumented bytes. */
  bytes: Uint8Array;
}

const MAX_PAGES = 65_536;
const UNLIMITED = 1_000_000_000_000n;

/** The transform's output, instantiated by the runner's guest code with its budget set: for tests
 *  that drive the instance. Throws when instantiation fails (these tests expect it to succeed). */
export function instantiateMetered(bytes: Uint8Array, opts: MeteredOptions = {}) {
  const res = instrument(bytes, {
    maxTableElements: opts.maxTableElements ?? 100_000,
    ...(opts.costs ? { costs: opts.costs } : {}),
    ...(opts.elideWrites === false ? { elideWrites: false } : {}),
    ...(opts.headerWrites === false ? { headerWrites: false } : {}),
  });
  const module = new WebAssembly.Module(res.bytes);
  const created = Guest.create({
    module,
    layout: res.layout,
    fuelLimit: BigInt(opts.fuel ?? UNLIMITED),
    memoryLimitPages: opts.memoryLimitPages ?? MAX_PAGES,
    ...(opts.imports ? { imports: opts.imports } : {}),
  });
  if (!(created instanceof Guest)) throw new Error(`the guest could not be created: ${created.message ?? created.outcome}`);
  const refused = created.instantiate();
  if (refused) throw new Error(`the guest could not be instantiated: ${refused.trap?.message ?? refused.message ?? refused.outcome}`);
  return { res, module, guest: created, instance: created.instance!, memory: created.memory };
}

/** Instruments, instantiates, sets the fuel, runs start and then `fn`; never throws for guest traps. */
export function runMetered(bytes: Uint8Array, opts: MeteredOptions = {}): MeteredRun {
  const limit = BigInt(opts.fuel ?? UNLIMITED);
  const { res, guest, instance, memory } = instantiateMetered(bytes, { ...opts, fuel: limit });
  if (opts.fn !== undefined && typeof instance.exports[opts.fn] !== 'function') throw new Error(`test bug: no exported function ${opts.fn}`);
  let results: unknown;
  let trap: Error | null = null;
  try {
    results = guest.call(opts.fn ?? null, opts.args ?? []);
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    trap = err;
  }
  const rawConsumed = guest.consumed();
  const exhausted = rawConsumed > limit;
  return {
    results,
    rawConsumed,
    consumed: Number(exhausted ? limit : rawConsumed),
    exhausted,
    trap,
    instance,
    memory,
    guest,
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
