// The QCOW version 1 header (block/qcow.c QCowHeader, big-endian, 48 bytes) and the checks
// qcow_open makes on it, with QEMU's messages.
import { ImageError, hex } from '../errors.js'

/** "QFI\xfb". */
export const QCOW_MAGIC = 0x514649fb
export const QCOW_VERSION = 1
export const HEADER_LENGTH = 48
export const CRYPT_NONE = 0
export const CRYPT_AES = 1
/** QEMU's bs->backing_file holds at most 1023 bytes and a NUL. */
export const MAX_BACKING_NAME = 1023

export interface QcowHeader {
  magic: number
  version: number
  backingFileOffset: bigint
  backingFileSize: number
  mtime: number
  size: bigint
  clusterBits: number
  l2Bits: number
  cryptMethod: number
  l1TableOffset: bigint
}

/** The facts an open derives from a valid header. */
export interface QcowGeometry {
  clusterBits: number
  clusterSize: number
  l2Bits: number
  l2Size: number
  l1Size: number
  /** Bytes the guest sees: the header size cut to whole sectors (bs->total_sectors). */
  virtualSize: number
}

export function decodeHeader(bytes: Uint8Array): QcowHeader {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  return {
    magic: v.getUint32(0), version: v.getUint32(4), backingFileOffset: v.getBigUint64(8),
    backingFileSize: v.getUint32(16), mtime: v.getUint32(20), size: v.getBigUint64(24),
    clusterBits: v.getUint8(32), l2Bits: v.getUint8(33), cryptMethod: v.getUint32(36),
    l1TableOffset: v.getBigUint64(40),
  }
}

export function encodeHeader(h: QcowHeader): Uint8Array {
  const out = new Uint8Array(HEADER_LENGTH)
  const v = new DataView(out.buffer)
  v.setUint32(0, h.magic); v.setUint32(4, h.version); v.setBigUint64(8, h.backingFileOffset)
  v.setUint32(16, h.backingFileSize); v.setUint32(20, h.mtime); v.setBigUint64(24, h.size)
  v.setUint8(32, h.clusterBits); v.setUint8(33, h.l2Bits); v.setUint32(36, h.cryptMethod)
  v.setBigUint64(40, h.l1TableOffset)
  return out
}

const INT_MAX = 0x7fffffff

/** qcow_open's checks, in its order and with its messages (the file named first). */
export function validateHeader(h: QcowHeader, file: string): QcowGeometry {
  const fail = (code: 'NOT_AN_IMAGE' | 'UNSUPPORTED' | 'CORRUPT', text: string, offset: number, detail = ''): never => {
    throw new ImageError(code, `${file}: qcow header at ${hex(offset)}: ${text}${detail}`, { file, offset, qemuText: text })
  }
  if (h.magic !== QCOW_MAGIC) fail('NOT_AN_IMAGE', 'Image not in qcow format', 0)
  if (h.version !== QCOW_VERSION) {
    // QEMU appends a hint line for the versions qcow2 reads.
    const text = `qcow (v1) does not support qcow version ${h.version}` + (h.version === 2 || h.version === 3 ? "\nTry the 'qcow2' driver instead." : '')
    throw new ImageError('UNSUPPORTED', `${file}: qcow header at 0x4: ${text}`, { file, offset: 4, qemuText: text })
  }
  if (h.size <= 1n) fail('CORRUPT', 'Image size is too small (must be at least 2 bytes)', 24)
  if (h.clusterBits < 9 || h.clusterBits > 16) fail('CORRUPT', 'Cluster size must be between 512 and 64k', 32, ` (cluster_bits ${h.clusterBits}, allowed 9..16)`)
  // l2_bits counts 8-byte entries: 6..13 make tables of 512 bytes to 64 KiB.
  if (h.l2Bits < 6 || h.l2Bits > 13) fail('CORRUPT', 'L2 table size must be between 512 and 64k', 33, ` (l2_bits ${h.l2Bits}, allowed 6..13)`)
  if (h.cryptMethod > CRYPT_AES) fail('CORRUPT', 'invalid encryption method in qcow header', 36, ` (crypt_method ${h.cryptMethod})`)
  const shift = BigInt(h.clusterBits + h.l2Bits)
  if (h.size > (1n << 64n) - 1n - (1n << shift)) fail('CORRUPT', 'Image too large', 24)
  const l1Size = (h.size + (1n << shift) - 1n) >> shift
  if (l1Size > BigInt(Math.floor(INT_MAX / 8))) fail('CORRUPT', 'Image too large', 24, ` (L1 table of ${l1Size} entries)`)
  const virtualSize = (h.size / 512n) * 512n
  if (virtualSize > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ImageError('UNSUPPORTED', `${file}: qcow header at 0x18: virtual size ${h.size} is beyond what qimg handles (2^53 bytes)`, { file, offset: 24 })
  }
  if (h.backingFileOffset !== 0n && h.backingFileSize > MAX_BACKING_NAME) {
    fail('CORRUPT', 'Backing file name too long', 16, ` (${h.backingFileSize} bytes, at most ${MAX_BACKING_NAME})`)
  }
  return {
    clusterBits: h.clusterBits, clusterSize: 2 ** h.clusterBits, l2Bits: h.l2Bits, l2Size: 2 ** h.l2Bits,
    l1Size: Number(l1Size), virtualSize: Number(virtualSize),
  }
}
