// One variant of one guest program, in its own thread (its own isolate): compiled and instantiated
// once, then `run(n)` called on request and timed here, so the message round trip is not counted.
// The unmetered and metered variants run in identical workers, so both tier up (Liftoff, then
// TurboFan for calls after the first) the same way. The metered variant runs through the runner's
// own guest code (src/worker/guest.ts): the same imports, budget and start function.

import { parentPort, workerData } from 'node:worker_threads';
// Compiled as the service compiles guests (eagerly, branch hints on).
import '../src/worker/engine-flags.js';
import type { GuestLayout } from '../src/limits/guest-imports.js';
import { Guest } from '../src/worker/guest.js';

export interface MeteringWorkerData {
  variant: 'unmetered' | 'metered';
  bytes: Uint8Array;
  functionName: string;
  /** Metered only: what the host creates for the instrumented module. */
  layout?: GuestLayout;
  memoryLimitPages?: number;
  fuelLimit?: bigint;
  /** Metered only: false for code instrumented without fuel slices (the baseline before them). */
  slices?: boolean;
}

export type MeteringRequest = { n: number };
export type MeteringReply =
  | { ok: true; ms: number; result: string; fuel: string | null }
  | { ok: false; error: string };
export type MeteringReady = { ready: true; compileMs: number; instantiateMs: number } | { ready: false; error: string };

const d = workerData as MeteringWorkerData;
const port = parentPort!;

try {
  let t = performance.now();
  const module = new WebAssembly.Module(d.bytes);
  const compileMs = performance.now() - t;
  t = performance.now();
  let fn: (n: number) => unknown;
  let guest: Guest | null = null;
  if (d.variant === 'metered') {
    const created = Guest.create({
      module,
      layout: d.layout!,
      fuelLimit: d.fuelLimit ?? 0n,
      memoryLimitPages: d.memoryLimitPages ?? 65_536,
      ...(d.slices === false && { slices: false }),
    });
    if (!(created instanceof Guest)) throw new Error(`the guest could not be created: ${created.outcome} ${created.message ?? ''}`);
    const refused = created.instantiate();
    if (refused) throw new Error(`the guest could not be instantiated: ${refused.trap?.message ?? refused.message ?? refused.outcome}`);
    created.call(null, []); // the start function, once
    guest = created;
    fn = (n) => created.call(d.functionName, [n]);
  } else {
    const instance = new WebAssembly.Instance(module, {});
    fn = instance.exports[d.functionName] as (n: number) => unknown;
  }
  const instantiateMs = performance.now() - t;

  port.on('message', (msg: MeteringRequest) => {
    try {
      guest?.resetFuel();
      const t0 = performance.now();
      const result = fn(msg.n);
      const ms = performance.now() - t0;
      const consumed = guest ? String(guest.consumed()) : null;
      port.postMessage({ ok: true, ms, result: String(result), fuel: consumed } satisfies MeteringReply);
    } catch (err) {
      port.postMessage({ ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) } satisfies MeteringReply);
    }
  });
  port.postMessage({ ready: true, compileMs, instantiateMs } satisfies MeteringReady);
} catch (err) {
  port.postMessage({ ready: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) } satisfies MeteringReady);
}
