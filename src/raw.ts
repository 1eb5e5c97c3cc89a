// The raw format: guest offset = host offset, the whole file is the disk.
import type { FormatDriver } from './format/driver.js'
import type { Extent } from './format/extent.js'
import type { ImageInfo } from './format/info.js'
import { ImageError } from './errors.js'
import type { ReadableStorage } from './io/storage.js'

/** A raw image over a storage. */
export class RawImage implements FormatDriver {
  readonly format = 'raw'
  readonly backing = undefined
  readonly warnings: string[] = []
  readonly storage: ReadableStorage
  readonly virtualSize: number
  private constructor(storage: ReadableStorage, size: number) {
    this.storage = storage
    this.virtualSize = size
  }
  /** Opens `storage` as a raw image of its current length. */
  static async open(storage: ReadableStorage): Promise<RawImage> {
    return new RawImage(storage, await storage.size())
  }
  async getExtent(guestOffset: number, maxLength: number): Promise<Extent> {
    const length = Math.min(maxLength, this.virtualSize - guestOffset)
    if (length <= 0) throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: offset ${guestOffset} is past the end of the image (${this.virtualSize} bytes)`)
    return { kind: 'data', length, storage: this.storage, hostOffset: guestOffset }
  }
  async readEncoded(guestOffset: number): Promise<Uint8Array> {
    throw new ImageError('UNSUPPORTED', `${this.storage.name}: raw images have no encoded data (offset ${guestOffset})`)
  }
  async consultHostHoles(): Promise<boolean> {
    return true
  }
  async info(): Promise<ImageInfo> {
    return {
      filename: this.storage.name,
      format: 'raw',
      virtualSize: this.virtualSize,
      actualSize: await this.storage.allocatedSize?.(),
      clusterSize: undefined,
      encrypted: undefined,
      dirtyFlag: false,
      backingFilename: undefined,
      fullBackingFilename: undefined,
      backingFilenameFormat: undefined,
      snapshots: undefined,
      formatSpecific: undefined,
    }
  }
  async close(): Promise<void> {
    await this.storage.close()
  }
}
