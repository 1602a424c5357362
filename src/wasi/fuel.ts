// The runner's side of fuel: the account the instrumented code keeps, handed out in slices so the
// host can end a run at its deadline with the account intact; host calls charge it, and
// proc_exit halts the guest through it.
//
// Slices. The instrumented module keeps `consumed - sliceEnd` in a hidden mutable i64 global;
// its checks (function entries and loops) call the host's `refill` when the value is
// above 0 (src/limits/rewrite.ts appends the `$slice` function that does). `refill` looks at the
// account and the clock, then either grants the next slice (moves `sliceEnd` on and rebases the
// global) and answers 0, or answers 1 and the guest executes `unreachable`, a trap its exception
// handlers cannot catch. It answers 1 when the budget is spent (consumed > limit: the run is
// fuel_exhausted), when the deadline has passed (the run is a timeout, and `consumed` is exact to
// the same precision as a trap's: the checks sit where a trap's account does), or after a halt.
// This is wasmtime's `fuel_async_yield_interval` turned to a deadline: the fast path stays a
// compare and an untaken branch, and the host is reached about once per SLICE_TARGET_MS of guest
// execution, the slice being sized from the guest's measured rate of fuel per millisecond.
//
// Host calls charge the global directly, so the guest pays for host work exactly as for its own
// instructions. A host that must stop the guest soon (a sleep cut at the deadline) calls
// `interrupt()`: the slice is ended where the account stands, so the next check asks the host.
//
// Halting: proc_exit throws a JS exception to unwind the guest, but a guest built with the
// exception-handling proposal can catch any JS exception (`catch_all`, `catch_all_ref`) and carry
// on. So the host also calls `halt()`: the consumed fuel is frozen at that moment and the global
// is pushed far past 0, so whatever the guest does after catching, its next check asks the host,
// which ends the run; what it can run before that check is straight-line code (no loop, no call
// into a guest function), and every WASI call it makes is refused by the host (see WasiHost). The
// runner then reports the run by the host's `exitCode`, not by how the guest's code ended, and
// uses `consumed()`, which excludes the poisoned value.
//
// Progress. At every slice boundary the account is published to a shared cell (PROGRESS_*), so
// the main thread can read the fuel consumed while the run is in flight, and still has the last
// figures if it must terminate a guest it cannot reach (blocked in `memory.atomic.wait32`).

import { performance } from 'node:perf_hooks';

/** The host's handle on the fuel global: the guest's accessor functions for it. */
export interface FuelCell {
  read(): bigint;
  write(value: bigint): void;
}

/** Value the fuel global is set to on halt: over 0 by far more than any straight-line code adds. */
export const HALTED_FUEL = 1n << 62n;

/** Guest execution one slice aims at: how late past its deadline a reachable guest can end. */
export const SLICE_TARGET_MS = 0.5;
/** The first slice, before the guest's rate is known (about 50 µs of typical code). */
export const FIRST_SLICE = 50_000n;
/** Bounds on a slice. The largest is what the fastest code (about 4 units/ns) runs in about 2 ms;
 *  a slice grows at most 4x per refill, so a guest that turns from cheap fast work to slow work
 *  overshoots by at most a few slices. */
export const MIN_SLICE = 1_000n;
export const MAX_SLICE = 8_000_000n;

/** The shared progress cell: BigInt64Array slots. */
export const PROGRESS_FUEL = 0;
export const PROGRESS_MEMORY = 1;
export const PROGRESS_SLOTS = 2;

export function progressBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(PROGRESS_SLOTS * 8);
}

export interface FuelOptions {
  /** The run's wall-clock limit, counted from startClock() (when guest code starts); none: only
   *  fuel ends the run. */
  timeoutMs?: number;
  /** Where the account is published at every slice boundary (progressBuffer()). */
  progress?: SharedArrayBuffer;
  /** The guest's current linear memory size in bytes, for the progress cell. */
  memoryBytes?: () => number;
  /** false: grant the whole budget as one slice (for code instrumented without slices, whose
   *  checks trap instead of asking the host; the benchmark's baseline). Default true. */
  slices?: boolean;
}

export class GuestFuel {
  private global: FuelCell | null = null;
  private frozen: bigint | null = null;
  /** Where the current slice ends: min(limit, consumed at its grant + its size). */
  private sliceEnd = 0n;
  private sliceSize = FIRST_SLICE;
  private grantedAt = 0;
  private consumedAtGrant = 0n;
  private readonly progress: BigInt64Array | null;
  /** performance.now() past which the run ends at its next check; Infinity until startClock(). */
  private deadline = Infinity;
  /** The run passed its deadline at a check: the account was frozen there. */
  timedOut = false;

  /** @param limit the run's fuel limit. */
  constructor(
    readonly limit: bigint,
    private readonly options: FuelOptions = {},
  ) {
    this.progress = options.progress ? new BigInt64Array(options.progress) : null;
  }

  /** Starts the deadline: call right before the guest's code starts (the start function). */
  startClock(): void {
    if (this.options.timeoutMs !== undefined) this.deadline = performance.now() + this.options.timeoutMs;
  }

  /** Call once the instance exists, before any guest code runs; grants the first slice. */
  attach(global: FuelCell): void {
    this.global = global;
    this.frozen = null;
    this.timedOut = false;
    this.sliceSize = this.options.slices === false ? this.limit : FIRST_SLICE;
    this.grant(0n, performance.now());
    this.publish(0n);
  }

  /**
   * The host's refill, called by the guest's `$slice` when a check finds the slice spent. 0: a new
   * slice was granted, carry on; 1: the run is over (the guest then traps on `unreachable`).
   */
  readonly refill = (): number => {
    const g = this.global;
    if (!g || this.frozen !== null) return 1;
    const consumed = this.sliceEnd + g.read();
    this.publish(consumed);
    if (consumed > this.limit) return 1; // fuel_exhausted: the runner sees consumed > limit
    const now = performance.now();
    const deadline = this.deadline;
    if (now >= deadline) {
      this.timedOut = true;
      this.frozen = consumed;
      g.write(HALTED_FUEL);
      return 1;
    }
    // Size the next slice from the rate of the one just spent, to last SLICE_TARGET_MS or what
    // is left before the deadline, whichever is shorter.
    const ms = now - this.grantedAt;
    const used = consumed - this.consumedAtGrant;
    const targetMs = Math.min(SLICE_TARGET_MS, deadline - now);
    let next = ms > 0.001 && used > 0n ? BigInt(Math.round((Number(used) / ms) * targetMs)) : this.sliceSize * 4n;
    if (next > this.sliceSize * 4n) next = this.sliceSize * 4n;
    if (next < MIN_SLICE) next = MIN_SLICE;
    if (next > MAX_SLICE) next = MAX_SLICE;
    this.sliceSize = next;
    this.grant(consumed, now);
    return 0;
  };

  private grant(consumed: bigint, now: number): void {
    const end = consumed + this.sliceSize;
    this.sliceEnd = end < this.limit ? end : this.limit;
    this.grantedAt = now;
    this.consumedAtGrant = consumed;
    this.global!.write(consumed - this.sliceEnd);
  }

  private publish(consumed: bigint): void {
    const p = this.progress;
    if (!p) return;
    Atomics.store(p, PROGRESS_FUEL, consumed < this.limit ? consumed : this.limit);
    if (this.options.memoryBytes) Atomics.store(p, PROGRESS_MEMORY, BigInt(this.options.memoryBytes()));
  }

  /** Publishes the final account (the runner calls it when the run ends). */
  finish(): void {
    this.publish(this.consumed());
  }

  /**
   * Adds `units` to the consumed fuel; false when the budget is now exhausted (the host must then
   * not do the work). The units stay charged either way, so a refused call still ends the run as
   * fuel_exhausted: the guest asked for more than its budget.
   */
  readonly charge = (units: number): boolean => {
    const g = this.global;
    if (!g) return false; // no budget attached: fail closed
    if (this.frozen !== null) return false;
    const v = g.read() + BigInt(units);
    g.write(v);
    return this.sliceEnd + v <= this.limit;
  };

  /** Ends the current slice where the account stands: the guest's next check asks the host
   *  (which ends the run if its deadline has passed). */
  readonly interrupt = (): void => {
    const g = this.global;
    if (!g || this.frozen !== null) return;
    const consumed = this.sliceEnd + g.read();
    this.sliceEnd = consumed - 1n;
    g.write(1n);
  };

  /** Freezes the account and poisons the global so the guest's next check ends the run. */
  readonly halt = (): void => {
    const g = this.global;
    if (!g || this.frozen !== null) return;
    this.frozen = this.sliceEnd + g.read();
    g.write(HALTED_FUEL);
  };

  /** Fuel consumed so far: frozen at halt or timeout; may exceed the limit (the runner caps and
   *  reports it). */
  consumed(): bigint {
    if (this.frozen !== null) return this.frozen;
    return this.global ? this.sliceEnd + this.global.read() : 0n;
  }

  /** Milliseconds left before the deadline (Infinity without one, or before startClock()). */
  remainingMs(): number {
    return this.deadline - performance.now();
  }
}
