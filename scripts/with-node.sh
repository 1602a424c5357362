#!/usr/bin/env bash
# Runs an npm script of this project on a supported Node.js line, installing what it needs:
#
#   scripts/with-node.sh start      # npm ci, then npm start (the service on its embedded defaults)
#   scripts/with-node.sh test       # npm ci, then npm test (the whole suite)
#   scripts/with-node.sh SCRIPT [ARGS...]
#
# The supported lines are 22 (from 22.13) and 24 (package.json "engines"; .npmrc has
# engine-strict=true, so npm refuses to install on any other). When the machine's `node` is one of
# them it is used; otherwise (say the machine ships Node 20) the npm package node@<line> is
# installed from the npm registry into a cache outside the project (~/.cache/wasmbox/node/<line>)
# and put first on PATH.
#
# Environment:
#   WASMBOX_NODE        the line to use (22 or 24), installed if need be, whatever the machine has
#   WASMBOX_NODE_CACHE  where installed Node lines are kept (default ~/.cache/wasmbox/node)
#   WASMBOX_SKIP_CI=1   skip `npm ci` (dependencies already installed under this line)
set -euo pipefail

SUPPORTED_LINES=(22 24)
# Installed when the machine's Node is not a supported line: the newest line with the longest
# support ahead of it that the suite is verified on.
DEFAULT_LINE=24

say() { printf 'with-node: %s\n' "$*" >&2; }

if [ $# -lt 1 ]; then
  say "usage: scripts/with-node.sh SCRIPT [ARGS...]   (SCRIPT is an npm script: start, test, conformance, ...)"
  exit 64
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${WASMBOX_NODE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/wasmbox/node}

is_supported() {
  local line
  for line in "${SUPPORTED_LINES[@]}"; do [ "$1" = "$line" ] && return 0; done
  return 1
}

# The major version of the node on PATH, or nothing. A 22 before 22.13 (below "engines") counts
# as unsupported: it answers "22-old".
machine_line() {
  command -v node >/dev/null 2>&1 || return 0
  node -p 'const [major, minor] = process.versions.node.split(".").map(Number); major === 22 && minor < 13 ? "22-old" : String(major)' 2>/dev/null || true
}

# Installs node@<line> into the cache (once) and prints its bin directory.
install_line() {
  local line=$1 prefix="$CACHE/$1"
  if [ ! -x "$prefix/node_modules/.bin/node" ]; then
    say "installing Node $line (npm package node@$line) into $prefix"
    mkdir -p "$prefix"
    # From inside the cache, so this project's .npmrc (engine-strict) does not apply to it.
    (cd "$prefix" && npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node@$line" >&2)
    [ -x "$prefix/node_modules/.bin/node" ] || { say "could not install node@$line from the npm registry"; exit 69; }
  fi
  printf '%s\n' "$prefix/node_modules/.bin"
}

wanted=${WASMBOX_NODE:-}
if [ -n "$wanted" ]; then
  is_supported "$wanted" || { say "WASMBOX_NODE=$wanted is not a supported line (${SUPPORTED_LINES[*]})"; exit 64; }
  if [ "$(machine_line)" != "$wanted" ]; then PATH="$(install_line "$wanted"):$PATH"; fi
else
  current=$(machine_line)
  if ! is_supported "${current:-none}"; then
    say "the machine's Node ($(node --version 2>/dev/null || echo 'not found')) is not a supported line (22 from 22.13, 24); using Node $DEFAULT_LINE"
    PATH="$(install_line "$DEFAULT_LINE"):$PATH"
  fi
fi
export PATH
say "node $(node --version) ($(command -v node))"

cd "$ROOT"
if [ "${WASMBOX_SKIP_CI:-}" != 1 ]; then
  npm ci --no-audit --no-fund
fi
script=$1
shift
# exec: npm becomes this process, so a signal sent to it (Ctrl-C, SIGTERM) reaches npm, which
# passes it on to the script's process.
exec npm run "$script" -- "$@"
