// src/worker/piscina-interface.ts: piscina hands its load balancer one interface object per
// worker, built once, instead of a new object with six fresh getters per dispatch (which V8 gives a
// hidden class of its own each time, promoting garbage to the old generation). The object must still
// answer the worker's live state: this drives a real pool through a balancer that records what it
// is given.

import { Piscina } from 'piscina';
import { describe, expect, it } from 'vitest';
import { piscinaInterfaceCached } from '../dist/src/worker/piscina-interface.js';

interface Seen {
  worker: object;
  id: number;
  usage: number;
}

describe('piscina worker interface', () => {
  it('is installed against the piscina this project ships with', () => {
    expect(piscinaInterfaceCached).toBe(true);
  });

  it('gives the balancer one object per worker across dispatches, whose getters read the live state', async () => {
    const seen: Seen[] = [];
    const pool = new Piscina({
      filename: new URL('./helpers/sleep-thread.cjs', import.meta.url).href,
      minThreads: 1,
      maxThreads: 1,
      loadBalancer: (_task, workers) => {
        for (const w of workers) seen.push({ worker: w, id: w.id, usage: w.currentUsage });
        return workers.find((w) => w.currentUsage === 0) ?? null;
      },
    });
    try {
      const first = pool.run({ ms: 200 });
      // Dispatched while the first runs: the balancer sees the same worker, busy.
      await new Promise((r) => setTimeout(r, 50));
      const second = pool.run({ ms: 0 });
      const [a, b] = await Promise.all([first, second]);
      expect(a).toBe(b);
      await pool.run({ ms: 0 });
      expect(seen.length).toBeGreaterThanOrEqual(3);
      expect(new Set(seen.map((s) => s.worker)).size).toBe(1);
      expect(seen.every((s) => s.id === a)).toBe(true);
      expect(seen[0]!.usage).toBe(0);
      expect(seen.some((s) => s.usage === 1)).toBe(true);
      expect(seen.at(-1)!.usage).toBe(0);
    } finally {
      await pool.destroy();
    }
  });
});
