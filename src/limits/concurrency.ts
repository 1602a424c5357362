// Per-caller concurrency quota (WASMBOX_MAX_CONCURRENT_PER_KEY): runs and preparations a caller
// may have in flight at once, counted from admission to answer. Over it, 429 rate_limited with
// Retry-After: the caller is told to pace itself instead of filling the shared queue.
//
// Two implementations of one interface: counted in this process (the embedded default), or
// across every replica sharing Redis (src/limits/shared-concurrency.ts, when REDIS_URL is set).

import { ServiceError } from '../errors.js';

export interface CallerQuota {
  readonly maxPerCaller: number;
  /** Takes one unit for `caller` or refuses (429 rate_limited; 503 backend_unavailable when the
   *  count lives in Redis and Redis is away); the returned function gives it back (idempotent). */
  take(caller: string): Promise<() => void>;
  /** Stops background work (lease renewal); units still held lapse on their own. */
  close(): Promise<void>;
}

/** The refusal when `caller` already holds `held` units of `max`; `where` says what counted them. */
export function quotaExceeded(held: number, max: number, where: string): ServiceError {
  return new ServiceError(
    'rate_limited',
    `this caller already has ${held} runs or preparations in flight ${where}, the most allowed (WASMBOX_MAX_CONCURRENT_PER_KEY=${max}); wait for one to finish`,
    { 'retry-after': '1' },
  );
}

export class ConcurrencyQuota implements CallerQuota {
  private readonly inflight = new Map<string, number>();

  constructor(readonly maxPerCaller: number) {}

  async take(caller: string): Promise<() => void> {
    return this.takeNow(caller);
  }

  /** take(), synchronously. */
  takeNow(caller: string): () => void {
    const n = this.inflight.get(caller) ?? 0;
    if (n >= this.maxPerCaller) throw quotaExceeded(n, this.maxPerCaller, 'on this server');
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

  async close(): Promise<void> {}
}
