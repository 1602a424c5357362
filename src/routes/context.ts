// The call context a route hands the execution service: who is calling (src/plugins/callers.ts)
// and its departure (src/scheduling/cancel.ts): the client going away before its answer, so a
// task still waiting for a worker leaves its queue instead of running for nobody.

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Departure } from '../scheduling/cancel.js';
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
class RequestContext implements CallContext, Departure {
  /** Listeners for the client going away; null until the first (most requests never wait). */
  #listeners: (() => void)[] | null = null;
  #departed: Error | null = null;

  constructor(
    readonly caller: string,
    readonly keyId: string | null,
    private readonly reply: FastifyReply,
  ) {}

  // Read only by a task that has to wait in a queue (FairQueue.acquire, the run pool). It is this
  // object itself: no AbortController (an EventTarget) per request, and one 'close' listener on the
  // response, added when the first waiter listens.
  get departure(): Departure {
    return this;
  }

  get departed(): Error | null {
    if (this.#departed === null) {
      const res = this.reply.raw;
      if (res.closed && !res.writableFinished) this.#departed = new Error('the client closed the connection');
    }
    return this.#departed;
  }

  listen(fn: () => void): () => void {
    if (this.#listeners === null) {
      const listeners: (() => void)[] = [];
      this.#listeners = listeners;
      const res = this.reply.raw;
      res.once('close', () => {
        if (res.writableFinished) return;
        this.#departed ??= new Error('the client closed the connection');
        for (const listener of listeners.splice(0)) listener();
      });
    }
    const listeners = this.#listeners;
    listeners.push(fn);
    return () => {
      const at = listeners.indexOf(fn);
      if (at >= 0) listeners.splice(at, 1);
    };
  }
}
