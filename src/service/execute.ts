// The execution service: everything between a validated request and its response. Routes parse
// the body and call `execute`; this resolves limits, finds or prepares the module, checks the
// function and arguments, runs the guest and shapes the answer.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Config } from '../config.js';
import { ServiceError, clip, quote } from '../errors.js';
import { type LimitPolicy, type Limits, memoryLimitBytes, memoryLimitPages, resolveLimits } from '../limits/index.js';
import { type FuncSig, type JsonValue, type WasmArg, decodeArgs, formatSignature } from '../values/codec.js';
import type { WorkerPools } from '../worker/pool.js';
import type { Outcome, RunResult, TrapKind } from '../worker/protocol.js';
import { sharedOutputBuffer } from '../wasi/output.js';
import { moduleIdOf, moduleIdOfAsync } from '../store/module-id.js';
import { CorruptModuleError, type ModuleStore, StoreFullError } from '../store/types.js';
import type { ModuleDescription } from '../worker/protocol.js';
import { type Prepared, PreparedCache } from './prepared-cache.js';
import { FairQueue, type Slot } from '../scheduling/fair-queue.js';
import { type Departure, eitherCancel } from '../scheduling/cancel.js';
import { type CallerQuota, ConcurrencyQuota } from '../limits/concurrency.js';
import type { Metrics } from '../metrics/index.js';

/** A request checked up to the point of running: limits resolved, module prepared, function and
 *  arguments decoded. */
interface Admitted {
  limits: Limits;
  moduleId: string;
  prepared: Prepared;
  cached: boolean;
  prepareNs: number;
  name: string;
  sig: FuncSig;
  args: ReturnType<typeof decodeArgs> & { ok: true };
}

/** A batch whose calls have all been checked (planBatch), ready to run. */
interface PlannedBatch {
  batchLimits: Limits;
  moduleId: string;
  prepared: Prepared;
  cached: boolean;
  prepareNs: number;
  planned: { limits: Limits; wasi: WasiRequest | undefined; name: string; sig: FuncSig; args: WasmArg[] }[];
}

export interface ExecuteRequest {
  module?: Uint8Array;
  /** The content address of `module` when the caller has computed it (a large JSON body's, in the
   *  decoding thread); otherwise it is computed here. */
  moduleHash?: string;
  moduleId?: string;
  /** The module as WebAssembly text: compiled on a preparation thread; its id is the binary's. */
  wat?: string;
  function?: string;
  args: readonly unknown[];
  /** A batch: each call on a fresh instance of the module (function and args are then unused).
   *  The request's limits are each call's defaults, and its timeoutMs the whole batch's. */
  calls?: CallRequest[];
  limits?: Partial<Limits>;
  /** Run as a WASI preview1 command (function defaults to _start). */
  wasi?: WasiRequest;
  /** Where the runner publishes the run's fuel account at every slice boundary (src/wasi/fuel.ts
   *  progressBuffer()): the CLI shows a local run's progress from it. */
  progress?: SharedArrayBuffer;
  /** Aborting it stops the run wherever it is (waiting for a thread, or running: its thread is
   *  terminated); execute then rejects with the signal's reason, or RunCancelledError
   *  (src/worker/pool.ts) with the account once the guest had started. Jobs are cancelled so. */
  cancel?: AbortSignal;
}

export interface CallRequest {
  function?: string;
  args: readonly unknown[];
  /** Overrides the request's limits for this call (timeoutMs: the call's own; the batch's
   *  deadline still bounds it). */
  limits?: Partial<Limits>;
  /** Replaces the request's wasi for this call (its own argv, environment, stdin). */
  wasi?: WasiRequest;
}

export interface WasiRequest {
  /** argv, argv[0] included; empty means ["module.wasm"]. */
  args: string[];
  env: Record<string, string>;
  stdin?: Uint8Array;
  /** Where the runner mirrors output as it is written (src/wasi/output.ts sharedOutputBuffer,
   *  sized for the configured caps); the CLI reads it to stream a local run's output live. */
  outputBuffer?: SharedArrayBuffer;
}

/** argv[0] when a WASI request gives no args (C programs expect argc >= 1). */
export const DEFAULT_ARGV0 = 'module.wasm';

/** Who asked, for fairness, quotas and metrics. */
export interface CallContext {
  /** Fairness key of the queues: the API key's id, or the client address when keys are off. */
  caller: string;
  /** The API key's id (per-key concurrency quota, metrics); null when keys are off. */
  keyId: string | null;
  /** The client going away: a task still waiting for a worker leaves its queue. Read only when a
   *  task has to wait (src/routes/context.ts). */
  readonly departure?: Departure;
}

/** The CLI's local runs and other in-process callers. */
export const LOCAL_CALLER: CallContext = { caller: 'local', keyId: null };

/** The preparation lanes: small modules have a thread of their own, so they are never queued
 *  behind large ones that take seconds to prepare. */
export type PrepareLane = 'small' | 'large';

export interface Telemetry {
  /** Exact on every outcome but a terminated thread's (then as of the guest's last fuel check). */
  fuelConsumed: number;
  fuelLimit: number;
  memoryPeakBytes: number;
  memoryLimitBytes: number;
  durationNs: number;
  /** Time the run waited for a runner thread. */
  queueNs: number;
  instantiateNs: number;
  /** Time to find the module and have it prepared: a cache lookup when cached, else waiting for
   *  a preparation thread plus validation, instrumentation and compilation. */
  prepareNs: number;
  moduleCached: boolean;
  /** The guest could not be stopped in its thread (at its deadline, or it exhausted the thread's
   *  heap): the thread was terminated and replaced. */
  threadKilled: boolean;
}

export interface ExecuteResponse {
  outcome: Outcome;
  results?: JsonValue[];
  trap?: { kind: TrapKind; message: string };
  message?: string;
  /** WASI runs: the exit code (null when the program did not exit: trap, fuel, timeout). */
  exitCode?: number | null;
  stdout?: string;
  stderr?: string;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
  telemetry: Telemetry;
  moduleId: string;
}

/** A batch's per-call telemetry: the run's own figures (queue and preparation are the batch's). */
export type CallTelemetry = Pick<Telemetry, 'fuelConsumed' | 'fuelLimit' | 'memoryPeakBytes' | 'memoryLimitBytes' | 'durationNs' | 'instantiateNs' | 'threadKilled'>;

export type CallResponse = Omit<ExecuteResponse, 'telemetry' | 'moduleId'> & { telemetry: CallTelemetry };

export interface BatchResponse {
  calls: CallResponse[];
  /** Sums over the calls (fuel, limits, durations), the largest memory peak and limit, and the
   *  batch's own queue and preparation times. */
  telemetry: Telemetry & { calls: number; outcomes: Partial<Record<Outcome, number>> };
  moduleId: string;
}

export type ExecuteAnswer = ExecuteResponse | BatchResponse;

export { moduleIdOf } from '../store/module-id.js';

const MAX_LISTED = 20;
/** Texts whose binary's id is remembered (about 120 bytes each). */
const TEXT_IDS_MAX = 10_000;

export interface ExecuteServiceOptions {
  /** Per-key concurrency quota (runs and preparations in flight per API key); null: keys off. */
  maxConcurrentPerKey: number | null;
  /** Where the quota is counted; default: in this process (ConcurrencyQuota). The fleet-wide one
   *  is src/limits/shared-concurrency.ts. */
  quota?: CallerQuota;
  metrics?: Metrics | null;
}

export class ExecuteService {
  readonly cache: PreparedCache;
  /** Admission and round-robin order in front of the runner threads and each preparation lane. */
  readonly queues: { run: FairQueue; prepare: Record<PrepareLane, FairQueue> };
  readonly quota: CallerQuota | null;
  private metrics: Metrics | null;
  private readonly inflight = new Map<string, Promise<Prepared>>();
  /** sha256 of WebAssembly text -> the id of the binary it compiled to, most recent last: text
   *  sent again finds its prepared module in the cache without being compiled again. */
  private readonly textIds = new Map<string, string>();

  constructor(
    private readonly config: Config,
    private readonly pools: WorkerPools,
    readonly modules: ModuleStore,
    options: ExecuteServiceOptions = { maxConcurrentPerKey: null },
  ) {
    this.cache = new PreparedCache(config.cacheBytes);
    const queue = (name: string, slots: number): FairQueue =>
      new FairQueue({ name, slots, queueMax: config.queueMax, queueTimeoutMs: config.queueTimeoutMs });
    this.queues = {
      // A run holds its slot from when it is handed to a thread, ahead of time or not.
      run: queue('run queue', config.workers * (1 + config.runPrefetch)),
      prepare: { small: queue('small-module preparation queue', 1), large: queue('preparation queue', config.prepareWorkers) },
    };
    this.quota = options.maxConcurrentPerKey === null ? null : (options.quota ?? new ConcurrencyQuota(options.maxConcurrentPerKey));
    this.metrics = options.metrics ?? null;
  }

  /** Metrics are created after the service (they read its queues and cache). */
  attachMetrics(metrics: Metrics): void {
    this.metrics = metrics;
  }

  /** Tasks waiting for a thread, by lane (for metrics). */
  queueDepths(): Record<string, number> {
    return { run: this.queues.run.depth + this.pools.run.waiting, 'prepare-small': this.queues.prepare.small.depth, 'prepare-large': this.queues.prepare.large.depth };
  }

  /** Runs a request: one call, or a batch (`calls`), which answers a BatchResponse. `policy`: the
   *  limits' defaults and maximums (jobs have their own maximum timeout, WASMBOX_JOB_TIMEOUT_MS_MAX). */
  async execute(req: ExecuteRequest & { calls: CallRequest[] }, ctx?: CallContext, policy?: LimitPolicy): Promise<BatchResponse>;
  async execute(req: ExecuteRequest & { calls?: undefined }, ctx?: CallContext, policy?: LimitPolicy): Promise<ExecuteResponse>;
  async execute(req: ExecuteRequest, ctx?: CallContext, policy?: LimitPolicy): Promise<ExecuteAnswer>;
  async execute(req: ExecuteRequest, ctx: CallContext = LOCAL_CALLER, policy: LimitPolicy = this.config.limits): Promise<ExecuteAnswer> {
    const limits = resolveLimits(req.limits, policy);
    this.checkBatchSize(req);
    const giveBack = await this.takeQuota(ctx);
    try {
      if (req.calls) return await this.runBatch(req, await this.planBatch(req, req.calls, limits, ctx, policy), ctx);
      return await this.run(req, await this.admit(req, limits, ctx), ctx);
    } finally {
      giveBack();
    }
  }

  /** Everything `execute` checks before it runs the guest (limits, the module, its preparation,
   *  the function and the arguments), refusing with the same errors; nothing is run. POST /jobs
   *  validates a job so before it is queued; the module stays prepared in the cache for the run. */
  async check(req: ExecuteRequest, ctx: CallContext = LOCAL_CALLER, policy: LimitPolicy = this.config.limits): Promise<void> {
    const limits = resolveLimits(req.limits, policy);
    this.checkBatchSize(req);
    const giveBack = await this.takeQuota(ctx);
    try {
      if (req.calls) await this.planBatch(req, req.calls, limits, ctx, policy);
      else await this.admit(req, limits, ctx);
    } finally {
      giveBack();
    }
  }

  private async takeQuota(ctx: CallContext): Promise<() => void> {
    return this.quota && ctx.keyId !== null ? this.quota.take(ctx.keyId) : () => {};
  }

  private checkBatchSize(req: ExecuteRequest): void {
    if (req.calls && req.calls.length > this.config.batchMax) {
      throw new ServiceError(
        'invalid_request',
        `calls: this server runs at most ${this.config.batchMax} calls in one batch (WASMBOX_BATCH_MAX); got ${req.calls.length}. Split the batch, or store the module (POST /modules) and send several batches by moduleId`,
      );
    }
  }

  /** The request's module, prepared: by id from the store, from its bytes, or from its text. */
  private async findPrepared(req: ExecuteRequest, ctx: CallContext): Promise<{ moduleId: string; prepared: Prepared; cached: boolean; prepareNs: number }> {
    const t = performance.now();
    let moduleId: string;
    let found: { prepared: Prepared; cached: boolean };
    if (req.moduleId !== undefined) {
      moduleId = req.moduleId;
      found = await this.prepareStored(moduleId, ctx);
    } else if (req.wat !== undefined) {
      const textKey = createHash('sha256').update(req.wat).digest('base64');
      const known = this.textIds.get(textKey);
      const hit = known !== undefined ? this.cache.get(known) : undefined;
      if (known !== undefined && hit) {
        this.metrics?.cacheHits.inc();
        moduleId = known;
        found = { prepared: unwrap(hit), cached: true };
      } else {
        const { bytes, deadlineMs } = await this.compileText(req.wat, ctx);
        moduleId = moduleIdOf(bytes);
        found = await this.prepare(moduleId, bytes, ctx, deadlineMs);
        this.textIds.delete(textKey);
        this.textIds.set(textKey, moduleId);
        if (this.textIds.size > TEXT_IDS_MAX) this.textIds.delete(this.textIds.keys().next().value!);
      }
    } else {
      const bytes = req.module!;
      moduleId = req.moduleHash ?? (await moduleIdOfAsync(bytes));
      found = await this.prepare(moduleId, bytes, ctx);
    }
    return { moduleId, ...found, prepareNs: Math.round((performance.now() - t) * 1e6) };
  }

  /**
   * WebAssembly text to a binary, on a preparation thread of the text's lane (through its fair
   * queue), within the preparation limit; answers the binary and what is left of the limit for
   * preparing it. A syntax error is invalid_module with its line and column.
   */
  async compileText(text: string, ctx: CallContext = LOCAL_CALLER): Promise<{ bytes: Uint8Array; deadlineMs: number }> {
    const size = Buffer.byteLength(text);
    const lane: PrepareLane = size <= this.config.prepareSmallBytes ? 'small' : 'large';
    const slot: Slot = await this.queues.prepare[lane].acquire(ctx.caller, () => ctx.departure);
    this.metrics?.queueWait.observe({ lane: `prepare-${lane}` }, slot.waitedMs / 1000);
    const t = performance.now();
    let result;
    try {
      result = await this.pools.compileText(text, lane);
    } finally {
      slot.release();
    }
    if (!result.ok) throw new ServiceError(result.code, result.message);
    const deadlineMs = Math.max(1, this.config.prepareTimeoutMs - Math.round(performance.now() - t));
    return { bytes: result.bytes, deadlineMs };
  }

  private async admit(req: ExecuteRequest, limits: Limits, ctx: CallContext): Promise<Admitted> {
    const { moduleId, prepared, cached, prepareNs } = await this.findPrepared(req, ctx);

    if (prepared.wasi && !req.wasi) {
      throw new ServiceError(
        'unsupported_import',
        'the module imports WASI preview1 functions ("wasi_snapshot_preview1"), which are provided only to WASI runs; ' +
          'add "wasi": {} (with args, env and stdin as needed) to run it as a WASI program',
      );
    }
    const [name, sig] = pickFunction(prepared, req.function);
    const decoded = decodeArgs(name, sig, req.args);
    if (!decoded.ok) throw new ServiceError('invalid_arguments', decoded.message);
    return { limits, moduleId, prepared, cached, prepareNs, name, sig, args: decoded };
  }

  private async run(req: ExecuteRequest, admitted: Admitted, ctx: CallContext): Promise<ExecuteResponse> {
    const { limits, moduleId, prepared, cached, prepareNs, name, sig } = admitted;
    const decoded = admitted.args;
    const slot = await this.acquireRunSlot(req, ctx);
    let run: RunResult;
    try {
      run = await this.pools.runGuest(
        {
          module: prepared.module,
          moduleKey: moduleId,
          moduleWeight: prepared.weightBytes,
          layout: prepared.layout,
          functionName: name,
          sig,
          args: decoded.values,
          fuelLimit: limits.fuel,
          memoryLimitPages: memoryLimitPages(limits),
          timeoutMs: limits.timeoutMs,
          ...(req.progress && { progress: req.progress }),
          ...(req.wasi && {
            wasi: {
              args: req.wasi.args.length > 0 ? req.wasi.args : [DEFAULT_ARGV0],
              env: req.wasi.env,
              stdin: req.wasi.stdin ?? new Uint8Array(0),
              stdoutLimitBytes: this.config.wasiStdoutMaxBytes,
              stderrLimitBytes: this.config.wasiStderrMaxBytes,
              output: req.wasi.outputBuffer ?? sharedOutputBuffer(this.config.wasiStdoutMaxBytes, this.config.wasiStderrMaxBytes),
            },
          }),
        },
        limits.timeoutMs,
        req.cancel,
        () => ctx.departure,
      );
    } finally {
      slot.release();
    }
    if (this.metrics) {
      this.metrics.executions.inc({ outcome: run.outcome, key: ctx.keyId ?? 'none' });
      this.metrics.fuelConsumed.observe(run.fuelConsumed);
      this.metrics.guestDuration.observe(run.durationNs / 1e9);
    }
    // Waiting counts twice: for a slot (the fair queue), then for the thread it was handed to.
    return respond(run, limits, moduleId, prepareNs, Math.round(slot.waitedMs * 1e6) + (run.waitedNs ?? 0), cached, req.wasi !== undefined);
  }

  /**
   * A batch: every call checked first (function, arguments, limits: any refusal refuses the whole
   * batch, naming the call), then all of them run in one runner task, on one runner slot (one
   * admission in the fair queue), each on a fresh instance. The request's timeoutMs is the
   * batch's deadline; a call's own timeoutMs bounds that call.
   */
  private async planBatch(req: ExecuteRequest, calls: readonly CallRequest[], batchLimits: Limits, ctx: CallContext, policy: LimitPolicy): Promise<PlannedBatch> {
    const { moduleId, prepared, cached, prepareNs } = await this.findPrepared(req, ctx);
    const planned = calls.map((call, i) => {
      const at = `calls[${i}]`;
      const limits = resolveLimits({ ...req.limits, ...call.limits }, policy, `${at}.limits`);
      const wasi = call.wasi ?? req.wasi;
      if (prepared.wasi && !wasi) {
        throw new ServiceError(
          'unsupported_import',
          `${at}: the module imports WASI preview1 functions ("wasi_snapshot_preview1"), which are provided only to WASI runs; add "wasi": {} to the request (or to each call)`,
        );
      }
      const [name, sig] = withPrefix(at, () => pickFunction(prepared, call.function));
      const decoded = decodeArgs(name, sig, call.args);
      if (!decoded.ok) throw new ServiceError('invalid_arguments', `${at}: ${decoded.message}`);
      return { limits, wasi, name, sig, args: decoded.values };
    });
    return { batchLimits, moduleId, prepared, cached, prepareNs, planned };
  }

  /** A runner slot for a single run or a batch; a cancelled request (the client gone, or a job's
   *  DELETE) leaves the queue too. */
  private async acquireRunSlot(req: ExecuteRequest, ctx: CallContext): Promise<Slot> {
    const slot = await this.queues.run.acquire(ctx.caller, () => eitherCancel(ctx.departure, req.cancel));
    this.metrics?.queueWait.observe({ lane: 'run' }, slot.waitedMs / 1000);
    return slot;
  }

  private async runBatch(req: ExecuteRequest, batch: PlannedBatch, ctx: CallContext): Promise<BatchResponse> {
    const { batchLimits, moduleId, prepared, cached, prepareNs, planned } = batch;
    const anyWasi = planned.some((p) => p.wasi !== undefined);
    const { wasiStdoutMaxBytes: stdoutLimitBytes, wasiStderrMaxBytes: stderrLimitBytes } = this.config;

    const slot = await this.acquireRunSlot(req, ctx);
    let runs: RunResult[];
    try {
      runs = await this.pools.runBatch(
        {
          module: prepared.module,
          moduleKey: moduleId,
          moduleWeight: prepared.weightBytes,
          layout: prepared.layout,
          timeoutMs: batchLimits.timeoutMs,
          ...(anyWasi && { output: sharedOutputBuffer(stdoutLimitBytes, stderrLimitBytes) }),
          calls: planned.map((p) => ({
            functionName: p.name,
            sig: p.sig,
            args: p.args,
            fuelLimit: p.limits.fuel,
            memoryLimitPages: memoryLimitPages(p.limits),
            timeoutMs: p.limits.timeoutMs,
            ...(p.wasi && {
              wasi: {
                args: p.wasi.args.length > 0 ? p.wasi.args : [DEFAULT_ARGV0],
                env: p.wasi.env,
                stdin: p.wasi.stdin ?? new Uint8Array(0),
                stdoutLimitBytes,
                stderrLimitBytes,
              },
            }),
          })),
        },
        batchLimits.timeoutMs,
        req.cancel,
        req.progress,
        () => ctx.departure,
      );
    } finally {
      slot.release();
    }
    const answers = runs.map((run, i) => {
      if (this.metrics) {
        this.metrics.executions.inc({ outcome: run.outcome, key: ctx.keyId ?? 'none' });
        this.metrics.fuelConsumed.observe(run.fuelConsumed);
        this.metrics.guestDuration.observe(run.durationNs / 1e9);
      }
      const { telemetry, moduleId: _id, ...rest } = respond(run, planned[i]!.limits, moduleId, 0, 0, cached, planned[i]!.wasi !== undefined);
      const { queueNs: _q, prepareNs: _p, moduleCached: _c, ...own } = telemetry;
      return { ...rest, telemetry: own } as CallResponse;
    });
    const outcomes: Partial<Record<Outcome, number>> = {};
    for (const a of answers) outcomes[a.outcome] = (outcomes[a.outcome] ?? 0) + 1;
    const sum = (k: 'fuelConsumed' | 'fuelLimit' | 'durationNs' | 'instantiateNs'): number => answers.reduce((n, a) => n + a.telemetry[k], 0);
    const max = (k: 'memoryPeakBytes' | 'memoryLimitBytes'): number => answers.reduce((n, a) => Math.max(n, a.telemetry[k]), 0);
    return {
      calls: answers,
      telemetry: {
        calls: answers.length,
        outcomes,
        fuelConsumed: sum('fuelConsumed'),
        fuelLimit: sum('fuelLimit'),
        memoryPeakBytes: max('memoryPeakBytes'),
        memoryLimitBytes: max('memoryLimitBytes'),
        durationNs: sum('durationNs'),
        queueNs: Math.round(slot.waitedMs * 1e6) + (runs[0]?.waitedNs ?? 0),
        instantiateNs: sum('instantiateNs'),
        prepareNs,
        moduleCached: cached,
        threadKilled: answers.some((a) => a.telemetry.threadKilled),
      },
      moduleId,
    };
  }

  /** A stored module, prepared: from the cache when it is there (a run by id then pays only
   *  instantiation), otherwise read from the store, verified and prepared. */
  private async prepareStored(moduleId: string, ctx: CallContext): Promise<{ prepared: Prepared; cached: boolean }> {
    // The store decides, the cache only saves work: the cache is keyed by content, so an entry can
    // outlive a DELETE (a preparation under way when it completed puts it back) and must never make
    // a deleted module runnable. has() turns false when a delete completes and true when a put
    // does, so a run after a completed DELETE is 404 and after a completed POST runs.
    if (!(await this.modules.has(moduleId))) throw notStored(moduleId);
    const hit = this.cache.get(moduleId);
    if (hit) {
      this.metrics?.cacheHits.inc();
      return { prepared: unwrap(hit), cached: true };
    }
    let bytes: Uint8Array | null;
    try {
      bytes = await this.modules.getBytes(moduleId);
    } catch (err) {
      if (err instanceof CorruptModuleError) throw corrupt(err);
      throw err;
    }
    if (!bytes) throw notStored(moduleId);
    return this.prepare(moduleId, bytes, ctx);
  }

  /** POST /modules: validates and prepares the module (so what is stored is runnable, and the
   *  first run by id finds it compiled), then stores it. */
  async store(source: Uint8Array | { wat: string }, ctx: CallContext = LOCAL_CALLER, moduleHash?: string): Promise<{ created: boolean; body: StoredModuleBody }> {
    const giveBack = await this.takeQuota(ctx);
    try {
      if (source instanceof Uint8Array) return await this.storeWithin(source, ctx, moduleHash);
      // Text is stored as the binary it compiles to, under the binary's content address.
      const { bytes, deadlineMs } = await this.compileText(source.wat, ctx);
      return await this.storeWithin(bytes, ctx, undefined, deadlineMs);
    } finally {
      giveBack();
    }
  }

  private async storeWithin(bytes: Uint8Array, ctx: CallContext, moduleHash?: string, deadlineMs?: number): Promise<{ created: boolean; body: StoredModuleBody }> {
    if (bytes.length > this.config.moduleMaxBytes) {
      throw new ServiceError(
        'payload_too_large',
        `the module is ${bytes.length} bytes; this server stores modules of at most ${this.config.moduleMaxBytes} bytes`,
      );
    }
    const moduleId = moduleHash ?? (await moduleIdOfAsync(bytes));
    const { prepared } = await this.prepare(moduleId, bytes, ctx, deadlineMs);
    try {
      const { created, record } = await this.modules.put(moduleId, bytes, prepared.description);
      return { created, body: storedBody(moduleId, record.description, record.storedAt) };
    } catch (err) {
      if (err instanceof StoreFullError) throw new ServiceError('store_full', err.message);
      throw err;
    }
  }

  async describeStored(moduleId: string): Promise<StoredModuleBody> {
    try {
      const record = await this.modules.getDescription(moduleId);
      if (!record) throw notStored(moduleId);
      return storedBody(moduleId, record.description, record.storedAt);
    } catch (err) {
      if (err instanceof CorruptModuleError) throw corrupt(err);
      throw err;
    }
  }

  async deleteStored(moduleId: string): Promise<void> {
    const removed = await this.modules.delete(moduleId);
    this.cache.delete(moduleId);
    if (!removed) throw notStored(moduleId);
  }

  /** The prepared module for these bytes: from the cache, from a preparation already under way, or
   *  prepared now. Refusals are cached too, so a bad module is refused at the same cost as a hit. */
  async prepare(moduleId: string, bytes: Uint8Array, ctx: CallContext = LOCAL_CALLER, deadlineMs?: number): Promise<{ prepared: Prepared; cached: boolean }> {
    const hit = this.cache.get(moduleId);
    if (hit) {
      this.metrics?.cacheHits.inc();
      return { prepared: unwrap(hit), cached: true };
    }
    this.metrics?.cacheMisses.inc();
    let pending = this.inflight.get(moduleId);
    if (!pending) {
      pending = this.prepareOnce(moduleId, bytes, ctx, deadlineMs);
      this.inflight.set(moduleId, pending);
      void pending.finally(() => this.inflight.delete(moduleId)).catch(() => {});
    }
    return { prepared: await pending, cached: false };
  }

  /** Waits for a thread of the module's lane (small modules have their own), then prepares. */
  private async prepareOnce(moduleId: string, bytes: Uint8Array, ctx: CallContext, deadlineMs?: number): Promise<Prepared> {
    const lane: PrepareLane = bytes.length <= this.config.prepareSmallBytes ? 'small' : 'large';
    const slot: Slot = await this.queues.prepare[lane].acquire(ctx.caller, () => ctx.departure);
    this.metrics?.queueWait.observe({ lane: `prepare-${lane}` }, slot.waitedMs / 1000);
    const t = performance.now();
    let result;
    try {
      result = await this.pools.prepareModule(bytes, lane, deadlineMs);
    } finally {
      slot.release();
    }
    this.metrics?.prepare.observe((performance.now() - t) / 1000);
    const value = result.ok ? { ...result, moduleId } : result;
    // A deadline miss may be load, not the module: let the next request try again.
    if (result.ok || !result.transient) this.cache.set(moduleId, value);
    return unwrap(value);
  }
}

/** What POST /modules and GET /modules/{id} answer. */
export interface StoredModuleBody {
  moduleId: string;
  size: number;
  /** The exported functions with their signatures. */
  exports: { name: string; params: readonly string[]; results: readonly string[] }[];
  /** Exports that are not functions (memories, tables, globals, tags). */
  otherExports: { name: string; kind: string }[];
  imports: ModuleDescription['imports'];
  memory: ModuleDescription['memory'];
  tables: ModuleDescription['tables'];
  hasStart: boolean;
  storedAt: string;
}

function storedBody(moduleId: string, d: ModuleDescription, storedAt: string): StoredModuleBody {
  return {
    moduleId,
    size: d.size,
    exports: d.exports.filter((e) => e.kind === 'function').map((e) => ({ name: e.name, params: e.params ?? [], results: e.results ?? [] })),
    otherExports: d.exports.filter((e) => e.kind !== 'function').map((e) => ({ name: e.name, kind: e.kind })),
    imports: d.imports,
    memory: d.memory,
    tables: d.tables,
    hasStart: d.hasStart,
    storedAt,
  };
}

function notStored(moduleId: string): ServiceError {
  return new ServiceError('module_not_found', `no stored module has the id ${moduleId}; upload it with POST /modules, or send the module itself`);
}

function corrupt(err: CorruptModuleError): ServiceError {
  return new ServiceError(
    'module_not_found',
    `${err.message}; it was quarantined and will not run. Upload the module again with POST /modules`,
  );
}

function unwrap(v: Prepared | { ok: false; code: 'invalid_module' | 'unsupported_import' | 'module_too_complex'; message: string }): Prepared {
  if (!v.ok) throw new ServiceError(v.code, v.message);
  return v as Prepared;
}

/** Runs `f`, prefixing the message of a refusal it throws with `prefix` (which call of a batch). */
function withPrefix<T>(prefix: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof ServiceError) throw new ServiceError(err.code, `${prefix}: ${err.message}`, err.headers);
    throw err;
  }
}

function pickFunction(p: Prepared, requested: string | undefined): [string, FuncSig] {
  const name = requested ?? '_start';
  // Own properties only: "toString" or "__proto__" must be function_not_found, not a prototype's.
  const sig = Object.hasOwn(p.functions, name) ? p.functions[name] : undefined;
  if (sig) return [name, sig];
  const listed = Object.entries(p.functions)
    .slice(0, MAX_LISTED)
    .map(([n, s]) => formatSignature(clip(n, 60), s));
  const count = Object.keys(p.functions).length;
  const available =
    count === 0
      ? 'the module exports no functions'
      : `exported functions: ${listed.join(', ')}${count > MAX_LISTED ? ` (and ${count - MAX_LISTED} more)` : ''}`;
  const what = requested === undefined ? 'no "function" was given and the module does not export _start' : `the module exports no function named ${quote(requested)}`;
  throw new ServiceError('function_not_found', `${what}; ${available}`);
}

function respond(run: RunResult, limits: Limits, moduleId: string, prepareNs: number, queueNs: number, cached: boolean, wasi: boolean): ExecuteResponse {
  const body: ExecuteResponse = { outcome: run.outcome } as ExecuteResponse;
  if (run.results) body.results = run.results;
  if (run.trap) body.trap = run.trap;
  if (run.message) body.message = run.message;
  if (wasi) {
    body.exitCode = run.wasi?.exitCode ?? null;
    body.stdout = run.wasi?.stdout ?? '';
    body.stderr = run.wasi?.stderr ?? '';
    body.stdoutTruncated = run.wasi?.stdoutTruncated ?? false;
    body.stderrTruncated = run.wasi?.stderrTruncated ?? false;
  }
  Object.assign(body, {
    telemetry: {
      fuelConsumed: run.fuelConsumed,
      fuelLimit: limits.fuel,
      memoryPeakBytes: run.memoryPeakBytes,
      memoryLimitBytes: memoryLimitBytes(limits),
      durationNs: run.durationNs,
      queueNs,
      instantiateNs: run.instantiateNs,
      prepareNs,
      moduleCached: cached,
      threadKilled: run.threadKilled === true,
    },
    moduleId,
  });
  return body;
}
