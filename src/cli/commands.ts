// The commands: run, inspect, serve. Each returns the process's exit code (null: keep running).

import { readFile } from 'node:fs/promises';
import { ConfigError, loadConfig } from '../config.js';
import type { InspectCommand, RunCommand, ServeCommand } from './args.js';
import { UsageError } from './args.js';
import { type Answer, type Backend, CliFailure, LocalBackend, RemoteBackend, type ProgressSink, type RunRequest, localConfig } from './backend.js';
import { convertArgs, moduleFacts, selectFunction } from './convert.js';
import { EXIT, exitForError, exitForOutcome } from './exit-codes.js';
import { describeText, formatBytes, formatResults, progressLine, telemetryTable } from './format.js';
import { usageLines } from './help.js';
import { type Output } from './output.js';
import { describeNonWasm, isWatText } from '../wasm/sniff.js';
import { WatSyntaxError, compileWat } from '../wasm/wat.js';

/** Most stdin a remote WASI run reads (a local run reads at most the configured body limit). */
const REMOTE_STDIN_MAX = 256 * 1024 * 1024;

export async function readModuleFile(file: string): Promise<Uint8Array> {
  try {
    const b = await readFile(file);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'it is a directory'
          : code === 'EACCES' || code === 'EPERM'
            ? 'permission denied'
            : ((err as Error).message ?? String(err));
    throw new CliFailure(`cannot read ${file}: ${why}`, EXIT.noInput);
  }
}

function openBackend(server: RunCommand['server'], env: NodeJS.ProcessEnv): { backend: Backend; bodyLimit: number } {
  if (server) return { backend: new RemoteBackend(server), bodyLimit: REMOTE_STDIN_MAX };
  let config;
  try {
    config = localConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliFailure(err.message, EXIT.config);
    throw err;
  }
  return { backend: new LocalBackend(config), bodyLimit: config.bodyLimitBytes };
}

async function readStdin(max: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > max) throw new CliFailure(`stdin is larger than the ${max} bytes a run may be given`, EXIT.refused);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof CliFailure) throw err;
    // An unreadable stdin (closed, a directory) is no input.
    return new Uint8Array(0);
  }
  const b = Buffer.concat(chunks);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Refuses, before anything is sent, a FILE that is recognisably not a binary module (the text
 *  format, base64, an archive, ...), saying what it is and what to do. With --json the service
 *  answers instead, so the output stays its body. */
function refuseNonWasm(file: string, bytes: Uint8Array, json: boolean): void {
  if (json) return;
  const what = describeNonWasm(bytes, /\.wat$/i.test(file) ? file : undefined);
  if (what !== null) throw new CliFailure(`${file}: ${what} (invalid_module)`, EXIT.refused);
}

/**
 * The module in FILE as a binary: WebAssembly text (a .wat file, or any file that reads as text
 * starting with "(") is compiled here first, as wasmtime runs .wat files directly; the binary is
 * then run or described as a .wasm would be (locally or on a server alike).
 */
async function readModule(file: string): Promise<Uint8Array> {
  const bytes = await readModuleFile(file);
  if (!isWatText(bytes)) return bytes;
  try {
    return await compileWat(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch (err) {
    if (err instanceof WatSyntaxError) throw new CliFailure(`${file}: ${err.message} (invalid_module)`, EXIT.refused);
    throw err;
  }
}

export async function runCommand(cmd: RunCommand, out: Output, env: NodeJS.ProcessEnv): Promise<number> {
  const bytes = await readModule(cmd.file);
  refuseNonWasm(cmd.file, bytes, cmd.json);
  const facts = moduleFacts(bytes);
  const selection = selectFunction(cmd.words, facts, cmd.file);
  const sig = selection.function !== undefined ? (facts.functions?.[selection.function] ?? undefined) : undefined;
  const request: RunRequest = { ...(selection.function !== undefined && { function: selection.function }), args: convertArgs(selection.args, sig) };
  if (Object.keys(cmd.limits).length > 0) request.limits = { ...cmd.limits };

  const programArgs = cmd.programArgs ?? [];
  if (facts.functions !== null && !facts.wasi && (programArgs.length > 0 || cmd.envGiven)) {
    const what = programArgs.length > 0 ? 'program arguments after --' : '--env';
    throw new UsageError(`${what} are for WASI programs, and ${cmd.file} imports nothing from wasi_snapshot_preview1`, 'run');
  }

  const { backend, bodyLimit } = openBackend(cmd.server, env);
  try {
    if (facts.wasi) {
      request.wasi = { args: [cmd.file, ...programArgs], env: cmd.env };
      if (!process.stdin.isTTY) {
        const stdin = await readStdin(bodyLimit);
        if (stdin.length > 0) request.wasi.stdinBase64 = Buffer.from(stdin.buffer, stdin.byteOffset, stdin.byteLength).toString('base64');
      }
    }
    // A local WASI run streams its output as the program writes it (--json prints one body).
    const live = facts.wasi && !cmd.json ? out.raw : undefined;
    // The progress line: asked for, or by default on a terminal when nothing else is streamed
    // there (local runs only: a server answers once, at the end).
    const showProgress = cmd.server === undefined && (cmd.progress === 'always' || (cmd.progress === 'auto' && out.stderrIsTTY && !cmd.json && !live));
    const progress = showProgress ? progressPrinter(out, request.limits?.fuel ?? localConfig(env).limits.defaults.fuel, cmd.progress === 'always') : null;
    const answer = await backend.execute(bytes, request, live, progress?.sink);
    progress?.end();
    return report(answer, cmd, facts.wasi, out);
  } finally {
    await backend.close();
  }
}

/**
 * Prints the progress line: on a terminal, one line rewritten in place (and erased at the end),
 * once the run has taken half a second; elsewhere (--progress), a line per update.
 */
function progressPrinter(out: Output, fuelLimit: number | null, always: boolean): { sink: ProgressSink; end(): void } {
  const tty = out.stderrIsTTY;
  let shown = false;
  return {
    sink: (p) => {
      if (!always && p.elapsedMs < 500) return;
      shown = true;
      out.stderr(tty ? `\r\x1b[K${progressLine(p, fuelLimit)}` : `wasmbox: ${progressLine(p, fuelLimit)}\n`);
    },
    end: () => {
      if (shown && tty) out.stderr('\r\x1b[K');
    },
  };
}

function report(answer: Answer, cmd: RunCommand, wasi: boolean, out: Output): number {
  if (cmd.json) {
    out.stdout(`${answer.text}\n`);
    return answer.status === 200 ? exitForOutcome(answer.body.outcome, answer.body.exitCode) : exitForError(answer.body.error.code, answer.status);
  }
  if (answer.status !== 200) return reportError(answer, out, wasi);

  const body = answer.body;
  const outcome: string = body.outcome;
  if (!answer.streamed) {
    if (typeof body.stdout === 'string') out.stdout(body.stdout);
    if (typeof body.stderr === 'string') out.stderr(body.stderr);
  }
  if (body.stdoutTruncated) out.stderr("wasmbox: the program's stdout was cut at the service's output cap\n");
  if (body.stderrTruncated) out.stderr("wasmbox: the program's stderr was cut at the service's output cap\n");
  if (Array.isArray(body.results)) out.stdout(formatResults(body.results));

  const t = body.telemetry;
  switch (outcome) {
    case 'trap':
      out.stderr(`wasmbox: trap (${body.trap?.kind ?? 'other'}): ${body.trap?.message ?? ''}\n`);
      break;
    case 'stack_overflow':
      out.stderr(`wasmbox: stack overflow: ${body.trap?.message ?? 'call stack exhausted'}\n`);
      break;
    case 'fuel_exhausted':
      out.stderr(`wasmbox: fuel exhausted: the run used its whole budget of ${t?.fuelLimit ?? '?'} (raise it with --fuel)\n`);
      break;
    case 'memory_limit_exceeded': {
      const why = body.message ?? (body.trap ? `${body.trap.message} after memory.grow was refused at the limit` : '');
      out.stderr(`wasmbox: memory limit exceeded (${formatBytes(t?.memoryLimitBytes ?? 0)}; raise it with --memory): ${why}\n`);
      break;
    }
    case 'timeout':
      out.stderr(`wasmbox: timeout: ${body.message ?? 'the wall-clock limit was reached'} (raise it with --timeout)\n`);
      break;
    default:
      break;
  }
  const show = cmd.telemetry === 'always' || (cmd.telemetry === 'auto' && out.stderrIsTTY);
  if (show && t) {
    const extra: [string, string][] = typeof body.exitCode === 'number' ? [['exit code', String(body.exitCode)]] : [];
    out.stderr(telemetryTable(outcome, t, extra));
  }
  return exitForOutcome(outcome, body.exitCode);
}

function reportError(answer: Answer, out: Output, wasi: boolean, topic: 'run' | 'inspect' = 'run'): number {
  const { code, message } = answer.body.error as { code: string; message: string };
  const exit = exitForError(code, answer.status);
  out.stderr(`wasmbox: ${message} (${code})\n`);
  if (exit === EXIT.usage) {
    if (wasi && (code === 'invalid_arguments' || code === 'function_not_found')) {
      out.stderr('wasmbox: arguments for a WASI program go after --, as in: wasmbox run prog.wasm -- arg1 arg2\n');
    }
    out.stderr(usageLines(topic));
  }
  return exit;
}

export async function inspectCommand(cmd: InspectCommand, out: Output, env: NodeJS.ProcessEnv): Promise<number> {
  const bytes = await readModule(cmd.file);
  refuseNonWasm(cmd.file, bytes, cmd.json);
  const { backend } = openBackend(cmd.server, env);
  try {
    const answer = await backend.describe(bytes);
    if (cmd.json) {
      out.stdout(`${answer.text}\n`);
      return answer.status < 300 ? EXIT.ok : exitForError(answer.body.error.code, answer.status);
    }
    if (answer.status >= 300) return reportError(answer, out, false, 'inspect');
    out.stdout(describeText(answer.body, cmd.server?.url));
    return EXIT.ok;
  } finally {
    await backend.close();
  }
}

export async function serveCommand(cmd: ServeCommand, env: NodeJS.ProcessEnv): Promise<null> {
  if (cmd.port !== undefined) env.PORT = String(cmd.port);
  if (cmd.host !== undefined) env.HOST = cmd.host;
  // A bad setting is the tool's documented exit code 78 (the server itself exits 2).
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) throw new CliFailure(err.message, EXIT.config);
    throw err;
  }
  // The server's own entry point, exactly as `npm start` runs it: it reads the configuration,
  // listens, and exits on SIGTERM/SIGINT after draining.
  await import('../server.js');
  return null;
}
