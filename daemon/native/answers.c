/*
 * The tracer's fast path (docs/hot-path.md): a table of answers that TypeScript filled, keyed
 * by (answer class, follow, access mode, path: absolute as written, or a relative one after
 * the directory it is resolved from as /proc shows it), and the mechanism that
 * answers a seccomp stop from it without returning to JavaScript: read the path argument,
 * look it up, write the answer's bytes into the tracee, skip the call with its result, resume.
 * Which calls may be answered, where their arguments are, what an answer holds and how long
 * are all decided in TypeScript (daemon/fast-answers.ts); a miss leaves the stop to it
 * untouched.
 */
#define _GNU_SOURCE
#include "answers.h"
#include "napi-util.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/ptrace.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <stdio.h>
#include <unistd.h>

#define MAX_NR 1024
#define MAX_PATH 4096
#define AT_SYMLINK_NOFOLLOW_ 0x100
#define AT_FDCWD_ (-100)
/* The two answer classes handled apart, numbered as CLASS in daemon/fast-answers.ts. */
#define CLASS_READLINK 5
#define CLASS_OPEN 8
#define SPEC_BYTES 11

struct spec {
  uint8_t cls; /* 0: not answered here */
  int8_t path, buf, flags, mode, size;
  uint8_t follow; /* without a flags argument */
  /* CLASS_OPEN: flag bits that must all be clear in the flags argument (a plain read). */
  uint32_t zero;
};

struct entry {
  uint8_t *key;
  uint32_t key_len;
  uint32_t data_len;
  int64_t ret;
  uint8_t *data;
  /* An answer that holds for a while (a writable mount's): until `expires` (CLOCK_MONOTONIC
   * ns) and while the table's generation is still `gen`. 0: for the rest of the run. */
  int64_t expires;
  uint64_t gen;
};

struct table {
  /* The user-notification thread (notify.c) answers from it while JavaScript fills it. */
  pthread_mutex_t lock;
  uint32_t arch; /* AUDIT_ARCH of the calls answered (the tracer's own ABI) */
  struct spec specs[MAX_NR];
  struct entry *slots;
  uint32_t cap, used, max_entries;
  uint64_t hits, misses, bytes, max_bytes;
  /* Bumped by answersForgetPassing(): every answer with an expiry stops counting at once. */
  uint64_t gen;
};

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static bool live(const struct table *t, const struct entry *e) {
  return e->expires == 0 || (e->gen == t->gen && now_ns() < e->expires);
}

static uint64_t hash(const uint8_t *k, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 1099511628211ull;
  return h;
}

static void clear(struct table *t) {
  if (!t->slots) return;
  for (uint32_t i = 0; i < t->cap; i++) {
    free(t->slots[i].key);
    free(t->slots[i].data);
  }
  memset(t->slots, 0, sizeof *t->slots * t->cap);
  t->used = 0;
  t->bytes = 0;
}

static struct entry *find(struct table *t, const uint8_t *key, size_t len) {
  uint32_t mask = t->cap - 1;
  for (uint32_t i = (uint32_t)hash(key, len) & mask;; i = (i + 1) & mask) {
    struct entry *e = &t->slots[i];
    if (!e->key || (e->key_len == len && memcmp(e->key, key, len) == 0)) return e;
  }
}

/* Doubles the slots (the load stays under one half). */
static int grow(struct table *t) {
  struct entry *old = t->slots;
  uint32_t old_cap = t->cap;
  struct entry *slots = calloc((size_t)old_cap * 2, sizeof *slots);
  if (!slots) return -1;
  t->slots = slots;
  t->cap = old_cap * 2;
  for (uint32_t i = 0; i < old_cap; i++)
    if (old[i].key) *find(t, old[i].key, old[i].key_len) = old[i];
  free(old);
  return 0;
}

static void release(struct table *t) {
  if (!t->slots) return;
  clear(t);
  free(t->slots);
  t->slots = NULL;
  t->cap = 0;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  struct table *t = data;
  release(t);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

static struct table *get_table(napi_env env, napi_value v) {
  return get_external(env, v, "table");
}

/* answersCreate(arch, specs, maxEntries, maxBytes): a table for calls of AUDIT_ARCH `arch`;
 * specs holds 11 bytes per syscall number: class, the path, buf, flags, mode and size
 * argument (-1 for one the call lacks), follow, and a little-endian u32 of flag bits that
 * must be clear (opens). When full, the table starts over empty. */
static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t arch, max_entries, max_bytes;
  void *specs;
  size_t specs_len;
  if (argc < 4 || !get_int(env, argv[0], "arch", 0, UINT32_MAX, &arch) ||
      !get_buffer(env, argv[1], "specs", &specs, &specs_len) ||
      !get_int(env, argv[2], "maxEntries", 1, 1 << 24, &max_entries) ||
      !get_int(env, argv[3], "maxBytes", 1, 1LL << 40, &max_bytes))
    return argc < 4 ? (type_error(env, "arguments", "4"), NULL) : NULL;
  struct table *t = calloc(1, sizeof *t);
  if (!t) return throw_errno(env, "calloc", ENOMEM);
  pthread_mutex_init(&t->lock, NULL);
  t->arch = (uint32_t)arch;
  t->max_entries = (uint32_t)max_entries;
  t->max_bytes = (uint64_t)max_bytes;
  /* Small at first: most runs keep a few hundred answers; grown as it fills. */
  t->cap = 64;
  t->slots = calloc(t->cap, sizeof *t->slots);
  if (!t->slots) {
    free(t);
    return throw_errno(env, "calloc", ENOMEM);
  }
  const int8_t *s = specs;
  for (size_t nr = 0; nr < MAX_NR && (nr + 1) * SPEC_BYTES <= specs_len; nr++) {
    const int8_t *p = s + nr * SPEC_BYTES;
    const uint8_t *z = (const uint8_t *)p + 7;
    t->specs[nr] = (struct spec){(uint8_t)p[0], p[1], p[2], p[3], p[4], p[5], (uint8_t)p[6],
                                 z[0] | z[1] << 8 | z[2] << 16 | (uint32_t)z[3] << 24};
  }
  napi_value res;
  napi_create_external(env, t, finalize, NULL, &res);
  return res;
}

/* Keeps one answer (the caller holds the lock): 0, or an errno. */
static int put(struct table *t, const void *key, size_t key_len, int64_t ret, const void *data,
               size_t data_len, int64_t ttl) {
  if (!t->slots) return 0; /* closed */
  struct entry *e = find(t, key, key_len);
  if (e->key) {
    t->bytes -= e->key_len + e->data_len;
    free(e->data);
  } else {
    if (t->used >= t->max_entries || t->bytes + key_len + data_len > t->max_bytes) clear(t);
    else if ((t->used + 1) * 2 > t->cap && grow(t) < 0)
      return ENOMEM;
    e = find(t, key, key_len);
    e->key = malloc(key_len);
    if (!e->key) return ENOMEM;
    memcpy(e->key, key, key_len);
    e->key_len = (uint32_t)key_len;
    t->used++;
  }
  e->data = data_len ? malloc(data_len) : NULL;
  if (data_len && !e->data) {
    e->data_len = 0;
    return ENOMEM;
  }
  if (data_len) memcpy(e->data, data, data_len);
  e->data_len = (uint32_t)data_len;
  e->ret = ret;
  e->expires = ttl ? now_ns() + ttl * 1000000 : 0;
  e->gen = t->gen;
  t->bytes += key_len + data_len;
  return 0;
}

/* answersSet(table, key, ret, data|null, ttlMs): ttlMs 0 keeps it for the run; otherwise it
 * holds for ttlMs or until answersForgetPassing(). */
static napi_value js_set(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct table *t;
  void *key, *data = NULL;
  size_t key_len, data_len = 0;
  int64_t ret, ttl;
  napi_valuetype dt;
  if (argc < 5 || !(t = get_table(env, argv[0])) ||
      !get_buffer(env, argv[1], "key", &key, &key_len) ||
      !get_int(env, argv[2], "ret", -4095, INT32_MAX, &ret) ||
      !get_int(env, argv[4], "ttlMs", 0, 1 << 30, &ttl))
    return NULL;
  napi_typeof(env, argv[3], &dt);
  if (dt != napi_null && !get_buffer(env, argv[3], "data", &data, &data_len)) return NULL;
  pthread_mutex_lock(&t->lock);
  int err = put(t, key, key_len, ret, data, data_len, ttl);
  pthread_mutex_unlock(&t->lock);
  return err ? throw_errno(env, "malloc", err) : NULL;
}

/* The table of a call's only argument, locked; NULL (with an exception) when it is not one. */
static struct table *table_arg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct table *t = argc < 1 ? (type_error(env, "table", "an answer table"), NULL)
                             : get_table(env, argv[0]);
  if (t) pthread_mutex_lock(&t->lock);
  return t;
}

/* answersForgetPassing(table): answers with an expiry no longer count (the run changed
 * something in a writable mount); those kept for the run stay. */
static napi_value js_forget_passing(napi_env env, napi_callback_info info) {
  struct table *t = table_arg(env, info);
  if (!t) return NULL;
  t->gen++;
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

static napi_value js_clear(napi_env env, napi_callback_info info) {
  struct table *t = table_arg(env, info);
  if (!t) return NULL;
  clear(t);
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

/* answersClose(table): frees its answers now (the run is over); it answers nothing after. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  struct table *t = table_arg(env, info);
  if (!t) return NULL;
  release(t);
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

/* answersStats(table): { entries, bytes, hits, misses } */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  struct table *t = table_arg(env, info);
  if (!t) return NULL;
  int64_t used = t->used, bytes = (int64_t)t->bytes, hits = (int64_t)t->hits,
          misses = (int64_t)t->misses;
  pthread_mutex_unlock(&t->lock);
  napi_value o;
  napi_create_object(env, &o);
  set_int(env, o, "entries", used);
  set_int(env, o, "bytes", bytes);
  set_int(env, o, "hits", hits);
  set_int(env, o, "misses", misses);
  return o;
}

/* A NUL-terminated string of the tracee, page by page; its length, or -1. */
static long read_path(pid_t pid, uint64_t addr, char *buf) {
  size_t got = 0;
  while (got < MAX_PATH) {
    uint64_t at = addr + got;
    size_t want = 4096 - at % 4096;
    if (want > MAX_PATH - got) want = MAX_PATH - got;
    struct iovec l = {buf + got, want}, r = {(void *)(uintptr_t)at, want};
    ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
    if (n <= 0) return -1;
    char *nul = memchr(buf + got, 0, (size_t)n);
    if (nul) return nul - buf;
    got += (size_t)n;
  }
  return -1;
}

static int write_mem(pid_t pid, uint64_t addr, const void *data, size_t len) {
  struct iovec l = {(void *)data, len}, r = {(void *)(uintptr_t)addr, len};
  return process_vm_writev(pid, &l, 1, &r, 1, 0) == (ssize_t)len ? 0 : -1;
}

/* The tracee's general registers (NT_PRSTATUS) and where its stack pointer and syscall
 * arguments are in them. */
#if defined(__x86_64__)
typedef unsigned long long reg_t;
#define NREGS 27 /* struct user_regs_struct */
#define RED_ZONE 128
static const int ARG_REG[6] = {14, 13, 12, 7, 9, 8}; /* rdi rsi rdx r10 r8 r9 */
#define SP_REG 19
#elif defined(__aarch64__)
typedef unsigned long long reg_t;
#define NREGS 34 /* x0..x30, sp, pc, pstate */
#define RED_ZONE 0
static const int ARG_REG[6] = {0, 1, 2, 3, 4, 5};
#define SP_REG 31
#elif defined(__arm__)
typedef unsigned long reg_t;
#define NREGS 18 /* r0..r15, cpsr, orig_r0 */
#define RED_ZONE 0
static const int ARG_REG[6] = {0, 1, 2, 3, 4, 5};
#define SP_REG 13
#endif

/* Skips the call the tracee is stopped at (a seccomp stop) with `ret` as its result. */
static int skip_with(pid_t pid, int64_t ret) {
#if defined(NREGS)
  reg_t regs[NREGS];
  struct iovec io = {regs, sizeof regs};
#if defined(__arm__)
  if (syscall(SYS_ptrace, 23 /* PTRACE_SET_SYSCALL */, pid, 0, (void *)-1L) < 0) return -1;
#endif
  if (syscall(SYS_ptrace, PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &io) < 0) return -1;
#if defined(__x86_64__)
  regs[15] = (reg_t)-1; /* orig_rax */
  regs[10] = (reg_t)ret; /* rax */
#else
  regs[0] = (reg_t)ret;
#endif
  if (syscall(SYS_ptrace, PTRACE_SETREGSET, pid, (void *)NT_PRSTATUS, &io) < 0) return -1;
#if defined(__aarch64__)
  int nr = -1;
  struct iovec sio = {&nr, sizeof nr};
  return (int)syscall(SYS_ptrace, PTRACE_SETREGSET, pid, (void *)0x404 /* NT_ARM_SYSTEM_CALL */,
                      &sio);
#endif
  return 0;
#else
  (void)pid;
  (void)ret;
  return -1;
#endif
}

/* Lets the call run with path argument `arg` replaced by `path` (NUL included), written on
 * the tracee's stack below its red zone, as the TypeScript tracer's rewrite does. */
static int rewrite_path(pid_t pid, int arg, const uint8_t *path, size_t len) {
#if defined(NREGS)
  reg_t regs[NREGS];
  struct iovec io = {regs, sizeof regs};
  if (arg < 0 || arg > 5 ||
      syscall(SYS_ptrace, PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &io) < 0)
    return -1;
  uint64_t at = ((uint64_t)regs[SP_REG] - RED_ZONE - len) & ~(uint64_t)15;
  if (write_mem(pid, at, path, len) < 0) return -1;
  regs[ARG_REG[arg]] = (reg_t)at;
  return (int)syscall(SYS_ptrace, PTRACE_SETREGSET, pid, (void *)NT_PRSTATUS, &io);
#else
  (void)pid;
  (void)arg;
  (void)path;
  (void)len;
  return -1;
#endif
}

/* The key of a call of spec `sp` with arguments `a` (from `path`, the path argument read),
 * in `key` (room for 3 + 2 * MAX_PATH + 1 bytes): its length, or 0 for a call never kept. */
static size_t build_key(pid_t pid, const struct spec *sp, const __u64 *a, const char *path,
                        long len, uint8_t *key) {
  size_t klen = 3;
  if (len <= 0) return 0;
  if (path[0] == '/') {
    memcpy(key + 3, path, (size_t)len);
    klen += (size_t)len;
  } else {
    /* Relative: keyed by the directory the kernel resolves it from, as /proc shows it (a
     * placeholder of a host directory), and the rest without its leading "./". */
    int dirfd = sp->path == 1 ? (int32_t)a[0] : AT_FDCWD_;
    char link[64];
    if (dirfd == AT_FDCWD_)
      snprintf(link, sizeof link, "/proc/%d/cwd", pid);
    else if (dirfd >= 0)
      snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, dirfd);
    else
      return 0;
    ssize_t bl = readlink(link, (char *)key + 3, MAX_PATH);
    if (bl <= 0 || bl >= MAX_PATH || key[3] != '/') return 0;
    klen += (size_t)bl;
    if (bl > 1) key[klen++] = '/';
    const char *rel = path;
    while (rel[0] == '.' && rel[1] == '/') rel += 2;
    size_t rl = (size_t)(path + len - rel);
    if (rl == 0) return 0;
    memcpy(key + klen, rel, rl);
    klen += rl;
  }
  key[0] = sp->cls;
  if (sp->cls == CLASS_OPEN) {
    if ((uint32_t)a[sp->flags] & sp->zero) return 0;
    key[1] = 1;
  } else
    key[1] = sp->flags >= 0 ? !((int32_t)a[sp->flags] & AT_SYMLINK_NOFOLLOW_) : sp->follow;
  key[2] = sp->mode >= 0 ? (uint8_t)(a[sp->mode] & 7) : 0;
  return klen;
}

/* The live entry answering call `nr` of AUDIT_ARCH `arch` with arguments `a` by task `pid`
 * (the caller holds the lock), or NULL; its spec in *spp. */
static struct entry *lookup(struct table *t, pid_t pid, uint32_t arch, int nr, const __u64 *a,
                            const struct spec **spp) {
  if (!t->slots || arch != t->arch || nr < 0 || nr >= MAX_NR) return NULL;
  const struct spec *sp = &t->specs[nr];
  if (!sp->cls) return NULL;
  *spp = sp;
  uint8_t key[3 + 2 * MAX_PATH + 1];
  char path[MAX_PATH];
  long len = read_path(pid, a[sp->path], path);
  size_t klen = build_key(pid, sp, a, path, len, key);
  struct entry *e = klen ? find(t, key, klen) : NULL;
  if (e && e->key && live(t, e)) return e;
  t->misses++;
  return NULL;
}

/* Writes an answer's bytes into the caller's buffer and says the call's result; false when it
 * cannot be given (a readlink with no room, a buffer not writable). */
static bool give(pid_t pid, const struct spec *sp, const __u64 *a, const struct entry *e,
                 int64_t *ret) {
  size_t n = e->data_len;
  *ret = e->ret;
  if (sp->cls == CLASS_READLINK && *ret >= 0) {
    int32_t size = (int32_t)a[sp->size];
    if (size <= 0) return false;
    if (n > (size_t)size) n = (size_t)size;
    *ret = (int64_t)n;
  }
  return !n || write_mem(pid, a[sp->buf], e->data, n) == 0;
}

int answers_try(void *table, pid_t pid) {
  struct table *t = table;
  struct ptrace_syscall_info si;
  if (syscall(SYS_ptrace, PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof si, &si) <= 0 ||
      si.op != PTRACE_SYSCALL_INFO_SECCOMP)
    return 0;
  const __u64 *a = si.seccomp.args;
  const struct spec *sp = NULL;
  int done = 0;
  pthread_mutex_lock(&t->lock);
  struct entry *e = lookup(t, pid, si.arch, (int)si.seccomp.nr, a, &sp);
  if (e && sp->cls == CLASS_OPEN) {
    /* The answer is the device path to open instead (its content in the cache). */
    done = e->data_len && rewrite_path(pid, sp->path, e->data, e->data_len) == 0 &&
           syscall(SYS_ptrace, PTRACE_CONT, pid, 0, 0) == 0;
  } else if (e) {
    int64_t ret;
    done = give(pid, sp, a, e, &ret) && skip_with(pid, ret) == 0 &&
           syscall(SYS_ptrace, PTRACE_CONT, pid, 0, 0) == 0;
  }
  if (e) done ? t->hits++ : t->misses++;
  pthread_mutex_unlock(&t->lock);
  return done;
}

int answers_notified(void *table, int listener, const struct seccomp_notif *req) {
  struct table *t = table;
  const __u64 *a = req->data.args;
  const struct spec *sp = NULL;
  int done = 0;
  pthread_mutex_lock(&t->lock);
  struct entry *e = lookup(t, (pid_t)req->pid, req->data.arch, req->data.nr, a, &sp);
  __u64 id = req->id;
  /* The path read was the task's own only if the notification is still pending. */
  if (e && ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0) {
    if (sp->cls == CLASS_OPEN) {
      /* The device copy named by the answer, opened here and installed in the program as
       * the call's result (Linux 5.14); a failure leaves the call to JavaScript. */
      int flags = (int)a[sp->flags];
      int fd = e->data_len ? open((const char *)e->data, flags | O_CLOEXEC) : -1;
      if (fd >= 0) {
        struct seccomp_notif_addfd add = {.id = id,
                                          .flags = SECCOMP_ADDFD_FLAG_SEND,
                                          .srcfd = (__u32)fd,
                                          .newfd_flags = (__u32)(flags & O_CLOEXEC)};
        done = ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) >= 0 || errno == ENOENT;
        close(fd);
      }
    } else {
      int64_t ret;
      if (give((pid_t)req->pid, sp, a, e, &ret)) {
        struct seccomp_notif_resp resp = {.id = id};
        if (ret < 0) resp.error = (__s32)ret;
        else resp.val = ret;
        /* ENOENT: the task was interrupted meanwhile; it will ask again. */
        done = ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0 || errno == ENOENT;
      }
    }
  }
  if (e) done ? t->hits++ : t->misses++;
  pthread_mutex_unlock(&t->lock);
  return done;
}

napi_value answers_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"answersCreate", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"answersSet", NULL, js_set, NULL, NULL, NULL, napi_enumerable, NULL},
      {"answersClear", NULL, js_clear, NULL, NULL, NULL, napi_enumerable, NULL},
      {"answersClose", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"answersForgetPassing", NULL, js_forget_passing, NULL, NULL, NULL, napi_enumerable, NULL},
      {"answersStats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}
