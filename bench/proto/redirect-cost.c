// The floor of each redirection mechanism tetherd could use (docs/hot-path.md): a child makes
// N newfstatat() calls of a path the supervisor "knows", and the supervisor answers each from
// memory by writing a struct stat into the child, in C, with no JavaScript:
//   native    no filter, the kernel answers (the device file exists)
//   ptrace    SECCOMP_RET_TRACE; the tracer skips the call and sets its result (today's shape)
//   unotify   SECCOMP_RET_USER_NOTIF; a supervisor answers through the listener fd
//   unotify-sync  the same with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6)
//   MODE-spin the supervisor busy-polls (waitpid WNOHANG, poll 0) instead of sleeping
//   open-native / open-unotify  open()+close(): under unotify the supervisor opens the file
//             and installs it with SECCOMP_IOCTL_NOTIF_ADDFD | SECCOMP_ADDFD_FLAG_SEND
// Usage: redirect-cost MODE N. Prints "MODE ns_per_call".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <elf.h>

#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#else
#error "x86_64 or aarch64"
#endif

static const char KNOWN[] = "/tether-known-path";
static const char *real_file = "/proc/self/exe";
static struct stat answer;

static void die(const char *what) {
  perror(what);
  exit(2);
}

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int install(int nr, uint32_t action, unsigned flags) {
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, action),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");
  int r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
  if (r < 0) die("seccomp");
  return r;
}

// The child's timed loop; reports ns per call on fd `out`.
static void loop(int out, long n, int opens) {
  struct stat st;
  double t0 = now_ns();
  for (long i = 0; i < n; i++) {
    if (opens) {
      int fd = open(KNOWN, O_RDONLY | O_CLOEXEC);
      if (fd < 0) _exit(3);
      close(fd);
    } else if (syscall(SYS_newfstatat, AT_FDCWD, KNOWN, &st, 0) != 0 || st.st_ino != answer.st_ino)
      _exit(3);
  }
  double per = (now_ns() - t0) / n;
  if (write(out, &per, sizeof per) != sizeof per) _exit(4);
  _exit(0);
}

static int read_path(pid_t pid, uint64_t addr, char *buf, size_t len) {
  struct iovec l = {buf, len}, r = {(void *)addr, len};
  ssize_t got = process_vm_readv(pid, &l, 1, &r, 1, 0);
  if (got <= 0) return -1;
  buf[got - 1] = 0;
  return 0;
}

static int known(pid_t pid, uint64_t addr) {
  char p[sizeof KNOWN + 1];
  return read_path(pid, addr, p, sizeof p) == 0 && strcmp(p, KNOWN) == 0;
}

static void put_stat(pid_t pid, uint64_t addr) {
  struct iovec l = {&answer, sizeof answer}, r = {(void *)addr, sizeof answer};
  if (process_vm_writev(pid, &l, 1, &r, 1, 0) != sizeof answer) die("process_vm_writev");
}

static int spin;

static double run_ptrace(long n) {
  int pfd[2];
  if (pipe(pfd)) die("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    ptrace(PTRACE_TRACEME, 0, 0, 0);
    raise(SIGSTOP);
    install(SYS_newfstatat, SECCOMP_RET_TRACE, 0);
    loop(pfd[1], n, 0);
  }
  int st;
  waitpid(pid, &st, 0);
  ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
  ptrace(PTRACE_CONT, pid, 0, 0);
  for (;;) {
    pid_t got;
    do got = waitpid(pid, &st, spin ? WNOHANG : 0);
    while (got == 0);
    if (got < 0) die("waitpid");
    if (WIFEXITED(st) || WIFSIGNALED(st)) break;
    int sig = 0;
    if (st >> 8 == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
      struct __ptrace_syscall_info info;
      if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) <= 0) die("syscall_info");
      if (known(pid, info.seccomp.args[1])) {
        put_stat(pid, info.seccomp.args[2]);
#if defined(__x86_64__)
        struct user_regs_struct regs;
        ptrace(PTRACE_GETREGS, pid, 0, &regs);
        regs.orig_rax = -1;
        regs.rax = 0;
        ptrace(PTRACE_SETREGS, pid, 0, &regs);
#else
        struct user_pt_regs regs;
        struct iovec io = {&regs, sizeof regs};
        ptrace(PTRACE_GETREGSET, pid, NT_PRSTATUS, &io);
        regs.regs[0] = 0;
        ptrace(PTRACE_SETREGSET, pid, NT_PRSTATUS, &io);
        int skip = -1;
        struct iovec sio = {&skip, sizeof skip};
        ptrace(PTRACE_SETREGSET, pid, NT_ARM_SYSTEM_CALL, &sio);
#endif
      }
    } else if (WIFSTOPPED(st) && WSTOPSIG(st) != SIGTRAP) {
      sig = WSTOPSIG(st);
    }
    ptrace(PTRACE_CONT, pid, 0, sig);
  }
  double per;
  if (read(pfd[0], &per, sizeof per) != sizeof per) die("child failed");
  return per;
}

static double run_unotify(long n, int sync, int opens) {
  int pfd[2], fdpipe[2];
  if (pipe(pfd) || pipe(fdpipe)) die("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    int listener =
        install(opens ? SYS_openat : SYS_newfstatat, SECCOMP_RET_USER_NOTIF,
                SECCOMP_FILTER_FLAG_NEW_LISTENER);
    if (write(fdpipe[1], &listener, sizeof listener) != sizeof listener) _exit(4);
    loop(pfd[1], n, opens);
  }
  int childfd;
  if (read(fdpipe[0], &childfd, sizeof childfd) != sizeof childfd) die("listener");
  int pidfd = syscall(SYS_pidfd_open, pid, 0);
  int fd = syscall(SYS_pidfd_getfd, pidfd, childfd, 0);
  if (fd < 0) die("pidfd_getfd");
  if (sync && ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0))
    die("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP");
  struct seccomp_notif req;
  struct seccomp_notif_resp resp;
  for (;;) {
    memset(&req, 0, sizeof req);
    if (spin) {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      while (poll(&p, 1, 0) == 0) {
      }
    }
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req)) {
      if (errno == EINTR) continue;
      break;  // ENOENT: the child is gone
    }
    memset(&resp, 0, sizeof resp);
    resp.id = req.id;
    int path_arg = 1;
    if (known(req.pid, req.data.args[path_arg]) &&
        ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) == 0) {
      if (opens) {
        int f = open(real_file, O_RDONLY | O_CLOEXEC);
        struct seccomp_notif_addfd add = {
            .id = req.id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = f, .newfd_flags = O_CLOEXEC};
        ioctl(fd, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
        close(f);
        continue;
      }
      put_stat(req.pid, req.data.args[2]);
    } else {
      resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    }
    ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  }
  int st;
  waitpid(pid, &st, 0);
  double per;
  if (read(pfd[0], &per, sizeof per) != sizeof per) die("child failed");
  return per;
}

static double run_native(long n, int opens) {
  int pfd[2];
  if (pipe(pfd)) die("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    real_file = KNOWN;
    loop(pfd[1], n, opens);
  }
  int st;
  waitpid(pid, &st, 0);
  double per;
  if (read(pfd[0], &per, sizeof per) != sizeof per) die("child failed");
  return per;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: redirect-cost native|ptrace|unotify|unotify-sync|open-native|open-unotify[-spin] N\n");
    return 2;
  }
  const char *mode = argv[1];
  // "-spin": the supervisor polls instead of sleeping between calls.
  size_t ml = strlen(mode);
  char base[64];
  snprintf(base, sizeof base, "%s", mode);
  if (ml > 5 && !strcmp(mode + ml - 5, "-spin")) {
    spin = 1;
    base[ml - 5] = 0;
  }
  long n = atol(argv[2]);
  // The native rows stat a real file at the known path: it must exist there.
  if (stat(real_file, &answer)) die("stat");
  double per;
  if (!strcmp(base, "native") || !strcmp(base, "open-native")) {
    if (access(KNOWN, F_OK)) {
      fprintf(stderr, "%s must exist for the native rows (a copy of any file)\n", KNOWN);
      return 2;
    }
    if (stat(KNOWN, &answer)) die("stat");
    per = run_native(n, base[0] == 'o');
  } else if (!strcmp(base, "ptrace"))
    per = run_ptrace(n);
  else if (!strcmp(base, "unotify"))
    per = run_unotify(n, 0, 0);
  else if (!strcmp(base, "unotify-sync"))
    per = run_unotify(n, 1, 0);
  else if (!strcmp(base, "open-unotify"))
    per = run_unotify(n, 0, 1);
  else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  printf("%s %.0f\n", mode, per);
  return 0;
}
