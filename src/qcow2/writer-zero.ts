// Zero writes, discard, deallocation and preallocation: the zero flag (or subcluster zero bits)
// where whole clusters are covered, real zeros elsewhere; space given back only through the
// deferred frees of the core.
import type { L2Entry } from './entries.js'
import { decodeL1Entry } from './entries.js'
import { l1Index, l2Coverage, l2Index } from './geometry.js'
import { loadL2, readL2Entry } from './lookup.js'
import type { CachedTable } from './cache.js'
import { DataWriter } from './writer-data.js'
import { ALL_SUBCLUSTERS, type Decoded, type GuestReader, type ZeroOptions } from './writer-core.js'
import { writeZeroes } from '../io/storage.js'

/** The zero, discard and preallocation paths of the writer. */
export class ZeroingWriter extends DataWriter {
  /**
   * Zero writes, split as QEMU's block layer splits them (bdrv_co_do_pwrite_zeroes): an unaligned
   * head up to the next subcluster boundary, the aligned bulk, an unaligned tail. Each piece
   * becomes zero flags (or bitmap bits) where qcow2_co_pwrite_zeroes can, real zeros elsewhere.
   */
  async writeZeroes(offset: number, length: number, readGuest: GuestReader, options: ZeroOptions = {}): Promise<void> {
    this.checkRange(offset, length)
    const unit = this.ctx.geometry.subclusterSize
    const end = offset + length
    for (let position = offset; position < end;) {
      let pieceEnd = end
      if (position % unit !== 0) pieceEnd = Math.min(end, position - (position % unit) + unit)
      else if (end % unit !== 0 && end - position > unit) pieceEnd = end - (end % unit)
      await this.zeroPiece(position, pieceEnd, readGuest, options)
      position = pieceEnd
    }
  }

  /**
   * One piece of a zero write (QEMU's qcow2_co_pwrite_zeroes). A piece that covers part of a
   * subcluster zeroes the whole subcluster when the rest of it already reads as zeros and it
   * holds no data; otherwise, and where the format cannot (v2 over a backing file), the piece
   * is written as real zeros (the block layer's -ENOTSUP fallback).
   */
  protected async zeroPiece(start: number, end: number, readGuest: GuestReader, options: ZeroOptions): Promise<void> {
    const unit = this.ctx.geometry.subclusterSize
    const size = this.ctx.virtualSize
    const head = start % unit
    const tail = end === size ? 0 : (unit - (end % unit)) % unit
    let done: boolean
    if (head || tail) {
      const readsAsZero = options.readsAsZero
      const restIsZero = readsAsZero !== undefined && (await readsAsZero(start - head, head)) && (await readsAsZero(end, Math.min(tail, size - end)))
      done = restIsZero && (await this.zeroize(start - head, Math.min(start - head + unit, size), options.unmap ?? false, true, readGuest))
    } else {
      done = await this.zeroize(start, end, options.unmap ?? false, false, readGuest)
    }
    if (done) return
    // Real zeros, in pieces of at most 16 MiB (QEMU's MAX_BOUNCE_BUFFER).
    const chunk = Math.min(end - start, 16 * 1024 * 1024)
    const zeros = new Uint8Array(chunk)
    for (let at = start; at < end; at += chunk) await this.write(at, zeros.subarray(0, Math.min(chunk, end - at)), readGuest)
  }

  /**
   * QEMU's qcow2_subcluster_zeroize on `[start, end)` (subcluster aligned but at the image end):
   * false where it returns -ENOTSUP (v2 over a backing file; with `onlyIfEmpty`, a subcluster
   * that holds data or is compressed).
   */
  protected async zeroize(start: number, end: number, unmap: boolean, onlyIfEmpty: boolean, readGuest: GuestReader): Promise<boolean> {
    // v2 has no zero flag: unallocated reads as zero only without a backing file.
    if (this.version < 3 && this.hasBacking) return false
    let refused = false
    await this.perTable(start, end - start, async (s, e) => {
      if (onlyIfEmpty && (await this.holdsData(s))) {
        refused = true
        return
      }
      if (this.version < 3) {
        await this.zeroRawDataFile(s, e, unmap)
        await this.discardInTable(s, e, false)
      } else await this.zeroInTable(s, e, unmap, readGuest)
    })
    return !refused
  }

  /** Whether the subcluster at `guestOffset` holds data or is compressed (not unallocated, not zero). */
  protected async holdsData(guestOffset: number): Promise<boolean> {
    const g = this.ctx.geometry
    const index = l1Index(g, guestOffset)
    const l1 = decodeL1Entry(this.ctx.l1.getUint32(index * 8), this.ctx.l1.getUint32(index * 8 + 4), g.clusterSize, () => `${this.storage.name}: L1 entry ${index}`)
    if (l1.kind === 'unallocated') return false
    const decoded = readL2Entry(this.ctx, await loadL2(this.ctx, l1.hostOffset, `L1 entry ${index}`), l2Index(g, guestOffset))
    const e = decoded.entry
    if (e.kind === 'compressed') return true
    if (!g.extendedL2) return e.kind === 'normal'
    const subcluster = Math.floor((guestOffset % g.clusterSize) / g.subclusterSize)
    return ((decoded.allocated >>> subcluster) & 1) === 1
  }

  protected async zeroInTable(start: number, end: number, unmap: boolean, readGuest: GuestReader): Promise<void> {
    const g = this.ctx.geometry
    const cs = g.clusterSize
    await this.zeroRawDataFile(start, end, unmap)
    const table = await this.writableL2(start)
    const released: Decoded[] = []
    let position = start
    while (position < end) {
      const clusterStart = position - (position % cs)
      const pieceEnd = Math.min(end, clusterStart + cs)
      const decoded = readL2Entry(this.ctx, table, l2Index(g, position))
      const e = decoded.entry
      if (g.extendedL2) {
        const wholeCluster = position === clusterStart && (pieceEnd === clusterStart + cs || pieceEnd === this.ctx.virtualSize)
        if (wholeCluster && (unmap || e.kind === 'compressed' || e.kind === 'unallocated')) {
          this.setEntry(table, l2Index(g, position), { kind: 'unallocated' }, { allocated: 0, zero: ALL_SUBCLUSTERS })
          this.release(decoded)
          released.push(decoded)
        } else if (e.kind === 'compressed') {
          // Part of a compressed cluster: rewrite it as a normal cluster, then zero the part.
          await this.writeInTable(position, new Uint8Array(pieceEnd - position), readGuest)
        } else {
          let { allocated, zero } = decoded
          const first = Math.floor((position - clusterStart) / g.subclusterSize)
          const last = Math.floor((pieceEnd - 1 - clusterStart) / g.subclusterSize)
          for (let i = first; i <= last; i++) {
            allocated = (allocated & ~(1 << i)) >>> 0
            zero = (zero | (1 << i)) >>> 0
          }
          this.setEntry(table, l2Index(g, position), e, { allocated, zero })
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
        const copied = !release && (e.kind === 'normal' ? e.copied : e.kind === 'zero' && this.rawCopied(table, index))
        this.setZeroEntry(table, index, next, copied)
        if (release) {
          this.release(decoded)
          released.push(decoded)
        }
      }
      position = pieceEnd
    }
    await this.discardDataClusters(released)
  }

  protected setZeroEntry(table: CachedTable, index: number, entry: L2Entry, copied: boolean): void {
    this.setEntry(table, index, entry)
    if (copied) {
      const at = index * this.ctx.geometry.l2EntrySize
      table.view.setUint32(at, (table.view.getUint32(at) | 0x8000_0000) >>> 0)
    }
  }

  /**
   * data_file_raw: the data file must stay a valid raw image of the disk, so ranges that become
   * zero are zeroed in it first, with `unmap` by a punched hole (QEMU's qcow2_subcluster_zeroize
   * passes the request's flags on to bdrv_co_pwrite_zeroes of the data file).
   */
  protected async zeroRawDataFile(start: number, end: number, unmap: boolean): Promise<void> {
    if (!this.rawDataFile) return
    await writeZeroes(this.data, start, end - start, { unmap })
    this.dataDirty = true
  }

  /**
   * An external data file has no refcounts: the clusters an operation gives up are discarded in
   * it instead, as QEMU's qcow2_free_any_cluster does (normal and preallocated zero clusters;
   * qemu-img and qemu-io open images with discard=unmap).
   */
  protected async discardDataClusters(released: readonly Decoded[]): Promise<void> {
    if (!this.ctx.hasDataFile || this.data.discard === undefined) return
    const cs = this.ctx.geometry.clusterSize
    let runStart = -1
    let runEnd = -1
    for (const { entry } of released) {
      if (!(entry.kind === 'normal' || (entry.kind === 'zero' && entry.hostOffset !== undefined))) continue
      const hostOffset = entry.hostOffset!
      if (hostOffset === runEnd) {
        runEnd += cs
        continue
      }
      if (runEnd > runStart) await this.data.discard(runStart, runEnd - runStart)
      runStart = hostOffset
      runEnd = hostOffset + cs
    }
    if (runEnd > runStart) await this.data.discard(runStart, runEnd - runStart)
    this.dataDirty = true
  }

  /** Discard: whole clusters are deallocated (v3 keeps them reading as zeros, as QEMU does). */
  async discard(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length)
    // QEMU's qcow2_co_pdiscard refuses (-ENOTSUP, which the block layer treats as done) on v2
    // over a backing file: without the zero flag, deallocating would expose older backing data.
    if (this.version < 3 && this.hasBacking) return
    const cs = this.ctx.geometry.clusterSize
    const start = Math.ceil(offset / cs) * cs
    let end = Math.floor((offset + length) / cs) * cs
    if (offset + length === this.ctx.virtualSize) end = offset + length
    if (end <= start) return
    await this.perTable(start, end - start, (s, e) => this.discardInTable(s, e, false))
  }

  /**
   * QEMU's discard_in_l2_slice: `toUnallocated` (full discard) lets the backing file show
   * through; otherwise clusters that are allocated, or over a backing file, read as zeros (v3)
   * and the rest stay as they are. Like QEMU, the L2 table is allocated even when nothing is.
   */
  protected async discardInTable(start: number, end: number, toUnallocated: boolean): Promise<void> {
    const g = this.ctx.geometry
    const table = await this.writableL2(start)
    const released: Decoded[] = []
    for (let position = start; position < end; position += g.clusterSize) {
      const decoded = readL2Entry(this.ctx, table, l2Index(g, position))
      const allocated = decoded.entry.kind !== 'unallocated' && !(decoded.entry.kind === 'zero' && decoded.entry.hostOffset === undefined)
      if (!toUnallocated && !this.hasBacking && !allocated) continue
      const wantZero = !toUnallocated && this.version >= 3
      if (g.extendedL2) {
        this.setEntry(table, l2Index(g, position), { kind: 'unallocated' }, { allocated: 0, zero: wantZero ? ALL_SUBCLUSTERS : 0 })
      } else {
        this.setEntry(table, l2Index(g, position), wantZero ? { kind: 'zero', hostOffset: undefined } : { kind: 'unallocated' })
      }
      this.release(decoded)
      released.push(decoded)
    }
    await this.discardDataClusters(released)
  }

  /**
   * Preallocation (qemu-img create/resize -o preallocation=metadata|falloc|full): L2 tables and
   * data clusters for every unallocated cluster of the range; `full` also writes zeros. The
   * file is extended over all allocated clusters so none lies past its end.
   */
  async preallocate(offset: number, length: number, mode: 'metadata' | 'falloc' | 'full'): Promise<void> {
    this.checkRange(offset, length)
    const g = this.ctx.geometry
    const cs = g.clusterSize
    const start = Math.floor(offset / cs) * cs
    const end = Math.min(Math.ceil((offset + length) / cs) * cs, Math.ceil(this.ctx.virtualSize / cs) * cs)
    await this.perTable(start, end - start, async (s, e) => {
      const table = await this.writableL2(s)
      let position = s
      while (position < e) {
        // Runs of unallocated clusters become one contiguous allocation.
        let runEnd = position
        while (runEnd < e && readL2Entry(this.ctx, table, l2Index(g, runEnd)).entry.kind === 'unallocated') runEnd += cs
        if (runEnd === position) {
          position += cs
          continue
        }
        const count = (runEnd - position) / cs
        const { hostOffset } = await this.allocateData(position / cs, count)
        if (mode === 'full') {
          const zeros = new Uint8Array(Math.min(count * cs, 4 * 1024 * 1024))
          for (let at = 0; at < count * cs; at += zeros.length) await this.writeData(hostOffset + at, zeros.subarray(0, Math.min(zeros.length, count * cs - at)), position + at)
          this.dataDirty = true
        }
        // Extended L2: the subclusters stay unallocated (QEMU leaves the bitmap alone for
        // preallocation), so a backing file still shows through.
        for (let i = 0; i < count; i++) {
          this.setEntry(table, l2Index(g, position + i * cs), { kind: 'normal', hostOffset: hostOffset + i * cs, copied: true })
        }
        position = runEnd
      }
    })
    await this.mutex.run(async () => {
      const dataEnd = this.ctx.hasDataFile ? end : this.refcounts.endCluster * cs
      const fileSize = await this.data.size()
      // falloc: the file grows with its new space reserved, as QEMU truncates its data file with
      // PREALLOC_MODE_FALLOC; where the host cannot reserve, it only grows.
      const reserved = mode === 'falloc' && fileSize < dataEnd && this.data.reserve !== undefined && await this.data.reserve(fileSize, dataEnd - fileSize)
      if (!reserved && fileSize < dataEnd) await this.data.truncate(dataEnd)
      await this.flushLocked()
    })
  }

  /**
   * Shrink support: every cluster of the range becomes unallocated and its space is freed;
   * L2 tables wholly inside the range are freed and their L1 entries cleared.
   */
  async deallocate(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length)
    const g = this.ctx.geometry
    const coverage = l2Coverage(g)
    await this.perTable(offset, length, async (start, end) => {
      const index = l1Index(g, start)
      const l1 = decodeL1Entry(this.ctx.l1.getUint32(index * 8), this.ctx.l1.getUint32(index * 8 + 4), g.clusterSize, () => `${this.storage.name}: L1 entry ${index}`)
      if (l1.kind === 'unallocated') return
      const whole = start === index * coverage && (end === (index + 1) * coverage || end >= this.ctx.virtualSize)
      if (whole && l1.copied) {
        const table = await loadL2(this.ctx, l1.hostOffset, `L1 entry ${index}`)
        for (let i = 0; i < g.l2Entries; i++) this.release(readL2Entry(this.ctx, table, i))
        this.ctx.l1.setUint32(index * 8, 0)
        this.ctx.l1.setUint32(index * 8 + 4, 0)
        this.l1Dirty = true
        this.ctx.l2Cache.forget(l1.hostOffset)
        this.refcounts.free(l1.hostOffset)
        return
      }
      await this.discardInTable(start, end, true)
    })
  }
}
