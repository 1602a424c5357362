// The benchmark's C programs (bench/programs: kernels, real-code shapes, and programs that spend
// their time in wasi-libc's qsort, malloc and string functions) through the real server: stored,
// run by moduleId, each answer checked against the result a native gcc build gives
// (programs.json, verified by bench/programs/build.sh --check). The account is exact: the same
// fuel on every run, a budget of exactly that fuel completes, and one unit less is exhausted with
// fuelConsumed equal to the limit. The sources are bench/programs/*.c; build.sh rebuilds them.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestServer, startServer } from './helpers/server.js';

interface Program {
  name: string;
  file: string;
  function: string;
  smallArgs: number[];
  smallExpect: number | string;
}

const DIR = new URL('../bench/programs/', import.meta.url);
const PROGRAMS = JSON.parse(readFileSync(new URL('programs.json', DIR), 'utf8')) as Program[];
const LIMITS = { memoryMb: 64, timeoutMs: 20_000 };

let server: TestServer;
const ids = new Map<string, string>();

beforeAll(async () => {
  server = await startServer({ WASMBOX_FUEL_MAX: String(10 ** 12) });
  for (const p of PROGRAMS) {
    const res = await server.post('/modules', readFileSync(new URL(p.file, DIR)), { 'content-type': 'application/wasm' });
    if (res.status !== 201 || !res.body.moduleId) throw new Error(`${p.name}: POST /modules answered ${res.status} ${JSON.stringify(res.body)}`);
    ids.set(p.name, res.body.moduleId);
  }
}, 60_000);

afterAll(async () => {
  await server?.close();
});

const run = (p: Program, fuel: number) =>
  server.execute({ moduleId: ids.get(p.name), function: p.function, args: p.smallArgs, limits: { ...LIMITS, fuel } });

describe('the benchmark programs through POST /execute', () => {
  it('lists the C-library programs beside the freestanding ones', () => {
    expect(PROGRAMS.map((p) => p.name)).toEqual(expect.arrayContaining(['libsort', 'words', 'bintree', 'expr', 'lz', 'vm', 'dispatch']));
  });

  for (const p of PROGRAMS) {
    it(`${p.name}: gives the native build's result, and is charged the same exact fuel on every run`, async () => {
      const first = await run(p, 10 ** 11);
      expect(first.status, JSON.stringify(first.body)).toBe(200);
      expect(first.body.outcome, JSON.stringify(first.body)).toBe('ok');
      expect(first.body.results).toEqual([p.smallExpect]);
      const fuel = first.body.telemetry.fuelConsumed as number;
      expect(fuel).toBeGreaterThan(1000);

      const again = await run(p, 10 ** 11);
      expect(again.body.results).toEqual([p.smallExpect]);
      expect(again.body.telemetry.fuelConsumed).toBe(fuel);

      const exact = await run(p, fuel);
      expect(exact.body.outcome, JSON.stringify(exact.body)).toBe('ok');
      expect(exact.body.results).toEqual([p.smallExpect]);
      expect(exact.body.telemetry).toMatchObject({ fuelConsumed: fuel, fuelLimit: fuel });

      const short = await run(p, fuel - 1);
      expect(short.body.outcome, JSON.stringify(short.body)).toBe('fuel_exhausted');
      expect(short.body.results).toBeUndefined();
      expect(short.body.telemetry).toMatchObject({ fuelConsumed: fuel - 1, fuelLimit: fuel - 1 });
    }, 60_000);
  }
});
