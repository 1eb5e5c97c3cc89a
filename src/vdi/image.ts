// A VDI image over a storage (QEMU block/vdi.c): reads through the block map, writes whole
// 1 MiB blocks through the generic unit writer, no backing file, no discard, no resize.
import type { GuestReader, WritableFormatDriver } from '../format/driver.js'
import type { Extent } from '../format/extent.js'
import { plainInfo, type ImageInfo } from '../format/info.js'
import { UnitLocks, writeUnits, type UnitAllocator } from '../format/unit-writer.js'
import { ImageError } from '../errors.js'
import { isWritable, type ReadableStorage, type Storage } from '../io/storage.js'
import { encodeEntry, isAllocated, readBmap, validateBmap } from './bmap.js'
import { decodeHeader, encodeHeader, validateHeader, VDI_HEADER_BYTES, VDI_TYPE_STATIC, type VdiHeader } from './header.js'

export class VdiImage implements WritableFormatDriver {
  readonly format = 'vdi'
  readonly backing = undefined
  readonly warnings: string[] = []
  readonly storage: ReadableStorage
  readonly virtualSize: number
  readonly clusterSize: number
  readonly header: VdiHeader
  writable = false
  /** The header as stored, re-encoded over on each allocation (QEMU writes its whole copy). */
  readonly #headerBytes: Uint8Array
  readonly #bmap: Uint32Array
  readonly #locks = new UnitLocks()

  private constructor(storage: ReadableStorage, header: VdiHeader, headerBytes: Uint8Array, bmap: Uint32Array, size: number) {
    this.storage = storage
    this.header = header
    this.#headerBytes = headerBytes
    this.#bmap = bmap
    this.virtualSize = size
    this.clusterSize = header.blockSize
  }

  /** Opens `storage` as VDI: the header checked as vdi_open does, the block map read and checked. */
  static async open(storage: ReadableStorage, options: { writable?: boolean } = {}): Promise<VdiImage> {
    const file = storage.name
    const fileSize = await storage.size()
    if (fileSize < VDI_HEADER_BYTES) {
      throw new ImageError('NOT_AN_IMAGE', `${file}: VDI header at 0x0: the file has ${fileSize} bytes, a header ${VDI_HEADER_BYTES}`, { file, offset: 0 })
    }
    const headerBytes = await storage.read(0, VDI_HEADER_BYTES)
    const header = decodeHeader(headerBytes)
    const size = validateHeader(header, file)
    // QEMU keeps the rounded size in its copy, and writes that copy back.
    header.diskSize = size
    const bmap = await readBmap(storage, header)
    validateBmap(bmap, header, file)
    const image = new VdiImage(storage, header, headerBytes, bmap, size)
    if (options.writable) {
      if (!isWritable(storage)) throw new ImageError('READ_ONLY', `${file}: storage is not writable`)
      image.writable = true
    }
    return image
  }

  /** The static image's allocated blocks look at host holes (QEMU's BDRV_BLOCK_RECURSE). */
  get isStatic(): boolean {
    return this.header.imageType === VDI_TYPE_STATIC
  }

  #hostOffset(entry: number): number {
    return this.header.offsetData + entry * this.header.blockSize
  }

  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const bs = this.header.blockSize
    const block = Math.floor(guestOffset / bs)
    const within = guestOffset - block * bs
    const length = Math.min(maxLength, bs - within, this.virtualSize - guestOffset)
    if (length <= 0 || guestOffset < 0) throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: offset ${guestOffset} is past the end of the image (${this.virtualSize} bytes)`)
    const entry = this.#bmap[block]!
    // vdi_co_block_status: an allocated block is data at its host offset, any other reads zeros.
    if (!isAllocated(entry)) return { kind: 'zero', length, hostOffset: undefined }
    return { kind: 'data', length, storage: this.storage, hostOffset: this.#hostOffset(entry) + within }
  }

  async readEncoded(guestOffset: number): Promise<Uint8Array> {
    throw new ImageError('UNSUPPORTED', `${this.storage.name}: VDI images have no encoded data (offset ${guestOffset})`)
  }

  async consultHostHoles(): Promise<boolean> {
    return this.isStatic
  }

  #out(): Storage {
    if (!this.writable) throw new ImageError('READ_ONLY', `${this.storage.name}: image is open read-only`)
    return this.storage as Storage
  }

  #allocator(): UnitAllocator {
    const out = this.#out()
    const header = this.header
    return {
      unitSize: header.blockSize,
      virtualSize: this.virtualSize,
      dataStorage: out,
      name: out.name,
      writableUnitOffset: async (unit) => {
        const entry = this.#bmap[unit]!
        return isAllocated(entry) ? this.#hostOffset(entry) : undefined
      },
      // vdi_co_pwritev: the next host block is blocks_allocated, counted up at once.
      allocateUnit: async () => this.#hostOffset(header.blocksAllocated++),
      // QEMU writes the header, then the block map sector; qimg the entry, then the header.
      linkUnit: async (unit, hostOffset) => {
        const entry = (hostOffset - header.offsetData) / header.blockSize
        this.#bmap[unit] = entry
        await out.write(header.offsetBmap + unit * 4, encodeEntry(entry))
        await out.write(0, encodeHeader(header, this.#headerBytes))
      },
    }
  }

  /**
   * Block by block, in guest order as vdi_co_pwritev goes: new host blocks are then numbered in
   * the order QEMU numbers them (the generic writer would allocate a request's blocks at once).
   */
  async write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    const allocator = this.#allocator()
    const bs = this.header.blockSize
    for (let at = 0; at < data.length;) {
      const n = Math.min(data.length - at, bs - ((offset + at) % bs))
      await writeUnits(allocator, this.#locks, offset + at, data.subarray(at, at + n), readGuest)
      at += n
    }
    if (data.length === 0) await writeUnits(allocator, this.#locks, offset, data, readGuest)
  }

  /** VDI has no write-zeroes: QEMU's block layer writes a buffer of zeros (allocating). */
  async writeZeroes(offset: number, length: number, readGuest: GuestReader): Promise<void> {
    const piece = 4 * this.header.blockSize
    for (let at = 0; at < length; at += piece) {
      const n = Math.min(piece, length - at)
      await this.write(offset + at, new Uint8Array(n), readGuest)
    }
  }

  /** VDI has no discard: QEMU's bdrv_co_pdiscard succeeds doing nothing. */
  async discard(offset: number, length: number): Promise<void> {
    this.#out()
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: discard of ${length} bytes at ${offset} is outside the image (${this.virtualSize} bytes)`)
    }
  }

  async flush(): Promise<void> {
    if (this.writable) await (this.storage as Storage).flush()
  }

  info(): Promise<ImageInfo> {
    return plainInfo(this, { clusterSize: this.clusterSize })
  }

  async close(): Promise<void> {
    await this.storage.close()
  }
}
