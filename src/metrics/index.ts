// Prometheus metrics (GET /metrics), with prom-client. One registry per app (tests build several
// apps in one process), prom-client's default process metrics included. Label values are bounded:
// routes are route templates, outcomes and refusal codes are closed lists, and per-caller series
// exist only for configured API keys (their non-secret ids), never for client addresses.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsSources {
  queueDepth(): Record<string, number>;
  inflightBodyBytes(): number;
  store(): { bytes: number; modules: number };
  cache(): { bytes: number; entries: number };
  /** Jobs held, by status (queued, running, done). */
  jobs?(): Record<string, number>;
  /** Whether the shared Redis connection is up; absent when REDIS_URL is not set. */
  redisConnected?: () => boolean;
  /** Log lines dropped because stdout was too slow (src/logging.ts); absent with a caller's own logger. */
  logLinesDropped?: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'route' | 'status'>;
  readonly executions: Counter<'outcome' | 'key'>;
  readonly refusals: Counter<'code'>;
  readonly fuelConsumed: Histogram<never>;
  readonly guestDuration: Histogram<never>;
  readonly queueWait: Histogram<'lane'>;
  readonly prepare: Histogram<never>;
  readonly workerRestarts: Counter<'pool'>;
  readonly cacheHits: Counter<never>;
  readonly cacheMisses: Counter<never>;
  readonly jobsSubmitted: Counter<never>;
  readonly jobsFinished: Counter<'outcome'>;
  readonly callbackAttempts: Counter<'result'>;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.httpRequests = new Counter({
      name: 'wasmbox_http_requests_total',
      help: 'HTTP requests answered, by route template and status code.',
      labelNames: ['route', 'status'],
      registers,
    });
    this.executions = new Counter({
      name: 'wasmbox_executions_total',
      help: 'Guest runs that reached a worker, by outcome (and API key id when keys are configured).',
      labelNames: ['outcome', 'key'],
      registers,
    });
    this.refusals = new Counter({
      name: 'wasmbox_refusals_total',
      help: 'Requests refused (4xx and 503), by error code.',
      labelNames: ['code'],
      registers,
    });
    this.fuelConsumed = new Histogram({
      name: 'wasmbox_fuel_consumed',
      help: 'Fuel consumed per run.',
      buckets: [10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10],
      registers,
    });
    this.guestDuration = new Histogram({
      name: 'wasmbox_guest_duration_seconds',
      help: "The guest's own execution time per run.",
      buckets: [1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.queueWait = new Histogram({
      name: 'wasmbox_queue_wait_seconds',
      help: 'Time a task waited for a worker, by lane (run, prepare-small, prepare-large).',
      labelNames: ['lane'],
      buckets: [1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.prepare = new Histogram({
      name: 'wasmbox_prepare_seconds',
      help: 'Validation, instrumentation and compilation of a module not in the prepared cache.',
      buckets: [1e-3, 5e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.workerRestarts = new Counter({
      name: 'wasmbox_worker_restarts_total',
      help: 'Worker threads replaced (killed at a deadline, out of heap, or crashed), by pool.',
      labelNames: ['pool'],
      registers,
    });
    this.cacheHits = new Counter({ name: 'wasmbox_prepared_cache_hits_total', help: 'Module lookups answered by the prepared-module cache.', registers });
    this.cacheMisses = new Counter({ name: 'wasmbox_prepared_cache_misses_total', help: 'Module lookups that had to prepare the module.', registers });
    this.jobsSubmitted = new Counter({ name: 'wasmbox_jobs_submitted_total', help: 'Jobs accepted by POST /jobs.', registers });
    this.jobsFinished = new Counter({
      name: 'wasmbox_jobs_finished_total',
      help: "Jobs finished, by outcome: the run's outcome, cancelled, or error (refused when it came to run).",
      labelNames: ['outcome'],
      registers,
    });
    this.callbackAttempts = new Counter({
      name: 'wasmbox_job_callback_attempts_total',
      help: 'Callback deliveries attempted, by result (delivered: a 2xx answer; failed: anything else).',
      labelNames: ['result'],
      registers,
    });
    new Gauge({
      name: 'wasmbox_jobs',
      help: 'Jobs held, by status (queued, running, done and not yet expired).',
      labelNames: ['status'],
      registers,
      collect() {
        for (const [status, n] of Object.entries(sources.jobs?.() ?? {})) this.set({ status }, n);
      },
    });
    new Gauge({
      name: 'wasmbox_queue_depth',
      help: 'Tasks waiting for a worker, by lane.',
      labelNames: ['lane'],
      registers,
      collect() {
        for (const [lane, depth] of Object.entries(sources.queueDepth())) this.set({ lane }, depth);
      },
    });
    new Gauge({
      name: 'wasmbox_inflight_body_bytes',
      help: 'Request body bytes held at once (capped by WASMBOX_INFLIGHT_BODY_MB).',
      registers,
      collect() {
        this.set(sources.inflightBodyBytes());
      },
    });
    new Gauge({
      name: 'wasmbox_store_bytes',
      help: 'Bytes the module store holds, overhead included (capped by WASMBOX_STORE_MAX_MB); with REDIS_URL, the whole fleet\'s store, refreshed every 5 s.',
      registers,
      collect() {
        this.set(sources.store().bytes);
      },
    });
    new Gauge({
      name: 'wasmbox_store_modules',
      help: 'Modules in the module store.',
      registers,
      collect() {
        this.set(sources.store().modules);
      },
    });
    const { redisConnected } = sources;
    if (redisConnected) {
      new Gauge({
        name: 'wasmbox_redis_connected',
        help: 'Whether the connection to the shared Redis (REDIS_URL) is up (1) or not (0); while 0, requests that need it are 503 backend_unavailable.',
        registers,
        collect() {
          this.set(redisConnected() ? 1 : 0);
        },
      });
    }
    const { logLinesDropped } = sources;
    if (logLinesDropped) {
      new Counter({
        name: 'wasmbox_log_lines_dropped_total',
        help: 'Log lines dropped because stdout was slower than the log rate and the log buffer was full.',
        registers,
        collect() {
          this.reset();
          this.inc(logLinesDropped());
        },
      });
    }
    new Gauge({
      name: 'wasmbox_prepared_cache_bytes',
      help: 'Estimated memory held by the prepared-module cache (capped by WASMBOX_CACHE_MB).',
      registers,
      collect() {
        this.set(sources.cache().bytes);
      },
    });
  }
}
