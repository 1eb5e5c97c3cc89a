// The persistent bitmap directory (qcow2.txt "Bitmaps extension", "Bitmap directory"): decoding
// with the checks of QEMU's bitmap_list_load/check_dir_entry, encoding, and the list `info` shows.
import { decodeText, getU64, setU64, viewOf } from '../binary/bytes.js'
import { ImageError, hex } from '../errors.js'
import type { BitmapInfo } from './info-json.js'
import type { ReadableStorage } from '../io/storage.js'
import type { Qcow2Layout } from './open.js'
import { AUTOCLEAR_BITMAPS, MAX_BITMAP_PHYS_BYTES, MAX_BITMAP_TABLE_ENTRIES } from './spec.js'

const ENTRY_HEADER = 24
export const FLAG_IN_USE = 1
export const FLAG_AUTO = 2
/** QEMU treats every flag but in_use and auto as reserved (BME_RESERVED_FLAGS). */
const RESERVED_FLAGS = 0xffff_fffc
/** bits 1-8 and 56-63 of a bitmap table entry (BME_TABLE_ENTRY_RESERVED_MASK). */
export const MIN_GRANULARITY_BITS = 9
export const MAX_GRANULARITY_BITS = 31
export const MAX_NAME_BYTES = 1023
const TYPE_DIRTY_TRACKING = 1

const encoder = new TextEncoder()

/** One directory entry: where its table is, its flags and granularity. */
export interface BitmapEntry {
  name: string
  tableOffset: number
  /** Entries in the bitmap table. */
  tableSize: number
  flags: number
  granularityBits: number
}

/** Bytes a directory entry takes (header, name, padding to 8; QEMU writes no extra data). */
export function entrySize(name: string): number {
  return Math.ceil((ENTRY_HEADER + encoder.encode(name).length) / 8) * 8
}

/** Serialized bitmap bytes for a disk of `size` bytes at `granularity` (get_bitmap_bytes_needed). */
export function bitmapBytes(size: number, granularity: number): number {
  return Math.ceil(Math.ceil(size / granularity) / 8)
}

/** check_dir_entry: the rules a stored entry must follow for a disk of `virtualSize` bytes. */
function entryValid(e: BitmapEntry, type: number, nameBytes: number, clusterSize: number, virtualSize: number): boolean {
  if (e.tableSize === 0 || e.tableOffset === 0 || e.tableOffset % clusterSize !== 0 || e.tableSize > MAX_BITMAP_TABLE_ENTRIES) return false
  if (e.granularityBits > MAX_GRANULARITY_BITS || e.granularityBits < MIN_GRANULARITY_BITS) return false
  if ((e.flags & RESERVED_FLAGS) !== 0 || nameBytes > MAX_NAME_BYTES || type !== TYPE_DIRTY_TRACKING) return false
  const physBytes = e.tableSize * clusterSize
  if (physBytes > MAX_BITMAP_PHYS_BYTES) return false
  // A bitmap not in use must cover the disk; one in use may be stale after a resize.
  return (e.flags & FLAG_IN_USE) !== 0 || virtualSize <= physBytes * 8 * 2 ** e.granularityBits
}

/** True when the header's bitmaps extension is present and valid (autoclear bit set). */
export function hasBitmaps(layout: Qcow2Layout): boolean {
  return layout.header.bitmaps !== undefined && (layout.header.autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n
}

/** Reads the bitmap directory (bitmap_list_load); empty when the image has none. */
export async function loadBitmapDirectory(storage: ReadableStorage, layout: Qcow2Layout): Promise<BitmapEntry[]> {
  const ext = layout.header.bitmaps
  if (!ext || !hasBitmaps(layout)) return []
  const file = storage.name
  const broken = (message: string, at = ext.directoryOffset) => new ImageError('CORRUPT', `${file}: bitmap directory at ${hex(ext.directoryOffset)}: ${message}`, { offset: at, file })
  if (ext.directorySize === 0) throw broken('Requested bitmap directory size is zero')
  if (ext.directoryOffset + ext.directorySize > layout.fileSize) throw new ImageError('CORRUPT', `${file}: bitmap directory at ${hex(ext.directoryOffset)} runs past end of file`, { offset: ext.directoryOffset, file })
  const bytes = await storage.read(ext.directoryOffset, ext.directorySize)
  const view = viewOf(bytes)
  const entries: BitmapEntry[] = []
  let offset = 0
  while (offset < bytes.length) {
    if (entries.length >= ext.bitmapCount) throw broken('More bitmaps found than specified in header extension', ext.directoryOffset + offset)
    if (offset + ENTRY_HEADER > bytes.length) throw broken(`entry ${entries.length} runs past the directory (${ext.directorySize} bytes)`, ext.directoryOffset + offset)
    const nameSize = view.getUint16(offset + 18)
    const extraSize = view.getUint32(offset + 20)
    if (extraSize !== 0) throw broken('Bitmap extra data is not supported', ext.directoryOffset + offset)
    const nameAt = offset + ENTRY_HEADER
    const where = `${file}: bitmap directory entry ${entries.length}`
    if (nameAt + nameSize > bytes.length) throw new ImageError('CORRUPT', `${where} name runs past the directory`, { offset: ext.directoryOffset + offset, file })
    const granularityBits = view.getUint8(offset + 17)
    if (granularityBits < MIN_GRANULARITY_BITS || granularityBits > MAX_GRANULARITY_BITS) {
      throw new ImageError('CORRUPT', `${where}: granularity 2^${granularityBits} out of range (2^${MIN_GRANULARITY_BITS}..2^${MAX_GRANULARITY_BITS})`, { offset: ext.directoryOffset + offset, file })
    }
    // Offsets past 2^53 are no cluster of any file: the entry breaks the constraints.
    const tableOffsetHi = view.getUint32(offset)
    const entry: BitmapEntry = {
      name: decodeText(bytes.subarray(nameAt, nameAt + nameSize)),
      tableOffset: tableOffsetHi > 0x1f_ffff ? 1 : getU64(view, offset, 'bitmap table offset'),
      tableSize: view.getUint32(offset + 8),
      flags: view.getUint32(offset + 12),
      granularityBits,
    }
    if (!entryValid(entry, view.getUint8(offset + 16), nameSize, layout.geometry.clusterSize, layout.header.size)) {
      throw broken(`Bitmap '${entry.name}' doesn't satisfy the constraints`, ext.directoryOffset + offset)
    }
    entries.push(entry)
    offset = Math.ceil((nameAt + nameSize) / 8) * 8
  }
  if (entries.length !== ext.bitmapCount) throw broken('Less bitmaps found than specified in header extension')
  return entries
}

/** Encodes a directory (bitmap_list_store): entries in order, each padded to 8 bytes. */
export function encodeBitmapDirectory(entries: readonly BitmapEntry[]): Uint8Array {
  const out = new Uint8Array(entries.reduce((n, e) => n + entrySize(e.name), 0))
  const view = viewOf(out)
  let offset = 0
  for (const e of entries) {
    const name = encoder.encode(e.name)
    setU64(view, offset, e.tableOffset)
    view.setUint32(offset + 8, e.tableSize)
    view.setUint32(offset + 12, e.flags)
    view.setUint8(offset + 16, TYPE_DIRTY_TRACKING)
    view.setUint8(offset + 17, e.granularityBits)
    view.setUint16(offset + 18, name.length)
    out.set(name, offset + ENTRY_HEADER)
    offset += entrySize(e.name)
  }
  return out
}

/** Lists the bitmaps of the image for info; undefined when it has none. */
export async function loadBitmapInfo(storage: ReadableStorage, layout: Qcow2Layout): Promise<BitmapInfo[] | undefined> {
  const list: BitmapInfo[] = (await loadBitmapDirectory(storage, layout)).map((e) => {
    const flags: string[] = []
    if (e.flags & FLAG_IN_USE) flags.push('in-use')
    if (e.flags & FLAG_AUTO) flags.push('auto')
    return { name: e.name, granularity: 2 ** e.granularityBits, flags }
  })
  return list.length === 0 ? undefined : list
}
