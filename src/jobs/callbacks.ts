// Signed callbacks: a finished job is POSTed to its callbackUrl as JSON, with
//   x-wasmbox-signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by WASMBOX_CALLBACK_SECRET>
//   x-wasmbox-job-id:    the job's id
//   x-wasmbox-attempt:   1, 2, ... (the body is the same bytes on every attempt)
// 2xx means delivered; anything else (a redirect too: none is followed) or no answer within
// WASMBOX_CALLBACK_TIMEOUT_MS is a failed attempt, retried after WASMBOX_CALLBACK_BACKOFF_MS,
// doubling each time, with jitter (each delay is 50-100% of its step), up to
// WASMBOX_CALLBACK_ATTEMPTS attempts in all.
//
// Where a callback may go is allowlist.ts's rule. It is checked when the job is submitted (the
// URL's host on the allowlist, a name resolving to at least one public address) and again at
// every attempt, on the addresses the name resolves to then; the connection is made to the
// address that passed (a pinned `lookup`), so the name is never resolved a second time between
// the check and the connection.

import { createHmac } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { ServiceError, clip, quote } from '../errors.js';
import { type AllowedHost, isInternalAddress, matchAllowed } from './allowlist.js';

/** What GET /jobs/{jobId} shows of a job's callback. */
export interface CallbackState {
  attempts: number;
  /** HTTP status of the last attempt; null when it got no answer (then `lastError` says why). */
  lastStatus: number | null;
  lastError?: string;
  delivered: boolean;
  /** When the next attempt is due (ISO 8601); absent when none is. */
  nextAttemptAt?: string;
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export interface CallbackOptions {
  allowlist: readonly AllowedHost[];
  secret: string | null;
  attempts: number;
  timeoutMs: number;
  backoffMs: number;
  /** DNS resolution (all addresses); dns.lookup unless a test supplies its own. */
  resolve?: Resolver;
  /** Told after every attempt (for metrics and the log). */
  onAttempt?: (jobId: string, state: Readonly<CallbackState>, final: boolean) => void;
}

/** The value of x-wasmbox-signature for `body`. */
export function signBody(secret: string, body: Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

const URL_MAX_CHARS = 2048;
const LOOKUP_TIMEOUT_MS = 5_000;
/** The longest wait between two attempts, however many there are. */
const MAX_BACKOFF_MS = 10 * 60_000;

const systemResolver: Resolver = async (hostname) => {
  const all = await dns.promises.lookup(hostname, { all: true, verbatim: true });
  return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

type AttemptResult = { status: number } | { error: string };

export class CallbackSender {
  private readonly resolve: Resolver;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly inflight = new Set<Promise<AttemptResult>>();
  private closed = false;

  constructor(private readonly options: CallbackOptions) {
    this.resolve = options.resolve ?? systemResolver;
  }

  /** Whether any callbackUrl can be accepted (the allowlist is not empty). */
  get enabled(): boolean {
    return this.options.allowlist.length > 0 && this.options.secret !== null;
  }

  /**
   * Checks a callbackUrl given at submission; answers its normalised form or refuses with
   * invalid_request saying what to fix. Does not reveal the allowlist.
   */
  async validate(raw: string): Promise<string> {
    const refuse = (why: string): never => {
      throw new ServiceError('invalid_request', `callbackUrl: ${why}`);
    };
    if (raw.length > URL_MAX_CHARS) refuse(`must be at most ${URL_MAX_CHARS} characters`);
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return refuse(`must be an absolute http or https URL; got ${quote(raw)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') refuse(`must be an http or https URL; got the scheme ${quote(url.protocol.slice(0, -1))}`);
    if (url.username !== '' || url.password !== '') refuse('must not carry credentials (user:password@); authenticate the callback by its x-wasmbox-signature');
    if (!this.enabled) refuse('this server accepts no callback URLs (its callback allowlist, WASMBOX_CALLBACK_ALLOWLIST, is empty); poll GET /jobs/{jobId} instead');
    const entry = this.allowedEntry(url);
    if (!entry) refuse(`the host ${quote(hostPort(url))} is not on this server's callback allowlist`);
    if (entry!.ipVersion === 0) {
      const addresses = await this.lookup(url.hostname).catch((err: unknown) => refuse(`the host ${quote(url.hostname)} does not resolve (${clip(errorText(err), 100)})`));
      if (!addresses.some((a) => !isInternalAddress(a.address))) refuse(internalOnly(url.hostname, addresses));
    }
    url.hash = '';
    return url.href;
  }

  /** Delivers `body` for job `jobId`, retrying as configured; `state` is updated in place, and
   *  `onUpdate` (when given) is told after every attempt (the shared queue keeps it in Redis). */
  deliver(jobId: string, href: string, body: Uint8Array, state: CallbackState, onUpdate?: (state: Readonly<CallbackState>, final: boolean) => void): void {
    const attempt = async (): Promise<void> => {
      if (this.closed) return;
      delete state.nextAttemptAt;
      const pending = this.attempt(jobId, new URL(href), body, state.attempts + 1);
      this.inflight.add(pending);
      const result = await pending;
      this.inflight.delete(pending);
      state.attempts++;
      if ('status' in result) {
        state.lastStatus = result.status;
        delete state.lastError;
        state.delivered = result.status >= 200 && result.status < 300;
      } else {
        state.lastStatus = null;
        state.lastError = result.error;
      }
      const final = state.delivered || state.attempts >= this.options.attempts || this.closed;
      if (!final) {
        const step = Math.min(MAX_BACKOFF_MS, this.options.backoffMs * 2 ** (state.attempts - 1));
        const delayMs = Math.round(step * (0.5 + Math.random() * 0.5));
        state.nextAttemptAt = new Date(Date.now() + delayMs).toISOString();
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          void attempt();
        }, delayMs);
        timer.unref();
        this.timers.add(timer);
      }
      this.options.onAttempt?.(jobId, state, final);
      onUpdate?.(state, final);
    };
    void attempt();
  }

  /** Stops: no further attempts are started (retries not yet due are dropped); waits for the
   *  attempts in flight, each bounded by the attempt timeout. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.all([...this.inflight]);
  }

  private allowedEntry(url: URL): AllowedHost | null {
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    return matchAllowed(this.options.allowlist, url.hostname, port);
  }

  private async lookup(hostname: string): Promise<ResolvedAddress[]> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no DNS answer within ${LOOKUP_TIMEOUT_MS} ms`)), LOOKUP_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.resolve(hostname), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One attempt: the address check, then one POST on a connection pinned to a checked address. */
  private async attempt(jobId: string, url: URL, body: Uint8Array, number: number): Promise<AttemptResult> {
    const entry = this.allowedEntry(url);
    if (!entry) return { error: `the host ${hostPort(url)} is no longer on the callback allowlist` };
    const hostname = url.hostname.replace(/^\[|\]$/g, '');
    let pinned: ResolvedAddress;
    if (entry.ipVersion !== 0) {
      // The operator listed this very address: it is reached whatever range it is in.
      pinned = { address: entry.host, family: entry.ipVersion };
    } else {
      let addresses: ResolvedAddress[];
      try {
        addresses = await this.lookup(hostname);
      } catch (err) {
        return { error: `${hostname} did not resolve: ${clip(errorText(err), 100)}` };
      }
      const usable = addresses.find((a) => !isInternalAddress(a.address));
      if (!usable) return { error: internalOnly(hostname, addresses) };
      pinned = usable;
    }
    const lookup: LookupFunction = (_name, options, callback) => {
      if (options.all) (callback as unknown as (err: null, all: ResolvedAddress[]) => void)(null, [pinned]);
      else callback(null, pinned.address, pinned.family);
    };
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise<AttemptResult>((resolve) => {
      let settled = false;
      const settle = (r: AttemptResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      const req = transport.request({
        method: 'POST',
        host: hostname,
        port,
        path: `${url.pathname}${url.search}`,
        // A fresh connection per attempt: a pooled one could have been made to another address.
        agent: false,
        lookup,
        ...(url.protocol === 'https:' && entry.ipVersion === 0 && { servername: hostname }),
        headers: {
          'content-type': 'application/json',
          'content-length': String(body.byteLength),
          'user-agent': 'wasmbox-callback',
          'x-wasmbox-signature': signBody(this.options.secret!, body),
          'x-wasmbox-job-id': jobId,
          'x-wasmbox-attempt': String(number),
        },
      });
      const timer = setTimeout(() => {
        req.destroy();
        settle({ error: `no answer within ${this.options.timeoutMs} ms` });
      }, this.options.timeoutMs);
      req.once('response', (res) => {
        // Only the status matters; the body is not read.
        res.resume();
        res.once('error', () => {});
        settle({ status: res.statusCode ?? 0 });
        req.destroy();
      });
      req.once('error', (err) => settle({ error: clip(errorText(err), 200) }));
      req.end(body);
    });
  }
}

function hostPort(url: URL): string {
  return url.port === '' ? url.hostname : `${url.hostname}:${url.port}`;
}

function internalOnly(hostname: string, addresses: readonly ResolvedAddress[]): string {
  const list = addresses.map((a) => a.address).slice(0, 4).join(', ') || 'no address';
  return (
    `the host ${quote(hostname)} resolves only to internal addresses (${list}), which a callback reaches only when the ` +
    'allowlist names the address itself'
  );
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
