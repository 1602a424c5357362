// A preparation thread, as the service's preparation pool runs one: it loads the real
// src/worker/prepare.ts and calls it on each module it is sent, timing the whole call.

import { parentPort } from 'node:worker_threads';
import type { PrepareResult } from '../src/worker/protocol.js';

export interface PrepareRequest {
  bytes: Uint8Array;
  maxTableElements: number;
  /** Send the prepared module back (to seed the cache measurement). */
  returnPrepared: boolean;
}

export type PrepareReply =
  | {
      ok: true;
      wallMs: number;
      validateMs: number;
      instrumentMs: number;
      compileMs: number;
      instrumentedSize: number;
      prepared?: Extract<PrepareResult, { ok: true }>;
    }
  | { ok: false; wallMs: number; error: string };

const port = parentPort!;
const t0 = performance.now();
const { default: prepare } = await import('../src/worker/prepare.js');
const { startWarmUp } = await import('../src/worker/warmup.js');
const loadMs = performance.now() - t0;
// A fresh thread as the server has it: once its warm-up on a generated module is done.
const t1 = performance.now();
const warmUpRounds = await startWarmUp();
const warmUpMs = performance.now() - t1;

port.on('message', (req: PrepareRequest) => {
  const t = performance.now();
  let r: PrepareResult;
  try {
    r = prepare({ bytes: req.bytes, maxTableElements: req.maxTableElements, startedAt: new SharedArrayBuffer(8) });
  } catch (err) {
    port.postMessage({ ok: false, wallMs: performance.now() - t, error: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies PrepareReply);
    return;
  }
  const wallMs = performance.now() - t;
  if (!r.ok) {
    port.postMessage({ ok: false, wallMs, error: `${r.code}: ${r.message}` } satisfies PrepareReply);
    return;
  }
  port.postMessage({
    ok: true,
    wallMs,
    validateMs: r.timings.validateNs / 1e6,
    instrumentMs: r.timings.instrumentNs / 1e6,
    compileMs: r.timings.compileNs / 1e6,
    instrumentedSize: r.instrumentedSize,
    ...(req.returnPrepared && { prepared: r }),
  } satisfies PrepareReply);
});
port.postMessage({ loaded: true, loadMs, warmUpRounds, warmUpMs });
