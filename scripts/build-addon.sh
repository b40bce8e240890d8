#!/bin/sh
# Builds the Node-API addons without node-gyp or downloads:
#   daemon/native/*.c       -> build/<arch>/tether.node  (tetherd: spawn, pty, waitpid, ptrace)
#   client/native/*.c       -> build/<arch>/tether-client.node (fds from a launcher, openat2)
#   CC=...      compiler (default cc); a cross compiler for another device arch
#   OUTDIR=...  output directory (default build/<node's process.arch>)
#   CFLAGS=...  LDFLAGS=...  extra flags, e.g. --sysroot for cross builds
set -eu
cd "$(dirname "$0")/.."

if [ -z "${OUTDIR:-}" ]; then
  # The project's Node when installed; any node reports the same host arch.
  node=node_modules/.bin/node
  [ -x "$node" ] || node=node
  OUTDIR="build/$("$node" -p process.arch)"
fi
mkdir -p "$OUTDIR"

# Each addon is every .c file of its directory.
for dir in daemon/native client/native; do
  case $dir in daemon/*) name=tether ;; *) name=tether-client ;; esac
  out="$OUTDIR/$name.node"
  # Link to a temporary name and rename, so a running process's mapped copy is never rewritten.
  tmp="$out.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # shellcheck disable=SC2086 # CFLAGS/LDFLAGS are word lists
  "${CC:-cc}" -O2 -Wall -Wextra -shared -fPIC -I node_modules/node-api-headers/include \
    ${CFLAGS:-} -o "$tmp" "$dir"/*.c ${LDFLAGS:-}
  mv -f "$tmp" "$out"
done
