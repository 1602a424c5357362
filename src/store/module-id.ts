// Content addresses: a module's id is "sha256:" + the hex SHA-256 of its bytes.

import { createHash } from 'node:crypto';

export const MODULE_ID_PATTERN = /^sha256:([0-9a-f]{64})$/;

export function moduleIdOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Modules at least this large are hashed in libuv's thread pool (WebCrypto), not on the event
 *  loop: the SHA-256 of 16 MiB takes about 10 ms. */
const ASYNC_HASH_MIN_BYTES = 256 * 1024;

/** moduleIdOf, off the event loop for large modules. */
export async function moduleIdOfAsync(bytes: Uint8Array): Promise<string> {
  // WebCrypto refuses views on shared memory (bytes decoded off the event loop are; their id comes
  // with them, so this is only a fallback).
  if (bytes.length < ASYNC_HASH_MIN_BYTES || bytes.buffer instanceof SharedArrayBuffer) return moduleIdOf(bytes);
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>);
  return `sha256:${Buffer.from(digest).toString('hex')}`;
}
