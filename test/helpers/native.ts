// The WASI test programs (test/wasi/programs): their committed .wasm, and the same C sources
// built natively with gcc, so a test can compare a WASI run's output with the program run as an
// ordinary host process. gcc is optional: without it GCC is null and the comparisons are skipped
// (describe.skipIf(!GCC)), with NO_GCC_MESSAGE printed once by the suite that skips them.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROGRAMS = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'wasi', 'programs');

/** The committed .wasm of a test program. */
export function program(name: string): Uint8Array {
  return new Uint8Array(fs.readFileSync(path.join(PROGRAMS, `${name}.wasm`)));
}

/** 'gcc' when it runs on this machine, else null. */
export const GCC: string | null = spawnSync('gcc', ['--version']).status === 0 ? 'gcc' : null;

export const NO_GCC_MESSAGE = 'gcc not found: the comparisons of WASI output with the same C built natively are skipped';

export interface NativeRun {
  stdout: string;
  /** The exit status (null when killed by a signal). */
  status: number | null;
}

export interface NativeBuilds {
  /** Runs a native build: argv[0] is args[0], the environment exactly `env`, `stdin` as its input. */
  run(name: string, args: readonly string[], env: Record<string, string>, stdin?: string | Uint8Array): NativeRun;
  /** Removes the builds. */
  dispose(): void;
}

/** Builds the named programs with `gcc -O2` into a temporary directory. Needs GCC. */
export function buildNative(names: readonly string[]): NativeBuilds {
  if (!GCC) throw new Error(NO_GCC_MESSAGE);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasmbox-wasi-native-'));
  try {
    for (const name of names) {
      const r = spawnSync(GCC, ['-O2', '-o', path.join(dir, name), path.join(PROGRAMS, `${name}.c`)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`gcc ${name}.c failed: ${r.stderr}`);
    }
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    run(name, args, env, stdin = '') {
      const r = spawnSync(path.join(dir, name), args.slice(1), { argv0: args[0]!, env, input: stdin, timeout: 10_000 });
      if (r.error) throw r.error;
      return { stdout: new TextDecoder().decode(r.stdout), status: r.status };
    },
    dispose() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
