// The direct path of POST /execute's JSON validation (src/schemas/execute.ts parseExecuteJson)
// against the zod schema it stands in for: on every body built here from valid and invalid
// values of each field, the direct path either answers exactly what the schema answers (the same
// data, key for key) or leaves the body to the schema. It must take the common bodies (a stored
// module's id or a small base64 module, with function, args and limits) and nothing the schema
// refuses or would change.

import { describe, expect, it } from 'vitest';
import { ExecuteJsonSchema, describeIssues, parseExecuteJson, simpleExecuteJson } from '../src/schemas/execute.js';

const ID = `sha256:${'ab'.repeat(32)}`;
const ABSENT = Symbol('absent');

type Choice = { value: unknown };
const ok = (value: unknown): Choice => ({ value });
const bad = ok;

// For each field: values the schema takes, values it refuses (ABSENT: the key is left out).
const SOURCES: [Choice[], Choice[]] = [
  [ok(ID), ok(ABSENT)],
  [bad(ID.toUpperCase()), bad(`${ID}0`), bad('sha256:'), bad(42), bad(null), bad(undefined)],
];
const MODULES: [Choice[], Choice[]] = [
  [ok('AGFzbQEAAAA='), ok('AGFzbQEAAAA'), ok('AAAA'), ok(ABSENT)],
  [bad(''), bad('A'), bad('AGFz!QEAAAA='), bad('AAAA==='), bad(7), bad(null)],
];
const FUNCTIONS: [Choice[], Choice[]] = [
  [ok('add'), ok('f'), ok('x'.repeat(1024)), ok('é🙂'), ok(ABSENT)],
  [bad(''), bad('x'.repeat(1025)), bad(1), bad(null), bad(['add']), bad(undefined)],
];
const ARGS: [Choice[], Choice[]] = [
  [ok([5, 10]), ok([]), ok(['1', 2.5, null, { a: 1 }, [1]]), ok(new Array(10_000).fill(1)), ok(ABSENT)],
  [bad({ 0: 5 }), bad('5,10'), bad(null), bad(new Array(10_001).fill(1)), bad(5)],
];
const LIMITS: [Choice[], Choice[]] = [
  [ok({ fuel: 1000 }), ok({}), ok({ fuel: 0, memoryMb: 1, timeoutMs: 50 }), ok({ timeoutMs: -5 }), ok({ fuel: 1e20 }), ok({ memoryMb: -0 }), ok(ABSENT)],
  [bad({ fuel: 1.5 }), bad({ fuel: '100' }), bad({ fuel: Infinity }), bad({ fuel: Number.NaN }), bad({ gas: 1 }), bad([]), bad(null), bad({ fuel: undefined }), bad(Object.assign(Object.create(null), { fuel: 1 }))],
];

function* bodies(): Generator<{ body: unknown; simple: boolean; label: string }> {
  const fields = [
    ['moduleId', SOURCES],
    ['module', MODULES],
    ['function', FUNCTIONS],
    ['args', ARGS],
    ['limits', LIMITS],
  ] as const;
  // Every combination of valid values (the sources: one, both or neither)...
  const combine = function* (i: number, body: Record<string, unknown>, label: string): Generator<{ body: unknown; simple: boolean; label: string }> {
    if (i === fields.length) {
      const sources = ['module', 'moduleId'].filter((k) => k in body).length;
      yield { body, simple: sources === 1, label };
      return;
    }
    const [name, [goods]] = fields[i]!;
    for (const choice of goods) {
      const next = { ...body };
      if (choice.value !== ABSENT) next[name] = choice.value;
      yield* combine(i + 1, next, `${label} ${name}=${choice.value === ABSENT ? '-' : String(JSON.stringify(choice.value)).slice(0, 30)}`);
    }
  };
  yield* combine(0, {}, 'valid:');
  // ...and each invalid value of each field beside valid others.
  for (const [name, [, bads]] of fields) {
    for (const b of bads) {
      const body: Record<string, unknown> = { moduleId: ID, function: 'add', args: [1], limits: { fuel: 5 } };
      if (name === 'module') delete body.moduleId;
      body[name] = b.value;
      yield { body, simple: false, label: `invalid ${name}=${String(JSON.stringify(b.value)).slice(0, 30)}` };
    }
  }
  // Not the direct path's: other keys, other sources, other shapes.
  const others: unknown[] = [
    { moduleId: ID, wasi: {} },
    { moduleId: ID, calls: [{ function: 'f' }] },
    { wat: '(module)' },
    { moduleId: ID, wat: '(module)' },
    { moduleId: ID, extra: 1 },
    { moduleId: ID, module: 'AAAA' },
    {},
    [],
    null,
    'moduleId',
    Object.assign(Object.create(null), { moduleId: ID }),
    JSON.parse(`{"moduleId":"${ID}","__proto__":{"x":1}}`),
  ];
  for (const body of others) yield { body, simple: false, label: `other ${String(JSON.stringify(body)).slice(0, 40)}` };
}

describe('POST /execute JSON validation: the direct path and the schema', () => {
  it('answer every body alike, and the direct path takes exactly the valid common ones', () => {
    let direct = 0;
    let total = 0;
    for (const { body, simple, label } of bodies()) {
      total++;
      const expected = ExecuteJsonSchema.safeParse(body);
      const fast = simpleExecuteJson(body);
      const answered = parseExecuteJson(body);
      expect(fast !== null, label).toBe(simple);
      if (simple) {
        expect(expected.success, label).toBe(true);
        direct++;
      }
      expect(answered.success, label).toBe(expected.success);
      if (expected.success) expect(answered.data, label).toStrictEqual(expected.data);
      else expect(describeIssues(answered.error!), label).toBe(describeIssues(expected.error));
    }
    // The generator covers both paths broadly.
    expect(direct).toBeGreaterThan(100);
    expect(total - direct).toBeGreaterThan(100);
  });

  it('copies args and limits, so the caller may not change what was validated', () => {
    const args = [1, 2];
    const limits = { fuel: 10 };
    const answered = parseExecuteJson({ moduleId: ID, args, limits });
    expect(answered.success).toBe(true);
    expect(answered.data!.args).not.toBe(args);
    expect(answered.data!.limits).not.toBe(limits);
  });
});
