// A window of another storage: raw's `offset` and `size` options (QEMU block/raw-format.c), the
// guest disk being `size` bytes of the file starting at `offset`.
import { ImageError } from '../errors.js'
import { isWritable, type ReadableStorage, type Storage } from './storage.js'

/** `length` bytes of `inner` from `offset` on. */
export class SliceStorage implements Storage {
  readonly name: string
  readonly #inner: ReadableStorage
  readonly #offset: number
  readonly #length: number

  constructor(inner: ReadableStorage, offset: number, length: number) {
    this.#inner = inner
    this.#offset = offset
    this.#length = length
    this.name = inner.name
  }

  #writable(): Storage {
    if (!isWritable(this.#inner)) throw new ImageError('READ_ONLY', `${this.name}: storage is not writable`, { file: this.name })
    return this.#inner
  }

  #check(offset: number, length: number): void {
    if (offset < 0 || offset + length > this.#length) throw new ImageError('OUT_OF_RANGE', `${this.name}: ${length} bytes at ${offset} lie outside the ${this.#length}-byte window at ${this.#offset}`, { file: this.name })
  }

  async size(): Promise<number> {
    return this.#length
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.#check(offset, length)
    return this.#inner.read(this.#offset + offset, length)
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    this.#check(offset, target.length)
    if (this.#inner.readInto) await this.#inner.readInto(this.#offset + offset, target)
    else target.set(await this.#inner.read(this.#offset + offset, target.length))
  }

  async allocatedSize(): Promise<number | undefined> {
    return this.#inner.allocatedSize?.()
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#check(offset, data.length)
    await this.#writable().write(this.#offset + offset, data)
  }

  flush(): Promise<void> {
    return this.#writable().flush()
  }

  async truncate(): Promise<void> {
    throw new ImageError('UNSUPPORTED', `${this.name}: a raw image with offset/size cannot be resized`, { file: this.name })
  }

  debugEvent(event: Parameters<NonNullable<ReadableStorage['debugEvent']>>[0]): void {
    this.#inner.debugEvent?.(event)
  }

  close(): Promise<void> {
    return this.#inner.close()
  }
}
