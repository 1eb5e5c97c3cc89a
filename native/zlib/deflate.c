// qimg_zlib: raw deflate with the system's zlib, the library QEMU links. Node's own zlib is
// Chromium's fork, whose faster match finder writes streams a few per cent larger; compressed
// images then come out larger than qemu-img's. This gives byte-identical streams to QEMU's
// qcow2_zlib_compress (deflateInit2 with the given level, window bits and memLevel).
// deflateRaw(input, output, level, windowBits, memLevel) compresses `input` into `output` and
// returns the stream's length, or -1 when it does not fit in `output` (QEMU's -ENOMEM: the
// cluster is then stored uncompressed); throws on a zlib error. Without a system zlib (libz.so.1)
// the module exports nothing and qimg uses Node's zlib.
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <string.h>
#include <zlib.h>
#include <node_api.h>

// The system library is opened by name and its functions looked up in it: plain calls would bind
// to the zlib inside the node executable (Chromium's), which exports the same symbols.
typedef int (*deflate_init2_fn)(z_streamp, int, int, int, int, int, const char *, int);
typedef int (*deflate_fn)(z_streamp, int);
typedef int (*deflate_end_fn)(z_streamp);
typedef const char *(*version_fn)(void);
static deflate_init2_fn sys_deflate_init2;
static deflate_fn sys_deflate;
static deflate_end_fn sys_deflate_end;
static version_fn sys_version;

// RTLD_DEEPBIND: the library's own calls between its functions (deflateInit2_ calls deflateReset)
// must not be bound to the node executable's copies either.
#ifdef RTLD_DEEPBIND
#define DEEPBIND RTLD_DEEPBIND
#else
#define DEEPBIND 0
#endif

static bool load_system_zlib(void) {
  void *lib = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL | DEEPBIND);
  if (!lib) lib = dlopen("libz.so", RTLD_NOW | RTLD_LOCAL | DEEPBIND);
  if (!lib) return false;
  sys_deflate_init2 = (deflate_init2_fn)dlsym(lib, "deflateInit2_");
  sys_deflate = (deflate_fn)dlsym(lib, "deflate");
  sys_deflate_end = (deflate_end_fn)dlsym(lib, "deflateEnd");
  sys_version = (version_fn)dlsym(lib, "zlibVersion");
  return sys_deflate_init2 && sys_deflate && sys_deflate_end && sys_version;
}

#define USAGE "deflateRaw(input: Uint8Array, output: Uint8Array, level: number, windowBits: number, memLevel: number)"

#define CHECK(env, call)                                                      \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      bool pending = false;                                                   \
      napi_is_exception_pending((env), &pending);                             \
      if (!pending) napi_throw_type_error((env), NULL, "qimg_zlib: " USAGE);  \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

static int bytes_of(napi_env env, napi_value value, void **data, size_t *length) {
  napi_typedarray_type type;
  size_t count;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, &count, data, &buffer, &offset) != napi_ok) return 0;
  if (type != napi_uint8_array) return 0;
  *length = count;
  return 1;
}

static napi_value DeflateRaw(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  void *input, *output;
  size_t input_length, output_length;
  int32_t level, window_bits, mem_level;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || !bytes_of(env, argv[0], &input, &input_length) || !bytes_of(env, argv[1], &output, &output_length)) {
    napi_throw_type_error(env, NULL, "qimg_zlib: " USAGE);
    return NULL;
  }
  CHECK(env, napi_get_value_int32(env, argv[2], &level));
  CHECK(env, napi_get_value_int32(env, argv[3], &window_bits));
  CHECK(env, napi_get_value_int32(env, argv[4], &mem_level));
  z_stream stream;
  memset(&stream, 0, sizeof stream);
  if (sys_deflate_init2(&stream, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY, ZLIB_VERSION, (int)sizeof(z_stream)) != Z_OK) {
    napi_throw_error(env, NULL, "qimg_zlib: deflateInit2 failed");
    return NULL;
  }
  stream.next_in = (Bytef *)input;
  stream.avail_in = (uInt)input_length;
  stream.next_out = (Bytef *)output;
  stream.avail_out = (uInt)output_length;
  int ret = sys_deflate(&stream, Z_FINISH);
  int64_t result;
  if (ret == Z_STREAM_END) result = (int64_t)(output_length - stream.avail_out);
  else if (ret == Z_OK || ret == Z_BUF_ERROR) result = -1;
  else result = -2;
  sys_deflate_end(&stream);
  if (result == -2) {
    napi_throw_error(env, NULL, "qimg_zlib: deflate failed");
    return NULL;
  }
  napi_value out;
  CHECK(env, napi_create_int64(env, result, &out));
  return out;
}

NAPI_MODULE_INIT() {
  if (!load_system_zlib()) return exports; // no system zlib: the module exports nothing
  napi_value fn;
  CHECK(env, napi_create_function(env, "deflateRaw", NAPI_AUTO_LENGTH, DeflateRaw, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "deflateRaw", fn));
  napi_value version;
  CHECK(env, napi_create_string_utf8(env, sys_version(), NAPI_AUTO_LENGTH, &version));
  CHECK(env, napi_set_named_property(env, exports, "zlibVersion", version));
  return exports;
}
