#!/usr/bin/env bash
# Rebuilds every examples/*.wasm from its .wat with wabt's wat2wasm (npm ci installs it).
set -euo pipefail
cd "$(dirname "$0")"
for wat in *.wat; do
  ../node_modules/.bin/wat2wasm "$wat" -o "${wat%.wat}.wasm"
done
