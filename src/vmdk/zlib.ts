// streamOptimized grains are zlib streams (RFC 1950: a two-byte header, deflate data, Adler-32),
// as QEMU's compress()/uncompress() make and read them. The hosts' codecs speak raw deflate
// (RFC 1951), so the wrapper is added and checked here.
import type { Compressor, Decompressor } from '../codecs.js'

/** The header zlib's compress() writes at its default level (32 KiB window, level 6). */
const ZLIB_HEADER = [0x78, 0x9c]

/** Adler-32 (RFC 1950 section 8.2). */
export function adler32(data: Uint8Array): number {
  let a = 1
  let b = 0
  const NMAX = 5552
  for (let i = 0; i < data.length;) {
    const end = Math.min(data.length, i + NMAX)
    for (; i < end; i++) {
      a += data[i]!
      b += a
    }
    a %= 65521
    b %= 65521
  }
  return ((b << 16) | a) >>> 0
}

/** Why `stream` is not a zlib stream qimg can inflate, or undefined when its header is good. */
export function zlibHeaderProblem(stream: Uint8Array): string | undefined {
  if (stream.length < 2) return 'shorter than a zlib header'
  const cmf = stream[0]!
  const flg = stream[1]!
  if ((cmf & 0x0f) !== 8 || cmf >> 4 > 7) return `zlib header ${cmf.toString(16)} is not deflate with a window of at most 32 KiB`
  if (((cmf << 8) | flg) % 31 !== 0) return 'zlib header check bits are wrong'
  if (flg & 0x20) return 'zlib stream needs a preset dictionary'
  return undefined
}

/** Inflates a zlib stream to exactly `outputSize` bytes through a raw deflate codec. */
export async function inflateZlib(inflateRaw: Decompressor, stream: Uint8Array, outputSize: number, into?: Uint8Array): Promise<Uint8Array> {
  const problem = zlibHeaderProblem(stream)
  if (problem) throw new Error(problem)
  return inflateRaw(stream.subarray(2), outputSize, into)
}

/**
 * Compresses `data` into a zlib stream with a raw deflate compressor; never undefined (QEMU
 * stores every streamOptimized grain compressed, even when it grows).
 */
export async function deflateZlib(deflateRaw: Compressor, data: Uint8Array): Promise<Uint8Array> {
  // vmdk_write_extent gives compress() twice the grain; stored blocks need far less.
  const raw = await deflateRaw(data, 2 * data.length + 64)
  if (!raw) throw new Error('the deflate compressor refused a grain')
  const out = new Uint8Array(2 + raw.length + 4)
  out.set(ZLIB_HEADER)
  out.set(raw, 2)
  new DataView(out.buffer).setUint32(2 + raw.length, adler32(data))
  return out
}
