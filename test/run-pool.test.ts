// The run pool hands each thread its next run while it runs the current one (src/worker/run-pool.ts,
// WASMBOX_RUN_PREFETCH). Through the real server on a real port: a run handed ahead to a busy
// thread never waits there while another thread is free (it moves), is never lost when its thread
// is terminated for the guest ahead of it (it runs again elsewhere, with its own answer), and is
// withdrawn without harm to the thread when its queue time runs out.

import net from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const GUESTS = b64(
  wat(`(module
    (memory 1 1 shared)
    (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
    (func (export "spin") (local $i i32) (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)))
    (func (export "wait_forever") (result i32) (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))`),
);

// The guests that must end inside their threads (threadKilled false) get a generous grace: on a
// loaded machine a runner thread (at a lower priority) can be starved past the default one.
const GRACE = '3000';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `condition` holds (a loaded machine may take long to start a guest), failing
 *  after 10 s with `what`. */
async function until(what: string, condition: () => boolean): Promise<void> {
  for (const end = Date.now() + 10_000; !condition(); await sleep(5)) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
  }
}

async function upload(s: TestServer): Promise<string> {
  // With a short queue timeout, a loaded machine's first preparation may not get a thread in time
  // (503 overloaded, Retry-After): retry, as a client would.
  let up = await s.post('/modules', { module: GUESTS });
  for (const until = Date.now() + 20_000; up.status === 503 && Date.now() < until; ) {
    await sleep(200);
    up = await s.post('/modules', { module: GUESTS });
  }
  expect([200, 201]).toContain(up.status);
  return up.body.moduleId as string;
}

/** Sends a run and notes when its answer came, in ms from `t0`. */
async function timed(s: TestServer, t0: number, body: Record<string, unknown>) {
  const res = await s.execute(body);
  return { ...res, atMs: performance.now() - t0 };
}

describe('two threads, one run handed ahead to each', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_WORKERS: '2', WASMBOX_FUEL_MAX: String(1e13), WASMBOX_TIMEOUT_MS_MAX: '20000', WASMBOX_DEADLINE_GRACE_MS: GRACE });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('a run handed to the thread of a long guest moves to the thread that becomes free first, and answers long before the long guest ends', async () => {
    const id = await upload(s);
    const before = s.runPool();
    const t0 = performance.now();
    const fuel = { fuel: 1e13 };
    // Thread one: a guest that ends at 700 ms. Thread two, started after it: one that ends at 3 s.
    const short = timed(s, t0, { moduleId: id, function: 'spin', limits: { ...fuel, timeoutMs: 700 } });
    await sleep(150);
    await until('the short guest runs', () => s.runPool().running === 1);
    const long = timed(s, t0, { moduleId: id, function: 'spin', limits: { ...fuel, timeoutMs: 3000 } });
    await sleep(150);
    await until('both guests run', () => s.runPool().running === 2);
    // Both threads are busy: the add is handed ahead to the one whose guest started last (the
    // long one), and moves when the short one ends.
    const add = await timed(s, t0, { moduleId: id, function: 'add', args: [20, 22] });
    expect(add.status).toBe(200);
    expect(add.body.outcome).toBe('ok');
    expect(add.body.results).toEqual([42]);
    expect(add.atMs).toBeLessThan(2200);
    // Its wait on the thread it was first handed to counts as queue time (from ~300 to ~700 ms).
    expect(add.body.telemetry.queueNs).toBeGreaterThan(200e6);
    expect(s.runPool().moved).toBeGreaterThan(before.moved);
    const [shortDone, longDone] = await Promise.all([short, long]);
    expect(shortDone.body.outcome).toBe('timeout');
    expect(longDone.body.outcome).toBe('timeout');
    expect(longDone.body.telemetry.threadKilled).toBe(false);
    expect(longDone.atMs).toBeGreaterThan(add.atMs);
  });
});

describe('two threads, many runs at once', () => {
  // A server of its own: after the long guests of the tests above, the fair queue predicts long
  // waits from their service times and may refuse part of 200 runs arriving at once (503), as it
  // should; here every run must be served.
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_WORKERS: '2' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('serves many concurrent runs with every answer its own (runs handed ahead and moved never swap results)', async () => {
    const id = await upload(s);
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => s.execute({ moduleId: id, function: 'add', args: [i, 1000] })));
    answers.forEach((a, i) => {
      expect(a.status).toBe(200);
      expect(a.body.results).toEqual([i + 1000]);
    });
  });
});

describe('one thread: the run handed ahead of a guest that must be terminated', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_WORKERS: '1', WASMBOX_DEADLINE_GRACE_MS: '150' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('runs again on the thread that replaced it and gets its own answer, not the terminated guest’s', async () => {
    const id = await upload(s);
    const threadsBefore = s.runnerThreadIds();
    const before = s.runPool();
    const t0 = performance.now();
    const blocked = timed(s, t0, { moduleId: id, function: 'wait_forever', limits: { timeoutMs: 300 } });
    await until('the blocked guest runs', () => s.runPool().running === 1);
    // The only thread is blocked in an atomic wait; this add is handed to it ahead.
    const add = await timed(s, t0, { moduleId: id, function: 'add', args: [2, 3] });
    const killed = await blocked;
    expect(killed.body.outcome).toBe('timeout');
    expect(killed.body.telemetry.threadKilled).toBe(true);
    expect(add.status).toBe(200);
    expect(add.body.outcome).toBe('ok');
    expect(add.body.results).toEqual([5]);
    expect(add.body.telemetry.threadKilled).toBe(false);
    // It ran only after the thread was terminated (deadline 300 + grace 150).
    expect(add.atMs).toBeGreaterThanOrEqual(400);
    expect(s.runPool().resent).toBeGreaterThan(before.resent);
    expect(s.runnerThreadIds()).not.toEqual(threadsBefore);
    expect(s.runnerThreadIds()).toHaveLength(1);
  });
});

describe('one thread, a short queue timeout', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_WORKERS: '1', WASMBOX_QUEUE_TIMEOUT_MS: '300', WASMBOX_FUEL_MAX: String(1e13), WASMBOX_DEADLINE_GRACE_MS: GRACE });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('a run handed ahead that cannot start within the queue timeout is refused 503 overloaded, and the thread running the guest ahead of it is kept', async () => {
    const id = await upload(s);
    const threadsBefore = s.runnerThreadIds();
    const before = s.runPool();
    const t0 = performance.now();
    const spin = timed(s, t0, { moduleId: id, function: 'spin', limits: { fuel: 1e13, timeoutMs: 1500 } });
    await until('the spinning guest runs', () => s.runPool().running === 1);
    const add = await timed(s, t0, { moduleId: id, function: 'add', args: [1, 1] });
    expect(add.status).toBe(503);
    expect(add.body.error.code).toBe('overloaded');
    // Refused at its queue timeout, not when the guest ahead ended.
    expect(add.atMs).toBeLessThan(1400);
    expect(s.runPool().withdrawn).toBeGreaterThan(before.withdrawn);
    const spun = await spin;
    expect(spun.body.outcome).toBe('timeout');
    expect(spun.body.telemetry.threadKilled).toBe(false);
    expect(s.runnerThreadIds()).toEqual(threadsBefore);
    // The thread goes on to the next run (the withdrawn one is skipped).
    expect((await s.execute({ moduleId: id, function: 'add', args: [4, 4] })).body.results).toEqual([8]);
  });
});

describe('one thread: the client of a run handed ahead goes away', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_WORKERS: '1', WASMBOX_FUEL_MAX: String(1e13), WASMBOX_DEADLINE_GRACE_MS: GRACE });
  });
  afterAll(async () => {
    await s?.close();
  });

  async function executions(): Promise<number> {
    const text = await (await request(`${s.url}/metrics`)).body.text();
    let n = 0;
    for (const line of text.split('\n')) if (line.startsWith('wasmbox_executions_total{')) n += Number(line.split(' ').pop());
    return n;
  }

  it('the run is withdrawn at once and never runs; the guest ahead of it and its thread are untouched', async () => {
    const id = await upload(s);
    const threadsBefore = s.runnerThreadIds();
    const before = s.runPool();
    const runsBefore = await executions();
    const spin = s.execute({ moduleId: id, function: 'spin', limits: { fuel: 1e13, timeoutMs: 1200 } });
    await until('the spinning guest runs', () => s.runPool().running === 1);
    const { port } = new URL(s.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const body = JSON.stringify({ moduleId: id, function: 'add', args: [1, 2] });
    socket.write(`POST /execute HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    // Handed to the busy thread: the client leaves while it waits there.
    await until('the add is handed to the busy thread', () => s.runPool().waiting === 1);
    socket.destroy();
    await until('the add is withdrawn', () => s.runPool().withdrawn > before.withdrawn);
    expect(s.runPool().withdrawn).toBe(before.withdrawn + 1);
    expect(s.runPool().waiting).toBe(0);
    const spun = await spin;
    expect(spun.body.outcome).toBe('timeout');
    expect(spun.body.telemetry.threadKilled).toBe(false);
    // One more run, so that anything the withdrawn run would have done is done by now.
    expect((await s.execute({ moduleId: id, function: 'add', args: [3, 4] })).body.results).toEqual([7]);
    // The spin and the last add ran; the withdrawn add did not.
    expect((await executions()) - runsBefore).toBe(2);
    expect(s.runnerThreadIds()).toEqual(threadsBefore);
  });
});
