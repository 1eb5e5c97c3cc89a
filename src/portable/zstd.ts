// Zstandard in WebAssembly: the build of libzstd that @bokuweb/zstd-wasm ships inside its npm
// package, loaded on the first zstd cluster. Node uses it when zstd-napi (an optional native
// dependency) is not installed; browsers always do.
import { firstZstdFrame } from './zstd-frame.js'

interface ZstdWasm {
  init(path?: string | ArrayBufferLike): Promise<void>
  decompress(input: Uint8Array, options?: { defaultHeapSize?: number }): Uint8Array
  compress(input: Uint8Array, level?: number): Uint8Array
}

let zstdWasm: Promise<ZstdWasm> | undefined
let zstdWasmSource: string | ArrayBufferLike | undefined

/**
 * Where the browser build finds `zstd.wasm` when a bundler has not placed it beside the
 * module (a URL, or the bytes themselves). Call before the first zstd image is read.
 */
export function setZstdWasm(source: string | URL | ArrayBufferLike): void {
  zstdWasmSource = source instanceof URL ? source.href : source
}

function loadZstdWasm(): Promise<ZstdWasm> {
  zstdWasm ??= import('@bokuweb/zstd-wasm').then(async (module) => {
    const zstd = ((module as { default?: ZstdWasm }).default ?? module) as unknown as ZstdWasm
    await zstd.init(zstdWasmSource)
    return zstd
  }).catch((cause: unknown) => {
    zstdWasm = undefined
    throw new Error(`zstd support is not available (@bokuweb/zstd-wasm failed to load: ${(cause as Error).message})`)
  })
  return zstdWasm
}

/** The first zstd frame of a compressed cluster into exactly `outputSize` bytes. */
export async function zstdClusterWasm(input: Uint8Array, outputSize: number): Promise<Uint8Array> {
  const zstd = await loadZstdWasm()
  const frame = firstZstdFrame(input)
  // A frame declaring another size is refused before the decoder allocates for it.
  if (frame.contentSize !== undefined && frame.contentSize !== outputSize) {
    throw new Error(`zstd frame declares ${frame.contentSize} bytes, ${outputSize} expected`)
  }
  let out: Uint8Array
  try {
    out = zstd.decompress(input.subarray(0, frame.length), { defaultHeapSize: outputSize })
  } catch (cause) {
    throw new Error(`zstd frame is invalid (${(cause as Error).message})`)
  }
  if (out.length !== outputSize) throw new Error(`zstd stream gave ${out.length} bytes, ${outputSize} expected`)
  return out
}

/** A zstd frame at QEMU's level 3; undefined unless strictly smaller than `limit`. */
export async function zstdCompressClusterWasm(input: Uint8Array, limit: number): Promise<Uint8Array | undefined> {
  const out = (await loadZstdWasm()).compress(input, 3)
  return out.length < limit ? out : undefined
}

