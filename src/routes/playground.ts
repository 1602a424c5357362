// GET /: the playground, one self-contained page (inline CSS and JS, no framework, no build step)
// that drives the public API (POST /modules to describe a module, POST /execute to run it). It is
// served with a strict Content-Security-Policy: only its own inline script and style, by their
// sha256 digests, may run, and it may connect only to this origin. With API keys configured the
// page itself needs none (src/plugins/callers.ts lists it as open); it asks for one and sends it.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

const TEMPLATE = readFileSync(new URL('../../../src/playground/index.html', import.meta.url), 'utf8');

/** The CSP source of an inline element's text: 'sha256-<base64 digest>'. */
function inlineDigest(html: string, tag: 'script' | 'style'): string {
  const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(html);
  if (!m) throw new Error(`the playground page has no inline <${tag}>`);
  return `'sha256-${createHash('sha256').update(m[1]!, 'utf8').digest('base64')}'`;
}

export function playgroundPage(apiKeysRequired: boolean): { html: string; csp: string } {
  const html = TEMPLATE.replace('{{API_KEYS}}', apiKeysRequired ? 'required' : 'none');
  const csp = [
    "default-src 'none'",
    `script-src ${inlineDigest(html, 'script')}`,
    `style-src ${inlineDigest(html, 'style')}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}

export default async function playgroundRoutes(app: FastifyInstance): Promise<void> {
  const { html, csp } = playgroundPage(app.config.apiKeys.length > 0);
  app.get('/', async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('cache-control', 'no-cache')
      .send(html),
  );
}
