// Log entries (MS-VHDX §2.3.1): a header, descriptors (data or zero) and data sectors, in 4 KiB
// log sectors, with one CRC-32C over the whole entry. Encoding for the entries qimg writes,
// decoding and validation as QEMU's vhdx-log.c does them.
import { LOG_SECTOR_SIZE, crc32c, decodeGuid, encodeGuid, getU64LE, setU64LE, storeChecksum, viewOf } from './spec.js'

export const LOG_ENTRY_HEADER_SIZE = 64
export const LOG_DESCRIPTOR_SIZE = 32

/** §2.3.1.1 entry header. */
export interface LogEntryHeader {
  signature: string
  checksum: number
  entryLength: number
  tail: number
  sequenceNumber: bigint
  descriptorCount: number
  logGuid: string
  flushedFileOffset: number
  lastFileOffset: number
}

/** §2.3.1.2 / §2.3.1.3 descriptors: a data descriptor carries the sector's first 8 and last 4 bytes. */
export interface LogDescriptor {
  signature: string
  /** Data descriptor: bytes 4092..4096 of the sector; zero descriptor: reserved. */
  trailingBytes: Uint8Array
  /** Data descriptor: bytes 0..8 of the sector. */
  leadingBytes: Uint8Array
  /** Zero descriptor: bytes to zero. */
  zeroLength: number
  fileOffset: number
  sequenceNumber: bigint
}

const text = (bytes: Uint8Array, at: number, n: number) => String.fromCharCode(...bytes.subarray(at, at + n))

export function decodeLogEntryHeader(bytes: Uint8Array): LogEntryHeader {
  const v = viewOf(bytes)
  return {
    signature: text(bytes, 0, 4), checksum: v.getUint32(4, true), entryLength: v.getUint32(8, true), tail: v.getUint32(12, true),
    sequenceNumber: v.getBigUint64(16, true), descriptorCount: v.getUint32(24, true), logGuid: decodeGuid(bytes, 32),
    flushedFileOffset: getU64LE(v, 48), lastFileOffset: getU64LE(v, 56),
  }
}

/** Descriptor `index` of the descriptor area (the entry's first sectors, header included). */
export function decodeLogDescriptor(area: Uint8Array, index: number): LogDescriptor {
  const at = LOG_ENTRY_HEADER_SIZE + index * LOG_DESCRIPTOR_SIZE
  const v = viewOf(area)
  return {
    signature: text(area, at, 4), trailingBytes: area.slice(at + 4, at + 8), leadingBytes: area.slice(at + 8, at + 16),
    zeroLength: getU64LE(v, at + 8), fileOffset: getU64LE(v, at + 16), sequenceNumber: v.getBigUint64(at + 24, true),
  }
}

/** vhdx_compute_desc_sectors: sectors holding the header and `count` descriptors (never 0). */
export function descriptorSectors(count: number): number {
  return Math.ceil((count + 2) / 128)
}

/** vhdx_log_hdr_is_valid, against the log's length and the current header's log GUID. */
export function logHeaderIsValid(h: LogEntryHeader, logLength: number, logGuid: string): boolean {
  return h.signature === 'loge' && h.entryLength <= logLength && h.entryLength % LOG_SECTOR_SIZE === 0 && h.sequenceNumber !== 0n &&
    h.logGuid === logGuid && h.descriptorCount * LOG_DESCRIPTOR_SIZE <= h.entryLength
}

/** vhdx_log_desc_is_valid. */
export function logDescriptorIsValid(d: LogDescriptor, h: LogEntryHeader): boolean {
  if (d.sequenceNumber !== h.sequenceNumber || d.fileOffset % LOG_SECTOR_SIZE !== 0) return false
  if (d.signature === 'zero') return d.zeroLength % LOG_SECTOR_SIZE === 0
  return d.signature === 'desc'
}

/** The sequence number a data sector carries (§2.3.1.4: high word at 4, low word at 4092). */
export function dataSectorSequence(sector: Uint8Array): bigint {
  const v = viewOf(sector)
  return (BigInt(v.getUint32(4, true)) << 32n) | BigInt(v.getUint32(4092, true))
}

/** The 4 KiB a data descriptor and its data sector put back at the descriptor's file offset. */
export function assembleSector(d: LogDescriptor, sector: Uint8Array): Uint8Array {
  const out = new Uint8Array(LOG_SECTOR_SIZE)
  out.set(d.leadingBytes, 0)
  out.set(sector.subarray(8, 4092), 8)
  out.set(d.trailingBytes, 4092)
  return out
}

/** What one entry qimg writes holds: whole 4 KiB sectors of metadata at their file offsets. */
export interface LogEntryRequest {
  sequenceNumber: bigint
  tail: number
  logGuid: string
  flushedFileOffset: number
  lastFileOffset: number
  sectors: readonly { fileOffset: number; bytes: Uint8Array }[]
}

/** Encodes an entry: header and data descriptors, then one data sector per update; checksummed. */
export function encodeLogEntry(r: LogEntryRequest): Uint8Array {
  const count = r.sectors.length
  const descSectors = descriptorSectors(count)
  const entryLength = (descSectors + count) * LOG_SECTOR_SIZE
  const bytes = new Uint8Array(entryLength)
  const v = viewOf(bytes)
  for (let i = 0; i < 4; i++) bytes[i] = 'loge'.charCodeAt(i)
  v.setUint32(8, entryLength, true)
  v.setUint32(12, r.tail, true)
  v.setBigUint64(16, r.sequenceNumber, true)
  v.setUint32(24, count, true)
  encodeGuid(r.logGuid, bytes, 32)
  setU64LE(v, 48, r.flushedFileOffset)
  setU64LE(v, 56, r.lastFileOffset)
  r.sectors.forEach((s, i) => {
    const at = LOG_ENTRY_HEADER_SIZE + i * LOG_DESCRIPTOR_SIZE
    for (let k = 0; k < 4; k++) bytes[at + k] = 'desc'.charCodeAt(k)
    bytes.set(s.bytes.subarray(4092, 4096), at + 4)
    bytes.set(s.bytes.subarray(0, 8), at + 8)
    setU64LE(v, at + 16, s.fileOffset)
    v.setBigUint64(at + 24, r.sequenceNumber, true)
    const data = (descSectors + i) * LOG_SECTOR_SIZE
    for (let k = 0; k < 4; k++) bytes[data + k] = 'data'.charCodeAt(k)
    v.setUint32(data + 4, Number(r.sequenceNumber >> 32n), true)
    bytes.set(s.bytes.subarray(8, 4092), data + 8)
    v.setUint32(data + 4092, Number(r.sequenceNumber & 0xffff_ffffn), true)
  })
  storeChecksum(bytes, 4)
  return bytes
}

/** Continues a CRC-32C over further bytes (the entry's checksum spans sectors read one by one). */
export function crcContinue(crc: number, bytes: Uint8Array): number {
  return crc32c(bytes, crc)
}
