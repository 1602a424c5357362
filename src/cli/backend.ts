// Where a run or an inspection happens: in this process (the service's own ExecuteService, worker
// pools and request schema, with an in-memory module store, so nothing is written to disk), or on
// a wasmbox server over HTTP. Both answer with the status and body the server would send, so
// --json prints the same thing either way.

import { randomUUID } from 'node:crypto';
import { type Config, loadConfig } from '../config.js';
import { ServiceError, errorBody } from '../errors.js';
import { ExecuteJsonSchema, ModuleJsonSchema, describeIssues } from '../schemas/execute.js';
import { ExecuteService } from '../service/execute.js';
import { toExecuteRequest } from '../routes/body.js';
import { MemoryModuleStore } from '../store/memory-store.js';
import { PROGRESS_FUEL, PROGRESS_MEMORY, progressBuffer } from '../wasi/fuel.js';
import { sharedOutputBuffer, sharedSlots } from '../wasi/output.js';
import { WorkerPools } from '../worker/pool.js';
import type { RemoteOptions } from './args.js';
import { EXIT } from './exit-codes.js';

/** The run fields of POST /execute's JSON body (everything but the module). */
export interface RunRequest {
  function?: string;
  args: (string | number)[];
  limits?: { fuel?: number; memoryMb?: number; timeoutMs?: number };
  wasi?: { args: string[]; env: Record<string, string>; stdin?: string; stdinBase64?: string };
}

/** What the service answered: HTTP status, the parsed body, and its JSON text. */
export interface Answer {
  status: number;
  body: any;
  text: string;
  /** The WASI program's stdout/stderr were already written live (local runs); do not print them again. */
  streamed?: boolean;
}

/** Told the run's account while it is in flight (local runs), about every PROGRESS_INTERVAL_MS. */
export type ProgressSink = (p: { fuelConsumed: number; memoryBytes: number; elapsedMs: number }) => void;
export const PROGRESS_INTERVAL_MS = 200;

/** Receives a WASI program's output while it runs: raw bytes, in order. */
export interface OutputSink {
  stdout(bytes: Uint8Array): void;
  stderr(bytes: Uint8Array): void;
}

export interface Backend {
  /** POST /execute with the module and the run fields. With `live`, a WASI program's output is
   *  streamed to it as the program writes (local runs; a remote run answers once, at the end). */
  execute(module: Uint8Array, request: RunRequest, live?: OutputSink, progress?: ProgressSink): Promise<Answer>;
  /** POST /modules: the module's description (validated and prepared as for a run). */
  describe(module: Uint8Array): Promise<Answer>;
  close(): Promise<void>;
}

/** A failure of the tool itself (not an answer of the service), with its exit code. */
export class CliFailure extends Error {
  override readonly name = 'CliFailure';
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

// Variables the local runner ignores: it listens nowhere, logs nothing and shares nothing with
// replicas, and a bad PORT or REDIS_URL meant for the server must not stop a local run.
const IGNORED = new Set(['PORT', 'HOST', 'LOG_LEVEL', 'WASMBOX_DATA_DIR', 'REDIS_URL', 'WASMBOX_REDIS_PREFIX', 'WASMBOX_CONCURRENCY_LEASE_MS']);

/** The server's configuration from the environment, for one run: one thread of each kind. */
export function localConfig(env: NodeJS.ProcessEnv): Config {
  const picked: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!IGNORED.has(k)) picked[k] = v;
  return loadConfig({ ...picked, WASMBOX_WORKERS: '1', WASMBOX_PREPARE_WORKERS: '1' });
}

export class LocalBackend implements Backend {
  private readonly pools: WorkerPools;
  private readonly store = new MemoryModuleStore();
  private readonly service: ExecuteService;

  constructor(private readonly config: Config) {
    this.pools = new WorkerPools(config);
    this.service = new ExecuteService(config, this.pools, this.store);
  }

  async execute(module: Uint8Array, request: RunRequest, live?: OutputSink, progress?: ProgressSink): Promise<Answer> {
    const outputBuffer = live && request.wasi ? sharedOutputBuffer(this.config.wasiStdoutMaxBytes, this.config.wasiStderrMaxBytes) : undefined;
    const stream = outputBuffer && live ? new OutputPump(outputBuffer, this.config, live) : null;
    const cell = progress ? progressBuffer() : undefined;
    let ticker: NodeJS.Timeout | undefined;
    const answer = await this.answer(async () => {
      // The body the server would receive, read the way routes/body.ts reads it: the same body
      // limit, the same schema, the same messages.
      const parsed = ExecuteJsonSchema.safeParse(this.jsonBody({ module: base64(module), ...request }));
      if (!parsed.success) throw new ServiceError('invalid_request', describeIssues(parsed.error));
      const { module: _encoded, moduleId: _id, ...fields } = parsed.data;
      // As routes/execute.ts hands the fields to the service.
      const run = toExecuteRequest({ module, fields }, outputBuffer);
      if (cell && progress) {
        run.progress = cell;
        const view = new BigInt64Array(cell);
        const t0 = performance.now();
        ticker = setInterval(() => {
          progress({
            fuelConsumed: Number(Atomics.load(view, PROGRESS_FUEL)),
            memoryBytes: Number(Atomics.load(view, PROGRESS_MEMORY)),
            elapsedMs: performance.now() - t0,
          });
        }, PROGRESS_INTERVAL_MS);
      }
      stream?.start();
      try {
        return { status: 200, body: await this.service.execute(run) };
      } finally {
        clearInterval(ticker);
        stream?.stop();
      }
    });
    if (stream?.started) answer.streamed = true;
    return answer;
  }

  async describe(module: Uint8Array): Promise<Answer> {
    return this.answer(async () => {
      const parsed = ModuleJsonSchema.safeParse(this.jsonBody({ module: base64(module) }));
      if (!parsed.success) throw new ServiceError('invalid_request', describeIssues(parsed.error));
      const { created, body } = await this.service.store(module);
      return { status: created ? 201 : 200, body };
    });
  }

  async close(): Promise<void> {
    await this.pools.close();
    await this.store.close();
  }

  /** The body as the server would receive it, refused as the server refuses one over its limit. */
  private jsonBody(body: Record<string, unknown>): unknown {
    const text = JSON.stringify(body);
    if (Buffer.byteLength(text) > this.config.bodyLimitBytes) {
      throw new ServiceError('payload_too_large', `the body is larger than this server's limit of ${this.config.bodyLimitBytes} bytes`);
    }
    return JSON.parse(text);
  }

  private async answer(work: () => Promise<{ status: number; body: unknown }>): Promise<Answer> {
    try {
      const { status, body } = await work();
      return { status, body, text: JSON.stringify(body) };
    } catch (err) {
      if (!(err instanceof ServiceError)) throw err;
      // Request ids are random UUIDs, as the server's are; locally they name no log line.
      const body = errorBody(err.code, err.message, randomUUID());
      return { status: err.status, body, text: JSON.stringify(body) };
    }
  }
}

/** Copies what a running program writes to its shared output buffer to a sink, every few ms. */
class OutputPump {
  private timer: NodeJS.Timeout | null = null;
  private readonly slots: ReturnType<typeof sharedSlots>;
  private readonly sent = [0, 0];
  started = false;

  constructor(
    buffer: SharedArrayBuffer,
    config: Config,
    private readonly sink: OutputSink,
  ) {
    this.slots = sharedSlots(buffer, config.wasiStdoutMaxBytes, config.wasiStderrMaxBytes);
  }

  start(): void {
    this.started = true;
    this.timer = setInterval(() => this.pump(), 15);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.pump();
  }

  private pump(): void {
    this.slots.forEach((slot, i) => {
      const len = Math.min(Atomics.load(slot.header, slot.lengthIndex), slot.bytes.length);
      if (len <= this.sent[i]!) return;
      const chunk = slot.bytes.slice(this.sent[i], len); // a private copy of the shared bytes
      this.sent[i] = len;
      if (i === 0) this.sink.stdout(chunk);
      else this.sink.stderr(chunk);
    });
  }
}

export class RemoteBackend implements Backend {
  constructor(private readonly remote: RemoteOptions) {}

  execute(module: Uint8Array, request: RunRequest): Promise<Answer> {
    return this.post('/execute', { module: base64(module), ...request });
  }

  describe(module: Uint8Array): Promise<Answer> {
    return this.post('/modules', { module: base64(module) });
  }

  async close(): Promise<void> {}

  private async post(path: string, body: unknown): Promise<Answer> {
    const url = this.remote.url + path;
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    if (this.remote.apiKey !== undefined) {
      headers.authorization = `Bearer ${this.remote.apiKey}`;
      headers['x-api-key'] = this.remote.apiKey;
    }
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) });
      text = await res.text();
    } catch (err) {
      throw new CliFailure(`cannot reach the service at ${this.remote.url}: ${networkReason(err)}`, EXIT.unavailable);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const isBody = typeof parsed === 'object' && parsed !== null;
    const isError = isBody && typeof (parsed as { error?: { code?: unknown } }).error?.code === 'string';
    if ((res.ok && isBody && !isError) || (!res.ok && isError)) return { status: res.status, body: parsed, text };
    const snippet = text.replace(/\s+/g, ' ').trim().slice(0, 200);
    const gateway = res.status === 502 || res.status === 503 || res.status === 504;
    throw new CliFailure(
      `${url} answered HTTP ${res.status} with a body that is not the service's${snippet ? `: ${snippet}` : ''}`,
      gateway ? EXIT.unavailable : EXIT.internal,
    );
  }
}

function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.message) return cause.message;
  if (cause?.code) return cause.code;
  return err instanceof Error ? err.message : String(err);
}

function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
