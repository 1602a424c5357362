// Usage lines and help texts of the command-line tool.

import { EXIT_TABLE } from './exit-codes.js';

export type Topic = 'run' | 'inspect' | 'serve';

export const USAGE: Readonly<Record<Topic, string>> = {
  run: 'wasmbox run FILE [FUNCTION] [ARGS...] [--fuel N] [--memory MB] [--timeout MS] [--json] [--server URL] [-- PROGRAM_ARGS...]',
  inspect: 'wasmbox inspect FILE [--json] [--server URL]',
  serve: 'wasmbox serve [--port N] [--host ADDR]',
};

/** The usage line(s) printed after a usage error. */
export function usageLines(topic?: Topic): string {
  if (topic) return `usage: ${USAGE[topic]}\n`;
  return `usage: ${USAGE.run}\n       ${USAGE.inspect}\n       ${USAGE.serve}\n       wasmbox --help | --version\n`;
}

const RUN_HELP = `Runs one exported function of FILE (a .wasm module) with fuel metering, a memory cap and a
wall-clock deadline, through the same worker, metering and limits code as the server.

  FUNCTION      the export to call; may be left out when the module exports _start or exactly
                one function. When the first word after FILE names an export, it is FUNCTION;
                otherwise it is the first argument.
  ARGS          converted by the export's signature: i32 and i64 are decimal integers (i64 is
                exact across its whole range), f32/f64 are decimals or NaN, Infinity, -Infinity,
                -0. Negative numbers need no quoting: wasmbox run m.wasm sub -5 3

  --fuel N      fuel budget (1 per operator, as wasmtime counts)      default: the server's
  --memory MB   linear memory cap in MiB                              default: the server's
  --timeout MS  wall-clock deadline in milliseconds                   default: the server's
  --json        print exactly the service's response body (or error body) on stdout
  --telemetry   print the telemetry table on stderr even when it is not a terminal
  -q, --quiet   never print the telemetry table
  --server URL  run on a wasmbox service at URL instead of in this process
  --api-key KEY API key for --server (default: $WASMBOX_API_KEY), sent as
                "authorization: Bearer KEY" and "x-api-key: KEY"

WASI programs (modules importing wasi_snapshot_preview1):
  wasmbox run prog.wasm [--env K=V]... -- PROGRAM_ARGS...
  argv is FILE followed by PROGRAM_ARGS; the environment holds only the --env variables
  (--env K alone passes K's value from this environment); stdin is read to its end and passed
  when it is not a terminal (use < /dev/null to pass none). The program's stdout and stderr
  are written to this process's stdout and stderr when it ends, and its exit code is ours.

Output: the results go to stdout, one per line. Failures (trap, fuel exhausted, ...) are
described on stderr, followed by the telemetry table (fuel, peak memory, duration) when stderr
is a terminal.`;

const INSPECT_HELP = `Describes FILE: module id, size, exported functions with their signatures, other exports,
imports, memory and table limits. The module is validated and prepared exactly as the server
does it, so a module the service would refuse is refused here with the same message.

  --json        print exactly the service's description body (that of POST /modules)
  --server URL  ask a wasmbox service at URL: the module is uploaded with POST /modules (it is
                stored there, under its content address) and the server's description printed
  --api-key KEY API key for --server (default: $WASMBOX_API_KEY)`;

const SERVE_HELP = `Starts the HTTP service, as npm start does: the configuration comes from the environment
(PORT, HOST, WASMBOX_*; see the README). SIGTERM or SIGINT drain in-flight runs and stop it.

  --port N      listening port (sets PORT)
  --host ADDR   listening address (sets HOST)`;

export function helpText(topic?: Topic): string {
  if (topic === 'run') return `usage: ${USAGE.run}\n\n${RUN_HELP}\n\n${exitCodesText()}`;
  if (topic === 'inspect') return `usage: ${USAGE.inspect}\n\n${INSPECT_HELP}\n\n${exitCodesText()}`;
  if (topic === 'serve') return `usage: ${USAGE.serve}\n\n${SERVE_HELP}\n`;
  return `wasmbox: run untrusted WebAssembly with fuel metering, memory caps and deadlines.

${usageLines()}
Commands:
  run       run a function of a module (or a WASI program) and report what it cost
  inspect   describe a module: exports with signatures, imports, memory, tables, id
  serve     start the HTTP service

wasmbox help COMMAND (or wasmbox COMMAND --help) describes each command.

${exitCodesText()}`;
}

function exitCodesText(): string {
  const width = Math.max(...EXIT_TABLE.map(([c]) => c.length));
  return `Exit codes:\n${EXIT_TABLE.map(([c, m]) => `  ${c.padStart(width)}  ${m}`).join('\n')}\n`;
}
