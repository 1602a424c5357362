// The prepared-module cache keeps its byte budget in real memory: entries are weighed by what
// they hold (description, export lists, compiled module), so a cache full of modules with
// 90,000 exports each cannot hold more main-thread heap than WASMBOX_CACHE_MB.

import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manyExportsModule } from './helpers/many-exports.js';
import { type TestServer, b64, startServer } from './helpers/server.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const heapUsed = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const EXPORTS = 90_000;
const CACHE_MB = 160;
const MODULES = 12;

describe('prepared-module cache weight', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_CACHE_MB: String(CACHE_MB), WASMBOX_WORKERS: '1' });
  });
  afterAll(async () => {
    await s.close();
  });

  it(`holds at most WASMBOX_CACHE_MB of main-thread heap when filled with ${EXPORTS.toLocaleString('en')}-export modules`, async () => {
    const modules = Array.from({ length: MODULES }, (_, i) => manyExportsModule(EXPORTS, i + 1));
    const bodies = modules.map((m) => JSON.stringify({ module: b64(m), function: 'f0__________', limits: { timeoutMs: 30_000 } }));
    // Warm the server's code paths, then measure from there (the bodies are already built).
    expect((await s.post('/execute', { module: b64(manyExportsModule(10, 9999)), function: 'f0__________' })).status).toBe(200);
    const before = heapUsed();
    for (const [i, body] of bodies.entries()) {
      const res = await s.post('/execute', body);
      expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(200);
      expect(res.body.results).toEqual([i + 1]);
    }
    const grownBytes = heapUsed() - before;
    // Under the old weighing (about 8.6 MB an entry) all twelve fit and held about 370 MB.
    expect(grownBytes).toBeLessThan(CACHE_MB * 1048576);
    // The cache still works: the most recent module is a hit.
    const again = await s.post('/execute', bodies[MODULES - 1]!);
    expect(again.body.telemetry.moduleCached).toBe(true);
    // And the oldest was evicted, and is prepared again when sent again.
    const first = await s.post('/execute', bodies[0]!);
    expect(first.status).toBe(200);
    expect(first.body.telemetry.moduleCached).toBe(false);
  }, 240_000);
});
