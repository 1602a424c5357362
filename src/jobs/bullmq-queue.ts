// The shared job queue, used when REDIS_URL is set: BullMQ on the replicas' Redis. Any replica
// accepts a job, any replica's worker runs it, any replica answers GET and DELETE for it.
// (BullMQ: a maintained, widely used Redis queue with locks, stalled-job recovery and retention;
// the alternative was re-implementing those on bare Redis lists.)
//
//   <prefix>bull:jobs:*          BullMQ's own keys for the queue "jobs" (waiting, active, ...); a
//                                job's data is its validated request (JobData), never the module
//   <prefix>job:<id>:result      the job's one result (FinishedRecord, JSON), kept WASMBOX_JOB_TTL_S
//   <prefix>job:<id>:cancel      set by DELETE; the replica running the job polls it
//   <prefix>job:<id>:callback    the callback's state (attempts, lastStatus, delivered)
//   <prefix>job-module:<hex>     an inline module (content-addressed), kept JOB_MODULE_KEEP_MS
//                                after the last job that carried it was submitted
//   <prefix>jobs:active          hash: jobs queued or running per API key id (WASMBOX_JOBS_MAX_PER_KEY)
//
// - Inline modules are not copied into job payloads: one copy per distinct module, shared by
//   every job that carries it, outside the module store (it is not listed, not counted against
//   WASMBOX_STORE_MAX_*, and expires by itself).
// - Each replica runs a BullMQ Worker with WASMBOX_JOBS_CONCURRENCY slots; a job runs through the
//   same JobRunner as an in-process job (the execution service: fair run queue, per-key quota,
//   limits). A job the service refuses for load before it ran is put back (delayed) and retried.
// - Exactly one result: the result is written with SET NX (a Lua script that also gives back the
//   key's queue slot), so whatever runs a job twice (a replica that lost its lock and a replica
//   that recovered the job) the first result written is the only one ever reported, and only the
//   replica that wrote it sends the callback. A processor that finds a result already written
//   stops at once.
// - A replica killed mid-job: its lock (WASMBOX_JOBS_LOCK_MS) lapses, and another replica's
//   stalled-job check (every WASMBOX_JOBS_LOCK_MS) moves the job back to waiting, where any worker
//   takes it and runs it from the start. A job that stalls more than MAX_STALLED times ends done
//   with an error.
// - Cancellation: DELETE sets the cancel key. A queued job is given its cancelled result at once
//   and removed from the queue; a running job's replica sees the key at its next progress tick
//   (every PROGRESS_MS, the same tick that publishes its fuel) and stops the run. A key polled with
//   the progress write, rather than a pub/sub message, cannot be missed by a replica whose
//   subscription was reconnecting, and costs nothing extra on the tick that runs anyway.

import { randomUUID } from 'node:crypto';
import { type ConnectionOptions, DelayedError, type Job, Queue, Worker } from 'bullmq';
import { ServiceError } from '../errors.js';
import { type Redis, REDIS_COMMAND_TIMEOUT_MS, closeRedis, isRedisUnavailable, redisOptions, unavailable, withRedis } from '../redis/index.js';
import type { RunBody } from '../routes/body.js';
import type { RunFields } from '../schemas/execute.js';
import type { ExecuteAnswer } from '../service/execute.js';
import { MODULE_ID_PATTERN, moduleIdOf, moduleIdOfAsync } from '../store/module-id.js';
import { PROGRESS_FUEL, PROGRESS_MEMORY, progressBuffer } from '../wasi/fuel.js';
import { RunCancelledError } from '../worker/pool.js';
import type { CallbackSender, CallbackState } from './callbacks.js';
import type { JobOwner, JobProgress, JobQueue, JobRunner, JobSpec, JobStatus, JobView } from './types.js';

export interface BullMQJobQueueOptions {
  /** The app's shared connection (fails fast while Redis is away): submissions, reads, cancels. */
  redis: Redis;
  /** A connection of purpose 'blocking' for the writes of this replica's runs (they wait through
   *  a Redis blip instead of failing the job). Closed by close(). */
  workerRedis: Redis;
  /** REDIS_URL: the worker's own connections are made by BullMQ from it (see the constructor). */
  redisUrl: string;
  /** WASMBOX_REDIS_PREFIX. */
  prefix: string;
  runner: JobRunner;
  callbacks: CallbackSender | null;
  ttlS: number;
  maxJobs: number;
  maxPerKey: number;
  concurrency: number;
  /** BullMQ lockDuration and stalledInterval (WASMBOX_JOBS_LOCK_MS). */
  lockMs: number;
  onSubmitted?: (jobId: string, owner: JobOwner) => void;
  onFinished?: (view: JobView) => void;
  onInternalError?: (jobId: string, err: unknown) => void;
  /** Errors of the worker or queue themselves (Redis connection trouble, mostly). */
  onQueueError?: (err: Error) => void;
}

/** A job as BullMQ keeps it: the validated request, without module bytes. */
interface JobData {
  owner: JobOwner;
  callbackUrl: string | null;
  /** Run fields; WASI stdin decoded at submission is back in wasi.stdinBase64. */
  fields: RunFields;
  /** A stored module (POST /modules) the job runs by id. */
  moduleId?: string;
  /** The content address of the inline module kept under job-module:<hex>. */
  inlineModule?: string;
  createdAtMs: number;
}

/** A finished job, as <prefix>job:<id>:result keeps it. */
interface FinishedRecord {
  keyId: string | null;
  callbackUrl: string | null;
  createdAtMs: number;
  startedAtMs?: number;
  finishedAtMs: number;
  expiresAtMs: number;
  cancelled: boolean;
  progress?: JobProgress;
  result?: ExecuteAnswer;
  error?: { code: string; message: string };
}

type Outcome = { result: ExecuteAnswer } | { cancelled: true; progress?: JobProgress } | { error: { code: string; message: string } };

/** How often a running job publishes its fuel and checks for a cancellation. */
export const PROGRESS_MS = 250;
/** How often a job may be recovered from a dead replica before it ends with an error. */
export const MAX_STALLED = 2;
/** How long an inline module is kept after the last submission that carried it. */
const JOB_MODULE_KEEP_MS = 24 * 3600 * 1000;
/** How long DELETE waits for a running job to stop before answering. */
const CANCEL_WAIT_MS = 5_000;
/** Pause before a job refused for load is tried again: doubles from this, up to the maximum. */
const LOAD_RETRY_MS = 250;
const LOAD_RETRY_MAX_MS = 5_000;
const COUNTS_REFRESH_MS = 5_000;
/** How soon a worker whose fetch failed (Redis away) tries again. */
const WORKER_RETRY_MS = 1_000;
/** At shutdown, how long BullMQ may take to record the jobs whose runs have ended before the
 *  worker is closed by force (Redis away: the jobs stay active, their locks lapse, and another
 *  replica runs them again once Redis is back). */
const CLOSE_RECORD_MS = 5_000;
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const QUEUE_NAME = 'jobs';
const WHAT = 'the job queue';

/** KEYS: result, active, callback. ARGV: record JSON, ttl ms, key id or '', the callback's
 *  initial state or ''. Sets the result unless one is set; the first result also frees its key's
 *  slot and sets the callback state (so a done job with a callbackUrl always shows it).
 *  Returns {1, record} written, {0, the record already there}. */
const FINISH = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[2]) end
  if ARGV[3] ~= '' then
    local left = redis.call('HINCRBY', KEYS[2], ARGV[3], -1)
    if left <= 0 then redis.call('HDEL', KEYS[2], ARGV[3]) end
  end
  return {1, ARGV[1]}
end
return {0, redis.call('GET', KEYS[1])}
`;

/** KEYS: active. ARGV: key id, max. Takes a slot: 1, or -(jobs held) when the key is at max. */
const TAKE_SLOT = `
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if held >= tonumber(ARGV[2]) then return -held end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
`;

/** KEYS: active. ARGV: key id. Gives a slot back (a submission that failed after taking it). */
const GIVE_SLOT = `
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return left
`;

interface JobCommands {
  wasmboxJobFinish(result: string, active: string, callback: string, record: string, ttlMs: number, keyId: string, callbackState: string): Promise<[number, string | null]>;
  wasmboxJobTakeSlot(active: string, keyId: string, max: number): Promise<number>;
  wasmboxJobGiveSlot(active: string, keyId: string): Promise<number>;
}

function defineCommands(redis: Redis): Redis & JobCommands {
  const r = redis as Redis & Partial<JobCommands>;
  if (!r.wasmboxJobFinish) r.defineCommand('wasmboxJobFinish', { numberOfKeys: 3, lua: FINISH });
  if (!r.wasmboxJobTakeSlot) r.defineCommand('wasmboxJobTakeSlot', { numberOfKeys: 1, lua: TAKE_SLOT });
  if (!r.wasmboxJobGiveSlot) r.defineCommand('wasmboxJobGiveSlot', { numberOfKeys: 1, lua: GIVE_SLOT });
  return r as Redis & JobCommands;
}

const QUEUED_STATES = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children']);

export class BullMQJobQueue implements JobQueue {
  private readonly redis: Redis & JobCommands;
  private readonly workerRedis: Redis & JobCommands;
  private readonly queue: Queue<JobData>;
  private readonly worker: Worker<JobData>;
  private readonly p: string;
  private readonly ttlMs: number;
  private accepting = true;
  private closing: Promise<void> | null = null;
  private cachedCounts: Record<JobStatus, number> = { queued: 0, running: 0, done: 0 };
  private readonly countsTimer: NodeJS.Timeout;
  /** Callback deliveries whose last state write is still on its way. */
  private readonly pendingWrites = new Set<Promise<unknown>>();
  /** Runs of this replica in flight (the guest running, not yet recorded). */
  private runsInFlight = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: BullMQJobQueueOptions) {
    this.redis = defineCommands(options.redis);
    this.workerRedis = defineCommands(options.workerRedis);
    this.p = options.prefix;
    this.ttlMs = options.ttlS * 1000;
    const bullPrefix = `${options.prefix}bull`;
    // Connection trouble is reported once per outage by the connections themselves.
    const onError = (err: Error): void => {
      if (!isRedisUnavailable(err)) options.onQueueError?.(err);
    };
    this.queue = new Queue<JobData>(QUEUE_NAME, { connection: options.redis, prefix: bullPrefix });
    this.queue.on('error', onError);
    this.worker = new Worker<JobData>(QUEUE_NAME, (job, token) => this.process(job, token), {
      // Options, not a client: BullMQ makes its connections (the worker's and the blocking one it
      // duplicates from it) connecting at once. Given a lazy client while Redis is away, its
      // first connect() fails and the worker never fetches a job, even once Redis is back.
      connection: { url: options.redisUrl, ...redisOptions('blocking'), lazyConnect: false, connectionName: 'wasmbox-jobs-worker' } as ConnectionOptions,
      prefix: bullPrefix,
      concurrency: options.concurrency,
      lockDuration: options.lockMs,
      stalledInterval: options.lockMs,
      maxStalledCount: MAX_STALLED,
      // After a Redis error in its fetch loop (Redis away, or not there yet at start-up), BullMQ
      // waits this long before trying again (15 s by default): resume soon after Redis is back.
      runRetryDelay: WORKER_RETRY_MS,
      // Finished jobs' records are ours (the result key); BullMQ's are dropped with the same age.
      removeOnComplete: { age: options.ttlS },
      removeOnFail: { age: options.ttlS },
    });
    this.worker.on('error', onError);
    // A job that failed in BullMQ's hands (its processor threw, or it stalled more than
    // MAX_STALLED times: BullMQ's stalled check fails it without a 'failed' event) still gets its
    // one result, so that it reads done with an error and its key's slot is given back. get()
    // does the same for one it finds failed without a result.
    this.worker.on('failed', (job, err) => {
      if (!job || err instanceof DelayedError) return;
      options.onInternalError?.(job.id!, err);
      void this.recordFailed(this.workerRedis, job).catch(() => {});
    });
    this.worker.on('stalled', (jobId) => {
      void this.queue
        .getJob(jobId)
        .then(async (job) => {
          if (job && (await job.getState()) === 'failed') await this.recordFailed(this.workerRedis, job);
        })
        .catch(() => {});
    });
    this.countsTimer = setInterval(() => void this.refreshCounts(), COUNTS_REFRESH_MS);
    this.countsTimer.unref();
  }

  async submit(spec: JobSpec): Promise<{ jobId: string }> {
    if (!this.accepting) throw new ServiceError('overloaded', 'the server is shutting down and takes no new jobs; retry on another instance', { 'retry-after': '5' });
    this.needRedis();
    const counts = await this.redisOp(() => this.queue.getJobCounts('waiting', 'delayed', 'prioritized', 'waiting-children', 'active', 'completed', 'failed'));
    const held = Object.values(counts).reduce((a, b) => a + b, 0);
    if (held >= this.options.maxJobs) {
      throw new ServiceError(
        'overloaded',
        `the fleet holds ${held} jobs (queued, running, or finished within WASMBOX_JOB_TTL_S), its maximum (WASMBOX_JOBS_MAX); retry later`,
        { 'retry-after': '5' },
      );
    }
    const keyId = spec.owner.keyId;
    if (keyId !== null) {
      const took = await this.redisOp(() => this.redis.wasmboxJobTakeSlot(this.activeKey(), keyId, this.options.maxPerKey));
      if (took !== 1) {
        throw new ServiceError(
          'rate_limited',
          `this API key already has ${-took} jobs queued or running, the most this fleet allows (WASMBOX_JOBS_MAX_PER_KEY=${this.options.maxPerKey}); wait for some to finish`,
          { 'retry-after': '5' },
        );
      }
    }
    const id = randomUUID();
    try {
      const data = await this.jobData(spec);
      await this.redisOp(() => this.queue.add('run', data, { jobId: id, attempts: 1 }));
    } catch (err) {
      if (keyId !== null) await this.redis.wasmboxJobGiveSlot(this.activeKey(), keyId).catch(() => {});
      throw err;
    }
    this.options.onSubmitted?.(id, spec.owner);
    return { jobId: id };
  }

  async get(jobId: string, owner: JobOwner): Promise<JobView | null> {
    if (!JOB_ID.test(jobId)) return null;
    this.needRedis();
    const [resultJson, callbackJson] = await this.redisOp(() => this.redis.mget(this.key(jobId, 'result'), this.key(jobId, 'callback')));
    if (resultJson) return this.finishedView(jobId, resultJson, callbackJson, owner);
    const job = await this.redisOp(() => this.queue.getJob(jobId));
    if (!job || job.data.owner.keyId !== owner.keyId) return null;
    const state = await this.redisOp(() => job.getState());
    if (QUEUED_STATES.has(state)) return { jobId, status: 'queued', createdAt: iso(job.data.createdAtMs) };
    if (state === 'active') {
      const v: JobView = { jobId, status: 'running', createdAt: iso(job.data.createdAtMs) };
      if (job.processedOn) v.startedAt = iso(job.processedOn);
      v.progress = asProgress(job.progress);
      return v;
    }
    if (state === 'failed' && Date.now() < (job.finishedOn ?? 0) + this.ttlMs) {
      await this.redisOp(() => this.recordFailed(this.redis, job));
    }
    // Completed or failed: its result was written before BullMQ recorded the end (or it expired).
    const [again, callbackAgain] = await this.redisOp(() => this.redis.mget(this.key(jobId, 'result'), this.key(jobId, 'callback')));
    return again ? this.finishedView(jobId, again, callbackAgain, owner) : null;
  }

  async cancel(jobId: string, owner: JobOwner): Promise<JobView | null> {
    let view = await this.get(jobId, owner);
    if (!view || view.status === 'done') return view;
    await this.redisOp(() => this.redis.set(this.key(jobId, 'cancel'), '1', 'PX', this.ttlMs + CANCEL_WAIT_MS));
    const deadline = Date.now() + CANCEL_WAIT_MS;
    for (;;) {
      if (view.status === 'queued') {
        // Queued (or put back after a refusal for load): the cancelled result first (a result
        // already written stands), then out of the queue. A worker that took the job meanwhile
        // finds the result, or the cancel key, and stops.
        const job = await this.redisOp(() => this.queue.getJob(jobId));
        if (job) {
          await this.redisOp(() => this.finish(this.redis, jobId, job.data, job.processedOn ?? undefined, { cancelled: true }));
          await job.remove().catch(() => {});
        }
      }
      // Running: its replica sees the cancel key within PROGRESS_MS and records the stopped run.
      view = await this.get(jobId, owner);
      if (!view || view.status === 'done' || Date.now() >= deadline) return view;
      await sleep(50);
    }
  }

  counts(): Record<JobStatus, number> {
    return { ...this.cachedCounts };
  }

  stopAccepting(): void {
    this.accepting = false;
    // Stop taking jobs from the queue now; the ones held run to their end (close() waits).
    this.closing ??= this.worker.close();
  }

  async close(): Promise<void> {
    this.accepting = false;
    clearInterval(this.countsTimer);
    this.closing ??= this.worker.close();
    const closed = this.closing.then(
      () => true,
      (err: unknown) => {
        this.options.onQueueError?.(err as Error);
        return true;
      },
    );
    // The runs held finish (each bounded by its deadline); then BullMQ records them, which needs
    // Redis: past CLOSE_RECORD_MS without it, the worker is closed by force.
    const runsEnded = (async () => {
      if (this.runsInFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      await sleep(CLOSE_RECORD_MS);
      return false;
    })();
    if (!(await Promise.race([closed, runsEnded]))) {
      this.workerRedis.disconnect();
      await Promise.race([this.worker.close(true).catch(() => {}), sleep(CLOSE_RECORD_MS)]);
    }
    await this.options.callbacks?.close();
    await Promise.race([Promise.all([...this.pendingWrites]), sleep(CLOSE_RECORD_MS)]);
    await Promise.race([this.queue.close().catch(() => {}), sleep(CLOSE_RECORD_MS)]);
    await closeRedis(this.workerRedis);
  }

  // ---- the worker side ----

  private async process(job: Job<JobData>, token: string | undefined): Promise<{ finished: true }> {
    const id = job.id!;
    const data = job.data;
    const r = this.workerRedis;
    const [already, cancelled] = await r.mget(this.key(id, 'result'), this.key(id, 'cancel'));
    if (already) return { finished: true };
    if (cancelled) {
      await this.finish(r, id, data, job.processedOn ?? undefined, { cancelled: true });
      return { finished: true };
    }
    const body = await this.loadBody(data);
    if ('error' in body) {
      await this.finish(r, id, data, job.processedOn ?? undefined, body);
      return { finished: true };
    }
    const abort = new AbortController();
    const cell = progressBuffer();
    let cancelRequested = false;
    let ticking = false;
    const ticker = setInterval(() => {
      if (ticking) return;
      ticking = true;
      Promise.all([job.updateProgress(readProgress(cell)), r.exists(this.key(id, 'cancel'))])
        .then(([, cancel]) => {
          if (cancel === 1 && !cancelRequested) {
            cancelRequested = true;
            abort.abort(new Error('the job was cancelled'));
          }
        })
        .catch(() => {})
        .finally(() => (ticking = false));
    }, PROGRESS_MS);
    let outcome: Outcome;
    this.runsInFlight++;
    try {
      const spec: JobSpec = { body, owner: data.owner, callbackUrl: data.callbackUrl };
      outcome = { result: await this.options.runner(spec, { cancel: abort.signal, progress: cell }) };
    } catch (err) {
      if (cancelRequested) {
        const progress = err instanceof RunCancelledError ? { fuelConsumed: err.fuelConsumed, memoryBytes: err.memoryPeakBytes } : readProgress(cell);
        outcome = { cancelled: true, progress };
      } else if (err instanceof ServiceError && (err.code === 'overloaded' || err.code === 'rate_limited')) {
        // Refused for load before it ran: back to the queue after a pause, for any replica.
        const n = Math.max(0, (job.attemptsStarted ?? 1) - 1);
        await job.moveToDelayed(Date.now() + Math.min(LOAD_RETRY_MAX_MS, LOAD_RETRY_MS * 2 ** n), token);
        throw new DelayedError();
      } else if (err instanceof ServiceError) {
        outcome = { error: { code: err.code, message: err.message } };
      } else {
        this.options.onInternalError?.(id, err);
        outcome = { error: { code: 'internal_error', message: 'internal error; the job id identifies it in the server log' } };
      }
    } finally {
      clearInterval(ticker);
      if (--this.runsInFlight === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
    await this.finish(r, id, data, job.processedOn ?? undefined, outcome);
    return { finished: true };
  }

  /** The job's request as the runner takes it; an error when its inline module is gone. */
  private async loadBody(data: JobData): Promise<RunBody | { error: { code: string; message: string } }> {
    if (data.moduleId !== undefined) return { moduleId: data.moduleId, fields: data.fields };
    const hex = MODULE_ID_PATTERN.exec(data.inlineModule ?? '')?.[1];
    const bytes = hex ? await this.workerRedis.getBuffer(`${this.p}job-module:${hex}`) : null;
    if (!bytes) {
      return { error: { code: 'module_not_found', message: `the job's module was kept ${JOB_MODULE_KEEP_MS / 3_600_000} h after its submission and expired before the job ran; submit it again` } };
    }
    const module = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (moduleIdOf(module) !== data.inlineModule) {
      return { error: { code: 'internal_error', message: "the job's module was damaged in Redis (its bytes do not match their hash); submit the job again" } };
    }
    return { module, moduleHash: data.inlineModule!, fields: data.fields };
  }

  /** Writes the job's result unless one is written; the replica that wrote it sends the callback. */
  private async finish(r: Redis & JobCommands, id: string, data: JobData, startedAtMs: number | undefined, outcome: Outcome): Promise<void> {
    const now = Date.now();
    const record: FinishedRecord = {
      keyId: data.owner.keyId,
      callbackUrl: data.callbackUrl,
      createdAtMs: data.createdAtMs,
      ...(startedAtMs !== undefined && { startedAtMs }),
      finishedAtMs: now,
      expiresAtMs: now + this.ttlMs,
      cancelled: 'cancelled' in outcome,
      ...('cancelled' in outcome && outcome.progress && { progress: outcome.progress }),
      ...('result' in outcome && { result: outcome.result }),
      ...('error' in outcome && { error: outcome.error }),
    };
    const callbacks = this.options.callbacks;
    const withCallback = record.callbackUrl !== null && callbacks !== null;
    const state: CallbackState = { attempts: 0, lastStatus: null, delivered: false };
    const stateKey = this.key(id, 'callback');
    const [won] = await r.wasmboxJobFinish(
      this.key(id, 'result'),
      this.activeKey(),
      stateKey,
      JSON.stringify(record),
      this.ttlMs,
      data.owner.keyId ?? '',
      withCallback ? JSON.stringify(state) : '',
    );
    if (won !== 1) return;
    const view = viewOf(id, record);
    if (withCallback) {
      const save = (s: Readonly<CallbackState>): void => {
        const left = Math.max(1, record.expiresAtMs - Date.now());
        const write = this.workerRedis.set(stateKey, JSON.stringify(s), 'PX', left).catch(() => {});
        this.pendingWrites.add(write);
        void write.finally(() => this.pendingWrites.delete(write));
      };
      callbacks!.deliver(id, record.callbackUrl!, Buffer.from(JSON.stringify(view)), state, save);
    }
    this.options.onFinished?.(view);
  }

  /** Gives a job BullMQ failed its one result (an error), unless it has one. */
  private async recordFailed(r: Redis & JobCommands, job: Job<JobData>): Promise<void> {
    const stalled = /stalled/i.test(job.failedReason ?? '');
    await this.finish(r, job.id!, job.data, job.processedOn ?? undefined, {
      error: stalled
        ? { code: 'internal_error', message: `the job was lost: the replicas running it stopped ${MAX_STALLED + 1} times before it finished; submit it again` }
        : { code: 'internal_error', message: 'internal error; the job id identifies it in the server log' },
    });
  }

  // ---- helpers ----

  private async jobData(spec: JobSpec): Promise<JobData> {
    const { body } = spec;
    let fields = body.fields;
    if (body.stdin !== undefined && fields.wasi) {
      const { stdin: _text, ...wasi } = fields.wasi;
      fields = { ...fields, wasi: { ...wasi, stdinBase64: Buffer.from(body.stdin.buffer, body.stdin.byteOffset, body.stdin.byteLength).toString('base64') } };
    }
    const data: JobData = { owner: spec.owner, callbackUrl: spec.callbackUrl, fields, createdAtMs: Date.now() };
    if (body.moduleId !== undefined) {
      data.moduleId = body.moduleId;
    } else if (body.module !== undefined) {
      const moduleId = body.moduleHash ?? (await moduleIdOfAsync(body.module));
      const hex = MODULE_ID_PATTERN.exec(moduleId)![1]!;
      const bytes = Buffer.from(body.module.buffer, body.module.byteOffset, body.module.byteLength);
      // One copy per distinct module; each submission pushes its expiry on.
      await this.redisOp(() => this.redis.set(`${this.p}job-module:${hex}`, bytes, 'PX', JOB_MODULE_KEEP_MS));
      data.inlineModule = moduleId;
    }
    return data;
  }

  private finishedView(jobId: string, json: string, callbackJson: string | null | undefined, owner: JobOwner): JobView | null {
    const record = JSON.parse(json) as FinishedRecord;
    if (record.keyId !== owner.keyId) return null;
    if (Date.now() >= record.expiresAtMs) return null;
    const view = viewOf(jobId, record);
    if (callbackJson) view.callback = JSON.parse(callbackJson) as CallbackState;
    return view;
  }

  /** Refuses at once while the shared connection is down, instead of waiting on BullMQ's own
   *  wait for a ready connection. */
  private needRedis(): void {
    if (this.redis.status !== 'ready') throw unavailable(WHAT);
  }

  /** A Redis operation: an outage, or no answer within the command timeout, is 503 backend_unavailable. */
  private async redisOp<T>(op: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('Command timed out')), 2 * REDIS_COMMAND_TIMEOUT_MS);
    });
    try {
      return await withRedis(WHAT, () => Promise.race([op(), timeout]));
    } finally {
      clearTimeout(timer);
    }
  }

  private async refreshCounts(): Promise<void> {
    if (this.redis.status !== 'ready') return;
    try {
      const c = await this.queue.getJobCounts('waiting', 'delayed', 'prioritized', 'waiting-children', 'active', 'completed', 'failed');
      this.cachedCounts = {
        queued: (c.waiting ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0) + (c['waiting-children'] ?? 0),
        running: c.active ?? 0,
        done: (c.completed ?? 0) + (c.failed ?? 0),
      };
    } catch {
      // Redis away: keep the last counts; readiness reports the outage.
    }
  }

  private key(jobId: string, what: 'result' | 'cancel' | 'callback'): string {
    return `${this.p}job:${jobId}:${what}`;
  }

  private activeKey(): string {
    return `${this.p}jobs:active`;
  }
}

function viewOf(jobId: string, record: FinishedRecord): JobView {
  const v: JobView = { jobId, status: 'done', createdAt: iso(record.createdAtMs) };
  if (record.startedAtMs !== undefined) v.startedAt = iso(record.startedAtMs);
  v.finishedAt = iso(record.finishedAtMs);
  v.expiresAt = iso(record.expiresAtMs);
  v.cancelled = record.cancelled;
  if (record.progress) v.progress = record.progress;
  if (record.result) v.result = record.result;
  if (record.error) v.error = record.error;
  return v;
}

function asProgress(value: unknown): JobProgress {
  const p = (typeof value === 'object' && value !== null ? value : {}) as Partial<JobProgress>;
  return { fuelConsumed: Number(p.fuelConsumed ?? 0), memoryBytes: Number(p.memoryBytes ?? 0) };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function readProgress(cell: SharedArrayBuffer): JobProgress {
  const a = new BigInt64Array(cell);
  return { fuelConsumed: Number(Atomics.load(a, PROGRESS_FUEL)), memoryBytes: Number(Atomics.load(a, PROGRESS_MEMORY)) };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
