/* The client addon's index: the functions it exports (see addon.h). */
#include "addon.h"

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor p[] = {
      {"recvFds", NULL, recv_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openBeneath", NULL, open_beneath, NULL, NULL, NULL, napi_enumerable, NULL},
      {"xattrs", NULL, xattrs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setXattr", NULL, set_xattr, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof p / sizeof p[0], p);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
