// Discard and deallocation (qcow2_co_pdiscard, discard_in_l2_slice; shrink in qcow2_co_truncate):
// entries become zero or unallocated, their space is given back through the deferred frees.
import { wholeUnits } from '../../format/unit-split.js'
import { l1Index, l2Coverage, l2Index } from '../geometry.js'
import { loadL2, readL2Entry } from '../lookup.js'
import { ALL_SUBCLUSTERS, type Decoded } from '../writer-types.js'
import { perTable } from './flush.js'
import { l1EntryAt, release, setEntry, writableL2 } from './l2-update.js'
import { checkRange, type WriterState } from './state.js'

/**
 * An external data file has no refcounts: the clusters an operation gives up are discarded in
 * it instead, as QEMU's qcow2_free_any_cluster does (normal and preallocated zero clusters;
 * qemu-img and qemu-io open images with discard=unmap).
 */
export async function discardDataClusters(s: WriterState, released: readonly Decoded[]): Promise<void> {
  if (!s.ctx.hasDataFile || s.data.discard === undefined) return
  const cs = s.ctx.geometry.clusterSize
  let runStart = -1
  let runEnd = -1
  for (const { entry } of released) {
    if (!(entry.kind === 'normal' || (entry.kind === 'zero' && entry.hostOffset !== undefined))) continue
    const hostOffset = entry.hostOffset!
    if (hostOffset === runEnd) {
      runEnd += cs
      continue
    }
    if (runEnd > runStart) await s.data.discard(runStart, runEnd - runStart)
    runStart = hostOffset
    runEnd = hostOffset + cs
  }
  if (runEnd > runStart) await s.data.discard(runStart, runEnd - runStart)
  s.dataDirty = true
}

/** Discard: whole clusters are deallocated (v3 keeps them reading as zeros, as QEMU does). */
export async function discard(s: WriterState, offset: number, length: number): Promise<void> {
  checkRange(s, offset, length)
  // QEMU's qcow2_co_pdiscard refuses (-ENOTSUP, which the block layer treats as done) on v2
  // over a backing file: without the zero flag, deallocating would expose older backing data.
  if (s.version < 3 && s.hasBacking) return
  const range = wholeUnits(offset, length, s.ctx.geometry.clusterSize, s.ctx.virtualSize)
  if (range) await perTable(s, range.start, range.end - range.start, (from, to) => discardInTable(s, from, to, false))
}

/**
 * QEMU's discard_in_l2_slice: `toUnallocated` (full discard) lets the backing file show
 * through; otherwise clusters that are allocated, or over a backing file, read as zeros (v3)
 * and the rest stay as they are. Like QEMU, the L2 table is allocated even when nothing is.
 */
export async function discardInTable(s: WriterState, start: number, end: number, toUnallocated: boolean): Promise<void> {
  const g = s.ctx.geometry
  const table = await writableL2(s, start)
  const released: Decoded[] = []
  for (let position = start; position < end; position += g.clusterSize) {
    const decoded = readL2Entry(s.ctx, table, l2Index(g, position))
    const allocated = decoded.entry.kind !== 'unallocated' && !(decoded.entry.kind === 'zero' && decoded.entry.hostOffset === undefined)
    if (!toUnallocated && !s.hasBacking && !allocated) continue
    const wantZero = !toUnallocated && s.version >= 3
    if (g.extendedL2) {
      setEntry(s, table, l2Index(g, position), { kind: 'unallocated' }, { allocated: 0, zero: wantZero ? ALL_SUBCLUSTERS : 0 })
    } else {
      setEntry(s, table, l2Index(g, position), wantZero ? { kind: 'zero', hostOffset: undefined } : { kind: 'unallocated' })
    }
    release(s, decoded)
    released.push(decoded)
  }
  await discardDataClusters(s, released)
}

/**
 * Shrink support: every cluster of the range becomes unallocated and its space is freed;
 * L2 tables wholly inside the range are freed and their L1 entries cleared.
 */
export async function deallocate(s: WriterState, offset: number, length: number): Promise<void> {
  checkRange(s, offset, length)
  const g = s.ctx.geometry
  const coverage = l2Coverage(g)
  await perTable(s, offset, length, async (start, end) => {
    const index = l1Index(g, start)
    const l1 = l1EntryAt(s, index)
    if (l1.kind === 'unallocated') return
    const whole = start === index * coverage && (end === (index + 1) * coverage || end >= s.ctx.virtualSize)
    if (whole && l1.copied) {
      const table = await loadL2(s.ctx, l1.hostOffset, `L1 entry ${index}`)
      for (let i = 0; i < g.l2Entries; i++) release(s, readL2Entry(s.ctx, table, i))
      s.ctx.l1.setUint32(index * 8, 0)
      s.ctx.l1.setUint32(index * 8 + 4, 0)
      s.l1Dirty = true
      s.ctx.l2Cache.forget(l1.hostOffset)
      s.refcounts.free(l1.hostOffset)
      return
    }
    await discardInTable(s, start, end, true)
  })
}
