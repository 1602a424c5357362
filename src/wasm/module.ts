// Parses the module-level structure of a WebAssembly binary: the sections, types, imports,
// exports, memories, tables and function bodies. Function bodies are left as byte ranges; the
// metering transform walks them. Input is expected to be a module V8 has already validated;
// encodings this service does not support (GC types, memory64, ...) raise UnsupportedFeature.

import { Reader, WasmFormatError } from './bytes.js';

export class UnsupportedFeature extends Error {
  override readonly name = 'UnsupportedFeature';
}

export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';
export type RefType = 'funcref' | 'externref';

export const VALTYPE_BYTES: Readonly<Record<number, ValType>> = {
  0x7f: 'i32',
  0x7e: 'i64',
  0x7d: 'f32',
  0x7c: 'f64',
  0x7b: 'v128',
  0x70: 'funcref',
  0x6f: 'externref',
};

export const SectionId = {
  custom: 0,
  type: 1,
  import: 2,
  function: 3,
  table: 4,
  memory: 5,
  global: 6,
  export: 7,
  start: 8,
  element: 9,
  code: 10,
  data: 11,
  dataCount: 12,
  tag: 13,
} as const;

export interface FuncType {
  params: ValType[];
  results: ValType[];
}

export interface Limits {
  min: number;
  max: number | null;
  shared: boolean;
}

export type ExternKind = 'func' | 'table' | 'memory' | 'global' | 'tag';
const EXTERN_KINDS: readonly ExternKind[] = ['func', 'table', 'memory', 'global', 'tag'];

export interface Import {
  module: string;
  name: string;
  kind: ExternKind;
  /** func and tag: the type index. */
  typeIndex?: number;
  /** The raw bytes of the import descriptor (after the kind byte), re-emitted verbatim. */
  desc: Uint8Array;
}

export interface Export {
  name: string;
  kind: ExternKind;
  index: number;
}

export interface Table {
  elemType: RefType;
  limits: Limits;
}

export interface Section {
  id: number;
  /** Offset of the section id byte. */
  start: number;
  /** Offsets of the section content. */
  contentStart: number;
  end: number;
}

export interface FunctionBody {
  /** Offsets of the body (locals + expression), excluding the size prefix. */
  start: number;
  end: number;
}

export interface Segment {
  length: number;
  passive: boolean;
}

export interface ParsedModule {
  bytes: Uint8Array;
  sections: Section[];
  types: FuncType[];
  imports: Import[];
  importedFuncs: number;
  importedTables: number;
  importedMemories: number;
  importedGlobals: number;
  /** Type index of each defined function. */
  funcTypes: number[];
  tables: Table[];
  /** Element type of every table in the table index space (imports first). */
  tableTypes: RefType[];
  /** Each data segment, in index order: its byte length and whether it is passive (active
   *  segments count as dropped once instantiation has copied them). */
  dataSegments: Segment[];
  /** Each element segment, in index order: its element count and whether it is passive (active
   *  and declarative segments count as dropped after instantiation). */
  elemSegments: Segment[];
  /** Whether the module has a data count section. */
  hasDataCount: boolean;
  memories: Limits[];
  definedGlobals: number;
  exports: Export[];
  start: number | null;
  bodies: FunctionBody[];
}

export function readValType(r: Reader): ValType {
  const b = r.u8();
  const t = VALTYPE_BYTES[b];
  if (t === undefined) {
    throw new UnsupportedFeature(
      `value type 0x${b.toString(16)} (typed function references / GC) is not supported by this service`,
    );
  }
  return t;
}

function readRefType(r: Reader): RefType {
  const t = readValType(r);
  if (t !== 'funcref' && t !== 'externref') throw new WasmFormatError(`expected a reference type, got ${t}`);
  return t;
}

export function readLimits(r: Reader, what: 'memory' | 'table'): Limits {
  const flags = r.u8();
  if (flags & 0x04) throw new UnsupportedFeature(`64-bit ${what}s (memory64) are not supported by this service`);
  if (flags > 0x03) throw new UnsupportedFeature(`${what} limits flags 0x${flags.toString(16)} are not supported`);
  const min = r.u32();
  const max = flags & 0x01 ? r.u32() : null;
  return { min, max, shared: (flags & 0x02) !== 0 };
}

/** Skips a constant expression (global initialisers, segment offsets), up to and including `end`. */
export function skipConstExpr(r: Reader): void {
  for (;;) {
    const op = r.u8();
    switch (op) {
      case 0x0b:
        return;
      case 0x41:
      case 0x42:
        r.skipLeb();
        break;
      case 0x43:
        r.skip(4);
        break;
      case 0x44:
        r.skip(8);
        break;
      case 0x23: // global.get
      case 0xd2: // ref.func
        r.u32();
        break;
      case 0xd0: // ref.null
        r.u8();
        break;
      case 0x6a: case 0x6b: case 0x6c: // extended-const i32 add/sub/mul
      case 0x7c: case 0x7d: case 0x7e: // extended-const i64 add/sub/mul
        break;
      case 0xfd: // v128.const
        if (r.u32() !== 0x0c) throw new UnsupportedFeature('unsupported SIMD instruction in a constant expression');
        r.skip(16);
        break;
      default:
        throw new UnsupportedFeature(`instruction 0x${op.toString(16)} in a constant expression is not supported`);
    }
  }
}

export function parseModule(bytes: Uint8Array): ParsedModule {
  const r = new Reader(bytes);
  if (bytes.length < 8) throw new WasmFormatError('not a WebAssembly module: shorter than its 8-byte header');
  const magic = r.bytesOf(4);
  if (magic[0] !== 0 || magic[1] !== 0x61 || magic[2] !== 0x73 || magic[3] !== 0x6d) {
    throw new WasmFormatError('missing the \\0asm magic number');
  }
  const version = r.bytesOf(4);
  if (version[0] !== 1 || version[1] !== 0 || version[2] !== 0 || version[3] !== 0) {
    throw new UnsupportedFeature('only version 1 WebAssembly modules are supported (not components)');
  }

  const m: ParsedModule = {
    bytes,
    sections: [],
    types: [],
    imports: [],
    importedFuncs: 0,
    importedTables: 0,
    importedMemories: 0,
    importedGlobals: 0,
    funcTypes: [],
    tables: [],
    tableTypes: [],
    dataSegments: [],
    elemSegments: [],
    hasDataCount: false,
    memories: [],
    definedGlobals: 0,
    exports: [],
    start: null,
    bodies: [],
  };

  while (!r.done) {
    const start = r.pos;
    const id = r.u8();
    const size = r.u32();
    const contentStart = r.pos;
    const end = contentStart + size;
    if (end > bytes.length) throw new WasmFormatError(`section ${id} runs past the end of the module`);
    m.sections.push({ id, start, contentStart, end });
    const s = new Reader(bytes, contentStart, end);
    switch (id) {
      case SectionId.type:
        parseTypes(s, m);
        break;
      case SectionId.import:
        parseImports(s, m);
        break;
      case SectionId.function: {
        const n = s.u32();
        for (let i = 0; i < n; i++) m.funcTypes.push(s.u32());
        break;
      }
      case SectionId.table: {
        const n = s.u32();
        for (let i = 0; i < n; i++) {
          if (bytes[s.pos] === 0x40) {
            throw new UnsupportedFeature('tables with initialiser expressions (typed function references) are not supported');
          }
          const elemType = readRefType(s);
          m.tableTypes.push(elemType);
          m.tables.push({ elemType, limits: readLimits(s, 'table') });
        }
        break;
      }
      case SectionId.memory: {
        const n = s.u32();
        for (let i = 0; i < n; i++) m.memories.push(readLimits(s, 'memory'));
        break;
      }
      case SectionId.global: {
        const n = s.u32();
        for (let i = 0; i < n; i++) {
          readValType(s);
          s.u8();
          skipConstExpr(s);
        }
        m.definedGlobals = n;
        break;
      }
      case SectionId.export: {
        const n = s.u32();
        for (let i = 0; i < n; i++) {
          const name = s.name();
          const kindByte = s.u8();
          const kind = EXTERN_KINDS[kindByte];
          if (kind === undefined) throw new UnsupportedFeature(`export kind 0x${kindByte.toString(16)} is not supported`);
          m.exports.push({ name, kind, index: s.u32() });
        }
        break;
      }
      case SectionId.start:
        m.start = s.u32();
        break;
      case SectionId.code: {
        const n = s.u32();
        for (let i = 0; i < n; i++) {
          const size = s.u32();
          m.bodies.push({ start: s.pos, end: s.pos + size });
          s.skip(size);
        }
        break;
      }
      case SectionId.data: {
        const n = s.u32();
        for (let i = 0; i < n; i++) {
          const flags = s.u32();
          if (flags > 2) throw new WasmFormatError(`data segment ${i} has unknown flags ${flags}`);
          if (flags === 2) s.u32(); // memory index
          if (flags !== 1) skipConstExpr(s);
          const len = s.u32();
          m.dataSegments.push({ length: len, passive: flags === 1 });
          s.skip(len);
        }
        break;
      }
      case SectionId.element:
        parseElements(s, m);
        break;
      case SectionId.dataCount:
        m.hasDataCount = true;
        break;
      case SectionId.custom:
      case SectionId.tag:
        break; // carried over verbatim
      default:
        throw new UnsupportedFeature(`section id ${id} is not supported`);
    }
    r.pos = end;
  }
  if (m.memories.length + m.importedMemories > 1) {
    throw new UnsupportedFeature('modules with more than one memory (multi-memory) are not supported');
  }
  return m;
}

function parseElements(s: Reader, m: ParsedModule): void {
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const flags = s.u32();
    if (flags > 7) throw new WasmFormatError(`element segment ${i} has unknown flags ${flags}`);
    const passive = (flags & 0b011) === 0b001;
    if ((flags & 0b001) === 0) {
      if (flags & 0b010) s.u32(); // table index
      skipConstExpr(s); // offset
    }
    // Element kind (0x00) or reference type, except in the two short forms (flags 0 and 4).
    if ((flags & 0b011) !== 0) s.u8();
    const count = s.u32();
    for (let j = 0; j < count; j++) {
      if (flags & 0b100) skipConstExpr(s);
      else s.u32();
    }
    m.elemSegments.push({ length: count, passive });
  }
}

function parseTypes(s: Reader, m: ParsedModule): void {
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const form = s.u8();
    if (form !== 0x60) {
      throw new UnsupportedFeature(`type form 0x${form.toString(16)} (GC types) is not supported by this service`);
    }
    const params: ValType[] = [];
    const np = s.u32();
    for (let j = 0; j < np; j++) params.push(readValType(s));
    const results: ValType[] = [];
    const nr = s.u32();
    for (let j = 0; j < nr; j++) results.push(readValType(s));
    m.types.push({ params, results });
  }
}

function parseImports(s: Reader, m: ParsedModule): void {
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const module = s.name();
    const name = s.name();
    const kindByte = s.u8();
    const kind = EXTERN_KINDS[kindByte];
    if (kind === undefined) throw new UnsupportedFeature(`import kind 0x${kindByte.toString(16)} is not supported`);
    const descStart = s.pos;
    let typeIndex: number | undefined;
    switch (kind) {
      case 'func':
        typeIndex = s.u32();
        m.importedFuncs++;
        break;
      case 'table':
        m.tableTypes.push(readRefType(s));
        readLimits(s, 'table');
        m.importedTables++;
        break;
      case 'memory':
        readLimits(s, 'memory');
        m.importedMemories++;
        break;
      case 'global':
        readValType(s);
        s.u8();
        m.importedGlobals++;
        break;
      case 'tag':
        s.u8();
        typeIndex = s.u32();
        break;
    }
    const imp: Import = { module, name, kind, desc: s.bytes.subarray(descStart, s.pos) };
    if (typeIndex !== undefined) imp.typeIndex = typeIndex;
    m.imports.push(imp);
  }
}

/** The signature of function `index` in the function index space (imports first). */
export function funcType(m: ParsedModule, index: number): FuncType {
  let typeIndex: number | undefined;
  if (index < m.importedFuncs) {
    typeIndex = m.imports.filter((i) => i.kind === 'func')[index]?.typeIndex;
  } else {
    typeIndex = m.funcTypes[index - m.importedFuncs];
  }
  const t = typeIndex === undefined ? undefined : m.types[typeIndex];
  if (t === undefined) throw new WasmFormatError(`function ${index} has no type`);
  return t;
}
