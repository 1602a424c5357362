// Request schemas (zod): the single source of the request types. Messages name the field.

import { z } from 'zod';

export const MODULE_ID_PATTERN = /^sha256:[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const limitValue = z.number({ error: 'must be a number' }).int({ error: 'must be a whole number' });

export const LimitsSchema = z
  .object({ fuel: limitValue, memoryMb: limitValue, timeoutMs: limitValue })
  .partial()
  .strict();

export const ExecuteJsonSchema = z
  .object({
    module: z
      .string({ error: 'must be a base64 string' })
      .min(1, { error: 'must not be empty' })
      .refine((s) => s.length % 4 !== 1 && BASE64.test(s), { error: 'must be standard base64 (A-Z, a-z, 0-9, +, /, = padding)' })
      .optional(),
    moduleId: z.string({ error: 'must be a string' }).regex(MODULE_ID_PATTERN, { error: 'must be "sha256:" followed by 64 lowercase hex digits' }).optional(),
    function: z.string({ error: 'must be a string' }).min(1, { error: 'must not be empty' }).max(1024).optional(),
    args: z.array(z.unknown(), { error: 'must be an array' }).max(10_000).default([]),
    limits: LimitsSchema.optional(),
  })
  .strict()
  .check((ctx) => {
    const v = ctx.value;
    if ((v.module === undefined) === (v.moduleId === undefined)) {
      ctx.issues.push({
        code: 'custom',
        input: v,
        path: v.module === undefined ? ['module'] : [],
        message: 'exactly one of "module" (base64 of a .wasm) and "moduleId" must be given',
      });
    }
  });

export type ExecuteJson = z.infer<typeof ExecuteJsonSchema>;

/** "body.limits.fuel: must be a whole number" — the first problem, naming the field. */
export function describeIssues(error: z.ZodError, root = 'body'): string {
  return error.issues
    .slice(0, 3)
    .map((i) => {
      const path = [root, ...i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))].join('').replace(/\.\[/g, '[');
      if (i.code === 'unrecognized_keys') return `${path}: unknown field ${i.keys.map((k) => JSON.stringify(k)).join(', ')}`;
      return `${path}: ${i.message}`;
    })
    .join('; ');
}
