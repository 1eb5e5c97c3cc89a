// QEMU's null-co / null-aio protocols (block/null.c): a disk of `size` bytes that reads as zeros
// and forgets what is written. For tests that need a device and no data.
import type { Storage } from './storage.js'

/** Reads zeros, discards writes. */
export class NullStorage implements Storage {
  readonly name: string
  readonly #size: number
  /** read-zeroes=on: block status says the reads are zeros (QEMU's BDRV_BLOCK_ZERO). */
  readonly #readZeroes: boolean

  constructor(name: string, size: number, readZeroes: boolean) {
    this.name = name
    this.#size = size
    this.#readZeroes = readZeroes
  }

  async holeStatus(_offset: number, length: number): Promise<{ hole: boolean; length: number }> {
    return { hole: this.#readZeroes, length }
  }

  async size(): Promise<number> {
    return this.#size
  }

  async read(_offset: number, length: number): Promise<Uint8Array> {
    return new Uint8Array(length)
  }

  async readInto(_offset: number, target: Uint8Array): Promise<void> {
    target.fill(0)
  }

  async allocatedSize(): Promise<number> {
    return 0
  }

  async write(): Promise<void> {}

  async flush(): Promise<void> {}

  async truncate(): Promise<void> {}

  async close(): Promise<void> {}
}
