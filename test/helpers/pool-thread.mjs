// A run pool thread for test/run-pool-races.test.ts: the real loop (src/worker/run-loop.ts) with
// stand-in work. A task counts its start in `counts[index]`, then either waits on `counts[0]`
// forever (`block`: a guest that only a termination stops) or keeps the thread busy for `ms`, and
// answers its index.
import { serveRuns } from '../../dist/src/worker/run-loop.js';

function work(task) {
  const counts = new Int32Array(task.counts);
  Atomics.add(counts, task.index, 1);
  if (task.block) Atomics.wait(counts, 0, 0);
  const end = performance.now() + task.ms;
  while (performance.now() < end);
  return task.index;
}

serveRuns({ run: work, batch: work });
