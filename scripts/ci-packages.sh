#!/bin/sh
# Debian packages the test device (test/lib/device.ts), its delay line
# (scripts/delayline.c), the OpenSSH baseline (test/lib/sshd.ts) and the
# syscall-table check (the kernel headers of each ABI, test/unit/arch-syscalls) and the
# struct and register layout check (each ABI's compiler, test/unit/arch-abi; i386 is gcc -m32,
# which compiles to assembly without gcc-multilib) need, and what the view tests build and run
# through tether: musl-tools (a program whose loader and libc exist only on the host), python3,
# make and the GNU hello sources (test/integration/build.test.ts; Debian's source package,
# fetched with a deb-src entry of its own into $HELLO_DIR); npm run package's cross-compiled
# addon, qemu-user and qemu-system to start the executables it makes, and systemd-analyze for
# the unit example (test/integration/release.test.ts).
# Runs as root without stdin on a fresh Debian 12; safe to run again.
# Quiet unless it fails, then apt's output is shown.
set -eu
export DEBIAN_FRONTEND=noninteractive
HELLO_DIR=${HELLO_DIR:-/var/cache/tether-test/hello}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# apt-get source needs a deb-src entry; a separate list keeps the machine's own untouched.
fetch_hello() {
  [ -f "$HELLO_DIR/hello_2.10.orig.tar.gz" ] && return 0
  src=/etc/apt/sources.list.d/tether-hello-src.sources
  # The same archive the machine installs from, as deb-src.
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ { print $2; exit }')
  [ -n "$uri" ] || uri=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list)
  . /etc/os-release
  printf '%s\n' 'Types: deb-src' "URIs: $uri" "Suites: $VERSION_CODENAME" 'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$src"
  apt-get update -qq
  mkdir -p "$HELLO_DIR"
  (cd "$HELLO_DIR" && apt-get source --download-only hello=2.10-3)
  rm -f "$src"
  apt-get update -qq
}
# The emulated arm64 device (test/lib/arm64-device.ts): Debian's arm64 kernel, busybox and the
# libraries the packaged tetherd links, unpacked into $ARM64_DIR/device; and a target sysroot
# of Debian arm64 packages (coreutils, bash, glibc) in $ARM64_DIR/sysroot, which the device's
# own root never holds.
ARM64_DIR=${ARM64_DIR:-/var/cache/tether-test/arm64}
DEVICE_PKGS="busybox-static libc6 libstdc++6 libgcc-s1"
SYSROOT_PKGS="libc6 coreutils bash dash libtinfo6 libacl1 libattr1 libgmp10 libselinux1 libpcre2-8-0"
fetch_arm64() {
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-/ { sub(/:arm64$/, "", $2); print $2; exit }')
  [ -n "$kpkg" ] || return 1
  for part in device sysroot; do
    if [ $part = device ]; then pkgs="$kpkg $DEVICE_PKGS"; else pkgs=$SYSROOT_PKGS; fi
    [ -f "$ARM64_DIR/$part/.done" ] && continue
    rm -rf "$ARM64_DIR/$part" "$ARM64_DIR/debs-$part"
    mkdir -p "$ARM64_DIR/$part" "$ARM64_DIR/debs-$part"
    (cd "$ARM64_DIR/debs-$part" && for p in $pkgs; do apt-get download -qq "$p:arm64"; done)
    for d in "$ARM64_DIR/debs-$part"/*.deb; do dpkg -x "$d" "$ARM64_DIR/$part"; done
    echo "${kpkg#linux-image-}" >"$ARM64_DIR/$part/.kver"
    touch "$ARM64_DIR/$part/.done"
  done
}
if ! {
  apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends \
      iproute2 iptables iputils-ping procps \
      openssh-server openssh-client \
      gcc libc6-dev libnetfilter-queue-dev \
      linux-libc-dev linux-libc-dev-arm64-cross linux-libc-dev-armhf-cross \
      gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf \
      qemu-user-static libstdc++6-arm64-cross libstdc++6-armhf-cross libatomic1-armhf-cross \
      qemu-system-arm cpio systemd \
      musl-tools python3 make dpkg-dev &&
    fetch_hello &&
    fetch_arm64
} >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
