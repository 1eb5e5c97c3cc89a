// Decompression codecs are passed in, never found in a global registry: the core stays free of
// Node APIs, and each host (Node, a browser) supplies what it has (see node/codecs.ts).

/**
 * Decompresses one compressed cluster. `input` may carry trailing bytes (QEMU rounds the
 * stored length up to whole sectors); the result must be exactly `outputSize` bytes, or the
 * codec throws. `into` (`outputSize` bytes), when given, is where the caller wants the bytes: a
 * codec may write them there and return it (saving the caller a copy), or return other memory.
 */
export type Decompressor = (input: Uint8Array, outputSize: number, into?: Uint8Array) => Uint8Array | Promise<Uint8Array>

/** The codecs an image may need, by QCOW2 compression type name. */
export interface Codecs {
  /** Raw deflate (RFC 1951), QCOW2 compression type 0 ("zlib"). */
  deflate?: Decompressor
  /** Zstandard frames, QCOW2 compression type 1. */
  zstd?: Decompressor
}

/**
 * Compresses one cluster for a compressed write. Returns undefined when the result would not be
 * smaller than `limit` bytes (QEMU then writes the cluster uncompressed).
 */
export type Compressor = (input: Uint8Array, limit: number) => Uint8Array | undefined | Promise<Uint8Array | undefined>

/** Compressors by QCOW2 compression type name. */
export interface Compressors {
  deflate?: Compressor
  zstd?: Compressor
  /**
   * Raw deflate with zlib's defaults (level 6, window 2^15, memLevel 8): the body of the zlib
   * stream compress() writes, as QEMU's vmdk_write_extent stores a streamOptimized grain.
   */
  deflateDefault?: Compressor
}
