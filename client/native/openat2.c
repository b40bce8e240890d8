/* openat2(2) confined to a directory: RESOLVE_BENEATH and no symlink at all on
 * the way. The view server walks a path itself (symlinks resolved in the view),
 * then opens the host file it found this way, below the mount root it holds, so
 * a directory another process swapped for a symlink meanwhile cannot lead it
 * outside an exported root (client/view-resolve.ts). */
#define _GNU_SOURCE
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437 /* the same on every ABI (asm-generic numbering since 5.6) */
#endif

/* openBeneath(dirfd, path, flags, mode) -> the new fd (close-on-exec), or -errno: ENOSYS on
 * kernels before 5.6, ELOOP at a symlink, EXDEV for a path that would leave `dirfd`. */
napi_value open_beneath(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value a[4];
  napi_get_cb_info(env, info, &argc, a, NULL, NULL);
  int32_t dirfd = -1, flags = 0, mode = 0;
  char path[4097];
  size_t len = 0;
  if (argc < 4 || napi_get_value_int32(env, a[0], &dirfd) != napi_ok ||
      napi_get_value_string_utf8(env, a[1], path, sizeof path, &len) != napi_ok ||
      napi_get_value_int32(env, a[2], &flags) != napi_ok ||
      napi_get_value_int32(env, a[3], &mode) != napi_ok) {
    napi_throw_type_error(env, NULL, "openBeneath(dirfd, path, flags, mode)");
    return NULL;
  }
  long fd;
  if (len >= sizeof path - 1) {
    fd = -ENAMETOOLONG;
  } else {
    struct open_how how = {
        .flags = (uint64_t)(uint32_t)flags | O_CLOEXEC,
        .mode = (uint64_t)(uint32_t)mode,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    do fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) fd = -errno;
  }
  napi_value r;
  napi_create_int32(env, (int32_t)fd, &r);
  return r;
}
