// Node's codecs: raw deflate from node:zlib, zstd from the zstd-napi binding (Node 20 has no
// zstd). Both decompress into a buffer of exactly the cluster size, as QEMU does. zstd-napi is
// an optional dependency loaded on first use; without it (an install with no compiler or with
// --ignore-scripts) zstd runs in WebAssembly (portable/codecs.ts).
import { createRequire } from 'node:module'
import type { Codecs, Compressors } from '../codecs.js'
import { zstdClusterWasm, zstdCompressClusterWasm } from '../portable/zstd.js'
import { lazyBuiltin } from './lazy-builtin.js'
import { systemDeflateRaw } from './system-zlib.js'

const zlib = lazyBuiltin<typeof import('node:zlib')>('node:zlib')

interface ZstdBinding {
  DCtx: new () => { decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number]; reset(directive: number): void }
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number }
  ResetDirective: { sessionOnly: number }
}

let zstdBinding: ZstdBinding | undefined | null

function loadZstd(): ZstdBinding | undefined {
  if (zstdBinding === undefined) {
    try {
      zstdBinding = createRequire(import.meta.url)('zstd-napi/binding') as ZstdBinding
    } catch {
      zstdBinding = null
    }
  }
  return zstdBinding ?? undefined
}

/**
 * Raw deflate into exactly `outputSize` bytes; trailing input after the stream is ignored. It
 * takes no `into` (see Decompressor): Node's inflate (Chromium's zlib, faster than the system's)
 * allocates its output, and copying that into `into` would only add a copy.
 */
export function inflateCluster(input: Uint8Array, outputSize: number): Uint8Array {
  let out: Buffer
  try {
    // One output chunk of the cluster size: no concatenation of 16 KiB pieces, no copy.
    out = zlib().inflateRawSync(input, { finishFlush: zlib().constants.Z_SYNC_FLUSH, maxOutputLength: outputSize, chunkSize: outputSize })
  } catch (cause) {
    // maxOutputLength stops a stream that inflates past the cluster (ERR_BUFFER_TOO_LARGE).
    const tooLong = (cause as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE'
    throw new Error(`deflate stream is invalid (${tooLong ? `it inflates to more than ${outputSize} bytes` : (cause as Error).message})`)
  }
  if (out.length !== outputSize) throw new Error(`deflate stream gave ${out.length} bytes, ${outputSize} expected`)
  return out
}

let dctx: InstanceType<ZstdBinding['DCtx']> | undefined

/**
 * Zstd frames into exactly `outputSize` bytes, streaming like QEMU (trailing bytes ignored);
 * written into `into` when it is given (and `outputSize` long).
 */
export function zstdCluster(input: Uint8Array, outputSize: number, into?: Uint8Array): Uint8Array {
  const binding = loadZstd()
  if (!binding) throw new Error('zstd support is not available (the zstd-napi package failed to load)')
  // One context per thread, reused: a fresh one costs as much as decompressing a cluster. The
  // reset drops whatever a previous (failed) stream left in it.
  const context = (dctx ??= new binding.DCtx())
  context.reset(binding.ResetDirective.sessionOnly)
  const out = into?.length === outputSize ? into : new Uint8Array(outputSize)
  let produced = 0
  let consumed = 0
  while (produced < outputSize && consumed < input.length) {
    const [, written, read] = context.decompressStream(out.subarray(produced), input.subarray(consumed))
    if (written === 0 && read === 0) break
    produced += written
    consumed += read
  }
  if (produced !== outputSize) throw new Error(`zstd stream gave ${produced} bytes, ${outputSize} expected`)
  return out
}

/**
 * Raw deflate as QEMU writes it (level 6, window 2^12 so QEMU's inflate with windowBits -12 can
 * read it); undefined unless strictly smaller than `limit`. The system zlib when the optional
 * addon has it (the very streams qemu-img writes), else Node's zlib (a little larger). `into`
 * (limit - 1 bytes), when given, may receive the stream.
 */
export function deflateCluster(input: Uint8Array, limit: number, into?: Uint8Array): Uint8Array | undefined {
  const system = systemDeflateRaw(input, limit, 6, 12, 9, into)
  if (system !== undefined) return system ?? undefined
  const out = zlib().deflateRawSync(input, { level: 6, windowBits: 12, memLevel: 9 })
  return out.length < limit ? out : undefined
}

let cctx: InstanceType<ZstdBinding['CCtx']> | undefined

/**
 * A zstd frame at QEMU's level 3; undefined unless strictly smaller than `limit`. Written into
 * `into` (limit - 1 bytes) when it is given.
 */
export function zstdCompressCluster(input: Uint8Array, limit: number, into?: Uint8Array): Uint8Array | undefined {
  const binding = loadZstd()
  if (!binding) throw new Error('zstd support is not available (the zstd-napi package failed to load)')
  cctx ??= new binding.CCtx()
  const out = into?.length === limit - 1 ? into : new Uint8Array(limit - 1)
  try {
    const length = cctx.compress(out, input, 3)
    return out.subarray(0, length)
  } catch {
    return undefined // did not fit: store the cluster uncompressed
  }
}

/** zstd decompression by zstd-napi, or in WebAssembly when it is not installed. */
export function zstdClusterAny(input: Uint8Array, outputSize: number, into?: Uint8Array): Uint8Array | Promise<Uint8Array> {
  return loadZstd() ? zstdCluster(input, outputSize, into) : zstdClusterWasm(input, outputSize)
}

/** zstd compression by zstd-napi, or in WebAssembly when it is not installed. */
export function zstdCompressClusterAny(input: Uint8Array, limit: number, into?: Uint8Array): Uint8Array | undefined | Promise<Uint8Array | undefined> {
  return loadZstd() ? zstdCompressCluster(input, limit, into) : zstdCompressClusterWasm(input, limit)
}

/** Compressors on the calling thread (the worker pool runs these too). */
export const nodeCompressors: Compressors = { deflate: deflateCluster, zstd: zstdCompressClusterAny }

/** The codecs qimg uses on Node. */
export const nodeCodecs: Codecs = { deflate: inflateCluster, zstd: zstdClusterAny }
