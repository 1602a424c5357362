// The V8 settings the service compiles guests with, applied when this module is imported (by the
// preparation worker, which compiles every guest module, and by the runner). V8 flags are per
// process, so they also hold for every other thread of the server, which is what it needs.
//
// - --no-wasm-lazy-compilation: compilation is preparation, not guest time. By default V8
//   compiles each function on its first call, inside the guest's run and deadline (a no-op export
//   of a module with 300k nested blocks took 1.26 s to call). Eagerly, `new WebAssembly.Module`
//   compiles every function with Liftoff within the preparation deadline, and the compiled code
//   goes to the runner threads with the module (TurboFan still tiers hot functions up, in the
//   background).
// - --experimental-wasm-branch-hinting: the fuel checks' `if`s are hinted "unlikely"
//   (src/metering/instrument.ts), so TurboFan compiles their call to the host as deferred code,
//   off the hot path. The branch hinting proposal is standard (phase 5) and V8's implementation
//   is the one Chrome ships from M136; Node 22 and 24 still have it behind this flag.
//
// A note for scripts that also load other WebAssembly asynchronously (wabt, binaryen): once
// compilation is eager, a pending WebAssembly.compile/instantiate does not keep Node's event loop
// alive, so such a script must hold a handle (or finish loading) while it waits.

import v8 from 'node:v8';

export const ENGINE_FLAGS = ['--no-wasm-lazy-compilation', '--experimental-wasm-branch-hinting'] as const;

for (const flag of ENGINE_FLAGS) v8.setFlagsFromString(flag);
