// The run pool (src/worker/run-pool.ts) against its own threads (the real loop, run-loop.ts, with
// stand-in work: test/helpers/pool-thread.mjs), where the races are: tasks handed ahead to busy
// threads, moved to threads that free up, withdrawn at random moments, and threads terminated for
// the task they run while others wait on them. Whatever the interleaving, a task either runs
// exactly once and answers its own result, or is withdrawn and never runs.

import { afterEach, describe, expect, it } from 'vitest';
import { taskCell } from '../dist/src/worker/run-cell.js';
import { RunPool } from '../dist/src/worker/run-pool.js';

const THREAD = new URL('./helpers/pool-thread.mjs', import.meta.url);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let pool: RunPool<number> | null = null;
afterEach(async () => {
  await pool?.close();
  pool = null;
});

function start(threads: number): RunPool<number> {
  pool = new RunPool<number>({ filename: THREAD, threads, prefetch: 1, maxQueue: 100_000, resourceLimits: {} });
  return pool;
}

/** A stand-in task: counts its runs in `counts[index]` and answers `index`. */
function task(counts: SharedArrayBuffer, index: number, ms: number, block = false) {
  return { kind: 'run' as const, task: { startedAt: taskCell(), counts, index, ms, block } as never };
}

async function settle(p: Promise<number>): Promise<{ value?: number; error?: Error }> {
  try {
    return { value: await p };
  } catch (error) {
    return { error: error as Error };
  }
}

describe('the run pool under races', () => {
  it('every task runs exactly once with its own answer, or is withdrawn and never runs, while tasks are handed ahead, moved and withdrawn at random', async () => {
    const p = start(2);
    const N = 400;
    const counts = new SharedArrayBuffer(4 * (N + 1));
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const handles: { settled: Promise<{ value?: number; error?: Error }>; withdrawn: Promise<boolean> }[] = [];
    for (let i = 1; i <= N; i++) {
      // Mostly short tasks, some long enough for the other thread to free up first.
      const ms = random() < 0.1 ? 5 + random() * 15 : random() * 1.5;
      const h = p.run(task(counts, i, ms), { reset: () => {} });
      const settled = settle(h.promise);
      // One in five is withdrawn after a random delay (it may have started by then).
      const withdrawn = random() < 0.2 ? sleep(random() * 20).then(() => h.withdraw()) : Promise.resolve(false);
      handles.push({ settled, withdrawn });
      // Bursts of about four, then a pause: the queue drains, so tasks handed ahead to a thread
      // busy with a long one are there to move when the other thread frees up.
      if (random() < 0.25) await sleep(random() * 25);
    }
    const views = new Int32Array(counts);
    let ran = 0;
    let withdrawnCount = 0;
    for (const [k, h] of handles.entries()) {
      const i = k + 1;
      const [{ value, error }, withdrawn] = await Promise.all([h.settled, h.withdrawn]);
      if (withdrawn && error) {
        expect(error.name).toBe('AbortError');
        expect(Atomics.load(views, i), `task ${i} was withdrawn but ran`).toBe(0);
        withdrawnCount++;
      } else {
        expect(error, `task ${i}`).toBeUndefined();
        expect(value).toBe(i);
        expect(Atomics.load(views, i), `task ${i} ran ${Atomics.load(views, i)} times`).toBe(1);
        ran++;
      }
    }
    expect(ran + withdrawnCount).toBe(N);
    expect(withdrawnCount, 'withdrawn').toBeGreaterThan(0);
    expect(p.moved, 'moved').toBeGreaterThan(0);
    expect(p.waiting).toBe(0);
  }, 60_000);

  it('a thread terminated for the task it runs: that task is stopped, and each task handed to the thread ahead runs once elsewhere with its own answer', async () => {
    const p = start(2);
    const counts = new SharedArrayBuffer(4 * 64);
    const threadsBefore = p.threads.map((t) => t.threadId);
    // Both threads are taken by tasks that never end on their own; then twenty more arrive.
    const blockers = [1, 2].map((i) => p.run(task(counts, i, 0, true), { reset: () => {} }));
    const blocked = blockers.map((b) => settle(b.promise));
    const views = new Int32Array(counts);
    // Until both have started (the threads may take a while to come up on a loaded machine).
    const until = Date.now() + 10_000;
    while ((Atomics.load(views, 1) === 0 || Atomics.load(views, 2) === 0) && Date.now() < until) await sleep(5);
    const rest = Array.from({ length: 20 }, (_, k) => p.run(task(counts, k + 3, 0.2), { reset: () => {} }));
    const answers = rest.map((h) => settle(h.promise));
    await sleep(50);
    // Two of them were handed ahead, one to each blocked thread; the others wait in the queue.
    const waiting = p.waiting;
    if (waiting !== 20) for (const b of blockers) b.abort();
    expect(waiting).toBe(20);
    for (const b of blockers) expect(b.withdraw()).toBe(false);
    for (const b of blockers) b.abort();
    for (const b of await Promise.all(blocked)) expect(b.error?.name).toBe('AbortError');
    for (const [k, a] of (await Promise.all(answers)).entries()) {
      expect(a.error).toBeUndefined();
      expect(a.value).toBe(k + 3);
      expect(Atomics.load(views, k + 3)).toBe(1);
    }
    expect(p.resent).toBe(2);
    const threadsAfter = p.threads.map((t) => t.threadId);
    expect(threadsAfter).toHaveLength(2);
    expect(threadsAfter.filter((t) => threadsBefore.includes(t))).toEqual([]);
  }, 30_000);
});
