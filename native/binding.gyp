{
  "targets": [
    {
      "target_name": "qimg_seek",
      "sources": ["seek.c"],
      "defines": ["NAPI_VERSION=8", "_FILE_OFFSET_BITS=64"],
      "cflags": ["-std=c11", "-Wall", "-Wextra"]
    }
  ]
}
