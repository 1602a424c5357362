// The playground at GET /: served with a strict Content-Security-Policy that still lets its own
// inline script and style run, reachable without an API key, and driven in a real browser
// (Debian's chromium through playwright-core) against a real server on a free port: upload
// examples/add.wasm through the file input, run add(5, 10), read 15 from the page. Screenshots go
// to test-output/ (gitignored).

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Browser, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { send } from './helpers/forms.js';
import { startServer, type TestServer } from './helpers/server.js';

const CHROMIUM = process.env.WASMBOX_CHROMIUM ?? '/usr/bin/chromium';
const OUTPUT = fileURLToPath(new URL('../test-output/', import.meta.url));
const ADD_WASM = fileURLToPath(new URL('../examples/add.wasm', import.meta.url));
const KEY = 'playground-test-key-0123456789';

const digest = (text: string): string => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
const inline = (html: string, tag: string): string => new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(html)![1]!;

let open: TestServer;
let keyed: TestServer;
beforeAll(async () => {
  [open, keyed] = await Promise.all([startServer(), startServer({ WASMBOX_API_KEYS: KEY })]);
});
afterAll(async () => {
  await Promise.all([open?.close(), keyed?.close()]);
});

describe('GET / serves the playground page', () => {
  it('as HTML with a Content-Security-Policy allowing only its own inline script and style, and connections to this origin', async () => {
    const res = await send(`${open.url}/`, 'GET');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    const csp = String(res.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain(`script-src ${digest(inline(res.text, 'script'))}`);
    expect(csp).toContain(`style-src ${digest(inline(res.text, 'style'))}`);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    // One page, nothing fetched from elsewhere.
    expect(res.text).not.toMatch(/<script[^>]+src=|<link[^>]+href="(?!data:)|https?:\/\//);
    expect(res.text).toContain('<meta name="wasmbox-api-keys" content="none">');
  });

  it('needs no API key when keys are configured, and tells the page that the API does', async () => {
    const page = await send(`${keyed.url}/`, 'GET');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<meta name="wasmbox-api-keys" content="required">');
    const api = await send(`${keyed.url}/modules`, 'POST', '{}', { 'content-type': 'application/json' });
    expect(api.status).toBe(401);
    // Only the page is open: other methods on / still need a key.
    expect((await send(`${keyed.url}/`, 'POST', '{}', { 'content-type': 'application/json' })).status).toBe(401);
  });
});

describe('the playground in a real browser (chromium, headless)', () => {
  let browser: Browser;
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set WASMBOX_CHROMIUM`);
    mkdirSync(OUTPUT, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  /** A page that records console errors (a CSP violation is one) and failed requests. */
  async function openPage(url: string): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(url);
    return { page, problems };
  }

  it('uploads examples/add.wasm through the file input, shows add(i32, i32) -> i32, runs add(5, 10) and shows 15 with its telemetry and curl command', async () => {
    const { page, problems } = await openPage(`${open.url}/`);
    try {
      await page.setInputFiles('#file', ADD_WASM);
      await page.locator('#exports li', { hasText: 'add(i32, i32) -> i32' }).waitFor();
      await page.fill('#arg-0', '5');
      await page.fill('#arg-1', '10');
      await page.fill('#fuel', '50000');
      await page.click('#run');
      await page.locator('#results').waitFor();
      expect(await page.textContent('#outcome')).toBe('ok');
      expect(await page.textContent('#results')).toBe('15');
      const text = await page.textContent('#result');
      expect(text).toContain('4 / 50,000');
      expect(text).toContain('guest time');
      const curl = (await page.textContent('#curl'))!;
      expect(curl).toContain(`curl -s '${open.url}/execute'`);
      expect(curl).toContain('"function":"add","args":[5,10],"limits":{"fuel":50000}');
      await page.screenshot({ path: `${OUTPUT}playground-add.png`, fullPage: true });
      expect(existsSync(`${OUTPUT}playground-add.png`)).toBe(true);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('compiles pasted WebAssembly text and shows a trap as the outcome', async () => {
    const { page, problems } = await openPage(`${open.url}/`);
    try {
      await page.fill('#wat', '(module (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1))))');
      await page.click('#load');
      await page.locator('#exports li', { hasText: 'div(i32, i32) -> i32' }).waitFor();
      await page.fill('#arg-0', '1');
      await page.fill('#arg-1', '0');
      await page.click('#run');
      await page.locator('#outcome').waitFor();
      expect(await page.textContent('#outcome')).toBe('trap');
      expect(await page.textContent('#result')).toContain('integer_divide_by_zero');
      // A syntax error is shown with its line and column.
      await page.fill('#wat', '(module\n  (func (result i32)\n    i32.const x))');
      await page.click('#load');
      await page.locator('#module-error', { hasText: 'line 3, column 15' }).waitFor();
      expect(problems.filter((p) => !/status of 400/.test(p))).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('runs a WASI program with the stdin typed in the page and shows its output', async () => {
    const { page, problems } = await openPage(`${open.url}/`);
    try {
      await page.setInputFiles('#file', fileURLToPath(new URL('./wasi/programs/cat.wasm', import.meta.url)));
      await page.locator('#exports li.selected', { hasText: '_start()' }).waitFor();
      expect(await page.isVisible('#stdin')).toBe(true);
      await page.fill('#stdin', 'hello from the playground');
      await page.click('#run');
      await page.locator('#stdout').waitFor();
      expect(await page.textContent('#outcome')).toBe('ok');
      expect(await page.textContent('#stdout')).toBe('hello from the playground');
      expect(await page.textContent('#result')).toContain('exit code 0');
      expect(await page.textContent('#curl')).toContain('"wasi":{"stdin":"hello from the playground","args":[]}');
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('with API keys configured, asks for a key and sends it with its API calls', async () => {
    const { page, problems } = await openPage(`${keyed.url}/`);
    try {
      expect(await page.isVisible('#api-key')).toBe(true);
      await page.fill('#api-key', KEY);
      await page.setInputFiles('#file', ADD_WASM);
      await page.locator('#exports li', { hasText: 'add(i32, i32) -> i32' }).waitFor();
      await page.fill('#arg-0', '5');
      await page.fill('#arg-1', '10');
      await page.click('#run');
      await page.locator('#results').waitFor();
      expect(await page.textContent('#results')).toBe('15');
      expect(await page.textContent('#curl')).toContain("-H 'authorization: Bearer '\"$WASMBOX_API_KEY\"");
      await page.screenshot({ path: `${OUTPUT}playground-api-key.png`, fullPage: true });
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
