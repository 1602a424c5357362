// Every refusal POST /execute can give today, with the exact error body
// `{ error: { code, message }, requestId }`, plus the memory_limit_exceeded outcome, the `_start`
// default and the operational routes, against a real server on a real port.

import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send } from './helpers/forms.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const BODY_LIMIT = 32 * 1024;

let server: TestServer;
beforeAll(async () => {
  server = await startServer({
    WASMBOX_BODY_LIMIT_BYTES: String(BODY_LIMIT),
    WASMBOX_FUEL_MAX: '1000000000',
    WASMBOX_MEMORY_MB_DEFAULT: '8',
    WASMBOX_MEMORY_MB_MAX: '16',
    WASMBOX_TIMEOUT_MS_MAX: '5000',
  });
});
afterAll(async () => {
  await server?.close();
});

const ADD = b64(
  wat(`(module
    (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
    (func (export "neg") (param i64) (result i64) i64.const 0 local.get 0 i64.sub)
    (memory (export "mem") 1))`),
);

/** Asserts the exact error body and status; returns the message. */
function expectError(res: { status: number; body: any; headers?: Record<string, unknown> }, status: number, code: string): string {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body).toEqual({ error: { code, message: expect.any(String) }, requestId: expect.any(String) });
  expect(Object.keys(res.body).sort()).toEqual(['error', 'requestId']);
  expect(Object.keys(res.body.error).sort()).toEqual(['code', 'message']);
  expect(res.body.error.message.length).toBeGreaterThan(0);
  expect(res.body.requestId.length).toBeGreaterThan(0);
  if (res.headers) expect(res.headers['x-request-id']).toBe(res.body.requestId);
  return res.body.error.message;
}

function raw(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: string | Uint8Array, headers: Record<string, string> = {}) {
  return send(server.url + path, method, body, headers);
}

describe('request ids', () => {
  it('echoes a caller-supplied x-request-id in the header and the error body', async () => {
    const res = await server.post('/execute', {}, { 'x-request-id': 'errors-test-42' });
    expectError(res, 400, 'invalid_request');
    expect(res.body.requestId).toBe('errors-test-42');
    expect(res.headers['x-request-id']).toBe('errors-test-42');
  });

  it('generates a distinct request id for each request', async () => {
    const a = await server.execute({});
    const b = await server.execute({});
    expect(a.body.requestId).not.toBe(b.body.requestId);
  });
});

describe('400 invalid_request', () => {
  it('refuses a body that is not JSON', async () => {
    expectError(await server.post('/execute', '{"module": '), 400, 'invalid_request');
    expectError(await server.post('/execute', 'not json at all'), 400, 'invalid_request');
  });

  it('refuses an empty JSON body', async () => {
    expectError(await raw('POST', '/execute', '', { 'content-type': 'application/json' }), 400, 'invalid_request');
  });

  it('refuses a body that is not an object', async () => {
    expectError(await server.post('/execute', '[]'), 400, 'invalid_request');
    expectError(await server.post('/execute', '"module"'), 400, 'invalid_request');
    expectError(await server.post('/execute', 'null'), 400, 'invalid_request');
  });

  it('refuses a body with neither module nor moduleId, naming module', async () => {
    const msg = expectError(await server.execute({ function: 'add', args: [1, 2] }), 400, 'invalid_request');
    expect(msg).toContain('body.module');
    expect(msg).toContain('exactly one of "module"');
    expect(msg).toContain('"moduleId"');
  });

  it('refuses a body with both module and moduleId, naming both', async () => {
    const msg = expectError(await server.execute({ module: ADD, moduleId: `sha256:${'a'.repeat(64)}`, function: 'add', args: [1, 2] }), 400, 'invalid_request');
    expect(msg).toContain('"module"');
    expect(msg).toContain('"moduleId"');
  });

  it('refuses an unknown top-level field, naming it', async () => {
    const msg = expectError(await server.execute({ module: ADD, function: 'add', args: [1, 2], fule: 5 }), 400, 'invalid_request');
    expect(msg).toBe('body: unknown field "fule"');
  });

  it('refuses an unknown limit, naming it', async () => {
    const msg = expectError(await server.execute({ module: ADD, function: 'add', args: [1, 2], limits: { memory: 5 } }), 400, 'invalid_request');
    expect(msg).toBe('body.limits: unknown field "memory"');
  });

  it.each([
    [{ module: 5 }, 'body.module: must be a base64 string'],
    [{ module: '' }, 'body.module: must not be empty'],
    [{ module: ADD, function: 7 }, 'body.function: must be a string'],
    [{ module: ADD, function: '' }, 'body.function: must not be empty'],
    [{ module: ADD, function: 'add', args: '1,2' }, 'body.args: must be an array'],
    [{ module: ADD, function: 'add', args: { 0: 1 } }, 'body.args: must be an array'],
    [{ moduleId: 'abc' }, 'body.moduleId: must be "sha256:" followed by 64 lowercase hex digits'],
    [{ moduleId: `sha256:${'A'.repeat(64)}` }, 'body.moduleId: must be "sha256:" followed by 64 lowercase hex digits'],
    [{ module: ADD, function: 'add', args: [1, 2], limits: { fuel: '100' } }, 'body.limits.fuel: must be a number'],
    [{ module: ADD, function: 'add', args: [1, 2], limits: { memoryMb: 1.5 } }, 'body.limits.memoryMb: must be a whole number'],
    [{ module: ADD, function: 'add', args: [1, 2], limits: { timeoutMs: null } }, 'body.limits.timeoutMs: must be a number'],
    [{ module: ADD, function: 'add', args: [1, 2], limits: null }, 'body.limits'],
    [{ module: ADD, function: 'f'.repeat(1025) }, 'body.function: must be at most 1024 characters'],
    [{ module: ADD, function: 'add', args: new Array(10_001).fill(0) }, 'body.args: must have at most 10000 items'],
  ])('refuses a field of the wrong type or form, naming the field: %j', async (body, message) => {
    const msg = expectError(await server.execute(body as Record<string, unknown>), 400, 'invalid_request');
    expect(msg).toContain(message);
  });
});

describe('400 invalid_module', () => {
  it('refuses bytes that are not WebAssembly', async () => {
    const msg = expectError(await server.execute({ module: b64(new TextEncoder().encode('hello, not wasm')), function: 'f' }), 400, 'invalid_module');
    expect(msg.toLowerCase()).toMatch(/magic|expected|wasm/);
  });

  it('refuses a truncated module', async () => {
    const bytes = Buffer.from(ADD, 'base64');
    expectError(await server.execute({ module: b64(bytes.subarray(0, bytes.length - 3)), function: 'add', args: [1, 2] }), 400, 'invalid_module');
  });

  it('refuses a module that does not validate', async () => {
    // (func (result i32)) with an empty body: type mismatch at end
    const bytes = Uint8Array.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7f, 3, 2, 1, 0, 10, 4, 1, 2, 0, 0x0b]);
    expectError(await server.execute({ module: b64(bytes), function: 'f' }), 400, 'invalid_module');
  });

  it('refuses a module field that is not base64 (as a schema error naming the field)', async () => {
    for (const bad of ['AGFzbQ$$', 'AGFzbQEAAAA=x', 'a', 'AGFz bQ==']) {
      const msg = expectError(await server.execute({ module: bad, function: 'f' }), 400, 'invalid_request');
      expect(msg).toContain('body.module: must be standard base64');
    }
  });
});

describe('400 function_not_found', () => {
  it('refuses an unknown function, listing the exported functions with their signatures', async () => {
    const msg = expectError(await server.execute({ module: ADD, function: 'sub', args: [1, 2] }), 400, 'function_not_found');
    expect(msg).toContain('"sub"');
    expect(msg).toContain('add(i32, i32) -> i32');
    expect(msg).toContain('neg(i64) -> i64');
    // a memory export is not a function
    expect(msg).not.toContain('mem');
  });

  it('refuses names of Object.prototype members ("toString", "__proto__", "constructor") as function_not_found, not a 500', async () => {
    for (const name of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      const msg = expectError(await server.execute({ module: ADD, function: name, args: [] }), 400, 'function_not_found');
      expect(msg).toContain(JSON.stringify(name));
    }
  });

  it('refuses a missing function when the module has no _start, saying so and listing the exports', async () => {
    const msg = expectError(await server.execute({ module: ADD, args: [1, 2] }), 400, 'function_not_found');
    expect(msg).toContain('no "function" was given and the module does not export _start');
    expect(msg).toContain('add(i32, i32) -> i32');
  });

  it('says so when the module exports no functions at all', async () => {
    const m = b64(wat('(module (memory (export "m") 1))'));
    const msg = expectError(await server.execute({ module: m, function: 'f' }), 400, 'function_not_found');
    expect(msg).toContain('the module exports no functions');
  });

  it('does not treat an export of another kind as a function', async () => {
    const msg = expectError(await server.execute({ module: ADD, function: 'mem' }), 400, 'function_not_found');
    expect(msg).toContain('"mem"');
  });
});

describe('function defaults to _start', () => {
  it('runs the exported _start when no function is given', async () => {
    const m = b64(
      wat(`(module
        (global $g (mut i32) (i32.const 0))
        (func (export "_start") (result i32) i32.const 41 i32.const 1 i32.add)
        (func (export "other") (result i32) i32.const 0))`),
    );
    const res = await server.execute({ module: m });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ outcome: 'ok', results: [42] });
    const other = await server.execute({ module: m, function: 'other' });
    expect(other.body).toMatchObject({ outcome: 'ok', results: [0] });
  });
});

describe('400 invalid_arguments', () => {
  it('refuses arguments of the wrong type or count, showing the signature', async () => {
    let msg = expectError(await server.execute({ module: ADD, function: 'add', args: [1] }), 400, 'invalid_arguments');
    expect(msg).toBe('expected 2 arguments, got 1; signature: add(i32, i32) -> i32');
    msg = expectError(await server.execute({ module: ADD, function: 'neg', args: [1.5] }), 400, 'invalid_arguments');
    expect(msg).toMatch(/^args\[0\]: expected an i64 .*; signature: neg\(i64\) -> i64$/);
  });
});

describe('400 unsupported_import', () => {
  it('refuses a function import, naming it', async () => {
    const m = b64(wat(`(module (import "env" "log" (func (param i32))) (func (export "f")))`));
    const msg = expectError(await server.execute({ module: m, function: 'f' }), 400, 'unsupported_import');
    expect(msg).toContain('"env" "log"');
    expect(msg).toContain('function');
  });

  it('refuses memory, table and global imports, naming the first and counting the rest', async () => {
    const m = b64(
      wat(`(module
        (import "js" "mem" (memory 1))
        (import "js" "tbl" (table 1 funcref))
        (import "js" "g" (global i32))
        (func (export "f")))`),
    );
    const msg = expectError(await server.execute({ module: m, function: 'f' }), 400, 'unsupported_import');
    expect(msg).toContain('memory "js" "mem"');
    expect(msg).toContain('and 2 more imports');
  });
});

describe('400 limit_out_of_range', () => {
  it.each([
    ['fuel', 0, 1_000_000_000],
    ['fuel', -1, 1_000_000_000],
    ['fuel', 1_000_000_001, 1_000_000_000],
    ['memoryMb', 0, 16],
    ['memoryMb', 17, 16],
    ['timeoutMs', 0, 5000],
    ['timeoutMs', 5001, 5000],
  ] as const)('refuses limits.%s = %d, giving the maximum %d', async (name, value, max) => {
    const msg = expectError(await server.execute({ module: ADD, function: 'add', args: [1, 2], limits: { [name]: value } }), 400, 'limit_out_of_range');
    expect(msg).toBe(`limits.${name} must be an integer from 1 to ${max} on this server; got ${value}`);
  });

  it('refuses an integer limit beyond 2^53 as above the maximum, not as a non-integer', async () => {
    const res = await server.post('/execute', `{"module":"${ADD}","function":"add","args":[1,2],"limits":{"fuel":1e20}}`);
    const msg = expectError(res, 400, 'limit_out_of_range');
    expect(msg).toBe('limits.fuel must be an integer from 1 to 1000000000 on this server; got 100000000000000000000');
  });

  it('accepts each limit at exactly 1 and exactly the maximum', async () => {
    for (const limits of [{ fuel: 1_000_000_000, memoryMb: 16, timeoutMs: 5000 }, { memoryMb: 1, timeoutMs: 1 }]) {
      const res = await server.execute({ module: ADD, function: 'add', args: [1, 2], limits });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.telemetry.memoryLimitBytes).toBe(limits.memoryMb * 1048576);
    }
  });

  it('refuses a non-integer limit as invalid_request (openapi.yaml: a non-integer is invalid_request)', async () => {
    const msg = expectError(await server.execute({ module: ADD, function: 'add', args: [1, 2], limits: { fuel: 10.5 } }), 400, 'invalid_request');
    expect(msg).toBe('body.limits.fuel: must be a whole number');
  });
});

describe('404 module_not_found', () => {
  it('refuses an unknown moduleId', async () => {
    const id = `sha256:${'0'.repeat(64)}`;
    const msg = expectError(await server.execute({ moduleId: id, function: 'add', args: [1, 2] }), 404, 'module_not_found');
    expect(msg).toContain(id);
  });
});

describe('413 payload_too_large', () => {
  it('refuses a body over WASMBOX_BODY_LIMIT_BYTES, giving the limit', async () => {
    const big = JSON.stringify({ module: 'A'.repeat(BODY_LIMIT + 100), function: 'f' });
    const msg = expectError(await server.post('/execute', big), 413, 'payload_too_large');
    expect(msg).toContain(String(BODY_LIMIT));
  });

  it('refuses an application/wasm body over the limit', async () => {
    const res = await raw('POST', '/execute?function=f', new Uint8Array(BODY_LIMIT + 1), { 'content-type': 'application/wasm' });
    expectError(res, 413, 'payload_too_large');
  });

  it('accepts a body just under the limit (it reaches validation)', async () => {
    const padding = 'A'.repeat(BODY_LIMIT - 200 - (BODY_LIMIT % 4));
    const res = await server.post('/execute', JSON.stringify({ module: padding, function: 'f' }));
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_module');
  });
});

describe('415 unsupported_media_type', () => {
  it('refuses text/plain, naming the content type', async () => {
    const msg = expectError(await server.post('/execute', JSON.stringify({ module: ADD, function: 'add', args: [1, 2] }), { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
    expect(msg).toContain('text/plain');
  });

  it('refuses an unknown content type', async () => {
    expectError(await server.post('/execute', 'x=1', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
  });

  it('accepts application/json with a charset', async () => {
    const res = await server.post('/execute', { module: ADD, function: 'add', args: [1, 2] }, { 'content-type': 'application/json; charset=utf-8' });
    expect(res.status).toBe(200);
    expect(res.body.results).toEqual([3]);
  });
});

describe('404 route_not_found', () => {
  it.each([
    ['GET', '/nope'],
    ['POST', '/nope'],
    ['GET', '/execute'],
    ['DELETE', '/execute'],
    ['PUT', '/healthz'],
  ] as const)('answers %s %s with route_not_found naming the method and path', async (method, path) => {
    const res = await raw(method, `${path}?q=1`);
    const msg = expectError(res, 404, 'route_not_found');
    expect(msg).toBe(`no route for ${method} ${path}`);
  });
});

describe('memory_limit_exceeded outcome', () => {
  it('answers 200 memory_limit_exceeded when the initial memory is above memoryMb, without running', async () => {
    const m = b64(wat(`(module (memory 32) (func (export "f") (result i32) i32.const 1))`)); // 2 MiB
    const res = await server.execute({ module: m, function: 'f', limits: { memoryMb: 1 } });
    expect(res.status).toBe(200);
    expect(res.body.outcome).toBe('memory_limit_exceeded');
    expect(res.body.results).toBeUndefined();
    expect(res.body.message).toContain('2097152 bytes');
    expect(res.body.telemetry).toMatchObject({ memoryLimitBytes: 1048576, fuelConsumed: 0 });
    // the same module runs within a larger limit
    const ok = await server.execute({ module: m, function: 'f', limits: { memoryMb: 2 } });
    expect(ok.body).toMatchObject({ outcome: 'ok', results: [1] });
    expect(ok.body.telemetry.memoryPeakBytes).toBe(2097152);
  });

  it('answers memory_limit_exceeded for a memory.grow refused by the limit followed by a trap', async () => {
    const m = b64(
      wat(`(module
        (memory 1)
        (func (export "grow_then_touch") (param i32) (result i32)
          local.get 0 memory.grow drop
          ;; touch the last byte of the memory the guest asked for
          local.get 0 i32.const 1 i32.add i32.const 65536 i32.mul i32.const 1 i32.sub
          i32.load8_u)
        (func (export "grow") (param i32) (result i32) local.get 0 memory.grow))`),
    );
    // 1 MiB = 16 pages: growing by 31 pages (to 2 MiB) is refused
    const res = await server.execute({ module: m, function: 'grow_then_touch', args: [31], limits: { memoryMb: 1 } });
    expect(res.status).toBe(200);
    expect(res.body.outcome).toBe('memory_limit_exceeded');
    expect(res.body.trap).toMatchObject({ kind: 'memory_out_of_bounds' });
    expect(res.body.telemetry.memoryPeakBytes).toBeLessThanOrEqual(1048576);
    // a refused grow that the guest handles is just -1, not a failure
    const handled = await server.execute({ module: m, function: 'grow', args: [31], limits: { memoryMb: 1 } });
    expect(handled.body).toMatchObject({ outcome: 'ok', results: [-1] });
    // within the limit the same run succeeds
    const fits = await server.execute({ module: m, function: 'grow_then_touch', args: [15], limits: { memoryMb: 1 } });
    expect(fits.body).toMatchObject({ outcome: 'ok', results: [0] });
    expect(fits.body.telemetry.memoryPeakBytes).toBe(1048576);
  });

  it('reports an ordinary out-of-bounds access (no refused grow) as a trap, not memory_limit_exceeded', async () => {
    const m = b64(wat(`(module (memory 1) (func (export "f") (result i32) i32.const 70000 i32.load))`));
    const res = await server.execute({ module: m, function: 'f', limits: { memoryMb: 1 } });
    expect(res.body).toMatchObject({ outcome: 'trap', trap: { kind: 'memory_out_of_bounds' } });
  });
});

describe('operational routes', () => {
  it('GET /healthz answers 200 {status: ok}', async () => {
    const res = await server.get('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
    expect(res.headers['x-request-id']).toEqual(expect.any(String));
  });

  it('GET /readyz answers 200 {status: ready} while the pool is up', async () => {
    const res = await server.get('/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready' });
  });

  it('GET /openapi.yaml serves an OpenAPI 3.1 document describing POST /execute', async () => {
    const res = await server.get('/openapi.yaml');
    expect(res.status).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/^application\/yaml/);
    const doc = parseYaml(res.text) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(doc.paths['/execute']?.post).toBeDefined();
  });
});
