// The three body forms of POST /execute and POST /modules, normalised to one shape:
//
//   application/json      { module (base64) | moduleId | wat, function, args, limits, wasi, calls }
//   multipart/form-data   file part `module` (or a `moduleId` field); text fields `function`,
//                         `args` (a JSON array), `fuel`, `memoryMb`, `timeoutMs`, `wasi` and
//                         `calls` (JSON)
//   application/wasm      the body is the module; `function`, `args` (repeated), `fuel`,
//                         `memoryMb`, `timeoutMs`, `wasi` and `calls` (JSON) in the query string
//
// A module file part or application/wasm body that is WebAssembly text rather than a binary
// (src/wasm/sniff.ts isWatText) is read as text: the service compiles it off the main thread.
//
// Every form is validated by the same zod schema (schemas/execute.ts), so a bad field is the same
// `invalid_request` naming the field ("form.args: ...", "query.fuel: ...") whatever the form.

import type { FastifyRequest } from 'fastify';
import type { ExecuteRequest, WasiRequest } from '../service/execute.js';
import { isWatText } from '../wasm/sniff.js';
import { ServiceError, clip, quote } from '../errors.js';
import { INLINE_BODY_MAX_BYTES, decodedFields } from '../http/json-body.js';
import {
  ModuleJsonSchema,
  type RunFields,
  RunFieldsSchema,
  ModuleIdSchema,
  describeIssues,
  parseExecuteJson,
} from '../schemas/execute.js';

/** Where the module comes from: its bytes, WebAssembly text to compile, or a stored id. */
export type ModuleSource = { module: Uint8Array; moduleHash?: string } | { wat: string };

export interface RunBody {
  module?: Uint8Array;
  /** The content address of `module`, when it was computed with its decoding (large JSON bodies,
   *  off the event loop: src/http/json-body.ts). */
  moduleHash?: string;
  moduleId?: string;
  /** WebAssembly text, compiled by the service (src/worker/prepare.ts compileWat). */
  wat?: string;
  fields: RunFields;
  /** WASI stdin already decoded off the event loop (it replaces fields.wasi's stand-in). */
  stdin?: Uint8Array;
  /** Route-specific text fields beside the run fields (POST /jobs: callbackUrl), by name; only
   *  those named in ReadRunOptions.extraFields, and only when given. */
  extra?: Record<string, string>;
}

export interface ReadRunOptions {
  /** Text fields a route takes beside the run fields: a string in JSON, a query parameter with
   *  application/wasm, a text field in multipart. Each may be given once. */
  extraFields?: readonly string[];
}

type Form = 'json' | 'multipart' | 'wasm';

function formOf(request: FastifyRequest): Form {
  if (request.isMultipart()) return 'multipart';
  const type = String(request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  return type === 'application/wasm' ? 'wasm' : 'json';
}

const LIMIT_FIELDS = ['fuel', 'memoryMb', 'timeoutMs'] as const;
const RUN_FORM_FIELDS = new Set<string>(['function', 'args', 'wasi', 'calls', 'moduleId', ...LIMIT_FIELDS]);

/** Reads a run request (POST /execute, POST /jobs) in any of the three forms. */
export async function readRunBody(request: FastifyRequest, options: ReadRunOptions = {}): Promise<RunBody> {
  const extraNames = options.extraFields ?? [];
  const extra: Record<string, string> = {};
  const withExtra = (body: RunBody): RunBody => (extraNames.length > 0 ? { ...body, extra } : body);
  switch (formOf(request)) {
    case 'json': {
      let json = request.body ?? {};
      if (extraNames.length > 0 && typeof json === 'object' && json !== null && !Array.isArray(json)) {
        const rest: Record<string, unknown> = { ...(json as Record<string, unknown>) };
        for (const name of extraNames) {
          if (!Object.hasOwn(rest, name)) continue;
          const value = rest[name];
          if (typeof value !== 'string') throw new ServiceError('invalid_request', `body.${name}: must be a string`);
          extra[name] = value;
          delete rest[name];
        }
        json = rest;
      }
      const parsed = parseExecuteJson(json);
      if (!parsed.success) throw new ServiceError('invalid_request', describeIssues(parsed.error));
      const { module, moduleId, wat, ...fields } = parsed.data;
      const decoded = decodedFields(request.body);
      return withExtra({
        ...(module !== undefined &&
          (decoded?.module ? { module: decoded.module.bytes, moduleHash: decoded.module.moduleId } : { module: base64Bytes(module) })),
        ...(moduleId !== undefined && { moduleId }),
        ...(wat !== undefined && { wat }),
        fields,
        ...(decoded?.stdin && { stdin: decoded.stdin }),
      });
    }
    case 'wasm': {
      const query = (request.query ?? {}) as Record<string, string | string[] | undefined>;
      const raw: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(query)) {
        if (extraNames.includes(key)) {
          extra[key] = single(value, `query.${key}`);
        } else if (key === 'args') {
          raw.args = (Array.isArray(value) ? value : [value]).map((v) => queryArg(String(v)));
        } else if ((LIMIT_FIELDS as readonly string[]).includes(key)) {
          raw.limits = { ...(raw.limits as object), [key]: integerField(single(value, `query.${key}`), `query.${key}`) };
        } else if (key === 'function') {
          raw.function = single(value, 'query.function');
        } else if (key === 'wasi' || key === 'calls') {
          raw[key] = jsonField(single(value, `query.${key}`), `query.${key}`);
        } else {
          const also = extraNames.length > 0 ? `, ${extraNames.join(', ')}` : '';
          throw new ServiceError(
            'invalid_request',
            `query.${clip(key, 60)}: unknown field; application/wasm takes function, args (repeated), fuel, memoryMb, timeoutMs, wasi (JSON) and calls (JSON)${also} in the query string`,
          );
        }
      }
      const fields = parseFields(raw, 'query');
      return withExtra({ ...moduleOrText(wasmBody(request), decodedFields(request.body)?.module?.moduleId), fields });
    }
    case 'multipart': {
      const { module, moduleHash, values } = await readMultipart(request, extraNames.length > 0 ? new Set([...RUN_FORM_FIELDS, ...extraNames]) : RUN_FORM_FIELDS);
      const raw: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(values)) {
        if (extraNames.includes(key)) extra[key] = value;
        else if (key === 'args') raw.args = jsonField(value, 'form.args');
        else if (key === 'wasi' || key === 'calls') raw[key] = jsonField(value, `form.${key}`);
        else if ((LIMIT_FIELDS as readonly string[]).includes(key)) raw.limits = { ...(raw.limits as object), [key]: integerField(value, `form.${key}`) };
        else if (key !== 'moduleId') raw[key] = value;
      }
      const fields = parseFields(raw, 'form');
      const moduleId = values.moduleId;
      if ((module === undefined) === (moduleId === undefined)) {
        throw new ServiceError('invalid_request', 'form.module: exactly one of a "module" file part and a "moduleId" field must be given');
      }
      if (moduleId !== undefined) {
        const id = ModuleIdSchema.safeParse(moduleId);
        if (!id.success) throw new ServiceError('invalid_request', describeIssues(id.error, 'form.moduleId'));
        return withExtra({ moduleId: id.data, fields });
      }
      return withExtra({ ...moduleOrText(module!, moduleHash), fields });
    }
  }
}

/** Reads an upload (POST /modules) in any of the three forms: only the module, bytes (with their
 *  content address when it was computed off the event loop with their decoding) or text. */
export async function readModuleBody(request: FastifyRequest): Promise<ModuleSource> {
  switch (formOf(request)) {
    case 'json': {
      const parsed = ModuleJsonSchema.safeParse(request.body ?? {});
      if (!parsed.success) throw new ServiceError('invalid_request', describeIssues(parsed.error));
      if (parsed.data.wat !== undefined) return { wat: parsed.data.wat };
      const decoded = decodedFields(request.body)?.module;
      return decoded ? { module: decoded.bytes, moduleHash: decoded.moduleId } : { module: base64Bytes(parsed.data.module!) };
    }
    case 'wasm': {
      const keys = Object.keys((request.query ?? {}) as object);
      if (keys.length > 0) throw new ServiceError('invalid_request', `query.${clip(keys[0]!, 60)}: unknown field; POST /modules takes only the module as the body`);
      return moduleOrText(wasmBody(request), decodedFields(request.body)?.module?.moduleId);
    }
    case 'multipart': {
      const { module, moduleHash } = await readMultipart(request, new Set());
      if (!module) throw new ServiceError('invalid_request', 'form.module: a file part named "module" is required');
      return moduleOrText(module, moduleHash);
    }
  }
}

/** A module sent as bytes is WebAssembly text when it reads as such (not \0asm, UTF-8, and its
 *  first token after whitespace and comments is "("): the service compiles it. */
function moduleOrText(bytes: Uint8Array, moduleHash?: string): ModuleSource {
  if (isWatText(bytes)) return { wat: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8') };
  return moduleHash !== undefined ? { module: bytes, moduleHash } : { module: bytes };
}

const utf8 = new TextEncoder();

/** A validated run body as the execution service takes it (the HTTP routes and the CLI's local
 *  runs both come through here). */
export function toExecuteRequest(body: RunBody, outputBuffer?: SharedArrayBuffer): ExecuteRequest {
  const { fields } = body;
  return {
    ...(body.module !== undefined && { module: body.module }),
    ...(body.moduleHash !== undefined && { moduleHash: body.moduleHash }),
    ...(body.moduleId !== undefined && { moduleId: body.moduleId }),
    ...(body.wat !== undefined && { wat: body.wat }),
    ...(fields.function !== undefined && { function: fields.function }),
    args: fields.args ?? [],
    ...(fields.limits !== undefined && { limits: fields.limits }),
    ...(fields.wasi !== undefined && { wasi: wasiRequest(fields.wasi, outputBuffer, body.stdin) }),
    ...(fields.calls !== undefined && {
      calls: fields.calls.map((call) => ({
        ...(call.function !== undefined && { function: call.function }),
        args: call.args,
        ...(call.limits !== undefined && { limits: call.limits }),
        ...(call.wasi !== undefined && { wasi: wasiRequest(call.wasi) }),
      })),
    }),
  };
}

/** `decodedStdin`: stdin already decoded off the event loop (it replaces the field's stand-in). */
function wasiRequest(wasi: NonNullable<RunFields['wasi']>, outputBuffer?: SharedArrayBuffer, decodedStdin?: Uint8Array): WasiRequest {
  return {
    args: wasi.args,
    env: wasi.env,
    ...(wasi.stdin !== undefined && { stdin: utf8.encode(wasi.stdin) }),
    ...(wasi.stdinBase64 !== undefined && { stdin: base64Bytes(wasi.stdinBase64) }),
    ...(decodedStdin !== undefined && { stdin: decodedStdin }),
    ...(outputBuffer && { outputBuffer }),
  };
}

function parseFields(raw: Record<string, unknown>, root: string): RunFields {
  const parsed = RunFieldsSchema.safeParse(raw);
  // The limits are top-level fields in these forms: "query.fuel", not "query.limits.fuel".
  if (!parsed.success) throw new ServiceError('invalid_request', describeIssues(parsed.error, root).replaceAll(`${root}.limits.`, `${root}.`));
  return parsed.data;
}

function base64Bytes(text: string): Uint8Array {
  const b = Buffer.from(text, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function wasmBody(request: FastifyRequest): Uint8Array {
  const body = request.body;
  if (!Buffer.isBuffer(body) || body.length === 0) throw new ServiceError('invalid_request', 'body: the application/wasm body must be the module bytes; it is empty');
  return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
}

function single(value: string | string[] | undefined, field: string): string {
  if (Array.isArray(value)) throw new ServiceError('invalid_request', `${field}: must be given once`);
  return value ?? '';
}

const DECIMAL_INTEGER = /^-?[0-9]+$/;

/** A limit from a text field: decimal digits only, as the contract says (Number() would also
 *  take "0x10", "1e3", "0b11", " 1000 " and "1000.0"). Range is checked with the other limits. */
function integerField(text: string, field: string): number {
  if (!DECIMAL_INTEGER.test(text)) {
    throw new ServiceError('invalid_request', `${field}: must be a decimal integer (digits only, such as 50000); got ${quote(text, 40)}`);
  }
  return Number(text);
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const INTEGER = /^[+-]?\d+$/;

/** A query-string argument. Numbers become JSON numbers, except integers beyond 2^53, which stay
 *  exact decimal strings (i64 takes them; i32 refuses them as out of range); "NaN", "Infinity",
 *  "-Infinity", "-0" and anything else stay strings, as in the JSON form. */
export function queryArg(text: string): unknown {
  // Not trimmed: " 5 " stays a string, which no integer parameter takes.
  const t = text;
  if (t === '-0' || !DECIMAL.test(t)) return text;
  if (INTEGER.test(t)) {
    const n = Number(t);
    return Number.isSafeInteger(n) ? n : t.replace(/^\+/, '');
  }
  return Number(t);
}

function jsonField(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ServiceError('invalid_request', `${field}: must be JSON (for args, an array such as [5,10]); got ${quote(text, 60)}`);
  }
}

/** Streams a multipart body: the `module` file part into memory (capped by the body limit, refused
 *  as soon as it passes it: readFilePart), other parts as text fields. */
async function readMultipart(
  request: FastifyRequest,
  allowed: ReadonlySet<string>,
): Promise<{ module?: Uint8Array; moduleHash?: string; values: Record<string, string> }> {
  try {
    return await readMultipartParts(request, allowed);
  } catch (err) {
    // The multipart parser's own complaints (a part cut short, a malformed header, no boundary)
    // are the client's malformed body, not a bug in the service.
    if (err instanceof ServiceError || !(err instanceof Error) || /^FST_/.test(String((err as { code?: unknown }).code ?? ''))) throw err;
    throw new ServiceError('invalid_request', `body: malformed multipart/form-data body (${clip(err.message, 200)})`);
  }
}

async function readMultipartParts(
  request: FastifyRequest,
  allowed: ReadonlySet<string>,
): Promise<{ module?: Uint8Array; moduleHash?: string; values: Record<string, string> }> {
  let module: Uint8Array | undefined;
  let moduleHash: string | undefined;
  const values: Record<string, string> = {};
  for await (const part of request.parts()) {
    if (part.type === 'file') {
      if (part.fieldname !== 'module') {
        part.file.resume();
        throw new ServiceError('invalid_request', `form.${clip(part.fieldname, 60)}: unknown file part; the module goes in a file part named "module"`);
      }
      if (module !== undefined) throw new ServiceError('invalid_request', 'form.module: give one module file part');
      const { chunks, length } = await readFilePart(part.file, request.server.config.bodyLimitBytes);
      if (length > INLINE_BODY_MAX_BYTES) {
        // Copied and hashed in the decoding thread (src/http/json-body.ts explains why).
        const adopted = await request.server.pools.adoptBytes(chunks, length);
        module = adopted.bytes;
        moduleHash = adopted.moduleId;
      } else {
        const bytes = Buffer.concat(chunks, length);
        module = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      }
    } else {
      const name = part.fieldname;
      if (name === 'module') {
        throw new ServiceError('invalid_request', 'form.module: must be a file part (curl -F module=@file.wasm), not a text field');
      }
      if (!allowed.has(name)) {
        const list = [...allowed].join(', ');
        throw new ServiceError('invalid_request', `form.${clip(name, 60)}: unknown field${list ? `; this form takes a "module" file part and the fields ${list}` : '; this form takes only a "module" file part'}`);
      }
      if (part.valueTruncated) throw new ServiceError('payload_too_large', `form.${name}: the field is longer than this server accepts`);
      if (name in values) throw new ServiceError('invalid_request', `form.${name}: must be given once`);
      values[name] = String(part.value);
    }
  }
  if (module !== undefined && module.length === 0) throw new ServiceError('invalid_request', 'form.module: the module file part is empty');
  return { module, ...(moduleHash !== undefined && { moduleHash }), values };
}

/** Reads a file part into memory, refusing it the moment it passes the limit (the multipart
 *  parser stops keeping its bytes there but would otherwise read the rest of the part, however
 *  long, before the refusal could be sent). */
function readFilePart(file: NodeJS.ReadableStream & { truncated?: boolean }, limit: number): Promise<{ chunks: Buffer[]; length: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const tooLarge = (): void => {
      file.removeAllListeners('data');
      file.resume();
      reject(new ServiceError('payload_too_large', `the module file is larger than this server's limit of ${limit} bytes`));
    };
    if (file.truncated) return tooLarge();
    file.once('limit', tooLarge);
    file.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
    });
    file.once('error', reject);
    file.once('end', () => {
      if (file.truncated) tooLarge();
      else resolve({ chunks, length });
    });
  });
}
