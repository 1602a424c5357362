// The command-line tool's exit codes: one table, used by the code, `wasmbox --help` and the
// README. The tool's own failures use the BSD sysexits numbers (64-78) for what they mean there;
// the guest's outcomes have a block of their own (80-84) so that no sysexits meaning (71
// "OS error", 74 "I/O error", ...) is borrowed for something else. A WASI program's own exit code
// is passed through unchanged, so it may coincide with one of these: --json tells them apart.

import type { ErrorCode } from '../errors.js';

export const EXIT = {
  ok: 0,
  usage: 64,
  refused: 65,
  noInput: 66,
  unavailable: 69,
  internal: 70,
  unauthorized: 77,
  config: 78,
  trap: 80,
  stackOverflow: 81,
  fuelExhausted: 82,
  memoryLimit: 83,
  timeout: 84,
} as const;

export type ExitCode = number;

/** For `--help` and the README: code, meaning. */
export const EXIT_TABLE: readonly (readonly [string, string])[] = [
  ['0', 'ok: the function returned (a WASI program exited with 0)'],
  ['1-255', "a WASI program's own non-zero exit code (codes above 255 exit with 1)"],
  ['64', 'bad usage: unknown option, missing FILE, no such function, wrong arguments or limits'],
  ['65', 'the module was refused: not valid WebAssembly, an unsupported import, too complex, too large'],
  ['66', 'FILE cannot be read'],
  ['69', 'the --server cannot be reached, or it is busy (503, 429)'],
  ['70', 'internal error (a 5xx answer, an answer that is not the service\'s, a bug in the tool)'],
  ['77', 'the --server refused the API key (401)'],
  ['78', 'a WASMBOX_* configuration variable is invalid'],
  ['80', 'trap'],
  ['81', 'stack overflow'],
  ['82', 'fuel exhausted'],
  ['83', 'memory limit exceeded'],
  ['84', 'timeout'],
];

const OUTCOME_EXIT: Readonly<Record<string, ExitCode>> = {
  ok: EXIT.ok,
  trap: EXIT.trap,
  stack_overflow: EXIT.stackOverflow,
  fuel_exhausted: EXIT.fuelExhausted,
  memory_limit_exceeded: EXIT.memoryLimit,
  timeout: EXIT.timeout,
};

/** The exit code for a 200 answer: its outcome, or the WASI program's own exit code. */
export function exitForOutcome(outcome: string, exitCode?: unknown): ExitCode {
  if (outcome === 'exited' || (outcome === 'ok' && typeof exitCode === 'number' && exitCode !== 0)) {
    return guestExitCode(exitCode);
  }
  return OUTCOME_EXIT[outcome] ?? EXIT.internal;
}

/** A WASI exit code as a process exit code: 1-255 as they are; anything else non-zero (a process
 *  cannot return it, and truncating could turn it into 0) becomes 1. */
export function guestExitCode(code: unknown): ExitCode {
  if (typeof code !== 'number' || !Number.isInteger(code)) return 1;
  if (code === 0) return 0;
  return code >= 1 && code <= 255 ? code : 1;
}

/** Refusals about what was typed on the command line: bad usage. */
const USAGE_CODES: ReadonlySet<string> = new Set<ErrorCode>(['invalid_request', 'function_not_found', 'invalid_arguments', 'limit_out_of_range']);

/** The exit code for a refused request (4xx/5xx with the service's error body). */
export function exitForError(code: string, status: number): ExitCode {
  if (USAGE_CODES.has(code)) return EXIT.usage;
  if (code === 'unauthorized' || status === 401 || status === 403) return EXIT.unauthorized;
  if (code === 'overloaded' || code === 'rate_limited' || status === 429 || status === 503) return EXIT.unavailable;
  if (status >= 500) return EXIT.internal;
  return EXIT.refused;
}
