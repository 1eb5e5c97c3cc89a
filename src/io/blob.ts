// A Blob or File (a dropped file in a browser, a Blob on Node) as read-only storage: each read
// slices the blob, so nothing is buffered beyond the bytes asked for.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from './storage.js'

/** Reads a `Blob` / `File`. */
export class BlobStorage implements ReadableStorage {
  readonly name: string
  readonly #blob: Blob
  constructor(blob: Blob, name?: string) {
    this.#blob = blob
    this.name = name ?? ((blob as { name?: unknown }).name as string | undefined) ?? 'blob'
  }

  async size(): Promise<number> {
    return this.#blob.size
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.#blob.size) {
      throw new ImageError('SHORT_READ', `${this.name}: read of ${length} bytes at ${hex(offset)} runs past the end (${this.#blob.size} bytes)`, { file: this.name, offset })
    }
    if (length === 0) return new Uint8Array(0)
    return new Uint8Array(await this.#blob.slice(offset, offset + length).arrayBuffer())
  }

  async close(): Promise<void> {}
}

/** True for a Blob (or File) of this realm or another (duck-typed: Node's and a browser's). */
export function isBlob(value: unknown): value is Blob {
  return typeof value === 'object' && value !== null && typeof (value as Blob).slice === 'function' &&
    typeof (value as Blob).arrayBuffer === 'function' && typeof (value as Blob).size === 'number'
}
