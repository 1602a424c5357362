// The run pool's thread (src/worker/run-pool.ts): guests, one task at a time (run-loop.ts).

import type { BatchTask, RunTask } from './protocol.js';
import { serveRuns } from './run-loop.js';
import run, { runBatch } from './runner.js';

serveRuns<RunTask | BatchTask>({ run: (task) => run(task as RunTask), batch: (task) => runBatch(task as BatchTask) });
