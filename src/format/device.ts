// A block device: a format driver plus the chain beneath it. The one generic loop that turns
// extents into bytes (read) and into qemu-img's block status (map, compare, convert).
import { allocUninitialized } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import type { Extent } from './extent.js'
import type { Compressors } from '../codecs.js'
import { isWritableDriver, type FormatDriver, type GuestReader, type WritableFormatDriver } from './driver.js'
import type { ImageInfo } from './info.js'
import { hasCompressedWrites, hasVmState, type VmState } from './capabilities.js'

/** Block status of a run of guest bytes, as qemu-img map reports it (MapEntry). */
export interface BlockStatus {
  start: number
  length: number
  /** Layer the answer comes from: 0 is the top image. */
  depth: number
  /** Allocated in the layer at `depth` (ALLOCATED). */
  present: boolean
  /** Reads as zeros. */
  zero: boolean
  /** Has data in the layer at `depth`. */
  data: boolean
  /** Host offset in `file`, when the data sits in a file at a known place. */
  offset: number | undefined
  /** The file holding the bytes (image file or external data file). */
  file: string | undefined
}

/** One run of a sparse read ({@link BlockDevice.readRun}), filled in place. */
export interface SparseRun {
  length: number
  zero: boolean
  /** The status is known and the bytes are being read. */
  reading: boolean
}

/** Largest single read a device issues to its storage. */
const MAX_IO = 8 * 1024 * 1024

/** A readable image with its backing chain resolved. */
export class BlockDevice {
  readonly driver: FormatDriver
  readonly backing: BlockDevice | undefined
  readonly #sizes = new Map<ReadableStorage, Promise<number>>()
  /**
   * The file name `info` shows when the device was opened from options and QEMU would name it
   * otherwise than by its file (a json: description, blkdebug:CONFIG:IMAGE).
   */
  label: string | undefined
  /**
   * Set when this device is a filter node over a format node (blkdebug over qcow2): reads go
   * through the filter, block status and allocation are the inner device's (QEMU passes a
   * filter's status down: BDRV_BLOCK_RAW, and bdrv_filter_or_cow_bs skips filters in depth).
   */
  filterOf: BlockDevice | undefined
  /** Reads through this node copy what the chain supplies into the top image (copy-on-read filter, qemu-io -C). */
  copyOnRead = false

  constructor(driver: FormatDriver, backing: BlockDevice | undefined) {
    this.driver = driver
    this.backing = backing
  }

  /** Guest-visible size. */
  get size(): number {
    return this.driver.virtualSize
  }

  /** Layers from this image down to the base. */
  get chain(): BlockDevice[] {
    const layers: BlockDevice[] = []
    for (let d: BlockDevice | undefined = this; d; d = d.backing) layers.push(d)
    return layers
  }

  /** Length of `storage`, cached; asked again when `needed` bytes lie past the cached end (writes grow files). */
  async #storageSize(storage: ReadableStorage, needed = 0): Promise<number> {
    let size = this.#sizes.get(storage)
    if (!size || (await size) < needed) {
      size = storage.size()
      this.#sizes.set(storage, size)
    }
    return size
  }

  /** Reads `length` guest bytes at `offset`; the range must lie inside the image. */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = allocUninitialized(length) // readInto writes every byte
    await this.readInto(out, offset)
    return out
  }

  /** Reads `out.length` guest bytes at `offset` into `out` (every byte is written). */
  async readInto(out: Uint8Array, offset: number): Promise<void> {
    const length = out.length
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new ImageError('OUT_OF_RANGE', `${this.driver.storage.name}: read of ${length} bytes at ${offset} is outside the image (${this.size} bytes)`)
    }
    let position = offset
    const end = offset + length
    while (position < end) {
      const extent = await this.driver.getExtent(position, Math.min(end - position, MAX_IO))
      const at = position - offset
      switch (extent.kind) {
        case 'data':
          await this.#readData(extent, out.subarray(at, at + extent.length))
          break
        case 'zero':
          out.fill(0, at, at + extent.length)
          break
        case 'compressed':
          if (this.driver.readEncodedInto) await this.driver.readEncodedInto(position, out.subarray(at, at + extent.length))
          else out.set(await this.driver.readEncoded(position, extent.length), at)
          break
        case 'unallocated': {
          const below = this.backing
          const fromBacking = below ? Math.min(extent.length, Math.max(0, below.size - position)) : 0
          if (below && fromBacking > 0) await below.readInto(out.subarray(at, at + fromBacking), position)
          out.fill(0, at + fromBacking, at + extent.length)
          break
        }
      }
      position += extent.length
    }
  }

  /** Fills `target` from a data extent; bytes past the end of the host file read as zeros, as in QEMU's file protocol. */
  async #readData(extent: Extent & { kind: 'data' }, target: Uint8Array): Promise<void> {
    const length = target.length
    const available = Math.max(0, Math.min(length, (await this.#storageSize(extent.storage, extent.hostOffset + length)) - extent.hostOffset))
    if (available > 0) {
      extent.storage.debugEvent?.('read_aio')
      const part = available === length ? target : target.subarray(0, available)
      if (extent.storage.readInto) await extent.storage.readInto(extent.hostOffset, part)
      else part.set(await extent.storage.read(extent.hostOffset, available))
    }
    if (available < length) target.fill(0, available)
  }

  /**
   * The run at `offset` as a sparse reader sees it (NBD structured reads, QEMU's
   * nbd_co_send_sparse_read): its length, at most `out.length`, and whether it reads as zeros,
   * as {@link blockStatus} answers; when it does not, its bytes are in `out`. Where blockStatus
   * then readInto would look the cluster up twice, the common cases (data or zeros in the top
   * layer, no host holes to consult) take one lookup. `run.reading` turns true once the status
   * is known and the bytes are being read (the two fail with different messages).
   */
  async readRun(out: Uint8Array, offset: number, run: SparseRun): Promise<void> {
    run.reading = false
    const max = out.length
    if (!this.filterOf && this.driver.noBlockStatus !== true && offset >= 0 && offset + max <= this.size && !(await this.driver.consultHostHoles())) {
      const extent = await this.driver.getExtent(offset, max)
      if (extent.kind === 'zero' || (extent.kind === 'unallocated' && (!this.backing || offset >= this.backing.size))) {
        run.zero = true
        run.length = extent.length
        return
      }
      if (extent.kind === 'data') {
        run.zero = false
        run.length = extent.length
        run.reading = true
        return this.#readData(extent, out.subarray(0, extent.length))
      }
    }
    const status = await this.blockStatus(offset, max)
    run.zero = status.zero
    run.length = status.length
    run.reading = true
    if (!status.zero) await this.readInto(out.subarray(0, status.length), offset)
  }

  /**
   * Block status of the run starting at `offset` (at most `maxLength` bytes), through the chain;
   * `precise`: from the driver's extents even where QEMU's format has no block status (convert).
   */
  async blockStatus(offset: number, maxLength: number, depth = 0, precise = false): Promise<BlockStatus> {
    if (this.filterOf) return this.filterOf.blockStatus(offset, maxLength, depth, precise)
    if (this.driver.noBlockStatus === true && !precise) {
      // bdrv_co_block_status without a driver callback: DATA | ALLOCATED for the whole request.
      return { start: offset, length: Math.min(maxLength, this.size - offset), depth, present: true, zero: false, data: true, offset: undefined, file: undefined }
    }
    const extent = await this.driver.getExtent(offset, Math.min(maxLength, this.size - offset))
    const base = { start: offset, length: extent.length, depth }
    switch (extent.kind) {
      case 'data': {
        const status: BlockStatus = { ...base, present: true, zero: false, data: true, offset: extent.hostOffset, file: extent.storage.name }
        if (await this.driver.consultHostHoles()) {
          const fileSize = await this.#storageSize(extent.storage, extent.hostOffset + extent.length)
          if (extent.hostOffset >= fileSize) {
            status.zero = true // past the end of the file: QEMU's BDRV_BLOCK_EOF reads as zero
            // A raw layer (or a protocol read as one) passes the file's answer through: file-posix calls it a trailing hole.
            if (this.driver.passesFileStatus === true) status.data = false
          } else if (extent.storage.holeStatus) {
            const hole = await extent.storage.holeStatus(extent.hostOffset, Math.min(extent.length, fileSize - extent.hostOffset))
            status.length = hole.length
            if (hole.hole) {
              status.zero = true
              // A raw layer reports the file's status; qcow2 adds ZERO to its DATA.
              if (this.driver.passesFileStatus === true) status.data = false
            }
          }
        }
        return status
      }
      case 'zero':
        return { ...base, present: true, zero: true, data: false, offset: extent.hostOffset, file: extent.hostOffset === undefined ? undefined : this.driver.storage.name }
      case 'compressed':
        return { ...base, present: true, zero: false, data: true, offset: undefined, file: this.driver.storage.name }
      case 'unallocated': {
        const below = this.backing
        if (below && offset < below.size) {
          return below.blockStatus(offset, Math.min(extent.length, below.size - offset), depth + 1, precise)
        }
        return { ...base, present: false, zero: true, data: false, offset: extent.hostOffset, file: extent.hostOffset === undefined ? undefined : this.driver.storage.name }
      }
    }
  }

  /** Whether the top layer alone allocates the run at `offset` (for compare -s and convert -B). */
  async isAllocated(offset: number, maxLength: number): Promise<{ allocated: boolean; length: number }> {
    if (this.filterOf) return this.filterOf.isAllocated(offset, maxLength)
    const extent = await this.driver.getExtent(offset, maxLength)
    return { allocated: extent.kind !== 'unallocated', length: extent.length }
  }

  #writable(): WritableFormatDriver {
    if (!isWritableDriver(this.driver)) throw new ImageError('READ_ONLY', `${this.driver.storage.name}: image is open read-only`)
    return this.driver
  }

  /** True when the top layer was opened for writing. */
  get writable(): boolean {
    return isWritableDriver(this.driver)
  }

  /** Current content for copy-on-write, with block status to skip copying zeros. */
  readonly #readGuest: GuestReader = Object.assign((offset: number, length: number): Promise<Uint8Array> => this.read(offset, length), {
    readsAsZero: (offset: number, length: number): Promise<boolean> => this.#readsAsZero(offset, length),
  })

  /** Writes `data` at guest `offset` into the top layer (copy-on-write from the chain). */
  async write(offset: number, data: Uint8Array): Promise<void> {
    await this.#writable().write(offset, data, this.#readGuest)
  }

  /**
   * Writes VM state (savevm data) at `pos` of the top layer's VM state area; formats without
   * one refuse as QEMU's bdrv_co_writev_vmstate does (ENOTSUP).
   */
  async saveVmState(pos: number, data: Uint8Array): Promise<void> {
    await this.#vmStateDriver().saveVmState(pos, data, this.#readGuest)
  }

  /** Reads VM state at `pos` (see {@link saveVmState}). */
  async loadVmState(pos: number, length: number): Promise<Uint8Array> {
    return this.#vmStateDriver().loadVmState(pos, length, this.#readGuest)
  }

  #vmStateDriver(): VmState {
    const driver = this.driver
    if (!hasVmState(driver)) throw new ImageError('UNSUPPORTED', `${driver.storage.name}: format '${driver.format}' has no VM state area`)
    return driver
  }

  /** Cluster size of the top layer when it has clusters (compressed writes work per cluster). */
  get clusterSize(): number | undefined {
    return this.driver.clusterSize
  }

  /** Writes whole clusters compressed (formats that support it: qcow2). */
  async writeCompressed(offset: number, data: Uint8Array, compressors?: Compressors, after?: Promise<unknown>): Promise<void> {
    const driver = this.#writable()
    if (!hasCompressedWrites(driver)) throw new ImageError('UNSUPPORTED', `${driver.storage.name}: format '${driver.format}' has no compressed clusters`)
    await driver.writeCompressed(offset, data, this.#readGuest, compressors, after)
  }

  /** Whether `[offset, offset+length)` reads as zeros by block status (QEMU's is_zero in qcow2.c). */
  readonly #readsAsZero = async (offset: number, length: number): Promise<boolean> => {
    const end = Math.min(offset + length, this.size)
    for (let at = offset; at < end;) {
      const status = await this.blockStatus(at, end - at)
      if (!status.zero) return false
      at += status.length
    }
    return true
  }

  /** Makes `[offset, offset+length)` read as zeros. */
  async writeZeroes(offset: number, length: number, options: { unmap?: boolean } = {}): Promise<void> {
    await this.#writable().writeZeroes(offset, length, this.#readGuest, { ...options, readsAsZero: this.#readsAsZero })
  }

  /** Discards whole clusters of the top layer. */
  async discard(offset: number, length: number): Promise<void> {
    await this.#writable().discard(offset, length)
  }

  /** Makes completed writes durable. */
  async flush(): Promise<void> {
    if (this.writable) await this.#writable().flush()
  }

  /** `info` facts of the top layer. */
  async info(): Promise<ImageInfo> {
    const info = await this.driver.info()
    if (this.label !== undefined) info.filename = this.label
    return info
  }

  /** Closes every layer. */
  async close(): Promise<void> {
    for (const layer of this.chain) await layer.driver.close()
  }
}
