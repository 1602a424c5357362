// The preparation thread's warm-up (src/worker/warmup.ts): in-process, it prepares a generated
// module the given number of rounds when nothing else arrives, and stops at once when a real task
// does; through the real pools, a server's preparation threads have done it before their first
// module and the CLI's have not. (What it buys is measured by `npm run bench -- prepare`, not
// here: tests do not time.)

import { describe, expect, it } from 'vitest';
import { loadConfig } from '../dist/src/config.js';
import { WorkerPools } from '../dist/src/worker/pool.js';
import { instrument } from '../dist/src/metering/instrument.js';
import { parseModule } from '../dist/src/wasm/module.js';
import { generateModule } from '../dist/src/wasm/synthetic.js';
import { startWarmUp, stopWarmUp } from '../dist/src/worker/warmup.js';

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

  it('runs every round when no task arrives, then stops for good once a real task has arrived', async () => {
    expect(await startWarmUp(3)).toBe(3);
    const pending = startWarmUp(1_000);
    stopWarmUp(); // what prepare() does on its first task
    expect(await pending).toBe(0);
    expect(await startWarmUp(5)).toBe(0);
  });

  it('a server\'s preparation threads have warmed up before their first module; the CLI\'s have not', async () => {
    const config = loadConfig({ WASMBOX_PREPARE_WORKERS: '1' });
    const module = generateModule(8 * 1024, 3).bytes;
    const rounds = async (warmUpPreparation: boolean): Promise<number> => {
      const pools = new WorkerPools(config, { warmUpPreparation });
      try {
        // Generous: ten rounds of a 64 KiB module take about 150 ms on this project's CI machine.
        await new Promise((r) => setTimeout(r, 3_000));
        const r = await pools.prepareModule(module, 'large');
        if (!r.ok) throw new Error(`preparation failed: ${r.code} ${r.message}`);
        return r.timings.warmUpRounds;
      } finally {
        await pools.close();
      }
    };
    expect(await rounds(true)).toBe(10);
    expect(await rounds(false)).toBe(0);
  }, 30_000);
});
