/* The client's Node-API addon: kernel mechanisms Node lacks, one file each. */
#ifndef TETHER_CLIENT_ADDON_H
#define TETHER_CLIENT_ADDON_H
#define NAPI_VERSION 8
#include <node_api.h>

/* recvfds.c: recvFds(fd, maxBytes) */
napi_value recv_fds(napi_env env, napi_callback_info info);
/* openat2.c: openBeneath(dirfd, path, flags, mode) */
napi_value open_beneath(napi_env env, napi_callback_info info);
/* xattr.c: xattrs(path), setXattr(fd, name, value) */
napi_value xattrs(napi_env env, napi_callback_info info);
napi_value set_xattr(napi_env env, napi_callback_info info);

#endif
