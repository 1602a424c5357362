// The piscina pools' entry files (prepare-thread.cts, decode-thread.cts: piscina's
// `filename`, src/worker/pool.ts) are CommonJS, so piscina's `require()` of them never goes
// through Node's require(esm). That path (Node 22.12+, 24) builds a synchronous facade over the
// ES module, and a worker terminated while building it (a deadline kill, a pool closing) aborted
// the whole process on Node 24 (`Assertion failed: facade->InstantiateModule(...)` in
// ModuleWrap::CreateRequiredModuleFacade). An entry loads its ES module with import(), the
// asynchronous loader every ESM worker uses, and exports each handler as a promise of it: piscina
// awaits the export it selects (`await handler[name]`) once and caches the function, so there is
// no cost per task.

/** The export `name` of the module being loaded, as a promise piscina awaits. A load failure
 *  reaches piscina through the export it selected; the others must not also surface as
 *  unhandled rejections. */
export function handler<M, K extends keyof M>(loaded: Promise<M>, name: K): Promise<M[K]> {
  const p = loaded.then((m) => m[name]);
  p.catch(() => {});
  return p;
}
