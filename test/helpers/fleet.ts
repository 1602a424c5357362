// A fleet for tests: a real redis-server (test/helpers/redis.ts) and real server processes
// (`node dist/src/server.js`, test/helpers/child-server.ts) sharing it through REDIS_URL, each on
// its own free port, the way replicas run behind a load balancer.

import { request } from 'undici';
import { type ChildServer, spawnServer } from './child-server.js';
import { startRedis, type TestRedis } from './redis.js';

export interface Fleet {
  redis: TestRedis;
  replicas: ChildServer[];
  /** The settings every replica was started with (REDIS_URL aside). */
  env: Record<string, string>;
  /** Starts one more replica with the fleet's settings (plus `env`). */
  add(env?: Record<string, string>): Promise<ChildServer>;
  close(): Promise<void>;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

/** One request; the body is JSON unless it is bytes (then application/wasm). */
export async function call(
  base: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const bytes = body instanceof Uint8Array;
  const res = await request(base + path, {
    method,
    headers: { ...(body !== undefined && { 'content-type': bytes ? 'application/wasm' : 'application/json' }), ...headers },
    ...(body !== undefined && { body: bytes ? body : JSON.stringify(body) }),
  });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON (204, metrics): keep the text */
  }
  return { status: res.statusCode, headers: res.headers, body: parsed };
}

/** Waits until GET /readyz answers 200 (connected to Redis, pools up). */
export async function waitReady(server: ChildServer, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await call(server.url, 'GET', '/readyz').catch(() => null);
    if (res?.status === 200) return;
    if (server.exited()) throw new Error(`the replica exited: ${server.stderr().slice(0, 2000)}`);
    if (Date.now() > deadline) throw new Error(`the replica was not ready within ${timeoutMs} ms: ${JSON.stringify(res?.body)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Redis plus `count` replicas sharing it, each ready. */
export async function startFleet(count: number, env: Record<string, string> = {}): Promise<Fleet> {
  const redis = await startRedis();
  const replicas: ChildServer[] = [];
  const add = async (extra: Record<string, string> = {}): Promise<ChildServer> => {
    const server = await spawnServer({ REDIS_URL: redis.url, ...env, ...extra });
    replicas.push(server);
    await waitReady(server);
    return server;
  };
  try {
    await Promise.all(Array.from({ length: count }, () => add()));
  } catch (err) {
    await Promise.all(replicas.map((r) => r.close()));
    await redis.stop();
    throw err;
  }
  return {
    redis,
    replicas,
    env,
    add,
    async close() {
      await Promise.all(replicas.map((r) => r.close()));
      await redis.stop();
    },
  };
}
