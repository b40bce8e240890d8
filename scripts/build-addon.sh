#!/bin/sh
# Builds the Node-API addon daemon/native/tether.c without node-gyp or downloads.
#   CC=...      compiler (default cc); a cross compiler for another device arch
#   OUT=...     output file (default build/<node's process.arch>/tether.node)
#   CFLAGS=...  LDFLAGS=...  extra flags, e.g. --sysroot for cross builds
set -eu
cd "$(dirname "$0")/.."

if [ -z "${OUT:-}" ]; then
  # The project's Node when installed; any node reports the same host arch.
  node=node_modules/.bin/node
  [ -x "$node" ] || node=node
  OUT="build/$("$node" -p process.arch)/tether.node"
fi
mkdir -p "$(dirname "$OUT")"

# Link to a temporary name and rename, so a running daemon's mapped copy is never rewritten.
tmp="$OUT.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# shellcheck disable=SC2086 # CFLAGS/LDFLAGS are word lists
"${CC:-cc}" -O2 -Wall -Wextra -shared -fPIC -I node_modules/node-api-headers/include \
  ${CFLAGS:-} -o "$tmp" daemon/native/tether.c ${LDFLAGS:-}
mv -f "$tmp" "$OUT"
echo "built $OUT"
