// Refcounts on write ("Reference count"): a cluster allocator over the refcount table and
// blocks, with blocks that describe themselves, a refcount table that grows by moving, frees
// deferred until the tables that dropped the reference are durable, and write-back in order.
import { setU64 } from '../binary/bytes.js'
import { ImageError, hex } from '../errors.js'
import type { Storage } from '../io/storage.js'
import { TableCache, type CachedTable } from './cache.js'
import { decodeReftableEntry } from './entries.js'
import { getRefcountEntry } from './refcount-read.js'

/** Writes refcount `index` of a refcount block (any width 1..64 bits). */
export function setRefcountEntry(view: DataView, index: number, refcountOrder: number, value: number): void {
  switch (refcountOrder) {
    case 0: case 1: case 2: {
      const bits = 1 << refcountOrder
      const perByte = 8 / bits
      const byte = Math.floor(index / perByte)
      const shift = (index % perByte) * bits
      const mask = ((1 << bits) - 1) << shift
      view.setUint8(byte, (view.getUint8(byte) & ~mask) | ((value << shift) & mask))
      return
    }
    case 3: view.setUint8(index, value); return
    case 4: view.setUint16(index * 2, value); return
    case 5: view.setUint32(index * 4, value); return
    default: setU64(view, index * 8, value)
  }
}

/** Where the refcount structures are; updated when the table moves. */
export interface RefcountLayout {
  clusterSize: number
  refcountOrder: number
  reftableOffset: number
  reftableClusters: number
}

/** Callbacks into the image for the rare operations that touch the header. */
export interface RefcountHost {
  /** Writes the header's refcount table offset and cluster count (bytes 48-59) durably. */
  switchReftable(offset: number, clusters: number): Promise<void>
}

/** Allocator and refcount store of one writable image. */
export class RefcountManager {
  readonly storage: Storage
  readonly layout: RefcountLayout
  readonly cache: TableCache
  #reftable: Uint8Array
  #reftableView: DataView
  #reftableDirty = false
  /** Lowest cluster that may be free. */
  #freeHint = 0
  /** Clusters covering the file, including ones allocated but not yet written. */
  #endCluster: number
  #reserved = new Set<number>()
  #pendingFrees: number[] = []
  /** Where the next compressed cluster may start (QEMU's free_byte_offset); 0 when none. */
  #freeByteOffset = 0
  readonly maxRefcount: number

  constructor(storage: Storage, layout: RefcountLayout, reftable: Uint8Array, fileSize: number, cacheTables: number, readonly host: RefcountHost) {
    this.storage = storage
    this.layout = layout
    this.#reftable = reftable
    this.#reftableView = new DataView(reftable.buffer, reftable.byteOffset, reftable.byteLength)
    this.#endCluster = Math.ceil(fileSize / layout.clusterSize)
    this.cache = new TableCache(cacheTables)
    this.maxRefcount = 2 ** (1 << layout.refcountOrder) - 1
  }

  /** Refcounts one block holds. */
  get entriesPerBlock(): number {
    return (this.layout.clusterSize * 8) >>> this.layout.refcountOrder
  }

  /** First cluster past everything allocated so far (the file's end after write-back). */
  get endCluster(): number {
    return this.#endCluster
  }

  /** Offsets of every refcount block in the table (for the metadata overlap check). */
  blockOffsets(): number[] {
    const out: number[] = []
    for (let i = 0; i < this.#reftable.length / 8; i++) {
      const offset = this.#blockOffset(i)
      if (offset) out.push(offset)
    }
    return out
  }

  /** Incremented whenever refcount metadata (blocks, table) is allocated or moved. */
  metadataEpoch = 0

  /** After the file was cut: nothing at or past `cluster` is in use. */
  setEndCluster(cluster: number): void {
    this.#endCluster = cluster
    if (this.#freeHint > cluster) this.#freeHint = cluster
  }

  get hasPendingFrees(): boolean {
    return this.#pendingFrees.length > 0
  }

  get reftableDirty(): boolean {
    return this.#reftableDirty
  }

  #blockOffset(tableIndex: number): number {
    if ((tableIndex + 1) * 8 > this.#reftable.length) return 0
    return decodeReftableEntry(this.#reftableView.getUint32(tableIndex * 8), this.#reftableView.getUint32(tableIndex * 8 + 4),
      this.layout.clusterSize, () => `${this.storage.name}: refcount table entry ${tableIndex}`)
  }

  #loadBlock(offset: number): Promise<CachedTable> {
    this.storage.debugEvent?.('refblock_load')
    return this.cache.get(offset, (at) => this.storage.read(at, this.layout.clusterSize))
  }

  /** Refcount of host cluster `cluster`. */
  async get(cluster: number): Promise<number> {
    const perBlock = this.entriesPerBlock
    const offset = this.#blockOffset(Math.floor(cluster / perBlock))
    if (offset === 0) return 0
    const block = await this.#loadBlock(offset)
    return getRefcountEntry(block.view, cluster % perBlock, this.layout.refcountOrder)
  }

  /** Sets the refcount of `cluster`, creating its refcount block if needed. */
  async set(cluster: number, value: number): Promise<void> {
    if (value > this.maxRefcount) {
      throw new ImageError('UNSUPPORTED', `${this.storage.name}: refcount of cluster ${cluster} would overflow ${1 << this.layout.refcountOrder}-bit refcounts`)
    }
    // QEMU's update_refcount finds (or allocates) the block through alloc_refcount_block.
    this.storage.debugEvent?.('refblock_alloc')
    const perBlock = this.entriesPerBlock
    const tableIndex = Math.floor(cluster / perBlock)
    let offset = this.#blockOffset(tableIndex)
    if (offset === 0) offset = await this.#createBlock(tableIndex)
    const block = await this.#loadBlock(offset)
    setRefcountEntry(block.view, cluster % perBlock, this.layout.refcountOrder, value)
    this.cache.markDirty(block)
    if (value === 0 && cluster < this.#freeHint) this.#freeHint = cluster
  }

  #hot: { index: number; offset: number; epoch: number; block: CachedTable } | undefined

  /**
   * Adds `delta` (0: only reads) to the refcount of `cluster` synchronously when its refcount
   * block is cached; undefined when it is not, or when the result would be out of range (the
   * caller then takes {@link add}, which loads the block or throws the right error). For the
   * loops over every cluster of an image (snapshot create/delete).
   */
  addCached(cluster: number, delta: number): number | undefined {
    const perBlock = this.entriesPerBlock
    const index = Math.floor(cluster / perBlock)
    let hot = this.#hot
    if (!hot || hot.index !== index || hot.epoch !== this.metadataEpoch || this.cache.peek(hot.offset) !== hot.block) {
      const offset = this.#blockOffset(index)
      const block = offset === 0 ? undefined : this.cache.peek(offset)
      if (!block) return undefined
      hot = this.#hot = { index, offset, epoch: this.metadataEpoch, block }
    }
    const old = getRefcountEntry(hot.block.view, cluster - index * perBlock, this.layout.refcountOrder)
    if (delta === 0) return old
    const value = old + delta
    if (value < 0 || value > this.maxRefcount) return undefined
    setRefcountEntry(hot.block.view, cluster - index * perBlock, this.layout.refcountOrder, value)
    this.cache.markDirty(hot.block)
    if (value === 0 && cluster < this.#freeHint) this.#freeHint = cluster
    return value
  }

  /** Adds `delta` to the refcount of `cluster`; a result below zero is corruption. */
  async add(cluster: number, delta: number): Promise<number> {
    const value = (await this.get(cluster)) + delta
    if (value < 0) throw new ImageError('CORRUPT', `${this.storage.name}: refcount of cluster ${cluster} (${hex(cluster * this.layout.clusterSize)}) would drop below zero`, { offset: cluster * this.layout.clusterSize })
    await this.set(cluster, value)
    return value
  }

  /**
   * Finds `count` contiguous free clusters from the hint (nothing is marked yet). The hint moves
   * to the first cluster the scan saw with refcount 0, so used clusters are not scanned again.
   */
  async #findFree(count: number): Promise<number> {
    const perBlock = this.entriesPerBlock
    let start = this.#freeHint
    let cluster = start
    let firstFree: number | undefined
    while (cluster - start < count) {
      if (cluster >= this.#endCluster) break // everything past the end is free
      const tableIndex = Math.floor(cluster / perBlock)
      const offset = this.#blockOffset(tableIndex)
      const blockEnd = (tableIndex + 1) * perBlock
      if (offset === 0) {
        // No block: the whole range reads as refcount 0, except clusters reserved right now.
        firstFree ??= cluster
        while (cluster < blockEnd && cluster - start < count) {
          if (this.#reserved.has(cluster)) start = cluster + 1
          cluster++
        }
        continue
      }
      const block = await this.#loadBlock(offset)
      while (cluster < blockEnd && cluster - start < count && cluster < this.#endCluster) {
        if (getRefcountEntry(block.view, cluster % perBlock, this.layout.refcountOrder) !== 0) start = cluster + 1
        else {
          firstFree ??= cluster
          if (this.#reserved.has(cluster)) start = cluster + 1
        }
        cluster++
      }
    }
    this.#freeHint = firstFree ?? cluster
    return start
  }

  /** Allocates `count` contiguous clusters with refcount 1; returns the first one's offset. */
  async allocate(count: number): Promise<number> {
    this.storage.debugEvent?.('cluster_alloc')
    const start = await this.#findFree(count)
    for (let i = 0; i < count; i++) this.#reserved.add(start + i)
    // The run counts as used from now on, so refcount blocks created below go past it.
    this.#endCluster = Math.max(this.#endCluster, start + count)
    try {
      for (let i = 0; i < count; i++) await this.set(start + i, 1)
    } finally {
      for (let i = 0; i < count; i++) this.#reserved.delete(start + i)
    }
    // QEMU's free_cluster_index: the next search starts past this run, even when free
    // clusters were skipped before it (only a free moves it back: update_refcount).
    this.#freeHint = start + count
    this.#endCluster = Math.max(this.#endCluster, start + count)
    return start * this.layout.clusterSize
  }

  /**
   * Allocates up to `count` clusters exactly at `hostOffset`: as many as are free there, maybe
   * none (QEMU's qcow2_alloc_clusters_at, which leaves free_cluster_index alone). Returns how many.
   */
  async allocateAt(hostOffset: number, count: number): Promise<number> {
    const first = hostOffset / this.layout.clusterSize
    let free = 0
    while (free < count && !this.#reserved.has(first + free) && (first + free >= this.#endCluster || (await this.get(first + free)) === 0)) free++
    for (let i = 0; i < free; i++) this.#reserved.add(first + i)
    this.#endCluster = Math.max(this.#endCluster, first + free)
    try {
      for (let i = 0; i < free; i++) await this.set(first + i, 1)
    } finally {
      for (let i = 0; i < free; i++) this.#reserved.delete(first + i)
    }
    return free
  }

  /**
   * Byte-granular allocation for compressed clusters (QEMU's qcow2_alloc_bytes): streams are
   * packed one after another, spilling into the next cluster when it is free; each host cluster
   * touched gets one more reference per stream.
   */
  async allocateBytes(size: number): Promise<number> {
    this.storage.debugEvent?.('cluster_alloc_bytes')
    const cs = this.layout.clusterSize
    let offset = this.#freeByteOffset
    if (offset && (await this.get(Math.floor(offset / cs))) >= this.maxRefcount) offset = 0
    let free = offset ? cs - (offset % cs) : 0
    if (!offset || free < size) {
      const next = (await this.#findFree(1)) * cs
      if (!offset || Math.ceil(offset / cs) * cs !== next) offset = next
      free = cs
    }
    const first = Math.floor(offset / cs)
    const last = Math.floor((offset + size - 1) / cs)
    for (let c = first; c <= last; c++) this.#reserved.add(c)
    this.#endCluster = Math.max(this.#endCluster, last + 1)
    try {
      for (let c = first; c <= last; c++) await this.add(c, 1)
    } finally {
      for (let c = first; c <= last; c++) this.#reserved.delete(c)
    }
    this.#freeByteOffset = (offset + size) % cs === 0 ? 0 : offset + size
    return offset
  }

  /** Creates the refcount block for table entry `tableIndex` and returns its offset. */
  async #createBlock(tableIndex: number): Promise<number> {
    if ((tableIndex + 1) * 8 > this.#reftable.length) {
      await this.#growReftable(tableIndex + 1)
      // Growing may have made this very block (it covers the new table's own clusters).
      const made = this.#blockOffset(tableIndex)
      if (made !== 0) return made
    }
    const perBlock = this.entriesPerBlock
    const cluster = await this.#findFree(1)
    this.#reserved.add(cluster)
    this.#endCluster = Math.max(this.#endCluster, cluster + 1)
    try {
      const bytes = new Uint8Array(this.layout.clusterSize)
      const offset = cluster * this.layout.clusterSize
      if (Math.floor(cluster / perBlock) === tableIndex) {
        // The block describes itself (spec: refcount blocks are refcounted like any cluster).
        setRefcountEntry(new DataView(bytes.buffer), cluster % perBlock, this.layout.refcountOrder, 1)
      } else {
        await this.set(cluster, 1)
      }
      this.cache.put(offset, bytes)
      this.#setReftableEntry(tableIndex, offset)
      this.metadataEpoch++
      this.#endCluster = Math.max(this.#endCluster, cluster + 1)
      return offset
    } finally {
      this.#reserved.delete(cluster)
    }
  }

  #setReftableEntry(tableIndex: number, offset: number): void {
    setU64(this.#reftableView, tableIndex * 8, offset)
    this.#reftableDirty = true
  }

  /**
   * Moves the refcount table to a bigger copy at the end of the image: new table and the new
   * blocks describing it are written and flushed, then the header is switched, then the old
   * table is freed (QEMU's order: a crash leaks, never corrupts).
   */
  async #growReftable(minEntries: number): Promise<void> {
    this.storage.debugEvent?.('reftable_grow')
    const cs = this.layout.clusterSize
    const perBlock = this.entriesPerBlock
    const oldEntries = this.#reftable.length / 8
    const entries = Math.max(minEntries, Math.ceil(oldEntries * 1.5))
    const tableClusters = Math.ceil((entries * 8) / cs)
    if (tableClusters * cs > 8 * 1024 * 1024) throw new ImageError('UNSUPPORTED', `${this.storage.name}: refcount table would exceed 8 MiB`)
    const start = this.#endCluster
    // Blocks for clusters [start, start + tableClusters + blocks) that have none yet, placed after the table.
    let blockCount = 0
    for (;;) {
      const end = start + tableClusters + blockCount
      let needed = 0
      for (let t = Math.floor(start / perBlock); t <= Math.floor((end - 1) / perBlock); t++) if (this.#blockOffset(t) === 0) needed++
      if (needed === blockCount) break
      blockCount = needed
    }
    const end = start + tableClusters + blockCount
    const table = new Uint8Array(tableClusters * cs)
    table.set(this.#reftable)
    const tableView = new DataView(table.buffer)
    const newBlocks = new Map<number, Uint8Array>()
    let nextBlock = start + tableClusters
    for (let t = Math.floor(start / perBlock); t <= Math.floor((end - 1) / perBlock); t++) {
      if (this.#blockOffset(t) !== 0) continue
      newBlocks.set(t, new Uint8Array(cs))
      setU64(tableView, t * 8, nextBlock * cs)
      nextBlock++
    }
    // Refcount 1 for every new cluster: in a new block, or in an existing one through the cache.
    for (let c = start; c < end; c++) {
      const t = Math.floor(c / perBlock)
      const fresh = newBlocks.get(t)
      if (fresh) setRefcountEntry(new DataView(fresh.buffer), c % perBlock, this.layout.refcountOrder, 1)
      else {
        const block = await this.#loadBlock(this.#blockOffset(t))
        setRefcountEntry(block.view, c % perBlock, this.layout.refcountOrder, 1)
        this.cache.markDirty(block)
      }
    }
    for (const [t, bytes] of newBlocks) {
      await this.storage.write(Number(tableView.getBigUint64(t * 8)), bytes)
    }
    await this.writeBlocks()
    await this.storage.write(start * cs, table)
    await this.storage.flush()
    const old = { offset: this.layout.reftableOffset, clusters: this.layout.reftableClusters }
    await this.host.switchReftable(start * cs, tableClusters)
    this.layout.reftableOffset = start * cs
    this.layout.reftableClusters = tableClusters
    this.metadataEpoch++
    this.#reftable = table
    this.#reftableView = tableView
    this.#reftableDirty = false
    this.#endCluster = Math.max(this.#endCluster, end)
    for (let i = 0; i < old.clusters; i++) this.#pendingFrees.push(old.offset / cs + i)
  }

  /** Queues a decrement of `clusters` clusters from `hostOffset`, applied by {@link applyFrees}. */
  free(hostOffset: number, clusters = 1): void {
    const first = Math.floor(hostOffset / this.layout.clusterSize)
    for (let i = 0; i < clusters; i++) {
      this.#pendingFrees.push(first + i)
      this.#pendingCounts.set(first + i, (this.#pendingCounts.get(first + i) ?? 0) + 1)
    }
  }

  /** Queued decrements per cluster, and how many queued frees {@link freesWouldRelease} has looked at. */
  #pendingCounts = new Map<number, number>()
  #pendingChecked = 0
  #pendingReleases = false

  /**
   * Whether applying the queued frees would bring some cluster to refcount 0 (so an allocation
   * made now could reuse it, as QEMU's would). Each queued free is looked at once.
   */
  async freesWouldRelease(): Promise<boolean> {
    while (!this.#pendingReleases && this.#pendingChecked < this.#pendingFrees.length) {
      const cluster = this.#pendingFrees[this.#pendingChecked++]!
      if ((await this.get(cluster)) <= this.#pendingCounts.get(cluster)!) this.#pendingReleases = true
    }
    return this.#pendingReleases
  }

  /** Applies queued frees: call only once nothing on disk references them any more. */
  async applyFrees(): Promise<number[]> {
    const frees = this.#pendingFrees
    this.#pendingFrees = []
    this.#pendingCounts.clear()
    this.#pendingChecked = 0
    this.#pendingReleases = false
    const freed: number[] = []
    for (const cluster of frees) if ((await this.add(cluster, -1)) === 0) freed.push(cluster)
    return freed
  }

  /** Writes dirty refcount blocks (not flushed). */
  async writeBlocks(): Promise<void> {
    for (const block of this.cache.dirtyTables()) {
      this.storage.debugEvent?.('refblock_update_part')
      await this.storage.write(block.hostOffset, block.bytes)
      this.cache.markClean(block)
    }
  }

  /** Writes the refcount table if entries changed (call after the blocks are durable). */
  async writeReftable(): Promise<void> {
    if (!this.#reftableDirty) return
    await this.storage.write(this.layout.reftableOffset, this.#reftable)
    this.#reftableDirty = false
  }
}
