// The shared module store: the ModuleStore interface over Redis (REDIS_URL), so that a module
// uploaded to one replica runs by id on every other. Only the stored bytes and descriptions are
// shared; each replica keeps its own prepared-module cache (src/service/prepared-cache.ts), and a
// run by id asks the store (has()) before it uses that cache, so a module deleted through one
// replica is 404 on all of them at once.
//
//   <prefix>module:<64 hex>   hash: bytes (the module, a binary string), record (the description
//                             as JSON: { moduleId, description, storedAt }), counted (what it
//                             counts against the byte cap)
//   <prefix>store             hash: modules, bytes (the totals the caps are checked against)
//   <prefix>corrupt:<hex>:<t> a copy that failed verification, kept 7 days for inspection
//
// Every change is one Lua script, so a put (check the caps, write the module, add to the totals)
// or a delete is atomic against every other replica: parallel uploads to several replicas cannot
// overshoot a cap together, and a reader sees the whole module or none of it. Redis runs one
// command at a time, so operations on one id take effect in the order Redis receives them.
//
// Redis must keep what it is given: run it with `maxmemory-policy noeviction` (its default) and
// persistence (AOF or snapshots) if modules should survive a Redis restart; an evicted module
// would leave the totals counting it.

import { moduleIdOf, MODULE_ID_PATTERN } from './module-id.js';
import { CorruptModuleError, type ModuleStore, type StoreUsage, type StoredDescription, StoreFullError } from './types.js';
import type { ModuleDescription } from '../worker/protocol.js';
import { type Redis, withRedis } from '../redis/index.js';

/** What each module counts against the byte cap beyond its bytes and description: Redis's own
 *  bookkeeping for a key and a hash of three fields, generously. Without it, millions of tiny
 *  modules would fit in a cap meant to bound the memory they take. */
export const REDIS_ENTRY_OVERHEAD_BYTES = 512;

/** How often usage() (metrics) is refreshed from Redis, besides after every change made here. */
const USAGE_REFRESH_MS = 5_000;
/** How long a quarantined copy is kept. */
const CORRUPT_KEEP_MS = 7 * 24 * 3600 * 1000;

/** KEYS: module, totals. ARGV: bytes, record, counted, maxModules, maxBytes.
 *  Returns {1, modules, bytes} stored; {0, record} already stored; {-1|-2, modules, bytes} over
 *  the module or byte cap. */
const PUT = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'record')}
end
local modules = tonumber(redis.call('HGET', KEYS[2], 'modules') or '0')
local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
local counted = tonumber(ARGV[3])
if modules + 1 > tonumber(ARGV[4]) then return {-1, modules, bytes} end
if bytes + counted > tonumber(ARGV[5]) then return {-2, modules, bytes} end
redis.call('HSET', KEYS[1], 'bytes', ARGV[1], 'record', ARGV[2], 'counted', counted)
redis.call('HINCRBY', KEYS[2], 'modules', 1)
redis.call('HINCRBY', KEYS[2], 'bytes', counted)
return {1, modules + 1, bytes + counted}
`;

/** KEYS: module, totals, and (to quarantine instead of delete) where to keep the copy.
 *  ARGV: how long to keep a quarantined copy (ms). Returns 1 removed, 0 not stored. */
const REMOVE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local counted = tonumber(redis.call('HGET', KEYS[1], 'counted') or '0')
if KEYS[3] then
  redis.call('RENAME', KEYS[1], KEYS[3])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[1]))
else
  redis.call('DEL', KEYS[1])
end
if counted > 0 then
  redis.call('HINCRBY', KEYS[2], 'modules', -1)
  redis.call('HINCRBY', KEYS[2], 'bytes', -counted)
end
return 1
`;

interface StoreCommands {
  wasmboxStorePut(
    moduleKey: string,
    totalsKey: string,
    bytes: Buffer,
    record: string,
    counted: number,
    maxModules: number,
    maxBytes: number,
  ): Promise<[number, string | number, number?]>;
  /** Keys (module, totals, and a quarantine key or none) after their count, then keepMs. */
  wasmboxStoreRemove(numberOfKeys: 2 | 3, ...keysThenKeepMs: (string | number)[]): Promise<number>;
}

/** A stored description, or null when it is not valid JSON or not `moduleId`'s. */
function parseRecord(json: unknown, moduleId: string): StoredDescription | null {
  if (typeof json !== 'string') return null;
  let record: StoredDescription;
  try {
    record = JSON.parse(json) as StoredDescription;
  } catch {
    return null;
  }
  if (record?.moduleId !== moduleId || typeof record.description !== 'object' || record.description === null) return null;
  return record;
}

export interface RedisStoreOptions {
  redis: Redis;
  /** Prefix of every key (WASMBOX_REDIS_PREFIX). */
  prefix: string;
  /** What stored modules may count in total, fleet-wide (WASMBOX_STORE_MAX_MB). */
  maxBytes: number;
  /** How many modules may be stored, fleet-wide (WASMBOX_STORE_MAX_MODULES). */
  maxModules: number;
}

const WHAT = 'the module store';

export class RedisModuleStore implements ModuleStore {
  readonly kind = 'redis';
  private readonly redis: Redis & StoreCommands;
  private readonly prefix: string;
  private readonly maxBytes: number;
  private readonly maxModules: number;
  private readonly totalsKey: string;
  private totals: StoreUsage = { modules: 0, bytes: 0 };
  /** Modules whose bytes this process has read and verified against their id. */
  private readonly verified = new Set<string>();
  private timer: NodeJS.Timeout | null = null;

  constructor(options: RedisStoreOptions) {
    const redis = options.redis as Redis & Partial<StoreCommands>;
    // numberOfKeys is given per call: REMOVE takes a third key only to quarantine.
    if (!redis.wasmboxStorePut) redis.defineCommand('wasmboxStorePut', { numberOfKeys: 2, lua: PUT });
    if (!redis.wasmboxStoreRemove) redis.defineCommand('wasmboxStoreRemove', { lua: REMOVE });
    this.redis = redis as Redis & StoreCommands;
    this.prefix = options.prefix;
    this.maxBytes = options.maxBytes;
    this.maxModules = options.maxModules;
    this.totalsKey = `${this.prefix}store`;
  }

  /** Nothing to create; reads the totals when Redis is there (start-up does not wait for it). */
  async open(): Promise<void> {
    await this.refreshUsage();
    this.timer = setInterval(() => void this.refreshUsage(), USAGE_REFRESH_MS);
    this.timer.unref();
  }

  async has(moduleId: string): Promise<boolean> {
    const key = this.key(moduleId);
    if (!key) return false;
    return (await withRedis(WHAT, () => this.redis.exists(key))) === 1;
  }

  async getBytes(moduleId: string): Promise<Uint8Array | null> {
    const key = this.key(moduleId);
    if (!key) return null;
    const bytes = await withRedis(WHAT, () => this.redis.hgetBuffer(key, 'bytes'));
    if (bytes === null) return null;
    const actual = moduleIdOf(bytes);
    if (actual !== moduleId) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, `its bytes hash to ${actual}`);
    }
    this.verified.add(moduleId);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  async getDescription(moduleId: string): Promise<StoredDescription | null> {
    const key = this.key(moduleId);
    if (!key) return null;
    // Verify the bytes once per process before vouching for them, as the local-disk store does.
    if (!this.verified.has(moduleId) && (await this.getBytes(moduleId)) === null) return null;
    const [json, counted] = await withRedis(WHAT, () => this.redis.hmget(key, 'record', 'counted'));
    if (json === null || json === undefined) {
      if (counted === null || counted === undefined) return null; // deleted meanwhile
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, 'its description is missing');
    }
    const record = parseRecord(json, moduleId);
    if (!record) {
      await this.quarantine(moduleId);
      throw new CorruptModuleError(moduleId, 'its description is not valid JSON or belongs to another module');
    }
    return record;
  }

  async put(moduleId: string, bytes: Uint8Array, description: ModuleDescription): Promise<{ created: boolean; record: StoredDescription }> {
    const stored = await this.putOnce(moduleId, bytes, description);
    if (stored !== null) return stored;
    // The stored copy's description is damaged: it was quarantined; store this good one instead.
    return (await this.putOnce(moduleId, bytes, description)) ?? Promise.reject(new CorruptModuleError(moduleId, 'its description keeps failing to read'));
  }

  /** One attempt at put(); null when the copy already stored has a damaged description (it is
   *  then quarantined). */
  private async putOnce(moduleId: string, bytes: Uint8Array, description: ModuleDescription): Promise<{ created: boolean; record: StoredDescription } | null> {
    const key = this.key(moduleId);
    if (!key) throw new Error(`not a module id: ${moduleId}`);
    const record: StoredDescription = { moduleId, description, storedAt: new Date().toISOString() };
    const json = JSON.stringify(record);
    const jsonBytes = Buffer.byteLength(json);
    const counted = bytes.length + jsonBytes + REDIS_ENTRY_OVERHEAD_BYTES;
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const [status, a, b] = await withRedis(WHAT, () =>
      this.redis.wasmboxStorePut(key, this.totalsKey, buffer, json, counted, this.maxModules, this.maxBytes),
    );
    if (status === 0) {
      const existing = parseRecord(a, moduleId);
      if (existing) return { created: false, record: existing };
      await this.quarantine(moduleId);
      return null;
    }
    const totals = { modules: Number(a), bytes: Number(b) };
    this.totals = totals;
    if (status === -1) throw StoreFullError.modules(this.maxModules);
    if (status === -2) {
      throw StoreFullError.bytes(
        counted,
        `its ${bytes.length} bytes, its ${jsonBytes}-byte description and ${REDIS_ENTRY_OVERHEAD_BYTES} bytes of Redis overhead`,
        this.maxBytes,
        totals.bytes,
        totals.modules,
      );
    }
    this.verified.add(moduleId);
    return { created: true, record };
  }

  async delete(moduleId: string): Promise<boolean> {
    const key = this.key(moduleId);
    if (!key) return false;
    this.verified.delete(moduleId);
    const removed = await withRedis(WHAT, () => this.redis.wasmboxStoreRemove(2, key, this.totalsKey, CORRUPT_KEEP_MS));
    void this.refreshUsage();
    return removed === 1;
  }

  /** The fleet's totals as of the last change made here or the last refresh (at most 5 s old). */
  usage(): StoreUsage {
    return this.totals;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private key(moduleId: string): string | null {
    const m = MODULE_ID_PATTERN.exec(moduleId);
    return m ? `${this.prefix}module:${m[1]}` : null;
  }

  private async quarantine(moduleId: string): Promise<void> {
    const key = this.key(moduleId)!;
    this.verified.delete(moduleId);
    const hex = MODULE_ID_PATTERN.exec(moduleId)![1]!;
    await withRedis(WHAT, () => this.redis.wasmboxStoreRemove(3, key, this.totalsKey, `${this.prefix}corrupt:${hex}:${Date.now()}`, CORRUPT_KEEP_MS));
    void this.refreshUsage();
  }

  private async refreshUsage(): Promise<void> {
    try {
      const [modules, bytes] = await this.redis.hmget(this.totalsKey, 'modules', 'bytes');
      this.totals = { modules: Number(modules ?? 0), bytes: Number(bytes ?? 0) };
    } catch {
      // Redis away: keep the last known totals; readiness reports the outage.
    }
  }
}
