// The WASI preview1 ABI as data: errno values, rights, file types, struct layouts, and the
// lowered core-wasm signature of every function in "wasi_snapshot_preview1".
//
// Source of truth: wasi-libc's <wasi/api.h> (generated from the preview1 witx), as Debian ships
// it. The signatures below were read off the imports of a program that calls all 45 functions
// that header declares (test/wasi/programs/all-imports.c, committed with its .wasm; the test
// suite checks this table against that binary), plus proc_raise, which the witx still defines
// but wasi-libc no longer declares.

export const WASI_MODULE = 'wasi_snapshot_preview1';

/** errno values (preview1 `errno`, u16). Only the ones this host returns are named. */
export const Errno = {
  SUCCESS: 0,
  BADF: 8,
  CANCELED: 11,
  FAULT: 21,
  INVAL: 28,
  NOSYS: 52,
  NOTDIR: 54,
  NOTSUP: 58,
  SPIPE: 70,
  NOTCAPABLE: 76,
} as const;
export type Errno = (typeof Errno)[keyof typeof Errno];

export const Filetype = { UNKNOWN: 0, CHARACTER_DEVICE: 2, DIRECTORY: 3, REGULAR_FILE: 4 } as const;

export const ClockId = { REALTIME: 0, MONOTONIC: 1, PROCESS_CPUTIME: 2, THREAD_CPUTIME: 3 } as const;

export const EventType = { CLOCK: 0, FD_READ: 1, FD_WRITE: 2 } as const;
export const SUBCLOCKFLAG_ABSTIME = 1;
export const EVENTRWFLAG_HANGUP = 1;

export const Rights = {
  FD_READ: 1n << 1n,
  FD_WRITE: 1n << 6n,
  FD_FILESTAT_GET: 1n << 21n,
  POLL_FD_READWRITE: 1n << 27n,
} as const;

/** Byte sizes and field offsets of the structs this host reads or writes (api.h static asserts). */
export const Layout = {
  iovec: { size: 8, buf: 0, len: 4 },
  fdstat: { size: 24, filetype: 0, flags: 2, rightsBase: 8, rightsInheriting: 16 },
  filestat: { size: 64, dev: 0, ino: 8, filetype: 16, nlink: 24, fileSize: 32, atim: 40, mtim: 48, ctim: 56 },
  subscription: { size: 48, userdata: 0, tag: 8, clockId: 16, clockTimeout: 24, clockPrecision: 32, clockFlags: 40, fd: 16 },
  event: { size: 32, userdata: 0, error: 8, type: 10, nbytes: 16, flags: 24 },
} as const;

export type WasiValType = 'i32' | 'i64';
export interface WasiSignature {
  readonly params: readonly WasiValType[];
  readonly results: readonly WasiValType[];
}

const sig = (params: string, results: 'i32' | '' = 'i32'): WasiSignature =>
  Object.freeze({
    params: Object.freeze(params.split(' ').filter(Boolean) as WasiValType[]),
    results: Object.freeze(results ? (['i32'] as WasiValType[]) : []),
  });

/** Every preview1 function, name -> lowered core signature (46 functions). */
export const PREVIEW1_SIGNATURES: Readonly<Record<string, WasiSignature>> = Object.freeze({
  args_get: sig('i32 i32'),
  args_sizes_get: sig('i32 i32'),
  environ_get: sig('i32 i32'),
  environ_sizes_get: sig('i32 i32'),
  clock_res_get: sig('i32 i32'),
  clock_time_get: sig('i32 i64 i32'),
  fd_advise: sig('i32 i64 i64 i32'),
  fd_allocate: sig('i32 i64 i64'),
  fd_close: sig('i32'),
  fd_datasync: sig('i32'),
  fd_fdstat_get: sig('i32 i32'),
  fd_fdstat_set_flags: sig('i32 i32'),
  fd_fdstat_set_rights: sig('i32 i64 i64'),
  fd_filestat_get: sig('i32 i32'),
  fd_filestat_set_size: sig('i32 i64'),
  fd_filestat_set_times: sig('i32 i64 i64 i32'),
  fd_pread: sig('i32 i32 i32 i64 i32'),
  fd_prestat_get: sig('i32 i32'),
  fd_prestat_dir_name: sig('i32 i32 i32'),
  fd_pwrite: sig('i32 i32 i32 i64 i32'),
  fd_read: sig('i32 i32 i32 i32'),
  fd_readdir: sig('i32 i32 i32 i64 i32'),
  fd_renumber: sig('i32 i32'),
  fd_seek: sig('i32 i64 i32 i32'),
  fd_sync: sig('i32'),
  fd_tell: sig('i32 i32'),
  fd_write: sig('i32 i32 i32 i32'),
  path_create_directory: sig('i32 i32 i32'),
  path_filestat_get: sig('i32 i32 i32 i32 i32'),
  path_filestat_set_times: sig('i32 i32 i32 i32 i64 i64 i32'),
  path_link: sig('i32 i32 i32 i32 i32 i32 i32'),
  path_open: sig('i32 i32 i32 i32 i32 i64 i64 i32 i32'),
  path_readlink: sig('i32 i32 i32 i32 i32 i32'),
  path_remove_directory: sig('i32 i32 i32'),
  path_rename: sig('i32 i32 i32 i32 i32 i32'),
  path_symlink: sig('i32 i32 i32 i32 i32'),
  path_unlink_file: sig('i32 i32 i32'),
  poll_oneoff: sig('i32 i32 i32 i32'),
  proc_exit: sig('i32', ''),
  proc_raise: sig('i32'),
  sched_yield: sig(''),
  random_get: sig('i32 i32'),
  sock_accept: sig('i32 i32 i32'),
  sock_recv: sig('i32 i32 i32 i32 i32 i32'),
  sock_send: sig('i32 i32 i32 i32 i32'),
  sock_shutdown: sig('i32 i32'),
});

export type Preview1Function = keyof typeof PREVIEW1_SIGNATURES;

const formatTypes = (types: readonly string[]): string => `(${types.join(', ')})`;

/**
 * Whether this host can satisfy one import from "wasi_snapshot_preview1": null when it can,
 * otherwise the refusal message for `unsupported_import`. The signature must match exactly:
 * V8 accepts a JS function for any declared signature, so a mismatch would otherwise surface as
 * a host exception (or a silently misread argument) at run time instead of a clear refusal.
 */
export function checkWasiImport(
  name: string,
  params: readonly string[],
  results: readonly string[],
  kind: 'func' | 'table' | 'memory' | 'global' | 'tag' = 'func',
): string | null {
  const quoted = `"${WASI_MODULE}" ${JSON.stringify(name)}`;
  if (kind !== 'func') {
    return `the module imports ${kind} ${quoted}; WASI preview1 provides only functions`;
  }
  const expected = Object.hasOwn(PREVIEW1_SIGNATURES, name) ? PREVIEW1_SIGNATURES[name] : undefined;
  if (!expected) {
    return `the module imports function ${quoted}, which is not a WASI preview1 function`;
  }
  const same = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((t, i) => t === b[i]);
  if (!same(params, expected.params) || !same(results, expected.results)) {
    return (
      `the module imports function ${quoted} as ${formatTypes(params)} -> ${formatTypes(results)}; ` +
      `WASI preview1 defines it as ${formatTypes(expected.params)} -> ${formatTypes(expected.results)}`
    );
  }
  return null;
}
