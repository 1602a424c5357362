// The three body forms of POST /execute and POST /modules (application/json, multipart/form-data,
// application/wasm), sent with undici to a real server, plus small builders for hand-made
// multipart bodies and modules of a chosen size.

import type { Readable } from 'node:stream';
import { FormData, request } from 'undici';
import { leb } from './leb.js';

export type Form = 'json' | 'multipart' | 'wasm';
export const FORMS: readonly Form[] = ['json', 'multipart', 'wasm'];

export interface Res {
  status: number;
  body: any;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

export async function send(
  url: string,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  body?: string | Uint8Array | FormData | Readable,
  headers: Record<string, string> = {},
): Promise<Res> {
  const res = await request(url, { method, headers, ...(body !== undefined && { body }) });
  const text = await res.body.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  return { status: res.statusCode, body: parsed, text, headers: res.headers };
}

export interface Run {
  module?: Uint8Array;
  moduleId?: string;
  function?: string;
  /** The arguments as the JSON form carries them. */
  args?: unknown[];
  /** The same arguments as query-string values (application/wasm); defaults to String(arg). */
  queryArgs?: string[];
  limits?: { fuel?: number; memoryMb?: number; timeoutMs?: number };
}

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64');

/** POST /execute in one form. */
export async function runIn(base: string, form: Form, run: Run): Promise<Res> {
  switch (form) {
    case 'json': {
      const body: Record<string, unknown> = {};
      if (run.module) body.module = b64(run.module);
      if (run.moduleId) body.moduleId = run.moduleId;
      if (run.function !== undefined) body.function = run.function;
      if (run.args !== undefined) body.args = run.args;
      if (run.limits) body.limits = run.limits;
      return send(`${base}/execute`, 'POST', JSON.stringify(body), { 'content-type': 'application/json' });
    }
    case 'multipart': {
      const fd = new FormData();
      if (run.module) fd.append('module', new Blob([run.module], { type: 'application/wasm' }), 'module.wasm');
      if (run.moduleId) fd.append('moduleId', run.moduleId);
      if (run.function !== undefined) fd.append('function', run.function);
      if (run.args !== undefined) fd.append('args', JSON.stringify(run.args));
      for (const [k, v] of Object.entries(run.limits ?? {})) fd.append(k, String(v));
      return send(`${base}/execute`, 'POST', fd);
    }
    case 'wasm': {
      if (!run.module) throw new Error('the application/wasm form carries the module itself');
      const q = new URLSearchParams();
      if (run.function !== undefined) q.append('function', run.function);
      for (const a of run.queryArgs ?? (run.args ?? []).map(String)) q.append('args', a);
      for (const [k, v] of Object.entries(run.limits ?? {})) q.append(k, String(v));
      const qs = q.toString();
      return send(`${base}/execute${qs ? `?${qs}` : ''}`, 'POST', run.module, { 'content-type': 'application/wasm' });
    }
  }
}

/** POST /modules in one form. */
export async function uploadIn(base: string, form: Form, module: Uint8Array): Promise<Res> {
  switch (form) {
    case 'json':
      return send(`${base}/modules`, 'POST', JSON.stringify({ module: b64(module) }), { 'content-type': 'application/json' });
    case 'multipart': {
      const fd = new FormData();
      fd.append('module', new Blob([module], { type: 'application/wasm' }), 'module.wasm');
      return send(`${base}/modules`, 'POST', fd);
    }
    case 'wasm':
      return send(`${base}/modules`, 'POST', module, { 'content-type': 'application/wasm' });
  }
}

export type Part = { name: string; value: string } | { name: string; filename: string; data: Uint8Array; type?: string };

export const BOUNDARY = 'wasmbox-test-boundary-7d1f';

/** A multipart/form-data body built by hand (for what FormData will not produce). */
export function multipartBody(parts: Part[], boundary = BOUNDARY): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    if ('data' in p) {
      chunks.push(
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"; filename="${p.filename}"\r\nContent-Type: ${p.type ?? 'application/wasm'}\r\n\r\n`,
        ),
        Buffer.from(p.data),
        Buffer.from('\r\n'),
      );
    } else {
      chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"\r\n\r\n${p.value}\r\n`));
    }
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

export const MULTIPART_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;

/** The module with a custom section appended (ignored by engines): a different module (content
 *  address) of about the size wanted, with the same code. */
export function withCustomSection(module: Uint8Array, name: string, payloadBytes: number, fill = 0x2a): Uint8Array {
  const nameBytes = Buffer.from(name, 'utf8');
  const content = [...leb(nameBytes.length), ...nameBytes];
  const size = content.length + payloadBytes;
  const header = Buffer.from([0x00, ...leb(size), ...content]);
  return new Uint8Array(Buffer.concat([Buffer.from(module), header, Buffer.alloc(payloadBytes, fill)]));
}
