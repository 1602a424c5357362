// The service (or the bare Fastify baseline) as a child process on a free loopback port, as
// `npm start` runs it, with a throw-away module store; for the http and overload sections.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { CLK_TCK, ROOT, sleep } from './lib.js';

export type ServerKind = 'bare' | 'wasmbox';

export interface ServerProcess {
  kind: ServerKind;
  baseUrl: string;
  child: ChildProcess;
  stderr: () => string;
  cpuSeconds: () => number | null;
  /** CPU time of its main thread (the event loop) so far, in seconds. */
  mainThreadCpuSeconds: () => number | null;
  /** Peak resident set size of the process so far (VmHWM), in bytes. */
  peakRssBytes: () => number | null;
  stop: () => Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** CPU seconds of a process, all its threads included. */
export function procCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

/** CPU seconds of a process's main thread (its event loop): /proc schedstat, in ns (a single
 *  request's time, where /proc stat counts clock ticks of 10 ms). Unlike a probe's latency it does
 *  not grow when the machine is busy and the thread waits for a core. */
export function mainThreadCpuSeconds(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  } catch {
    return null;
  }
}

/** `env` adds settings to the server's environment. */
export async function startServer(kind: ServerKind, env: Record<string, string> = {}): Promise<ServerProcess> {
  const port = await freePort();
  const script = kind === 'bare' ? new URL('./http-bare-server.js', import.meta.url).pathname : `${ROOT}dist/src/server.js`;
  // A throw-away module store, so the run leaves nothing behind in the project. stdout (the
  // service's JSON log lines, one per execution at the default level) goes to /dev/null: the
  // logging cost stays in the measurement, reading it back does not.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-bench-'));
  const child = spawn(process.execPath, [script], {
    cwd: ROOT,
    env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', WASMBOX_DATA_DIR: dataDir },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  let exited: number | string | null = null;
  const exitedP = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = code ?? signal ?? 'unknown';
      resolve();
    }),
  );
  const baseUrl = `http://127.0.0.1:${port}`;
  const probe = kind === 'bare' ? '/hello' : '/readyz';
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited !== null) {
      rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`the ${kind} server exited (${exited}) before it was ready:\n${err}`);
    }
    try {
      const res = await request(baseUrl + probe);
      await res.body.dump();
      if (res.statusCode === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
      throw new Error(`the ${kind} server did not become ready in 20 s:\n${err}`);
    }
    await sleep(50);
  }
  return {
    kind,
    baseUrl,
    child,
    stderr: () => err,
    cpuSeconds: () => procCpuSeconds(child.pid!),
    mainThreadCpuSeconds: () => mainThreadCpuSeconds(child.pid!),
    peakRssBytes: () => procPeakRss(child.pid!),
    stop: async () => {
      if (exited === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exitedP;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Peak resident set size of a process (VmHWM from /proc), in bytes. */
export function procPeakRss(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
