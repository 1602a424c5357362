// Asynchronous jobs (POST /jobs, GET and DELETE /jobs/{jobId}): the queue as the routes see it.
// A backend keeps the jobs and runs them through a JobRunner; the in-process one
// (memory-queue.ts) is the default. The shared backend (bullmq-queue.ts: BullMQ on Redis, when
// REDIS_URL is set) implements the same interface: it stores the JobSpec (the validated body:
// fields, owner, callbackUrl, and the module by its content address), runs it with the same
// JobRunner in each replica's worker, and answers get/cancel from Redis.

import type { RunBody } from '../routes/body.js';
import type { ExecuteAnswer } from '../service/execute.js';
import type { CallbackState } from './callbacks.js';

export type JobStatus = 'queued' | 'running' | 'done';

/** Who submitted a job. With API keys, a job is visible only to its key; without them, the
 *  job's unguessable id is what gives access to it. */
export interface JobOwner {
  /** Fairness key (the key's id, or the client address). */
  caller: string;
  keyId: string | null;
}

/** A validated job, as it is queued. */
export interface JobSpec {
  body: RunBody;
  owner: JobOwner;
  /** Normalised and checked against the allowlist at submission (callbacks.ts). */
  callbackUrl: string | null;
}

/** The fuel account of a run in flight (or as of its cancellation). */
export interface JobProgress {
  fuelConsumed: number;
  memoryBytes: number;
}

/** What GET /jobs/{jobId} answers. */
export interface JobView {
  jobId: string;
  status: JobStatus;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  /** When a finished job is forgotten (finishedAt + WASMBOX_JOB_TTL_S). */
  expiresAt?: string;
  /** While running: the account so far. A cancelled run: its account when it was stopped. */
  progress?: JobProgress;
  /** Done: whether it was cancelled (DELETE /jobs/{jobId}) before it finished on its own. */
  cancelled?: boolean;
  /** Done and ran: the body POST /execute would have answered. */
  result?: ExecuteAnswer;
  /** Done and refused when it came to run (its stored module was deleted meanwhile, the
   *  server shut down): the error POST /execute would have answered. */
  error?: { code: string; message: string };
  callback?: CallbackState;
}

/** Runs one job: what POST /execute does with the same body. `cancel` stops it, `progress`
 *  receives its account as it runs. */
export type JobRunner = (spec: JobSpec, run: { cancel: AbortSignal; progress: SharedArrayBuffer }) => Promise<ExecuteAnswer>;

export interface JobQueue {
  /** Queues a validated job; refuses (overloaded, rate_limited) when the queue is at its bounds
   *  or no longer accepting. */
  submit(spec: JobSpec): Promise<{ jobId: string }>;
  /** The job, if it exists, has not expired and `owner` may see it. */
  get(jobId: string, owner: JobOwner): Promise<JobView | null>;
  /** Cancels a queued or running job (a finished one is left as it is) and answers it; null as
   *  for get. */
  cancel(jobId: string, owner: JobOwner): Promise<JobView | null>;
  /** Jobs by status, for metrics. */
  counts(): Record<JobStatus, number>;
  /** Stops taking jobs: submit refuses with overloaded from now on (shutdown). */
  stopAccepting(): void;
  /** Stops taking and starting jobs, waits for the running ones to finish, stops callbacks. */
  close(): Promise<void>;
}
