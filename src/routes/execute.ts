// POST /execute: parse and validate the body, call the execution service, reply.

import type { FastifyInstance } from 'fastify';
import { ServiceError } from '../errors.js';
import { ExecuteJsonSchema, describeIssues } from '../schemas/execute.js';

export default async function executeRoutes(app: FastifyInstance): Promise<void> {
  app.post('/execute', async (request, reply) => {
    const parsed = ExecuteJsonSchema.safeParse(request.body ?? {});
    if (!parsed.success) throw new ServiceError('invalid_request', describeIssues(parsed.error));
    const body = parsed.data;
    const result = await app.executor.execute({
      ...(body.module !== undefined && { module: Buffer.from(body.module, 'base64') }),
      ...(body.moduleId !== undefined && { moduleId: body.moduleId }),
      ...(body.function !== undefined && { function: body.function }),
      args: body.args,
      ...(body.limits !== undefined && { limits: body.limits }),
    });
    request.log.info(
      { moduleId: result.moduleId, function: body.function ?? '_start', outcome: result.outcome, telemetry: result.telemetry },
      'execution',
    );
    return reply.send(result);
  });
}
