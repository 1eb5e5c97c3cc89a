{
  "targets": [
    {
      "target_name": "qimg_zlib",
      "sources": ["deflate.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=c11", "-Wall", "-Wextra"],
      "libraries": ["-ldl"]
    }
  ]
}
