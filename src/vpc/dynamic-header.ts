// The VHD dynamic disk header ("Dynamic Disk Header Format"): 1024 bytes at the footer's data
// offset, naming the BAT, the block size and, for a differencing disk, the parent.
import { dataView, latin1, putLatin1, vpcChecksum } from './footer.js'

export const DYNAMIC_HEADER_BYTES = 1024
export const DYNAMIC_HEADER_COOKIE = 'cxsparse'
/** The block size QEMU creates (and the specification's default). */
export const DEFAULT_BLOCK_SIZE = 0x200000
/** A BAT entry for a block not in the file. */
export const BAT_UNUSED = 0xffffffff
/** Parent locator entries in the header. */
export const PARENT_LOCATORS = 8

export const DYNAMIC_FIELD = {
  cookie: 0,
  dataOffset: 8,
  tableOffset: 16,
  headerVersion: 24,
  maxTableEntries: 28,
  blockSize: 32,
  checksum: 36,
  parentUniqueId: 40,
  parentTimestamp: 56,
  parentUnicodeName: 64,
  parentLocators: 576,
} as const

/** Bytes of the parent's name (UTF-16 big-endian) in the header. */
export const PARENT_NAME_BYTES = 512
export const LOCATOR_BYTES = 24

/** One parent locator entry. */
export interface ParentLocator {
  /** The platform code as four characters: 'W2ku', 'W2ru', 'Mac ', 'MacX', or NUL bytes when unused. */
  platformCode: string
  /** Space reserved at the data offset (Hyper-V stores bytes, the specification says sectors). */
  platformDataSpace: number
  /** Bytes of locator data. */
  platformDataLength: number
  platformDataOffset: bigint
}

export interface DynamicHeader {
  cookie: string
  dataOffset: bigint
  tableOffset: bigint
  headerVersion: number
  maxTableEntries: number
  blockSize: number
  checksum: number
  parentUniqueId: Uint8Array
  parentTimestamp: number
  /** The parent's file name as stored (UTF-16BE, NUL-terminated or filling the field). */
  parentUnicodeName: string
  parentLocators: ParentLocator[]
}

/** Decodes UTF-16 text up to its first NUL code unit. */
export function decodeUtf16(bytes: Uint8Array, littleEndian: boolean): string {
  const v = dataView(bytes)
  const units: number[] = []
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const unit = v.getUint16(i, littleEndian)
    if (unit === 0) break
    units.push(unit)
  }
  let text = ''
  for (let i = 0; i < units.length; i += 4096) text += String.fromCharCode(...units.slice(i, i + 4096))
  return text
}

/** Encodes `text` as UTF-16 code units. */
export function encodeUtf16(text: string, littleEndian: boolean): Uint8Array {
  const bytes = new Uint8Array(text.length * 2)
  const v = dataView(bytes)
  for (let i = 0; i < text.length; i++) v.setUint16(i * 2, text.charCodeAt(i), littleEndian)
  return bytes
}

export function decodeDynamicHeader(bytes: Uint8Array): DynamicHeader {
  const v = dataView(bytes)
  const f = DYNAMIC_FIELD
  const parentLocators: ParentLocator[] = []
  for (let i = 0; i < PARENT_LOCATORS; i++) {
    const at = f.parentLocators + i * LOCATOR_BYTES
    parentLocators.push({
      platformCode: latin1(bytes.subarray(at, at + 4)),
      platformDataSpace: v.getUint32(at + 4),
      platformDataLength: v.getUint32(at + 8),
      platformDataOffset: v.getBigUint64(at + 16),
    })
  }
  return {
    cookie: latin1(bytes.subarray(0, 8)),
    dataOffset: v.getBigUint64(f.dataOffset),
    tableOffset: v.getBigUint64(f.tableOffset),
    headerVersion: v.getUint32(f.headerVersion),
    maxTableEntries: v.getUint32(f.maxTableEntries),
    blockSize: v.getUint32(f.blockSize),
    checksum: v.getUint32(f.checksum),
    parentUniqueId: bytes.slice(f.parentUniqueId, f.parentUniqueId + 16),
    parentTimestamp: v.getUint32(f.parentTimestamp),
    parentUnicodeName: decodeUtf16(bytes.subarray(f.parentUnicodeName, f.parentUnicodeName + PARENT_NAME_BYTES), false),
    parentLocators,
  }
}

/** Encodes a header with its checksum (create_dynamic_disk; tests build differencing ones). */
export function encodeDynamicHeader(h: DynamicHeader): Uint8Array {
  const bytes = new Uint8Array(DYNAMIC_HEADER_BYTES)
  const v = dataView(bytes)
  const f = DYNAMIC_FIELD
  putLatin1(bytes, f.cookie, h.cookie)
  v.setBigUint64(f.dataOffset, h.dataOffset)
  v.setBigUint64(f.tableOffset, h.tableOffset)
  v.setUint32(f.headerVersion, h.headerVersion)
  v.setUint32(f.maxTableEntries, h.maxTableEntries)
  v.setUint32(f.blockSize, h.blockSize)
  bytes.set(h.parentUniqueId, f.parentUniqueId)
  v.setUint32(f.parentTimestamp, h.parentTimestamp)
  bytes.set(encodeUtf16(h.parentUnicodeName, false).subarray(0, PARENT_NAME_BYTES), f.parentUnicodeName)
  h.parentLocators.slice(0, PARENT_LOCATORS).forEach((l, i) => {
    const at = f.parentLocators + i * LOCATOR_BYTES
    putLatin1(bytes, at, l.platformCode)
    v.setUint32(at + 4, l.platformDataSpace)
    v.setUint32(at + 8, l.platformDataLength)
    v.setBigUint64(at + 16, l.platformDataOffset)
  })
  v.setUint32(f.checksum, vpcChecksum(bytes, f.checksum))
  return bytes
}

/** Bytes of one block's sector bitmap: a bit per sector, padded to whole sectors (vpc_open). */
export function bitmapBytes(blockSize: number): number {
  return Math.ceil(Math.floor(blockSize / (8 * 512)) / 512) * 512
}
