// Content addresses: a module's id is "sha256:" + the hex SHA-256 of its bytes.

import { createHash } from 'node:crypto';

export const MODULE_ID_PATTERN = /^sha256:([0-9a-f]{64})$/;

export function moduleIdOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}
