#!/usr/bin/env node
// wasmbox: the command-line tool. `wasmbox run` runs a module in this process through the
// service's own worker pools, metering and limits (or on a server with --server); `inspect`
// describes a module; `serve` starts the HTTP service. `wasmbox --help` lists the exit codes.

import { readFileSync } from 'node:fs';
import { type Command, UsageError, parseCommandLine } from './args.js';
import { CliFailure } from './backend.js';
import { inspectCommand, runCommand, serveCommand } from './commands.js';
import { EXIT } from './exit-codes.js';
import { helpText, usageLines } from './help.js';
import { flushOutput, type Output, processOutput } from './output.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** Runs the command line; resolves the exit code, or null when the process keeps running (serve). */
export async function main(argv: readonly string[], out: Output = processOutput, env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  let command: Command;
  try {
    command = parseCommandLine(argv, env);
    switch (command.kind) {
      case 'help':
        out.stdout(helpText(command.topic));
        return EXIT.ok;
      case 'version':
        out.stdout(`wasmbox ${version()}\n`);
        return EXIT.ok;
      case 'run':
        return await runCommand(command, out, env);
      case 'inspect':
        return await inspectCommand(command, out, env);
      case 'serve':
        return await serveCommand(command, env);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      out.stderr(`wasmbox: ${err.message}\n${usageLines(err.topic)}`);
      if (!err.topic) out.stderr('(wasmbox --help for more)\n');
      return EXIT.usage;
    }
    if (err instanceof CliFailure) {
      out.stderr(`wasmbox: ${err.message}\n`);
      return err.exitCode;
    }
    const detail = process.env.WASMBOX_DEBUG ? (err instanceof Error ? (err.stack ?? err.message) : String(err)) : err instanceof Error ? err.message : String(err);
    out.stderr(`wasmbox: internal error: ${detail}\n${process.env.WASMBOX_DEBUG ? '' : '(set WASMBOX_DEBUG=1 to see where)\n'}`);
    return EXIT.internal;
  }
}

// A closed pipe on stdout (wasmbox ... | head) ends the tool quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
});

main(process.argv.slice(2)).then(
  async (code) => {
    if (code === null) return;
    await flushOutput();
    process.exit(code);
  },
  async (err: unknown) => {
    process.stderr.write(`wasmbox: internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    await flushOutput();
    process.exit(EXIT.internal);
  },
);
