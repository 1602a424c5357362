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
// A crash mid-write leaves at most a file in tmp/ or a description without its bytes, never a
// partial module; both are cleared at open. Reads verify the bytes against their content address,
// so a file damaged on disk is detected and refused, never run.
//
// Operations on one module id run one at a time, in the order they were called (a put, a delete
// and reads of the same module never interleave their file operations), so after any mix of
// concurrent calls the store holds what the last one answered. Operations on different ids run in
// parallel.
//
// Capacity: every stored module counts its bytes, its description and STORE_FILE_OVERHEAD_BYTES
// per file against `maxBytes`, and one against `maxModules`. The totals are kept as modules come
// and go (the directory is scanned once, at open), and space is reserved before a write starts so
// parallel uploads of different modules cannot overshoot a cap together.

import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { ModuleDescription } from '../worker/protocol.js';
import { MODULE_ID_PATTERN, moduleIdOf } from './module-id.js';
import { CorruptModuleError, type ModuleStore, type StoreUsage, type StoredDescription, StoreFullError } from './types.js';

/** What each file counts against the byte cap beyond its contents: its inode, its directory entry
 *  and the rest of its last file-system block (4 KiB on common file systems). Without it, millions
 *  of tiny modules would fit in a cap meant to bound the disk they take. */
export const STORE_FILE_OVERHEAD_BYTES = 4096;

export interface FsStoreOptions {
  dir: string;
  /** What stored modules may count in total: their bytes and descriptions, plus
   *  STORE_FILE_OVERHEAD_BYTES per file. */
  maxBytes: number;
  /** How many modules may be stored. */
  maxModules: number;
}

/** A stored module's share of the totals. */
interface StoredEntry {
  /** The size of its .wasm file (what its description must say). */
  moduleBytes: number;
  /** What it counts against maxBytes. */
  countedBytes: number;
}

export class FsModuleStore implements ModuleStore {
  readonly kind = 'fs';
  private readonly dir: string;
  private readonly maxBytes: number;
  private readonly maxModules: number;
  /** The stored modules: the source of has() and of the totals. */
  private readonly stored = new Map<string, StoredEntry>();
  /** The sum of `stored`'s countedBytes, kept as entries come and go. */
  private storedBytes = 0;
  /** Room held by writes in progress, so parallel uploads cannot overshoot a cap together. */
  private reservedBytes = 0;
  private reservedModules = 0;
  /** Modules whose bytes this process has read and verified against their id. */
  private readonly verified = new Set<string>();
  /** Per module id, the end of its queue of operations (see exclusive()). */
  private readonly queues = new Map<string, Promise<void>>();

  constructor(options: FsStoreOptions) {
    this.dir = path.resolve(options.dir);
    this.maxBytes = options.maxBytes;
    this.maxModules = options.maxModules;
  }

  async open(): Promise<void> {
    await mkdir(path.join(this.dir, 'modules'), { recursive: true });
    await rm(path.join(this.dir, 'tmp'), { recursive: true, force: true });
    await mkdir(path.join(this.dir, 'tmp'), { recursive: true });
    this.stored.clear();
    this.storedBytes = 0;
    this.verified.clear();
    for (const shard of await readdir(path.join(this.dir, 'modules'))) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      const shardDir = path.join(this.dir, 'modules', shard);
      const files = new Set(await readdir(shardDir));
      for (const file of files) {
        const m = /^([0-9a-f]{64})\.(wasm|json)$/.exec(file);
        if (!m) continue;
        if (m[2] === 'json') {
          // A description without its bytes: a write interrupted between its two renames.
          if (!files.has(`${m[1]}.wasm`)) await unlink(path.join(shardDir, file)).catch(() => {});
          continue;
        }
        const moduleBytes = (await stat(path.join(shardDir, file))).size;
        // Bytes without a description are still counted: they take the space until a read finds
        // them damaged and quarantines them.
        const descriptionBytes = files.has(`${m[1]}.json`) ? (await stat(path.join(shardDir, `${m[1]}.json`))).size : null;
        this.remember(`sha256:${m[1]}`, moduleBytes, descriptionBytes);
      }
    }
  }

  async has(moduleId: string): Promise<boolean> {
    return this.stored.has(moduleId);
  }

  getBytes(moduleId: string): Promise<Uint8Array | null> {
    return this.exclusive(moduleId, () => this.readBytes(moduleId));
  }

  getDescription(moduleId: string): Promise<StoredDescription | null> {
    return this.exclusive(moduleId, () => this.readDescription(moduleId));
  }

  put(moduleId: string, bytes: Uint8Array, description: ModuleDescription): Promise<{ created: boolean; record: StoredDescription }> {
    // Concurrent uploads of one module queue up: the first stores it, the others find it stored.
    return this.exclusive(moduleId, () => this.write(moduleId, bytes, description));
  }

  delete(moduleId: string): Promise<boolean> {
    return this.exclusive(moduleId, () => this.remove(moduleId));
  }

  usage(): StoreUsage {
    return { modules: this.stored.size, bytes: this.storedBytes };
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.values());
  }

  /** Runs `op` once every operation called earlier on the same module id has settled, and holds
   *  later ones until it settles. A promise chain per id: no timers, nothing to unlock on error. */
  private exclusive<T>(moduleId: string, op: () => Promise<T>): Promise<T> {
    const result = (this.queues.get(moduleId) ?? Promise.resolve()).then(op);
    const tail = result.then(
      () => {},
      () => {},
    );
    this.queues.set(moduleId, tail);
    // Drop the queue once it is empty, so the map holds only ids with work in flight.
    void tail.then(() => {
      if (this.queues.get(moduleId) === tail) this.queues.delete(moduleId);
    });
    return result;
  }

  // The operations below run inside exclusive() for their module id (and call each other freely).

  private async readBytes(moduleId: string): Promise<Uint8Array | null> {
    const file = this.file(moduleId, 'wasm');
    if (!file || !this.stored.has(moduleId)) return null;
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // Removed from outside the store: no longer stored, and no longer counted.
      this.forget(moduleId);
      return null;
    }
    const actual = moduleIdOf(bytes);
    if (actual !== moduleId) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, `its bytes hash to ${actual}`);
    }
    this.verified.add(moduleId);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private async readDescription(moduleId: string): Promise<StoredDescription | null> {
    const file = this.file(moduleId, 'json');
    const wasm = this.file(moduleId, 'wasm');
    if (!file || !wasm || !this.stored.has(moduleId)) return null;
    if (!(await exists(wasm))) {
      this.forget(moduleId); // removed from outside the store
      return null;
    }
    // Verify the bytes once per process before vouching for them: a copy damaged on disk is not
    // described as stored (nor kept when the same module is uploaded again), it is quarantined.
    if (!this.verified.has(moduleId) && (await this.readBytes(moduleId)) === null) return null;
    let record: StoredDescription;
    try {
      record = JSON.parse(await readFile(file, 'utf8')) as StoredDescription;
    } catch (err) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, isNotFound(err) ? 'its description is missing' : 'its description is not valid JSON');
    }
    if (record?.moduleId !== moduleId || typeof record.description !== 'object' || record.description === null) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, 'its description belongs to another module');
    }
    const size = this.stored.get(moduleId)?.moduleBytes;
    if (size !== undefined && record.description.size !== size) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, `its file is ${size} bytes, not ${record.description.size}`);
    }
    return record;
  }

  private async write(moduleId: string, bytes: Uint8Array, description: ModuleDescription): Promise<{ created: boolean; record: StoredDescription }> {
    const wasm = this.file(moduleId, 'wasm');
    const json = this.file(moduleId, 'json');
    if (!wasm || !json) throw new Error(`not a module id: ${moduleId}`);
    if (this.stored.has(moduleId)) {
      try {
        const existing = await this.readDescription(moduleId);
        if (existing) return { created: false, record: existing };
      } catch (err) {
        if (!(err instanceof CorruptModuleError)) throw err;
        // The damaged copy was quarantined (and uncounted): store this good one in its place.
      }
    }
    const record: StoredDescription = { moduleId, description, storedAt: new Date().toISOString() };
    const recordJson = Buffer.from(JSON.stringify(record));
    const countedBytes = bytes.length + recordJson.length + 2 * STORE_FILE_OVERHEAD_BYTES;
    if (this.stored.size + this.reservedModules + 1 > this.maxModules) throw StoreFullError.modules(this.maxModules);
    if (this.storedBytes + this.reservedBytes + countedBytes > this.maxBytes) {
      throw StoreFullError.bytes(
        countedBytes,
        `its ${bytes.length} bytes, its ${recordJson.length}-byte description and ${STORE_FILE_OVERHEAD_BYTES} bytes of file-system overhead for each of the two files`,
        this.maxBytes,
        this.storedBytes + this.reservedBytes,
        this.stored.size + this.reservedModules,
      );
    }
    // Reserve the room before the first await, so parallel uploads cannot overshoot together.
    this.reservedBytes += countedBytes;
    this.reservedModules += 1;
    try {
      await mkdir(path.dirname(wasm), { recursive: true });
      await this.atomicWrite(json, recordJson);
      await this.atomicWrite(wasm, bytes);
      await fsyncDir(path.dirname(wasm));
    } catch (err) {
      await Promise.all([unlink(wasm).catch(() => {}), unlink(json).catch(() => {})]);
      throw err;
    } finally {
      this.reservedBytes -= countedBytes;
      this.reservedModules -= 1;
    }
    this.remember(moduleId, bytes.length, recordJson.length);
    this.verified.add(moduleId);
    return { created: true, record };
  }

  private async remove(moduleId: string): Promise<boolean> {
    const wasm = this.file(moduleId, 'wasm');
    const json = this.file(moduleId, 'json');
    if (!wasm || !json) return false;
    let removed = true;
    // The bytes first: without them the module is not stored, whatever happens next.
    await unlink(wasm).catch((err: unknown) => {
      if (isNotFound(err)) removed = false;
      else throw err;
    });
    this.verified.delete(moduleId);
    this.forget(moduleId);
    await unlink(json).catch(() => {});
    return removed;
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
    this.forget(moduleId);
  }

  /** Counts a stored module; `descriptionBytes` is null when its description file is missing. */
  private remember(moduleId: string, moduleBytes: number, descriptionBytes: number | null): void {
    this.forget(moduleId);
    const countedBytes = moduleBytes + STORE_FILE_OVERHEAD_BYTES + (descriptionBytes === null ? 0 : descriptionBytes + STORE_FILE_OVERHEAD_BYTES);
    this.stored.set(moduleId, { moduleBytes, countedBytes });
    this.storedBytes += countedBytes;
  }

  private forget(moduleId: string): void {
    const entry = this.stored.get(moduleId);
    if (!entry) return;
    this.stored.delete(moduleId);
    this.storedBytes -= entry.countedBytes;
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
