// Configuration: read once from the environment, validated with zod, with an embedded default for
// everything so that `npm start` on a fresh machine needs no settings. A bad setting stops
// start-up with a message naming the variable.

import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
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
  WASMBOX_WORKERS: int(1, 256).default(Math.max(1, os.availableParallelism())),
  WASMBOX_PREPARE_WORKERS: int(1, 64).default(1),
  WASMBOX_BODY_LIMIT_BYTES: int(1024, 1024 * 1024 * 1024).default(16 * 1024 * 1024),
  WASMBOX_FUEL_DEFAULT: int(1).default(DEFAULT_LIMITS.fuel),
  WASMBOX_FUEL_MAX: int(1).default(DEFAULT_MAX_LIMITS.fuel),
  WASMBOX_MEMORY_MB_DEFAULT: int(1, MAX_MEMORY_MB).default(DEFAULT_LIMITS.memoryMb),
  WASMBOX_MEMORY_MB_MAX: int(1, MAX_MEMORY_MB).default(DEFAULT_MAX_LIMITS.memoryMb),
  WASMBOX_TIMEOUT_MS_DEFAULT: int(1).default(DEFAULT_LIMITS.timeoutMs),
  WASMBOX_TIMEOUT_MS_MAX: int(1, 24 * 3600 * 1000).default(DEFAULT_MAX_LIMITS.timeoutMs),
  WASMBOX_PREPARE_TIMEOUT_MS: int(10).default(10_000),
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
  // Output is decoded to one string on the worker's heap: keep it a modest single allocation.
  WASMBOX_WASI_STDOUT_MAX_BYTES: int(0, 8 * 1024 * 1024).default(1024 * 1024),
  WASMBOX_WASI_STDERR_MAX_BYTES: int(0, 8 * 1024 * 1024).default(1024 * 1024),
} as const;

const EnvSchema = z.object(ENV);

export interface Config {
  port: number;
  host: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Threads that run guests. */
  workers: number;
  /** Threads that validate, instrument and compile modules. */
  prepareWorkers: number;
  bodyLimitBytes: number;
  limits: { defaults: Limits; max: Limits };
  /** Server-side deadline for preparing one module (module_too_complex past it). */
  prepareTimeoutMs: number;
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
  /** Total bytes of stored modules. */
  storeMaxBytes: number;
  /** Caps on a WASI run's captured stdout and stderr. */
  wasiStdoutMaxBytes: number;
  wasiStderrMaxBytes: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const picked: Record<string, string | undefined> = {};
  for (const key of Object.keys(ENV)) {
    const v = env[key];
    picked[key] = v === undefined || v.trim() === '' ? undefined : v.trim();
  }
  const parsed = EnvSchema.safeParse(picked);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}=${JSON.stringify(picked[String(i.path[0])])}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  const config: Config = {
    port: e.PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    workers: e.WASMBOX_WORKERS,
    prepareWorkers: e.WASMBOX_PREPARE_WORKERS,
    bodyLimitBytes: e.WASMBOX_BODY_LIMIT_BYTES,
    limits: {
      defaults: { fuel: e.WASMBOX_FUEL_DEFAULT, memoryMb: e.WASMBOX_MEMORY_MB_DEFAULT, timeoutMs: e.WASMBOX_TIMEOUT_MS_DEFAULT },
      max: { fuel: e.WASMBOX_FUEL_MAX, memoryMb: e.WASMBOX_MEMORY_MB_MAX, timeoutMs: e.WASMBOX_TIMEOUT_MS_MAX },
    },
    prepareTimeoutMs: e.WASMBOX_PREPARE_TIMEOUT_MS,
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
    wasiStdoutMaxBytes: e.WASMBOX_WASI_STDOUT_MAX_BYTES,
    wasiStderrMaxBytes: e.WASMBOX_WASI_STDERR_MAX_BYTES,
  };
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

