// Signed job callbacks against real receivers on loopback ports: the signature verifies with the
// secret, retries with backoff are visible in GET /jobs/{jobId}, redirects are not followed, and
// the allowlist and the address rule refuse what they must, at submission and at delivery (a
// name whose DNS answer changes to a loopback address after the check is not delivered to).

import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../dist/src/config.js';
import { parseCallbackAllowlist, isInternalAddress } from '../dist/src/jobs/allowlist.js';
import { CallbackSender, type CallbackState } from '../dist/src/jobs/callbacks.js';
import { b64, startServer, type TestServer } from './helpers/server.js';
import { wat } from './helpers/wat.js';

const MODULE = b64(wat(`(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`));
const SECRET = 'test-callback-secret-0123456789';

interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A receiver on a loopback port that answers each request with the next status of `statuses`
 *  (the last one repeats), recording what it got. */
class Receiver {
  readonly deliveries: Delivery[] = [];
  statuses: number[] = [200];
  private server!: Server;
  port = 0;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.deliveries.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) });
        const status = this.statuses[Math.min(this.deliveries.length - 1, this.statuses.length - 1)]!;
        if (status >= 300 && status < 400) res.setHeader('location', '/elsewhere');
        res.statusCode = status;
        res.end();
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  reset(statuses: number[]): void {
    this.deliveries.length = 0;
    this.statuses = statuses;
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** What a receiver does to trust a callback: HMAC-SHA256 of the raw body, compared in constant time. */
function verify(secret: string, body: Buffer, header: string | string[] | undefined): boolean {
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
  const got = Buffer.from(String(header ?? ''));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function getJob(s: TestServer, id: string): Promise<any> {
  const res = await s.get(`/jobs/${id}`);
  expect(res.status).toBe(200);
  return res.body;
}

async function until<T>(probe: () => Promise<T>, ok: (v: T) => boolean, withinMs = 15_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`still ${JSON.stringify(v)}`);
    await sleep(20);
  }
}

describe('job callbacks', () => {
  let receiver: Receiver;
  let s: TestServer;
  beforeAll(async () => {
    receiver = await new Receiver().start();
    s = await startServer({
      WASMBOX_CALLBACK_ALLOWLIST: `127.0.0.1:${receiver.port}, localhost:${receiver.port}`,
      WASMBOX_CALLBACK_SECRET: SECRET,
      WASMBOX_CALLBACK_ATTEMPTS: '3',
      WASMBOX_CALLBACK_BACKOFF_MS: '50',
      WASMBOX_CALLBACK_TIMEOUT_MS: '2000',
    });
  });
  afterAll(async () => {
    await s?.close();
    await receiver?.close();
  });

  const submit = (path = '/hook'): Promise<{ status: number; body: any }> =>
    s.post('/jobs', { module: MODULE, function: 'add', args: [20, 22], callbackUrl: `http://127.0.0.1:${receiver.port}${path}?k=v#frag` });

  it('POSTs the finished job, signed with the secret, with x-wasmbox-job-id; GET shows it delivered on the first attempt', async () => {
    receiver.reset([200]);
    const { status, body } = await submit();
    expect(status).toBe(202);
    const job = await until(() => getJob(s, body.jobId), (j) => j.callback?.delivered === true);
    expect(job.callback).toEqual({ attempts: 1, lastStatus: 200, delivered: true });
    expect(receiver.deliveries).toHaveLength(1);
    const d = receiver.deliveries[0]!;
    // The fragment is not sent; the path and query are.
    expect(d.path).toBe('/hook?k=v');
    expect(d.headers['content-type']).toBe('application/json');
    expect(d.headers['x-wasmbox-job-id']).toBe(body.jobId);
    expect(d.headers['x-wasmbox-attempt']).toBe('1');
    expect(verify(SECRET, d.body, d.headers['x-wasmbox-signature'])).toBe(true);
    expect(verify('another-secret-of-same-size-xx', d.body, d.headers['x-wasmbox-signature'])).toBe(false);
    // The body is the finished job as GET answers it, without the callback's own state.
    const { callback, ...withoutCallback } = job;
    expect(callback).toBeDefined();
    expect(JSON.parse(d.body.toString('utf8'))).toEqual(withoutCallback);
    expect(withoutCallback.result.results).toEqual([42]);
  });

  it('retries a failing receiver with backoff: two 500s then 200 show attempts 3, delivered, the same signed bytes each time', async () => {
    receiver.reset([500, 503, 204]);
    const { body } = await submit();
    const job = await until(() => getJob(s, body.jobId), (j) => j.callback?.delivered === true);
    expect(job.callback).toEqual({ attempts: 3, lastStatus: 204, delivered: true });
    expect(receiver.deliveries.map((d) => d.headers['x-wasmbox-attempt'])).toEqual(['1', '2', '3']);
    const [first, ...others] = receiver.deliveries;
    for (const d of others) {
      expect(d.body.equals(first!.body)).toBe(true);
      expect(d.headers['x-wasmbox-signature']).toBe(first!.headers['x-wasmbox-signature']);
    }
    expect(verify(SECRET, first!.body, first!.headers['x-wasmbox-signature'])).toBe(true);
  });

  it('shows each failed attempt while retrying, and gives up after WASMBOX_CALLBACK_ATTEMPTS: delivered false, the last status kept', async () => {
    receiver.reset([500]);
    const { body } = await submit();
    const retrying = await until(() => getJob(s, body.jobId), (j) => (j.callback?.attempts ?? 0) >= 1);
    if (retrying.callback.attempts < 3) expect(retrying.callback).toMatchObject({ lastStatus: 500, delivered: false, nextAttemptAt: expect.any(String) });
    const job = await until(() => getJob(s, body.jobId), (j) => j.callback?.attempts === 3);
    await sleep(300);
    expect((await getJob(s, body.jobId)).callback).toEqual({ attempts: 3, lastStatus: 500, delivered: false });
    expect(job.status).toBe('done');
    expect(receiver.deliveries).toHaveLength(3);
  });

  it('does not follow a redirect: a 302 is a failed attempt and the redirect target is never requested', async () => {
    receiver.reset([302]);
    const { body } = await submit();
    const job = await until(() => getJob(s, body.jobId), (j) => j.callback?.attempts === 3);
    expect(job.callback).toMatchObject({ lastStatus: 302, delivered: false });
    expect(receiver.deliveries.map((d) => d.path)).toEqual(['/hook?k=v', '/hook?k=v', '/hook?k=v']);
  });

  it('counts callback attempts in /metrics by result', async () => {
    const text = (await s.get('/metrics')).text;
    expect(text).toMatch(/^wasmbox_job_callback_attempts_total\{result="delivered"\} 2$/m);
    expect(text).toMatch(/^wasmbox_job_callback_attempts_total\{result="failed"\} [1-9]/m);
  });

  it('refuses with 400 invalid_request a callbackUrl off the allowlist, of another scheme, with credentials, or not a URL, and queues nothing', async () => {
    const other = receiver.port === 65535 ? 65534 : receiver.port + 1;
    const cases: [string, RegExp][] = [
      [`http://127.0.0.1:${other}/hook`, /not on this server's callback allowlist/],
      [`http://127.0.0.2:${receiver.port}/hook`, /not on this server's callback allowlist/],
      [`http://169.254.169.254/latest/meta-data`, /not on this server's callback allowlist/],
      [`ftp://127.0.0.1:${receiver.port}/hook`, /http or https/],
      [`http://user:pw@127.0.0.1:${receiver.port}/hook`, /credentials/],
      ['/relative/path', /absolute http or https URL/],
    ];
    receiver.reset([200]);
    for (const [url, message] of cases) {
      const res = await s.post('/jobs', { module: MODULE, function: 'add', args: [1, 2], callbackUrl: url });
      expect(res.status, url).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.message).toMatch(/^callbackUrl: /);
      expect(res.body.error.message).toMatch(message);
    }
    const notString = await s.post('/jobs', { module: MODULE, function: 'add', args: [1, 2], callbackUrl: 5 });
    expect(notString.body.error).toMatchObject({ code: 'invalid_request', message: 'body.callbackUrl: must be a string' });
    await sleep(100);
    expect(receiver.deliveries).toHaveLength(0);
  });

  it('refuses at submission an allowlisted name (localhost:PORT) that resolves only to internal addresses; only a literal-address entry reaches them', async () => {
    const res = await s.post('/jobs', { module: MODULE, function: 'add', args: [1, 2], callbackUrl: `http://localhost:${receiver.port}/hook` });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(res.body.error.message).toMatch(/resolves only to internal addresses .*allowlist names the address itself/);
  });
});

describe('callback delivery checks the address again (DNS rebinding)', () => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await new Receiver().start();
  });
  afterAll(async () => {
    await receiver?.close();
  });

  it('does not deliver to a name whose DNS answer turned from a public address at submission to loopback at delivery', async () => {
    let answer = '93.184.216.34';
    const lookups: string[] = [];
    const sender = new CallbackSender({
      allowlist: parseCallbackAllowlist(`hooks.example.com:${receiver.port}`),
      secret: SECRET,
      attempts: 2,
      timeoutMs: 1_000,
      backoffMs: 10,
      resolve: async (host) => {
        lookups.push(host);
        return [{ address: answer, family: 4 }];
      },
    });
    const href = await sender.validate(`http://hooks.example.com:${receiver.port}/hook`);
    expect(href).toBe(`http://hooks.example.com:${receiver.port}/hook`);
    // The name now points at the receiver's loopback address.
    answer = '127.0.0.1';
    const state: CallbackState = { attempts: 0, lastStatus: null, delivered: false };
    sender.deliver('job-1', href, Buffer.from('{}'), state);
    await until(async () => state.attempts, (n) => n === 2);
    await sender.close();
    expect(state).toMatchObject({ attempts: 2, lastStatus: null, delivered: false });
    expect(state.lastError).toMatch(/resolves only to internal addresses \(127\.0\.0\.1\)/);
    expect(receiver.deliveries).toHaveLength(0);
    // Resolved at submission and once per attempt.
    expect(lookups).toEqual(['hooks.example.com', 'hooks.example.com', 'hooks.example.com']);
  });

  it('refuses at submission a name whose every address is internal, whatever mix of ranges', async () => {
    const sender = new CallbackSender({
      allowlist: parseCallbackAllowlist('hooks.example.com'),
      secret: SECRET,
      attempts: 1,
      timeoutMs: 1_000,
      backoffMs: 10,
      resolve: async () => [
        { address: '10.1.2.3', family: 4 },
        { address: '169.254.169.254', family: 4 },
        { address: 'fd00::1', family: 6 },
        { address: '::ffff:127.0.0.1', family: 6 },
      ],
    });
    await expect(sender.validate('https://hooks.example.com/x')).rejects.toMatchObject({ code: 'invalid_request' });
    await sender.close();
  });
});

describe('callback address rule and configuration', () => {
  it('classes loopback, private, link-local, CGNAT, unique-local, mapped and reserved addresses as internal, others not', () => {
    for (const a of ['127.0.0.1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '255.255.255.255', '224.0.0.1', '::1', '::', 'fe80::1', 'fd12:3456::1', '::ffff:10.0.0.1', '64:ff9b::a00:1', 'not-an-ip']) {
      expect(isInternalAddress(a), a).toBe(true);
    }
    for (const a of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700:4700::1111']) {
      expect(isInternalAddress(a), a).toBe(false);
    }
  });

  it('parses host, host:port, IPv4 and bracketed IPv6 entries, and refuses malformed ones naming them', () => {
    expect(parseCallbackAllowlist(' Hooks.Example.com , 127.0.0.1:9000,[::1]:8080, [2001:db8::1] ')).toEqual([
      { host: 'hooks.example.com', port: null, ipVersion: 0 },
      { host: '127.0.0.1', port: 9000, ipVersion: 4 },
      { host: '::1', port: 8080, ipVersion: 6 },
      { host: '2001:db8::1', port: null, ipVersion: 6 },
    ]);
    expect(parseCallbackAllowlist('')).toEqual([]);
    expect(() => parseCallbackAllowlist('::1')).toThrow(/brackets/);
    expect(() => parseCallbackAllowlist('host:0')).toThrow(/port/);
    expect(() => parseCallbackAllowlist('http://host')).toThrow(/host:port|port/);
    expect(() => loadConfig({ WASMBOX_CALLBACK_ALLOWLIST: 'bad host' })).toThrow(/WASMBOX_CALLBACK_ALLOWLIST: "bad host"/);
  });

  it('refuses to start with an allowlist but no WASMBOX_CALLBACK_SECRET, or with a short one', () => {
    expect(() => loadConfig({ WASMBOX_CALLBACK_ALLOWLIST: 'hooks.example.com' })).toThrow(/WASMBOX_CALLBACK_SECRET is not/);
    expect(() => loadConfig({ WASMBOX_CALLBACK_ALLOWLIST: 'hooks.example.com', WASMBOX_CALLBACK_SECRET: 'short' })).toThrow(/WASMBOX_CALLBACK_SECRET.*at least 16/);
    expect(loadConfig({ WASMBOX_CALLBACK_ALLOWLIST: 'hooks.example.com', WASMBOX_CALLBACK_SECRET: SECRET }).jobs.callbackSecret).toBe(SECRET);
  });
});
