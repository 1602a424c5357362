// Refusals from the HTTP layer, whatever produced them, against a real server on a real port:
// bounded error bodies (client input is clipped), the catalogue shape for Fastify's and Node's own
// refusals, a 413 that a client still writing actually receives, decimal-only integer limits,
// invalid UTF-8, and one info log line per refusal.

import net from 'node:net';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipartBody, BOUNDARY, send } from './helpers/forms.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const BODY_LIMIT = 4 * 1024 * 1024;
/** "No error body exceeds a few KB." */
const MAX_ERROR_BODY = 4096;

const ADD = wat(`(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`);

let server: TestServer;
const logLines: any[] = [];
beforeAll(async () => {
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) logLines.push(JSON.parse(line));
      cb();
    },
  });
  server = await startServer({ WASMBOX_BODY_LIMIT_BYTES: String(BODY_LIMIT) }, { logger: { level: 'info', stream } });
});
afterAll(async () => {
  await server?.close();
});

function expectRefusal(res: { status: number; body: any; text?: string }, status: number, code: string): string {
  expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(status);
  expect(res.body).toEqual({ error: { code, message: expect.any(String) }, requestId: expect.any(String) });
  return res.body.error.message as string;
}

/** Raw HTTP/1.1 on a socket: writes `head` and `body` at once (as Python requests and curl without
 *  Expect: 100-continue do), then reads the answer. */
function rawExchange(head: string, body: Buffer = Buffer.alloc(0)): Promise<{ response: string; error: string | null }> {
  return new Promise((resolve) => {
    const url = new URL(server.url);
    const socket = net.connect(Number(url.port), url.hostname);
    let response = '';
    let error: string | null = null;
    socket.on('data', (d) => (response += d.toString('utf8')));
    socket.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    socket.on('close', () => resolve({ response, error }));
    socket.write(Buffer.concat([Buffer.from(head), body]), () => {
      // Everything is written: give the server time to answer, then hang up.
      setTimeout(() => socket.end(), 500);
    });
  });
}

const statusOf = (response: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
/** The first answer's JSON body (by its content-length: a kept-alive connection may carry more). */
function jsonOf(response: string): any {
  const bodyStart = response.indexOf('\r\n\r\n') + 4;
  const length = Number(/\r\ncontent-length: (\d+)/i.exec(response.slice(0, bodyStart))?.[1]);
  return JSON.parse(Buffer.from(response.slice(bodyStart)).subarray(0, length).toString('utf8'));
}

describe('no error body echoes unbounded client input', () => {
  it('100,000 unknown keys: one short message naming a few of them and how many more', async () => {
    const body: Record<string, unknown> = { module: b64(ADD), function: 'add', args: [1, 2] };
    for (let i = 0; i < 100_000; i++) body[`unknown_key_${i}`] = 1;
    const res = await server.post('/execute', body);
    const message = expectRefusal(res, 400, 'invalid_request');
    expect(JSON.stringify(res.body).length).toBeLessThan(MAX_ERROR_BODY);
    expect(message).toMatch(/^body: unknown fields "unknown_key_0", .* and 99,995 more$/);
  });

  it('a 1 MB WASI env name is clipped in the message, which still says what is wrong', async () => {
    const name = `${'N'.repeat(1024 * 1024)}=`;
    const res = await server.post('/execute', { module: b64(ADD), function: 'add', args: [1, 2], wasi: { env: { [name]: 'v' } } });
    const message = expectRefusal(res, 400, 'invalid_request');
    expect(JSON.stringify(res.body).length).toBeLessThan(MAX_ERROR_BODY);
    expect(message).toContain('contains "="');
    expect(message).toContain('1,048,577 characters');
  });

  it('a long unknown function name is clipped in function_not_found', async () => {
    const res = await server.post('/execute', { module: b64(ADD), function: 'f'.repeat(1000), args: [] });
    const message = expectRefusal(res, 400, 'function_not_found');
    expect(JSON.stringify(res.body).length).toBeLessThan(MAX_ERROR_BODY);
    expect(message).toContain('1,000 characters');
    expect(message).toContain('add(i32, i32)');
  });

  it('long export names are clipped when function_not_found lists them', async () => {
    const names = Array.from({ length: 30 }, (_, i) => `${String(i).padStart(2, '0')}${'x'.repeat(5000)}`);
    const module = wat(`(module ${names.map((n) => `(func (export "${n}"))`).join(' ')})`);
    const res = await server.post('/execute', { module: b64(module), function: 'nope', args: [] });
    expectRefusal(res, 400, 'function_not_found');
    expect(JSON.stringify(res.body).length).toBeLessThan(MAX_ERROR_BODY);
  });

  it('a 10 KB content type is clipped in unsupported_media_type', async () => {
    const res = await send(`${server.url}/execute`, 'POST', 'x', { 'content-type': `text/${'y'.repeat(10_000)}` });
    expectRefusal(res, 415, 'unsupported_media_type');
    expect(JSON.stringify(res.body).length).toBeLessThan(MAX_ERROR_BODY);
  });

  it('a 10 KB unknown query parameter is clipped', async () => {
    const res = await send(`${server.url}/execute?${'q'.repeat(10_000)}=1`, 'POST', ADD, { 'content-type': 'application/wasm' });
    const message = expectRefusal(res, 400, 'invalid_request');
    expect(JSON.stringify(res.body).length).toBeLessThan(MAX_ERROR_BODY);
    expect(message).toContain('unknown field');
  });

  it('a 10 KB multipart field name is clipped', async () => {
    const body = multipartBody([
      { name: 'module', filename: 'add.wasm', data: ADD },
      { name: 'z'.repeat(10_000), value: '1' },
    ]);
    const res = await send(`${server.url}/execute`, 'POST', body, { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` });
    expectRefusal(res, 400, 'invalid_request');
    expect(JSON.stringify(res.body).length).toBeLessThan(MAX_ERROR_BODY);
  });
});

describe("Fastify's and Node's own refusals are in the catalogue shape", () => {
  it('a 20 KB query string is 431 headers_too_large with a request id', async () => {
    const r = await rawExchange(`GET /healthz?${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(statusOf(r.response), r.response.slice(0, 200)).toBe(431);
    const body = jsonOf(r.response);
    expect(body).toEqual({ error: { code: 'headers_too_large', message: expect.stringContaining('16384 bytes') }, requestId: expect.any(String) });
    expect(r.response).toMatch(new RegExp(`\\r\\nx-request-id: ${body.requestId}\\r\\n`, 'i'));
  });

  it('a module id of 300 characters is 400 invalid_request naming path.moduleId (not 414)', async () => {
    const res = await server.get(`/modules/sha256:${'a'.repeat(300)}`);
    const message = expectRefusal(res, 400, 'invalid_request');
    expect(message).toMatch(/^path\.moduleId: /);
  });

  it('a malformed request line is 400 invalid_request', async () => {
    const r = await rawExchange('GARBAGE\r\n\r\n');
    expect(statusOf(r.response)).toBe(400);
    expect(jsonOf(r.response).error.code).toBe('invalid_request');
  });

  it('every refusal is logged once at info with its code and status', async () => {
    const res = await server.post('/execute', { module: b64(ADD), function: 'nope' });
    expectRefusal(res, 400, 'function_not_found');
    const line = logLines.find((l) => l.reqId === res.body.requestId && l.msg === 'refused');
    expect(line).toMatchObject({ level: 30, code: 'function_not_found', status: 400, method: 'POST', route: '/execute' });
    expect(JSON.stringify(line).length).toBeLessThan(MAX_ERROR_BODY);
  });
});

describe('413 reaches a client that writes its whole body before reading', () => {
  for (const type of ['application/json', 'application/wasm'] as const) {
    it(`${type}, 3x over the limit, sent in one write: the client reads the 413 and no reset`, async () => {
      const body = Buffer.alloc(3 * BODY_LIMIT, 0x20);
      const r = await rawExchange(`POST /execute HTTP/1.1\r\nHost: x\r\ncontent-type: ${type}\r\ncontent-length: ${body.length}\r\n\r\n`, body);
      expect(r.error).toBeNull();
      expect(statusOf(r.response), r.response.slice(0, 200)).toBe(413);
      expect(jsonOf(r.response).error.code).toBe('payload_too_large');
      // The overshoot was read and discarded: the connection stays usable.
      expect(r.response).not.toMatch(/\r\nconnection: close\r\n/i);
    });
  }

  it('a body announced far over the bound (10 GB) is not read: 413 and the connection closes', async () => {
    const r = await rawExchange(`POST /execute HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\n\r\n`);
    expect(statusOf(r.response)).toBe(413);
    expect(r.response).toMatch(/\r\nconnection: close\r\n/i);
  });
});

describe('integer limits are decimal digits only', () => {
  for (const bad of ['0x10', '1e3', '0b11', ' 1000 ', '1000.0', '+5', '']) {
    it(`query fuel=${JSON.stringify(bad)} is invalid_request naming query.fuel`, async () => {
      const res = await send(`${server.url}/execute?function=add&args=1&args=2&fuel=${encodeURIComponent(bad)}`, 'POST', ADD, { 'content-type': 'application/wasm' });
      expect(expectRefusal(res, 400, 'invalid_request')).toMatch(/^query\.fuel: must be a decimal integer/);
    });
  }

  it('multipart timeoutMs="1e3" is invalid_request naming form.timeoutMs', async () => {
    const body = multipartBody([
      { name: 'module', filename: 'add.wasm', data: ADD },
      { name: 'function', value: 'add' },
      { name: 'args', value: '[1,2]' },
      { name: 'timeoutMs', value: '1e3' },
    ]);
    const res = await send(`${server.url}/execute`, 'POST', body, { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` });
    expect(expectRefusal(res, 400, 'invalid_request')).toMatch(/^form\.timeoutMs: must be a decimal integer/);
  });

  it('decimal digits are still taken: fuel=1000 runs', async () => {
    const res = await send(`${server.url}/execute?function=add&args=1&args=2&fuel=1000`, 'POST', ADD, { 'content-type': 'application/wasm' });
    expect(res.status).toBe(200);
    expect(res.body.telemetry.fuelLimit).toBe(1000);
  });

  it('a query argument with spaces (" 5 ") is not an i32', async () => {
    const res = await send(`${server.url}/execute?function=add&args=%205%20&args=2`, 'POST', ADD, { 'content-type': 'application/wasm' });
    expect(expectRefusal(res, 400, 'invalid_arguments')).toContain('add(i32, i32)');
  });
});

describe('invalid UTF-8 in a JSON body', () => {
  it('is invalid_request, not decoded with replacement characters', async () => {
    const json = Buffer.concat([Buffer.from(`{"module":"${b64(ADD)}","function":"add","args":[1,2],"wasi":{"env":{"K":"`), Buffer.from([0xff, 0xfe]), Buffer.from('"}}}')]);
    const res = await send(`${server.url}/execute`, 'POST', json, { 'content-type': 'application/json' });
    expect(expectRefusal(res, 400, 'invalid_request')).toMatch(/not valid UTF-8/);
  });

  it('valid UTF-8 beyond ASCII still runs', async () => {
    const res = await server.post('/execute', { module: b64(ADD), function: 'add', args: [1, 2], wasi: undefined, limits: { fuel: 100 } });
    expect(res.status).toBe(200);
    const res2 = await send(`${server.url}/execute`, 'POST', Buffer.from(JSON.stringify({ module: b64(ADD), function: 'ädd', args: [] })), { 'content-type': 'application/json' });
    expect(expectRefusal(res2, 400, 'function_not_found')).toContain('"ädd"');
  });
});

describe('a body that is not a binary module says what it is', () => {
  // (WebAssembly text of a core module is compiled and run: test/wat.test.ts.)
  it('component-model text sent as application/wasm is invalid_module naming the component text format', async () => {
    const res = await send(`${server.url}/execute?function=add`, 'POST', ';; a component\n(component)', { 'content-type': 'application/wasm' });
    const message = expectRefusal(res, 400, 'invalid_module');
    expect(message).toMatch(/WebAssembly component text format/);
  });

  it('base64 text of a module sent as application/wasm is invalid_module saying to decode it', async () => {
    const res = await send(`${server.url}/execute?function=add`, 'POST', b64(ADD), { 'content-type': 'application/wasm' });
    expect(expectRefusal(res, 400, 'invalid_module')).toMatch(/base64 text of a WebAssembly module/);
  });
});
