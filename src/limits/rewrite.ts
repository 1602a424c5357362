// The limiter: the module-level rewrite that puts a guest's resources in the host's hands, as
// wasmtime's ResourceLimiter keeps them apart from its fuel counting. It changes no function body
// (the fuel pass in src/metering/instrument.ts walks those and renumbers their globals with
// `mapGlobal`); everything here is semantics-preserving:
// - The module's own memory becomes an import ("wasmbox" "memory") with the same limits, so the
//   host creates it with `maximum` lowered to the request's limit: one compiled module serves
//   every memory limit, and V8 itself refuses growth past the cap (memory.grow returns -1).
// - The module's own tables become imports ("wasmbox" "table<i>") with their maximum lowered to
//   the server's element cap; a table that starts above the cap is refused (TableLimitError).
//   The host holds the tables, so it can tell a null entry from a signature mismatch after a
//   failed call_indirect (V8 reports both with one message).
// - The hidden globals (guest-imports.ts) are imported, so the host reads and writes them
//   without exports; every global the module defines moves up by their count (in constant
//   expressions, global exports and the name section here, in code in the fuel pass).
// - The start section is removed and the start function placed in a one-element imported table
//   ("wasmbox" "start"); the host calls it right after instantiation, once the fuel budget is set.
// The module's exports are left exactly as they were: the service adds none.

import { Reader, Writer, WasmFormatError, u32Size } from '../wasm/bytes.js';
import { type Limits, type ParsedModule, SectionId, UnsupportedFeature, skipConstExpr } from '../wasm/module.js';
import {
  type GuestLayout,
  HIDDEN_GLOBALS,
  HIDDEN_GLOBAL_NAMES,
  type HiddenGlobalName,
  HOST_MODULE,
  MEMORY_IMPORT,
  START_TABLE_IMPORT,
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
  /** Index a global of the original module has in the rewritten one. */
  mapGlobal: (index: number) => number;
  /** Index of the first global appended after the module's own defined ones (see `assemble`). */
  firstAppendedGlobal: number;
  /** Index of the start function's table, when there is one. */
  startTable: number | null;
}

/** What the fuel pass contributes to the module: its code section and defined globals. */
export interface Contributions {
  code: Uint8Array | null;
  /** Encoded global entries (type, mutability, constant expression), appended in this order from
   *  `firstAppendedGlobal` on. */
  globals: Uint8Array[];
}

const VALTYPE_BYTE = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c } as const;

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
  const base = m.importedGlobals;
  const shift = HIDDEN_GLOBAL_NAMES.length;
  const hidden = Object.fromEntries(HIDDEN_GLOBAL_NAMES.map((name, i) => [name, base + i])) as Record<HiddenGlobalName, number>;
  const tableCount = m.importedTables + m.tables.length;
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
    mapGlobal: (index) => (index < base ? index : index + shift),
    firstAppendedGlobal: base + shift + m.definedGlobals,
    startTable: m.start !== null ? tableCount : null,
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
  const seen = new Set<number>();
  const insert = (s: OutSection): void => {
    // Before the first non-custom section that must come after it.
    const rank = SECTION_RANK[s.id]!;
    const at = out.findIndex((o) => o.id !== SectionId.custom && SECTION_RANK[o.id]! > rank);
    if (at < 0) out.push(s);
    else out.splice(at, 0, s);
  };

  for (const s of m.sections) {
    const content = bytes.subarray(s.contentStart, s.end);
    seen.add(s.id);
    switch (s.id) {
      case SectionId.import:
        out.push({ id: s.id, content: importSection(content, plan) });
        break;
      case SectionId.table:
      case SectionId.memory:
      case SectionId.start:
        break; // tables and memory are imports now; the start function is in its table
      case SectionId.global:
        out.push({ id: s.id, content: globalSection(content, plan, extra.globals) });
        break;
      case SectionId.export:
        out.push({ id: s.id, content: exportSection(content, plan) });
        break;
      case SectionId.element:
        out.push({ id: s.id, content: elementSection(content, m, plan) });
        break;
      case SectionId.data:
        out.push({ id: s.id, content: dataSection(content, plan) });
        break;
      case SectionId.code:
        out.push({ id: s.id, content: extra.code ?? content });
        break;
      case SectionId.custom:
        out.push({ id: s.id, content: customSection(content, plan) });
        break;
      default:
        out.push({ id: s.id, content });
    }
  }
  if (!seen.has(SectionId.import)) insert({ id: SectionId.import, content: importSection(null, plan) });
  if (!seen.has(SectionId.global) && extra.globals.length > 0) {
    insert({ id: SectionId.global, content: globalSection(null, plan, extra.globals) });
  }
  if (!seen.has(SectionId.element) && plan.startTable !== null) {
    insert({ id: SectionId.element, content: elementSection(null, m, plan) });
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

function writeLimits(w: Writer, l: Limits): void {
  w.u8((l.max !== null ? 0x01 : 0) | (l.shared ? 0x02 : 0));
  w.u32(l.min);
  if (l.max !== null) w.u32(l.max);
}

function importSection(content: Uint8Array | null, plan: LimitPlan): Uint8Array {
  const { layout } = plan;
  const r = content ? new Reader(content) : null;
  const count = r ? r.u32() : 0;
  const w = new Writer((content?.length ?? 0) + 64 + 24 * layout.tables.length);
  const added = (layout.memory ? 1 : 0) + layout.tables.length + HIDDEN_GLOBAL_NAMES.length + (layout.start ? 1 : 0);
  w.u32(count + added);
  // Appended after the module's own imports, so its imported tables and globals keep their indices.
  if (r) w.bytes(content!.subarray(r.pos));
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
  for (const name of HIDDEN_GLOBAL_NAMES) {
    head(name, 0x03);
    w.u8(VALTYPE_BYTE[HIDDEN_GLOBALS[name].value]);
    w.u8(0x01); // mutable
  }
  if (layout.start) {
    head(START_TABLE_IMPORT, 0x01);
    w.u8(0x70);
    writeLimits(w, { min: 1, max: 1, shared: false });
  }
  return w.finish();
}

/** Copies a constant expression, renumbering the globals it reads. */
function copyConstExpr(r: Reader, w: Writer, mapGlobal: (i: number) => number): void {
  const start = r.pos;
  skipConstExpr(r);
  const end = r.pos;
  // Short expressions are the rule (i32.const, global.get); walk them again only when one reads
  // a global.
  const x = new Reader(r.bytes, start, end);
  let from = start;
  while (x.pos < end) {
    const at = x.pos;
    const op = x.u8();
    if (op === 0x23) {
      const index = x.u32();
      w.bytes(r.bytes.subarray(from, at));
      w.u8(0x23);
      w.u32(mapGlobal(index));
      from = x.pos;
      continue;
    }
    // The same immediates skipConstExpr knows, for one instruction.
    switch (op) {
      case 0x41: case 0x42: x.skipLeb(); break;
      case 0x43: x.skip(4); break;
      case 0x44: x.skip(8); break;
      case 0xd2: x.u32(); break;
      case 0xd0: x.u8(); break;
      case 0xfd: x.u32(); x.skip(16); break;
      default: break; // end and the extended-const arithmetic have no immediates
    }
  }
  w.bytes(r.bytes.subarray(from, end));
}

function globalSection(content: Uint8Array | null, plan: LimitPlan, appended: Uint8Array[]): Uint8Array {
  const r = content ? new Reader(content) : null;
  const count = r ? r.u32() : 0;
  const w = new Writer((content?.length ?? 0) + 16 + appended.reduce((n, g) => n + g.length, 0));
  w.u32(count + appended.length);
  for (let i = 0; i < count; i++) {
    w.u8(r!.u8()); // value type
    w.u8(r!.u8()); // mutability
    copyConstExpr(r!, w, plan.mapGlobal);
  }
  for (const g of appended) w.bytes(g);
  return w.finish();
}

function exportSection(content: Uint8Array, plan: LimitPlan): Uint8Array {
  const r = new Reader(content);
  const count = r.u32();
  const w = new Writer(content.length + 16);
  w.u32(count);
  for (let i = 0; i < count; i++) {
    const nameStart = r.pos;
    r.skip(r.u32());
    const kind = r.u8();
    w.bytes(content.subarray(nameStart, r.pos));
    const index = r.u32();
    w.u32(kind === 0x03 ? plan.mapGlobal(index) : index);
  }
  return w.finish();
}

function elementSection(content: Uint8Array | null, m: ParsedModule, plan: LimitPlan): Uint8Array {
  const r = content ? new Reader(content) : null;
  const count = r ? r.u32() : 0;
  const w = new Writer((content?.length ?? 0) + 16);
  w.u32(count + (plan.startTable !== null ? 1 : 0));
  for (let i = 0; i < count; i++) {
    const s = r!;
    const flags = s.u32();
    if (flags > 7) throw new WasmFormatError(`element segment ${i} has unknown flags ${flags}`);
    w.u32(flags);
    if ((flags & 0b001) === 0) {
      if (flags & 0b010) w.u32(s.u32()); // table index
      copyConstExpr(s, w, plan.mapGlobal); // offset
    }
    if ((flags & 0b011) !== 0) w.u8(s.u8()); // element kind or reference type
    const n = s.u32();
    w.u32(n);
    for (let j = 0; j < n; j++) {
      if (flags & 0b100) copyConstExpr(s, w, plan.mapGlobal);
      else w.u32(s.u32());
    }
  }
  if (plan.startTable !== null) {
    // Active, explicit table index, function indices: (start table) (i32.const 0) elemkind func.
    w.u32(2);
    w.u32(plan.startTable);
    w.bytes(Uint8Array.of(0x41, 0x00, 0x0b, 0x00));
    w.u32(1);
    w.u32(m.start!);
  }
  return w.finish();
}

function dataSection(content: Uint8Array, plan: LimitPlan): Uint8Array {
  const r = new Reader(content);
  const count = r.u32();
  const w = new Writer(content.length + 16);
  w.u32(count);
  for (let i = 0; i < count; i++) {
    const flags = r.u32();
    if (flags > 2) throw new WasmFormatError(`data segment ${i} has unknown flags ${flags}`);
    w.u32(flags);
    if (flags === 2) w.u32(r.u32()); // memory index
    if (flags !== 1) copyConstExpr(r, w, plan.mapGlobal);
    const start = r.pos;
    r.skip(r.u32());
    w.bytes(content.subarray(start, r.pos));
  }
  return w.finish();
}

/** The name section's global names follow the renumbering; other custom sections are copied. */
function customSection(content: Uint8Array, plan: LimitPlan): Uint8Array {
  const r = new Reader(content);
  let name: string;
  try {
    name = r.name();
  } catch {
    return content; // custom sections are not validated: a malformed one is carried over as it is
  }
  if (name !== 'name') return content;
  try {
    const w = new Writer(content.length + 16);
    w.bytes(content.subarray(0, r.pos));
    while (!r.done) {
      const id = r.u8();
      const size = r.u32();
      const sub = r.bytesOf(size);
      if (id !== 7) {
        w.u8(id);
        w.u32(size);
        w.bytes(sub);
        continue;
      }
      const s = new Reader(sub);
      const n = s.u32();
      const names = new Writer(size + 16);
      names.u32(n);
      for (let i = 0; i < n; i++) {
        names.u32(plan.mapGlobal(s.u32()));
        const at = s.pos;
        s.skip(s.u32());
        names.bytes(sub.subarray(at, s.pos));
      }
      w.u8(id);
      w.u32(names.length);
      w.bytes(names.view());
    }
    return w.finish();
  } catch {
    // A malformed name section is only debugging information: dropping its subsections would be
    // as good, but an empty "name" section is still well-formed.
    const w = new Writer(8);
    w.name('name');
    return w.finish();
  }
}
