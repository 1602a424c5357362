// The in-process job queue, the default backend (no REDIS_URL): jobs live in this process's
// memory, so a restart loses those not yet finished and those kept for reading.
//
// - Bounded: at most WASMBOX_JOBS_MAX jobs held in any state (queued, running, finished and not
//   yet expired), and WASMBOX_JOBS_MEMORY_MB of bytes held by them (a queued job's module, stdin
//   and fields; a finished job's result); past either, 503 overloaded. With API keys, one key may
//   have WASMBOX_JOBS_MAX_PER_KEY jobs queued or running; past it, 429 rate_limited.
// - Fair: each caller has its own FIFO and callers are served round robin, so one caller's
//   thousand jobs do not delay another caller's one.
// - WASMBOX_JOBS_CONCURRENCY jobs run at once; each runs through the execution service like a
//   synchronous run (the same fair run queue, per-key concurrency quota and threads). A job the
//   service refuses for load (overloaded, rate_limited) before it started goes back to the head
//   of its caller's queue and is tried again after a pause: queued jobs wait here, never on a
//   connection.
// - A finished job is kept for WASMBOX_JOB_TTL_S, then answers 404 (it is swept by a timer that
//   does not keep the process alive).
// - Each job reports one result: it is set once, when the job finishes.

import { randomUUID } from 'node:crypto';
import { ServiceError } from '../errors.js';
import { PROGRESS_FUEL, PROGRESS_MEMORY, progressBuffer } from '../wasi/fuel.js';
import { RunCancelledError } from '../worker/pool.js';
import type { CallbackSender, CallbackState } from './callbacks.js';
import type { ExecuteAnswer } from '../service/execute.js';
import type { JobOwner, JobProgress, JobQueue, JobRunner, JobSpec, JobStatus, JobView } from './types.js';

export interface MemoryJobQueueOptions {
  runner: JobRunner;
  /** null: callbacks are off (no callbackUrl is accepted at submission anyway). */
  callbacks: CallbackSender | null;
  ttlS: number;
  maxJobs: number;
  memoryBytes: number;
  maxPerKey: number;
  concurrency: number;
  /** Told when a job is queued and when it finishes (metrics, the log). */
  onSubmitted?: (jobId: string, owner: JobOwner) => void;
  onFinished?: (view: JobView) => void;
  /** Told about a job that failed with something other than a refusal (a bug). */
  onInternalError?: (jobId: string, err: unknown) => void;
}

interface JobRecord {
  id: string;
  owner: JobOwner;
  /** Dropped when the job finishes (its bytes are no longer needed). */
  spec: JobSpec | null;
  callbackUrl: string | null;
  status: JobStatus;
  createdAtMs: number;
  startedAtMs?: number;
  finishedAtMs?: number;
  expiresAtMs?: number;
  progressCell: SharedArrayBuffer | null;
  abort: AbortController | null;
  cancelRequested: boolean;
  cancelled: boolean;
  finalProgress?: JobProgress;
  result?: ExecuteAnswer;
  error?: { code: string; message: string };
  callback?: CallbackState;
  /** Bytes it holds, counted against memoryBytes. */
  bytes: number;
  /** Set while the job waits to be tried again after a refusal for load. */
  retryTimer?: NodeJS.Timeout;
  retries: number;
  /** Resolved when the job finishes. */
  done: Promise<void>;
  markDone: () => void;
}

/** Pause before a job refused for load is tried again: doubles from this, up to the maximum. */
const LOAD_RETRY_MS = 250;
const LOAD_RETRY_MAX_MS = 5_000;
/** How long DELETE waits for a running job to stop before answering. */
const CANCEL_WAIT_MS = 5_000;

export class MemoryJobQueue implements JobQueue {
  private readonly jobs = new Map<string, JobRecord>();
  /** Queued jobs by caller, and the callers in round-robin order. */
  private readonly waiting = new Map<string, JobRecord[]>();
  private readonly order: string[] = [];
  private readonly activeByKey = new Map<string, number>();
  private readonly statusCounts: Record<JobStatus, number> = { queued: 0, running: 0, done: 0 };
  private heldBytes = 0;
  private accepting = true;
  private dispatching = true;
  private readonly sweeper: NodeJS.Timeout;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: MemoryJobQueueOptions) {
    const ttlMs = options.ttlS * 1000;
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, Math.min(60_000, Math.floor(ttlMs / 2))));
    this.sweeper.unref();
  }

  async submit(spec: JobSpec): Promise<{ jobId: string }> {
    if (!this.accepting) throw new ServiceError('overloaded', 'the server is shutting down and takes no new jobs; retry on another instance', { 'retry-after': '5' });
    if (this.jobs.size >= this.options.maxJobs) {
      throw new ServiceError(
        'overloaded',
        `this server holds ${this.jobs.size} jobs (queued, running, or finished within WASMBOX_JOB_TTL_S), its maximum (WASMBOX_JOBS_MAX); retry later`,
        { 'retry-after': '5' },
      );
    }
    const bytes = specBytes(spec);
    if (this.heldBytes + bytes > this.options.memoryBytes) {
      throw new ServiceError(
        'overloaded',
        `the jobs held by this server take ${this.heldBytes} bytes and this one ${bytes} more, over its job memory of ${this.options.memoryBytes} bytes (WASMBOX_JOBS_MEMORY_MB); retry later, or store the module once with POST /modules and submit jobs by moduleId`,
        { 'retry-after': '5' },
      );
    }
    const keyId = spec.owner.keyId;
    if (keyId !== null) {
      const active = this.activeByKey.get(keyId) ?? 0;
      if (active >= this.options.maxPerKey) {
        throw new ServiceError(
          'rate_limited',
          `this API key already has ${active} jobs queued or running, the most this server allows (WASMBOX_JOBS_MAX_PER_KEY=${this.options.maxPerKey}); wait for some to finish`,
          { 'retry-after': '5' },
        );
      }
      this.activeByKey.set(keyId, active + 1);
    }
    let markDone!: () => void;
    const done = new Promise<void>((resolve) => {
      markDone = resolve;
    });
    const record: JobRecord = {
      id: randomUUID(),
      owner: spec.owner,
      spec,
      callbackUrl: spec.callbackUrl,
      status: 'queued',
      createdAtMs: Date.now(),
      progressCell: null,
      abort: null,
      cancelRequested: false,
      cancelled: false,
      bytes,
      retries: 0,
      done,
      markDone,
    };
    this.jobs.set(record.id, record);
    this.heldBytes += bytes;
    this.statusCounts.queued++;
    this.enqueue(record, false);
    this.options.onSubmitted?.(record.id, spec.owner);
    this.pump();
    return { jobId: record.id };
  }

  async get(jobId: string, owner: JobOwner): Promise<JobView | null> {
    const record = this.visible(jobId, owner);
    return record ? this.view(record, true) : null;
  }

  async cancel(jobId: string, owner: JobOwner): Promise<JobView | null> {
    const record = this.visible(jobId, owner);
    if (!record) return null;
    if (record.status === 'queued') {
      this.dequeue(record);
      this.finish(record, { cancelled: true });
    } else if (record.status === 'running' && !record.cancelRequested) {
      record.cancelRequested = true;
      record.abort?.abort(new Error('the job was cancelled'));
    }
    if (record.status === 'running') {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([record.done, new Promise<void>((resolve) => (timer = setTimeout(resolve, CANCEL_WAIT_MS)))]);
      clearTimeout(timer);
    }
    return this.view(record, true);
  }

  counts(): Record<JobStatus, number> {
    return { ...this.statusCounts };
  }

  stopAccepting(): void {
    this.accepting = false;
  }

  async close(): Promise<void> {
    this.accepting = false;
    this.dispatching = false;
    clearInterval(this.sweeper);
    // Queued jobs stay queued: in-process, they end with the process.
    for (const record of this.jobs.values()) {
      if (record.retryTimer) clearTimeout(record.retryTimer);
    }
    if (this.statusCounts.running > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await this.options.callbacks?.close();
  }

  private visible(jobId: string, owner: JobOwner): JobRecord | null {
    const record = this.jobs.get(jobId);
    if (!record) return null;
    if (record.expiresAtMs !== undefined && Date.now() >= record.expiresAtMs) return null;
    // With keys, only the key that made the job sees it; the same 404 as an unknown id.
    if (record.owner.keyId !== owner.keyId) return null;
    return record;
  }

  private view(record: JobRecord, withCallback: boolean): JobView {
    const v: JobView = { jobId: record.id, status: record.status, createdAt: iso(record.createdAtMs) };
    if (record.startedAtMs !== undefined) v.startedAt = iso(record.startedAtMs);
    if (record.status === 'running' && record.progressCell) v.progress = readProgress(record.progressCell);
    if (record.status === 'done') {
      v.finishedAt = iso(record.finishedAtMs!);
      v.expiresAt = iso(record.expiresAtMs!);
      v.cancelled = record.cancelled;
      if (record.finalProgress) v.progress = record.finalProgress;
      if (record.result) v.result = record.result;
      if (record.error) v.error = record.error;
    }
    if (withCallback && record.callback) v.callback = { ...record.callback };
    return v;
  }

  private enqueue(record: JobRecord, atHead: boolean): void {
    const caller = record.owner.caller;
    let q = this.waiting.get(caller);
    if (!q) {
      q = [];
      this.waiting.set(caller, q);
      this.order.push(caller);
    }
    if (atHead) q.unshift(record);
    else q.push(record);
  }

  private dequeue(record: JobRecord): void {
    if (record.retryTimer) {
      clearTimeout(record.retryTimer);
      delete record.retryTimer;
      return;
    }
    const q = this.waiting.get(record.owner.caller);
    const i = q?.indexOf(record) ?? -1;
    if (q && i >= 0) q.splice(i, 1);
    if (q && q.length === 0) this.dropCaller(record.owner.caller);
  }

  private dropCaller(caller: string): void {
    this.waiting.delete(caller);
    const i = this.order.indexOf(caller);
    if (i >= 0) this.order.splice(i, 1);
  }

  /** The next job in round-robin order of callers. */
  private next(): JobRecord | null {
    const caller = this.order.shift();
    if (caller === undefined) return null;
    const q = this.waiting.get(caller)!;
    const record = q.shift()!;
    if (q.length === 0) this.waiting.delete(caller);
    else this.order.push(caller);
    return record;
  }

  private pump(): void {
    while (this.dispatching && this.statusCounts.running < this.options.concurrency) {
      const record = this.next();
      if (!record) return;
      this.start(record);
    }
  }

  private setStatus(record: JobRecord, status: JobStatus): void {
    this.statusCounts[record.status]--;
    record.status = status;
    this.statusCounts[status]++;
  }

  private start(record: JobRecord): void {
    this.setStatus(record, 'running');
    record.startedAtMs ??= Date.now();
    record.abort = new AbortController();
    record.progressCell = progressBuffer();
    const spec = record.spec!;
    this.options.runner(spec, { cancel: record.abort.signal, progress: record.progressCell }).then(
      (result) => this.finish(record, { result }),
      (err: unknown) => this.failed(record, err),
    );
  }

  private failed(record: JobRecord, err: unknown): void {
    if (record.cancelRequested) {
      const progress =
        err instanceof RunCancelledError ? { fuelConsumed: err.fuelConsumed, memoryBytes: err.memoryPeakBytes } : record.progressCell ? readProgress(record.progressCell) : undefined;
      this.finish(record, { cancelled: true, ...(progress && { progress }) });
      return;
    }
    if (err instanceof ServiceError && (err.code === 'overloaded' || err.code === 'rate_limited') && this.dispatching) {
      // Refused for load before it ran: back to the head of its caller's queue after a pause.
      this.setStatus(record, 'queued');
      record.abort = null;
      record.progressCell = null;
      const delayMs = Math.min(LOAD_RETRY_MAX_MS, LOAD_RETRY_MS * 2 ** record.retries);
      record.retries++;
      record.retryTimer = setTimeout(() => {
        delete record.retryTimer;
        if (record.status !== 'queued' || !this.dispatching) return;
        this.enqueue(record, true);
        this.pump();
      }, delayMs);
      record.retryTimer.unref();
      this.afterRun();
      return;
    }
    if (err instanceof ServiceError) {
      this.finish(record, { error: { code: err.code, message: err.message } });
      return;
    }
    this.options.onInternalError?.(record.id, err);
    this.finish(record, { error: { code: 'internal_error', message: 'internal error; the job id identifies it in the server log' } });
  }

  private finish(
    record: JobRecord,
    end: { result: ExecuteAnswer } | { cancelled: true; progress?: JobProgress } | { error: { code: string; message: string } },
  ): void {
    if (record.status === 'done') return;
    const wasRunning = record.status === 'running';
    this.setStatus(record, 'done');
    const now = Date.now();
    record.finishedAtMs = now;
    record.expiresAtMs = now + this.options.ttlS * 1000;
    if ('result' in end) record.result = end.result;
    else if ('error' in end) record.error = end.error;
    else {
      record.cancelled = true;
      if (end.progress) record.finalProgress = end.progress;
    }
    record.abort = null;
    record.progressCell = null;
    record.spec = null;
    if (record.owner.keyId !== null) {
      const left = (this.activeByKey.get(record.owner.keyId) ?? 1) - 1;
      if (left <= 0) this.activeByKey.delete(record.owner.keyId);
      else this.activeByKey.set(record.owner.keyId, left);
    }
    // The finished job, as it will be read and as the callback carries it (the same bytes on
    // every attempt), replaces the request's bytes in the memory account.
    const view = this.view(record, false);
    const body = Buffer.from(JSON.stringify(view));
    this.heldBytes += body.byteLength - record.bytes;
    record.bytes = body.byteLength;
    record.markDone();
    if (record.callbackUrl && this.options.callbacks) {
      record.callback = { attempts: 0, lastStatus: null, delivered: false };
      this.options.callbacks.deliver(record.id, record.callbackUrl, body, record.callback);
    }
    this.options.onFinished?.(view);
    if (wasRunning) this.afterRun();
  }

  /** A run slot of the queue is free: start the next job, or tell close() the queue is idle. */
  private afterRun(): void {
    this.pump();
    if (this.statusCounts.running === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, record] of this.jobs) {
      if (record.expiresAtMs !== undefined && now >= record.expiresAtMs) {
        this.jobs.delete(id);
        this.heldBytes -= record.bytes;
        this.statusCounts.done--;
      }
    }
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function readProgress(cell: SharedArrayBuffer): JobProgress {
  const a = new BigInt64Array(cell);
  return { fuelConsumed: Number(Atomics.load(a, PROGRESS_FUEL)), memoryBytes: Number(Atomics.load(a, PROGRESS_MEMORY)) };
}

/** Bytes a queued job holds: its module, its stdin and its other fields as JSON. */
function specBytes(spec: JobSpec): number {
  const { fields, module } = spec.body;
  const stdin = fields.wasi?.stdin?.length ?? fields.wasi?.stdinBase64?.length ?? 0;
  return (module?.byteLength ?? 0) + stdin + JSON.stringify({ ...fields, wasi: fields.wasi && { ...fields.wasi, stdin: undefined, stdinBase64: undefined } }).length + 512;
}
