// Runner threads keep the compiled modules they have been sent (src/worker/runner.ts), so after a
// module's first dispatches a task carries its key, not the module (src/worker/pool.ts moduleRef).
// A thread that does not hold it (one started since, replacing a terminated thread) answers that
// it is missing, and the task is sent again with the module: callers never see the difference.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const ADD = wat('(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))');
const WAIT = wat(`(module
  (memory 1 1 shared)
  (func (export "wait_forever") (result i32)
    (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))`);

let s: TestServer;
beforeAll(async () => {
  s = await startServer({ WASMBOX_WORKERS: '2', WASMBOX_DEADLINE_GRACE_MS: '100' });
});
afterAll(async () => {
  await s?.close();
});

describe('tasks name their module by key once the runner threads hold it', () => {
  it('runs a stored module many times by id, and again on a thread that replaced a terminated one', async () => {
    const up = await s.post('/modules', { module: b64(ADD) });
    expect(up.status).toBe(201);
    const id = up.body.moduleId as string;
    // Enough runs for the module to go out by key only (after 2 x workers dispatches with it).
    for (let i = 0; i < 12; i++) {
      const r = await s.execute({ moduleId: id, function: 'add', args: [i, 1] });
      expect(r.body.results).toEqual([i + 1]);
    }
    const resendsBefore = s.moduleResends();

    // Both threads terminated at their deadline (a guest blocked in an atomic wait) and replaced.
    const before = s.runnerThreadIds();
    const killed = await Promise.all([0, 1].map(() => s.execute({ module: b64(WAIT), function: 'wait_forever', limits: { timeoutMs: 100 } })));
    for (const k of killed) expect(k.body.telemetry.threadKilled).toBe(true);
    const after = s.runnerThreadIds();
    expect(after.filter((t) => before.includes(t))).toEqual([]);

    // The new threads have never been sent the module: a run that lands on one is sent again, with
    // it (concurrent runs may each meet a thread without it, but none is sent twice).
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => s.execute({ moduleId: id, function: 'add', args: [i, 100] })));
    expect(results.map((r) => r.body.results?.[0])).toEqual(Array.from({ length: 8 }, (_, i) => i + 100));
    expect(s.moduleResends()).toBeGreaterThan(resendsBefore);
    expect(s.moduleResends() - resendsBefore).toBeLessThanOrEqual(8);
  });

  it('runs batches by key too', async () => {
    const up = await s.post('/modules', { module: b64(ADD) });
    const id = up.body.moduleId as string;
    for (let i = 0; i < 6; i++) {
      const r = await s.execute({ moduleId: id, calls: [{ function: 'add', args: [i, 2] }, { function: 'add', args: [i, 3] }] });
      expect(r.status).toBe(200);
      expect(r.body.calls.map((c: { results: number[] }) => c.results[0])).toEqual([i + 2, i + 3]);
    }
  });
});
