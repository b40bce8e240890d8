/*
 * seccomp user notification (seccomp_unotify(2)) for tetherd's tracer (docs/hot-path.md): the
 * listener of a traced program's filter, a thread that receives its notifications, answers
 * those the answer table holds (answers.c) and queues the others for JavaScript, the
 * responses JavaScript decides, and a call run with a program's file system identity. The
 * thread blocks in NOTIF_RECV, where the kernel's synchronous wake-up (Linux 6.6) switches
 * from the program to it and back on one CPU. Decisions are all TypeScript's.
 */
#define _GNU_SOURCE
#include "answers.h"
#include "napi-util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1
#endif

/* Interrupts the thread's NOTIF_RECV when its run is over: a handler that does nothing,
 * installed without SA_RESTART (the kernel never wakes a receiver when the filter dies). */
#define STOP_SIGNAL (SIGRTMIN + 6)

struct notifier {
  int listener;
  void *table; /* answers.c's, or NULL */
  pthread_t thread;
  napi_threadsafe_function tsfn;
  int stop;
  bool stopped;
};

static void *receive(void *arg) {
  struct notifier *n = arg;
  pthread_setname_np(pthread_self(), "tether-notify");
  /* Only the stop signal interrupts this thread: a signal for the process (SIGCHLD, read from
   * a signalfd by sigchld.c) must never be delivered here instead. */
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, STOP_SIGNAL);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  while (!__atomic_load_n(&n->stop, __ATOMIC_ACQUIRE)) {
    struct seccomp_notif *req = calloc(1, sizeof *req);
    if (!req) break;
    if (ioctl(n->listener, SECCOMP_IOCTL_NOTIF_RECV, req) < 0) {
      free(req);
      /* ENOENT: the task was interrupted before it was received. */
      if (errno == EINTR || errno == ENOENT) continue;
      /* JavaScript hears of it (a null notification): the program would wait forever. */
      napi_call_threadsafe_function(n->tsfn, NULL, napi_tsfn_blocking);
      break;
    }
    if (n->table && answers_notified(n->table, n->listener, req)) {
      free(req);
      continue;
    }
    if (napi_call_threadsafe_function(n->tsfn, req, napi_tsfn_blocking) != napi_ok) free(req);
  }
  return NULL;
}

/* On the main thread: the callback gets the raw struct seccomp_notif, or null when the
 * thread could receive no more. */
static void call_js(napi_env env, napi_value cb, void *ctx, void *data) {
  (void)ctx;
  if (!env) {
    free(data);
    return;
  }
  napi_value arg, undefined;
  if (data) {
    napi_create_buffer_copy(env, sizeof(struct seccomp_notif), data, NULL, &arg);
    free(data);
  } else {
    napi_get_null(env, &arg);
  }
  napi_get_undefined(env, &undefined);
  napi_call_function(env, undefined, cb, 1, &arg, NULL);
}

static void stop(struct notifier *n) {
  if (n->stopped) return;
  n->stopped = true;
  __atomic_store_n(&n->stop, 1, __ATOMIC_RELEASE);
  for (;;) {
    pthread_kill(n->thread, STOP_SIGNAL);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 5000000;
    if (until.tv_nsec >= 1000000000) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000;
    }
    if (pthread_timedjoin_np(n->thread, NULL, &until) == 0) break;
  }
  napi_release_threadsafe_function(n->tsfn, napi_tsfn_release);
  close(n->listener);
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  stop(data);
  free(data);
}

/* The notifier (argv[0]) and, when `id` is given, the notification id (argv[1]) of a call
 * taking `want` arguments; false with an exception thrown. */
static bool notifier_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv,
                          struct notifier **n, uint64_t *id) {
  size_t argc = want;
  bool lossless;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) return type_error(env, "arguments", "all of them");
  if (!(*n = get_external(env, argv[0], "notifier"))) return false;
  if (id && napi_get_value_bigint_uint64(env, argv[1], id, &lossless) != napi_ok)
    return type_error(env, "id", "a bigint");
  return true;
}

/* An ioctl on the listener; once stopped (the run is over) no notification is pending and
 * the fd number may be another file's: ENOENT without touching it. */
static int notif_ioctl(struct notifier *n, unsigned long req, void *arg) {
  if (n->stopped) {
    errno = ENOENT;
    return -1;
  }
  return ioctl(n->listener, req, arg);
}

/* notifyStart(listener, table|null, onNotify): takes the listener fd (closed by notifyStop)
 * and starts receiving; the table's answers are given without JavaScript. */
static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd;
  if (argc < 3) return type_error(env, "arguments", "3"), NULL;
  if (!get_int(env, argv[0], "listener", 0, INT32_MAX, &fd)) return NULL;
  void *table = NULL;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t == napi_external) napi_get_value_external(env, argv[1], &table);
  struct notifier *n = calloc(1, sizeof *n);
  if (!n) return throw_errno(env, "calloc", ENOMEM);
  n->listener = (int)fd;
  n->table = table;
  /* Without it (before Linux 6.6) the thread is woken like any other: slower, still right. */
  ioctl(n->listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0);
  napi_value name;
  napi_create_string_utf8(env, "tether-notify", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, NULL, call_js,
                                      &n->tsfn) != napi_ok) {
    free(n);
    return NULL;
  }
  int err = pthread_create(&n->thread, NULL, receive, n);
  if (err) {
    napi_release_threadsafe_function(n->tsfn, napi_tsfn_release);
    free(n);
    return throw_errno(env, "pthread_create", err);
  }
  napi_value res;
  napi_create_external(env, n, finalize, NULL, &res);
  return res;
}

/* notifySend(notifier, id, val, error, cont): answers notification `id` with `val`, or the
 * failure `error` (a negative errno), or lets the call run as written (cont). False when the
 * notification is no longer pending (its task was interrupted or killed). */
static napi_value js_send(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  struct notifier *n = NULL;
  uint64_t id;
  int64_t val, error;
  bool lossless, cont;
  if (!notifier_args(env, info, 5, argv, &n, &id)) return NULL;
  if (napi_get_value_bigint_int64(env, argv[2], &val, &lossless) != napi_ok)
    return type_error(env, "val", "a bigint"), NULL;
  if (!get_int(env, argv[3], "error", -4095, 0, &error)) return NULL;
  if (napi_get_value_bool(env, argv[4], &cont) != napi_ok)
    return type_error(env, "cont", "a boolean"), NULL;
  struct seccomp_notif_resp resp = {.id = id, .val = val, .error = (__s32)error};
  if (cont) resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  int r = notif_ioctl(n, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  if (r < 0 && errno != ENOENT) return throw_errno(env, "ioctl(SECCOMP_IOCTL_NOTIF_SEND)", errno);
  napi_value res;
  napi_get_boolean(env, r == 0, &res);
  return res;
}

/* notifyAddFd(notifier, id, fd, cloexec): installs a copy of our `fd` in the notifying
 * program at its lowest free number and answers `id` with that number (ADDFD_FLAG_SEND,
 * Linux 5.14): the number, or a negative errno (-ENOENT: no longer pending; another, such
 * as -EMFILE: still pending, to be answered with it). */
static napi_value js_add_fd(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  struct notifier *n = NULL;
  uint64_t id;
  int64_t fd;
  bool cloexec;
  if (!notifier_args(env, info, 4, argv, &n, &id)) return NULL;
  if (!get_int(env, argv[2], "fd", 0, INT32_MAX, &fd)) return NULL;
  if (napi_get_value_bool(env, argv[3], &cloexec) != napi_ok)
    return type_error(env, "cloexec", "a boolean"), NULL;
  struct seccomp_notif_addfd add = {.id = id,
                                    .flags = SECCOMP_ADDFD_FLAG_SEND,
                                    .srcfd = (__u32)fd,
                                    .newfd_flags = cloexec ? O_CLOEXEC : 0};
  int r = notif_ioctl(n, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
  napi_value res;
  napi_create_int64(env, r < 0 ? -errno : r, &res);
  return res;
}

/* notifyIdValid(notifier, id): whether notification `id` is still pending. */
static napi_value js_id_valid(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct notifier *n = NULL;
  uint64_t id;
  if (!notifier_args(env, info, 2, argv, &n, &id)) return NULL;
  napi_value res;
  napi_get_boolean(env, notif_ioctl(n, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0, &res);
  return res;
}

/* notifyStop(notifier): stops receiving and closes the listener (the run is over). */
static napi_value js_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  struct notifier *n = NULL;
  if (notifier_args(env, info, 1, argv, &n, NULL)) stop(n);
  return NULL;
}

/* notifyProbe(): 0 without user notification, 1 with it, 2 with synchronous wake-up too.
 * A child installs a filter that allows everything to find out. */
static napi_value js_probe(napi_env env, napi_callback_info info) {
  (void)info;
  pid_t pid = fork();
  if (pid == 0) {
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {1, &allow};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) _exit(0);
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (fd < 0) _exit(0);
    _exit(ioctl((int)fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0) == 0
              ? 2
              : 1);
  }
  if (pid < 0) return throw_errno(env, "fork", errno);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return throw_errno(env, "waitpid", errno);
  napi_value res;
  napi_create_int32(env, WIFEXITED(st) ? WEXITSTATUS(st) : 0, &res);
  return res;
}

#if defined(SYS_setfsuid32)
#define SYS_SETFSUID SYS_setfsuid32
#define SYS_SETFSGID SYS_setfsgid32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_GETGROUPS SYS_getgroups32
#else
#define SYS_SETFSUID SYS_setfsuid
#define SYS_SETFSGID SYS_setfsgid
#define SYS_SETGROUPS SYS_setgroups
#define SYS_GETGROUPS SYS_getgroups
#endif
#define MAX_GROUPS 256

/* Sets this thread's file system identity to ids = [uid, gid, ...groups] (nids 0: none),
 * saving the old one in *saved; 0 or an errno. */
struct ids_saved {
  gid_t groups[MAX_GROUPS];
  long ngroups, uid, gid;
};
static int become(const long *ids, uint32_t nids, struct ids_saved *saved) {
  if (!nids) return 0;
  saved->ngroups = syscall(SYS_GETGROUPS, MAX_GROUPS, saved->groups);
  if (saved->ngroups < 0) return errno;
  gid_t groups[MAX_GROUPS];
  for (uint32_t i = 2; i < nids; i++) groups[i - 2] = (gid_t)ids[i];
  if (syscall(SYS_SETGROUPS, (long)(nids - 2), groups) < 0) return errno;
  saved->gid = syscall(SYS_SETFSGID, ids[1]);
  saved->uid = syscall(SYS_SETFSUID, ids[0]);
  return 0;
}
static void restore(uint32_t nids, const struct ids_saved *saved) {
  if (!nids) return;
  syscall(SYS_SETFSUID, saved->uid);
  syscall(SYS_SETFSGID, saved->gid);
  syscall(SYS_SETGROUPS, saved->ngroups, saved->groups);
}

/* The ids argument of syscallAs/openAs: [] or [uid, gid, ...groups]. */
static bool get_ids(napi_env env, napi_value v, long *ids, uint32_t *nids) {
  if (napi_get_array_length(env, v, nids) != napi_ok || (*nids != 0 && *nids < 2) ||
      *nids > MAX_GROUPS + 2)
    return type_error(env, "ids", "[] or [uid, gid, ...groups]");
  for (uint32_t i = 0; i < *nids; i++) {
    napi_value x;
    int64_t id;
    napi_get_element(env, v, i, &x);
    if (!get_int(env, x, "id", 0, UINT32_MAX - 1, &id)) return false;
    ids[i] = (long)id;
  }
  return true;
}

struct open_work {
  napi_threadsafe_function tsfn;
  napi_deferred deferred;
  long ids[MAX_GROUPS + 2];
  uint32_t nids;
  char *path;
  int flags, mode;
  int result; /* fd or -errno */
};

/* On a thread of its own: an open may block for as long as the program's would (a FIFO
 * waits for its other end), so none of Node's pool threads is held by it. A file it creates
 * gets `mode` exactly (the program's umask applied by the caller, not the daemon's). */
static void *open_thread(void *data) {
  struct open_work *w = data;
  /* Named: ps -T (and a test) can tell an open that still waits. */
  pthread_setname_np(pthread_self(), "tether-open");
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  struct ids_saved saved;
  int err = become(w->ids, w->nids, &saved);
  int fd = -1;
  bool created = false;
  if (err) {
    errno = err;
  } else if (!(w->flags & O_CREAT)) {
    fd = open(w->path, w->flags | O_CLOEXEC);
  } else {
    for (int tries = 0; fd < 0 && tries < 3; tries++) {
      fd = (w->flags & O_EXCL) ? -1 : open(w->path, (w->flags & ~O_CREAT) | O_CLOEXEC);
      if (fd >= 0 || (!(w->flags & O_EXCL) && errno != ENOENT)) break;
      fd = open(w->path, w->flags | O_EXCL | O_CLOEXEC, w->mode);
      created = fd >= 0;
      if (fd < 0 && (errno != EEXIST || (w->flags & O_EXCL))) break;
    }
  }
  w->result = fd < 0 ? -errno : fd;
  if (created) fchmod(fd, (mode_t)w->mode);
  if (!err) restore(w->nids, &saved);
  napi_threadsafe_function tsfn = w->tsfn;
  napi_call_threadsafe_function(tsfn, w, napi_tsfn_blocking);
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

static void open_done(napi_env env, napi_value cb, void *ctx, void *data) {
  (void)cb;
  (void)ctx;
  struct open_work *w = data;
  if (env) {
    napi_value res;
    napi_create_int32(env, w->result, &res);
    napi_resolve_deferred(env, w->deferred, res);
  } else if (w->result >= 0) {
    close(w->result);
  }
  free(w->path);
  free(w);
}

/* openAs(ids, path, flags, mode): a promise of an fd of ours (close-on-exec) for `path`,
 * opened on a thread of its own under the file system identity ids, or of a negative errno. */
static napi_value js_open_as(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) return type_error(env, "arguments", "(ids, path, flags, mode)"), NULL;
  struct open_work *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "calloc", ENOMEM);
  int64_t flags, mode;
  if (!get_ids(env, argv[0], w->ids, &w->nids) || !(w->path = get_string(env, argv[1], "path")) ||
      !get_int(env, argv[2], "flags", INT32_MIN, INT32_MAX, &flags) ||
      !get_int(env, argv[3], "mode", 0, 07777, &mode)) {
    free(w->path);
    free(w);
    return NULL;
  }
  w->flags = (int)flags;
  w->mode = (int)mode;
  napi_value promise, name;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "tether-open-as", NAPI_AUTO_LENGTH, &name);
  pthread_t th;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int err = napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL,
                                            open_done, &w->tsfn) == napi_ok
                ? pthread_create(&th, &attr, open_thread, w)
                : EAGAIN;
  pthread_attr_destroy(&attr);
  if (err) {
    if (w->tsfn) napi_release_threadsafe_function(w->tsfn, napi_tsfn_release);
    napi_value res;
    napi_create_int32(env, -err, &res);
    napi_resolve_deferred(env, w->deferred, res);
    free(w->path);
    free(w);
  }
  return promise;
}

/* pidfdSeek(pid, fd, offset): lseek(SEEK_SET) on the open file description behind the fd
 * of process `pid` (pidfd_getfd shares it): 0 or a negative errno. */
static napi_value js_pidfd_seek(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"pid", "fd", "offset"};
  static const int64_t min[] = {1, 0, 0}, max[] = {INT32_MAX, INT32_MAX, INT64_MAX};
  int64_t a[3];
  if (!arg_ints(env, info, 3, a, names, min, max)) return NULL;
  int err = 0;
  int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)a[0], 0);
  int fd = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, (int)a[1], 0);
  if (fd < 0 || lseek(fd, (off_t)a[2], SEEK_SET) < 0) err = errno;
  if (fd >= 0) close(fd);
  if (pidfd >= 0) close(pidfd);
  napi_value res;
  napi_create_int32(env, -err, &res);
  return res;
}

/* syscallAs(ids, nr, args): the raw result (a negative errno for a failure) of syscall `nr` run
 * on this thread under the file system identity ids = [uid, gid, ...groups] ([] keeps the
 * daemon's), restored after; a Buffer argument is passed as a pointer to its bytes, a bigint
 * as is. The raw syscalls change this thread's identity only (glibc's wrappers would change
 * every thread's). */
static napi_value js_syscall_as(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t nids = 0, nargs = 0;
  int64_t nr;
  long ids[MAX_GROUPS + 2];
  if (argc < 3) return type_error(env, "arguments", "(ids, nr, args)"), NULL;
  if (!get_ids(env, argv[0], ids, &nids) || !get_int(env, argv[1], "nr", 0, 4095, &nr))
    return NULL;
  if (napi_get_array_length(env, argv[2], &nargs) != napi_ok || nargs > 6)
    return type_error(env, "args", "at most 6 bigints or Buffers"), NULL;
  long a[6] = {0};
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value v;
    napi_valuetype t;
    napi_get_element(env, argv[2], i, &v);
    napi_typeof(env, v, &t);
    if (t == napi_bigint) {
      int64_t x;
      bool lossless;
      napi_get_value_bigint_int64(env, v, &x, &lossless);
      a[i] = (long)x;
    } else {
      void *p;
      size_t len;
      if (!get_buffer(env, v, "arg", &p, &len)) return NULL;
      a[i] = (long)(uintptr_t)p;
    }
  }
  struct ids_saved saved;
  int err = become(ids, nids, &saved);
  if (err) return throw_errno(env, "setgroups", err);
  long r = syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
  err = errno;
  restore(nids, &saved);
  napi_value res;
  napi_create_bigint_int64(env, r < 0 ? -(int64_t)err : (int64_t)r, &res);
  return res;
}

static void nothing(int sig) { (void)sig; }

napi_value notify_init(napi_env env, napi_value exports) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = nothing;
  sigemptyset(&sa.sa_mask);
  sigaction(STOP_SIGNAL, &sa, NULL);
  napi_property_descriptor props[] = {
      {"notifyStart", NULL, js_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"notifySend", NULL, js_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"notifyStop", NULL, js_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"notifyProbe", NULL, js_probe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"syscallAs", NULL, js_syscall_as, NULL, NULL, NULL, napi_enumerable, NULL},
      {"notifyAddFd", NULL, js_add_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"notifyIdValid", NULL, js_id_valid, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openAs", NULL, js_open_as, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pidfdSeek", NULL, js_pidfd_seek, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}
