// Resource limits: one type, one defaults constant, server maximums from the configuration.
// A request's limits are resolved against the policy here and refused when out of range, never
// trusted. Where each limit is enforced:
// - fuel: src/metering (instrumented checks) and src/worker/guest.ts (the final account);
// - memoryMb: rewrite.ts turns the module's memory into an import, and src/worker/guest.ts
//   creates it with `maximum` at the limit;
// - table elements (a server setting): rewrite.ts caps every table's maximum, and
//   src/worker/guest.ts creates the tables;
// - timeoutMs: src/worker/pool.ts aborts the worker from the main thread at the deadline.

import { ServiceError } from '../errors.js';

export interface Limits {
  /** Fuel budget: wasmtime-compatible operator count plus per-unit costs (src/metering/costs.ts). */
  fuel: number;
  /** Linear memory cap in MiB (2^20 bytes): memoryLimitBytes = memoryMb * 1048576. */
  memoryMb: number;
  /** Wall-clock deadline for the guest's run, in milliseconds, enforced from outside its thread. */
  timeoutMs: number;
}

export type LimitName = keyof Limits;
export const LIMIT_NAMES: readonly LimitName[] = ['fuel', 'memoryMb', 'timeoutMs'];

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({ fuel: 100_000_000, memoryMb: 64, timeoutMs: 1_000 });
export const DEFAULT_MAX_LIMITS: Readonly<Limits> = Object.freeze({ fuel: 10_000_000_000, memoryMb: 1_024, timeoutMs: 30_000 });

/** The largest memory a 32-bit WebAssembly memory can address: 65536 pages of 64 KiB. */
export const MAX_MEMORY_MB = 4_096;
export const MIB = 1_048_576;
export const WASM_PAGE_BYTES = 65_536;

export interface LimitPolicy {
  defaults: Limits;
  max: Limits;
}

export function memoryLimitBytes(limits: Limits): number {
  return limits.memoryMb * MIB;
}

export function memoryLimitPages(limits: Limits): number {
  return (limits.memoryMb * MIB) / WASM_PAGE_BYTES;
}

/** Fills unset limits with the defaults; refuses values below 1 or above the server maximum. */
export function resolveLimits(requested: Partial<Limits> | undefined, policy: LimitPolicy, field = 'limits'): Limits {
  const out = { ...policy.defaults };
  for (const name of LIMIT_NAMES) {
    const v = requested?.[name];
    if (v === undefined) continue;
    const max = policy.max[name];
    if (!Number.isInteger(v) || v < 1 || v > max) {
      throw new ServiceError(
        'limit_out_of_range',
        `${field}.${name} must be an integer from 1 to ${max} on this server; got ${v}`,
      );
    }
    out[name] = v;
  }
  return out;
}
