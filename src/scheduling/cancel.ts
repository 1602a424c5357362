// What a waiting task listens to for being called off: an AbortSignal (a job's DELETE), or the
// departure of an HTTP caller (src/routes/context.ts), which is a listener on the response's
// 'close' event. An AbortController per waiting request (its AbortSignal is an EventTarget, and
// the fair queue and the run pool each added and removed a listener on it) was a measurable part
// of a trivial run's event-loop time with 32 connections waiting: in one A/B under that load, the
// run queue given no signal at all took the main thread from 155 to 138 µs per request.

/** A caller that may go away. */
export interface Departure {
  /** Why the caller went away; null while it is here. */
  readonly departed: Error | null;
  /** Calls `fn` once when the caller goes away (never synchronously); answers how to stop
   *  listening. */
  listen(fn: () => void): () => void;
}

export type Cancel = AbortSignal | Departure;

const isSignal = (c: Cancel): c is AbortSignal => typeof (c as AbortSignal).addEventListener === 'function';

/** Why `c` is called off already, or null. */
export function cancelledBy(c: Cancel): Error | null {
  if (!isSignal(c)) return c.departed;
  if (!c.aborted) return null;
  return c.reason instanceof Error ? c.reason : new Error('aborted');
}

/** Calls `fn` once when `c` is called off; answers how to stop listening. */
export function onCancel(c: Cancel, fn: () => void): () => void {
  if (!isSignal(c)) return c.listen(fn);
  c.addEventListener('abort', fn, { once: true });
  return () => c.removeEventListener('abort', fn);
}

/** Called off when either is (either may be absent). */
export function eitherCancel(a: Cancel | undefined, b: Cancel | undefined): Cancel | undefined {
  if (!a || !b) return a ?? b;
  return {
    get departed() {
      return cancelledBy(a) ?? cancelledBy(b);
    },
    listen(fn) {
      let stops: (() => void)[] = [];
      const once = (): void => {
        for (const stop of stops) stop();
        stops = [];
        fn();
      };
      stops = [onCancel(a, once), onCancel(b, once)];
      return () => {
        for (const stop of stops) stop();
        stops = [];
      };
    },
  };
}
