// The preparation thread's warm-up. Parsing, instrumenting and describing a module is JavaScript,
// and V8 runs it in its interpreter and baseline tiers until it has run enough to be optimized: in
// a fresh thread the first 1 MiB module took 130-260 ms to instrument, the fifth 30-40 ms. So a
// server's new preparation thread first prepares a generated module of 64 KiB
// (src/wasm/synthetic.ts: loops, blocks, branches, calls, memory access, the shapes real code has)
// until the rewriting code is optimized: its rounds get faster in steps (V8's tiers), and the last
// step, the optimizing compiler's code for the rewriting loop, makes a round about 30 times faster
// than the first. The warm-up ends once a round takes at most 1/16 of the first (at least
// WARMUP_MIN_ROUNDS, at most WARMUP_MAX_ROUNDS: 12-40 rounds, 180-300 ms of CPU, in nine fresh
// threads of `npm run bench -- prepare` on the 2-core machine this was measured on; ten rounds,
// where it used to stop, left the first 1 MiB module at 90-150 ms). It compiles nothing: compilation is the engine's own code and has nothing to warm,
// so the same bytes serve every round.
//
// The rounds run one per turn of the thread's event loop, at the thread's low priority, and stop
// as soon as a real preparation is waiting or running anywhere in the server (the pools count
// them in the shared state, WARM_ACTIVE): a real module warms the same code, and neither it nor
// its thread's CPU share may wait behind generated ones. (The preparation pools wait for tasks on
// the event loop, piscina's atomics disabled: a thread blocked in Atomics.wait would never reach
// its rounds.) Each thread adds itself to WARM_DONE when its warm-up ends, for whatever reason;
// the server reports ready (GET /readyz) once every preparation thread it started with has.

import { performance } from 'node:perf_hooks';
import { instrumentParsed } from '../metering/instrument.js';
import { describeModule } from '../wasm/describe.js';
import { parseModule } from '../wasm/module.js';
import { generateModule } from '../wasm/synthetic.js';
import { WARM_ACTIVE, WARM_DONE, WARM_ROUNDS } from './protocol.js';

const WARMUP_BYTES = 64 * 1024;
export const WARMUP_MIN_ROUNDS = 10;
export const WARMUP_MAX_ROUNDS = 40;
/** The warm-up is done when a round takes at most this fraction of the first. */
const WARMUP_SPEEDUP = 16;

let stopped = false;
let roundsDone = 0;

/** Rounds this thread has done (all its warm-ups together). */
export function warmUpRounds(): number {
  return roundsDone;
}

/** A real task has arrived in this thread: no more warm-up rounds. */
export function stopWarmUp(): void {
  stopped = true;
}

export interface WarmUpOptions {
  /** Rounds at most (default WARMUP_MAX_ROUNDS). */
  maxRounds?: number;
  /** Rounds at least before the speed-up can end it (default WARMUP_MIN_ROUNDS). */
  minRounds?: number;
  /** The state shared with the pools (protocol.ts warmUpState()). */
  shared?: SharedArrayBuffer;
}

/**
 * Starts the warm-up; resolves with the number of rounds done (fewer when a real task arrived
 * first, or when a round failed: the warm-up never fails the thread).
 */
export function startWarmUp(options: WarmUpOptions = {}): Promise<number> {
  const maxRounds = options.maxRounds ?? WARMUP_MAX_ROUNDS;
  const minRounds = Math.min(options.minRounds ?? WARMUP_MIN_ROUNDS, maxRounds);
  const shared = options.shared ? new Int32Array(options.shared) : null;
  return new Promise((resolve) => {
    let done = 0;
    let firstMs = 0;
    let bytes: Uint8Array | null = null;
    const finish = (): void => {
      if (shared) Atomics.add(shared, WARM_DONE, 1);
      resolve(done);
    };
    const round = (): void => {
      if (stopped || done >= maxRounds || (shared && Atomics.load(shared, WARM_ACTIVE) > 0)) return finish();
      try {
        bytes ??= generateModule(WARMUP_BYTES, 7).bytes;
        const t = performance.now();
        const parsed = parseModule(bytes);
        instrumentParsed(parsed, { maxTableElements: 10_000 });
        describeModule(parsed);
        const ms = performance.now() - t;
        if (done === 0) firstMs = ms;
        done++;
        roundsDone++;
        if (shared) Atomics.add(shared, WARM_ROUNDS, 1);
        if (done >= minRounds && ms <= firstMs / WARMUP_SPEEDUP) return finish();
      } catch {
        return finish();
      }
      setImmediate(round);
    };
    setImmediate(round);
  });
}
