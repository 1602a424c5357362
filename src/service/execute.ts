// The execution service: everything between a validated request and its response. Routes parse
// the body and call `execute`; this resolves limits, finds or prepares the module, checks the
// function and arguments, runs the guest and shapes the answer.

import { performance } from 'node:perf_hooks';
import type { Config } from '../config.js';
import { ServiceError } from '../errors.js';
import { type Limits, memoryLimitBytes, memoryLimitPages, resolveLimits } from '../limits/index.js';
import { type FuncSig, type JsonValue, decodeArgs, formatSignature } from '../values/codec.js';
import type { WorkerPools } from '../worker/pool.js';
import type { Outcome, RunResult, TrapKind } from '../worker/protocol.js';
import { sharedOutputBuffer } from '../wasi/output.js';
import { moduleIdOf } from '../store/module-id.js';
import { CorruptModuleError, type ModuleStore, StoreFullError } from '../store/types.js';
import type { ModuleDescription } from '../worker/protocol.js';
import { type Prepared, PreparedCache } from './prepared-cache.js';

export interface ExecuteRequest {
  module?: Uint8Array;
  moduleId?: string;
  function?: string;
  args: readonly unknown[];
  limits?: Partial<Limits>;
  /** Run as a WASI preview1 command (function defaults to _start). */
  wasi?: WasiRequest;
}

export interface WasiRequest {
  /** argv, argv[0] included; empty means ["module.wasm"]. */
  args: string[];
  env: Record<string, string>;
  stdin?: Uint8Array;
  /** Where the runner mirrors output as it is written (src/wasi/output.ts sharedOutputBuffer,
   *  sized for the configured caps); the CLI reads it to stream a local run's output live. */
  outputBuffer?: SharedArrayBuffer;
}

/** argv[0] when a WASI request gives no args (C programs expect argc >= 1). */
export const DEFAULT_ARGV0 = 'module.wasm';

export interface Telemetry {
  fuelConsumed: number | null;
  fuelLimit: number;
  memoryPeakBytes: number | null;
  memoryLimitBytes: number;
  durationNs: number;
  instantiateNs: number;
  prepareNs: number;
  moduleCached: boolean;
}

export interface ExecuteResponse {
  outcome: Outcome;
  results?: JsonValue[];
  trap?: { kind: TrapKind; message: string };
  message?: string;
  /** WASI runs: the exit code (null when the program did not exit: trap, fuel, timeout). */
  exitCode?: number | null;
  stdout?: string;
  stderr?: string;
  stdoutTruncated?: boolean;
  stderrTruncated?: boolean;
  telemetry: Telemetry;
  moduleId: string;
}

export { moduleIdOf } from '../store/module-id.js';

const MAX_LISTED = 20;

export class ExecuteService {
  readonly cache: PreparedCache;
  private readonly inflight = new Map<string, Promise<Prepared>>();

  constructor(
    private readonly config: Config,
    private readonly pools: WorkerPools,
    readonly modules: ModuleStore,
  ) {
    this.cache = new PreparedCache(config.cacheBytes);
  }

  async execute(req: ExecuteRequest): Promise<ExecuteResponse> {
    const limits = resolveLimits(req.limits, this.config.limits);
    const t = performance.now();
    let moduleId: string;
    let found: { prepared: Prepared; cached: boolean };
    if (req.moduleId !== undefined) {
      moduleId = req.moduleId;
      found = await this.prepareStored(moduleId);
    } else {
      const bytes = req.module!;
      moduleId = moduleIdOf(bytes);
      found = await this.prepare(moduleId, bytes);
    }
    const { prepared, cached } = found;
    const prepareNs = Math.round((performance.now() - t) * 1e6);

    if (prepared.wasi && !req.wasi) {
      throw new ServiceError(
        'unsupported_import',
        'the module imports WASI preview1 functions ("wasi_snapshot_preview1"), which are provided only to WASI runs; ' +
          'add "wasi": {} (with args, env and stdin as needed) to run it as a WASI program',
      );
    }
    const [name, sig] = pickFunction(prepared, req.function);
    const decoded = decodeArgs(name, sig, req.args);
    if (!decoded.ok) throw new ServiceError('invalid_arguments', decoded.message);

    const run = await this.pools.runGuest(
      {
        module: prepared.module,
        layout: prepared.layout,
        functionName: name,
        sig,
        args: decoded.values,
        fuelLimit: limits.fuel,
        memoryLimitPages: memoryLimitPages(limits),
        timeoutMs: limits.timeoutMs,
        ...(req.wasi && {
          wasi: {
            args: req.wasi.args.length > 0 ? req.wasi.args : [DEFAULT_ARGV0],
            env: req.wasi.env,
            stdin: req.wasi.stdin ?? new Uint8Array(0),
            stdoutLimitBytes: this.config.wasiStdoutMaxBytes,
            stderrLimitBytes: this.config.wasiStderrMaxBytes,
            output: req.wasi.outputBuffer ?? sharedOutputBuffer(this.config.wasiStdoutMaxBytes, this.config.wasiStderrMaxBytes),
          },
        }),
      },
      limits.timeoutMs,
    );
    return respond(run, limits, moduleId, prepareNs, cached, req.wasi !== undefined);
  }

  /** A stored module, prepared: from the cache when it is there (a run by id then pays only
   *  instantiation), otherwise read from the store, verified and prepared. */
  private async prepareStored(moduleId: string): Promise<{ prepared: Prepared; cached: boolean }> {
    if (!(await this.modules.has(moduleId))) throw notStored(moduleId);
    const hit = this.cache.get(moduleId);
    if (hit) return { prepared: unwrap(hit), cached: true };
    let bytes: Uint8Array | null;
    try {
      bytes = await this.modules.getBytes(moduleId);
    } catch (err) {
      if (err instanceof CorruptModuleError) throw corrupt(err);
      throw err;
    }
    if (!bytes) throw notStored(moduleId);
    return this.prepare(moduleId, bytes);
  }

  /** POST /modules: validates and prepares the module (so what is stored is runnable, and the
   *  first run by id finds it compiled), then stores it. */
  async store(bytes: Uint8Array): Promise<{ created: boolean; body: StoredModuleBody }> {
    if (bytes.length > this.config.moduleMaxBytes) {
      throw new ServiceError(
        'payload_too_large',
        `the module is ${bytes.length} bytes; this server stores modules of at most ${this.config.moduleMaxBytes} bytes`,
      );
    }
    const moduleId = moduleIdOf(bytes);
    const { prepared } = await this.prepare(moduleId, bytes);
    try {
      const { created, record } = await this.modules.put(moduleId, bytes, prepared.description);
      return { created, body: storedBody(moduleId, record.description, record.storedAt) };
    } catch (err) {
      if (err instanceof StoreFullError) throw new ServiceError('store_full', err.message);
      throw err;
    }
  }

  async describeStored(moduleId: string): Promise<StoredModuleBody> {
    try {
      const record = await this.modules.getDescription(moduleId);
      if (!record) throw notStored(moduleId);
      return storedBody(moduleId, record.description, record.storedAt);
    } catch (err) {
      if (err instanceof CorruptModuleError) throw corrupt(err);
      throw err;
    }
  }

  async deleteStored(moduleId: string): Promise<void> {
    const removed = await this.modules.delete(moduleId);
    this.cache.delete(moduleId);
    if (!removed) throw notStored(moduleId);
  }

  /** The prepared module for these bytes: from the cache, from a preparation already under way, or
   *  prepared now. Refusals are cached too, so a bad module is refused at the same cost as a hit. */
  async prepare(moduleId: string, bytes: Uint8Array): Promise<{ prepared: Prepared; cached: boolean }> {
    const hit = this.cache.get(moduleId);
    if (hit) return { prepared: unwrap(hit), cached: true };
    let pending = this.inflight.get(moduleId);
    if (!pending) {
      pending = this.pools.prepareModule(bytes).then((result) => {
        const value = result.ok ? { ...result, moduleId } : result;
        // A deadline miss may be load, not the module: let the next request try again.
        if (result.ok || !result.transient) this.cache.set(moduleId, value);
        return unwrap(value);
      });
      this.inflight.set(moduleId, pending);
      void pending.finally(() => this.inflight.delete(moduleId)).catch(() => {});
    }
    return { prepared: await pending, cached: false };
  }
}

/** What POST /modules and GET /modules/{id} answer. */
export interface StoredModuleBody {
  moduleId: string;
  size: number;
  /** The exported functions with their signatures. */
  exports: { name: string; params: string[]; results: string[] }[];
  /** Exports that are not functions (memories, tables, globals, tags). */
  otherExports: { name: string; kind: string }[];
  imports: ModuleDescription['imports'];
  memory: ModuleDescription['memory'];
  tables: ModuleDescription['tables'];
  hasStart: boolean;
  storedAt: string;
}

function storedBody(moduleId: string, d: ModuleDescription, storedAt: string): StoredModuleBody {
  return {
    moduleId,
    size: d.size,
    exports: d.exports.filter((e) => e.kind === 'function').map((e) => ({ name: e.name, params: e.params ?? [], results: e.results ?? [] })),
    otherExports: d.exports.filter((e) => e.kind !== 'function').map((e) => ({ name: e.name, kind: e.kind })),
    imports: d.imports,
    memory: d.memory,
    tables: d.tables,
    hasStart: d.hasStart,
    storedAt,
  };
}

function notStored(moduleId: string): ServiceError {
  return new ServiceError('module_not_found', `no stored module has the id ${moduleId}; upload it with POST /modules, or send the module itself`);
}

function corrupt(err: CorruptModuleError): ServiceError {
  return new ServiceError(
    'module_not_found',
    `${err.message}; it was quarantined and will not run. Upload the module again with POST /modules`,
  );
}

function unwrap(v: Prepared | { ok: false; code: 'invalid_module' | 'unsupported_import' | 'module_too_complex'; message: string }): Prepared {
  if (!v.ok) throw new ServiceError(v.code, v.message);
  return v as Prepared;
}

function pickFunction(p: Prepared, requested: string | undefined): [string, FuncSig] {
  const name = requested ?? '_start';
  // Own properties only: "toString" or "__proto__" must be function_not_found, not a prototype's.
  const sig = Object.hasOwn(p.functions, name) ? p.functions[name] : undefined;
  if (sig) return [name, sig];
  const listed = Object.entries(p.functions)
    .slice(0, MAX_LISTED)
    .map(([n, s]) => formatSignature(n, s));
  const count = Object.keys(p.functions).length;
  const available =
    count === 0
      ? 'the module exports no functions'
      : `exported functions: ${listed.join(', ')}${count > MAX_LISTED ? ` (and ${count - MAX_LISTED} more)` : ''}`;
  const what = requested === undefined ? 'no "function" was given and the module does not export _start' : `the module exports no function named ${JSON.stringify(requested)}`;
  throw new ServiceError('function_not_found', `${what}; ${available}`);
}

function respond(run: RunResult, limits: Limits, moduleId: string, prepareNs: number, cached: boolean, wasi: boolean): ExecuteResponse {
  const body: ExecuteResponse = { outcome: run.outcome } as ExecuteResponse;
  if (run.results) body.results = run.results;
  if (run.trap) body.trap = run.trap;
  if (run.message) body.message = run.message;
  if (wasi) {
    body.exitCode = run.wasi?.exitCode ?? null;
    body.stdout = run.wasi?.stdout ?? '';
    body.stderr = run.wasi?.stderr ?? '';
    body.stdoutTruncated = run.wasi?.stdoutTruncated ?? false;
    body.stderrTruncated = run.wasi?.stderrTruncated ?? false;
  }
  Object.assign(body, {
    telemetry: {
      fuelConsumed: run.fuelConsumed,
      fuelLimit: limits.fuel,
      memoryPeakBytes: run.memoryPeakBytes,
      memoryLimitBytes: memoryLimitBytes(limits),
      durationNs: run.durationNs,
      instantiateNs: run.instantiateNs,
      prepareNs,
      moduleCached: cached,
    },
    moduleId,
  });
  return body;
}
