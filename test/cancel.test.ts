// What calls a waiting task off (src/scheduling/cancel.ts): an AbortSignal or a Departure, alone
// or either of two (a job run by an HTTP caller: the job's DELETE or the client leaving).

import { describe, expect, it } from 'vitest';
import { type Departure, cancelledBy, eitherCancel, onCancel } from '../src/scheduling/cancel.js';

/** A departure driven by the test. */
function departure(): Departure & { go(reason: Error): void } {
  let departed: Error | null = null;
  const listeners = new Set<() => void>();
  return {
    get departed() {
      return departed;
    },
    listen(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    go(reason) {
      departed = reason;
      for (const fn of [...listeners]) fn();
      listeners.clear();
    },
  };
}

describe('calling off a waiting task', () => {
  it('an AbortSignal: its reason once aborted, a listener that fires once, and one that can be stopped', () => {
    const ac = new AbortController();
    let fired = 0;
    onCancel(ac.signal, () => fired++);
    let stoppedFired = 0;
    const stop = onCancel(ac.signal, () => stoppedFired++);
    stop();
    expect(cancelledBy(ac.signal)).toBeNull();
    ac.abort(new Error('deleted'));
    ac.abort(new Error('again'));
    expect(fired).toBe(1);
    expect(stoppedFired).toBe(0);
    expect(cancelledBy(ac.signal)?.message).toBe('deleted');
    const plain = new AbortController();
    plain.abort('not an error');
    expect(cancelledBy(plain.signal)).toBeInstanceOf(Error);
  });

  it('either of a signal and a departure: called off by whichever goes first, once, with its reason', () => {
    for (const first of ['signal', 'departure'] as const) {
      const ac = new AbortController();
      const d = departure();
      const either = eitherCancel(ac.signal, d)!;
      let fired = 0;
      onCancel(either, () => fired++);
      expect(cancelledBy(either)).toBeNull();
      if (first === 'signal') ac.abort(new Error('deleted'));
      else d.go(new Error('the client closed the connection'));
      expect(fired).toBe(1);
      expect(cancelledBy(either)?.message).toBe(first === 'signal' ? 'deleted' : 'the client closed the connection');
      // The other going too fires nothing more: both listeners were removed.
      if (first === 'signal') d.go(new Error('late'));
      else ac.abort(new Error('late'));
      expect(fired).toBe(1);
    }
  });

  it('either, stopped before anything happens: nothing fires later', () => {
    const ac = new AbortController();
    const d = departure();
    let fired = 0;
    const stop = onCancel(eitherCancel(ac.signal, d)!, () => fired++);
    stop();
    ac.abort();
    d.go(new Error('gone'));
    expect(fired).toBe(0);
  });

  it('either with one side absent is that side', () => {
    const d = departure();
    const ac = new AbortController();
    expect(eitherCancel(d, undefined)).toBe(d);
    expect(eitherCancel(undefined, ac.signal)).toBe(ac.signal);
    expect(eitherCancel(undefined, undefined)).toBeUndefined();
  });
});
