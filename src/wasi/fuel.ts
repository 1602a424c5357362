// The runner's side of WASI fuel: host calls charge the instrumented fuel global, and proc_exit
// halts the guest through it.
//
// The instrumented module keeps `consumed - limit` in a hidden mutable i64 global and traps at
// its next check (function entry or loop header) once the value is above 0. Charging a host call
// adds to that global, so the guest pays for host work exactly as for its own instructions.
//
// Halting: proc_exit throws a JS exception to unwind the guest, but a guest built with the
// exception-handling proposal can catch any JS exception (`catch_all`, `catch_all_ref`) and carry
// on. So the host also calls `halt()`: the consumed fuel is frozen at that moment and the global
// is pushed far past 0, so whatever the guest does after catching, it traps at its next check;
// what it can run before that check is straight-line code (no loop, no call into a guest
// function), and every WASI call it makes is refused by the host (see WasiHost). The runner then
// reports the run by the host's `exitCode`, not by how the guest's code ended, and uses
// `consumed()`, which excludes the poisoned value.

/** The host's handle on the fuel global: the guest's accessor functions for it. */
export interface FuelCell {
  read(): bigint;
  write(value: bigint): void;
}

/** Value the fuel global is set to on halt: over 0 by far more than any straight-line code adds. */
export const HALTED_FUEL = 1n << 62n;

export class GuestFuel {
  private global: FuelCell | null = null;
  private frozen: bigint | null = null;

  /** @param limit the run's fuel limit. */
  constructor(readonly limit: bigint) {}

  /** Call once the instance exists, before any guest code runs; sets the budget. */
  attach(global: FuelCell): void {
    this.global = global;
    global.write(-this.limit);
  }

  /**
   * Adds `units` to the consumed fuel; false when the budget is now exhausted (the host must then
   * not do the work). The units stay charged either way, so a refused call still ends the run as
   * fuel_exhausted: the guest asked for more than its budget.
   */
  readonly charge = (units: number): boolean => {
    const g = this.global;
    if (!g) return false; // no budget attached: fail closed
    const v = g.read() + BigInt(units);
    g.write(v);
    return v <= 0n;
  };

  /** Freezes the account and poisons the global so the guest traps at its next check. */
  readonly halt = (): void => {
    const g = this.global;
    if (!g || this.frozen !== null) return;
    this.frozen = this.limit + g.read();
    g.write(HALTED_FUEL);
  };

  /** Fuel consumed so far: frozen at halt; may exceed the limit (the runner caps and reports it). */
  consumed(): bigint {
    if (this.frozen !== null) return this.frozen;
    return this.global ? this.limit + this.global.read() : 0n;
  }
}
