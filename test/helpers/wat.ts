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
  const enabled = { ...FEATURES, ...features };
  const m = wabt.parseWat('test.wat', text, enabled);
  try {
    m.resolveNames();
    // validate() takes its own feature set (wabt's defaults leave threads, exceptions and tail
    // calls off; index.d.ts omits the parameter): without it a module using them fails here
    // although it parsed.
    (m as unknown as { validate(features: object): void }).validate(enabled);
    return new Uint8Array(m.toBinary({ write_debug_names: true }).buffer);
  } finally {
    m.destroy();
  }
}

/** WebAssembly text of a binary module (wabt's disassembly, the same features enabled). */
export function watText(bytes: Uint8Array): string {
  const m = wabt.readWasm(bytes, { ...FEATURES, readDebugNames: false });
  try {
    return m.toText({});
  } finally {
    m.destroy();
  }
}
