// Self-protection of the main thread: bytes of request bodies held at once are capped
// (WASMBOX_INFLIGHT_BODY_MB, refused early with 503 before the body is read), and event-loop
// delay (measured by @fastify/under-pressure) first turns /readyz to 503, so a load balancer
// stops sending, and at twice that delay sheds new work with 503 overloaded and Retry-After.
// /healthz (liveness) and /metrics always answer.

import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { ServiceError } from '../errors.js';
import { InflightBytes } from '../limits/inflight-bytes.js';

declare module 'fastify' {
  interface FastifyInstance {
    inflight: InflightBytes;
  }
}

export interface OverloadOptions {
  inflightBodyBytes: number;
  /** The body limit: what a chunked body of unknown length may grow to. */
  bodyLimitBytes: number;
  /** Mean event-loop delay over a sample at which /readyz fails; new work is shed at twice it. */
  readyMaxEventLoopDelayMs: number;
}

const SAMPLE_INTERVAL_MS = 250;
const ALWAYS_ANSWERED = new Set(['/healthz', '/metrics']);

async function overload(app: FastifyInstance, options: OverloadOptions): Promise<void> {
  const inflight = new InflightBytes(options.inflightBodyBytes);
  app.decorate('inflight', inflight);

  app.addHook('onRequest', async (request, reply) => {
    if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'DELETE') return;
    const announced = Number(request.headers['content-length']);
    const chunked = request.headers['content-length'] === undefined && request.headers['transfer-encoding'] !== undefined;
    const bytes = chunked ? options.bodyLimitBytes : Number.isFinite(announced) && announced > 0 ? Math.min(announced, options.bodyLimitBytes) : 0;
    if (bytes === 0) return;
    const release = inflight.reserve(bytes);
    // 'close' fires once the answer is sent or the connection is gone, whichever comes first.
    reply.raw.once('close', release);
  });

  const shedMs = 2 * options.readyMaxEventLoopDelayMs;
  await app.register(underPressure, {
    maxEventLoopDelay: options.readyMaxEventLoopDelayMs,
    sampleInterval: SAMPLE_INTERVAL_MS,
    // Async: a rejection reaches the error handler (a catalogue-shaped 503), a resolution lets the
    // request through.
    pressureHandler: async (request, _reply, _type, value) => {
      const path = request.url.split('?', 1)[0]!;
      if (ALWAYS_ANSWERED.has(path)) return undefined;
      const delayMs = Math.round(Number(value));
      if (path === '/readyz') {
        throw new ServiceError('overloaded', `the event loop lags by ${delayMs} ms on average; not taking new traffic`, { 'retry-after': '1' });
      }
      // Infinity means no sample at all in the interval (the loop was blocked throughout, e.g. by
      // one large parse): reason enough to stop advertising readiness, not to refuse work.
      if (request.method === 'GET' || !Number.isFinite(Number(value)) || Number(value) <= shedMs) return undefined;
      throw new ServiceError('overloaded', `the server is busy (its event loop lags by ${delayMs} ms); retry shortly`, { 'retry-after': '1' });
    },
  });
}

export default fp(overload, { name: 'wasmbox-overload', fastify: '5.x' });
