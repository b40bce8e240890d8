#!/bin/sh
# The test command: build, type-check, lint, then every tap test, closing
# with one "N passed, N failed, N skipped" line counted over all assertions.
set -u
cd "$(dirname "$0")/.."
# The Debian packages the tests use, on a machine that has not got this version of the list yet.
if [ "$(id -u)" -eq 0 ]; then
  sh scripts/ci-packages.sh --if-changed || exit 1
else
  echo "test: not root: the integration tests need root and scripts/ci-packages.sh's packages" >&2
fi
npm run --silent build || exit 1
npx tsc -p tsconfig.json || exit 1
npx biome check . || exit 1
log=$(mktemp)
rcfile=$(mktemp)
{
  # Globs, not directories: tap expands a directory by its plugins' extensions, and the
  # TypeScript plugin is off (Node strips the types itself).
  npx tap --reporter=tap "$@" 'test/unit/*.test.ts' 'test/integration/*.test.ts'
  echo $? >"$rcfile"
} 2>&1 | tee "$log"
rc=$(cat "$rcfile")
summary=$(grep -a -E '^# \{ total' "$log" | tail -n 1)
rm -f "$log" "$rcfile"
field() { echo "$summary" | sed -n "s/.*$1: \([0-9]*\).*/\1/p"; }
pass=$(field pass)
fail=$(field fail)
skip=$(field skip)
echo "${pass:-0} passed, ${fail:-0} failed, ${skip:-0} skipped"
[ "$rc" -eq 0 ] && [ "${pass:-0}" -gt 0 ]
