// The limiter: the module-level rewrite that puts a guest's resources in the host's hands, as
// wasmtime's ResourceLimiter keeps them apart from its fuel counting. It changes no function body
// (the fuel pass in src/metering/instrument.ts walks those); everything here is
// semantics-preserving, and every index the module's own code uses stays what it was:
// - The module's own memory becomes an import ("wasmbox" "memory") with the same limits, so the
//   host creates it with `maximum` lowered to the request's limit: one compiled module serves
//   every memory limit, and V8 itself refuses growth past the cap (memory.grow returns -1).
// - The module's own tables become imports ("wasmbox" "table<i>") with their maximum lowered to
//   the server's element cap; a table that starts above the cap is refused (TableLimitError).
//   The host holds the tables, so it can tell a null entry from a signature mismatch after a
//   failed call_indirect (V8 reports both with one message).
// - The hidden globals (guest-imports.ts) are defined after the module's own, with a getter and
//   a setter function each, appended after the module's functions; an active element segment
//   puts those in a host-created table ("wasmbox" "hidden"), through which the host reads and
//   sets them.
// - The start section is removed and the start function put in the same table; the host calls it
//   right after instantiation, once the fuel budget is set.
// - One more function is appended, `$slice` (the fuel pass calls it where a check finds the
//   current slice of fuel spent): it calls the host's refill function in the hidden table's slot
//   0 and executes `unreachable` when the host answers that the run is over. The host's answer
//   is how a deadline ends a run as a trap, with its account intact (src/wasi/fuel.ts).
// The module's exports are left exactly as they were: the service adds none, so a module may
// have V8's maximum of 100,000.
// After `$slice` come the functions the fuel pass appends (its threaded copies, with their types
// after the limiter's): `Contributions.types` and `.functions`, placed from `firstAppendedType` and
// `firstAppendedFunction` on.

import { Reader, Writer, u32Size } from '../wasm/bytes.js';
import { type Limits, type ParsedModule, SectionId, UnsupportedFeature } from '../wasm/module.js';
import {
  type GuestLayout,
  HIDDEN_GLOBALS,
  HIDDEN_GLOBAL_NAMES,
  FIRST_ACCESSOR_SLOT,
  HIDDEN_TABLE_IMPORT,
  type HiddenGlobalName,
  HOST_MODULE,
  MEMORY_IMPORT,
  REFILL_SLOT,
  hiddenTableSize,
  tableImportName,
} from './guest-imports.js';

export class TableLimitError extends Error {
  override readonly name = 'TableLimitError';
}

export interface LimitOptions {
  /** Every table's maximum is lowered to this many elements. */
  maxTableElements: number;
}

/** How the limiter lays out the rewritten module; the fuel pass reads it. */
export interface LimitPlan {
  layout: GuestLayout;
  /** Global index of each hidden global in the rewritten module. */
  hidden: Readonly<Record<HiddenGlobalName, number>>;
  /** Index of the first global appended after the hidden ones (see `assemble`). */
  firstAppendedGlobal: number;
  /** Function index of `$slice`, which the fuel pass's checks call when a slice is spent. */
  sliceFunction: number;
  /** Index of the first type the fuel pass may append (Contributions.types), after the limiter's. */
  firstAppendedType: number;
  /** Index of the first function the fuel pass may append (Contributions.functions), after `$slice`. */
  firstAppendedFunction: number;
}

/** What the fuel pass contributes to the module: its code section and defined globals. */
export interface Contributions {
  code: Uint8Array | null;
  /** Encoded global entries (type, mutability, constant expression), appended in this order from
   *  `firstAppendedGlobal` on. */
  globals: Uint8Array[];
  /** Content of a metadata.code.branch_hint custom section, placed right before the code section
   *  (the proposal requires it there). */
  branchHints?: Uint8Array | null;
  /** Encoded function types (0x60 params results), appended from `firstAppendedType` on. */
  types?: Uint8Array[];
  /** Functions appended after `$slice` (from `firstAppendedFunction` on): the type index of each,
   *  and their bodies, size-prefixed, in the same order. */
  functions?: { types: number[]; code: Uint8Array } | null;
}

const VALTYPE_BYTE = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c } as const;
type HiddenType = (typeof HIDDEN_GLOBALS)[HiddenGlobalName]['value'];
/** The accessors' types, appended to the type section: a getter () -> t and a setter (t) -> (). */
const ACCESSOR_TYPES: readonly HiddenType[] = ['i64', 'i32', 'f64'];
/** After them: `$slice`'s type () -> (), then the host refill function's () -> i32. */
const SLICE_TYPE_OFFSET = 2 * ACCESSOR_TYPES.length;
const REFILL_TYPE_OFFSET = SLICE_TYPE_OFFSET + 1;
const ACCESSOR_COUNT = 2 * HIDDEN_GLOBAL_NAMES.length;
/** The types the limiter appends: the accessors', `$slice`'s and the refill function's. */
const LIMITER_TYPES = 2 * ACCESSOR_TYPES.length + 2;

export function planLimits(m: ParsedModule, options: LimitOptions): LimitPlan {
  if (m.imports.some((i) => i.module === HOST_MODULE)) {
    throw new UnsupportedFeature(`imports from "${HOST_MODULE}" are reserved for the service's own use`);
  }
  m.tables.forEach((t, i) => {
    if (t.limits.min > options.maxTableElements) {
      throw new TableLimitError(
        `table ${m.importedTables + i} starts with ${t.limits.min} elements; this server allows at most ${options.maxTableElements}`,
      );
    }
  });
  const base = m.importedGlobals + m.definedGlobals;
  const hidden = Object.fromEntries(HIDDEN_GLOBAL_NAMES.map((name, i) => [name, base + i])) as Record<HiddenGlobalName, number>;
  return {
    layout: {
      memory: m.memories[0] ?? null,
      tables: m.tables.map((t) => ({
        elemType: t.elemType,
        min: t.limits.min,
        max: Math.min(t.limits.max ?? options.maxTableElements, options.maxTableElements),
      })),
      firstTable: m.importedTables,
      start: m.start !== null,
    },
    hidden,
    firstAppendedGlobal: base + HIDDEN_GLOBAL_NAMES.length,
    // Appended after the module's own functions and the accessors.
    sliceFunction: m.importedFuncs + m.funcTypes.length + ACCESSOR_COUNT,
    firstAppendedType: m.types.length + LIMITER_TYPES,
    firstAppendedFunction: m.importedFuncs + m.funcTypes.length + ACCESSOR_COUNT + 1,
  };
}

// Canonical order of the known sections (the tag section sits between memory and global).
const SECTION_RANK: Readonly<Record<number, number>> = {
  [SectionId.type]: 1,
  [SectionId.import]: 2,
  [SectionId.function]: 3,
  [SectionId.table]: 4,
  [SectionId.memory]: 5,
  [SectionId.tag]: 6,
  [SectionId.global]: 7,
  [SectionId.export]: 8,
  [SectionId.start]: 9,
  [SectionId.element]: 10,
  [SectionId.dataCount]: 11,
  [SectionId.code]: 12,
  [SectionId.data]: 13,
};

interface OutSection {
  id: number;
  content: Uint8Array;
}

/** Writes the rewritten module: the limiter's section changes plus the fuel pass's contributions. */
export function assemble(m: ParsedModule, plan: LimitPlan, extra: Contributions): Uint8Array {
  const bytes = m.bytes;
  const out: OutSection[] = [];
  const insert = (s: OutSection): void => {
    // Before the first non-custom section that must come after it.
    const rank = SECTION_RANK[s.id]!;
    const at = out.findIndex((o) => o.id !== SectionId.custom && SECTION_RANK[o.id]! > rank);
    if (at < 0) out.push(s);
    else out.splice(at, 0, s);
  };
  const present = new Set(m.sections.map((s) => s.id));
  const section = (id: number): Uint8Array | null => {
    const s = m.sections.find((x) => x.id === id);
    return s ? bytes.subarray(s.contentStart, s.end) : null;
  };
  // Appended functions: the accessors, after the module's own (imported and defined) functions.
  const firstAccessor = m.importedFuncs + m.funcTypes.length;
  const rewritten: Partial<Record<number, Uint8Array>> = {
    [SectionId.type]: typeSection(section(SectionId.type), extra.types ?? []),
    [SectionId.import]: importSection(section(SectionId.import), plan),
    [SectionId.function]: functionSection(section(SectionId.function), m.types.length, extra.functions?.types ?? []),
    [SectionId.global]: globalSection(section(SectionId.global), extra.globals),
    [SectionId.element]: elementSection(section(SectionId.element), m, firstAccessor),
    [SectionId.code]: codeSection(extra.code ?? section(SectionId.code), plan, m, extra.functions ?? null),
  };
  for (const s of m.sections) {
    if (s.id === SectionId.table || s.id === SectionId.memory || s.id === SectionId.start) continue; // now the host's
    out.push({ id: s.id, content: rewritten[s.id] ?? bytes.subarray(s.contentStart, s.end) });
  }
  for (const [id, content] of Object.entries(rewritten)) {
    if (!present.has(Number(id))) insert({ id: Number(id), content: content! });
  }
  if (extra.branchHints) {
    // The module's own hints (if any) would describe offsets in bodies that have changed: drop
    // them; ours go right before the code section.
    for (let i = out.length - 1; i >= 0; i--) if (out[i]!.id === SectionId.custom && customName(out[i]!.content) === BRANCH_HINT_SECTION) out.splice(i, 1);
    const name = new Writer(BRANCH_HINT_SECTION.length + 5);
    name.name(BRANCH_HINT_SECTION);
    const head = name.view();
    const content = new Uint8Array(head.length + extra.branchHints.length);
    content.set(head);
    content.set(extra.branchHints, head.length);
    out.splice(out.findIndex((s) => s.id === SectionId.code), 0, { id: SectionId.custom, content });
  }

  let size = 8;
  for (const s of out) size += 1 + u32Size(s.content.length) + s.content.length;
  const w = new Writer(size);
  w.bytes(bytes.subarray(0, 8));
  for (const s of out) {
    w.u8(s.id);
    w.u32(s.content.length);
    w.bytes(s.content);
  }
  return w.finish();
}

/** The name of a custom section (its content starts with it). */
function customName(content: Uint8Array): string | null {
  try {
    return new Reader(content).name();
  } catch {
    return null;
  }
}

/** The branch hinting proposal's custom section. */
const BRANCH_HINT_SECTION = 'metadata.code.branch_hint';

/** A vector section's content with `count` entries appended (written by `more`). */
function appendTo(content: Uint8Array | null, count: number, more: (w: Writer) => void, extraBytes = 64): Uint8Array {
  const r = content ? new Reader(content) : null;
  const n = r ? r.u32() : 0;
  const w = new Writer((content?.length ?? 0) + extraBytes);
  w.u32(n + count);
  if (r) w.bytes(content!.subarray(r.pos));
  more(w);
  // A view: assemble() copies it into the module.
  return w.view();
}

function typeSection(content: Uint8Array | null, appended: readonly Uint8Array[]): Uint8Array {
  const appendedBytes = appended.reduce((n, t) => n + t.length, 0);
  return appendTo(content, LIMITER_TYPES + appended.length, (w) => {
    for (const t of ACCESSOR_TYPES) {
      w.bytes(Uint8Array.of(0x60, 0x00, 0x01, VALTYPE_BYTE[t])); // () -> t
      w.bytes(Uint8Array.of(0x60, 0x01, VALTYPE_BYTE[t], 0x00)); // (t) -> ()
    }
    w.bytes(Uint8Array.of(0x60, 0x00, 0x00)); // $slice: () -> ()
    w.bytes(Uint8Array.of(0x60, 0x00, 0x01, 0x7f)); // the host's refill: () -> i32
    for (const t of appended) w.bytes(t);
  }, 64 + appendedBytes);
}

/** The type index of each accessor, in hidden-table slot order (getter, setter per global). */
function accessorTypes(firstType: number): number[] {
  return HIDDEN_GLOBAL_NAMES.flatMap((name) => {
    const t = firstType + 2 * ACCESSOR_TYPES.indexOf(HIDDEN_GLOBALS[name].value);
    return [t, t + 1];
  });
}

function functionSection(content: Uint8Array | null, firstType: number, appended: readonly number[]): Uint8Array {
  const types = [...accessorTypes(firstType), firstType + SLICE_TYPE_OFFSET];
  return appendTo(content, types.length + appended.length, (w) => {
    for (const t of types) w.u32(t);
    for (const t of appended) w.u32(t);
  }, 64 + 5 * appended.length);
}

function codeSection(content: Uint8Array | null, plan: LimitPlan, m: ParsedModule, appended: Contributions['functions'] | null): Uint8Array {
  return appendTo(content, ACCESSOR_COUNT + 1 + (appended?.types.length ?? 0), (w) => {
    for (const name of HIDDEN_GLOBAL_NAMES) {
      const g = new Writer(8);
      g.u32(plan.hidden[name]);
      const index = g.view();
      // getter: no locals; global.get; end. setter: no locals; local.get 0; global.set; end.
      w.u32(3 + index.length);
      w.bytes(Uint8Array.of(0x00, 0x23, ...index, 0x0b));
      w.u32(5 + index.length);
      w.bytes(Uint8Array.of(0x00, 0x20, 0x00, 0x24, ...index, 0x0b));
    }
    // $slice: no locals; (call_indirect (type refill) (table hidden) (i32.const REFILL_SLOT));
    // if; unreachable; end; end
    const body = new Writer(24);
    body.u8(0x00);
    body.u8(0x41); body.sNum(REFILL_SLOT);
    body.u8(0x11); body.u32(m.types.length + REFILL_TYPE_OFFSET); body.u32(hiddenTableIndex(m));
    body.bytes(Uint8Array.of(0x04, 0x40, 0x00, 0x0b, 0x0b));
    const code = body.view();
    w.u32(code.length);
    w.bytes(code);
    if (appended) w.bytes(appended.code);
  }, 256 + (appended?.code.length ?? 0));
}

/** The hidden table's index: after the module's own tables, imported then defined. */
function hiddenTableIndex(m: ParsedModule): number {
  return m.importedTables + m.tables.length;
}

function writeLimits(w: Writer, l: Limits): void {
  w.u8((l.max !== null ? 0x01 : 0) | (l.shared ? 0x02 : 0));
  w.u32(l.min);
  if (l.max !== null) w.u32(l.max);
}

function importSection(content: Uint8Array | null, plan: LimitPlan): Uint8Array {
  const { layout } = plan;
  // Appended after the module's own imports, so its imported tables keep their indices.
  return appendTo(content, (layout.memory ? 1 : 0) + layout.tables.length + 1, (w) => {
    const head = (name: string, kind: number): void => {
      w.name(HOST_MODULE);
      w.name(name);
      w.u8(kind);
    };
    if (layout.memory) {
      head(MEMORY_IMPORT, 0x02);
      writeLimits(w, layout.memory);
    }
    layout.tables.forEach((t, i) => {
      head(tableImportName(i), 0x01);
      w.u8(t.elemType === 'funcref' ? 0x70 : 0x6f);
      writeLimits(w, { min: t.min, max: t.max, shared: false });
    });
    const slots = hiddenTableSize(layout.start);
    head(HIDDEN_TABLE_IMPORT, 0x01);
    w.u8(0x70);
    writeLimits(w, { min: slots, max: slots, shared: false });
  });
}

function globalSection(content: Uint8Array | null, appended: Uint8Array[]): Uint8Array {
  return appendTo(content, HIDDEN_GLOBAL_NAMES.length + appended.length, (w) => {
    for (const name of HIDDEN_GLOBAL_NAMES) {
      const { value, initial } = HIDDEN_GLOBALS[name];
      w.u8(VALTYPE_BYTE[value]);
      w.u8(0x01); // mutable
      if (value === 'f64') {
        w.u8(0x44);
        w.bytes(new Uint8Array(new Float64Array([initial]).buffer));
      } else {
        w.u8(value === 'i64' ? 0x42 : 0x41);
        w.sNum(initial);
      }
      w.u8(0x0b);
    }
    for (const g of appended) w.bytes(g);
  });
}

function elementSection(content: Uint8Array | null, m: ParsedModule, firstAccessor: number): Uint8Array {
  const funcs = Array.from({ length: ACCESSOR_COUNT }, (_, i) => firstAccessor + i);
  if (m.start !== null) funcs.push(m.start);
  return appendTo(content, 1, (w) => {
    // Active, explicit table index, function indices: (hidden table) (i32.const 1) elemkind funcs;
    // slot 0 is the host's.
    w.u32(2);
    w.u32(hiddenTableIndex(m));
    w.bytes(Uint8Array.of(0x41, FIRST_ACCESSOR_SLOT, 0x0b, 0x00));
    w.u32(funcs.length);
    for (const f of funcs) w.u32(f);
  });
}
