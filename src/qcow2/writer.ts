// The QCOW2 write engine: allocating writes with copy-on-write, zero writes, discard, and the
// ordered flush (data → refcounts → L2 → L1/header, then deferred frees) that makes a crash at
// any point leave only leaks (qcow2.rst "Reference count"; QEMU's cache dependencies).
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import type { CachedTable } from './cache.js'
import { compressedClusters } from './compressed.js'
import { decodeL1Entry, encodeL1Entry, encodeL2Entry, type L2Entry } from './entries.js'
import { l1Index, l2Coverage, l2Index } from './geometry.js'
import { Mutex } from './lock.js'
import { loadL2, readL2Entry, type LookupContext } from './lookup.js'
import type { RefcountManager } from './refcount.js'

/** Reads current guest content (this image over its backing chain), for copy-on-write. */
export type GuestReader = (offset: number, length: number) => Promise<Uint8Array>

/** What the writer changes in the image besides tables. */
export interface WriterHost {
  /** Writes the L1 table size and offset (header bytes 36-47) durably. */
  switchL1(offset: number, entries: number): Promise<void>
  /** Called before the first change is written (lazy refcounts: set the dirty bit). */
  beforeFirstWrite(): Promise<void>
}

/** Options for zero writes, as qemu-io's write -z [-u]. */
export interface ZeroOptions {
  /** May deallocate clusters (BDRV_REQ_MAY_UNMAP). */
  unmap?: boolean
}

type Decoded = { entry: L2Entry; allocated: number; zero: number }

const ALL_SUBCLUSTERS = 0xffff_ffff

/** Direct table access for structural changes (see {@link Qcow2Writer.withTables}). */
export interface TableAccess {
  ctx: LookupContext
  storage: Storage
  refcounts: RefcountManager
  /** Host offset of the active L1 table. */
  l1Offset: number
  markL1Dirty(): void
  /** The ordered write-back (data, refcounts, L2, L1, frees). */
  flush(): Promise<void>
}

/** Writes to one QCOW2 layer. All metadata changes run under one mutex. */
export class Qcow2Writer {
  readonly mutex = new Mutex()
  readonly #ctx: LookupContext
  readonly #storage: Storage
  readonly #data: Storage
  readonly #refcounts: RefcountManager
  readonly #host: WriterHost
  readonly #version: number
  readonly #hasBacking: boolean
  readonly #rawDataFile: boolean
  #l1Dirty = false
  #dataDirty = false
  #started = false

  constructor(ctx: LookupContext, storage: Storage, data: Storage, refcounts: RefcountManager, host: WriterHost, options: { version: number; hasBacking: boolean; rawDataFile?: boolean }) {
    this.#ctx = ctx
    this.#storage = storage
    this.#data = data
    this.#refcounts = refcounts
    this.#host = host
    this.#version = options.version
    this.#hasBacking = options.hasBacking
    this.#rawDataFile = options.rawDataFile ?? false
  }

  get refcounts(): RefcountManager {
    return this.#refcounts
  }

  async #start(): Promise<void> {
    if (this.#started) return
    this.#started = true
    await this.#host.beforeFirstWrite()
  }

  #checkRange(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.#ctx.virtualSize) {
      throw new ImageError('OUT_OF_RANGE', `${this.#storage.name}: write of ${length} bytes at ${offset} is outside the image (${this.#ctx.virtualSize} bytes)`)
    }
  }

  /** Splits `[offset, offset+length)` at L2 table boundaries and runs `fn` per piece under the lock. */
  async #perTable(offset: number, length: number, fn: (start: number, end: number) => Promise<void>): Promise<void> {
    const coverage = l2Coverage(this.#ctx.geometry)
    let position = offset
    const end = offset + length
    while (position < end) {
      const pieceEnd = Math.min(end, (Math.floor(position / coverage) + 1) * coverage)
      const start = position
      await this.mutex.run(async () => {
        await this.#start()
        await fn(start, pieceEnd)
        await this.#maybeWriteBack()
      })
      position = pieceEnd
    }
  }

  /** Writes guest bytes. `readGuest` supplies old content for partial clusters. */
  async write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    this.#checkRange(offset, data.length)
    await this.#perTable(offset, data.length, (start, end) => this.#writeInTable(start, data.subarray(start - offset, end - offset), readGuest))
  }

  /** The L2 table mapping `guestOffset`, allocated (or copied if shared) for writing. */
  async #writableL2(guestOffset: number): Promise<CachedTable> {
    const ctx = this.#ctx
    const g = ctx.geometry
    const index = l1Index(g, guestOffset)
    const l1 = decodeL1Entry(ctx.l1.getUint32(index * 8), ctx.l1.getUint32(index * 8 + 4), g.clusterSize, () => `${this.#storage.name}: L1 entry ${index}`)
    if (l1.kind === 'table' && l1.copied) return loadL2(ctx, l1.hostOffset, `L1 entry ${index}`)
    const hostOffset = await this.#refcounts.allocate(1)
    let bytes: Uint8Array
    if (l1.kind === 'table') {
      // Shared with a snapshot: copy the table, drop one reference to the old one (COW).
      bytes = (await loadL2(ctx, l1.hostOffset, `L1 entry ${index}`)).bytes.slice()
      this.#refcounts.free(l1.hostOffset)
    } else {
      bytes = new Uint8Array(g.clusterSize)
    }
    const table = ctx.l2Cache.put(hostOffset, bytes)
    const [hi, lo] = encodeL1Entry({ kind: 'table', hostOffset, copied: true })
    ctx.l1.setUint32(index * 8, hi)
    ctx.l1.setUint32(index * 8 + 4, lo)
    this.#l1Dirty = true
    return table
  }

  #setEntry(table: CachedTable, index: number, entry: L2Entry, bitmap?: { allocated: number; zero: number }): void {
    const g = this.#ctx.geometry
    const at = index * g.l2EntrySize
    const [hi, lo] = encodeL2Entry(entry, g.clusterBits)
    table.view.setUint32(at, hi)
    table.view.setUint32(at + 4, lo)
    if (g.extendedL2) {
      const b = bitmap ?? { allocated: 0, zero: 0 }
      table.view.setUint32(at + 8, b.zero >>> 0)
      table.view.setUint32(at + 12, b.allocated >>> 0)
    }
    this.#ctx.l2Cache.markDirty(table)
  }

  /** Releases the host space an entry held (deferred until the new entry is durable). */
  #release(decoded: Decoded): void {
    const e = decoded.entry
    if (this.#ctx.hasDataFile) return // data file clusters are not refcounted
    if (e.kind === 'normal' || (e.kind === 'zero' && e.hostOffset !== undefined)) this.#refcounts.free(e.hostOffset!)
    else if (e.kind === 'compressed') {
      const { firstCluster, lastCluster } = compressedClusters(e, this.#ctx.geometry.clusterSize)
      this.#refcounts.free(firstCluster * this.#ctx.geometry.clusterSize, lastCluster - firstCluster + 1)
    }
  }

  /** True when writes to this cluster can go where it already is. */
  #inPlace(decoded: Decoded): boolean {
    return decoded.entry.kind === 'normal' && decoded.entry.copied
  }

  async #allocateData(guestCluster: number, count: number): Promise<number> {
    if (this.#ctx.hasDataFile) return guestCluster * this.#ctx.geometry.clusterSize // identity mapped
    return this.#refcounts.allocate(count)
  }

  async #writeInTable(start: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    const g = this.#ctx.geometry
    const cs = g.clusterSize
    const table = await this.#writableL2(start)
    const end = start + data.length
    let position = start
    while (position < end) {
      const cluster = Math.floor(position / cs)
      const decoded = readL2Entry(this.#ctx, table, l2Index(g, position))
      if (this.#inPlace(decoded)) {
        const e = decoded.entry as Extract<L2Entry, { kind: 'normal' }>
        const pieceEnd = Math.min(end, (cluster + 1) * cs)
        if (g.extendedL2) await this.#writeSubclusters(table, decoded, e.hostOffset, position, data.subarray(position - start, pieceEnd - start), readGuest)
        else await this.#data.write(e.hostOffset + (position % cs), data.subarray(position - start, pieceEnd - start))
        this.#dataDirty = true
        position = pieceEnd
        continue
      }
      // A run of clusters that all need new space: allocate them contiguously, write once.
      let runEnd = Math.min(end, (cluster + 1) * cs)
      const runDecoded: Decoded[] = [decoded]
      while (runEnd < end && !g.extendedL2) {
        const next = readL2Entry(this.#ctx, table, l2Index(g, runEnd))
        if (this.#inPlace(next)) break
        runDecoded.push(next)
        runEnd = Math.min(end, runEnd + cs)
      }
      const count = runDecoded.length
      const hostOffset = await this.#allocateData(cluster, count)
      if (g.extendedL2) {
        const fresh: Decoded = { entry: { kind: 'normal', hostOffset, copied: true }, allocated: 0, zero: 0 }
        // Untouched subclusters keep reading as before: zero bits stay, others read from backing.
        const keepZero = decoded.entry.kind === 'compressed' ? 0 : decoded.zero
        if (decoded.entry.kind === 'normal' || decoded.entry.kind === 'compressed') {
          // Old data must move: copy the whole cluster's current content into the new one.
          const old = await readGuest(cluster * cs, Math.min(cs, this.#ctx.virtualSize - cluster * cs))
          await this.#data.write(hostOffset, old)
          fresh.allocated = ALL_SUBCLUSTERS
        } else {
          fresh.zero = keepZero
        }
        await this.#writeSubclusters(table, fresh, hostOffset, position, data.subarray(position - start, runEnd - start), readGuest)
        this.#release(decoded)
      } else {
        const runStart = cluster * cs
        const headLength = position - runStart
        const lastClusterEnd = Math.min(runStart + count * cs, this.#ctx.virtualSize)
        const piece = data.subarray(position - start, runEnd - start)
        if (headLength === 0 && runEnd === lastClusterEnd) {
          // Whole clusters: the caller's bytes go straight to their new place.
          await this.#data.write(hostOffset, piece)
        } else {
          // Copy-on-write: the untouched head and tail come from the current content.
          const buffer = new Uint8Array(count * cs)
          if (headLength > 0) buffer.set(await readGuest(runStart, headLength), 0)
          if (runEnd < lastClusterEnd) buffer.set(await readGuest(runEnd, lastClusterEnd - runEnd), runEnd - runStart)
          buffer.set(piece, headLength)
          await this.#data.write(hostOffset, buffer)
        }
        for (let i = 0; i < count; i++) {
          this.#setEntry(table, l2Index(g, runStart + i * cs), { kind: 'normal', hostOffset: hostOffset + i * cs, copied: true })
          this.#release(runDecoded[i]!)
        }
      }
      this.#dataDirty = true
      position = runEnd
    }
  }

  /**
   * Extended L2: writes `data` at guest `position` into a cluster at `hostOffset`, filling the
   * rest of partially written subclusters from the current content, then marks the touched
   * subclusters allocated (and not zero).
   */
  async #writeSubclusters(table: CachedTable, decoded: Decoded, hostOffset: number, position: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    const g = this.#ctx.geometry
    const sc = g.subclusterSize
    const clusterStart = position - (position % g.clusterSize)
    const first = Math.floor((position - clusterStart) / sc)
    const last = Math.floor((position + data.length - 1 - clusterStart) / sc)
    let allocated = decoded.allocated
    let zero = decoded.zero
    const spanStart = clusterStart + first * sc
    const spanEnd = Math.min(clusterStart + (last + 1) * sc, this.#ctx.virtualSize)
    const needsFill = (index: number) => ((allocated >>> index) & 1) === 0
    if ((position > spanStart && needsFill(first)) || (position + data.length < spanEnd && needsFill(last))) {
      const buffer = await readGuest(spanStart, spanEnd - spanStart)
      buffer.set(data, position - spanStart)
      await this.#data.write(hostOffset + first * sc, buffer)
    } else {
      await this.#data.write(hostOffset + (position - clusterStart), data)
    }
    for (let i = first; i <= last; i++) {
      allocated = (allocated | (1 << i)) >>> 0
      zero = (zero & ~(1 << i)) >>> 0
    }
    this.#setEntry(table, l2Index(g, position), { kind: 'normal', hostOffset, copied: true }, { allocated, zero })
  }

  /**
   * Stores an already compressed cluster at `guestOffset` (cluster aligned). Like QEMU, only
   * into a cluster that holds nothing yet; the stream is packed after the previous one.
   */
  async writeCompressed(guestOffset: number, compressed: Uint8Array): Promise<void> {
    const g = this.#ctx.geometry
    if (guestOffset % g.clusterSize !== 0) throw new ImageError('INVALID_ARGUMENT', `compressed writes must be cluster aligned (offset ${guestOffset})`)
    if (this.#ctx.hasDataFile) throw new ImageError('UNSUPPORTED', `${this.#storage.name}: compressed writes are not possible with an external data file`)
    this.#checkRange(guestOffset, 1)
    await this.#perTable(guestOffset, 1, async () => {
      const table = await this.#writableL2(guestOffset)
      const index = l2Index(g, guestOffset)
      const decoded = readL2Entry(this.#ctx, table, index)
      const e = decoded.entry
      if (!(e.kind === 'unallocated' || (e.kind === 'zero' && e.hostOffset === undefined)) || decoded.allocated !== 0) {
        throw new ImageError('INVALID_ARGUMENT', `${this.#storage.name}: compression can't overwrite anything (cluster at ${guestOffset} is allocated)`)
      }
      const hostOffset = await this.#refcounts.allocateBytes(compressed.length)
      await this.#data.write(hostOffset, compressed)
      this.#dataDirty = true
      const sectorCount = Math.floor((hostOffset + compressed.length - 1) / 512) - Math.floor(hostOffset / 512) + 1
      this.#setEntry(table, index, { kind: 'compressed', hostOffset, sectorCount }, { allocated: 0, zero: 0 })
    })
  }

  /** Zero writes: whole clusters get the zero flag (or bitmap bits); partial ones real zeros. */
  async writeZeroes(offset: number, length: number, readGuest: GuestReader, options: ZeroOptions = {}): Promise<void> {
    this.#checkRange(offset, length)
    const g = this.#ctx.geometry
    const unit = g.subclusterSize
    const alignedStart = Math.ceil(offset / unit) * unit
    let alignedEnd = Math.floor((offset + length) / unit) * unit
    if (offset + length === this.#ctx.virtualSize) alignedEnd = offset + length // the tail at image end
    if (alignedEnd <= alignedStart) return this.write(offset, new Uint8Array(length), readGuest)
    if (alignedStart > offset) await this.write(offset, new Uint8Array(alignedStart - offset), readGuest)
    if (this.#version < 3) {
      // v2 has no zero flag: unallocated reads as zero only without a backing file.
      if (this.#hasBacking) await this.write(alignedStart, new Uint8Array(alignedEnd - alignedStart), readGuest)
      else await this.#perTable(alignedStart, alignedEnd - alignedStart, (s, e) => this.#discardInTable(s, e, true))
    } else {
      await this.#perTable(alignedStart, alignedEnd - alignedStart, (s, e) => this.#zeroInTable(s, e, options.unmap ?? false, readGuest))
    }
    if (alignedEnd < offset + length) await this.write(alignedEnd, new Uint8Array(offset + length - alignedEnd), readGuest)
  }

  async #zeroInTable(start: number, end: number, unmap: boolean, readGuest: GuestReader): Promise<void> {
    const g = this.#ctx.geometry
    const cs = g.clusterSize
    await this.#zeroRawDataFile(start, end)
    const table = await this.#writableL2(start)
    let position = start
    while (position < end) {
      const clusterStart = position - (position % cs)
      const pieceEnd = Math.min(end, clusterStart + cs)
      const decoded = readL2Entry(this.#ctx, table, l2Index(g, position))
      const e = decoded.entry
      if (g.extendedL2) {
        const wholeCluster = position === clusterStart && (pieceEnd === clusterStart + cs || pieceEnd === this.#ctx.virtualSize)
        if (wholeCluster && (unmap || e.kind === 'compressed' || e.kind === 'unallocated')) {
          this.#setEntry(table, l2Index(g, position), { kind: 'unallocated' }, { allocated: 0, zero: ALL_SUBCLUSTERS })
          this.#release(decoded)
        } else if (e.kind === 'compressed') {
          // Part of a compressed cluster: rewrite it as a normal cluster, then zero the part.
          await this.#writeInTable(position, new Uint8Array(pieceEnd - position), readGuest)
        } else {
          let { allocated, zero } = decoded
          const first = Math.floor((position - clusterStart) / g.subclusterSize)
          const last = Math.floor((pieceEnd - 1 - clusterStart) / g.subclusterSize)
          for (let i = first; i <= last; i++) {
            allocated = (allocated & ~(1 << i)) >>> 0
            zero = (zero | (1 << i)) >>> 0
          }
          this.#setEntry(table, l2Index(g, position), e, { allocated, zero })
        }
      } else {
        const release = e.kind === 'compressed' || (unmap && (e.kind === 'normal' || (e.kind === 'zero' && e.hostOffset !== undefined)))
        let next: L2Entry
        if (release) next = { kind: 'zero', hostOffset: undefined }
        else if (e.kind === 'normal') next = { kind: 'zero', hostOffset: e.hostOffset }
        else if (e.kind === 'zero') next = e
        else next = { kind: 'zero', hostOffset: undefined }
        // COPIED survives on a kept allocation: refcount 1 still holds (QEMU keeps the old bits).
        // A zero entry's decoded form has no COPIED flag, so an already zero-allocated one keeps its raw bit.
        const index = l2Index(g, position)
        const copied = !release && (e.kind === 'normal' ? e.copied : e.kind === 'zero' && this.#rawCopied(table, index))
        this.#setZeroEntry(table, index, next, copied)
        if (release) this.#release(decoded)
      }
      position = pieceEnd
    }
  }

  /** The COPIED bit of L2 entry `index` as stored. */
  #rawCopied(table: CachedTable, index: number): boolean {
    return (table.view.getUint32(index * this.#ctx.geometry.l2EntrySize) & 0x8000_0000) !== 0
  }

  #setZeroEntry(table: CachedTable, index: number, entry: L2Entry, copied: boolean): void {
    this.#setEntry(table, index, entry)
    if (copied) {
      const at = index * this.#ctx.geometry.l2EntrySize
      table.view.setUint32(at, (table.view.getUint32(at) | 0x8000_0000) >>> 0)
    }
  }

  /**
   * data_file_raw: the data file must stay a valid raw image of the disk, so ranges that become
   * zero or are discarded are zeroed in it first (as QEMU does).
   */
  async #zeroRawDataFile(start: number, end: number): Promise<void> {
    if (!this.#rawDataFile) return
    const zeros = new Uint8Array(Math.min(end - start, 1024 * 1024))
    for (let at = start; at < end; at += zeros.length) await this.#data.write(at, zeros.subarray(0, Math.min(zeros.length, end - at)))
    this.#dataDirty = true
  }

  /** Discard: whole clusters are deallocated (v3 keeps them reading as zeros, as QEMU does). */
  async discard(offset: number, length: number): Promise<void> {
    this.#checkRange(offset, length)
    const cs = this.#ctx.geometry.clusterSize
    const start = Math.ceil(offset / cs) * cs
    let end = Math.floor((offset + length) / cs) * cs
    if (offset + length === this.#ctx.virtualSize) end = offset + length
    if (end <= start) return
    await this.#perTable(start, end - start, (s, e) => this.#discardInTable(s, e, false))
  }

  async #discardInTable(start: number, end: number, toUnallocated: boolean): Promise<void> {
    const g = this.#ctx.geometry
    await this.#zeroRawDataFile(start, end)
    const index = l1Index(g, start)
    const l1 = decodeL1Entry(this.#ctx.l1.getUint32(index * 8), this.#ctx.l1.getUint32(index * 8 + 4), g.clusterSize, () => `${this.#storage.name}: L1 entry ${index}`)
    // Nothing allocated here and nothing shows through from below: already reads as zeros.
    if (l1.kind === 'unallocated' && (!this.#hasBacking || this.#version < 3)) return
    const table = await this.#writableL2(start)
    for (let position = start; position < end; position += g.clusterSize) {
      const decoded = readL2Entry(this.#ctx, table, l2Index(g, position))
      const allocated = decoded.entry.kind !== 'unallocated' && !(decoded.entry.kind === 'zero' && decoded.entry.hostOffset === undefined)
      const wantZero = !toUnallocated && this.#version >= 3 && (this.#hasBacking || allocated)
      if (g.extendedL2) {
        this.#setEntry(table, l2Index(g, position), { kind: 'unallocated' }, { allocated: 0, zero: wantZero ? ALL_SUBCLUSTERS : 0 })
      } else {
        this.#setEntry(table, l2Index(g, position), wantZero ? { kind: 'zero', hostOffset: undefined } : { kind: 'unallocated' })
      }
      this.#release(decoded)
    }
  }

  /**
   * Preallocation (qemu-img create/resize -o preallocation=metadata|falloc|full): L2 tables and
   * data clusters for every unallocated cluster of the range; `full` also writes zeros. The
   * file is extended over all allocated clusters so none lies past its end.
   */
  async preallocate(offset: number, length: number, mode: 'metadata' | 'falloc' | 'full'): Promise<void> {
    this.#checkRange(offset, length)
    const g = this.#ctx.geometry
    const cs = g.clusterSize
    const start = Math.floor(offset / cs) * cs
    const end = Math.min(Math.ceil((offset + length) / cs) * cs, Math.ceil(this.#ctx.virtualSize / cs) * cs)
    await this.#perTable(start, end - start, async (s, e) => {
      const table = await this.#writableL2(s)
      let position = s
      while (position < e) {
        // Runs of unallocated clusters become one contiguous allocation.
        let runEnd = position
        while (runEnd < e && readL2Entry(this.#ctx, table, l2Index(g, runEnd)).entry.kind === 'unallocated') runEnd += cs
        if (runEnd === position) {
          position += cs
          continue
        }
        const count = (runEnd - position) / cs
        const hostOffset = await this.#allocateData(position / cs, count)
        if (mode === 'full') {
          const zeros = new Uint8Array(Math.min(count * cs, 4 * 1024 * 1024))
          for (let at = 0; at < count * cs; at += zeros.length) await this.#data.write(hostOffset + at, zeros.subarray(0, Math.min(zeros.length, count * cs - at)))
          this.#dataDirty = true
        }
        // Extended L2: the subclusters stay unallocated (QEMU leaves the bitmap alone for
        // preallocation), so a backing file still shows through.
        for (let i = 0; i < count; i++) {
          this.#setEntry(table, l2Index(g, position + i * cs), { kind: 'normal', hostOffset: hostOffset + i * cs, copied: true })
        }
        position = runEnd
      }
    })
    await this.mutex.run(async () => {
      const dataEnd = this.#ctx.hasDataFile ? end : this.#refcounts.endCluster * cs
      if ((await this.#data.size()) < dataEnd) await this.#data.truncate(dataEnd)
      await this.#flushLocked()
    })
  }

  /**
   * Shrink support: every cluster of the range becomes unallocated and its space is freed;
   * L2 tables wholly inside the range are freed and their L1 entries cleared.
   */
  async deallocate(offset: number, length: number): Promise<void> {
    this.#checkRange(offset, length)
    const g = this.#ctx.geometry
    const coverage = l2Coverage(g)
    await this.#perTable(offset, length, async (start, end) => {
      const index = l1Index(g, start)
      const l1 = decodeL1Entry(this.#ctx.l1.getUint32(index * 8), this.#ctx.l1.getUint32(index * 8 + 4), g.clusterSize, () => `${this.#storage.name}: L1 entry ${index}`)
      if (l1.kind === 'unallocated') return
      const whole = start === index * coverage && (end === (index + 1) * coverage || end >= this.#ctx.virtualSize)
      if (whole && l1.copied) {
        const table = await loadL2(this.#ctx, l1.hostOffset, `L1 entry ${index}`)
        for (let i = 0; i < g.l2Entries; i++) this.#release(readL2Entry(this.#ctx, table, i))
        this.#ctx.l1.setUint32(index * 8, 0)
        this.#ctx.l1.setUint32(index * 8 + 4, 0)
        this.#l1Dirty = true
        this.#ctx.l2Cache.forget(l1.hostOffset)
        this.#refcounts.free(l1.hostOffset)
        return
      }
      await this.#discardInTable(start, end, true)
    })
  }

  /** Cuts the file after the last cluster in use (after a shrink), as QEMU does. */
  async truncateUnused(): Promise<void> {
    await this.mutex.run(async () => {
      await this.#flushLocked()
      const cs = this.#ctx.geometry.clusterSize
      let last = this.#refcounts.endCluster - 1
      while (last > 0 && (await this.#refcounts.get(last)) === 0) last--
      const end = (last + 1) * cs
      if ((await this.#storage.size()) > end) await this.#storage.truncate(end)
      this.#refcounts.setEndCluster(last + 1)
    })
  }

  /** Writes dirty metadata back when the caches hold too much of it. */
  async #maybeWriteBack(): Promise<void> {
    const l2 = this.#ctx.l2Cache
    if (l2.dirtyCount > l2.capacity / 2 || this.#refcounts.cache.dirtyCount > this.#refcounts.cache.capacity / 2) await this.#flushLocked()
  }

  /**
   * Runs a structural change (snapshots) under the metadata lock with direct access to the
   * tables; caches are written back before and after.
   */
  withTables<T>(fn: (access: TableAccess) => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      await this.#start()
      await this.#flushLocked()
      const result = await fn({
        ctx: this.#ctx,
        storage: this.#storage,
        refcounts: this.#refcounts,
        l1Offset: this.#l1Offset,
        markL1Dirty: () => { this.#l1Dirty = true },
        flush: () => this.#flushLocked(),
      })
      await this.#flushLocked()
      return result
    })
  }

  /** Makes every completed write durable, in dependency order. */
  flush(): Promise<void> {
    return this.mutex.run(() => this.#flushLocked())
  }

  async #flushLocked(): Promise<void> {
    const l2 = this.#ctx.l2Cache
    const refs = this.#refcounts
    // 1. Guest data before anything points to it.
    if (this.#dataDirty && this.#data !== this.#storage) await this.#data.flush()
    // 2. Refcount increments before the tables that use the clusters.
    const refsDirty = refs.cache.dirtyCount > 0 || refs.reftableDirty
    if (refsDirty) {
      await refs.writeBlocks()
      await this.#storage.flush()
      if (refs.reftableDirty) {
        await refs.writeReftable()
        await this.#storage.flush()
      }
    } else if (this.#dataDirty) {
      await this.#storage.flush()
    }
    this.#dataDirty = false
    // 3. L2 tables, then the L1 entries that point to new ones.
    const dirtyL2 = l2.dirtyTables()
    for (const table of dirtyL2) {
      await this.#storage.write(table.hostOffset, table.bytes)
      // The file grew: an evicted table past the size seen at open must load again.
      this.#ctx.fileSize = Math.max(this.#ctx.fileSize, table.hostOffset + table.bytes.length)
      l2.markClean(table)
    }
    if (dirtyL2.length > 0) await this.#storage.flush()
    if (this.#l1Dirty) {
      const l1 = this.#ctx.l1
      await this.#storage.write(this.#l1Offset, new Uint8Array(l1.buffer, l1.byteOffset, l1.byteLength))
      await this.#storage.flush()
      this.#l1Dirty = false
    }
    // 4. Only now may clusters that lost their last reference be reused.
    if (refs.hasPendingFrees) {
      const freed = await refs.applyFrees()
      for (const cluster of freed) l2.forget(cluster * this.#ctx.geometry.clusterSize)
      await refs.writeBlocks()
      await this.#storage.flush()
    }
  }

  #l1Offset = 0
  /** Where the active L1 table lives (set by the image). */
  setL1Offset(offset: number): void {
    this.#l1Offset = offset
  }

  /**
   * Grows the active L1 table to at least `entries`: a new copy is written elsewhere and
   * flushed, the header switched, then the old table freed.
   */
  async growL1(entries: number): Promise<DataView> {
    return this.mutex.run(async () => {
      await this.#start()
      await this.#flushLocked()
      const cs = this.#ctx.geometry.clusterSize
      const old = this.#ctx.l1
      if (entries * 8 <= old.byteLength) return old
      const clusters = Math.ceil((entries * 8) / cs)
      const hostOffset = await this.#refcounts.allocate(clusters)
      const bytes = new Uint8Array(entries * 8)
      bytes.set(new Uint8Array(old.buffer, old.byteOffset, old.byteLength))
      await this.#refcounts.writeBlocks()
      await this.#storage.flush()
      await this.#storage.write(hostOffset, bytes)
      await this.#storage.flush()
      const oldOffset = this.#l1Offset
      const oldClusters = Math.ceil(old.byteLength / cs)
      await this.#host.switchL1(hostOffset, entries)
      this.#l1Offset = hostOffset
      const view = new DataView(bytes.buffer)
      this.#ctx.l1 = view
      if (oldClusters > 0 && oldOffset !== 0) this.#refcounts.free(oldOffset, oldClusters)
      await this.#flushLocked()
      return view
    })
  }
}

