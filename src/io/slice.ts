// A read-only window of another storage (`length` bytes from `start`): a member of an archive
// read in place. Closing it closes the storage under it.
import { ImageError } from '../errors.js'
import type { ReadableStorage } from './storage.js'

export class SliceStorage implements ReadableStorage {
  readonly name: string
  readonly #under: ReadableStorage
  readonly #start: number
  readonly #length: number

  constructor(under: ReadableStorage, start: number, length: number, name: string) {
    this.#under = under
    this.#start = start
    this.#length = length
    this.name = name
  }

  async size(): Promise<number> {
    return this.#length
  }

  #check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.#length) {
      throw new ImageError('SHORT_READ', `${this.name}: read of ${length} bytes at ${offset} is past the end (${this.#length} bytes)`, { file: this.name, offset })
    }
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    this.#check(offset, length)
    return this.#under.read(this.#start + offset, length)
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    this.#check(offset, target.length)
    if (this.#under.readInto) return this.#under.readInto(this.#start + offset, target)
    target.set(await this.#under.read(this.#start + offset, target.length))
  }

  close(): Promise<void> {
    return this.#under.close()
  }
}
