// Admission and fair ordering in front of a fixed number of worker slots (the run pool's threads,
// or a preparation lane's). Piscina's own queue is FIFO and unbounded in time: one caller's
// backlog delays everyone, and a task learns it waited too long only when the queue timeout
// fires. Here:
// - each caller has its own FIFO and callers are served round robin, so a caller with one run is
//   not behind another caller's hundred;
// - a task is admitted only if its predicted wait fits the queue timeout: the queue drains at
//   `slots` tasks per service time, learned from recent tasks (and, while every slot is busy, at
//   least as long as the youngest running task has already run). Under ten times the sustainable
//   load the excess is refused at once with 503 and Retry-After, not after the queue timeout;
// - tasks already queued are re-checked as the prediction changes and refused as soon as they
//   cannot start in time, and a task whose caller went away leaves the queue.

import { type Cancel, cancelledBy, onCancel } from './cancel.js';
import { ServiceError } from '../errors.js';
import { performance } from 'node:perf_hooks';

const nowMs = (): number => performance.now();

export interface FairQueueOptions {
  /** Tasks that may run at once (worker threads). */
  slots: number;
  /** Tasks that may wait at once, across all callers. */
  queueMax: number;
  /** Longest a task may wait for a slot. */
  queueTimeoutMs: number;
  /** What the refusal says is full ("run queue", "preparation queue"). */
  name: string;
}

/** Held while a task runs; `release` frees the slot and teaches the queue the task's duration. */
export interface Slot {
  /** Milliseconds the task waited for its slot. */
  readonly waitedMs: number;
  release(): void;
}

interface Waiter {
  caller: string;
  enqueuedMs: number;
  resolve: (slot: Slot) => void;
  reject: (err: Error) => void;
  /** Stops listening for the task being called off. */
  stop?: () => void;
}

/** Service time assumed before any task has finished. */
const INITIAL_SERVICE_MS = 5;
/** How many recent service times the estimate averages: enough to smooth one outlier, few
 *  enough to follow a change of workload within a handful of tasks. */
const SERVICE_SAMPLES = 16;
/** How often queued tasks are re-checked against their predicted start. */
const RECHECK_MS = 50;

export class FairQueue {
  private readonly queues = new Map<string, Waiter[]>();
  /** Callers with queued tasks, in service order (round robin). */
  private readonly order: string[] = [];
  private queued = 0;
  /** Start times of running tasks. */
  private readonly running = new Set<{ startedMs: number }>();
  /** The most recent service times (a ring), and their sum. */
  private readonly samples: number[] = [];
  private nextSample = 0;
  private samplesSumMs = 0;
  private recheck: NodeJS.Timeout | null = null;

  constructor(private readonly options: FairQueueOptions) {}

  /** Tasks waiting for a slot. */
  get depth(): number {
    return this.queued;
  }

  /**
   * Resolves with a slot once the caller's turn comes; rejects with 503 overloaded when the task
   * cannot start within the queue timeout (at once when that is already predictable).
   */
  acquire(caller: string, cancel?: Cancel | (() => Cancel | undefined)): Promise<Slot> {
    const now = nowMs();
    if (this.running.size < this.options.slots && this.queued === 0) return Promise.resolve(this.grant(now, now));
    if (this.queued >= this.options.queueMax) return Promise.reject(this.refusal(`the ${this.options.name} is full`, this.predictWaitMs(this.queued)));
    const position = this.positionFor(caller);
    const predicted = this.predictWaitMs(position);
    if (predicted > this.options.queueTimeoutMs) {
      return Promise.reject(this.refusal(`a new task would wait about ${Math.ceil(predicted)} ms in the ${this.options.name}`, predicted));
    }
    // What calls the task off only matters to a task that waits: a function is asked for it only then.
    const off = typeof cancel === 'function' ? cancel() : cancel;
    const already = off ? cancelledBy(off) : null;
    if (already) return Promise.reject(already);
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = { caller, enqueuedMs: now, resolve, reject };
      if (off) {
        waiter.stop = onCancel(off, () => {
          if (this.remove(waiter)) reject(cancelledBy(off) ?? new Error('aborted'));
        });
      }
      let q = this.queues.get(caller);
      if (!q) {
        q = [];
        this.queues.set(caller, q);
        this.order.push(caller);
      }
      q.push(waiter);
      this.queued++;
      this.scheduleRecheck();
    });
  }

  private grant(enqueuedMs: number, now: number): Slot {
    const entry = { startedMs: now };
    this.running.add(entry);
    let released = false;
    return {
      waitedMs: now - enqueuedMs,
      release: () => {
        if (released) return;
        released = true;
        this.running.delete(entry);
        this.recordService(nowMs() - entry.startedMs);
        this.dispatch();
      },
    };
  }

  private recordService(ms: number): void {
    if (this.samples.length < SERVICE_SAMPLES) {
      this.samples.push(ms);
    } else {
      this.samplesSumMs -= this.samples[this.nextSample]!;
      this.samples[this.nextSample] = ms;
      this.nextSample = (this.nextSample + 1) % SERVICE_SAMPLES;
    }
    this.samplesSumMs += ms;
  }

  /** Mean of the recent service times. */
  private get serviceMs(): number {
    return this.samples.length === 0 ? INITIAL_SERVICE_MS : this.samplesSumMs / this.samples.length;
  }

  /** Hands free slots to the next callers in round-robin order. */
  private dispatch(): void {
    while (this.running.size < this.options.slots && this.queued > 0) {
      const caller = this.order.shift()!;
      const q = this.queues.get(caller)!;
      const waiter = q.shift()!;
      this.queued--;
      if (q.length > 0) this.order.push(caller);
      else this.queues.delete(caller);
      this.detach(waiter);
      waiter.resolve(this.grant(waiter.enqueuedMs, nowMs()));
    }
    if (this.queued === 0 && this.recheck) {
      clearInterval(this.recheck);
      this.recheck = null;
    }
  }

  /** How many queued tasks round robin serves before a new task of this caller. */
  private positionFor(caller: string): number {
    const mine = this.queues.get(caller)?.length ?? 0;
    let ahead = mine;
    for (const [other, q] of this.queues) if (other !== caller) ahead += Math.min(q.length, mine + 1);
    return ahead;
  }

  /** Predicted wait of a task with `ahead` tasks before it. */
  private predictWaitMs(ahead: number): number {
    let service = this.serviceMs;
    if (this.running.size >= this.options.slots) {
      // Every slot is busy: none frees before the youngest running task has run this long.
      const now = nowMs();
      let youngest = Number.POSITIVE_INFINITY;
      for (const r of this.running) youngest = Math.min(youngest, now - r.startedMs);
      if (Number.isFinite(youngest)) service = Math.max(service, youngest);
    }
    return ((ahead + 1) * service) / this.options.slots;
  }

  /** Refuses queued tasks that can no longer start within the queue timeout. */
  private shed(): void {
    const now = nowMs();
    // Walk the queue in service order, predicting each task's start.
    let ahead = 0;
    const served: Waiter[] = [];
    const cursors = this.order.map((caller) => ({ q: this.queues.get(caller)!, i: 0 }));
    for (let more = true; more; ) {
      more = false;
      for (const c of cursors) {
        const w = c.q[c.i];
        if (!w) continue;
        c.i++;
        more = true;
        served.push(w);
      }
    }
    for (const w of served) {
      const waited = now - w.enqueuedMs;
      const predicted = this.predictWaitMs(ahead);
      if (waited >= this.options.queueTimeoutMs || waited + predicted > this.options.queueTimeoutMs) {
        this.remove(w);
        w.reject(
          this.refusal(
            waited >= this.options.queueTimeoutMs
              ? `the task waited ${Math.round(waited)} ms for a worker`
              : `the task would wait about ${Math.ceil(waited + predicted)} ms in the ${this.options.name}`,
            predicted,
          ),
        );
        continue;
      }
      ahead++;
    }
    if (this.queued === 0 && this.recheck) {
      clearInterval(this.recheck);
      this.recheck = null;
    }
  }

  private scheduleRecheck(): void {
    if (this.recheck) return;
    this.recheck = setInterval(() => this.shed(), RECHECK_MS);
    this.recheck.unref();
  }

  private remove(w: Waiter): boolean {
    const q = this.queues.get(w.caller);
    const i = q ? q.indexOf(w) : -1;
    if (!q || i < 0) return false;
    q.splice(i, 1);
    this.queued--;
    if (q.length === 0) {
      this.queues.delete(w.caller);
      this.order.splice(this.order.indexOf(w.caller), 1);
    }
    this.detach(w);
    return true;
  }

  private detach(w: Waiter): void {
    w.stop?.();
    w.stop = undefined;
  }

  private refusal(why: string, predictedMs: number): ServiceError {
    const retryAfterS = Math.min(60, Math.max(1, Math.ceil(predictedMs / 1000)));
    return new ServiceError('overloaded', `the server is busy: ${why}; retry in about ${retryAfterS} s`, { 'retry-after': String(retryAfterS) });
  }
}
