// The fixed structures of a VHDX file (MS-VHDX §2.2, §2.6): headers, the region table and the
// metadata table with its items, decoded once into named fields and encoded back.
import {
  HEADER_SIZE, METADATA_TABLE_MAX_SIZE, REGION_IS_REQUIRED, REGION_TABLE_SIZE, decodeGuid, encodeGuid, getU64LE, setU64LE, storeChecksum, viewOf,
} from './spec.js'

/** §2.2.2 header. `sequenceNumber` is a bigint: it may use all 64 bits. */
export interface VhdxHeader {
  signature: string
  checksum: number
  sequenceNumber: bigint
  fileWriteGuid: string
  dataWriteGuid: string
  logGuid: string
  logVersion: number
  version: number
  logLength: number
  logOffset: number
}

const text = (bytes: Uint8Array, at: number, length: number) => String.fromCharCode(...bytes.subarray(at, at + length))

export function decodeHeader(bytes: Uint8Array): VhdxHeader {
  const v = viewOf(bytes)
  return {
    signature: text(bytes, 0, 4), checksum: v.getUint32(4, true), sequenceNumber: v.getBigUint64(8, true),
    fileWriteGuid: decodeGuid(bytes, 16), dataWriteGuid: decodeGuid(bytes, 32), logGuid: decodeGuid(bytes, 48),
    logVersion: v.getUint16(64, true), version: v.getUint16(66, true), logLength: v.getUint32(68, true), logOffset: getU64LE(v, 72),
  }
}

/** The 4 KiB header with its checksum, over `base` (the bytes already there, reserved ones kept). */
export function encodeHeader(h: VhdxHeader, base?: Uint8Array): Uint8Array {
  const bytes = base ? base.slice(0, HEADER_SIZE) : new Uint8Array(HEADER_SIZE)
  const v = viewOf(bytes)
  for (let i = 0; i < 4; i++) bytes[i] = h.signature.charCodeAt(i)
  v.setBigUint64(8, h.sequenceNumber, true)
  encodeGuid(h.fileWriteGuid, bytes, 16)
  encodeGuid(h.dataWriteGuid, bytes, 32)
  encodeGuid(h.logGuid, bytes, 48)
  v.setUint16(64, h.logVersion, true)
  v.setUint16(66, h.version, true)
  v.setUint32(68, h.logLength, true)
  setU64LE(v, 72, h.logOffset)
  storeChecksum(bytes, 4)
  return bytes
}

/** §2.2.3.2 region table entry. */
export interface RegionEntry {
  guid: string
  fileOffset: number
  length: number
  required: boolean
}

export interface RegionTable {
  signature: string
  checksum: number
  entryCount: number
}

export function decodeRegionTableHeader(bytes: Uint8Array): RegionTable {
  const v = viewOf(bytes)
  return { signature: text(bytes, 0, 4), checksum: v.getUint32(4, true), entryCount: v.getUint32(8, true) }
}

export function decodeRegionEntry(bytes: Uint8Array, index: number): RegionEntry {
  const at = 16 + index * 32
  const v = viewOf(bytes)
  return { guid: decodeGuid(bytes, at), fileOffset: getU64LE(v, at + 16), length: v.getUint32(at + 24, true), required: (v.getUint32(at + 28, true) & REGION_IS_REQUIRED) !== 0 }
}

/** The 64 KiB region table with its checksum. */
export function encodeRegionTable(entries: readonly RegionEntry[]): Uint8Array {
  const bytes = new Uint8Array(REGION_TABLE_SIZE)
  const v = viewOf(bytes)
  for (let i = 0; i < 4; i++) bytes[i] = 'regi'.charCodeAt(i)
  v.setUint32(8, entries.length, true)
  entries.forEach((e, i) => {
    const at = 16 + i * 32
    encodeGuid(e.guid, bytes, at)
    setU64LE(v, at + 16, e.fileOffset)
    v.setUint32(at + 24, e.length, true)
    v.setUint32(at + 28, e.required ? REGION_IS_REQUIRED : 0, true)
  })
  storeChecksum(bytes, 4)
  return bytes
}

/** §2.6.1.2 metadata table entry; `offset` is from the start of the metadata region. */
export interface MetadataEntry {
  itemId: string
  offset: number
  length: number
  flags: number
}

export function decodeMetadataTable(bytes: Uint8Array): { signature: string; entryCount: number } {
  return { signature: text(bytes, 0, 8), entryCount: viewOf(bytes).getUint16(10, true) }
}

export function decodeMetadataEntry(bytes: Uint8Array, index: number): MetadataEntry {
  const at = 32 + index * 32
  const v = viewOf(bytes)
  return { itemId: decodeGuid(bytes, at), offset: v.getUint32(at + 16, true), length: v.getUint32(at + 20, true), flags: v.getUint32(at + 24, true) }
}

/** The 64 KiB metadata table (no checksum: §2.6.1 has none). */
export function encodeMetadataTable(entries: readonly MetadataEntry[]): Uint8Array {
  const bytes = new Uint8Array(METADATA_TABLE_MAX_SIZE)
  const v = viewOf(bytes)
  for (let i = 0; i < 8; i++) bytes[i] = 'metadata'.charCodeAt(i)
  v.setUint16(10, entries.length, true)
  entries.forEach((e, i) => {
    const at = 32 + i * 32
    encodeGuid(e.itemId, bytes, at)
    v.setUint32(at + 16, e.offset, true)
    v.setUint32(at + 20, e.length, true)
    v.setUint32(at + 24, e.flags, true)
  })
  return bytes
}

/** §2.6.2.6 parent locator: a locator type and key/value pairs (UTF-16LE strings). */
export interface ParentLocator {
  locatorType: string
  entries: Map<string, string>
}

/** Decodes a parent locator item; `fail` names the rule a malformed one breaks. */
export function decodeParentLocator(bytes: Uint8Array, fail: (rule: string) => Error): ParentLocator {
  if (bytes.length < 20) throw fail('the parent locator is shorter than its 20-byte header')
  const v = viewOf(bytes)
  const locatorType = decodeGuid(bytes, 0)
  const count = v.getUint16(18, true)
  if (20 + count * 12 > bytes.length) throw fail(`the parent locator's ${count} key/value entries run past its ${bytes.length} bytes`)
  const utf16 = new TextDecoder('utf-16le', { fatal: false })
  const entries = new Map<string, string>()
  for (let i = 0; i < count; i++) {
    const at = 20 + i * 12
    const keyOffset = v.getUint32(at, true), valueOffset = v.getUint32(at + 4, true)
    const keyLength = v.getUint16(at + 8, true), valueLength = v.getUint16(at + 10, true)
    if (keyOffset + keyLength > bytes.length || valueOffset + valueLength > bytes.length) throw fail(`parent locator entry ${i} points past the locator's ${bytes.length} bytes`)
    entries.set(utf16.decode(bytes.subarray(keyOffset, keyOffset + keyLength)), utf16.decode(bytes.subarray(valueOffset, valueOffset + valueLength)))
  }
  return { locatorType, entries }
}

/** Encodes a parent locator (tests build differencing images from the spec with it). */
export function encodeParentLocator(locator: ParentLocator): Uint8Array {
  const pairs = [...locator.entries].map(([k, val]) => [utf16le(k), utf16le(val)] as const)
  let size = 20 + pairs.length * 12
  for (const [k, val] of pairs) size += k.length + val.length
  const bytes = new Uint8Array(size)
  const v = viewOf(bytes)
  encodeGuid(locator.locatorType, bytes, 0)
  v.setUint16(18, pairs.length, true)
  let at = 20 + pairs.length * 12
  pairs.forEach(([k, val], i) => {
    const e = 20 + i * 12
    v.setUint32(e, at, true); bytes.set(k, at); at += k.length
    v.setUint32(e + 4, at, true); bytes.set(val, at); at += val.length
    v.setUint16(e + 8, k.length, true)
    v.setUint16(e + 10, val.length, true)
  })
  return bytes
}

export function utf16le(s: string): Uint8Array {
  const out = new Uint8Array(s.length * 2)
  for (let i = 0; i < s.length; i++) viewOf(out).setUint16(i * 2, s.charCodeAt(i), true)
  return out
}
