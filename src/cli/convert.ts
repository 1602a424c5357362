// From the words on the command line to the request's `function` and `args`: which word is the
// function, which export runs when none is named, and each argument converted by the export's
// signature into the JSON value the contract expects. The same conversion serves local and
// --server runs, so both send the same request.

import { parseModule } from '../wasm/module.js';
import { describeModule } from '../wasm/describe.js';
import { type FuncSig, formatSignature } from '../values/codec.js';
import { WASI_MODULE } from '../wasi/abi.js';
import { UsageError } from './args.js';

/** What the tool learns from the module before sending it; null fields when it cannot be parsed
 *  (the service then refuses it, and that answer is the one shown). */
export interface ModuleFacts {
  functions: Record<string, FuncSig> | null;
  /** Whether the module imports from wasi_snapshot_preview1. */
  wasi: boolean;
}

export function moduleFacts(bytes: Uint8Array): ModuleFacts {
  try {
    // The parser expects a module the engine has validated.
    if (!WebAssembly.validate(bytes)) return { functions: null, wasi: false };
    const parsed = parseModule(bytes);
    const { functions } = describeModule(parsed);
    return { functions, wasi: parsed.imports.some((i) => i.module === WASI_MODULE) };
  } catch {
    return { functions: null, wasi: false };
  }
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const FLOAT_WORDS: Readonly<Record<string, string>> = {
  nan: 'NaN',
  '+nan': 'NaN',
  '-nan': 'NaN',
  inf: 'Infinity',
  '+inf': 'Infinity',
  infinity: 'Infinity',
  '+infinity': 'Infinity',
  '-inf': '-Infinity',
  '-infinity': '-Infinity',
};

/** Whether a word reads as a value rather than as a function name. */
export function looksLikeValue(word: string): boolean {
  return NUMBER.test(word) || Object.hasOwn(FLOAT_WORDS, word.toLowerCase()) || /^[+-]?0x[0-9a-f]+$/i.test(word);
}

export interface Selection {
  function: string | undefined;
  args: string[];
}

/**
 * Splits [FUNCTION] [ARGS...]: the first word is the function when it names an exported function,
 * or when it cannot be a value (so a misspelt name is answered with function_not_found and the list
 * of exports). Otherwise the function is inferred: _start when exported, else the only exported
 * function.
 */
export function selectFunction(words: readonly string[], facts: ModuleFacts, file: string): Selection {
  const [first, ...rest] = words;
  const functions = facts.functions;
  if (first !== undefined && ((functions !== null && Object.hasOwn(functions, first)) || !looksLikeValue(first))) {
    return { function: first, args: rest };
  }
  if (functions === null) return { function: undefined, args: [...words] };
  const names = Object.keys(functions);
  if (Object.hasOwn(functions, '_start')) return { function: '_start', args: [...words] };
  if (names.length === 1) return { function: names[0]!, args: [...words] };
  if (names.length === 0) throw new UsageError(`${file} exports no functions, so there is nothing to run`, 'run');
  const shown = names.slice(0, 20).map((n) => formatSignature(n, functions[n]!));
  const more = names.length > 20 ? ` (and ${names.length - 20} more)` : '';
  throw new UsageError(`${file} exports ${names.length} functions; name the one to run: ${shown.join(', ')}${more}`, 'run');
}

/** Converts each word by the parameter type; words with no matching parameter (a count the
 *  service will refuse) and types the contract cannot carry are sent as the words themselves. */
export function convertArgs(words: readonly string[], sig: FuncSig | undefined): (string | number)[] {
  return words.map((w, i) => convertOne(w, sig?.params[i]));
}

function convertOne(word: string, type: string | undefined): string | number {
  switch (type) {
    case 'i32':
    case 'i64':
      return integerWord(word);
    case 'f32':
    case 'f64':
      return floatWord(word);
    default:
      return word;
  }
}

/** Integers stay decimal strings (exact for i64 beyond 2^53; the codec takes them for i32 too);
 *  "+5" loses its sign and 0x hex becomes decimal. Anything else is sent as typed, for the
 *  service to refuse with the signature. */
function integerWord(word: string): string {
  const w = word.trim();
  if (/^\+\d+$/.test(w)) return w.slice(1);
  const hex = /^([+-]?)0x([0-9a-f]+)$/i.exec(w);
  if (hex) return `${hex[1] === '-' ? '-' : ''}${BigInt(`0x${hex[2]}`).toString()}`;
  return w;
}

/** Finite decimals become numbers; NaN, Infinity, -Infinity and -0 (also "inf", "nan",
 *  "-0.0", or a decimal too large for a double) become the contract's strings. */
function floatWord(word: string): string | number {
  const w = word.trim();
  const named = FLOAT_WORDS[w.toLowerCase()];
  if (named !== undefined) return named;
  if (w === 'NaN' || w === 'Infinity' || w === '-Infinity') return w;
  if (!NUMBER.test(w)) return word;
  const n = Number(w);
  if (Object.is(n, -0)) return '-0';
  if (n === Infinity) return 'Infinity';
  if (n === -Infinity) return '-Infinity';
  return n;
}
