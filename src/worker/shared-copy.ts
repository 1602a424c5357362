// Copying bytes into a SharedArrayBuffer at the speed of a plain copy.
//
// V8 writes into shared memory with relaxed atomic stores (v8::internal::relaxed_memcpy): a word
// at a time when the source and the destination sit at the same offset within a word, byte by
// byte when they do not. A body's chunks rarely line up: the first chunk of a request is what was
// left of the socket's read after the headers (65,339 bytes, say), and every chunk after it then
// lands at an odd offset in the staging buffer. Measured here (Node 24, 16 MiB in 64 KiB chunks):
// 0.9 ms when the offsets line up, 5.0 ms when they do not, 1.4 ms through a bounce buffer as
// below. Under perf, that byte-by-byte copy was 18 % of the main thread's time while it received
// 16 MiB bodies.

/** Word size of V8's relaxed copies (a pointer). */
const WORD = 8;
const BOUNCE_BYTES = 64 * 1024;

let bounce: Uint8Array | null = null;

/**
 * Copies `src` into `dst` (a view of a SharedArrayBuffer) at `at`. When the two would not be
 * word-aligned alike, the bytes go first into a non-shared buffer (a plain memmove) at the
 * destination's offset within a word, and from there into `dst` a word at a time. Backing stores
 * are allocated at least word-aligned, so `byteOffset` is where a view sits within a word.
 */
export function copyIntoShared(dst: Uint8Array, src: Uint8Array, at: number): void {
  if (src.length === 0) return;
  if (((dst.byteOffset + at - src.byteOffset) & (WORD - 1)) === 0) {
    dst.set(src, at);
    return;
  }
  bounce ??= new Uint8Array(BOUNCE_BYTES + WORD);
  const shift = (dst.byteOffset + at) & (WORD - 1);
  for (let from = 0; from < src.length; from += BOUNCE_BYTES) {
    const n = Math.min(BOUNCE_BYTES, src.length - from);
    bounce.set(src.subarray(from, from + n), shift);
    dst.set(bounce.subarray(shift, shift + n), at + from);
  }
}
