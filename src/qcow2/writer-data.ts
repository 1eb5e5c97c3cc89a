// Allocating writes (qcow2.rst "Cluster mapping"): in place when the cluster is ours alone,
// otherwise new clusters with copy-on-write of the untouched parts; subcluster-granular with
// extended L2; compressed clusters packed after each other.
import { ImageError } from '../errors.js'
import type { L2Entry } from './entries.js'
import { l1Index, l2Index } from './geometry.js'
import { decodeL1Entry } from './entries.js'
import { loadL2, readL2Entry } from './lookup.js'
import type { CachedTable } from './cache.js'
import { ALL_SUBCLUSTERS, WriterCore, type Contiguity, type Decoded, type GuestReader } from './writer-core.js'

/** The data path of the writer. */
export class DataWriter extends WriterCore {
  /** Writes guest bytes. `readGuest` supplies old content for partial clusters. */
  async write(offset: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    this.checkRange(offset, data.length)
    if (await this.writeInPlace(offset, data)) return
    const contiguity: Contiguity = {}
    await this.perTable(offset, data.length, (start, end) => this.writeInTable(start, data.subarray(start - offset, end - offset), readGuest, contiguity))
  }

  /**
   * The fast path, without the metadata lock: when every cluster of the range is already ours
   * alone (normal, COPIED), the bytes go straight to their place and no table changes, so
   * concurrent writes proceed in parallel. Frees wait for these writes (see `inFlight`), so a
   * cluster freed meanwhile is never reused under them. Returns false to take the slow path.
   */
  protected async writeInPlace(offset: number, data: Uint8Array): Promise<boolean> {
    if (this.ctx.geometry.extendedL2 || !this.started) return false
    // In flight from the lookup on: a free cannot complete between our lookup and our write.
    return this.inFlight.run(() => this.writeInPlaceTracked(offset, data))
  }

  private async writeInPlaceTracked(offset: number, data: Uint8Array): Promise<boolean> {
    const g = this.ctx.geometry
    const cs = g.clusterSize
    const pieces: { hostOffset: number; from: number; to: number }[] = []
    for (let position = offset; position < offset + data.length;) {
      const index = l1Index(g, position)
      const l1 = decodeL1Entry(this.ctx.l1.getUint32(index * 8), this.ctx.l1.getUint32(index * 8 + 4), cs, () => `${this.storage.name}: L1 entry ${index}`)
      if (l1.kind !== 'table' || !l1.copied) return false
      const table = await loadL2(this.ctx, l1.hostOffset, `L1 entry ${index}`)
      const { entry } = readL2Entry(this.ctx, table, l2Index(g, position))
      if (entry.kind !== 'normal' || !entry.copied) return false
      const end = Math.min(offset + data.length, (Math.floor(position / cs) + 1) * cs)
      const hostOffset = entry.hostOffset + (position % cs)
      const last = pieces[pieces.length - 1]
      if (last && last.hostOffset + (last.to - last.from) === hostOffset) last.to = end - offset
      else pieces.push({ hostOffset, from: position - offset, to: end - offset })
      position = end
    }
    this.writesSinceFlush = true
    for (const p of pieces) await this.writeData(p.hostOffset, data.subarray(p.from, p.to), offset + p.from)
    this.dataDirty = true
    return true
  }

  protected async writeInTable(start: number, data: Uint8Array, readGuest: GuestReader, contiguity: Contiguity = {}): Promise<void> {
    const g = this.ctx.geometry
    const cs = g.clusterSize
    const table = await this.writableL2(start)
    const end = start + data.length
    let position = start
    while (position < end) {
      const cluster = Math.floor(position / cs)
      const decoded = readL2Entry(this.ctx, table, l2Index(g, position))
      if (this.inPlace(decoded)) {
        const e = decoded.entry as Extract<L2Entry, { kind: 'normal' }>
        const pieceEnd = Math.min(end, (cluster + 1) * cs)
        if (g.extendedL2) await this.writeSubclusters(table, decoded, e.hostOffset, position, data.subarray(position - start, pieceEnd - start), readGuest)
        else await this.writeData(e.hostOffset + (position % cs), data.subarray(position - start, pieceEnd - start), position)
        contiguity.nextHost = e.hostOffset + cs
        this.dataDirty = true
        position = pieceEnd
        continue
      }
      if (this.zeroInPlace(table, position, decoded)) {
        // QEMU (cluster_needs_new_alloc): a zero cluster that kept its own allocation is written
        // where it is; the rest of it reads as zeros, so zeros fill it (the COW of keep_old).
        const clusterStart = cluster * cs
        const pieceEnd = Math.min(end, clusterStart + cs)
        const buffer = new Uint8Array(Math.min(clusterStart + cs, this.ctx.virtualSize) - clusterStart)
        buffer.set(data.subarray(position - start, pieceEnd - start), position - clusterStart)
        const hostOffset = (decoded.entry as Extract<L2Entry, { kind: 'zero' }>).hostOffset!
        await this.writeData(hostOffset, buffer, clusterStart)
        this.setEntry(table, l2Index(g, position), { kind: 'normal', hostOffset, copied: true })
        contiguity.nextHost = hostOffset + cs
        this.dataDirty = true
        position = pieceEnd
        continue
      }
      // A run of clusters that all need new space: allocate them contiguously, write once.
      let runEnd = Math.min(end, (cluster + 1) * cs)
      const runDecoded: Decoded[] = [decoded]
      while (runEnd < end) {
        const next = readL2Entry(this.ctx, table, l2Index(g, runEnd))
        if (this.inPlace(next) || this.zeroInPlace(table, runEnd, next)) break
        runDecoded.push(next)
        runEnd = Math.min(end, runEnd + cs)
      }
      const { hostOffset, count } = await this.allocateData(cluster, runDecoded.length, contiguity)
      if (count < runDecoded.length) {
        runDecoded.length = count
        runEnd = Math.min(end, (cluster + count) * cs)
      }
      if (g.extendedL2) {
        for (let i = 0; i < count; i++) {
          const old = runDecoded[i]!
          const clusterStart = (cluster + i) * cs
          const from = Math.max(position, clusterStart)
          const to = Math.min(runEnd, clusterStart + cs)
          const at = hostOffset + i * cs
          const fresh: Decoded = { entry: { kind: 'normal', hostOffset: at, copied: true }, allocated: 0, zero: 0 }
          if (old.entry.kind === 'normal' || old.entry.kind === 'compressed') {
            // Old data must move: copy the whole cluster's current content into the new one.
            await this.writeData(at, await readGuest(clusterStart, Math.min(cs, this.ctx.virtualSize - clusterStart)), clusterStart)
            fresh.allocated = ALL_SUBCLUSTERS
          } else {
            // Untouched subclusters keep reading as before: zero bits stay, others read from backing.
            fresh.zero = old.zero
          }
          await this.writeSubclusters(table, fresh, at, from, data.subarray(from - start, to - start), readGuest)
          this.release(old)
        }
      } else {
        const runStart = cluster * cs
        const headLength = position - runStart
        const lastClusterEnd = Math.min(runStart + count * cs, this.ctx.virtualSize)
        const piece = data.subarray(position - start, runEnd - start)
        if (headLength === 0 && runEnd === lastClusterEnd) {
          // Whole clusters: the caller's bytes go straight to their new place.
          await this.writeData(hostOffset, piece, runStart)
        } else {
          // Copy-on-write: the untouched head and tail come from the current content.
          const buffer = new Uint8Array(count * cs)
          this.storage.debugEvent?.('cow_read')
          if (headLength > 0) buffer.set(await readGuest(runStart, headLength), 0)
          if (runEnd < lastClusterEnd) buffer.set(await readGuest(runEnd, lastClusterEnd - runEnd), runEnd - runStart)
          buffer.set(piece, headLength)
          await this.writeData(hostOffset, buffer, runStart)
        }
        for (let i = 0; i < count; i++) {
          this.setEntry(table, l2Index(g, runStart + i * cs), { kind: 'normal', hostOffset: hostOffset + i * cs, copied: true })
          this.release(runDecoded[i]!)
        }
      }
      this.dataDirty = true
      position = runEnd
    }
  }

  /** A zero cluster (no extended L2) that keeps a host cluster of its own (ZERO_ALLOC with COPIED). */
  protected zeroInPlace(table: CachedTable, guestOffset: number, decoded: Decoded): boolean {
    const e = decoded.entry
    return !this.ctx.geometry.extendedL2 && e.kind === 'zero' && e.hostOffset !== undefined && !this.ctx.hasDataFile &&
      this.rawCopied(table, l2Index(this.ctx.geometry, guestOffset))
  }

  /**
   * Extended L2: writes `data` at guest `position` into a cluster at `hostOffset`, filling the
   * rest of partially written subclusters from the current content, then marks the touched
   * subclusters allocated (and not zero).
   */
  protected async writeSubclusters(table: CachedTable, decoded: Decoded, hostOffset: number, position: number, data: Uint8Array, readGuest: GuestReader): Promise<void> {
    const g = this.ctx.geometry
    const sc = g.subclusterSize
    const clusterStart = position - (position % g.clusterSize)
    const first = Math.floor((position - clusterStart) / sc)
    const last = Math.floor((position + data.length - 1 - clusterStart) / sc)
    let allocated = decoded.allocated
    let zero = decoded.zero
    const spanStart = clusterStart + first * sc
    const spanEnd = Math.min(clusterStart + (last + 1) * sc, this.ctx.virtualSize)
    const needsFill = (index: number) => ((allocated >>> index) & 1) === 0
    if ((position > spanStart && needsFill(first)) || (position + data.length < spanEnd && needsFill(last))) {
      const buffer = await readGuest(spanStart, spanEnd - spanStart)
      buffer.set(data, position - spanStart)
      await this.writeData(hostOffset + first * sc, buffer, spanStart)
    } else {
      await this.writeData(hostOffset + (position - clusterStart), data, position)
    }
    for (let i = first; i <= last; i++) {
      allocated = (allocated | (1 << i)) >>> 0
      zero = (zero & ~(1 << i)) >>> 0
    }
    this.setEntry(table, l2Index(g, position), { kind: 'normal', hostOffset, copied: true }, { allocated, zero })
  }

  /**
   * Stores an already compressed cluster at `guestOffset` (cluster aligned). Like QEMU, only
   * into a cluster that holds nothing yet; the stream is packed after the previous one.
   */
  async writeCompressed(guestOffset: number, compressed: Uint8Array): Promise<void> {
    const g = this.ctx.geometry
    if (guestOffset % g.clusterSize !== 0) throw new ImageError('INVALID_ARGUMENT', `compressed writes must be cluster aligned (offset ${guestOffset})`)
    if (this.ctx.hasDataFile) throw new ImageError('UNSUPPORTED', `${this.storage.name}: compressed writes are not possible with an external data file`)
    this.checkRange(guestOffset, 1)
    await this.perTable(guestOffset, 1, async () => {
      const table = await this.writableL2(guestOffset)
      const index = l2Index(g, guestOffset)
      const decoded = readL2Entry(this.ctx, table, index)
      const e = decoded.entry
      if (!(e.kind === 'unallocated' || (e.kind === 'zero' && e.hostOffset === undefined)) || decoded.allocated !== 0) {
        throw new ImageError('INVALID_ARGUMENT', `${this.storage.name}: compression can't overwrite anything (cluster at ${guestOffset} is allocated)`)
      }
      await this.beforeAllocation()
      const hostOffset = await this.refcounts.allocateBytes(compressed.length)
      await this.writeData(hostOffset, compressed, guestOffset)
      // Reads clamp a compressed stream to the file's end: the file grew past the size seen at open.
      this.ctx.fileSize = Math.max(this.ctx.fileSize, hostOffset + compressed.length)
      this.dataDirty = true
      const sectorCount = Math.floor((hostOffset + compressed.length - 1) / 512) - Math.floor(hostOffset / 512) + 1
      this.setEntry(table, index, { kind: 'compressed', hostOffset, sectorCount }, { allocated: 0, zero: 0 })
    })
  }
}
