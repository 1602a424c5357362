// The prepared-module cache keeps its byte budget in real memory: entries are weighed by what
// they hold (description, export lists, compiled module), so a cache full of modules with
// 90,000 exports each cannot hold more main-thread heap than WASMBOX_CACHE_MB.

import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manyExportsModule } from './helpers/many-exports.js';
import { type TestServer, b64, startServer } from './helpers/server.js';
import { type Prepared, PreparedCache } from '../dist/src/service/prepared-cache.js';

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

describe('prepared-module cache order', () => {
  // Entries weighed 100 bytes each in a 300-byte cache: a fourth evicts the least recently used.
  const entry = (id: string): Prepared => ({ ok: true, moduleId: id, weightBytes: 100 }) as unknown as Prepared;
  const fill = (...ids: string[]): PreparedCache => {
    const c = new PreparedCache(300);
    for (const id of ids) c.set(id, entry(id));
    return c;
  };
  const held = (c: PreparedCache, ...ids: string[]): boolean[] => ids.map((id) => c.get(id) !== undefined);

  it('evicts the least recently used entry, a hit counting as a use', () => {
    const c = fill('a', 'b', 'c');
    c.get('a');
    c.set('d', entry('d'));
    expect(held(c, 'a', 'b', 'c', 'd')).toEqual([true, false, true, true]);
  });

  it('keeps the order through repeated hits on the newest entry and after it is deleted', () => {
    const c = fill('a', 'b', 'c');
    c.get('b');
    c.get('b');
    c.get('b');
    // b is the newest; a, then c, are the oldest.
    c.set('d', entry('d'));
    expect(c.get('a')).toBeUndefined();
    c.delete('d');
    // d gone: a hit on c must move it behind b again.
    c.get('c');
    c.set('e', entry('e'));
    c.set('f', entry('f'));
    expect(held(c, 'b', 'c', 'e', 'f')).toEqual([false, true, true, true]);
    expect(c.usedBytes).toBe(300);
  });
});
