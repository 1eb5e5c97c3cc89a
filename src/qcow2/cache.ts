// A bounded LRU cache of metadata tables (L2 tables, refcount blocks) keyed by host offset,
// with dirty tracking for write-back. Concurrent loads of one table share one read. Clean
// tables are evicted beyond `capacity`; dirty ones stay until the owner writes them back
// (the image flushes in dependency order when too many are dirty, see qcow2/flush.ts).

/** A cached table: bytes, a view to decode entries, and whether it must be written back. */
export interface CachedTable {
  readonly hostOffset: number
  readonly bytes: Uint8Array
  readonly view: DataView
  dirty: boolean
}

/** LRU of tables; `load` reads a table from storage on a miss. */
export class TableCache {
  readonly capacity: number
  #tables = new Map<number, CachedTable>()
  #loading = new Map<number, Promise<CachedTable>>()
  #dirtyCount = 0
  #lastUsed = -1
  hits = 0
  misses = 0

  constructor(capacity: number) {
    this.capacity = Math.max(2, capacity)
  }

  /** The table at `hostOffset`, loading it with `load` when absent. */
  async get(hostOffset: number, load: (hostOffset: number) => Promise<Uint8Array>): Promise<CachedTable> {
    const cached = this.#tables.get(hostOffset)
    if (cached) {
      this.hits++
      // Map keeps insertion order: re-inserting marks it most recently used (not needed when
      // it already is: runs of lookups in one table are the common case).
      if (hostOffset !== this.#lastUsed) {
        this.#tables.delete(hostOffset)
        this.#tables.set(hostOffset, cached)
        this.#lastUsed = hostOffset
      }
      return cached
    }
    const pending = this.#loading.get(hostOffset)
    if (pending) return pending
    this.misses++
    // A table put or re-inserted while this load was in flight is newer than the bytes read.
    const promise = load(hostOffset).then((bytes) => this.#tables.get(hostOffset) ?? this.#insert(hostOffset, bytes, false))
      .finally(() => this.#loading.delete(hostOffset))
    this.#loading.set(hostOffset, promise)
    return promise
  }

  /** The table at `hostOffset` when cached (no load, no LRU update): for synchronous fast paths. */
  peek(hostOffset: number): CachedTable | undefined {
    return this.#tables.get(hostOffset)
  }

  /** Puts a freshly made table (e.g. a new L2 table) in the cache, dirty. */
  put(hostOffset: number, bytes: Uint8Array): CachedTable {
    const old = this.#tables.get(hostOffset)
    if (old?.dirty) this.#dirtyCount--
    this.#tables.delete(hostOffset)
    return this.#insert(hostOffset, bytes, true)
  }

  /**
   * Marks a table as changed in memory. A caller may have held it across awaits while other
   * loads evicted it (it was clean then): it goes back in, replacing any clean copy loaded since,
   * so the change is written back and seen by later lookups.
   */
  markDirty(table: CachedTable): void {
    if (!table.dirty) {
      table.dirty = true
      this.#dirtyCount++
    }
    const cached = this.#tables.get(table.hostOffset)
    if (cached !== table) {
      if (cached?.dirty) throw new Error(`table cache: two changed copies of the table at ${table.hostOffset}`)
      this.#tables.delete(table.hostOffset)
      this.#tables.set(table.hostOffset, table)
      this.#lastUsed = table.hostOffset
      this.#evict()
    }
  }

  /** Marks a table as written back. */
  markClean(table: CachedTable): void {
    if (table.dirty) {
      table.dirty = false
      this.#dirtyCount--
    }
    this.#evict()
  }

  /** Dirty tables, oldest first. */
  dirtyTables(): CachedTable[] {
    return [...this.#tables.values()].filter((t) => t.dirty)
  }

  get dirtyCount(): number {
    return this.#dirtyCount
  }

  /** Drops a table (its cluster was freed); a dirty one is discarded unwritten. */
  forget(hostOffset: number): void {
    const table = this.#tables.get(hostOffset)
    if (table?.dirty) this.#dirtyCount--
    this.#tables.delete(hostOffset)
  }

  /** Forgets every clean table. */
  clear(): void {
    for (const [offset, table] of this.#tables) if (!table.dirty) this.#tables.delete(offset)
  }

  get size(): number {
    return this.#tables.size
  }

  #insert(hostOffset: number, bytes: Uint8Array, dirty: boolean): CachedTable {
    const table: CachedTable = { hostOffset, bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), dirty }
    if (dirty) this.#dirtyCount++
    this.#tables.set(hostOffset, table)
    this.#lastUsed = hostOffset
    this.#evict()
    return table
  }

  #evict(): void {
    if (this.#tables.size <= this.capacity) return
    for (const [offset, table] of this.#tables) {
      if (this.#tables.size <= this.capacity) break
      if (!table.dirty) this.#tables.delete(offset)
    }
  }
}
