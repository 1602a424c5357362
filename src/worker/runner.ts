// Guest runner: one fresh instance per task. This file is all a runner thread loads (no
// binaryen, no parser), so a runner killed at its deadline is replaced in milliseconds.
//
// Where limits are enforced here: linear memory is created with `maximum` at the request's limit
// (V8 refuses growth past it); fuel is read back from the instrumented global and any run that
// ends over budget is reported as fuel_exhausted.

import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { encodeResults } from '../values/codec.js';
import { GuestFuel } from '../wasi/fuel.js';
import { WASI_MODULE, WasiHost } from '../wasi/preview1.js';
import type { RunResult, RunTask, TrapKind, WasiResult } from './protocol.js';

// This thread runs at a lower scheduling priority than the main thread (Linux keeps a nice value
// per thread), so guests use every core the machine has while the event loop, which answers
// health checks and refuses excess work, is never starved of CPU by them.
try {
  os.setPriority(0, 10);
} catch {
  // Not permitted here (some sandboxes): run at the normal priority.
}

const MAX_PAGES = 65_536;
const PAGE = 65_536;
const nowNs = (): number => performance.now() * 1e6;

export default function run(task: RunTask): RunResult {
  Atomics.store(new BigInt64Array(task.startedAt), 0, BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)));
  const { hidden } = task;
  const limit = BigInt(task.fuelLimit);

  let memory: WebAssembly.Memory | null = null;
  if (task.memory) {
    if (task.memory.min > task.memoryLimitPages) {
      return {
        outcome: 'memory_limit_exceeded',
        message: `the module's memory starts at ${task.memory.min * PAGE} bytes (${task.memory.min} pages), over the limit of ${task.memoryLimitPages * PAGE} bytes`,
        fuelConsumed: 0,
        memoryPeakBytes: 0,
        durationNs: 0,
        instantiateNs: 0,
      };
    }
    const maximum = Math.min(task.memory.max ?? MAX_PAGES, task.memoryLimitPages);
    memory = new WebAssembly.Memory({ initial: task.memory.min, maximum, shared: task.memory.shared });
  }

  // Fuel: the hidden global holds consumed - limit; WASI host calls charge it too.
  const fuel = new GuestFuel(limit);
  let host: WasiHost | null = null;
  const imports: WebAssembly.Imports = memory ? { wasmbox: { memory } } : {};
  if (task.wasi) {
    host = new WasiHost({
      args: task.wasi.args,
      env: task.wasi.env,
      stdin: task.wasi.stdin,
      stdoutLimitBytes: task.wasi.stdoutLimitBytes,
      stderrLimitBytes: task.wasi.stderrLimitBytes,
      outputBuffer: task.wasi.output,
      charge: fuel.charge,
      halt: fuel.halt,
      sleepBudgetMs: task.timeoutMs,
    });
    host.bind(memory ?? new WebAssembly.Memory({ initial: 0, maximum: 0 }));
    (imports as Record<string, unknown>)[WASI_MODULE] = host.imports();
  }

  const t0 = nowNs();
  let instance: WebAssembly.Instance;
  try {
    instance = new WebAssembly.Instance(task.module, imports);
  } catch (err) {
    // Active segments out of bounds: a trap during instantiation, before any guest code ran.
    return finish(task, classify(err, null, task), 0n, memory, 0, nowNs() - t0, host);
  }
  const instantiateNs = nowNs() - t0;
  const exports = instance.exports;
  fuel.attach(exports[hidden.fuel] as WebAssembly.Global);

  const t1 = nowNs();
  let result: Pick<RunResult, 'outcome' | 'results' | 'trap'>;
  try {
    if (hidden.start) (exports[hidden.start] as () => void)();
    const returned = (exports[task.functionName] as (...a: unknown[]) => unknown)(...task.args);
    result = { outcome: 'ok', results: encodeResults(task.sig, returned) };
  } catch (err) {
    // A WASI program that called proc_exit is judged by its exit code, however its code ended
    // (it may even have caught the unwinding exception; the host then halted it through fuel).
    result = host?.exitCode != null ? { outcome: 'ok', results: [] } : classify(err, instance, task);
  }
  const durationNs = nowNs() - t1;
  return finish(task, result, fuel.consumed(), memory, durationNs, instantiateNs, host);
}

function finish(
  task: RunTask,
  result: Pick<RunResult, 'outcome' | 'results' | 'trap'>,
  consumed: bigint,
  memory: WebAssembly.Memory | null,
  durationNs: number,
  instantiateNs: number,
  host: WasiHost | null = null,
): RunResult {
  const limit = BigInt(task.fuelLimit);
  let wasi: WasiResult | undefined;
  if (host) {
    const exitCode = host.exitCode ?? (result.outcome === 'ok' ? 0 : null);
    wasi = { exitCode, ...host.output() };
    if (result.outcome === 'ok') {
      // A command's _start returns nothing; its result is its exit code.
      result = exitCode === 0 ? result : { outcome: 'exited' };
    }
  }
  // Checks sit at function entries and loop headers, so a run can pass its budget by one acyclic
  // stretch of code before a check sees it; whatever it then did, it ran out of fuel.
  if (consumed > limit) {
    result = { outcome: 'fuel_exhausted' };
    consumed = limit;
    if (wasi) wasi.exitCode = null;
  }
  return {
    ...result,
    ...(wasi && { wasi }),
    fuelConsumed: Number(consumed),
    memoryPeakBytes: memory ? memory.buffer.byteLength : 0,
    durationNs: Math.round(durationNs),
    instantiateNs: Math.round(instantiateNs),
  };
}

const TRAP_MESSAGES: readonly [RegExp, TrapKind][] = [
  [/^unreachable/, 'unreachable'],
  [/memory access out of bounds|data segment.* out of bounds/, 'memory_out_of_bounds'],
  [/table index is out of bounds|element segment.* out of bounds|table access out of bounds/, 'table_out_of_bounds'],
  [/divide by zero|remainder by zero/, 'integer_divide_by_zero'],
  [/divide result unrepresentable/, 'integer_overflow'],
  [/unaligned/, 'unaligned_atomic'],
];

function classify(err: unknown, instance: WebAssembly.Instance | null, task: RunTask): Pick<RunResult, 'outcome' | 'trap'> {
  if (err instanceof RangeError && /call stack/i.test(err.message)) {
    return { outcome: 'stack_overflow', trap: { kind: 'stack_overflow', message: 'call stack exhausted' } };
  }
  if (err instanceof WebAssembly.Exception) {
    return { outcome: 'trap', trap: { kind: 'uncaught_exception', message: 'a WebAssembly exception was thrown and not caught' } };
  }
  if (!(err instanceof WebAssembly.RuntimeError)) throw err;
  const message = err.message.replace(/^WebAssembly\.Instance\(\): /, '');
  let kind: TrapKind = 'other';
  if (/null function or function signature mismatch/.test(message)) {
    kind = indirectCallIsNull(instance, task) ? 'indirect_call_to_null' : 'indirect_call_type_mismatch';
  } else if (/float unrepresentable in integer range/.test(message)) {
    // NaN has no integer value at all; anything else was merely out of range (wasmtime's split).
    const operand = instance ? ((instance.exports[task.hidden.truncOperand] as WebAssembly.Global).value as number) : Number.NaN;
    kind = Number.isNaN(operand) ? 'invalid_conversion_to_integer' : 'integer_overflow';
  } else {
    for (const [re, k] of TRAP_MESSAGES) {
      if (re.test(message)) {
        kind = k;
        break;
      }
    }
  }
  const trap = { kind, message: kind === 'indirect_call_to_null' ? 'indirect call to a null table entry' : kind === 'indirect_call_type_mismatch' ? 'indirect call signature mismatch' : message };
  if (instance && refusedGrowthExplainsTrap(instance, task)) {
    return { outcome: 'memory_limit_exceeded', trap };
  }
  return { outcome: 'trap', trap };
}

function indirectCallIsNull(instance: WebAssembly.Instance | null, task: RunTask): boolean {
  const h = task.hidden;
  if (!instance || !h.indirectIndex) return false;
  const index = (instance.exports[h.indirectIndex] as WebAssembly.Global).value as number;
  const tableIndex = h.indirectTable ? ((instance.exports[h.indirectTable] as WebAssembly.Global).value as number) : 0;
  const table = instance.exports[h.tables[tableIndex] ?? ''] as WebAssembly.Table | undefined;
  if (!table || index < 0 || index >= table.length) return false;
  return table.get(index) === null;
}

/** A trap after memory.grow was refused only because of the request's memory limit. */
function refusedGrowthExplainsTrap(instance: WebAssembly.Instance, task: RunTask): boolean {
  if (!task.hidden.growRefused || !task.memory) return false;
  const target = Number((instance.exports[task.hidden.growRefused] as WebAssembly.Global).value as bigint);
  return target > task.memoryLimitPages && target <= (task.memory.max ?? MAX_PAGES);
}
