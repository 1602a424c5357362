// describeNonWasm: what was sent instead of a binary module, named from its first bytes, with
// what to do instead; null for anything that starts like a core module (the engine judges the
// rest) and for bytes it does not recognise.

import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { describeNonWasm, isWatText } from '../src/wasm/sniff.js';
import { wat } from './helpers/wat.js';

const ADD_WAT = readFileSync(new URL('../examples/add.wat', import.meta.url));
const ADD_WASM = readFileSync(new URL('../examples/add.wasm', import.meta.url));
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

describe('binary modules are not described', () => {
  it('returns null for a valid core module and for one that is only a header', () => {
    expect(describeNonWasm(ADD_WASM)).toBeNull();
    expect(describeNonWasm(wat('(module (func (export "f")))'))).toBeNull();
    expect(describeNonWasm(bytes(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00))).toBeNull();
  });

  it('returns null for a truncated header (the engine says what is wrong with it)', () => {
    expect(describeNonWasm(bytes(0x00, 0x61, 0x73, 0x6d))).toBeNull();
  });

  it('names a component-model binary and an unknown binary version', () => {
    expect(describeNonWasm(bytes(0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00))).toMatch(/WebAssembly component .*only core WebAssembly modules/);
    expect(describeNonWasm(bytes(0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00))).toMatch(/unknown version \(bytes 02 00 00 00/);
  });

  it('returns null for bytes it does not recognise', () => {
    expect(describeNonWasm(bytes(0x01, 0x02, 0x03, 0x00, 0xff))).toBeNull();
    expect(describeNonWasm(text('just some words'))).toBeNull();
  });
});

describe('WebAssembly text', () => {
  const WAT = /this is WebAssembly text \(the \.wat format\), not a binary module; .*`wat2wasm add\.wat -o add\.wasm` \(Debian package wabt\)/;

  it('recognises the example add.wat and says how to compile it with wabt', () => {
    expect(describeNonWasm(ADD_WAT)).toMatch(WAT);
  });

  it.each([
    ['(module)', '(module)'],
    ['leading whitespace and newlines', ' \n\t\r\n(module (func))'],
    ['a byte order mark', '\uFEFF(module)'],
    ['line comments before it', ';; add.wat\n;; more\n  (module\n)'],
    ['a nested block comment before it', '(; outer (; inner ;) still outer ;)\n(module $m)'],
    ['a named module on the next line', '(module\n  $add)'],
  ])('recognises "(module" after %s', (_what, source) => {
    expect(describeNonWasm(text(source))).toMatch(WAT);
  });

  it('recognises the component text format', () => {
    expect(describeNonWasm(text(';; a component\n(component)'))).toMatch(/the WebAssembly component text format, not a binary module; .*wat2wasm/);
  });

  it('recognises text that starts with a comment even when no module follows in the first bytes', () => {
    expect(describeNonWasm(text(`;; ${'x'.repeat(10_000)}`))).toMatch(/looks like WebAssembly text .*starts with a comment/);
    expect(describeNonWasm(text('(; unterminated'))).toMatch(/looks like WebAssembly text/);
  });

  it('uses the given file name in the example command', () => {
    expect(describeNonWasm(ADD_WAT, 'examples/fib.wat')).toContain('`wat2wasm examples/fib.wat -o examples/fib.wasm`');
  });

  it('does not take "(modules" or another form for a module', () => {
    expect(describeNonWasm(text('(modules)'))).toBeNull();
    expect(describeNonWasm(text('(func)'))).toBeNull();
  });
});

describe('other common mistakes', () => {
  it('an empty body', () => {
    expect(describeNonWasm(new Uint8Array(0))).toBe('the module is empty (0 bytes); send the bytes of a .wasm file');
  });

  it('base64 text of a module (bare, with a newline, quoted, or as a data URL)', () => {
    const b64 = Buffer.from(ADD_WASM).toString('base64');
    for (const form of [b64, `${b64}\n`, `"${b64}"`, `data:application/wasm;base64,${b64}`, `  ${b64}`]) {
      expect(describeNonWasm(text(form)), form).toMatch(/base64 text of a WebAssembly module, not the module itself; decode it/);
    }
  });

  it('hexadecimal text of a module', () => {
    expect(describeNonWasm(text(Buffer.from(ADD_WASM).toString('hex')))).toMatch(/hexadecimal text .*xxd -r -p/);
  });

  it('a JSON request body, and any other JSON document', () => {
    const body = JSON.stringify({ module: Buffer.from(ADD_WASM).toString('base64'), function: 'add', args: [1, 2] });
    expect(describeNonWasm(text(body))).toMatch(/JSON request body .*POST \/execute with content-type application\/json/);
    expect(describeNonWasm(text('{"moduleId":"sha256:00"}'))).toMatch(/JSON request body/);
    expect(describeNonWasm(text('{"name": "wasmbox"}'))).toBe('this is a JSON document, not a WebAssembly module; send the bytes of a .wasm file');
    expect(describeNonWasm(text(' [1, 2, 3]\n'))).toMatch(/^this is a JSON document/);
  });

  it('a JSON document longer than the prefix it looks at first', () => {
    const big = JSON.stringify({ padding: 'x'.repeat(20_000), module: 'AGFzbQ' });
    expect(describeNonWasm(text(big))).toMatch(/JSON request body/);
  });

  it('text that starts like JSON but is not is not called JSON', () => {
    expect(describeNonWasm(text('{ not json'))).toBeNull();
  });

  it('gzip, zip and other compressed or archived files', () => {
    expect(describeNonWasm(gzipSync(ADD_WASM))).toMatch(/gzip-compressed .*gunzip/);
    expect(describeNonWasm(bytes(0x50, 0x4b, 0x03, 0x04, 0x14, 0x00))).toMatch(/zip archive.*unzip/);
    expect(describeNonWasm(bytes(0x50, 0x4b, 0x05, 0x06, 0, 0))).toMatch(/zip archive/);
    expect(describeNonWasm(bytes(0x28, 0xb5, 0x2f, 0xfd, 0x00))).toMatch(/zstd-compressed/);
    const tar = new Uint8Array(512);
    tar.set(text('add.wasm'), 0);
    tar.set(text('ustar'), 257);
    expect(describeNonWasm(tar)).toMatch(/tar archive/);
  });

  it('native executables: ELF, PE and Mach-O', () => {
    const native = /compile the program for WebAssembly instead \(a wasm32-wasip1 target/;
    const fd = openSync(process.execPath, 'r');
    const elf = new Uint8Array(64);
    readSync(fd, elf, 0, 64, 0);
    closeSync(fd);
    if (process.platform === 'linux') expect(describeNonWasm(elf)).toMatch(/native executable or library \(ELF\)/);
    expect(describeNonWasm(bytes(0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01))).toMatch(native);
    expect(describeNonWasm(bytes(0x4d, 0x5a, 0x90, 0x00))).toMatch(/Windows executable or DLL \(PE\)/);
    for (const magic of [[0xcf, 0xfa, 0xed, 0xfe], [0xce, 0xfa, 0xed, 0xfe], [0xfe, 0xed, 0xfa, 0xcf], [0xfe, 0xed, 0xfa, 0xce]]) {
      expect(describeNonWasm(bytes(...magic, 0x07, 0x00))).toMatch(/macOS executable or library \(Mach-O\)/);
    }
    expect(describeNonWasm(bytes(0xca, 0xfe, 0xba, 0xbe, 0x00, 0x00))).toMatch(/universal binary \(Mach-O\) or a Java class file/);
  });

  it('an HTML page saved in place of a download, and a script', () => {
    expect(describeNonWasm(text('<!DOCTYPE html><html><body>404</body></html>'))).toMatch(/HTML or XML document/);
    expect(describeNonWasm(text('#!/bin/sh\necho hi\n'))).toMatch(/script/);
  });

  it('binary data that is not valid UTF-8 is not taken for text', () => {
    expect(describeNonWasm(bytes(0x28, 0x6d, 0x6f, 0xff, 0xfe))).toBeNull();
  });
});

describe('isWatText: which module bodies the server compiles as WebAssembly text', () => {
  it.each([
    ['the example add.wat', ADD_WAT],
    ['text after a BOM, comments and blank lines', text('\uFEFF;; c\n(; b ;)\n\n(module)')],
    ['a bare form such as (func ...) (wabt reports what is wrong with it)', text('(func)')],
  ])('reads %s as text', (_name, bytes) => {
    expect(isWatText(bytes)).toBe(true);
  });

  it.each([
    ['a binary module', Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0)],
    ['an empty body', new Uint8Array(0)],
    ['component text (components are not run)', text(';; c\n(component)')],
    ['base64 of a module', text('AGFzbQEAAAA=')],
    ['JSON', text('{"module":"AGFzbQEAAAA="}')],
    ['text that becomes invalid UTF-8 after the first 4 KiB', new Uint8Array([...text(`(module ${';'.repeat(5000)}`), 0xff])],
    ['text with control bytes', text('(module)\u0001')],
  ])('does not read %s as text', (_name, bytes) => {
    expect(isWatText(bytes)).toBe(false);
  });
});
