// The block allocation table (MS-VHDX §2.5): payload block entries interleaved with one sector
// bitmap entry after every chunkRatio of them; each entry a state (low 3 bits) and a file
// offset in MiB (bits 20-63). Kept as the bytes on disk, so an update logs whole BAT sectors.
import { ImageError, hex } from '../errors.js'
import { qemuOpenText } from './fail.js'
import type { VhdxMetadata } from './metadata.js'
import {
  HEADER_SECTION_END, LOG_SECTOR_SIZE, MIB, PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_PARTIALLY_PRESENT, SB_BLOCK_PRESENT, SECTOR_BITMAP_BLOCK_SIZE, viewOf,
} from './spec.js'

/**
 * Entries the BAT must hold (§2.5; QEMU's vhdx_calc_bat_entries). Without a parent QEMU counts
 * in 32 bits, so an empty disk still has (2^32 - 1) / chunkRatio entries.
 */
export function batEntryCount(m: Pick<VhdxMetadata, 'virtualDiskSize' | 'blockSize' | 'chunkRatio' | 'hasParent'>): number {
  const dataBlocks = Math.ceil(m.virtualDiskSize / m.blockSize)
  if (m.hasParent) return Math.ceil(dataBlocks / m.chunkRatio) * (m.chunkRatio + 1)
  return dataBlocks + Math.floor(((dataBlocks - 1) >>> 0) / m.chunkRatio)
}

export class Bat {
  readonly bytes: Uint8Array
  readonly #view: DataView
  readonly chunkRatio: number
  readonly blockSize: number
  /** Where the BAT starts in the file. */
  readonly fileOffset: number

  constructor(bytes: Uint8Array, m: VhdxMetadata, fileOffset: number) {
    this.bytes = bytes
    this.#view = viewOf(bytes)
    this.chunkRatio = m.chunkRatio
    this.blockSize = m.blockSize
    this.fileOffset = fileOffset
  }

  get length(): number {
    return this.bytes.length / 8
  }

  /** The BAT index of payload block `block` (vhdx_block_translate). */
  payloadIndex(block: number): number {
    return block + Math.floor(block / this.chunkRatio)
  }

  /** The BAT index of the sector bitmap covering payload block `block`. */
  bitmapIndex(block: number): number {
    const chunk = Math.floor(block / this.chunkRatio)
    return chunk * (this.chunkRatio + 1) + this.chunkRatio
  }

  isBitmapIndex(index: number): boolean {
    return index % (this.chunkRatio + 1) === this.chunkRatio
  }

  state(index: number): number {
    return this.#view.getUint8(index * 8) & 7
  }

  /** The file offset in bytes (bits 20-63; may exceed 2^53 only in a hostile file, refused at open). */
  offset(index: number): number {
    const low = this.#view.getUint32(index * 8, true)
    const high = this.#view.getUint32(index * 8 + 4, true)
    return (low >>> 20) * MIB + high * 2 ** 32
  }

  /** Sets an entry; offsets are whole MiB (vhdx_update_bat_table_entry: 0 for states without a block). */
  set(index: number, state: number, fileOffset: number): void {
    const mib = fileOffset / MIB
    this.#view.setUint32(index * 8, ((mib % 4096) * 2 ** 20 + state) >>> 0, true)
    this.#view.setUint32(index * 8 + 4, Math.floor(mib / 4096), true)
  }

  /** The 4 KiB BAT sector holding entry `index`, as it is now: what a log entry carries. */
  sectorOf(index: number): { fileOffset: number; bytes: Uint8Array } {
    const start = Math.floor((index * 8) / LOG_SECTOR_SIZE) * LOG_SECTOR_SIZE
    const bytes = new Uint8Array(LOG_SECTOR_SIZE)
    bytes.set(this.bytes.subarray(start, Math.min(start + LOG_SECTOR_SIZE, this.bytes.length)))
    return { fileOffset: this.fileOffset + start, bytes }
  }
}

/** A registered region of the file (log, BAT, metadata). */
export interface Region { start: number; end: number; what: string }

/** vhdx_region_check: the most recently registered region first, as QEMU's list is. */
export function overlapping(regions: readonly Region[], start: number, end: number): Region | undefined {
  for (let i = regions.length - 1; i >= 0; i--) if (!(start >= regions[i]!.end || end <= regions[i]!.start)) return regions[i]
  return undefined
}

/** One BAT problem found by {@link checkBatEntries}: QEMU's error_report line and qimg's message. */
export interface BatProblem {
  qemuLine: string | undefined
  message: string
  offset: number
}

/**
 * vhdx_check_bat_entries, with qimg's rules beside QEMU's: a present block starts and ends
 * inside the file, lies past the header section, overlaps no region and no other block; a
 * partially present block has its sector bitmap.
 */
export function checkBatEntries(bat: Bat, virtualSize: number, fileSize: number, regions: { start: number; end: number; what: string }[], file: string): BatProblem[] {
  const problems: BatProblem[] = []
  const used: [number, number, number][] = []
  for (let i = 0; i < bat.length; i++) {
    const state = bat.state(i)
    const bitmap = bat.isBitmapIndex(i)
    if (bitmap ? state !== SB_BLOCK_PRESENT : state !== PAYLOAD_BLOCK_FULLY_PRESENT && state !== PAYLOAD_BLOCK_PARTIALLY_PRESENT) continue
    const offset = bat.offset(i)
    const at = bat.fileOffset + i * 8
    const where = `${file}: BAT at ${hex(bat.fileOffset)}: entry ${i} (at ${hex(at)})`
    // QEMU allows a short last block (images it made once had them).
    const length = bitmap ? SECTOR_BITMAP_BLOCK_SIZE : Math.min(bat.blockSize, Math.max(virtualSize - (i - Math.floor(i / (bat.chunkRatio + 1))) * bat.blockSize, 0))
    if (offset >= fileSize) {
      problems.push({ qemuLine: `VHDX BAT entry ${i} start offset ${offset} points after end of file (${fileSize}). Image has probably been truncated.`, message: `${where} puts its block at ${hex(offset)}, past the end of the file (${hex(fileSize)})`, offset: at })
      continue
    }
    if (offset + length > fileSize) {
      problems.push({ qemuLine: `VHDX BAT entry ${i} end offset ${offset + length - 1} points after end of file (${fileSize}). Image has probably been truncated.`, message: `${where}: its block at ${hex(offset)} ends past the end of the file (${hex(fileSize)})`, offset: at })
      continue
    }
    if (offset < HEADER_SECTION_END) {
      problems.push({ qemuLine: undefined, message: `${where} puts its block at ${hex(offset)}, inside the header section`, offset: at })
      continue
    }
    // QEMU checks a payload block's whole block size against the regions, most recent first.
    const span = bitmap ? length : bat.blockSize
    const over = overlapping(regions, offset, offset + span)
    if (over) {
      problems.push({ qemuLine: bitmap ? undefined : `VHDX region ${offset}-${offset + span} overlaps with region ${over.start}-${over.end}`, message: `${where} puts its block at ${hex(offset)}, over ${over.what}`, offset: at })
      continue
    }
    used.push([offset, offset + length, i])
  }
  used.sort((a, b) => a[0] - b[0])
  for (let k = 1; k < used.length; k++) {
    if (used[k]![0] < used[k - 1]![1]) {
      const i = used[k]![2]
      problems.push({ qemuLine: undefined, message: `${file}: BAT at ${hex(bat.fileOffset)}: entry ${i} puts its block at ${hex(used[k]![0])}, over the block of entry ${used[k - 1]![2]}`, offset: bat.fileOffset + i * 8 })
    }
  }
  for (let i = 0; i < bat.length; i++) {
    if (bat.isBitmapIndex(i) || bat.state(i) !== PAYLOAD_BLOCK_PARTIALLY_PRESENT) continue
    const sb = bat.bitmapIndex(i - Math.floor(i / (bat.chunkRatio + 1)))
    if (sb >= bat.length || bat.state(sb) !== SB_BLOCK_PRESENT) {
      problems.push({ qemuLine: undefined, message: `${file}: BAT at ${hex(bat.fileOffset)}: entry ${i} is partially present but its sector bitmap (entry ${sb}) is not`, offset: bat.fileOffset + i * 8 })
    }
  }
  return problems
}

/** The open's refusal for a BAT problem (QEMU: its line, then EINVAL). */
export function batError(p: BatProblem, file: string): ImageError {
  return new ImageError('CORRUPT', p.message, { file, offset: p.offset, qemuText: qemuOpenText(file, 'Invalid argument', p.qemuLine) })
}
