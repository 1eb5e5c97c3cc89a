// A block device's guest bytes as a storage, so that a format can sit on another format (a
// qcow2 image inside a qcow2 image's guest disk: QEMU's `"file": {"driver": "qcow2", …}`).
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import type { BlockDevice } from './device.js'

/** The guest disk of `device`, read and written as bytes. */
export class DeviceStorage implements Storage {
  readonly name: string
  readonly #device: BlockDevice

  constructor(device: BlockDevice, name: string) {
    this.#device = device
    this.name = name
  }

  async size(): Promise<number> {
    return this.#device.size
  }

  /** The inner image's file (bdrv_get_allocated_file_size goes down to the file). */
  async allocatedSize(): Promise<number | undefined> {
    return this.#device.driver.storage.allocatedSize?.()
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset + length > this.#device.size) throw new ImageError('SHORT_READ', `${this.name}: read of ${length} bytes at ${offset} runs past the end (${this.#device.size} bytes)`, { file: this.name })
    return this.#device.read(offset, length)
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#device.write(offset, data)
  }

  /** The inner image's discard (whole clusters of its top layer). */
  async discard(offset: number, length: number): Promise<boolean> {
    await this.#device.discard(offset, length)
    return true
  }

  /** The inner image's zero write (the zero flag where the format has one). */
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.#device.writeZeroes(offset, length)
  }

  flush(): Promise<void> {
    return this.#device.flush()
  }

  async truncate(): Promise<void> {
    throw new ImageError('UNSUPPORTED', `${this.name}: an image used as another image's file cannot be resized`, { file: this.name })
  }

  close(): Promise<void> {
    return this.#device.close()
  }
}
