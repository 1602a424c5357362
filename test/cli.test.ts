// The command-line tool, run for real: `node dist/src/cli/main.js ...` as a child process (built by
// `npm test`), for every subcommand and every exit code; `--json` in this process and through
// `--server` against a real server on a real port give the same body.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = path.join(ROOT, 'dist/src/cli/main.js');
const PROGRAMS = path.join(ROOT, 'test/wasi/programs');

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment of the children: this one without settings that would change the answers. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('WASMBOX_') && k !== 'PORT' && k !== 'HOST') env[k] = v;
  }
  return { ...env, ...extra };
}

/** Runs the CLI from the repository root. stdin is /dev/null unless `input` is given. */
function cli(args: string[], opts: { input?: string | Uint8Array; env?: Record<string, string> } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: cleanEnv(opts.env),
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    const timer = setTimeout(() => child.kill('SIGKILL'), 25_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const NO_STACK = /\n\s+at /;
const USAGE_RUN = 'usage: wasmbox run FILE';

let dir: string;
const mod = (name: string): string => path.join(dir, `${name}.wasm`);

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-cli-'));
  const modules: Record<string, string> = {
    values: `(module
      (func (export "id64") (param i64) (result i64) local.get 0)
      (func (export "idf64") (param f64) (result f64) local.get 0)
      (func (export "idf32") (param f32) (result f32) local.get 0)
      (func (export "pair") (param i32 f64) (result i32 f64) local.get 0 local.get 1))`,
    traps: `(module
      (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
      (func $rec (export "recurse") (param i32) (result i32) (call $rec (i32.add (local.get 0) (i32.const 1))))
      (func (export "boom") unreachable))`,
    big: '(module (memory 32) (func (export "touch") (result i32) (i32.load (i32.const 0))))',
    start: '(module (func (export "_start")) (func (export "other") (param i32) (result i32) local.get 0))',
    nothing: '(module (memory 1) (export "mem" (memory 0)))',
    imports: '(module (import "env" "f" (func)) (func (export "g")))',
    described: `(module
      (memory (export "memory") 1 4)
      (table 2 10 funcref)
      (func $f (export "mix") (param i32 i64 f32 f64) (result f64 i32) (local.get 3) (local.get 0))
      (func (export "none"))
      (start $s) (func $s))`,
  };
  for (const [name, text] of Object.entries(modules)) writeFileSync(mod(name), wat(text));
  writeFileSync(mod('garbage'), Buffer.from('this is not wasm'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('wasmbox --help, --version and bad usage', () => {
  it('--help lists the commands and every exit code', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    for (const word of ['run', 'inspect', 'serve', 'Exit codes']) expect(r.stdout).toContain(word);
    for (const code of ['64', '65', '66', '69', '70', '77', '78', '80', '81', '82', '83', '84']) expect(r.stdout).toMatch(new RegExp(`^ +${code}  `, 'm'));
  });

  it.concurrent.for<[string[]]>([[['help', 'run']], [['run', '--help']], [['inspect', '-h']], [['help', 'serve']]])('%j prints the command help', async ([args], { expect }) => {
    const r = await cli(args);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: wasmbox (run|inspect|serve)/);
  });

  it('--version prints the package version', async () => {
    const r = await cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^wasmbox \d+\.\d+\.\d+\n$/);
  });

  it.concurrent.for<[string[], string]>([
    [[], 'no command given'],
    [['frobnicate'], 'unknown command "frobnicate"'],
    [['--fuel', '5'], 'comes before a command'],
    [['run'], 'run needs a FILE'],
    [['run', 'examples/add.wasm', '5', '10', '--nope'], 'unknown option --nope'],
    [['run', 'examples/add.wasm', '5', '10', '--fuel'], '--fuel needs a value'],
    [['run', 'examples/add.wasm', '5', '10', '--fuel', 'lots'], '--fuel must be a whole number'],
    [['run', 'examples/add.wasm', '5', '10', '--memory', '1.5'], '--memory must be a whole number'],
    [['run', 'examples/add.wasm', '5', '10', '--json=yes'], '--json does not take a value'],
    [['run', 'examples/add.wasm', '5', '10', '--api-key', 'k'], '--api-key is for --server'],
    [['run', 'examples/add.wasm', '5', '10', '--server', 'not a url'], '--server must be a URL'],
    [['run', 'examples/add.wasm', '5', '10', '--', 'x'], 'are for WASI programs'],
    [['run', 'examples/add.wasm', '5', '10', '--env', 'A=1'], '--env are for WASI programs'],
    [['run', 'examples/add.wasm', '5', '10', '-q', '--telemetry'], 'contradict'],
    [['inspect'], 'inspect needs a FILE'],
    [['inspect', 'examples/add.wasm', 'extra'], 'inspect takes one FILE'],
    [['serve', 'now'], 'serve takes no arguments'],
    [['serve', '--port', '70000'], '--port must be from 0 to 65535'],
  ])('%j is bad usage (64): the problem, the usage line, no stack trace', async ([args, message], { expect }) => {
    const r = await cli(args as string[]);
    expect(r.code).toBe(64);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(message);
    expect(r.stderr).toMatch(/usage: wasmbox /);
    expect(r.stderr).not.toMatch(NO_STACK);
  });
});

describe('wasmbox run (in this process)', () => {
  it('prints the results, nothing else when stderr is not a terminal', async () => {
    const r = await cli(['run', 'examples/add.wasm', 'add', '5', '10', '--fuel', '50000', '--memory', '20']);
    expect(r).toMatchObject({ code: 0, stdout: '15\n', stderr: '' });
  });

  it('--telemetry prints the table on stderr: fuel consumed / limit, peak memory / limit, duration', async () => {
    const r = await cli(['run', 'examples/add.wasm', '5', '10', '--fuel', '50000', '--memory', '20', '--telemetry']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('15\n');
    expect(r.stderr).toMatch(/^ +outcome +ok$/m);
    expect(r.stderr).toMatch(/^ +fuel +4 \/ 50,000 \(<0\.01%\)$/m);
    expect(r.stderr).toMatch(/^ +memory +0 B \/ 20 MiB$/m);
    expect(r.stderr).toMatch(/^ +duration +[\d.]+ (ns|µs|ms) \([\d,]+ ns\)$/m);
  });

  it.concurrent.for<[string[], string]>([
    // the function inferred (the only export) or named; negative numbers are arguments
    [['examples/add.wasm', '5', '10'], '15\n'],
    [['examples/add.wasm', '-5', '3'], '-2\n'],
    [['examples/add.wasm', 'add', '-2147483648', '-1'], '2147483647\n'],
    [['examples/add.wasm', '4294967295', '+1'], '0\n'],
    [['examples/add.wasm', '0x10', '1'], '17\n'],
    [['examples/fib.wasm', '90'], '2880067194370816120\n'],
    // i64 beyond 2^53, both ends of the range, and the unsigned spelling of -1
    [['VALUES', 'id64', '9007199254740993'], '9007199254740993\n'],
    [['VALUES', 'id64', '-9223372036854775808'], '-9223372036854775808\n'],
    [['VALUES', 'id64', '18446744073709551615'], '-1\n'],
    // floats: decimals, and the specials as words
    [['VALUES', 'idf64', '1.5'], '1.5\n'],
    [['VALUES', 'idf64', '-1.5e300'], '-1.5e+300\n'],
    [['VALUES', 'idf64', 'NaN'], 'NaN\n'],
    [['VALUES', 'idf64', '-Infinity'], '-Infinity\n'],
    [['VALUES', 'idf64', '-0'], '-0\n'],
    [['VALUES', 'idf64', 'inf'], 'Infinity\n'],
    [['VALUES', 'idf32', '0.1'], '0.1\n'],
    // multi-value: one result per line
    [['VALUES', 'pair', '-7', '2.25'], '-7\n2.25\n'],
    // _start is the default when exported; another export is named
    [['START'], ''],
    [['START', 'other', '7'], '7\n'],
  ])('run %j prints %j', async ([args, out], { expect }) => {
    const resolved = args.map((a) => (a === 'VALUES' ? mod('values') : a === 'START' ? mod('start') : a));
    const r = await cli(['run', ...resolved]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(out);
    expect(r.code).toBe(0);
  });

  it.concurrent.for<[string[], number, RegExp]>([
    // outcome -> exit code, with the explanation on stderr
    [['TRAPS', 'div', '1', '0'], 80, /trap \(integer_divide_by_zero\)/],
    [['TRAPS', 'boom'], 80, /trap \(unreachable\)/],
    // Recursing until the stack is exhausted takes tens of ms of guest time (the collector scans
    // the deep stack); a generous deadline keeps a loaded machine from turning it into a timeout.
    [['TRAPS', 'recurse', '0', '--timeout', '20000'], 81, /stack overflow/],
    [['examples/spin.wasm', '--fuel', '100000'], 82, /fuel exhausted: the run used its whole budget of 100000/],
    [['BIG', '--memory', '1'], 83, /memory limit exceeded \(1 MiB; raise it with --memory\)/],
    [['examples/spin.wasm', '--fuel', '10000000000', '--timeout', '200'], 84, /timeout: the run reached its wall-clock limit of 200 ms/],
  ])('run %j exits %i', async ([args, code, message], { expect }) => {
    const resolved = args.map((a) => (a === 'TRAPS' ? mod('traps') : a === 'BIG' ? mod('big') : a));
    const r = await cli(['run', ...resolved, '--telemetry']);
    expect(r.code).toBe(code);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/^ +fuel +/m);
    expect(r.stderr).not.toMatch(NO_STACK);
  });

  it('--progress shows the fuel burnt so far while a local run is in flight, rising line by line', async () => {
    const r = await cli(['run', 'examples/spin.wasm', '--fuel', '1e10', '--timeout', '900', '--progress']);
    expect(r.code).toBe(84);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('wasmbox: running'));
    expect(lines.length, r.stderr).toBeGreaterThanOrEqual(2);
    const fuel = lines.map((l) => {
      const m = /^wasmbox: running  fuel ([\d,]+) \/ 10,000,000,000 \([\d.<]+%\)  memory 0 B  \S+ m?s$/.exec(l);
      expect(m, l).not.toBeNull();
      return Number(m![1]!.replaceAll(',', ''));
    });
    // The account is published at the guest's slice boundaries while it spins: it rises.
    expect(fuel.at(-1)!).toBeGreaterThan(fuel[0]!);
  });

  it('--progress and --quiet contradict each other', async () => {
    const r = await cli(['run', 'examples/spin.wasm', '--progress', '--quiet']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('--progress and --quiet contradict each other');
  });

  it('a timeout shows the fuel burnt and the memory used up to the deadline', async () => {
    const r = await cli(['run', 'examples/spin.wasm', '--fuel', '1e10', '--timeout', '150', '--telemetry']);
    expect(r.code).toBe(84);
    expect(r.stderr).toMatch(/^ +fuel +[1-9][\d,]* \/ 10,000,000,000 \([\d.<]+%\)$/m);
    expect(r.stderr).toMatch(/^ +memory +0 B \/ 64 MiB$/m);
  });

  it.concurrent.for<[string[], number, string]>([
    // the service's refusals of what was typed: usage (64), with the usage line
    [['examples/add.wasm', '5'], 64, 'expected 2 arguments, got 1; signature: add(i32, i32) -> i32 (invalid_arguments)'],
    [['examples/add.wasm', '5', '1.5'], 64, 'args[1]: expected an i32'],
    [['examples/add.wasm', 'ad', '1', '2'], 64, 'no function named "ad"; exported functions: add(i32, i32) -> i32 (function_not_found)'],
    [['examples/add.wasm', '1', '2', '--fuel', '0'], 64, 'limits.fuel must be an integer from 1 to 10000000000 on this server; got 0 (limit_out_of_range)'],
    [['VALUES', '1'], 64, 'exports 4 functions; name the one to run: id64(i64) -> i64, idf64(f64) -> f64'],
    [['NOTHING'], 64, 'exports no functions'],
    // refusals of the module itself (65), without the usage line
    [['GARBAGE'], 65, '(invalid_module)'],
    [['IMPORTS'], 65, 'imports function "env" "f", which this service does not provide'],
    // an unreadable FILE (66)
    [['no/such/file.wasm'], 66, 'cannot read no/such/file.wasm: no such file'],
    [['examples'], 66, 'cannot read examples: it is a directory'],
  ])('run %j exits %i', async ([args, code, message], { expect }) => {
    const names: Record<string, string> = { VALUES: mod('values'), NOTHING: mod('nothing'), GARBAGE: mod('garbage'), IMPORTS: mod('imports') };
    const r = await cli(['run', ...args.map((a) => names[a] ?? a)]);
    expect(r.code).toBe(code);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(message);
    if (code === 64) expect(r.stderr).toContain(USAGE_RUN);
    else expect(r.stderr).not.toContain('usage:');
    expect(r.stderr).not.toMatch(NO_STACK);
  });

  it('an invalid WASMBOX_* setting exits 78 naming the variable; server-only settings are ignored', async () => {
    const bad = await cli(['run', 'examples/add.wasm', '1', '2'], { env: { WASMBOX_FUEL_MAX: 'lots' } });
    expect(bad.code).toBe(78);
    expect(bad.stderr).toContain('WASMBOX_FUEL_MAX');
    expect(bad.stderr).not.toMatch(NO_STACK);
    const ignored = await cli(['run', 'examples/add.wasm', '1', '2'], { env: { PORT: 'not-a-port', LOG_LEVEL: 'loud' } });
    expect(ignored).toMatchObject({ code: 0, stdout: '3\n' });
  });

  it('serve with an invalid WASMBOX_* setting exits 78 naming the variable, without a stack trace', async () => {
    const bad = await cli(['serve'], { env: { WASMBOX_WORKERS: 'many' } });
    expect(bad.code).toBe(78);
    expect(bad.stderr).toContain('WASMBOX_WORKERS');
    expect(bad.stderr).not.toMatch(NO_STACK);
  });

  it('the configured limits apply: WASMBOX_FUEL_DEFAULT is the default budget', async () => {
    const r = await cli(['run', 'examples/spin.wasm', '--json'], { env: { WASMBOX_FUEL_DEFAULT: '1234' } });
    expect(r.code).toBe(82);
    expect(JSON.parse(r.stdout).telemetry).toMatchObject({ fuelConsumed: 1234, fuelLimit: 1234 });
  });

  it('--json prints exactly the response body, and the exit code still follows the outcome', async () => {
    const ok = await cli(['run', 'examples/add.wasm', '5', '10', '--fuel', '50000', '--memory', '20', '--json']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.endsWith('}\n')).toBe(true);
    const body = JSON.parse(ok.stdout);
    expect(Object.keys(body)).toEqual(['outcome', 'results', 'telemetry', 'moduleId']);
    expect(body).toMatchObject({
      outcome: 'ok',
      results: [15],
      telemetry: { fuelConsumed: 4, fuelLimit: 50000, memoryPeakBytes: 0, memoryLimitBytes: 20 * 1048576, moduleCached: false },
      moduleId: 'sha256:f61fd62f57c41269c3c23f360eeaf1090b1db9c38651106674d48bc65dba88ba',
    });
    const refused = await cli(['run', 'examples/add.wasm', '5', '--json']);
    expect(refused.code).toBe(64);
    expect(refused.stderr).toBe('');
    expect(JSON.parse(refused.stdout)).toMatchObject({ error: { code: 'invalid_arguments' }, requestId: expect.any(String) });
  });
});

describe('wasmbox inspect', () => {
  it('describes exports with signatures, other exports, imports, memory and table limits, size, id', async () => {
    const r = await cli(['inspect', mod('described')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^module id +sha256:[0-9a-f]{64}$/m);
    expect(r.stdout).toMatch(/^size +\d+ bytes$/m);
    expect(r.stdout).toMatch(/^functions +mix\(i32, i64, f32, f64\) -> \(f64, i32\)\n +none\(\) -> \(\)$/m);
    expect(r.stdout).toMatch(/^other exports +memory \(memory\)$/m);
    expect(r.stdout).toMatch(/^imports +none$/m);
    expect(r.stdout).toMatch(/^memory +min 1 page \(64 KiB\), max 4 pages \(256 KiB\)$/m);
    expect(r.stdout).toMatch(/^tables +funcref, min 2 elements, max 10$/m);
    expect(r.stdout).toMatch(/^start function +yes/m);
  });

  it('--json is the description body of POST /modules', async () => {
    const r = await cli(['inspect', 'examples/fib.wasm', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      moduleId: 'sha256:0e3dc4430aadc5223c73b09aad7b001694ee9562130ab96b7ffc105981ce5069',
      size: 78,
      exports: [{ name: 'fib', params: ['i32'], results: ['i64'] }],
      otherExports: [],
      imports: [],
      memory: null,
      tables: [],
      hasStart: false,
      storedAt: expect.any(String),
    });
  });

  it.concurrent.for<[string[], number, string]>([
    [['GARBAGE'], 65, '(invalid_module)'],
    [['no-such.wasm'], 66, 'cannot read no-such.wasm'],
  ])('inspect %j exits %i', async ([args, code, message], { expect }) => {
    const r = await cli(['inspect', ...args.map((a) => (a === 'GARBAGE' ? mod('garbage') : a))]);
    expect(r.code).toBe(code);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toMatch(NO_STACK);
  });
});

// Timing fields and request ids differ from run to run (and so does the fuel a run burns before
// its deadline); everything else must be identical.
function comparable(text: string): unknown {
  const body = JSON.parse(text);
  if (body.outcome === 'timeout') {
    expect(Number.isInteger(body.telemetry.fuelConsumed)).toBe(true);
    delete body.telemetry.fuelConsumed;
  }
  if (body.telemetry) {
    // Times (a local run may wait for its runner thread to start), and whether the module was cached.
    for (const k of ['durationNs', 'instantiateNs', 'prepareNs', 'queueNs', 'moduleCached']) {
      expect(body.telemetry).toHaveProperty(k);
      delete body.telemetry[k];
    }
  }
  if (body.error) {
    expect(typeof body.requestId).toBe('string');
    delete body.requestId;
  }
  if (body.storedAt) delete body.storedAt;
  return body;
}

describe('--server: the same through a real server', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startServer();
  });
  afterAll(async () => {
    await server?.close();
  });

  const CASES: [string, string[]][] = [
    ['ok', ['run', 'examples/add.wasm', '5', '10', '--fuel', '50000', '--memory', '20']],
    ['i64 past 2^53', ['run', 'examples/fib.wasm', '90']],
    ['floats', ['run', 'VALUES', 'pair', '-3', '-0']],
    ['NaN', ['run', 'VALUES', 'idf32', 'NaN']],
    ['i64 min', ['run', 'VALUES', 'id64', '-9223372036854775808']],
    ['trap', ['run', 'TRAPS', 'div', '7', '0']],
    ['stack overflow', ['run', 'TRAPS', 'recurse', '1', '--timeout', '20000']],
    ['fuel exhausted', ['run', 'examples/spin.wasm', '--fuel', '100000']],
    ['memory limit', ['run', 'BIG', '--memory', '1']],
    ['timeout', ['run', 'examples/spin.wasm', '--fuel', '10000000000', '--timeout', '200']],
    ['_start', ['run', 'START']],
    ['invalid_arguments', ['run', 'examples/add.wasm', '5', 'x']],
    ['function_not_found', ['run', 'examples/add.wasm', 'sub', '5']],
    ['limit_out_of_range', ['run', 'examples/add.wasm', '1', '2', '--memory', '5000']],
    ['invalid_module', ['run', 'GARBAGE']],
    ['unsupported_import', ['run', 'IMPORTS']],
    ['inspect', ['inspect', 'DESCRIBED']],
    ['inspect fib', ['inspect', 'examples/fib.wasm']],
    ['inspect invalid', ['inspect', 'GARBAGE']],
  ];

  it.each(CASES)('%s: identical --json and exit code locally and through --server', async (_name, args) => {
    const names: Record<string, string> = {
      VALUES: mod('values'),
      TRAPS: mod('traps'),
      BIG: mod('big'),
      START: mod('start'),
      GARBAGE: mod('garbage'),
      IMPORTS: mod('imports'),
      DESCRIBED: mod('described'),
    };
    const resolved = args.map((a) => names[a] ?? a);
    const [local, remote] = await Promise.all([cli([...resolved, '--json']), cli([...resolved, '--json', '--server', server.url])]);
    expect(remote.stderr).toBe('');
    expect(local.stderr).toBe('');
    const [r, l] = [comparable(remote.stdout), comparable(local.stdout)] as { outcome?: string; telemetry?: { fuelConsumed?: number } }[];
    if (r?.outcome === 'stack_overflow' && l?.outcome === 'stack_overflow') {
      // How deep a recursion gets before V8's stack runs out depends on its frames' size, which
      // changes when the optimizing tier's code replaces the baseline's during the run: a matter
      // of timing, so the two runs' work may differ by a few levels (0.01 % seen in CI).
      const [rf, lf] = [r.telemetry!.fuelConsumed!, l.telemetry!.fuelConsumed!];
      expect(Number.isInteger(rf) && Number.isInteger(lf)).toBe(true);
      expect(Math.abs(rf - lf)).toBeLessThanOrEqual(lf / 100);
      delete r.telemetry!.fuelConsumed;
      delete l.telemetry!.fuelConsumed;
    }
    expect(r).toEqual(l);
    expect(remote.code).toBe(local.code);
  });

  it('prints the same human output through --server', async () => {
    const r = await cli(['run', 'examples/add.wasm', '5', '10', '--server', `${server.url}/`]);
    expect(r).toMatchObject({ code: 0, stdout: '15\n', stderr: '' });
    const t = await cli(['run', mod('traps'), 'boom', '--server', server.url]);
    expect(t.code).toBe(80);
    expect(t.stderr).toContain('trap (unreachable)');
    const i = await cli(['inspect', 'examples/add.wasm', '--server', server.url]);
    expect(i.code).toBe(0);
    expect(i.stdout).toMatch(/^functions +add\(i32, i32\) -> i32$/m);
    expect(i.stdout).toContain(`stored on       ${server.url} since `);
  });

  it('inspect --server stores the module there (GET /modules/{id} finds it)', async () => {
    const r = await cli(['inspect', 'examples/spin.wasm', '--server', server.url, '--json']);
    const { moduleId } = JSON.parse(r.stdout);
    const got = await server.get(`/modules/${moduleId}`);
    expect(got.status).toBe(200);
    expect(got.body.exports).toEqual([{ name: 'spin', params: [], results: [] }]);
  });
});

describe('--server failures and the API key', () => {
  let fake: Server;
  let url: string;
  let seen: IncomingHttpHeaders[] = [];
  let reply: { status: number; body: string } = { status: 200, body: '{}' };

  beforeAll(async () => {
    fake = createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => {
        res.writeHead(reply.status, { 'content-type': 'application/json' });
        res.end(reply.body);
      });
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const addr = fake.address();
    url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => fake.close(resolve));
  });

  const errorBody = (code: string, message: string): string => JSON.stringify({ error: { code, message }, requestId: 'r-1' });

  it('sends --api-key (or WASMBOX_API_KEY) as a bearer token and x-api-key; a 401 exits 77', async () => {
    seen = [];
    reply = { status: 401, body: errorBody('unauthorized', 'a valid API key is required') };
    const r = await cli(['run', 'examples/add.wasm', '1', '2', '--server', url, '--api-key', 's3cret']);
    expect(r.code).toBe(77);
    expect(r.stderr).toContain('a valid API key is required (unauthorized)');
    expect(seen[0]).toMatchObject({ authorization: 'Bearer s3cret', 'x-api-key': 's3cret', 'content-type': 'application/json' });
    const env = await cli(['inspect', 'examples/add.wasm', '--server', url, '--json'], { env: { WASMBOX_API_KEY: 'from-env' } });
    expect(env.code).toBe(77);
    expect(JSON.parse(env.stdout)).toEqual({ error: { code: 'unauthorized', message: 'a valid API key is required' }, requestId: 'r-1' });
    expect(seen[1]).toMatchObject({ authorization: 'Bearer from-env', 'x-api-key': 'from-env' });
    const none = await cli(['run', 'examples/add.wasm', '1', '2', '--server', url]);
    expect(none.code).toBe(77);
    expect(seen[2]!.authorization).toBeUndefined();
  });

  it('a busy server (503 overloaded) exits 69', async () => {
    reply = { status: 503, body: errorBody('overloaded', 'the server is busy: the run queue is full; retry shortly') };
    const r = await cli(['run', 'examples/add.wasm', '1', '2', '--server', url]);
    expect(r.code).toBe(69);
    expect(r.stderr).toContain('the run queue is full');
  });

  it('a 500, or an answer that is not the service\'s, exits 70 without a stack trace', async () => {
    reply = { status: 500, body: errorBody('internal_error', 'internal error; the request id identifies it in the server log') };
    const r = await cli(['run', 'examples/add.wasm', '1', '2', '--server', url]);
    expect(r.code).toBe(70);
    expect(r.stderr).toContain('(internal_error)');
    reply = { status: 200, body: '<html>hello</html>' };
    const html = await cli(['run', 'examples/add.wasm', '1', '2', '--server', url]);
    expect(html.code).toBe(70);
    expect(html.stderr).toContain("answered HTTP 200 with a body that is not the service's: <html>hello</html>");
    expect(html.stderr).not.toMatch(NO_STACK);
  });

  it('an unreachable server exits 69', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createNetServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    });
    const r = await cli(['run', 'examples/add.wasm', '1', '2', '--server', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(69);
    expect(r.stderr).toContain(`cannot reach the service at http://127.0.0.1:${port}`);
    expect(r.stderr).not.toMatch(NO_STACK);
  });
});

interface Serving {
  child: ChildProcess;
  /** The process that listens (the child itself, or its descendant under npx). */
  serverPid: number;
  url: string;
  port: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Whether the process `pid` still exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Whether a fresh connection to the port is refused. */
function portClosed(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

/** Polls `check` until it holds or `ms` pass (a generous bound: the machine may be busy). */
async function eventually(check: () => boolean | Promise<boolean>, ms = 20_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('wasmbox serve', () => {
  const serving: Serving[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const s of serving.splice(0)) {
      for (const pid of [s.serverPid, s.child.pid]) if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
    }
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** Starts `command args` on port 0 and waits for the server's "listening" log line, which
   *  carries its address and the pid of the process that listens. */
  async function serve(command: string, args: string[], extraEnv: Record<string, string> = {}): Promise<Serving> {
    const data = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-serve-'));
    dirs.push(data);
    const child = spawn(command, args, {
      cwd: ROOT,
      env: cleanEnv({ LOG_LEVEL: 'info', WASMBOX_WORKERS: '1', WASMBOX_DATA_DIR: data, WASMBOX_DRAIN_DELAY_MS: '200', ...extraEnv }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    let out = '';
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
    const listening = await new Promise<{ pid: number; url: string }>((resolve, reject) => {
      child.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        for (const line of out.split('\n')) {
          const m = /"pid":(\d+).*"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(line);
          if (m) resolve({ pid: Number(m[1]), url: m[2]! });
        }
      });
      void exited.then((e) => reject(new Error(`${command} exited (${JSON.stringify(e)}) before listening: ${err}`)));
    });
    const s: Serving = { child, serverPid: listening.pid, url: listening.url, port: Number(new URL(listening.url).port), exited };
    serving.push(s);
    return s;
  }

  it('starts the server (as npm start does), answers /healthz and runs, stops on SIGTERM with 0 and closes the port', async () => {
    const s = await serve(process.execPath, [CLI, 'serve', '--port', '0', '--host', '127.0.0.1']);
    expect(s.serverPid).toBe(s.child.pid);
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const r = await cli(['run', 'examples/fib.wasm', '90', '--server', s.url]);
    expect(r).toMatchObject({ code: 0, stdout: '2880067194370816120\n' });
    s.child.kill('SIGTERM');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(await portClosed(s.port)).toBe(true);
  });

  it('stops on SIGINT with 0 and closes the port', async () => {
    const s = await serve(process.execPath, [CLI, 'serve', '--port', '0', '--host', '127.0.0.1']);
    s.child.kill('SIGINT');
    expect(await s.exited).toEqual({ code: 0, signal: null });
    expect(await portClosed(s.port)).toBe(true);
  });

  // npx runs the command in a `sh -c` of its own; a SIGTERM to npx reaches that shell, which dies
  // of it without passing it on. The server must still stop, and nothing may be left running.
  // npx runs offline from a fresh cache without install scripts: it links this project and runs
  // its built dist/ (nothing is rebuilt while other test files read it).
  it.skipIf(spawnSync('npx', ['--version']).status !== 0)(
    'npx wasmbox serve from the project directory: SIGTERM to npx stops the server it started, closes the port and leaves no process',
    { timeout: 90_000 },
    async () => {
      const npmCache = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-npx-cache-'));
      dirs.push(npmCache);
      const s = await serve('npx', ['wasmbox', 'serve', '--port', '0', '--host', '127.0.0.1'], {
        npm_config_cache: npmCache,
        npm_config_offline: 'true',
        npm_config_ignore_scripts: 'true',
        npm_config_yes: 'true',
        npm_config_update_notifier: 'false',
      });
      // the server is not npx's own process but one it started (through a shell)
      expect(s.serverPid).not.toBe(s.child.pid);
      expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
      s.child.kill('SIGTERM');
      await s.exited;
      expect(await eventually(() => !alive(s.serverPid)), `the server (pid ${s.serverPid}) is still running after npx exited`).toBe(true);
      expect(await portClosed(s.port)).toBe(true);
    },
  );
});

describe('wasmbox help: the options it documents are the ones the parser accepts', () => {
  const TOPICS = ['run', 'inspect', 'serve'] as const;

  it.concurrent.for(TOPICS)('every option of %s appears in its usage line and in its option list, and the parser accepts it', async (topic, { expect }) => {
    const { OPTIONS } = await import('../dist/src/cli/options.js');
    const { parseCommandLine } = await import('../dist/src/cli/args.js');
    const r = await cli(['help', topic]);
    expect(r.code).toBe(0);
    const usageLine = r.stdout.split('\n')[0]!;
    const specs = Object.entries(OPTIONS[topic]);
    expect(specs.length).toBeGreaterThan(1);
    const operands = topic === 'serve' ? [] : ['m.wasm'];
    for (const [name, spec] of specs) {
      const option = `--${name}`;
      const synopsis = `${spec.short ? `-${spec.short}, ` : ''}${option}${spec.value ? ` ${spec.value}` : ''}`;
      expect(r.stdout, `${topic}: ${synopsis} in the option list`).toMatch(new RegExp(`^  ${synopsis.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}  `, 'm'));
      if (name !== 'help') expect(usageLine, `${topic}: ${option} in the usage line`).toContain(`${spec.short ? `-${spec.short} | ` : ''}${option}${spec.value ? ` ${spec.value}` : ''}`);
      // the parser knows it (an unknown option is a UsageError "unknown option")
      const value = spec.type === 'string' ? [name === 'server' ? 'http://127.0.0.1:1' : name === 'env' ? 'A=1' : '1'] : [];
      const words = [topic, ...operands, option, ...value, ...(name === 'api-key' ? ['--server', 'http://127.0.0.1:1'] : [])];
      let message = '';
      try {
        parseCommandLine(words, {});
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, words.join(' ')).not.toContain('unknown option');
    }
    // and an option outside the table is unknown to the parser
    expect(() => parseCommandLine([topic, ...operands, '--no-such-option'], {})).toThrow(/unknown option --no-such-option/);
  });

  it('the run usage line names --env, --telemetry, -q and --api-key', async () => {
    const r = await cli(['run', '--bogus']);
    expect(r.code).toBe(64);
    for (const option of ['--env NAME=VALUE', '--telemetry', '-q | --quiet', '--api-key KEY', '--server URL', '--fuel N', '-- PROGRAM_ARGS...']) {
      expect(r.stderr).toContain(option);
    }
  });

  it("help run says a WASI program's output streams as it is written, not when it ends", async () => {
    const r = await cli(['help', 'run']);
    expect(r.stdout).toContain('stream to this process');
    expect(r.stdout).not.toContain('when it ends');
  });
});

describe('WebAssembly text files run directly', () => {
  it.concurrent('run examples/add.wat 5 10 prints 15, as wasmtime runs .wat files', async ({ expect }) => {
    const r = await cli(['run', 'examples/add.wat', '5', '10']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('15\n');
    expect(r.code).toBe(0);
  });

  it.concurrent('inspect examples/add.wat describes the compiled module under the content address of examples/add.wasm', async ({ expect }) => {
    const text = await cli(['inspect', '--json', 'examples/add.wat']);
    const binary = await cli(['inspect', '--json', 'examples/add.wasm']);
    expect(text.code).toBe(0);
    expect(JSON.parse(text.stdout).moduleId).toBe(JSON.parse(binary.stdout).moduleId);
    expect(JSON.parse(text.stdout).exports).toEqual([{ name: 'add', params: ['i32', 'i32'], results: ['i32'] }]);
  });

  it.concurrent('a .wat file with a syntax error exits 65 with the line and column', async ({ expect }) => {
    const bad = path.join(dir, 'bad.wat');
    writeFileSync(bad, '(module\n  (func (export "f") (result i32)\n    i32.const nope))\n');
    const r = await cli(['run', bad, 'f']);
    expect(r.code).toBe(65);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`${bad}: the WebAssembly text does not compile: line 3, column 15: unexpected token "nope"`);
    expect(r.stderr).toContain('(invalid_module)');
    expect(r.stderr).not.toMatch(NO_STACK);
  });
});

describe('a FILE that is not a binary module', () => {
  it('run of base64 text of a module, and of an empty file, says what they are', async () => {
    const b64 = path.join(dir, 'add.b64');
    writeFileSync(b64, Buffer.from(readFileSync(path.join(ROOT, 'examples/add.wasm'))).toString('base64'));
    const empty = path.join(dir, 'empty.wasm');
    writeFileSync(empty, '');
    const r = await cli(['run', b64, '1', '2']);
    expect(r.code).toBe(65);
    expect(r.stderr).toContain('base64 text of a WebAssembly module');
    const e = await cli(['inspect', empty]);
    expect(e.code).toBe(65);
    expect(e.stderr).toContain('the module is empty (0 bytes)');
  });
});

// WASI programs (test/wasi/programs, C built with wasi-libc).
const HAVE_PROGRAMS = ['hello', 'cat', 'exit-code', 'args-env', 'spam'].every((p) => existsSync(path.join(PROGRAMS, `${p}.wasm`)));
const prog = (name: string): string => path.relative(ROOT, path.join(PROGRAMS, `${name}.wasm`));

describe.skipIf(!HAVE_PROGRAMS)('WASI programs', () => {
  it('hello: the program\'s stdout and stderr are ours, exit 0', async () => {
    const r = await cli(['run', prog('hello')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('Hello, world!\nunicode: h\u00e9llo w\u00f6rld \u2713\n');
    expect(r.stderr).toBe('to stderr\n');
  });

  it('cat: stdin is passed through, byte for byte', async () => {
    const text = 'line one\nzwei: \u00fc\u00f1\u00ef\n'.repeat(1000);
    const r = await cli(['run', prog('cat')], { input: text });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(text);
    expect(r.stderr).toBe(`cat: ${Buffer.byteLength(text)} bytes\n`);
    const empty = await cli(['run', prog('cat')]);
    expect(empty).toMatchObject({ code: 0, stdout: '', stderr: 'cat: 0 bytes\n' });
  });

  it('args-env: argv is FILE then the words after --; the environment only the --env variables', async () => {
    const r = await cli(['run', prog('args-env'), '--env', 'B=2', '--env', 'A=x=y', '--env', 'FROM_HERE', '--env', 'UNSET_HERE', '--', 'a b', '--fuel', '-5', ''], {
      env: { FROM_HERE: 'inherited' },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      `argc=5\nargv[0]=${prog('args-env')}\nargv[1]=a b\nargv[2]=--fuel\nargv[3]=-5\nargv[4]=\n` +
        'env[0]=B=2\nenv[1]=A=x=y\nenv[2]=FROM_HERE=inherited\nenvc=3\nPATH=(unset)\n',
    );
  });

  it.concurrent.for<[string[], number]>([
    [['0'], 0],
    [['3'], 3],
    [['42', 'return'], 42],
    [['255'], 255],
  ])('exit-code -- %j exits with the guest\'s code %i', async ([args, code], { expect }) => {
    const r = await cli(['run', prog('exit-code'), '--', ...args]);
    expect(r.code).toBe(code);
    expect(r.stdout).toMatch(/^exiting with \d+ by (exit|return)\n$/);
  });

  it('--json carries the output and the exit code, and the process exits with it', async () => {
    const r = await cli(['run', prog('exit-code'), '--json', '--', '7']);
    expect(r.code).toBe(7);
    expect(JSON.parse(r.stdout)).toMatchObject({ outcome: 'exited', exitCode: 7, stdout: 'exiting with 7 by exit\n', stderr: '' });
  });

  it('output cut at the cap is said so on stderr; a program that runs out of fuel exits 82', async () => {
    const r = await cli(['run', prog('spam'), '--fuel', '2000000'], { env: { WASMBOX_WASI_STDOUT_MAX_BYTES: '1000' } });
    expect(r.code).toBe(82);
    expect(r.stdout.length).toBeLessThanOrEqual(1000);
    expect(r.stdout).toMatch(/^spam 0\nspam 1\n/);
    expect(r.stderr).toContain("the program's stdout was cut at the service's output cap");
    expect(r.stderr).toContain('fuel exhausted');
  });

  it('arguments before -- are refused with a hint', async () => {
    const r = await cli(['run', prog('hello'), 'world']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('arguments for a WASI program go after --');
  });

  describe('through --server', () => {
    let server: TestServer;
    beforeAll(async () => {
      server = await startServer();
    });
    afterAll(async () => {
      await server?.close();
    });

    it.each([
      [['run', 'HELLO']],
      [['run', 'EXIT', '--', '9']],
      [['run', 'ARGS', '--env', 'K=V', '--', 'x', 'y']],
      [['inspect', 'HELLO']],
    ])('%j: identical --json and exit code', async (args) => {
      const names: Record<string, string> = { HELLO: prog('hello'), EXIT: prog('exit-code'), ARGS: prog('args-env') };
      const resolved = args.map((a) => names[a] ?? a);
      const dashes = resolved.indexOf('--');
      const withFlags = (extra: string[]) => (dashes === -1 ? [...resolved, ...extra] : [...resolved.slice(0, dashes), ...extra, ...resolved.slice(dashes)]);
      const [local, remote] = await Promise.all([cli(withFlags(['--json'])), cli(withFlags(['--json', '--server', server.url]))]);
      expect(comparable(remote.stdout)).toEqual(comparable(local.stdout));
      expect(remote.code).toBe(local.code);
    });

    it('stdin reaches a remote program', async () => {
      const r = await cli(['run', prog('cat'), '--server', server.url], { input: 'through the server\n' });
      expect(r).toMatchObject({ code: 0, stdout: 'through the server\n', stderr: 'cat: 19 bytes\n' });
    });
  });
});
