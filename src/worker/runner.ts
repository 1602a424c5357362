// Guest runner: one fresh instance per task (per call, for a batch). This file and what it imports (guest.ts, the WASI
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
import { performance } from 'node:perf_hooks';
import { encodeResults } from '../values/codec.js';
import { WasiHost } from '../wasi/preview1.js';
import { markStarted } from './clock.js';
import './engine-flags.js';
import { runGuest } from './guest.js';
import type { BatchTask, MissingModule, ModuleRef, RunResult, RunTask, WasiResult, WasiTask } from './protocol.js';

// This thread runs at a lower scheduling priority than the main thread (Linux keeps a nice value
// per thread), so guests use every core the machine has while the event loop, which answers
// health checks and refuses excess work, is never starved of CPU by them.
try {
  os.setPriority(0, 10);
} catch {
  // Not permitted here (some sandboxes): run at the normal priority.
}

/**
 * The compiled modules this thread has been sent, by key, least recently used first, bounded in
 * count and in weight (the native code a module keeps alive: the main thread's prepared cache may
 * have let it go, this keeps it until evicted here). A task then carries the key, not the module.
 */
const modules = new Map<string, { module: WebAssembly.Module; weight: number }>();
let modulesWeight = 0;
const MODULES_MAX = 64;
const MODULES_MAX_WEIGHT = 64 * 1024 * 1024;

function moduleOf(ref: ModuleRef): WebAssembly.Module | null {
  const held = modules.get(ref.moduleKey);
  if (held) {
    modules.delete(ref.moduleKey);
    modules.set(ref.moduleKey, held);
    return held.module;
  }
  if (!ref.module) return null;
  if (ref.moduleWeight <= MODULES_MAX_WEIGHT) {
    modules.set(ref.moduleKey, { module: ref.module, weight: ref.moduleWeight });
    modulesWeight += ref.moduleWeight;
    for (const [key, m] of modules) {
      if (modules.size <= MODULES_MAX && modulesWeight <= MODULES_MAX_WEIGHT) break;
      modules.delete(key);
      modulesWeight -= m.weight;
    }
  }
  return ref.module;
}

const MISSING: MissingModule = { missingModule: true };

export default function run(task: RunTask): RunResult | MissingModule {
  const module = moduleOf(task);
  if (!module) return MISSING;
  markStarted(task.startedAt);
  return runCall(module, task.layout, task, task.progress, task.wasi ? { ...task.wasi } : undefined, task.timeoutMs);
}

/**
 * A batch (protocol.ts BatchTask): each call on a fresh instance of the one compiled module, in
 * order, in this one task. A trap or fuel exhaustion ends only its own call. The batch's deadline
 * counts from the start of the task: each call runs until its own limit or the batch's deadline,
 * whichever is first, and a call reached after the deadline is answered without running.
 */
export function runBatch(task: BatchTask): RunResult[] | MissingModule {
  const module = moduleOf(task);
  if (!module) {
    task.journal.close();
    return MISSING;
  }
  markStarted(task.startedAt);
  const deadline = performance.now() + task.timeoutMs;
  const current = new Int32Array(task.current);
  const results: RunResult[] = [];
  try {
    for (const [index, call] of task.calls.entries()) {
      Atomics.store(current, 0, index);
      const remainingMs = deadline - performance.now();
      let result: RunResult;
      if (remainingMs <= 0) {
        result = notStarted(task.timeoutMs, call.wasi !== undefined);
      } else {
        const cut = remainingMs < call.timeoutMs;
        // Each call mirrors its output from the start of the shared buffer.
        if (task.output) new Int32Array(task.output, 0, 4).fill(0);
        result = runCall(module, task.layout, call, task.progress, call.wasi && task.output ? { ...call.wasi, output: task.output } : undefined, cut ? remainingMs : call.timeoutMs);
        if (cut && result.outcome === 'timeout') {
          result.message = `the batch reached its wall-clock limit of ${task.timeoutMs} ms during this call, which was stopped there`;
        }
      }
      results.push(result);
      task.journal.postMessage({ index, result });
    }
  } finally {
    task.journal.close();
  }
  return results;
}

/** A call the batch's deadline left no time for: it did not run, and cost nothing. */
function notStarted(batchTimeoutMs: number, wasi: boolean): RunResult {
  return {
    outcome: 'timeout',
    message: `not started: the batch reached its wall-clock limit of ${batchTimeoutMs} ms before this call`,
    ...(wasi && { wasi: { exitCode: null, ...emptyOutput() } }),
    fuelConsumed: 0,
    memoryPeakBytes: 0,
    durationNs: 0,
    instantiateNs: 0,
  };
}

interface CallSpec {
  functionName: string;
  sig: RunTask['sig'];
  args: RunTask['args'];
  fuelLimit: number;
  memoryLimitPages: number;
}

function runCall(module: WebAssembly.Module, layout: RunTask['layout'], call: CallSpec, progress: SharedArrayBuffer, w: WasiTask | undefined, timeoutMs: number): RunResult {
  const r = runGuest({
    // Counted from the start of guest code; the main thread's backstop counts from `startedAt`,
    // a little earlier, plus its grace.
    timeoutMs,
    progress,
    module,
    layout,
    fuelLimit: BigInt(call.fuelLimit),
    memoryLimitPages: call.memoryLimitPages,
    functionName: call.functionName,
    args: call.args,
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
          sleepBudgetMs: timeoutMs,
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
    ...(outcome === 'ok' && { results: r.thrown === null ? encodeResults(call.sig, r.returned) : [] }),
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
