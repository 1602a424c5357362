// The per-key concurrency quota across every replica sharing one Redis (REDIS_URL).
//
// A key's slots in flight are a sorted set, `<prefix>quota:<key id>`, of lease ids scored by the
// time their lease lapses (Redis's own clock, TIME, so replicas' clocks need not agree). Taking a
// slot is one Lua script, atomic against every other replica: drop lapsed leases, count the rest,
// refuse at the cap or add a lease. The replica renews the leases it holds every third of the
// lease time while their runs go on, and removes each when its run ends. A replica that dies
// mid-run (SIGKILL, lost node) stops renewing, and its slots come back within
// WASMBOX_CONCURRENCY_LEASE_MS. A lease that could not be renewed in time (the replica was cut off
// from Redis longer than the lease) lapses too: the run goes on, and for a moment the key may have
// one more in flight than its cap; the cap is a fairness bound, and the runs themselves are
// bounded by their own limits.

import { randomUUID } from 'node:crypto';
import { type Redis, withRedis } from '../redis/index.js';
import { type CallerQuota, quotaExceeded } from './concurrency.js';

/** KEYS[1]: the key's lease set. ARGV: lease id, lease ms, cap. Returns {taken (1|0), held}. */
const TAKE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[3]) then return {0, held} end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return {1, held + 1}
`;

/** KEYS[1]: the key's lease set. ARGV: lease ms, then the lease ids to extend (those still there). */
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return renewed
`;

interface QuotaCommands {
  wasmboxQuotaTake(key: string, leaseId: string, leaseMs: number, max: number): Promise<[number, number]>;
  wasmboxQuotaRenew(key: string, leaseMs: number, ...leaseIds: string[]): Promise<number>;
}

export interface SharedQuotaOptions {
  redis: Redis;
  /** Prefix of the Redis keys (WASMBOX_REDIS_PREFIX). */
  prefix: string;
  maxPerCaller: number;
  /** How long a slot outlives its replica (WASMBOX_CONCURRENCY_LEASE_MS). */
  leaseMs: number;
  /** Renewal failures (Redis away): logged by the owner. */
  onRenewError?: (err: unknown) => void;
}

export class SharedConcurrencyQuota implements CallerQuota {
  readonly maxPerCaller: number;
  private readonly redis: Redis & QuotaCommands;
  private readonly prefix: string;
  private readonly leaseMs: number;
  /** Leases this replica holds: Redis key -> lease ids. */
  private readonly held = new Map<string, Set<string>>();
  private readonly timer: NodeJS.Timeout;
  private readonly onRenewError: (err: unknown) => void;

  constructor(options: SharedQuotaOptions) {
    this.maxPerCaller = options.maxPerCaller;
    this.prefix = options.prefix;
    this.leaseMs = options.leaseMs;
    this.onRenewError = options.onRenewError ?? (() => {});
    const redis = options.redis as Redis & Partial<QuotaCommands>;
    if (!redis.wasmboxQuotaTake) redis.defineCommand('wasmboxQuotaTake', { numberOfKeys: 1, lua: TAKE });
    if (!redis.wasmboxQuotaRenew) redis.defineCommand('wasmboxQuotaRenew', { numberOfKeys: 1, lua: RENEW });
    this.redis = redis as Redis & QuotaCommands;
    this.timer = setInterval(() => void this.renew(), Math.max(100, Math.floor(this.leaseMs / 3)));
    this.timer.unref();
  }

  async take(caller: string): Promise<() => void> {
    const key = `${this.prefix}quota:${caller}`;
    const leaseId = randomUUID();
    const [taken, held] = await withRedis("this API key's concurrency quota", () =>
      this.redis.wasmboxQuotaTake(key, leaseId, this.leaseMs, this.maxPerCaller),
    );
    if (taken !== 1) throw quotaExceeded(held, this.maxPerCaller, 'across the replicas of this service');
    let leases = this.held.get(key);
    if (!leases) this.held.set(key, (leases = new Set()));
    leases.add(leaseId);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      leases.delete(leaseId);
      if (leases.size === 0 && this.held.get(key) === leases) this.held.delete(key);
      // Redis away: the lease lapses on its own within leaseMs.
      this.redis.zrem(key, leaseId).catch((err: unknown) => this.onRenewError(err));
    };
  }

  /** Slots this replica holds now (for tests and logs). */
  get heldHere(): number {
    let n = 0;
    for (const leases of this.held.values()) n += leases.size;
    return n;
  }

  private async renew(): Promise<void> {
    if (this.held.size === 0) return;
    await Promise.all(
      [...this.held].map(([key, leases]) =>
        this.redis.wasmboxQuotaRenew(key, this.leaseMs, ...leases).catch((err: unknown) => this.onRenewError(err)),
      ),
    );
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
  }
}
