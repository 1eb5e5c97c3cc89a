// Codecs in plain JavaScript and WebAssembly, for hosts without node:zlib or zstd-napi (browsers):
// raw deflate from fflate (it stops at the end of the deflate stream, so QEMU's sector padding
// after it is harmless), Zstandard in WebAssembly (zstd.ts).
import { inflateSync } from 'fflate'
import type { Codecs, Compressors } from '../codecs.js'
import { zstdClusterWasm, zstdCompressClusterWasm } from './zstd.js'

export { setZstdWasm } from './zstd.js'

/** Raw deflate into exactly `outputSize` bytes (as QEMU, a stream longer than that is cut). */
export function inflateClusterJs(input: Uint8Array, outputSize: number, into?: Uint8Array): Uint8Array {
  const out = into?.length === outputSize ? into : new Uint8Array(outputSize)
  let result: Uint8Array
  try {
    result = inflateSync(input, { out })
  } catch (cause) {
    throw new Error(`deflate stream is invalid (${(cause as Error).message})`)
  }
  if (result.length !== outputSize) throw new Error(`deflate stream gave ${result.length} bytes, ${outputSize} expected`)
  return result.buffer === out.buffer && result.byteOffset === out.byteOffset ? out : result
}

/** Decompressors in JavaScript and WebAssembly. */
export const portableCodecs: Codecs = { deflate: inflateClusterJs, zstd: zstdClusterWasm }

/**
 * Compressors in WebAssembly: zstd only. (A JavaScript deflate with QEMU's 4 KiB window, which
 * its inflate with windowBits -12 needs, is not offered; deflate writes need node:zlib.)
 */
export const portableCompressors: Compressors = { zstd: zstdCompressClusterWasm }
