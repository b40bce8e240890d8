#!/bin/sh
# Builds build/delayline (the test device's packet delay line). Installs
# nothing: scripts/ci-packages.sh brings gcc and libnetfilter-queue-dev.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/scripts/delayline.c
out=$root/build/delayline
# Parallel test files may all ask for it: skip when up to date, and rename into place.
if [ -x "$out" ] && [ ! "$src" -nt "$out" ]; then exit 0; fi
mkdir -p "$root/build"
tmp=$out.$$
gcc -O2 -Wall -Wextra -Werror -o "$tmp" "$src" -lnetfilter_queue -lnfnetlink
mv -f "$tmp" "$out"
