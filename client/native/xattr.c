/* Extended attributes (ACLs among them: system.posix_acl_*), which Node
 * cannot read or write: a write-back's new file takes the old one's
 * (client/view-server.ts). */
#define _GNU_SOURCE
#include "addon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

static napi_value int_value(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

/* xattrs(path) -> [[name, Buffer], ...] of the file itself (a symlink's own), or -errno. */
napi_value xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value a[1];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  char path[4097];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, a[0], path, sizeof path, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "xattrs(path)");
    return NULL;
  }
  if (len >= sizeof path - 1) return int_value(env, -ENAMETOOLONG);
  /* The list may grow between the two calls: ERANGE asks again. */
  char *names = NULL;
  ssize_t n;
  for (;;) {
    n = llistxattr(path, NULL, 0);
    if (n < 0) return int_value(env, -errno);
    if (n == 0) break;
    names = malloc((size_t)n);
    if (!names) return int_value(env, -ENOMEM);
    ssize_t got = llistxattr(path, names, (size_t)n);
    if (got >= 0) {
      n = got;
      break;
    }
    int err = errno;
    free(names);
    names = NULL;
    if (err != ERANGE) return int_value(env, -err);
  }
  napi_value out;
  napi_create_array(env, &out);
  uint32_t count = 0;
  for (ssize_t off = 0; off < n; off += (ssize_t)strlen(names + off) + 1) {
    const char *name = names + off;
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) continue; /* gone meanwhile */
    void *data;
    napi_value buf, pair, name_v;
    napi_create_buffer(env, (size_t)size, &data, &buf);
    size = lgetxattr(path, name, data, (size_t)size);
    if (size < 0) continue;
    napi_value slice;
    napi_create_buffer_copy(env, (size_t)size, data, NULL, &slice);
    napi_create_array_with_length(env, 2, &pair);
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &name_v);
    napi_set_element(env, pair, 0, name_v);
    napi_set_element(env, pair, 1, slice);
    napi_set_element(env, out, count++, pair);
  }
  free(names);
  return out;
}

/* setXattr(fd, name, value) -> 0 or -errno. */
napi_value set_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value a[3];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int32_t fd = -1;
  char name[256];
  size_t len = 0;
  void *data = NULL;
  size_t size = 0;
  if (argc < 3 || napi_get_value_int32(env, a[0], &fd) != napi_ok ||
      napi_get_value_string_utf8(env, a[1], name, sizeof name, &len) != napi_ok ||
      napi_get_buffer_info(env, a[2], &data, &size) != napi_ok) {
    napi_throw_type_error(env, NULL, "setXattr(fd, name, value)");
    return NULL;
  }
  return int_value(env, fsetxattr(fd, name, data, size, 0) < 0 ? -errno : 0);
}
