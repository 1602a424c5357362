// copyIntoShared (src/worker/shared-copy.ts): the staging copy of large bodies. Whatever the
// offsets of source and destination within a word, and whether or not the bytes go through its
// bounce buffer (in pieces when longer than it), the destination gets exactly the source's bytes
// at `at`, and nothing around them changes.

import { describe, expect, it } from 'vitest';
import { copyIntoShared } from '../src/worker/shared-copy.js';

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 17 + (i >>> 8)) & 0xff;
  return out;
}

describe('copyIntoShared puts the bytes exactly where asked in a SharedArrayBuffer', () => {
  it('at every pairing of source and destination offsets within a word, short and long', () => {
    for (const length of [1, 7, 8, 9, 4096, 65_536, 65_543, 200_001]) {
      for (let srcOffset = 0; srcOffset < 8; srcOffset++) {
        for (let at = 0; at < 8; at++) {
          const source = pattern(srcOffset + length, length + srcOffset).subarray(srcOffset);
          const dst = new Uint8Array(new SharedArrayBuffer(length + 24));
          dst.fill(0xee);
          copyIntoShared(dst, source, at + 8);
          expect(Buffer.from(dst.buffer, at + 8, length).equals(Buffer.from(source.buffer, source.byteOffset, length)), `length ${length}, source offset ${srcOffset}, at ${at}`).toBe(true);
          expect(dst.subarray(0, at + 8).every((b) => b === 0xee)).toBe(true);
          expect(dst.subarray(at + 8 + length).every((b) => b === 0xee)).toBe(true);
        }
      }
    }
  });

  it('into a view that starts inside its buffer, and copies nothing for an empty source', () => {
    const dst = new Uint8Array(new SharedArrayBuffer(100_000), 3, 99_990);
    const source = pattern(70_000, 5).subarray(1);
    copyIntoShared(dst, source, 11);
    expect(Buffer.from(dst.buffer, 3 + 11, source.length).equals(Buffer.from(source))).toBe(true);
    const before = Buffer.from(dst).toString('hex');
    copyIntoShared(dst, new Uint8Array(0), 5);
    expect(Buffer.from(dst).toString('hex')).toBe(before);
  });
});
