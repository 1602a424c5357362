// The local-disk module store under concurrency, driven directly (the built FsModuleStore from
// dist/): hundreds of interleavings of concurrent put, delete, describe and run-by-id reads of the
// same modules, each checked against a sequential model of the answers, the files on disk and a
// fresh re-scan of the directory; the module-count cap and the byte cap with descriptions and
// per-file overhead counted; running totals that survive a restart.

import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsModuleStore, STORE_FILE_OVERHEAD_BYTES } from '../dist/src/store/fs-store.js';
import { moduleIdOf } from '../dist/src/store/module-id.js';
import { StoreFullError } from '../dist/src/store/types.js';
import type { ModuleDescription } from '../dist/src/worker/protocol.js';
import { type Res, runIn, send, uploadIn, withCustomSection } from './helpers/forms.js';
import { startServer, type TestServer } from './helpers/server.js';
import { prng } from '../dist/src/wasm/synthetic.js';

const ADD = new Uint8Array(readFileSync(new URL('../examples/add.wasm', import.meta.url)));

const tempDirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-race-'));
  tempDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

function describeModule(bytes: Uint8Array): ModuleDescription {
  return { size: bytes.length, exports: [{ name: 'add', kind: 'function', params: ['i32', 'i32'], results: ['i32'] }], imports: [], memory: null, tables: [], hasStart: false };
}

function moduleFile(dir: string, id: string, ext: 'wasm' | 'json'): string {
  const hex = id.slice('sha256:'.length);
  return path.join(dir, 'modules', hex.slice(0, 2), `${hex}.${ext}`);
}

/** What the store should count, from the directory itself: each stored module (a .wasm file) with
 *  its description, plus the per-file overhead of both files. */
function rescan(dir: string): { modules: number; bytes: number } {
  let modules = 0;
  let bytes = 0;
  const root = path.join(dir, 'modules');
  for (const shard of readdirSync(root)) {
    for (const file of readdirSync(path.join(root, shard))) {
      if (!file.endsWith('.wasm')) continue;
      modules++;
      bytes += statSync(path.join(root, shard, file)).size + STORE_FILE_OVERHEAD_BYTES;
      const json = path.join(root, shard, file.replace(/\.wasm$/, '.json'));
      if (existsSync(json)) bytes += statSync(json).size + STORE_FILE_OVERHEAD_BYTES;
    }
  }
  return { modules, bytes };
}


/** Waits a random small amount, in the units that reorder file-system work: none, microtasks, a
 *  turn of the event loop, a timer. */
async function jitter(random: () => number): Promise<void> {
  const r = random();
  if (r < 0.25) return;
  if (r < 0.5) {
    for (let i = Math.floor(random() * 20); i > 0; i--) await Promise.resolve();
    return;
  }
  if (r < 0.8) {
    for (let i = 1 + Math.floor(random() * 3); i > 0; i--) await new Promise((resolve) => setImmediate(resolve));
    return;
  }
  await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 3)));
}

type Op = 'put' | 'delete' | 'describe' | 'run';
type Answer =
  | { op: 'put'; id: string; created: boolean }
  | { op: 'delete'; id: string; removed: boolean }
  | { op: 'describe'; id: string; described: boolean; size?: number; recordId?: string }
  | { op: 'run'; id: string; stored: boolean; bytes: Uint8Array | null; viaHas: boolean };

describe('FsModuleStore: concurrent put, delete, describe and run of the same module', () => {
  it('after each of 400 interleavings the answers follow one order, the store holds what the last answer said, totals equal a re-scan, and nothing is quarantined', async () => {
    const dir = tempDir();
    const store = new FsModuleStore({ dir, maxBytes: 1024 * 1024 * 1024, maxModules: 100_000 });
    await store.open();
    const pool = [0, 1, 2].map((i) => withCustomSection(ADD, `race-${i}`, 40 + i * 300));
    const ids = pool.map(moduleIdOf);
    const model = new Map<string, boolean>(ids.map((id) => [id, false]));
    const random = prng(11);
    const failures: string[] = [];
    const ITERATIONS = 400;

    for (let iteration = 0; iteration < ITERATIONS; iteration++) {
      // One or two modules per round, each with at least one put and one delete, plus reads.
      const chosen = random() < 0.7 ? [Math.floor(random() * pool.length)] : [0, 1 + Math.floor(random() * 2)];
      const plan: { op: Op; index: number }[] = [];
      for (const index of chosen) {
        plan.push({ op: 'put', index }, { op: 'delete', index });
        for (let extra = Math.floor(random() * 4); extra > 0; extra--) {
          plan.push({ op: (['put', 'delete', 'describe', 'run'] as const)[Math.floor(random() * 4)]!, index });
        }
      }
      const answers: Answer[] = [];
      const errors: string[] = [];
      await Promise.all(
        plan.map(async ({ op, index }) => {
          const bytes = pool[index]!;
          const id = ids[index]!;
          await jitter(random);
          try {
            switch (op) {
              case 'put': {
                const { created } = await store.put(id, bytes, describeModule(bytes));
                answers.push({ op, id, created });
                break;
              }
              case 'delete': {
                const removed = await store.delete(id);
                answers.push({ op, id, removed });
                break;
              }
              case 'describe': {
                const record = await store.getDescription(id);
                answers.push(record ? { op, id, described: true, size: record.description.size, recordId: record.moduleId } : { op, id, described: false });
                break;
              }
              case 'run': {
                // As a run by id does: the cheap membership check, then the verified bytes.
                if (!(await store.has(id))) {
                  answers.push({ op, id, stored: false, bytes: null, viaHas: true });
                  break;
                }
                const got = await store.getBytes(id);
                answers.push({ op, id, stored: got !== null, bytes: got, viaHas: false });
                break;
              }
            }
          } catch (err) {
            errors.push(`${op} ${id.slice(7, 15)} threw ${(err as Error).name}: ${(err as Error).message}`);
          }
        }),
      );

      const problems = [...errors];
      // Replay the answers in the order they were given: each must be what a store that applied
      // the operations one at a time, in that order, would have answered.
      for (const a of answers) {
        const stored = model.get(a.id)!;
        switch (a.op) {
          case 'put':
            if (a.created === stored) problems.push(`put answered created=${a.created} when the module was ${stored ? '' : 'not '}stored`);
            model.set(a.id, true);
            break;
          case 'delete':
            if (a.removed !== stored) problems.push(`delete answered removed=${a.removed} when the module was ${stored ? '' : 'not '}stored`);
            model.set(a.id, false);
            break;
          case 'describe':
            if (a.described !== stored) problems.push(`describe answered ${a.described ? 'a description' : 'nothing'} when the module was ${stored ? '' : 'not '}stored`);
            if (a.described && (a.recordId !== a.id || a.size !== pool[ids.indexOf(a.id)]!.length)) problems.push('describe answered another module');
            break;
          case 'run':
            // The membership check is not ordered with writes in flight: only what it read is checked.
            if (!a.viaHas && a.stored !== stored) problems.push(`run read ${a.stored ? 'bytes' : 'nothing'} when the module was ${stored ? '' : 'not '}stored`);
            if (a.bytes && Buffer.compare(Buffer.from(a.bytes), Buffer.from(pool[ids.indexOf(a.id)]!)) !== 0) problems.push('run read other bytes');
            break;
        }
      }
      // Now, with nothing in flight: what the last answer said is what the store holds.
      for (const id of ids) {
        const expected = model.get(id)!;
        const has = await store.has(id);
        if (has !== expected) problems.push(`${id.slice(7, 15)}: has() is ${has}, the last answer said ${expected ? '' : 'not '}stored`);
        const wasm = existsSync(moduleFile(dir, id, 'wasm'));
        const json = existsSync(moduleFile(dir, id, 'json'));
        if (wasm !== expected || json !== expected) problems.push(`${id.slice(7, 15)}: on disk .wasm=${wasm} .json=${json}, the last answer said ${expected ? '' : 'not '}stored`);
      }
      const usage = store.usage();
      const scanned = rescan(dir);
      if (usage.modules !== scanned.modules || usage.bytes !== scanned.bytes) {
        problems.push(`usage ${JSON.stringify(usage)} but the directory holds ${JSON.stringify(scanned)}`);
      }
      if (existsSync(path.join(dir, 'corrupt'))) problems.push(`quarantined: ${readdirSync(path.join(dir, 'corrupt')).join(', ')}`);
      if (readdirSync(path.join(dir, 'tmp')).length > 0) problems.push('leftovers in tmp/');

      if (problems.length > 0) {
        failures.push(`#${iteration} [${plan.map((p) => `${p.op}${p.index}`).join(' ')}]: ${problems.join('; ')}`);
        // Start the next round from a clean, known state so each round is judged on its own.
        await store.close();
        rmSync(dir, { recursive: true, force: true });
        await store.open();
        for (const id of ids) model.set(id, false);
      }
    }
    await store.close();
    expect(failures.length, `${failures.length} of ${ITERATIONS} interleavings broke the store:\n${failures.slice(0, 10).join('\n')}`).toBe(0);
  }, 120_000);
});

/** What a module stored with `describeModule` counts against the byte cap. */
function countedBytes(bytes: Uint8Array, storedAt: string): number {
  const id = moduleIdOf(bytes);
  const json = Buffer.byteLength(JSON.stringify({ moduleId: id, description: describeModule(bytes), storedAt }));
  return bytes.length + json + 2 * STORE_FILE_OVERHEAD_BYTES;
}

describe('FsModuleStore: capacity', () => {
  it('counts each module with its description and per-file overhead: a module of exactly the remaining room fits, one byte more is store_full naming WASMBOX_STORE_MAX_MB', async () => {
    const dir = tempDir();
    const maxBytes = 64 * 1024;
    const store = new FsModuleStore({ dir, maxBytes, maxModules: 100 });
    await store.open();
    const first = withCustomSection(ADD, 'first', 1000);
    const { record } = await store.put(moduleIdOf(first), first, describeModule(first));
    expect(store.usage()).toEqual({ modules: 1, bytes: countedBytes(first, record.storedAt) });

    // A module whose bytes alone would fit the room left, but not with its description and files.
    const room = maxBytes - store.usage().bytes;
    const storedAt = new Date().toISOString();
    let payload = room - 2 * STORE_FILE_OVERHEAD_BYTES - 400;
    while (countedBytes(withCustomSection(ADD, 'exact', payload), storedAt) < room) payload++;
    while (countedBytes(withCustomSection(ADD, 'exact', payload), storedAt) > room) payload--;
    const exact = withCustomSection(ADD, 'exact', payload);
    expect(countedBytes(exact, storedAt)).toBe(room);
    const tooBig = withCustomSection(ADD, 'exact', payload + 1, 0x2b);
    expect(tooBig.length).toBeLessThan(room);

    const refused = await store.put(moduleIdOf(tooBig), tooBig, describeModule(tooBig)).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(StoreFullError);
    const message = (refused as Error).message;
    expect(message).toContain('WASMBOX_STORE_MAX_MB');
    expect(message).toContain(String(maxBytes));
    expect(message).toContain(`${STORE_FILE_OVERHEAD_BYTES} bytes of file-system overhead`);
    expect(message).toMatch(/delete modules/);
    expect(await store.has(moduleIdOf(tooBig))).toBe(false);

    await store.put(moduleIdOf(exact), exact, describeModule(exact));
    expect(store.usage()).toEqual({ modules: 2, bytes: maxBytes });
    expect(rescan(dir)).toEqual(store.usage());
    await store.close();
  });

  it('millions of tiny modules do not fit: the byte cap counts each at least two file overheads', async () => {
    const dir = tempDir();
    const maxBytes = 1024 * 1024;
    const store = new FsModuleStore({ dir, maxBytes, maxModules: 1_000_000 });
    await store.open();
    let stored = 0;
    for (let i = 0; ; i++) {
      const tiny = withCustomSection(ADD, `t${i}`, 0);
      try {
        await store.put(moduleIdOf(tiny), tiny, describeModule(tiny));
        stored++;
      } catch (err) {
        expect(err).toBeInstanceOf(StoreFullError);
        expect((err as Error).message).toContain('WASMBOX_STORE_MAX_MB');
        break;
      }
    }
    // Counted by their bytes alone, more than ten thousand of these would have fit.
    expect(stored).toBeGreaterThan(0);
    expect(stored).toBeLessThanOrEqual(maxBytes / (2 * STORE_FILE_OVERHEAD_BYTES));
    expect(store.usage()).toEqual(rescan(dir));
    expect(store.usage().bytes).toBeLessThanOrEqual(maxBytes);
    await store.close();
  });

  it('caps the number of modules: past maxModules is store_full naming WASMBOX_STORE_MAX_MODULES, and parallel uploads cannot overshoot it', async () => {
    const dir = tempDir();
    const store = new FsModuleStore({ dir, maxBytes: 1024 * 1024 * 1024, maxModules: 5 });
    await store.open();
    const modules = Array.from({ length: 12 }, (_, i) => withCustomSection(ADD, `cap${i}`, 10));
    const results = await Promise.allSettled(modules.map((m) => store.put(moduleIdOf(m), m, describeModule(m))));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    for (const r of results) {
      if (r.status === 'rejected') {
        expect(r.reason).toBeInstanceOf(StoreFullError);
        expect((r.reason as Error).message).toContain('maximum of 5 modules (WASMBOX_STORE_MAX_MODULES)');
        expect((r.reason as Error).message).toMatch(/delete modules/);
      }
    }
    expect(store.usage().modules).toBe(5);
    expect(rescan(dir)).toEqual(store.usage());
    // A module already stored is not a new one: still answered, not refused.
    const storedOne = modules[results.findIndex((r) => r.status === 'fulfilled')]!;
    expect((await store.put(moduleIdOf(storedOne), storedOne, describeModule(storedOne))).created).toBe(false);
    // Deleting one makes room for one.
    const refusedOne = modules[results.findIndex((r) => r.status === 'rejected')]!;
    expect(await store.delete(moduleIdOf(storedOne))).toBe(true);
    expect((await store.put(moduleIdOf(refusedOne), refusedOne, describeModule(refusedOne))).created).toBe(true);
    await store.close();
  });
});

describe('FsModuleStore: totals across a restart', () => {
  it('a store opened again on the same directory counts what is there once, equal to the totals before, and keeps enforcing both caps', async () => {
    const dir = tempDir();
    const options = { dir, maxBytes: 1024 * 1024, maxModules: 6 };
    const before = new FsModuleStore(options);
    await before.open();
    const modules = Array.from({ length: 6 }, (_, i) => withCustomSection(ADD, `restart${i}`, 100 * i));
    for (const m of modules) await before.put(moduleIdOf(m), m, describeModule(m));
    await before.delete(moduleIdOf(modules[2]!));
    const usage = before.usage();
    expect(usage.modules).toBe(5);
    expect(usage).toEqual(rescan(dir));
    await before.close();

    // What an interrupted write leaves between its two renames: a description without its bytes.
    const orphan = withCustomSection(ADD, 'orphan', 5);
    const orphanJson = moduleFile(dir, moduleIdOf(orphan), 'json');
    mkdirSync(path.dirname(orphanJson), { recursive: true });
    writeFileSync(orphanJson, JSON.stringify({ moduleId: moduleIdOf(orphan), description: describeModule(orphan), storedAt: new Date().toISOString() }));

    const after = new FsModuleStore(options);
    await after.open();
    expect(after.usage()).toEqual(usage);
    expect(existsSync(orphanJson)).toBe(false);
    expect(rescan(dir)).toEqual(after.usage());
    for (const [i, m] of modules.entries()) expect(await after.has(moduleIdOf(m))).toBe(i !== 2);
    // One more module fits the count cap of 6, the next does not.
    expect((await after.put(moduleIdOf(orphan), orphan, describeModule(orphan))).created).toBe(true);
    const seventh = withCustomSection(ADD, 'seventh', 5);
    await expect(after.put(moduleIdOf(seventh), seventh, describeModule(seventh))).rejects.toThrow(/WASMBOX_STORE_MAX_MODULES/);
    expect(rescan(dir)).toEqual(after.usage());
    await after.close();
  });
});

// ---------------------------------------------------------------------------------------------
// Through the real server.

const del = (base: string, id: string): Promise<Res> => send(`${base}/modules/${id}`, 'DELETE');
const get = (base: string, id: string): Promise<Res> => send(`${base}/modules/${id}`, 'GET');

describe('concurrent DELETE and POST of one module over HTTP', () => {
  let server: TestServer;
  afterAll(async () => {
    await server?.close();
  });

  it('after each of 80 rounds, the answers fit one order and a run by id is 200 if that order ends in POST, 404 if in DELETE; GET agrees; nothing quarantined', async () => {
    server = await startServer();
    const module = withCustomSection(ADD, 'http-race', 64);
    const id = moduleIdOf(module);
    const random = prng(7);
    const failures: string[] = [];
    const ROUNDS = 80;
    let storedNow = false;
    for (let round = 0; round < ROUNDS; round++) {
      // Start from a known state: stored in even rounds, not stored in odd ones.
      const storedBefore = round % 2 === 0;
      if (storedBefore && !storedNow) expect((await uploadIn(server.url, 'wasm', module)).status).toBe(201);
      if (!storedBefore && storedNow) expect((await del(server.url, id)).status).toBe(204);

      const wait = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 3)));
      const [post, remove, described, ran] = await Promise.all([
        wait().then(() => uploadIn(server.url, random() < 0.5 ? 'wasm' : 'json', module)),
        wait().then(() => del(server.url, id)),
        wait().then(() => get(server.url, id)),
        wait().then(() => runIn(server.url, 'json', { moduleId: id, function: 'add', args: [2, 3] })),
      ]);
      const problems: string[] = [];
      for (const [what, res, ok] of [
        ['POST', post, [200, 201]],
        ['DELETE', remove, [204, 404]],
        ['GET', described, [200, 404]],
        ['run', ran, [200, 404]],
      ] as const) {
        if (!(ok as readonly number[]).includes(res.status)) problems.push(`${what} answered ${res.status} ${res.text}`);
        if (/corrupt/.test(res.text)) problems.push(`${what} found the module corrupt: ${res.text}`);
      }
      if (ran.status === 200 && ran.body.results?.[0] !== 5) problems.push(`run answered ${ran.text}`);
      // Only one order of the POST and the DELETE gives these two answers.
      const postFirst = post.status === (storedBefore ? 200 : 201) && remove.status === 204;
      const deleteFirst = remove.status === (storedBefore ? 204 : 404) && post.status === 201;
      if (postFirst === deleteFirst) problems.push(`POST ${post.status} and DELETE ${remove.status} fit no order from ${storedBefore ? '' : 'not '}stored`);
      const storedAfter = deleteFirst;

      const run = await runIn(server.url, 'json', { moduleId: id, function: 'add', args: [20, 22] });
      if (storedAfter ? run.status !== 200 || run.body.results?.[0] !== 42 : run.status !== 404 || run.body.error?.code !== 'module_not_found') {
        problems.push(`run by id after ${deleteFirst ? 'DELETE then POST' : 'POST then DELETE'} answered ${run.status} ${run.text}`);
      }
      const after = await get(server.url, id);
      if (after.status !== (storedAfter ? 200 : 404)) problems.push(`GET afterwards answered ${after.status} ${after.text}`);
      if (existsSync(path.join(server.config.dataDir, 'corrupt'))) problems.push('a copy was quarantined');
      if (problems.length > 0) {
        failures.push(`#${round} from ${storedBefore ? '' : 'not '}stored: ${problems.join('; ')}`);
        // Judge the next round on its own: bring the store back to a known state.
        rmSync(path.join(server.config.dataDir, 'corrupt'), { recursive: true, force: true });
        await del(server.url, id);
        await del(server.url, id);
        storedNow = false;
        continue;
      }
      storedNow = storedAfter;
    }
    expect(failures.length, `${failures.length} of ${ROUNDS} rounds broke the store:\n${failures.slice(0, 10).join('\n')}`).toBe(0);
  }, 120_000);
});
