// Builds the Fastify application without listening: tests build it per file, src/server.ts
// listens and shuts it down.

import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import { type Config, loadConfig } from './config.js';
import { ERROR_CATALOGUE, type ErrorCode, ServiceError, errorBody, clip } from './errors.js';
import { registerBodyParsers } from './http/json-body.js';
import { clientErrorHandler, refusalFor } from './http/refusals.js';
import multipart from '@fastify/multipart';
import callers from './plugins/callers.js';
import metrics from './plugins/metrics.js';
import overload from './plugins/overload.js';
import executeRoutes from './routes/execute.js';
import healthRoutes from './routes/health.js';
import jobRoutes from './routes/jobs.js';
import { CallbackSender } from './jobs/callbacks.js';
import { MemoryJobQueue } from './jobs/memory-queue.js';
import type { JobQueue, JobRunner, JobView } from './jobs/types.js';
import { toExecuteRequest } from './routes/body.js';
import moduleRoutes from './routes/modules.js';
import playgroundRoutes from './routes/playground.js';
import { ExecuteService } from './service/execute.js';
import { type CallerQuota, ConcurrencyQuota } from './limits/concurrency.js';
import { SharedConcurrencyQuota } from './limits/shared-concurrency.js';
import { REDIS_CONNECT_TIMEOUT_MS, type Redis, closeRedis, connectWithin, createRedis } from './redis/index.js';
import { FsModuleStore } from './store/fs-store.js';
import { RedisModuleStore } from './store/redis-store.js';
import type { ModuleStore } from './store/types.js';
import { WorkerPools } from './worker/pool.js';
import { type LogDestination, createLogDestination } from './logging.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    pools: WorkerPools;
    executor: ExecuteService;
    /** Asynchronous jobs (POST /jobs). */
    jobs: JobQueue;
    /** Validates and delivers the jobs' signed callbacks. */
    jobCallbacks: CallbackSender;
    /** The shared Redis connection when REDIS_URL is set (module store, rate limit, quotas, and
     *  anything else that shares state across replicas), else null. Closed when the app closes. */
    redis: Redis | null;
    /** Set when shutdown begins: readiness fails (503), new work is still served. */
    draining: boolean;
    /** Set once the drain delay has passed: new work (any non-GET request) is refused with 503. */
    refusingWork: boolean;
    /** The asynchronous, batched stdout the log lines go to (src/logging.ts), to be flushed
     *  before the process exits; null when the caller gave its own `logger`. */
    logDestination: LogDestination | null;
  }
}

export interface BuildOptions {
  config?: Config;
  /** The module store; defaults to the Redis store when config.redisUrl is set, else the
   *  local-disk store under config.dataDir. */
  store?: ModuleStore;
  /** Pino logger options or false; defaults to JSON lines at config.logLevel on stdout, written
   *  asynchronously in batches (src/logging.ts). */
  logger?: boolean | object;
}

/** Reads and discards what is left of a refused body announced at most `boundBytes` long, and
 *  keeps the connection; a body announced longer, or sent chunked (of unknown length), is not
 *  read further and the connection closes once the answer is out. */
function discardOvershoot(request: FastifyRequest, reply: FastifyReply, boundBytes: number): void {
  const announced = request.headers['content-length'] === undefined ? Number.NaN : Number(request.headers['content-length']);
  if (!(announced <= boundBytes)) {
    reply.header('connection', 'close');
    return;
  }
  reply.removeHeader('connection');
  request.raw.removeAllListeners('data');
  request.raw.resume();
}

/** Messages are already clipped where they quote input; this bounds the log line regardless. */
const clipForLog = (message: string): string => (message.length > 1000 ? `${message.slice(0, 1000)}…` : message);

export async function buildApp(options: BuildOptions = {}): Promise<FastifyInstance> {
  const config = options.config ?? loadConfig();
  let countRefusal: (code: ErrorCode) => void = () => {};
  // One write(2) per batch of lines, off the main thread, instead of one synchronous write per line.
  const logDestination = options.logger === undefined ? createLogDestination() : null;
  const app = Fastify({
    logger: options.logger ?? {
      level: config.logLevel,
      redact: ['req.headers.authorization', 'req.headers["x-api-key"]'],
      stream: logDestination!.stream,
    },
    bodyLimit: config.bodyLimitBytes,
    // One structured line per execution (routes/execute.ts) and per refusal instead of two per request.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    trustProxy: config.trustProxy,
    // Connection limits, set deliberately (README "Operating it"): a request (headers and body)
    // must arrive within the body timeout; idle keep-alive connections close after 72 s (longer
    // than common load balancers' 60 s idle timeout, so the balancer closes first).
    requestTimeout: config.bodyTimeoutMs,
    keepAliveTimeout: 72_000,
    // A module id is 71 characters; longer path parameters are refused with invalid_request.
    routerOptions: { maxParamLength: 200 },
    http: {
      maxHeaderSize: config.maxHeaderBytes,
      headersTimeout: Math.min(config.bodyTimeoutMs, 30_000),
      // How often Node checks requests against the timeouts (its default, 30 s, would let a
      // trickled body live up to 30 s past its limit).
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(config.bodyTimeoutMs / 4))),
    },
    clientErrorHandler: clientErrorHandler(config, (code) => countRefusal(code)),
    // The router's own refusals (a path parameter over maxParamLength, a malformed URL) go
    // through the same table as every other refusal.
    frameworkErrors: (error, request, reply) => {
      const refusal = refusalFor(error, request, config);
      return refuse(request, reply, refusal?.code ?? 'invalid_request', refusal?.message ?? 'the request could not be routed');
    },
  });

  app.decorate('config', config);
  app.decorate('draining', false);
  app.decorate('refusingWork', false);
  app.decorate('logDestination', logDestination);
  if (logDestination) {
    logDestination.onDropped = (lines) => app.log.warn({ droppedLines: lines }, 'log lines dropped: stdout was slower than the log rate and the buffer was full');
  }
  // Shared state for replicas (README "Running several replicas"). Start-up waits a few seconds for
  // Redis, then goes on without it: /healthz answers, /readyz fails until Redis is reachable, and
  // requests that need it are 503 backend_unavailable meanwhile (ioredis keeps reconnecting).
  const redis = config.redisUrl
    ? await createRedis(config.redisUrl, {
        connectionName: 'wasmbox',
        onError: (err) => app.log.warn({ error: err.message }, 'Redis (REDIS_URL) is not reachable; requests that need it are refused until it is'),
      })
    : null;
  app.decorate('redis', redis);
  if (redis && !(await connectWithin(redis, REDIS_CONNECT_TIMEOUT_MS))) {
    app.log.warn('starting without Redis (REDIS_URL): not ready until it is reachable');
  }
  if (redis) redis.on('ready', () => app.log.info('connected to Redis (REDIS_URL)'));
  const store =
    options.store ??
    (redis
      ? new RedisModuleStore({ redis, prefix: config.redisPrefix, maxBytes: config.storeMaxBytes, maxModules: config.storeMaxModules })
      : new FsModuleStore({ dir: config.dataDir, maxBytes: config.storeMaxBytes, maxModules: config.storeMaxModules }));
  await store.open();
  const pools = new WorkerPools(config, { warmUpPreparation: config.prepareWarmUp });
  pools.startBodyDecoding();
  pools.onLateError = (err) => app.log.warn({ err }, 'a worker failed after its task ended; it was replaced');
  app.decorate('pools', pools);
  // The per-key concurrency quota (keys on only): counted in Redis across replicas, or here.
  const keysOn = config.apiKeys.length > 0;
  const quota: CallerQuota | null = !keysOn
    ? null
    : redis
    ? new SharedConcurrencyQuota({
        redis,
        prefix: config.redisPrefix,
        maxPerCaller: config.maxConcurrentPerKey,
        leaseMs: config.concurrencyLeaseMs,
        onRenewError: (err) => app.log.warn({ error: (err as Error).message }, 'could not renew or return a concurrency lease in Redis; it lapses on its own'),
      })
    : new ConcurrencyQuota(config.maxConcurrentPerKey);
  const executor = new ExecuteService(config, pools, store, { maxConcurrentPerKey: keysOn ? config.maxConcurrentPerKey : null, ...(quota && { quota }) });
  app.decorate('executor', executor);
  const jobConfig = config.jobs;
  const callbacks = new CallbackSender({
    allowlist: jobConfig.callbackAllowlist,
    secret: jobConfig.callbackSecret,
    attempts: jobConfig.callbackAttempts,
    timeoutMs: jobConfig.callbackTimeoutMs,
    backoffMs: jobConfig.callbackBackoffMs,
    onAttempt: (jobId, state, final) => {
      app.metrics.callbackAttempts.inc({ result: state.delivered ? 'delivered' : 'failed' });
      app.log.info({ jobId, callback: state, final }, 'job callback attempt');
    },
  });
  app.decorate('jobCallbacks', callbacks);
  // A job runs exactly as POST /execute would run its body, with the job limits.
  const runner: JobRunner = (spec, run) =>
    executor.execute({ ...toExecuteRequest(spec.body), progress: run.progress, cancel: run.cancel }, { caller: spec.owner.caller, keyId: spec.owner.keyId }, jobConfig.limits);
  const jobHooks = {
    onSubmitted: () => app.metrics.jobsSubmitted.inc(),
    onFinished: (job: JobView) => {
      const outcome = job.cancelled ? 'cancelled' : job.result ? ('outcome' in job.result ? job.result.outcome : 'batch') : 'error';
      app.metrics.jobsFinished.inc({ outcome });
      app.log.info(
        { jobId: job.jobId, outcome, ...(job.error && { code: job.error.code }), ...(job.result && { moduleId: job.result.moduleId, telemetry: job.result.telemetry }) },
        'job finished',
      );
    },
    onInternalError: (jobId: string, err: unknown) => app.log.error({ err, jobId }, 'internal error in a job'),
  };
  // With REDIS_URL, jobs are shared by the fleet (BullMQ, loaded only then); else they live in
  // this process.
  const jobs: JobQueue = redis
    ? new (await import('./jobs/bullmq-queue.js')).BullMQJobQueue({
        redis,
        workerRedis: await createRedis(config.redisUrl!, {
          purpose: 'blocking',
          connectionName: 'wasmbox-jobs',
          onError: (err) => app.log.warn({ error: err.message }, 'the job worker cannot reach Redis (REDIS_URL); it resumes when Redis is back'),
        }),
        redisUrl: config.redisUrl!,
        prefix: config.redisPrefix,
        runner,
        callbacks,
        ttlS: jobConfig.ttlS,
        maxJobs: jobConfig.maxJobs,
        maxPerKey: jobConfig.maxPerKey,
        concurrency: jobConfig.concurrency,
        lockMs: jobConfig.lockMs,
        ...jobHooks,
        onQueueError: (err) => app.log.warn({ error: err.message }, 'job queue (BullMQ) error'),
      })
    : new MemoryJobQueue({
        runner,
        callbacks,
        ttlS: jobConfig.ttlS,
        maxJobs: jobConfig.maxJobs,
        memoryBytes: jobConfig.memoryBytes,
        maxPerKey: jobConfig.maxPerKey,
        concurrency: jobConfig.concurrency,
        ...jobHooks,
      });
  app.decorate('jobs', jobs);
  await app.register(metrics, {
    sources: {
      queueDepth: () => executor.queueDepths(),
      inflightBodyBytes: () => app.inflight.bytes,
      store: () => store.usage(),
      cache: () => ({ bytes: executor.cache.usedBytes, entries: executor.cache.size }),
      jobs: () => jobs.counts(),
      ...(redis && { redisConnected: () => redis.status === 'ready' }),
      ...(logDestination && { logLinesDropped: () => logDestination.dropped() }),
    },
  });
  executor.attachMetrics(app.metrics);
  pools.onWorkerRestart = (pool) => app.metrics.workerRestarts.inc({ pool });
  countRefusal = (code) => app.metrics.refusals.inc({ code });
  app.addHook('onClose', async () => {
    // Running jobs finish first (they need the pools), then the pools and the store close.
    await jobs.close();
    await pools.close();
    await store.close();
    await quota?.close();
    // Last: runs that just ended return their quota leases over it first (QUIT waits for them).
    if (redis) await closeRedis(redis);
    // The periodic log flush ends with the app (an app built and closed in-process leaves no
    // timer behind); what is still buffered goes out by settle()/flushSync() or at process exit.
    logDestination?.stop();
  });

  // Three body forms: application/json (Fastify's own parser), application/wasm (the raw module,
  // capped by bodyLimit while it streams in) and multipart/form-data (streamed by
  // @fastify/multipart, each part capped by the body limit). Nothing else is accepted (415).
  app.removeContentTypeParser('text/plain');
  // JSON (Fastify's own parser, proto-poisoning checks included, after a UTF-8 check) and the raw
  // module; large bodies are parsed, decoded and hashed in the decoding thread (src/http/json-body.ts).
  registerBodyParsers(app, pools, config.bodyLimitBytes);
  await app.register(multipart, {
    limits: { fileSize: config.bodyLimitBytes, files: 1, fields: 16, fieldSize: 1024 * 1024, parts: 32, headerPairs: 64 },
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (app.refusingWork && request.method !== 'GET') {
      throw new ServiceError('overloaded', 'the server is shutting down; retry on another instance', { 'retry-after': '5' });
    }
  });
  // Who is calling (API keys, rate limit), then what the process can hold (in-flight body bytes,
  // event-loop delay): both refuse before a body is read.
  await app.register(callers, {
    keys: config.apiKeys,
    rateLimitPerMinute: config.rateLimitPerMinute,
    redis: redis && { client: redis, prefix: config.redisPrefix },
  });
  await app.register(overload, {
    inflightBodyBytes: config.inflightBodyBytes,
    bodyLimitBytes: config.bodyLimitBytes,
    readyMaxEventLoopDelayMs: config.readyMaxEventLoopDelayMs,
  });
  // A multipart body announced larger than the limit is refused before any of it is read.
  // (request.isMultipart() is only set once the body parser runs, after onRequest: read the
  // header. After the hook above, so the refusal carries x-request-id.)
  app.addHook('onRequest', async (request) => {
    const type = String(request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const length = Number(request.headers['content-length']);
    if (type === 'multipart/form-data' && Number.isFinite(length) && length > config.bodyLimitBytes) {
      throw new ServiceError('payload_too_large', `the body is ${length} bytes, larger than this server's limit of ${config.bodyLimitBytes} bytes`);
    }
  });
  // While draining, every answer (including that of a run already in flight) closes its
  // connection: otherwise a client's idle keep-alive socket holds server.close() open until the
  // keep-alive timeout, and shutdown ends at the backstop with exit code 1.
  app.addHook('onSend', async (_request, reply) => {
    if (app.draining) reply.header('connection', 'close');
  });

  app.setErrorHandler((error: FastifyError | ServiceError, request, reply) => {
    let refusal = refusalFor(error, request, config);
    if (!refusal) {
      request.log.error({ err: error }, 'internal error');
      refusal = { code: 'internal_error', message: 'internal error; the request id identifies it in the server log', headers: {} };
    }
    const { code, message } = refusal;
    reply.headers(refusal.headers);
    // A body refused before it was read whole (over the limit, announced or streamed): Fastify
    // marks the connection to close, and closing it while the client is still sending makes most
    // clients (fetch, Python requests, curl without Expect: 100-continue) see a reset or a broken
    // pipe instead of the 413. So a bounded overshoot (announced at most 4x the limit) is read and
    // discarded and the connection stays usable.
    if (code === 'payload_too_large' && !request.raw.complete) discardOvershoot(request, reply, 4 * config.bodyLimitBytes);
    return refuse(request, reply, code, message);
  });

  app.setNotFoundHandler((request, reply) => refuse(request, reply, 'route_not_found', `no route for ${clip(request.method, 20)} ${clip(request.url.split('?')[0]!)}`));

  /** Every refusal: counted, logged at info with its code, answered in the catalogue shape. */
  function refuse(request: FastifyRequest, reply: FastifyReply, code: ErrorCode, message: string): FastifyReply {
    const status = ERROR_CATALOGUE[code].status;
    reply.header('x-request-id', request.id);
    // Refusals the caller can act on (4xx) and those that say "retry" (503: overloaded, or the
    // shared Redis unavailable) are counted and logged; a 500 is logged as an error where it arose.
    if (status < 500 || status === 503) {
      countRefusal(code);
      request.log.info({ code, status, method: request.method, route: request.routeOptions.url ?? null, message: clipForLog(message) }, 'refused');
    }
    return reply.status(status).send(errorBody(code, message, String(request.id)));
  }

  await app.register(healthRoutes);
  await app.register(executeRoutes);
  await app.register(moduleRoutes);
  await app.register(jobRoutes);
  await app.register(playgroundRoutes);
  return app;
}
