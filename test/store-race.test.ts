// The local-disk module store under concurrency, driven directly (the built FsModuleStore from
// dist/): hundreds of interleavings of concurrent put, delete, describe and run-by-id reads of the
// same modules, each checked against a sequential model of the answers, the files on disk and a
// fresh re-scan of the directory; the module-count cap and the byte cap with descriptions and
// per-file overhead counted; running totals that survive a restart.

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsModuleStore, STORE_FILE_OVERHEAD_BYTES } from '../dist/src/store/fs-store.js';
import { moduleIdOf } from '../dist/src/store/module-id.js';
import { StoreFullError } from '../dist/src/store/types.js';
import type { ModuleDescription } from '../dist/src/worker/protocol.js';
import { withCustomSection } from './helpers/forms.js';

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

/** A small deterministic generator, so a failing interleaving can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
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
