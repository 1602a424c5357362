// A guest's stdout or stderr: bytes captured up to a cap, decoded as UTF-8 at the end.

const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/**
 * Where a run's output is mirrored so the main thread can still read it when it kills the worker
 * at the deadline: a SharedArrayBuffer of OUTPUT_HEADER_BYTES + stdout cap + stderr cap. The
 * header holds four Int32s: stdout length, stderr length, stdout truncated, stderr truncated.
 */
export const OUTPUT_HEADER_BYTES = 16;

export function sharedOutputBuffer(stdoutLimitBytes: number, stderrLimitBytes: number): SharedArrayBuffer {
  return new SharedArrayBuffer(OUTPUT_HEADER_BYTES + stdoutLimitBytes + stderrLimitBytes);
}

/** The stream's slot in a shared output buffer: its bytes and its two header cells. */
export interface SharedSlot {
  bytes: Uint8Array;
  header: Int32Array;
  lengthIndex: number;
  truncatedIndex: number;
}

export function sharedSlots(sab: SharedArrayBuffer, stdoutLimitBytes: number, stderrLimitBytes: number): [SharedSlot, SharedSlot] {
  const header = new Int32Array(sab, 0, 4);
  return [
    { bytes: new Uint8Array(sab, OUTPUT_HEADER_BYTES, stdoutLimitBytes), header, lengthIndex: 0, truncatedIndex: 2 },
    { bytes: new Uint8Array(sab, OUTPUT_HEADER_BYTES + stdoutLimitBytes, stderrLimitBytes), header, lengthIndex: 1, truncatedIndex: 3 },
  ];
}

/** Reads what a (possibly killed) run had written to its shared output buffer. */
export function readSharedOutput(
  sab: SharedArrayBuffer,
  stdoutLimitBytes: number,
  stderrLimitBytes: number,
): { stdout: string; stderr: string; stdoutTruncated: boolean; stderrTruncated: boolean } {
  const [out, err] = sharedSlots(sab, stdoutLimitBytes, stderrLimitBytes);
  const read = (slot: SharedSlot): [string, boolean] => {
    const len = Math.min(Atomics.load(slot.header, slot.lengthIndex), slot.bytes.length);
    const truncated = Atomics.load(slot.header, slot.truncatedIndex) === 1;
    return [decodeCaptured(slot.bytes.slice(0, len), truncated), truncated]; // slice: a private copy
  };
  const [stdout, stdoutTruncated] = read(out);
  const [stderr, stderrTruncated] = read(err);
  return { stdout, stderr, stdoutTruncated, stderrTruncated };
}

export class CappedOutput {
  private buf: Uint8Array;
  private length = 0;
  /** True once a byte was dropped because the cap was reached. */
  truncated = false;

  constructor(
    readonly limitBytes: number,
    private readonly shared: SharedSlot | null = null,
  ) {
    // With a shared slot the bytes live only there (it is allocated at the cap); otherwise the
    // buffer grows on demand: most runs print little, and the cap may be megabytes.
    this.buf = shared ? shared.bytes : new Uint8Array(Math.min(limitBytes, 4096));
  }

  /** Appends what fits under the cap from `src[start, start + len)`. The caller has bounds-checked. */
  append(src: Uint8Array, start: number, len: number): void {
    const room = this.limitBytes - this.length;
    const take = Math.min(room, len);
    if (take < len) {
      this.truncated = true;
      if (this.shared) Atomics.store(this.shared.header, this.shared.truncatedIndex, 1);
    }
    if (take <= 0) return;
    const need = this.length + take;
    if (need > this.buf.length) {
      const grown = new Uint8Array(Math.min(this.limitBytes, Math.max(need, this.buf.length * 2)));
      grown.set(this.buf.subarray(0, this.length));
      this.buf = grown;
    }
    // `set` copies from a SharedArrayBuffer-backed view as well, so shared memories work too.
    this.buf.set(src.subarray(start, start + take), this.length);
    if (this.shared) Atomics.store(this.shared.header, this.shared.lengthIndex, need);
    this.length = need;
  }

  /** The captured bytes (a private copy when they live in shared memory). */
  bytes(): Uint8Array {
    return this.shared ? this.buf.slice(0, this.length) : this.buf.subarray(0, this.length);
  }

  /**
   * The captured bytes as UTF-8, invalid sequences replaced by U+FFFD. When the cap cut the
   * output, an incomplete character at the cut is dropped rather than shown as U+FFFD, so a
   * truncated stdout is always a prefix of what the untruncated one would have decoded to. An
   * incomplete character at the end of output that was *not* cut is the guest's own bytes and
   * decodes to U+FFFD like any other invalid sequence.
   */
  text(): string {
    return decodeCaptured(this.bytes(), this.truncated);
  }
}

/** Captured output as UTF-8; when the cap cut it, a character cut in half is dropped. */
function decodeCaptured(bytes: Uint8Array, truncated: boolean): string {
  return decoder.decode(truncated ? bytes.subarray(0, completeUtf8Prefix(bytes)) : bytes);
}

/**
 * Length of `bytes` without a trailing UTF-8 sequence that was cut short: a lead byte in the last
 * three positions whose sequence needs more bytes than remain. Anything else (valid, or invalid
 * in a way more bytes could not fix) is kept for the decoder to judge.
 */
export function completeUtf8Prefix(bytes: Uint8Array): number {
  const n = bytes.length;
  for (let back = 1; back <= Math.min(3, n); back++) {
    const b = bytes[n - back]!;
    if ((b & 0xc0) === 0x80) continue; // continuation byte: keep looking for its lead
    const need = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xc2 && b <= 0xdf ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}
