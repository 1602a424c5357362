// A run pool thread's main loop (src/worker/run-pool.ts is the other side). The thread takes its
// tasks from a port of its own, in order, and blocks in Atomics.wait between them, so a task
// posted while the thread is busy (the pool hands each thread its next task before the current
// one ends) starts the moment the current one ends, without a trip through either event loop.
//
// A task starts only if the thread can swap the task's state from this message's dispatch number
// to STARTED (run-cell.ts): the main thread may have withdrawn it meanwhile, or moved it to a
// thread that became free first, and then the thread answers `skipped` and goes on.

import { type MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { doneCell, STARTED, swapCell } from './run-cell.js';

/** A run pool thread's workerData. */
export interface RunnerData {
  /** Where the thread's tasks arrive. */
  port: MessagePort;
  /** Int32Array[1]: bumped by the main thread after each message it posts (Atomics.notify). */
  wake: SharedArrayBuffer;
}

/** What a task must carry: its state cell (run-cell.ts). A batch's journal is closed when the
 *  batch is skipped. */
export interface PoolTask {
  startedAt: SharedArrayBuffer;
  journal?: MessagePort;
}

export type ToRunner<T extends PoolTask = PoolTask> = { id: number; kind: 'run' | 'batch'; task: T };

export type FromRunner = { ready: true } | { id: number; result: unknown } | { id: number; error: unknown } | { id: number; skipped: true };

/** The thread's work, by message kind; synchronous (the loop does not return to the event loop). */
export interface Handlers<T extends PoolTask> {
  run(task: T): unknown;
  batch(task: T): unknown;
}

/** Serves the pool's tasks on this thread, forever. */
export function serveRuns<T extends PoolTask>(handlers: Handlers<T>): never {
  const { port, wake: wakeBuffer } = workerData as RunnerData;
  const wake = new Int32Array(wakeBuffer);

  const handle = (message: ToRunner<T>): void => {
    const { id, task } = message;
    if (!swapCell(task.startedAt, id, STARTED)) {
      task.journal?.close();
      port.postMessage({ id, skipped: true } satisfies FromRunner);
      return;
    }
    let answer: FromRunner;
    try {
      answer = { id, result: message.kind === 'run' ? handlers.run(task) : handlers.batch(task) };
    } catch (err) {
      answer = { id, error: err instanceof Error ? err : new Error(String(err)) };
    }
    doneCell(task.startedAt);
    try {
      port.postMessage(answer);
    } catch (err) {
      // An answer that cannot be posted (it should not happen: answers are plain data) must not
      // end the thread, or the task would be run again, and fail again, forever.
      port.postMessage({ id, error: new Error(`the runner could not post its answer: ${String(err)}`) } satisfies FromRunner);
    }
  };

  port.postMessage({ ready: true } satisfies FromRunner);
  for (;;) {
    // Read the counter before looking at the port: a message posted after the look bumps it, and
    // the wait returns at once.
    const seen = Atomics.load(wake, 0);
    let entry: { message: unknown } | undefined;
    while ((entry = receiveMessageOnPort(port)) !== undefined) handle(entry.message as ToRunner<T>);
    Atomics.wait(wake, 0, seen);
  }
}
