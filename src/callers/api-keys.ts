// API keys: who is calling. Keys come from WASMBOX_API_KEYS (comma-separated) and/or
// WASMBOX_API_KEYS_FILE (one a line, the key itself or `sha256:<64 hex>` of it, `#` comments).
// Only SHA-256 digests are kept in memory; a presented key is hashed and compared with every
// configured digest in constant time (timingSafeEqual, and no early exit), so neither the
// comparison nor the loop tells how close a guess was. Each key has a short, non-secret id
// (`key-` and the first 8 hex digits of its digest) that logs and metrics use instead of it.

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface ApiKey {
  /** Non-secret: safe to log and to use as a metrics label. */
  id: string;
  digest: Buffer;
}

export class ApiKeyError extends Error {
  override readonly name = 'ApiKeyError';
}

const DIGEST_LINE = /^sha256:([0-9a-fA-F]{64})$/;

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export function keyId(digest: Buffer): string {
  return `key-${digest.subarray(0, 4).toString('hex')}`;
}

function entry(text: string, where: string): ApiKey {
  const m = DIGEST_LINE.exec(text);
  if (text.startsWith('sha256:') && !m) throw new ApiKeyError(`${where}: "sha256:" must be followed by 64 hex digits`);
  if (!m && text.length < 16) throw new ApiKeyError(`${where}: a key must be at least 16 characters (or sha256:<64 hex> of one)`);
  if (/\s/.test(text)) throw new ApiKeyError(`${where}: a key may not contain whitespace`);
  const digest = m ? Buffer.from(m[1]!, 'hex') : sha256(text);
  return { id: keyId(digest), digest };
}

/** Reads the configured keys; an empty list means keys are off. */
export function loadApiKeys(inline: string | undefined, file: string | undefined): ApiKey[] {
  const keys: ApiKey[] = [];
  if (inline) {
    inline
      .split(',')
      .map((k) => k.trim())
      .filter((k) => k !== '')
      .forEach((k, i) => keys.push(entry(k, `WASMBOX_API_KEYS entry ${i + 1}`)));
  }
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ApiKeyError(`WASMBOX_API_KEYS_FILE: cannot read ${file}: ${(err as Error).message}`);
    }
    text.split(/\r?\n/).forEach((line, i) => {
      const t = line.trim();
      if (t === '' || t.startsWith('#')) return;
      keys.push(entry(t, `WASMBOX_API_KEYS_FILE line ${i + 1}`));
    });
  }
  const seen = new Set<string>();
  return keys.filter((k) => {
    const hex = k.digest.toString('hex');
    if (seen.has(hex)) return false;
    seen.add(hex);
    return true;
  });
}

/** The key a request presents: `Authorization: Bearer <key>` or `x-api-key: <key>`. */
export function presentedKey(headers: Record<string, string | string[] | undefined>): string | null {
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
    if (m) return m[1]!;
  }
  const x = headers['x-api-key'];
  if (typeof x === 'string' && x.trim() !== '') return x.trim();
  return null;
}

/** The configured key matching `presented`, or null; takes the same time whichever matches. */
export function matchKey(keys: readonly ApiKey[], presented: string): ApiKey | null {
  const digest = sha256(presented);
  let found: ApiKey | null = null;
  for (const k of keys) {
    if (timingSafeEqual(k.digest, digest) && found === null) found = k;
  }
  return found;
}
