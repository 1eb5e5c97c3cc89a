// A bounded LRU cache of metadata tables (L2 tables, refcount blocks) keyed by host offset.
// Concurrent loads of one table share one read; the cache never holds more than `capacity`.

/** Cached table bytes and the view used to decode entries. */
export interface CachedTable {
  readonly hostOffset: number
  readonly bytes: Uint8Array
  readonly view: DataView
}

/** LRU of tables; `load` reads a table from storage on a miss. */
export class TableCache {
  readonly capacity: number
  #tables = new Map<number, CachedTable>()
  #loading = new Map<number, Promise<CachedTable>>()
  hits = 0
  misses = 0

  constructor(capacity: number) {
    this.capacity = Math.max(1, capacity)
  }

  /** The table at `hostOffset`, loading it with `load` when absent. */
  async get(hostOffset: number, load: (hostOffset: number) => Promise<Uint8Array>): Promise<CachedTable> {
    const cached = this.#tables.get(hostOffset)
    if (cached) {
      this.hits++
      // Map keeps insertion order: re-inserting marks it most recently used.
      this.#tables.delete(hostOffset)
      this.#tables.set(hostOffset, cached)
      return cached
    }
    const pending = this.#loading.get(hostOffset)
    if (pending) return pending
    this.misses++
    const promise = load(hostOffset).then((bytes) => {
      const table: CachedTable = { hostOffset, bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) }
      this.#insert(table)
      return table
    }).finally(() => this.#loading.delete(hostOffset))
    this.#loading.set(hostOffset, promise)
    return promise
  }

  /** Forgets every table (after the image changed underneath). */
  clear(): void {
    this.#tables.clear()
  }

  get size(): number {
    return this.#tables.size
  }

  #insert(table: CachedTable): void {
    this.#tables.set(table.hostOffset, table)
    while (this.#tables.size > this.capacity) {
      const oldest = this.#tables.keys().next().value as number
      this.#tables.delete(oldest)
    }
  }
}
