// The one wall clock the threads share: microseconds since the Unix epoch, from the monotonic
// clock anchored at the process's time origin (worker threads share that origin's epoch value,
// so stamps from different threads compare).

import { performance } from 'node:perf_hooks';

export function epochUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}

/** A worker stamps the moment it starts a task into the task's shared cell (BigInt64Array[1]),
 *  so the main thread counts the deadline from then, not from queueing. */
export function markStarted(startedAt: SharedArrayBuffer): void {
  Atomics.store(new BigInt64Array(startedAt), 0, BigInt(Math.round(epochUs())));
}
