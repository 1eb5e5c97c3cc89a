// qimg_seek: lseek(SEEK_DATA / SEEK_HOLE) for Node, as QEMU's file-posix find_allocation uses, and fallocate(2).
// seek(fd, offset, 'data' | 'hole') returns the new offset; -1 on ENXIO (offset at/after EOF, or
// no data after it); -2 when the platform or filesystem cannot tell (no SEEK_DATA, EINVAL,
// EOPNOTSUPP); throws an Error (message strerror, property errno) on any other failure.
#define _GNU_SOURCE
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <fcntl.h>
#ifdef __linux__
#include <linux/falloc.h>
#endif
#include <node_api.h>

#define USAGE "seek(fd: number, offset: number, whence: 'data' | 'hole')"

// Any failing Node-API call: throw (unless one is already pending) and return.
#define CHECK(env, call)                                                      \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      bool pending = false;                                                   \
      napi_is_exception_pending((env), &pending);                             \
      if (!pending) napi_throw_type_error((env), NULL, "qimg_seek: " USAGE);  \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

static napi_value int64_value(napi_env env, int64_t value) {
  napi_value out;
  CHECK(env, napi_create_int64(env, value, &out));
  return out;
}

// Throws an Error with strerror(err) as its message and the number as its errno property.
static napi_value throw_errno(napi_env env, int err) {
  napi_value msg, error, errno_value;
  CHECK(env, napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &msg));
  CHECK(env, napi_create_error(env, NULL, msg, &error));
  CHECK(env, napi_create_int32(env, err, &errno_value));
  CHECK(env, napi_set_named_property(env, error, "errno", errno_value));
  napi_throw(env, error);
  return NULL;
}

static napi_value Seek(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t offset;
  char whence[8];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "qimg_seek: " USAGE);
    return NULL;
  }
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_get_value_int64(env, argv[1], &offset));
  CHECK(env, napi_get_value_string_utf8(env, argv[2], whence, sizeof whence, NULL));
  int data = strcmp(whence, "data") == 0;
  if (!data && strcmp(whence, "hole") != 0) {
    napi_throw_type_error(env, NULL, "whence must be 'data' or 'hole'");
    return NULL;
  }
  if (offset < 0) {
    napi_throw_range_error(env, NULL, "offset must not be negative");
    return NULL;
  }
#ifdef SEEK_DATA
  off_t got = lseek(fd, (off_t)offset, data ? SEEK_DATA : SEEK_HOLE);
  if (got >= 0) return int64_value(env, (int64_t)got);
  int err = errno;
  if (err == ENXIO) return int64_value(env, -1);
  if (err == EINVAL || err == EOPNOTSUPP || err == ENOTSUP) return int64_value(env, -2);
  return throw_errno(env, err);
#else
  (void)fd;
  return int64_value(env, -2);
#endif
}

// fallocate(fd, mode, offset, length): fallocate(2) with mode 'allocate' (0: space reserved,
// reading zeros, the file grown if needed, QEMU's preallocation=falloc), 'punch'
// (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: deallocate, size kept, reads zeros) or 'zero'
// (FALLOC_FL_ZERO_RANGE: reads zeros, may deallocate, grows the file like a write), the three
// QEMU's file-posix uses for preallocation, discard and write-zeroes. Returns 0; -2 when the
// platform or filesystem cannot (EOPNOTSUPP, ENOSYS, ENODEV, ENOTTY: QEMU's translate_err
// -ENOTSUP); -3 on EINVAL (some filesystems refuse unaligned ranges: QEMU tries its next
// fallback); throws an Error (message strerror, property errno) on any other failure.
static napi_value Fallocate(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd;
  char mode_name[10];
  int64_t offset, length;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "qimg_seek: fallocate(fd: number, mode: 'allocate' | 'punch' | 'zero', offset: number, length: number)");
    return NULL;
  }
  CHECK(env, napi_get_value_int32(env, argv[0], &fd));
  CHECK(env, napi_get_value_string_utf8(env, argv[1], mode_name, sizeof mode_name, NULL));
  CHECK(env, napi_get_value_int64(env, argv[2], &offset));
  CHECK(env, napi_get_value_int64(env, argv[3], &length));
  if (offset < 0 || length <= 0) {
    napi_throw_range_error(env, NULL, "offset must not be negative and length must be positive");
    return NULL;
  }
#if defined(__linux__) && defined(FALLOC_FL_PUNCH_HOLE) && defined(FALLOC_FL_ZERO_RANGE)
  int mode;
  if (strcmp(mode_name, "allocate") == 0) mode = 0;
  else if (strcmp(mode_name, "punch") == 0) mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  else if (strcmp(mode_name, "zero") == 0) mode = FALLOC_FL_ZERO_RANGE;
  else {
    napi_throw_type_error(env, NULL, "mode must be 'allocate', 'punch' or 'zero'");
    return NULL;
  }
  int ret;
  do ret = fallocate(fd, mode, (off_t)offset, (off_t)length);
  while (ret != 0 && errno == EINTR);
  if (ret == 0) return int64_value(env, 0);
  int err = errno;
  if (err == EOPNOTSUPP || err == ENOSYS || err == ENODEV || err == ENOTTY) return int64_value(env, -2);
  if (err == EINVAL) return int64_value(env, -3);
  return throw_errno(env, err);
#else
  (void)fd;
  (void)mode_name;
  return int64_value(env, -2);
#endif
}

NAPI_MODULE_INIT() {
  napi_value fn;
  CHECK(env, napi_create_function(env, "seek", NAPI_AUTO_LENGTH, Seek, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "seek", fn));
  CHECK(env, napi_create_function(env, "fallocate", NAPI_AUTO_LENGTH, Fallocate, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "fallocate", fn));
  return exports;
}
