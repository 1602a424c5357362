// Fuel suite: ../shared/conformance/fuel/fuel.wast, `(assert_fuel N (module ...))` forms. Each
// module is compiled with wabt, run through the server's own instrumentation, instantiated, and
// its hidden start function called; the fuel it consumed must be exactly N.

import { readFile } from 'node:fs/promises';
import wabtInit from 'wabt';
import { instrument } from '../src/metering/instrument.js';
import { runGuest } from '../src/worker/guest.js';

export interface FuelCase {
  /** 1-based line of the form in fuel.wast. */
  line: number;
  expected: number;
  moduleText: string;
}

export interface FuelFailure {
  line: number;
  expected: number;
  got: string;
  module: string;
}

export interface FuelReport {
  total: number;
  passed: number;
  failed: number;
  failures: FuelFailure[];
}

const LIMIT = 1_000_000n;

/** Splits WebAssembly text into its top-level parenthesised forms, skipping `;;` line comments,
 *  `(; ... ;)` block comments (nested) and string literals when balancing parentheses. */
export function topLevelForms(text: string): Array<{ text: string; line: number }> {
  const forms: Array<{ text: string; line: number }> = [];
  let depth = 0;
  let start = -1;
  let startLine = 0;
  let line = 1;
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '\n') {
      line++;
      i++;
    } else if (ch === ';' && text[i + 1] === ';') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (ch === '(' && text[i + 1] === ';') {
      let nest = 1;
      i += 2;
      while (i < text.length && nest > 0) {
        if (text[i] === '(' && text[i + 1] === ';') {
          nest++;
          i += 2;
        } else if (text[i] === ';' && text[i + 1] === ')') {
          nest--;
          i += 2;
        } else {
          if (text[i] === '\n') line++;
          i++;
        }
      }
    } else if (ch === '"') {
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\') i++;
        else if (text[i] === '\n') line++;
        i++;
      }
      i++;
    } else if (ch === '(') {
      if (depth === 0) {
        start = i;
        startLine = line;
      }
      depth++;
      i++;
    } else if (ch === ')') {
      depth--;
      if (depth < 0) throw new Error(`unbalanced ")" at line ${line}`);
      if (depth === 0) forms.push({ text: text.slice(start, i + 1), line: startLine });
      i++;
    } else {
      i++;
    }
  }
  if (depth !== 0) throw new Error(`unbalanced "(" opened at line ${startLine}`);
  return forms;
}

export function parseFuelWast(text: string): FuelCase[] {
  const cases: FuelCase[] = [];
  for (const form of topLevelForms(text)) {
    const m = /^\(\s*assert_fuel\s+(\d+)\s+([\s\S]*)\)$/.exec(form.text);
    if (!m) throw new Error(`line ${form.line}: expected (assert_fuel N (module ...)), got ${form.text.slice(0, 60)}`);
    cases.push({ line: form.line, expected: Number(m[1]), moduleText: m[2]!.trim() });
  }
  return cases;
}

type Wabt = Awaited<ReturnType<typeof wabtInit>>;

/** Fuel the module's instantiation (its start function) consumes under the server's metering. */
function measure(wabt: Wabt, moduleText: string): bigint {
  const parsed = wabt.parseWat('fuel.wat', moduleText);
  let binary: Uint8Array;
  try {
    binary = parsed.toBinary({}).buffer;
  } finally {
    parsed.destroy();
  }
  const res = instrument(binary, { maxTableElements: 100_000 });
  // The runner's own guest execution: a trap still counts the fuel used before it.
  const run = runGuest({
    module: new WebAssembly.Module(res.bytes),
    layout: res.layout,
    fuelLimit: LIMIT,
    memoryLimitPages: 65_536,
    functionName: null,
    args: [],
  });
  return run.rawConsumed;
}

/**
 * wabt, loaded. Call it before the server starts: its preparation workers turn off V8's lazy
 * compilation for the whole process (src/worker/prepare.ts), and an asynchronous compilation
 * that is then eager does not keep Node's event loop alive, so a script with nothing else
 * pending would exit in the middle of loading wabt.
 */
export function loadWabt(): Promise<Wabt> {
  return wabtInit();
}

export async function runFuelSuite(fuelWastPath: string, wabt: Wabt): Promise<FuelReport> {
  const text = await readFile(fuelWastPath, 'utf8');
  const cases = parseFuelWast(text);
  const report: FuelReport = { total: cases.length, passed: 0, failed: 0, failures: [] };
  for (const c of cases) {
    let got: string;
    let ok = false;
    try {
      const consumed = measure(wabt, c.moduleText);
      ok = consumed === BigInt(c.expected);
      got = String(consumed);
    } catch (e) {
      got = `error: ${(e as Error).message}`;
    }
    if (ok) report.passed++;
    else {
      report.failed++;
      report.failures.push({ line: c.line, expected: c.expected, got, module: c.moduleText.replace(/\s+/g, ' ').slice(0, 160) });
    }
  }
  return report;
}
