// The service's log destination: pino's JSON lines on stdout, written asynchronously and in
// batches. pino's default destination (sonic-boom, sync: false, minLength 0) starts a write
// (libuv's thread pool) for every line that finds none in flight: under load nearly one fs.write
// dispatch and completion per execution on the main thread. Here lines collect in memory and go
// out in one asynchronous write once LOG_BATCH_BYTES wait, or within LOG_FLUSH_INTERVAL_MS at low
// traffic, so a lone line (a start-up line, a refusal) is not held.
//
// No line is lost on the way out: src/server.ts calls settle() before every graceful exit and
// flushSync() on the fatal ones, and pino itself flushes an asynchronous destination
// synchronously on the process's 'exit' event (any process.exit, an uncaught exception).
//
// Backpressure: pino ignores write()'s return value, so a stdout slower than the log rate (a
// stuck log collector) would let the buffer grow without bound. It is capped at
// LOG_BUFFER_MAX_BYTES: past it, new lines are dropped (never the process blocked or its memory
// exhausted), counted (wasmbox_log_lines_dropped_total) and reported in one line once stdout
// catches up. At ~500 bytes a line, the cap holds ~30,000 lines: seconds of a stalled stdout at
// full load. Blocking instead (synchronous writes when the buffer is full) would stall every
// request behind the log collector; growing without bound would trade the lines for the process.

import pino from 'pino';

/** Buffered bytes at which a write starts (sonic-boom's minLength; under its maxWrite, 16 KiB). */
export const LOG_BATCH_BYTES = 4096;
/** A line waits at most about this long for a write at low traffic. */
export const LOG_FLUSH_INTERVAL_MS = 200;
/** Buffered bytes past which new lines are dropped and counted (sonic-boom's maxLength). */
export const LOG_BUFFER_MAX_BYTES = 16 * 1024 * 1024;
/** How long settle() waits for a write in flight before flushing anyway. */
const SETTLE_MS = 2_000;

export interface LogDestination {
  /** What pino writes to (Fastify's `logger.stream`). */
  readonly stream: pino.DestinationStream;
  /** Lines dropped so far because the buffer was full. */
  dropped(): number;
  /** Called (from the flush timer) with the lines dropped since the last call, once the buffer
   *  has room again. */
  onDropped: ((lines: number) => void) | null;
  /** Writes every buffered line synchronously, now. For exit paths that cannot wait. */
  flushSync(): void;
  /** Waits (bounded) for a write in flight to finish, then writes the rest synchronously, so
   *  the lines leave in order. For graceful exits. */
  settle(): Promise<void>;
  /** Stops the periodic flush (the app closed); settle() and flushSync() still write. */
  stop(): void;
}

/** sonic-boom 4's state, read to skip empty flushes and to wait for a write in flight. */
interface SonicBoomState {
  _len: number;
  _writing: boolean;
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
  on(event: 'drop', listener: (data: unknown) => void): unknown;
}

/** An asynchronous, batched destination on `fd` (stdout by default). */
export function createLogDestination(fd = 1): LogDestination {
  const stream = pino.destination({ dest: fd, sync: false, minLength: LOG_BATCH_BYTES, maxLength: LOG_BUFFER_MAX_BYTES });
  const sonic = stream as unknown as SonicBoomState;
  let dropped = 0;
  let reported = 0;
  sonic.on('drop', () => {
    dropped += 1;
  });
  let timer: NodeJS.Timeout | null = null;
  const destination: LogDestination = {
    stream,
    stop: () => {
      if (timer) clearInterval(timer);
      timer = null;
    },
    dropped: () => dropped,
    onDropped: null,
    flushSync: () => {
      try {
        sonic.flushSync();
      } catch {
        // Not open yet, or stdout gone (EPIPE): nothing more can be written.
      }
    },
    settle: async () => {
      const deadline = Date.now() + SETTLE_MS;
      while (sonic._writing && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      destination.flushSync();
    },
  };
  // The periodic flush (sonic-boom's own periodicFlush would also write when nothing waits).
  timer = setInterval(() => {
    if (dropped > reported && sonic._len < LOG_BUFFER_MAX_BYTES / 2) {
      const lines = dropped - reported;
      reported = dropped;
      destination.onDropped?.(lines);
    }
    if (sonic._len > 0 && !sonic._writing) sonic.flush();
  }, LOG_FLUSH_INTERVAL_MS);
  timer.unref();
  return destination;
}
