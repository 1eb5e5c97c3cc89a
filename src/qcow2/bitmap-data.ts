// A dirty bitmap in memory (QEMU's BdrvDirtyBitmap over an HBitmap), kept in its serialized
// form (qcow2.txt "Bitmap data": bit n covers guest bytes [n*g, (n+1)*g), byte n/8, LSB first),
// and its bitmap table and data clusters read and written as QEMU's load_bitmap_data and
// store_bitmap_data do: a data cluster per table entry with a dirty bit, zero entries otherwise.
import { setU64, viewOf } from '../binary/bytes.js'
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { bitmapBytes, type BitmapEntry } from './bitmaps.js'

/** BME_TABLE_ENTRY_RESERVED_MASK: bits 1-8 and 56-63, as two 32-bit halves. */
const RESERVED_HI = 0xff00_0000
const RESERVED_LO = 0x1fe
const FLAG_ALL_ONES = 1

/** One dirty bitmap: guest size, granularity, state and bits. */
export class DirtyBitmap {
  bits: Uint8Array
  constructor(
    readonly name: string,
    readonly granularity: number,
    public size: number,
    /** Tracks writes ('auto' on disk). */
    public enabled: boolean,
    /** Loaded with in_use set: contents unknown, kept on disk as they are (QEMU: inconsistent). */
    readonly inconsistent = false,
  ) {
    this.bits = new Uint8Array(bitmapBytes(size, granularity))
  }

  /** Marks guest bytes `[offset, offset+length)` dirty (bdrv_set_dirty_bitmap). */
  setDirty(offset: number, length: number): void {
    if (length <= 0 || offset >= this.size) return
    const first = Math.floor(offset / this.granularity)
    const last = Math.floor((Math.min(offset + length, this.size) - 1) / this.granularity)
    setBits(this.bits, first, last)
  }

  /** True when any bit of `[firstBit, lastBit]` is set. */
  anyDirty(firstByte: number, endByte: number): boolean {
    for (let i = firstByte; i < endByte; i++) if (this.bits[i] !== 0) return true
    return false
  }

  clear(): void {
    this.bits.fill(0)
  }

  /**
   * Adds the dirty ranges of `src` (hbitmap_merge): with another granularity, every byte range
   * `src` marks is marked at this bitmap's granularity.
   */
  merge(src: DirtyBitmap): void {
    if (src.granularity === this.granularity) {
      for (let i = 0; i < this.bits.length; i++) this.bits[i]! |= src.bits[i]!
      return
    }
    const bitCount = Math.ceil(src.size / src.granularity)
    for (let n = 0; n < bitCount; n++) {
      if (src.bits[n >> 3]! & (1 << (n & 7))) this.setDirty(n * src.granularity, src.granularity)
    }
  }

  /** Follows a disk resize (bdrv_dirty_bitmap_truncate): new bits are clean. */
  resize(size: number): void {
    const bits = new Uint8Array(bitmapBytes(size, this.granularity))
    bits.set(this.bits.subarray(0, Math.min(bits.length, this.bits.length)))
    const bitCount = Math.ceil(size / this.granularity)
    // Bits past the new end must read as 0 (the spec: unused tail bits are zero).
    if (bitCount % 8 !== 0 && bits.length > 0) bits[bits.length - 1]! &= (1 << (bitCount % 8)) - 1
    this.bits = bits
    this.size = size
  }
}

function setBits(bits: Uint8Array, first: number, last: number): void {
  let n = first
  while (n <= last && (n & 7) !== 0) bits[n >> 3]! |= 1 << (n++ & 7)
  if (n + 8 <= last + 1) {
    bits.fill(0xff, n >> 3, (last + 1) >> 3)
    n = (last + 1) & ~7
  }
  while (n <= last) bits[n >> 3]! |= 1 << (n++ & 7)
}

/** Bitmap table entries (host offsets; 0 = all zeros, -1 = all ones), checked as QEMU's check_table_entry. */
export async function readBitmapTable(storage: ReadableStorage, entry: BitmapEntry, clusterSize: number): Promise<number[]> {
  const file = storage.name
  const bytes = await storage.read(entry.tableOffset, entry.tableSize * 8)
  const view = viewOf(bytes)
  const table: number[] = []
  for (let i = 0; i < entry.tableSize; i++) {
    const hi = view.getUint32(i * 8)
    const lo = view.getUint32(i * 8 + 4)
    // Bits 9-55 (past 2^53 only multiples of 512: exact in a double).
    const offset = (hi & 0x00ff_ffff) * 2 ** 32 + ((lo & 0xffff_fe00) >>> 0)
    const bad = (hi & RESERVED_HI) !== 0 || (lo & RESERVED_LO) !== 0 || (offset !== 0 && ((lo & FLAG_ALL_ONES) !== 0 || offset % clusterSize !== 0))
    if (bad) {
      throw new ImageError('CORRUPT', `${file}: Could not read bitmap_table table from image for bitmap '${entry.name}': entry ${i} at ${hex(entry.tableOffset + i * 8)} is invalid`, { file, offset: entry.tableOffset + i * 8 })
    }
    table.push(offset !== 0 ? offset : (lo & FLAG_ALL_ONES) !== 0 ? -1 : 0)
  }
  return table
}

/** Loads a bitmap that is not in use (load_bitmap, load_bitmap_data). */
export async function loadBitmap(storage: ReadableStorage, entry: BitmapEntry, clusterSize: number, virtualSize: number): Promise<DirtyBitmap> {
  const bitmap = new DirtyBitmap(entry.name, 2 ** entry.granularityBits, virtualSize, true)
  const table = await readBitmapTable(storage, entry, clusterSize)
  const needed = Math.ceil(bitmap.bits.length / clusterSize)
  if (needed !== table.length) {
    throw new ImageError('CORRUPT', `${storage.name}: Could not read bitmap '${entry.name}' from image: its table has ${table.length} entries, ${needed} expected`, { file: storage.name, offset: entry.tableOffset })
  }
  for (let i = 0; i < table.length; i++) {
    const start = i * clusterSize
    const length = Math.min(clusterSize, bitmap.bits.length - start)
    if (table[i] === -1) bitmap.bits.fill(0xff, start, start + length)
    else if (table[i] !== 0) bitmap.bits.set((await storage.read(table[i]!, clusterSize)).subarray(0, length), start)
  }
  // The tail past the disk's last bit is not part of the bitmap.
  bitmap.resize(virtualSize)
  return bitmap
}

/** Where a stored bitmap's clusters go and how they are written (the image's allocator and file). */
export interface BitmapSpace {
  clusterSize: number
  allocate(clusters: number): Promise<number>
  write(hostOffset: number, bytes: Uint8Array): Promise<void>
}

/**
 * store_bitmap: the data clusters that hold a dirty bit, in order, then the table; returns the
 * table's offset and size.
 */
export async function storeBitmap(space: BitmapSpace, bitmap: DirtyBitmap): Promise<{ tableOffset: number; tableSize: number; clusters: number[] }> {
  const cs = space.clusterSize
  const tableSize = Math.ceil(bitmap.bits.length / cs)
  const table = new Uint8Array(tableSize * 8)
  const clusters: number[] = []
  for (let i = 0; i < tableSize; i++) {
    const start = i * cs
    const end = Math.min(bitmap.bits.length, start + cs)
    if (!bitmap.anyDirty(start, end)) continue
    const offset = await space.allocate(1)
    const cluster = new Uint8Array(cs)
    cluster.set(bitmap.bits.subarray(start, end))
    await space.write(offset, cluster)
    setU64(viewOf(table), i * 8, offset)
    clusters.push(offset)
  }
  const tableOffset = await space.allocate(Math.ceil(table.length / cs))
  await space.write(tableOffset, table)
  return { tableOffset, tableSize, clusters }
}
