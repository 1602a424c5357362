// Request schemas (zod): the single source of the request types. Messages name the field.

import { z } from 'zod';
import { clip, listForMessage, quote } from '../errors.js';
import { wasiInputProblem } from '../wasi/preview1.js';

import { MODULE_ID_PATTERN } from '../store/module-id.js';
import { isBase64 } from './base64.js';

export { MODULE_ID_PATTERN };

// Number.isInteger, not .int(): zod's int() means a *safe* integer, so 1e20 would be refused as
// "not a whole number" instead of as above the maximum (limit_out_of_range, with the maximum).
const limitValue = z.number({ error: 'must be a number' }).refine(Number.isInteger, { error: 'must be a whole number' });

export const LimitsSchema = z
  .object({ fuel: limitValue, memoryMb: limitValue, timeoutMs: limitValue })
  .partial()
  .strict();

/** WASI run settings (POST /execute `wasi`): the program's argv, environment and stdin. */
export const WasiSchema = z
  .object({
    args: z.array(z.string({ error: 'must be a string' }), { error: 'must be an array of strings' }).max(4096, { error: 'must have at most 4096 items' }).default([]),
    env: z
      .preprocess(
        (env, ctx) => {
          // zod's record drops an own "__proto__" key without a word (the multipart and query forms
          // parse with JSON.parse, which keeps it), so the guest would silently miss a variable.
          if (env !== null && typeof env === 'object' && Object.hasOwn(env, '__proto__')) {
            ctx.issues.push({ code: 'custom', input: env, path: ['__proto__'], message: 'is not accepted as a variable name' });
          }
          return env;
        },
        z.record(z.string(), z.string({ error: 'must be a string' }), { error: 'must be an object of strings' }),
      )
      .default({}),
    stdin: z.string({ error: 'must be a string (UTF-8 text)' }).optional(),
    stdinBase64: z
      .string({ error: 'must be a base64 string' })
      .refine(isBase64, { error: 'must be standard base64' })
      .optional(),
  })
  .strict()
  .check((ctx) => {
    const problem = wasiInputProblem(ctx.value.args, ctx.value.env);
    if (problem) ctx.issues.push({ code: 'custom', input: ctx.value, path: [], message: problem });
    if (ctx.value.stdin !== undefined && ctx.value.stdinBase64 !== undefined) {
      ctx.issues.push({ code: 'custom', input: ctx.value, path: ['stdinBase64'], message: 'give at most one of "stdin" and "stdinBase64"' });
    }
  });

/** The run fields every body form shares (function, args, limits, wasi). */
export const RunFieldsSchema = z
  .object({
    function: z.string({ error: 'must be a string' }).min(1, { error: 'must not be empty' }).max(1024, { error: 'must be at most 1024 characters' }).optional(),
    args: z.array(z.unknown(), { error: 'must be an array' }).max(10_000, { error: 'must have at most 10000 items' }).default([]),
    limits: LimitsSchema.optional(),
    wasi: WasiSchema.optional(),
  })
  .strict();

export type RunFields = z.infer<typeof RunFieldsSchema>;

const ModuleBase64 = z
  .string({ error: 'must be a base64 string' })
  .min(1, { error: 'must not be empty' })
  .refine(isBase64, { error: 'must be standard base64 (A-Z, a-z, 0-9, +, /, = padding)' });
const ModuleId = z.string({ error: 'must be a string' }).regex(MODULE_ID_PATTERN, { error: 'must be "sha256:" followed by 64 lowercase hex digits' });

export const ExecuteJsonSchema = RunFieldsSchema.extend({
  module: ModuleBase64.optional(),
  moduleId: ModuleId.optional(),
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

/** POST /modules, JSON form. */
export const ModuleJsonSchema = z.object({ module: ModuleBase64 }).strict();

export { ModuleId as ModuleIdSchema };


/** "body.limits.fuel: must be a whole number" — the first problem, naming the field. */
export function describeIssues(error: z.ZodError, root = 'body'): string {
  // Paths and keys are the client's own strings (an env variable's name, an unknown field): each
  // is clipped, and at most a few are listed, so the message stays small whatever was sent.
  return error.issues
    .slice(0, 3)
    .map((i) => {
      const path = [root, ...i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${clip(String(p), 60)}`))].join('').replace(/\.\[/g, '[');
      if (i.code === 'unrecognized_keys') {
        return `${path}: unknown field${i.keys.length > 1 ? 's' : ''} ${listForMessage(i.keys.map((k) => quote(k, 60)), 5)}`;
      }
      return `${path}: ${clip(i.message, 300)}`;
    })
    .join('; ');
}
