/*
 * ptrace mechanisms for tetherd's tracer (daemon/tracer.ts): requests, regsets, syscall info,
 * tracee memory, and a non-blocking wait on one pid. No decisions here: which syscall to
 * change, skip or answer is decided in TypeScript.
 */
#define _GNU_SOURCE
#include "napi-util.h"

#include <elf.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <linux/ptrace.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

/* glibc's <sys/ptrace.h> clashes with <linux/ptrace.h>; the raw syscall needs neither. */
#include <sys/syscall.h>
static long raw_ptrace(long req, pid_t pid, void *addr, void *data) {
  return syscall(SYS_ptrace, req, pid, addr, data);
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < want) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return false;
  }
  return true;
}

static bool get_pid(napi_env env, napi_value v, pid_t *pid) {
  int64_t x;
  if (!get_int(env, v, "pid", 1, INT_MAX, &x)) return false;
  *pid = (pid_t)x;
  return true;
}

static bool get_addr(napi_env env, napi_value v, uint64_t *addr) {
  bool lossless;
  if (napi_get_value_bigint_uint64(env, v, addr, &lossless) != napi_ok || !lossless)
    return type_error(env, "addr", "a bigint in [0, 2^64)");
  return true;
}

static napi_value make_buffer(napi_env env, const void *data, size_t len) {
  napi_value buf;
  void *dst;
  napi_create_buffer_copy(env, len, data, &dst, &buf);
  return buf;
}

/* ptrace(request, pid, addr, data) for requests whose addr and data are plain integers
 * (CONT, SYSCALL, LISTEN, INTERRUPT, DETACH, SETOPTIONS, arm's SET_SYSCALL). */
static napi_value js_ptrace(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"request", "pid", "addr", "data"};
  napi_value argv[4];
  int64_t a[4];
  static const int64_t min[] = {0, 1, INT32_MIN, INT32_MIN};
  static const int64_t max[] = {0xffff, INT_MAX, INT32_MAX, INT32_MAX};
  if (!get_args(env, info, 4, argv)) return NULL;
  for (int i = 0; i < 4; i++)
    if (!get_int(env, argv[i], names[i], min[i], max[i], &a[i])) return NULL;
  long r = raw_ptrace((long)a[0], (pid_t)a[1], (void *)(long)a[2], (void *)(long)a[3]);
  if (r < 0) return throw_errno(env, "ptrace", errno);
  napi_value res;
  napi_create_int64(env, r, &res);
  return res;
}

static napi_value js_get_event_msg(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pid_t pid;
  if (!get_args(env, info, 1, argv) || !get_pid(env, argv[0], &pid)) return NULL;
  unsigned long msg = 0;
  if (raw_ptrace(PTRACE_GETEVENTMSG, pid, NULL, &msg) < 0)
    return throw_errno(env, "ptrace(PTRACE_GETEVENTMSG)", errno);
  napi_value res;
  napi_create_int64(env, (int64_t)msg, &res);
  return res;
}

/* The raw siginfo_t (128 bytes). */
static napi_value js_get_siginfo(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pid_t pid;
  if (!get_args(env, info, 1, argv) || !get_pid(env, argv[0], &pid)) return NULL;
  unsigned char si[128];
  if (raw_ptrace(PTRACE_GETSIGINFO, pid, NULL, si) < 0)
    return throw_errno(env, "ptrace(PTRACE_GETSIGINFO)", errno);
  return make_buffer(env, si, sizeof si);
}

/* The raw struct ptrace_syscall_info, as long as the kernel filled it. */
static napi_value js_get_syscall_info(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  pid_t pid;
  if (!get_args(env, info, 1, argv) || !get_pid(env, argv[0], &pid)) return NULL;
  unsigned char buf[128];
  long n = raw_ptrace(PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof buf, buf);
  if (n < 0) return throw_errno(env, "ptrace(PTRACE_GET_SYSCALL_INFO)", errno);
  return make_buffer(env, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf);
}

/* getRegset(pid, type, maxSize): the regset as the kernel returned it; its length tells the
 * tracee's ABI (a 32-bit tracee of a 64-bit tracer gets the 32-bit layout). */
static napi_value js_get_regset(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  pid_t pid;
  int64_t type, size;
  if (!get_args(env, info, 3, argv) || !get_pid(env, argv[0], &pid) ||
      !get_int(env, argv[1], "type", 0, INT32_MAX, &type) ||
      !get_int(env, argv[2], "size", 1, 4096, &size))
    return NULL;
  unsigned char buf[4096];
  struct iovec iov = {buf, (size_t)size};
  if (raw_ptrace(PTRACE_GETREGSET, pid, (void *)(long)type, &iov) < 0)
    return throw_errno(env, "ptrace(PTRACE_GETREGSET)", errno);
  return make_buffer(env, buf, iov.iov_len);
}

static napi_value js_set_regset(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  pid_t pid;
  int64_t type;
  struct iovec iov;
  if (!get_args(env, info, 3, argv) || !get_pid(env, argv[0], &pid) ||
      !get_int(env, argv[1], "type", 0, INT32_MAX, &type) ||
      !get_buffer(env, argv[2], "regs", &iov.iov_base, &iov.iov_len))
    return NULL;
  if (raw_ptrace(PTRACE_SETREGSET, pid, (void *)(long)type, &iov) < 0)
    return throw_errno(env, "ptrace(PTRACE_SETREGSET)", errno);
  return NULL;
}

/* readMem(pid, addr, len): up to len bytes; shorter where the tracee's mapping ends, empty
 * when addr itself is unmapped. */
static napi_value js_read_mem(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  pid_t pid;
  uint64_t addr;
  int64_t len;
  if (!get_args(env, info, 3, argv) || !get_pid(env, argv[0], &pid) ||
      !get_addr(env, argv[1], &addr) || !get_int(env, argv[2], "len", 0, 1 << 26, &len))
    return NULL;
  void *data;
  napi_value buf;
  napi_create_buffer(env, (size_t)len, &data, &buf);
  size_t got = 0;
  while (got < (size_t)len) {
    struct iovec local = {(char *)data + got, (size_t)len - got};
    struct iovec remote = {(void *)(uintptr_t)(addr + got), (size_t)len - got};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0) {
      if (errno == EFAULT) break;
      return throw_errno(env, "process_vm_readv", errno);
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  if (got == (size_t)len) return buf;
  napi_value slice;
  napi_create_buffer_copy(env, got, data, NULL, &slice);
  return slice;
}

/* readString(pid, addr, max): the bytes before the first NUL, or null when addr is unmapped.
 * A result of `max` bytes means no NUL was found within max. Reads page by page, so a string
 * that ends just before an unmapped page is still read. */
static napi_value js_read_string(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  pid_t pid;
  uint64_t addr;
  int64_t max;
  if (!get_args(env, info, 3, argv) || !get_pid(env, argv[0], &pid) ||
      !get_addr(env, argv[1], &addr) || !get_int(env, argv[2], "max", 1, 1 << 20, &max))
    return NULL;
  char *buf = malloc((size_t)max);
  if (!buf) return throw_errno(env, "malloc", ENOMEM);
  size_t got = 0;
  const uint64_t page = 4096;
  while (got < (size_t)max) {
    uint64_t at = addr + got;
    size_t want = (size_t)(page - at % page);
    if (want > (size_t)max - got) want = (size_t)max - got;
    struct iovec local = {buf + got, want};
    struct iovec remote = {(void *)(uintptr_t)at, want};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n <= 0) {
      int err = errno;
      if (n < 0 && err != EFAULT) {
        free(buf);
        return throw_errno(env, "process_vm_readv", err);
      }
      if (got == 0) {
        free(buf);
        napi_value nul;
        napi_get_null(env, &nul);
        return nul;
      }
      break;
    }
    char *nul = memchr(buf + got, 0, (size_t)n);
    if (nul) {
      napi_value res = make_buffer(env, buf, (size_t)(nul - buf));
      free(buf);
      return res;
    }
    got += (size_t)n;
  }
  napi_value res = make_buffer(env, buf, got);
  free(buf);
  return res;
}

/* writeMem(pid, addr, buf): all bytes or an error (EFAULT when the tracee's memory is not
 * writable there). */
static napi_value js_write_mem(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  pid_t pid;
  uint64_t addr;
  void *data;
  size_t len, done = 0;
  if (!get_args(env, info, 3, argv) || !get_pid(env, argv[0], &pid) ||
      !get_addr(env, argv[1], &addr) || !get_buffer(env, argv[2], "data", &data, &len))
    return NULL;
  while (done < len) {
    struct iovec local = {(char *)data + done, len - done};
    struct iovec remote = {(void *)(uintptr_t)(addr + done), len - done};
    ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n <= 0) return throw_errno(env, "process_vm_writev", n < 0 ? errno : EFAULT);
    done += (size_t)n;
  }
  return NULL;
}

int answers_try(void *table, pid_t pid); /* answers.c */

/* waitStatus(pid[, table]): the raw wait status of exactly this pid or thread (__WALL), or
 * null when it has nothing to report. Decoding is the caller's. With an answer table
 * (answers.c), a seccomp stop it answers is resumed here and reported as -1. */
static napi_value js_wait_status(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  pid_t pid;
  if (argc < 1) return throw_errno(env, "waitStatus", EINVAL);
  if (!get_pid(env, argv[0], &pid)) return NULL;
  void *table = NULL;
  if (argc > 1) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t == napi_external) napi_get_value_external(env, argv[1], &table);
  }
  int st;
  pid_t got;
  do got = waitpid(pid, &st, WNOHANG | __WALL);
  while (got < 0 && errno == EINTR);
  if (got < 0) return throw_errno(env, "waitpid", errno);
  napi_value res;
  if (got == 0)
    napi_get_null(env, &res);
  else if (table && WIFSTOPPED(st) && st >> 8 == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8)) &&
           answers_try(table, pid))
    napi_create_int32(env, -1, &res);
  else
    napi_create_int32(env, st, &res);
  return res;
}

napi_value trace_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ptrace", NULL, js_ptrace, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getEventMsg", NULL, js_get_event_msg, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getSiginfo", NULL, js_get_siginfo, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getSyscallInfo", NULL, js_get_syscall_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getRegset", NULL, js_get_regset, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setRegset", NULL, js_set_regset, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readMem", NULL, js_read_mem, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readString", NULL, js_read_string, NULL, NULL, NULL, napi_enumerable, NULL},
      {"writeMem", NULL, js_write_mem, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitStatus", NULL, js_wait_status, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}
