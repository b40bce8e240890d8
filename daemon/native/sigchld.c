/* SIGCHLD as a readable fd instead of a delivered signal. Every ptrace stop of a tracee sends
 * the tracer SIGCHLD; delivering it (signal frame, handler, sigreturn, each under the signal
 * lock with interrupts off) can cost more than the stop itself, on paravirtualized machines
 * most of all. So the signal is blocked in every thread of the process and read from a
 * signalfd. A thread waits on it and wakes the event loop; until the loop has taken that
 * wake-up, the stops a busy tracer collects meanwhile wake nobody.
 *
 * Threads that exist already get the block through their signal-return mask (a one-time real
 * time signal whose handler edits the saved mask); threads created later inherit it. Nothing
 * in the process sees SIGCHLD delivered any more; the handler installed for it (libuv's, for
 * Node's child_process) is run by the waiting thread instead. */
#define _GNU_SOURCE
#include "napi-util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static atomic_int acks;
static int sfd = -1;
static napi_threadsafe_function tsfn;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
/* The loop has a wake-up it has not run yet: stops meanwhile wake nobody. */
static bool notified = false;

static void add_sigchld_to_return_mask(int sig, siginfo_t *si, void *uc) {
  (void)sig;
  (void)si;
  sigaddset(&((ucontext_t *)uc)->uc_sigmask, SIGCHLD);
  atomic_fetch_add(&acks, 1);
}

/* Whether thread `tid` has SIGCHLD blocked, from /proc (-1: the thread is gone). */
static int blocks_sigchld(pid_t tid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  int res = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "SigBlk:", 7) == 0) {
      unsigned long long mask = strtoull(line + 7, NULL, 16);
      res = (mask >> (SIGCHLD - 1)) & 1;
      break;
    }
  }
  fclose(f);
  return res;
}

/* Blocks SIGCHLD in every thread; 0 or an errno. */
static int block_everywhere(void) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  int err = pthread_sigmask(SIG_BLOCK, &chld, NULL);
  if (err) return err;
  const int sig = SIGRTMIN + 7;
  struct sigaction act, old;
  memset(&act, 0, sizeof act);
  act.sa_sigaction = add_sigchld_to_return_mask;
  act.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&act.sa_mask);
  if (sigaction(sig, &act, &old) < 0) return errno;
  DIR *d = opendir("/proc/self/task");
  if (!d) {
    err = errno;
    sigaction(sig, &old, NULL);
    return err;
  }
  int sent = 0;
  pid_t self = (pid_t)syscall(SYS_gettid);
  atomic_store(&acks, 0);
  for (struct dirent *e; (e = readdir(d));) {
    pid_t tid = (pid_t)atoi(e->d_name);
    if (tid <= 0 || tid == self || blocks_sigchld(tid) != 0) continue;
    if (syscall(SYS_tgkill, getpid(), tid, sig) == 0) sent++;
  }
  closedir(d);
  /* Each thread runs the handler when it next returns to user space: soon, even asleep. */
  struct timespec nap = {0, 100000};
  for (int i = 0; i < 20000 && atomic_load(&acks) < sent; i++) nanosleep(&nap, NULL);
  err = atomic_load(&acks) < sent ? ETIMEDOUT : 0;
  sigaction(sig, &old, NULL);
  return err;
}

/* Runs the handler installed for SIGCHLD (libuv's, once Node's child_process is used), as
 * the kernel would have: it only writes to its loops' pipes, safe from any thread. */
static void forward_to_handler(void) {
  struct sigaction cur;
  if (sigaction(SIGCHLD, NULL, &cur) < 0) return;
  if (cur.sa_flags & SA_SIGINFO) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGCHLD;
    cur.sa_sigaction(SIGCHLD, &si, NULL);
  } else if (cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN) {
    cur.sa_handler(SIGCHLD);
  }
}

static void *wait_loop(void *arg) {
  (void)arg;
  struct signalfd_siginfo si[16];
  for (;;) {
    /* Wait until the loop has run the last wake-up, but not forever: a loop blocked elsewhere
     * (a spawnSync) still needs libuv's handler to see its child exit. */
    pthread_mutex_lock(&mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 10 * 1000 * 1000;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    while (notified && pthread_cond_timedwait(&cv, &mu, &until) == 0) {
    }
    pthread_mutex_unlock(&mu);
    struct pollfd p = {sfd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    while (read(sfd, si, sizeof si) > 0) {
    }
    forward_to_handler();
    pthread_mutex_lock(&mu);
    bool wake = !notified;
    notified = true;
    pthread_mutex_unlock(&mu);
    if (wake && napi_call_threadsafe_function(tsfn, NULL, napi_tsfn_blocking) != napi_ok)
      return NULL;
  }
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  (void)data;
  pthread_mutex_lock(&mu);
  notified = false;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
  if (env && cb) {
    napi_value global;
    napi_get_global(env, &global);
    napi_call_function(env, global, cb, 0, NULL, NULL);
  }
}

/* sigchldWatch(callback): from now on SIGCHLD is never delivered to this process; callback
 * runs in the event loop after one or more SIGCHLDs. Once per process. */
static napi_value js_sigchld_watch(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  size_t argc = 1;
  napi_valuetype t;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) {
    type_error(env, "sigchldWatch(callback)", "a function");
    return NULL;
  }
  if (sfd >= 0) {
    napi_throw_error(env, "ERR_ALREADY_WATCHING", "sigchldWatch: already watching");
    return NULL;
  }
  int err = block_everywhere();
  if (err) {
    /* Delivered again, to this thread at least: the caller can listen the usual way. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &chld, NULL);
    return throw_errno(env, "block SIGCHLD", err);
  }
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) return throw_errno(env, "signalfd", errno);
  napi_value name;
  napi_create_string_utf8(env, "SIGCHLD", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_js,
                                      &tsfn) != napi_ok)
    return NULL;
  /* Like a signal handler: it does not keep the loop alive by itself. */
  napi_unref_threadsafe_function(env, tsfn);
  pthread_t waiter;
  err = pthread_create(&waiter, NULL, wait_loop, NULL);
  if (err) return throw_errno(env, "pthread_create", err);
  pthread_detach(waiter);
  return NULL;
}

napi_value sigchld_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sigchldWatch", NULL, js_sigchld_watch, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}
