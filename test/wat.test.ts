// WebAssembly text: a JSON "wat" field, or a module body (application/wasm, a multipart file part,
// POST /modules) that is text rather than binary, is compiled on a preparation thread and run or
// stored under the content address of the binary. Against a real server on a real port.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { FormData } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send } from './helpers/forms.js';
import { b64, startServer, type TestServer } from './helpers/server.js';

const BODY_LIMIT = 64 * 1024;
const ADD_WAT = readFileSync(new URL('../examples/add.wat', import.meta.url), 'utf8');
const ADD_WASM = readFileSync(new URL('../examples/add.wasm', import.meta.url));
/** examples/add.wasm is wat2wasm's output for add.wat: the id a text upload must get. */
const ADD_ID = `sha256:${createHash('sha256').update(ADD_WASM).digest('hex')}`;

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ WASMBOX_BODY_LIMIT_BYTES: String(BODY_LIMIT) });
});
afterAll(async () => {
  await server?.close();
});

function expectRefusal(res: { status: number; body: any }, status: number, code: string): string {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body).toEqual({ error: { code, message: expect.any(String) }, requestId: expect.any(String) });
  return res.body.error.message as string;
}

describe('running WebAssembly text', () => {
  it('JSON "wat": runs add(5, 10) = 15 under the content address of the compiled binary', async () => {
    const res = await server.execute({ wat: ADD_WAT, function: 'add', args: [5, 10] });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.results).toEqual([15]);
    expect(res.body.moduleId).toBe(ADD_ID);
  });

  it('the same text sent again is not compiled again: its prepared module comes from the cache (moduleCached)', async () => {
    // Each compilation and each preparation takes a turn of the small-module preparation lane.
    const laneTurns = async (): Promise<number> => {
      const line = (await server.get('/metrics')).text.split('\n').find((l) => l.startsWith('wasmbox_queue_wait_seconds_count{lane="prepare-small"}'));
      return Number(line?.split(' ').at(-1) ?? 0);
    };
    const text = '(module (func (export "twice") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2))))';
    const before = await laneTurns();
    const first = await server.execute({ wat: text, function: 'twice', args: [21] });
    const afterFirst = await laneTurns();
    const second = await server.execute({ wat: text, function: 'twice', args: [4] });
    expect([first.body.results, second.body.results]).toEqual([[42], [8]]);
    expect(afterFirst - before).toBe(2); // compiled, then prepared
    expect((await laneTurns()) - afterFirst).toBe(0);
    expect(first.body.telemetry.moduleCached).toBe(false);
    expect(second.body.telemetry.moduleCached).toBe(true);
    expect(second.body.moduleId).toBe(first.body.moduleId);
  });

  it('application/wasm: a body that is text is compiled, not refused', async () => {
    const res = await send(`${server.url}/execute?function=add&args=5&args=10`, 'POST', ADD_WAT, { 'content-type': 'application/wasm' });
    expect(res.status, res.text).toBe(200);
    expect(res.body.results).toEqual([15]);
    expect(res.body.moduleId).toBe(ADD_ID);
  });

  it('multipart/form-data: a module file part that is text is compiled', async () => {
    const form = new FormData();
    form.append('module', new Blob([ADD_WAT]), 'add.wat');
    form.append('function', 'add');
    form.append('args', '[5,10]');
    const res = await send(`${server.url}/execute`, 'POST', form);
    expect(res.status, res.text).toBe(200);
    expect(res.body.results).toEqual([15]);
  });

  it('text starting with a byte-order mark, comments and blank lines is still text', async () => {
    const text = `\uFEFF;; a comment\n(; a block (; nested ;) comment ;)\n\n  ${ADD_WAT}`;
    const res = await send(`${server.url}/execute?function=add&args=1&args=2`, 'POST', text, { 'content-type': 'application/wasm' });
    expect(res.status, res.text).toBe(200);
    expect(res.body.results).toEqual([3]);
  });

  it('post-MVP features V8 runs compile from text (multi-value, bulk memory, SIMD)', async () => {
    const res = await server.execute({
      wat: `(module (memory 1)
        (func (export "swap") (param i32 i32) (result i32 i32) (local.get 1) (local.get 0))
        (func (export "fill") (result i32) (memory.fill (i32.const 0) (i32.const 7) (i32.const 16)) (i32.load8_u (i32.const 15)))
        (func (export "lane") (result i32) (i32x4.extract_lane 2 (v128.const i32x4 1 2 3 4))))`,
      calls: [{ function: 'swap', args: [1, 2] }, { function: 'fill' }, { function: 'lane' }],
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.calls.map((c: any) => c.results)).toEqual([[2, 1], [7], [3]]);
  });
});

describe('text that does not compile is invalid_module with its line and column', () => {
  it('a syntax error', async () => {
    const res = await server.execute({ wat: '(module\n  (func (export "f") (result i32)\n    i32.const x))', function: 'f' });
    expect(expectRefusal(res, 400, 'invalid_module')).toBe(
      'the WebAssembly text does not compile: line 3, column 15: unexpected token "x", expected a numeric literal (e.g. 123, -45, 6.7e8).',
    );
  });

  it('a type error found by validation', async () => {
    const res = await send(`${server.url}/execute?function=f`, 'POST', '(module\n  (func (export "f") (result i32)\n    i32.add))', { 'content-type': 'application/wasm' });
    const message = expectRefusal(res, 400, 'invalid_module');
    expect(message).toMatch(/^the WebAssembly text does not compile: line 3, column 5: type mismatch in i32\.add/);
  });

  it('an unknown name', async () => {
    const res = await server.post('/modules', { wat: '(module (func (export "f") (call $missing)))' });
    expect(expectRefusal(res, 400, 'invalid_module')).toMatch(/^the WebAssembly text does not compile: line 1, column \d+: undefined function variable "\$missing"/);
  });

  it('a huge error report is cut to a bounded message', async () => {
    const res = await server.execute({ wat: `(module ${'(func (i32.add)) '.repeat(500)})` });
    expect(expectRefusal(res, 400, 'invalid_module').length).toBeLessThan(600);
  });
});

describe('storing WebAssembly text', () => {
  it('POST /modules with "wat" stores the compiled binary under its content address, and it runs by id', async () => {
    const res = await server.post('/modules', { wat: ADD_WAT });
    expect([200, 201]).toContain(res.status);
    expect(res.body).toMatchObject({ moduleId: ADD_ID, size: ADD_WASM.length, exports: [{ name: 'add', params: ['i32', 'i32'], results: ['i32'] }] });
    const run = await server.execute({ moduleId: ADD_ID, function: 'add', args: [5, 10] });
    expect(run.body.results).toEqual([15]);
    // The same module as a binary is the same stored module.
    const again = await server.post('/modules', { module: b64(ADD_WASM) });
    expect(again.status).toBe(200);
    expect(again.body.moduleId).toBe(ADD_ID);
  });

  it('POST /modules with a text body (application/wasm) stores the binary', async () => {
    const text = '(module (func (export "seven") (result i32) (i32.const 7)))';
    const res = await send(`${server.url}/modules`, 'POST', text, { 'content-type': 'application/wasm' });
    expect(res.status, res.text).toBe(201);
    expect(res.body.exports).toEqual([{ name: 'seven', params: [], results: ['i32'] }]);
    expect(res.body.size).toBeLessThan(text.length);
  });
});

describe('limits and refusals', () => {
  it('text and a module together are invalid_request', async () => {
    const message = expectRefusal(await server.execute({ wat: ADD_WAT, module: b64(ADD_WASM), function: 'add', args: [1, 2] }), 400, 'invalid_request');
    expect(message).toContain('exactly one of "module", "moduleId" and "wat"');
  });

  it('"wat" that is not a string is invalid_request naming the field', async () => {
    expect(expectRefusal(await server.execute({ wat: 42 }), 400, 'invalid_request')).toContain('body.wat: must be a string of WebAssembly text');
  });

  it('text over the body limit is payload_too_large, whatever the form', async () => {
    const big = `(module ${';; padding\n'.repeat(BODY_LIMIT / 10)} (func (export "f")))`;
    expectRefusal(await send(`${server.url}/execute?function=f`, 'POST', big, { 'content-type': 'application/wasm' }), 413, 'payload_too_large');
    expectRefusal(await server.execute({ wat: big, function: 'f' }), 413, 'payload_too_large');
  });

  it('text nested deeper than the text compiler takes is module_too_complex, and text after it still compiles', async () => {
    // wabt parses recursively on a small stack: folded expressions ~200 deep trap inside it and
    // unfolded blocks ~200 deep make it loop; both are refused before they reach it.
    const folded = `(module (func (export "f") (result i32) ${'(i32.add (i32.const 1) '.repeat(300)}(i32.const 0)${')'.repeat(300)}))`;
    const flat = `(module (func (export "f") ${'block '.repeat(300)}${'end '.repeat(300)}))`;
    for (const text of [folded, flat]) {
      const message = expectRefusal(await server.execute({ wat: text, function: 'f' }), 422, 'module_too_complex');
      expect(message).toMatch(/nests blocks and expressions 30\d deep/);
    }
    // 100 deep is fine, and the compiler is intact.
    const ok = `(module (func (export "f") (result i32) ${'(i32.add (i32.const 1) '.repeat(100)}(i32.const 0)${')'.repeat(100)}))`;
    const res = await server.execute({ wat: ok, function: 'f' });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.results).toEqual([100]);
  });

  it('a component (component-model text) is refused as invalid_module, not compiled', async () => {
    const res = await send(`${server.url}/modules`, 'POST', '(component)', { 'content-type': 'application/wasm' });
    expect(expectRefusal(res, 400, 'invalid_module')).toMatch(/component text format/);
  });
});

describe('compiling text is bounded by the preparation limit', () => {
  let slow: TestServer;
  beforeAll(async () => {
    slow = await startServer({ WASMBOX_PREPARE_TIMEOUT_MS: '10', WASMBOX_BODY_LIMIT_BYTES: String(8 * 1024 * 1024) });
  });
  afterAll(async () => {
    await slow?.close();
  });

  it('text that takes longer than WASMBOX_PREPARE_TIMEOUT_MS to compile is module_too_complex (422) giving the limit', async () => {
    // 60,000 functions: far more than 10 ms of parsing on any machine.
    const funcs = Array.from({ length: 60_000 }, (_, i) => `(func $f${i} (result i32) (i32.add (i32.const ${i}) (i32.const 1)))`).join('\n');
    const res = await slow.execute({ wat: `(module ${funcs} (export "f" (func $f0)))`, function: 'f' });
    expect(expectRefusal(res, 422, 'module_too_complex')).toContain('preparation limit of 10 ms');
    // The server goes on serving text.
    const ok = await slow.execute({ wat: '(module (func (export "f") (result i32) (i32.const 1)))', function: 'f' });
    expect([200, 422]).toContain(ok.status);
  });
});
