// Per-caller concurrency quota (WASMBOX_MAX_CONCURRENT_PER_KEY): runs and preparations a caller
// may have in flight at once, counted from admission to answer. Over it, 429 rate_limited with
// Retry-After: the caller is told to pace itself instead of filling the shared queue.

import { ServiceError } from '../errors.js';

export class ConcurrencyQuota {
  private readonly inflight = new Map<string, number>();

  constructor(readonly maxPerCaller: number) {}

  /** Takes one unit for `caller` or refuses; the returned function gives it back (idempotent). */
  take(caller: string): () => void {
    const n = this.inflight.get(caller) ?? 0;
    if (n >= this.maxPerCaller) {
      throw new ServiceError(
        'rate_limited',
        `this caller already has ${n} runs or preparations in flight, the most this server allows (WASMBOX_MAX_CONCURRENT_PER_KEY=${this.maxPerCaller}); wait for one to finish`,
        { 'retry-after': '1' },
      );
    }
    this.inflight.set(caller, n + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = (this.inflight.get(caller) ?? 1) - 1;
      if (left <= 0) this.inflight.delete(caller);
      else this.inflight.set(caller, left);
    };
  }
}
