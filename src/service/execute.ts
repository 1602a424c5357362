// The execution service: everything between a validated request and its response. Routes parse
// the body and call `execute`; this resolves limits, finds or prepares the module, checks the
// function and arguments, runs the guest and shapes the answer.

import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Config } from '../config.js';
import { ServiceError } from '../errors.js';
import { type Limits, memoryLimitBytes, memoryLimitPages, resolveLimits } from '../limits/index.js';
import { type FuncSig, type JsonValue, decodeArgs, formatSignature } from '../values/codec.js';
import type { WorkerPools } from '../worker/pool.js';
import type { Outcome, RunResult, TrapKind } from '../worker/protocol.js';
import { type Prepared, PreparedCache } from './prepared-cache.js';

export interface ExecuteRequest {
  module?: Uint8Array;
  moduleId?: string;
  function?: string;
  args: readonly unknown[];
  limits?: Partial<Limits>;
}

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
  telemetry: Telemetry;
  moduleId: string;
}

export function moduleIdOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

const MAX_LISTED = 20;

export class ExecuteService {
  readonly cache: PreparedCache;
  private readonly inflight = new Map<string, Promise<Prepared>>();

  constructor(
    private readonly config: Config,
    private readonly pools: WorkerPools,
  ) {
    this.cache = new PreparedCache(config.cacheBytes);
  }

  async execute(req: ExecuteRequest): Promise<ExecuteResponse> {
    const limits = resolveLimits(req.limits, this.config.limits);
    if (req.moduleId !== undefined) {
      // The module store arrives with its own issue; until then no id is known.
      throw new ServiceError('module_not_found', `no stored module has the id ${req.moduleId}; send the module itself in "module"`);
    }
    const bytes = req.module!;
    const moduleId = moduleIdOf(bytes);
    const t = performance.now();
    const { prepared, cached } = await this.prepare(moduleId, bytes);
    const prepareNs = Math.round((performance.now() - t) * 1e6);

    const [name, sig] = pickFunction(prepared, req.function);
    const decoded = decodeArgs(name, sig, req.args);
    if (!decoded.ok) throw new ServiceError('invalid_arguments', decoded.message);

    const run = await this.pools.runGuest(
      {
        module: prepared.module,
        hidden: prepared.hidden,
        memory: prepared.memory,
        functionName: name,
        sig,
        args: decoded.values,
        fuelLimit: limits.fuel,
        memoryLimitPages: memoryLimitPages(limits),
      },
      limits.timeoutMs,
    );
    return respond(run, limits, moduleId, prepareNs, cached);
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
        if (result.ok || !/preparation limit/.test(result.message)) this.cache.set(moduleId, value);
        return unwrap(value);
      });
      this.inflight.set(moduleId, pending);
      void pending.finally(() => this.inflight.delete(moduleId)).catch(() => {});
    }
    return { prepared: await pending, cached: false };
  }
}

function unwrap(v: Prepared | { ok: false; code: 'invalid_module' | 'unsupported_import' | 'module_too_complex'; message: string }): Prepared {
  if (!v.ok) throw new ServiceError(v.code, v.message);
  return v as Prepared;
}

function pickFunction(p: Prepared, requested: string | undefined): [string, FuncSig] {
  const name = requested ?? '_start';
  const sig = p.functions[name];
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

function respond(run: RunResult, limits: Limits, moduleId: string, prepareNs: number, cached: boolean): ExecuteResponse {
  const body: ExecuteResponse = { outcome: run.outcome } as ExecuteResponse;
  if (run.results) body.results = run.results;
  if (run.trap) body.trap = run.trap;
  if (run.message) body.message = run.message;
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
