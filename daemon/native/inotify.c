/* inotify for the daemon's working copies: a non-blocking fd and its watches. The events are
 * read and decoded in TypeScript (daemon/working-copies.ts). */
#define _GNU_SOURCE
#include "napi-util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <unistd.h>

static napi_value js_inotify_init(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return throw_errno(env, "inotify_init1", errno);
  napi_value res;
  napi_create_int32(env, fd, &res);
  return res;
}

/* inotifyAddWatch(fd, path, mask) -> watch descriptor */
static napi_value js_inotify_add_watch(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  size_t argc = 3;
  int64_t fd, mask;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) {
    type_error(env, "inotifyAddWatch(fd, path, mask)", "called with three arguments");
    return NULL;
  }
  if (!get_int(env, argv[0], "fd", 0, INT_MAX, &fd) ||
      !get_int(env, argv[2], "mask", 0, UINT32_MAX, &mask))
    return NULL;
  char *path = get_string(env, argv[1], "path");
  if (!path) return NULL;
  int wd = inotify_add_watch((int)fd, path, (uint32_t)mask);
  int err = errno;
  free(path);
  if (wd < 0) return throw_errno(env, "inotify_add_watch", err);
  napi_value res;
  napi_create_int32(env, wd, &res);
  return res;
}

static napi_value js_inotify_rm_watch(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"fd", "wd"};
  static const int64_t min[] = {0, 0}, max[] = {INT_MAX, INT_MAX};
  int64_t a[2];
  if (!arg_ints(env, info, 2, a, names, min, max)) return NULL;
  if (inotify_rm_watch((int)a[0], (int)a[1]) < 0 && errno != EINVAL)
    return throw_errno(env, "inotify_rm_watch", errno);
  return NULL;
}

/* inotifyRead(fd, buf) -> bytes read, 0 when no event is queued. Polled at every trapped call,
 * so an empty queue is an answer, not an exception. */
static napi_value js_inotify_read(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t argc = 2;
  int64_t fd;
  void *data;
  size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) {
    type_error(env, "inotifyRead(fd, buf)", "called with two arguments");
    return NULL;
  }
  if (!get_int(env, argv[0], "fd", 0, INT_MAX, &fd) ||
      !get_buffer(env, argv[1], "buf", &data, &len))
    return NULL;
  ssize_t n;
  do n = read((int)fd, data, len);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) return throw_errno(env, "read(inotify)", errno);
  napi_value res;
  napi_create_int64(env, n < 0 ? 0 : n, &res);
  return res;
}

napi_value inotify_init_module(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"inotifyInit", NULL, js_inotify_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inotifyAddWatch", NULL, js_inotify_add_watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inotifyRmWatch", NULL, js_inotify_rm_watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"inotifyRead", NULL, js_inotify_read, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof *props, props);
  return exports;
}
