// Large bodies are parsed, checked, decoded and hashed in the decoding thread (src/worker/decode.ts,
// src/http/json-body.ts), not on the event loop. What a caller sees must not change: the same
// results, the same content address, the same refusals with the same messages, whether a body
// is small (parsed on the event loop) or large (parsed off it). Proved against the real server.

import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORMS, runIn, uploadIn } from './helpers/forms.js';
import { program } from './helpers/native.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const ADD = wat('(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))');
const CAT = program('cat');

/** `module` with a custom section of `n` bytes appended: the same code, a larger body. */
function padded(module: Uint8Array, n: number, fill = 0x5a): Uint8Array {
  const name = new TextEncoder().encode('pad');
  const size = 1 + name.length + n;
  const leb: number[] = [];
  let v = size;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v) b |= 0x80;
    leb.push(b);
  } while (v);
  const out = new Uint8Array(module.length + 1 + leb.length + size);
  out.set(module);
  let at = module.length;
  out[at++] = 0;
  for (const b of leb) out[at++] = b;
  out[at++] = name.length;
  out.set(name, at);
  at += name.length;
  out.fill(fill, at);
  return out;
}

const idOf = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

let server: TestServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.close();
});

describe('a large JSON body is handled off the event loop and answered as a small one would be', () => {
  it('runs a 3 MiB base64 module and reports the content address of its bytes', async () => {
    const module = padded(ADD, 3 * 1024 * 1024);
    const res = await server.execute({ module: b64(module), function: 'add', args: [5, 10] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.outcome).toBe('ok');
    expect(res.body.results).toEqual([15]);
    expect(res.body.moduleId).toBe(idOf(module));
  });

  it('stores a large module sent as JSON under the content address of its bytes, and runs it by id', async () => {
    const module = padded(ADD, 1024 * 1024, 0x33);
    const up = await server.post('/modules', { module: b64(module) });
    expect(up.status, JSON.stringify(up.body)).toBe(201);
    expect(up.body.moduleId).toBe(idOf(module));
    expect(up.body.size).toBe(module.length);
    const run = await server.execute({ moduleId: up.body.moduleId, function: 'add', args: [2, 3] });
    expect(run.body.results).toEqual([5]);
  });

  it('refuses a large module that is not base64 with the same message as a small one', async () => {
    const big = `${b64(padded(ADD, 400 * 1024)).slice(0, -8)}!!!!AAAA`;
    const small = `${b64(ADD)}!!!!`;
    const a = await server.execute({ module: big, function: 'add', args: [1, 2] });
    const b = await server.execute({ module: small, function: 'add', args: [1, 2] });
    expect(a.status).toBe(400);
    expect(a.body.error.code).toBe('invalid_request');
    expect(a.body.error.message).toBe(b.body.error.message);
    expect(a.body.error.message).toMatch(/^body\.module: must be standard base64/);
  });

  it('refuses large bodies that are not UTF-8, not JSON, or poisoned with __proto__, as small ones', async () => {
    const filler = 'x'.repeat(400 * 1024);
    const notUtf8 = Buffer.concat([Buffer.from(`{"function":"add","args":[],"pad":"${filler}`), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    const r1 = await server.post('/execute', notUtf8);
    expect(r1.status).toBe(400);
    expect(r1.body.error.message).toMatch(/not valid UTF-8/);

    const r2 = await server.post('/execute', `{"module":"${filler}"`);
    expect(r2.status).toBe(400);
    expect(r2.body.error).toMatchObject({ code: 'invalid_request', message: 'body: not valid JSON' });

    const r3 = await server.post('/execute', `{"pad":"${filler}","__proto__":{"polluted":true}}`);
    expect(r3.status).toBe(400);
    expect(r3.body.error).toMatchObject({ code: 'invalid_request', message: 'body: not valid JSON' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    // And an unknown field in a large body is named, as in a small one.
    const r4 = await server.post('/execute', { module: b64(padded(ADD, 400 * 1024)), function: 'add', args: [1, 2], extra: 1 });
    expect(r4.status).toBe(400);
    expect(r4.body.error.message).toMatch(/extra/);
  });

  it('gives a WASI program large stdin, as base64 or as text, byte for byte', async () => {
    const bytes = new Uint8Array(300 * 1024).map((_, i) => (i * 7 + 3) & 0xff);
    const asB64 = await server.execute({ module: b64(CAT), wasi: { stdinBase64: b64(bytes) }, limits: { fuel: 1_000_000_000 } });
    expect(asB64.status, JSON.stringify(asB64.body).slice(0, 300)).toBe(200);
    expect(asB64.body.exitCode).toBe(0);
    // stdout is capped at 1 MiB by default: all 300 KiB come back, as text (latin-1 bytes are not
    // all valid UTF-8), so compare a UTF-8 text instead.
    const text = 'wasmbox ✓ '.repeat(40_000);
    const asText = await server.execute({ module: b64(CAT), wasi: { stdin: text }, limits: { fuel: 1_000_000_000 } });
    expect(asText.status).toBe(200);
    expect(asText.body.stdout).toBe(text);
    const textB64 = await server.execute({ module: b64(CAT), wasi: { stdinBase64: Buffer.from(text).toString('base64') }, limits: { fuel: 1_000_000_000 } });
    expect(textB64.body.stdout).toBe(text);
  });
});

describe('a large body arriving in pieces of every size is put together byte for byte', () => {
  // The event loop moves the chunks Node hands it whole to the decoding thread and copies the
  // rest into staging itself; chunks land at every offset. A module whose bytes all differ makes
  // any byte out of place change its content address.
  const pieces = [1, 3, 100, 7, 70_001, 5, 16_383, 16_384, 16_385, 131_071, 9, 65_536, 65_537, 2, 250_000];

  async function sendInPieces(body: Buffer, contentType: string, path: string): Promise<{ status: number; body: any }> {
    const { request } = await import('undici');
    async function* slowly(): AsyncGenerator<Buffer> {
      let at = 0;
      for (let i = 0; at < body.length; i++) {
        const n = pieces[i % pieces.length]!;
        yield body.subarray(at, at + n);
        at += n;
        // A pause now and then, so the server reads some pieces on their own (small chunks).
        if (i % 4 === 0) await new Promise((r) => setTimeout(r, 2));
      }
    }
    const res = await request(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': contentType, 'content-length': String(body.length) }, body: Readable.from(slowly()) });
    return { status: res.statusCode, body: await res.body.json() };
  }

  it('a JSON body: runs the module and reports the content address of its exact bytes', async () => {
    const module = padded(ADD, 2 * 1024 * 1024 + 13);
    const at = module.length - 2 * 1024 * 1024 - 13;
    for (let i = at; i < module.length; i++) module[i] = (i * 2_654_435_761) >>> 24;
    const body = Buffer.from(JSON.stringify({ module: b64(module), function: 'add', args: [5, 10] }));
    const res = await sendInPieces(body, 'application/json', '/execute');
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.results).toEqual([15]);
    expect(res.body.moduleId).toBe(idOf(module));
  });

  it('an application/wasm body: stores the module under the content address of its exact bytes', async () => {
    const module = padded(ADD, 1024 * 1024 + 5);
    const at = module.length - 1024 * 1024 - 5;
    for (let i = at; i < module.length; i++) module[i] = (i * 40_503 + 7) >>> 3;
    const res = await sendInPieces(Buffer.from(module), 'application/wasm', '/modules');
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.moduleId).toBe(idOf(module));
    expect(res.body.size).toBe(module.length);
  });
});

describe('a large module is run and stored alike in all three body forms', () => {
  it.each(FORMS)('%s: runs a 1 MiB module and stores it under the content address of its bytes', async (form) => {
    const module = padded(ADD, 1024 * 1024, form.charCodeAt(0));
    const run = await runIn(server.url, form, { module, function: 'add', args: [7, 8] });
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    expect(run.body.results).toEqual([15]);
    expect(run.body.moduleId).toBe(idOf(module));
    const up = await uploadIn(server.url, form, module);
    expect(up.status, JSON.stringify(up.body)).toBe(201); // a run does not store the module
    expect(up.body.moduleId).toBe(idOf(module));
    expect(up.body.size).toBe(module.length);
  });
});

describe('a large application/wasm body is copied and hashed off the event loop', () => {
  it('runs it and reports the content address of its bytes', async () => {
    const module = padded(ADD, 2 * 1024 * 1024, 0x44);
    const res = await server.post('/execute?function=add&args=20&args=22', module, { 'content-type': 'application/wasm' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.results).toEqual([42]);
    expect(res.body.moduleId).toBe(idOf(module));
  });

  it('stores it under the content address of its bytes', async () => {
    const module = padded(ADD, 512 * 1024, 0x45);
    const up = await server.post('/modules', module, { 'content-type': 'application/wasm' });
    expect(up.status).toBe(201);
    expect(up.body.moduleId).toBe(idOf(module));
    const again = await server.get(`/modules/${up.body.moduleId}`);
    expect(again.body.size).toBe(module.length);
  });

  it('still refuses a body over the limit with 413, and the next request is served', async () => {
    const limited = await startServer({ WASMBOX_BODY_LIMIT_BYTES: String(256 * 1024) });
    try {
      const over = await limited.post('/execute?function=add&args=1&args=2', padded(ADD, 300 * 1024), { 'content-type': 'application/wasm' });
      expect(over.status).toBe(413);
      expect(over.body.error.code).toBe('payload_too_large');
      const json = await limited.execute({ module: b64(padded(ADD, 400 * 1024)), function: 'add', args: [1, 2] });
      expect(json.status).toBe(413);
      const ok = await limited.post('/execute?function=add&args=1&args=2', padded(ADD, 100 * 1024), { 'content-type': 'application/wasm' });
      expect(ok.status).toBe(200);
      expect(ok.body.results).toEqual([3]);
    } finally {
      await limited.close();
    }
  });
});
