// A run pool thread's main loop (src/worker/run-pool.ts is the other side). The thread takes its
// tasks from a port of its own, in order, and blocks in Atomics.wait between them, so a task
// posted while the thread is busy (the pool hands each thread its next task before the current
// one ends) starts the moment the current one ends, without a trip through either event loop.
//
// A task starts only if the thread can swap the task's state from this message's dispatch number
// to STARTED (run-cell.ts): the main thread may have withdrawn it meanwhile, or moved it to a
// thread that became free first, and then the thread answers `skipped` and goes on.

import { type MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { BatchTask, RunTask } from './protocol.js';
import { doneCell, STARTED, swapCell } from './run-cell.js';
import run, { runBatch } from './runner.js';

/** A run pool thread's workerData. */
export interface RunnerData {
  /** Where the thread's tasks arrive. */
  port: MessagePort;
  /** Int32Array[1]: bumped by the main thread after each message it posts (Atomics.notify). */
  wake: SharedArrayBuffer;
}

export type ToRunner = { id: number; kind: 'run'; task: RunTask } | { id: number; kind: 'batch'; task: BatchTask };

export type FromRunner = { ready: true } | { id: number; result: unknown } | { id: number; error: unknown } | { id: number; skipped: true };

const { port, wake: wakeBuffer } = workerData as RunnerData;
const wake = new Int32Array(wakeBuffer);

function handle(message: ToRunner): void {
  const { id, task } = message;
  if (!swapCell(task.startedAt, id, STARTED)) {
    if (message.kind === 'batch') message.task.journal.close();
    port.postMessage({ id, skipped: true } satisfies FromRunner);
    return;
  }
  let answer: FromRunner;
  try {
    answer = { id, result: message.kind === 'run' ? run(message.task) : runBatch(message.task) };
  } catch (err) {
    answer = { id, error: err instanceof Error ? err : new Error(String(err)) };
  }
  doneCell(task.startedAt);
  try {
    port.postMessage(answer);
  } catch (err) {
    // An answer that cannot be posted (it should not happen: answers are plain data) must not end
    // the thread, or the task would be run again, and fail again, forever.
    port.postMessage({ id, error: new Error(`the runner could not post its answer: ${String(err)}`) } satisfies FromRunner);
  }
}

port.postMessage({ ready: true } satisfies FromRunner);
for (;;) {
  // Read the counter before looking at the port: a message posted after the look bumps it, and
  // the wait returns at once.
  const seen = Atomics.load(wake, 0);
  let entry: { message: unknown } | undefined;
  while ((entry = receiveMessageOnPort(port)) !== undefined) handle(entry.message as ToRunner);
  Atomics.wait(wake, 0, seen);
}
