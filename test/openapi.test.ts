// Holds openapi.yaml (the machine-readable contract) together with the code: the error catalogue
// in src/errors.ts, the trap kinds in src/worker/protocol.ts, the contract's error table and
// outcomes, and which routes the service really serves. Runs against the built output (dist/).

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildApp } from '../dist/src/app.js';
import { loadConfig } from '../dist/src/config.js';
import { ERROR_CATALOGUE } from '../dist/src/errors.js';
import { TRAP_KINDS } from '../dist/src/worker/protocol.js';

type Obj = Record<string, unknown>;

const SOURCE = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
const doc = parse(SOURCE) as Obj;

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const ERROR_BODY_REF = '#/components/schemas/ErrorBody';
const PLANNED = 'x-wasmbox-status';

/** The contract's error table (the HTTP contract, "4xx: the request was refused"), verbatim. */
const CONTRACT_ERRORS: Readonly<Record<string, number>> = {
  invalid_request: 400,
  invalid_module: 400,
  function_not_found: 400,
  invalid_arguments: 400,
  unsupported_import: 400,
  limit_out_of_range: 400,
  unauthorized: 401,
  module_not_found: 404,
  job_not_found: 404,
  payload_too_large: 413,
  module_too_complex: 422,
  unsupported_media_type: 415,
  request_timeout: 408,
  rate_limited: 429,
  overloaded: 503,
};

/** Contract codes whose feature this version does not ship yet: each is kept out of the catalogue
 *  (it is never produced), and openapi.yaml uses it only on responses marked planned. */
const RESERVED: Readonly<Record<string, number>> = {};

/** The contract's outcome table. */
const CONTRACT_OUTCOMES = ['ok', 'trap', 'stack_overflow', 'fuel_exhausted', 'memory_limit_exceeded', 'timeout', 'exited'];

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, where: string): Obj {
  if (!isObj(v)) throw new Error(`${where} is not an object`);
  return v;
}

/** Resolves a local JSON pointer ("#/a/b~1c") in the document; undefined when it does not resolve. */
function resolvePointer(ref: string): unknown {
  if (!ref.startsWith('#')) return undefined;
  if (ref === '#') return doc;
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) node = node[Number(key)];
    else if (isObj(node) && Object.hasOwn(node, key)) node = node[key];
    else return undefined;
  }
  return node;
}

/** Follows $ref chains to the object they name. */
function deref(v: unknown, where: string): Obj {
  let node = obj(v, where);
  for (let i = 0; typeof node.$ref === 'string'; i++) {
    if (i > 20) throw new Error(`${where}: $ref cycle`);
    node = obj(resolvePointer(node.$ref), `${where} -> ${node.$ref}`);
  }
  return node;
}

/** Every value of `key` anywhere in the document, with its location. */
function collect(key: string, node: unknown = doc, at = '#'): { at: string; value: unknown }[] {
  const out: { at: string; value: unknown }[] = [];
  if (Array.isArray(node)) node.forEach((v, i) => out.push(...collect(key, v, `${at}/${i}`)));
  else if (isObj(node)) {
    for (const [k, v] of Object.entries(node)) {
      if (k === key) out.push({ at, value: v });
      out.push(...collect(key, v, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`));
    }
  }
  return out;
}

interface Operation {
  method: string;
  path: string;
  op: Obj;
}

function operations(): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries(obj(doc.paths, 'paths'))) {
    const pathItem = obj(item, path);
    for (const method of HTTP_METHODS) {
      if (pathItem[method] !== undefined) out.push({ method: method.toUpperCase(), path, op: obj(pathItem[method], `${method} ${path}`) });
    }
  }
  return out;
}

/** Whether a response's body is the error body. */
function isErrorResponse(response: Obj): boolean {
  const content = response.content;
  if (!isObj(content)) return false;
  return Object.values(content).some((media) => isObj(media) && isObj(media.schema) && media.schema.$ref === ERROR_BODY_REF);
}

function errorCodesOf(response: Obj, where: string): string[] {
  const codes = response['x-error-codes'];
  if (!Array.isArray(codes) || codes.length === 0 || !codes.every((c) => typeof c === 'string')) {
    throw new Error(`${where}: an error response must list its codes in a non-empty x-error-codes`);
  }
  return codes as string[];
}

function schema(name: string): Obj {
  return obj(obj(obj(doc.components, 'components').schemas, 'components.schemas')[name], `components.schemas.${name}`);
}

function enumOf(name: string): unknown[] {
  const values = schema(name).enum;
  if (!Array.isArray(values)) throw new Error(`components.schemas.${name} has no enum`);
  return values;
}

const catalogue = ERROR_CATALOGUE as Readonly<Record<string, { status: number; summary: string }>>;

describe('openapi.yaml: the document', () => {
  it('parses as YAML and declares OpenAPI 3.1.x', () => {
    expect(isObj(doc)).toBe(true);
    expect(String(doc.openapi)).toMatch(/^3\.1\.\d+$/);
    expect(isObj(doc.info) && typeof doc.info.title === 'string' && typeof doc.info.version === 'string').toBe(true);
    expect(isObj(doc.paths)).toBe(true);
  });

  it('resolves every $ref as a JSON pointer within the document', () => {
    const refs = collect('$ref').filter((r) => typeof r.value === 'string');
    expect(refs.length).toBeGreaterThan(20);
    const unresolved = refs.filter((r) => resolvePointer(r.value as string) === undefined).map((r) => `${r.at}: ${String(r.value)}`);
    expect(unresolved).toEqual([]);
  });
});

describe('openapi.yaml: the error catalogue', () => {
  it('lists every code of ERROR_CATALOGUE in the ErrorCode enum, and no code the catalogue lacks', () => {
    expect([...enumOf('ErrorCode')].sort()).toEqual(Object.keys(catalogue).sort());
  });

  it('documents every code with its catalogue status in the ErrorCode description', () => {
    const description = String(schema('ErrorCode').description);
    for (const [code, { status }] of Object.entries(catalogue)) {
      expect(description, code).toMatch(new RegExp(`^- \`${code}\` \\(${status}\\): \\S`, 'm'));
    }
  });

  it('uses the ErrorCode schema for error.code in the error body', () => {
    const error = obj(obj(schema('ErrorBody').properties, 'ErrorBody.properties').error, 'ErrorBody.properties.error');
    expect(obj(error.properties, 'error.properties').code).toEqual({ $ref: '#/components/schemas/ErrorCode' });
    expect(schema('ErrorBody').required).toEqual(['error', 'requestId']);
  });

  it('gives every error response of every operation codes whose catalogue status is that response status', () => {
    const wrong: string[] = [];
    let checked = 0;
    for (const { method, path, op } of operations()) {
      for (const [status, raw] of Object.entries(obj(op.responses, `${method} ${path} responses`))) {
        const where = `${method} ${path} ${status}`;
        const response = deref(raw, where);
        if (!isErrorResponse(response)) continue;
        checked++;
        for (const code of errorCodesOf(response, where)) {
          const entry = catalogue[code];
          if (!entry && RESERVED[code] !== undefined && response[PLANNED] === 'planned' && String(RESERVED[code]) === status) continue;
          if (!entry) wrong.push(`${where}: ${code} is not in the catalogue`);
          else if (String(entry.status) !== status) wrong.push(`${where}: ${code} has status ${entry.status} in the catalogue`);
        }
      }
    }
    expect(checked).toBeGreaterThan(10);
    expect(wrong).toEqual([]);
  });

  it('gives every reusable error response an x-status that matches its codes and every place it is used', () => {
    const responses = obj(obj(doc.components, 'components').responses, 'components.responses');
    const wrong: string[] = [];
    for (const [name, raw] of Object.entries(responses)) {
      const response = obj(raw, name);
      if (!isErrorResponse(response)) continue;
      const status = response['x-status'];
      if (typeof status !== 'number') {
        wrong.push(`${name}: no numeric x-status`);
        continue;
      }
      for (const code of errorCodesOf(response, name)) {
        const expected = catalogue[code]?.status ?? (response[PLANNED] === 'planned' ? RESERVED[code] : undefined);
        if (expected !== status) wrong.push(`${name}: ${code} is ${expected ?? 'not in the catalogue'}, not ${status}`);
      }
      for (const { method, path, op } of operations()) {
        for (const [used, r] of Object.entries(obj(op.responses, `${method} ${path} responses`))) {
          if (isObj(r) && r.$ref === `#/components/responses/${name}` && used !== String(status)) {
            wrong.push(`${method} ${path}: ${name} (x-status ${status}) is used as ${used}`);
          }
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('documents every catalogue code on at least one error response', () => {
    const documented = new Set<string>();
    for (const { value } of collect('x-error-codes')) {
      if (Array.isArray(value)) for (const c of value) documented.add(String(c));
    }
    expect(Object.keys(catalogue).filter((c) => !documented.has(c))).toEqual([]);
  });

  it("has every code of the contract's error table in the catalogue with the contract's status, but the reserved ones", () => {
    expect(Object.keys(CONTRACT_ERRORS)).toHaveLength(15);
    for (const [code, status] of Object.entries(CONTRACT_ERRORS)) {
      if (RESERVED[code] !== undefined) {
        expect(catalogue[code], `${code} is reserved: never produced, so not in the catalogue`).toBeUndefined();
        expect(RESERVED[code]).toBe(status);
        expect(String(schema('ErrorCode').description)).toContain(`\`${code}\` (${status}) is reserved`);
      } else {
        expect(catalogue[code]?.status, code).toBe(status);
      }
    }
  });

  it('adds only route_not_found (404), store_full (409), headers_too_large (431), backend_unavailable (503) and internal_error (500) to the contract table', () => {
    const extra = Object.keys(catalogue).filter((c) => !Object.hasOwn(CONTRACT_ERRORS, c));
    expect(extra.sort()).toEqual(['backend_unavailable', 'headers_too_large', 'internal_error', 'route_not_found', 'store_full']);
    expect(catalogue.backend_unavailable?.status).toBe(503);
    expect(catalogue.route_not_found?.status).toBe(404);
    expect(catalogue.store_full?.status).toBe(409);
    expect(catalogue.headers_too_large?.status).toBe(431);
    expect(catalogue.internal_error?.status).toBe(500);
  });
});

describe('openapi.yaml: outcomes and trap kinds', () => {
  it("lists exactly the contract's seven outcomes in the Outcome enum, each described", () => {
    expect(enumOf('Outcome')).toEqual(CONTRACT_OUTCOMES);
    const description = String(schema('Outcome').description);
    for (const o of CONTRACT_OUTCOMES) expect(description, o).toContain(`\`${o}\`:`);
  });

  it('lists exactly TRAP_KINDS from the worker protocol in the TrapKind enum, each described', () => {
    expect(enumOf('TrapKind')).toEqual([...TRAP_KINDS]);
    const description = String(schema('TrapKind').description);
    for (const kind of TRAP_KINDS) expect(description, kind).toMatch(new RegExp(`^- \`${kind}\`: \\S`, 'm'));
  });

  it('answers /execute with the ExecuteResponse schema (or BatchResponse for a batch), whose outcome, trap and telemetry use those schemas', () => {
    const ok = deref(obj(obj(obj(doc.paths, 'paths')['/execute'], '/execute').post, 'post').responses, 'responses');
    const media = obj(obj(deref(ok['200'], '200').content, 'content')['application/json'], 'application/json');
    expect(media.schema).toEqual({ oneOf: [{ $ref: '#/components/schemas/ExecuteResponse' }, { $ref: '#/components/schemas/BatchResponse' }] });
    const batch = obj(schema('BatchResponse').properties, 'BatchResponse.properties');
    expect(obj(obj(batch.calls, 'calls').items, 'items').$ref).toBe('#/components/schemas/CallResponse');
    const call = obj(schema('CallResponse').properties, 'CallResponse.properties');
    expect(obj(call.outcome, 'outcome').$ref).toBe('#/components/schemas/Outcome');
    expect(obj(call.telemetry, 'telemetry').$ref).toBe('#/components/schemas/CallTelemetry');
    const props = obj(schema('ExecuteResponse').properties, 'ExecuteResponse.properties');
    expect(obj(props.outcome, 'outcome').$ref).toBe('#/components/schemas/Outcome');
    expect(obj(props.trap, 'trap').$ref).toBe('#/components/schemas/Trap');
    expect(obj(props.telemetry, 'telemetry').$ref).toBe('#/components/schemas/Telemetry');
    expect(obj(obj(schema('Trap').properties, 'Trap.properties').kind, 'kind').$ref).toBe('#/components/schemas/TrapKind');
    const telemetry = obj(schema('Telemetry').properties, 'Telemetry.properties');
    // Integers on every outcome, timeouts included (the contract), and the flag for a terminated thread.
    expect(obj(telemetry.fuelConsumed, 'fuelConsumed').type).toBe('integer');
    expect(obj(telemetry.memoryPeakBytes, 'memoryPeakBytes').type).toBe('integer');
    expect(obj(telemetry.threadKilled, 'threadKilled').type).toBe('boolean');
    expect(schema('Telemetry').required).toEqual(expect.arrayContaining(['fuelConsumed', 'memoryPeakBytes', 'threadKilled']));
  });
});

describe('openapi.yaml: headers', () => {
  it('declares x-request-id on every response, and Retry-After on every 429 and 503', () => {
    const missing: string[] = [];
    for (const { method, path, op } of operations()) {
      for (const [status, raw] of Object.entries(obj(op.responses, `${method} ${path} responses`))) {
        const headers = deref(raw, `${method} ${path} ${status}`).headers;
        const names = isObj(headers) ? Object.keys(headers).map((h) => h.toLowerCase()) : [];
        if (!names.includes('x-request-id')) missing.push(`${method} ${path} ${status}: x-request-id`);
        if ((status === '429' || status === '503') && !names.includes('retry-after')) missing.push(`${method} ${path} ${status}: retry-after`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('openapi.yaml against the running service', () => {
  let app: Awaited<ReturnType<typeof buildApp>>;
  beforeAll(async () => {
    app = await buildApp({ config: loadConfig({ WASMBOX_WORKERS: '1', WASMBOX_PREPARE_WORKERS: '1' }), logger: false });
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('marks with x-wasmbox-status: planned exactly the operations the service does not serve', async () => {
    const served: string[] = [];
    const marked: string[] = [];
    for (const { method, path, op } of operations()) {
      const status = op[PLANNED];
      if (status !== undefined) expect(status, `${method} ${path}`).toBe('planned');
      if (status === undefined) served.push(`${method} ${path}`);
      const url = path.replace('{moduleId}', `sha256:${'0'.repeat(64)}`).replace('{jobId}', 'job-1');
      const res = await app.inject({
        method: method as 'GET' | 'POST' | 'DELETE',
        url,
        ...(method === 'POST' && { payload: {} }),
      });
      const notFound = res.statusCode === 404 && (res.json() as { error?: { code?: string } }).error?.code === 'route_not_found';
      if (notFound) marked.push(`${method} ${path}`);
      expect(notFound, `${method} ${path} (${status === undefined ? 'served' : 'planned'}) answered ${res.statusCode}`).toBe(status !== undefined);
    }
    expect(served.sort()).toEqual([
      'DELETE /jobs/{jobId}',
      'DELETE /modules/{moduleId}',
      'GET /',
      'GET /healthz',
      'GET /jobs/{jobId}',
      'GET /metrics',
      'GET /modules/{moduleId}',
      'GET /openapi.yaml',
      'GET /readyz',
      'POST /execute',
      'POST /jobs',
      'POST /modules',
    ]);
  });

  it('answers an unknown route with 404 route_not_found in the error body, echoing x-request-id', async () => {
    const res = await app.inject({ method: 'GET', url: '/no-such-route', headers: { 'x-request-id': 'openapi-test-1' } });
    expect(res.statusCode).toBe(404);
    expect(res.headers['x-request-id']).toBe('openapi-test-1');
    expect(res.json()).toEqual({ error: { code: 'route_not_found', message: expect.any(String) }, requestId: 'openapi-test-1' });
  });

  it('serves this document at GET /openapi.yaml as application/yaml', async () => {
    const res = await app.inject({ method: 'GET', url: '/openapi.yaml' });
    expect(res.statusCode).toBe(200);
    expect(String(res.headers['content-type'])).toMatch(/^application\/yaml/);
    expect(res.body).toBe(SOURCE);
  });
});
