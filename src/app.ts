// Builds the Fastify application without listening: tests build it per file, src/server.ts
// listens and shuts it down.

import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance, LogController } from 'fastify';
import { type Config, loadConfig } from './config.js';
import { ERROR_CATALOGUE, type ErrorCode, ServiceError, errorBody } from './errors.js';
import multipart from '@fastify/multipart';
import executeRoutes from './routes/execute.js';
import healthRoutes from './routes/health.js';
import moduleRoutes from './routes/modules.js';
import { ExecuteService } from './service/execute.js';
import { FsModuleStore } from './store/fs-store.js';
import type { ModuleStore } from './store/types.js';
import { WorkerPools } from './worker/pool.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    pools: WorkerPools;
    executor: ExecuteService;
    /** Set when shutdown begins: new work is refused with 503, readiness fails. */
    draining: boolean;
  }
}

export interface BuildOptions {
  config?: Config;
  /** The module store; defaults to the local-disk store under config.dataDir. */
  store?: ModuleStore;
  /** Pino logger options or false; defaults to JSON lines at config.logLevel. */
  logger?: boolean | object;
}

// Fastify's own refusals, mapped onto the catalogue.
const FASTIFY_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
  FST_REQ_FILE_TOO_LARGE: 'payload_too_large',
  FST_PARTS_LIMIT: 'payload_too_large',
  FST_FILES_LIMIT: 'invalid_request',
  FST_FIELDS_LIMIT: 'invalid_request',
  FST_PROTO_VIOLATION: 'invalid_request',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'invalid_request',
};

export async function buildApp(options: BuildOptions = {}): Promise<FastifyInstance> {
  const config = options.config ?? loadConfig();
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel, redact: ['req.headers.authorization', 'req.headers["x-api-key"]'] },
    bodyLimit: config.bodyLimitBytes,
    // One structured line per execution (routes/execute.ts) instead of two per request.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    return503OnClosing: true,
  });

  app.decorate('config', config);
  app.decorate('draining', false);
  const store = options.store ?? new FsModuleStore({ dir: config.dataDir, maxBytes: config.storeMaxBytes, maxModules: config.storeMaxModules });
  await store.open();
  const pools = new WorkerPools(config);
  pools.onLateError = (err) => app.log.warn({ err }, 'a worker failed after its task ended; it was replaced');
  app.decorate('pools', pools);
  app.decorate('executor', new ExecuteService(config, pools, store));
  app.addHook('onClose', async () => {
    await pools.close();
    await store.close();
  });

  // Three body forms: application/json (Fastify's own parser), application/wasm (the raw module,
  // capped by bodyLimit while it streams in) and multipart/form-data (streamed by
  // @fastify/multipart, each part capped by the body limit). Nothing else is accepted (415).
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('application/wasm', { parseAs: 'buffer', bodyLimit: config.bodyLimitBytes }, (_request, body, done) => done(null, body));
  await app.register(multipart, {
    limits: { fileSize: config.bodyLimitBytes, files: 1, fields: 16, fieldSize: 1024 * 1024, parts: 32, headerPairs: 64 },
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (app.draining && request.method !== 'GET') {
      throw new ServiceError('overloaded', 'the server is shutting down; retry on another instance', { 'retry-after': '5' });
    }
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
    let code: ErrorCode;
    let message = error.message;
    if (error instanceof ServiceError) {
      code = error.code;
      reply.headers(error.headers);
    } else if (error.code && FASTIFY_CODES[error.code]) {
      code = FASTIFY_CODES[error.code]!;
      if (code === 'payload_too_large') message = `the body is larger than this server's limit of ${config.bodyLimitBytes} bytes`;
      if (code === 'unsupported_media_type') {
        message = `unsupported content type ${JSON.stringify(request.headers['content-type'] ?? '')}; send application/json, multipart/form-data or application/wasm`;
      }
      if (error.code === 'FST_REQ_FILE_TOO_LARGE') message = `the module file is larger than this server's limit of ${config.bodyLimitBytes} bytes`;
      // The multipart parser's own counters: name the form, as the field errors do.
      if (error.code === 'FST_FILES_LIMIT') message = 'form.module: give one file part, the module';
      if (error.code === 'FST_FIELDS_LIMIT') message = 'form: too many fields (at most 16)';
      if (error.code === 'FST_PARTS_LIMIT') message = 'form: too many parts (at most 32)';
    } else if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      code = error.statusCode === 413 ? 'payload_too_large' : error.statusCode === 415 ? 'unsupported_media_type' : 'invalid_request';
    } else {
      request.log.error({ err: error }, 'internal error');
      code = 'internal_error';
      message = 'internal error; the request id identifies it in the server log';
    }
    // A body refused before it was read whole (a multipart body over the limit, announced or
    // streamed): a modest overshoot (announced at most 4x the limit) is read and discarded, so a
    // client still sending it gets the answer rather than a broken pipe; anything larger, or of
    // unknown length, is not read any further and the connection closes after the answer.
    if (code === 'payload_too_large' && !request.raw.complete) {
      const announced = Number(request.headers['content-length']);
      if (Number.isFinite(announced) && announced <= 4 * config.bodyLimitBytes) request.raw.resume();
      else reply.header('connection', 'close');
    }
    return reply.status(ERROR_CATALOGUE[code].status).send(errorBody(code, message, String(request.id)));
  });

  app.setNotFoundHandler((request, reply) => {
    const message = `no route for ${request.method} ${request.url.split('?')[0]}`;
    return reply.status(ERROR_CATALOGUE.route_not_found.status).send(errorBody('route_not_found', message, String(request.id)));
  });

  await app.register(healthRoutes);
  await app.register(executeRoutes);
  await app.register(moduleRoutes);
  return app;
}
