// The raw format: guest offset = host offset, the whole file is the disk.
import type { WritableFormatDriver } from './format/driver.js'
import type { Extent } from './format/extent.js'
import { layerInfo, type ImageInfo } from './format/info.js'
import type { Resizable, ResizeRequest } from './format/capabilities.js'
import { ImageError } from './errors.js'
import { isWritable, writeZeroBytes, writeZeroes, type ReadableStorage, type Storage } from './io/storage.js'

/** A raw image over a storage. */
export class RawImage implements WritableFormatDriver, Resizable {
  /** 'raw', or the protocol's name when a protocol node is opened with no format ('file', 'blkdebug'). */
  readonly format: string
  readonly backing = undefined
  readonly warnings: string[] = []
  readonly passesFileStatus = true
  readonly storage: ReadableStorage
  virtualSize: number
  /** Where the disk starts in the file (raw's `offset` option; QEMU block/raw-format.c). */
  readonly #fileOffset: number
  private constructor(storage: ReadableStorage, size: number, format: string, fileOffset: number) {
    this.storage = storage
    this.format = format
    this.#fileOffset = fileOffset
    this.virtualSize = size
  }
  /** True when opened for writing. */
  writable = false

  /**
   * Opens `storage` as a raw image of its current length, rounded up to whole 512-byte sectors
   * as QEMU's block layer sizes every node (bdrv_getlength); the tail past EOF reads as zeros.
   */
  static async open(storage: ReadableStorage, options: { writable?: boolean; format?: string; window?: { offset: number; size: number } } = {}): Promise<RawImage> {
    // A window (offset/size options) is taken as given: the caller checked it against the file.
    const size = options.window?.size ?? Math.ceil((await storage.size()) / 512) * 512
    const image = new RawImage(storage, size, options.format ?? 'raw', options.window?.offset ?? 0)
    if (options.writable) {
      if (!isWritable(storage)) throw new ImageError('READ_ONLY', `${storage.name}: storage is not writable`)
      image.writable = true
    }
    return image
  }

  #out(): Storage {
    if (!this.writable) throw new ImageError('READ_ONLY', `${this.storage.name}: image is open read-only`)
    return this.storage as Storage
  }

  #check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: write of ${length} bytes at ${offset} is outside the image (${this.virtualSize} bytes)`)
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#check(offset, data.length)
    await this.#out().write(this.#fileOffset + offset, data)
  }

  /** Zeros through the storage's primitives (a zero range, or with `unmap` a punched hole). */
  async writeZeroes(offset: number, length: number, _readGuest?: unknown, options: { unmap?: boolean } = {}): Promise<void> {
    this.#check(offset, length)
    await writeZeroes(this.#out(), this.#fileOffset + offset, length, options)
  }

  /**
   * A hole punched in the file (QEMU's raw discard). Where the host cannot, the bytes stay: QEMU
   * ignores -ENOTSUP from a discard, which is only a hint.
   */
  async discard(offset: number, length: number): Promise<void> {
    this.#check(offset, length)
    await this.#out().discard?.(this.#fileOffset + offset, length)
  }

  async flush(): Promise<void> {
    if (this.writable) await (this.storage as Storage).flush()
  }

  /** qemu-img resize: raw has no metadata to preallocate (QEMU's raw_co_truncate). */
  async resize(size: number, request: Pick<ResizeRequest, 'preallocation'>): Promise<void> {
    if (request.preallocation === 'metadata') throw new ImageError('INVALID_ARGUMENT', 'Unsupported preallocation mode: metadata')
    await this.setVirtualSize(size, request.preallocation)
  }

  /**
   * Changes the size as QEMU's file-posix handle_aiocb_truncate does: `falloc` reserves the new
   * part (posix_fallocate, which writes zeros where the filesystem cannot), `full` writes zeros
   * there, `off` only sets the length. A file grown from empty gets its first block written
   * (QEMU's allocate_first_block, for its alignment probing), so the block counts match.
   */
  async setVirtualSize(size: number, preallocation: 'off' | 'falloc' | 'full' = 'off'): Promise<void> {
    if (this.#fileOffset !== 0) throw new ImageError('UNSUPPORTED', `${this.storage.name}: a raw image with an offset cannot be resized`, { file: this.storage.name })
    const out = this.#out()
    const fileSize = await out.size()
    const growth = size - fileSize
    if (preallocation === 'falloc' && growth > 0) {
      if (!(out.reserve && await out.reserve(fileSize, growth))) await writeZeroBytes(out, fileSize, growth)
    } else {
      await out.truncate(size)
      if (preallocation === 'full' && growth > 0) await writeZeroBytes(out, fileSize, growth)
    }
    // MAX_BLOCKSIZE (4096) bytes, or a sector below that size; full has written them already.
    if (fileSize === 0 && growth > 0 && preallocation !== 'full') await out.write(0, new Uint8Array(size < 4096 ? 512 : 4096))
    this.virtualSize = size
  }
  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const length = Math.min(maxLength, this.virtualSize - guestOffset)
    if (length <= 0) throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: offset ${guestOffset} is past the end of the image (${this.virtualSize} bytes)`)
    return { kind: 'data', length, storage: this.storage, hostOffset: this.#fileOffset + guestOffset }
  }
  async readEncoded(guestOffset: number): Promise<Uint8Array> {
    throw new ImageError('UNSUPPORTED', `${this.storage.name}: raw images have no encoded data (offset ${guestOffset})`)
  }
  async consultHostHoles(): Promise<boolean> {
    return true
  }
  info(): Promise<ImageInfo> {
    // A storage without image facts (an NBD export) has no dirty flag to report, as qemu-img shows.
    return layerInfo(this, { dirtyFlag: this.storage.hasInfo === false ? undefined : false })
  }
  async close(): Promise<void> {
    await this.storage.close()
  }
}
