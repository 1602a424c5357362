// WASMBOX_INFLIGHT_BODY_MB: request bytes held at once across all requests. A body is counted
// from the moment its request arrives (by its Content-Length, or the body limit when it is sent
// chunked and its size is unknown) until its answer is sent, since the bytes, the parsed JSON
// and the decoded module live that long. A new body that does not fit is refused at once with
// 503 overloaded, before any of it is read; small requests (no body, or under `smallBytes`) are
// never refused for this, so health checks and runs by id get through a flood of uploads.

import { ServiceError } from '../errors.js';

export class InflightBytes {
  private held = 0;

  constructor(
    readonly capBytes: number,
    /** Bodies this small are always admitted (they are still counted). */
    readonly smallBytes = 64 * 1024,
  ) {}

  get bytes(): number {
    return this.held;
  }

  /** Reserves `bytes` or refuses; the returned function releases them (idempotent). */
  reserve(bytes: number): () => void {
    if (bytes > this.smallBytes && this.held + bytes > this.capBytes) {
      throw new ServiceError(
        'overloaded',
        `the server is holding ${Math.round(this.held / 1048576)} MiB of request bodies, its limit is ${Math.round(this.capBytes / 1048576)} MiB; retry shortly, or send the module once with POST /modules and run it by moduleId`,
        { 'retry-after': '1' },
      );
    }
    this.held += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held -= bytes;
    };
  }
}
