// The three body forms (application/json, multipart/form-data, application/wasm) of POST /execute
// and POST /modules against a real server on a real port: one meaning whatever the form (the same
// answers for the same module, function and arguments, query-string arguments converted as the
// contract says), every form's refusals naming the field with the form's prefix, 415 for other
// content types, and 413 for oversized bodies in every form, a multipart one refused before it is
// read whole whether its length is announced or it is streamed chunked.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Readable } from 'node:stream';
import { FormData } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORMS, MULTIPART_TYPE, type Res, type Run, multipartBody, runIn, send, uploadIn, withCustomSection } from './helpers/forms.js';
import { startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const BODY_LIMIT = 64 * 1024;

let server: TestServer;
beforeAll(async () => {
  server = await startServer({ WASMBOX_BODY_LIMIT_BYTES: String(BODY_LIMIT), WASMBOX_TIMEOUT_MS_MAX: '5000' });
});
afterAll(async () => {
  await server?.close();
});

const ADD = new Uint8Array(readFileSync(new URL('../examples/add.wasm', import.meta.url)));

const VALUES = wat(`(module
  (memory (export "mem") 1 4)
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "add64") (param i64 i64) (result i64) local.get 0 local.get 1 i64.add)
  (func (export "id64") (param i64) (result i64) local.get 0)
  (func (export "mulf32") (param f32 f32) (result f32) local.get 0 local.get 1 f32.mul)
  (func (export "isnan32") (param f32) (result i32) local.get 0 local.get 0 f32.ne)
  (func (export "idf64") (param f64) (result f64) local.get 0)
  (func (export "addf64") (param f64 f64) (result f64) local.get 0 local.get 1 f64.add)
  (func (export "div") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s)
  (func (export "sum") (param i32) (result i64) (local i64)
    block
      loop
        local.get 0
        i32.eqz
        br_if 1
        local.get 1
        local.get 0
        i64.extend_i32_u
        i64.add
        local.set 1
        local.get 0
        i32.const 1
        i32.sub
        local.set 0
        br 0
      end
    end
    local.get 1)
  (func (export "noop")))`);

function expectError(res: Res, status: number, code: string): string {
  expect(res.status, res.text).toBe(status);
  expect(res.body).toEqual({ error: { code, message: expect.any(String) }, requestId: expect.any(String) });
  expect(res.headers['x-request-id']).toBe(res.body.requestId);
  return res.body.error.message as string;
}

/** What must be identical across forms: everything but timings and the cache flag. */
function essence(res: Res): unknown {
  const { telemetry, ...rest } = res.body;
  return { status: res.status, ...rest, fuelConsumed: telemetry?.fuelConsumed, fuelLimit: telemetry?.fuelLimit, memoryLimitBytes: telemetry?.memoryLimitBytes };
}

interface Case {
  name: string;
  run: Run;
  expect: Record<string, unknown>;
}

const CASES: Case[] = [
  { name: 'add(5, 10)', run: { function: 'add', args: [5, 10] }, expect: { outcome: 'ok', results: [15] } },
  { name: 'add with a u32 argument', run: { function: 'add', args: [-1, 4294967295] }, expect: { outcome: 'ok', results: [-2] } },
  { name: 'add with an integer string', run: { function: 'add', args: ['7', 8], queryArgs: ['7', '8'] }, expect: { outcome: 'ok', results: [15] } },
  {
    name: 'add64 beyond 2^53',
    run: { function: 'add64', args: ['9007199254740993', '1'], queryArgs: ['9007199254740993', '1'] },
    expect: { outcome: 'ok', results: ['9007199254740994'] },
  },
  {
    name: 'id64 of 2^64-1 (wraps to -1)',
    run: { function: 'id64', args: ['18446744073709551615'], queryArgs: ['18446744073709551615'] },
    expect: { outcome: 'ok', results: ['-1'] },
  },
  {
    name: 'id64 of -2^63',
    run: { function: 'id64', args: ['-9223372036854775808'], queryArgs: ['-9223372036854775808'] },
    expect: { outcome: 'ok', results: ['-9223372036854775808'] },
  },
  { name: 'id64 of a safe integer', run: { function: 'id64', args: [-42] }, expect: { outcome: 'ok', results: ['-42'] } },
  { name: 'mulf32(1.5, 2.25)', run: { function: 'mulf32', args: [1.5, 2.25] }, expect: { outcome: 'ok', results: [3.375] } },
  { name: 'mulf32(0.1, 3) rounds to f32', run: { function: 'mulf32', args: [0.1, 3] }, expect: { outcome: 'ok', results: [0.3] } },
  { name: 'isnan32(NaN)', run: { function: 'isnan32', args: ['NaN'], queryArgs: ['NaN'] }, expect: { outcome: 'ok', results: [1] } },
  { name: 'isnan32(1e3)', run: { function: 'isnan32', args: [1000], queryArgs: ['1e3'] }, expect: { outcome: 'ok', results: [0] } },
  { name: 'idf64(-0)', run: { function: 'idf64', args: ['-0'], queryArgs: ['-0'] }, expect: { outcome: 'ok', results: ['-0'] } },
  { name: 'idf64(Infinity)', run: { function: 'idf64', args: ['Infinity'], queryArgs: ['Infinity'] }, expect: { outcome: 'ok', results: ['Infinity'] } },
  { name: 'idf64(NaN)', run: { function: 'idf64', args: ['NaN'], queryArgs: ['NaN'] }, expect: { outcome: 'ok', results: ['NaN'] } },
  { name: 'addf64(-Infinity, 1)', run: { function: 'addf64', args: ['-Infinity', 1], queryArgs: ['-Infinity', '1'] }, expect: { outcome: 'ok', results: ['-Infinity'] } },
  { name: 'addf64(0.5, -2.25)', run: { function: 'addf64', args: [0.5, -2.25] }, expect: { outcome: 'ok', results: [-1.75] } },
  { name: 'sum(1000), a loop', run: { function: 'sum', args: [1000] }, expect: { outcome: 'ok', results: ['500500'] } },
  { name: 'noop()', run: { function: 'noop' }, expect: { outcome: 'ok', results: [] } },
  {
    name: 'div(1, 0) traps',
    run: { function: 'div', args: [1, 0] },
    expect: { outcome: 'trap', trap: { kind: 'integer_divide_by_zero', message: expect.any(String) } },
  },
  {
    name: 'sum(1000000) with fuel 5000 runs out',
    run: { function: 'sum', args: [1000000], limits: { fuel: 5000, memoryMb: 2, timeoutMs: 3000 } },
    expect: { outcome: 'fuel_exhausted' },
  },
];

describe('POST /execute: one meaning in every form', () => {
  for (const c of CASES) {
    it(`${c.name}: the same answer as JSON, multipart and application/wasm`, async () => {
      const answers: Record<string, unknown> = {};
      for (const form of FORMS) {
        const res = await runIn(server.url, form, { ...c.run, module: VALUES });
        expect(res.status, `${form}: ${res.text}`).toBe(200);
        expect(res.body, form).toMatchObject(c.expect);
        answers[form] = essence(res);
      }
      expect(answers.multipart).toEqual(answers.json);
      expect(answers.wasm).toEqual(answers.json);
      const json = answers.json as { fuelConsumed: number; moduleId: string };
      expect(json.fuelConsumed).toBeGreaterThanOrEqual(0);
      if (c.run.limits?.fuel) expect(json.fuelConsumed).toBe(c.run.limits.fuel);
    });
  }

  it('the limits given as fields or query parameters are those of the JSON limits object', async () => {
    const limits = { fuel: 12345, memoryMb: 3, timeoutMs: 2000 };
    for (const form of FORMS) {
      const res = await runIn(server.url, form, { module: VALUES, function: 'add', args: [1, 2], limits });
      expect(res.status, res.text).toBe(200);
      expect(res.body.telemetry).toMatchObject({ fuelLimit: 12345, memoryLimitBytes: 3 * 1048576 });
    }
  });

  it('runs a stored module by moduleId in JSON and multipart with the same answer as sending it', async () => {
    const up = await uploadIn(server.url, 'wasm', VALUES);
    expect([200, 201]).toContain(up.status);
    const moduleId = up.body.moduleId as string;
    const sent = await runIn(server.url, 'wasm', { module: VALUES, function: 'add64', queryArgs: ['9007199254740993', '2'] });
    for (const form of ['json', 'multipart'] as const) {
      const res = await runIn(server.url, form, { moduleId, function: 'add64', args: ['9007199254740993', '2'] });
      expect(res.status, res.text).toBe(200);
      expect(res.body.moduleId).toBe(moduleId);
      expect(res.body.telemetry.moduleCached).toBe(true);
      expect(essence(res)).toEqual(essence(sent));
    }
  });

  it('calls _start when no function is given, in every form', async () => {
    const start = wat(`(module (func (export "_start")))`);
    for (const form of FORMS) {
      const res = await runIn(server.url, form, { module: start });
      expect(res.status, `${form}: ${res.text}`).toBe(200);
      expect(res.body).toMatchObject({ outcome: 'ok', results: [] });
    }
  });

  it('converts query arguments: integers beyond 2^53 stay exact strings, so an i32 refuses them', async () => {
    const res = await runIn(server.url, 'wasm', { module: VALUES, function: 'add', queryArgs: ['9007199254740993', '1'] });
    expect(expectError(res, 400, 'invalid_arguments')).toContain('9007199254740993');
    // A float takes numbers and the four special strings only, as in JSON.
    const f = await runIn(server.url, 'wasm', { module: VALUES, function: 'idf64', queryArgs: ['9007199254740993'] });
    expectError(f, 400, 'invalid_arguments');
    const j = await runIn(server.url, 'json', { module: VALUES, function: 'idf64', args: ['9007199254740993'] });
    expectError(j, 400, 'invalid_arguments');
    // A non-number is a string, refused by a numeric signature with the signature shown.
    const w = await runIn(server.url, 'wasm', { module: VALUES, function: 'add', queryArgs: ['five', '1'] });
    expect(expectError(w, 400, 'invalid_arguments')).toContain('add(i32, i32) -> i32');
  });
});

describe('POST /modules: every form stores the same module', () => {
  for (const first of FORMS) {
    it(`${first} stores (201), the other forms find it stored (200) with the same description`, async () => {
      const module = withCustomSection(ADD, `first-${first}`, 16);
      const created = await uploadIn(server.url, first, module);
      expect(created.status, created.text).toBe(201);
      expect(created.headers.location).toBe(`/modules/${created.body.moduleId}`);
      expect(created.body).toMatchObject({ size: module.length, exports: [{ name: 'add', params: ['i32', 'i32'], results: ['i32'] }] });
      for (const form of FORMS.filter((f) => f !== first)) {
        const again = await uploadIn(server.url, form, module);
        expect(again.status, `${form}: ${again.text}`).toBe(200);
        expect(again.body).toEqual(created.body);
        expect(again.headers.location).toBe(created.headers.location);
      }
    });
  }
});

/** Opens a raw connection, writes `head`, then `chunks()` until it returns null or the server
 *  answers; reports how much of the body had been written when the answer began. */
function rawPost(
  base: string,
  head: string,
  next: () => Buffer | null,
  chunked: boolean,
): Promise<{ sentAtAnswer: number; sent: number; response: string; closed: boolean }> {
  const { port, hostname } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let sent = 0;
    let sentAtAnswer = -1;
    let response = '';
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ sentAtAnswer, sent, response, closed });
    };
    const timer = setTimeout(() => {
      done = true;
      socket.destroy();
      reject(new Error(`no complete answer; sent ${sent} bytes; got ${JSON.stringify(response.slice(0, 200))}`));
    }, 20_000);
    socket.on('data', (d) => {
      if (sentAtAnswer < 0) sentAtAnswer = sent;
      response += d.toString('utf8');
      const [headers, body = ''] = response.split('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(headers ?? '');
      if (length && Buffer.byteLength(body) >= Number(length[1])) {
        // Wait briefly to see whether the server closes the connection.
        setTimeout(() => {
          clearTimeout(timer);
          finish(socket.readableEnded || socket.destroyed);
        }, 300);
      }
    });
    socket.on('end', () => {
      clearTimeout(timer);
      finish(true);
    });
    socket.on('error', () => {
      /* a write after the server closed: the answer (if any) is already in */
    });
    socket.write(head);
    const pump = (): void => {
      if (done || socket.destroyed || sentAtAnswer >= 0) return;
      const c = next();
      if (!c) {
        if (chunked) socket.write('0\r\n\r\n');
        return;
      }
      sent += c.length;
      socket.write(chunked ? Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]) : c);
      setTimeout(pump, 1);
    };
    pump();
  });
}

function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
}

function bodyOf(response: string): any {
  return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4));
}

describe('413 payload_too_large: a body over WASMBOX_BODY_LIMIT_BYTES in every form', () => {
  const BIG = withCustomSection(ADD, 'big', BODY_LIMIT + 1024);

  for (const route of ['/execute', '/modules'] as const) {
    for (const form of FORMS) {
      it(`${route}, ${form}`, async () => {
        const res = route === '/execute' ? await runIn(server.url, form, { module: BIG, function: 'add', args: [1, 2] }) : await uploadIn(server.url, form, BIG);
        expect(expectError(res, 413, 'payload_too_large')).toContain(String(BODY_LIMIT));
      });
    }

    it(`${route}, multipart announcing a larger content-length: refused before any of the body is sent`, async () => {
      const total = BODY_LIMIT * 64;
      const r = await rawPost(
        server.url,
        `POST ${route} HTTP/1.1\r\nHost: test\r\nContent-Type: ${MULTIPART_TYPE}\r\nContent-Length: ${total}\r\nX-Request-Id: precheck-1\r\n\r\n`,
        () => null, // the body is never sent: the answer must come without it
        false,
      );
      expect(statusOf(r.response), r.response).toBe(413);
      expect(r.sent).toBe(0);
      expect(r.response).toMatch(/\r\nx-request-id: precheck-1\r\n/i);
      expect(bodyOf(r.response)).toEqual({ error: { code: 'payload_too_large', message: expect.stringContaining(String(BODY_LIMIT)) }, requestId: 'precheck-1' });
      expect(r.closed).toBe(true);
    });

    it(`${route}, multipart streamed chunked without a content-length: refused soon after the limit, not read whole`, async () => {
      const head = Buffer.from(`--wasmbox-test-boundary-7d1f\r\nContent-Disposition: form-data; name="module"; filename="m.wasm"\r\nContent-Type: application/wasm\r\n\r\n`);
      const CHUNK = 4096;
      const CHUNKS = (BODY_LIMIT * 64) / CHUNK; // 4 MiB, never fully sent
      let i = -1;
      const r = await rawPost(
        server.url,
        `POST ${route} HTTP/1.1\r\nHost: test\r\nContent-Type: ${MULTIPART_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n`,
        () => (++i === 0 ? head : i <= CHUNKS ? Buffer.alloc(CHUNK, 0x2a) : null),
        true,
      );
      expect(statusOf(r.response), r.response).toBe(413);
      expect(bodyOf(r.response).error.code).toBe('payload_too_large');
      // The answer came while the body was still being sent, a little past the limit.
      expect(r.sentAtAnswer).toBeGreaterThan(BODY_LIMIT);
      expect(r.sentAtAnswer).toBeLessThan(BODY_LIMIT * 8);
      expect(r.closed).toBe(true);
    });

    it(`${route}, multipart streamed by undici (chunked): 413 before it is all sent`, async () => {
      const head = Buffer.from(`--wasmbox-test-boundary-7d1f\r\nContent-Disposition: form-data; name="module"; filename="m.wasm"\r\nContent-Type: application/wasm\r\n\r\n`);
      const TOTAL = BODY_LIMIT * 64; // 4 MiB
      let produced = 0;
      async function* body(): AsyncGenerator<Uint8Array> {
        yield head;
        while (produced < TOTAL) {
          produced += 4096;
          yield Buffer.alloc(4096, 0x2a);
          await new Promise((r) => setTimeout(r, 1));
        }
        yield Buffer.from('\r\n--wasmbox-test-boundary-7d1f--\r\n');
      }
      // undici sends a stream chunked (no content-length) and stops reading it once answered.
      const res = await send(`${server.url}${route}`, 'POST', Readable.from(body()), { 'content-type': MULTIPART_TYPE });
      expect(expectError(res, 413, 'payload_too_large')).toContain(String(BODY_LIMIT));
      expect(res.headers.connection).toBe('close');
      expect(produced).toBeLessThan(TOTAL / 4);
    });
  }

  it('a multipart text field over 1 MiB is 413 (within a body the server takes)', async () => {
    const s = await startServer({ WASMBOX_BODY_LIMIT_BYTES: String(4 * 1024 * 1024) });
    try {
      const body = multipartBody([
        { name: 'module', filename: 'add.wasm', data: ADD },
        { name: 'function', value: 'x'.repeat(1024 * 1024 + 10) },
      ]);
      const res = await send(`${s.url}/execute`, 'POST', body, { 'content-type': MULTIPART_TYPE });
      expect(expectError(res, 413, 'payload_too_large')).toContain('form.function');
    } finally {
      await s.close();
    }
  });

  it('the server stays healthy after the refusals', async () => {
    const res = await runIn(server.url, 'multipart', { module: ADD, function: 'add', args: [2, 3] });
    expect(res.status, res.text).toBe(200);
    expect(res.body.results).toEqual([5]);
  });
});

describe('415 unsupported_media_type on both routes', () => {
  for (const route of ['/execute', '/modules'] as const) {
    for (const type of ['text/plain', 'application/octet-stream', 'application/x-www-form-urlencoded']) {
      it(`${route}: ${type}`, async () => {
        const res = await send(`${server.url}${route}`, 'POST', type === 'text/plain' ? 'hello' : Buffer.from(ADD), { 'content-type': type });
        const message = expectError(res, 415, 'unsupported_media_type');
        expect(message).toContain(type);
        expect(message).toMatch(/application\/json, multipart\/form-data or application\/wasm/);
      });
    }
  }
});

describe('form errors name the field with the form prefix', () => {
  async function multipart(route: string, parts: Parameters<typeof multipartBody>[0]): Promise<Res> {
    return send(`${server.url}${route}`, 'POST', multipartBody(parts), { 'content-type': MULTIPART_TYPE });
  }
  const file = { name: 'module', filename: 'add.wasm', data: ADD };

  it('multipart args that is not a JSON array names form.args', async () => {
    for (const args of ['{"a":1}', '5', '"x"', 'null']) {
      const res = await multipart('/execute', [file, { name: 'function', value: 'add' }, { name: 'args', value: args }]);
      expect(expectError(res, 400, 'invalid_request'), args).toMatch(/^form\.args: must be an array/);
    }
    for (const args of ['5,10', '[5,10', '']) {
      const res = await multipart('/execute', [file, { name: 'function', value: 'add' }, { name: 'args', value: args }]);
      expect(expectError(res, 400, 'invalid_request'), args).toMatch(/^form\.args: must be JSON/);
    }
  });

  it('query fuel=abc names query.fuel; multipart fuel=abc names form.fuel; JSON names body.limits.fuel', async () => {
    const q = await send(`${server.url}/execute?function=add&args=1&args=2&fuel=abc`, 'POST', ADD, { 'content-type': 'application/wasm' });
    expect(expectError(q, 400, 'invalid_request')).toMatch(/^query\.fuel: /);
    const m = await multipart('/execute', [file, { name: 'function', value: 'add' }, { name: 'fuel', value: 'abc' }]);
    expect(expectError(m, 400, 'invalid_request')).toMatch(/^form\.fuel: /);
    const j = await runIn(server.url, 'json', { module: ADD, function: 'add', args: [1, 2], limits: { fuel: 'abc' as unknown as number } });
    expect(expectError(j, 400, 'invalid_request')).toMatch(/^body\.limits\.fuel: /);
    // Not a whole number, in each form.
    const q2 = await send(`${server.url}/execute?function=add&memoryMb=1.5`, 'POST', ADD, { 'content-type': 'application/wasm' });
    expect(expectError(q2, 400, 'invalid_request')).toMatch(/^query\.memoryMb: must be a decimal integer/);
    const m2 = await multipart('/execute', [file, { name: 'timeoutMs', value: '2.5' }]);
    expect(expectError(m2, 400, 'invalid_request')).toMatch(/^form\.timeoutMs: must be a decimal integer/);
  });

  it('a limit out of range is limit_out_of_range in every form', async () => {
    for (const form of FORMS) {
      const res = await runIn(server.url, form, { module: ADD, function: 'add', args: [1, 2], limits: { timeoutMs: 999_999 } });
      expect(expectError(res, 400, 'limit_out_of_range'), form).toContain('5000');
    }
  });

  it('a query field given twice is refused', async () => {
    const res = await send(`${server.url}/execute?function=add&function=add&args=1&args=2`, 'POST', ADD, { 'content-type': 'application/wasm' });
    expect(expectError(res, 400, 'invalid_request')).toMatch(/^query\.function: must be given once/);
    const m = await multipart('/execute', [file, { name: 'function', value: 'add' }, { name: 'function', value: 'add' }]);
    expect(expectError(m, 400, 'invalid_request')).toMatch(/^form\.function: must be given once/);
  });

  it('an unknown field is refused in every form, on both routes', async () => {
    const q = await send(`${server.url}/execute?function=add&verbose=1`, 'POST', ADD, { 'content-type': 'application/wasm' });
    expect(expectError(q, 400, 'invalid_request')).toMatch(/^query\.verbose: unknown field/);
    const m = await multipart('/execute', [file, { name: 'verbose', value: '1' }]);
    expect(expectError(m, 400, 'invalid_request')).toMatch(/^form\.verbose: unknown field/);
    const j = await send(`${server.url}/execute`, 'POST', JSON.stringify({ module: Buffer.from(ADD).toString('base64'), verbose: 1 }), {
      'content-type': 'application/json',
    });
    expect(expectError(j, 400, 'invalid_request')).toMatch(/^body: unknown field "verbose"/);
    const otherFile = await multipart('/execute', [{ name: 'extra', filename: 'x.wasm', data: ADD }, file]);
    expect(expectError(otherFile, 400, 'invalid_request')).toMatch(/^form\.extra: unknown file part/);
    const twoFiles = await multipart('/modules', [file, file]);
    expect(expectError(twoFiles, 400, 'invalid_request')).toMatch(/^form\.module: give one file part/);

    // POST /modules takes only the module: the run fields are unknown there.
    const mq = await send(`${server.url}/modules?function=add`, 'POST', ADD, { 'content-type': 'application/wasm' });
    expect(expectError(mq, 400, 'invalid_request')).toMatch(/^query\.function: unknown field/);
    const mm = await multipart('/modules', [file, { name: 'function', value: 'add' }]);
    expect(expectError(mm, 400, 'invalid_request')).toMatch(/^form\.function: unknown field/);
    const mj = await send(`${server.url}/modules`, 'POST', JSON.stringify({ module: Buffer.from(ADD).toString('base64'), function: 'add' }), {
      'content-type': 'application/json',
    });
    expect(expectError(mj, 400, 'invalid_request')).toMatch(/^body: unknown field "function"/);
  });

  it('both module and moduleId are refused; neither is refused', async () => {
    const moduleId = `sha256:${'a'.repeat(64)}`;
    const j = await send(`${server.url}/execute`, 'POST', JSON.stringify({ module: Buffer.from(ADD).toString('base64'), moduleId, function: 'add' }), {
      'content-type': 'application/json',
    });
    expect(expectError(j, 400, 'invalid_request')).toMatch(/exactly one of "module".*"moduleId"/);
    const m = await multipart('/execute', [file, { name: 'moduleId', value: moduleId }]);
    expect(expectError(m, 400, 'invalid_request')).toMatch(/^form\.module: exactly one of/);
    const none = await multipart('/execute', [{ name: 'function', value: 'add' }]);
    expect(expectError(none, 400, 'invalid_request')).toMatch(/^form\.module: exactly one of/);
    const jNone = await send(`${server.url}/execute`, 'POST', JSON.stringify({ function: 'add' }), { 'content-type': 'application/json' });
    expect(expectError(jNone, 400, 'invalid_request')).toMatch(/^body\.module: exactly one of/);
    const badId = await multipart('/execute', [{ name: 'moduleId', value: 'sha256:xyz' }]);
    expect(expectError(badId, 400, 'invalid_request')).toMatch(/^form\.moduleId: /);
    const modulesNone = await multipart('/modules', []);
    expect(expectError(modulesNone, 400, 'invalid_request')).toMatch(/^form\.module: /);
    const moduleAsText = await multipart('/modules', [{ name: 'module', value: 'AGFzbQ==' }]);
    expect(expectError(moduleAsText, 400, 'invalid_request')).toMatch(/^form\.module: must be a file part/);
  });

  it('an empty module is refused in every form, on both routes', async () => {
    for (const route of ['/execute', '/modules']) {
      const w = await send(`${server.url}${route}`, 'POST', new Uint8Array(0), { 'content-type': 'application/wasm' });
      expect(expectError(w, 400, 'invalid_request')).toMatch(/empty/);
      const m = await multipart(route, [{ name: 'module', filename: 'empty.wasm', data: new Uint8Array(0) }]);
      expect(expectError(m, 400, 'invalid_request')).toMatch(/^form\.module: .*empty/);
      const j = await send(`${server.url}${route}`, 'POST', JSON.stringify({ module: '' }), { 'content-type': 'application/json' });
      expect(expectError(j, 400, 'invalid_request')).toMatch(/^body\.module: must not be empty/);
      const jEmpty = await send(`${server.url}${route}`, 'POST', '', { 'content-type': 'application/json' });
      expectError(jEmpty, 400, 'invalid_request');
    }
  });

  it('not a wasm module is invalid_module in every form, on both routes', async () => {
    const junk = new Uint8Array(Buffer.from('definitely not wasm'));
    for (const form of FORMS) {
      const e = await runIn(server.url, form, { module: junk, function: 'f' });
      expectError(e, 400, 'invalid_module');
      const u = await uploadIn(server.url, form, junk);
      expectError(u, 400, 'invalid_module');
    }
  });

  it('a malformed multipart body is invalid_request, not a server error', async () => {
    // A file part cut off before its closing boundary.
    const cut = Buffer.from(`--wasmbox-test-boundary-7d1f\r\nContent-Disposition: form-data; name="module"; filename="m.wasm"\r\n\r\n${'x'.repeat(500)}`);
    for (const route of ['/execute', '/modules']) {
      const res = await send(`${server.url}${route}`, 'POST', cut, { 'content-type': MULTIPART_TYPE });
      expect(expectError(res, 400, 'invalid_request')).toMatch(/multipart/);
    }
    const noBoundary = await send(`${server.url}/execute`, 'POST', multipartBody([{ name: 'function', value: 'add' }]), { 'content-type': 'multipart/form-data' });
    expect(noBoundary.status, noBoundary.text).toBe(400);
    expect(noBoundary.body.error.code).toBe('invalid_request');
  });

  it('undici FormData with a Blob file part is the multipart form', async () => {
    const fd = new FormData();
    fd.append('module', new Blob([ADD]), 'add.wasm');
    fd.append('function', 'add');
    fd.append('args', '[5,10]');
    fd.append('fuel', '1000');
    const res = await send(`${server.url}/execute`, 'POST', fd);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ outcome: 'ok', results: [15], telemetry: { fuelConsumed: 4, fuelLimit: 1000 } });
  });
});
