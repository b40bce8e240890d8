/*
 * tether native addon: process and terminal mechanisms for tetherd.
 * Mechanisms only; every policy decision is made in TypeScript (daemon/native.ts).
 * Plain C against Node-API so one build works with every Node of the same NAPI_VERSION.
 */
#define _GNU_SOURCE
#include "napi-util.h"

napi_value trace_init(napi_env env, napi_value exports);          /* trace.c */
napi_value inotify_init_module(napi_env env, napi_value exports); /* inotify.c */
napi_value sigchld_init(napi_env env, napi_value exports);        /* sigchld.c */
napi_value answers_init(napi_env env, napi_value exports);        /* answers.c */
napi_value notify_init(napi_env env, napi_value exports);         /* notify.c */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* Failing steps of the child, reported to the parent by index. */
enum step {
  STEP_SETSID,
  STEP_TIOCSCTTY,
  STEP_CHDIR,
  STEP_SETGROUPS,
  STEP_SETGID,
  STEP_SETUID,
  STEP_DUPFD,
  STEP_DUP2,
  STEP_CLOSE,
  STEP_EXECVE,
  STEP_SECCOMP,
  STEP_READY, /* not a failure: a traced child waits for its tracer */
};
static const char *const step_names[] = {
    "setsid", "ioctl(TIOCSCTTY)", "chdir", "setgroups", "setgid", "setuid",
    "fcntl(F_DUPFD)", "dup2", "close", "execve", "seccomp", "ready",
};

struct spawn_req {
  char *file;
  char **argv;
  char **envp;
  char *cwd;
  char **paths; /* execve candidates, resolved like execvp before fork */
  char **sh_argv; /* execvp's ENOEXEC retry: /bin/sh, the file, argv[1..]; its [1] set in the child */
  int *fds;
  int *tmp; /* scratch for the child's fd shuffle, allocated before fork */
  uint32_t nfds;
  gid_t *groups;
  size_t ngroups;
  bool has_groups;
  bool setsid;
  int ctty;
  int umask;
  int64_t uid, gid;
  int maxfd; /* last-resort close bound when neither close_range nor /proc work */
  /* Traced spawn: the parent PTRACE_SEIZEs the child before its execve, which is then
   * the tracer's first stop. The filter, if any, is installed right before execve. */
  bool trace;
  bool trace_stop; /* stop the child (PTRACE_INTERRUPT) before it may go on to its execve */
  /* The filter reports to a listener (seccomp user notification): installed before "ready"
   * so the parent can take the listener fd (pidfd_getfd) while the child waits. */
  bool listener;
  int ptrace_options;
  struct sock_fprog filter;
};

static void free_req(struct spawn_req *r) {
  free(r->file);
  free_strv(r->argv);
  free_strv(r->envp);
  free(r->cwd);
  free_strv(r->paths);
  free(r->sh_argv);
  free(r->fds);
  free(r->tmp);
  free(r->groups);
  free(r->filter.filter);
}

/* execvp's search list, built from the child's env (not ours); default like glibc's _CS_PATH. */
static bool build_paths(napi_env env, struct spawn_req *r) {
  if (strchr(r->file, '/')) {
    r->paths = calloc(2, sizeof *r->paths);
    if (!r->paths || !(r->paths[0] = strdup(r->file))) {
      throw_errno(env, "malloc", ENOMEM);
      return false;
    }
    return true;
  }
  const char *path = "/bin:/usr/bin";
  for (char **e = r->envp; *e; e++) {
    if (strncmp(*e, "PATH=", 5) == 0) {
      path = *e + 5;
      break;
    }
  }
  size_t n = 1;
  for (const char *p = path; *p; p++) n += *p == ':';
  r->paths = calloc(n + 1, sizeof *r->paths);
  if (!r->paths) {
    throw_errno(env, "malloc", ENOMEM);
    return false;
  }
  const char *p = path;
  for (size_t i = 0; i < n; i++) {
    const char *end = strchrnul(p, ':');
    size_t dlen = (size_t)(end - p);
    /* An empty element means the current directory, as in execvp. */
    char *s = malloc(dlen + 1 + strlen(r->file) + 1);
    if (!s) {
      throw_errno(env, "malloc", ENOMEM);
      return false;
    }
    if (dlen)
      sprintf(s, "%.*s/%s", (int)dlen, p, r->file);
    else
      strcpy(s, r->file);
    r->paths[i] = s;
    p = *end ? end + 1 : end;
  }
  return true;
}

/* trace: { options: PTRACE_O_* bits, filter: Buffer of struct sock_filter, or null, stop,
 * listener } */
static bool parse_trace(napi_env env, napi_value v, struct spawn_req *r) {
  napi_value f;
  napi_valuetype t;
  int64_t x;
  r->trace = true;
  napi_get_named_property(env, v, "options", &f);
  if (!get_int(env, f, "trace.options", 0, INT32_MAX, &x)) return false;
  r->ptrace_options = (int)x;
  napi_get_named_property(env, v, "stop", &f);
  napi_typeof(env, f, &t);
  if (t == napi_boolean) napi_get_value_bool(env, f, &r->trace_stop);
  napi_get_named_property(env, v, "listener", &f);
  napi_typeof(env, f, &t);
  if (t == napi_boolean) napi_get_value_bool(env, f, &r->listener);
  napi_get_named_property(env, v, "filter", &f);
  napi_typeof(env, f, &t);
  if (t == napi_null || t == napi_undefined) return true;
  bool is_buf;
  void *data;
  size_t len;
  if (napi_is_buffer(env, f, &is_buf) != napi_ok || !is_buf)
    return type_error(env, "trace.filter", "a Buffer or null");
  napi_get_buffer_info(env, f, &data, &len);
  if (len == 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > BPF_MAXINSNS)
    return type_error(env, "trace.filter", "whole sock_filter instructions (1..4096)");
  if (!(r->filter.filter = malloc(len))) {
    throw_errno(env, "malloc", ENOMEM);
    return false;
  }
  memcpy(r->filter.filter, data, len);
  r->filter.len = (unsigned short)(len / sizeof(struct sock_filter));
  return true;
}

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

/* Installs the filter: the listener fd with user notification, else 0; -1 on failure. A
 * notified call that tetherd has received waits for its answer through any signal but a
 * fatal one (Linux 5.19), as a ptrace stop does: its decision may have changed files on the
 * host already, and a restarted call would not find them as it left them. */
static int install_filter(const struct spawn_req *r) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -1;
  long fd = -1;
  if (r->listener)
    fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                 SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
                 &r->filter);
  if (fd < 0 && (!r->listener || errno == EINVAL))
    fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                 r->listener ? SECCOMP_FILTER_FLAG_NEW_LISTENER : 0, &r->filter);
  return fd < 0 ? -1 : (int)fd;
}

static bool parse_spawn(napi_env env, napi_value opts, struct spawn_req *r) {
  napi_value v, arr, el;
  napi_valuetype t;
  uint32_t n;
  int64_t x;

  if (napi_typeof(env, opts, &t) != napi_ok || t != napi_object)
    return type_error(env, "options", "an object");

  napi_get_named_property(env, opts, "file", &v);
  if (!(r->file = get_string(env, v, "file"))) return false;
  if (!*r->file) {
    throw_errno(env, "execve", ENOENT);
    return false;
  }
  if (!(r->argv = get_strv(env, opts, "argv"))) return false;
  if (!(r->envp = get_strv(env, opts, "env"))) return false;
  size_t argc = 0;
  while (r->argv[argc]) argc++;
  r->sh_argv = calloc(argc + 3, sizeof *r->sh_argv);
  if (!r->sh_argv) {
    throw_errno(env, "malloc", ENOMEM);
    return false;
  }
  r->sh_argv[0] = "/bin/sh";
  for (size_t i = 1; i < argc; i++) r->sh_argv[i + 1] = r->argv[i];

  napi_get_named_property(env, opts, "cwd", &v);
  napi_typeof(env, v, &t);
  if (t != napi_null && !(r->cwd = get_string(env, v, "cwd"))) return false;

  napi_get_named_property(env, opts, "umask", &v);
  if (!get_int(env, v, "umask", -1, 0777, &x)) return false;
  r->umask = (int)x;

  if (!get_array(env, opts, "fds", &arr, &n)) return false;
  if (n > 65536) return type_error(env, "fds", "at most 65536 entries");
  r->nfds = n;
  r->fds = calloc(n ? n : 1, sizeof *r->fds);
  r->tmp = calloc(n ? n : 1, sizeof *r->tmp);
  if (!r->fds || !r->tmp) {
    throw_errno(env, "malloc", ENOMEM);
    return false;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_get_element(env, arr, i, &el);
    if (!get_int(env, el, "fds[i]", -1, INT_MAX, &x)) return false;
    r->fds[i] = (int)x;
  }

  napi_get_named_property(env, opts, "setsid", &v);
  if (napi_get_value_bool(env, v, &r->setsid) != napi_ok)
    return type_error(env, "setsid", "a boolean");

  napi_get_named_property(env, opts, "ctty", &v);
  if (!get_int(env, v, "ctty", -1, (int64_t)n - 1, &x)) return false;
  r->ctty = (int)x;
  if (r->ctty >= 0 && r->fds[r->ctty] < 0) return type_error(env, "ctty", "a mapped child fd");

  napi_get_named_property(env, opts, "uid", &v);
  if (!get_int(env, v, "uid", -1, UINT32_MAX - 1, &r->uid)) return false;
  napi_get_named_property(env, opts, "gid", &v);
  if (!get_int(env, v, "gid", -1, UINT32_MAX - 1, &r->gid)) return false;

  napi_get_named_property(env, opts, "groups", &v);
  napi_typeof(env, v, &t);
  if (t != napi_null) {
    if (!get_array(env, opts, "groups", &arr, &n)) return false;
    r->has_groups = true;
    r->ngroups = n;
    r->groups = calloc(n ? n : 1, sizeof *r->groups);
    if (!r->groups) {
      throw_errno(env, "malloc", ENOMEM);
      return false;
    }
    for (uint32_t i = 0; i < n; i++) {
      napi_get_element(env, arr, i, &el);
      if (!get_int(env, el, "groups[i]", 0, UINT32_MAX - 1, &x)) return false;
      r->groups[i] = (gid_t)x;
    }
  }

  napi_get_named_property(env, opts, "trace", &v);
  napi_typeof(env, v, &t);
  if (t != napi_undefined && t != napi_null && !parse_trace(env, v, r)) return false;

  struct rlimit rl;
  r->maxfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1u << 20) ? (int)rl.rlim_cur
                                                                          : 1 << 20;
  return build_paths(env, r);
}

/* ---- Child side: only async-signal-safe calls from here to execve. ---- */

static void __attribute__((noreturn)) child_fail(int errfd, enum step step, int err) {
  int msg[2] = {err, (int)step};
  ssize_t w;
  do w = write(errfd, msg, sizeof msg);
  while (w < 0 && errno == EINTR);
  _exit(127);
}

struct dirent64_raw {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/* Closes every fd above `low`. close_range needs Linux 5.9; older devices are common, so fall
 * back to listing /proc/self/fd with raw getdents64 (no malloc), and without /proc to a loop. */
static bool close_above(int low, int maxfd) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)low + 1, ~0U, 0) == 0) return true;
#endif
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) {
    for (int fd = low + 1; fd < maxfd; fd++) close(fd);
    return true;
  }
  char buf[2048] __attribute__((aligned(8)));
  long n;
  while ((n = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct dirent64_raw *d = (struct dirent64_raw *)(buf + off);
      off += d->d_reclen;
      int fd = 0;
      const char *c = d->d_name;
      if (*c < '0' || *c > '9') continue;
      for (; *c >= '0' && *c <= '9'; c++) fd = fd * 10 + (*c - '0');
      if (fd > low && fd != dir) close(fd);
    }
  }
  close(dir);
  return n == 0;
}

static void __attribute__((noreturn)) traced_exec(const struct spawn_req *r, int errfd, int gofd);

static void __attribute__((noreturn)) child(const struct spawn_req *r, int errfd, int gofd) {
  /* Dispositions first (all signals are still blocked from the parent), so no Node handler
   * can run here, and ignored signals such as Node's SIGPIPE are not inherited across exec. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) sigaction(sig, &sa, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  if (r->setsid && setsid() < 0) child_fail(errfd, STEP_SETSID, errno);
  /* The fd map is not installed yet: the child fd's source is the same open file. */
  if (r->ctty >= 0 && ioctl(r->fds[r->ctty], TIOCSCTTY, 0) < 0)
    child_fail(errfd, STEP_TIOCSCTTY, errno);
  if (r->umask >= 0) umask((mode_t)r->umask);
  if (r->cwd && chdir(r->cwd) < 0) child_fail(errfd, STEP_CHDIR, errno);
  if (r->has_groups && setgroups(r->ngroups, r->groups) < 0)
    child_fail(errfd, STEP_SETGROUPS, errno);
  if (r->gid >= 0 && setgid((gid_t)r->gid) < 0) child_fail(errfd, STEP_SETGID, errno);
  if (r->uid >= 0 && setuid((uid_t)r->uid) < 0) child_fail(errfd, STEP_SETUID, errno);

  /* Move every source (and the error pipe) above the highest target before placing any, so a
   * source that is also a target (e.g. a swap) is never clobbered. The error pipe then sits at
   * exactly `base`, the one fd kept above the map, and closes itself on exec. */
  int base = (int)r->nfds;
  int *tmp = r->tmp;
  /* A traced child also keeps the go pipe, at base + 1: the moved fds start above it. */
  int low = base + (r->trace ? 2 : 1);
  for (int i = 0; i < base; i++) {
    if (r->fds[i] >= 0 && (tmp[i] = fcntl(r->fds[i], F_DUPFD_CLOEXEC, low)) < 0)
      child_fail(errfd, STEP_DUPFD, errno);
  }
  int e = fcntl(errfd, F_DUPFD_CLOEXEC, low);
  if (e < 0) child_fail(errfd, STEP_DUPFD, errno);
  if (dup3(e, base, O_CLOEXEC) < 0) child_fail(e, STEP_DUP2, errno);
  errfd = base;
  int keep = base;
  if (r->trace) {
    int g = fcntl(gofd, F_DUPFD_CLOEXEC, low);
    if (g < 0 || dup3(g, base + 1, O_CLOEXEC) < 0) child_fail(errfd, STEP_DUP2, errno);
    gofd = keep = base + 1;
  }
  for (int i = 0; i < base; i++) {
    if (r->fds[i] < 0)
      close(i);
    else if (dup2(tmp[i], i) < 0) /* dup2 clears FD_CLOEXEC on the placed fd */
      child_fail(errfd, STEP_DUP2, errno);
  }
  if (!close_above(keep, r->maxfd)) child_fail(errfd, STEP_CLOSE, errno);
  if (r->trace) traced_exec(r, errfd, gofd);

  /* execvp's rules: a file the kernel cannot run (ENOEXEC) is /bin/sh's script. */
  bool eacces = false;
  for (char *const *p = r->paths; *p; p++) {
    execve(*p, r->argv, r->envp);
    int err = errno;
    if (err == ENOEXEC) {
      r->sh_argv[1] = *p;
      execve(r->sh_argv[0], r->sh_argv, r->envp);
      child_fail(errfd, STEP_EXECVE, ENOEXEC);
    }
    if (err == EACCES)
      eacces = true;
    else if (err != ENOENT && err != ENOTDIR && err != ESTALE && err != ENODEV && err != ETIMEDOUT)
      child_fail(errfd, STEP_EXECVE, err);
  }
  child_fail(errfd, STEP_EXECVE, eacces ? EACCES : ENOENT);
}

/* Says "ready", waits until the tracer has seized us, then execs under the filter. The execve is
 * the tracer's business from here on (it is redirected or failed by the tracer), so its error
 * only decides the exit status, as in a shell: 127 not found, 126 not runnable. */
static void __attribute__((noreturn)) traced_exec(const struct spawn_req *r, int errfd, int gofd) {
  int msg[2] = {0, (int)STEP_READY};
  ssize_t n;
  /* With a listener, "ready" carries its fd number; the handshake's read and write are calls
   * the filter allows. */
  if (r->listener && r->filter.filter && (msg[0] = install_filter(r)) < 0)
    child_fail(errfd, STEP_SECCOMP, errno);
  do n = write(errfd, msg, sizeof msg);
  while (n < 0 && errno == EINTR);
  char go;
  do n = read(gofd, &go, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1) _exit(127); /* the parent gave up on us */
  close(gofd);
  close(errfd);
  if (r->listener)
    close(msg[0]);
  else if (r->filter.filter) {
    if (install_filter(r) < 0) {
      static const char m[] = "tether: cannot install the seccomp filter\n";
      (void)!write(2, m, sizeof m - 1);
      _exit(126);
    }
  }
  execve(r->file, r->argv, r->envp);
  _exit(errno == ENOENT ? 127 : 126);
}

/* ---- Parent side ---- */

static napi_value js_spawn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value opts, result = NULL;
  struct spawn_req r;
  memset(&r, 0, sizeof r);
  napi_get_cb_info(env, info, &argc, &opts, NULL, NULL);
  if (argc < 1) {
    type_error(env, "options", "an object");
    return NULL;
  }
  if (!parse_spawn(env, opts, &r)) goto out;

  int errpipe[2], gopipe[2] = {-1, -1};
  if (pipe2(errpipe, O_CLOEXEC) < 0) {
    throw_errno(env, "pipe2", errno);
    goto out;
  }
  if (r.trace && pipe2(gopipe, O_CLOEXEC) < 0) {
    throw_errno(env, "pipe2", errno);
    close(errpipe[0]);
    close(errpipe[1]);
    goto out;
  }
  /* Blocked across fork so no signal handler of Node runs in the child before reset. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t pid = fork();
  if (pid == 0) child(&r, errpipe[1], gopipe[0]);
  int fork_err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(errpipe[1]);
  if (r.trace) close(gopipe[0]);
  if (pid < 0) {
    close(errpipe[0]);
    if (r.trace) close(gopipe[1]);
    throw_errno(env, "fork", fork_err);
    goto out;
  }

  /* EOF means execve succeeded (the pipe was CLOEXEC); a message means the child failed. */
  int msg[2];
  ssize_t got;
  do got = read(errpipe[0], msg, sizeof msg);
  while (got < 0 && errno == EINTR);
  close(errpipe[0]);
  if (r.trace && got == (ssize_t)sizeof msg && msg[1] == STEP_READY) {
    int err = 0;
    const char *what = "ptrace(PTRACE_SEIZE)";
    if (ptrace(PTRACE_SEIZE, pid, 0, (void *)(long)r.ptrace_options) < 0) err = errno;
    /* Without a filter nothing would stop the execve: the tracer must hold the child first. */
    if (!err && r.trace_stop && ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0) {
      err = errno;
      what = "ptrace(PTRACE_INTERRUPT)";
    }
    /* The child's listener, taken while it waits (it closes its own before the execve). */
    int listener = -1;
    if (!err && r.listener) {
      int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
      listener = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, msg[0], 0);
      if (listener < 0) {
        err = errno;
        what = "pidfd_getfd";
      }
      if (pidfd >= 0) close(pidfd);
    }
    char go = 1;
    if (!err && write(gopipe[1], &go, 1) != 1) {
      err = errno;
      what = "write";
    }
    close(gopipe[1]);
    if (err) {
      if (listener >= 0) close(listener);
      kill(pid, SIGKILL);
      int st;
      while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
      }
      throw_errno(env, what, err);
      goto out;
    }
    if (r.listener) {
      napi_create_object(env, &result);
      set_int(env, result, "pid", pid);
      set_int(env, result, "listener", listener);
    } else {
      napi_create_int32(env, pid, &result);
    }
    goto out;
  }
  if (r.trace) close(gopipe[1]);
  if (got == (ssize_t)sizeof msg) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    throw_errno(env, step_names[msg[1]], msg[0]);
    goto out;
  }
  napi_create_int32(env, pid, &result);
out:
  free_req(&r);
  return result;
}

static napi_value js_waitpid(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"pid"};
  static const int64_t min[] = {1}, max[] = {INT_MAX};
  int64_t pid;
  if (!arg_ints(env, info, 1, &pid, names, min, max)) return NULL;
  int st;
  pid_t got;
  /* Exactly this pid: libuv reaps its own children and a waitpid(-1) would steal them. */
  do got = waitpid((pid_t)pid, &st, WNOHANG | __WALL);
  while (got < 0 && errno == EINTR);
  if (got < 0) return throw_errno(env, "waitpid", errno);
  napi_value res, nul, core;
  if (got == 0) {
    napi_get_null(env, &res);
    return res;
  }
  if (!WIFEXITED(st) && !WIFSIGNALED(st)) {
    /* Only a ptrace stop can get here; tracing support will report those explicitly. */
    napi_throw_error(env, "ERR_UNEXPECTED_STATUS", "waitpid: child stopped, not exited");
    return NULL;
  }
  napi_create_object(env, &res);
  napi_get_null(env, &nul);
  set_int(env, res, "pid", got);
  if (WIFEXITED(st)) {
    set_int(env, res, "code", WEXITSTATUS(st));
    napi_set_named_property(env, res, "signal", nul);
    napi_get_boolean(env, false, &core);
  } else {
    napi_set_named_property(env, res, "code", nul);
    set_int(env, res, "signal", WTERMSIG(st));
    napi_get_boolean(env, WCOREDUMP(st), &core);
  }
  napi_set_named_property(env, res, "core", core);
  return res;
}

static napi_value fd_pair(napi_env env, const int fds[2]) {
  napi_value res, v;
  napi_create_array_with_length(env, 2, &res);
  for (uint32_t i = 0; i < 2; i++) {
    napi_create_int32(env, fds[i], &v);
    napi_set_element(env, res, i, v);
  }
  return res;
}

/* pipe(size?): a close-on-exec pipe; with size, its buffer is asked to be that large
 * (F_SETPIPE_SZ, best effort: the kernel caps it at /proc/sys/fs/pipe-max-size). */
static napi_value js_pipe(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
  int32_t size = 0;
  if (argc >= 1) napi_get_value_int32(env, arg, &size);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return throw_errno(env, "pipe2", errno);
  if (size > 0) (void)fcntl(fds[0], F_SETPIPE_SZ, size);
  return fd_pair(env, fds);
}

/* A program fd that is both read and written (a relayed socket or `<>`) needs one fd
 * carrying both directions, which a pipe cannot be. */
static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    return throw_errno(env, "socketpair", errno);
  return fd_pair(env, fds);
}

static napi_value js_openpty(napi_env env, napi_callback_info info) {
  (void)info;
  char name[128];
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return throw_errno(env, "posix_openpt", errno);
  const char *failed = NULL;
  int slave = -1;
  if (grantpt(master) < 0)
    failed = "grantpt";
  else if (unlockpt(master) < 0)
    failed = "unlockpt";
  else if ((errno = ptsname_r(master, name, sizeof name)) != 0)
    failed = "ptsname_r";
  else if ((slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
    failed = "open";
  if (failed) {
    int err = errno;
    close(master);
    return throw_errno(env, failed, err);
  }
  napi_value res, v;
  napi_create_object(env, &res);
  set_int(env, res, "master", master);
  set_int(env, res, "slave", slave);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, res, "name", v);
  return res;
}

static napi_value js_set_winsize(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"fd", "rows", "cols"};
  static const int64_t min[] = {0, 0, 0}, max[] = {INT_MAX, USHRT_MAX, USHRT_MAX};
  int64_t a[3];
  if (!arg_ints(env, info, 3, a, names, min, max)) return NULL;
  struct winsize ws = {.ws_row = (unsigned short)a[1], .ws_col = (unsigned short)a[2]};
  if (ioctl((int)a[0], TIOCSWINSZ, &ws) < 0) return throw_errno(env, "ioctl(TIOCSWINSZ)", errno);
  return NULL;
}

static napi_value js_get_winsize(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"fd"};
  static const int64_t min[] = {0}, max[] = {INT_MAX};
  int64_t fd;
  if (!arg_ints(env, info, 1, &fd, names, min, max)) return NULL;
  struct winsize ws;
  if (ioctl((int)fd, TIOCGWINSZ, &ws) < 0) return throw_errno(env, "ioctl(TIOCGWINSZ)", errno);
  napi_value res;
  napi_create_object(env, &res);
  set_int(env, res, "rows", ws.ws_row);
  return set_int(env, res, "cols", ws.ws_col);
}

/* lseek(fd, offset, SEEK_SET): Node has no way to move an fd's offset. */
static napi_value js_lseek(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"fd", "offset"};
  static const int64_t min[] = {0, 0}, max[] = {INT_MAX, INT64_MAX / 2};
  int64_t a[2];
  if (!arg_ints(env, info, 2, a, names, min, max)) return NULL;
  if (lseek((int)a[0], (off_t)a[1], SEEK_SET) < 0) return throw_errno(env, "lseek", errno);
  return NULL;
}

/* strerror(errnum): the C library's own text (libuv's differ, ELOOP's for one). */
static napi_value js_strerror(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"errnum"};
  static const int64_t min[] = {0}, max[] = {4095};
  int64_t a[1];
  if (!arg_ints(env, info, 1, a, names, min, max)) return NULL;
  napi_value res;
  napi_create_string_utf8(env, strerror((int)a[0]), NAPI_AUTO_LENGTH, &res);
  return res;
}

/* mkfifo(path, mode): Node cannot make a FIFO (the device's stand-in for a host one). */
static napi_value js_mkfifo(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  int64_t mode;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    type_error(env, "mkfifo(path, mode)", "called with two arguments");
    return NULL;
  }
  if (!get_int(env, argv[1], "mode", 0, 07777, &mode)) return NULL;
  char *path = get_string(env, argv[0], "path");
  if (!path) return NULL;
  int r = mkfifo(path, (mode_t)mode);
  int err = errno;
  free(path);
  if (r < 0) return throw_errno(env, "mkfifo", err);
  return NULL;
}

static napi_value js_set_nonblock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  int64_t fd;
  bool on;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    type_error(env, "setNonblock(fd, on)", "called with two arguments");
    return NULL;
  }
  if (!get_int(env, argv[0], "fd", 0, INT_MAX, &fd)) return NULL;
  if (napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    type_error(env, "on", "a boolean");
    return NULL;
  }
  int fl = fcntl((int)fd, F_GETFL);
  if (fl < 0) return throw_errno(env, "fcntl(F_GETFL)", errno);
  int want = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
  if (want != fl && fcntl((int)fd, F_SETFL, want) < 0)
    return throw_errno(env, "fcntl(F_SETFL)", errno);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"spawn", NULL, js_spawn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitpid", NULL, js_waitpid, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pipe", NULL, js_pipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketpair", NULL, js_socketpair, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openpty", NULL, js_openpty, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setWinsize", NULL, js_set_winsize, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getWinsize", NULL, js_get_winsize, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNonblock", NULL, js_set_nonblock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lseek", NULL, js_lseek, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mkfifo", NULL, js_mkfifo, NULL, NULL, NULL, napi_enumerable, NULL},
      {"strerror", NULL, js_strerror, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  trace_init(env, exports);
  sigchld_init(env, exports);
  answers_init(env, exports);
  notify_init(env, exports);
  return inotify_init_module(env, exports);
}
