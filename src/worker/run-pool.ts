// The threads that run guests, as the main thread sees them (the threads' side is
// run-loop.ts; runner-loop.ts is their entry). Built for what runs need and piscina could not give:
//
// - Each thread is handed its next task while it still runs the current one (`prefetch`), so a
//   thread goes from one guest to the next without waiting for a round trip through the main
//   thread's event loop. On a trivial run that round trip is most of the cost.
// - A task handed ahead stays withdrawable until its thread starts it (run-cell.ts): when
//   another thread becomes free first, the task moves there; when its queue time runs out or its
//   caller cancels, it is withdrawn. A short run never waits behind a long one while a thread is
//   free, and withdrawing never costs a thread.
// - Only the thread of the task that must be stopped is terminated (a guest past its deadline
//   and grace, a cancel): the tasks handed to it ahead that had not started run again on another
//   thread, from the start. (piscina terminates a thread to abort any task it has been handed,
//   started or not, and fails every other task it holds.)
//
// Batches are handed only to a free thread and never moved: the port of their journal goes to
// the thread with them.

import { EventEmitter } from 'node:events';
import { MessageChannel, type MessagePort, receiveMessageOnPort, type ResourceLimits, Worker } from 'node:worker_threads';
import type { BatchTask, RunTask } from './protocol.js';
import { cellState, queueCell, STARTED, startedUs, swapCell, WITHDRAWN } from './run-cell.js';
import type { FromRunner, RunnerData, ToRunner } from './run-loop.js';

export interface RunPoolOptions {
  /** The thread's entry (runner-loop.js). */
  filename: URL;
  threads: number;
  /** Tasks a thread is handed ahead of the one it runs: 0 or 1. */
  prefetch: number;
  /** Tasks that may wait for a thread. */
  maxQueue: number;
  resourceLimits: ResourceLimits;
}

/** How a task settled that was withdrawn or whose thread was terminated for it. */
export class RunAbortError extends Error {
  override readonly name = 'AbortError';
}

/** A task in the pool, as its caller holds it. */
export interface RunHandle<R> {
  readonly promise: Promise<R>;
  /** It did not go straight to a free thread: it waits in the queue, or behind another task. */
  readonly waiting: boolean;
  /** Takes the task back if no thread has started it (true; `promise` rejects with
   *  RunAbortError); false when it has started. */
  withdraw(): boolean;
  /** Withdraws the task, or, once started, terminates its thread (`promise` rejects with
   *  RunAbortError at once). */
  abort(): void;
}

type Message = { kind: 'run'; task: RunTask } | { kind: 'batch'; task: BatchTask };

interface Job {
  readonly message: Message;
  readonly transferList: readonly MessagePort[];
  /** Clears what a start left in the task's cells, before it runs again elsewhere. */
  readonly reset: () => void;
  /** The dispatch that holds it (its state, run-cell.ts), 0 while in the pool's queue. */
  dispatch: number;
  runner: Runner | null;
  settled: boolean;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

interface Runner {
  readonly worker: Worker;
  readonly port: MessagePort;
  readonly wake: Int32Array;
  ready: boolean;
  /** Terminated by the pool for one of its tasks. */
  killed: boolean;
  error: unknown;
  /** Tasks posted to it and not yet answered, by dispatch. */
  readonly jobs: Map<number, Job>;
}

const MAX_DISPATCH = 0x7fff_ffff;

export class RunPool<R> extends EventEmitter {
  private readonly runners = new Set<Runner>();
  /** Threads terminated for one of their tasks, until they have exited: the other tasks they were
   *  handed go back to the queue then. */
  private readonly dying = new Set<Runner>();
  private readonly queue: Job[] = [];
  private lastDispatch = 0;
  private closing = false;
  /** close() is terminating the threads: none is replaced any more. */
  private stopped = false;
  private bootstrapError: unknown = null;
  private drained: (() => void) | null = null;
  /** Tasks handed ahead to a busy thread that moved to one that became free first. */
  moved = 0;
  /** Tasks handed ahead to a thread terminated for another task, sent again elsewhere. */
  resent = 0;
  /** Tasks handed ahead and withdrawn before they started (queue time, cancel). */
  withdrawn = 0;

  constructor(private readonly options: RunPoolOptions) {
    super();
    for (let i = 0; i < options.threads; i++) this.spawn();
  }

  /** The live threads. */
  get threads(): Worker[] {
    return [...this.runners].map((r) => r.worker);
  }

  /** Tasks a thread has started and not yet answered. */
  get running(): number {
    let n = 0;
    for (const r of this.runners) for (const job of r.jobs.values()) if (cellState(this.cellOf(job)) === STARTED) n++;
    return n;
  }

  /** Tasks waiting: in the queue, or handed to a thread that has not started them. */
  get waiting(): number {
    let n = this.queue.length;
    for (const r of this.runners) for (const [dispatch, job] of r.jobs) if (cellState(this.cellOf(job)) === dispatch) n++;
    return n;
  }

  run(message: Message, options: { transferList?: readonly MessagePort[]; reset: () => void }): RunHandle<R> {
    let resolve!: (value: unknown) => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<R>((res, rej) => {
      resolve = res as (value: unknown) => void;
      reject = rej;
    });
    const job: Job = { message, transferList: options.transferList ?? [], reset: options.reset, dispatch: 0, runner: null, settled: false, resolve, reject };
    let waiting = true;
    if (this.closing) {
      this.settle(job, new Error('the run pool is closed'));
    } else if (this.bootstrapError !== null) {
      this.settle(job, this.bootstrapError);
    } else {
      const runner = this.pick(job);
      if (runner) {
        waiting = runner.jobs.size > 0;
        this.post(job, runner);
      } else if (this.queue.length >= this.options.maxQueue) this.settle(job, new Error('Task queue is at limit'));
      else this.queue.push(job);
    }
    return { promise, waiting, withdraw: () => this.withdraw(job), abort: () => this.abort(job) };
  }

  /** Refuses new tasks, lets queued and running ones finish, then stops the threads. */
  async close(): Promise<void> {
    this.closing = true;
    if (!this.idle()) await new Promise<void>((resolve) => (this.drained = resolve));
    this.stopped = true;
    await Promise.all([...this.runners, ...this.dying].map((r) => r.worker.terminate()));
  }

  private idle(): boolean {
    if (this.queue.length > 0) return false;
    for (const r of this.runners) if (r.jobs.size > 0) return false;
    return this.dying.size === 0;
  }

  private spawn(): void {
    const { port1, port2 } = new MessageChannel();
    const wake = new SharedArrayBuffer(4);
    const worker = new Worker(this.options.filename, {
      workerData: { port: port2, wake } satisfies RunnerData,
      transferList: [port2],
      resourceLimits: this.options.resourceLimits,
    });
    const runner: Runner = { worker, port: port1, wake: new Int32Array(wake), ready: false, killed: false, error: null, jobs: new Map() };
    this.runners.add(runner);
    // Neither keeps the process alive while the thread holds no task (see post()).
    worker.unref();
    port1.unref();
    port1.on('message', (m: FromRunner) => this.onMessage(runner, m));
    worker.on('error', (err: unknown) => {
      runner.error ??= err;
    });
    worker.on('exit', (code: number) => this.onExit(runner, code));
  }

  private onMessage(runner: Runner, m: FromRunner): void {
    if ('ready' in m) {
      runner.ready = true;
      this.pump();
      return;
    }
    this.answer(runner, m);
    // Answers the threads have posted meanwhile are taken in this same callback, not each in an
    // event-loop turn of its own.
    for (const r of this.runners) {
      let entry: { message: unknown } | undefined;
      while ((entry = receiveMessageOnPort(r.port)) !== undefined) {
        const next = entry.message as FromRunner;
        if ('ready' in next) r.ready = true;
        else this.answer(r, next);
      }
    }
    this.pump();
  }

  private answer(runner: Runner, m: Exclude<FromRunner, { ready: true }>): void {
    const job = runner.jobs.get(m.id);
    // An answer nobody waits for: the task was moved or withdrawn (`skipped`), or settled.
    if (!job) return;
    runner.jobs.delete(m.id);
    if (runner.jobs.size === 0) runner.port.unref();
    job.runner = null;
    if ('skipped' in m) {
      // Only the pool swaps a task's state away, and it forgets the dispatch when it does; a skip
      // of a dispatch it still holds would mean the cell was reused: run it again to be safe.
      job.dispatch = 0;
      this.queue.unshift(job);
    } else if ('error' in m) {
      this.settle(job, m.error);
    } else {
      job.settled = true;
      job.resolve(m.result);
    }
  }

  private onExit(runner: Runner, code: number): void {
    this.runners.delete(runner);
    this.dying.delete(runner);
    runner.port.close();
    const err = runner.error ?? new Error(`a runner thread exited with code ${code}`);
    let blamed = false;
    const again: Job[] = [];
    for (const job of runner.jobs.values()) {
      job.runner = null;
      if (job.settled) continue;
      // The task its thread failed in (out of heap, a crash): it gets the failure. A batch
      // cannot be sent again (its journal's port went to the thread).
      if ((!runner.killed && cellState(this.cellOf(job)) === STARTED) || job.transferList.length > 0) {
        this.settle(job, err);
        blamed = true;
        continue;
      }
      // Not started there; or finished there but its answer was lost with the thread; or started
      // in the instant before its thread was terminated for another task. It runs again.
      job.reset();
      job.dispatch = 0;
      again.push(job);
      this.resent++;
    }
    runner.jobs.clear();
    this.queue.unshift(...again);
    if (!runner.ready && !runner.killed && !this.stopped) {
      // It failed before it could take a task: starting another would fail the same way.
      this.bootstrapError = err;
      for (const job of this.queue.splice(0)) this.settle(job, err);
      if (!blamed) this.emit('error', err);
      return;
    }
    if (!blamed && !runner.killed && !this.stopped && runner.error !== null) this.emit('error', err);
    // A thread the pool terminated was replaced then (abort()). While the pool closes, the tasks
    // it still has need threads too.
    if (!this.stopped && !runner.killed) {
      if (!this.closing) this.emit('workerDestroy');
      this.spawn();
    }
    this.pump();
  }

  private cellOf(job: Job): SharedArrayBuffer {
    return job.message.task.startedAt;
  }

  private nextDispatch(): number {
    this.lastDispatch = this.lastDispatch >= MAX_DISPATCH ? 1 : this.lastDispatch + 1;
    return this.lastDispatch;
  }

  /** A thread for `job` now: a free one; else, unless it is a batch, one running a single task,
   *  the one whose task started last (a task that has run long is likely to run longer). */
  private pick(job: Job): Runner | null {
    let best: Runner | null = null;
    let bestStarted = -1;
    for (const r of this.runners) {
      if (!r.ready || r.killed) continue;
      if (r.jobs.size === 0) return r;
      if (job.transferList.length > 0 || r.jobs.size > this.options.prefetch) continue;
      let started = 0;
      for (const j of r.jobs.values()) started = Math.max(started, startedUs(this.cellOf(j)));
      if (started > bestStarted) {
        best = r;
        bestStarted = started;
      }
    }
    return best;
  }

  private post(job: Job, runner: Runner, dispatch?: number): void {
    if (dispatch === undefined) {
      dispatch = this.nextDispatch();
      queueCell(this.cellOf(job), dispatch);
    }
    job.dispatch = dispatch;
    job.runner = runner;
    runner.jobs.set(dispatch, job);
    if (runner.jobs.size === 1) runner.port.ref();
    runner.port.postMessage({ id: dispatch, ...job.message } as ToRunner, job.transferList as MessagePort[]);
    Atomics.add(runner.wake, 0, 1);
    Atomics.notify(runner.wake, 0);
  }

  /** Hands out queued tasks; then moves tasks handed ahead, not started, to threads left free. */
  private pump(): void {
    while (this.queue.length > 0) {
      const runner = this.pick(this.queue[0]!);
      if (!runner) break;
      this.post(this.queue.shift()!, runner);
    }
    for (const free of this.runners) {
      if (!free.ready || free.killed || free.jobs.size > 0) continue;
      this.steal(free);
    }
    if (this.drained && this.idle()) {
      this.drained();
      this.drained = null;
    }
  }

  private steal(free: Runner): void {
    for (const r of this.runners) {
      if (r === free || r.jobs.size < 2) continue;
      for (const [from, job] of r.jobs) {
        if (job.transferList.length > 0) continue;
        const to = this.nextDispatch();
        if (!swapCell(this.cellOf(job), from, to)) continue;
        r.jobs.delete(from);
        this.moved++;
        this.post(job, free, to);
        return;
      }
    }
  }

  private withdraw(job: Job): boolean {
    if (job.settled) return true;
    const runner = job.runner;
    if (runner === null) {
      const at = this.queue.indexOf(job);
      if (at >= 0) this.queue.splice(at, 1);
    } else {
      if (!swapCell(this.cellOf(job), job.dispatch, WITHDRAWN)) return false;
      runner.jobs.delete(job.dispatch);
      if (runner.jobs.size === 0) runner.port.unref();
      job.runner = null;
      this.withdrawn++;
    }
    this.settle(job, new RunAbortError('the task was withdrawn before it started'));
    this.pump();
    return true;
  }

  private abort(job: Job): void {
    if (this.withdraw(job)) return;
    const runner = job.runner!;
    runner.jobs.delete(job.dispatch);
    job.runner = null;
    this.settle(job, new RunAbortError('the task was stopped: its thread was terminated'));
    if (!runner.killed) {
      runner.killed = true;
      void runner.worker.terminate();
      // Replaced now, not when it has exited: the tasks waiting need a thread.
      this.runners.delete(runner);
      this.dying.add(runner);
      if (!this.closing) this.emit('workerDestroy');
      if (!this.stopped) this.spawn();
    }
  }

  private settle(job: Job, err: unknown): void {
    if (job.settled) return;
    job.settled = true;
    job.reject(err);
  }
}
