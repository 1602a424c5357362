// A server without REDIS_URL never loads the Redis client (ioredis) or BullMQ: they are imported
// only when REDIS_URL is set (src/redis/index.ts createRedis, src/app.ts), which keeps the main
// thread's heap, and so every full collection of it, smaller. Each case builds the real app in a
// child process whose module resolution is recorded (node:module registerHooks).

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from './helpers/redis.js';

const APP = pathToFileURL(path.resolve('dist/src/app.js')).href;
const CONFIG = pathToFileURL(path.resolve('dist/src/config.js')).href;

// Prints the node_modules packages among ioredis and bullmq that were resolved while the app was
// built, made ready and closed.
const SCRIPT = `
import { registerHooks } from 'node:module';
const seen = new Set();
registerHooks({
  resolve(specifier, context, next) {
    const r = next(specifier, context);
    const m = /node_modules\\/(ioredis|bullmq)\\//.exec(r.url);
    if (m) seen.add(m[1]);
    return r;
  },
});
const [app, config, dataDir, redisUrl] = process.argv.slice(1);
const { buildApp } = await import(app);
const { loadConfig } = await import(config);
const env = { WASMBOX_DATA_DIR: dataDir, WASMBOX_PREPARE_WARMUP: '0', ...(redisUrl && { REDIS_URL: redisUrl }) };
const server = await buildApp({ config: loadConfig(env), logger: false });
await server.ready();
await server.close();
console.log(JSON.stringify([...seen].sort()));
`;

function loadedPackages(redisUrl?: string): Promise<string[]> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-lazy-'));
  return new Promise<string[]>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', SCRIPT, APP, CONFIG, dataDir, ...(redisUrl ? [redisUrl] : [])],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        rmSync(dataDir, { recursive: true, force: true });
        if (err) return reject(new Error(`${err.message}\n${stderr}`));
        resolve(JSON.parse(stdout.trim().split('\n').at(-1)!) as string[]);
      },
    );
  });
}

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('the Redis client and BullMQ are loaded only with REDIS_URL', () => {
  it('a server without REDIS_URL builds, starts and closes without loading ioredis or bullmq', async () => {
    expect(await loadedPackages()).toEqual([]);
  });

  it('a server with REDIS_URL loads both (the recording sees them when they are used)', async () => {
    expect(await loadedPackages(redis.url)).toEqual(['bullmq', 'ioredis']);
  });
});
