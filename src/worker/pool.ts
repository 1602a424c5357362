// The worker pools as the main thread sees them: `prepare` (validate, instrument, compile; piscina)
// and `run` (guests; run-pool.ts). A run's deadline is kept inside its thread (src/wasi/fuel.ts:
// the first fuel check past it ends the run as a timeout, with its account, and the thread is
// kept); here is the backstop for a guest that cannot be reached there (blocked in
// `memory.atomic.wait32`, in one long bulk operation, in a host call): past the deadline plus a
// grace its thread is terminated and a fresh one started. A preparation's deadline is only the
// backstop kind.

import { Piscina } from 'piscina';
// One public interface object per piscina worker instead of one per dispatch (see the file).
import './piscina-interface.js';
import type { Config } from '../config.js';
import { ServiceError } from '../errors.js';
import { PROGRESS_FUEL, PROGRESS_MEMORY, progressBuffer } from '../wasi/fuel.js';
import { OUTPUT_HEADER_BYTES, readSharedOutput } from '../wasi/output.js';
import { epochUs } from './clock.js';
import * as workerThreads from 'node:worker_threads';
import { MessageChannel, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import type { AdoptResult, DecodeResult, DecodeTask } from './decode.js';
import { type RunHandle, RunPool } from './run-pool.js';
import { copyIntoShared } from './shared-copy.js';
import { taskCell } from './run-cell.js';
import { type Cancel, cancelledBy, onCancel } from '../scheduling/cancel.js';
import { type BatchTask, type CompileTextResult, type CompileTextTask, type MissingModule, type ModuleRef, type PrepareResult, type PrepareTask, type PrepareWorkerData, type RunResult, type RunTask, WARM_ACTIVE, WARM_DONE, warmUpState } from './protocol.js';

/** The module of a run as callers give it: the compiled module, and (from the service) its key
 *  and weight, so runner threads can keep it and later tasks carry only the key. */
export interface ModuleSpec {
  module: WebAssembly.Module;
  moduleKey?: string;
  moduleWeight?: number;
}

/** Staging buffers kept for large bodies (each up to the body limit). */
const STAGING_KEPT = 2;
/** Staging buffers are as large as the body limit, up to this (larger bodies get their own). */
const STAGING_MAX_BYTES = 64 * 1024 * 1024;

/** Chunks smaller than this are copied rather than moved (moving one costs about as much as
 *  copying a few kilobytes). */
const MOVE_MIN_BYTES = 16 * 1024;

// Node 22 and 24 have it (from 21.0); the installed @types/node does not declare it yet.
const { isMarkedAsUntransferable } = workerThreads as unknown as { isMarkedAsUntransferable: (object: object) => boolean };

/** A chunk the decoding thread can take over: the whole of an ArrayBuffer of its own (not a
 *  slice of Node's shared Buffer pool, which cannot be transferred anyway). */
function movable(c: Uint8Array): boolean {
  const b = c.buffer;
  return c.length >= MOVE_MIN_BYTES && c.byteOffset === 0 && c.byteLength === b.byteLength && b instanceof ArrayBuffer && !isMarkedAsUntransferable(b);
}

type Settled<T> = { kind: 'done'; value: T; waitedNs: number } | { kind: 'deadline'; ranMs: number } | { kind: 'queue_timeout' } | { kind: 'cancelled'; ranMs: number } | { kind: 'left'; reason: Error };

/** A caller that may go away while its task waits (asked for only then). */
export type LeaveSignal = () => Cancel | undefined;

/** The preparation threads' heap: instrumenting a large module builds large buffers; room for
 *  them, but bounded (WASMBOX_PREPARE_HEAP_MB). The young generation is V8's default (192 MiB
 *  here): capping it at 48 MiB measured the same in `npm run bench -- prepare`. */
export function prepareResourceLimits(config: Pick<Config, 'prepareHeapMb'>): ResourceLimits {
  return { maxOldGenerationSizeMb: config.prepareHeapMb, stackSizeMb: 4 };
}

/** A run stopped by its caller (`cancel` aborted: DELETE /jobs/{jobId}) before it ended on its
 *  own: its thread was terminated and replaced (or, not started yet, it was withdrawn and cost
 *  nothing). The account is as of its last slice boundary. */
export class RunCancelledError extends Error {
  override readonly name = 'RunCancelledError';
  constructor(
    readonly fuelConsumed: number,
    readonly memoryPeakBytes: number,
    readonly durationNs: number,
  ) {
    super('the run was cancelled');
  }
}

export class WorkerPools {
  /** Preparation of modules over WASMBOX_PREPARE_SMALL_BYTES. */
  readonly prepare: Piscina<PrepareTask | CompileTextTask, PrepareResult | CompileTextResult>;
  /** A thread of its own for small modules, so they are never behind large ones. */
  readonly prepareSmall: Piscina<PrepareTask | CompileTextTask, PrepareResult | CompileTextResult>;
  /** Guests (run-pool.ts): each thread is handed its next task while it runs the current one. */
  readonly run: RunPool<RunResult | RunResult[] | MissingModule>;
  private closing = false;
  /** Reused per-task shared cells (startedAt, progress). */
  private readonly cells = new TaskCells();
  /** The warm-up state shared with the preparation threads (protocol.ts WARM_*); null without. */
  private readonly warmState: Int32Array | null;
  /** Preparation threads started with the pools (both lanes). */
  private readonly prepareThreads: number;
  private readonly startedMs = Date.now();
  private warmedUp: boolean;

  constructor(
    private readonly config: Config,
    /** Preparation threads warm up when they start (src/worker/warmup.ts): a server's, which
     *  prepares many modules; not the CLI's, which prepares one at once. */
    options: { warmUpPreparation?: boolean } = {},
  ) {
    const warmState = options.warmUpPreparation === true ? warmUpState() : null;
    this.warmState = warmState && new Int32Array(warmState);
    this.warmedUp = warmState === null;
    this.prepareThreads = config.prepareWorkers + 1;
    const preparePool = (threads: number): Piscina<PrepareTask | CompileTextTask, PrepareResult | CompileTextResult> =>
      new Piscina({
        filename: new URL('./prepare-thread.cjs', import.meta.url).href,
        workerData: { warmUp: warmState !== null, ...(warmState && { warmState }) } satisfies PrepareWorkerData,
        // An idle preparation thread waits on its event loop, not blocked in Atomics.wait (piscina's
        // default, which saves a few microseconds per task): its warm-up rounds run there, between
        // tasks that are few and take milliseconds each.
        atomics: 'disabled',
        minThreads: threads,
        maxThreads: threads,
        idleTimeout: Number.MAX_SAFE_INTEGER,
        maxQueue: config.queueMax,
        resourceLimits: prepareResourceLimits(config),
      });
    this.prepare = preparePool(config.prepareWorkers);
    this.prepareSmall = preparePool(1);
    this.run = new RunPool({
      filename: new URL('./runner-loop.js', import.meta.url),
      threads: config.workers,
      prefetch: config.runPrefetch,
      maxQueue: config.queueMax,
      resourceLimits: {
        maxOldGenerationSizeMb: config.workerHeapMb,
        maxYoungGenerationSizeMb: Math.max(8, Math.floor(config.workerHeapMb / 8)),
        stackSizeMb: config.workerStackMb,
      },
    });
    // A worker can fail after its task has already been settled: one killed at its deadline that
    // was exhausting its heap reports ERR_WORKER_OUT_OF_MEMORY on the way out. piscina emits
    // that as the pool's 'error' event, which would crash the process without a listener. The
    // pool has already replaced the worker; there is nothing else to do.
    this.watch(this.prepare, 'prepare');
    this.watch(this.prepareSmall, 'prepare');
    this.watch(this.run, 'run');
  }

  private watch(pool: Piscina | RunPool<unknown>, name: 'run' | 'prepare' | 'decode'): void {
    pool.on('error', (err: unknown) => {
      this.onLateError?.(err);
    });
    // A thread destroyed while the pool is open was killed (deadline, heap) or crashed, and
    // piscina starts another in its place.
    pool.on('workerDestroy', () => {
      if (!this.closing) this.onWorkerRestart?.(name);
    });
  }

  private decodePool: Piscina<DecodeTask, DecodeResult | AdoptResult | null> | null = null;

  /** Large bodies: parsed, checked and decoded off the event loop (src/worker/decode.ts). Started
   *  on first use, or by startBodyDecoding() (the server; the CLI never needs it). */
  get decode(): Piscina<DecodeTask, DecodeResult | AdoptResult | null> {
    if (!this.decodePool) {
      this.decodePool = new Piscina({
        filename: new URL('./decode-thread.cjs', import.meta.url).href,
        minThreads: 1,
        maxThreads: 1,
        idleTimeout: Number.MAX_SAFE_INTEGER,
        // In-flight bodies are bounded by WASMBOX_INFLIGHT_BODY_MB before they are read.
        maxQueue: Math.max(this.config.queueMax, 64),
        // A body of B bytes becomes a string of B bytes, its parsed object and the decoded fields.
        resourceLimits: { maxOldGenerationSizeMb: Math.max(256, Math.ceil((8 * this.config.bodyLimitBytes) / 2 ** 20)) },
      });
      this.watch(this.decodePool, 'decode');
    }
    return this.decodePool;
  }

  /** Starts the decoding thread and readies one staging buffer (the HTTP server calls it). */
  startBodyDecoding(): void {
    this.warmStaging().catch((err: unknown) => this.onLateError?.(err));
  }

  /** Told when a worker thread is replaced (for metrics). */
  onWorkerRestart: ((pool: 'run' | 'prepare' | 'decode') => void) | null = null;

  /** Told about worker failures that no task is waiting for (the app logs them). */
  onLateError: ((err: unknown) => void) | null = null;

  /** Parses a large JSON body (its chunks as received) in the decoding thread. */
  async decodeJson(chunks: readonly Uint8Array[], length: number): Promise<DecodeResult> {
    return (await this.decodeTask('json', chunks, length)) as DecodeResult;
  }

  /** A large raw module (its chunks as received), copied and hashed in the decoding thread: its
   *  bytes are a SharedArrayBuffer from there on, so handing them to a preparation thread copies
   *  nothing. */
  async adoptBytes(chunks: readonly Uint8Array[], length: number): Promise<AdoptResult> {
    return (await this.decodeTask('bytes', chunks, length)) as AdoptResult;
  }

  private readonly staging: SharedArrayBuffer[] = [];

  private stagingBytes(): number {
    return Math.min(this.config.bodyLimitBytes, STAGING_MAX_BYTES);
  }

  /** One staging buffer, its pages touched by the decoding thread, so that the first large body
   *  does not pay for them on the event loop either. */
  private async warmStaging(): Promise<void> {
    const staging = new SharedArrayBuffer(this.stagingBytes());
    await this.decode.run({ kind: 'touch', staging, length: staging.byteLength } satisfies DecodeTask);
    if (this.staging.length < STAGING_KEPT) this.staging.push(staging);
  }

  private async decodeTask(kind: DecodeTask['kind'], chunks: readonly Uint8Array[], length: number): Promise<DecodeResult | AdoptResult | null> {
    if (this.closing) throw overloaded('the server is shutting down');
    // Staging buffers are reused: copying into memory already mapped costs about a millisecond per
    // 16 MiB, where the first touch of a fresh 16 MiB buffer costs tens of milliseconds in page
    // faults. A few are kept (STAGING_KEPT); more concurrent bodies than that get fresh ones.
    const kept = this.staging.findIndex((b) => b.byteLength >= length);
    const staging = kept >= 0 ? this.staging.splice(kept, 1)[0]! : new SharedArrayBuffer(Math.max(length, this.stagingBytes()));
    // A chunk that is the whole of its own ArrayBuffer (what Node's HTTP parser hands out for a
    // body: a copy per read) is moved to the decoding thread, which copies it into staging there;
    // the rest (a multipart part's slices, small chunks) are copied here. A moved chunk costs the
    // event loop neither the copy nor, later, the collection its external memory would trigger.
    const view = new Uint8Array(staging);
    const parts: ArrayBuffer[] = [];
    const partsAt: number[] = [];
    let at = 0;
    for (const c of chunks) {
      if (movable(c)) {
        parts.push(c.buffer as ArrayBuffer);
        partsAt.push(at);
      } else {
        copyIntoShared(view, c, at);
      }
      at += c.length;
    }
    try {
      return await this.decode.run({ kind, staging, length, parts, partsAt } satisfies DecodeTask, { transferList: parts });
    } catch (err) {
      if (err instanceof Error && err.message === 'Task queue is at limit') throw overloaded('the body decoding queue is full');
      if ((err as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY') {
        throw new ServiceError('payload_too_large', `parsing this JSON body needs more memory than this server gives one body; send the module as application/wasm or multipart/form-data, or fewer values`);
      }
      throw err;
    } finally {
      if (this.staging.length < STAGING_KEPT) this.staging.push(staging);
    }
  }

  /**
   * Compiles WebAssembly text to a binary on a preparation thread, within `deadlineMs` (the
   * preparation limit; what it leaves is the module's preparation deadline).
   */
  async compileText(text: string, lane: 'small' | 'large', deadlineMs = this.config.prepareTimeoutMs): Promise<CompileTextResult | { ok: false; code: 'module_too_complex'; message: string; transient?: true }> {
    const cell = this.cells.take();
    const startedAt = cell.startedAt;
    const task: CompileTextTask = { text, startedAt };
    const tooBig = `compiling the WebAssembly text (${text.length} characters)`;
    let settled: Settled<CompileTextResult>;
    this.preparing(1);
    try {
      settled = (await this.withDeadline(viaPiscina(lane === 'small' ? this.prepareSmall : this.prepare, task, { name: 'compileText' }), startedAt, deadlineMs)) as Settled<CompileTextResult>;
      if (settled.kind === 'done') this.cells.give(cell);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_WORKER_OUT_OF_MEMORY') throw err;
      return { ok: false, code: 'module_too_complex', message: `${tooBig} needed more than this server's preparation heap of ${this.config.prepareHeapMb} MiB` };
    } finally {
      this.preparing(-1);
    }
    if (settled.kind === 'done') return settled.value;
    if (settled.kind === 'queue_timeout') throw overloaded('no preparation worker became free in time');
    return { ok: false, transient: true, code: 'module_too_complex', message: `${tooBig} did not finish within this server's preparation limit of ${this.config.prepareTimeoutMs} ms` };
  }

  /** Validates, instruments and compiles off the main thread, within the preparation deadline
   *  (`deadlineMs`: less when compiling the module's text already took part of it). */
  async prepareModule(bytes: Uint8Array, lane: 'small' | 'large' = 'large', deadlineMs = this.config.prepareTimeoutMs): Promise<PrepareResult> {
    const cell = this.cells.take();
    const startedAt = cell.startedAt;
    const task: PrepareTask = { bytes, maxTableElements: this.config.maxTableElements, startedAt };
    let settled: Settled<PrepareResult>;
    this.preparing(1);
    try {
      settled = (await this.withDeadline(viaPiscina(lane === 'small' ? this.prepareSmall : this.prepare, task), startedAt, Math.max(1, deadlineMs))) as Settled<PrepareResult>;
      if (settled.kind === 'done') this.cells.give(cell);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_WORKER_OUT_OF_MEMORY') throw err;
      // piscina has replaced the worker. The verdict is the module's own, not load's: a
      // preparation worker holds one task at a time, so its heap held only this module's
      // structures. It is cached like any other refusal (not transient), so sending the module
      // again costs a cache lookup instead of another worker killed and restarted.
      return {
        ok: false,
        code: 'module_too_complex',
        message: `preparing the module (parsing, instrumenting and describing its ${bytes.length} bytes) needed more than this server's preparation heap of ${this.config.prepareHeapMb} MiB; fewer functions, exports or segments would fit`,
      };
    } finally {
      this.preparing(-1);
    }
    if (settled.kind === 'done') return settled.value;
    if (settled.kind === 'queue_timeout') throw overloaded('no preparation worker became free in time');
    return {
      ok: false,
      transient: true,
      code: 'module_too_complex',
      message: `the module could not be validated, instrumented and compiled within this server's preparation limit of ${this.config.prepareTimeoutMs} ms`,
    };
  }

  /**
   * Runs a guest. Its thread ends it at `timeoutMs` of guest time (outcome timeout, exact
   * account); past `timeoutMs` plus the grace (WASMBOX_DEADLINE_GRACE_MS) the thread is
   * terminated instead, and the result says so (`threadKilled`), with the account as of the
   * guest's last slice boundary. `progress` (progressBuffer()) lets the caller watch the account
   * while the run is in flight. Aborting `cancel` withdraws a run not started yet, or stops a
   * started one wherever it is (its thread is terminated and replaced), and rejects with
   * RunCancelledError.
   */
  async runGuest(
    task: Omit<RunTask, 'startedAt' | 'progress' | keyof ModuleRef> & ModuleSpec & { progress?: SharedArrayBuffer },
    timeoutMs: number,
    cancel?: AbortSignal,
    /** The caller went away (a client that disconnected): a run that has not started yet is
     *  withdrawn, and this rejects with the signal's reason; one that has started goes on. */
    leave?: LeaveSignal,
  ): Promise<RunResult> {
    const cell = this.cells.take();
    const startedAt = cell.startedAt;
    const progress = task.progress ?? cell.progress;
    let settled: Settled<RunResult | MissingModule>;
    const graceMs = this.config.deadlineGraceMs;
    const { module, moduleKey, moduleWeight, ...rest } = task;
    // A run sent again from the start (its thread was terminated for another task before it could
    // finish this one: run-pool.ts) starts from an empty account and empty output.
    const reset = (): void => {
      const p = new BigInt64Array(progress);
      Atomics.store(p, PROGRESS_FUEL, 0n);
      Atomics.store(p, PROGRESS_MEMORY, 0n);
      if (task.wasi) new Int32Array(task.wasi.output, 0, OUTPUT_HEADER_BYTES / 4).fill(0);
    };
    try {
      let ref = this.moduleRef(module, moduleKey, moduleWeight);
      for (;;) {
        const message = { kind: 'run' as const, task: { ...rest, ...ref, startedAt, progress } };
        settled = (await this.withDeadline(() => this.run.run(message, { reset }), startedAt, timeoutMs + graceMs, cancel, leave)) as Settled<RunResult | MissingModule>;
        // The thread did not hold the module (a new thread, or one that evicted it): again, with it.
        if (settled.kind === 'done' && 'missingModule' in settled.value && !ref.module) {
          this.moduleResends++;
          ref = { ...ref, module };
          continue;
        }
        break;
      }
      // Only a task that ran to its answer gives its cell back: a thread terminated at a deadline,
      // on a cancel or on an abort might still write it.
      if (settled.kind === 'done') this.cells.give(cell);
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY') return this.killed('memory_limit_exceeded', this.heapMessage(), 0, progress, task.wasi);
      throw err;
    }
    if (settled.kind === 'done') {
      const result = settled.value as RunResult;
      result.waitedNs = settled.waitedNs;
      return result;
    }
    if (settled.kind === 'queue_timeout') throw overloaded('no worker became free in time');
    if (settled.kind === 'left') throw settled.reason;
    if (settled.kind === 'cancelled') {
      const cell = new BigInt64Array(progress);
      throw new RunCancelledError(Number(Atomics.load(cell, PROGRESS_FUEL)), Number(Atomics.load(cell, PROGRESS_MEMORY)), Math.round(settled.ranMs * 1e6));
    }
    return this.killed('timeout', this.deadlineMessage(timeoutMs), settled.ranMs, progress, task.wasi);
  }

  /** Tasks sent again with their module because their thread did not hold it. */
  moduleResends = 0;

  /** Modules dispatched with their compiled form, by how many times. */
  private readonly sentModules = new WeakMap<WebAssembly.Module, number>();
  private anonymousModules = 0;

  /**
   * How a task names its module: with the compiled module itself for its first dispatches (enough
   * for every runner thread to have been sent it, whichever the pool picks), then by key only;
   * a thread that turns out not to hold it answers MissingModule and the task is sent again with
   * it. Without a key (callers outside the service), always with the module.
   */
  private moduleRef(module: WebAssembly.Module, moduleKey: string | undefined, moduleWeight: number | undefined): ModuleRef {
    if (moduleKey === undefined) return { module, moduleKey: `anonymous:${++this.anonymousModules}`, moduleWeight: Number.MAX_SAFE_INTEGER };
    const weight = moduleWeight ?? Number.MAX_SAFE_INTEGER;
    const sent = this.sentModules.get(module) ?? 0;
    if (sent >= 2 * this.config.workers) return { moduleKey, moduleWeight: weight };
    this.sentModules.set(module, sent + 1);
    return { module, moduleKey, moduleWeight: weight };
  }

  /**
   * Runs a batch (protocol.ts BatchTask) in one runner task: one round trip and one compiled
   * module for every call. The thread keeps the batch's deadline (`timeoutMs`); past it plus the
   * grace the thread is terminated, as for a single run: the calls that had finished keep their
   * answers (each is posted to the journal as it finishes), the one running is answered as a
   * terminated run, and the rest as not started.
   */
  async runBatch(
    task: Omit<BatchTask, 'startedAt' | 'progress' | 'current' | 'journal' | keyof ModuleRef> & ModuleSpec,
    timeoutMs: number,
    cancel?: AbortSignal,
    /** Where the running call's account is published (a job's live progress). */
    progressCell?: SharedArrayBuffer,
    /** As runGuest's. */
    leave?: LeaveSignal,
  ): Promise<RunResult[]> {
    const startedAt = taskCell();
    const progress = progressCell ?? progressBuffer();
    const current = new SharedArrayBuffer(4);
    new Int32Array(current)[0] = -1;
    const graceMs = this.config.deadlineGraceMs;
    const { module, moduleKey, moduleWeight, ...rest } = task;
    let ref = this.moduleRef(module, moduleKey, moduleWeight);
    let journal: Journal;
    let settled: Settled<RunResult[] | MissingModule>;
    let heap = false;
    for (;;) {
      const { port1, port2 } = new MessageChannel();
      journal = new Journal(port1);
      try {
        const message = { kind: 'batch' as const, task: { ...rest, ...ref, startedAt, progress, current, journal: port2 } };
        settled = (await this.withDeadline(() => this.run.run(message, { transferList: [port2], reset: noReset }), startedAt, timeoutMs + graceMs, cancel, leave)) as Settled<
          RunResult[] | MissingModule
        >;
      } catch (err) {
        if ((err as { code?: string }).code !== 'ERR_WORKER_OUT_OF_MEMORY') {
          journal.close();
          throw err;
        }
        heap = true;
        settled = { kind: 'deadline', ranMs: 0 };
      }
      if (settled.kind === 'done' && 'missingModule' in settled.value && !ref.module) {
        this.moduleResends++;
        journal.close();
        ref = { ...ref, module };
        continue;
      }
      break;
    }
    if (settled.kind === 'done') {
      journal.close();
      const results = settled.value as RunResult[];
      for (const r of results) r.waitedNs = settled.waitedNs;
      return results;
    }
    if (settled.kind === 'queue_timeout') {
      journal.close();
      throw overloaded('no worker became free in time');
    }
    if (settled.kind === 'left') {
      journal.close();
      throw settled.reason;
    }
    if (settled.kind === 'cancelled') {
      journal.close();
      const cell = new BigInt64Array(progress);
      throw new RunCancelledError(Number(Atomics.load(cell, PROGRESS_FUEL)), Number(Atomics.load(cell, PROGRESS_MEMORY)), Math.round(settled.ranMs * 1e6));
    }
    // The thread was terminated during call `at`: what finished before it is in the journal.
    const at = Math.max(0, Atomics.load(new Int32Array(current), 0));
    const done = await journal.collect(at);
    return task.calls.map((call, i): RunResult => {
      const wasi = call.wasi && task.output ? { ...call.wasi, output: task.output } : undefined;
      // Whatever the journal holds finished (the last call may have, just before the end).
      if (done[i]) return done[i]!;
      if (i === at) {
        return heap
          ? this.killed('memory_limit_exceeded', this.heapMessage(), 0, progress, wasi)
          : this.killed('timeout', this.deadlineMessage(timeoutMs, 'the batch'), settled.ranMs, progress, wasi);
      }
      return {
        outcome: 'timeout',
        message: `not started: the batch's thread was terminated during call ${at}`,
        ...(call.wasi && { wasi: { exitCode: null, stdout: '', stderr: '', stdoutTruncated: false, stderrTruncated: false } }),
        fuelConsumed: 0,
        memoryPeakBytes: 0,
        durationNs: 0,
        instantiateNs: 0,
      };
    });
  }

  private heapMessage(): string {
    return `the guest exhausted its worker's ${this.config.workerHeapMb} MiB engine heap (tables and other engine objects live there); its thread was terminated`;
  }

  private deadlineMessage(timeoutMs: number, what = 'the run'): string {
    return `${what} reached its wall-clock limit of ${timeoutMs} ms and could not be stopped there (it was blocked in an atomic wait, a host call or one long bulk memory operation), so its thread was terminated ${this.config.deadlineGraceMs} ms later; fuelConsumed and memoryPeakBytes are as of its last fuel check`;
  }

  /** A run whose thread was terminated: its account as of its last slice boundary, and what it
   *  printed before. */
  private killed(outcome: 'timeout' | 'memory_limit_exceeded', message: string, ranMs: number, progress: SharedArrayBuffer, wasi: RunTask['wasi']): RunResult {
    const cell = new BigInt64Array(progress);
    return {
      outcome,
      message,
      ...(wasi && { wasi: { exitCode: null, ...readSharedOutput(wasi.output, wasi.stdoutLimitBytes, wasi.stderrLimitBytes) } }),
      fuelConsumed: Number(Atomics.load(cell, PROGRESS_FUEL)),
      memoryPeakBytes: Number(Atomics.load(cell, PROGRESS_MEMORY)),
      durationNs: Math.round(ranMs * 1e6),
      instantiateNs: 0,
      threadKilled: true,
    };
  }

  /**
   * Runs a task with a deadline measured from when a worker starts it (`startedAt` is written by
   * the worker), not from when it was queued; time in the queue is bounded by queueTimeoutMs.
   * Without `startedAt` the deadline counts from dispatch.
   */
  private async withDeadline<R>(dispatch: () => RunHandle<R>, startedAt: SharedArrayBuffer | null, deadlineMs: number, cancel?: AbortSignal, leave?: LeaveSignal): Promise<Settled<R>> {
    if (this.closing) throw overloaded('the server is shutting down');
    const dispatchedUs = epochUs();
    const started = startedAt ? new BigInt64Array(startedAt) : null;
    let verdict: Settled<R> | null = null;
    let timer: NodeJS.Timeout | undefined;
    if (cancel?.aborted) return { kind: 'cancelled', ranMs: 0 };
    let handle: RunHandle<R>;
    try {
      handle = dispatch();
    } catch (err) {
      if (err instanceof Error && err.message === 'Task queue is at limit') throw overloaded('the run queue is full');
      throw err;
    }
    const onCancelled = (): void => {
      if (verdict) return;
      const startUs = started ? Number(Atomics.load(started, 0)) : dispatchedUs;
      verdict = { kind: 'cancelled', ranMs: startUs === 0 ? 0 : (epochUs() - startUs) / 1000 };
      handle.abort();
    };
    cancel?.addEventListener('abort', onCancelled, { once: true });
    // Only a task that waits listens for its caller leaving (a listener per task costs the event
    // loop microseconds); once started, it runs to its end.
    const left = handle.waiting ? leave?.() : undefined;
    const onLeave = (): void => {
      if (verdict || !left) return;
      verdict = { kind: 'left', reason: cancelledBy(left) ?? new Error('the caller went away') };
      if (!handle.withdraw()) verdict = null;
    };
    let stopLeave: (() => void) | undefined;
    if (left && cancelledBy(left)) onLeave();
    else if (left) stopLeave = onCancel(left, onLeave);
    const check = (): void => {
      if (verdict) return;
      const now = epochUs();
      const startUs = started ? Number(Atomics.load(started, 0)) : dispatchedUs;
      if (startUs === 0) {
        const waitedMs = (now - dispatchedUs) / 1000;
        if (waitedMs >= this.config.queueTimeoutMs) {
          verdict = { kind: 'queue_timeout' };
          if (handle.withdraw()) return;
          // A thread has just started it: from now on its deadline counts.
          verdict = null;
          timer = setTimeout(check, 1);
        } else {
          timer = setTimeout(check, Math.max(1, Math.min(deadlineMs, this.config.queueTimeoutMs - waitedMs)));
        }
        return;
      }
      const ranMs = (now - startUs) / 1000;
      if (ranMs >= deadlineMs) {
        verdict = { kind: 'deadline', ranMs };
        handle.abort();
      } else {
        timer = setTimeout(check, Math.max(1, Math.ceil(deadlineMs - ranMs)));
      }
    };
    // First look: at the queue timeout while the task may still be waiting, else at the deadline.
    timer = setTimeout(check, started ? Math.min(deadlineMs, this.config.queueTimeoutMs) : deadlineMs);
    try {
      const value = await handle.promise;
      // Time spent behind another task on its thread, or in the pool's queue; a task handed to a
      // free thread did not wait (the hand-over itself is not queueing).
      const startUs = started && handle.waiting ? Number(Atomics.load(started, 0)) : 0;
      return { kind: 'done', value, waitedNs: startUs === 0 ? 0 : Math.max(0, Math.round((startUs - dispatchedUs) * 1000)) };
    } catch (err) {
      if (verdict) return verdict;
      if (err instanceof Error && err.message === 'Task queue is at limit') throw overloaded('the run queue is full');
      throw err;
    } finally {
      clearTimeout(timer);
      cancel?.removeEventListener('abort', onCancelled);
      stopLeave?.();
    }
  }

  /** Refuses new work, lets queued and running tasks finish, then stops the threads. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([this.run.close(), this.prepare.close(), this.prepareSmall.close(), this.decodePool?.close()]);
  }

  get ready(): boolean {
    return !this.closing && this.run.threads.length > 0;
  }

  /** A real preparation is waiting or running (+1), or has settled (-1): while any is, the
   *  preparation threads stop warming up, so that it has their CPU (warmup.ts). */
  private preparing(delta: 1 | -1): void {
    if (!this.warmState) return;
    Atomics.add(this.warmState, WARM_ACTIVE, delta);
    // Work is arriving: the warm-up stops for it, and holding readiness back has no purpose left.
    this.warmedUp = true;
  }

  /**
   * Every preparation thread the pools started with has ended its warm-up, or a real preparation
   * has arrived (which stops it), or WASMBOX_WARMUP_READY_MAX_MS have passed: the server reports
   * ready only then (GET /readyz), so a balancer sends it work once a module prepares at full
   * speed. Once true, it stays true (a thread replaced later warms up on its own, without making
   * the server unready).
   */
  get warm(): boolean {
    if (!this.warmedUp && this.warmState) {
      this.warmedUp = Atomics.load(this.warmState, WARM_DONE) >= this.prepareThreads || Date.now() - this.startedMs >= this.config.warmUpReadyMaxMs;
    }
    return this.warmedUp;
  }
}

/**
 * What piscina needs to cancel a task (an EventEmitter-style "abort" signal), without an
 * AbortController per task: creating one (with its AbortSignal, an EventTarget) costs about 5 µs
 * of the event loop, more than the rest of the task's dispatch.
 */
class TaskAbort {
  aborted = false;
  private listener: (() => void) | null = null;
  once(_event: 'abort', listener: () => void): void {
    this.listener = listener;
  }
  removeListener(_event: 'abort', _listener: () => void): void {
    this.listener = null;
  }
  off(event: 'abort', listener: () => void): void {
    this.removeListener(event, listener);
  }
  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    const l = this.listener;
    this.listener = null;
    l?.();
  }
}

/** A preparation or decoding task on a piscina pool, as withDeadline() holds a task: piscina
 *  removes a task it has not handed to a thread, and terminates the thread of one it has. */
function viaPiscina<T, R>(pool: Piscina<T, R>, task: T, options: { name?: string } = {}): () => RunHandle<R> {
  return () => {
    const ac = new TaskAbort();
    const promise = pool.run(task, { signal: ac, ...options });
    return {
      promise,
      waiting: false,
      withdraw: () => {
        ac.abort();
        return true;
      },
      abort: () => ac.abort(),
    };
  };
}

/** A batch is never sent again (run-pool.ts), so there is nothing to reset. */
function noReset(): void {}

/**
 * The shared cells a task carries (the moment its thread started it, its fuel account), reused
 * from task to task: allocating two SharedArrayBuffers per task, and collecting them, was a
 * measurable part of a trivial run's cost. A cell is reused only once its task has settled
 * without its thread being terminated (a terminated thread could still write it).
 */
class TaskCells {
  private readonly free: { startedAt: SharedArrayBuffer; progress: SharedArrayBuffer }[] = [];

  take(): { startedAt: SharedArrayBuffer; progress: SharedArrayBuffer } {
    const cell = this.free.pop();
    if (!cell) return { startedAt: taskCell(), progress: progressBuffer() };
    Atomics.store(new BigInt64Array(cell.startedAt), 0, 0n);
    const p = new BigInt64Array(cell.progress);
    Atomics.store(p, PROGRESS_FUEL, 0n);
    Atomics.store(p, PROGRESS_MEMORY, 0n);
    return cell;
  }

  give(cell: { startedAt: SharedArrayBuffer; progress: SharedArrayBuffer }): void {
    if (this.free.length < 256) this.free.push(cell);
  }
}

/** The main thread's end of a batch's journal: the results of finished calls, by index. */
class Journal {
  readonly results: RunResult[] = [];
  private count = 0;
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(private readonly port: MessagePort) {
    port.on('message', (m: { index: number; result: RunResult }) => {
      this.results[m.index] = m.result;
      this.count++;
      this.wake?.();
    });
    port.once('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  /** Waits (briefly: the messages were posted before the thread ended) for `n` results. */
  async collect(n: number): Promise<RunResult[]> {
    const until = Date.now() + 1_000;
    while (this.count < n && !this.closed && Date.now() < until) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 20);
      });
    }
    this.close();
    return this.results;
  }

  close(): void {
    this.port.close();
  }
}

function overloaded(why: string): ServiceError {
  return new ServiceError('overloaded', `the server is busy: ${why}; retry shortly`, { 'retry-after': '1' });
}
