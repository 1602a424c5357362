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

const FUNCTION_NAME_MAX = 1024;
const ARGS_MAX = 10_000;
const FunctionName = z
  .string({ error: 'must be a string' })
  .min(1, { error: 'must not be empty' })
  .max(FUNCTION_NAME_MAX, { error: `must be at most ${FUNCTION_NAME_MAX} characters` });
const Args = z.array(z.unknown(), { error: 'must be an array' }).max(ARGS_MAX, { error: `must have at most ${ARGS_MAX} items` });

/** The most calls any server takes in one batch (WASMBOX_BATCH_MAX is at most this). */
export const BATCH_HARD_MAX = 10_000;

/** One call of a batch: its own function, arguments and, optionally, limits and WASI input. */
export const CallSchema = z
  .object({
    function: FunctionName.optional(),
    args: Args.default([]),
    limits: LimitsSchema.optional(),
    wasi: WasiSchema.optional(),
  })
  .strict();

export type CallFields = z.infer<typeof CallSchema>;

/** The run fields every body form shares (function, args, limits, wasi; or calls, a batch). */
export const RunFieldsSchema = z
  .object({
    function: FunctionName.optional(),
    // No default here: a batch must not also carry "args" (the default is applied by toExecuteRequest).
    args: Args.optional(),
    limits: LimitsSchema.optional(),
    wasi: WasiSchema.optional(),
    calls: z
      .array(CallSchema, { error: 'must be an array of calls ({ "function", "args", "limits" })' })
      .min(1, { error: 'must have at least one call' })
      .max(BATCH_HARD_MAX, { error: `must have at most ${BATCH_HARD_MAX} calls` })
      .optional(),
  })
  .strict()
  .check(batchCheck);

/** A batch ("calls") carries no top-level "function" or "args". */
function batchCheck(ctx: { value: { calls?: unknown; function?: unknown; args?: unknown }; issues: unknown[] }): void {
  const v = ctx.value;
  if (v.calls === undefined) return;
  const single = v.function !== undefined ? 'function' : v.args !== undefined ? 'args' : null;
  if (single) {
    (ctx.issues as z.core.$ZodRawIssue[]).push({
      code: 'custom',
      input: v,
      path: [single],
      message: 'a batch ("calls") gives each call its own "function" and "args"; leave them out at the top level',
    });
  }
}

export type RunFields = z.infer<typeof RunFieldsSchema>;

const ModuleBase64 = z
  .string({ error: 'must be a base64 string' })
  .min(1, { error: 'must not be empty' })
  .refine(isBase64, { error: 'must be standard base64 (A-Z, a-z, 0-9, +, /, = padding)' });
const ModuleId = z.string({ error: 'must be a string' }).regex(MODULE_ID_PATTERN, { error: 'must be "sha256:" followed by 64 lowercase hex digits' });

/** WebAssembly text (the .wat format), compiled by the server. */
const WatText = z.string({ error: 'must be a string of WebAssembly text' }).min(1, { error: 'must not be empty' });

const SOURCES = ['module', 'moduleId', 'wat'] as const;

/** Exactly one of the module's sources: base64 bytes, a stored module's id, or its text. */
function oneSource(ctx: { value: Partial<Record<(typeof SOURCES)[number], unknown>>; issues: unknown[] }, sources: readonly (typeof SOURCES)[number][]): void {
  const given = sources.filter((k) => ctx.value[k] !== undefined);
  if (given.length !== 1) {
    const names = sources.map((k) => `"${k}"`);
    const list = `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
    (ctx.issues as z.core.$ZodRawIssue[]).push({
      code: 'custom',
      input: ctx.value,
      path: given.length === 0 ? ['module'] : [],
      message: `exactly one of ${list} must be given (module: base64 of a .wasm; wat: WebAssembly text)`,
    });
  }
}

export const ExecuteJsonSchema = z
  .object({
    ...RunFieldsSchema.shape,
    module: ModuleBase64.optional(),
    moduleId: ModuleId.optional(),
    wat: WatText.optional(),
  })
  .strict()
  .check((ctx) => {
    oneSource(ctx, SOURCES);
    batchCheck(ctx);
  });

/** What ExecuteJsonSchema.safeParse answers, as parseExecuteJson answers it. */
export type ExecuteJsonParse = ReturnType<typeof ExecuteJsonSchema.safeParse>;
type ExecuteJson = z.infer<typeof ExecuteJsonSchema>;

const SIMPLE_KEYS = new Set(['module', 'moduleId', 'function', 'args', 'limits']);
const LIMIT_KEYS = new Set(['fuel', 'memoryMb', 'timeoutMs']);

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;

/**
 * ExecuteJsonSchema.safeParse, with a direct path for the bodies almost every request sends: a
 * stored module's id or a small base64 module, with `function`, `args` and `limits`, all valid.
 * Such a body is checked here field by field against the same rules and answered as the schema
 * answers it (the same keys, `args` and `limits` copied); anything else (a WASI run, a batch, text,
 * an unknown key, any invalid value) goes to the schema, so every refusal and its message are the
 * schema's own. Under load (add by id, 32 connections) the schema's generic parse and check
 * machinery showed in profiles as a few per cent of the event loop's samples
 * (test/execute-json-schema.test.ts proves both paths answer alike).
 */
export function parseExecuteJson(json: unknown): ExecuteJsonParse {
  return simpleExecuteJson(json) ?? ExecuteJsonSchema.safeParse(json);
}

/** The direct path alone: its answer, or null where the schema must answer. */
export function simpleExecuteJson(json: unknown): ExecuteJsonParse | null {
  if (!isPlainObject(json)) return null;
  const out: ExecuteJson = {};
  let sources = 0;
  for (const key of Object.keys(json)) {
    if (!SIMPLE_KEYS.has(key)) return null;
    const value = json[key];
    switch (key) {
      case 'moduleId':
        if (typeof value !== 'string' || !MODULE_ID_PATTERN.test(value)) return null;
        out.moduleId = value;
        sources++;
        break;
      case 'module':
        if (typeof value !== 'string' || value.length === 0 || !isBase64(value)) return null;
        out.module = value;
        sources++;
        break;
      case 'function':
        if (typeof value !== 'string' || value.length === 0 || value.length > FUNCTION_NAME_MAX) return null;
        out.function = value;
        break;
      case 'args':
        if (!Array.isArray(value) || value.length > ARGS_MAX) return null;
        out.args = [...value];
        break;
      case 'limits': {
        if (!isPlainObject(value)) return null;
        const limits: NonNullable<ExecuteJson['limits']> = {};
        for (const name of Object.keys(value)) {
          const n = value[name];
          if (!LIMIT_KEYS.has(name) || typeof n !== 'number' || !Number.isInteger(n)) return null;
          limits[name as keyof typeof limits] = n;
        }
        out.limits = limits;
        break;
      }
    }
  }
  if (sources !== 1) return null;
  return { success: true, data: out } as ExecuteJsonParse;
}

/** POST /modules, JSON form: the module as base64 bytes or as WebAssembly text. */
export const ModuleJsonSchema = z
  .object({ module: ModuleBase64.optional(), wat: WatText.optional() })
  .strict()
  .check((ctx) => oneSource(ctx, ['module', 'wat']));

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
