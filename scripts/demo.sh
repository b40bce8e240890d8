#!/usr/bin/env bash
# The main job: an emulated arm64 device booted with the packaged tetherd-linux-arm64, this host
# paired with it, and ARM programs from a host sysroot run on it (scripts/demo-arm64.ts). Sets up
# what it needs first: the Debian packages and the device's and sysroot's files
# (scripts/ci-packages.sh, once) and the executable (npm run package). `scripts/demo.sh local`
# runs on a same-arch device in a network namespace instead (scripts/demo-local.sh).
# Needs root (apt-get, namespaces). Leaves nothing behind but the caches.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (apt-get, namespaces)" >&2; exit 1; }
case "${1:-arm64}" in
  arm64) ;;
  local) exec scripts/demo-local.sh ;;
  *) echo "usage: scripts/demo.sh [arm64|local]" >&2; exit 2 ;;
esac
export PATH="$PWD/node_modules/.bin:$PATH"
sh scripts/ci-packages.sh --if-changed
[ -f dist/tether.mjs ] || npm run --silent build
echo "== building dist/release/tetherd-linux-arm64 (npm run package)"
node scripts/package.ts --targets tetherd-linux-arm64
exec node scripts/demo-arm64.ts
