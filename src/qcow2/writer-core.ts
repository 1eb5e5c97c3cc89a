// The core of the QCOW2 write engine: state shared by the data and zero paths, L2 tables made
// writable (allocated or copied when shared), entry updates, deferred frees, and the ordered
// flush (data → refcounts → L2 → L1/header, then frees) that makes a crash at any point leave
// only leaks (qcow2.rst "Reference count"; QEMU's cache dependencies).
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import type { CachedTable } from './cache.js'
import { compressedClusters } from './compressed.js'
import { decodeL1Entry, encodeL1Entry, encodeL2Entry, type L2Entry } from './entries.js'
import { l1Index, l2Coverage } from './geometry.js'
import { Mutex } from './lock.js'
import { loadL2, type LookupContext } from './lookup.js'
import type { RefcountManager } from './refcount.js'
import type { EncryptedStorage } from '../crypto/encrypted-storage.js'
import type { DataTarget } from './crypto/encryption.js'

import { ALL_SUBCLUSTERS, type GuestReader, type WriterHost, type Contiguity, type ZeroOptions, type Decoded, type TableAccess } from './writer-types.js'
import { InFlight, OverlapMap } from './writer-support.js'

export { ALL_SUBCLUSTERS, InFlight, OverlapMap }
export type { GuestReader, WriterHost, Contiguity, ZeroOptions, Decoded, TableAccess }

/** State and shared steps of a QCOW2 writer; the data and zero paths extend it. */
export class WriterCore {
  readonly mutex = new Mutex()

  protected readonly ctx: LookupContext

  protected readonly storage: Storage

  protected readonly data: Storage
  /** Legacy AES: guest data goes here instead, its sectors numbered by guest offset. */
  protected readonly guestNumbered: EncryptedStorage | undefined

  readonly refcounts: RefcountManager

  protected readonly host: WriterHost

  protected readonly version: number

  protected readonly hasBacking: boolean

  protected readonly rawDataFile: boolean

  protected l1Dirty = false

  protected dataDirty = false

  protected started = false
  /** Requests since the last flush reached the disk (QEMU's write_gen / flushed_gen). */
  protected writesSinceFlush = false
  /** Host cluster → metadata structure, for the overlap check; rebuilt after metadata moves. */
  protected overlaps: OverlapMap | undefined
  protected overlapsEpoch = 0
  protected corrupt = false
  /** Lock-free in-place writes in progress; frees and flushes wait for them. */
  protected readonly inFlight = new InFlight()

  protected l1Offset = 0

  constructor(ctx: LookupContext, storage: Storage, target: DataTarget, refcounts: RefcountManager, host: WriterHost, options: { version: number; hasBacking: boolean; rawDataFile?: boolean }) {
    this.ctx = ctx
    this.storage = storage
    this.data = target.data
    this.guestNumbered = target.guestNumbered
    this.refcounts = refcounts
    this.host = host
    this.version = options.version
    this.hasBacking = options.hasBacking
    this.rawDataFile = options.rawDataFile ?? false
  }


  protected async start(): Promise<void> {
    if (this.started) return
    this.started = true
    await this.host.beforeFirstWrite()
  }

  protected checkRange(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.ctx.virtualSize) {
      throw new ImageError('OUT_OF_RANGE', `${this.storage.name}: write of ${length} bytes at ${offset} is outside the image (${this.ctx.virtualSize} bytes)`)
    }
  }

  /** Splits `[offset, offset+length)` at L2 table boundaries and runs `fn` per piece under the lock. */
  protected async perTable(offset: number, length: number, fn: (start: number, end: number) => Promise<void>): Promise<void> {
    const coverage = l2Coverage(this.ctx.geometry)
    let position = offset
    const end = offset + length
    while (position < end) {
      const pieceEnd = Math.min(end, (Math.floor(position / coverage) + 1) * coverage)
      const start = position
      await this.mutex.run(async () => {
        await this.start()
        this.writesSinceFlush = true
        await fn(start, pieceEnd)
        await this.maybeWriteBack()
      })
      position = pieceEnd
    }
  }

  /** The L2 table mapping `guestOffset`, allocated (or copied if shared) for writing. */
  protected async writableL2(guestOffset: number): Promise<CachedTable> {
    const ctx = this.ctx
    const g = ctx.geometry
    const index = l1Index(g, guestOffset)
    const l1 = decodeL1Entry(ctx.l1.getUint32(index * 8), ctx.l1.getUint32(index * 8 + 4), g.clusterSize, () => `${this.storage.name}: L1 entry ${index}`)
    if (l1.kind === 'table' && l1.copied) return loadL2(ctx, l1.hostOffset, `L1 entry ${index}`)
    const hostOffset = await this.allocateClusters(1)
    let bytes: Uint8Array
    if (l1.kind === 'table') {
      // Shared with a snapshot: copy the table, drop one reference to the old one (COW).
      this.storage.debugEvent?.('l2_alloc_cow_read')
      bytes = (await loadL2(ctx, l1.hostOffset, `L1 entry ${index}`)).bytes.slice()
      this.refcounts.free(l1.hostOffset)
    } else {
      bytes = new Uint8Array(g.clusterSize)
    }
    // l2_allocate flushes the refcount cache even with lazy refcounts: the new table's count
    // (and every count changed before it) reaches the disk, later data clusters' do not.
    if (this.host.refcountsMayLag()) await this.writeRefcounts()
    this.storage.debugEvent?.('l2_alloc_write')
    const table = ctx.l2Cache.put(hostOffset, bytes)
    this.invalidateOverlaps()
    const [hi, lo] = encodeL1Entry({ kind: 'table', hostOffset, copied: true })
    ctx.l1.setUint32(index * 8, hi)
    ctx.l1.setUint32(index * 8 + 4, lo)
    this.l1Dirty = true
    return table
  }

  protected setEntry(table: CachedTable, index: number, entry: L2Entry, bitmap?: { allocated: number; zero: number }): void {
    const g = this.ctx.geometry
    const at = index * g.l2EntrySize
    const [hi, lo] = encodeL2Entry(entry, g.clusterBits)
    table.view.setUint32(at, hi)
    table.view.setUint32(at + 4, lo)
    if (g.extendedL2) {
      const b = bitmap ?? { allocated: 0, zero: 0 }
      table.view.setUint32(at + 8, b.zero >>> 0)
      table.view.setUint32(at + 12, b.allocated >>> 0)
    }
    this.ctx.l2Cache.markDirty(table)
  }

  /** Releases the host space an entry held (deferred until the new entry is durable). */
  protected release(decoded: Decoded): void {
    const e = decoded.entry
    if (this.ctx.hasDataFile) return // data file clusters are not refcounted
    if (e.kind === 'normal' || (e.kind === 'zero' && e.hostOffset !== undefined)) this.refcounts.free(e.hostOffset!)
    else if (e.kind === 'compressed') {
      const { firstCluster, lastCluster } = compressedClusters(e, this.ctx.geometry.clusterSize)
      this.refcounts.free(firstCluster * this.ctx.geometry.clusterSize, lastCluster - firstCluster + 1)
    }
  }

  /** The COPIED bit of L2 entry `index` as stored (a zero entry's decoded form has none). */
  protected rawCopied(table: CachedTable, index: number): boolean {
    return (table.view.getUint32(index * this.ctx.geometry.l2EntrySize) & 0x8000_0000) !== 0
  }

  /** True when writes to this cluster can go where it already is. */
  protected inPlace(decoded: Decoded): boolean {
    return decoded.entry.kind === 'normal' && decoded.entry.copied
  }

  /**
   * Host space for `count` guest clusters from `guestCluster`; maybe fewer (the count is
   * returned). Like QEMU's qcow2_alloc_host_offset, a write keeps its host space contiguous:
   * after a piece that ended at `contiguity.nextHost`, clusters free right there are taken
   * first (qcow2_alloc_clusters_at); where none or too few are, the rest is allocated anew.
   */
  protected async allocateData(guestCluster: number, count: number, contiguity: Contiguity = {}): Promise<{ hostOffset: number; count: number }> {
    const cs = this.ctx.geometry.clusterSize
    if (this.ctx.hasDataFile) return { hostOffset: guestCluster * cs, count } // identity mapped
    await this.beforeAllocation()
    const at = contiguity.nextHost
    const taken = at === undefined ? 0 : await this.refcounts.allocateAt(at, count)
    if (taken > 0) {
      // Fewer than asked: the rest starts a new allocation (QEMU's next request iteration).
      contiguity.nextHost = taken < count ? undefined : at! + taken * cs
      return { hostOffset: at!, count: taken }
    }
    const hostOffset = await this.refcounts.allocate(count)
    contiguity.nextHost = hostOffset + count * cs
    return { hostOffset, count }
  }

  /**
   * QEMU frees clusters at once and its allocator reuses them (free_cluster_index moves back on
   * a free). Here frees wait until the tables that dropped the references are durable, so before
   * an allocation that could reuse a cluster, that write-back runs now: the image allocates (and
   * grows) as QEMU's does, and a crash still leaves only leaks.
   */
  protected async beforeAllocation(): Promise<void> {
    if (this.refcounts.hasPendingFrees && (await this.refcounts.freesWouldRelease())) await this.flushLocked({ lazy: true })
  }

  protected async allocateClusters(count: number): Promise<number> {
    await this.beforeAllocation()
    return this.refcounts.allocate(count)
  }

  /** Writes dirty metadata back when the caches hold too much of it. */
  protected async maybeWriteBack(): Promise<void> {
    const l2 = this.ctx.l2Cache
    const refcountsFull = this.refcounts.cache.dirtyCount > this.refcounts.cache.capacity / 2
    // A full refcount cache is written even with lazy refcounts (QEMU evicts dirty blocks).
    if (l2.dirtyCount > l2.capacity / 2 || refcountsFull) await this.flushLocked({ lazy: !refcountsFull })
  }

  /**
   * Runs a structural change (snapshots) under the metadata lock with direct access to the
   * tables; caches are written back before and after.
   */
  withTables<T>(fn: (access: TableAccess) => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      await this.start()
      await this.flushLocked()
      this.invalidateOverlaps()
      const result = await fn({
        ctx: this.ctx,
        storage: this.storage,
        refcounts: this.refcounts,
        l1Offset: this.l1Offset,
        markL1Dirty: () => { this.l1Dirty = true },
        writeData: async (hostOffset, bytes, guestOffset) => {
          await this.writeData(hostOffset, bytes, guestOffset)
          this.dataDirty = true
        },
        flush: () => this.flushLocked(),
        writeBackIfFull: () => this.maybeWriteBack(),
      })
      await this.flushLocked()
      this.invalidateOverlaps()
      return result
    })
  }

  /** Makes every completed write durable, in dependency order. */
  flush(): Promise<void> {
    return this.mutex.run(async () => {
      // bdrv_co_flush: flush_to_os, the caches written, flush_to_disk, then the file's own flush.
      // Only a storage listening for events (blkdebug) gets that last flush: it tests its failure.
      const events = this.storage.debugEvent !== undefined
      if (events) this.storage.debugEvent!('flush_to_os')
      await this.flushLocked({ lazy: true })
      if (events && this.writesSinceFlush) {
        this.storage.debugEvent!('flush_to_disk')
        await this.storage.flush()
      }
      this.writesSinceFlush = false
    })
  }

  /** Forgets the overlap map (metadata was allocated, moved or freed). */
  protected invalidateOverlaps(): void {
    this.overlaps = undefined
  }

  /** Which clusters hold metadata ("cached" overlap template of QEMU, plus snapshot L1s). */
  protected async buildOverlaps(): Promise<OverlapMap> {
    const cs = this.ctx.geometry.clusterSize
    const map = new OverlapMap()
    map.addRange(0, cs, 'qcow2_header')
    map.addRange(this.l1Offset, Math.max(8, this.ctx.l1.byteLength), 'active L1 table')
    for (let i = 0; i < this.ctx.l1.byteLength / 8; i++) {
      const offset = (this.ctx.l1.getUint32(i * 8) & 0x00ff_ffff) * 2 ** 32 + ((this.ctx.l1.getUint32(i * 8 + 4) & 0xffff_fe00) >>> 0)
      if (offset) map.addCluster(Math.floor(offset / cs), 'active L2 table')
    }
    map.addRange(this.refcounts.layout.reftableOffset, this.refcounts.layout.reftableClusters * cs, 'refcount table')
    for (const offset of this.refcounts.blockOffsets()) map.addCluster(Math.floor(offset / cs), 'refcount block')
    for (const r of this.host.metadataRanges()) map.addRange(r.offset, r.length, r.what)
    return map
  }

  /**
   * Guest data goes to the host through here: a write onto metadata marks the image corrupt
   * and stops, as QEMU's overlap check does. `guestOffset` is where the bytes lie in the guest
   * (legacy AES numbers its sectors by it; congruent to `hostOffset` modulo the cluster size).
   */
  protected async writeData(hostOffset: number, bytes: Uint8Array, guestOffset: number): Promise<void> {
    if (this.corrupt) throw new ImageError('CORRUPT', `${this.storage.name}: image is marked corrupt; no more writes`, { file: this.storage.name })
    // Data in the image file itself (`data` may be an encrypting view of it: compare by data file).
    if (!this.ctx.hasDataFile && bytes.length > 0) {
      const cs = this.ctx.geometry.clusterSize
      if (this.overlapsEpoch !== this.refcounts.metadataEpoch) this.overlaps = undefined
      this.overlapsEpoch = this.refcounts.metadataEpoch
      this.overlaps ??= await this.buildOverlaps()
      const hit = this.overlaps.find(hostOffset, bytes.length, cs)
      if (hit) {
        const at = hit.cluster * cs
        this.corrupt = true
        await this.host.markCorrupt()
        throw new ImageError('CORRUPT', `${this.storage.name}: Marking image as corrupt: Preventing invalid write on metadata (overlaps with ${hit.what}) at 0x${at.toString(16)}`, { offset: at, file: this.storage.name })
      }
    }
    await this.storage.debugEvent?.('write_aio')
    if (this.guestNumbered) await this.guestNumbered.writeNumbered(hostOffset, bytes, guestOffset)
    else await this.data.write(hostOffset, bytes)
  }

  /** Dirty refcount blocks, then a changed refcount table, each durable (the flush's step 2). */
  protected async writeRefcounts(): Promise<boolean> {
    const refs = this.refcounts
    if (refs.cache.dirtyCount === 0 && !refs.reftableDirty) return false
    await refs.writeBlocks()
    await this.storage.flush()
    if (refs.reftableDirty) {
      await refs.writeReftable()
      await this.storage.flush()
    }
    return true
  }

  /**
   * The ordered write-back. With `lazy` (routine flushes) and lazy refcounts in force, refcount
   * blocks stay in memory as in QEMU's qcow2_write_caches: a killed process leaves the counts
   * stale and the dirty bit set. A new refcount block is still written with the table entry
   * that points to it (alloc_refcount_block flushes both).
   */
  protected async flushLocked(options: { lazy?: boolean } = {}): Promise<void> {
    const l2 = this.ctx.l2Cache
    const refs = this.refcounts
    const lazy = options.lazy === true && this.host.refcountsMayLag() && !refs.reftableDirty
    await this.inFlight.drained()
    // 1. Guest data before anything points to it.
    if (this.dataDirty && this.ctx.hasDataFile) await this.data.flush()
    // 2. Refcount increments before the tables that use the clusters.
    if ((lazy || !(await this.writeRefcounts())) && this.dataDirty) await this.storage.flush()
    this.dataDirty = false
    // 3. L2 tables, then the L1 entries that point to new ones.
    const dirtyL2 = l2.dirtyTables()
    for (const table of dirtyL2) {
      this.storage.debugEvent?.('l2_update')
      await this.storage.write(table.hostOffset, table.bytes)
      // The file grew: an evicted table past the size seen at open must load again.
      this.ctx.fileSize = Math.max(this.ctx.fileSize, table.hostOffset + table.bytes.length)
      l2.markClean(table)
    }
    if (dirtyL2.length > 0) await this.storage.flush()
    if (this.l1Dirty) {
      const l1 = this.ctx.l1
      this.storage.debugEvent?.('l1_update')
      await this.storage.write(this.l1Offset, new Uint8Array(l1.buffer, l1.byteOffset, l1.byteLength))
      await this.storage.flush()
      this.l1Dirty = false
    }
    // 4. Only now may clusters that lost their last reference be reused.
    if (refs.hasPendingFrees) {
      const freed = await refs.applyFrees()
      this.invalidateOverlaps()
      for (const cluster of freed) l2.forget(cluster * this.ctx.geometry.clusterSize)
      if (!lazy) {
        await refs.writeBlocks()
        await this.storage.flush()
      }
    }
  }

  /** Where the active L1 table lives (set by the image). */
  setL1Offset(offset: number): void {
    this.l1Offset = offset
  }

  /**
   * Grows the active L1 table to at least `entries`: a new copy is written elsewhere and
   * flushed, the header switched, then the old table freed.
   */
  async growL1(entries: number): Promise<DataView> {
    return this.mutex.run(async () => {
      await this.start()
      await this.flushLocked()
      const cs = this.ctx.geometry.clusterSize
      const old = this.ctx.l1
      if (entries * 8 <= old.byteLength) return old
      const clusters = Math.ceil((entries * 8) / cs)
      const hostOffset = await this.refcounts.allocate(clusters)
      const bytes = new Uint8Array(entries * 8)
      bytes.set(new Uint8Array(old.buffer, old.byteOffset, old.byteLength))
      await this.refcounts.writeBlocks()
      await this.storage.flush()
      await this.storage.write(hostOffset, bytes)
      await this.storage.flush()
      const oldOffset = this.l1Offset
      const oldClusters = Math.ceil(old.byteLength / cs)
      await this.host.switchL1(hostOffset, entries)
      this.l1Offset = hostOffset
      this.invalidateOverlaps()
      const view = new DataView(bytes.buffer)
      this.ctx.l1 = view
      if (oldClusters > 0 && oldOffset !== 0) this.refcounts.free(oldOffset, oldClusters)
      await this.flushLocked()
      return view
    })
  }

  /** Cuts the file after the last cluster in use (after a shrink), as QEMU does. */
  async truncateUnused(): Promise<void> {
    await this.mutex.run(async () => {
      await this.flushLocked()
      const cs = this.ctx.geometry.clusterSize
      let last = this.refcounts.endCluster - 1
      while (last > 0 && (await this.refcounts.get(last)) === 0) last--
      const end = (last + 1) * cs
      if ((await this.storage.size()) > end) await this.storage.truncate(end)
      this.refcounts.setEndCluster(last + 1)
    })
  }
}
