// Liveness, readiness and the machine-readable contract.

import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { ServiceError } from '../errors.js';
import { redisReachable, unavailable } from '../redis/index.js';

const OPENAPI = readFileSync(new URL('../../../openapi.yaml', import.meta.url), 'utf8');

export default async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async () => {
    if (app.draining) throw new ServiceError('overloaded', 'the server is shutting down', { 'retry-after': '5' });
    if (!app.pools.ready) throw new ServiceError('overloaded', 'the worker pool is not running', { 'retry-after': '1' });
    // A fresh server's preparation threads first warm up (src/worker/warmup.ts; readiness waits
    // at most WASMBOX_WARMUP_READY_MAX_MS): it serves meanwhile, but a module sent now would
    // prepare several times slower.
    if (!app.pools.warm) throw new ServiceError('overloaded', 'the preparation threads are warming up', { 'retry-after': '1' });
    // With REDIS_URL, a replica that cannot reach Redis can serve nothing that is shared: taken
    // out of the balancer's rotation until it can (it stays alive: /healthz still answers).
    if (app.redis && !(await redisReachable(app.redis))) throw unavailable('shared state (modules, rate limits, quotas)');
    return { status: 'ready' };
  });

  app.get('/openapi.yaml', async (_request, reply) => reply.type('application/yaml; charset=utf-8').send(OPENAPI));
}
