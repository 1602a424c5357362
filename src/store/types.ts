// The module store: content-addressed module bytes plus the description computed when they were
// stored. One small interface, free of file-system assumptions, so a shared backend for fleets can
// sit behind it; the embedded default is the local-disk store in fs-store.ts.

import type { ModuleDescription } from '../worker/protocol.js';

export interface StoredDescription {
  moduleId: string;
  description: ModuleDescription;
  /** When the module was first stored (ISO 8601). */
  storedAt: string;
}

export interface StoreUsage {
  modules: number;
  bytes: number;
}

export interface ModuleStore {
  /** A short name for logs and /readyz ("fs"). */
  readonly kind: string;
  /** Opens the store (creates what it needs, clears leftovers of interrupted writes). */
  open(): Promise<void>;
  /** Whether the module is stored (cheap: no bytes are read or verified). */
  has(moduleId: string): Promise<boolean>;
  /** The module's bytes, verified against its id; null when it is not stored.
   *  Throws CorruptModuleError when the stored copy does not match its id. */
  getBytes(moduleId: string): Promise<Uint8Array | null>;
  /** The stored description; null when the module is not stored. */
  getDescription(moduleId: string): Promise<StoredDescription | null>;
  /** Stores bytes under their id, atomically: a reader sees the whole module or none of it.
   *  Resolves `created: false` when the module was already stored. */
  put(moduleId: string, bytes: Uint8Array, description: ModuleDescription): Promise<{ created: boolean; record: StoredDescription }>;
  /** Removes a module; false when it was not stored. */
  delete(moduleId: string): Promise<boolean>;
  usage(): StoreUsage;
  close(): Promise<void>;
}

/** The stored copy of a module no longer matches its content address. */
export class CorruptModuleError extends Error {
  override readonly name = 'CorruptModuleError';
  constructor(
    readonly moduleId: string,
    detail: string,
  ) {
    super(`the stored copy of ${moduleId} is corrupt (${detail})`);
  }
}

/** Accepting the module would take the store past its configured maximum. */
export class StoreFullError extends Error {
  override readonly name = 'StoreFullError';
}
