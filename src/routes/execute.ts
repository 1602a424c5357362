// POST /execute: parse and validate the body, call the execution service, reply.

import type { FastifyInstance } from 'fastify';
import { readRunBody } from './body.js';

export default async function executeRoutes(app: FastifyInstance): Promise<void> {
  app.post('/execute', async (request, reply) => {
    const { module, moduleId, fields: body } = await readRunBody(request);
    const result = await app.executor.execute({
      ...(module !== undefined && { module }),
      ...(moduleId !== undefined && { moduleId }),
      ...(body.function !== undefined && { function: body.function }),
      args: body.args,
      ...(body.limits !== undefined && { limits: body.limits }),
      ...(body.wasi !== undefined && {
        wasi: {
          args: body.wasi.args,
          env: body.wasi.env,
          ...(body.wasi.stdin !== undefined && { stdin: new TextEncoder().encode(body.wasi.stdin) }),
          ...(body.wasi.stdinBase64 !== undefined && { stdin: new Uint8Array(Buffer.from(body.wasi.stdinBase64, 'base64')) }),
        },
      }),
    });
    request.log.info(
      { moduleId: result.moduleId, function: body.function ?? '_start', outcome: result.outcome, telemetry: result.telemetry },
      'execution',
    );
    return reply.send(result);
  });
}
