// The embedded module store: one file per module on local disk, under the configured data
// directory.
//
//   <dir>/modules/<first 2 hex>/<64 hex>.wasm   the module's bytes (its presence means "stored")
//   <dir>/modules/<first 2 hex>/<64 hex>.json   { moduleId, description, storedAt }
//   <dir>/tmp/                                  writes in progress (cleared on open)
//   <dir>/corrupt/                              copies that failed verification (kept for inspection)
//
// Writes are atomic: each file is written under tmp/, fsynced, then renamed into place (rename is
// atomic within one file system), the description before the bytes, and the directory is fsynced.
// A crash mid-write leaves at most a file in tmp/, never a partial module. Reads verify the bytes
// against their content address, so a file damaged on disk is detected and refused, never run.

import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { ModuleDescription } from '../worker/protocol.js';
import { MODULE_ID_PATTERN, moduleIdOf } from './module-id.js';
import { CorruptModuleError, type ModuleStore, type StoreUsage, type StoredDescription, StoreFullError } from './types.js';


export interface FsStoreOptions {
  dir: string;
  /** Total bytes of stored modules. */
  maxBytes: number;
}

export class FsModuleStore implements ModuleStore {
  readonly kind = 'fs';
  private readonly dir: string;
  private readonly maxBytes: number;
  private bytes = 0;
  private modules = 0;
  /** Sizes of the modules known to be stored, so usage stays right without rescanning. */
  private readonly sizes = new Map<string, number>();
  /** Modules whose bytes this process has read and verified against their id. */
  private readonly verified = new Set<string>();
  private readonly pending = new Map<string, Promise<{ created: boolean; record: StoredDescription }>>();

  constructor(options: FsStoreOptions) {
    this.dir = path.resolve(options.dir);
    this.maxBytes = options.maxBytes;
  }

  async open(): Promise<void> {
    await mkdir(path.join(this.dir, 'modules'), { recursive: true });
    await rm(path.join(this.dir, 'tmp'), { recursive: true, force: true });
    await mkdir(path.join(this.dir, 'tmp'), { recursive: true });
    this.sizes.clear();
    for (const shard of await readdir(path.join(this.dir, 'modules'))) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      for (const file of await readdir(path.join(this.dir, 'modules', shard))) {
        const m = /^([0-9a-f]{64})\.wasm$/.exec(file);
        if (!m) continue;
        const s = await stat(path.join(this.dir, 'modules', shard, file));
        this.sizes.set(`sha256:${m[1]}`, s.size);
      }
    }
    this.recount();
  }

  async has(moduleId: string): Promise<boolean> {
    return this.sizes.has(moduleId);
  }

  async getBytes(moduleId: string): Promise<Uint8Array | null> {
    const file = this.file(moduleId, 'wasm');
    if (!file) return null;
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const actual = moduleIdOf(bytes);
    if (actual !== moduleId) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, `its bytes hash to ${actual}`);
    }
    this.verified.add(moduleId);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  async getDescription(moduleId: string): Promise<StoredDescription | null> {
    const file = this.file(moduleId, 'json');
    if (!file) return null;
    if (!(await exists(this.file(moduleId, 'wasm')!))) return null;
    // Verify the bytes once per process before vouching for them: a copy damaged on disk is not
    // described as stored (nor kept when the same module is uploaded again), it is quarantined.
    if (!this.verified.has(moduleId) && (await this.getBytes(moduleId)) === null) return null;
    let record: StoredDescription;
    try {
      record = JSON.parse(await readFile(file, 'utf8')) as StoredDescription;
    } catch (err) {
      if (!(await exists(this.file(moduleId, 'wasm')!))) return null; // deleted meanwhile
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, isNotFound(err) ? 'its description is missing' : 'its description is not valid JSON');
    }
    if (record?.moduleId !== moduleId || typeof record.description !== 'object' || record.description === null) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, 'its description belongs to another module');
    }
    const size = this.sizes.get(moduleId);
    if (size !== undefined && record.description.size !== size) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, `its file is ${size} bytes, not ${record.description.size}`);
    }
    return record;
  }

  put(moduleId: string, bytes: Uint8Array, description: ModuleDescription): Promise<{ created: boolean; record: StoredDescription }> {
    // Concurrent uploads of one module share one write; only the upload that started it created
    // the module, the others find it already stored.
    const p = this.pending.get(moduleId);
    if (p) return p.then(({ record }) => ({ created: false, record }));
    const write = this.write(moduleId, bytes, description).finally(() => this.pending.delete(moduleId));
    this.pending.set(moduleId, write);
    return write;
  }

  private async write(moduleId: string, bytes: Uint8Array, description: ModuleDescription): Promise<{ created: boolean; record: StoredDescription }> {
    const wasm = this.file(moduleId, 'wasm');
    const json = this.file(moduleId, 'json');
    if (!wasm || !json) throw new Error(`not a module id: ${moduleId}`);
    if (this.sizes.has(moduleId)) {
      try {
        const existing = await this.getDescription(moduleId);
        if (existing) return { created: false, record: existing };
      } catch (err) {
        if (!(err instanceof CorruptModuleError)) throw err;
        // The damaged copy was quarantined: store this good one in its place.
      }
      // Known but gone (removed from outside): its old size must not count against this write.
      this.sizes.delete(moduleId);
      this.recount();
    }
    if (this.bytes + bytes.length > this.maxBytes) {
      throw new StoreFullError(
        `storing this module (${bytes.length} bytes) would take the module store past its maximum of ${this.maxBytes} bytes ` +
          `(${this.bytes} bytes in ${this.modules} modules are stored); delete modules first`,
      );
    }
    // Reserve the space before the first await, so parallel uploads cannot overshoot together.
    this.sizes.set(moduleId, bytes.length);
    this.recount();
    const record: StoredDescription = { moduleId, description, storedAt: new Date().toISOString() };
    try {
      await mkdir(path.dirname(wasm), { recursive: true });
      await this.atomicWrite(json, Buffer.from(JSON.stringify(record)));
      await this.atomicWrite(wasm, bytes);
      await fsyncDir(path.dirname(wasm));
    } catch (err) {
      this.sizes.delete(moduleId);
      this.recount();
      await Promise.all([unlink(wasm).catch(() => {}), unlink(json).catch(() => {})]);
      throw err;
    }
    this.verified.add(moduleId);
    return { created: true, record };
  }

  async delete(moduleId: string): Promise<boolean> {
    const wasm = this.file(moduleId, 'wasm');
    const json = this.file(moduleId, 'json');
    if (!wasm || !json) return false;
    await this.pending.get(moduleId)?.catch(() => {});
    let removed = true;
    // The bytes first: without them the module is not stored, whatever happens next.
    await unlink(wasm).catch((err: unknown) => {
      if (isNotFound(err)) removed = false;
      else throw err;
    });
    await unlink(json).catch(() => {});
    this.verified.delete(moduleId);
    this.sizes.delete(moduleId);
    this.recount();
    return removed;
  }

  usage(): StoreUsage {
    return { modules: this.modules, bytes: this.bytes };
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.pending.values());
  }

  private file(moduleId: string, ext: 'wasm' | 'json'): string | null {
    const m = MODULE_ID_PATTERN.exec(moduleId);
    if (!m) return null;
    const hex = m[1]!;
    return path.join(this.dir, 'modules', hex.slice(0, 2), `${hex}.${ext}`);
  }

  private async atomicWrite(target: string, data: Uint8Array): Promise<void> {
    const tmp = path.join(this.dir, 'tmp', `${path.basename(target)}.${randomUUID()}`);
    const fh = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  }

  private async quarantine(moduleId: string): Promise<void> {
    const dest = path.join(this.dir, 'corrupt');
    await mkdir(dest, { recursive: true });
    const stamp = Date.now();
    for (const ext of ['wasm', 'json'] as const) {
      const f = this.file(moduleId, ext)!;
      await rename(f, path.join(dest, `${path.basename(f)}.${stamp}`)).catch(() => {});
    }
    this.verified.delete(moduleId);
    this.sizes.delete(moduleId);
    this.recount();
  }

  private recount(): void {
    let total = 0;
    for (const n of this.sizes.values()) total += n;
    this.bytes = total;
    this.modules = this.sizes.size;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ENOENT';
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => null);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic.
  } finally {
    await fh.close();
  }
}
