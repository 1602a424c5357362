// One variant of one guest program, in its own thread (its own isolate): compiled and instantiated
// once, then `run(n)` called on request and timed here, so the message round trip is not counted.
// The unmetered and metered variants run in identical workers, so both tier up (Liftoff, then
// TurboFan for calls after the first) the same way.

import { parentPort, workerData } from 'node:worker_threads';

export interface MeteringWorkerData {
  variant: 'unmetered' | 'metered';
  bytes: Uint8Array;
  functionName: string;
  /** Metered only: the hidden fuel global's export name and the memory to create for the import. */
  fuelExport?: string;
  startExport?: string | null;
  memory?: { min: number; max: number | null; shared: boolean } | null;
  memoryLimitPages?: number;
  fuelLimit?: bigint;
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
  let imports: WebAssembly.Imports = {};
  if (d.variant === 'metered' && d.memory) {
    // As src/worker/runner.ts does: the maximum lowered to the request's memory limit.
    const maximum = Math.min(d.memory.max ?? 65_536, d.memoryLimitPages ?? 65_536);
    imports = { wasmbox: { memory: new WebAssembly.Memory({ initial: d.memory.min, maximum, shared: d.memory.shared } as WebAssembly.MemoryDescriptor) } };
  }
  const instance = new WebAssembly.Instance(module, imports);
  const instantiateMs = performance.now() - t;
  const fn = instance.exports[d.functionName] as (n: number) => number | bigint;
  const fuel = d.variant === 'metered' ? (instance.exports[d.fuelExport!] as WebAssembly.Global) : null;
  const limit = d.fuelLimit ?? 0n;
  if (fuel) {
    fuel.value = -limit;
    if (d.startExport) (instance.exports[d.startExport] as () => void)();
  }

  port.on('message', (msg: MeteringRequest) => {
    try {
      if (fuel) fuel.value = -limit;
      const t0 = performance.now();
      const result = fn(msg.n);
      const ms = performance.now() - t0;
      const consumed = fuel ? String(limit + (fuel.value as bigint)) : null;
      port.postMessage({ ok: true, ms, result: String(result), fuel: consumed } satisfies MeteringReply);
    } catch (err) {
      port.postMessage({ ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) } satisfies MeteringReply);
    }
  });
  port.postMessage({ ready: true, compileMs, instantiateMs } satisfies MeteringReady);
} catch (err) {
  port.postMessage({ ready: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) } satisfies MeteringReady);
}
