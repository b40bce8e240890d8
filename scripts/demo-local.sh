#!/usr/bin/env bash
# The main job on a same-arch test device, without qemu (scripts/demo.sh
# local): a network namespace "tether-demo" joined to this host by a veth
# link, tetherd listening in it over TLS, this host paired with it through
# the one-time code, and programs run on it with `tether run`. Needs root
# (namespaces). Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root for the network namespace" >&2; exit 1; }
[ -f dist/tether.mjs ] || npm run --silent build

ns=tether-demo
work=$(mktemp -d)
export TETHER_HOME=$work/client
cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  ip link del tdemo-h 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup_quiet() { ip netns del "$ns" 2>/dev/null || true; ip link del tdemo-h 2>/dev/null || true; }
cleanup_quiet

ip netns add "$ns"
ip link add tdemo-h type veth peer name tdemo-d
ip link set tdemo-d netns "$ns"
ip addr add 10.254.77.1/30 dev tdemo-h
ip link set tdemo-h up
ip -n "$ns" addr add 10.254.77.2/30 dev tdemo-d
ip -n "$ns" link set tdemo-d up
ip -n "$ns" link set lo up

echo "== starting tetherd on the device (10.254.77.2:1202), pairing open"
ip netns exec "$ns" bin/tetherd --listen 10.254.77.2:1202 --state "$work/device" --user "$(id -un)" --pair \
  --log-format json 2>"$work/tetherd.log" &
for _ in $(seq 100); do grep -q 'listening on' "$work/tetherd.log" 2>/dev/null && break; sleep 0.1; done
code=$(sed -n 's/^tetherd: pairing code \([A-Z0-9-]*\).*/\1/p' "$work/tetherd.log")

echo "== pairing this host with the device (code $code)"
bin/tether pair demo 10.254.77.2 --code "$code"

echo "== tether run -d demo uname -a"
bin/tether run -d demo uname -a
echo "== exit status, stdin and an extra fd"
echo "hello from the host" > "$work/in.txt"
bin/tether run -d demo sh -c 'read line; echo "device read: $line"; echo "to fd 5" >&5; exit 3' <"$work/in.txt" 5>"$work/out5.txt" || echo "exit status: $?"
echo "fd 5 on the host got: $(cat "$work/out5.txt")"
echo "== the view: the device runs a script that exists only in this host's files"
printf '#!/bin/sh\necho "$0 runs on the device; its cwd is $(pwd)"\necho "written on the device" >result.txt\n' >"$work/hello.sh"
chmod +x "$work/hello.sh"
bin/tether run -d demo -C "$work" ./hello.sh
echo "result.txt on the host: $(cat "$work/result.txt")"
