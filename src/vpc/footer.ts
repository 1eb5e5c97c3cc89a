// The VHD hard disk footer (VHD Image Format Specification, "Hard Disk Footer Format"), as
// QEMU's block/vpc.c reads and writes it: 512 bytes, big-endian, a one's-complement checksum.
import { ImageError } from '../errors.js'

export const SECTOR_SIZE = 512
/** Bytes of the footer (and of its copy at offset 0 in dynamic and differencing images). */
export const FOOTER_BYTES = 512
/** The cookie at the footer's start. */
export const FOOTER_COOKIE = 'conectix'
/** Disk types (footer "Disk Type"). */
export const VHD_FIXED = 2
export const VHD_DYNAMIC = 3
export const VHD_DIFFERENCING = 4
/** Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC, the footer timestamp's base. */
export const VHD_TIMESTAMP_BASE = 946684800
/** Data offset of a fixed disk: no further structure (QEMU sets all 64 bits). */
export const NO_DATA_OFFSET = 0xffffffffffffffffn

/** Byte offsets of the footer fields. */
export const FOOTER_FIELD = {
  cookie: 0,
  features: 8,
  version: 12,
  dataOffset: 16,
  timestamp: 24,
  creatorApp: 28,
  creatorMajor: 32,
  creatorMinor: 34,
  creatorOs: 36,
  originalSize: 40,
  currentSize: 48,
  cylinders: 56,
  heads: 58,
  sectorsPerTrack: 59,
  diskType: 60,
  checksum: 64,
  uniqueId: 68,
  savedState: 84,
} as const

/** A decoded footer (no validation). */
export interface VhdFooter {
  cookie: string
  features: number
  version: number
  /** Offset of the dynamic disk header, or {@link NO_DATA_OFFSET}. */
  dataOffset: bigint
  timestamp: number
  /** Four bytes as latin1 text ('qemu', 'win ', 'tap\0'). */
  creatorApp: string
  creatorMajor: number
  creatorMinor: number
  creatorOs: string
  originalSize: bigint
  currentSize: bigint
  cylinders: number
  heads: number
  sectorsPerTrack: number
  diskType: number
  checksum: number
  uniqueId: Uint8Array
  savedState: number
}

export function dataView(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.length)
}

export function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes)
}

export function putLatin1(bytes: Uint8Array, at: number, text: string): void {
  for (let i = 0; i < text.length; i++) bytes[at + i] = text.charCodeAt(i) & 0xff
}

/**
 * vpc_checksum: the one's complement of the byte sum of `bytes`, with the four bytes at
 * `checksumAt` counted as zeros (the stored checksum is not part of its own sum).
 */
export function vpcChecksum(bytes: Uint8Array, checksumAt: number): number {
  let sum = 0
  for (let i = 0; i < bytes.length; i++) {
    if (i >= checksumAt && i < checksumAt + 4) continue
    sum += bytes[i]!
  }
  return ~sum >>> 0
}

/** Decodes the 512 footer bytes. */
export function decodeFooter(bytes: Uint8Array): VhdFooter {
  const v = dataView(bytes)
  const f = FOOTER_FIELD
  return {
    cookie: latin1(bytes.subarray(0, 8)),
    features: v.getUint32(f.features),
    version: v.getUint32(f.version),
    dataOffset: v.getBigUint64(f.dataOffset),
    timestamp: v.getUint32(f.timestamp),
    creatorApp: latin1(bytes.subarray(f.creatorApp, f.creatorApp + 4)),
    creatorMajor: v.getUint16(f.creatorMajor),
    creatorMinor: v.getUint16(f.creatorMinor),
    creatorOs: latin1(bytes.subarray(f.creatorOs, f.creatorOs + 4)),
    originalSize: v.getBigUint64(f.originalSize),
    currentSize: v.getBigUint64(f.currentSize),
    cylinders: v.getUint16(f.cylinders),
    heads: bytes[f.heads]!,
    sectorsPerTrack: bytes[f.sectorsPerTrack]!,
    diskType: v.getUint32(f.diskType),
    checksum: v.getUint32(f.checksum),
    uniqueId: bytes.slice(f.uniqueId, f.uniqueId + 16),
    savedState: bytes[f.savedState]!,
  }
}

/** Encodes a footer with its checksum computed (the reserved bytes zero). */
export function encodeFooter(footer: VhdFooter): Uint8Array {
  const bytes = new Uint8Array(FOOTER_BYTES)
  const v = dataView(bytes)
  const f = FOOTER_FIELD
  putLatin1(bytes, f.cookie, footer.cookie)
  v.setUint32(f.features, footer.features)
  v.setUint32(f.version, footer.version)
  v.setBigUint64(f.dataOffset, footer.dataOffset)
  v.setUint32(f.timestamp, footer.timestamp)
  putLatin1(bytes, f.creatorApp, footer.creatorApp)
  v.setUint16(f.creatorMajor, footer.creatorMajor)
  v.setUint16(f.creatorMinor, footer.creatorMinor)
  putLatin1(bytes, f.creatorOs, footer.creatorOs)
  v.setBigUint64(f.originalSize, footer.originalSize)
  v.setBigUint64(f.currentSize, footer.currentSize)
  v.setUint16(f.cylinders, footer.cylinders)
  bytes[f.heads] = footer.heads
  bytes[f.sectorsPerTrack] = footer.sectorsPerTrack
  v.setUint32(f.diskType, footer.diskType)
  bytes.set(footer.uniqueId, f.uniqueId)
  bytes[f.savedState] = footer.savedState
  v.setUint32(f.checksum, vpcChecksum(bytes, f.checksum))
  return bytes
}

/** True when `bytes` start with the footer cookie (vpc_probe and vpc_open's test). */
export function hasCookie(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && latin1(bytes.subarray(0, 8)) === FOOTER_COOKIE
}

/** vpc_open's checksum test, with QEMU's text. */
export function verifyFooterChecksum(bytes: Uint8Array, at: number, file: string): void {
  const stored = dataView(bytes).getUint32(FOOTER_FIELD.checksum)
  const computed = vpcChecksum(bytes, FOOTER_FIELD.checksum)
  if (stored !== computed) {
    throw new ImageError('CORRUPT', `${file}: VHD footer at 0x${at.toString(16)}: checksum 0x${stored.toString(16)} is not the computed 0x${computed.toString(16)}`,
      { file, offset: at + FOOTER_FIELD.checksum, qemuText: `Could not open '${file}': Incorrect header checksum` })
  }
}
