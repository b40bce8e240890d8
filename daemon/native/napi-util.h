/* Node-API helpers shared by the addon's files: typed errors with errno, argument checks. */
#ifndef TETHER_NAPI_UTIL_H
#define TETHER_NAPI_UTIL_H
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

const char *errno_name(int err);
/* Throws Error("<syscall>: <CODE> (<strerror>)") with .code, .errno and .syscall set. */
napi_value throw_errno(napi_env env, const char *syscall_name, int err);
bool type_error(napi_env env, const char *what, const char *expected);
/* The bytes of a Buffer argument (not copied). */
bool get_buffer(napi_env env, napi_value v, const char *what, void **data, size_t *len);
bool get_int(napi_env env, napi_value v, const char *what, int64_t min, int64_t max, int64_t *out);
/* malloc'd copy; rejects embedded NULs. */
char *get_string(napi_env env, napi_value v, const char *what);
bool get_array(napi_env env, napi_value obj, const char *key, napi_value *arr, uint32_t *len);
void free_strv(char **v);
/* NULL-terminated malloc'd vector, as execve wants it. */
char **get_strv(napi_env env, napi_value obj, const char *key);
bool arg_ints(napi_env env, napi_callback_info info, size_t want, int64_t *out,
              const char *const *names, const int64_t *min, const int64_t *max);
napi_value set_int(napi_env env, napi_value obj, const char *key, int64_t v);
/* The pointer of an external made by this addon; NULL (TypeError thrown) for anything else. */
void *get_external(napi_env env, napi_value v, const char *what);
#endif
