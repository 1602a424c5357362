// POST /execute: parse and validate the body, call the execution service, reply. A batch
// ("calls") is the service's to run; this only logs it as one line.

import type { FastifyInstance } from 'fastify';
import { readRunBody, toExecuteRequest } from './body.js';
import { callContext } from './context.js';

export default async function executeRoutes(app: FastifyInstance): Promise<void> {
  app.post('/execute', async (request, reply) => {
    const parsed = await readRunBody(request);
    const body = parsed.fields;
    const result = await app.executor.execute(toExecuteRequest(parsed), callContext(request, reply));
    if ('calls' in result) {
      request.log.info({ moduleId: result.moduleId, calls: result.calls.length, outcomes: result.telemetry.outcomes, telemetry: result.telemetry }, 'batch execution');
    } else {
      request.log.info({ moduleId: result.moduleId, function: body.function ?? '_start', outcome: result.outcome, telemetry: result.telemetry }, 'execution');
    }
    return reply.send(result);
  });
}
