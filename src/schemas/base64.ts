// What the request schemas accept as base64 (standard alphabet, optional padding), shared with the
// decoding thread (src/worker/decode.ts), which judges large fields the same way.

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** True when `s` is standard base64 as the contract takes it. */
export function isBase64(s: string): boolean {
  return s.length % 4 !== 1 && BASE64.test(s);
}

