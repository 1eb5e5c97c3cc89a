// The length of the first Zstandard frame of a buffer, found by walking its frame and block
// headers (RFC 8878 §3.1.1). QEMU stores compressed clusters back to back, so the slice an L2
// entry names also holds the start of the next cluster's frame; one-shot decoders fail on that
// slice, so it is cut to the first frame before decoding.

const ZSTD_MAGIC = 0xfd2fb528

/** Where the first frame ends, and the content size its header declares (if it does). */
export interface ZstdFrameExtent {
  length: number
  contentSize: number | undefined
}

/** Walks the first frame of `input`; throws a plain Error naming the rule broken. */
export function firstZstdFrame(input: Uint8Array): ZstdFrameExtent {
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength)
  const need = (end: number, what: string): void => {
    if (end > input.length) throw new Error(`zstd frame is cut short in its ${what} (${input.length} bytes)`)
  }
  need(5, 'header')
  if (view.getUint32(0, true) !== ZSTD_MAGIC) throw new Error(`zstd frame magic is 0x${view.getUint32(0, true).toString(16)}, not 0x${ZSTD_MAGIC.toString(16)}`)
  // Frame_Header_Descriptor (§3.1.1.1.1)
  const descriptor = input[4]!
  const fcsFlag = descriptor >> 6
  const singleSegment = (descriptor >> 5) & 1
  if ((descriptor >> 3) & 1) throw new Error('zstd frame header has its reserved bit set')
  const checksum = (descriptor >> 2) & 1
  const dictionaryIdBytes = [0, 1, 2, 4][descriptor & 3]!
  const fcsBytes = fcsFlag === 0 ? singleSegment : [0, 2, 4, 8][fcsFlag]!
  let at = 5 + (singleSegment ? 0 : 1) + dictionaryIdBytes
  need(at + fcsBytes, 'header')
  let contentSize: number | undefined
  if (fcsBytes === 1) contentSize = input[at]!
  else if (fcsBytes === 2) contentSize = view.getUint16(at, true) + 256
  else if (fcsBytes === 4) contentSize = view.getUint32(at, true)
  else if (fcsBytes === 8) contentSize = view.getUint32(at, true) + view.getUint32(at + 4, true) * 2 ** 32
  at += fcsBytes
  // Blocks (§3.1.1.2): a 3-byte header, Last_Block in bit 0, Block_Type in bits 1-2, size above.
  for (;;) {
    need(at + 3, 'block header')
    const header = input[at]! | (input[at + 1]! << 8) | (input[at + 2]! << 16)
    const last = header & 1
    const type = (header >> 1) & 3
    const size = header >>> 3
    if (type === 3) throw new Error(`zstd block at byte ${at} has the reserved block type`)
    at += 3 + (type === 1 ? 1 : size) // an RLE block stores one byte
    need(at, 'block')
    if (last) break
  }
  if (checksum) {
    at += 4
    need(at, 'checksum')
  }
  return { length: at, contentSize }
}
