// Preparation worker: validate, check imports, instrument, compile. Runs in its own pool, away
// from the main thread (a big module must not stall other requests) and from the guest runners
// (which must stay small so a runner killed at its deadline is replaced in milliseconds).

import os from 'node:os';
import { workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { estimateCompiledBytes, estimateHeapBytes } from '../service/cache-weight.js';
import { TableLimitError } from '../limits/rewrite.js';
import { CodeGrowthError, instrumentParsed } from '../metering/instrument.js';
import { WasmFormatError } from '../wasm/bytes.js';
import { describeModule } from '../wasm/describe.js';
import { UnsupportedFeature, parseModule } from '../wasm/module.js';
import { WASI_MODULE, checkWasiImport } from '../wasi/abi.js';
import { clip as clipText } from '../errors.js';
import { describeNonWasm } from '../wasm/sniff.js';
import { markStarted } from './clock.js';
// First: compilation is eager (preparation, not guest time) and the fuel checks' hints count.
import './engine-flags.js';
import type { CompileTextResult, CompileTextTask, PrepareResult, PrepareTask, PrepareWorkerData } from './protocol.js';
import { WatSyntaxError, compileWat } from '../wasm/wat.js';
import { startWarmUp, stopWarmUp, warmUpRounds } from './warmup.js';

// This thread runs at a lower scheduling priority than the main thread (Linux keeps a nice value
// per thread), so preparation use every core the machine has while the event loop, which answers
// health checks and refuses excess work, is never starved of CPU by them.
try {
  os.setPriority(0, 5);
} catch {
  // Not permitted here (some sandboxes): run at the normal priority.
}

// The JavaScript that prepares modules is optimized by V8 only once it has run enough: a server's
// thread warms it up on a generated module before the first real one arrives (warmup.ts).
const data = workerData as PrepareWorkerData | null;
if (data?.warmUp) void startWarmUp({ ...(data.warmState && { shared: data.warmState }) });

const MAX_MESSAGE = 500;
const ns = (from: number): number => Math.round((performance.now() - from) * 1e6);
const clip = (s: string): string => clipText(s, MAX_MESSAGE);

export default function prepare(task: PrepareTask): PrepareResult {
  markStarted(task.startedAt);
  stopWarmUp();
  const bytes = task.bytes;
  let t = performance.now();
  // V8 is the validator: its verdict and message are the standard ones. validate() checks without
  // compiling (compiling the original eagerly would be wasted work); only a module it refuses is
  // compiled, for the engine's message.
  if (!WebAssembly.validate(bytes)) {
    let message = 'the module is not valid WebAssembly';
    try {
      new WebAssembly.Module(bytes);
    } catch (err) {
      message = engineMessage(err);
    }
    // A body that is not a binary module at all (WebAssembly text, base64, JSON, an archive) gets
    // a message naming what it is and what to send instead.
    return { ok: false, code: 'invalid_module', message: clip(describeNonWasm(bytes, 'module.wat') ?? message) };
  }
  let parsed;
  try {
    parsed = parseModule(bytes);
  } catch (err) {
    const refusal = decodingRefusal(err);
    if (refusal) return refusal;
    throw err;
  }
  const validateNs = ns(t);

  // The only imports the service provides are WASI preview1 functions, with their exact
  // signatures (V8 would accept a JS function for any signature and misread the arguments).
  let wasi = false;
  const foreign = parsed.imports.filter((i) => i.module !== WASI_MODULE);
  const imp = foreign[0];
  if (imp) {
    const kind = imp.kind === 'func' ? 'function' : imp.kind;
    return {
      ok: false,
      code: 'unsupported_import',
      message: clip(
        `the module imports ${kind} "${imp.module}" "${imp.name}", which this service does not provide` +
          (foreign.length > 1 ? ` (and ${foreign.length - 1} more imports)` : '') +
          `; modules must be self-contained, apart from WASI preview1 ("${WASI_MODULE}") functions`,
      ),
    };
  }
  for (const i of parsed.imports) {
    const type = i.typeIndex !== undefined ? parsed.types[i.typeIndex] : undefined;
    const problem = checkWasiImport(i.name, type?.params ?? [], type?.results ?? [], i.kind);
    if (problem) return { ok: false, code: 'unsupported_import', message: clip(problem) };
    wasi = true;
  }

  t = performance.now();
  let instrumented;
  try {
    instrumented = instrumentParsed(parsed, { maxTableElements: task.maxTableElements });
  } catch (err) {
    if (err instanceof TableLimitError || err instanceof CodeGrowthError) return { ok: false, code: 'module_too_complex', message: err.message };
    const refusal = decodingRefusal(err);
    if (refusal) return refusal;
    throw err;
  }
  const instrumentNs = ns(t);

  t = performance.now();
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(instrumented.bytes);
  } catch (err) {
    // The original compiled, so only an engine limit crossed by the added code can land here
    // (for example a function body or local count at V8's maximum).
    return {
      ok: false,
      code: 'module_too_complex',
      message: clip(`the metered module exceeds an engine limit: ${engineMessage(err)}`),
    };
  }
  const compileNs = ns(t);

  const { description, functions } = describeModule(parsed);
  const weightBytes =
    estimateHeapBytes({ description, functions }) + estimateCompiledBytes(instrumented.bytes.length, parsed.importedFuncs + parsed.funcTypes.length);
  return {
    ok: true,
    module,
    description,
    functions,
    layout: instrumented.layout,
    instrumentedSize: instrumented.bytes.length,
    weightBytes,
    wasi,
    timings: { validateNs, instrumentNs, compileNs, warmUpRounds: warmUpRounds() },
  };
}

/** WebAssembly text to a binary module (before preparation, which then validates it as any
 *  other binary). The compiler is loaded on the first text this thread sees. */
export async function compileText(task: CompileTextTask): Promise<CompileTextResult> {
  markStarted(task.startedAt);
  stopWarmUp();
  try {
    return { ok: true, bytes: await compileWat(task.text) };
  } catch (err) {
    if (err instanceof WatSyntaxError) return { ok: false, code: 'invalid_module', message: clip(err.message) };
    // The compiler itself gave up (its memory, an abort): the text is too much for this server.
    return { ok: false, code: 'module_too_complex', message: clip(`the WebAssembly text could not be compiled on this server: ${err instanceof Error ? err.message : String(err)}`) };
  }
}

/** What parsing or instrumenting a module V8 accepted can fail with, as the caller's refusal. */
function decodingRefusal(err: unknown): Extract<PrepareResult, { ok: false }> | null {
  if (err instanceof UnsupportedFeature) return { ok: false, code: 'invalid_module', message: err.message };
  if (err instanceof WasmFormatError) {
    // V8 accepted the module, so this is a gap in this service's decoder, not bad input; the
    // module still cannot run here, and saying so beats a 500 for every send.
    return { ok: false, code: 'invalid_module', message: clip(`the module uses an encoding this service cannot instrument: ${err.message}`) };
  }
  if (err instanceof RangeError) {
    // A structure too big for the engine: an array or buffer past its limit, a recursion too deep.
    return { ok: false, code: 'module_too_complex', message: clip(`the module is too large or too deeply nested for this server to prepare: ${err.message}`) };
  }
  return null;
}

function engineMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/^WebAssembly\.Module\(\): /, '');
}
