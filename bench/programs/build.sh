#!/usr/bin/env bash
# Rebuilds every bench/programs/<name>.wasm from <name>.c with clang
# (freestanding wasm32 without libc, or, for LIBC_PROGRAMS, wasm32-wasi linked
# against wasi-libc), then checks that each module has zero imports and
# exports `run`.
#
#   ./build.sh           build + import/export check
#   ./build.sh --check   additionally build each .c natively (gcc/cc, -DNATIVE)
#                        and check native == wasm == programs.json "expect"
#                        ("smallExpect" for "smallArgs"); also checks sha256.c
#                        against sha256sum and crc32.c against python3 zlib.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

CHECK=0
for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

CLANG="${CLANG:-clang}"
if ! command -v "$CLANG" >/dev/null 2>&1; then
  echo "build.sh: '$CLANG' not found. Install it with: apt-get install -y clang lld" >&2
  exit 1
fi
if ! command -v wasm-ld >/dev/null 2>&1 && ! ls /usr/bin/wasm-ld-* >/dev/null 2>&1; then
  echo "build.sh: wasm-ld not found. Install it with: apt-get install -y clang lld" >&2
  exit 1
fi
if ! command -v node >/dev/null 2>&1; then
  echo "build.sh: node not found (needed to validate the modules)" >&2
  exit 1
fi

# -mcpu=mvp pins the feature set (newer clangs enable bulk-memory, sign-ext,
# etc. by default); clang 14's default is the same MVP set.
# -ffreestanding implies -fno-builtin, so clang does not turn loops into
# memset/memcpy calls (which would become unresolved imports).
CFLAGS=(--target=wasm32 -mcpu=mvp -O2 -ffreestanding -nostdlib
  -Wall -Wextra -Werror)
LDFLAGS=(-Wl,--no-entry -Wl,--export=run -Wl,--stack-first
  -Wl,-z,stack-size=65536 -Wl,--strip-debug)

# Programs that use the C library (malloc, qsort, string functions) are linked
# against wasi-libc (Debian: apt-get install -y wasi-libc) as a reactor (no
# main, no _start). They still import nothing: none of the library functions
# they call reaches a WASI call. Their memory grows with malloc on the first
# call; later calls reuse it.
LIBC_PROGRAMS=" libsort words bintree "
LIBC_CFLAGS=(--target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Werror)
LIBC_LDFLAGS=(-Wl,--export=run -Wl,--stack-first -Wl,-z,stack-size=65536 -Wl,--strip-debug)

PROGRAMS=()
for c in *.c; do PROGRAMS+=("${c%.c}"); done

for p in "${PROGRAMS[@]}"; do
  if [[ $LIBC_PROGRAMS == *" $p "* ]]; then
    "$CLANG" "${LIBC_CFLAGS[@]}" "${LIBC_LDFLAGS[@]}" -o "$p.wasm" "$p.c"
  else
    "$CLANG" "${CFLAGS[@]}" "${LDFLAGS[@]}" -o "$p.wasm" "$p.c"
  fi
done

# Every module: valid, zero imports, exports a function `run`.
node --input-type=module -e '
import fs from "node:fs";
let bad = 0;
for (const name of process.argv.slice(1)) {
  const bytes = fs.readFileSync(`${name}.wasm`);
  const mod = new WebAssembly.Module(bytes);
  const imports = WebAssembly.Module.imports(mod);
  const exports = WebAssembly.Module.exports(mod);
  const run = exports.find((e) => e.name === "run" && e.kind === "function");
  const problems = [];
  if (imports.length) problems.push(`imports: ${imports.map((i) => `${i.module}.${i.name}`).join(", ")}`);
  if (!run) problems.push("no exported function run");
  if (problems.length) bad++;
  console.log(`${name}.wasm  ${String(bytes.length).padStart(5)} bytes  exports: ${exports.map((e) => e.name).join(",")}` +
    (problems.length ? `  PROBLEM: ${problems.join("; ")}` : ""));
}
process.exit(bad ? 1 : 0);
' "${PROGRAMS[@]}"

[[ $CHECK == 1 ]] || exit 0

# ---------------------------------------------------------------- --check
CC="${CC:-}"
if [[ -z $CC ]]; then
  if command -v gcc >/dev/null 2>&1; then CC=gcc; elif command -v cc >/dev/null 2>&1; then CC=cc;
  else echo "build.sh --check: no gcc/cc found" >&2; exit 1; fi
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Runs <name>.wasm's run(arg) in node; prints the result as the service
# encodes it (i32 as a number, i64 as a decimal string -> printed bare here).
wasm_run() {
  node -e '
const fs = require("node:fs");
const inst = new WebAssembly.Instance(new WebAssembly.Module(fs.readFileSync(process.argv[1])), {});
console.log(String(inst.exports.run(Number(process.argv[2]))));
' "$1.wasm" "$2"
}

# name args smallArgs expect smallExpect, one line per program, from programs.json
mapfile -t ENTRIES < <(node -e '
const list = JSON.parse(require("node:fs").readFileSync("programs.json", "utf8"));
for (const p of list) console.log([p.name, p.args[0], p.smallArgs[0], String(p.expect), String(p.smallExpect)].join(" "));
')

fail=0
for entry in "${ENTRIES[@]}"; do
  read -r name big small expect small_expect <<<"$entry"
  "$CC" -O2 -DNATIVE -ffp-contract=off -Wall -Wextra -o "$TMP/$name" "$name.c" -lm
  for n in "$small" "$big"; do
    native="$("$TMP/$name" "$n")"
    wasm="$(wasm_run "$name" "$n")"
    status=ok
    if [[ $native != "$wasm" ]]; then status="MISMATCH native=$native wasm=$wasm"; fi
    want="$expect"; [[ $n == "$big" ]] || want="$small_expect"
    if [[ $wasm != "$want" ]]; then status="MISMATCH vs programs.json: expected $want (wasm=$wasm)"; fi
    [[ $status == ok ]] || fail=1
    printf '%-8s run(%s) = %s  %s\n' "$name" "$n" "$wasm" "$status"
  done
done

# Independent reference checks for the hash programs (stream = LCG bytes).
if [[ -x $TMP/sha256 ]] && command -v sha256sum >/dev/null 2>&1; then
  for kib in 0 1 64; do
    ours="$("$TMP/sha256" "$kib" --hex)"
    ref="$("$TMP/sha256" --dump "$kib" | sha256sum | cut -d' ' -f1)"
    if [[ $ours == "$ref" ]]; then echo "sha256   ${kib} KiB digest matches sha256sum"; else
      echo "sha256   ${kib} KiB digest MISMATCH: ours=$ours sha256sum=$ref"; fail=1; fi
  done
fi
if [[ -x $TMP/crc32 && -x $TMP/sha256 ]] && command -v python3 >/dev/null 2>&1; then
  for kib in 1 64; do
    ours="$("$TMP/crc32" "$kib")"
    ref="$("$TMP/sha256" --dump "$kib" | python3 -c 'import sys, zlib; c = zlib.crc32(sys.stdin.buffer.read()); print(c - (1 << 32) if c >= 1 << 31 else c)')"
    if [[ $ours == "$ref" ]]; then echo "crc32    ${kib} KiB matches python zlib.crc32"; else
      echo "crc32    ${kib} KiB MISMATCH: ours=$ours zlib=$ref"; fail=1; fi
  done
fi

if [[ $fail == 0 ]]; then echo "check: all OK"; else echo "check: FAILED" >&2; exit 1; fi
