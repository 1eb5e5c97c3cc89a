// The hosted sparse extent header (VMware Virtual Disk Format 5.0, "Hosted Sparse Extent
// Header"; QEMU's VMDK4Header): the magic "KDMV" big-endian, then little-endian fields packed
// without padding, and the footer a streamOptimized file may carry (GD_AT_END).
import { ImageError } from '../errors.js'

export const VMDK4_MAGIC = 0x4b444d56 // 'KDMV'
export const VMDK3_MAGIC = 0x434f5744 // 'COWD' (vmfsSparse)
export const VMDK4_FLAG_NL_DETECT = 1 << 0
export const VMDK4_FLAG_RGD = 1 << 1
export const VMDK4_FLAG_ZERO_GRAIN = 1 << 2
export const VMDK4_FLAG_COMPRESS = 1 << 16
export const VMDK4_FLAG_MARKER = 1 << 17
export const VMDK4_COMPRESSION_DEFLATE = 1
/** gd_offset of a stream whose grain directory is found through the footer. */
export const VMDK4_GD_AT_END = 0xffffffffffffffffn
/** A grain table entry for a zeroed grain (VMDK4_FLAG_ZERO_GRAIN). */
export const VMDK_GTE_ZEROED = 1
export const SECTOR = 512
/** Bytes of magic plus header. */
export const HEADER_BYTES = 4 + 75
/** Stream markers (VmdkGrainMarker type field). */
export const MARKER_END_OF_STREAM = 0
export const MARKER_GRAIN_TABLE = 1
export const MARKER_GRAIN_DIRECTORY = 2
export const MARKER_FOOTER = 3

/** A decoded VMDK4 header (sector counts and offsets as stored). */
export interface Vmdk4Header {
  version: number
  flags: number
  capacity: bigint
  granularity: bigint
  descOffset: bigint
  descSize: bigint
  numGtesPerGt: number
  rgdOffset: bigint
  gdOffset: bigint
  grainOffset: bigint
  compressAlgorithm: number
}

/** Decodes the header at the start of `bytes` (at least {@link HEADER_BYTES}; the magic is not checked). */
export function decodeHeader(bytes: Uint8Array): Vmdk4Header {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  const u64 = (at: number) => v.getBigUint64(at, true)
  return {
    version: v.getUint32(4, true),
    flags: v.getUint32(8, true),
    capacity: u64(12),
    granularity: u64(20),
    descOffset: u64(28),
    descSize: u64(36),
    numGtesPerGt: v.getUint32(44, true),
    rgdOffset: u64(48),
    gdOffset: u64(56),
    grainOffset: u64(64),
    compressAlgorithm: v.getUint16(77, true),
  }
}

/** Encodes a header as vmdk_init_extent writes it: magic, fields, check bytes "\n \r\n". */
export function encodeHeader(h: Vmdk4Header): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES)
  const v = new DataView(bytes.buffer)
  v.setUint32(0, VMDK4_MAGIC)
  v.setUint32(4, h.version, true)
  v.setUint32(8, h.flags, true)
  v.setBigUint64(12, h.capacity, true)
  v.setBigUint64(20, h.granularity, true)
  v.setBigUint64(28, h.descOffset, true)
  v.setBigUint64(36, h.descSize, true)
  v.setUint32(44, h.numGtesPerGt, true)
  v.setBigUint64(48, h.rgdOffset, true)
  v.setBigUint64(56, h.gdOffset, true)
  v.setBigUint64(64, h.grainOffset, true)
  bytes.set([0x0a, 0x20, 0x0d, 0x0a], 73)
  v.setUint16(77, h.compressAlgorithm, true)
  return bytes
}

/**
 * The footer of a stream (vmdk_open_vmdk4 with GD_AT_END): the three sectors before the end of
 * the file are a footer marker, a copy of the header with the real gd_offset, and the
 * end-of-stream marker. Returns the footer's header, with QEMU's "Invalid footer" otherwise.
 */
export function decodeFooter(bytes: Uint8Array, file: string, offset: number): Vmdk4Header {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
  const ok = v.getUint32(SECTOR) === VMDK4_MAGIC &&
    v.getUint32(8, true) === 0 && v.getUint32(12, true) === MARKER_FOOTER &&
    v.getBigUint64(2 * SECTOR, true) === 0n && v.getUint32(2 * SECTOR + 8, true) === 0 && v.getUint32(2 * SECTOR + 12, true) === MARKER_END_OF_STREAM
  if (!ok) throw new ImageError('CORRUPT', `${file}: VMDK stream footer at 0x${offset.toString(16)}: not a footer marker, header and end-of-stream marker`, { file, offset, qemuText: 'Invalid footer' })
  return decodeHeader(bytes.subarray(SECTOR))
}
