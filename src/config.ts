// Configuration: read once from the environment, validated with zod, with an embedded default for
// everything so that `npm start` on a fresh machine needs no settings. A bad setting stops
// start-up with a message naming the variable.

import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { type ApiKey, ApiKeyError, loadApiKeys } from './callers/api-keys.js';
import { type AllowedHost, AllowlistError, parseCallbackAllowlist } from './jobs/allowlist.js';
import { DEFAULT_LIMITS, DEFAULT_MAX_LIMITS, type Limits, MAX_MEMORY_MB } from './limits/index.js';

const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce
    .number({ error: 'must be a number' })
    .int({ error: 'must be a whole number' })
    .min(min, { error: `must be at least ${min}` })
    .max(max, { error: `must be at most ${max}` });

/** Environment variable -> [config key, schema]. The README's configuration table lists these. */
const ENV = {
  PORT: int(0, 65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // One runner thread per core: runners run at a lower scheduling priority than the main thread
  // (src/worker/runner.ts), so guests use every core without starving the event loop.
  WASMBOX_WORKERS: int(1, 256).default(Math.max(1, os.availableParallelism())),
  // Runs each runner thread is handed ahead of the one it is running (src/worker/run-pool.ts): it
  // starts the next the moment the current one ends. A run handed ahead moves to any thread that
  // becomes free first, so it never waits behind a long one while a thread is free. 0 hands a
  // thread a run only when it is free.
  WASMBOX_RUN_PREFETCH: int(0, 1).default(1),
  // Threads for modules over WASMBOX_PREPARE_SMALL_BYTES (half the cores); small modules have a
  // thread of their own besides these.
  WASMBOX_PREPARE_WORKERS: int(1, 64).default(Math.max(1, Math.floor(os.availableParallelism() / 2))),
  WASMBOX_PREPARE_SMALL_BYTES: int(0, 1024 * 1024 * 1024).default(1024 * 1024),
  WASMBOX_BODY_LIMIT_BYTES: int(1024, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  WASMBOX_FUEL_DEFAULT: int(1).default(DEFAULT_LIMITS.fuel),
  WASMBOX_FUEL_MAX: int(1).default(DEFAULT_MAX_LIMITS.fuel),
  WASMBOX_MEMORY_MB_DEFAULT: int(1, MAX_MEMORY_MB).default(DEFAULT_LIMITS.memoryMb),
  WASMBOX_MEMORY_MB_MAX: int(1, MAX_MEMORY_MB).default(DEFAULT_MAX_LIMITS.memoryMb),
  WASMBOX_TIMEOUT_MS_DEFAULT: int(1).default(DEFAULT_LIMITS.timeoutMs),
  WASMBOX_TIMEOUT_MS_MAX: int(1, 24 * 3600 * 1000).default(DEFAULT_MAX_LIMITS.timeoutMs),
  WASMBOX_PREPARE_TIMEOUT_MS: int(10).default(10_000),
  // A run's thread ends it at its deadline; past the deadline plus this grace, a guest that could
  // not be reached there (blocked in an atomic wait, one long bulk operation) has its thread
  // terminated.
  WASMBOX_DEADLINE_GRACE_MS: int(1, 60_000).default(200),
  // Each element is a pointer on the worker's engine heap, and a table grows by one allocation of
  // its whole new size. V8 can terminate a worker cleanly at its heap limit only when the
  // allocation that crosses it fits in the 16 MiB of slack Node grants; a bigger single one
  // aborts the whole process. 1,000,000 elements (8 MB) stays well inside.
  WASMBOX_MAX_TABLE_ELEMENTS: int(1, 1_000_000).default(100_000),
  WASMBOX_WORKER_HEAP_MB: int(16).default(128),
  // Instrumenting a large module builds large buffers; unset, max(512, WASMBOX_WORKER_HEAP_MB).
  WASMBOX_PREPARE_HEAP_MB: int(16).optional(),
  WASMBOX_WORKER_STACK_MB: int(1, 64).default(4),
  WASMBOX_QUEUE_MAX: int(0).default(1024),
  WASMBOX_QUEUE_TIMEOUT_MS: int(1).default(10_000),
  WASMBOX_CACHE_MB: int(1).default(256),
  WASMBOX_DATA_DIR: z.string().min(1).default('.wasmbox-data'),
  WASMBOX_MODULE_MAX_BYTES: int(8, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  WASMBOX_STORE_MAX_MB: int(1).default(1024),
  // Each module is two files and a startup stat of each; a count cap bounds inodes and start-up
  // time however small the modules are.
  WASMBOX_STORE_MAX_MODULES: int(1).default(100_000),
  WASMBOX_API_KEYS: z.string().optional(),
  WASMBOX_API_KEYS_FILE: z.string().optional(),
  WASMBOX_RATE_LIMIT: int(0).default(0),
  WASMBOX_MAX_CONCURRENT_PER_KEY: int(1).optional(),
  WASMBOX_INFLIGHT_BODY_MB: int(1).default(128),
  WASMBOX_BODY_TIMEOUT_MS: int(100, 3_600_000).default(30_000),
  WASMBOX_READY_MAX_EVENT_LOOP_DELAY_MS: int(1).default(100),
  WASMBOX_PREPARE_WARMUP: z.enum(['0', '1']).default('1'),
  WASMBOX_WARMUP_READY_MAX_MS: int(0, 60_000).default(5_000),
  WASMBOX_DRAIN_DELAY_MS: int(0, 600_000).default(1_000),
  WASMBOX_TRUST_PROXY: z.string().optional(),
  WASMBOX_MAX_HEADER_BYTES: int(1024, 1024 * 1024).default(16 * 1024),
  // Output is decoded to one string on the worker's heap: keep it a modest single allocation.
  // Calls in one batch (POST /execute "calls"): they run one after another on one runner thread.
  WASMBOX_BATCH_MAX: int(1, 10_000).default(100),
  WASMBOX_WASI_STDOUT_MAX_BYTES: int(0, 8 * 1024 * 1024).default(1024 * 1024),
  WASMBOX_WASI_STDERR_MAX_BYTES: int(0, 8 * 1024 * 1024).default(1024 * 1024),
  // Asynchronous jobs (POST /jobs, src/jobs). Unset, the job maximum is max(300000, the
  // synchronous maximum): jobs exist so long runs need not hold a connection.
  WASMBOX_JOB_TIMEOUT_MS_MAX: int(1, 24 * 3600 * 1000).optional(),
  WASMBOX_JOB_TTL_S: int(1, 7 * 24 * 3600).default(3600),
  WASMBOX_JOBS_MAX: int(1, 10_000_000).default(10_000),
  WASMBOX_JOBS_MEMORY_MB: int(1).default(256),
  WASMBOX_JOBS_MAX_PER_KEY: int(1).default(1_000),
  WASMBOX_JOBS_CONCURRENCY: int(1, 256).optional(),
  // With REDIS_URL: how long a replica's hold on a running job lasts without renewal (BullMQ's
  // lock; renewed every half of it while the job runs), and how often each replica looks for jobs
  // whose holder died. A SIGKILLed replica's job runs again elsewhere within about twice this.
  WASMBOX_JOBS_LOCK_MS: int(1_000, 600_000).default(30_000),
  WASMBOX_CALLBACK_ALLOWLIST: z.string().default(''),
  WASMBOX_CALLBACK_SECRET: z
    .string()
    .min(16, { error: 'must be at least 16 characters' })
    .regex(/^\S+$/, { error: 'must not contain white space' })
    .optional(),
  WASMBOX_CALLBACK_ATTEMPTS: int(1, 20).default(5),
  WASMBOX_CALLBACK_TIMEOUT_MS: int(100, 120_000).default(10_000),
  WASMBOX_CALLBACK_BACKOFF_MS: int(1, 600_000).default(1_000),
  // Shared state for a fleet of replicas (README "Running several replicas"); unset, everything
  // stays in this process and on its disk.
  REDIS_URL: z
    .string()
    .refine((v) => URL.canParse(v) && ['redis:', 'rediss:'].includes(new URL(v).protocol), {
      error: 'must be a redis:// or rediss:// URL, e.g. redis://redis:6379/0',
    })
    .optional(),
  // Every key this server writes starts with it: several deployments can share one Redis.
  WASMBOX_REDIS_PREFIX: z
    .string()
    .max(100, { error: 'must be at most 100 characters' })
    .regex(/^[A-Za-z0-9:_.{}-]+$/, { error: 'may hold only letters, digits and : _ . - { }' })
    .default('wasmbox:'),
  // A run's slot in a key's fleet-wide concurrency quota is a lease renewed while it runs; a
  // replica that dies mid-run gives its slots back when their leases lapse.
  WASMBOX_CONCURRENCY_LEASE_MS: int(500, 3_600_000).default(30_000),
} as const;

/** Variables whose values may hold secrets, never quoted in a configuration error. */
const SECRET_ENV: ReadonlySet<string> = new Set(['REDIS_URL', 'WASMBOX_API_KEYS']);

/** Every environment variable the server reads (deployment manifests may set only these). */
export const ENV_NAMES: readonly string[] = Object.freeze(Object.keys(ENV));

const EnvSchema = z.object(ENV);

export interface Config {
  port: number;
  host: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Threads that run guests. */
  workers: number;
  /** Runs a runner thread is handed ahead of its current one (0 or 1). */
  runPrefetch: number;
  /** Threads that validate, instrument and compile modules over prepareSmallBytes. */
  prepareWorkers: number;
  /** Modules up to this size are prepared on a thread of their own. */
  prepareSmallBytes: number;
  /** API keys (their digests and ids); empty: keys off. */
  apiKeys: ApiKey[];
  /** Requests per minute per caller; 0: off. */
  rateLimitPerMinute: number;
  /** Runs and preparations in flight per API key. */
  maxConcurrentPerKey: number;
  /** Request body bytes held at once across all requests. */
  inflightBodyBytes: number;
  /** A request whose body has not arrived in full by then is answered 408 and closed. */
  bodyTimeoutMs: number;
  /** Mean event-loop delay at which /readyz fails (new work is shed at twice it). */
  readyMaxEventLoopDelayMs: number;
  /** The HTTP server's preparation threads warm up when they start (src/worker/warmup.ts). */
  prepareWarmUp: boolean;
  /** How long /readyz waits, at most, for the preparation threads' warm-up (0: not at all). */
  warmUpReadyMaxMs: number;
  /** After SIGTERM, /readyz fails for this long before new work is refused. */
  drainDelayMs: number;
  /** Fastify trustProxy: false, true, addresses/CIDRs of trusted proxies, or a hop count. */
  trustProxy: boolean | string | ((address: string, hop: number) => boolean);
  /** Largest request line plus headers, in bytes (431 headers_too_large past it). */
  maxHeaderBytes: number;
  bodyLimitBytes: number;
  limits: { defaults: Limits; max: Limits };
  /** Server-side deadline for preparing one module (module_too_complex past it). */
  prepareTimeoutMs: number;
  /** How long past a run's deadline its thread is terminated when the guest could not be
   *  stopped at the deadline itself. */
  deadlineGraceMs: number;
  /** Cap on every table's size, in elements. */
  maxTableElements: number;
  /** resourceLimits of each guest worker: JS heap (old generation) and stack. */
  workerHeapMb: number;
  workerStackMb: number;
  /** JS heap (old generation) of each preparation worker; a module that needs more is refused. */
  prepareHeapMb: number;
  /** Runs waiting for a worker before new ones are refused with 503 overloaded. */
  queueMax: number;
  /** How long a run may wait for a worker before it is refused with 503 overloaded. */
  queueTimeoutMs: number;
  /** Byte budget of the prepared-module cache (instrumented, compiled modules). */
  cacheBytes: number;
  /** Where the embedded module store keeps its files (resolved against the working directory). */
  dataDir: string;
  /** Largest module POST /modules stores. */
  moduleMaxBytes: number;
  /** What stored modules may take: their bytes and descriptions plus per-file overhead. */
  storeMaxBytes: number;
  /** How many modules the store may hold. */
  storeMaxModules: number;
  /** Most calls in one batch. */
  batchMax: number;
  /** Caps on a WASI run's captured stdout and stderr. */
  wasiStdoutMaxBytes: number;
  wasiStderrMaxBytes: number;
  jobs: JobsConfig;
  /** Redis for state shared by replicas (module store, rate limit, concurrency quota); null: the
   *  embedded single-process behaviour. */
  redisUrl: string | null;
  /** Prefix of every Redis key this server writes. */
  redisPrefix: string;
  /** How long a slot of the fleet-wide concurrency quota outlives a replica that stopped renewing it. */
  concurrencyLeaseMs: number;
}

/** Asynchronous jobs and their callbacks (src/jobs). */
export interface JobsConfig {
  /** Limits of a job: the synchronous defaults, with a larger maximum timeoutMs. */
  limits: { defaults: Limits; max: Limits };
  /** How long a finished job (its result and callback state) is kept, in seconds. */
  ttlS: number;
  /** Jobs held at once, in any state (queued, running, finished and not expired). */
  maxJobs: number;
  /** Bytes held by jobs: queued jobs' modules and stdin, finished jobs' results. */
  memoryBytes: number;
  /** Queued and running jobs one API key may have (keys on only). */
  maxPerKey: number;
  /** Jobs run at once (each holds a run slot like a synchronous run). */
  concurrency: number;
  /** With REDIS_URL: the lock on a running job and the stalled-job check interval (BullMQ). */
  lockMs: number;
  /** Hosts a callbackUrl may name; empty: callbacks are refused. */
  callbackAllowlist: AllowedHost[];
  /** Key of the callbacks' HMAC-SHA256 signature; required when the allowlist is not empty. */
  callbackSecret: string | null;
  callbackAttempts: number;
  callbackTimeoutMs: number;
  /** First retry delay; each further one doubles, with jitter. */
  callbackBackoffMs: number;
}

/** The longest a graceful shutdown takes after SIGTERM: the drain delay, then in-flight work (the
 *  longest run, a job's included, its preparation and a last callback attempt) plus 5 s, after
 *  which src/server.ts gives up and exits 1. A
 *  platform's grace period before SIGKILL (Kubernetes terminationGracePeriodSeconds, compose
 *  stop_grace_period) should be longer. */
export function shutdownBoundMs(config: Config): { drainDelayMs: number; afterDrainMs: number; totalMs: number } {
  const longestRunMs = Math.max(config.limits.max.timeoutMs, config.jobs.limits.max.timeoutMs);
  const afterDrainMs = longestRunMs + config.prepareTimeoutMs + config.jobs.callbackTimeoutMs + 5_000;
  return { drainDelayMs: config.drainDelayMs, afterDrainMs, totalMs: config.drainDelayMs + afterDrainMs };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function loadKeys(inline: string | undefined, file: string | undefined): ApiKey[] {
  try {
    return loadApiKeys(inline, file);
  } catch (err) {
    if (err instanceof ApiKeyError) throw new ConfigError(`invalid configuration:\n  ${err.message}`);
    throw err;
  }
}

function loadAllowlist(raw: string): AllowedHost[] {
  try {
    return parseCallbackAllowlist(raw);
  } catch (err) {
    if (err instanceof AllowlistError) throw new ConfigError(`invalid configuration:\n  WASMBOX_CALLBACK_ALLOWLIST: ${err.message}`);
    throw err;
  }
}

function parseTrustProxy(raw: string | undefined): Config['trustProxy'] {
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  if (/^[0-9]+$/.test(raw)) {
    const hops = Number(raw);
    return (_address, hop) => hop < hops;
  }
  return raw;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const picked: Record<string, string | undefined> = {};
  for (const key of Object.keys(ENV)) {
    const v = env[key];
    picked[key] = v === undefined || v.trim() === '' ? undefined : v.trim();
  }
  const parsed = EnvSchema.safeParse(picked);
  if (!parsed.success) {
    // A Redis URL may carry a password: name the variable, never echo its value.
    const shown = (key: string): string => (SECRET_ENV.has(key) ? '(value not shown)' : JSON.stringify(picked[key]));
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}=${shown(String(i.path[0]))}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  const config: Config = {
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    workers: e.WASMBOX_WORKERS,
    runPrefetch: e.WASMBOX_RUN_PREFETCH,
    prepareWorkers: e.WASMBOX_PREPARE_WORKERS,
    prepareSmallBytes: e.WASMBOX_PREPARE_SMALL_BYTES,
    apiKeys: loadKeys(e.WASMBOX_API_KEYS, e.WASMBOX_API_KEYS_FILE),
    rateLimitPerMinute: e.WASMBOX_RATE_LIMIT,
    maxConcurrentPerKey: e.WASMBOX_MAX_CONCURRENT_PER_KEY ?? e.WASMBOX_WORKERS,
    inflightBodyBytes: e.WASMBOX_INFLIGHT_BODY_MB * 1024 * 1024,
    bodyTimeoutMs: e.WASMBOX_BODY_TIMEOUT_MS,
    readyMaxEventLoopDelayMs: e.WASMBOX_READY_MAX_EVENT_LOOP_DELAY_MS,
    prepareWarmUp: e.WASMBOX_PREPARE_WARMUP === '1',
    warmUpReadyMaxMs: e.WASMBOX_WARMUP_READY_MAX_MS,
    drainDelayMs: e.WASMBOX_DRAIN_DELAY_MS,
    trustProxy: parseTrustProxy(e.WASMBOX_TRUST_PROXY),
    maxHeaderBytes: e.WASMBOX_MAX_HEADER_BYTES,
    bodyLimitBytes: e.WASMBOX_BODY_LIMIT_BYTES,
    limits: {
      defaults: { fuel: e.WASMBOX_FUEL_DEFAULT, memoryMb: e.WASMBOX_MEMORY_MB_DEFAULT, timeoutMs: e.WASMBOX_TIMEOUT_MS_DEFAULT },
      max: { fuel: e.WASMBOX_FUEL_MAX, memoryMb: e.WASMBOX_MEMORY_MB_MAX, timeoutMs: e.WASMBOX_TIMEOUT_MS_MAX },
    },
    prepareTimeoutMs: e.WASMBOX_PREPARE_TIMEOUT_MS,
    deadlineGraceMs: e.WASMBOX_DEADLINE_GRACE_MS,
    maxTableElements: e.WASMBOX_MAX_TABLE_ELEMENTS,
    workerHeapMb: e.WASMBOX_WORKER_HEAP_MB,
    workerStackMb: e.WASMBOX_WORKER_STACK_MB,
    prepareHeapMb: e.WASMBOX_PREPARE_HEAP_MB ?? Math.max(512, e.WASMBOX_WORKER_HEAP_MB),
    queueMax: e.WASMBOX_QUEUE_MAX,
    queueTimeoutMs: e.WASMBOX_QUEUE_TIMEOUT_MS,
    cacheBytes: e.WASMBOX_CACHE_MB * 1024 * 1024,
    dataDir: path.resolve(e.WASMBOX_DATA_DIR),
    moduleMaxBytes: e.WASMBOX_MODULE_MAX_BYTES,
    storeMaxBytes: e.WASMBOX_STORE_MAX_MB * 1024 * 1024,
    storeMaxModules: e.WASMBOX_STORE_MAX_MODULES,
    batchMax: e.WASMBOX_BATCH_MAX,
    wasiStdoutMaxBytes: e.WASMBOX_WASI_STDOUT_MAX_BYTES,
    wasiStderrMaxBytes: e.WASMBOX_WASI_STDERR_MAX_BYTES,
    jobs: {
      limits: {
        defaults: { fuel: e.WASMBOX_FUEL_DEFAULT, memoryMb: e.WASMBOX_MEMORY_MB_DEFAULT, timeoutMs: e.WASMBOX_TIMEOUT_MS_DEFAULT },
        max: {
          fuel: e.WASMBOX_FUEL_MAX,
          memoryMb: e.WASMBOX_MEMORY_MB_MAX,
          timeoutMs: e.WASMBOX_JOB_TIMEOUT_MS_MAX ?? Math.max(300_000, e.WASMBOX_TIMEOUT_MS_MAX),
        },
      },
      ttlS: e.WASMBOX_JOB_TTL_S,
      maxJobs: e.WASMBOX_JOBS_MAX,
      memoryBytes: e.WASMBOX_JOBS_MEMORY_MB * 1024 * 1024,
      maxPerKey: e.WASMBOX_JOBS_MAX_PER_KEY,
      concurrency: e.WASMBOX_JOBS_CONCURRENCY ?? e.WASMBOX_WORKERS,
      lockMs: e.WASMBOX_JOBS_LOCK_MS,
      callbackAllowlist: loadAllowlist(e.WASMBOX_CALLBACK_ALLOWLIST),
      callbackSecret: e.WASMBOX_CALLBACK_SECRET ?? null,
      callbackAttempts: e.WASMBOX_CALLBACK_ATTEMPTS,
      callbackTimeoutMs: e.WASMBOX_CALLBACK_TIMEOUT_MS,
      callbackBackoffMs: e.WASMBOX_CALLBACK_BACKOFF_MS,
    },
    redisUrl: e.REDIS_URL ?? null,
    redisPrefix: e.WASMBOX_REDIS_PREFIX,
    concurrencyLeaseMs: e.WASMBOX_CONCURRENCY_LEASE_MS,
  };
  // Fail at start-up, not at the first callback: an allowlist without a secret would deliver
  // callbacks no receiver can verify.
  if (config.jobs.callbackAllowlist.length > 0 && config.jobs.callbackSecret === null) {
    throw new ConfigError(
      'invalid configuration:\n  WASMBOX_CALLBACK_ALLOWLIST is set but WASMBOX_CALLBACK_SECRET is not; callbacks are signed with it (at least 16 characters, e.g. `openssl rand -hex 32`)',
    );
  }
  if (config.jobs.limits.max.timeoutMs < config.limits.defaults.timeoutMs) {
    throw new ConfigError(
      `invalid configuration:\n  WASMBOX_JOB_TIMEOUT_MS_MAX=${config.jobs.limits.max.timeoutMs} is below WASMBOX_TIMEOUT_MS_DEFAULT=${config.limits.defaults.timeoutMs}`,
    );
  }
  const pairs = [
    ['WASMBOX_FUEL_DEFAULT', 'WASMBOX_FUEL_MAX', 'fuel'],
    ['WASMBOX_MEMORY_MB_DEFAULT', 'WASMBOX_MEMORY_MB_MAX', 'memoryMb'],
    ['WASMBOX_TIMEOUT_MS_DEFAULT', 'WASMBOX_TIMEOUT_MS_MAX', 'timeoutMs'],
  ] as const;
  // A table grows by one allocation of its whole new size on the worker's engine heap; one that
  // cannot fit is fatal to the whole process (V8 aborts), not just to the worker. Keep the largest
  // table (32 bytes per element, generously) within a quarter of the heap.
  const tableBytes = config.maxTableElements * 32;
  if (tableBytes > (config.workerHeapMb * 1024 * 1024) / 4) {
    throw new ConfigError(
      `invalid configuration:\n  WASMBOX_MAX_TABLE_ELEMENTS=${config.maxTableElements} needs up to ${Math.ceil(tableBytes / 1048576)} MiB of engine heap per table; ` +
        `WASMBOX_WORKER_HEAP_MB=${config.workerHeapMb} allows at most ${Math.floor((config.workerHeapMb * 1024 * 1024) / 4 / 32)} elements (raise the heap or lower the cap)`,
    );
  }
  for (const [d, m, k] of pairs) {
    if (config.limits.defaults[k] > config.limits.max[k]) {
      throw new ConfigError(`invalid configuration:\n  ${d}=${config.limits.defaults[k]} is above ${m}=${config.limits.max[k]}`);
    }
  }
  return config;
}

