// A pipe read with look-ahead: standard input has no offsets, so a format reader that must peek
// at a header (probing) or skip padding does it here, over a fixed buffer.
import { ImageError } from '../errors.js'
import type { ByteSource } from '../io/sink.js'

const BUFFER_BYTES = 1024 * 1024

/** Buffered, in-order reads of a {@link ByteSource}; `position` counts the bytes consumed. */
export class ByteReader implements ByteSource {
  #buffer = new Uint8Array(BUFFER_BYTES)
  #start = 0
  #end = 0
  #ended = false
  position = 0
  constructor(readonly source: ByteSource) {}

  get name(): string {
    return this.source.name
  }

  /** Buffers up to `length` bytes ahead; resolves to what is there (less only at the end). */
  async peek(length: number): Promise<Uint8Array> {
    if (this.#end - this.#start < length && !this.#ended) {
      if (length > this.#buffer.length) throw new RangeError(`peek of ${length} bytes is larger than the buffer`)
      this.#buffer.copyWithin(0, this.#start, this.#end)
      this.#end -= this.#start
      this.#start = 0
      while (this.#end < length && !this.#ended) {
        const n = await this.source.readInto(this.#buffer.subarray(this.#end))
        if (n < this.#buffer.length - this.#end) this.#ended = true
        this.#end += n
      }
    }
    return this.#buffer.subarray(this.#start, Math.min(this.#end, this.#start + length))
  }

  /** Exactly `length` bytes (a copy the caller keeps), or a CORRUPT error naming `what`. */
  async readExact(length: number, what: string): Promise<Uint8Array> {
    const out = new Uint8Array(length)
    if (await this.readInto(out) !== length) throw this.#truncated(what)
    return out
  }

  /** Skips exactly `length` bytes, or a CORRUPT error naming `what`. */
  async skip(length: number, what: string): Promise<void> {
    for (let left = length; left > 0;) {
      const got = await this.peek(Math.min(left, this.#buffer.length))
      if (got.length === 0) throw this.#truncated(what)
      this.#start += got.length
      this.position += got.length
      left -= got.length
    }
  }

  async readInto(into: Uint8Array): Promise<number> {
    let filled = Math.min(into.length, this.#end - this.#start)
    into.set(this.#buffer.subarray(this.#start, this.#start + filled))
    this.#start += filled
    if (filled < into.length && !this.#ended) {
      const n = await this.source.readInto(into.subarray(filled))
      if (n < into.length - filled) this.#ended = true
      filled += n
    }
    this.position += filled
    return filled
  }

  #truncated(what: string): ImageError {
    return new ImageError('CORRUPT', `${this.name}: the stream ends at byte ${this.position} inside ${what}`)
  }
}
