// The call context a route hands the execution service: who is calling (src/plugins/callers.ts)
// and a signal that fires when the client goes away before its answer, so a task still waiting
// for a worker leaves its queue instead of running for nobody.

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CallContext } from '../service/execute.js';

export function callContext(request: FastifyRequest, reply: FastifyReply): CallContext {
  return new RequestContext(request.caller.id, request.caller.keyId, reply);
}

/**
 * A class, not an object literal with a getter: V8 gives every literal whose accessor is a fresh
 * closure a hidden class of its own, allocated in old space, and that map keeps the closure and
 * everything it holds (the request, the reply) alive through each young-generation GC. Made per
 * request, that promoted whole requests to the old generation: scavenges copied 5-7 MB each and
 * paused the event loop 6-12 ms every ~200 ms under load. Instances of a class share one.
 */
class RequestContext implements CallContext {
  #ac: AbortController | null = null;

  constructor(
    readonly caller: string,
    readonly keyId: string | null,
    private readonly reply: FastifyReply,
  ) {}

  // Made on first use: only a task that has to wait in a queue reads it (FairQueue.acquire), and
  // most requests on a server with free workers never do. An AbortController per request (its
  // AbortSignal is an EventTarget) and a 'close' listener were measurable in a trivial run's
  // cost on the event loop.
  get signal(): AbortSignal {
    if (!this.#ac) {
      const controller = new AbortController();
      this.#ac = controller;
      const res = this.reply.raw;
      const gone = (): void => {
        if (!res.writableFinished) controller.abort(new Error('the client closed the connection'));
      };
      if (res.closed) gone();
      else res.once('close', gone);
    }
    return this.#ac.signal;
  }
}
