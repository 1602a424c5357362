// The WASI preview1 host, in-process: real C programs (test/wasi/programs, built with clang and
// wasi-libc) and hand-written WAT, run through the fuel-metering transform the way the runner
// runs them, so host calls are charged against the same fuel global as guest code.

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instrument } from '../dist/src/metering/instrument.js';
import { Guest, runGuest } from '../dist/src/worker/guest.js';
import { funcType, parseModule } from '../dist/src/wasm/module.js';
import {
  checkWasiImport,
  Errno,
  GuestFuel,
  PREVIEW1_SIGNATURES,
  WASI_COSTS,
  WASI_FUEL_PER_BYTE,
  WASI_IOV_MAX,
  WASI_POLL_MAX,
  WasiExit,
  WasiHost,
  wasiInputProblem,
} from '../dist/src/wasi/preview1.js';
import { completeUtf8Prefix } from '../dist/src/wasi/output.js';
import { buildNative, GCC, NO_GCC_MESSAGE, type NativeBuilds, program } from './helpers/native.js';
import { wat } from './helpers/wat.js';

const enc = new TextEncoder();
const CALL = WASI_COSTS.call;

// ---- a runner, as src/worker/runner.ts will run WASI commands ------------------------------------

interface RunOptions {
  args?: string[];
  env?: Record<string, string>;
  stdin?: string | Uint8Array;
  stdoutLimitBytes?: number;
  stderrLimitBytes?: number;
  fuel?: bigint;
  sleepBudgetMs?: number;
  function?: string;
  /** Wraps the fuel charge (to record what the host charges). */
  charge?: (units: number, fuel: GuestFuel) => boolean;
}

interface RunResult {
  outcome: 'ok' | 'exited' | 'trap' | 'fuel_exhausted';
  exitCode: number | null;
  trap?: string;
  fuelConsumed: bigint;
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

function runWasi(bytes: Uint8Array, o: RunOptions = {}): RunResult {
  const inst = instrument(bytes, { maxTableElements: 10_000 });
  const limit = o.fuel ?? 2_000_000_000n;
  let host: WasiHost | null = null;
  // The runner's own guest code: the budget, then proc_exit's flag (whatever ended the guest's
  // code, since a guest may catch WasiExit), then how the code ended. A host exception fails the test.
  const r = runGuest({
    module: new WebAssembly.Module(inst.bytes),
    layout: inst.layout,
    fuelLimit: limit,
    memoryLimitPages: 4_096,
    functionName: o.function ?? '_start',
    args: [],
    wasi: (fuel: GuestFuel) =>
      (host = new WasiHost({
        args: o.args ?? ['prog'],
        env: o.env ?? {},
        stdin: typeof o.stdin === 'string' ? enc.encode(o.stdin) : (o.stdin ?? new Uint8Array()),
        stdoutLimitBytes: o.stdoutLimitBytes ?? 1 << 20,
        stderrLimitBytes: o.stderrLimitBytes ?? 1 << 20,
        charge: o.charge ? (u) => o.charge!(u, fuel) : fuel.charge,
        halt: fuel.halt,
        sleepBudgetMs: o.sleepBudgetMs ?? 5_000,
      })),
  });
  if (!host) throw new Error(`the guest could not be created: ${r.verdict.message}`);
  const outcome = r.verdict.outcome;
  if (outcome !== 'ok' && outcome !== 'exited' && outcome !== 'trap' && outcome !== 'fuel_exhausted') {
    throw new Error(`unexpected outcome ${outcome}: ${r.verdict.message ?? r.verdict.trap?.message}`);
  }
  return {
    outcome,
    exitCode: r.exitCode,
    ...(r.verdict.trap ? { trap: r.verdict.trap.message } : {}),
    fuelConsumed: r.fuelConsumed,
    ...(host as WasiHost).output(),
  };
}

// ---- a proxy module: every preview1 function re-exported, callable with raw wasm values -------

type Proxy = Record<string, (...args: (number | bigint)[]) => number>;

function proxyWat(): string {
  const imports: string[] = [];
  const funcs: string[] = [];
  for (const [name, sig] of Object.entries(PREVIEW1_SIGNATURES)) {
    const params = sig.params.length ? `(param ${sig.params.join(' ')})` : '';
    const result = sig.results.length ? '(result i32)' : '';
    imports.push(`(import "wasi_snapshot_preview1" "${name}" (func $${name} ${params} ${result}))`);
    const args = sig.params.map((_, i) => `(local.get ${i})`).join(' ');
    funcs.push(`(func (export "${name}") ${params} ${result} (call $${name} ${args}))`);
  }
  return `(module ${imports.join('\n')}
    (memory (export "memory") 1 64)
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
    ${funcs.join('\n')})`;
}
const PROXY = wat(proxyWat());

interface ProxyRun {
  call: Proxy;
  host: WasiHost;
  memory: WebAssembly.Memory;
  fuel: GuestFuel;
  charges: number[];
  u8(): Uint8Array;
  dv(): DataView;
}

function proxy(o: Partial<RunOptions> & { refuseCharges?: boolean } = {}): ProxyRun {
  const inst = instrument(PROXY, { maxTableElements: 10 });
  const charges: number[] = [];
  const guest = Guest.create({
    module: new WebAssembly.Module(inst.bytes),
    layout: inst.layout,
    fuelLimit: o.fuel ?? 1_000_000_000n,
    memoryLimitPages: 64,
    wasi: (fuel: GuestFuel) =>
      new WasiHost({
        args: o.args ?? ['prog'],
        env: o.env ?? {},
        stdin: typeof o.stdin === 'string' ? enc.encode(o.stdin) : (o.stdin ?? new Uint8Array()),
        stdoutLimitBytes: o.stdoutLimitBytes ?? 1 << 20,
        stderrLimitBytes: o.stderrLimitBytes ?? 1 << 20,
        charge: (u) => {
          charges.push(u);
          return o.refuseCharges ? (fuel.charge(u), false) : fuel.charge(u);
        },
        halt: fuel.halt,
        sleepBudgetMs: o.sleepBudgetMs ?? 5_000,
      }),
  });
  if (!(guest instanceof Guest) || guest.instantiate()) throw new Error('the proxy module did not instantiate');
  const instance = guest.instance!;
  const memory = guest.memory!;
  const host = guest.host!;
  const fuel = guest.fuel;
  return {
    call: instance.exports as unknown as Proxy,
    host,
    memory,
    fuel,
    charges,
    u8: () => new Uint8Array(memory.buffer),
    dv: () => new DataView(memory.buffer),
  };
}

/** Writes iovecs [{ptr, len}...] at `at`. */
function iovecs(p: ProxyRun, at: number, list: [number, number][]): void {
  list.forEach(([ptr, len], i) => {
    p.dv().setUint32(at + i * 8, ptr, true);
    p.dv().setUint32(at + i * 8 + 4, len, true);
  });
}

/** The i32 a wasm caller passes for an unsigned 32-bit pointer. */
const i32 = (u: number): number => u | 0;
const PAGE = 65_536;

// ---- native builds for comparison ---------------------------------------------------------------

const NATIVE = ['hello', 'cat', 'args-env', 'exit-code', 'clock-random'];
let native: NativeBuilds | null = null;

function runNative(name: string, args: string[], env: Record<string, string>, stdin: string | Uint8Array = '') {
  return native!.run(name, args, env, stdin);
}

beforeAll(() => {
  if (!GCC) {
    console.warn(NO_GCC_MESSAGE);
    return;
  }
  native = buildNative(NATIVE);
});
afterAll(() => {
  native?.dispose();
});

// ---- real programs --------------------------------------------------------------------------------

describe('WASI programs built with clang and wasi-libc', () => {
  it('hello prints to stdout and stderr and exits 0', () => {
    const r = runWasi(program('hello'));
    expect(r).toMatchObject({ outcome: 'ok', exitCode: 0, stderr: 'to stderr\n', stdoutTruncated: false, stderrTruncated: false });
    expect(r.stdout).toBe('Hello, world!\nunicode: héllo wörld ✓\n');
    expect(r.fuelConsumed).toBeGreaterThan(0n);
  });

  it('cat copies stdin to stdout byte for byte, across many reads', () => {
    const text = Array.from({ length: 20_000 }, (_, i) => `line ${i} ✓ ü\n`).join('');
    const r = runWasi(program('cat'), { stdin: text });
    expect(r.outcome).toBe('ok');
    expect(r.stdout).toBe(text);
    expect(r.stderr).toBe(`cat: ${enc.encode(text).length} bytes\n`);
  });

  it('cat with empty stdin reads EOF at once', () => {
    const r = runWasi(program('cat'));
    expect(r).toMatchObject({ outcome: 'ok', stdout: '', stderr: 'cat: 0 bytes\n' });
  });

  it('args-env sees exactly the args and env of the request, in order', () => {
    const r = runWasi(program('args-env'), { args: ['prog', 'a b', 'ünï', ''], env: { B: '2', A: 'x=y', EMPTY: '' } });
    expect(r.outcome).toBe('ok');
    expect(r.stdout).toBe(
      'argc=4\nargv[0]=prog\nargv[1]=a b\nargv[2]=ünï\nargv[3]=\n' + 'env[0]=B=2\nenv[1]=A=x=y\nenv[2]=EMPTY=\nenvc=3\nPATH=(unset)\n',
    );
  });

  it("never shows the server's own environment", () => {
    process.env.WASMBOX_WASI_TEST_SECRET = 'do-not-leak';
    try {
      const r = runWasi(program('args-env'), { env: {} });
      expect(r.stdout).toBe('argc=1\nargv[0]=prog\nenvc=0\nPATH=(unset)\n');
      expect(r.stdout).not.toContain('do-not-leak');
    } finally {
      delete process.env.WASMBOX_WASI_TEST_SECRET;
    }
  });

  it('fs-escape: opening /etc/passwd, /, . and every other path fails, and no fd is a preopen', () => {
    const r = runWasi(program('fs-escape'));
    expect(r.outcome).toBe('ok'); // the program exits 1 if anything succeeded
    expect(r.stdout).not.toContain('ESCAPED');
    for (const p of ['/etc/passwd', '/', '.', '..', '/proc/self/environ', 'etc/passwd', '../../../../etc/passwd']) {
      for (const op of ['open', 'fopen', 'opendir', 'stat']) {
        // wasi-libc finds no preopened directory to resolve against: ENOTCAPABLE.
        expect(r.stdout).toContain(`${op} ${p}: failed (errno 76: Capabilities insufficient)\n`);
      }
    }
    expect(r.stdout).toContain('create /tmp/wasmbox-escape: failed');
    expect(r.stdout).toContain('fd_prestat_get 3..63: all EBADF\n');
    expect(r.stdout).toContain(`path_open fd 0: failed (wasi errno ${Errno.NOTDIR})\n`);
    expect(r.stdout).toContain(`path_open fd 3: failed (wasi errno ${Errno.BADF})\n`);
    expect(r.stdout).toContain(`path_open fd 100: failed (wasi errno ${Errno.BADF})\n`);
    expect(r.stdout).toMatch(/escapes=0\n$/);
    expect(fs.existsSync('/tmp/wasmbox-escape')).toBe(false);
  });

  it('clock-random: clocks advance, nanosleep sleeps, getentropy gives fresh bytes', () => {
    const r = runWasi(program('clock-random'));
    expect(r.outcome).toBe('ok');
    expect(r.stdout).not.toContain('FAILED');
    for (const check of ['monotonic ok', 'realtime after 2020 ok', 'nanosleep 20ms ok', 'getentropy differs ok', 'random in range ok']) {
      expect(r.stdout).toContain(`${check}\n`);
    }
  });

  it.each([
    [['exit-code', '0'], 'ok', 0],
    [['exit-code', '3'], 'exited', 3],
    [['exit-code', '255'], 'exited', 255],
    [['exit-code', '0', 'return'], 'ok', 0],
    [['exit-code', '42', 'return'], 'exited', 42],
  ] as const)('exit-code %j ends %s with code %i', (args, outcome, code) => {
    const r = runWasi(program('exit-code'), { args: [...args] });
    expect(r).toMatchObject({ outcome, exitCode: code });
    expect(r.stdout).toBe(`exiting with ${code} by ${args[2] ?? 'exit'}\n`);
  });

  it('a program that writes forever ends by fuel, with stdout capped and flagged', () => {
    const r = runWasi(program('spam'), { fuel: 20_000_000n, stdoutLimitBytes: 1_000 });
    expect(r.outcome).toBe('fuel_exhausted');
    expect(r.fuelConsumed).toBe(20_000_000n);
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stdout.length).toBe(1_000);
    const expected = Array.from({ length: 200 }, (_, i) => `spam ${i}\n`).join('');
    expect(expected.startsWith(r.stdout)).toBe(true);
  });

  it('the same for stderr: its own cap and flag, stdout untouched', () => {
    const r = runWasi(program('spam'), { args: ['spam', 'stderr'], fuel: 5_000_000n, stderrLimitBytes: 100 });
    expect(r).toMatchObject({ outcome: 'fuel_exhausted', stdout: '', stdoutTruncated: false, stderrTruncated: true });
    expect(r.stderr.length).toBe(100);
  });

  it('all-imports (all 45 functions wasi-libc declares) instantiates against the host and exits 0', () => {
    expect(runWasi(program('all-imports'))).toMatchObject({ outcome: 'ok', exitCode: 0 });
  });

  it('runs without metering too: the original module, its own exported memory bound after instantiation', () => {
    const host = new WasiHost({ args: ['hello'], env: {}, stdin: new Uint8Array(), stdoutLimitBytes: 100, stderrLimitBytes: 100, charge: () => true });
    const instance = new WebAssembly.Instance(new WebAssembly.Module(program('hello')), { wasi_snapshot_preview1: host.imports() });
    host.bind(instance.exports.memory as WebAssembly.Memory);
    (instance.exports._start as () => void)();
    expect(host.output()).toEqual({ stdout: 'Hello, world!\nunicode: héllo wörld ✓\n', stderr: 'to stderr\n', stdoutTruncated: false, stderrTruncated: false });
  });
});

describe.skipIf(!GCC)('WASI output matches the same C built natively with gcc', () => {
  it('hello', () => {
    expect(runWasi(program('hello'), { args: ['hello'] }).stdout).toBe(runNative('hello', ['hello'], {}).stdout);
  });

  it('cat, with binary and UTF-8 stdin', () => {
    const bytes = new Uint8Array(300_000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
    bytes.set(enc.encode('héllo ✓\n'), 1000);
    const wasm = runWasi(program('cat'), { stdin: bytes });
    const native = runNative('cat', ['cat'], {}, bytes);
    expect(wasm.stdout).toBe(native.stdout);
    expect(wasm.stdoutTruncated).toBe(false);
  });

  it('args-env', () => {
    const args = ['args-env', '--flag', 'two words', 'ü'];
    const env = { HOME: '/nowhere', LANG: 'C', X: 'a=b' };
    expect(runWasi(program('args-env'), { args, env }).stdout).toBe(runNative('args-env', args, env).stdout);
  });

  it.each([['0'], ['1'], ['7'], ['255'], ['9', 'return']])('exit-code %s: same stdout and status', (...rest) => {
    const args = ['exit-code', ...rest];
    const wasm = runWasi(program('exit-code'), { args });
    const native = runNative('exit-code', args, {});
    expect(wasm.stdout).toBe(native.stdout);
    expect(wasm.exitCode).toBe(native.status);
  });

  it('clock-random', () => {
    expect(runWasi(program('clock-random')).stdout).toBe(runNative('clock-random', ['clock-random'], {}).stdout);
  });
});

// ---- the import surface -------------------------------------------------------------------------

describe('imports and signatures', () => {
  it('provides all 46 preview1 functions, each taking as many parameters as its signature', () => {
    const host = new WasiHost({ args: [], env: {}, stdin: new Uint8Array(), stdoutLimitBytes: 0, stderrLimitBytes: 0, charge: () => true });
    const imports = host.imports();
    expect(Object.keys(PREVIEW1_SIGNATURES)).toHaveLength(46);
    expect(Object.keys(imports).sort()).toEqual(Object.keys(PREVIEW1_SIGNATURES).sort());
    for (const [name, sig] of Object.entries(PREVIEW1_SIGNATURES)) {
      expect([name, (imports[name] as () => void).length]).toEqual([name, sig.params.length]);
    }
  });

  it("PREVIEW1_SIGNATURES agrees with wasi-libc's own declarations (all-imports.wasm)", () => {
    const m = parseModule(program('all-imports'));
    const seen = new Set<string>();
    for (const [i, imp] of m.imports.entries()) {
      expect(imp.module).toBe('wasi_snapshot_preview1');
      const t = funcType(m, i);
      expect([imp.name, checkWasiImport(imp.name, t.params, t.results)]).toEqual([imp.name, null]);
      seen.add(imp.name);
    }
    // wasi-libc no longer declares proc_raise; the witx still defines it.
    expect([...seen, 'proc_raise'].sort()).toEqual(Object.keys(PREVIEW1_SIGNATURES).sort());
  });

  it('checkWasiImport refuses an unknown name, naming it', () => {
    expect(checkWasiImport('fd_open_host_file', ['i32'], ['i32'])).toBe(
      'the module imports function "wasi_snapshot_preview1" "fd_open_host_file", which is not a WASI preview1 function',
    );
    expect(checkWasiImport('__proto__', [], [])).toMatch(/"__proto__", which is not a WASI preview1 function/);
    expect(checkWasiImport('toString', [], [])).toMatch(/not a WASI preview1 function/);
  });

  it('checkWasiImport refuses a wrong signature, showing both', () => {
    expect(checkWasiImport('fd_write', ['i32', 'i32'], ['i32'])).toBe(
      'the module imports function "wasi_snapshot_preview1" "fd_write" as (i32, i32) -> (i32); ' +
        'WASI preview1 defines it as (i32, i32, i32, i32) -> (i32)',
    );
    expect(checkWasiImport('clock_time_get', ['i32', 'i32', 'i32'], ['i32'])).toMatch(/defines it as \(i32, i64, i32\)/);
    expect(checkWasiImport('proc_exit', ['i32'], ['i32'])).toMatch(/defines it as \(i32\) -> \(\)/);
  });

  it('checkWasiImport refuses a non-function import and accepts every correct one', () => {
    expect(checkWasiImport('memory', [], [], 'memory')).toBe(
      'the module imports memory "wasi_snapshot_preview1" "memory"; WASI preview1 provides only functions',
    );
    for (const [name, sig] of Object.entries(PREVIEW1_SIGNATURES)) expect(checkWasiImport(name, sig.params, sig.results)).toBeNull();
  });

  it('wasiInputProblem names args and env entries a C program could not receive', () => {
    expect(wasiInputProblem(['a', 'b\0c'], {})).toBe('wasi.args[1] contains a NUL character');
    expect(wasiInputProblem([], { 'A=B': 'x' })).toMatch(/contains "="/);
    expect(wasiInputProblem([], { '': 'x' })).toMatch(/empty variable name/);
    expect(wasiInputProblem([], { A: 'x\0' })).toMatch(/NUL/);
    expect(wasiInputProblem(['ok'], { A: 'B=C' })).toBeNull();
    expect(() => new WasiHost({ args: ['\0'], env: {}, stdin: new Uint8Array(), stdoutLimitBytes: 0, stderrLimitBytes: 0, charge: () => true })).toThrow(TypeError);
  });
});

// ---- bounds ---------------------------------------------------------------------------------------

describe('pointers outside linear memory answer EFAULT, never a host exception', () => {
  it('fd_write: iovec array, iovec data, nwritten, and 32-bit wrap-around', () => {
    const p = proxy();
    p.u8().set(enc.encode('hello'), 100);
    iovecs(p, 0, [[100, 5]]);
    expect(p.call.fd_write!(1, i32(PAGE - 4), 1, 16)).toBe(Errno.FAULT); // array runs off the end
    iovecs(p, 32, [[PAGE - 2, 5]]);
    expect(p.call.fd_write!(1, 32, 1, 16)).toBe(Errno.FAULT); // data runs off the end
    expect(p.call.fd_write!(1, 0, 1, i32(PAGE - 2))).toBe(Errno.FAULT); // result pointer
    iovecs(p, 48, [[0xffff_fff0, 0x20]]);
    expect(p.call.fd_write!(1, 48, 1, 16)).toBe(Errno.FAULT); // ptr + len wraps past 2^32
    expect(p.call.fd_write!(1, i32(0xffff_fff8), 1, 16)).toBe(Errno.FAULT);
    expect(p.call.fd_write!(1, 0, i32(0xffff_ffff), 16)).toBe(Errno.INVAL); // more than IOV_MAX iovecs
    iovecs(p, 64, [[100, 5], [PAGE, 1]]);
    expect(p.call.fd_write!(1, 64, 2, 16)).toBe(Errno.FAULT); // a later iovec is bad: nothing written
    expect(p.host.output().stdout).toBe('');
    expect(p.call.fd_write!(1, 0, 1, 16)).toBe(Errno.SUCCESS);
    expect(p.host.output().stdout).toBe('hello');
    expect(p.dv().getUint32(16, true)).toBe(5);
  });

  it('fd_read: a bad iovec consumes no stdin', () => {
    const p = proxy({ stdin: 'abcdef' });
    iovecs(p, 0, [[PAGE - 2, 4]]);
    expect(p.call.fd_read!(0, 0, 1, 16)).toBe(Errno.FAULT);
    expect(p.call.fd_read!(0, 0, 1, i32(PAGE))).toBe(Errno.FAULT);
    iovecs(p, 0, [[200, 4], [300, 10]]);
    expect(p.call.fd_read!(0, 0, 2, 16)).toBe(Errno.SUCCESS);
    expect(p.dv().getUint32(16, true)).toBe(6);
    expect(new TextDecoder().decode(p.u8().subarray(200, 204))).toBe('abcd');
    expect(new TextDecoder().decode(p.u8().subarray(300, 302))).toBe('ef');
    expect(p.call.fd_read!(0, 0, 2, 16)).toBe(Errno.SUCCESS);
    expect(p.dv().getUint32(16, true)).toBe(0); // EOF
  });

  it('random_get, clock_time_get, clock_res_get, args and environ, fdstat, filestat, poll_oneoff', () => {
    const p = proxy({ args: ['prog', 'x'], env: { K: 'V' } });
    expect(p.call.random_get!(PAGE - 1, 2)).toBe(Errno.FAULT);
    expect(p.call.random_get!(i32(0xffff_ffff), 2)).toBe(Errno.FAULT);
    expect(p.call.random_get!(0, i32(0xffff_ffff))).toBe(Errno.FAULT);
    expect(p.u8().every((b) => b === 0)).toBe(true);
    expect(p.call.clock_time_get!(1, 0n, PAGE - 4)).toBe(Errno.FAULT); // 8 bytes do not fit
    expect(p.call.clock_res_get!(1, PAGE - 7)).toBe(Errno.FAULT);
    expect(p.call.args_sizes_get!(0, PAGE - 3)).toBe(Errno.FAULT);
    expect(p.call.args_get!(PAGE - 4, 0)).toBe(Errno.FAULT); // 2 pointers need 8 bytes
    expect(p.call.args_get!(0, PAGE - 4)).toBe(Errno.FAULT); // "prog\0x\0" needs 7
    expect(p.call.environ_get!(0, i32(0xffff_fffe))).toBe(Errno.FAULT);
    expect(p.call.environ_sizes_get!(i32(-1), 0)).toBe(Errno.FAULT);
    expect(p.call.fd_fdstat_get!(1, PAGE - 23)).toBe(Errno.FAULT);
    expect(p.call.fd_filestat_get!(1, PAGE - 63)).toBe(Errno.FAULT);
    expect(p.call.poll_oneoff!(PAGE - 47, 0, 1, 1000)).toBe(Errno.FAULT);
    expect(p.call.poll_oneoff!(0, PAGE - 31, 1, 1000)).toBe(Errno.FAULT);
    expect(p.call.poll_oneoff!(0, 100, WASI_POLL_MAX, 1000)).toBe(Errno.FAULT); // 4096 subscriptions do not fit one page
    expect(p.u8().every((b) => b === 0)).toBe(true); // nothing was written anywhere
  });

  it('sees memory grown by the guest: the buffer is re-read on every call', () => {
    const p = proxy();
    expect(p.call.random_get!(PAGE + 10, 4)).toBe(Errno.FAULT);
    expect(p.call.grow!(1)).toBe(1);
    p.u8().set(enc.encode('grown'), PAGE + 100);
    iovecs(p, PAGE + 200, [[PAGE + 100, 5]]);
    expect(p.call.fd_write!(1, PAGE + 200, 1, PAGE + 300)).toBe(Errno.SUCCESS);
    expect(p.host.output().stdout).toBe('grown');
    expect(p.call.random_get!(PAGE + 10, 4)).toBe(Errno.SUCCESS);
  });

  it('works over a shared memory (a SharedArrayBuffer, which getRandomValues refuses)', () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true });
    const host = new WasiHost({ args: [], env: {}, stdin: enc.encode('in'), stdoutLimitBytes: 10, stderrLimitBytes: 10, charge: () => true });
    host.bind(memory);
    const f = host.imports() as Record<string, (...a: unknown[]) => number>;
    const dv = new DataView(memory.buffer);
    expect(f.random_get!(100, 32)).toBe(Errno.SUCCESS);
    expect(f.random_get!(1000, 100_000)).toBe(Errno.FAULT);
    memory.grow(1);
    expect(f.random_get!(1000, 100_000)).toBe(Errno.SUCCESS);
    new Uint8Array(memory.buffer).set(enc.encode('shared'), 200);
    dv.setUint32(0, 200, true);
    dv.setUint32(4, 6, true);
    expect(f.fd_write!(1, 0, 1, 8)).toBe(Errno.SUCCESS);
    dv.setUint32(4, 2, true);
    expect(f.fd_read!(0, 0, 1, 8)).toBe(Errno.SUCCESS);
    expect(host.output().stdout).toBe('shared');
    expect(new TextDecoder().decode(new Uint8Array(memory.buffer).slice(200, 202))).toBe('in');
  });

  it("a call-stack overflow inside a host call reaches the runner as itself (the guest's deep recursion)", () => {
    const overflow = new RangeError('Maximum call stack size exceeded');
    const host = new WasiHost({
      args: [],
      env: {},
      stdin: new Uint8Array(),
      stdoutLimitBytes: 10,
      stderrLimitBytes: 10,
      charge: () => {
        throw overflow;
      },
    });
    const f = host.imports() as Record<string, (...a: unknown[]) => number>;
    expect(() => f.sched_yield!()).toThrow(overflow);
    expect(() => f.random_get!(0, 0)).toThrow(overflow);
  });

  it('an unbound host treats every pointer as out of bounds', () => {
    const host = new WasiHost({ args: ['a'], env: {}, stdin: new Uint8Array(), stdoutLimitBytes: 10, stderrLimitBytes: 10, charge: () => true });
    const f = host.imports() as Record<string, (...a: unknown[]) => number>;
    expect(f.args_sizes_get!(0, 4)).toBe(Errno.FAULT);
    expect(f.fd_write!(1, 0, 1, 8)).toBe(Errno.FAULT);
  });

  it('fuzz: 40,000 calls with hostile arguments over random memory only ever return an errno', () => {
    const p = proxy({ stdin: 'some input', sleepBudgetMs: 20, stdoutLimitBytes: 4096 });
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed;
    };
    const u8 = p.u8();
    for (let i = 0; i < u8.length; i++) u8[i] = rnd() >>> 24;
    // Keep a few pointer-sized values small, so that iovecs and subscriptions sometimes parse.
    for (let i = 0; i < 512; i += 4) p.dv().setUint32(i, rnd() % 1024, true);
    const i32Edges = [0, 1, 2, 3, 4, 8, 100, PAGE - 8, PAGE - 1, PAGE, PAGE + 1, 0x7fff_ffff, -0x8000_0000, -1, -8];
    const i64Edges = [0n, 1n, -1n, 1n << 62n, -(1n << 63n), (1n << 63n) - 1n, 1_000_000n];
    const pick = <T>(edges: T[], random: () => T): T => (rnd() % 3 === 0 ? random() : edges[rnd() % edges.length]!);
    const names = Object.keys(PREVIEW1_SIGNATURES).filter((n) => n !== 'proc_exit');
    let calls = 0;
    for (let round = 0; round < 40_000 / names.length; round++) {
      for (const name of names) {
        const args = PREVIEW1_SIGNATURES[name]!.params.map((t) =>
          t === 'i32' ? pick(i32Edges, () => rnd() | 0) : pick(i64Edges, () => BigInt.asIntN(64, (BigInt(rnd()) << 32n) | BigInt(rnd()))),
        );
        const errno = p.call[name]!(...args);
        expect(Number.isInteger(errno) && errno >= 0 && errno <= 76, `${name}(${args.join(', ')}) -> ${errno}`).toBe(true);
        calls++;
      }
    }
    expect(calls).toBeGreaterThan(39_000);
  });
});

// ---- output caps ----------------------------------------------------------------------------------

describe('stdout and stderr caps', () => {
  function write(p: ProxyRun, fd: number, bytes: Uint8Array): number {
    p.u8().set(bytes, 1024);
    iovecs(p, 0, [[1024, bytes.length]]);
    expect(p.call.fd_write!(fd, 0, 1, 16)).toBe(Errno.SUCCESS);
    return p.dv().getUint32(16, true);
  }

  it('captures up to the cap, reports every byte as written, and flags the cut', () => {
    const p = proxy({ stdoutLimitBytes: 4 });
    expect(write(p, 1, enc.encode('abcdefghij'))).toBe(10);
    expect(write(p, 1, enc.encode('more'))).toBe(4);
    expect(p.host.output()).toMatchObject({ stdout: 'abcd', stdoutTruncated: true, stderr: '', stderrTruncated: false });
  });

  it('output exactly at the cap is not truncated', () => {
    const p = proxy({ stdoutLimitBytes: 4 });
    write(p, 1, enc.encode('ab'));
    write(p, 1, enc.encode('cd'));
    expect(p.host.output()).toMatchObject({ stdout: 'abcd', stdoutTruncated: false });
  });

  it('a cap of 0 keeps nothing and flags any output', () => {
    const p = proxy({ stdoutLimitBytes: 0, stderrLimitBytes: 0 });
    write(p, 2, enc.encode('x'));
    expect(p.host.output()).toMatchObject({ stdout: '', stdoutTruncated: false, stderr: '', stderrTruncated: true });
  });

  it('a cut inside a UTF-8 character drops the partial character instead of showing U+FFFD', () => {
    const p = proxy({ stdoutLimitBytes: 5, stderrLimitBytes: 6 });
    write(p, 1, enc.encode('abcd€')); // € is 3 bytes: the cap keeps 1 of them
    write(p, 2, enc.encode('abcd€'));
    expect(p.host.output()).toMatchObject({ stdout: 'abcd', stdoutTruncated: true, stderr: 'abcd', stderrTruncated: true });
  });

  it("the guest's own invalid UTF-8 decodes to U+FFFD, also at the end of untruncated output", () => {
    const p = proxy();
    write(p, 1, Uint8Array.of(0x61, 0xff, 0x62, 0xe2, 0x82));
    expect(p.host.output().stdout).toBe('a\ufffdb\ufffd');
  });

  it('completeUtf8Prefix trims only a cut-short trailing sequence', () => {
    const cases: [number[], number][] = [
      [[0x61], 1],
      [[0x61, 0xc3], 1],
      [[0xc3, 0xa9], 2],
      [[0xe2, 0x82], 0],
      [[0xe2, 0x82, 0xac], 3],
      [[0xf0, 0x9f, 0x98], 0],
      [[0xf0, 0x9f, 0x98, 0x80], 4],
      [[0x61, 0x80, 0x80, 0x80], 4],
      [[0xff], 1],
      [[], 0],
    ];
    for (const [bytes, n] of cases) expect([bytes, completeUtf8Prefix(Uint8Array.from(bytes))]).toEqual([bytes, n]);
  });
});

// ---- fuel -----------------------------------------------------------------------------------------

describe('host calls are charged fuel', () => {
  it('fd_write charges the call, the iovec array, the data and the result, once and up front', () => {
    const p = proxy();
    iovecs(p, 0, [[1024, 1000], [4096, 24]]);
    p.call.fd_write!(1, 0, 2, 16);
    expect(p.charges).toEqual([CALL + (16 + 1024 + 4) * WASI_FUEL_PER_BYTE]);
  });

  it('bytes written past the cap are charged too: fuel does not depend on the cap', () => {
    const consumed = (cap: number): bigint => {
      const p = proxy({ stdoutLimitBytes: cap });
      iovecs(p, 0, [[1024, 5000]]);
      p.call.fd_write!(1, 0, 1, 16);
      return p.fuel.consumed();
    };
    expect(consumed(0)).toBe(consumed(1 << 20));
  });

  it('random_get, fd_read, args_get, clock_time_get and poll_oneoff charge by the bytes they move', () => {
    const p = proxy({ stdin: 'x'.repeat(30), args: ['prog', 'arg'] });
    p.call.random_get!(0, 5000);
    iovecs(p, 0, [[1024, 100]]);
    p.call.fd_read!(0, 0, 1, 16); // 30 bytes of stdin are left to move
    p.call.args_get!(0, 64);
    p.call.clock_time_get!(1, 0n, 0);
    p.call.sched_yield!();
    p.call.fd_prestat_get!(3, 0);
    expect(p.charges).toEqual([CALL + 5000, CALL + 8 + 30 + 4, CALL + 8 + 9, CALL + 8, CALL, CALL]);
    p.charges.length = 0;
    p.dv().setUint8(8, 1); // an fd_read subscription on stdin: ready at once
    p.call.poll_oneoff!(0, 1024, 1, 2048);
    expect(p.charges).toEqual([CALL + 48 + 32 + 4]);
  });

  it('through the metered module: writing 1000 more bytes costs exactly 1000 more fuel', () => {
    const src = (n: number) =>
      wat(`(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1) (data (i32.const 0) "\\00\\01\\00\\00${n === 0 ? '\\00\\00' : '\\e8\\03'}\\00\\00")
        (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))`);
    const a = runWasi(src(0), { stdoutLimitBytes: 0 });
    const b = runWasi(src(1000), { stdoutLimitBytes: 0 });
    expect(b.fuelConsumed - a.fuelConsumed).toBe(1000n * BigInt(WASI_FUEL_PER_BYTE));
    expect(b.stdoutTruncated).toBe(true);
  });

  it('when the budget cannot pay, the work is not done and the call answers ECANCELED', () => {
    const p = proxy({ refuseCharges: true, stdin: 'abc' });
    p.u8().set(enc.encode('hi'), 1024);
    iovecs(p, 0, [[1024, 2]]);
    expect(p.call.fd_write!(1, 0, 1, 16)).toBe(Errno.CANCELED);
    expect(p.host.output().stdout).toBe('');
    expect(p.call.random_get!(2048, 64)).toBe(Errno.CANCELED);
    expect(p.u8().subarray(2048, 2048 + 64).every((b) => b === 0)).toBe(true);
    expect(p.call.fd_close!(1)).toBe(Errno.CANCELED);
    p.charges.length = 0;
    expect(p.call.fd_read!(0, 0, 1, 16)).toBe(Errno.CANCELED);
    expect(p.charges).toHaveLength(1);
  });

  it('a guest that runs out while looping on host calls traps at its next check: fuel_exhausted', () => {
    const loop = wat(`(module (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") (loop $l (drop (call $r (i32.const 0) (i32.const 60000))) (br $l))))`);
    const r = runWasi(loop, { fuel: 1_000_000n });
    expect(r.outcome).toBe('fuel_exhausted');
    expect(r.fuelConsumed).toBe(1_000_000n);
  });
});

// ---- proc_exit ------------------------------------------------------------------------------------

describe('proc_exit', () => {
  const EXIT_WAT = (after: string, catchBody = '') =>
    wat(
      `(module
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32)))
        (memory (export "memory") 1) (data (i32.const 0) "\\10\\00\\00\\00\\03\\00\\00\\00") (data (i32.const 16) "hi\\n")
        (func (export "_start")
          (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))
          (try (do (call $exit (i32.const 9))) (catch_all ${catchBody}))
          ${after}))`,
      { exceptions: true },
    );

  const thrown = (fn: () => unknown): unknown => {
    try {
      fn();
    } catch (err) {
      return err;
    }
    throw new Error('did not throw');
  };

  it('throws WasiExit with the code, calls halt once, and the first exit stands', () => {
    let halted = 0;
    const host = new WasiHost({ args: [], env: {}, stdin: new Uint8Array(), stdoutLimitBytes: 0, stderrLimitBytes: 0, charge: () => true, halt: () => halted++ });
    const exit = host.imports().proc_exit as (code: number) => never;
    const err = thrown(() => exit(4));
    expect(err).toBeInstanceOf(WasiExit);
    expect((err as WasiExit).code).toBe(4);
    expect(host.exitCode).toBe(4);
    expect((thrown(() => exit(5)) as WasiExit).code).toBe(4);
    expect(thrown(() => (host.imports().sched_yield as () => number)())).toBeInstanceOf(WasiExit);
    expect(halted).toBe(1);
  });

  it('the exit code is the u32 the guest passed', () => {
    const host = new WasiHost({ args: [], env: {}, stdin: new Uint8Array(), stdoutLimitBytes: 0, stderrLimitBytes: 0, charge: () => true });
    thrown(() => (host.imports().proc_exit as (code: number) => never)(-1));
    expect(host.exitCode).toBe(0xffff_ffff);
  });

  it('a guest that catches the exit and loops still stops: it traps at its next check, and the run reports the exit', () => {
    const r = runWasi(EXIT_WAT('(loop $l (br $l))'));
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 9, stdout: 'hi\n' });
    expect(r.fuelConsumed).toBeLessThan(1000n); // frozen at the exit, not the poisoned global
  });

  it('a guest that catches the exit can write nothing more: every WASI call throws WasiExit again', () => {
    const r = runWasi(EXIT_WAT('', '(drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))'));
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 9, stdout: 'hi\n' });
  });

  it('a guest that catches the exit and returns normally is still reported as exited', () => {
    const r = runWasi(EXIT_WAT(''));
    expect(r).toMatchObject({ outcome: 'exited', exitCode: 9 });
  });

  it('proc_exit(0) is ok', () => {
    const zero = wat(`(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1) (func (export "_start") (call $exit (i32.const 0)) (unreachable)))`);
    expect(runWasi(zero)).toMatchObject({ outcome: 'ok', exitCode: 0 });
  });
});

// ---- the rest of the surface ------------------------------------------------------------------------

describe('files, clocks, polling and the rest', () => {
  it('no preopens, no paths, no sockets, no signals', () => {
    const p = proxy();
    expect(p.call.fd_prestat_get!(3, 0)).toBe(Errno.BADF);
    expect(p.call.fd_prestat_get!(0, 0)).toBe(Errno.BADF);
    expect(p.call.fd_prestat_dir_name!(3, 0, 10)).toBe(Errno.BADF);
    expect(p.call.path_open!(3, 0, 0, 10, 0, 0n, 0n, 0, 100)).toBe(Errno.BADF);
    expect(p.call.path_open!(1, 0, 0, 10, 0, 0n, 0n, 0, 100)).toBe(Errno.NOTDIR);
    expect(p.call.path_symlink!(0, 1, 5, 0, 1)).toBe(Errno.BADF);
    expect(p.call.fd_readdir!(0, 0, 100, 0n, 200)).toBe(Errno.NOTDIR);
    expect(p.call.sock_accept!(0, 0, 0)).toBe(Errno.NOTSUP);
    expect(p.call.sock_recv!(0, 0, 0, 0, 0, 0)).toBe(Errno.NOTSUP);
    expect(p.call.sock_send!(1, 0, 0, 0, 0)).toBe(Errno.NOTSUP);
    expect(p.call.sock_shutdown!(1, 0)).toBe(Errno.NOTSUP);
    expect(p.call.proc_raise!(9)).toBe(Errno.NOSYS);
    expect(p.call.sched_yield!()).toBe(Errno.SUCCESS);
  });

  it('stdio fds: fdstat, filestat, no seeking, close and renumber', () => {
    const p = proxy();
    expect(p.call.fd_fdstat_get!(1, 0)).toBe(Errno.SUCCESS);
    expect(p.dv().getUint8(0)).toBe(2); // character device
    expect(p.dv().getBigUint64(8, true) & (1n << 6n)).toBe(1n << 6n); // fd_write right
    expect(p.call.fd_fdstat_get!(7, 0)).toBe(Errno.BADF);
    expect(p.call.fd_filestat_get!(0, 100)).toBe(Errno.SUCCESS);
    expect(p.call.fd_seek!(1, 0n, 0, 200)).toBe(Errno.SPIPE);
    expect(p.call.fd_tell!(0, 200)).toBe(Errno.SPIPE);
    expect(p.call.fd_pread!(0, 0, 0, 0n, 200)).toBe(Errno.SPIPE);
    expect(p.call.fd_fdstat_set_rights!(1, 1n << 40n, 0n)).toBe(Errno.NOTCAPABLE);
    expect(p.call.fd_sync!(1)).toBe(Errno.INVAL);
    p.u8().set(enc.encode('E'), 1024);
    iovecs(p, 0, [[1024, 1]]);
    expect(p.call.fd_renumber!(2, 1)).toBe(Errno.SUCCESS); // fd 1 is now stderr; fd 2 is gone
    expect(p.call.fd_write!(1, 0, 1, 16)).toBe(Errno.SUCCESS);
    expect(p.call.fd_write!(2, 0, 1, 16)).toBe(Errno.BADF);
    expect(p.call.fd_close!(1)).toBe(Errno.SUCCESS);
    expect(p.call.fd_close!(1)).toBe(Errno.BADF);
    expect(p.call.fd_write!(1, 0, 1, 16)).toBe(Errno.BADF);
    expect(p.call.fd_write!(0, 0, 1, 16)).toBe(Errno.BADF); // stdin is not writable
    expect(p.host.output()).toMatchObject({ stdout: '', stderr: 'E' });
  });

  it('clocks: realtime near the wall clock, monotonic and CPU time non-decreasing, unknown ids refused', () => {
    const p = proxy();
    expect(p.call.clock_time_get!(0, 0n, 0)).toBe(Errno.SUCCESS);
    const realtimeMs = Number(p.dv().getBigUint64(0, true) / 1_000_000n);
    expect(Math.abs(realtimeMs - Date.now())).toBeLessThan(1000);
    for (const id of [1, 2, 3]) {
      expect(p.call.clock_time_get!(id, 0n, 0)).toBe(Errno.SUCCESS);
      const a = p.dv().getBigUint64(0, true);
      expect(p.call.clock_time_get!(id, 0n, 0)).toBe(Errno.SUCCESS);
      expect(p.dv().getBigUint64(0, true)).toBeGreaterThanOrEqual(a);
      expect(p.call.clock_res_get!(id, 8)).toBe(Errno.SUCCESS);
      expect(p.dv().getBigUint64(8, true)).toBeGreaterThan(0n);
    }
    expect(p.call.clock_time_get!(4, 0n, 0)).toBe(Errno.INVAL);
    expect(p.call.clock_res_get!(-1, 0)).toBe(Errno.INVAL);
  });

  it('random_get fills large buffers (in 64 KiB chunks) and small ones with fresh bytes', () => {
    const p = proxy();
    expect(p.call.grow!(3)).toBe(1);
    expect(p.call.random_get!(0, 200_000)).toBe(Errno.SUCCESS);
    const big = p.u8().subarray(0, 200_000);
    expect(big.filter((b) => b === 0).length).toBeLessThan(2_000);
    expect(p.call.random_get!(210_000, 16)).toBe(Errno.SUCCESS);
    expect(p.call.random_get!(210_016, 16)).toBe(Errno.SUCCESS);
    expect(Buffer.compare(p.u8().subarray(210_000, 210_016), p.u8().subarray(210_016, 210_032))).not.toBe(0);
  });

  /** Writes a clock subscription at `at`. */
  function clockSub(p: ProxyRun, at: number, userdata: bigint, timeoutNs: bigint, clock = 1, flags = 0): void {
    p.dv().setBigUint64(at, userdata, true);
    p.dv().setUint8(at + 8, 0);
    p.dv().setUint32(at + 16, clock, true);
    p.dv().setBigUint64(at + 24, timeoutNs, true);
    p.dv().setUint16(at + 40, flags, true);
  }

  it('poll_oneoff with a clock subscription sleeps for it', () => {
    const p = proxy();
    clockSub(p, 0, 77n, 30_000_000n);
    const t = performance.now();
    expect(p.call.poll_oneoff!(0, 1024, 1, 2048)).toBe(Errno.SUCCESS);
    expect(performance.now() - t).toBeGreaterThanOrEqual(29);
    expect(p.dv().getUint32(2048, true)).toBe(1);
    expect(p.dv().getBigUint64(1024, true)).toBe(77n);
    expect(p.dv().getUint16(1024 + 8, true)).toBe(0);
  });

  it('poll_oneoff sleeps no more than the run’s sleep budget in total', () => {
    const p = proxy({ sleepBudgetMs: 40 });
    clockSub(p, 0, 1n, 10_000_000_000n); // 10 s
    const t = performance.now();
    expect(p.call.poll_oneoff!(0, 1024, 1, 2048)).toBe(Errno.SUCCESS);
    expect(p.call.poll_oneoff!(0, 1024, 1, 2048)).toBe(Errno.SUCCESS); // the budget is spent
    const ms = performance.now() - t;
    expect(ms).toBeGreaterThanOrEqual(39);
    // far below the 10 s asked for (a generous bound: the machine may be busy)
    expect(ms).toBeLessThan(5_000);
  });

  it('a guest asleep in poll_oneoff is still killed at once by worker.terminate() (the deadline)', async () => {
    const hostUrl = pathToFileURL(path.resolve('dist/src/wasi/preview1.js')).href;
    const code = `
      import { parentPort } from 'node:worker_threads';
      import { WasiHost } from ${JSON.stringify(hostUrl)};
      const host = new WasiHost({ args: [], env: {}, stdin: new Uint8Array(), stdoutLimitBytes: 0, stderrLimitBytes: 0,
        charge: () => true, sleepBudgetMs: 60000 });
      const memory = new WebAssembly.Memory({ initial: 1 });
      host.bind(memory);
      const dv = new DataView(memory.buffer);
      dv.setUint32(16, 1, true); // monotonic
      dv.setBigUint64(24, 30000000000n, true); // 30 s
      parentPort.postMessage('sleeping');
      host.imports().poll_oneoff(0, 1024, 1, 2048);
      parentPort.postMessage('woke');`;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
    const messages: string[] = [];
    await new Promise<void>((resolve, reject) => {
      worker.on('error', reject);
      worker.on('message', (m: string) => {
        messages.push(m);
        resolve();
      });
    });
    await new Promise((r) => setTimeout(r, 100));
    const t = performance.now();
    await worker.terminate();
    // far below the 30 s sleep (a generous bound: the machine may be busy)
    expect(performance.now() - t).toBeLessThan(10_000);
    expect(messages).toEqual(['sleeping']);
  });

  it('poll_oneoff: stdin is ready at once with its byte count; a clock beside it does not sleep', () => {
    const p = proxy({ stdin: 'twelve bytes' });
    clockSub(p, 0, 1n, 30_000_000_000n); // 30 s
    p.dv().setBigUint64(48, 2n, true);
    p.dv().setUint8(48 + 8, 1); // fd_read
    p.dv().setUint32(48 + 16, 0, true);
    p.dv().setBigUint64(96, 3n, true);
    p.dv().setUint8(96 + 8, 1); // fd_read on a closed fd
    p.dv().setUint32(96 + 16, 9, true);
    const t = performance.now();
    expect(p.call.poll_oneoff!(0, 1024, 3, 2048)).toBe(Errno.SUCCESS);
    // far below the 30 s clock (a generous bound: the machine may be busy)
    expect(performance.now() - t).toBeLessThan(10_000);
    expect(p.dv().getUint32(2048, true)).toBe(2);
    expect(p.dv().getBigUint64(1024, true)).toBe(2n);
    expect(p.dv().getBigUint64(1024 + 16, true)).toBe(12n);
    expect(p.dv().getBigUint64(1056, true)).toBe(3n);
    expect(p.dv().getUint16(1056 + 8, true)).toBe(Errno.BADF);
  });

  it('poll_oneoff refuses zero subscriptions, too many, and unknown event types', () => {
    const p = proxy();
    expect(p.call.poll_oneoff!(0, 1024, 0, 2048)).toBe(Errno.INVAL);
    expect(p.call.grow!(20)).toBe(1);
    expect(p.call.poll_oneoff!(0, 0, WASI_POLL_MAX + 1, 2048)).toBe(Errno.INVAL);
    p.dv().setUint8(8, 9);
    expect(p.call.poll_oneoff!(0, 1024, 1, 2048)).toBe(Errno.INVAL);
  });

  it('args and environ are laid out as C expects', () => {
    const p = proxy({ args: ['prog', 'ü'], env: { A: '1' } });
    expect(p.call.args_sizes_get!(0, 4)).toBe(Errno.SUCCESS);
    expect([p.dv().getUint32(0, true), p.dv().getUint32(4, true)]).toEqual([2, 8]);
    expect(p.call.args_get!(100, 200)).toBe(Errno.SUCCESS);
    expect([p.dv().getUint32(100, true), p.dv().getUint32(104, true)]).toEqual([200, 205]);
    expect([...p.u8().subarray(200, 208)]).toEqual([...enc.encode('prog\0ü\0')]);
    expect(p.call.environ_sizes_get!(0, 4)).toBe(Errno.SUCCESS);
    expect([p.dv().getUint32(0, true), p.dv().getUint32(4, true)]).toEqual([1, 4]);
    expect(p.call.environ_get!(100, 300)).toBe(Errno.SUCCESS);
    expect([...p.u8().subarray(300, 304)]).toEqual([...enc.encode('A=1\0')]);
  });

  it(`fd_write takes up to ${WASI_IOV_MAX} iovecs (IOV_MAX) and refuses more with EINVAL`, () => {
    const p = proxy();
    p.u8().set(enc.encode('z'), 60_000);
    iovecs(p, 0, Array.from({ length: WASI_IOV_MAX + 1 }, () => [60_000, 1] as [number, number]));
    expect(p.call.fd_write!(1, 0, WASI_IOV_MAX + 1, 50_000)).toBe(Errno.INVAL);
    expect(p.call.fd_write!(1, 0, WASI_IOV_MAX, 50_000)).toBe(Errno.SUCCESS);
    expect(p.host.output().stdout).toBe('z'.repeat(WASI_IOV_MAX));
  });
});
