// Compiles WebAssembly text to a binary with wabt (the npm build of the reference toolkit), with
// the post-MVP features V8 supports enabled.

import wabtInit from 'wabt';

const wabt = await wabtInit();

export const FEATURES = {
  multi_value: true,
  bulk_memory: true,
  reference_types: true,
  sat_float_to_int: true,
  sign_extension: true,
  mutable_globals: true,
  threads: true,
  exceptions: true,
  tail_call: true,
  simd: true,
} as const;

export function wat(text: string, features: Partial<Record<keyof typeof FEATURES, boolean>> = {}): Uint8Array {
  const m = wabt.parseWat('test.wat', text, { ...FEATURES, ...features });
  try {
    m.resolveNames();
    m.validate();
    return new Uint8Array(m.toBinary({ write_debug_names: true }).buffer);
  } finally {
    m.destroy();
  }
}
