// Structural changes beside guest writes: growing the active L1 table (qcow2_grow_l1_table),
// cutting the file after a shrink, and direct table access for snapshots, bitmaps and amend.
import type { TableAccess } from '../writer-types.js'
import { invalidateOverlaps, writeData } from './data-write.js'
import { flushLocked, maybeWriteBack } from './flush.js'
import { start, type WriterState } from './state.js'

/**
 * Grows the active L1 table to at least `entries`: a new copy is written elsewhere and
 * flushed, the header switched, then the old table freed.
 */
export function growL1(s: WriterState, entries: number): Promise<DataView> {
  return s.mutex.run(async () => {
    await start(s)
    await flushLocked(s)
    const cs = s.ctx.geometry.clusterSize
    const old = s.ctx.l1
    if (entries * 8 <= old.byteLength) return old
    const clusters = Math.ceil((entries * 8) / cs)
    const hostOffset = await s.refcounts.allocate(clusters)
    const bytes = new Uint8Array(entries * 8)
    bytes.set(new Uint8Array(old.buffer, old.byteOffset, old.byteLength))
    await s.refcounts.writeBlocks()
    await s.storage.flush()
    await s.storage.write(hostOffset, bytes)
    await s.storage.flush()
    const oldOffset = s.l1Offset
    const oldClusters = Math.ceil(old.byteLength / cs)
    await s.host.switchL1(hostOffset, entries)
    s.l1Offset = hostOffset
    invalidateOverlaps(s)
    const view = new DataView(bytes.buffer)
    s.ctx.l1 = view
    if (oldClusters > 0 && oldOffset !== 0) s.refcounts.free(oldOffset, oldClusters)
    await flushLocked(s)
    return view
  })
}

/** Cuts the file after the last cluster in use (after a shrink), as QEMU does. */
export function truncateUnused(s: WriterState): Promise<void> {
  return s.mutex.run(async () => {
    await flushLocked(s)
    const cs = s.ctx.geometry.clusterSize
    let last = s.refcounts.endCluster - 1
    while (last > 0 && (await s.refcounts.get(last)) === 0) last--
    const end = (last + 1) * cs
    if ((await s.storage.size()) > end) await s.storage.truncate(end)
    s.refcounts.setEndCluster(last + 1)
  })
}

/**
 * Runs a structural change (snapshots) under the metadata lock with direct access to the
 * tables; caches are written back before and after.
 */
export function withTables<T>(s: WriterState, fn: (access: TableAccess) => Promise<T>): Promise<T> {
  return s.mutex.run(async () => {
    await start(s)
    await flushLocked(s)
    invalidateOverlaps(s)
    const result = await fn({
      ctx: s.ctx,
      storage: s.storage,
      refcounts: s.refcounts,
      l1Offset: s.l1Offset,
      markL1Dirty: () => { s.l1Dirty = true },
      writeData: (hostOffset, bytes, guestOffset) => writeData(s, hostOffset, bytes, guestOffset),
      flush: () => flushLocked(s),
      writeBackIfFull: () => maybeWriteBack(s),
    })
    await flushLocked(s)
    invalidateOverlaps(s)
    return result
  })
}
