// The call context a route hands the execution service: who is calling (src/plugins/callers.ts)
// and a signal that fires when the client goes away before its answer, so a task still waiting
// for a worker leaves its queue instead of running for nobody.

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CallContext } from '../service/execute.js';

export function callContext(request: FastifyRequest, reply: FastifyReply): CallContext {
  let ac: AbortController | null = null;
  return {
    caller: request.caller.id,
    keyId: request.caller.keyId,
    // Made on first use: only a task that has to wait in a queue reads it (FairQueue.acquire),
    // and most requests on a server with free workers never do. An AbortController per request
    // (its AbortSignal is an EventTarget) and a 'close' listener were measurable in a trivial
    // run's cost on the event loop.
    get signal(): AbortSignal {
      if (!ac) {
        const controller = new AbortController();
        ac = controller;
        const res = reply.raw;
        const gone = (): void => {
          if (!res.writableFinished) controller.abort(new Error('the client closed the connection'));
        };
        if (res.closed) gone();
        else res.once('close', gone);
      }
      return ac.signal;
    },
  };
}
