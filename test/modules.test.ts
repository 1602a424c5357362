// The module store through the real server: POST /modules (201 then 200, Location, the
// description), GET and DELETE /modules/{moduleId}, runs by moduleId (prepared once, then only
// instantiated), WASMBOX_MODULE_MAX_BYTES (413), WASMBOX_STORE_MAX_MB and WASMBOX_STORE_MAX_MODULES
// (409 store_full),
// concurrent uploads, persistence across real restarts (in process and as `node
// dist/src/server.js`), and crash safety on disk: a damaged module file is refused, never run, and
// quarantined; a half-written file left in tmp/ by a crash is cleared at start.

import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FORMS, type Res, runIn, send, uploadIn, withCustomSection } from './helpers/forms.js';
import { startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const ADD = new Uint8Array(readFileSync(new URL('../examples/add.wasm', import.meta.url)));

const RICH = wat(`(module
  (memory (export "memory") 2 10)
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (table (export "tbl") 3 7 funcref)
  (func (export "mix") (param i64 f32 f64) (result f64 i64) local.get 2 local.get 0)
  (global (export "g") i32 (i32.const 7))
  (func $init)
  (start $init)
  (func (export "nothing")))`);

function idOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function hexOf(id: string): string {
  return id.slice('sha256:'.length);
}

function moduleFile(dir: string, id: string, ext: 'wasm' | 'json' = 'wasm'): string {
  const hex = hexOf(id);
  return path.join(dir, 'modules', hex.slice(0, 2), `${hex}.${ext}`);
}

function expectError(res: Res, status: number, code: string): string {
  expect(res.status, res.text).toBe(status);
  expect(res.body).toEqual({ error: { code, message: expect.any(String) }, requestId: expect.any(String) });
  expect(res.headers['x-request-id']).toBe(res.body.requestId);
  return res.body.error.message as string;
}

const tempDirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-store-'));
  tempDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

const get = (base: string, id: string): Promise<Res> => send(`${base}/modules/${id}`, 'GET');
const del = (base: string, id: string): Promise<Res> => send(`${base}/modules/${id}`, 'DELETE');

// ---------------------------------------------------------------------------------------------
// `node dist/src/server.js` as a child process.

const SERVER = fileURLToPath(new URL('../dist/src/server.js', import.meta.url));

interface Child {
  url: string;
  child: ChildProcess;
  stderr(): string;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function spawnServer(dataDir: string): Promise<Child> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(WASMBOX_|PORT$|HOST$|LOG_LEVEL$|NODE_OPTIONS$)/.test(k)) env[k] = v;
  const child = spawn(process.execPath, [SERVER], {
    env: { ...env, WASMBOX_DATA_DIR: dataDir, WASMBOX_WORKERS: '1', LOG_LEVEL: 'warn', PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited while starting: ${stderr}`);
    try {
      const res = await request(`${url}/readyz`);
      await res.body.text();
      if (res.statusCode === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`the server did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    child,
    stderr: () => stderr,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

// ---------------------------------------------------------------------------------------------

describe('POST /modules, GET and DELETE /modules/{moduleId}', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  it('stores a module: 201 with the description and a Location, then 200 with the identical description', async () => {
    const first = await uploadIn(server.url, 'json', RICH);
    expect(first.status, first.text).toBe(201);
    const id = idOf(RICH);
    expect(first.headers.location).toBe(`/modules/${id}`);
    expect(first.headers['x-request-id']).toEqual(expect.any(String));
    expect(first.body).toEqual({
      moduleId: id,
      size: RICH.length,
      exports: [
        { name: 'add', params: ['i32', 'i32'], results: ['i32'] },
        { name: 'mix', params: ['i64', 'f32', 'f64'], results: ['f64', 'i64'] },
        { name: 'nothing', params: [], results: [] },
      ],
      otherExports: [
        { name: 'memory', kind: 'memory' },
        { name: 'tbl', kind: 'table' },
        { name: 'g', kind: 'global' },
      ],
      imports: [],
      memory: { minPages: 2, maxPages: 10, shared: false },
      tables: [{ elementType: 'funcref', min: 3, max: 7 }],
      hasStart: true,
      storedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
    expect(Math.abs(Date.parse(first.body.storedAt) - Date.now())).toBeLessThan(60_000);

    for (const form of FORMS) {
      const again = await uploadIn(server.url, form, RICH);
      expect(again.status, `${form}: ${again.text}`).toBe(200);
      expect(again.body).toEqual(first.body);
      expect(again.headers.location).toBe(`/modules/${id}`);
    }
  });

  it('GET describes the stored module exactly as the upload answered', async () => {
    const up = await uploadIn(server.url, 'wasm', RICH);
    const res = await get(server.url, idOf(RICH));
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual(up.body);
    // The id percent-encoded in the path means the same.
    const encoded = await get(server.url, encodeURIComponent(idOf(RICH)));
    expect(encoded.status, encoded.text).toBe(200);
    expect(encoded.body).toEqual(up.body);
  });

  it('describes a module without memory, tables or start as such', async () => {
    const up = await uploadIn(server.url, 'multipart', ADD);
    expect([200, 201]).toContain(up.status);
    expect(up.body).toEqual({
      moduleId: idOf(ADD),
      size: ADD.length,
      exports: [{ name: 'add', params: ['i32', 'i32'], results: ['i32'] }],
      otherExports: [],
      imports: [],
      memory: null,
      tables: [],
      hasStart: false,
      storedAt: expect.any(String),
    });
  });

  it('refuses a module that imports what the service does not provide, and does not store it', async () => {
    const importing = wat(`(module (import "env" "host_fn" (func (param i32))) (func (export "f")))`);
    for (const form of FORMS) {
      const res = await uploadIn(server.url, form, importing);
      expect(expectError(res, 400, 'unsupported_import')).toContain('host_fn');
    }
    expectError(await get(server.url, idOf(importing)), 404, 'module_not_found');
  });

  it('runs a stored module by moduleId: prepared at upload, so the run only instantiates', async () => {
    const module = withCustomSection(ADD, 'run-by-id', 8);
    const up = await uploadIn(server.url, 'wasm', module);
    expect(up.status, up.text).toBe(201);
    const byId = await runIn(server.url, 'json', { moduleId: up.body.moduleId, function: 'add', args: [40, 2] });
    expect(byId.status, byId.text).toBe(200);
    expect(byId.body).toMatchObject({ outcome: 'ok', results: [42], moduleId: up.body.moduleId, telemetry: { moduleCached: true, fuelConsumed: 4 } });
    const multipart = await runIn(server.url, 'multipart', { moduleId: up.body.moduleId, function: 'add', args: [1, 1] });
    expect(multipart.body).toMatchObject({ outcome: 'ok', results: [2], telemetry: { moduleCached: true } });
  });

  it('running a module by its bytes does not store it', async () => {
    const module = withCustomSection(ADD, 'run-only', 8);
    const run = await runIn(server.url, 'wasm', { module, function: 'add', args: [1, 2] });
    expect(run.status, run.text).toBe(200);
    expectError(await runIn(server.url, 'json', { moduleId: idOf(module), function: 'add', args: [1, 2] }), 404, 'module_not_found');
    expectError(await get(server.url, idOf(module)), 404, 'module_not_found');
  });

  it('DELETE answers 204, then the module is gone: GET 404, runs by id 404, a second DELETE 404', async () => {
    const module = withCustomSection(ADD, 'to-delete', 8);
    const up = await uploadIn(server.url, 'json', module);
    expect(up.status).toBe(201);
    const id = up.body.moduleId as string;
    expect((await runIn(server.url, 'json', { moduleId: id, function: 'add', args: [1, 2] })).status).toBe(200);
    expect(existsSync(moduleFile(server.config.dataDir, id))).toBe(true);

    const res = await del(server.url, id);
    expect(res.status, res.text).toBe(204);
    expect(res.text).toBe('');
    expect(res.headers['x-request-id']).toEqual(expect.any(String));
    expect(existsSync(moduleFile(server.config.dataDir, id))).toBe(false);
    expect(existsSync(moduleFile(server.config.dataDir, id, 'json'))).toBe(false);

    expectError(await get(server.url, id), 404, 'module_not_found');
    for (const form of ['json', 'multipart'] as const) {
      const run = await runIn(server.url, form, { moduleId: id, function: 'add', args: [1, 2] });
      expect(expectError(run, 404, 'module_not_found')).toContain(id);
    }
    expectError(await del(server.url, id), 404, 'module_not_found');
    // Stored again, it runs again.
    expect((await uploadIn(server.url, 'multipart', module)).status).toBe(201);
    expect((await runIn(server.url, 'json', { moduleId: id, function: 'add', args: [1, 2] })).body.results).toEqual([3]);
  });

  it('GET and DELETE of an unknown id are 404 module_not_found', async () => {
    const id = `sha256:${'0'.repeat(64)}`;
    expect(expectError(await get(server.url, id), 404, 'module_not_found')).toContain(id);
    expectError(await del(server.url, id), 404, 'module_not_found');
  });

  it('a malformed id in the path is 400 invalid_request naming path.moduleId, never a server error', async () => {
    for (const bad of ['sha256:xyz', 'abc', `sha256:${'A'.repeat(64)}`, `sha256:${'0'.repeat(63)}`, '%25zz', '%25', 'sha256%3Azz%2F']) {
      for (const res of [await get(server.url, bad), await del(server.url, bad)]) {
        expect(expectError(res, 400, 'invalid_request'), bad).toMatch(/^path\.moduleId: /);
      }
    }
  });
});

describe('WASMBOX_MODULE_MAX_BYTES: 413 for a module the store does not take', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer({ WASMBOX_MODULE_MAX_BYTES: '2048' });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('refuses a module over the limit in every form and stores nothing', async () => {
    const big = withCustomSection(ADD, 'big', 3000);
    for (const form of FORMS) {
      const res = await uploadIn(server.url, form, big);
      const message = expectError(res, 413, 'payload_too_large');
      expect(message).toContain('2048');
      expect(message).toContain(String(big.length));
    }
    expectError(await get(server.url, idOf(big)), 404, 'module_not_found');
    expect(existsSync(moduleFile(server.config.dataDir, idOf(big)))).toBe(false);
    // The limit is the store's: the same module still runs when sent (within the body limit).
    const run = await runIn(server.url, 'wasm', { module: big, function: 'add', args: [2, 2] });
    expect(run.status, run.text).toBe(200);
  });

  it('takes a module of exactly the limit', async () => {
    let payload = 2048 - withCustomSection(ADD, 'fit', 0).length;
    while (withCustomSection(ADD, 'fit', payload).length > 2048) payload--;
    const exact = withCustomSection(ADD, 'fit', payload);
    expect(exact.length).toBe(2048);
    const res = await uploadIn(server.url, 'wasm', exact);
    expect(res.status, res.text).toBe(201);
  });
});

describe('WASMBOX_STORE_MAX_MB: 409 store_full', () => {
  const SIZE = 300_000; // three fit in 1 MiB, four do not
  const mod = (tag: string): Uint8Array => withCustomSection(ADD, tag, SIZE - ADD.length - 16);
  const env = { WASMBOX_STORE_MAX_MB: '1', WASMBOX_BODY_LIMIT_BYTES: String(1024 * 1024) };

  it('refuses the module that would pass the maximum, takes it once space is freed, and keeps the count across a restart', async () => {
    const dir = tempDir();
    let server = await startServer({ ...env, WASMBOX_DATA_DIR: dir });
    try {
      const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(mod) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
      for (const [i, m] of [a, b, c].entries()) {
        const res = await uploadIn(server.url, FORMS[i]!, m);
        expect(res.status, res.text).toBe(201);
      }
      for (const form of FORMS) {
        const full = await uploadIn(server.url, form, d);
        const message = expectError(full, 409, 'store_full');
        expect(message).toContain(String(1024 * 1024));
        expect(message).toMatch(/delete modules/);
      }
      expectError(await get(server.url, idOf(d)), 404, 'module_not_found');
      // A module already stored takes no more space: 200, not 409.
      expect((await uploadIn(server.url, 'json', a)).status).toBe(200);

      await server.close();
      server = await startServer({ ...env, WASMBOX_DATA_DIR: dir });
      // The restarted store counts what is on disk.
      expectError(await uploadIn(server.url, 'wasm', d), 409, 'store_full');
      expect((await del(server.url, idOf(b))).status).toBe(204);
      const now = await uploadIn(server.url, 'wasm', d);
      expect(now.status, now.text).toBe(201);
      expect((await runIn(server.url, 'json', { moduleId: idOf(d), function: 'add', args: [3, 4] })).body.results).toEqual([7]);
    } finally {
      await server.close();
    }
  });

  it('counts the description and per-file overhead: a module whose own bytes fit but not with them is 409 naming the cap; a smaller one fits', async () => {
    const server = await startServer({ WASMBOX_STORE_MAX_MB: '1', WASMBOX_BODY_LIMIT_BYTES: String(2 * 1024 * 1024) });
    try {
      const almostAll = withCustomSection(ADD, 'almost-all', 1024 * 1024 - 4096 - ADD.length - 16);
      expect(almostAll.length).toBeLessThan(1024 * 1024 - 4096 + 1);
      const message = expectError(await uploadIn(server.url, 'wasm', almostAll), 409, 'store_full');
      expect(message).toContain('WASMBOX_STORE_MAX_MB');
      expect(message).toContain(String(1024 * 1024));
      expect(message).toContain('4096 bytes of file-system overhead');
      expect(message).toMatch(/delete modules/);
      expectError(await get(server.url, idOf(almostAll)), 404, 'module_not_found');
      const fits = withCustomSection(ADD, 'fits', 1024 * 1024 - 2 * 4096 - 1000 - ADD.length - 16);
      const up = await uploadIn(server.url, 'wasm', fits);
      expect(up.status, up.text).toBe(201);
    } finally {
      await server.close();
    }
  });

  it('parallel uploads of different modules cannot overshoot the maximum together', async () => {
    const dir = tempDir();
    const server = await startServer({ ...env, WASMBOX_DATA_DIR: dir });
    try {
      const modules = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'].map(mod);
      const answers = await Promise.all(modules.map((m, i) => uploadIn(server.url, FORMS[i % 3]!, m)));
      const statuses = answers.map((r) => r.status).sort();
      expect(statuses).toEqual([201, 201, 201, 409, 409, 409]);
      let bytes = 0;
      let files = 0;
      for (const shard of readdirSync(path.join(dir, 'modules'))) {
        for (const f of readdirSync(path.join(dir, 'modules', shard))) {
          if (f.endsWith('.wasm')) {
            files++;
            bytes += statSync(path.join(dir, 'modules', shard, f)).size;
          }
        }
      }
      expect(files).toBe(3);
      expect(bytes).toBeLessThanOrEqual(1024 * 1024);
      expect(readdirSync(path.join(dir, 'tmp'))).toEqual([]);
    } finally {
      await server.close();
    }
  });
});

describe('WASMBOX_STORE_MAX_MODULES: 409 store_full', () => {
  it('refuses the module past the count naming the cap, answers modules already stored, takes one once another is deleted, and keeps the count across a restart', async () => {
    const dir = tempDir();
    const env = { WASMBOX_STORE_MAX_MODULES: '3', WASMBOX_DATA_DIR: dir };
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((tag) => withCustomSection(ADD, `count-${tag}`, 8)) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    let server = await startServer(env);
    try {
      for (const m of [a, b, c]) expect((await uploadIn(server.url, 'wasm', m)).status).toBe(201);
      for (const form of FORMS) {
        const message = expectError(await uploadIn(server.url, form, d), 409, 'store_full');
        expect(message).toContain('maximum of 3 modules');
        expect(message).toContain('WASMBOX_STORE_MAX_MODULES');
        expect(message).toMatch(/delete modules/);
      }
      expectError(await get(server.url, idOf(d)), 404, 'module_not_found');
      expect((await uploadIn(server.url, 'json', a)).status).toBe(200);

      await server.close();
      server = await startServer(env);
      expectError(await uploadIn(server.url, 'wasm', d), 409, 'store_full');
      expect((await del(server.url, idOf(b))).status).toBe(204);
      expect((await uploadIn(server.url, 'multipart', d)).status).toBe(201);
      expect((await runIn(server.url, 'json', { moduleId: idOf(d), function: 'add', args: [3, 4] })).body.results).toEqual([7]);
    } finally {
      await server.close();
    }
  });
});

describe('concurrent uploads of one module', () => {
  it('20 in parallel, in every form: one 201, the others 200, one id, one description, the file stored once, no leftovers', async () => {
    const dir = tempDir();
    const server = await startServer({ WASMBOX_DATA_DIR: dir });
    try {
      const module = withCustomSection(RICH, 'concurrent', 50_000);
      const id = idOf(module);
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => uploadIn(server.url, FORMS[i % 3]!, module)));
      for (const a of answers) expect([200, 201], a.text).toContain(a.status);
      expect(answers.filter((a) => a.status === 201)).toHaveLength(1);
      expect(answers.filter((a) => a.status === 200)).toHaveLength(19);
      for (const a of answers) {
        expect(a.body).toEqual(answers[0]!.body);
        expect(a.body.moduleId).toBe(id);
        expect(a.headers.location).toBe(`/modules/${id}`);
      }
      const shardDir = path.dirname(moduleFile(dir, id));
      expect(readdirSync(shardDir).sort()).toEqual([`${hexOf(id)}.json`, `${hexOf(id)}.wasm`]);
      expect(readFileSync(moduleFile(dir, id)).equals(Buffer.from(module))).toBe(true);
      expect(readdirSync(path.join(dir, 'tmp'))).toEqual([]);
      expect(existsSync(path.join(dir, 'corrupt'))).toBe(false);
      expect((await runIn(server.url, 'json', { moduleId: id, function: 'add', args: [20, 22] })).body.results).toEqual([42]);
    } finally {
      await server.close();
    }
  });
});

describe('persistence across restarts', () => {
  it('in process: a new server on the same data directory runs the stored module by id', async () => {
    const dir = tempDir();
    const module = withCustomSection(ADD, 'restart-in-process', 8);
    let server = await startServer({ WASMBOX_DATA_DIR: dir });
    const up = await uploadIn(server.url, 'json', module);
    expect(up.status).toBe(201);
    await server.close();

    server = await startServer({ WASMBOX_DATA_DIR: dir });
    try {
      expect((await get(server.url, up.body.moduleId)).body).toEqual(up.body);
      const first = await runIn(server.url, 'json', { moduleId: up.body.moduleId, function: 'add', args: [19, 23] });
      expect(first.status, first.text).toBe(200);
      // A new process prepares it once from the stored bytes, then finds it prepared.
      expect(first.body).toMatchObject({ outcome: 'ok', results: [42], telemetry: { moduleCached: false } });
      const second = await runIn(server.url, 'multipart', { moduleId: up.body.moduleId, function: 'add', args: [1, 2] });
      expect(second.body).toMatchObject({ outcome: 'ok', results: [3], telemetry: { moduleCached: true } });
      expect((await uploadIn(server.url, 'wasm', module)).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('as `node dist/src/server.js`: stored, stopped with SIGTERM, started again: runs by id; a delete persists too', async () => {
    const dir = tempDir();
    const module = withCustomSection(ADD, 'restart-process', 8);
    const id = idOf(module);

    let child = await spawnServer(dir);
    const up = await uploadIn(child.url, 'wasm', module);
    expect(up.status, up.text).toBe(201);
    expect(await child.stop()).toEqual({ code: 0, signal: null });

    child = await spawnServer(dir);
    const run = await runIn(child.url, 'json', { moduleId: id, function: 'add', args: [100, -58] });
    expect(run.status, `${run.text} ${child.stderr()}`).toBe(200);
    expect(run.body).toMatchObject({ outcome: 'ok', results: [42], moduleId: id });
    expect((await get(child.url, id)).body).toEqual(up.body);
    expect((await del(child.url, id)).status).toBe(204);
    expect(await child.stop()).toEqual({ code: 0, signal: null });

    child = await spawnServer(dir);
    expectError(await get(child.url, id), 404, 'module_not_found');
    expectError(await runIn(child.url, 'json', { moduleId: id, function: 'add', args: [1, 2] }), 404, 'module_not_found');
    expect(await child.stop()).toEqual({ code: 0, signal: null });
  });
});

describe('crash safety on disk', () => {
  /** add.wasm with its i32.add turned into i32.sub: still a valid module, with another answer. */
  function flipAddToSub(file: string): void {
    const bytes = readFileSync(file);
    const at = bytes.lastIndexOf(0x6a); // i32.add
    expect(at).toBeGreaterThan(8);
    bytes[at] = 0x6b; // i32.sub
    writeFileSync(file, bytes);
  }

  async function storeAndStop(dir: string, module: Uint8Array): Promise<Res> {
    const server = await startServer({ WASMBOX_DATA_DIR: dir });
    try {
      const up = await uploadIn(server.url, 'wasm', module);
      expect(up.status, up.text).toBe(201);
      return up;
    } finally {
      await server.close();
    }
  }

  function quarantined(dir: string, id: string): string[] {
    const corrupt = path.join(dir, 'corrupt');
    return existsSync(corrupt) ? readdirSync(corrupt).filter((f) => f.startsWith(`${hexOf(id)}.`)) : [];
  }

  it('a flipped byte is detected on the run after a restart: 404 naming the corruption, never run, quarantined', async () => {
    const dir = tempDir();
    const id = idOf(ADD);
    await storeAndStop(dir, ADD);
    flipAddToSub(moduleFile(dir, id));

    const child = await spawnServer(dir);
    try {
      const res = await runIn(child.url, 'json', { moduleId: id, function: 'add', args: [5, 10] });
      const message = expectError(res, 404, 'module_not_found');
      expect(message).toMatch(/corrupt/);
      expect(message).toMatch(/quarantine/);
      expect(message).toContain(id);
      // Not run: a run of the damaged copy would have answered 200 with 5 - 10.
      expect(res.body.results).toBeUndefined();
      expect(existsSync(moduleFile(dir, id))).toBe(false);
      expect(quarantined(dir, id).some((f) => f.startsWith(`${hexOf(id)}.wasm`))).toBe(true);
      // From then on it is simply not stored.
      expectError(await get(child.url, id), 404, 'module_not_found');
      expectError(await runIn(child.url, 'multipart', { moduleId: id, function: 'add', args: [5, 10] }), 404, 'module_not_found');
      // Uploaded again, it runs, correctly.
      expect((await uploadIn(child.url, 'multipart', ADD)).status).toBe(201);
      const again = await runIn(child.url, 'json', { moduleId: id, function: 'add', args: [5, 10] });
      expect(again.body).toMatchObject({ outcome: 'ok', results: [15] });
    } finally {
      await child.stop();
    }
  });

  it('a damaged copy is not described by GET either: 404 naming the corruption, quarantined', async () => {
    const dir = tempDir();
    const module = withCustomSection(ADD, 'get-corrupt', 8);
    const id = idOf(module);
    await storeAndStop(dir, module);
    flipAddToSub(moduleFile(dir, id));
    const server = await startServer({ WASMBOX_DATA_DIR: dir });
    try {
      expect(expectError(await get(server.url, id), 404, 'module_not_found')).toMatch(/corrupt.*quarantine/);
      expect(quarantined(dir, id).length).toBeGreaterThan(0);
      expectError(await runIn(server.url, 'json', { moduleId: id, function: 'add', args: [5, 10] }), 404, 'module_not_found');
    } finally {
      await server.close();
    }
  });

  it('uploading the module again over an undetected damaged copy replaces it (201) and it runs correctly', async () => {
    const dir = tempDir();
    const module = withCustomSection(ADD, 'reupload-corrupt', 8);
    const id = idOf(module);
    await storeAndStop(dir, module);
    flipAddToSub(moduleFile(dir, id));
    const server = await startServer({ WASMBOX_DATA_DIR: dir });
    try {
      const up = await uploadIn(server.url, 'json', module);
      expect(up.status, up.text).toBe(201);
      expect(readFileSync(moduleFile(dir, id)).equals(Buffer.from(module))).toBe(true);
      expect(quarantined(dir, id).length).toBeGreaterThan(0);
      const run = await runIn(server.url, 'json', { moduleId: id, function: 'add', args: [5, 10] });
      expect(run.body).toMatchObject({ outcome: 'ok', results: [15] });
    } finally {
      await server.close();
    }
  });

  it('a truncated module file is refused the same way', async () => {
    const dir = tempDir();
    const module = withCustomSection(ADD, 'truncated', 64);
    const id = idOf(module);
    await storeAndStop(dir, module);
    truncateSync(moduleFile(dir, id), 20);
    const server = await startServer({ WASMBOX_DATA_DIR: dir });
    try {
      const res = await runIn(server.url, 'wasm', { module: withCustomSection(ADD, 'other', 1), function: 'add', args: [1, 1] });
      expect(res.status).toBe(200); // the server itself is fine
      expect(expectError(await runIn(server.url, 'json', { moduleId: id, function: 'add', args: [1, 1] }), 404, 'module_not_found')).toMatch(/corrupt/);
      expect(existsSync(moduleFile(dir, id))).toBe(false);
      expect(quarantined(dir, id).length).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });

  it('a half-written file left in tmp/ by a crash is cleared at start and is not a module', async () => {
    const dir = tempDir();
    const stored = withCustomSection(ADD, 'survivor', 8);
    await storeAndStop(dir, stored);
    // What a crash mid-write leaves: the start of a module and of its description in tmp/ ...
    const crashed = withCustomSection(ADD, 'crashed', 4096);
    const crashedId = idOf(crashed);
    const hex = hexOf(crashedId);
    writeFileSync(path.join(dir, 'tmp', `${hex}.wasm.0f8e2a4c-crash`), crashed.subarray(0, 1000));
    writeFileSync(path.join(dir, 'tmp', `${hex}.json.0f8e2a4c-crash`), '{"moduleId":"sha256:');
    // ... and, had it crashed between the two renames, a description without its module.
    const other = withCustomSection(ADD, 'half-renamed', 16);
    mkdirSync(path.dirname(moduleFile(dir, idOf(other))), { recursive: true });
    writeFileSync(moduleFile(dir, idOf(other), 'json'), JSON.stringify({ moduleId: idOf(other), description: {}, storedAt: new Date().toISOString() }));

    const child = await spawnServer(dir);
    try {
      expect(readdirSync(path.join(dir, 'tmp'))).toEqual([]);
      for (const id of [crashedId, idOf(other)]) {
        expectError(await get(child.url, id), 404, 'module_not_found');
        expectError(await runIn(child.url, 'json', { moduleId: id, function: 'add', args: [1, 2] }), 404, 'module_not_found');
      }
      const run = await runIn(child.url, 'json', { moduleId: idOf(stored), function: 'add', args: [1, 2] });
      expect(run.body).toMatchObject({ outcome: 'ok', results: [3] });
      // Both can be stored normally afterwards.
      expect((await uploadIn(child.url, 'wasm', crashed)).status).toBe(201);
      expect((await uploadIn(child.url, 'json', other)).status).toBe(201);
      expect((await get(child.url, idOf(other))).body).toMatchObject({ moduleId: idOf(other), size: other.length });
    } finally {
      await child.stop();
    }
  });
});
