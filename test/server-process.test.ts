// The real entry point, `node dist/src/server.js`, as a child process: it starts on the embedded
// defaults, refuses bad settings by name, and drains on SIGTERM in order: readiness fails while
// new work is still served for WASMBOX_DRAIN_DELAY_MS, then new work is refused, in-flight runs
// are answered, exit 0. Every wait observes state (a log line, a metric, an answer) with a
// generous deadline, never a fixed sleep: the machine may be busy.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { b64 } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const SERVER = fileURLToPath(new URL('../dist/src/server.js', import.meta.url));

/** The parent's environment without any setting the server reads, so the embedded defaults apply. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(WASMBOX_|PORT$|HOST$|LOG_LEVEL$|NODE_OPTIONS$)/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

interface Spawned {
  child: ChildProcess;
  cwd: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the base URL once the server logs that it listens. */
  listening: Promise<string>;
}

const children: ChildProcess[] = [];
const workDirs: string[] = [];

/** Starts the server in a fresh working directory, so the embedded default data directory
 *  (relative to it) lands in a temporary place. */
function spawnServer(env: Record<string, string>): Spawned {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-process-'));
  workDirs.push(cwd);
  const child = spawn(process.execPath, [SERVER], { cwd, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const listening = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: string) => {
      out += chunk;
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.stderr!.on('data', (chunk: string) => {
      err += chunk;
    });
    void exited.then(({ code }) => reject(new Error(`server exited with ${code} before listening: ${err}`)));
  });
  listening.catch(() => {});
  return { child, cwd, stdout: () => out, stderr: () => err, exited, listening };
}

/** pino JSON lines from the child's stdout. */
function logLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Whether a fresh TCP connection to the port is refused (vs accepted). */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it holds or `ms` pass; resolves whether it held. */
async function eventually(check: () => boolean | Promise<boolean>, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
}

/** Runs that have taken a worker so far (GET /metrics: the run lane's queue-wait count). */
async function runsStarted(url: string): Promise<number> {
  const res = await request(`${url}/metrics`);
  const m = /^wasmbox_queue_wait_seconds_count\{lane="run"\} (\d+)$/m.exec(await res.body.text());
  return m ? Number(m[1]) : 0;
}

const post = (url: string, body: unknown, dispatcher?: Agent) =>
  request(`${url}/execute`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(dispatcher && { dispatcher }) });

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGKILL');
      await new Promise((r) => c.once('exit', r));
    }
  }
  for (const d of workDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const ADD = b64(wat(`(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`));
const SPIN = b64(wat(`(module (func (export "spin") (loop $l br $l)))`));

describe('server.js on the embedded defaults', () => {
  it('starts with no settings but PORT=0, logs its address as JSON, answers /healthz and runs with the default limits', async () => {
    const s = spawnServer({ PORT: '0' });
    const url = await s.listening;
    const listenLine = logLines(s.stdout()).find((l) => String(l.msg).startsWith('Server listening at'));
    expect(listenLine).toMatchObject({ level: 30, msg: `Server listening at ${url}` });

    const health = await request(`${url}/healthz`);
    expect(health.statusCode).toBe(200);
    expect(await health.body.json()).toEqual({ status: 'ok' });
    // The server listens while its threads are still starting, and says so (503 until they are
    // up): readiness is what it reaches, within a generous bound.
    let ready = await request(`${url}/readyz`);
    for (const until = Date.now() + 15_000; ready.statusCode !== 200 && Date.now() < until; ) {
      await ready.body.dump();
      await new Promise((r) => setTimeout(r, 100));
      ready = await request(`${url}/readyz`);
    }
    expect(ready.statusCode).toBe(200);
    expect(await ready.body.json()).toEqual({ status: 'ready' });

    const run = await request(`${url}/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ module: ADD, function: 'add', args: [5, 10] }),
    });
    expect(run.statusCode).toBe(200);
    const body = (await run.body.json()) as any;
    expect(body).toMatchObject({ outcome: 'ok', results: [15] });
    // the embedded defaults: 100000000 fuel, 64 MiB
    expect(body.telemetry).toMatchObject({ fuelLimit: 100_000_000, memoryLimitBytes: 64 * 1048576 });
    // limits above the embedded maximums are refused with those maximums
    const over = await request(`${url}/execute`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ module: ADD, function: 'add', args: [5, 10], limits: { timeoutMs: 30_001 } }),
    });
    expect(over.statusCode).toBe(400);
    expect(((await over.body.json()) as any).error.message).toContain('from 1 to 30000');
    // one structured line per execution
    expect(await eventually(() => logLines(s.stdout()).some((l) => l.msg === 'execution'))).toBe(true);
    const execution = logLines(s.stdout()).find((l) => l.msg === 'execution');
    expect(execution).toMatchObject({ function: 'add', outcome: 'ok', moduleId: body.moduleId });

    // the embedded default module store, relative to the working directory
    expect(existsSync(path.join(s.cwd, '.wasmbox-data'))).toBe(true);

    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
  });
});

describe('bad settings stop start-up', () => {
  it.each([
    [{ WASMBOX_WORKERS: 'abc' }, 'WASMBOX_WORKERS="abc": must be a number'],
    [{ WASMBOX_WORKERS: '0' }, 'WASMBOX_WORKERS="0": must be at least 1'],
    [{ PORT: '99999' }, 'PORT="99999": must be at most 65535'],
    [{ PORT: '80.5' }, 'PORT="80.5": must be a whole number'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL="loud"'],
    [{ WASMBOX_FUEL_DEFAULT: '10', WASMBOX_FUEL_MAX: '5' }, 'WASMBOX_FUEL_DEFAULT=10 is above WASMBOX_FUEL_MAX=5'],
  ])('exits non-zero without listening for %j, naming the variable', async (env, message) => {
    const s = spawnServer({ PORT: '0', ...env });
    const { code } = await s.exited;
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(s.stderr()).toContain('wasmbox: invalid configuration');
    expect(s.stderr()).toContain(message);
    expect(s.stdout()).not.toContain('Server listening');
  });

  it('exits non-zero when the port is already taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const s = spawnServer({ PORT: String(port), WASMBOX_WORKERS: '1' });
      const { code } = await s.exited;
      expect(code).not.toBe(0);
      expect(code).not.toBeNull();
      expect(s.stderr()).toContain('EADDRINUSE');
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });
});

describe('graceful shutdown on SIGTERM', () => {
  it(
    'fails /readyz first while still serving new work for WASMBOX_DRAIN_DELAY_MS, then refuses new work, answers the in-flight run and exits 0',
    { timeout: 60_000 },
    async () => {
      const DRAIN_DELAY_MS = 4_000;
      const s = spawnServer({ PORT: '0', WASMBOX_WORKERS: '2', WASMBOX_DRAIN_DELAY_MS: String(DRAIN_DELAY_MS) });
      const url = await s.listening;
      const port = Number(new URL(url).port);
      // Its own connection pool, so nothing else shares the in-flight request's socket.
      const agent = new Agent();
      try {
        // Prepare both modules first, so the runs below start at once.
        const warm = await post(url, { module: SPIN, function: 'spin', limits: { fuel: 10_000 } }, agent);
        expect(((await warm.body.json()) as any).outcome).toBe('fuel_exhausted');
        const add = await post(url, { module: ADD, function: 'add', args: [1, 2] });
        expect(((await add.body.json()) as any).results).toEqual([3]);
        expect((await request(`${url}/readyz`)).statusCode).toBe(200);

        // A run that outlasts the drain delay by far: it is in flight through the whole shutdown.
        const before = await runsStarted(url);
        let answered = false;
        const slow = post(url, { module: SPIN, function: 'spin', limits: { fuel: 10_000_000_000, timeoutMs: DRAIN_DELAY_MS + 8_000 } }, agent).then(async (res) => {
          answered = true;
          return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as any };
        });
        expect(await eventually(async () => (await runsStarted(url)) > before)).toBe(true);
        s.child.kill('SIGTERM');

        // 1. readiness fails ...
        let ready: Awaited<ReturnType<typeof request>> | undefined;
        expect(
          await eventually(async () => {
            ready = await request(`${url}/readyz`);
            return ready.statusCode === 503;
          }),
        ).toBe(true);
        expect(((await ready!.body.json()) as any).error.code).toBe('overloaded');
        expect(ready!.headers['retry-after']).toBeDefined();
        // ... while new work is still served (on a new connection)
        const during = await post(url, { module: ADD, function: 'add', args: [20, 22] });
        expect(during.statusCode).toBe(200);
        expect(((await during.body.json()) as any).results).toEqual([42]);

        // 2. after the delay new work is refused: 503 overloaded, or no connection at all once the
        //    listener is closed; the in-flight run is still running.
        let refusal: string | null = null;
        expect(
          await eventually(async () => {
            try {
              const res = await post(url, { module: ADD, function: 'add', args: [1, 1] });
              const body = (await res.body.json()) as any;
              if (res.statusCode === 503 && body.error.code === 'overloaded') refusal = '503 overloaded';
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') refusal = 'connection refused';
            }
            return refusal !== null;
          }),
        ).toBe(true);
        expect(answered).toBe(false);
        expect(await eventually(() => connectionRefused(port))).toBe(true);

        // 3. the in-flight run is answered, closing its connection, and the process exits 0.
        const res = await slow;
        expect(res.status).toBe(200);
        // its deadline or, on a fast machine, its 10^10 fuel ends it: either way it was answered
        expect(['timeout', 'fuel_exhausted']).toContain(res.body.outcome);
        expect(res.body.telemetry).toMatchObject({ fuelLimit: 10_000_000_000 });
        // the answer closes its keep-alive connection, so the drain does not wait for the client
        expect(res.headers.connection).toBe('close');

        const exit = await s.exited;
        expect(exit).toEqual({ code: 0, signal: null });
        const messages = logLines(s.stdout()).map((l) => String(l.msg));
        const draining = messages.indexOf('shutting down: readiness fails, still serving during the drain delay');
        const refusing = messages.indexOf('shutting down: refusing new work, finishing in-flight runs');
        expect(draining).toBeGreaterThanOrEqual(0);
        expect(refusing).toBeGreaterThan(draining);
        expect(messages.indexOf('stopped')).toBeGreaterThan(refusing);
        expect(s.stderr()).toBe('');
      } finally {
        await agent.close();
      }
    },
  );

  it('writes every execution log line to stdout before exiting (the log destination is asynchronous and batched)', { timeout: 60_000 }, async () => {
    const N = 50;
    const s = spawnServer({ PORT: '0', WASMBOX_WORKERS: '2', WASMBOX_DRAIN_DELAY_MS: '0' });
    const url = await s.listening;
    const stored = await request(`${url}/modules`, { method: 'POST', headers: { 'content-type': 'application/wasm' }, body: Buffer.from(ADD, 'base64') });
    expect(stored.statusCode).toBeLessThan(300);
    const { moduleId } = (await stored.body.json()) as { moduleId: string };
    // Ten at a time, so lines pile up in the buffer between writes.
    for (let i = 0; i < N; i += 10) {
      const answers = await Promise.all(
        Array.from({ length: 10 }, async (_, j) => {
          const res = await post(url, { moduleId, function: 'add', args: [i, j] });
          return { status: res.statusCode, body: (await res.body.json()) as any };
        }),
      );
      for (const [j, a] of answers.entries()) expect(a).toMatchObject({ status: 200, body: { outcome: 'ok', results: [i + j] } });
    }
    // At once: the last lines are still in the buffer (they go out within 200 ms otherwise).
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    const lines = logLines(s.stdout());
    const executions = lines.filter((l) => l.msg === 'execution');
    expect(executions).toHaveLength(N);
    expect(executions.every((l) => l.moduleId === moduleId && l.outcome === 'ok')).toBe(true);
    // whole lines, in order, the last one last
    expect(s.stdout().endsWith('\n')).toBe(true);
    expect(lines.at(-1)!.msg).toBe('stopped');
    expect(s.stderr()).toBe('');
  });

  it('exits 0 on SIGTERM when idle, after the drain delay', { timeout: 60_000 }, async () => {
    const s = spawnServer({ PORT: '0', WASMBOX_WORKERS: '1' });
    await s.listening;
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(logLines(s.stdout()).map((l) => l.msg)).toContain('stopped');
  });

  it('a second SIGTERM skips the rest of the drain delay', { timeout: 60_000 }, async () => {
    // A delay far longer than the test: only the second signal can end it in time.
    const s = spawnServer({ PORT: '0', WASMBOX_WORKERS: '1', WASMBOX_DRAIN_DELAY_MS: '600000' });
    const url = await s.listening;
    s.child.kill('SIGTERM');
    expect(await eventually(async () => (await request(`${url}/readyz`)).statusCode === 503)).toBe(true);
    expect(s.child.exitCode).toBeNull();
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
  });

  it('SIGINT drains the same way and exits 0', { timeout: 60_000 }, async () => {
    const s = spawnServer({ PORT: '0', WASMBOX_WORKERS: '1', WASMBOX_DRAIN_DELAY_MS: '100' });
    await s.listening;
    s.child.kill('SIGINT');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(logLines(s.stdout()).find((l) => String(l.msg).startsWith('shutting down: readiness fails'))).toMatchObject({ reason: 'SIGINT' });
  });
});
