// Zero clusters out of every L1 table, for a downgrade to v2 (which has no zero flag): QEMU's
// qcow2_expand_zero_clusters, active L1 first, then each snapshot's. Per zero entry:
//   - unallocated zero, no backing file: the entry becomes unallocated (reads as zeros anyway);
//   - unallocated zero over a backing file: a new cluster of zeros, with as many references as
//     the L2 table has (a table shared by N L1 tables gives its clusters refcount N);
//   - allocated zero: zeros written into its cluster, the entry becomes normal data.
// COPIED is set when the L2 table has a single reference, as QEMU does.
//
// Where qimg deliberately differs from QEMU 7.2 (which loses snapshot data or leaves errors):
//   - an allocated zero cluster that some entry still reads as data (a snapshot taken before
//     `write -z` over it) gets a new cluster of zeros instead; QEMU zeroes the shared cluster in
//     place, so the snapshot then reads zeros. A pre-pass counts the zero entries reaching each
//     allocated zero cluster (one per L1 table, as refcounts count): fewer than its refcount
//     means another reference exists;
//   - an allocated zero cluster reached by zero entries of several L2 tables is zeroed in place
//     as QEMU does, but COPIED follows its refcount (QEMU sets it when the L2 table has one
//     reference, which qemu-img check then reports as an error);
//   - zeros go through the data path, so an encrypted image gets encrypted zeros (QEMU writes
//     plain zeros under the encryption, which then read back as noise);
//   - compressed clusters are looked for in snapshots as well as in the active L1 (a zstd
//     cluster in a snapshot could not be read once the image says zlib).
import { readSnapshotL1 } from './snapshot-ops.js'
import { ImageError, hex } from '../errors.js'
import type { CachedTable } from './cache.js'
import { decodeL1Entry, encodeL2Entry, type L2Entry } from './entries.js'
import { loadL2, readL2Entry } from './lookup.js'
import type { Snapshot } from './snapshot.js'
import { updateTreeRefcounts } from './snapshot-ops.js'
import type { TableAccess } from './writer.js'

/** What the expansion found and did. */
export interface ExpandResult {
  /** Some L1 table (active or snapshot) reaches a compressed cluster. */
  compressed: boolean
  /** Zero entries turned into data or unallocated entries. */
  expanded: number
}

/** Expands the zero clusters of the active L1 table and of every snapshot's L1 table. */
export async function expandZeroClusters(a: TableAccess, snapshots: readonly Snapshot[], hasBacking: boolean): Promise<ExpandResult> {
  if (a.ctx.geometry.extendedL2) throw new ImageError('UNSUPPORTED', `${a.storage.name}: zero clusters cannot be expanded with extended L2 entries`)
  const l1Tables: { l1: DataView; what: string }[] = [{ l1: a.ctx.l1, what: 'active L1' }]
  for (const s of snapshots) {
    if (s.l1Size === 0) continue
    l1Tables.push({ l1: await readSnapshotL1(a, s), what: `L1 of snapshot ${s.id}` })
  }
  // Pre-pass: zero entries reaching each allocated zero cluster; and compressed clusters.
  const zeroPaths = new Map<number, number>()
  let compressed = false
  for (const { l1, what } of l1Tables) {
    await forEachTable(a, l1, what, async (table) => {
      for (let j = 0; j < a.ctx.geometry.l2Entries; j++) {
        const { entry } = readL2Entry(a.ctx, table, j)
        if (entry.kind === 'compressed') compressed = true
        if (entry.kind === 'zero' && entry.hostOffset !== undefined) zeroPaths.set(entry.hostOffset, (zeroPaths.get(entry.hostOffset) ?? 0) + 1)
      }
    })
  }
  const cs = a.ctx.geometry.clusterSize
  const shared = new Set<number>()
  for (const [host, paths] of zeroPaths) if ((await a.refcounts.get(host / cs)) > paths) shared.add(host)
  const state: ExpandState = { expanded: 0, shared, zeros: new Uint8Array(cs) }
  for (const { l1, what } of l1Tables) await forEachTable(a, l1, what, (table, l2Refcount, l1Index) => expandTable(a, table, l2Refcount, l1Index, hasBacking, state))
  await a.flush()
  // A cluster given up by zero entries may have one reference left now: the COPIED flags of
  // the active tree must say so (qemu-img check compares them).
  if (shared.size > 0 && (await updateTreeRefcounts(a, a.ctx.l1, 0))) a.markL1Dirty()
  return { compressed, expanded: state.expanded }
}

interface ExpandState {
  expanded: number
  /** Allocated zero clusters that other entries read as data: never zeroed in place. */
  shared: Set<number>
  zeros: Uint8Array
}

/** Runs `fn` on each L2 table `l1` reaches (through the cache) with the table's refcount and L1 index. */
async function forEachTable(a: TableAccess, l1: DataView, what: string, fn: (table: CachedTable, l2Refcount: number, l1Index: number) => Promise<void>): Promise<void> {
  const cs = a.ctx.geometry.clusterSize
  for (let i = 0; i < l1.byteLength / 8; i++) {
    const l1Entry = decodeL1Entry(l1.getUint32(i * 8), l1.getUint32(i * 8 + 4), cs, () => `${a.storage.name}: ${what} entry ${i}`)
    if (l1Entry.kind === 'unallocated') continue
    // Tables shared with an L1 done before come from the cache, already expanded.
    const table = await loadL2(a.ctx, l1Entry.hostOffset, `${what} entry ${i}`)
    const l2Refcount = await a.refcounts.get(l1Entry.hostOffset / cs)
    if (l2Refcount === 0) throw new ImageError('CORRUPT', `${a.storage.name}: L2 table at ${hex(l1Entry.hostOffset)} (${what} entry ${i}) has refcount 0`, { offset: l1Entry.hostOffset })
    await fn(table, l2Refcount, i)
  }
}

async function expandTable(a: TableAccess, table: CachedTable, l2Refcount: number, l1Index: number, hasBacking: boolean, state: ExpandState): Promise<void> {
  const { ctx, refcounts } = a
  const g = ctx.geometry
  const cs = g.clusterSize
  for (let j = 0; j < g.l2Entries; j++) {
    const { entry } = readL2Entry(ctx, table, j)
    if (entry.kind !== 'zero') continue
    const guestOffset = (l1Index * g.l2Entries + j) * cs
    let next: L2Entry
    if (entry.hostOffset === undefined && !hasBacking) {
      next = { kind: 'unallocated' }
    } else if (entry.hostOffset !== undefined && !state.shared.has(entry.hostOffset)) {
      // In place; zero entries of other tables may reach it too (then it stays shared).
      await a.writeData(entry.hostOffset, state.zeros, guestOffset)
      next = { kind: 'normal', hostOffset: entry.hostOffset, copied: (await refcounts.get(entry.hostOffset / cs)) === 1 }
    } else {
      // This table's references move to a new cluster (queued frees apply once it is written).
      if (entry.hostOffset !== undefined) for (let k = 0; k < l2Refcount; k++) refcounts.free(entry.hostOffset)
      const host = await refcounts.allocate(1)
      if (l2Refcount > 1) await refcounts.add(host / cs, l2Refcount - 1)
      await a.writeData(host, state.zeros, guestOffset)
      next = { kind: 'normal', hostOffset: host, copied: l2Refcount === 1 }
    }
    const [hi, lo] = encodeL2Entry(next, g.clusterBits)
    table.view.setUint32(j * 8, hi)
    table.view.setUint32(j * 8 + 4, lo)
    ctx.l2Cache.markDirty(table)
    state.expanded++
  }
  // Dirty tables stay cached until written back: keep that bounded.
  if (ctx.l2Cache.dirtyCount > ctx.l2Cache.capacity / 2 || refcounts.cache.dirtyCount > refcounts.cache.capacity / 2) await a.flush()
}
