// POST /modules, GET /modules/{moduleId}, DELETE /modules/{moduleId}: the module store.

import type { FastifyInstance } from 'fastify';
import { ServiceError } from '../errors.js';
import { ModuleIdSchema } from '../schemas/execute.js';
import { readModuleBody } from './body.js';
import { callContext } from './context.js';

export default async function moduleRoutes(app: FastifyInstance): Promise<void> {
  app.post('/modules', async (request, reply) => {
    const source = await readModuleBody(request);
    const ctx = callContext(request, reply);
    const { created, body } = await ('wat' in source ? app.executor.store(source, ctx) : app.executor.store(source.module, ctx, source.moduleHash));
    request.log.info({ moduleId: body.moduleId, size: body.size, created }, 'module stored');
    return reply
      .status(created ? 201 : 200)
      .header('location', `/modules/${body.moduleId}`)
      .send(body);
  });

  app.get<{ Params: { moduleId: string } }>('/modules/:moduleId', async (request) => {
    return app.executor.describeStored(moduleIdParam(request.params.moduleId));
  });

  app.delete<{ Params: { moduleId: string } }>('/modules/:moduleId', async (request, reply) => {
    const id = moduleIdParam(request.params.moduleId);
    await app.executor.deleteStored(id);
    request.log.info({ moduleId: id }, 'module deleted');
    return reply.status(204).send();
  });
}

function moduleIdParam(raw: string): string {
  // The router has already percent-decoded the parameter; decoding again would throw on a "%"
  // it produced (a 500 for "/modules/%25zz") and would let "%253A" stand for ":".
  const parsed = ModuleIdSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ServiceError('invalid_request', `path.moduleId: must be "sha256:" followed by 64 lowercase hex digits; got ${JSON.stringify(raw.slice(0, 80))}`);
  }
  return parsed.data;
}
