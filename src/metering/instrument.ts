// The fuel pass: counts what a guest runs, as wasmtime's fuel does, by rewriting function bodies.
// Module bytes in, instrumented module bytes out; the limits (memory and table caps, the hidden
// globals as imports, the start function) are the limiter's, in src/limits/rewrite.ts, and
// `instrument` applies both. The cost table is data, in costs.ts.
//
// Counting method:
// - A hidden mutable i64 global (the limiter's, see src/limits/guest-imports.ts) holds
//   `consumed - limit`. The host sets it to `-limit` before the guest runs and reads it
//   afterwards: consumed = limit + value. The guest cannot name it.
// - Every basic block adds its cost to the global once, *before the instruction that ends it*
//   (branch, call, return, end, else, unreachable, ...). The added code is stack-neutral, so it
//   can sit anywhere in the binary, and a charge placed in dead code simply never runs. A run that
//   completes is charged exactly; a run that traps mid-block is short by at most the straight-line
//   code since the last block boundary, never over.
// - In functions with a loop the count is kept in an i64 local and written back to the global at
//   loop headers, calls, returns, throws and traps (see instrumentBody); the global stays the
//   account the host reads. Direct calls pass it as a parameter and result (threadedFunctions).
//   Two of those writes are left out where another comes before anything could trap or read
//   the global: after a direct call (afterCallSynced), and at the header of a loop whose body
//   starts with a direct call after code that cannot trap (BodyScan.loopFirstCall), whose check
//   is also left to the callee's entry check when it has one.
// - Fuel is handed out in slices (src/wasi/fuel.ts): the global holds `consumed - sliceEnd`, where
//   the slice ends at the budget or earlier. A check that finds it above 0 calls the limiter's
//   `$slice` function, which asks the host: the host grants the next slice (and rebases the
//   global) or ends the run, the budget spent or the deadline passed, and `$slice` executes
//   `unreachable`. The fast path is the same compare and untaken branch as a plain budget check;
//   the host is reached about once a millisecond (the slice is sized to the guest's measured rate).
//   Each check's `if` carries a branch hint, "unlikely" (the metadata.code.branch_hint section,
//   before the code section): V8's optimizing compiler then treats the call as deferred code and
//   keeps its register spills off the hot path (without hints, a call inside a tight loop cost
//   sha256 1.6x; src/worker/engine-flags.ts turns the hints on). The exception is the check of a
//   large innermost loop that does not call, which runs faster unhinted (scanBody).
// - Checks (`if (global > 0) call $slice`) sit only at function entry and at every loop header
//   (a function that calls nothing gets no entry check: it cannot be part of a recursion, and its
//   own loops are checked at their headers; its charges stay exact, and a budget it passes is
//   seen at its caller's next check). A large innermost loop that calls nothing and is branched
//   back to only by plain `br`s (an interpreter's dispatch loop) has its check before each of those
//   `br`s instead of at its header, which still writes the count (scanBody). Either way
//   every cycle in the control-flow and call graph passes one, so a run cannot loop or recurse
//   past its budget, while straight-line code pays no check (ENGINE-NOTES: checks at every block
//   cost 3.4x on a real program). Between checks a run can overspend by at most one acyclic path
//   through one function; the host treats any run that ends with consumed > limit as fuel
//   exhausted, so `fuelConsumed` never exceeds `fuelLimit`.
// - Operators whose work grows with an operand charge per unit of it. Bulk memory and table
//   operations (fill, copy, init) charge and check *before* they run, and only when their ranges
//   are in bounds: an operation that will trap does no work and costs its base, so it traps as
//   the spec says rather than ending in fuel exhaustion. memory.grow and table.grow charge per
//   page or element *after* they succeeded; a refused grow (result -1) costs its base. The
//   remaining length of each segment lives in a global this pass adds (data.drop / elem.drop
//   zero it).
// - Exhaustion and the deadline are `unreachable`, a trap the guest's own exception handlers cannot
//   catch.
// - An opcode this pass does not know is refused (UnsupportedFeature), never given a guessed cost.
//
// While it walks the code, the pass also records what the host needs to classify a trap, in the
// limiter's hidden globals: the target of a refused memory.grow (so a trap that follows can be
// reported as memory_limit_exceeded), the index and table of each call_indirect (null entry or
// signature mismatch), and the operand of a trapping float-to-int truncation (NaN or out of
// range).

import { type Contributions, type LimitPlan, TableLimitError, assemble, planLimits } from '../limits/rewrite.js';
import type { GuestLayout } from '../limits/guest-imports.js';
import { Reader, Writer, WasmFormatError, u32Size } from '../wasm/bytes.js';
import { skipAtomicImmediates, skipBlockType, skipFcImmediates, skipMemArg, skipSimdImmediates, unsupportedOpcodeMessage } from '../wasm/opcodes.js';
import { type ParsedModule, UnsupportedFeature, type ValType, parseModule, readValType } from '../wasm/module.js';
import { type CostTable, DEFAULT_COSTS, FREE_OPCODES, type ScaledOperator } from './costs.js';

export { TableLimitError };

/** The metered code would grow past what the service compiles for a module of this size. */
export class CodeGrowthError extends Error {
  override readonly name = 'CodeGrowthError';
}

/**
 * The most the code section may grow: metering adds a few bytes per basic block and per loop, so
 * real code grows by about 1.3-2.6x (tiny functions most); a body of nothing but empty loops grows about twelvefold
 * (each loop gets its wrappers and check). Past this the module is refused, so a small upload
 * cannot make the preparation worker build and the engine compile hundreds of megabytes.
 */
export const MAX_CODE_GROWTH = 6;
const CODE_GROWTH_SLACK = 1 << 20;

export interface InstrumentOptions {
  costs?: CostTable;
  /** Every table's maximum is lowered to this many elements. */
  maxTableElements: number;
  /**
   * false: the checks trap as soon as the budget is spent (`if (global > 0) unreachable`) and
   * never reach the host, so only terminating the thread can stop a run at its deadline. The
   * mechanism before fuel slices, kept so the benchmark can measure what slices cost; the host
   * must then grant the whole budget at once (GuestOptions.slices false). Default true.
   */
  slices?: boolean;
  /**
   * false: direct calls hand the count over through the fuel global, as before threaded copies
   * (see threadedFunctions); kept so the benchmark can measure what threading buys. Default true.
   */
  threadCalls?: boolean;
  /**
   * false: every write of the count to the global is kept: threaded copies write it when they
   * return, and every loop header writes and checks (see afterCallSynced and
   * BodyScan.loopFirstCall); kept so the benchmark can measure what leaving them out buys.
   * Default true.
   */
  elideWrites?: boolean;
  /**
   * false: loop headers do not write the count to the global; a check writes it only on its way
   * to the host. A run that completes is charged the same, but a trap inside a loop leaves an
   * account short by everything since the last call or return (wasmtime's bound), not since the
   * last loop header (the contract's). Outside the contract, never used by the service; kept so
   * the benchmark can measure what the contract's bound on a trap's account costs. Default true.
   */
  headerWrites?: boolean;
}

export interface InstrumentedModule {
  bytes: Uint8Array;
  /** What the host must create for it (memory, tables, hidden globals, start). */
  layout: GuestLayout;
}

/** The limiter and the fuel pass over one module: what the preparation worker runs. */
export function instrument(bytes: Uint8Array, options: InstrumentOptions): InstrumentedModule {
  return instrumentParsed(parseModule(bytes), options);
}

export function instrumentParsed(m: ParsedModule, options: InstrumentOptions): InstrumentedModule {
  const plan = planLimits(m, options);
  const contributions = meterCode(m, plan, options.costs ?? DEFAULT_COSTS, options.slices ?? true, options.threadCalls ?? true, options.elideWrites ?? true, options.headerWrites ?? true);
  return { bytes: assemble(m, plan, contributions), layout: plan.layout };
}

/** The globals the fuel pass works with: the limiter's hidden ones and its own segment lengths. */
interface FuelGlobals {
  fuel: number;
  growRefused: number;
  indirectIndex: number;
  /** -1 with a single table: the host then knows which table it was. */
  indirectTable: number;
  truncOperand: number;
  /** The limiter's `$slice` function. */
  slice: number;
  /** First of the per-data-segment remaining-length globals (-1: none). */
  dataLen: number;
  /** First of the per-element-segment remaining-length globals (-1: none). */
  elemLen: number;
}

/** The fuel pass: the instrumented code section and the globals it adds. */
export function meterCode(
  m: ParsedModule,
  plan: LimitPlan,
  costs: CostTable,
  slices = true,
  threadCalls = true,
  elideWrites = true,
  headerWrites = true,
): Contributions {
  // Remaining length of each segment: passive ones start whole, active (and declarative) ones
  // count as dropped once instantiation has used them. data.drop / elem.drop set them to 0.
  const dataInit = m.hasDataCount ? m.dataSegments.map((d) => (d.passive ? d.length : 0)) : [];
  const elemInit = m.elemSegments.map((e) => (e.passive ? e.length : 0));
  const tableCount = m.importedTables + m.tables.length;
  // A literal with every field, not a spread of plan.hidden: the object then has the same shape
  // (V8 map) for every module, and the optimized rewriting code, which reads it for every call
  // and check, is not thrown away when the next module's object differs ("wrong map" deopts).
  const h = plan.hidden;
  const g: FuelGlobals = {
    fuel: h.fuel,
    growRefused: h.growRefused,
    indirectIndex: h.indirectIndex,
    indirectTable: tableCount > 1 ? h.indirectTable : -1,
    truncOperand: h.truncOperand,
    slice: plan.sliceFunction,
    dataLen: dataInit.length > 0 ? plan.firstAppendedGlobal : -1,
    elemLen: elemInit.length > 0 ? plan.firstAppendedGlobal + dataInit.length : -1,
  };
  // (mut i32) (i32.const length), data segments then element segments
  const globals = [...dataInit, ...elemInit].map((len) => {
    const w = new Writer(10);
    w.u8(0x7f);
    w.u8(0x01);
    w.u8(0x41);
    w.sNum(len | 0);
    w.u8(0x0b);
    return w.finish();
  });
  if (m.bodies.length === 0) return { code: null, globals, branchHints: null };
  const { code, branchHints, types, functions } = codeSection(m, costs, g, slices, plan.firstAppendedFunction, plan.firstAppendedType, threadCalls, elideWrites, headerWrites);
  return { code, globals, branchHints, types, functions };
}

// ---------------------------------------------------------------------------------------------
// Function bodies

const SCALED_FC: Readonly<Record<number, ScaledOperator>> = {
  8: 'memory.init',
  10: 'memory.copy',
  11: 'memory.fill',
  12: 'table.init',
  14: 'table.copy',
  15: 'table.grow',
  17: 'table.fill',
};

/** Non-saturating float-to-int truncations and their operand type. */
// By opcode: 0 (not a trapping truncation), or the operand's type, 1 (f32) or 2 (f64). A table, not
// an object: this is looked up for every numeric operator, and a missing key in an object with
// numeric keys takes V8's slow path (it was a fifth of the main loop's time).
const TRUNC_NONE = 0;
const TRUNC_F32 = 1;
const TRUNC_F64 = 2;
const TRAPPING_TRUNC = ((): Uint8Array => {
  const t = new Uint8Array(256);
  for (const op of [0xa8, 0xa9, 0xae, 0xaf]) t[op] = TRUNC_F32;
  for (const op of [0xaa, 0xab, 0xb0, 0xb1]) t[op] = TRUNC_F64;
  return t;
})();

interface BodyContext {
  bytes: Uint8Array;
  types: ParsedModule['types'];
  /** Checks ask the host for slices (else they trap: InstrumentOptions.slices). */
  slices: boolean;
  /** InstrumentOptions.elideWrites. */
  elideWrites: boolean;
  /** InstrumentOptions.headerWrites. */
  headerWrites: boolean;
  tableTypes: readonly ('funcref' | 'externref')[];

  costs: CostTable;
  /** Cost of each single-byte opcode. */
  opCost: Int32Array;
  g: FuelGlobals;
  /** The check in global mode (the global is the account). */
  check: Uint8Array;
  /** Where the `if` sits in `check`. */
  checkIfAt: number;
  /** The check in local mode: the same on the local, which is reloaded after a new slice. */
  checkLocal: (fl: number) => Uint8Array;
  /** The same, writing the count to the global first on its (cold) way to the host: for a loop
   *  header whose sync is left to the call its body starts with (see BodyScan.loopFirstCall). */
  checkLocalSynced: (fl: number) => Uint8Array;
  chargeHead: Uint8Array;
  chargeTail: Uint8Array;
  importedFuncs: number;
  /** Per defined function: the index of its threaded copy (see threadedFunctions), or -1. */
  threaded: Int32Array;
  /** Per defined function: 1 when its body calls, so it keeps its entry check (leaves drop it). */
  entryChecked: Uint8Array;
}

function codeSection(
  m: ParsedModule,
  costs: CostTable,
  g: FuelGlobals,
  slices: boolean,
  firstAppendedFunction: number,
  firstAppendedType: number,
  threadCalls: boolean,
  elideWrites: boolean,
  headerWrites: boolean,
): { code: Uint8Array; branchHints: Uint8Array | null; types: Uint8Array[]; functions: { types: number[]; code: Uint8Array } | null } {
  const scans = m.bodies.map((b) => scanBody(m.bytes, b.start, b.end));
  const plan = threadedFunctions(m, threadCalls ? scans : [], firstAppendedFunction, firstAppendedType);
  const opCost = new Int32Array(256).fill(costs.operator);
  for (const name of costs.free) opCost[FREE_OPCODES[name]] = 0;

  const leb = (v: number): Uint8Array => {
    const w = new Writer(8);
    w.u32(v);
    return w.finish();
  };
  const fuelIdx = leb(g.fuel);
  const sliceIdx = leb(g.slice);
  const ctx: BodyContext = {
    bytes: m.bytes,
    types: m.types,
    slices,
    elideWrites,
    headerWrites,
    tableTypes: m.tableTypes,

    costs,
    opCost,
    g,
    // global.get $fuel; i64.const 0; i64.gt_s; if; call $slice; end
    // (without slices: ... if; unreachable; end)
    check: slices
      ? Uint8Array.of(0x23, ...fuelIdx, 0x42, 0x00, 0x55, 0x04, 0x40, 0x10, ...sliceIdx, 0x0b)
      : Uint8Array.of(0x23, ...fuelIdx, 0x42, 0x00, 0x55, 0x04, 0x40, 0x00, 0x0b),
    // local.get $fl; i64.const 0; i64.gt_s; if; call $slice; global.get $fuel; local.set $fl; end
    checkLocal: cachedBy((fl) => {
      const l = leb(fl);
      return slices
        ? Uint8Array.of(0x20, ...l, 0x42, 0x00, 0x55, 0x04, 0x40, 0x10, ...sliceIdx, 0x23, ...fuelIdx, 0x21, ...l, 0x0b)
        : Uint8Array.of(0x20, ...l, 0x42, 0x00, 0x55, 0x04, 0x40, 0x00, 0x0b);
    }),
    // local.get $fl; i64.const 0; i64.gt_s; if; local.get $fl; global.set $fuel; call $slice;
    // global.get $fuel; local.set $fl; end (without slices: ... global.set $fuel; unreachable; end)
    checkLocalSynced: cachedBy((fl) => {
      const l = leb(fl);
      const store = [0x20, ...l, 0x24, ...fuelIdx];
      return slices
        ? Uint8Array.of(0x20, ...l, 0x42, 0x00, 0x55, 0x04, 0x40, ...store, 0x10, ...sliceIdx, 0x23, ...fuelIdx, 0x21, ...l, 0x0b)
        : Uint8Array.of(0x20, ...l, 0x42, 0x00, 0x55, 0x04, 0x40, ...store, 0x00, 0x0b);
    }),
    checkIfAt: 1 + fuelIdx.length + 3,
    chargeHead: Uint8Array.of(0x23, ...fuelIdx, 0x42), // global.get $fuel; i64.const ...
    chargeTail: Uint8Array.of(0x7c, 0x24, ...fuelIdx), // i64.add; global.set $fuel
    importedFuncs: m.importedFuncs,
    threaded: plan.index,
    entryChecked: Uint8Array.from(scans, (scan) => (scan?.hasCall ? 1 : 0)),
  };

  const total = m.bodies.reduce((n, b) => n + (b.end - b.start), 0);
  // The wrappers are bounded per function (threadedFunctions threads at most MAX_THREADED_PARAMS
  // parameters), so they get their own allowance.
  const limit = MAX_CODE_GROWTH * total + CODE_GROWTH_SLACK + WRAPPER_ALLOWANCE * plan.count;
  const w = new Writer(Math.ceil(total * 1.7) + 16);
  // The threaded copies, appended after the limiter's functions.
  const tw = new Writer(plan.count > 0 ? Math.ceil(total * 1.7) + 16 : 16);
  const body = new Writer(4096);
  // metadata.code.branch_hint: per function (increasing index), the body offsets of its checks'
  // `if`s, each hinted "unlikely". The module's own functions come first, then the threaded
  // copies, each in its own writer.
  const hints = new Writer(slices ? 64 + Math.ceil(total / 4) : 16);
  const tHints = new Writer(plan.count > 0 && slices ? 64 + Math.ceil(total / 4) : 16);
  let hintedFunctions = 0;
  const checks: number[] = [];
  const hint = (out: Writer, fn: number, prefix: number): void => {
    if (!slices || checks.length === 0) return;
    hintedFunctions++;
    out.u32(fn);
    out.u32(checks.length);
    for (const at of checks) {
      out.u32(prefix + at);
      out.u8(1); // size of the hint
      out.u8(0); // unlikely
    }
  };
  w.u32(m.bodies.length);
  m.bodies.forEach((b, i) => {
    const type = m.types[m.funcTypes[i]!];
    if (!type) throw new WasmFormatError(`function ${m.importedFuncs + i} has no type`);
    const scan = scans[i] ?? null;
    body.length = 0;
    checks.length = 0;
    const t = ctx.threaded[i]!;
    if (t >= 0) {
      // The function's own index keeps its type and becomes the wrapper; the body is threaded.
      writeWrapper(w, type.params.length, g.fuel, t);
      hint(tHints, t, instrumentBody(ctx, b.start, b.end, type.params.length, body, tw, 'threaded', checks, scan, plan.blockType[i]!));
    } else {
      // A function with a loop keeps its count in a local (see instrumentBody); the scan says
      // which, so the global-mode pass is not started only to be abandoned at its first loop.
      let prefix = instrumentBody(ctx, b.start, b.end, type.params.length, body, w, scan?.hasLoop ? 'local' : 'global', checks, scan, null);
      if (prefix < 0) {
        body.length = 0;
        checks.length = 0;
        prefix = instrumentBody(ctx, b.start, b.end, type.params.length, body, w, 'local', checks, scan, null);
      }
      hint(hints, m.importedFuncs + i, prefix);
    }
    if (w.length + tw.length > limit) {
      throw new CodeGrowthError(
        `metering this module's code (${total} bytes) would make it more than ${MAX_CODE_GROWTH} times larger; ` +
          `it is mostly empty loops or blocks, which this service does not run`,
      );
    }
  });
  let branchHints: Uint8Array | null = null;
  if (hintedFunctions > 0) {
    // Functions in increasing index order: the module's own, then the threaded copies.
    const content = hints.view();
    const more = tHints.view();
    const out = new Writer(content.length + more.length + 8);
    out.u32(hintedFunctions);
    out.bytes(content);
    out.bytes(more);
    branchHints = out.finish();
  }
  // Views, not copies: the writers are this call's own, and assemble() copies into the module.
  return {
    code: w.view(),
    branchHints,
    types: plan.types,
    functions: plan.count > 0 ? { types: plan.functionTypes, code: tw.view() } : null,
  };
}

/** V8's limits on the functions and types of a module (wasm-limits.h: kV8MaxWasmFunctions, kV8MaxWasmTypes). */
const V8_MAX_FUNCTIONS = 1_000_000;
const V8_MAX_TYPES = 1_000_000;

/** Most parameters (and results) a function may have to be threaded: its wrapper forwards each. */
const MAX_THREADED_PARAMS = 16;
/** Bytes a wrapper may take: local.get per parameter, global.get, call, global.set, end. */
const WRAPPER_ALLOWANCE = 2 * MAX_THREADED_PARAMS + 24;

const VALTYPE_CODE: Readonly<Record<ValType, number>> = {
  i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b, funcref: 0x70, externref: 0x6f,
};

interface ThreadPlan {
  /** Per defined function: the function index of its threaded copy, or -1. */
  index: Int32Array;
  count: number;
  /** Per defined function (threaded ones): the block type of its results, encoded. */
  blockType: (Uint8Array | null)[];
  /** Types to append (the threaded signatures, and block types with several results). */
  types: Uint8Array[];
  /** Type index of each threaded copy, in order. */
  functionTypes: number[];
}

/**
 * Which functions pass the fuel count in a register. A direct call otherwise hands the count
 * over through the fuel global: the caller stores it, the callee loads it, and back after the
 * return. On call-heavy code (recursion, small helpers called in loops) those memory round trips
 * form one serial dependency chain through every call, which out-of-order execution cannot
 * overlap: metered fib ran 3.4x its unmetered time, almost all of it that chain.
 *
 * A threaded function gets a copy, appended after the limiter's functions, whose signature adds
 * an i64 parameter and an i64 result: the count on entry and on return. Direct calls between
 * metered bodies call the copies and keep the count in a local, so the chain is register adds.
 * The function's own index keeps its type and becomes a wrapper (global -> parameter, result ->
 * global), so exports, tables, `ref.func`, the start function and the host see exactly the
 * functions they saw; only direct `call`s in bodies are redirected. The copy still writes the
 * count to the global (a store, off the chain) before calls, at loop headers, throws and traps, so
 * the account a trap leaves is what it was. It does not write it when it returns: the count goes
 * back to its caller, which writes it right after the call unless every path from there reaches
 * another write or leaves the function before anything could trap (afterCallSynced in
 * instrumentBody); the wrapper writes it for the host. A store before every return, though off
 * the chain, had cost recursive code (fib) about as much as the rest of metering together.
 *
 * Threaded: defined functions that are the target of a direct call, with at most
 * MAX_THREADED_PARAMS parameters and results, whose tail calls (`return_call`) all go to threaded
 * functions and that have no `return_call_indirect` (a tail call must return what the caller
 * returns, and a wrapper or import does not return the count). The rest keep their bodies at their
 * index, metered as before; their direct calls to threaded functions in local mode also pass the
 * count (global mode calls the wrapper).
 */
function threadedFunctions(m: ParsedModule, scans: readonly (BodyScan | null)[], firstFunction: number, firstType: number): ThreadPlan {
  const n = m.bodies.length;
  const imported = m.importedFuncs;
  const cand = new Uint8Array(n);
  for (const scan of scans) {
    if (!scan) continue;
    for (const t of scan.calls) if (t >= imported && t - imported < n) cand[t - imported] = 1;
    for (const t of scan.tailCalls) if (t >= imported && t - imported < n) cand[t - imported] = 1;
  }
  for (let i = 0; i < n; i++) {
    if (!cand[i]) continue;
    const type = m.types[m.funcTypes[i]!];
    const scan = scans[i];
    if (!type || !scan || scan.tailIndirect || type.params.length > MAX_THREADED_PARAMS || type.results.length > MAX_THREADED_PARAMS) cand[i] = 0;
  }
  // V8 compiles at most a million functions and a million types: a module near either limit keeps
  // the rest of its functions unthreaded (correct, only slower), never refused for it. Each
  // threaded function adds one function and at most two types.
  let room = Math.max(0, Math.min(V8_MAX_FUNCTIONS - firstFunction, Math.floor((V8_MAX_TYPES - firstType) / 2)));
  for (let i = 0; i < n; i++) {
    if (!cand[i]) continue;
    if (room > 0) room--;
    else cand[i] = 0;
  }
  // A tail call to an unthreaded function disqualifies the caller, which may disqualify others.
  for (let changed = true; changed; ) {
    changed = false;
    for (let i = 0; i < n; i++) {
      if (!cand[i]) continue;
      for (const t of scans[i]!.tailCalls) {
        if (t < imported || !cand[t - imported]) {
          cand[i] = 0;
          changed = true;
          break;
        }
      }
    }
  }
  const index = new Int32Array(n).fill(-1);
  const blockType: (Uint8Array | null)[] = new Array<Uint8Array | null>(n).fill(null);
  const types: Uint8Array[] = [];
  const functionTypes: number[] = [];
  const threadedType = new Map<number, number>();
  const resultsType = new Map<number, number>();
  const encode = (params: readonly ValType[], results: readonly ValType[]): Uint8Array => {
    const w = new Writer(8 + params.length + results.length);
    w.u8(0x60);
    w.u32(params.length);
    for (const v of params) w.u8(VALTYPE_CODE[v]);
    w.u32(results.length);
    for (const v of results) w.u8(VALTYPE_CODE[v]);
    return w.finish();
  };
  let count = 0;
  for (let i = 0; i < n; i++) {
    if (!cand[i]) continue;
    const ti = m.funcTypes[i]!;
    const type = m.types[ti]!;
    let tt = threadedType.get(ti);
    if (tt === undefined) {
      tt = firstType + types.length;
      types.push(encode([...type.params, 'i64'], [...type.results, 'i64']));
      threadedType.set(ti, tt);
    }
    if (type.results.length === 0) blockType[i] = Uint8Array.of(0x40);
    else if (type.results.length === 1) blockType[i] = Uint8Array.of(VALTYPE_CODE[type.results[0]!]);
    else {
      let bt = resultsType.get(ti);
      if (bt === undefined) {
        bt = firstType + types.length;
        types.push(encode([], type.results));
        resultsType.set(ti, bt);
      }
      const w = new Writer(6);
      w.sNum(bt); // a block type index is an s33
      blockType[i] = w.finish();
    }
    index[i] = firstFunction + count++;
    functionTypes.push(tt);
  }
  return { index, count, blockType, types, functionTypes };
}

/** `make`, remembered per argument: the code added for a local's index, built once per module
 *  for each index that functions use (most use a handful). */
function cachedBy(make: (n: number) => Uint8Array): (n: number) => Uint8Array {
  const made = new Map<number, Uint8Array>();
  return (n) => {
    let b = made.get(n);
    if (b === undefined) {
      b = make(n);
      made.set(n, b);
    }
    return b;
  };
}

/** The body at a threaded function's own index: forwards its parameters and the global to the
 *  threaded copy, and stores the count it returns. Charges nothing (the copy charges). */
function writeWrapper(out: Writer, params: number, fuel: number, target: number): void {
  // no locals, the local.gets, global.get, call, global.set, end
  let size = 1 + (1 + u32Size(fuel)) + (1 + u32Size(target)) + (1 + u32Size(fuel)) + 1;
  for (let k = 0; k < params; k++) size += 1 + u32Size(k);
  out.u32(size);
  out.u8(0x00); // no locals
  for (let k = 0; k < params; k++) {
    out.u8(0x20); out.u32(k); // local.get k
  }
  out.u8(0x23); out.u32(fuel); // global.get $fuel
  out.u8(0x10); out.u32(target); // call $threaded
  out.u8(0x24); out.u32(fuel); // global.set $fuel
  out.u8(0x0b);
}


/**
 * Rewrites one function body into `out` (size-prefixed). Two ways to keep the count:
 * - global mode: every charge adds to the fuel global directly; used for functions without loops,
 *   where a charge runs once per call and a local would only add loads and stores around calls.
 * - local mode (functions with a loop): the count lives in an i64 local, loaded from the global at
 *   entry and after every call, written back before every call, return, throw, trap and at every
 *   loop header (so a trap's account is exact up to the last loop header or call, as the contract
 *   says). A loop iteration then costs a register add, one store and a compare, instead of a
 *   load-add-store chain through instance memory plus a load and compare: on a tight loop (sieve)
 *   that is the difference between 2.2x and about 1.1x.
 * Returns where the instructions start in the written body (branch hints count from the body's
 * start), or -1 when a global-mode pass meets a loop: the caller reruns it in local mode.
 */
function instrumentBody(
  ctx: BodyContext,
  start: number,
  end: number,
  paramCount: number,
  instrs: Writer,
  out: Writer,
  mode: 'global' | 'local' | 'threaded',
  /** Filled with the offset in `instrs` of every check's `if`. */
  checks: number[],
  scan: BodyScan | null,
  /** Threaded mode: the block type of the function's results. */
  resultBlockType: Uint8Array | null,
): number {
  const { bytes, opCost, g } = ctx;
  const r = new Reader(bytes, start, end);
  const local = mode !== 'global';
  const threaded = mode === 'threaded';

  // Locals: keep the declarations verbatim; scratch locals are appended after them.
  const declCount = r.u32();
  const declsStart = r.pos;
  let localCount = paramCount;
  for (let i = 0; i < declCount; i++) {
    localCount += r.u32();
    readValType(r);
  }
  const declsEnd = r.pos;
  // Local mode: the loops whose body calls, and large innermost ones, keep their check inline
  // (see scanBody).
  const inlineCheckLoops = local && ctx.slices ? (scan?.inlineCheckLoops ?? null) : null;
  // Threaded mode: the count is a parameter after the function's own, so its locals move up one.
  const base = threaded ? localCount + 1 : localCount;
  // Scratch locals, appended after the function's own when any rewrite needs them.
  const s0 = base; // i32: count operands, call_indirect index
  const s1 = base + 1; // i32: second operand, grow results
  const s2 = base + 2; // i32: first operand (destination)
  const sFunc = base + 3; // funcref: table.fill value
  const sExt = base + 4; // externref: table.fill value
  const sF32 = base + 5; // f32: truncation operand
  const sF64 = base + 6; // f64: truncation operand
  const fl = threaded ? paramCount : base + 7; // i64: the fuel count in local and threaded modes
  let usesScratch = local && !threaded;

  let copyFrom = r.pos;
  const flush = (upTo: number): void => {
    if (upTo > copyFrom) instrs.range(bytes, copyFrom, upTo);
    copyFrom = upTo;
  };
  const charge = (at: number, amount: number): void => {
    if (amount === 0) return;
    flush(at);
    if (local) {
      instrs.u8(0x20); instrs.u32(fl); // local.get $fl
      instrs.u8(0x42); instrs.sNum(amount); // i64.const amount
      instrs.u8(0x7c); // i64.add
      instrs.u8(0x21); instrs.u32(fl); // local.set $fl
      return;
    }
    instrs.bytes(ctx.chargeHead);
    instrs.sNum(amount);
    instrs.bytes(ctx.chargeTail);
  };
  /** Local mode: writes the count back to the global, right before the instruction at `at`. */
  const sync = (at: number): void => {
    if (!local) return;
    flush(at);
    instrs.u8(0x20); instrs.u32(fl); // local.get $fl
    instrs.u8(0x24); instrs.u32(g.fuel); // global.set $fuel
  };
  /** Local mode: reloads the count from the global (after calls: callees and host calls charge it). */
  const reload = (after: number): void => {
    if (!local) return;
    flush(after);
    instrs.u8(0x23); instrs.u32(g.fuel); // global.get $fuel
    instrs.u8(0x21); instrs.u32(fl); // local.set $fl
  };
  /** The budget check: when the count is above 0, the slice is spent: ask the host (the global
   *  is the account here: in local mode every check follows a sync or a load). */
  const checkLocal = local ? ctx.checkLocal(fl) : null;
  const checkLocalIfAt = 1 + u32Size(fl) + 3;
  const check = (hinted = true): void => {
    if (checkLocal) {
      if (hinted) checks.push(instrs.length + checkLocalIfAt);
      instrs.bytes(checkLocal);
    } else {
      globalCheck();
    }
  };
  /** Whether direct calls to function `f` reach a check: a defined function that calls keeps its
   *  entry check (a leaf or an import has none). */
  const calleeChecks = (f: number): boolean => {
    const i = f - ctx.importedFuncs;
    return i >= 0 && i < ctx.entryChecked.length && ctx.entryChecked[i] === 1;
  };
  const globalCheck = (): void => {
    checks.push(instrs.length + ctx.checkIfAt);
    instrs.bytes(ctx.check);
  };
  const lget = (i: number): void => { instrs.u8(0x20); instrs.u32(i); };
  const lset = (i: number): void => { instrs.u8(0x21); instrs.u32(i); };
  const ltee = (i: number): void => { instrs.u8(0x22); instrs.u32(i); };
  const u64 = (i: number): void => { lget(i); instrs.u8(0xad); }; // local.get; i64.extend_i32_u
  /** Pushes the i64 fuel cost of `count` units: count * perUnit. */
  const units = (count: number, perUnit: number): void => {
    u64(count);
    if (perUnit !== 1) { instrs.u8(0x42); instrs.sNum(perUnit); instrs.u8(0x7e); } // i64.const k; i64.mul
  };
  /** Pushes an i32: `start + count <= size` in 64-bit arithmetic (so it cannot wrap). */
  const fits = (start: number, count: number, size: () => void): void => {
    u64(start); u64(count); instrs.u8(0x7c); // i64.add
    size();
    instrs.u8(0x58); // i64.le_u
  };
  const memoryBytes = (): void => {
    instrs.u8(0x3f); instrs.u8(0x00); instrs.u8(0xad); // memory.size; i64.extend_i32_u
    instrs.u8(0x42); instrs.u8(16); instrs.u8(0x86); // i64.const 16; i64.shl
  };
  const tableSize = (t: number) => (): void => {
    instrs.u8(0xfc); instrs.u32(16); instrs.u32(t); instrs.u8(0xad); // table.size t; i64.extend_i32_u
  };
  /** The remaining length of a segment, from its hidden global (0 when there is none). */
  const segmentLength = (base: number, seg: number) => (): void => {
    if (base < 0) {
      instrs.u8(0x42); instrs.u8(0x00); // i64.const 0
      return;
    }
    instrs.u8(0x23); instrs.u32(base + seg); instrs.u8(0xad); // global.get; i64.extend_i32_u
  };
  /** Charges count * perUnit when `inBounds` holds, then checks. An operation that is going to
   *  trap out of bounds does no work, so it is charged only its base cost and traps as it should
   *  (instead of being reported as fuel exhaustion). */
  const chargeIf = (count: number, perUnit: number, inBounds: () => void): void => {
    instrs.u8(0x23); instrs.u32(g.fuel); // global.get $fuel
    units(count, perUnit);
    instrs.u8(0x42); instrs.u8(0x00); // i64.const 0
    inBounds();
    instrs.u8(0x1b); // select
    instrs.u8(0x7c); // i64.add
    instrs.u8(0x24); instrs.u32(g.fuel); // global.set $fuel
    globalCheck();
  };
  /** After a grow operator (its result on the stack, its delta in s0): charges the delta when the
   *  grow succeeded, so a refused grow costs only its base. Leaves the result on the stack. */
  const chargeGrowth = (perUnit: number, onRefused: (() => void) | null): void => {
    ltee(s1);
    instrs.u8(0x41); instrs.u8(0x7f); // i32.const -1
    instrs.u8(0x47); // i32.ne
    instrs.u8(0x04); instrs.u8(0x40); // if
    instrs.u8(0x23); instrs.u32(g.fuel);
    units(s0, perUnit);
    instrs.u8(0x7c);
    instrs.u8(0x24); instrs.u32(g.fuel);
    globalCheck();
    if (onRefused) {
      instrs.u8(0x05); // else
      onRefused();
    }
    instrs.u8(0x0b); // end
    lget(s1);
  };

  // Loops keep their call to the host out of their body: V8 unrolls and peels only loops without
  // calls, and a call in the check (however unlikely) cost matmul 1.37x. Each loop `loop bt BODY
  // end` whose type has no parameters becomes
  //   block bt                          ;; $done
  //     loop bt                         ;; $outer: where a new slice resumes the loop
  //       block                         ;; $slow
  //         loop bt                     ;; the original, call-free
  //           sync; br_if $slow (local > 0)  ;; the check, hinted unlikely
  //           BODY
  //         end
  //         br $done                    ;; the loop ended: its results leave
  //       end
  //       call $slice; reload; br $outer
  //     end
  //   end
  // Labels in BODY that reach past the loop now cross three more frames: `wrapped` counts the
  // rewritten loops in the frame stack (prefix sums: wrapped[k] = rewritten loops among frames
  // 0..k-1), and such branch immediates are re-encoded. A loop whose body calls (loopsThatCall)
  // keeps the call in its check, hinted unlikely: it cannot be unrolled anyway, and the wrappers
  // cost it. So does a loop with parameters (the wrappers would need new block types; none of the
  // compilers measured emits one).
  const wrapped: number[] = [0, 0];
  // Per frame (the function's own first): whether it is a loop (for afterCallSynced).
  const loopFrames: boolean[] = [false];
  // Per frame: a loop whose check sits at its back edges (BodyScan.backEdgeLoops), not its header.
  const edgeChecked: boolean[] = [false];
  const pushFrame = (isWrapped: boolean, isLoop = false, edge = false): void => {
    wrapped.push(wrapped[wrapped.length - 1]! + (isWrapped ? 1 : 0));
    loopFrames.push(isLoop);
    edgeChecked.push(edge);
  };
  const popFrame = (): boolean => {
    const top = wrapped.pop()!;
    loopFrames.pop();
    edgeChecked.pop();
    return top !== wrapped[wrapped.length - 1];
  };
  /**
   * After a call to a threaded copy (which hands the count back without writing it to the
   * global): whether every path from `pos` reaches a point that writes the count to the global
   * (a call, a throw, `unreachable`, a loop header) or leaves the function (a threaded copy hands
   * the count to its caller; local mode writes it at returns) before any instruction that could
   * trap or read the global. Then the call needs no write after it. Read from the original code,
   * straight-line, through block ends and branches back to loops; anything else (an `if`, a
   * forward branch, a memory access, a division) answers no, and the count is written right after
   * the call.
   */
  const afterCallSynced = (pos: number): boolean => {
    const sr = new Reader(bytes, pos, end);
    let opened = 0; // blocks entered since the call
    let outer = loopFrames.length - 1; // enclosing frames still open, the function's not counted
    /** A branch to label `n`: to a loop (its header writes the count, or its body starts with a
     *  call: BodyScan.loopFirstCall) or out of the function. */
    const toLoopOrOut = (n: number): boolean => {
      if (n < opened) return false; // forward, to the end of a block entered since the call
      const m = n - opened;
      return m === outer || (ctx.headerWrites && m < outer && loopFrames[outer - m]!);
    };
    for (let steps = 0; steps < 256 && sr.pos < end; steps++) {
      const op = sr.u8();
      switch (op) {
        case 0x02: skipBlockType(sr); opened++; break;
        case 0x03:
          return ctx.headerWrites;
        case 0x00: case 0x08: case 0x10: case 0x11: case 0x12: case 0x13: case 0x0f:
          return true;
        case 0x0b:
          if (opened > 0) opened--;
          else if (outer === 0) return true; // the function's end
          else outer--; // a frame open at the call: its code continues after its end
          break;
        case 0x0c: return toLoopOrOut(sr.u32());
        case 0x0d: if (!toLoopOrOut(sr.u32())) return false; break;
        case 0x0e: {
          const n = sr.u32();
          for (let i = 0; i <= n; i++) if (!toLoopOrOut(sr.u32())) return false;
          return true;
        }
        default:
          if (!PURE[op]) return false;
          skipPureImmediates(sr, op);
      }
    }
    return false;
  };
  /** Rewritten loops a branch to label `n` crosses (frames inside its target). */
  const crossed = (n: number): number => {
    const frames = wrapped.length - 1;
    const target = frames - 1 - n;
    return target < 0 ? 0 : wrapped[frames]! - wrapped[target + 1]!;
  };
  /** Reads a label immediate and re-encodes it when it crosses rewritten loops; the label as the
   *  original code wrote it. */
  const label = (): number => {
    const immAt = r.pos;
    const n = r.u32();
    const extra = crossed(n);
    if (extra > 0) {
      flush(immAt);
      instrs.u32(n + 3 * extra);
      copyFrom = r.pos;
    }
    return n;
  };
  const blockTypeHasParams = (): boolean => {
    const b = bytes[r.pos]!;
    if (b === 0x40 || b >= 0x6f) return false; // empty or a value type
    const save = r.pos;
    const t = r.u32(); // an s33 type index; non-negative, so its unsigned reading
    r.pos = save;
    return (ctx.types[t]?.params.length ?? 0) > 0;
  };

  // function entry
  if (threaded) {
    // The body's own label becomes a block with its results, so branches to it (returns) still
    // carry exactly those; the count is added after it.
    instrs.u8(0x02); instrs.bytes(resultBlockType!);
  } else if (local) {
    instrs.u8(0x23); instrs.u32(g.fuel); // global.get $fuel
    instrs.u8(0x21); instrs.u32(fl); // local.set $fl
  }
  /** A direct call's target: the threaded copy's index, or -1. */
  const threadedTarget = (f: number): number => {
    const i = f - ctx.importedFuncs;
    return i >= 0 && i < ctx.threaded.length ? ctx.threaded[i]! : -1;
  };
  // The entry check, removed again at the end when the function turns out to call nothing.
  const entryCheckAt = instrs.length;
  check();
  const entryCheckEnd = instrs.length;
  let calls = false;
  let acc = ctx.costs.functionEntry;
  let depth = 1;

  for (;;) {
    const at = r.pos;
    const op = r.u8();
    switch (op) {
      // Free structure that does not end a basic block.
      case 0x01: // nop
      case 0x1a: // drop
        acc += opCost[op]!;
        break;
      case 0x02: // block
      case 0x06: // try
        skipBlockType(r);
        acc += opCost[op]!;
        depth++;
        pushFrame(false);
        break;

      // Block boundaries: charge what ran since the last one.
      case 0x03: { // loop: a branch target, then a check every iteration
        if (!local) return -1; // rerun in local mode
        charge(at, acc + opCost[op]!);
        acc = 0;
        const wrap = ctx.slices && !blockTypeHasParams() && !(inlineCheckLoops?.has(at) ?? false);
        let edge = false;
        const btStart = r.pos;
        skipBlockType(r);
        if (wrap) {
          const bt = bytes.subarray(btStart, r.pos);
          flush(at);
          instrs.u8(0x02); instrs.bytes(bt); // block bt ($done)
          instrs.u8(0x03); instrs.bytes(bt); // loop bt ($outer)
          instrs.u8(0x02); instrs.u8(0x40); // block ($slow)
          if (ctx.headerWrites) sync(r.pos); // after the original `loop bt`, copied as it was
          else flush(r.pos);
          lget(fl);
          instrs.u8(0x42); instrs.u8(0x00); // i64.const 0
          instrs.u8(0x55); // i64.gt_s
          checks.push(instrs.length);
          instrs.u8(0x0d); instrs.u8(0x01); // br_if $slow
        } else {
          // A loop whose body starts with straight-line code that cannot trap and then a direct
          // call (BodyScan.loopFirstCall) has its count written to the global before that call,
          // before anything could trap or read it: the header's own write is left out (the check
          // makes it on its way to the host). When the callee checks at its entry, every
          // iteration passes that check, and the header's check is left out too.
          const first = ctx.elideWrites ? scan?.loopFirstCall.get(at) : undefined;
          const hinted = !(scan?.unhintedLoops.has(at) ?? false);
          // A loop whose every back edge is a plain `br` (BodyScan.backEdgeLoops) has its check
          // there instead: the header keeps its write, and each `br` back checks first.
          edge = first === undefined && (scan?.backEdgeLoops.has(at) ?? false);
          if (edge) {
            if (ctx.headerWrites) sync(r.pos);
            else flush(r.pos);
          } else if (first === undefined && ctx.headerWrites) {
            sync(r.pos);
            check(hinted);
          } else if (first === undefined || !calleeChecks(first)) {
            flush(r.pos);
            if (hinted) checks.push(instrs.length + checkLocalIfAt);
            instrs.bytes(ctx.checkLocalSynced(fl));
          }
        }
        depth++;
        pushFrame(wrap, true, edge);
        break;
      }
      case 0x04: // if
        charge(at, acc + opCost[op]!);
        acc = 0;
        skipBlockType(r);
        depth++;
        pushFrame(false);
        break;
      case 0x05: // else
        charge(at, acc + opCost[op]!);
        acc = 0;
        break;
      case 0x00: // unreachable
      case 0x0f: // return
        charge(at, acc + opCost[op]!);
        acc = 0;
        if (!threaded || op === 0x00 || !ctx.elideWrites) sync(at);
        if (threaded && op === 0x0f) {
          // The count is the last result; the caller writes it to the global (afterCallSynced).
          flush(at);
          lget(fl);
        }
        break;
      case 0x19: // catch_all: a handler starts; the thrower synced the global
        charge(at, acc + opCost[op]!);
        acc = 0;
        reload(r.pos);
        break;
      case 0x07: // catch tag
        charge(at, acc + opCost[op]!);
        acc = 0;
        r.u32();
        reload(r.pos);
        break;
      case 0x08: // throw tag
      case 0x12: { // return_call
        charge(at, acc + opCost[op]!);
        acc = 0;
        const f = r.u32();
        sync(at);
        if (op === 0x12) {
          calls = true;
          if (threaded) {
            // threadedFunctions threads a function only when its tail calls go to threaded ones.
            const t = threadedTarget(f);
            if (t < 0) throw new Error(`internal: threaded function tail-calls unthreaded function ${f}`);
            flush(at);
            lget(fl);
            instrs.u8(0x12); instrs.u32(t);
            copyFrom = r.pos;
          }
        }
        break;
      }
      case 0x09: // rethrow label
        charge(at, acc + opCost[op]!);
        acc = 0;
        sync(at);
        label();
        break;
      case 0x10: { // call
        calls = true;
        charge(at, acc + opCost[op]!);
        acc = 0;
        const f = r.u32();
        sync(at);
        const t = local ? threadedTarget(f) : -1;
        if (t >= 0) {
          // The count goes in as the last argument and comes back as the last result, and is
          // written to the global after the call unless what follows does it in time.
          flush(at);
          lget(fl);
          instrs.u8(0x10); instrs.u32(t);
          lset(fl);
          copyFrom = r.pos;
          if (ctx.elideWrites && !afterCallSynced(r.pos)) {
            lget(fl);
            instrs.u8(0x24); instrs.u32(g.fuel); // global.set $fuel
          }
        } else {
          reload(r.pos);
        }
        break;
      }
      case 0x0c: // br
      case 0x0d: { // br_if
        charge(at, acc + opCost[op]!);
        acc = 0;
        const save = r.pos;
        const target = r.u32();
        if (target === depth - 1 && (!threaded || !ctx.elideWrites)) sync(at); // to the function's own label: a return
        if (op === 0x0c && edgeChecked[edgeChecked.length - 1 - target]) {
          // A back edge of a loop checked at its back edges: the check, unhinted, then the `br`.
          // Its slow path writes the count to the global before it asks the host.
          flush(at);
          instrs.bytes(ctx.checkLocalSynced(fl));
        }
        r.pos = save;
        label();
        break;
      }
      case 0x0e: {
        // br_table
        charge(at, acc + opCost[op]!);
        acc = 0;
        const n = r.u32();
        const labelsAt = r.pos;
        let leaves = false;
        let rewrite = false;
        for (let i = 0; i <= n; i++) {
          const l = r.u32();
          if (l === depth - 1) leaves = true;
          if (crossed(l) > 0) rewrite = true;
        }
        if (leaves && (!threaded || !ctx.elideWrites)) sync(at);
        if (rewrite) {
          const end = r.pos;
          flush(labelsAt);
          r.pos = labelsAt;
          for (let i = 0; i <= n; i++) {
            const l = r.u32();
            instrs.u32(l + 3 * crossed(l));
          }
          r.pos = end;
          copyFrom = end;
        }
        break;
      }
      case 0x11: // call_indirect type table
      case 0x13: {
        // return_call_indirect
        calls = true;
        charge(at, acc + opCost[op]!);
        acc = 0;
        r.u32();
        const table = r.u32();
        flush(at);
        usesScratch = true;
        instrs.u8(0x22); instrs.u32(s0); // local.tee $s0
        instrs.u8(0x24); instrs.u32(g.indirectIndex); // global.set $indirect_index
        instrs.u8(0x20); instrs.u32(s0); // local.get $s0
        if (g.indirectTable >= 0) {
          instrs.u8(0x41); instrs.sNum(table); // i32.const table
          instrs.u8(0x24); instrs.u32(g.indirectTable);
        }
        sync(at);
        if (op === 0x11) reload(r.pos);
        break;
      }
      case 0x18: // delegate label: ends a try, passing its exceptions outwards
        charge(at, acc + opCost[op]!);
        acc = 0;
        sync(at);
        depth--;
        popFrame(); // the label counts from the try's enclosing frame
        label();
        break;
      case 0x0b: // end
        charge(at, acc + opCost[op]!);
        acc = 0;
        if (depth > 1 && popFrame()) {
          // A rewritten loop ends: its results leave through $done; $slow's continuation asks
          // the host for a slice and resumes the loop.
          flush(r.pos);
          instrs.u8(0x0c); instrs.u8(0x02); // br $done
          instrs.u8(0x0b); // end $slow
          if (!ctx.headerWrites) { lget(fl); instrs.u8(0x24); instrs.u32(g.fuel); } // local.get; global.set $fuel
          instrs.u8(0x10); instrs.u32(g.slice); // call $slice
          instrs.u8(0x23); instrs.u32(g.fuel); // global.get $fuel
          lset(fl);
          instrs.u8(0x0c); instrs.u8(0x00); // br $outer
          instrs.u8(0x0b); // end $outer
          instrs.u8(0x0b); // end $done
        }
        if (--depth === 0) {
          if (!threaded || !ctx.elideWrites) sync(at);
          flush(r.pos);
          if (threaded) {
            // That `end` closed the results block: add the count, then end the function.
            lget(fl);
            instrs.u8(0x0b);
          }
          if (!calls) {
            // A leaf: drop the entry check (and its hint); later offsets move back.
            const removed = entryCheckEnd - entryCheckAt;
            const code = instrs.view();
            code.copyWithin(entryCheckAt, entryCheckEnd);
            instrs.length -= removed;
            checks.shift();
            for (let i = 0; i < checks.length; i++) checks[i] = checks[i]! - removed;
          }
          if (r.pos !== end) throw new WasmFormatError('function body continues after its final end');
          return writeBody(out, bytes, declCount, declsStart, declsEnd, usesScratch ? (local && !threaded ? SCRATCH_DECLS_LOCAL : SCRATCH_DECLS) : null, instrs);
        }
        break;

      case 0x1b: // select
        acc += opCost[op]!;
        break;
      case 0x1c: {
        // select t*
        const n = r.u32();
        for (let i = 0; i < n; i++) readValType(r);
        acc += opCost[op]!;
        break;
      }
      case 0x20: case 0x21: case 0x22: { // local.*
        const immAt = r.pos;
        const l = r.u32();
        if (threaded && l >= paramCount) {
          // A declared local: one place up, after the count parameter.
          flush(immAt);
          instrs.u32(l + 1);
          copyFrom = r.pos;
        }
        acc += opCost[op]!;
        break;
      }
      case 0x23: case 0x24: // global.*
      case 0x25: case 0x26: // table.get, table.set
      case 0xd2: // ref.func
        r.u32();
        acc += opCost[op]!;
        break;
      case 0x3f: // memory.size
        r.u32();
        acc += opCost[op]!;
        break;
      case 0x40: {
        // memory.grow: charged per page once it succeeded; a refusal records its target size
        charge(at, acc + opCost[op]!);
        acc = 0;
        r.u32();
        sync(at); // the per-page charge works on the global
        usesScratch = true;
        ltee(s0);
        flush(r.pos);
        chargeGrowth(ctx.costs.perUnit['memory.grow'], () => {
          instrs.u8(0x3f); instrs.u8(0x00); instrs.u8(0xad); // memory.size 0; i64.extend_i32_u
          u64(s0); // the requested delta
          instrs.u8(0x7c); // i64.add
          instrs.u8(0x24); instrs.u32(g.growRefused);
        });
        reload(r.pos);
        break;
      }
      case 0x41: // i32.const
      case 0x42: // i64.const
        r.skipLeb();
        acc += opCost[op]!;
        break;
      case 0x43: // f32.const
        r.skip(4);
        acc += opCost[op]!;
        break;
      case 0x44: // f64.const
        r.skip(8);
        acc += opCost[op]!;
        break;
      case 0xd0: {
        // ref.null heaptype
        const t = r.u8();
        if (t !== 0x70 && t !== 0x6f) throw new UnsupportedFeature('typed function references are not supported');
        acc += opCost[op]!;
        break;
      }
      case 0xd1: // ref.is_null
        acc += opCost[op]!;
        break;
      case 0xfc: {
        const sub = r.u32();
        const imm = r.pos;
        skipFcImmediates(r, sub);
        const scaled = SCALED_FC[sub];
        if (sub === 9 || sub === 13) {
          // data.drop / elem.drop: the segment's remaining length becomes 0
          acc += ctx.costs.operator;
          const base = sub === 9 ? g.dataLen : g.elemLen;
          if (base >= 0) {
            flush(r.pos);
            instrs.u8(0x41); instrs.u8(0x00); // i32.const 0
            instrs.u8(0x24); instrs.u32(base + new Reader(bytes, imm, r.pos).u32()); // global.set
          }
          break;
        }
        if (scaled === undefined) {
          acc += ctx.costs.operator;
          break;
        }
        charge(at, acc + ctx.costs.operator);
        acc = 0;
        flush(at);
        sync(at); // the per-unit charge works on the global
        usesScratch = true;
        const ir = new Reader(bytes, imm, r.pos);
        const perUnit = ctx.costs.perUnit[scaled];
        switch (sub) {
          case 8: { // memory.init data: [d s n]
            const seg = ir.u32();
            lset(s0); lset(s1); lset(s2);
            chargeIf(s0, perUnit, () => {
              fits(s2, s0, memoryBytes);
              fits(s1, s0, segmentLength(g.dataLen, seg));
              instrs.u8(0x71); // i32.and
            });
            lget(s2); lget(s1); lget(s0);
            break;
          }
          case 10: // memory.copy: [d s n]
            lset(s0); lset(s1); lset(s2);
            chargeIf(s0, perUnit, () => {
              fits(s2, s0, memoryBytes);
              fits(s1, s0, memoryBytes);
              instrs.u8(0x71);
            });
            lget(s2); lget(s1); lget(s0);
            break;
          case 11: // memory.fill: [d value n]
            lset(s0); lset(s1); lset(s2);
            chargeIf(s0, perUnit, () => fits(s2, s0, memoryBytes));
            lget(s2); lget(s1); lget(s0);
            break;
          case 12: { // table.init elem table: [d s n]
            const seg = ir.u32();
            const t = ir.u32();
            lset(s0); lset(s1); lset(s2);
            chargeIf(s0, perUnit, () => {
              fits(s2, s0, tableSize(t));
              fits(s1, s0, segmentLength(g.elemLen, seg));
              instrs.u8(0x71); // i32.and
            });
            lget(s2); lget(s1); lget(s0);
            break;
          }
          case 14: { // table.copy dst src: [d s n]
            const td = ir.u32();
            const ts = ir.u32();
            lset(s0); lset(s1); lset(s2);
            chargeIf(s0, perUnit, () => {
              fits(s2, s0, tableSize(td));
              fits(s1, s0, tableSize(ts));
              instrs.u8(0x71);
            });
            lget(s2); lget(s1); lget(s0);
            break;
          }
          case 17: { // table.fill table: [i value n]
            const t = ir.u32();
            const sRef = ctx.tableTypes[t] === 'externref' ? sExt : sFunc;
            lset(s0); lset(sRef); lset(s2);
            chargeIf(s0, perUnit, () => fits(s2, s0, tableSize(t)));
            lget(s2); lget(sRef); lget(s0);
            break;
          }
          case 15: // table.grow table: [value n] -> old size or -1
            ltee(s0);
            flush(r.pos);
            chargeGrowth(perUnit, null);
            break;
        }
        reload(r.pos);
        break;
      }
      case 0xfd:
        skipSimdImmediates(r, r.u32());
        acc += ctx.costs.operator;
        break;
      case 0xfe:
        skipAtomicImmediates(r, r.u32());
        acc += ctx.costs.operator;
        break;
      default:
        if (op >= 0x28 && op <= 0x3e) {
          skipMemArg(r);
          acc += opCost[op]!;
        } else if (op >= 0x45 && op <= 0xc4) {
          acc += opCost[op]!; // numeric operators, no immediates
          if (TRAPPING_TRUNC[op] !== TRUNC_NONE) {
            // Record the operand of a trapping float-to-int conversion: NaN and out-of-range
            // are different traps, and V8 reports both with one message.
            flush(at);
            usesScratch = true;
            if (TRAPPING_TRUNC[op] === TRUNC_F32) {
              ltee(sF32);
              instrs.u8(0xbb); // f64.promote_f32
              instrs.u8(0x24); instrs.u32(g.truncOperand);
              lget(sF32);
            } else {
              ltee(sF64);
              instrs.u8(0x24); instrs.u32(g.truncOperand);
              lget(sF64);
            }
          }
        } else {
          throw new UnsupportedFeature(unsupportedOpcodeMessage(op));
        }
    }
  }
}

/** What the fuel pass needs to know of a body before it rewrites any (scanBody). */
interface BodyScan {
  /** The loops (by the offset of their `loop` opcode) that keep their check inline instead of
   *  being wrapped: those whose body calls, and large innermost ones (see scanBody). */
  inlineCheckLoops: Set<number>;
  /** Of those, the ones kept inline for their size alone (they do not call): their check's `if`
   *  gets no branch hint (see scanBody). */
  unhintedLoops: Set<number>;
  /** Of the unhinted ones, those with a back edge and no conditional one (every branch back to
   *  the loop is a plain `br`, none a `br_if` or a `br_table`): their check sits before each
   *  `br` back instead of at the header (see scanBody). */
  backEdgeLoops: Set<number>;
  /** Targets of direct calls. */
  calls: number[];
  /** Targets of `return_call`. */
  tailCalls: number[];
  /** Whether it has a `return_call_indirect`. */
  tailIndirect: boolean;
  /** Whether it has a loop. */
  hasLoop: boolean;
  /** Whether it calls (call, call_indirect, return_call, return_call_indirect): it then keeps
   *  its entry check. */
  hasCall: boolean;
  /**
   * The loops (by the offset of their `loop` opcode) whose body starts with a direct call, after
   * only instructions that cannot trap, branch or call (PURE): the callee's index. Every iteration
   * reaches that call, and the fuel pass writes the count to the global right before it.
   */
  loopFirstCall: Map<number, number>;
}

/**
 * One pass over a body (locals included) for what the rewrite needs first: the targets of its
 * direct and tail calls (for threadedFunctions), and the loops that keep their check inline:
 * - loops whose body calls: a call, an indirect or tail call, or an operator whose charge is
 *   checked inside the loop (bulk memory and table operations, memory.grow, table.grow). Such a
 *   loop cannot be unrolled anyway, and the wrappers cost a loop that calls about 13 %;
 * - innermost loops (no loop inside) of at least INLINE_CHECK_LOOP_BYTES: V8 neither unrolls nor
 *   peels a loop that large, so the wrappers buy nothing there, and they cost it registers (the
 *   count is live on the wrappers' exit path as well): an interpreter's dispatch loop (bench
 *   program vm, 655 bytes) ran 9-10 % faster with its check inline, while loops of about 200
 *   bytes (crc32, nbody) ran the same either way and smaller ones (matmul, sieve, sha256, up to
 *   156 bytes) 8-48 % slower. The check of such a loop (large, innermost, no call) is the one
 *   check left without a branch hint: TurboFan then keeps its host call in line instead of in
 *   deferred code, and the dispatch loop ran 6-9 % faster (vm 1.44 -> 1.35 of the unmetered time,
 *   side by side), an unrolled hash round loop (md5) the same or faster; loops that call keep the
 *   hint, which they need (fibloop 1.27 with it, 1.48 without).
 *   Of those, a loop with at least one branch back to it and none conditional (every branch to its
 *   label a plain `br`: no `br_if` or `br_table` reaches it) is checked before each `br` back
 *   instead of at its header (backEdgeLoops). Each such `br` becomes `if (count > 0) {write; call
 *   $slice; reload} br`, and V8 threads the `if`'s fall-through jump into the branch back: the
 *   fast path is one compare and the loop's own jump, taken, where a header check added a
 *   compare and a taken jump over its call to every iteration. The interpreter's dispatch loop
 *   (vm) went from 1.32-1.38 to 1.19-1.26 of its unmetered time (side by side in one process,
 *   medians of 5-9 calls, eight runs); hinting those checks instead was 0.03 slower. Every cycle
 *   through the loop still passes a check (each closes through a branch back), the charges do not
 *   move, and the header keeps its write, so the count and a trap's account are unchanged. A
 *   `br_if` back would need the check inside its condition's taken path, a branch more, so such
 *   loops keep the header check.
 * null when it meets an opcode it does not know (the fuel pass then refuses the module).
 */
function scanBody(bytes: Uint8Array, start: number, end: number): BodyScan | null {
  const r = new Reader(bytes, start, end);
  const declCount = r.u32();
  for (let i = 0; i < declCount; i++) {
    r.u32();
    readValType(r);
  }
  const result = new Set<number>();
  const unhinted = new Set<number>();
  const backEdgeLoops = new Set<number>();
  const direct: number[] = [];
  const tail: number[] = [];
  let tailIndirect = false;
  let hasLoop = false;
  let hasCall = false;
  const loopFirstCall = new Map<number, number>();
  // The loop whose body's straight-line start is being read (-1: none).
  let prefixOf = -1;
  // Per open frame: the offset of its loop opcode (-1 for other frames), whether it calls, and
  // whether a loop is open inside it.
  const loopAt: number[] = [-1];
  const calls: boolean[] = [false];
  const inner: boolean[] = [false];
  // Per open frame, for a loop: the plain `br`s back to it so far, or -1 once a `br_if` or
  // `br_table` can branch back to it.
  const edges: number[] = [0];
  const open = (at: number): void => {
    loopAt.push(at);
    calls.push(false);
    inner.push(false);
    edges.push(0);
  };
  const close = (): void => {
    const at = loopAt.pop()!;
    const c = calls.pop()!;
    const nested = inner.pop()!;
    const back = edges.pop()!;
    if (at >= 0 && (c || (!nested && r.pos - at >= INLINE_CHECK_LOOP_BYTES))) {
      result.add(at);
      if (!c) {
        unhinted.add(at);
        if (back > 0) backEdgeLoops.add(at);
      }
    }
    if (calls.length > 0) {
      if (c) calls[calls.length - 1] = true;
      if (at >= 0 || nested) inner[inner.length - 1] = true;
    }
  };
  const call = (): void => {
    calls[calls.length - 1] = true;
  };
  /** A branch to label `label`: counted when it goes back to a loop (see `edges`). */
  const backEdge = (label: number, conditional: boolean): void => {
    const i = edges.length - 1 - label;
    if (i < 0 || loopAt[i]! < 0) return;
    const n = edges[i]!;
    edges[i] = conditional || n < 0 ? -1 : n + 1;
  };
  while (r.pos < end) {
    const at = r.pos;
    const op = r.u8();
    if (prefixOf >= 0 && !PURE[op]) {
      if (op === 0x10) loopFirstCall.set(prefixOf, new Reader(bytes, r.pos, end).u32());
      prefixOf = -1;
    }
    switch (op) {
      case 0x02: case 0x04: case 0x06: skipBlockType(r); open(-1); break;
      case 0x03: skipBlockType(r); open(at); hasLoop = true; prefixOf = at; break;
      case 0x0b: close(); break;
      case 0x18: r.u32(); close(); break; // delegate ends a try
      case 0x00: case 0x01: case 0x05: case 0x0f: case 0x19: case 0x1a: case 0x1b: case 0xd1: break;
      case 0x07: case 0x08: case 0x09: r.u32(); break;
      case 0x0c: backEdge(r.u32(), false); break;
      case 0x0d: backEdge(r.u32(), true); break;
      case 0x0e: { const n = r.u32(); for (let i = 0; i <= n; i++) backEdge(r.u32(), true); break; }
      case 0x10: direct.push(r.u32()); call(); hasCall = true; break;
      case 0x12: tail.push(r.u32()); call(); hasCall = true; break;
      case 0x11: r.u32(); r.u32(); call(); hasCall = true; break;
      case 0x13: r.u32(); r.u32(); tailIndirect = true; call(); hasCall = true; break;
      case 0x1c: { const n = r.u32(); for (let i = 0; i < n; i++) readValType(r); break; }
      case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0xd2: case 0x3f: r.u32(); break;
      case 0x40: r.u32(); call(); break;
      case 0x41: case 0x42: r.skipLeb(); break;
      case 0x43: r.skip(4); break;
      case 0x44: r.skip(8); break;
      case 0xd0: r.u8(); break;
      case 0xfc: { const sub = r.u32(); skipFcImmediates(r, sub); if (SCALED_FC[sub] !== undefined) call(); break; }
      case 0xfd: skipSimdImmediates(r, r.u32()); break;
      case 0xfe: skipAtomicImmediates(r, r.u32()); break;
      default:
        if (op >= 0x28 && op <= 0x3e) skipMemArg(r);
        else if (!(op >= 0x45 && op <= 0xc4)) return null;
    }
  }
  return { inlineCheckLoops: result, unhintedLoops: unhinted, backEdgeLoops, calls: direct, tailCalls: tail, tailIndirect, hasLoop, hasCall, loopFirstCall };
}

/**
 * Single-byte opcodes that cannot trap, branch, call or end a block, whatever their operands:
 * locals, globals, constants, drop, select, and the numeric operators except integer division
 * and remainder and the trapping float-to-int truncations. (Immediates are skipped by scanBody's
 * switch as usual.)
 */
const PURE = ((): Uint8Array => {
  const t = new Uint8Array(256);
  for (const op of [0x01, 0x1a, 0x1b, 0x1c, 0x20, 0x21, 0x22, 0x23, 0x24, 0x3f, 0x41, 0x42, 0x43, 0x44, 0xd0, 0xd1, 0xd2]) t[op] = 1;
  for (let op = 0x45; op <= 0xc4; op++) t[op] = 1;
  // i32.div_s/u, i32.rem_s/u, i64.div_s/u, i64.rem_s/u; i32/i64.trunc_f32/f64_s/u
  for (const op of [0x6d, 0x6e, 0x6f, 0x70, 0x7f, 0x80, 0x81, 0x82, 0xa8, 0xa9, 0xaa, 0xab, 0xae, 0xaf, 0xb0, 0xb1]) t[op] = 0;
  return t;
})();

/** Skips the immediates of a PURE opcode (most have none). */
function skipPureImmediates(r: Reader, op: number): void {
  switch (op) {
    case 0x1c: { const n = r.u32(); for (let i = 0; i < n; i++) readValType(r); return; }
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0xd2: case 0x3f: r.u32(); return;
    case 0x41: case 0x42: r.skipLeb(); return;
    case 0x43: r.skip(4); return;
    case 0x44: r.skip(8); return;
    case 0xd0: r.u8(); return;
  }
}

/** Innermost loops at least this large (in bytes of code, `loop` to `end`) keep their check
 *  inline (see scanBody). */
const INLINE_CHECK_LOOP_BYTES = 512;

/** The scratch locals' declarations: 3 i32, 1 funcref, 1 externref, 1 f32, 1 f64. */
const SCRATCH_DECLS = Uint8Array.of(3, 0x7f, 1, 0x70, 1, 0x6f, 1, 0x7d, 1, 0x7c);
/** Local mode adds the i64 fuel count after them. */
const SCRATCH_DECLS_LOCAL = Uint8Array.of(3, 0x7f, 1, 0x70, 1, 0x6f, 1, 0x7d, 1, 0x7c, 1, 0x7e);

function writeBody(
  out: Writer,
  bytes: Uint8Array,
  declCount: number,
  declsStart: number,
  declsEnd: number,
  extra: Uint8Array | null,
  instrs: Writer,
): number {
  const decls = bytes.subarray(declsStart, declsEnd);
  const newCount = declCount + (extra ? extra.length / 2 : 0);
  const code = instrs.view();
  const size = u32Size(newCount) + decls.length + (extra?.length ?? 0) + code.length;
  out.u32(size);
  out.u32(newCount);
  out.bytes(decls);
  if (extra) out.bytes(extra);
  out.bytes(code);
  // Where the instructions start in the body (the offsets branch hints are counted from).
  return u32Size(newCount) + decls.length + (extra?.length ?? 0);
}
