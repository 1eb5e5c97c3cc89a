// Storage over a growable Uint8Array: tests, fuzzing, tools, the browser.
import { ImageError, hex } from '../errors.js'
import type { Storage } from './storage.js'

/** In-memory storage that grows on write. `bytes()` returns the current contents. */
export class MemoryStorage implements Storage {
  readonly name: string
  #buffer: Uint8Array
  #length: number
  constructor(initial: Uint8Array = new Uint8Array(0), name = 'memory') {
    this.name = name
    this.#buffer = initial
    this.#length = initial.length
  }
  bytes(): Uint8Array {
    return this.#buffer.subarray(0, this.#length)
  }
  async size(): Promise<number> {
    return this.#length
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.#length) {
      throw new ImageError('SHORT_READ', `${this.name}: read of ${length} bytes at ${hex(offset)} past end ${hex(this.#length)}`, { offset, file: this.name })
    }
    return this.#buffer.slice(offset, offset + length)
  }
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#ensure(offset + data.length)
    this.#buffer.set(data, offset)
    this.#length = Math.max(this.#length, offset + data.length)
  }
  /** Memory has no holes to punch: the range (inside the size) is zeroed, as a hole would read. */
  async discard(offset: number, length: number): Promise<boolean> {
    this.#buffer.fill(0, offset, Math.min(offset + length, this.#length))
    return true
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#ensure(offset + length)
    this.#buffer.fill(0, offset, offset + length)
    this.#length = Math.max(this.#length, offset + length)
  }
  async flush(): Promise<void> {}
  async truncate(length: number): Promise<void> {
    this.#ensure(length)
    if (length < this.#length) this.#buffer.fill(0, length, this.#length)
    this.#length = length
  }
  async close(): Promise<void> {}
  #ensure(capacity: number): void {
    if (capacity <= this.#buffer.length) return
    let next: Uint8Array
    try {
      next = new Uint8Array(Math.max(capacity, this.#buffer.length * 2, 4096))
    } catch (cause) {
      // A write far past the end (an offset from a corrupt image) must not escape as a RangeError.
      throw new ImageError('IO', `${this.name}: cannot grow to ${capacity} bytes in memory`, { cause, file: this.name })
    }
    next.set(this.#buffer.subarray(0, this.#length))
    this.#buffer = next
  }
}
