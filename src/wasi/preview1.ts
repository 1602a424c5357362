// WASI preview1 host for untrusted guests: every function of "wasi_snapshot_preview1", over a
// sandbox that gives no access to the host.
//
// Why our own host and not a library:
// - node:wasi is documented as not a security boundary; its stdio are the process's real file
//   descriptors (no capture, no cap), and it offers no hook to charge fuel or to check pointers
//   the way we need.
// - @bjorn3/browser_wasi_shim (0.4.x) is a well-kept in-memory shim, but as a sandbox it falls
//   short on exactly the points that matter here: out-of-bounds pointers either throw a
//   RangeError from DataView (a host exception) or are silently clamped by subarray/slice;
//   sock_* and proc_raise throw strings; poll_oneoff busy-waits on the CPU; random_get falls back
//   to Math.random for shared memories; and nothing can charge fuel per byte. Wrapping it would
//   mean re-decoding every argument anyway.
// With no filesystem, no sockets and three fds, the whole surface is small enough to own, and
// owning it lets every byte be bounds-checked and charged.
//
// What the guest sees:
// - fds 0, 1, 2 only: stdin is the request's bytes; stdout and stderr are captured up to their
//   caps. They present as character devices without seek rights, so wasi-libc treats them as a
//   terminal and line-buffers stdout: output up to a trap or fuel exhaustion is not lost in a
//   libc buffer (at the price of one host call per line).
// - No preopened directories: fd_prestat_get answers EBADF for every fd, so libc finds no
//   directory to resolve paths against and every open fails (wasi-libc: ENOTCAPABLE); path_* on
//   a stdio fd is ENOTDIR, on any other fd EBADF. No sockets (sock_* ENOTSUP).
// - args and environment exactly as given; the server's process.env is never read.
// - Clocks: realtime is the host's wall clock; monotonic counts from the host's creation (it
//   does not reveal the server's uptime); process and thread CPU time are the monotonic time
//   minus time spent asleep in poll_oneoff (the guest is one thread that runs the whole time; the
//   server's real CPU counters would leak other tenants' load).
// - poll_oneoff: fd subscriptions are ready at once (stdin holds all its bytes, writes never
//   block); clock subscriptions really sleep (Atomics.wait), bounded in total per run by
//   `sleepBudgetMs` and cut at the run's deadline (`deadline`). A sleep that would pass the budget
//   sleeps what is left of it and reports its clock as fired; one cut by the deadline also
//   interrupts the guest's fuel slice, so its next check ends the run as a timeout.
// - stdout and stderr are captured as bytes up to their caps and decoded as UTF-8 at the end
//   (output.ts: a character cut by the cap is dropped, not shown as U+FFFD). A cap does not stop
//   the guest: one that writes forever is ended by fuel (each write is charged) or the deadline,
//   and its output stays within the cap.
//
// Safety: every pointer and length is checked against the memory's current byte length (read
// anew on every call: the guest may grow memory) before anything is read or written, and a bad
// one answers EFAULT; no host exception escapes for anything the guest passes.
//
// Fuel (WASI_COSTS): every call costs `call`, plus `perByte` for every byte of guest memory it
// reads or writes: iovec arrays, data, structs, strings. One charge per call, before the work
// (only O(1) checks, or a walk over at most WASI_IOV_MAX iovecs, come first); when the budget
// cannot pay, the work is not done and the call answers ECANCELED (the guest then traps at its
// next fuel check, and the run is fuel_exhausted). fd_write charges for every byte the guest
// asked to write, also past the cap, so fuel consumed never depends on the server's output caps;
// poll_oneoff charges for the most events its subscriptions could produce.
//
// proc_exit records the code, calls `halt` (see fuel.ts: the guest is made to trap at its next
// check even if it catches the exception) and throws WasiExit. From then on every WASI call
// throws WasiExit again, so a guest that catches the exception can neither write more output nor
// do anything else through the host. The runner must read the outcome from `exitCode`, whatever
// exception (or none) ended the guest's code.

import { quote } from '../errors.js';
import { performance } from 'node:perf_hooks';
import {
  ClockId,
  Errno,
  EventType,
  EVENTRWFLAG_HANGUP,
  Filetype,
  Layout,
  PREVIEW1_SIGNATURES,
  Rights,
  SUBCLOCKFLAG_ABSTIME,
  WASI_MODULE,
} from './abi.js';
import { CappedOutput, sharedSlots } from './output.js';

export { checkWasiImport, Errno, PREVIEW1_SIGNATURES, WASI_MODULE } from './abi.js';
export { GuestFuel } from './fuel.js';

/**
 * Fuel charged for host calls: a cost table as data, like src/metering/costs.ts. A call takes
 * about 50-110 ns here (sched_yield, an 8-byte fd_write or random_get, fuel charge included),
 * what 100-300 metered guest operators take, so `call` keeps host-call-heavy guests in the same
 * fuel-per-second range as computing ones.
 */
export interface WasiCosts {
  /** Every WASI call (except proc_exit): the guest-to-host transition and bookkeeping. */
  readonly call: number;
  /** Every byte of guest memory the host reads or writes: the same as memory.copy's per byte. */
  readonly perByte: number;
}

export const WASI_COSTS: WasiCosts = Object.freeze({ call: 100, perByte: 1 });

/** Fuel per byte moved between the guest's memory and the host (WASI_COSTS.perByte). */
export const WASI_FUEL_PER_BYTE = WASI_COSTS.perByte;

/** Total time poll_oneoff may sleep in one run when the runner does not say (the default timeoutMs). */
export const WASI_DEFAULT_SLEEP_BUDGET_MS = 1_000;

/** Largest chunk crypto.getRandomValues accepts at once. */
const RANDOM_CHUNK = 65_536;
/** Small random_get requests are served from a pool refilled this many bytes at a time: one
 *  getRandomValues call costs about 2 µs whatever its size, far more than its fuel would pay for. */
const RANDOM_POOL = 4_096;
/** Most iovecs one fd_read or fd_write takes (POSIX IOV_MAX, as in wasi-libc): bounds the walk
 *  over the array that comes before the call can be charged. */
export const WASI_IOV_MAX = 1_024;
/** Most subscriptions one poll_oneoff takes (more is EINVAL, as poll() past RLIMIT_NOFILE): the
 *  host holds one small object per subscription, and a guest with gigabytes of memory and a large
 *  budget must not be able to make it allocate millions. There are only three fds to poll. */
export const WASI_POLL_MAX = 4_096;
/** What poll_oneoff reports as writable on stdout/stderr: writes never block. */
const WRITABLE_BYTES = 65_536n;

export interface WasiOptions {
  /** argv, argv[0] included. */
  args: readonly string[];
  /** The guest's whole environment. */
  env: Readonly<Record<string, string>>;
  stdin: Uint8Array;
  stdoutLimitBytes: number;
  stderrLimitBytes: number;
  /** Adds units to the run's fuel; false when the budget is exhausted (the host then does no work). */
  charge: (units: number) => boolean;
  /** Called once by proc_exit, before WasiExit is thrown: make the guest trap at its next check. */
  halt?: () => void;
  /** When given (see output.ts sharedOutputBuffer), output is mirrored there as it is written,
   *  so whoever kills the worker at the deadline can still return what the program printed. */
  outputBuffer?: SharedArrayBuffer;
  /** Total wall time poll_oneoff may sleep in this run; pass the run's timeoutMs. */
  sleepBudgetMs?: number;
  /** The run's deadline, from the fuel account (GuestFuel): sleeps end there, and then make the
   *  guest's next fuel check ask the host, which ends the run. */
  deadline?: { remainingMs: () => number; interrupt: () => void };
  costs?: WasiCosts;
}

/** The "wasi_snapshot_preview1" import namespace. */
export type WasiImports = Record<string, (...args: never[]) => unknown>;

export interface WasiOutput {
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

/** Thrown by proc_exit (and by every WASI call after it) to unwind the guest. */
export class WasiExit extends Error {
  override readonly name = 'WasiExit';
  constructor(readonly code: number) {
    super(`the WASI program exited with code ${code}`);
  }
}

/**
 * Why a WASI argument or environment set cannot be passed to a guest, or null. Check requests
 * with it up front (the schema): WasiHost throws a TypeError for such input.
 */
export function wasiInputProblem(args: readonly string[], env: Readonly<Record<string, string>>): string | null {
  for (const [i, a] of args.entries()) {
    if (a.includes('\0')) return `wasi.args[${i}] contains a NUL character`;
  }
  for (const [k, v] of Object.entries(env)) {
    if (k === '') return 'wasi.env has an empty variable name';
    if (k.includes('=')) return `wasi.env variable name ${quote(k, 60)} contains "="`;
    if (k.includes('\0') || v.includes('\0')) return `wasi.env variable ${quote(k, 60)} contains a NUL character`;
  }
  return null;
}

type StreamKind = 'stdin' | 'stdout' | 'stderr';
interface FdEntry {
  kind: StreamKind;
  rightsBase: bigint;
  rightsInheriting: bigint;
}

/** Out of bounds: answered with EFAULT. */
class Fault {}
/** The fuel budget could not pay for the call: answered with ECANCELED. */
class Unpaid {}
const FAULT = new Fault();
const UNPAID = new Unpaid();

/** Views of one buffer of linear memory (memory.grow replaces the buffer: see WasiHost.mem). */
const EMPTY = new ArrayBuffer(0);

class Mem {
  readonly u8: Uint8Array;
  readonly dv: DataView;
  readonly size: number;
  constructor(readonly buffer: ArrayBufferLike) {
    this.u8 = new Uint8Array(buffer);
    this.dv = new DataView(buffer);
    this.size = buffer.byteLength;
  }
  /** ptr and len are unsigned (at most 2^32 - 1 and a few times that): the sum is exact. */
  check(ptr: number, len: number): void {
    if (ptr + len > this.size) throw FAULT;
  }
  u32(ptr: number): number {
    return this.dv.getUint32(ptr, true);
  }
  setU32(ptr: number, v: number): void {
    this.dv.setUint32(ptr, v, true);
  }
  setU64(ptr: number, v: bigint): void {
    this.dv.setBigUint64(ptr, BigInt.asUintN(64, v), true);
  }
}

interface Iovec {
  ptr: number;
  len: number;
}

interface StringTable {
  bytes: Uint8Array;
  offsets: number[];
}

function encodeStrings(strings: readonly string[]): StringTable {
  const enc = new TextEncoder();
  const parts = strings.map((s) => enc.encode(s));
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length + 1, 0));
  const offsets: number[] = [];
  let at = 0;
  for (const p of parts) {
    offsets.push(at);
    bytes.set(p, at);
    at += p.length + 1; // NUL terminator: already 0
  }
  return { bytes, offsets };
}

const u32 = (x: number): number => x >>> 0;
const isCallStackError = (err: unknown): boolean => err instanceof RangeError && /call stack/i.test(err.message);

export class WasiHost {
  private memory: WebAssembly.Memory | null = null;
  private view: Mem | null = null;
  private readonly fds = new Map<number, FdEntry>();
  private readonly args: StringTable;
  private readonly env: StringTable;
  private readonly stdin: Uint8Array;
  private stdinPos = 0;
  private readonly stdout: CappedOutput;
  private readonly stderr: CappedOutput;
  private readonly costs: WasiCosts;
  private readonly charge: (units: number) => boolean;
  private readonly halt: (() => void) | undefined;
  private readonly deadline: WasiOptions['deadline'];
  private readonly monoOrigin = process.hrtime.bigint();
  private readonly realOriginNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
  private sleepBudgetNs: bigint;
  private sleptNs = 0n;
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));
  private exit: number | null = null;
  private paid = false;
  private readonly randomPool = new Uint8Array(RANDOM_POOL);
  private randomPos = RANDOM_POOL;
  private importObject: WasiImports | null = null;

  constructor(options: WasiOptions) {
    const problem = wasiInputProblem(options.args, options.env);
    if (problem) throw new TypeError(problem);
    for (const [name, n] of [
      ['stdoutLimitBytes', options.stdoutLimitBytes],
      ['stderrLimitBytes', options.stderrLimitBytes],
    ] as const) {
      if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`${name} must be a non-negative integer; got ${n}`);
    }
    this.args = encodeStrings(options.args);
    this.env = encodeStrings(Object.entries(options.env).map(([k, v]) => `${k}=${v}`));
    this.stdin = options.stdin;
    const slots = options.outputBuffer ? sharedSlots(options.outputBuffer, options.stdoutLimitBytes, options.stderrLimitBytes) : null;
    this.stdout = new CappedOutput(options.stdoutLimitBytes, slots?.[0] ?? null);
    this.stderr = new CappedOutput(options.stderrLimitBytes, slots?.[1] ?? null);
    this.costs = options.costs ?? WASI_COSTS;
    this.charge = options.charge;
    this.halt = options.halt;
    this.deadline = options.deadline;
    const budgetMs = options.sleepBudgetMs ?? WASI_DEFAULT_SLEEP_BUDGET_MS;
    this.sleepBudgetNs = BigInt(Math.max(0, Math.round(budgetMs * 1e6)));
    const stream = (kind: StreamKind, rights: bigint): FdEntry => ({
      kind,
      rightsBase: rights | Rights.POLL_FD_READWRITE | Rights.FD_FILESTAT_GET,
      rightsInheriting: 0n,
    });
    this.fds.set(0, stream('stdin', Rights.FD_READ));
    this.fds.set(1, stream('stdout', Rights.FD_WRITE));
    this.fds.set(2, stream('stderr', Rights.FD_WRITE));
  }

  /** The guest's linear memory: call before the guest runs. Its buffer is re-read on every call. */
  bind(memory: WebAssembly.Memory): void {
    this.memory = memory;
  }

  /** The exit code once the guest called proc_exit, else null. */
  get exitCode(): number | null {
    return this.exit;
  }

  output(): WasiOutput {
    return {
      stdout: this.stdout.text(),
      stderr: this.stderr.text(),
      stdoutTruncated: this.stdout.truncated,
      stderrTruncated: this.stderr.truncated,
    };
  }

  /** The "wasi_snapshot_preview1" namespace: all 46 functions. */
  imports(): WasiImports {
    this.importObject ??= this.buildImports();
    return this.importObject;
  }

  // ---- plumbing -------------------------------------------------------------------------------

  /** Views of the memory's current buffer: `memory.buffer` is read on every call, and the views
   *  are rebuilt whenever it is a different object (memory.grow replaces it). */
  private mem(): Mem {
    const buffer = this.memory ? this.memory.buffer : EMPTY;
    if (this.view?.buffer !== buffer) this.view = new Mem(buffer);
    return this.view;
  }

  /**
   * Charges this call: the base cost plus `bytes` of guest memory moved. Each function calls it
   * once, before its work (a charge is a read-modify-write of the fuel global: one per call keeps
   * a host call cheap); functions that move no bytes are charged the base by the guard.
   */
  private pay(bytes: number): void {
    this.paid = true;
    if (!this.charge(this.costs.call + bytes * this.costs.perByte)) throw UNPAID;
  }

  /** Charges the call, maps faults to errnos, refuses everything after proc_exit. */
  private guard<F extends (...args: never[]) => number>(fn: F): F {
    const wrapped = (...args: Parameters<F>): number => {
      if (this.exit !== null) throw new WasiExit(this.exit);
      this.paid = false;
      try {
        const errno = fn.apply(this, args);
        if (!this.paid) this.pay(0); // moved nothing: did no work that needed paying for first
        return errno;
      } catch (err) {
        if (err === UNPAID) return Errno.CANCELED;
        // Safety net: every access is checked first, so a RangeError here would be a bounds
        // check this file missed; it is still the guest's bad pointer, never a host exception.
        // A call-stack overflow is the guest's deep recursion and must reach the runner as such.
        if (err !== FAULT && !(err instanceof RangeError && !isCallStackError(err))) throw err;
        if (!this.paid && !this.charge(this.costs.call)) return Errno.CANCELED;
        return Errno.FAULT;
      }
    };
    Object.defineProperty(wrapped, 'length', { value: fn.length });
    return wrapped as unknown as F;
  }

  private entry(fd: number): FdEntry | undefined {
    return this.fds.get(u32(fd));
  }

  /** Reads and bounds-checks an iovec array (data ranges included); null past WASI_IOV_MAX. */
  private iovecs(m: Mem, iovsPtr: number, iovsLen: number): Iovec[] | null {
    const ptr = u32(iovsPtr);
    const n = u32(iovsLen);
    if (n > WASI_IOV_MAX) return null;
    m.check(ptr, n * Layout.iovec.size);
    const out: Iovec[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const at = ptr + i * Layout.iovec.size;
      const buf = m.u32(at + Layout.iovec.buf);
      const len = m.u32(at + Layout.iovec.len);
      m.check(buf, len);
      out[i] = { ptr: buf, len };
    }
    return out;
  }

  private monotonicNs(): bigint {
    return process.hrtime.bigint() - this.monoOrigin;
  }

  private clockNs(id: number): bigint | null {
    switch (id) {
      case ClockId.REALTIME:
        return this.realOriginNs + this.monotonicNs();
      case ClockId.MONOTONIC:
        return this.monotonicNs();
      case ClockId.PROCESS_CPUTIME:
      case ClockId.THREAD_CPUTIME:
        return this.monotonicNs() - this.sleptNs;
      default:
        return null;
    }
  }

  private sleep(ns: bigint): void {
    let slept = ns < this.sleepBudgetNs ? ns : this.sleepBudgetNs;
    let cut = false;
    if (this.deadline) {
      const left = BigInt(Math.max(0, Math.ceil(this.deadline.remainingMs() * 1e6)));
      if (left < slept) {
        slept = left;
        cut = true;
      }
    }
    if (slept > 0n) {
      const t0 = process.hrtime.bigint();
      Atomics.wait(this.sleeper, 0, 0, Number(slept) / 1e6);
      const actual = process.hrtime.bigint() - t0;
      this.sleptNs += actual;
      this.sleepBudgetNs -= actual < this.sleepBudgetNs ? actual : this.sleepBudgetNs;
    }
    if (cut) this.deadline!.interrupt();
  }

  /** Fills dst[at, at + n) with CSPRNG bytes, through private buffers (getRandomValues refuses
   *  views of a SharedArrayBuffer, which a shared memory's buffer is). */
  private fillRandom(dst: Uint8Array, at: number, n: number): void {
    if (n <= RANDOM_POOL) {
      if (this.randomPos + n > RANDOM_POOL) {
        crypto.getRandomValues(this.randomPool);
        this.randomPos = 0;
      }
      dst.set(this.randomPool.subarray(this.randomPos, this.randomPos + n), at);
      // Served bytes are never served again.
      this.randomPos += n;
      return;
    }
    const chunk = new Uint8Array(Math.min(n, RANDOM_CHUNK));
    for (let done = 0; done < n; done += RANDOM_CHUNK) {
      const k = Math.min(RANDOM_CHUNK, n - done);
      const part = k === chunk.length ? chunk : chunk.subarray(0, k);
      crypto.getRandomValues(part);
      dst.set(part, at + done);
    }
  }

  private writeStrings(table: StringTable, ptrsPtr: number, bufPtr: number): number {
    const m = this.mem();
    const ptrs = u32(ptrsPtr);
    const buf = u32(bufPtr);
    const n = table.offsets.length;
    m.check(ptrs, n * 4);
    m.check(buf, table.bytes.length);
    this.pay(n * 4 + table.bytes.length);
    for (let i = 0; i < n; i++) m.setU32(ptrs + i * 4, buf + table.offsets[i]!);
    m.u8.set(table.bytes, buf);
    return Errno.SUCCESS;
  }

  private writeSizes(table: StringTable, countPtr: number, sizePtr: number): number {
    const m = this.mem();
    m.check(u32(countPtr), 4);
    m.check(u32(sizePtr), 4);
    this.pay(8);
    m.setU32(u32(countPtr), table.offsets.length);
    m.setU32(u32(sizePtr), table.bytes.length);
    return Errno.SUCCESS;
  }

  /** Errno for an operation that stdio fds do not support (badf when the fd is not open). */
  private stdioOnly(fd: number, errno: Errno): number {
    return this.entry(fd) ? errno : Errno.BADF;
  }

  // ---- the functions --------------------------------------------------------------------------

  private buildImports(): WasiImports {
    const g = this.guard.bind(this);

    const fns: Record<string, (...args: never[]) => unknown> = {
      args_get: g((argv: number, argvBuf: number) => this.writeStrings(this.args, argv, argvBuf)),
      args_sizes_get: g((argc: number, bufSize: number) => this.writeSizes(this.args, argc, bufSize)),
      environ_get: g((environ: number, environBuf: number) => this.writeStrings(this.env, environ, environBuf)),
      environ_sizes_get: g((count: number, bufSize: number) => this.writeSizes(this.env, count, bufSize)),

      clock_res_get: g((id: number, resPtr: number) => {
        if (this.clockNs(id) === null) return Errno.INVAL;
        const m = this.mem();
        m.check(u32(resPtr), 8);
        this.pay(8);
        m.setU64(u32(resPtr), 1n); // all clocks derive from process.hrtime: nanoseconds
        return Errno.SUCCESS;
      }),
      clock_time_get: g((id: number, _precision: bigint, timePtr: number) => {
        const now = this.clockNs(id);
        if (now === null) return Errno.INVAL;
        const m = this.mem();
        m.check(u32(timePtr), 8);
        this.pay(8);
        m.setU64(u32(timePtr), now);
        return Errno.SUCCESS;
      }),

      fd_advise: g((fd: number, _offset: bigint, _len: bigint, _advice: number) => this.stdioOnly(fd, Errno.SPIPE)),
      fd_allocate: g((fd: number, _offset: bigint, _len: bigint) => this.stdioOnly(fd, Errno.SPIPE)),
      fd_close: g((fd: number) => {
        this.pay(0);
        return this.fds.delete(u32(fd)) ? Errno.SUCCESS : Errno.BADF;
      }),
      fd_datasync: g((fd: number) => this.stdioOnly(fd, Errno.INVAL)),
      fd_fdstat_get: g((fd: number, statPtr: number) => {
        const e = this.entry(fd);
        if (!e) return Errno.BADF;
        const m = this.mem();
        const p = u32(statPtr);
        const L = Layout.fdstat;
        m.check(p, L.size);
        this.pay(L.size);
        m.u8.fill(0, p, p + L.size);
        m.dv.setUint8(p + L.filetype, Filetype.CHARACTER_DEVICE);
        m.setU64(p + L.rightsBase, e.rightsBase);
        m.setU64(p + L.rightsInheriting, e.rightsInheriting);
        return Errno.SUCCESS;
      }),
      fd_fdstat_set_flags: g((fd: number, flags: number) => {
        if (!this.entry(fd)) return Errno.BADF;
        return (flags & 0xffff) === 0 ? Errno.SUCCESS : Errno.NOTSUP;
      }),
      fd_fdstat_set_rights: g((fd: number, base: bigint, inheriting: bigint) => {
        const e = this.entry(fd);
        if (!e) return Errno.BADF;
        // Rights can only be dropped, never gained.
        if ((base & ~e.rightsBase) !== 0n || (inheriting & ~e.rightsInheriting) !== 0n) return Errno.NOTCAPABLE;
        this.pay(0);
        e.rightsBase = base;
        e.rightsInheriting = inheriting;
        return Errno.SUCCESS;
      }),
      fd_filestat_get: g((fd: number, statPtr: number) => {
        if (!this.entry(fd)) return Errno.BADF;
        const m = this.mem();
        const p = u32(statPtr);
        const L = Layout.filestat;
        m.check(p, L.size);
        this.pay(L.size);
        m.u8.fill(0, p, p + L.size);
        m.dv.setUint8(p + L.filetype, Filetype.CHARACTER_DEVICE);
        m.setU64(p + L.nlink, 1n);
        return Errno.SUCCESS;
      }),
      fd_filestat_set_size: g((fd: number, _size: bigint) => this.stdioOnly(fd, Errno.INVAL)),
      fd_filestat_set_times: g((fd: number, _atim: bigint, _mtim: bigint, _flags: number) => this.stdioOnly(fd, Errno.NOTSUP)),
      fd_pread: g((fd: number, _iovs: number, _iovsLen: number, _offset: bigint, _nread: number) => this.stdioOnly(fd, Errno.SPIPE)),
      // No preopens: libc's discovery loop (fd 3 upwards) stops at the first EBADF.
      fd_prestat_get: g((_fd: number, _prestat: number) => Errno.BADF),
      fd_prestat_dir_name: g((_fd: number, _path: number, _pathLen: number) => Errno.BADF),
      fd_pwrite: g((fd: number, _iovs: number, _iovsLen: number, _offset: bigint, _nwritten: number) => this.stdioOnly(fd, Errno.SPIPE)),

      fd_read: g((fd: number, iovsPtr: number, iovsLen: number, nreadPtr: number) => {
        const e = this.entry(fd);
        if (!e) return Errno.BADF;
        if (e.kind !== 'stdin' || (e.rightsBase & Rights.FD_READ) === 0n) return Errno.BADF;
        const m = this.mem();
        const nread = u32(nreadPtr);
        m.check(nread, 4);
        const iovs = this.iovecs(m, iovsPtr, iovsLen);
        if (!iovs) return Errno.INVAL;
        let wanted = 0;
        for (const v of iovs) wanted += v.len;
        const n = Math.min(wanted, this.stdin.length - this.stdinPos);
        this.pay(iovs.length * Layout.iovec.size + n + 4);
        let left = n;
        for (const v of iovs) {
          if (left === 0) break;
          const k = Math.min(v.len, left);
          m.u8.set(this.stdin.subarray(this.stdinPos, this.stdinPos + k), v.ptr);
          this.stdinPos += k;
          left -= k;
        }
        m.setU32(nread, n);
        return Errno.SUCCESS;
      }),
      fd_readdir: g((fd: number, _buf: number, _bufLen: number, _cookie: bigint, _bufused: number) => this.stdioOnly(fd, Errno.NOTDIR)),
      fd_renumber: g((from: number, to: number) => {
        const e = this.entry(from);
        if (!e || !this.entry(to)) return Errno.BADF;
        this.pay(0);
        if (u32(from) !== u32(to)) {
          this.fds.set(u32(to), e);
          this.fds.delete(u32(from));
        }
        return Errno.SUCCESS;
      }),
      fd_seek: g((fd: number, _offset: bigint, _whence: number, _newOffset: number) => this.stdioOnly(fd, Errno.SPIPE)),
      fd_sync: g((fd: number) => this.stdioOnly(fd, Errno.INVAL)),
      fd_tell: g((fd: number, _offset: number) => this.stdioOnly(fd, Errno.SPIPE)),

      fd_write: g((fd: number, iovsPtr: number, iovsLen: number, nwrittenPtr: number) => {
        const e = this.entry(fd);
        if (!e) return Errno.BADF;
        if (e.kind === 'stdin' || (e.rightsBase & Rights.FD_WRITE) === 0n) return Errno.BADF;
        const m = this.mem();
        const nwritten = u32(nwrittenPtr);
        m.check(nwritten, 4);
        const iovs = this.iovecs(m, iovsPtr, iovsLen);
        if (!iovs) return Errno.INVAL;
        let total = 0;
        for (const v of iovs) total += v.len;
        if (total > 0xffff_ffff) return Errno.INVAL; // the count would not fit the result
        // Charged in full even past the cap: fuel does not depend on the server's caps.
        this.pay(iovs.length * Layout.iovec.size + total + 4);
        const out = e.kind === 'stdout' ? this.stdout : this.stderr;
        for (const v of iovs) out.append(m.u8, v.ptr, v.len);
        // Reported as fully written even when the cap dropped bytes, so the guest does not retry.
        m.setU32(nwritten, total);
        return Errno.SUCCESS;
      }),

      // Every path is resolved against a directory fd; there are none.
      path_create_directory: g((fd: number, _path: number, _pathLen: number) => this.stdioOnly(fd, Errno.NOTDIR)),
      path_filestat_get: g((fd: number, _flags: number, _path: number, _pathLen: number, _buf: number) => this.stdioOnly(fd, Errno.NOTDIR)),
      path_filestat_set_times: g(
        (fd: number, _flags: number, _path: number, _pathLen: number, _atim: bigint, _mtim: bigint, _fstFlags: number) =>
          this.stdioOnly(fd, Errno.NOTDIR),
      ),
      path_link: g(
        (oldFd: number, _oldFlags: number, _oldPath: number, _oldPathLen: number, _newFd: number, _newPath: number, _newPathLen: number) =>
          this.stdioOnly(oldFd, Errno.NOTDIR),
      ),
      path_open: g(
        (
          fd: number,
          _dirflags: number,
          _path: number,
          _pathLen: number,
          _oflags: number,
          _rightsBase: bigint,
          _rightsInheriting: bigint,
          _fdflags: number,
          _openedFd: number,
        ) => this.stdioOnly(fd, Errno.NOTDIR),
      ),
      path_readlink: g((fd: number, _path: number, _pathLen: number, _buf: number, _bufLen: number, _bufused: number) =>
        this.stdioOnly(fd, Errno.NOTDIR),
      ),
      path_remove_directory: g((fd: number, _path: number, _pathLen: number) => this.stdioOnly(fd, Errno.NOTDIR)),
      path_rename: g((fd: number, _oldPath: number, _oldPathLen: number, _newFd: number, _newPath: number, _newPathLen: number) =>
        this.stdioOnly(fd, Errno.NOTDIR),
      ),
      path_symlink: g((_oldPath: number, _oldPathLen: number, fd: number, _newPath: number, _newPathLen: number) =>
        this.stdioOnly(fd, Errno.NOTDIR),
      ),
      path_unlink_file: g((fd: number, _path: number, _pathLen: number) => this.stdioOnly(fd, Errno.NOTDIR)),

      poll_oneoff: g((inPtr: number, outPtr: number, nsubscriptions: number, neventsPtr: number) =>
        this.pollOneoff(u32(inPtr), u32(outPtr), u32(nsubscriptions), u32(neventsPtr)),
      ),

      proc_exit: (code: number): never => {
        if (this.exit === null) {
          this.exit = u32(code);
          this.halt?.();
        }
        throw new WasiExit(this.exit);
      },
      proc_raise: g((_signal: number) => Errno.NOSYS),
      sched_yield: g(() => Errno.SUCCESS),

      random_get: g((bufPtr: number, bufLen: number) => {
        const m = this.mem();
        const p = u32(bufPtr);
        const n = u32(bufLen);
        m.check(p, n);
        this.pay(n);
        this.fillRandom(m.u8, p, n);
        return Errno.SUCCESS;
      }),

      sock_accept: g((_fd: number, _flags: number, _newFd: number) => Errno.NOTSUP),
      sock_recv: g((_fd: number, _riData: number, _riDataLen: number, _riFlags: number, _roDatalen: number, _roFlags: number) => Errno.NOTSUP),
      sock_send: g((_fd: number, _siData: number, _siDataLen: number, _siFlags: number, _soDatalen: number) => Errno.NOTSUP),
      sock_shutdown: g((_fd: number, _how: number) => Errno.NOTSUP),
    };
    for (const name of Object.keys(PREVIEW1_SIGNATURES)) {
      if (!fns[name]) throw new Error(`${WASI_MODULE}.${name} is not implemented`);
    }
    return fns as WasiImports;
  }

  private pollOneoff(inPtr: number, outPtr: number, n: number, neventsPtr: number): number {
    if (n === 0 || n > WASI_POLL_MAX) return Errno.INVAL;
    const m = this.mem();
    const S = Layout.subscription;
    const E = Layout.event;
    m.check(inPtr, n * S.size);
    m.check(outPtr, n * E.size);
    m.check(neventsPtr, 4);
    // Charged up front for every subscription and the most events they can produce.
    this.pay(n * (S.size + E.size) + 4);

    interface Ev {
      userdata: bigint;
      error: number;
      type: number;
      nbytes: bigint;
      flags: number;
    }
    const events: Ev[] = [];
    const clocks: { userdata: bigint; deadline: bigint }[] = [];
    const now = this.monotonicNs();
    for (let i = 0; i < n; i++) {
      const at = inPtr + i * S.size;
      const userdata = m.dv.getBigUint64(at + S.userdata, true);
      const tag = m.dv.getUint8(at + S.tag);
      const ev = (type: number, error: number, nbytes = 0n, flags = 0): void => {
        events.push({ userdata, error, type, nbytes, flags });
      };
      if (tag === EventType.CLOCK) {
        const id = m.u32(at + S.clockId);
        const timeout = m.dv.getBigUint64(at + S.clockTimeout, true);
        const flags = m.dv.getUint16(at + S.clockFlags, true);
        if (id !== ClockId.REALTIME && id !== ClockId.MONOTONIC) {
          ev(tag, id === ClockId.PROCESS_CPUTIME || id === ClockId.THREAD_CPUTIME ? Errno.NOTSUP : Errno.INVAL);
          continue;
        }
        let wait = timeout;
        if (flags & SUBCLOCKFLAG_ABSTIME) wait = timeout - (id === ClockId.MONOTONIC ? now : this.clockNs(id)!);
        clocks.push({ userdata, deadline: now + (wait > 0n ? wait : 0n) });
      } else if (tag === EventType.FD_READ || tag === EventType.FD_WRITE) {
        const e = this.entry(m.u32(at + S.fd));
        if (!e || (tag === EventType.FD_READ) !== (e.kind === 'stdin')) {
          ev(tag, Errno.BADF);
        } else if (tag === EventType.FD_READ) {
          const left = this.stdin.length - this.stdinPos;
          ev(tag, Errno.SUCCESS, BigInt(left), left === 0 ? EVENTRWFLAG_HANGUP : 0);
        } else {
          ev(tag, Errno.SUCCESS, WRITABLE_BYTES);
        }
      } else {
        return Errno.INVAL;
      }
    }

    if (events.length === 0) {
      // Only clocks: sleep until the earliest fires (within the run's sleep budget).
      let first = clocks[0]!;
      for (const c of clocks) if (c.deadline < first.deadline) first = c;
      if (first.deadline > now) this.sleep(first.deadline - now);
      const after = this.monotonicNs();
      for (const c of clocks) {
        if (c === first || c.deadline <= after) events.push({ userdata: c.userdata, error: 0, type: EventType.CLOCK, nbytes: 0n, flags: 0 });
      }
    } else {
      for (const c of clocks) {
        if (c.deadline <= now) events.push({ userdata: c.userdata, error: 0, type: EventType.CLOCK, nbytes: 0n, flags: 0 });
      }
    }

    events.forEach((ev, i) => {
      const at = outPtr + i * E.size;
      m.u8.fill(0, at, at + E.size);
      m.setU64(at + E.userdata, ev.userdata);
      m.dv.setUint16(at + E.error, ev.error, true);
      m.dv.setUint8(at + E.type, ev.type);
      m.setU64(at + E.nbytes, ev.nbytes);
      m.dv.setUint16(at + E.flags, ev.flags, true);
    });
    m.setU32(neventsPtr, events.length);
    return Errno.SUCCESS;
  }
}
