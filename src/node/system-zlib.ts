// Raw deflate through the system's zlib (libz.so.1, the library QEMU links) via the optional
// native addon native/zlib (qimg_zlib.node). Node's bundled zlib is Chromium's fork: faster, but
// its streams come out a few per cent larger than QEMU's, so compressed images would be larger
// than qemu-img's. With the addon, qimg writes exactly the streams qemu-img writes. Without it
// (not built, no system zlib, Windows, browser) callers get undefined and use Node's zlib.
import { loadAddon } from './addon.js'

interface ZlibAddon {
  /** Stream length in `output`, or -1 when it does not fit. */
  deflateRaw(input: Uint8Array, output: Uint8Array, level: number, windowBits: number, memLevel: number): number
  zlibVersion: string
}

let addon: ZlibAddon | null | undefined // undefined: not tried yet; null: unavailable

function load(): ZlibAddon | null {
  if (addon === undefined) {
    addon = process.env['QIMG_NODE_ZLIB'] ? null : loadAddon<ZlibAddon>('zlib/', 'qimg_zlib', (mod) => typeof mod.deflateRaw === 'function')
  }
  return addon
}

/** Version of the system zlib in use, or undefined when Node's zlib is used. */
export function systemZlibVersion(): string | undefined {
  return load()?.zlibVersion
}

/**
 * Raw deflate of `input` with the system zlib; the stream when it is shorter than `limit` bytes,
 * null when it is not (store uncompressed), undefined when the system zlib is not available.
 * The stream is written into `into` when it is given (limit - 1 bytes long).
 */
export function systemDeflateRaw(input: Uint8Array, limit: number, level: number, windowBits: number, memLevel: number, into?: Uint8Array): Uint8Array | null | undefined {
  const zlib = load()
  if (!zlib) return undefined
  const out = into?.length === limit - 1 ? into : new Uint8Array(limit - 1)
  const length = zlib.deflateRaw(input, out, level, windowBits, memLevel)
  return length < 0 ? null : out.subarray(0, length)
}
