/* Receiving bytes together with file descriptors (SCM_RIGHTS) on a unix
 * socket, which Node cannot do. The agent uses it to take the fds a launcher
 * hands over (client/launch.ts). */
#define _GNU_SOURCE
#include "addon.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_FDS 253

static napi_value throw_errno(napi_env env, int err) {
  napi_value msg, code, error;
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, err == EBADF ? "EBADF" : err == ENOTSOCK ? "ENOTSOCK" : "EIO",
                          NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_throw(env, error);
  return NULL;
}

/* recvFds(fd, maxBytes) -> { data: Buffer, fds: number[] }, or null when nothing is there
 * yet (EAGAIN). An empty data buffer means end of stream. Received fds are close-on-exec. */
napi_value recv_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  int32_t fd = -1, max = 0;
  if (argc < 2 || napi_get_value_int32(env, args[0], &fd) != napi_ok ||
      napi_get_value_int32(env, args[1], &max) != napi_ok || max <= 0 || max > (1 << 24)) {
    napi_throw_type_error(env, NULL, "recvFds(fd, maxBytes)");
    return NULL;
  }
  void *data;
  napi_value buf;
  napi_create_buffer(env, (size_t)max, &data, &buf);
  union {
    char raw[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {data, (size_t)max};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.raw,
                       .msg_controllen = sizeof ctl.raw};
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  napi_value result;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      napi_get_null(env, &result);
      return result;
    }
    return throw_errno(env, errno);
  }
  napi_value fds, v, slice;
  napi_create_array(env, &fds);
  uint32_t count = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      napi_create_int32(env, got, &v);
      napi_set_element(env, fds, count++, v);
    }
  }
  napi_create_object(env, &result);
  napi_create_buffer_copy(env, (size_t)n, data, NULL, &slice);
  napi_set_named_property(env, result, "data", slice);
  napi_set_named_property(env, result, "fds", fds);
  napi_value truncated;
  napi_get_boolean(env, (msg.msg_flags & MSG_CTRUNC) != 0, &truncated);
  napi_set_named_property(env, result, "truncated", truncated);
  return result;
}
