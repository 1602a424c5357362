// Byte-level reading and writing of the WebAssembly binary format (LEB128 and friends).
// The reader throws WasmFormatError on truncated or over-long input; callers only ever see
// bytes V8 has already validated, so such an error means a decoder bug or an unsupported
// encoding, never a crash.

export class WasmFormatError extends Error {
  override readonly name = 'WasmFormatError';
}

export class Reader {
  pos: number;
  constructor(
    readonly bytes: Uint8Array,
    start = 0,
    readonly end = bytes.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  u8(): number {
    if (this.pos >= this.end) throw new WasmFormatError(`unexpected end of input at byte ${this.pos}`);
    return this.bytes[this.pos++]!;
  }

  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.u8();
      if (shift === 28 && b > 0x0f) throw new WasmFormatError(`u32 LEB128 too large at byte ${this.pos - 1}`);
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result >>> 0;
      shift += 7;
    }
  }

  /** Signed LEB128 of up to `bits` bits, returned as a bigint (only used for constants we re-read). */
  sleb(bits: number): bigint {
    let result = 0n;
    let shift = 0n;
    let b: number;
    const max = BigInt(Math.ceil(bits / 7) * 7);
    do {
      b = this.u8();
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if (shift > max) throw new WasmFormatError(`signed LEB128 too long at byte ${this.pos - 1}`);
    } while (b & 0x80);
    if (b & 0x40) result -= 1n << shift;
    return BigInt.asIntN(bits, result);
  }

  /** Skips a signed or unsigned LEB128 of any length up to `maxBytes`. */
  skipLeb(maxBytes = 10): void {
    for (let i = 0; i < maxBytes; i++) {
      if ((this.u8() & 0x80) === 0) return;
    }
    throw new WasmFormatError(`LEB128 too long at byte ${this.pos - 1}`);
  }

  skip(n: number): void {
    if (this.pos + n > this.end) throw new WasmFormatError(`unexpected end of input at byte ${this.pos}`);
    this.pos += n;
  }

  bytesOf(n: number): Uint8Array {
    this.skip(n);
    return this.bytes.subarray(this.pos - n, this.pos);
  }

  name(): string {
    const len = this.u32();
    return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(this.bytesOf(len));
  }
}

/** A growable byte buffer for emitting a module. */
export class Writer {
  private buf: Uint8Array;
  length = 0;
  constructor(initialCapacity = 1024) {
    this.buf = new Uint8Array(Math.max(16, initialCapacity));
  }

  private ensure(extra: number): void {
    if (this.length + extra <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + extra) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  u8(b: number): void {
    this.ensure(1);
    this.buf[this.length++] = b;
  }

  bytes(b: Uint8Array): void {
    this.range(b, 0, b.length);
  }

  /** Appends `src[from..to)`. Short ranges (most of what the fuel pass copies: the code between
   *  two rewrites, a few bytes of added code) are copied byte by byte: TypedArray.set and the
   *  subarray it would need cost more than the copy itself below a few dozen bytes. */
  range(src: Uint8Array, from: number, to: number): void {
    const n = to - from;
    this.ensure(n);
    const buf = this.buf;
    let at = this.length;
    if (n < 48) {
      for (let i = from; i < to; i++) buf[at++] = src[i]!;
    } else {
      buf.set(from === 0 && to === src.length ? src : src.subarray(from, to), at);
    }
    this.length += n;
  }

  u32(v: number): void {
    this.ensure(5);
    v >>>= 0;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.buf[this.length++] = b;
    } while (v !== 0);
  }

  /** Signed LEB128 of a number in the safe-integer range, without bigint arithmetic. */
  sNum(v: number): void {
    this.ensure(10);
    if (v >= 0 && v < 64) {
      // One byte (sign bit clear): the usual block cost.
      this.buf[this.length++] = v;
      return;
    }
    for (;;) {
      const b = ((v % 128) + 128) % 128;
      v = Math.floor(v / 128);
      const done = (v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0);
      this.buf[this.length++] = done ? b : b | 0x80;
      if (done) return;
    }
  }

  sleb(v: bigint): void {
    this.ensure(10);
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
      this.buf[this.length++] = done ? b : b | 0x80;
      if (done) return;
    }
  }

  name(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u32(b.length);
    this.bytes(b);
  }

  /** The written bytes, as a buffer of their own: the writer's own buffer when it is exactly full
   *  (a writer sized in advance), else a copy. The writer must not be written to afterwards. */
  finish(): Uint8Array {
    return this.length === this.buf.length ? this.buf : this.buf.slice(0, this.length);
  }

  /** The written bytes without copying (valid until the next write). */
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

export function u32Size(v: number): number {
  let n = 1;
  v >>>= 0;
  while (v >= 0x80) {
    v >>>= 7;
    n++;
  }
  return n;
}
