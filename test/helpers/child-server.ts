// Starts the built server as its own process (`node dist/src/server.js`, as `npm start` does) on a
// free port. For tests whose guest might take the whole process down: a crash shows up as a dead
// child instead of killing the test runner.

import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';

const SERVER = fileURLToPath(new URL('../../dist/src/server.js', import.meta.url));

export interface ChildServer {
  url: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** null while it runs; the exit code or signal once it ended. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | null;
  execute(body: Record<string, unknown>): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface SpawnOptions {
  /** Caps the process's address space (`ulimit -v`, in KiB): each wasm memory reserves about
   *  10 GB of it, so a cap of a few GB leaves the server running but unable to create one. */
  virtualMemoryKb?: number;
}

export async function spawnServer(env: Record<string, string> = {}, options: SpawnOptions = {}): Promise<ChildServer> {
  const port = await freePort();
  const [command, args] =
    options.virtualMemoryKb === undefined
      ? [process.execPath, [SERVER]]
      : ['/bin/sh', ['-c', `ulimit -v ${options.virtualMemoryKb} && exec "$0" "$@"`, process.execPath, SERVER]];
  // No preparation warm-up (its CPU at every start; test/warmup.test.ts tests it) unless a test says.
  const child = spawn(command, args, {
    env: { ...process.env, WASMBOX_WORKERS: '2', LOG_LEVEL: 'silent', WASMBOX_PREPARE_WARMUP: '0', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (stderr.length < 100_000) stderr += d;
  });
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const ended = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve();
    });
  });
  const url = `http://127.0.0.1:${port}`;

  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exit) throw new Error(`the server exited while starting (${JSON.stringify(exit)}): ${stderr.slice(0, 2000)}`);
    try {
      const res = await request(`${url}/healthz`);
      await res.body.text();
      if (res.statusCode === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the server did not start within 15 s: ${stderr.slice(0, 2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    url,
    child,
    stderr: () => stderr,
    exited: () => exit,
    async execute(body) {
      const res = await request(`${url}/execute`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const text = await res.body.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* keep the text */
      }
      return { status: res.statusCode, body: parsed };
    },
    async close() {
      if (exit) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await ended;
      clearTimeout(timer);
    },
  };
}
