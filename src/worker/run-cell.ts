// The shared cell every task carries (as `startedAt` in protocol.ts): the moment its thread
// started it, and, for the run pool (run-pool.ts), who may start it. Both sides import this.
//
// Layout (16 bytes): BigInt64 [0] the epoch in µs when the task started (0 until then);
// Int32 [2] the task's state for the run pool:
// - a positive number: queued for that dispatch (the pool's message that carries it);
// - STARTED, DONE: a thread started it, finished it;
// - WITHDRAWN: the main thread took it back before any thread started it.
// A thread starts a task only by swapping its own dispatch number for STARTED, and the main thread
// withdraws it, or moves it to another thread, by swapping that number for WITHDRAWN or for a new
// dispatch's: whichever swap comes first wins, so a task never runs twice and a withdrawn task
// never runs at all.

export const CELL_BYTES = 16;
const STATE = 2;
export const STARTED = -1;
export const DONE = -2;
export const WITHDRAWN = -3;

export function taskCell(): SharedArrayBuffer {
  return new SharedArrayBuffer(CELL_BYTES);
}

/** The task's state (see above). */
export function cellState(cell: SharedArrayBuffer): number {
  return Atomics.load(new Int32Array(cell), STATE);
}

/** Queues the task for dispatch `dispatch` (its state) and clears its start. */
export function queueCell(cell: SharedArrayBuffer, dispatch: number): void {
  Atomics.store(new BigInt64Array(cell), 0, 0n);
  Atomics.store(new Int32Array(cell), STATE, dispatch);
}

/** Swaps `from` for `to`; true when the cell held `from`. */
export function swapCell(cell: SharedArrayBuffer, from: number, to: number): boolean {
  return Atomics.compareExchange(new Int32Array(cell), STATE, from, to) === from;
}

/** Marks the task done (its thread finished it and is posting the answer). */
export function doneCell(cell: SharedArrayBuffer): void {
  Atomics.store(new Int32Array(cell), STATE, DONE);
}

/** The start stamp (epoch µs), 0 while the task has not started. */
export function startedUs(cell: SharedArrayBuffer): number {
  return Number(Atomics.load(new BigInt64Array(cell), 0));
}
