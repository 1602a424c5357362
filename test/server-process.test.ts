// The real entry point, `node dist/src/server.js`, as a child process: it starts on the embedded
// defaults, refuses bad settings by name, and drains on SIGTERM (in-flight runs answered, new
// connections refused, exit 0).

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
    const ready = await request(`${url}/readyz`);
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
    await sleep(50);
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
  it('answers the in-flight run, refuses new connections, and exits 0', { timeout: 20_000 }, async () => {
    const s = spawnServer({ PORT: '0', WASMBOX_WORKERS: '1' });
    const url = await s.listening;
    const port = Number(new URL(url).port);
    // Its own connection pool, so nothing else shares the in-flight request's socket.
    const agent = new Agent();
    try {
      // Prepare the module first so that the slow run starts at once.
      const warm = await request(`${url}/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ module: SPIN, function: 'spin', limits: { fuel: 10_000, timeoutMs: 1500 } }),
        dispatcher: agent,
      });
      expect(((await warm.body.json()) as any).outcome).toBe('fuel_exhausted');

      let answered = false;
      const slow = request(`${url}/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ module: SPIN, function: 'spin', limits: { fuel: 10_000_000_000, timeoutMs: 1500 } }),
        dispatcher: agent,
      }).then(async (res) => {
        answered = true;
        return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as any };
      });
      await sleep(300); // the run is under way (it lasts 1500 ms)
      expect(answered).toBe(false);
      s.child.kill('SIGTERM');

      // New connections are refused while the run is still in flight.
      let refused = false;
      for (let i = 0; i < 50 && !refused; i++) {
        refused = await connectionRefused(port);
        if (!refused) await sleep(20);
      }
      expect(refused).toBe(true);
      expect(answered).toBe(false);

      const res = await slow;
      expect(res.status).toBe(200);
      expect(res.body.outcome).toBe('timeout');
      expect(res.body.telemetry).toMatchObject({ fuelLimit: 10_000_000_000 });
      // the answer closes its keep-alive connection, so the drain does not wait for the client
      expect(res.headers.connection).toBe('close');

      const exit = await s.exited;
      expect(exit).toEqual({ code: 0, signal: null });
      const messages = logLines(s.stdout()).map((l) => l.msg);
      expect(messages).toContain('shutting down: finishing in-flight runs');
      expect(messages).toContain('stopped');
      expect(s.stderr()).toBe('');
    } finally {
      await agent.close();
    }
  });

  it('exits 0 at once on SIGTERM when idle', async () => {
    const s = spawnServer({ PORT: '0', WASMBOX_WORKERS: '1' });
    await s.listening;
    const t = performance.now();
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(performance.now() - t).toBeLessThan(10_000);
  });
});
