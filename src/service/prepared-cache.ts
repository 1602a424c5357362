// Prepared modules (instrumented and compiled) by content address, bounded by a byte budget and
// evicted least-recently-used first. A module sent again costs neither instrumentation nor
// compilation: the compiled WebAssembly.Module is handed to the runner as it is.

import type { PrepareResult } from '../worker/protocol.js';

export type Prepared = Extract<PrepareResult, { ok: true }> & { moduleId: string };
export type Refusal = Extract<PrepareResult, { ok: false }>;
type Entry = { value: Prepared | Refusal; weight: number };

export class PreparedCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  /** The most recently used key: a hit on it leaves the order as it is. */
  private newest: string | undefined;

  constructor(readonly maxBytes: number) {}

  get(moduleId: string): Prepared | Refusal | undefined {
    const e = this.entries.get(moduleId);
    if (!e) return undefined;
    // Map iteration order is insertion order: re-inserting marks it most recently used. A hit on
    // the entry that already is skips it (the common case under load: one hot module), since each
    // delete and set leaves a deleted slot that the map reclaims by allocating a new table.
    if (moduleId !== this.newest) {
      this.entries.delete(moduleId);
      this.entries.set(moduleId, e);
      this.newest = moduleId;
    }
    return e.value;
  }

  set(moduleId: string, value: Prepared | Refusal): void {
    // Weighed in the preparation worker by what the entry holds (src/service/cache-weight.ts).
    const weight = value.ok ? value.weightBytes : 256 + 2 * value.message.length;
    if (weight > this.maxBytes) return;
    this.delete(moduleId);
    this.entries.set(moduleId, { value, weight });
    this.newest = moduleId;
    this.bytes += weight;
    for (const [id, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(id);
      this.bytes -= e.weight;
    }
  }

  delete(moduleId: string): void {
    const e = this.entries.get(moduleId);
    if (!e) return;
    this.entries.delete(moduleId);
    this.bytes -= e.weight;
    if (moduleId === this.newest) this.newest = undefined;
  }

  get size(): number {
    return this.entries.size;
  }

  get usedBytes(): number {
    return this.bytes;
  }
}
