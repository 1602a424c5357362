// Command-line parsing: node:util parseArgs with strict options, per command. `--` ends the
// options: what follows is a WASI program's argv. Negative numbers (-5, -1.5, -Infinity) are
// arguments, not options.

import { parseArgs } from 'node:util';
import { parseArgsOptions, type Topic } from './options.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    /** Whose usage line to print after the message. */
    readonly topic?: Topic,
  ) {
    super(message);
  }
}

export interface RemoteOptions {
  /** Base URL of the service, without a trailing slash. */
  url: string;
  apiKey?: string;
}

export interface RunCommand {
  kind: 'run';
  file: string;
  /** Words after FILE and before `--`: [FUNCTION] [ARGS...]. */
  words: string[];
  /** Words after `--`: the WASI program's arguments; null when there was no `--`. */
  programArgs: string[] | null;
  limits: { fuel?: number; memoryMb?: number; timeoutMs?: number };
  env: Record<string, string>;
  /** Whether any --env was given. */
  envGiven: boolean;
  json: boolean;
  telemetry: 'auto' | 'always' | 'never';
  /** The live progress line of a local run. */
  progress: 'auto' | 'always' | 'never';
  server?: RemoteOptions;
}

export interface InspectCommand {
  kind: 'inspect';
  file: string;
  json: boolean;
  server?: RemoteOptions;
}

export interface ServeCommand {
  kind: 'serve';
  port?: number;
  host?: string;
}

export type Command = RunCommand | InspectCommand | ServeCommand | { kind: 'help'; topic?: Topic } | { kind: 'version' };

const COMMANDS: readonly Topic[] = ['run', 'inspect', 'serve'];

// A word that reads as a negative number is an argument. parseArgs would take it for a short
// option, so it is marked before parsing and unmarked after.
const NEGATIVE = /^-(\d|\.\d|Infinity$|inf$|NaN$|nan$)/;
const MARK = '\u0000';
const mark = (w: string): string => (NEGATIVE.test(w) ? MARK + w : w);
const unmark = (w: string): string => (w.startsWith(MARK) ? w.slice(MARK.length) : w);

export function parseCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Command {
  const first = argv[0];
  if (first === undefined) throw new UsageError('no command given');
  if (first === '--help' || first === '-h') return { kind: 'help' };
  if (first === '--version' || first === '-v' || first === '-V') return { kind: 'version' };
  if (first === 'help') {
    const topic = argv[1];
    if (topic === undefined) return { kind: 'help' };
    if (!isTopic(topic)) throw new UsageError(`unknown command ${JSON.stringify(topic)}; the commands are ${COMMANDS.join(', ')}`);
    return { kind: 'help', topic };
  }
  if (first.startsWith('-')) throw new UsageError(`${describeWord(first)} comes before a command; the command (${COMMANDS.join(', ')}) goes first`);
  if (!isTopic(first)) throw new UsageError(`unknown command ${JSON.stringify(first)}; the commands are ${COMMANDS.join(', ')}`);
  const rest = argv.slice(1);
  switch (first) {
    case 'run':
      return parseRun(rest, env);
    case 'inspect':
      return parseInspect(rest, env);
    case 'serve':
      return parseServe(rest);
  }
}

function isTopic(w: string): w is Topic {
  return (COMMANDS as readonly string[]).includes(w);
}

function describeWord(w: string): string {
  return w.startsWith('-') ? `the option ${w}` : JSON.stringify(w);
}

/** parseArgs, strict, with the command's options (options.ts) and parse errors as UsageErrors;
 *  positionals split at `--`. */
function parse(args: readonly string[], topic: Topic) {
  const dashes = args.indexOf('--');
  const marked = dashes === -1 ? args.map(mark) : [...args.slice(0, dashes).map(mark), ...args.slice(dashes)];
  let parsed;
  try {
    parsed = parseArgs({ args: marked, options: parseArgsOptions(topic), allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    throw new UsageError(parseErrorMessage(err), topic);
  }
  const terminator = parsed.tokens.find((t) => t.kind === 'option-terminator');
  const before: string[] = [];
  const after: string[] = [];
  for (const t of parsed.tokens) {
    if (t.kind !== 'positional') continue;
    (terminator && t.index > terminator.index ? after : before).push(unmark(t.value));
  }
  const values = parsed.values as Record<string, string | boolean | string[] | undefined>;
  for (const [k, v] of Object.entries(values)) {
    if (typeof v === 'string') values[k] = unmark(v);
    else if (Array.isArray(v)) values[k] = v.map(unmark);
  }
  return { values, before, after: terminator ? after : null, help: values.help === true };
}

function parseErrorMessage(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const msg = String(e.message ?? err);
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const m = /^Unknown option '([^']+)'/.exec(msg);
    return `unknown option ${m ? m[1] : msg}`;
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    // "Option '--fuel <value>' argument missing" / "Option '--json' does not take an argument"
    const missing = /^Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(msg);
    if (missing) return `${missing[1]} needs a value`;
    const extra = /^Option '(?:-\w, )?(--[\w-]+)' does not take an argument/.exec(msg);
    if (extra) return `${extra[1]} does not take a value`;
    const ambiguous = /^Option '(?:-\w, )?(--[\w-]+) <value>' argument is ambiguous/.exec(msg);
    if (ambiguous) return `the value of ${ambiguous[1]} starts with "-"; write it as ${ambiguous[1]}=VALUE`;
  }
  return msg.split('\n')[0]!;
}

function serverOption(values: Record<string, unknown>, env: NodeJS.ProcessEnv, topic: Topic): RemoteOptions | undefined {
  const server = values.server as string | undefined;
  const key = values['api-key'] as string | undefined;
  if (server === undefined) {
    if (key !== undefined) throw new UsageError('--api-key is for --server; a local run needs no key', topic);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new UsageError(`--server must be a URL such as http://127.0.0.1:8080; got ${JSON.stringify(server)}`, topic);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`--server must be an http:// or https:// URL; got ${JSON.stringify(server)}`, topic);
  }
  const apiKey = key ?? (env.WASMBOX_API_KEY?.trim() || undefined);
  if (apiKey !== undefined && (apiKey === '' || /[\r\n]/.test(apiKey))) throw new UsageError('--api-key must be a non-empty single line', topic);
  return { url: url.href.replace(/\/+$/, ''), ...(apiKey !== undefined && { apiKey }) };
}

/** A whole number of at least 0 ("50000", "50_000", "1e9"); the service checks the range. */
function wholeNumber(value: string | undefined, option: string, topic: Topic): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim().replace(/(?<=\d)_(?=\d)/g, '');
  const n = /^\d+(\.\d+)?(e\+?\d+)?$/i.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new UsageError(`${option} must be a whole number${option === '--memory' ? ' of MiB' : option === '--timeout' ? ' of milliseconds' : ''}; got ${JSON.stringify(value)}`, topic);
  }
  return n;
}

function parseRun(args: readonly string[], env: NodeJS.ProcessEnv): RunCommand | { kind: 'help'; topic: Topic } {
  const { values, before, after, help } = parse(args, 'run');
  if (help) return { kind: 'help', topic: 'run' };
  const [file, ...words] = before;
  if (file === undefined) throw new UsageError('run needs a FILE (a .wasm module or .wat text)', 'run');
  if (values.telemetry && values.quiet) throw new UsageError('--telemetry and --quiet contradict each other; give one', 'run');
  if (values.progress && values.quiet) throw new UsageError('--progress and --quiet contradict each other; give one', 'run');
  const programEnv: Record<string, string> = {};
  const envWords = (values.env as string[] | undefined) ?? [];
  for (const word of envWords) {
    const eq = word.indexOf('=');
    const name = eq === -1 ? word : word.slice(0, eq);
    if (name === '' || name.includes('\0')) throw new UsageError(`--env takes NAME=VALUE (or NAME to pass this environment's value); got ${JSON.stringify(word)}`, 'run');
    if (eq !== -1) programEnv[name] = word.slice(eq + 1);
    else if (env[name] !== undefined) programEnv[name] = env[name]!;
  }
  const limits: RunCommand['limits'] = {};
  const fuel = wholeNumber(values.fuel as string | undefined, '--fuel', 'run');
  const memoryMb = wholeNumber(values.memory as string | undefined, '--memory', 'run');
  const timeoutMs = wholeNumber(values.timeout as string | undefined, '--timeout', 'run');
  if (fuel !== undefined) limits.fuel = fuel;
  if (memoryMb !== undefined) limits.memoryMb = memoryMb;
  if (timeoutMs !== undefined) limits.timeoutMs = timeoutMs;
  const server = serverOption(values, env, 'run');
  return {
    kind: 'run',
    file,
    words,
    programArgs: after,
    limits,
    env: programEnv,
    envGiven: envWords.length > 0,
    json: values.json === true,
    telemetry: values.quiet ? 'never' : values.telemetry ? 'always' : 'auto',
    progress: values.quiet ? 'never' : values.progress ? 'always' : 'auto',
    ...(server && { server }),
  };
}

function parseInspect(args: readonly string[], env: NodeJS.ProcessEnv): InspectCommand | { kind: 'help'; topic: Topic } {
  const { values, before, after, help } = parse(args, 'inspect');
  if (help) return { kind: 'help', topic: 'inspect' };
  if (after !== null) throw new UsageError('inspect takes no program arguments (nothing after --)', 'inspect');
  const [file, ...extra] = before;
  if (file === undefined) throw new UsageError('inspect needs a FILE (a .wasm module or .wat text)', 'inspect');
  if (extra.length > 0) throw new UsageError(`inspect takes one FILE; unexpected ${JSON.stringify(extra[0])}`, 'inspect');
  const server = serverOption(values, env, 'inspect');
  return { kind: 'inspect', file, json: values.json === true, ...(server && { server }) };
}

function parseServe(args: readonly string[]): ServeCommand | { kind: 'help'; topic: Topic } {
  const { values, before, after, help } = parse(args, 'serve');
  if (help) return { kind: 'help', topic: 'serve' };
  if (before.length > 0 || after !== null) throw new UsageError(`serve takes no arguments; unexpected ${JSON.stringify(before[0] ?? '--')}`, 'serve');
  const port = wholeNumber(values.port as string | undefined, '--port', 'serve');
  if (port !== undefined && port > 65535) throw new UsageError(`--port must be from 0 to 65535; got ${port}`, 'serve');
  const host = values.host as string | undefined;
  if (host !== undefined && host.trim() === '') throw new UsageError('--host must not be empty', 'serve');
  return { kind: 'serve', ...(port !== undefined && { port }), ...(host !== undefined && { host }) };
}
