#!/bin/sh
# Debian packages the test device (test/lib/device.ts), its delay line
# (scripts/delayline.c), the OpenSSH baseline (test/lib/sshd.ts) and the
# syscall-table check (the kernel headers of each ABI, test/unit/arch-syscalls) and the
# struct and register layout check (each ABI's compiler, test/unit/arch-abi; i386 is gcc -m32,
# which compiles to assembly without gcc-multilib) need.
# Runs as root without stdin on a fresh Debian 12; safe to run again.
# Quiet unless it fails, then apt's output is shown.
set -eu
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! {
  apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends \
      iproute2 iptables iputils-ping procps \
      openssh-server openssh-client \
      gcc libc6-dev libnetfilter-queue-dev \
      linux-libc-dev linux-libc-dev-arm64-cross linux-libc-dev-armhf-cross \
      gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf
} >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
