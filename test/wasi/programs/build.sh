#!/bin/sh
# Rebuilds the committed WASI test programs (*.wasm) from their C sources with Debian's clang and
# wasi-libc. Needs: apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32
# Debian installs wasi-libc under /usr (headers in /usr/include/wasm32-wasi, libraries in
# /usr/lib/wasm32-wasi), so the sysroot is /usr; a wasi-sdk style /usr/share/wasi-sysroot or
# $WASI_SYSROOT is used instead when present. The committed binaries were built with Debian 12's
# clang 14.0.6 and wasi-libc 0.0~git20220510.9886d3d-2; the build is reproducible (same bytes).
set -eu
cd "$(dirname "$0")"
if [ -n "${WASI_SYSROOT:-}" ]; then
  sysroot=$WASI_SYSROOT
elif [ -d /usr/share/wasi-sysroot ]; then
  sysroot=/usr/share/wasi-sysroot
else
  sysroot=/usr
fi
for src in *.c; do
  out=${src%.c}.wasm
  clang --target=wasm32-wasi --sysroot="$sysroot" -O2 -Wall -Wextra -Werror -Wl,--strip-all -o "$out" "$src"
  echo "built $out ($(wc -c < "$out") bytes)"
done
