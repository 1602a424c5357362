// GET /metrics (Prometheus text format) and the per-request counters. The execution service
// records runs, preparations, queue waits and cache lookups itself (src/service/execute.ts);
// refusals are counted where they are answered (the error handlers in src/app.ts).

import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Metrics, type MetricsSources } from '../metrics/index.js';

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

async function metrics(app: FastifyInstance, options: { sources: MetricsSources }): Promise<void> {
  const m = new Metrics(options.sources);
  app.decorate('metrics', m);

  app.addHook('onResponse', async (request, reply) => {
    // The route template, never the raw URL: label values stay a closed set.
    const route = request.routeOptions.url ?? 'unmatched';
    m.httpRequests.inc({ route, status: String(reply.statusCode) });
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await m.registry.metrics();
    return reply.type(m.registry.contentType).send(text);
  });
}

export default fp(metrics, { name: 'wasmbox-metrics', fastify: '5.x' });
