// A real Redis for tests: Debian's redis-server (installed by .ci/run) on a free loopback port,
// without persistence, stopped (and restartable on the same port, to test outages) by the test.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { freePort } from './child-server.js';

export const REDIS_SERVER = process.env.WASMBOX_TEST_REDIS_SERVER ?? '/usr/bin/redis-server';

export interface TestRedis {
  port: number;
  /** redis://127.0.0.1:<port> */
  url: string;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s); its data is gone. */
  stop(): Promise<void>;
  /** Starts it again on the same port (empty), after stop(). */
  start(): Promise<void>;
}

/** Sends PING and resolves with the reply line. */
function ping(port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on ${port}: no complete reply within ${timeoutMs} ms (got ${JSON.stringify(reply)})`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: string) => {
      reply += d;
      if (reply.includes('\r\n')) {
        clearTimeout(timer);
        socket.end();
        resolve(reply);
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** `extraArgs`: more redis-server options (e.g. ['--requirepass', 'secret']). */
export async function startRedis(extraArgs: string[] = []): Promise<TestRedis> {
  if (!existsSync(REDIS_SERVER)) throw new Error(`${REDIS_SERVER} is missing: install Debian's redis-server (apt-get install redis-server)`);
  const port = await freePort();
  let child: ChildProcess | null = null;
  let output = '';

  const start = async (): Promise<void> => {
    output = '';
    const proc = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    // A test process that ends without stopping it (a crash, a timeout) takes it along.
    const orphanGuard = (): void => void proc.kill('SIGKILL');
    process.once('exit', orphanGuard);
    proc.once('exit', () => process.off('exit', orphanGuard));
    const collect = (d: Buffer): void => {
      if (output.length < 20_000) output += d.toString('utf8');
    };
    proc.stdout!.on('data', collect);
    proc.stderr!.on('data', collect);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited while starting (code ${proc.exitCode}): ${output.slice(-2000)}`);
      try {
        // (With --requirepass it answers, but refuses PING until authenticated: up all the same.)
        if (/^(\+PONG|-NOAUTH)/.test(await ping(port, 500))) return;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not answer PING within 10 s: ${output.slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    child = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const ended = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await ended;
    clearTimeout(timer);
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
  };
}
