// Usage lines and help texts of the command-line tool.

import { EXIT_TABLE } from './exit-codes.js';
import { OPTIONS, type OptionSpec, optionSynopsis, type Topic } from './options.js';

export type { Topic } from './options.js';

/** What each command takes besides its options. */
const OPERANDS: Readonly<Record<Topic, { before: string; after: string }>> = {
  run: { before: 'FILE [FUNCTION] [ARGS...]', after: '[-- PROGRAM_ARGS...]' },
  inspect: { before: 'FILE', after: '' },
  serve: { before: '', after: '' },
};

/** "[--fuel N]", "[-q | --quiet]", "[--env NAME=VALUE]..." (help options are left out). */
function usageOption(name: string, spec: OptionSpec): string {
  const long = `--${name}${spec.value ? ` ${spec.value}` : ''}`;
  return `[${spec.short ? `-${spec.short} | ` : ''}${long}]${spec.multiple ? '...' : ''}`;
}

/** The usage line of a command, generated from its option table. */
export function usage(topic: Topic): string {
  const options = Object.entries(OPTIONS[topic])
    .filter(([name]) => name !== 'help')
    .map(([name, spec]) => usageOption(name, spec));
  const { before, after } = OPERANDS[topic];
  return ['wasmbox', topic, before, ...options, after].filter((w) => w !== '').join(' ');
}

export const USAGE: Readonly<Record<Topic, string>> = { run: usage('run'), inspect: usage('inspect'), serve: usage('serve') };

/** The usage line(s) printed after a usage error. */
export function usageLines(topic?: Topic): string {
  if (topic) return `usage: ${USAGE[topic]}\n`;
  return `usage: ${USAGE.run}\n       ${USAGE.inspect}\n       ${USAGE.serve}\n       wasmbox --help | --version\n`;
}

/** The option list of a command's help, generated from its option table. */
export function optionList(topic: Topic): string {
  const rows = Object.entries(OPTIONS[topic]).map(([name, spec]) => [optionSynopsis(name, spec), spec.help] as const);
  const width = Math.max(...rows.map(([synopsis]) => synopsis.length)) + 2;
  return rows
    .map(([synopsis, help]) => {
      const [first, ...rest] = help.split('\n');
      return [`  ${synopsis.padEnd(width)}${first}`, ...rest.map((line) => `  ${' '.repeat(width)}${line}`)].join('\n');
    })
    .join('\n');
}

const RUN_HELP = `Runs one exported function of FILE (a .wasm module, or WebAssembly text such as a .wat file,
compiled first) with fuel metering, a memory cap and a wall-clock deadline, through the same
worker, metering and limits code as the server.

  FUNCTION      the export to call; may be left out when the module exports _start or exactly
                one function. When the first word after FILE names an export, it is FUNCTION;
                otherwise it is the first argument.
  ARGS          converted by the export's signature: i32 and i64 are decimal integers (i64 is
                exact across its whole range), f32/f64 are decimals or NaN, Infinity, -Infinity,
                -0. Negative numbers need no quoting: wasmbox run m.wasm sub -5 3

${optionList('run')}

WASI programs (modules importing wasi_snapshot_preview1):
  wasmbox run prog.wasm [--env K=V]... -- PROGRAM_ARGS...
  argv is FILE followed by PROGRAM_ARGS; the environment holds only the --env variables
  (--env K alone passes K's value from this environment); stdin is read to its end and passed
  when it is not a terminal (use < /dev/null to pass none). The program's stdout and stderr
  stream to this process's stdout and stderr as the program writes them (with --server: when
  the answer arrives), and its exit code is ours.

Output: the results go to stdout, one per line. Failures (trap, fuel exhausted, ...) are
described on stderr, followed by the telemetry table (fuel, peak memory, duration) when stderr
is a terminal.`;

const INSPECT_HELP = `Describes FILE (a .wasm module or WebAssembly text): module id, size, exported functions with their signatures, other exports,
imports, memory and table limits. The module is validated and prepared exactly as the server
does it, so a module the service would refuse is refused here with the same message.

${optionList('inspect')}`;

const SERVE_HELP = `Starts the HTTP service, as npm start does: the configuration comes from the environment
(PORT, HOST, WASMBOX_*, REDIS_URL; see the README). On SIGTERM or SIGINT it first fails GET /readyz while
still serving for WASMBOX_DRAIN_DELAY_MS (default 1000), then refuses new work, finishes the runs
in flight and exits 0; a second signal skips the rest of the delay.

${optionList('serve')}`;

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
