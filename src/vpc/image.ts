// A VHD image over a storage (QEMU block/vpc.c). Fixed disks are their guest bytes followed by
// the footer; dynamic and differencing disks map 2 MiB (or other power-of-two) blocks through the
// BAT, each block a sector bitmap then data. Writes to sparse disks go through the generic unit
// writer; fixed disks are written in place.
import type { BackingReference, GuestReader, WritableFormatDriver } from '../format/driver.js'
import type { Extent } from '../format/extent.js'
import { layerInfo, type ImageInfo } from '../format/info.js'
import { UnitLocks, lockingUnits, writeUnits, type UnitAllocator } from '../format/unit-writer.js'
import { writeZeroBuffers } from '../format/unit-split.js'
import { ImageError } from '../errors.js'
import { isWritable, type ReadableStorage, type Storage } from '../io/storage.js'
import { BAT_UNUSED } from './dynamic-header.js'
import { FOOTER_BYTES, SECTOR_SIZE, VHD_DIFFERENCING, VHD_FIXED } from './footer.js'
import type { VpcLayout, VpcSparse } from './open.js'
import { SectorBitmaps } from './sector-bitmap.js'

export class VpcImage implements WritableFormatDriver {
  readonly format = 'vpc'
  readonly warnings: string[] = []
  readonly storage: ReadableStorage
  readonly virtualSize: number
  readonly backing: BackingReference | undefined
  readonly clusterSize: number | undefined
  readonly writable: boolean
  readonly #layout: VpcLayout
  /** Fixed disk type: reads and writes go straight to the file (vpc_co_preadv tests the footer's type). */
  readonly #fixed: boolean
  readonly #differencing: boolean
  readonly #sparse: VpcSparse | undefined
  readonly #bitmaps: SectorBitmaps | undefined
  readonly #locks = new UnitLocks()
  /** Serializes the footer, bitmap and BAT writes of allocations (see #allocator). */
  #metadata: Promise<void> = Promise.resolve()

  constructor(storage: ReadableStorage, layout: VpcLayout, backing: BackingReference | undefined, writable: boolean) {
    if (writable && !isWritable(storage)) throw new ImageError('READ_ONLY', `${storage.name}: storage is not writable`, { file: storage.name })
    this.storage = storage
    this.#layout = layout
    this.virtualSize = layout.virtualSize
    this.#fixed = layout.footer.diskType === VHD_FIXED
    this.#sparse = layout.sparse
    // A differencing disk that names no parent is read as QEMU reads every one: as a dynamic disk.
    this.#differencing = !this.#fixed && layout.footer.diskType === VHD_DIFFERENCING && layout.sparse !== undefined && backing !== undefined
    this.backing = this.#differencing ? backing : undefined
    this.clusterSize = this.#fixed ? undefined : layout.sparse?.blockSize
    this.#bitmaps = layout.sparse && !this.#fixed ? new SectorBitmaps(storage, layout.sparse) : undefined
    this.writable = writable
  }

  #outOfRange(what: string, offset: number, length: number): ImageError {
    return new ImageError('OUT_OF_RANGE', `${this.storage.name}: ${what} of ${length} bytes at ${offset} is outside the image (${this.virtualSize} bytes)`, { file: this.storage.name })
  }

  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const rest = Math.min(maxLength, this.virtualSize - guestOffset)
    if (rest <= 0 || guestOffset < 0) throw this.#outOfRange('read', guestOffset, maxLength)
    const sparse = this.#sparse
    if (this.#fixed || !sparse) {
      // The guest bytes are the file's (past its end they read as zeros, as in QEMU).
      return { kind: 'data', length: rest, storage: this.storage, hostOffset: guestOffset }
    }
    const bs = sparse.blockSize
    const block = Math.floor(guestOffset / bs)
    const within = guestOffset - block * bs
    const length = Math.min(rest, bs - within)
    const entry = block < sparse.bat.length ? sparse.bat[block]! : BAT_UNUSED
    if (entry === BAT_UNUSED) return this.#differencing ? { kind: 'unallocated', length } : { kind: 'zero', length, hostOffset: undefined }
    const dataOffset = entry * SECTOR_SIZE + sparse.bitmapSize
    // QEMU reads a dynamic disk's allocated block whole, whatever its bitmap says; a
    // differencing disk's clear bits are sectors its parent holds.
    if (!this.#differencing) return { kind: 'data', length, storage: this.storage, hostOffset: dataOffset + within }
    const run = await this.#bitmaps!.run(entry, within, length)
    return run.present
      ? { kind: 'data', length: run.length, storage: this.storage, hostOffset: dataOffset + within }
      : { kind: 'unallocated', length: run.length }
  }

  async readEncoded(guestOffset: number): Promise<Uint8Array> {
    throw new ImageError('UNSUPPORTED', `${this.storage.name}: VHD images have no encoded data (offset ${guestOffset})`, { file: this.storage.name })
  }

  /** A fixed disk's blocks recurse into the file's holes (vpc_co_block_status: BDRV_BLOCK_RECURSE). */
  async consultHostHoles(): Promise<boolean> {
    return this.#fixed
  }

  #out(): Storage {
    if (!this.writable) throw new ImageError('READ_ONLY', `${this.storage.name}: image is open read-only`, { file: this.storage.name })
    return this.storage as Storage
  }

  /** Runs `work` after every metadata write queued before it. */
  #serial(work: () => Promise<void>): Promise<void> {
    const next = this.#metadata.then(work)
    this.#metadata = next.catch(() => undefined)
    return next
  }

  #allocator(sparse: VpcSparse): UnitAllocator {
    const out = this.#out()
    const span = sparse.bitmapSize + sparse.blockSize
    const exclusive = lockingUnits(this.#locks, sparse.blockSize, {
      plan: async (unit) => {
        const entry = sparse.bat[unit]!
        return entry === BAT_UNUSED ? { kind: 'allocate' } : { kind: 'inPlace', hostOffset: entry * SECTOR_SIZE + sparse.bitmapSize }
      },
      // alloc_block: the block goes at free_data_block_offset (over the footer there), its bitmap
      // all ones: the whole block is written, so every sector is this layer's.
      allocateRun: async (unit) => {
        const at = sparse.freeOffset
        if ((at + span) / SECTOR_SIZE > BAT_UNUSED) {
          throw new ImageError('UNSUPPORTED', `${out.name}: block ${unit} would start at ${at}, beyond what a BAT entry can address`, { file: out.name })
        }
        sparse.freeOffset += span
        await this.#serial(() => this.#bitmaps!.writeFull(out, at / SECTOR_SIZE))
        return { hostOffset: at + sparse.bitmapSize, count: 1 }
      },
      writeData: (hostOffset, bytes) => out.write(hostOffset, bytes),
      // After the data: the footer at the new end of the file, then the BAT entry. A crash before
      // the entry leaves an unreferenced block; QEMU opens a dynamic disk by its footer copy at 0.
      linkRun: (unit, _count, hostOffset) => this.#serial(async () => {
        await out.write(sparse.freeOffset, this.#layout.footerBytes)
        const entry = (hostOffset - sparse.bitmapSize) / SECTOR_SIZE
        const bytes = new Uint8Array(4)
        new DataView(bytes.buffer).setUint32(0, entry)
        await out.write(sparse.batOffset + unit * 4, bytes)
        sparse.bat[unit] = entry
      }),
    })
    return { unitSize: sparse.blockSize, virtualSize: this.virtualSize, name: out.name, padUnits: true, exclusive }
  }

  async write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    const out = this.#out()
    if (offset < 0 || offset + data.length > this.virtualSize) throw this.#outOfRange('write', offset, data.length)
    const sparse = this.#sparse
    if (this.#fixed || !sparse) {
      // In place; the footer at the file's end is never guest data.
      const limit = this.#layout.fileSize - FOOTER_BYTES
      if (offset + data.length > limit) {
        throw new ImageError('CORRUPT', `${out.name}: write of ${data.length} bytes at ${offset} would reach the VHD footer at ${limit}: the virtual size is larger than the file`, { file: out.name })
      }
      await out.write(offset, data)
      return
    }
    // Block by block in guest order, as vpc_co_pwritev goes: new blocks are placed in QEMU's order.
    const allocator = this.#allocator(sparse)
    const bs = sparse.blockSize
    for (let at = 0; at < data.length;) {
      const n = Math.min(data.length - at, bs - ((offset + at) % bs))
      const block = Math.floor((offset + at) / bs)
      await this.#locks.with(block, () => this.#completeBlock(out, sparse, block, readGuest))
      await writeUnits(allocator, offset + at, data.subarray(at, at + n), readGuest)
      at += n
    }
  }

  /**
   * Before an allocated block is written in place its bitmap must cover every sector. QEMU sets
   * all bits on the first write to a block (get_image_offset); for a differencing disk qimg first
   * copies the sectors still in the parent into the block, so setting the bits loses nothing.
   */
  async #completeBlock(out: Storage, sparse: VpcSparse, block: number, readGuest: GuestReader): Promise<void> {
    const entry = sparse.bat[block]!
    if (entry === BAT_UNUSED || sparse.bitmapSize === 0) return
    const bitmaps = this.#bitmaps!
    if (await bitmaps.isFull(entry)) return
    if (this.#differencing) {
      const blockStart = block * sparse.blockSize
      const guestBytes = Math.min(sparse.blockSize, this.virtualSize - blockStart)
      const dataOffset = entry * SECTOR_SIZE + sparse.bitmapSize
      for (let within = 0; within < guestBytes;) {
        const run = await bitmaps.run(entry, within, guestBytes - within)
        if (!run.present) await out.write(dataOffset + within, await readGuest(blockStart + within, run.length))
        within += run.length
      }
    }
    await this.#serial(() => bitmaps.writeFull(out, entry))
  }

  /** vpc has no write-zeroes: QEMU's block layer writes a buffer of zeros (allocating). */
  async writeZeroes(offset: number, length: number, readGuest: GuestReader): Promise<void> {
    if (length === 0) return this.write(offset, new Uint8Array(0), readGuest) // the range and mode checks
    await writeZeroBuffers((at, zeros) => this.write(at, zeros, readGuest), offset, length, Math.max(this.#sparse?.blockSize ?? 0, 1024 * 1024))
  }

  /** vpc has no discard: QEMU's bdrv_co_pdiscard succeeds doing nothing. */
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
    await this.storage.close()
  }
}
