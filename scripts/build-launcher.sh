#!/bin/sh
# Builds the client's native launcher client/launcher/tether-launch.c into
# build/tether-launch (the host's own architecture: the client runs here).
set -eu
cd "$(dirname "$0")/.."
mkdir -p build
tmp="build/tether-launch.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"${CC:-cc}" -O2 -Wall -Wextra -o "$tmp" client/launcher/tether-launch.c
mv -f "$tmp" build/tether-launch
