// Entry point: loads the configuration, listens, and shuts down gracefully on SIGTERM/SIGINT:
// stop accepting, let in-flight runs finish (each is bounded by its own deadline), close the
// worker pools, exit.

import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';

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
  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    app.draining = true;
    app.log.info({ signal }, 'shutting down: finishing in-flight runs');
    // A backstop past the longest possible run, should something hang.
    const backstop = setTimeout(() => {
      app.log.error('shutdown did not finish in time; exiting');
      process.exit(1);
    }, config.limits.max.timeoutMs + config.prepareTimeoutMs + 5_000);
    backstop.unref();
    app.close().then(
      () => {
        app.log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        app.log.error({ err }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  await app.listen({ port: config.port, host: config.host });
}

main().catch((err: unknown) => {
  process.stderr.write(`wasmbox: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
