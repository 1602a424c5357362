// piscina (5.3.2, and 6.0.0-rc.1) builds a worker's public interface anew every time it is read:
// an object literal with six getters (`WorkerInfo.interface`, dist/worker_pool/index.js). It is
// read for every ready worker on every dispatch (`_distributeTask`, `_onWorkerAvailable`). V8
// cannot share one hidden class among objects whose accessors are different closures, so each
// read allocates a map in old space that points at young objects, and those survive every
// scavenge they meet: about 1.6 KB per task, 5.5 MB promoted at each scavenge of the server's
// main thread under load, scavenge pauses of 6-12 ms every ~200 ms and a mark-compact every
// couple of seconds.
//
// The interface only forwards to the worker's live state (its getters read `worker` when called),
// so one object per worker, built on first read, answers exactly the same. This module installs
// that cache once, where piscina's own module is loaded. If a later piscina changes the shape
// (no such class or getter), nothing is installed and piscina runs as it ships;
// test/piscina-interface.test.ts then fails, so the upgrade is noticed.

import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

interface WorkerInfoModule {
  WorkerInfo?: { prototype: object };
}

/** Whether the cache is installed (for the test and the startup log). */
export const piscinaInterfaceCached: boolean = install();

function install(): boolean {
  let mod: WorkerInfoModule;
  try {
    mod = require(path.join(path.dirname(require.resolve('piscina')), 'worker_pool', 'index.js')) as WorkerInfoModule;
  } catch {
    return false;
  }
  const proto = mod.WorkerInfo?.prototype;
  const original = proto && Object.getOwnPropertyDescriptor(proto, 'interface');
  const build = original?.get;
  if (!proto || !original || !build || original.set) return false;
  const cache = new WeakMap<object, unknown>();
  Object.defineProperty(proto, 'interface', {
    configurable: true,
    enumerable: original.enumerable ?? false,
    get(this: object): unknown {
      let face = cache.get(this);
      if (face === undefined) {
        face = build.call(this);
        cache.set(this, face);
      }
      return face;
    },
  });
  return true;
}
