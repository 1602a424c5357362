// WASI preview1 programs end to end, through the real server on a real port: the committed C test
// programs (test/wasi/programs) run with the request's args, env and stdin; their stdout, stderr
// and exit code come back in the response; output caps, fuel per byte and the deadline hold;
// the refusals (imports, request fields) are 4xx naming what is wrong; the three body forms agree;
// and each program prints what the same C source built natively with gcc prints.

import { FormData } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WASI_COSTS } from '../dist/src/wasi/preview1.js';
import { send } from './helpers/forms.js';
import { buildNative, GCC, NO_GCC_MESSAGE, type NativeBuilds, program } from './helpers/native.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const STDOUT_MAX = 4096;
const STDERR_MAX = 1024;
/** Set in this process before the server starts: a guest must never see it. */
const SECRET_NAME = 'WASMBOX_E2E_SERVER_SECRET';
const SECRET_VALUE = 'server-only-value-7f3a9c';

const HELLO = program('hello');
const CAT = program('cat');
const ARGS_ENV = program('args-env');
const FS_ESCAPE = program('fs-escape');
const CLOCK_RANDOM = program('clock-random');
const EXIT_CODE = program('exit-code');
const SPAM = program('spam');
const ALL_IMPORTS = program('all-imports');
const enc = new TextEncoder();

let server: TestServer;
beforeAll(async () => {
  process.env[SECRET_NAME] = SECRET_VALUE;
  server = await startServer({
    WASMBOX_WASI_STDOUT_MAX_BYTES: String(STDOUT_MAX),
    WASMBOX_WASI_STDERR_MAX_BYTES: String(STDERR_MAX),
  });
});
afterAll(async () => {
  await server?.close();
  delete process.env[SECRET_NAME];
});

interface Wasi {
  args?: string[];
  env?: Record<string, unknown>;
  stdin?: string;
  stdinBase64?: string;
}

/** POST /execute (JSON) of a WASI program; never a 5xx. */
async function runWasi(module: Uint8Array, wasi: Wasi = {}, limits?: Record<string, number>) {
  const res = await server.execute({ module: b64(module), wasi, ...(limits && { limits }) });
  expect(res.status, JSON.stringify(res.body)).toBeLessThan(500);
  return res;
}

/** The same, expecting 200. */
async function ran(module: Uint8Array, wasi: Wasi = {}, limits?: Record<string, number>) {
  const res = await runWasi(module, wasi, limits);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** The C programs print text that is the same on every run (no timings): compare it whole. */
const spamLines = (n: number): string => Array.from({ length: n }, (_, i) => `spam ${i}\n`).join('');

describe('programs through POST /execute', () => {
  it('hello: stdout and stderr exactly, exit code 0, outcome ok', async () => {
    const body = await ran(HELLO, { args: ['hello'] });
    expect(body).toMatchObject({
      outcome: 'ok',
      results: [],
      exitCode: 0,
      stdout: 'Hello, world!\nunicode: héllo wörld ✓\n',
      stderr: 'to stderr\n',
      stdoutTruncated: false,
      stderrTruncated: false,
    });
    expect(body.telemetry.fuelConsumed).toBeGreaterThan(0);
    expect(body.telemetry.fuelConsumed).toBeLessThanOrEqual(body.telemetry.fuelLimit);
    expect(body.telemetry.memoryPeakBytes).toBeGreaterThan(0);
  });

  it('cat echoes stdin given as text (UTF-8), and counts its bytes on stderr', async () => {
    const text = 'hello from stdin\nhéllo ✓ 🎉\n\ttabs and \\ backslashes "quoted"\n';
    const body = await ran(CAT, { args: ['cat'], stdin: text });
    expect(body).toMatchObject({ outcome: 'ok', exitCode: 0, stdout: text, stdoutTruncated: false });
    expect(body.stderr).toBe(`cat: ${enc.encode(text).length} bytes\n`);
  });

  it('cat echoes stdin given as stdinBase64: arbitrary bytes arrive exactly', async () => {
    // Every byte value: the guest receives all 256 (its count on stderr), and stdout is what
    // those bytes decode to as UTF-8 (the response carries text; invalid sequences are U+FFFD).
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const body = await ran(CAT, { args: ['cat'], stdinBase64: b64(bytes) });
    expect(body).toMatchObject({ outcome: 'ok', exitCode: 0, stderr: 'cat: 256 bytes\n', stdoutTruncated: false });
    expect(body.stdout).toBe(new TextDecoder().decode(bytes));
    expect(body.stdout.startsWith('\0\x01\x02')).toBe(true);

    // Valid UTF-8 (with NULs) given in base64 comes back as the same text.
    const text = 'nul\0inside ü ✓\n';
    const utf8 = await ran(CAT, { stdinBase64: b64(enc.encode(text)) });
    expect(utf8.stdout).toBe(text);
  });

  it('cat with no stdin reads EOF at once', async () => {
    expect(await ran(CAT, {})).toMatchObject({ outcome: 'ok', exitCode: 0, stdout: '', stderr: 'cat: 0 bytes\n' });
  });

  it("args-env prints exactly the request's args and env, in order, and nothing of the server's environment", async () => {
    expect(process.env[SECRET_NAME]).toBe(SECRET_VALUE); // the server's threads have it
    const body = await ran(ARGS_ENV, { args: ['args-env', '--flag', 'two words', 'ünï', ''], env: { B: '2', A: 'x=y', EMPTY: '', PATH: '/sandbox/bin' } });
    expect(body.outcome).toBe('ok');
    expect(body.stdout).toBe(
      'argc=5\nargv[0]=args-env\nargv[1]=--flag\nargv[2]=two words\nargv[3]=ünï\nargv[4]=\n' +
        'env[0]=B=2\nenv[1]=A=x=y\nenv[2]=EMPTY=\nenv[3]=PATH=/sandbox/bin\nenvc=4\nPATH=/sandbox/bin\n',
    );
    const text = JSON.stringify(body);
    expect(text).not.toContain(SECRET_NAME);
    expect(text).not.toContain(SECRET_VALUE);
  });

  it('with wasi {} argv is ["module.wasm"] and the environment is empty (no PATH, no HOME, no secret)', async () => {
    const body = await ran(ARGS_ENV, {});
    expect(body.stdout).toBe('argc=1\nargv[0]=module.wasm\nenvc=0\nPATH=(unset)\n');
    expect(JSON.stringify(body)).not.toContain(SECRET_VALUE);
  });

  it('fs-escape: every open fails (/etc/passwd, /, . and more), no preopens, escapes=0', async () => {
    const body = await ran(FS_ESCAPE, { args: ['fs-escape'] });
    expect(body).toMatchObject({ outcome: 'ok', exitCode: 0, stdoutTruncated: false }); // exit 1 on any escape
    expect(body.stdout).not.toContain('ESCAPED');
    for (const p of ['/etc/passwd', '/', '.', '..', '/proc/self/environ', 'etc/passwd', '../../../../etc/passwd']) {
      for (const op of ['open', 'fopen', 'opendir', 'stat']) {
        expect(body.stdout).toContain(`${op} ${p}: failed (errno 76: Capabilities insufficient)\n`);
      }
    }
    expect(body.stdout).toContain('create /tmp/wasmbox-escape: failed');
    expect(body.stdout).toContain('mkdir /tmp/wasmbox-escape-dir: failed');
    expect(body.stdout).toContain('fd_prestat_get 3..63: all EBADF\n');
    expect(body.stdout).toMatch(/\nescapes=0\n$/);
  });

  it('clock-random: clocks advance, nanosleep sleeps, getentropy gives fresh bytes', async () => {
    const body = await ran(CLOCK_RANDOM, { args: ['clock-random'] });
    expect(body).toMatchObject({ outcome: 'ok', exitCode: 0 });
    expect(body.stdout).not.toContain('FAILED');
    for (const check of ['monotonic', 'realtime after 2020', 'time() agrees with realtime', 'monotonic resolution', 'nanosleep 20ms', 'getentropy differs', 'random in range']) {
      expect(body.stdout).toContain(`${check} ok\n`);
    }
    expect(body.stdout).toMatch(/\nfailures=0\n$/);
  });

  it.each([
    ['0', 'exit', 'ok'],
    ['3', 'exit', 'exited'],
    ['255', 'exit', 'exited'],
    ['0', 'return', 'ok'],
    ['3', 'return', 'exited'],
    ['255', 'return', 'exited'],
  ] as const)('exit-code %s by %s: outcome %s with that exitCode', async (code, how, outcome) => {
    const args = ['exit-code', code, ...(how === 'return' ? ['return'] : [])];
    const body = await ran(EXIT_CODE, { args });
    expect(body.outcome).toBe(outcome);
    expect(body.exitCode).toBe(Number(code));
    expect(body.stdout).toBe(`exiting with ${code} by ${how}\n`);
    if (outcome === 'ok') expect(body.results).toEqual([]);
    else expect(body).not.toHaveProperty('results');
  });

  it('all-imports (every function wasi-libc declares) is accepted and exits 0', async () => {
    expect(await ran(ALL_IMPORTS, {})).toMatchObject({ outcome: 'ok', exitCode: 0 });
  });

  it('the same program by moduleId, after POST /modules', async () => {
    const up = await server.post('/modules', { module: b64(HELLO) });
    expect([200, 201]).toContain(up.status);
    const res = await server.execute({ moduleId: up.body.moduleId, wasi: { args: ['hello'] } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ outcome: 'ok', exitCode: 0, stdout: 'Hello, world!\nunicode: héllo wörld ✓\n', moduleId: up.body.moduleId });
  });
});

describe('output caps, fuel and the deadline', () => {
  it('spam to stdout: capped at WASMBOX_WASI_STDOUT_MAX_BYTES and flagged, ends fuel_exhausted, the response stays small', async () => {
    const res = await runWasi(SPAM, { args: ['spam'] }, { fuel: 5_000_000 });
    expect(res.status).toBe(200);
    const body = res.body;
    expect(body).toMatchObject({ outcome: 'fuel_exhausted', exitCode: null, stdoutTruncated: true, stderr: '', stderrTruncated: false });
    expect(body.telemetry.fuelConsumed).toBe(5_000_000);
    expect(body.telemetry.fuelLimit).toBe(5_000_000);
    expect(body.stdout.length).toBe(STDOUT_MAX); // ASCII: characters are bytes
    expect(spamLines(1000).startsWith(body.stdout)).toBe(true);
    expect(JSON.stringify(body).length).toBeLessThan(STDOUT_MAX + 1500);
  });

  it('spam to stderr: its own cap and flag, stdout untouched', async () => {
    const body = await ran(SPAM, { args: ['spam', 'stderr'] }, { fuel: 2_000_000 });
    expect(body).toMatchObject({ outcome: 'fuel_exhausted', exitCode: null, stdout: '', stdoutTruncated: false, stderrTruncated: true });
    expect(body.stderr.length).toBe(STDERR_MAX);
    expect(spamLines(500).startsWith(body.stderr)).toBe(true);
  });

  it('a cap cuts cat too: the first WASMBOX_WASI_STDOUT_MAX_BYTES bytes, flagged, and the run is still ok', async () => {
    const text = 'abcdefghij'.repeat(1000);
    const body = await ran(CAT, { stdin: text });
    expect(body).toMatchObject({ outcome: 'ok', exitCode: 0, stdoutTruncated: true, stderr: 'cat: 10000 bytes\n' });
    expect(body.stdout).toBe(text.slice(0, STDOUT_MAX));
  });

  it('fuel is charged per byte: N more bytes through cat cost at least N more fuel (read and write: 2N)', async () => {
    // Both sizes past wasi-libc's 1 KiB stdio buffer and within the stdout cap, so both runs take
    // the same path through libc (which then passes the bytes straight through, with no per-byte
    // guest work of its own): the difference is the host's charges for reading each byte from
    // stdin and writing it to stdout.
    const N = 2000;
    const small = await ran(CAT, { stdin: 'x'.repeat(2000) });
    const large = await ran(CAT, { stdin: 'x'.repeat(2000 + N) });
    expect(small).toMatchObject({ outcome: 'ok', stdoutTruncated: false, stderr: 'cat: 2000 bytes\n' });
    expect(large).toMatchObject({ outcome: 'ok', stdoutTruncated: false, stderr: `cat: ${2000 + N} bytes\n` });
    const diff = large.telemetry.fuelConsumed - small.telemetry.fuelConsumed;
    expect(diff).toBeGreaterThanOrEqual(N);
    expect(diff).toBeGreaterThanOrEqual(2 * N * WASI_COSTS.perByte);
  });

  it('bytes written past the cap are charged too: fuel does not depend on the cap', async () => {
    // 10,000 bytes through cat against a 4096-byte cap: the 5,904 bytes the cap drops are still
    // read and written, and charged.
    const a = await ran(CAT, { stdin: 'y'.repeat(3000) });
    const b = await ran(CAT, { stdin: 'y'.repeat(10_000) });
    expect(a.stdoutTruncated).toBe(false);
    expect(b.stdoutTruncated).toBe(true);
    expect(b.telemetry.fuelConsumed - a.telemetry.fuelConsumed).toBeGreaterThanOrEqual(2 * 7000 * WASI_COSTS.perByte);
  });

  it('the same run costs the same fuel every time', async () => {
    const runs = await Promise.all([1, 2, 3].map(() => ran(ARGS_ENV, { args: ['a', 'b'], env: { K: 'V' } })));
    expect(new Set(runs.map((r) => r.telemetry.fuelConsumed)).size).toBe(1);
  });

  it('spam with a huge budget ends in timeout at timeoutMs with the output it printed before the deadline (capped) and its fuel, and the server still works', async () => {
    const started = Date.now();
    const res = await runWasi(SPAM, { args: ['spam'] }, { fuel: 10_000_000_000, timeoutMs: 300 });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      outcome: 'timeout',
      exitCode: null,
      stdoutTruncated: true,
    });
    expect(res.body.stdout.startsWith('spam 0\nspam 1\n')).toBe(true);
    expect(Buffer.byteLength(res.body.stdout)).toBeLessThanOrEqual(4096);
    expect(res.body.telemetry.threadKilled).toBe(false);
    expect(Number.isInteger(res.body.telemetry.fuelConsumed)).toBe(true);
    expect(res.body.telemetry.fuelConsumed).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(10_000);

    const again = await ran(HELLO, {});
    expect(again).toMatchObject({ outcome: 'ok', exitCode: 0, stdout: 'Hello, world!\nunicode: héllo wörld ✓\n' });
    const ready = await server.get('/readyz');
    expect(ready.status).toBe(200);
  });
});

describe('hand-written WASI guests: how runs end', () => {
  const fdWrite = '(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))';
  const procExit = '(import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))';
  // Writes "partial\n" (iovec at 0, data at 16, nwritten at 8) to `fd`.
  const write = (fd: number): string => `(drop (call $fd_write (i32.const ${fd}) (i32.const 0) (i32.const 1) (i32.const 8)))`;
  const memory = '(memory (export "memory") 1) (data (i32.const 0) "\\10\\00\\00\\00\\08\\00\\00\\00") (data (i32.const 16) "partial\\n")';

  it('output written before a trap is kept; exitCode null', async () => {
    const module = wat(`(module ${fdWrite} ${memory} (func (export "_start") ${write(1)} ${write(2)} unreachable))`);
    const body = await ran(module, {});
    expect(body).toMatchObject({ outcome: 'trap', trap: { kind: 'unreachable' }, exitCode: null, stdout: 'partial\n', stderr: 'partial\n' });
  });

  it('proc_exit called directly: its code, and nothing after it runs', async () => {
    const module = wat(`(module ${fdWrite} ${procExit} ${memory} (func (export "_start") ${write(1)} (call $proc_exit (i32.const 7)) ${write(1)}))`);
    const body = await ran(module, {});
    expect(body).toMatchObject({ outcome: 'exited', exitCode: 7, stdout: 'partial\n' });
    const zero = wat(`(module ${procExit} (func (export "_start") (call $proc_exit (i32.const 0)) unreachable))`);
    expect(await ran(zero, {})).toMatchObject({ outcome: 'ok', exitCode: 0, results: [] });
  });

  it('a stack overflow keeps its output too', async () => {
    const module = wat(`(module ${fdWrite} ${memory}
      (func $deep (param i32) (result i32) (i32.add (call $deep (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
      (func (export "_start") ${write(1)} (drop (call $deep (i32.const 0)))))`);
    const body = await ran(module, {});
    expect(body).toMatchObject({ outcome: 'stack_overflow', exitCode: null, stdout: 'partial\n' });
  });

  it('a WASI guest without memory gets EFAULT for every pointer, not a 500', async () => {
    const module = wat(`(module ${fdWrite} (func (export "_start") (result i32) (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))`);
    const res = await server.execute({ module: b64(module), wasi: {} });
    expect(res.status).toBe(200);
    // _start here returns the errno: EFAULT is 21.
    expect(res.body).toMatchObject({ outcome: 'ok', results: [21], exitCode: 0, stdout: '' });
  });
});

describe('refused modules: unsupported_import', () => {
  it('a function from wasi_snapshot_preview1 that preview1 does not define is refused, naming it', async () => {
    const module = wat(`(module
      (import "wasi_snapshot_preview1" "fd_frobnicate" (func (param i32) (result i32)))
      (func (export "_start")))`);
    const res = await runWasi(module, {});
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('unsupported_import');
    expect(res.body.error.message).toContain('fd_frobnicate');
    expect(res.body.error.message).toContain('wasi_snapshot_preview1');
  });

  it('a preview1 function imported with the wrong signature is refused, showing both signatures', async () => {
    const module = wat(`(module
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32) (result i32)))
      (func (export "_start")))`);
    const res = await runWasi(module, {});
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('unsupported_import');
    expect(res.body.error.message).toContain('fd_write');
    expect(res.body.error.message).toContain('(i32, i32, i32, i32) -> (i32)');

    const noResult = wat(`(module
      (import "wasi_snapshot_preview1" "proc_exit" (func (param i32) (result i32)))
      (func (export "_start")))`);
    const r2 = await runWasi(noResult, {});
    expect(r2.status).toBe(400);
    expect(r2.body.error).toMatchObject({ code: 'unsupported_import' });
    expect(r2.body.error.message).toContain('proc_exit');
  });

  it('a memory imported from wasi_snapshot_preview1 is refused', async () => {
    const module = wat(`(module (import "wasi_snapshot_preview1" "memory" (memory 1)) (func (export "_start")))`);
    const res = await runWasi(module, {});
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('unsupported_import');
    expect(res.body.error.message).toContain('memory');
  });

  it('a WASI program sent without "wasi" is refused, telling to add "wasi"', async () => {
    for (const module of [HELLO, CAT]) {
      const res = await server.execute({ module: b64(module) });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('unsupported_import');
      expect(res.body.error.message).toContain('"wasi"');
      expect(res.body.error.message).toContain('wasi_snapshot_preview1');
    }
  });

  it('a module that imports nothing still runs with "wasi": exitCode 0 and empty output beside its results', async () => {
    const module = wat(`(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))`);
    const res = await server.execute({ module: b64(module), function: 'add', args: [2, 3], wasi: {} });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ outcome: 'ok', results: [5], exitCode: 0, stdout: '', stderr: '' });
  });
});

describe('bad wasi fields: invalid_request naming the field', () => {
  it.each([
    ['an env name with "="', { env: { 'A=B': 'x' } }, /wasi.*env.*"A=B".*"="/],
    ['an empty env name', { env: { '': 'x' } }, /wasi.*env.*empty variable name/],
    ['NUL in args', { args: ['ok', 'a\u0000b'] }, /wasi\.args\[1\].*NUL/],
    ['NUL in an env value', { env: { K: 'a\u0000b' } }, /wasi.*env.*"K".*NUL/],
    ['both stdin and stdinBase64', { stdin: 'a', stdinBase64: 'YQ==' }, /body\.wasi\.stdinBase64: .*"stdin".*"stdinBase64"/],
    ['an env value that is not a string', { env: { X: 1 } }, /body\.wasi\.env\.X: must be a string/],
    ['env as an array', { env: ['A=1'] }, /body\.wasi\.env: must be an object of strings/],
    ['args not an array', { args: 'prog' }, /body\.wasi\.args: must be an array of strings/],
    ['an arg that is not a string', { args: ['prog', 5] }, /body\.wasi\.args\[1\]: must be a string/],
    ['stdin not a string', { stdin: 5 }, /body\.wasi\.stdin: must be a string/],
    ['stdinBase64 not base64', { stdinBase64: 'not base64!' }, /body\.wasi\.stdinBase64: must be standard base64/],
    ['an unknown field', { argv: ['x'] }, /body\.wasi: unknown field "argv"/],
  ])('%s', async (_what, wasi, message) => {
    const res = await server.execute({ module: b64(HELLO), wasi });
    expect(res.status, JSON.stringify(res.body)).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(res.body.error.message).toMatch(message);
  });

  it('wasi that is not an object', async () => {
    for (const wasi of [null, 'yes', [], 1]) {
      const res = await server.execute({ module: b64(HELLO), wasi });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request' });
      expect(res.body.error.message).toMatch(/^body\.wasi: /);
    }
  });

  it('an env variable named "__proto__" is refused in every form, not silently dropped', async () => {
    const raw = '{"env":{"__proto__":"x","A":"1"}}';
    // JSON: Fastify refuses a body with a "__proto__" key as a whole.
    const json = await server.post('/execute', `{"module":"${b64(ARGS_ENV)}","wasi":${raw}}`);
    expect(json.status).toBe(400);
    expect(json.body.error.code).toBe('invalid_request');
    const multipart = await runForm('multipart', ARGS_ENV, raw);
    expect(multipart.status).toBe(400);
    expect(multipart.body.error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('form.wasi.env.__proto__') });
    const query = await runForm('wasm', ARGS_ENV, raw);
    expect(query.status).toBe(400);
    expect(query.body.error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('query.wasi.env.__proto__') });
  });
});

// ---- the three body forms -----------------------------------------------------------------------

/** POST /execute in the multipart form (`wasi` a JSON text field) or application/wasm (`wasi` a
 *  JSON query parameter); `wasi` is sent as the given text. */
async function runForm(form: 'multipart' | 'wasm', module: Uint8Array, wasi: string, limits: Record<string, number> = {}) {
  if (form === 'multipart') {
    const fd = new FormData();
    fd.append('module', new Blob([module], { type: 'application/wasm' }), 'module.wasm');
    fd.append('wasi', wasi);
    for (const [k, v] of Object.entries(limits)) fd.append(k, String(v));
    return send(`${server.url}/execute`, 'POST', fd);
  }
  const q = new URLSearchParams({ wasi });
  for (const [k, v] of Object.entries(limits)) q.append(k, String(v));
  return send(`${server.url}/execute?${q}`, 'POST', module, { 'content-type': 'application/wasm' });
}

/** A response without the fields that vary from run to run (timings, cache hits). */
function stable(body: any): unknown {
  const { durationNs, instantiateNs, prepareNs, moduleCached, ...telemetry } = body.telemetry;
  return { ...body, telemetry };
}

describe('the multipart and application/wasm forms give the same answer as JSON', () => {
  const cases: [string, Uint8Array, Wasi][] = [
    ['args-env with args and env', ARGS_ENV, { args: ['prog', 'two words', 'ü'], env: { HOME: '/nowhere', X: 'a=b' } }],
    ['cat with stdin', CAT, { args: ['cat'], stdin: 'hello from stdin\nhéllo ✓\n' }],
    ['cat with stdinBase64', CAT, { stdinBase64: b64(Uint8Array.from({ length: 200 }, (_, i) => (i * 37) % 256)) }],
    ['exit-code 7', EXIT_CODE, { args: ['exit-code', '7'] }],
    ['hello with wasi {}', HELLO, {}],
  ];
  it.each(cases)('%s', async (_what, module, wasi) => {
    const json = await runWasi(module, wasi);
    expect(json.status).toBe(200);
    for (const form of ['multipart', 'wasm'] as const) {
      const res = await runForm(form, module, JSON.stringify(wasi));
      expect(res.status, `${form}: ${res.text}`).toBe(200);
      expect(stable(res.body), form).toEqual(stable(json.body));
    }
  });

  it('limits and wasi together: spam ends the same way in every form', async () => {
    const json = await runWasi(SPAM, { args: ['spam'] }, { fuel: 1_000_000 });
    for (const form of ['multipart', 'wasm'] as const) {
      const res = await runForm(form, SPAM, JSON.stringify({ args: ['spam'] }), { fuel: 1_000_000 });
      expect(res.status, res.text).toBe(200);
      expect(stable(res.body), form).toEqual(stable(json.body));
    }
    expect(json.body.outcome).toBe('fuel_exhausted');
  });

  it('refusals name the field in each form', async () => {
    const bad = JSON.stringify({ args: ['a\u0000b'] });
    const multipart = await runForm('multipart', HELLO, bad);
    expect(multipart.status).toBe(400);
    expect(multipart.body.error).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^form\.wasi: .*args\[0\].*NUL/) });
    const query = await runForm('wasm', HELLO, JSON.stringify({ env: { X: 1 } }));
    expect(query.status).toBe(400);
    expect(query.body.error).toMatchObject({ code: 'invalid_request', message: 'query.wasi.env.X: must be a string' });
    const notJson = await runForm('multipart', HELLO, '{args:');
    expect(notJson.status).toBe(400);
    expect(notJson.body.error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('form.wasi: must be JSON') });
  });
});

// ---- the same C, built natively ----------------------------------------------------------------

let native: NativeBuilds | null = null;
beforeAll(() => {
  if (!GCC) {
    console.warn(NO_GCC_MESSAGE);
    return;
  }
  native = buildNative(['hello', 'cat', 'args-env', 'exit-code', 'clock-random']);
});
afterAll(() => native?.dispose());

// fs-escape is left out (natively it does reach the filesystem: that is its point), spam never
// ends, and all-imports is wasm only.
describe.skipIf(!GCC)('stdout matches the same C source built natively with gcc', () => {
  it('hello', async () => {
    const body = await ran(HELLO, { args: ['hello'] });
    expect(body.stdout).toBe(native!.run('hello', ['hello'], {}).stdout);
  });

  it('cat, with UTF-8 text and with binary stdin', async () => {
    const text = 'line one\nünïcödé ✓\n\nlast line without newline';
    expect((await ran(CAT, { args: ['cat'], stdin: text })).stdout).toBe(native!.run('cat', ['cat'], {}, text).stdout);
    const bytes = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7919) % 251);
    const body = await ran(CAT, { args: ['cat'], stdinBase64: b64(bytes) });
    expect(body.stdoutTruncated).toBe(false);
    expect(body.stdout).toBe(native!.run('cat', ['cat'], {}, bytes).stdout);
  });

  it('args-env', async () => {
    const args = ['args-env', '--flag', 'two words', 'ü', ''];
    const env = { HOME: '/nowhere', LANG: 'C', X: 'a=b', PATH: '/opt/bin' };
    expect((await ran(ARGS_ENV, { args, env })).stdout).toBe(native!.run('args-env', args, env).stdout);
    expect((await ran(ARGS_ENV, { args: ['args-env'] })).stdout).toBe(native!.run('args-env', ['args-env'], {}).stdout);
  });

  it.each([['0'], ['1'], ['3'], ['255'], ['0', 'return'], ['9', 'return'], ['255', 'return']].map((rest) => [rest]))('exit-code %j: same stdout and status', async (rest) => {
    const args = ['exit-code', ...rest];
    const body = await ran(EXIT_CODE, { args });
    const n = native!.run('exit-code', args, {});
    expect(body.stdout).toBe(n.stdout);
    expect(body.exitCode).toBe(n.status);
  });

  it('clock-random', async () => {
    expect((await ran(CLOCK_RANDOM, { args: ['clock-random'] })).stdout).toBe(native!.run('clock-random', ['clock-random'], {}).stdout);
  });
});
