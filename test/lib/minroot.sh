#!/bin/sh
# Runs PROGRAM as the only inhabitant of a minimal root: a tmpfs holding the
# given host files (read-only) and directories (read-write) at their own
# paths, a generated /etc with root in passwd and group, /proc, a fresh
# sysfs, a small /dev with its own devpts, and an empty /tmp. Must run in a
# private mount namespace of its own (unshare --mount --propagation private):
# every mount made here dies with that namespace's last process.
#
#   minroot.sh MOUNTPOINT [-f FILE]... [-d DIR]... -- PROGRAM [ARG]...
set -eu
mnt=$1
shift
mkdir -p "$mnt"
mount -t tmpfs -o mode=0755 minroot "$mnt"
mkdir "$mnt/proc" "$mnt/sys" "$mnt/dev" "$mnt/tmp" "$mnt/etc"
mount -t proc -o nosuid,nodev,noexec proc "$mnt/proc"
mount -t sysfs -o nosuid,nodev,noexec sysfs "$mnt/sys"

# Copies of the host's nodes (cp -a makes them with mknod): one process, not six.
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "$mnt/dev/"
mkdir "$mnt/dev/pts" "$mnt/dev/shm"
# A devpts instance of our own: ptys opened here are numbered and listed here only.
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$mnt/dev/pts"
ln -s pts/ptmx "$mnt/dev/ptmx"
ln -s /proc/self/fd "$mnt/dev/fd"
ln -s /proc/self/fd/0 "$mnt/dev/stdin"
ln -s /proc/self/fd/1 "$mnt/dev/stdout"
ln -s /proc/self/fd/2 "$mnt/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$mnt/dev/shm"
mount -t tmpfs -o mode=1777 tmp "$mnt/tmp"

# --user NAME is looked up in the device's own /etc/passwd and /etc/group.
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$mnt/etc/passwd"
printf 'root:x:0:\n' >"$mnt/etc/group"

while [ $# -gt 0 ]; do
  case $1 in
  -f)
    mkdir -p "$mnt${2%/*}"
    : >"$mnt$2"
    mount -o bind,ro "$2" "$mnt$2"
    shift 2
    ;;
  -d)
    mkdir -p "$mnt$2"
    mount --bind "$2" "$mnt$2"
    shift 2
    ;;
  --)
    shift
    break
    ;;
  *)
    echo "minroot.sh: unknown option $1" >&2
    exit 2
    ;;
  esac
done

# pivot_root(".", ".") stacks the old root on the new one, so that
# umount2(".", MNT_DETACH) drops it; both must happen in one process, as no
# umount binary is left to run after the pivot. perl (Essential in Debian)
# makes the two calls and execs PROGRAM from the new root.
case $(uname -m) in
x86_64) nr='155 166' ;;
aarch64 | riscv64) nr='41 39' ;;
arm*) nr='218 52' ;;
i?86) nr='217 52' ;;
*)
  echo "minroot.sh: no pivot_root/umount2 numbers for $(uname -m)" >&2
  exit 2
  ;;
esac
# They name host files this root lacks (tap's loaders, a CA bundle): Node
# would fail to start, or warn at every start.
unset NODE_OPTIONS NODE_EXTRA_CA_CERTS
cd "$mnt"
# shellcheck disable=SC2086 # two numbers, split on purpose
exec perl -e '
  my ($pivot, $umount) = splice(@ARGV, 0, 2);
  my $dot = ".";  # syscall() passes a variable, never a literal, as a pointer
  syscall($pivot, $dot, $dot) == 0 or die "minroot: pivot_root: $!\n";
  syscall($umount, $dot, 2) == 0 or die "minroot: umount2: $!\n";  # 2: MNT_DETACH
  chdir "/" or die "minroot: chdir /: $!\n";
  exec { $ARGV[0] } @ARGV or die "minroot: exec $ARGV[0]: $!\n";
' $nr "$@"
