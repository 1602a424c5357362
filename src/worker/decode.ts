// Large JSON bodies, decoded off the main thread. A 16 MiB body costs the event loop about 300 ms
// when it is handled there (JSON.parse ~130 ms, the base64 check ~120 ms, decoding ~50 ms, the
// SHA-256 of the module ~10 ms), and every other caller waits that long. Here, in a thread of its
// own: the UTF-8 check, the parse (secure-json-parse, as Fastify's own JSON parser, with
// `__proto__` and `constructor.prototype` refused), and the heavy fields:
//
// - `module` (base64): checked, decoded, and its content address computed;
// - `wasi.stdinBase64`: checked and decoded; `wasi.stdin` (text): encoded to UTF-8.
//
// Each such field is replaced by a short stand-in that the request schemas judge exactly as they
// would judge the original (a valid stand-in for a valid field, an invalid one for an invalid
// field), and its decoded bytes travel beside the body (src/http/json-body.ts puts them back). So
// the schemas, their messages and everything after them are the same for a body decoded here and
// one parsed on the main thread. Large raw bodies (application/wasm, a multipart file part) only
// get copied and hashed here.
//
// Memory: the body is put together here in a staging SharedArrayBuffer the main thread reuses
// (copying into memory already mapped is cheap; on this kind of VM the first touch of a fresh
// 16 MiB buffer costs tens of milliseconds in page faults). Its chunks as Node received them are
// moved here (transferred) and copied into staging by this thread; only chunks that cannot be
// moved (slices of a larger buffer) are copied in by the main thread. Everything produced here
// for the main thread (the module, stdin) is in a SharedArrayBuffer allocated here: its page
// faults are this thread's, and it crosses to the main thread and on to the preparation thread
// without a copy. Nothing writes to those bytes after this.

import { Buffer, isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import sjson from 'secure-json-parse';
import { isBase64 } from '../schemas/base64.js';
import { copyIntoShared } from './shared-copy.js';

export interface DecodeTask {
  /** json: parse and decode a JSON body; bytes: copy a raw module out of staging and hash it;
   *  touch: write every page of a new staging buffer (so the main thread's copies into it do not
   *  fault). */
  kind: 'json' | 'bytes' | 'touch';
  /** The main thread's staging buffer (reused once this task has answered). */
  staging: SharedArrayBuffer;
  length: number;
  /** Chunks of the body moved here (transferred) instead of copied into staging on the main
   *  thread, and where each goes in staging. */
  parts?: ArrayBuffer[];
  partsAt?: number[];
}

/** Bytes decoded from a field of the body, and for the module its content address. */
export interface DecodedFields {
  module?: { bytes: Uint8Array; moduleId: string };
  stdin?: Uint8Array;
}

export type DecodeResult =
  | { ok: true; body: unknown; decoded: DecodedFields }
  | { ok: false; reason: 'not_utf8' | 'empty' | 'invalid_json' };

export interface AdoptResult {
  bytes: Uint8Array;
  moduleId: string;
}

/** Stand-ins for a decoded field: judged by the schemas as the original was. */
export const VALID_BASE64_STAND_IN = 'AAAA';
export const INVALID_BASE64_STAND_IN = '!';

/** Fields shorter than this stay as they are (decoding them on the main thread costs nothing). */
const FIELD_MIN = 4096;

export function decodeJsonBody(bytes: Uint8Array): DecodeResult {
  if (bytes.length === 0) return { ok: false, reason: 'empty' };
  if (!isUtf8(bytes)) return { ok: false, reason: 'not_utf8' };
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  let body: unknown;
  try {
    body = sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' });
  } catch {
    return { ok: false, reason: 'invalid_json' };
  }
  const decoded: DecodedFields = {};
  if (isObject(body)) {
    const module = body.module;
    if (typeof module === 'string' && module.length >= FIELD_MIN) {
      if (isBase64(module)) {
        const bytes = base64Bytes(module);
        decoded.module = { bytes, moduleId: sha256Id(bytes) };
        body.module = VALID_BASE64_STAND_IN;
      } else {
        body.module = INVALID_BASE64_STAND_IN;
      }
    }
    const wasi = body.wasi;
    if (isObject(wasi)) {
      const b64 = wasi.stdinBase64;
      if (typeof b64 === 'string' && b64.length >= FIELD_MIN) {
        if (isBase64(b64)) {
          decoded.stdin = base64Bytes(b64);
          wasi.stdinBase64 = VALID_BASE64_STAND_IN;
        } else {
          wasi.stdinBase64 = INVALID_BASE64_STAND_IN;
        }
      } else if (typeof wasi.stdin === 'string' && wasi.stdin.length >= FIELD_MIN && b64 === undefined) {
        decoded.stdin = utf8Bytes(wasi.stdin);
        wasi.stdin = '';
      }
    }
  }
  return { ok: true, body, decoded };
}

function sha256Id(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Decoded into a SharedArrayBuffer of its own (see the top of the file). */
function base64Bytes(text: string): Uint8Array {
  const out = new Uint8Array(new SharedArrayBuffer(Buffer.byteLength(text, 'base64')));
  const n = Buffer.from(out.buffer).write(text, 'base64');
  return n === out.length ? out : out.subarray(0, n);
}

function utf8Bytes(text: string): Uint8Array {
  const out = new Uint8Array(new SharedArrayBuffer(Buffer.byteLength(text, 'utf8')));
  Buffer.from(out.buffer).write(text, 'utf8');
  return out;
}

/** A raw module out of staging: its own copy, and its content address. */
export function adoptBytes(view: Uint8Array): AdoptResult {
  const bytes = new Uint8Array(new SharedArrayBuffer(view.length));
  bytes.set(view);
  return { bytes, moduleId: sha256Id(bytes) };
}

/** The piscina task. */
export default function decode(task: DecodeTask): DecodeResult | AdoptResult | null {
  const view = new Uint8Array(task.staging, 0, task.length);
  if (task.kind === 'touch') {
    for (let i = 0; i < view.length; i += 4096) view[i] = 0;
    return null;
  }
  const parts = task.parts ?? [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    copyIntoShared(view, new Uint8Array(part), task.partsAt![i]!);
    // Freed now, not at this thread's next collection (which may be many bodies away): the main
    // thread allocates the next body's chunks from the memory they free, instead of from fresh
    // pages (4,096 page faults per 16 MiB, 20-40 ms of its time here, when it did).
    (part as ArrayBuffer & { transfer(length: number): ArrayBuffer }).transfer(0);
  }
  return task.kind === 'json' ? decodeJsonBody(view) : adoptBytes(view);
}
