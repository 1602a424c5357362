// Many callers, one service: API keys, per-caller rate limits and concurrency quotas, fair and
// bounded work (preparation lanes, predicted-wait admission, in-flight body bytes, body timeout,
// event-loop readiness) and the metrics that show it, against real servers on real ports.

import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateModule, withNonce } from '../dist/src/wasm/synthetic.js';
import { FairQueue } from '../dist/src/scheduling/fair-queue.js';
import { send } from './helpers/forms.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const ADD = wat(`(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`);
const SPIN = wat(`(module (func (export "spin") (loop br 0)))`);
const KEY_A = 'alpha-key-0123456789abcdef';
const KEY_B = 'bravo-key-0123456789abcdef';
const KEY_C = 'charlie-key-0123456789abcdef';

async function call(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: JSON.parse(text) };
}

const addRun = { module: b64(ADD), function: 'add', args: [2, 3] };
const spinRun = (timeoutMs: number) => ({ module: b64(SPIN), function: 'spin', limits: { fuel: 10_000_000_000, timeoutMs } });
/** A guest its thread cannot stop at the deadline: the thread is terminated after the grace. */
const WAIT = wat(`(module (memory 1 1 shared) (func (export "wait") (result i32) (memory.atomic.wait32 (i32.const 0) (i32.const 0) (i64.const -1))))`);
const waitRun = (timeoutMs: number) => ({ module: b64(WAIT), function: 'wait', limits: { timeoutMs } });

describe('API keys', () => {
  let s: TestServer;
  let dir: string;
  const logs: string[] = [];
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'wasmbox-keys-'));
    const file = path.join(dir, 'keys');
    writeFileSync(file, `# operators' keys\n${KEY_B}\nsha256:${createHash('sha256').update(KEY_C).digest('hex')}\n`);
    const stream = new Writable({
      write(chunk, _e, cb) {
        logs.push(String(chunk));
        cb();
      },
    });
    s = await startServer({ WASMBOX_API_KEYS: KEY_A, WASMBOX_API_KEYS_FILE: file }, { logger: { level: 'info', stream } });
  });
  afterAll(async () => {
    await s?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a request without a key with 401 unauthorized and WWW-Authenticate', async () => {
    const res = await call(`${s.url}/execute`, addRun);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: { code: 'unauthorized', message: expect.stringContaining('Authorization: Bearer') }, requestId: expect.any(String) });
    expect(res.headers['www-authenticate']).toBe('Bearer realm="wasmbox"');
  });

  it('refuses a wrong key with 401 unauthorized', async () => {
    const res = await call(`${s.url}/execute`, addRun, { authorization: 'Bearer not-a-key-0123456789abcdef' });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('unauthorized');
  });

  it('accepts a key from WASMBOX_API_KEYS as a bearer token, one from the file in x-api-key, and a key given by its sha256', async () => {
    const variants: Record<string, string>[] = [{ authorization: `Bearer ${KEY_A}` }, { 'x-api-key': KEY_B }, { authorization: `bearer ${KEY_C}` }];
    for (const headers of variants) {
      const res = await call(`${s.url}/execute`, addRun, headers);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.results).toEqual([5]);
    }
  });

  it('guards the module routes and the contract too', async () => {
    expect((await send(`${s.url}/modules/sha256:${'0'.repeat(64)}`, 'GET')).status).toBe(401);
    expect((await send(`${s.url}/openapi.yaml`, 'GET')).status).toBe(401);
  });

  it('leaves /healthz, /readyz and /metrics open', async () => {
    for (const p of ['/healthz', '/metrics']) expect((await send(`${s.url}${p}`, 'GET')).status, p).toBe(200);
    // Readiness also fails, 503, for a sampling interval in which this process's event loop got no
    // turn at all (a loaded machine: this server shares the test process): it must come to 200
    // without a key, which a guarded route never would (401).
    const deadline = Date.now() + 10_000;
    let status = (await send(`${s.url}/readyz`, 'GET')).status;
    while (status === 503 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      status = (await send(`${s.url}/readyz`, 'GET')).status;
    }
    expect(status, '/readyz').toBe(200);
  });

  it('never logs a key, and logs the caller by its short key id', async () => {
    await call(`${s.url}/execute`, addRun, { authorization: `Bearer ${KEY_A}` });
    const all = logs.join('');
    for (const k of [KEY_A, KEY_B, KEY_C]) expect(all).not.toContain(k);
    const id = `key-${createHash('sha256').update(KEY_A).digest('hex').slice(0, 8)}`;
    const line = logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'execution' && l.keyId === id);
    expect(line).toBeDefined();
  });
});

describe('rate limit per key', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_API_KEYS: `${KEY_A},${KEY_B}`, WASMBOX_RATE_LIMIT: '3' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('carries RateLimit-Limit, -Remaining and -Reset on every answer, and answers the 4th request in a minute 429 rate_limited with Retry-After', async () => {
    const auth = { authorization: `Bearer ${KEY_A}` };
    for (let i = 0; i < 3; i++) {
      const res = await call(`${s.url}/execute`, addRun, auth);
      expect(res.status).toBe(200);
      expect(res.headers['ratelimit-limit']).toBe('3');
      expect(res.headers['ratelimit-remaining']).toBe(String(2 - i));
      expect(Number(res.headers['ratelimit-reset'])).toBeGreaterThan(0);
    }
    const over = await call(`${s.url}/execute`, addRun, auth);
    expect(over.status).toBe(429);
    expect(over.body.error.code).toBe('rate_limited');
    expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
    expect(over.headers['ratelimit-remaining']).toBe('0');
    // Another key has its own budget.
    const other = await call(`${s.url}/execute`, addRun, { authorization: `Bearer ${KEY_B}` });
    expect(other.status).toBe(200);
    expect(other.headers['ratelimit-remaining']).toBe('2');
  });
});

describe('concurrency quota per key', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_API_KEYS: `${KEY_A},${KEY_B}`, WASMBOX_MAX_CONCURRENT_PER_KEY: '1', WASMBOX_WORKERS: '2' });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('refuses a second run in flight for the same key with 429 and Retry-After, while another key runs', async () => {
    const first = call(`${s.url}/execute`, spinRun(3000), { authorization: `Bearer ${KEY_A}` });
    // Observe the first run holding its worker before sending the second.
    await waitFor(async () => (await metricValue(s.url, 'wasmbox_queue_depth{lane="run"}')) === 0 && (await runningRuns(s)) === 1);
    const second = await call(`${s.url}/execute`, addRun, { authorization: `Bearer ${KEY_A}` });
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('rate_limited');
    expect(second.body.error.message).toContain('WASMBOX_MAX_CONCURRENT_PER_KEY=1');
    expect(second.headers['retry-after']).toBe('1');
    const other = await call(`${s.url}/execute`, addRun, { authorization: `Bearer ${KEY_B}` });
    expect(other.status).toBe(200);
    expect((await first).body.outcome).toBe('timeout');
    // The quota is given back when the run ends.
    expect((await call(`${s.url}/execute`, addRun, { authorization: `Bearer ${KEY_A}` })).status).toBe(200);
  });
});

describe('fair preparation', () => {
  let s: TestServer;
  beforeAll(async () => {
    // One thread for large modules; anything over 64 KiB is large here.
    // The order is under test, not the queue timeout: compiling three 6 MiB modules one after the
    // other takes seconds on a loaded machine.
    s = await startServer({
      WASMBOX_PREPARE_WORKERS: '1',
      WASMBOX_PREPARE_SMALL_BYTES: String(64 * 1024),
      WASMBOX_BODY_LIMIT_BYTES: String(32 * 1024 * 1024),
      WASMBOX_QUEUE_TIMEOUT_MS: '60000',
    });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('answers a small new module while three large ones wait for and occupy the preparation thread', async () => {
    const big = generateModule(6 * 1024 * 1024, 7);
    const order: string[] = [];
    const large = [1, 2, 3].map((i) =>
      call(`${s.url}/modules`, { module: b64(withNonce(big, i)) }).then((r) => {
        order.push(`large-${i}`);
        return r;
      }),
    );
    // The large uploads are in (one preparing, two queued) before the small module is sent.
    await waitFor(async () => (await metricValue(s.url, 'wasmbox_queue_depth{lane="prepare-large"}')) >= 1);
    const small = await call(`${s.url}/execute`, { module: b64(wat(`(module (func (export "f") (result i32) i32.const 41))`)), function: 'f' });
    order.push('small');
    expect(small.status).toBe(200);
    expect(small.body.results).toEqual([41]);
    for (const r of await Promise.all(large)) expect(r.status).toBe(201);
    expect(order.indexOf('small')).toBeLessThan(order.indexOf('large-3'));
  }, 120_000);
});

describe('fair, bounded run queue', () => {
  it('serves callers round robin: one caller with a backlog does not delay another', async () => {
    const q = new FairQueue({ name: 'run queue', slots: 1, queueMax: 100, queueTimeoutMs: 60_000 });
    const held = await q.acquire('a');
    const served: string[] = [];
    const waits = [...['a', 'a', 'a', 'a'].map((c, i) => [c, i] as const), ['b', 9] as const].map(([c, i]) =>
      q.acquire(c).then((slot) => {
        served.push(`${c}${i}`);
        slot.release();
      }),
    );
    held.release();
    await Promise.all(waits);
    expect(served).toEqual(['a0', 'b9', 'a1', 'a2', 'a3']);
  });

  it('refuses the excess of a burst with 503 and Retry-After while the accepted run is still going, not after the queue timeout', async () => {
    const s = await startServer({ WASMBOX_WORKERS: '1', WASMBOX_QUEUE_TIMEOUT_MS: '2000' });
    try {
      let firstDone = false;
      const first = call(`${s.url}/execute`, spinRun(2500)).then((r) => {
        firstDone = true;
        return r;
      });
      await waitFor(async () => (await runningRuns(s)) === 1);
      const burst = await Promise.all(
        Array.from({ length: 8 }, () =>
          call(`${s.url}/execute`, spinRun(2500)).then((r) => ({ ...r, whileFirstRan: !firstDone })),
        ),
      );
      for (const r of burst) {
        expect(r.status).toBe(503);
        expect(r.body.error.code).toBe('overloaded');
        expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(r.whileFirstRan).toBe(true);
      }
      expect((await first).body.outcome).toBe('timeout');
    } finally {
      await s.close();
    }
  }, 60_000);

  it('drops a queued run whose client disconnects: it leaves the queue at once and never runs', async () => {
    // Runs are not handed to a busy thread ahead here, so the second waits in the fair queue
    // (test/run-pool.test.ts drops one handed ahead).
    const s = await startServer({ WASMBOX_WORKERS: '1', WASMBOX_QUEUE_TIMEOUT_MS: '20000', WASMBOX_RUN_PREFETCH: '0' });
    try {
      const first = call(`${s.url}/execute`, spinRun(1500));
      await waitFor(async () => (await runningRuns(s)) === 1);
      // The second run waits for the only thread; its client goes away while it waits.
      const { port } = new URL(s.url);
      const socket = net.connect(Number(port), '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', resolve));
      const body = JSON.stringify(spinRun(200));
      socket.write(`POST /execute HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      await waitFor(async () => (await metricValue(s.url, 'wasmbox_queue_depth{lane="run"}')) === 1);
      socket.destroy();
      await waitFor(async () => (await metricValue(s.url, 'wasmbox_queue_depth{lane="run"}')) === 0);
      // Left while the first run still held the thread, not granted the thread afterwards.
      expect(await runningRuns(s)).toBe(1);
      expect((await first).body.outcome).toBe('timeout');
      // One more run goes through, so anything the dropped one would have done is done by now.
      expect((await call(`${s.url}/execute`, addRun)).body.results).toEqual([5]);
      const text = await metrics(s.url);
      expect(valueIn(text, 'wasmbox_queue_wait_seconds_count{lane="run"}')).toBe(2);
    } finally {
      await s.close();
    }
  }, 60_000);

  it('reports the wait for a runner thread as telemetry.queueNs', async () => {
    const s = await startServer({ WASMBOX_WORKERS: '1' });
    try {
      const res = await call(`${s.url}/execute`, addRun);
      expect(Number.isInteger(res.body.telemetry.queueNs)).toBe(true);
      expect(res.body.telemetry.queueNs).toBeGreaterThanOrEqual(0);
    } finally {
      await s.close();
    }
  });
});

describe('in-flight body bytes', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_INFLIGHT_BODY_MB: '1', WASMBOX_BODY_LIMIT_BYTES: String(4 * 1024 * 1024) });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('refuses a new large body with 503 overloaded before reading it while others hold the cap, and takes it again once they are gone', async () => {
    // A client announces 900 KB and sends only the headers: its bytes are held.
    const url = new URL(s.url);
    const slow = net.connect(Number(url.port), url.hostname);
    slow.on('error', () => {});
    await new Promise<void>((r) => slow.once('connect', () => r()));
    slow.write(`POST /modules HTTP/1.1\r\nHost: x\r\ncontent-type: application/wasm\r\ncontent-length: ${900 * 1024}\r\n\r\n`);
    await waitFor(async () => (await metricValue(s.url, 'wasmbox_inflight_body_bytes')) >= 900 * 1024);
    const body = withCustomSection(ADD, 500 * 1024);
    const refused = await send(`${s.url}/modules`, 'POST', body, { 'content-type': 'application/wasm' });
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('overloaded');
    expect(refused.body.error.message).toContain('1 MiB');
    expect(refused.headers['retry-after']).toBe('1');
    // Small requests still get through.
    expect((await call(`${s.url}/execute`, addRun)).status).toBe(200);
    slow.destroy();
    await waitFor(async () => (await metricValue(s.url, 'wasmbox_inflight_body_bytes')) === 0);
    const accepted = await send(`${s.url}/modules`, 'POST', body, { 'content-type': 'application/wasm' });
    expect(accepted.status).toBe(201);
  });
});

describe('body timeout', () => {
  it('answers a trickled body 408 request_timeout and closes the connection', async () => {
    const s = await startServer({ WASMBOX_BODY_TIMEOUT_MS: '500' });
    try {
      const url = new URL(s.url);
      const socket = net.connect(Number(url.port), url.hostname);
      let response = '';
      let writes = 0;
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.on('data', (d) => (response += d.toString()));
      socket.on('error', () => {});
      socket.write(`POST /execute HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n`);
      const trickle = setInterval(() => {
        if (!socket.destroyed && writes < 50) {
          writes++;
          socket.write(' ');
        }
      }, 200);
      await closed;
      clearInterval(trickle);
      expect(response).toMatch(/^HTTP\/1\.1 408 /);
      const body = JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4));
      expect(body).toEqual({ error: { code: 'request_timeout', message: expect.stringContaining('500 ms') }, requestId: expect.any(String) });
      // Cut well before the 50 bytes (10 s) the client was willing to trickle.
      expect(writes).toBeLessThan(50);
    } finally {
      await s.close();
    }
  }, 30_000);
});

describe('event-loop readiness', () => {
  it('turns /readyz to 503 overloaded when the event loop lags, while /healthz still answers', async () => {
    const s = await startServer({ WASMBOX_READY_MAX_EVENT_LOOP_DELAY_MS: '20' });
    try {
      expect((await send(`${s.url}/readyz`, 'GET')).status).toBe(200);
      // The server shares this process's event loop: block it past a sample interval. The delay
      // is the mean over a 250 ms sample window, so one block can be diluted by the quiet samples
      // of the window it fell in; a block right after the previous sample cannot be. Block again
      // until the lag shows (the second block always follows a sample).
      const lagged = async () => {
        for (let i = 0; ; i++) {
          const until = Date.now() + 400;
          while (Date.now() < until) {
            /* busy */
          }
          const res = await send(`${s.url}/readyz`, 'GET');
          if (res.status === 503 || i === 4) return res;
        }
      };
      const ready = (await lagged()) as { status: number; headers: Record<string, unknown>; body: any };
      expect(ready.status).toBe(503);
      expect(ready.body.error.code).toBe('overloaded');
      expect(ready.headers['retry-after']).toBe('1');
      expect((await send(`${s.url}/healthz`, 'GET')).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('metrics', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer({ WASMBOX_API_KEYS: KEY_A });
  });
  afterAll(async () => {
    await s?.close();
  });

  it('exposes every series, and they move with traffic', async () => {
    const names = [
      'wasmbox_http_requests_total',
      'wasmbox_executions_total',
      'wasmbox_refusals_total',
      'wasmbox_fuel_consumed',
      'wasmbox_guest_duration_seconds',
      'wasmbox_queue_wait_seconds',
      'wasmbox_prepare_seconds',
      'wasmbox_queue_depth',
      'wasmbox_inflight_body_bytes',
      'wasmbox_worker_restarts_total',
      'wasmbox_prepared_cache_hits_total',
      'wasmbox_prepared_cache_misses_total',
      'wasmbox_store_bytes',
      'wasmbox_store_modules',
      'process_cpu_seconds_total',
      'nodejs_heap_size_used_bytes',
    ];
    const before = await metrics(s.url);
    for (const n of names) expect(before, n).toMatch(new RegExp(`^# TYPE ${n} `, 'm'));
    const auth = { authorization: `Bearer ${KEY_A}` };
    const id = `key-${createHash('sha256').update(KEY_A).digest('hex').slice(0, 8)}`;
    expect((await call(`${s.url}/execute`, addRun, auth)).status).toBe(200);
    expect((await call(`${s.url}/execute`, addRun, auth)).status).toBe(200);
    expect((await call(`${s.url}/execute`, spinRun(50), auth)).body.outcome).toBe('timeout');
    const waited = (await call(`${s.url}/execute`, waitRun(50), auth)).body;
    expect(waited.outcome).toBe('timeout');
    expect(waited.telemetry.threadKilled).toBe(true);
    expect((await call(`${s.url}/execute`, addRun)).status).toBe(401);
    expect((await call(`${s.url}/modules`, { module: b64(ADD) }, auth)).status).toBe(201);
    const after = await metrics(s.url);
    const v = (series: string) => valueIn(after, series);
    expect(v(`wasmbox_executions_total{outcome="ok",key="${id}"}`)).toBe(2);
    expect(v(`wasmbox_executions_total{outcome="timeout",key="${id}"}`)).toBe(2);
    expect(v('wasmbox_refusals_total{code="unauthorized"}')).toBe(1);
    expect(v('wasmbox_http_requests_total{route="/execute",status="200"}'), after.split('\n').filter((l) => l.startsWith('wasmbox_http')).join('\n')).toBe(4);
    expect(v('wasmbox_prepared_cache_hits_total')).toBeGreaterThanOrEqual(2);
    expect(v('wasmbox_prepared_cache_misses_total')).toBeGreaterThanOrEqual(2);
    // Every run has an account, timeouts included.
    expect(v('wasmbox_fuel_consumed_count')).toBe(4);
    expect(v('wasmbox_guest_duration_seconds_count')).toBe(4);
    expect(v('wasmbox_queue_wait_seconds_count{lane="run"}')).toBe(4);
    expect(v('wasmbox_store_modules')).toBe(1);
    expect(v('wasmbox_store_bytes')).toBeGreaterThan(ADD.length);
    // The spinning run was stopped in its thread; the waiting one could not be, and its thread
    // was replaced.
    await waitFor(async () => valueIn(await metrics(s.url), 'wasmbox_worker_restarts_total{pool="run"}') >= 1);
  });
});

/** `module` with a custom section appended that makes it `bytes` long in all. */
function withCustomSection(module: Uint8Array, bytes: number): Buffer {
  const leb = (v: number): number[] => {
    const out: number[] = [];
    do {
      out.push((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
      v >>>= 7;
    } while (v > 0);
    return out;
  };
  // id 0, size (5-byte padded LEB), name "x", payload.
  const payload = bytes - module.length - 1 - 5 - 2;
  const size = leb(2 + payload);
  while (size.length < 5) {
    size[size.length - 1]! |= 0x80;
    size.push(0);
  }
  return Buffer.concat([Buffer.from(module), Buffer.from([0, ...size, 1, 0x78]), Buffer.alloc(payload)]);
}

async function metrics(base: string): Promise<string> {
  const res = await request(`${base}/metrics`);
  return res.body.text();
}

function valueIn(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return Number.NaN;
}

async function metricValue(base: string, series: string): Promise<number> {
  return valueIn(await metrics(base), series);
}

/** Runs holding a runner thread: run-lane queue-wait observations minus finished executions. */
async function runningRuns(s: TestServer): Promise<number> {
  const text = await metrics(s.url);
  const started = valueIn(text, 'wasmbox_queue_wait_seconds_count{lane="run"}') || 0;
  let finished = 0;
  for (const line of text.split('\n')) if (line.startsWith('wasmbox_executions_total{')) finished += Number(line.split(' ').pop());
  return started - finished;
}

/** Polls `check` until it holds (state, not time: the bound is only a backstop). */
async function waitFor(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}
