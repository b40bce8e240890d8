#!/bin/sh
# Every Debian package the build, the demo (scripts/demo.sh) and the tests use, each named here:
# nothing comes from Recommends (apt runs with --no-install-recommends) or from what a machine
# happens to have. test/integration/ci-packages.test.ts runs this on a fresh Debian 12 minbase
# root and checks that everything builds and every program the tests start is there.
# - the test device (test/lib/device.ts: iproute2, iptables, kmod for their modules), its delay
#   line (scripts/delayline.c: libnetfilter-queue-dev), the OpenSSH baseline (test/lib/sshd.ts)
# - the syscall-table check (Debian 13's kernel headers, fetched below) and the
#   struct and register layout check (each ABI's compiler, test/unit/arch-abi; i386 is gcc -m32,
#   which compiles to assembly without gcc-multilib)
# - what the view tests build and run through tether: musl-tools (a program whose loader and libc
#   exist only on the host), python3, bc, make and the GNU hello sources
#   (test/integration/build.test.ts; Debian's source package, fetched with a deb-src entry of its
#   own into $HELLO_DIR)
# - npm run package: the addon and launcher for each target (gcc and the cross compilers, with
#   their C libraries' headers, libc6-dev-*-cross, only Recommends of the compilers), binutils
#   of each to strip, qemu-user and qemu-system to start the executables it makes, systemd-analyze
#   for the unit example (test/integration/release.test.ts), podman, runc and their network
#   plugins and mmdebstrap for the Dockerfile test
# Node.js and npm are not here: README's commands start with npm, and Node 24 itself comes from
# npm (the devDependency `node`).
# Runs as root without stdin on a fresh Debian 12; safe to run again.
# Quiet unless it fails, then apt's output is shown.
#   --if-changed   do nothing if this version of the script succeeded here before (demo.sh and
#                  test.sh: a changed list reaches a machine that ran an older one)
set -eu
export DEBIAN_FRONTEND=noninteractive
HELLO_DIR=${HELLO_DIR:-/var/cache/tether-test/hello}
ARM_CACHE=${ARM_CACHE:-/var/cache/tether-test}
stamp=$ARM_CACHE/ci-packages.sha256
sum=$(sha256sum <"$0" | cut -d' ' -f1)
if [ "${1:-}" = --if-changed ]; then
  [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && exit 0
  echo "== installing Debian packages and the ARM devices' files (scripts/ci-packages.sh; minutes, once)"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# A mirror in the middle of a sync can serve one bad index (seen: bookworm-security's armhf
# Packages.xz). apt then goes on with the others; what is really missing fails the install or
# the download that needs it, with apt's message.
apt_update() {
  apt-get update -qq || echo "ci-packages: apt-get update failed for some index; going on" >&2
}

# The Debian archive the machine installs from (its mirror, in either sources format).
debian_uri() {
  apt-get indextargets --format '$(REPO_URI)' 'Origin: Debian' 'Identifier: Packages' |
    grep -v -e '-security' | head -n 1
}
# apt-get source needs a deb-src entry; a separate list keeps the machine's own untouched.
fetch_hello() {
  [ -f "$HELLO_DIR/hello_2.10.orig.tar.gz" ] && return 0
  src=/etc/apt/sources.list.d/tether-hello-src.sources
  . /etc/os-release
  printf '%s\n' 'Types: deb-src' "URIs: $(debian_uri)" "Suites: $VERSION_CODENAME" 'Components: main' \
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >"$src"
  apt_update
  mkdir -p "$HELLO_DIR"
  (cd "$HELLO_DIR" && apt-get source --download-only hello=2.10-3)
  rm -f "$src"
  apt_update
}
# The emulated ARM devices (test/lib/arm-device.ts): Debian 12's kernel, busybox and the
# libraries the packaged tetherd links (glibc 2.36), unpacked into $ARM_CACHE/<arch>/device; and
# a target sysroot of Debian packages (coreutils, bash, dash; libstdc++ for the single-file
# tether client, a Node executable) in $ARM_CACHE/<arch>/sysroot,
# which the device's own root never holds, with Debian 13's glibc (2.41): a program there runs
# with the sysroot's C library, not the device's. <arch> is arm64 (linux-image-arm64) or armv7
# (armhf, linux-image-armmp-lpae; armv7 Node also needs libatomic).
SYSROOT_PKGS="coreutils bash dash libtinfo6 libacl1 libattr1 libgmp10 libselinux1 libpcre2-8-0 libstdc++6 libgcc-s1"
SYSROOT_TRIXIE_PKGS="libc6"
# apt for Debian 13 from a configuration of its own: the machine's sources and state untouched.
TRIXIE_APT=$ARM_CACHE/apt-trixie
trixie_apt() {
  APT_CONFIG=$TRIXIE_APT/apt.conf apt-get "$@"
}
setup_trixie_apt() {
  a=$TRIXIE_APT
  mkdir -p "$a/state/lists/partial" "$a/cache/archives/partial" "$a/etc/sources.list.d" \
    "$a/etc/preferences.d"
  [ -f "$a/state/status" ] || : >"$a/state/status"
  echo 'deb [arch=arm64,armhf signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]' \
    "$(debian_uri) trixie main" >"$a/etc/sources.list"
  cat >"$a/apt.conf" <<EOF
Dir::State "$a/state";
Dir::State::status "$a/state/status";
Dir::Cache "$a/cache";
Dir::Etc::SourceList "$a/etc/sources.list";
Dir::Etc::SourceParts "$a/etc/sources.list.d";
Dir::Etc::PreferencesParts "$a/etc/preferences.d";
APT::Architectures { "arm64"; "armhf"; };
EOF
  trixie_apt update -qq
}
# Debian 13's linux-libc-dev (Linux 6.12, every architecture's uapi headers in one package),
# unpacked for the syscall tables (arch/gen-syscalls.ts, test/unit/arch-syscalls.test.ts).
KERNEL_HEADERS=$ARM_CACHE/linux-libc-dev-trixie
fetch_kernel_headers() {
  ver=$(APT_CONFIG=$TRIXIE_APT/apt.conf apt-cache show --no-all-versions linux-libc-dev |
    awk '/^Version:/ { print $2; exit }')
  [ -n "$ver" ] || return 1
  [ "$(cat "$KERNEL_HEADERS/.source" 2>/dev/null)" = "linux-libc-dev $ver (Debian 13)" ] && return 0
  rm -rf "$KERNEL_HEADERS" "$KERNEL_HEADERS.debs"
  mkdir -p "$KERNEL_HEADERS.debs"
  (cd "$KERNEL_HEADERS.debs" && trixie_apt download -qq "linux-libc-dev=$ver") || return 1
  dpkg -x "$KERNEL_HEADERS.debs"/linux-libc-dev_*.deb "$KERNEL_HEADERS"
  rm -rf "$KERNEL_HEADERS.debs"
  echo "linux-libc-dev $ver (Debian 13)" >"$KERNEL_HEADERS/.source"
}
# Debian 13's packages install into /usr only: the sysroot gets the merged-/usr layout (/bin,
# /sbin and /lib links into /usr, as in Debian 12 systems too), and Debian 12's files move there.
usrmerge() {
  for d in bin sbin lib; do
    [ -L "$1/$d" ] && continue
    mkdir -p "$1/usr/$d"
    if [ -d "$1/$d" ]; then cp -a "$1/$d/." "$1/usr/$d/" && rm -rf "${1:?}/$d"; fi
    ln -s "usr/$d" "$1/$d"
  done
}
# fetch_arm <dir name> <Debian architecture> <kernel metapackage> <device packages>
fetch_arm() {
  dir=$ARM_CACHE/$1 arch=$2
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch"
    apt_update
  fi
  kpkg=$(apt-cache depends "$3:$arch" | awk -v a=":$arch" '/Depends: linux-image-/ { sub(a "$", "", $2); print $2; exit }')
  [ -n "$kpkg" ] || return 1
  for part in device sysroot; do
    if [ $part = device ]; then
      pkgs="$kpkg $4" trixie=""
    else
      pkgs=$SYSROOT_PKGS trixie=$SYSROOT_TRIXIE_PKGS
    fi
    # .done names what was unpacked: a changed list unpacks again.
    [ "$(cat "$dir/$part/.done" 2>/dev/null)" = "$pkgs trixie: $trixie" ] && continue
    rm -rf "$dir/$part" "$dir/debs-$part"
    mkdir -p "$dir/$part" "$dir/debs-$part"
    (
      cd "$dir/debs-$part" || exit 1
      for p in $pkgs; do apt-get download -qq "$p:$arch" || exit 1; done
      for p in $trixie; do trixie_apt download -qq "$p:$arch" || exit 1; done
    ) || return 1
    for d in "$dir/debs-$part"/*.deb; do dpkg -x "$d" "$dir/$part"; done
    [ $part = device ] || usrmerge "$dir/$part"
    echo "${kpkg#linux-image-}" >"$dir/$part/.kver"
    echo "$pkgs trixie: $trixie" >"$dir/$part/.done"
  done
}
if ! {
  apt_update &&
    apt-get install -y -qq --no-install-recommends \
      iproute2 iptables kmod iputils-ping procps \
      openssh-server openssh-client \
      gcc libc6-dev binutils libnetfilter-queue-dev \
      linux-libc-dev linux-libc-dev-arm64-cross linux-libc-dev-armhf-cross \
      gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross \
      binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf \
      qemu-user-static libstdc++6-arm64-cross libstdc++6-armhf-cross libatomic1-armhf-cross \
      qemu-system-arm cpio systemd curl podman runc containernetworking-plugins mmdebstrap \
      musl-tools python3 bc make dpkg-dev &&
    fetch_hello &&
    setup_trixie_apt &&
    fetch_kernel_headers &&
    fetch_arm arm64 arm64 linux-image-arm64 "busybox-static libc6 libstdc++6 libgcc-s1" &&
    fetch_arm armv7 armhf linux-image-armmp-lpae "busybox-static libc6 libstdc++6 libgcc-s1 libatomic1"
} >"$log" 2>&1; then
  cat "$log" >&2
  exit 1
fi
echo "$sum" >"$stamp"
