// The call context a route hands the execution service: who is calling (src/plugins/callers.ts)
// and a signal that fires when the client goes away before its answer, so a task still waiting
// for a worker leaves its queue instead of running for nobody.

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CallContext } from '../service/execute.js';

export function callContext(request: FastifyRequest, reply: FastifyReply): CallContext {
  const ac = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) ac.abort(new Error('the client closed the connection'));
  });
  return { caller: request.caller.id, keyId: request.caller.keyId, signal: ac.signal };
}
