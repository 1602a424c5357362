// WebAssembly text to binary, with wabt (the reference toolkit's parser and validator, compiled to
// WebAssembly: 0.7 MB, about 40 ms to load, against binaryen.js's 14.8 MB and 320-460 ms). Loaded
// lazily, on the first text to compile, so preparation threads that only ever see binaries (and
// the CLI running a .wasm) never pay for it. The output is what `wat2wasm` writes (no name
// section), so a module sent as text has the same content address as the same module compiled
// by hand.

import { clip } from '../errors.js';

type Wabt = Awaited<ReturnType<typeof import('wabt')>>;
type WasmFeatures = NonNullable<Parameters<Wabt['parseWat']>[2]>;

/** The post-MVP features V8 runs (the engine validates the binary again anyway). */
export const WAT_FEATURES: WasmFeatures = {
  mutable_globals: true,
  sat_float_to_int: true,
  sign_extension: true,
  simd: true,
  threads: true,
  multi_value: true,
  tail_call: true,
  bulk_memory: true,
  reference_types: true,
  exceptions: true,
};

/** The text did not compile: the first problem, with its line and column (1-based). */
export class WatSyntaxError extends Error {
  override readonly name = 'WatSyntaxError';
  constructor(
    message: string,
    readonly line: number | null,
    readonly column: number | null,
  ) {
    super(message);
  }
}

let wabt: Promise<Wabt> | null = null;

function load(): Promise<Wabt> {
  wabt ??= import('wabt').then((m) => m.default());
  return wabt;
}

const FILE = 'module.wat';
/** After compiling a text this long, the compiler instance is dropped: its memory (a WebAssembly
 *  memory outside the thread's JS heap limit, grown to fit the text) never shrinks, and a
 *  preparation thread lives for the server's lifetime. Reloading costs about 40 ms. */
const RELOAD_AFTER_CHARS = 1024 * 1024;
const LOCATED = new RegExp(`^${FILE.replace('.', '\\.')}:(\\d+):(\\d+): (?:error: )?(.*)$`);

/** Compiles WebAssembly text to a binary module; WatSyntaxError when it does not parse or
 *  validate. */
export async function compileWat(text: string): Promise<Uint8Array> {
  const depth = watNestingDepth(text);
  if (depth > MAX_WAT_NESTING) {
    throw new Error(
      `the text nests blocks and expressions ${depth} deep; this server's text compiler takes at most ${MAX_WAT_NESTING} (past about 200 it fails or does not finish); nest less, or send the binary module`,
    );
  }
  const w = await load();
  let module: ReturnType<Wabt['parseWat']> | null = null;
  try {
    // A byte-order mark is not WebAssembly text, but editors write one: it is not the author's code.
    module = w.parseWat(FILE, text.replace(/^\uFEFF/, ''), WAT_FEATURES);
    module.resolveNames();
    // validate() takes the feature set too (index.d.ts omits it); wabt's own defaults leave
    // threads, exceptions and tail calls off.
    (module as unknown as { validate(features: WasmFeatures): void }).validate(WAT_FEATURES);
    const { buffer } = module.toBinary({ log: false, write_debug_names: false });
    return new Uint8Array(buffer);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const located = firstProblem(message);
    if (located) throw located;
    // Not a report about the text: wabt itself failed (out of memory, an abort). Its instance
    // may be unusable now; the next text loads a fresh one.
    wabt = null;
    throw err;
  } finally {
    try {
      module?.destroy();
    } catch {
      // A compiler that aborted cannot free the module: load a fresh one for the next text.
      wabt = null;
    }
    if (text.length > RELOAD_AFTER_CHARS) wabt = null;
  }
}

/** The first "module.wat:LINE:COL: error: ..." line of wabt's report. */
function firstProblem(report: string): WatSyntaxError | null {
  for (const line of report.split('\n')) {
    const m = LOCATED.exec(line.trim());
    if (!m) continue;
    const lineNo = Number(m[1]);
    const column = Number(m[2]);
    return new WatSyntaxError(
      `the WebAssembly text does not compile: line ${lineNo}, column ${column}: ${clip(m[3]!.trim(), 300)}`,
      lineNo,
      column,
    );
  }
  if (/^(parseWat|validate) failed/.test(report)) {
    return new WatSyntaxError(`the WebAssembly text does not compile: ${clip(report.replace(/^\w+ failed:\s*/, '').split('\n')[0] ?? '', 300)}`, null, null);
  }
  return null;
}

/** Deepest nesting (parentheses plus unfolded block, loop, if, try ... end) compileWat takes. wabt
 *  parses recursively on its own small stack: folded expressions about 200 deep trap inside it,
 *  and unfolded blocks about 200 deep make it loop without end, so deeper text is refused before
 *  it reaches wabt (module_too_complex). Generated code that nests deeper goes as a binary. */
export const MAX_WAT_NESTING = 128;

const BLOCK_OPENERS = new Set(['block', 'loop', 'if', 'try', 'try_table']);

/**
 * How deep the text nests: parentheses, plus the unfolded (flat) structured instructions open at
 * that point (`block` ... `end`). Comments and strings are skipped. A linear scan, no allocation
 * per character.
 */
export function watNestingDepth(text: string): number {
  let parens = 0;
  let flat = 0;
  let max = 0;
  let afterParen = false;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x3b /* ; */ && text.charCodeAt(i + 1) === 0x3b) {
      const end = text.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
      continue;
    }
    if (c === 0x28 /* ( */ && text.charCodeAt(i + 1) === 0x3b /* ; */) {
      let commentDepth = 0;
      while (i < n) {
        if (text.startsWith('(;', i)) {
          commentDepth++;
          i += 2;
        } else if (text.startsWith(';)', i)) {
          commentDepth--;
          i += 2;
          if (commentDepth === 0) break;
        } else i++;
      }
      continue;
    }
    if (c === 0x22 /* " */) {
      i++;
      while (i < n && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c /* \ */ ? 2 : 1;
      i++;
      afterParen = false;
      continue;
    }
    if (c === 0x28) {
      parens++;
      afterParen = true;
      max = Math.max(max, parens + flat);
      i++;
      continue;
    }
    if (c === 0x29 /* ) */) {
      parens = Math.max(0, parens - 1);
      afterParen = false;
      i++;
      continue;
    }
    if (c <= 0x20) {
      i++;
      continue;
    }
    // A token: up to white space, a parenthesis, a quote or a comment.
    let j = i + 1;
    while (j < n) {
      const d = text.charCodeAt(j);
      if (d <= 0x20 || d === 0x28 || d === 0x29 || d === 0x22 || (d === 0x3b && text.charCodeAt(j + 1) === 0x3b)) break;
      j++;
    }
    const token = text.slice(i, j);
    // `(block ...)` is counted by its parenthesis; `block ... end` by the token.
    if (!afterParen && BLOCK_OPENERS.has(token)) {
      flat++;
      max = Math.max(max, parens + flat);
    } else if (token === 'end' && flat > 0) flat--;
    afterParen = false;
    i = j;
  }
  return max;
}
