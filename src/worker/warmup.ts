// The preparation thread's warm-up. Parsing, instrumenting and describing a module is JavaScript,
// and V8 runs it in its interpreter until it has been run enough to be optimized: in a fresh thread
// the first 1 MiB module took 150-220 ms to instrument, the tenth 35 ms. So a server's new preparation
// thread first prepares a generated module of 64 KiB (src/wasm/synthetic.ts: loops, blocks,
// branches, calls, memory access, the shapes real code has) ten times, 110-145 ms of work, after
// which the first real 1 MiB module instruments in 52-75 ms (166-248 ms without; measured through
// the service's pools). It compiles nothing: compilation is the engine's own code and has nothing
// to warm, so the same bytes serve every round.
//
// The rounds run one per turn of the thread's event loop, at the thread's low priority, and stop
// as soon as a real task arrives: a real module warms the same code, and it must not wait behind
// a generated one for more than one round. (The preparation pools wait for tasks on the event loop,
// piscina's atomics disabled: a thread blocked in Atomics.wait would never reach its rounds.)

import { instrumentParsed } from '../metering/instrument.js';
import { describeModule } from '../wasm/describe.js';
import { parseModule } from '../wasm/module.js';
import { generateModule } from '../wasm/synthetic.js';

const WARMUP_BYTES = 64 * 1024;
const WARMUP_ROUNDS = 10;

let stopped = false;
let roundsDone = 0;

/** Rounds this thread has done (all its warm-ups together). */
export function warmUpRounds(): number {
  return roundsDone;
}

/** A real task has arrived: no more warm-up rounds. */
export function stopWarmUp(): void {
  stopped = true;
}

/**
 * Starts the warm-up; resolves with the number of rounds done (fewer when a real task arrived
 * first, or when a round failed: the warm-up never fails the thread).
 */
export function startWarmUp(rounds = WARMUP_ROUNDS): Promise<number> {
  return new Promise((resolve) => {
    let done = 0;
    let bytes: Uint8Array | null = null;
    const round = (): void => {
      if (stopped || done >= rounds) {
        resolve(done);
        return;
      }
      try {
        bytes ??= generateModule(WARMUP_BYTES, 7).bytes;
        const parsed = parseModule(bytes);
        instrumentParsed(parsed, { maxTableElements: 10_000 });
        describeModule(parsed);
      } catch {
        resolve(done);
        return;
      }
      done++;
      roundsDone++;
      setImmediate(round);
    };
    setImmediate(round);
  });
}
