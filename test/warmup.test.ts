// The preparation thread's warm-up (src/worker/warmup.ts): in-process, it prepares a generated
// module round after round when nothing else arrives, and stops at once when a real task arrives in
// its thread or a real preparation is waiting anywhere in the server; through the real pools, a
// server's preparation threads have done it before their first module and the CLI's have not, one
// lane's real work stops the other lane's warm-up, and the server reports ready (GET /readyz) once
// the warm-up is over. (What it buys is measured by `npm run bench -- prepare`, not here: tests do
// not time.)

import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../dist/src/config.js';
import { WorkerPools } from '../dist/src/worker/pool.js';
import { instrument } from '../dist/src/metering/instrument.js';
import { parseModule } from '../dist/src/wasm/module.js';
import { generateModule } from '../dist/src/wasm/synthetic.js';
import { WARM_ACTIVE, WARM_DONE, WARM_ROUNDS, warmUpState } from '../dist/src/worker/protocol.js';
import { WARMUP_MAX_ROUNDS, WARMUP_MIN_ROUNDS, startWarmUp, stopWarmUp } from '../dist/src/worker/warmup.js';
import { startServer } from './helpers/server.js';

describe('preparation warm-up', () => {
  it('the generated warm-up module is one V8 accepts and the fuel pass instruments, directly called functions included', () => {
    const { bytes, functions } = generateModule(64 * 1024, 7);
    expect(WebAssembly.validate(bytes)).toBe(true);
    expect(functions).toBeGreaterThan(20);
    const out = instrument(bytes, { maxTableElements: 10_000 });
    expect(WebAssembly.validate(out.bytes)).toBe(true);
    // directly called functions got threaded copies: the metered module has more functions
    const count = (b: Uint8Array): number => parseModule(b).funcTypes.length;
    expect(count(out.bytes)).toBeGreaterThan(count(bytes));
  });

  it('does not start while a real preparation is waiting anywhere, and says in the shared state that it has ended', async () => {
    const shared = warmUpState();
    const cells = new Int32Array(shared);
    Atomics.store(cells, WARM_ACTIVE, 1); // what the pools do when they dispatch a preparation
    expect(await startWarmUp({ shared, maxRounds: 5, minRounds: 5 })).toBe(0);
    expect(Atomics.load(cells, WARM_DONE)).toBe(1);
    Atomics.store(cells, WARM_ACTIVE, 0);
    expect(await startWarmUp({ shared, maxRounds: 3, minRounds: 3 })).toBe(3);
    expect(Atomics.load(cells, WARM_DONE)).toBe(2);
    expect(Atomics.load(cells, WARM_ROUNDS)).toBe(3);
  });

  it('runs every round when no task arrives, then stops for good once a real task has arrived in its thread', async () => {
    expect(await startWarmUp({ maxRounds: 3, minRounds: 3 })).toBe(3);
    const pending = startWarmUp({ maxRounds: 1_000 });
    stopWarmUp(); // what prepare() does on its first task
    expect(await pending).toBe(0);
    expect(await startWarmUp({ maxRounds: 5 })).toBe(0);
  });

  it('a server\'s preparation threads have warmed up before their first module; the CLI\'s have not', async () => {
    const config = loadConfig({ WASMBOX_PREPARE_WORKERS: '1', WASMBOX_WARMUP_READY_MAX_MS: '60000' });
    const module = generateModule(8 * 1024, 3).bytes;
    const rounds = async (warmUpPreparation: boolean): Promise<number> => {
      const pools = new WorkerPools(config, { warmUpPreparation });
      try {
        // Until the warm-up is over (at most about half a second of work per thread here).
        const until = Date.now() + 20_000;
        while (!pools.warm && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        const r = await pools.prepareModule(module, 'large');
        if (!r.ok) throw new Error(`preparation failed: ${r.code} ${r.message}`);
        return r.timings.warmUpRounds;
      } finally {
        await pools.close();
      }
    };
    const warmed = await rounds(true);
    expect(warmed).toBeGreaterThanOrEqual(WARMUP_MIN_ROUNDS);
    expect(warmed).toBeLessThanOrEqual(WARMUP_MAX_ROUNDS);
    expect(await rounds(false)).toBe(0);
  }, 30_000);

  it('a preparation waiting or running in one lane stops the warm-up of every preparation thread', async () => {
    const big = generateModule(4 * 1024 * 1024, 5).bytes;
    const pools = new WorkerPools(loadConfig({ WASMBOX_PREPARE_WORKERS: '1' }), { warmUpPreparation: true });
    try {
      // Dispatched before any thread has started: the large lane's thread is busy with it for a
      // while (a cold thread prepares 4 MiB in about a second).
      const large = await pools.prepareModule(big, 'large');
      if (!large.ok) throw new Error(`preparation failed: ${large.code} ${large.message}`);
      expect(large.timings.warmUpRounds).toBe(0);
      // Meanwhile the small lane's thread, idle, would have warmed up; it did not start.
      const small = await pools.prepareModule(generateModule(8 * 1024, 3).bytes, 'small');
      if (!small.ok) throw new Error(`preparation failed: ${small.code} ${small.message}`);
      expect(small.timings.warmUpRounds).toBe(0);
      expect(pools.warm).toBe(true);
    } finally {
      await pools.close();
    }
  }, 60_000);

  it('a fresh server answers GET /readyz 503 while its preparation threads warm up, then 200', async () => {
    const s = await startServer({ WASMBOX_PREPARE_WARMUP: '1', WASMBOX_WARMUP_READY_MAX_MS: '30000' });
    try {
      // Readiness also fails while the event loop has had no lag sample yet (a loop blocked for a
      // whole sampling interval, as by start-up on a loaded machine): that answer is skipped; the
      // first other one must be the warm-up's.
      let first = await request(`${s.url}/readyz`);
      let body = (await first.body.json()) as { error?: { code: string; message: string } };
      for (let i = 0; i < 40 && first.statusCode === 503 && /event loop lags/.test(body.error?.message ?? ''); i++) {
        await new Promise((r) => setTimeout(r, 25));
        first = await request(`${s.url}/readyz`);
        body = (await first.body.json()) as { error?: { code: string; message: string } };
      }
      expect(first.statusCode).toBe(503);
      expect(body.error?.code).toBe('overloaded');
      expect(body.error?.message).toMatch(/warming up/);
      expect(first.headers['retry-after']).toBe('1');
      // It still serves meanwhile.
      expect((await request(`${s.url}/healthz`)).statusCode).toBe(200);
      const until = Date.now() + 25_000;
      let status = first.statusCode;
      while (status !== 200 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
        const res = await request(`${s.url}/readyz`);
        await res.body.dump();
        status = res.statusCode;
      }
      expect(status).toBe(200);
    } finally {
      await s.close();
    }
  }, 60_000);
});
