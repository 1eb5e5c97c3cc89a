// L2 tables made writable and their entries changed (qcow2.rst "Cluster mapping"): a missing
// table is allocated, one shared with a snapshot copied first (QEMU's l2_allocate); entries are
// set in the cache and reach the disk with the ordered flush.
import type { CachedTable } from '../cache.js'
import { compressedClusters } from '../compressed.js'
import { decodeL1Entry, encodeL1Entry, encodeL2Entry, type L1Entry, type L2Entry } from '../entries.js'
import { l1Index } from '../geometry.js'
import { loadL2 } from '../lookup.js'
import type { Decoded } from '../writer-types.js'
import { allocateClusters } from './allocate.js'
import { invalidateOverlaps } from './data-write.js'
import { writeRefcounts } from './flush.js'
import type { WriterState } from './state.js'

/** Active L1 entry `index`, decoded. */
export function l1EntryAt(s: WriterState, index: number): L1Entry {
  return decodeL1Entry(s.ctx.l1.getUint32(index * 8), s.ctx.l1.getUint32(index * 8 + 4), s.ctx.geometry.clusterSize, () => `${s.storage.name}: L1 entry ${index}`)
}

/** The L2 table mapping `guestOffset` if one exists and is ours alone (COPIED), else undefined. */
export async function ownL2(s: WriterState, guestOffset: number): Promise<CachedTable | undefined> {
  const index = l1Index(s.ctx.geometry, guestOffset)
  const l1 = l1EntryAt(s, index)
  return l1.kind === 'table' && l1.copied ? loadL2(s.ctx, l1.hostOffset, `L1 entry ${index}`) : undefined
}

/** The L2 table mapping `guestOffset`, allocated (or copied if shared) for writing. */
export async function writableL2(s: WriterState, guestOffset: number): Promise<CachedTable> {
  const ctx = s.ctx
  const index = l1Index(ctx.geometry, guestOffset)
  const l1 = l1EntryAt(s, index)
  if (l1.kind === 'table' && l1.copied) return loadL2(ctx, l1.hostOffset, `L1 entry ${index}`)
  const hostOffset = await allocateClusters(s, 1)
  let bytes: Uint8Array
  if (l1.kind === 'table') {
    // Shared with a snapshot: copy the table, drop one reference to the old one (COW).
    s.storage.debugEvent?.('l2_alloc_cow_read')
    bytes = (await loadL2(ctx, l1.hostOffset, `L1 entry ${index}`)).bytes.slice()
    s.refcounts.free(l1.hostOffset)
  } else {
    bytes = new Uint8Array(ctx.geometry.clusterSize)
  }
  // l2_allocate flushes the refcount cache even with lazy refcounts: the new table's count
  // (and every count changed before it) reaches the disk, later data clusters' do not.
  if (s.host.refcountsMayLag()) await writeRefcounts(s)
  s.storage.debugEvent?.('l2_alloc_write')
  const table = ctx.l2Cache.put(hostOffset, bytes)
  invalidateOverlaps(s)
  const [hi, lo] = encodeL1Entry({ kind: 'table', hostOffset, copied: true })
  ctx.l1.setUint32(index * 8, hi)
  ctx.l1.setUint32(index * 8 + 4, lo)
  s.l1Dirty = true
  return table
}

/** Sets L2 entry `index` (with its subcluster bitmap under extended L2) in the cache. */
export function setEntry(s: WriterState, table: CachedTable, index: number, entry: L2Entry, bitmap?: { allocated: number; zero: number }): void {
  const g = s.ctx.geometry
  const at = index * g.l2EntrySize
  const [hi, lo] = encodeL2Entry(entry, g.clusterBits)
  table.view.setUint32(at, hi)
  table.view.setUint32(at + 4, lo)
  if (g.extendedL2) {
    const b = bitmap ?? { allocated: 0, zero: 0 }
    table.view.setUint32(at + 8, b.zero >>> 0)
    table.view.setUint32(at + 12, b.allocated >>> 0)
  }
  s.ctx.l2Cache.markDirty(table)
}

/** A zero entry; `copied` keeps the COPIED bit of an allocation it keeps (refcount 1 still holds). */
export function setZeroEntry(s: WriterState, table: CachedTable, index: number, entry: L2Entry, copied: boolean): void {
  setEntry(s, table, index, entry)
  if (copied) {
    const at = index * s.ctx.geometry.l2EntrySize
    table.view.setUint32(at, (table.view.getUint32(at) | 0x8000_0000) >>> 0)
  }
}

/** The COPIED bit of L2 entry `index` as stored (a zero entry's decoded form has none). */
export function rawCopied(s: WriterState, table: CachedTable, index: number): boolean {
  return (table.view.getUint32(index * s.ctx.geometry.l2EntrySize) & 0x8000_0000) !== 0
}

/** Releases the host space an entry held (deferred until the new entry is durable). */
export function release(s: WriterState, decoded: Decoded): void {
  const e = decoded.entry
  if (s.ctx.hasDataFile) return // data file clusters are not refcounted
  if (e.kind === 'normal' || (e.kind === 'zero' && e.hostOffset !== undefined)) s.refcounts.free(e.hostOffset!)
  else if (e.kind === 'compressed') {
    const { firstCluster, lastCluster } = compressedClusters(e, s.ctx.geometry.clusterSize)
    s.refcounts.free(firstCluster * s.ctx.geometry.clusterSize, lastCluster - firstCluster + 1)
  }
}
