// What was sent instead of a WebAssembly binary module. The engine's own answer to anything but
// a module ("expected magic word 00 61 73 6d") is right but no help; the common mistakes (the
// text format, base64 or hex text of the module, a JSON request body, an archive, a native
// executable) are recognised from their first bytes and named, with what to do instead.
// Pure: bytes in, a message (or null) out.

/** How to compile the text format; `file` names the text file in the example. */
const wat2wasm = (file: string): string =>
  `compile it to the binary format first, e.g. with wabt's wat2wasm: \`wat2wasm ${file} -o ${file.replace(/\.wat$/i, '')}.wasm\` (Debian package wabt)`;

/** The first bytes of every binary module and component: \0asm. */
const MAGIC = [0x00, 0x61, 0x73, 0x6d] as const;
const CORE_VERSION = [0x01, 0x00, 0x00, 0x00] as const;
/** Version and layer of a component-model binary (layer 1). */
const COMPONENT_VERSION_LAYER = [0x0d, 0x00, 0x01, 0x00] as const;

const startsWith = (bytes: Uint8Array, prefix: readonly number[], at = 0): boolean =>
  bytes.length >= at + prefix.length && prefix.every((b, i) => bytes[at + i] === b);

/** How many bytes to decode as text when looking at the start of the input. */
const TEXT_PREFIX_BYTES = 4096;

/**
 * A message saying what `bytes` are when they are not a WebAssembly binary module, or null when
 * they start like one (whether the rest is valid is the engine's to say) or are not recognised.
 * `fileName`, when known, is used in the example command of the advice.
 */
export function describeNonWasm(bytes: Uint8Array, fileName = 'add.wat'): string | null {
  if (bytes.length === 0) return 'the module is empty (0 bytes); send the bytes of a .wasm file';
  if (startsWith(bytes, MAGIC)) {
    if (bytes.length < 8 || startsWith(bytes, CORE_VERSION, 4)) return null;
    if (startsWith(bytes, COMPONENT_VERSION_LAYER, 4)) {
      return 'this is a WebAssembly component (component model), not a core module; only core WebAssembly modules (version 1) are run';
    }
    const version = Array.from(bytes.subarray(4, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
    return `this is a WebAssembly binary of an unknown version (bytes ${version} after the magic number); only version 1 (01 00 00 00) modules are run`;
  }
  const binary = binaryFormat(bytes);
  if (binary) return binary;

  const head = decodeText(bytes.subarray(0, TEXT_PREFIX_BYTES));
  if (head === null) return null;
  const text = head.replace(/^\uFEFF/, '');
  const code = skipWatTrivia(text);
  if (/^\((module|component)\b/.test(code)) {
    const what = code.startsWith('(component') ? 'the WebAssembly component text format' : 'WebAssembly text (the .wat format)';
    return `this is ${what}, not a binary module; ${wat2wasm(fileName)}`;
  }
  const trimmed = text.trimStart();
  if (trimmed.startsWith(';;') || trimmed.startsWith('(;')) return `this looks like WebAssembly text (the .wat format: it starts with a comment), not a binary module; ${wat2wasm(fileName)}`;
  // base64 of \0asm\x01\0\0\0 is "AGFzbQEAAAA"; a data URL or a quoted string around it is the same mistake.
  if (/^(data:[^,]*;base64,)?"?AGFzbQ/.test(trimmed)) {
    return 'this is base64 text of a WebAssembly module, not the module itself; decode it (`base64 -d module.b64 > module.wasm`), or send it as the "module" field of a JSON body';
  }
  if (/^(0x)?00\s?61\s?73\s?6d/i.test(trimmed)) return 'this is hexadecimal text of a WebAssembly module, not the module itself; convert it to bytes (`xxd -r -p module.hex module.wasm`)';
  if (/^[{[]/.test(trimmed)) {
    const whole = bytes.length <= TEXT_PREFIX_BYTES ? text : decodeText(bytes);
    let json: unknown;
    try {
      json = JSON.parse(whole ?? '');
    } catch {
      return null;
    }
    if (json !== null && typeof json === 'object' && !Array.isArray(json) && ('module' in json || 'moduleId' in json)) {
      return 'this is a JSON request body (it has a "module" or "moduleId" field), not a module; send it to POST /execute with content-type application/json';
    }
    return 'this is a JSON document, not a WebAssembly module; send the bytes of a .wasm file';
  }
  if (/^<(!doctype html|html|\?xml)/i.test(trimmed)) return 'this is an HTML or XML document (perhaps an error page saved in place of the download), not a WebAssembly module';
  if (trimmed.startsWith('#!')) return 'this is a script (it starts with #!), not a WebAssembly module';
  return null;
}

/**
 * Whether a module sent as bytes is WebAssembly text, to be compiled rather than refused: it does
 * not start with the binary magic, it is UTF-8 text throughout (no control bytes but whitespace),
 * and after whitespace and comments its first token opens a form, "(" (a component's text,
 * "(component", is not: components are not run, and describeNonWasm says so).
 */
export function isWatText(bytes: Uint8Array): boolean {
  if (bytes.length === 0 || startsWith(bytes, MAGIC)) return false;
  const head = decodeText(bytes.subarray(0, TEXT_PREFIX_BYTES));
  if (head === null) return false;
  const code = skipWatTrivia(head.replace(/^\uFEFF/, ''));
  if (!code.startsWith('(') || /^\(component\b/.test(code)) return false;
  return bytes.length <= TEXT_PREFIX_BYTES || decodeText(bytes) !== null;
}

/** Archives, compressed files and native executables, by their magic numbers. */
function binaryFormat(bytes: Uint8Array): string | null {
  if (startsWith(bytes, [0x1f, 0x8b])) return 'this is gzip-compressed data, not a WebAssembly module; decompress it first (`gunzip module.wasm.gz`)';
  if (startsWith(bytes, [0x28, 0xb5, 0x2f, 0xfd])) return 'this is zstd-compressed data, not a WebAssembly module; decompress it first (`zstd -d`)';
  if (startsWith(bytes, [0x42, 0x5a, 0x68])) return 'this is bzip2-compressed data, not a WebAssembly module; decompress it first (`bunzip2`)';
  if (startsWith(bytes, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return 'this is xz-compressed data, not a WebAssembly module; decompress it first (`unxz`)';
  if (startsWith(bytes, [0x50, 0x4b, 0x03, 0x04]) || startsWith(bytes, [0x50, 0x4b, 0x05, 0x06])) {
    return 'this is a zip archive, not a WebAssembly module; extract the .wasm file from it (`unzip`)';
  }
  if (bytes.length >= 262 && startsWith(bytes, [0x75, 0x73, 0x74, 0x61, 0x72], 257)) return 'this is a tar archive, not a WebAssembly module; extract the .wasm file from it (`tar -xf`)';
  const native = 'compile the program for WebAssembly instead (a wasm32-wasip1 target, such as clang --target=wasm32-wasi or cargo build --target wasm32-wasip1)';
  if (startsWith(bytes, [0x7f, 0x45, 0x4c, 0x46])) return `this is a native executable or library (ELF), not a WebAssembly module; ${native}`;
  if (startsWith(bytes, [0x4d, 0x5a])) return `this is a Windows executable or DLL (PE), not a WebAssembly module; ${native}`;
  if ([[0xfe, 0xed, 0xfa, 0xce], [0xfe, 0xed, 0xfa, 0xcf], [0xce, 0xfa, 0xed, 0xfe], [0xcf, 0xfa, 0xed, 0xfe]].some((m) => startsWith(bytes, m))) {
    return `this is a macOS executable or library (Mach-O), not a WebAssembly module; ${native}`;
  }
  if (startsWith(bytes, [0xca, 0xfe, 0xba, 0xbe])) return 'this is a macOS universal binary (Mach-O) or a Java class file, not a WebAssembly module';
  return null;
}

/** The bytes as UTF-8 text, or null when they are not text (invalid UTF-8 or control bytes). */
function decodeText(bytes: Uint8Array): string | null {
  let text: string;
  try {
    // The prefix may end inside a character: a trailing partial sequence is not an error.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
  } catch {
    return null;
  }
  // Text has no control characters other than tab, line feed, form feed and carriage return.
  return /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text) ? null : text;
}

/** `text` after leading whitespace and WebAssembly text comments (`;; line` and nested `(; block ;)`). */
function skipWatTrivia(text: string): string {
  let i = 0;
  for (;;) {
    while (i < text.length && /\s/.test(text[i]!)) i++;
    if (text.startsWith(';;', i)) {
      const end = text.indexOf('\n', i);
      if (end === -1) return '';
      i = end + 1;
      continue;
    }
    if (text.startsWith('(;', i)) {
      let depth = 0;
      while (i < text.length) {
        if (text.startsWith('(;', i)) {
          depth++;
          i += 2;
        } else if (text.startsWith(';)', i)) {
          depth--;
          i += 2;
          if (depth === 0) break;
        } else i++;
      }
      if (depth !== 0) return '';
      continue;
    }
    return text.slice(i);
  }
}
