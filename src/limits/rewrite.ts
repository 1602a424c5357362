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
// The module's exports are left exactly as they were: the service adds none, so a module may
// have V8's maximum of 100,000.

import { Reader, Writer, u32Size } from '../wasm/bytes.js';
import { type Limits, type ParsedModule, SectionId, UnsupportedFeature } from '../wasm/module.js';
import {
  type GuestLayout,
  HIDDEN_GLOBALS,
  HIDDEN_GLOBAL_NAMES,
  HIDDEN_TABLE_IMPORT,
  type HiddenGlobalName,
  HOST_MODULE,
  MEMORY_IMPORT,
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
}

/** What the fuel pass contributes to the module: its code section and defined globals. */
export interface Contributions {
  code: Uint8Array | null;
  /** Encoded global entries (type, mutability, constant expression), appended in this order from
   *  `firstAppendedGlobal` on. */
  globals: Uint8Array[];
}

const VALTYPE_BYTE = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c } as const;
type HiddenType = (typeof HIDDEN_GLOBALS)[HiddenGlobalName]['value'];
/** The accessors' types, appended to the type section: a getter () -> t and a setter (t) -> (). */
const ACCESSOR_TYPES: readonly HiddenType[] = ['i64', 'i32', 'f64'];

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
    [SectionId.type]: typeSection(section(SectionId.type)),
    [SectionId.import]: importSection(section(SectionId.import), plan),
    [SectionId.function]: functionSection(section(SectionId.function), m.types.length),
    [SectionId.global]: globalSection(section(SectionId.global), extra.globals),
    [SectionId.element]: elementSection(section(SectionId.element), m, firstAccessor),
    [SectionId.code]: codeSection(extra.code ?? section(SectionId.code), plan),
  };
  for (const s of m.sections) {
    if (s.id === SectionId.table || s.id === SectionId.memory || s.id === SectionId.start) continue; // now the host's
    out.push({ id: s.id, content: rewritten[s.id] ?? bytes.subarray(s.contentStart, s.end) });
  }
  for (const [id, content] of Object.entries(rewritten)) {
    if (!present.has(Number(id))) insert({ id: Number(id), content: content! });
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

/** A vector section's content with `count` entries appended (written by `more`). */
function appendTo(content: Uint8Array | null, count: number, more: (w: Writer) => void, extraBytes = 64): Uint8Array {
  const r = content ? new Reader(content) : null;
  const n = r ? r.u32() : 0;
  const w = new Writer((content?.length ?? 0) + extraBytes);
  w.u32(n + count);
  if (r) w.bytes(content!.subarray(r.pos));
  more(w);
  return w.finish();
}

function typeSection(content: Uint8Array | null): Uint8Array {
  return appendTo(content, 2 * ACCESSOR_TYPES.length, (w) => {
    for (const t of ACCESSOR_TYPES) {
      w.bytes(Uint8Array.of(0x60, 0x00, 0x01, VALTYPE_BYTE[t])); // () -> t
      w.bytes(Uint8Array.of(0x60, 0x01, VALTYPE_BYTE[t], 0x00)); // (t) -> ()
    }
  });
}

/** The type index of each accessor, in hidden-table slot order (getter, setter per global). */
function accessorTypes(firstType: number): number[] {
  return HIDDEN_GLOBAL_NAMES.flatMap((name) => {
    const t = firstType + 2 * ACCESSOR_TYPES.indexOf(HIDDEN_GLOBALS[name].value);
    return [t, t + 1];
  });
}

function functionSection(content: Uint8Array | null, firstType: number): Uint8Array {
  const types = accessorTypes(firstType);
  return appendTo(content, types.length, (w) => {
    for (const t of types) w.u32(t);
  });
}

function codeSection(content: Uint8Array | null, plan: LimitPlan): Uint8Array {
  return appendTo(content, 2 * HIDDEN_GLOBAL_NAMES.length, (w) => {
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
  });
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
  const hiddenTable = m.importedTables + m.tables.length;
  const funcs = Array.from({ length: 2 * HIDDEN_GLOBAL_NAMES.length }, (_, i) => firstAccessor + i);
  if (m.start !== null) funcs.push(m.start);
  return appendTo(content, 1, (w) => {
    // Active, explicit table index, function indices: (hidden table) (i32.const 0) elemkind funcs.
    w.u32(2);
    w.u32(hiddenTable);
    w.bytes(Uint8Array.of(0x41, 0x00, 0x0b, 0x00));
    w.u32(funcs.length);
    for (const f of funcs) w.u32(f);
  });
}
