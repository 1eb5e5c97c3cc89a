// A VHDX image over a storage (QEMU block/vhdx.c). Guest blocks map through the BAT; a fixed
// disk has every block present, a dynamic one allocates blocks at the 1 MiB-aligned end of the
// file on first write, and a differencing one (which qimg reads beyond QEMU) takes the sectors
// its sector bitmaps leave clear from its parent. Writes go through the generic unit writer;
// every BAT update goes through the log (log.ts).
import type { BackingReference, GuestReader, WritableFormatDriver } from '../format/driver.js'
import type { Extent } from '../format/extent.js'
import { layerInfo, type ImageInfo } from '../format/info.js'
import { UnitLocks, lockingUnits, writeUnits, type UnitAllocator } from '../format/unit-writer.js'
import { writeZeroBuffers } from '../format/unit-split.js'
import { ImageError, hex } from '../errors.js'
import { isWritable, type ReadableStorage, type Storage } from '../io/storage.js'
import type { VhdxLayout } from './open.js'
import {
  MIB, PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_NOT_PRESENT, PAYLOAD_BLOCK_PARTIALLY_PRESENT, PAYLOAD_BLOCK_UNDEFINED, PAYLOAD_BLOCK_UNMAPPED,
  PAYLOAD_BLOCK_UNMAPPED_V095, PAYLOAD_BLOCK_ZERO,
} from './spec.js'

const ZERO_STATES = new Set([PAYLOAD_BLOCK_UNDEFINED, PAYLOAD_BLOCK_ZERO, PAYLOAD_BLOCK_UNMAPPED, PAYLOAD_BLOCK_UNMAPPED_V095])

export class VhdxImage implements WritableFormatDriver {
  readonly format = 'vhdx'
  readonly warnings: string[] = []
  readonly storage: ReadableStorage
  readonly virtualSize: number
  readonly backing: BackingReference | undefined
  readonly clusterSize: number
  readonly writable: boolean
  /** vhdx has no bdrv_co_block_status: QEMU reports every range as allocated data. */
  readonly noBlockStatus = true
  readonly #layout: VhdxLayout
  readonly #differencing: boolean
  readonly #locks = new UnitLocks()
  #metadata: Promise<void> = Promise.resolve()
  /** Where the next block goes: the end of the file rounded up to 1 MiB (vhdx_allocate_block). */
  #nextBlockOffset: number
  /** QEMU's first_visible_write: the data write GUID changes before the first guest write. */
  #firstWrite = true

  constructor(storage: ReadableStorage, layout: VhdxLayout, backing: BackingReference | undefined, writable: boolean) {
    if (writable && !isWritable(storage)) throw new ImageError('READ_ONLY', `${storage.name}: storage is not writable`, { file: storage.name })
    this.storage = storage
    this.#layout = layout
    this.virtualSize = layout.metadata.virtualDiskSize
    this.clusterSize = layout.metadata.blockSize
    this.#differencing = layout.metadata.hasParent && backing !== undefined
    this.backing = this.#differencing ? backing : undefined
    this.writable = writable
    this.#nextBlockOffset = Math.ceil(layout.fileSize / MIB) * MIB
  }

  #outOfRange(what: string, offset: number, length: number): ImageError {
    return new ImageError('OUT_OF_RANGE', `${this.storage.name}: ${what} of ${length} bytes at ${offset} is outside the image (${this.virtualSize} bytes)`, { file: this.storage.name })
  }

  #badState(index: number, state: number): ImageError {
    const at = this.#layout.bat.fileOffset + index * 8
    // vhdx_co_readv: -EIO for a state it cannot read.
    return new ImageError('CORRUPT', `${this.storage.name}: BAT at ${hex(this.#layout.bat.fileOffset)}: entry ${index} (at ${hex(at)}) has state ${state}, which a ${this.#differencing ? 'differencing' : 'non-differencing'} disk cannot have`, { file: this.storage.name, offset: at, qemuText: 'Input/output error' })
  }

  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const rest = Math.min(maxLength, this.virtualSize - guestOffset)
    if (rest <= 0 || guestOffset < 0) throw this.#outOfRange('read', guestOffset, maxLength)
    const bat = this.#layout.bat
    const bs = this.clusterSize
    const block = Math.floor(guestOffset / bs)
    const within = guestOffset - block * bs
    const length = Math.min(rest, bs - within)
    const index = bat.payloadIndex(block)
    const state = bat.state(index)
    if (state === PAYLOAD_BLOCK_FULLY_PRESENT) return { kind: 'data', length, storage: this.storage, hostOffset: bat.offset(index) + within }
    if (state === PAYLOAD_BLOCK_NOT_PRESENT) return this.#differencing ? { kind: 'unallocated', length } : { kind: 'zero', length, hostOffset: undefined }
    if (ZERO_STATES.has(state)) return { kind: 'zero', length, hostOffset: undefined }
    if (state !== PAYLOAD_BLOCK_PARTIALLY_PRESENT || !this.#differencing) throw this.#badState(index, state)
    const run = await this.#bitmapRun(block, within, length)
    return run.present ? { kind: 'data', length: run.length, storage: this.storage, hostOffset: bat.offset(index) + within } : { kind: 'unallocated', length: run.length }
  }

  /** §2.5.2: one bit a logical sector, least significant first, in the chunk's sector bitmap block. */
  async #bitmapRun(block: number, within: number, length: number): Promise<{ present: boolean; length: number }> {
    const bat = this.#layout.bat
    const sector = this.#layout.metadata.logicalSectorSize
    const sectorsPerBlock = this.clusterSize / sector
    const firstBit = (block % bat.chunkRatio) * sectorsPerBlock + Math.floor(within / sector)
    const lastBit = (block % bat.chunkRatio) * sectorsPerBlock + Math.floor((within + length - 1) / sector)
    const byteStart = firstBit >> 3
    const bytes = await this.storage.read(bat.offset(bat.bitmapIndex(block)) + byteStart, (lastBit >> 3) - byteStart + 1)
    const bit = (n: number) => (bytes[(n >> 3) - byteStart]! >> (n & 7)) & 1
    const present = bit(firstBit)
    let n = firstBit + 1
    while (n <= lastBit && bit(n) === present) n++
    const runEnd = Math.min(within + length, (Math.floor(within / sector) + (n - firstBit)) * sector)
    return { present: present === 1, length: runEnd - within }
  }

  async readEncoded(guestOffset: number): Promise<Uint8Array> {
    throw new ImageError('UNSUPPORTED', `${this.storage.name}: VHDX images have no encoded data (offset ${guestOffset})`, { file: this.storage.name })
  }

  async consultHostHoles(): Promise<boolean> {
    return false
  }

  #out(): Storage {
    if (!this.writable) throw new ImageError('READ_ONLY', `${this.storage.name}: image is open read-only`, { file: this.storage.name })
    return this.storage as Storage
  }

  #serial(work: () => Promise<void>): Promise<void> {
    const next = this.#metadata.then(work)
    this.#metadata = next.catch(() => undefined)
    return next
  }

  #allocator(out: Storage): UnitAllocator {
    const bat = this.#layout.bat
    const bs = this.clusterSize
    const exclusive = lockingUnits(this.#locks, bs, {
      plan: async (unit) => {
        const index = bat.payloadIndex(unit)
        const state = bat.state(index)
        if (state === PAYLOAD_BLOCK_FULLY_PRESENT) return { kind: 'inPlace', hostOffset: bat.offset(index) }
        // A partly present block is made whole in place: its parent's sectors copied in.
        if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT && this.#differencing) return { kind: 'rewrite', hostOffset: bat.offset(index), fill: 'guest', link: true }
        if (state === PAYLOAD_BLOCK_NOT_PRESENT || ZERO_STATES.has(state)) return { kind: 'allocate' }
        throw this.#badState(index, state)
      },
      allocateRun: async (_unit, count) => {
        const at = this.#nextBlockOffset
        if (at + count * bs > 2 ** 52) throw new ImageError('UNSUPPORTED', `${out.name}: a block at ${hex(at)} is beyond what qimg addresses`, { file: out.name })
        this.#nextBlockOffset += count * bs
        return { hostOffset: at, count }
      },
      writeData: (hostOffset, bytes) => out.write(hostOffset, bytes),
      // After the data: the BAT entries through the log (data flushed first, see LogWriter).
      linkRun: (unit, count, hostOffset) => this.#serial(async () => {
        const sectors = new Map<number, number>()
        for (let k = 0; k < count; k++) {
          const index = bat.payloadIndex(unit + k)
          bat.set(index, PAYLOAD_BLOCK_FULLY_PRESENT, hostOffset + k * bs)
          sectors.set(Math.floor((index * 8) / 4096), index)
        }
        await this.#layout.logWriter!.write(out, [...sectors.values()].map((index) => bat.sectorOf(index)))
      }),
    })
    return { unitSize: bs, virtualSize: this.virtualSize, name: out.name, padUnits: true, exclusive }
  }

  async #beforeWrite(out: Storage): Promise<void> {
    if (!this.#firstWrite) return
    await this.#serial(async () => {
      if (!this.#firstWrite) return
      await this.#layout.headers.updateBoth(out, true)
      this.#firstWrite = false
    })
  }

  async write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    const out = this.#out()
    if (offset < 0 || offset + data.length > this.virtualSize) throw this.#outOfRange('write', offset, data.length)
    await this.#beforeWrite(out)
    await writeUnits(this.#allocator(out), offset, data, readGuest)
  }

  /** vhdx has no write-zeroes: QEMU's block layer writes a buffer of zeros (allocating). */
  async writeZeroes(offset: number, length: number, readGuest: GuestReader): Promise<void> {
    if (length === 0) return this.write(offset, new Uint8Array(0), readGuest) // the range and mode checks
    await writeZeroBuffers((at, zeros) => this.write(at, zeros, readGuest), offset, length, Math.max(this.clusterSize, MIB))
  }

  /** vhdx has no discard: QEMU's bdrv_co_pdiscard succeeds doing nothing. */
  async discard(offset: number, length: number): Promise<void> {
    this.#out()
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) throw this.#outOfRange('discard', offset, length)
  }

  async flush(): Promise<void> {
    if (this.writable) await this.#out().flush()
  }

  info(): Promise<ImageInfo> {
    return layerInfo(this)
  }

  async close(): Promise<void> {
    await this.#metadata
    await this.storage.close()
  }
}
