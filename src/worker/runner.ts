// Guest runner: one fresh instance per task. This file and what it imports (guest.ts, the WASI
// host, the value codec) are all a runner thread loads (no binaryen, no parser), so a runner
// killed at its deadline is replaced in milliseconds.
//
// Where limits are enforced here: src/worker/guest.ts creates the guest's memory with `maximum`
// at the request's limit (V8 refuses growth past it) and its tables at the server's cap; fuel is
// read back from the hidden global and any run that ends over budget is reported as
// fuel_exhausted. The deadline is kept in this thread by the fuel slices (src/wasi/fuel.ts): a run
// that reaches it ends as a timeout with its account, and this thread goes on to the next task.
// The main thread terminates the thread only when the guest cannot be reached (src/worker/pool.ts).

import os from 'node:os';
import { encodeResults } from '../values/codec.js';
import { WasiHost } from '../wasi/preview1.js';
import { markStarted } from './clock.js';
import './engine-flags.js';
import { runGuest } from './guest.js';
import type { RunResult, RunTask, WasiResult } from './protocol.js';

// This thread runs at a lower scheduling priority than the main thread (Linux keeps a nice value
// per thread), so guests use every core the machine has while the event loop, which answers
// health checks and refuses excess work, is never starved of CPU by them.
try {
  os.setPriority(0, 10);
} catch {
  // Not permitted here (some sandboxes): run at the normal priority.
}

export default function run(task: RunTask): RunResult {
  markStarted(task.startedAt);
  const w = task.wasi;
  const r = runGuest({
    // Counted from the start of guest code; the main thread's backstop counts from `startedAt`,
    // a little earlier, plus its grace.
    timeoutMs: task.timeoutMs,
    progress: task.progress,
    module: task.module,
    layout: task.layout,
    fuelLimit: BigInt(task.fuelLimit),
    memoryLimitPages: task.memoryLimitPages,
    functionName: task.functionName,
    args: task.args,
    ...(w && {
      wasi: (fuel) =>
        new WasiHost({
          args: w.args,
          env: w.env,
          stdin: w.stdin,
          stdoutLimitBytes: w.stdoutLimitBytes,
          stderrLimitBytes: w.stderrLimitBytes,
          outputBuffer: w.output,
          charge: fuel.charge,
          halt: fuel.halt,
          sleepBudgetMs: task.timeoutMs,
          deadline: { remainingMs: () => fuel.remainingMs(), interrupt: fuel.interrupt },
        }),
    }),
  });
  const host = r.guest?.host ?? null;
  const wasi: WasiResult | undefined = w ? { exitCode: r.exitCode, ...(host ? host.output() : emptyOutput()) } : undefined;
  r.guest?.release();
  const { outcome, trap, message } = r.verdict;
  return {
    outcome,
    // A program that exited through proc_exit returned nothing; its result is its exit code.
    ...(outcome === 'ok' && { results: r.thrown === null ? encodeResults(task.sig, r.returned) : [] }),
    ...(trap && { trap }),
    ...(message !== undefined && { message }),
    ...(wasi && { wasi }),
    fuelConsumed: Number(r.fuelConsumed),
    memoryPeakBytes: r.memoryPeakBytes,
    durationNs: Math.round(r.durationNs),
    instantiateNs: Math.round(r.instantiateNs),
  };
}

function emptyOutput(): Omit<WasiResult, 'exitCode'> {
  return { stdout: '', stderr: '', stdoutTruncated: false, stderrTruncated: false };
}
