// An in-memory module store: the ModuleStore interface over a Map, for processes that must not
// write to disk (the command-line tool, which runs one module and exits) and for tests. Nothing
// outlives the process.

import { type ModuleStore, type StoreUsage, type StoredDescription, StoreFullError } from './types.js';
import type { ModuleDescription } from '../worker/protocol.js';

export interface MemoryModuleStoreOptions {
  /** Total bytes of stored modules; unlimited when unset. */
  maxBytes?: number;
  /** How many modules may be stored; unlimited when unset. */
  maxModules?: number;
}

export class MemoryModuleStore implements ModuleStore {
  readonly kind = 'memory';
  private readonly modules = new Map<string, { bytes: Uint8Array; record: StoredDescription }>();
  private bytes = 0;

  constructor(private readonly options: MemoryModuleStoreOptions = {}) {}

  async open(): Promise<void> {}

  async has(moduleId: string): Promise<boolean> {
    return this.modules.has(moduleId);
  }

  /** A copy: the stored bytes are private, so they always match their id. */
  async getBytes(moduleId: string): Promise<Uint8Array | null> {
    const entry = this.modules.get(moduleId);
    return entry ? entry.bytes.slice() : null;
  }

  async getDescription(moduleId: string): Promise<StoredDescription | null> {
    return this.modules.get(moduleId)?.record ?? null;
  }

  async put(moduleId: string, bytes: Uint8Array, description: ModuleDescription): Promise<{ created: boolean; record: StoredDescription }> {
    const existing = this.modules.get(moduleId);
    if (existing) return { created: false, record: existing.record };
    const { maxBytes, maxModules } = this.options;
    if (maxModules !== undefined && this.modules.size + 1 > maxModules) throw StoreFullError.modules(maxModules);
    if (maxBytes !== undefined && this.bytes + bytes.length > maxBytes) {
      throw StoreFullError.bytes(bytes.length, `its ${bytes.length} bytes`, maxBytes, this.bytes, this.modules.size);
    }
    const record: StoredDescription = { moduleId, description, storedAt: new Date().toISOString() };
    this.modules.set(moduleId, { bytes: bytes.slice(), record });
    this.bytes += bytes.length;
    return { created: true, record };
  }

  async delete(moduleId: string): Promise<boolean> {
    const entry = this.modules.get(moduleId);
    if (!entry) return false;
    this.modules.delete(moduleId);
    this.bytes -= entry.bytes.length;
    return true;
  }

  usage(): StoreUsage {
    return { modules: this.modules.size, bytes: this.bytes };
  }

  async close(): Promise<void> {
    this.modules.clear();
    this.bytes = 0;
  }
}
