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
  /** What the stored modules count against the store's maximum (for the local-disk store, their
   *  files plus per-file overhead; see fs-store.ts). */
  bytes: number;
}

/** Operations on one module id take effect one at a time, in the order they were called, so after
 *  concurrent calls the store holds what the last answer said; has() changes only when a put or
 *  delete completes. */
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

/** Accepting the module would take the store past one of its configured maximums. The messages
 *  name the cap, so a caller knows which one was hit and that deleting modules frees room. */
export class StoreFullError extends Error {
  override readonly name = 'StoreFullError';

  /** Over WASMBOX_STORE_MAX_MB. `neededBytes` is what the module would count, `detail` what it is made of. */
  static bytes(neededBytes: number, detail: string, maxBytes: number, usedBytes: number, usedModules: number): StoreFullError {
    return new StoreFullError(
      `storing this module needs ${neededBytes} bytes of the module store (${detail}), which would take it past its maximum of ` +
        `${maxBytes} bytes (WASMBOX_STORE_MAX_MB); ${usedBytes} bytes in ${usedModules} modules are stored or being stored. ` +
        `${FREE_ROOM}`,
    );
  }

  /** Over WASMBOX_STORE_MAX_MODULES. */
  static modules(maxModules: number): StoreFullError {
    return new StoreFullError(`the module store already holds its maximum of ${maxModules} modules (WASMBOX_STORE_MAX_MODULES). ${FREE_ROOM}`);
  }
}

const FREE_ROOM = 'To store this one, delete modules that are no longer needed first (DELETE /modules/{moduleId})';
