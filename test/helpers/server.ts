// Starts the real server (the built app from dist/, as `npm start` runs it) on a real port and
// gives tests an undici client for it.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { buildApp } from '../../dist/src/app.js';
import { type Config, loadConfig } from '../../dist/src/config.js';

export interface TestServer {
  url: string;
  config: Config;
  /** The ids of the runner threads now alive (a thread terminated at a deadline is replaced by
   *  one with a new id). */
  runnerThreadIds(): number[];
  /** Tasks the runner threads had to be sent again with their compiled module (a thread that did
   *  not hold it: src/worker/pool.ts moduleRef). */
  moduleResends(): number;
  /** The run pool's counters (src/worker/run-pool.ts): runs handed ahead to a busy thread that
   *  moved to a free one, were sent again after their thread was terminated for another run, or
   *  were withdrawn before they started; and its tasks now running, and waiting (handed ahead to
   *  a busy thread, or queued). */
  runPool(): { moved: number; resent: number; withdrawn: number; running: number; waiting: number };
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Record<string, unknown> }>;
  get(path: string): Promise<{ status: number; body: any; text: string; headers: Record<string, unknown> }>;
  execute(body: Record<string, unknown>): Promise<{ status: number; body: any }>;
  close(): Promise<void>;
}

/** `env` overrides configuration variables, as the environment would; `options.logger` gives the
 *  app a logger (pino options) for tests that read its lines. */
export async function startServer(env: Record<string, string> = {}, options: { logger?: object } = {}): Promise<TestServer> {
  // Each server gets its own module store in a temporary directory unless the test names one.
  const ownDataDir = env.WASMBOX_DATA_DIR === undefined ? mkdtempSync(path.join(os.tmpdir(), 'wasmbox-test-')) : null;
  // The server shares this process's event loop with the test's own work (compiling WAT,
  // building modules), so event-loop-delay readiness is set out of the way unless a test sets it;
  // so is the preparation threads' warm-up (its CPU at every start; test/warmup.test.ts tests it).
  const config = loadConfig({
    WASMBOX_WORKERS: '2',
    WASMBOX_READY_MAX_EVENT_LOOP_DELAY_MS: '10000',
    WASMBOX_PREPARE_WARMUP: '0',
    ...(ownDataDir && { WASMBOX_DATA_DIR: ownDataDir }),
    ...env,
    PORT: '0',
    HOST: '127.0.0.1',
  });
  const app = await buildApp({ config, logger: options.logger ?? false });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  const url = `http://127.0.0.1:${address.port}`;

  const post: TestServer['post'] = async (path, body, headers = {}) => {
    const raw = typeof body === 'string' || body instanceof Uint8Array;
    const res = await request(url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: raw ? (body as string | Uint8Array) : JSON.stringify(body),
    });
    const text = await res.body.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    return { status: res.statusCode, body: parsed, headers: res.headers };
  };
  const get: TestServer['get'] = async (path) => {
    const res = await request(url + path);
    const text = await res.body.text();
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.statusCode, body: parsed, text, headers: res.headers };
  };
  return {
    url,
    config,
    runnerThreadIds: () => app.pools.run.threads.map((t) => t.threadId).sort((a, b) => a - b),
    moduleResends: () => app.pools.moduleResends,
    runPool: () => {
      const pool = app.pools.run;
      return { moved: pool.moved, resent: pool.resent, withdrawn: pool.withdrawn, running: pool.running, waiting: pool.waiting };
    },
    post,
    get,
    execute: (body) => post('/execute', body),
    close: async () => {
      await app.close();
      if (ownDataDir) rmSync(ownDataDir, { recursive: true, force: true });
    },
  };
}

/** Base64 of module bytes, as the JSON body form wants it. */
export function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}
