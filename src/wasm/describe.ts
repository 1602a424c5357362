// Turns a parsed module into the description callers see: exports with signatures, imports,
// memory and tables.

import type { FuncSig } from '../values/codec.js';
import type { ExportDescription, ImportDescription, ModuleDescription } from '../worker/protocol.js';
import type { ExternKind, FuncType, ParsedModule } from './module.js';

const KIND_NAMES: Readonly<Record<ExternKind, ExportDescription['kind']>> = {
  func: 'function',
  table: 'table',
  memory: 'memory',
  global: 'global',
  tag: 'tag',
};

export function functionTypes(m: ParsedModule): FuncType[] {
  const indices = [...m.imports.filter((i) => i.kind === 'func').map((i) => i.typeIndex!), ...m.funcTypes];
  return indices.map((t) => m.types[t]!);
}

export function describeModule(m: ParsedModule): { description: ModuleDescription; functions: Record<string, FuncSig> } {
  const types = functionTypes(m);
  const functions: Record<string, FuncSig> = Object.create(null);
  // One signature object per function type, shared by every export of that type (and kept shared
  // by structured clone): a module with 100,000 exports of one type holds one, not 100,000.
  const sigs = new Map<FuncType, FuncSig>();
  const exports: ExportDescription[] = m.exports.map((e) => {
    const d: ExportDescription = { name: e.name, kind: KIND_NAMES[e.kind] };
    if (e.kind === 'func') {
      const t = types[e.index]!;
      let sig = sigs.get(t);
      if (!sig) sigs.set(t, (sig = { params: t.params, results: t.results }));
      d.params = sig.params;
      d.results = sig.results;
      functions[e.name] = sig;
    }
    return d;
  });
  const imports: ImportDescription[] = m.imports.map((i) => ({ module: i.module, name: i.name, kind: KIND_NAMES[i.kind] }));
  const mem = m.memories[0];
  return {
    description: {
      size: m.bytes.length,
      exports,
      imports,
      memory: mem ? { minPages: mem.min, maxPages: mem.max, shared: mem.shared } : null,
      tables: m.tables.map((t) => ({ elementType: t.elemType, min: t.limits.min, max: t.limits.max })),
      hasStart: m.start !== null,
    },
    functions,
  };
}
