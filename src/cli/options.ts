// The options of each command, in one table: the parser (args.ts) takes its parseArgs options
// from it and the help (help.ts) its usage lines and option lists, so the two cannot drift apart.

export type Topic = 'run' | 'inspect' | 'serve';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** May be given more than once. */
  multiple?: boolean;
  /** The value's placeholder in the help (string options). */
  value?: string;
  /** The help text; lines after the first are continuation lines. */
  help: string;
}

const SERVER: Readonly<Record<string, OptionSpec>> = {
  server: { type: 'string', value: 'URL', help: 'run on a wasmbox service at URL instead of in this process' },
  'api-key': {
    type: 'string',
    value: 'KEY',
    help: 'API key for --server (default: $WASMBOX_API_KEY), sent as\n"authorization: Bearer KEY" and "x-api-key: KEY"',
  },
};

const HELP: OptionSpec = { type: 'boolean', short: 'h', help: 'print this help' };

export const OPTIONS: Readonly<Record<Topic, Readonly<Record<string, OptionSpec>>>> = {
  run: {
    fuel: { type: 'string', value: 'N', help: "fuel budget (1 per operator, as wasmtime counts); default: the server's" },
    memory: { type: 'string', value: 'MB', help: "linear memory cap in MiB; default: the server's" },
    timeout: { type: 'string', value: 'MS', help: "wall-clock deadline in milliseconds; default: the server's" },
    env: {
      type: 'string',
      multiple: true,
      value: 'NAME=VALUE',
      help: "a WASI program's environment variable (repeat for more); --env NAME passes this\nenvironment's value of NAME",
    },
    json: { type: 'boolean', help: "print exactly the service's response body (or error body) on stdout" },
    telemetry: { type: 'boolean', help: 'print the telemetry table on stderr even when it is not a terminal' },
    quiet: { type: 'boolean', short: 'q', help: 'never print the telemetry table or the progress line' },
    progress: {
      type: 'boolean',
      help: "show the fuel burnt so far on stderr while a local run is in flight (default: on a\nterminal, for runs that do not stream a WASI program's output)",
    },
    ...SERVER,
    help: HELP,
  },
  inspect: {
    json: { type: 'boolean', help: "print exactly the service's description body (that of POST /modules)" },
    server: {
      type: 'string',
      value: 'URL',
      help: "ask a wasmbox service at URL: the module is uploaded with POST /modules (it is\nstored there, under its content address) and the server's description printed",
    },
    'api-key': { type: 'string', value: 'KEY', help: 'API key for --server (default: $WASMBOX_API_KEY)' },
    help: HELP,
  },
  serve: {
    port: { type: 'string', value: 'N', help: 'listening port (sets PORT)' },
    host: { type: 'string', value: 'ADDR', help: 'listening address (sets HOST)' },
    help: HELP,
  },
};

/** The table as node:util parseArgs options. */
export function parseArgsOptions(topic: Topic): Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, spec] of Object.entries(OPTIONS[topic])) {
    options[name] = { type: spec.type, ...(spec.short !== undefined && { short: spec.short }), ...(spec.multiple && { multiple: true }) };
  }
  return options;
}

/** How an option is written: "-q, --quiet", "--fuel N". */
export function optionSynopsis(name: string, spec: OptionSpec): string {
  const long = `--${name}${spec.value ? ` ${spec.value}` : ''}`;
  return spec.short ? `-${spec.short}, ${long}` : long;
}
