// Entry point: loads the configuration, listens, and shuts down gracefully on SIGTERM/SIGINT:
// 1. fail readiness (GET /readyz answers 503) and keep serving for WASMBOX_DRAIN_DELAY_MS, so a
//    load balancer that polls readiness stops sending new work before any of it is refused;
// 2. refuse new work (503 overloaded), stop accepting connections, let in-flight runs finish
//    (each is bounded by its own deadline), close the worker pools, exit 0.
// A second signal during step 1 skips the rest of the delay (Ctrl-C twice stops at once).
//
// Started by npm (`npm start`, `npx wasmbox serve`), the server is not npm's child but that of a
// `sh -c` npm runs it in. npm passes a SIGTERM it receives on to that shell, which dies of it
// without passing it on, and the server would run on, orphaned. So under npm the loss of the
// parent process counts as a SIGTERM.

import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { type Config, ConfigError, loadConfig, shutdownBoundMs } from './config.js';

/** Installs the SIGTERM/SIGINT handlers that drain and stop `app`, then exit the process. */
function stopOnSignals(app: FastifyInstance, config: Config): void {
  let closing = false;
  let delay: NodeJS.Timeout | null = null;

  const close = (): void => {
    if (closing) return;
    closing = true;
    if (delay) clearTimeout(delay);
    app.refusingWork = true;
    app.jobs.stopAccepting();
    app.log.info('shutting down: refusing new work, finishing in-flight runs');
    // A backstop past the longest possible run (a job's, which may be longer) and a last
    // callback attempt, should something hang (config.ts shutdownBoundMs).
    const backstop = setTimeout(() => {
      app.log.error('shutdown did not finish in time; exiting');
      app.logDestination?.flushSync();
      process.exit(1);
    }, shutdownBoundMs(config).afterDrainMs);
    backstop.unref();
    app.close().then(
      async () => {
        app.log.info('stopped');
        // The log lines still buffered (src/logging.ts) go out before the process does.
        await app.logDestination?.settle();
        process.exit(0);
      },
      (err: unknown) => {
        app.log.error({ err }, 'error while shutting down');
        app.logDestination?.flushSync();
        process.exit(1);
      },
    );
  };

  /** `reason`: the signal, or why the process counts as signalled. */
  const onSignal = (reason: string): void => {
    if (app.draining) {
      // A second signal: no more waiting for the load balancer.
      close();
      return;
    }
    app.draining = true;
    app.log.info({ reason, drainDelayMs: config.drainDelayMs }, 'shutting down: readiness fails, still serving during the drain delay');
    if (config.drainDelayMs === 0) close();
    else delay = setTimeout(close, config.drainDelayMs);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  if (process.env.npm_lifecycle_event !== undefined) watchParent(() => onSignal('the npm process that started it exited'));
}

/** Calls `gone` once the process that started this one has exited. */
function watchParent(gone: () => void): void {
  const parent = process.ppid;
  if (parent <= 1) return;
  const timer = setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') return;
      clearInterval(timer);
      gone();
    }
  }, 250);
  timer.unref();
}

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`wasmbox: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const app = await buildApp({ config });
  started = app;
  stopOnSignals(app, config);
  await app.listen({ port: config.port, host: config.host });
}

/** The app once built, so a failure to start still writes out its buffered log lines. */
let started: FastifyInstance | null = null;

main().catch((err: unknown) => {
  started?.logDestination?.flushSync();
  process.stderr.write(`wasmbox: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
