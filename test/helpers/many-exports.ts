// A module with `count` exported functions, all `() -> i32`, written as a binary directly (WAT
// for 100,000 functions would take wabt longer than the test). `nonce` is what the first
// function returns, so modules of equal shape differ in their bytes (and content address).

export function manyExportsModule(count: number, nonce = 0, nameChars = 12): Uint8Array {
  const out: number[] = [];
  const u32 = (v: number): void => {
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      out.push(b);
    } while (v !== 0);
  };
  const section = (id: number, write: () => void): void => {
    const start = out.length;
    write();
    const body = out.splice(start);
    out.push(id);
    u32(body.length);
    for (const b of body) out.push(b);
  };
  out.push(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00);
  section(1, () => {
    u32(1);
    out.push(0x60, 0x00, 0x01, 0x7f); // (func (result i32))
  });
  section(3, () => {
    u32(count);
    for (let i = 0; i < count; i++) u32(0);
  });
  section(7, () => {
    u32(count);
    for (let i = 0; i < count; i++) {
      const name = `f${i}`.padEnd(nameChars, '_');
      u32(name.length);
      for (let c = 0; c < name.length; c++) out.push(name.charCodeAt(c));
      out.push(0x00); // func
      u32(i);
    }
  });
  section(10, () => {
    u32(count);
    for (let i = 0; i < count; i++) {
      const body = [0x00, 0x41, ...sleb(i === 0 ? nonce : i), 0x0b]; // no locals; i32.const; end
      u32(body.length);
      out.push(...body);
    }
  });
  return Uint8Array.from(out);
}

function sleb(v: number): number[] {
  const bytes: number[] = [];
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
      bytes.push(b);
      return bytes;
    }
    bytes.push(b | 0x80);
  }
}
