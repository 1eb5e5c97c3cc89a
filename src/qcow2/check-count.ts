// Counting references (QEMU's calculate_refcounts): every structure that uses a host cluster —
// header, L1 and L2 tables of the active state and of each snapshot, data and compressed
// clusters, snapshot table, refcount table and blocks, encryption header, bitmaps — adds one
// to an in-memory refcount array, reporting malformed entries as it goes.
//
// Snapshots mostly share their L2 tables with the active state. An L2 table that was counted
// once without a single report would count exactly the same again, so later visits only record
// "once more" and the table is counted a final time with that multiplicity: each shared table is
// read and scanned twice instead of once per snapshot. Counts and reports equal QEMU's; only when
// such a multiple would overflow a refcount do the overflow lines come later than QEMU's.
import { hexOf, incRefs, readOrCount, TableReader, type RefContext } from './check-refs.js'
import { MAX_BITMAP_PHYS_BYTES, MAX_BITMAP_TABLE_ENTRIES, MAX_L1_BYTES, SNAPSHOT_HEADER_LENGTH } from './spec.js'

/**
 * Host bytes a compressed L2 entry (given as two u32 halves) references, as check counts them:
 * from its offset to the end of its last sector (spec: "Compressed Clusters Descriptor").
 */
function compressedRegion(hi: number, lo: number, clusterBits: number): { hostOffset: number; length: number } {
  const x = 70 - clusterBits
  const hostOffset = ((hi & 0x3fff_ffff) % 2 ** (x - 32)) * 2 ** 32 + lo
  const sectors = Math.floor((hi & 0x3fff_ffff) / 2 ** (x - 32)) % 2 ** (clusterBits - 8) + 1
  return { hostOffset, length: sectors * 512 - (hostOffset % 512) }
}

/** L2 tables counted without any report, and the extra visits deferred for each. */
interface SharedTables {
  clean: Set<number>
  deferred: Map<number, number>
}

/** check_refcounts_l2: references of one L2 table's clusters (already read into `view`). */
function checkL2(ctx: RefContext, view: DataView, active: boolean): void {
  // QEMU tracks contiguity within one L2 table only.
  const contiguous = { next: 0 }
  const g = ctx.layout.geometry
  const hasDataFile = ctx.layout.hasDataFile
  // Fast path for the common entries (unallocated, or a plain aligned data cluster inside the
  // file whose count does not overflow): counters in locals, no call. Anything else takes the
  // full path below, which reports as QEMU does. The two paths count identically.
  const plain = !g.extendedL2 && !hasDataFile
  const cs = g.clusterSize
  const fileSize = ctx.fileSize
  const refcountMax = ctx.refcountMax
  const flags = active && !hasDataFile ? ctx.copiedFlags : undefined
  let allocated = 0
  let fragmented = 0
  for (let i = 0; i < g.l2Entries; i++) {
    const at = i * g.l2EntrySize
    const hi = view.getUint32(at)
    const lo = view.getUint32(at + 4)
    if (plain && (hi & 0x7f00_0000) === 0 && (lo & 0x1ff) === 0) {
      const offset = (hi & 0x00ff_ffff) * 0x1_0000_0000 + lo
      if (offset === 0) continue
      const k = offset / cs
      const refs = ctx.refs
      if (offset < fileSize && k < refs.length && Number.isInteger(k) && refs[k] !== refcountMax) {
        if (active) {
          allocated++
          if (contiguous.next && offset !== contiguous.next) fragmented++
          contiguous.next = offset + cs
          flags?.record(k, hi >= 0x8000_0000)
        }
        refs[k]! += 1
        continue
      }
    }
    // Extended L2 subcluster bitmap as two words (a u64 in a double would round): zero bits 32-63, allocation bits 0-31.
    const zeroBits = g.extendedL2 ? view.getUint32(at + 8) : 0
    const allocBits = g.extendedL2 ? view.getUint32(at + 12) : 0
    if (hi & 0x4000_0000) {
      if (hi & 0x8000_0000) {
        const x = 70 - g.clusterBits
        ctx.report(`ERROR: coffset=0x${(((hi & 0x3fff_ffff) % 2 ** (x - 32)) * 2 ** 32 + lo).toString(16)}: copied flag must never be set for compressed clusters`)
        ctx.counts.corruptions++
      }
      if (hasDataFile) {
        ctx.report(`ERROR compressed cluster ${i} with data file, entry=0x${hexOf(hi, lo)}`)
        ctx.counts.corruptions++
        continue
      }
      if (zeroBits || allocBits) {
        ctx.report(`ERROR compressed cluster ${i} with non-zero subcluster allocation bitmap, entry=0x${hexOf(hi, lo)}`)
        ctx.counts.corruptions++
        continue
      }
      const { hostOffset, length } = compressedRegion(hi, lo, g.clusterBits)
      if (active) {
        ctx.counts.allocatedClusters++
        ctx.counts.compressedClusters++
        ctx.counts.fragmentedClusters++
      }
      incRefs(ctx, hostOffset, length)
      continue
    }
    const zeroFlag = !g.extendedL2 && (lo & 1) !== 0
    const offset = (hi & 0x00ff_ffff) * 2 ** 32 + ((lo & 0xffff_fe00) >>> 0)
    if ((hi & 0x3f00_0000) !== 0 || (lo & 0x1fe) !== 0 || (g.extendedL2 && (lo & 1))) {
      ctx.report(`ERROR found l2 entry with reserved bits set: ${hexOf(hi, lo)}`)
      ctx.counts.corruptions++
    }
    const normal = offset !== 0 || (hasDataFile && (hi & 0x8000_0000) !== 0)
    if (!normal) {
      if (g.extendedL2 && allocBits !== 0 && !zeroFlag) {
        ctx.report('ERROR: Unallocated cluster has non-zero subcluster allocation map')
        ctx.counts.corruptions++
      }
      continue
    }
    if (g.extendedL2 && (zeroBits & allocBits) !== 0) {
      ctx.counts.corruptions++
      ctx.report(`ERROR offset=${offset.toString(16)}: Allocated cluster has corrupted subcluster allocation bitmap`)
    }
    if (active) {
      ctx.counts.allocatedClusters++
      if (contiguous.next && offset !== contiguous.next) ctx.counts.fragmentedClusters++
      contiguous.next = offset + g.clusterSize
      flags?.record(offset / g.clusterSize, (hi & 0x8000_0000) !== 0)
    }
    if (offset % g.clusterSize !== 0) {
      ctx.counts.corruptions++
      const containsData = g.extendedL2 ? allocBits !== 0 : !zeroFlag
      ctx.report(containsData
        ? `ERROR offset=${offset.toString(16)}: Data cluster is not properly aligned; L2 entry corrupted.`
        : `ERROR offset=${offset.toString(16)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`)
    }
    if (!hasDataFile) incRefs(ctx, offset, g.clusterSize)
  }
  ctx.counts.allocatedClusters += allocated
  ctx.counts.fragmentedClusters += fragmented
}

/** check_refcounts_l1: an L1 table, its L2 tables and their clusters. */
async function checkL1(ctx: RefContext, shared: SharedTables, l1Offset: number, l1Size: number, active: boolean): Promise<void> {
  const g = ctx.layout.geometry
  incRefs(ctx, l1Offset, l1Size * 8)
  if (l1Size === 0) return
  const view = await readOrCount(ctx, l1Offset, l1Size * 8)
  if (!view) return
  const l2OffsetAt = (i: number): number => (view.getUint32(i * 8) & 0x00ff_ffff) * 2 ** 32 + ((view.getUint32(i * 8 + 4) & 0xffff_fe00) >>> 0)
  const counted = (l2Offset: number): boolean => l2Offset !== 0 && l2Offset + g.clusterSize <= ctx.fileSize + g.clusterSize
  const deferrable = (l2Offset: number): boolean => !active && shared.clean.has(l2Offset)
  // First the tables this pass will read, so that they can be read ahead; then the pass itself,
  // in QEMU's order (each L1 entry's reports, then its table's).
  const toRead: number[] = []
  for (let i = 0; i < l1Size; i++) {
    const l2Offset = l2OffsetAt(i)
    if (counted(l2Offset) && !deferrable(l2Offset)) toRead.push(l2Offset)
  }
  const tables = new TableReader(toRead, g.clusterSize, (offset, buffer) => readOrCount(ctx, offset, g.clusterSize, buffer))
  const cleanNow: number[] = []
  for (let i = 0; i < l1Size; i++) {
    ctx.progress?.add(1)
    const hi = view.getUint32(i * 8)
    const lo = view.getUint32(i * 8 + 4)
    if (hi === 0 && lo === 0) continue
    if ((hi & 0x7f00_0000) !== 0 || (lo & 0x1ff) !== 0) {
      ctx.report(`ERROR found L1 entry with reserved bits set: ${hexOf(hi, lo)}`)
      ctx.counts.corruptions++
    }
    const l2Offset = l2OffsetAt(i)
    incRefs(ctx, l2Offset, g.clusterSize)
    if (l2Offset % g.clusterSize !== 0) {
      ctx.report(`ERROR l2_offset=${l2Offset.toString(16)}: Table is not cluster aligned; L1 entry corrupted`)
      ctx.counts.corruptions++
    }
    if (!counted(l2Offset)) continue
    if (deferrable(l2Offset)) {
      shared.deferred.set(l2Offset, (shared.deferred.get(l2Offset) ?? 0) + 1)
      continue
    }
    const table = await tables.next()
    if (!table) continue
    const before = ctx.counts.corruptions + ctx.counts.checkErrors
    checkL2(ctx, table, active)
    if (ctx.counts.corruptions + ctx.counts.checkErrors === before) cleanNow.push(l2Offset)
  }
  for (const offset of cleanNow) shared.clean.add(offset)
}

/** The references of a table counted before without a report, `times` more times. */
function addTableRefs(ctx: RefContext, view: DataView, times: number): void {
  const g = ctx.layout.geometry
  const cs = g.clusterSize
  for (let i = 0; i < g.l2Entries; i++) {
    const at = i * g.l2EntrySize
    const hi = view.getUint32(at)
    const lo = view.getUint32(at + 4)
    if (hi & 0x4000_0000) {
      const { hostOffset, length } = compressedRegion(hi, lo, g.clusterBits)
      for (let n = 0; n < times; n++) incRefs(ctx, hostOffset, length)
      continue
    }
    const offset = (hi & 0x00ff_ffff) * 2 ** 32 + ((lo & 0xffff_fe00) >>> 0)
    if (offset === 0 || ctx.layout.hasDataFile) continue
    const k = offset / cs
    if (k < ctx.refs.length && ctx.refs[k]! + times <= ctx.refcountMax) ctx.refs[k]! += times
    else for (let n = 0; n < times; n++) incRefs(ctx, offset, cs)
  }
}

/** calculate_refcounts without the refcount blocks (those come in check_refblocks). */
export async function countReferences(ctx: RefContext): Promise<void> {
  const h = ctx.layout.header
  const cs = ctx.layout.geometry.clusterSize
  incRefs(ctx, 0, cs) // header
  const shared: SharedTables = { clean: new Set(), deferred: new Map() }
  await checkL1(ctx, shared, h.l1TableOffset, h.l1Size, true)
  for (const snap of ctx.snapshots) {
    // QEMU skips a snapshot whose L1 table is over the 32 MiB cap: its size is the attacker's.
    if (snap.l1Size * 8 > MAX_L1_BYTES) {
      ctx.report(`ERROR snapshot ${snap.id} (${snap.name}) l1_size=0x${snap.l1Size.toString(16)}: L1 size is too large; snapshot table entry corrupted`)
      ctx.counts.corruptions++
      continue
    }
    await checkL1(ctx, shared, snap.l1TableOffset, snap.l1Size, false)
  }
  const deferred = [...shared.deferred]
  const tables = new TableReader(deferred.map(([offset]) => offset), cs, (offset, buffer) => readOrCount(ctx, offset, cs, buffer))
  for (const [, times] of deferred) {
    const table = await tables.next()
    if (table) addTableRefs(ctx, table, times)
  }
  let tableSize = 0
  for (const snap of ctx.snapshots) {
    tableSize = Math.ceil(tableSize / 8) * 8 + SNAPSHOT_HEADER_LENGTH + snap.extraData.length + new TextEncoder().encode(snap.id).length + new TextEncoder().encode(snap.name).length
  }
  incRefs(ctx, h.snapshotsOffset, tableSize)
  incRefs(ctx, h.refcountTableOffset, h.refcountTableClusters * cs)
  if (h.cryptoHeader) incRefs(ctx, h.cryptoHeader.offset, h.cryptoHeader.length)
  await countBitmaps(ctx)
}

/** Bitmap directory, bitmap tables and their data clusters (qcow2_check_bitmaps_refcounts). */
async function countBitmaps(ctx: RefContext): Promise<void> {
  const h = ctx.layout.header
  const ext = h.bitmaps
  if (!ext || (h.autoclearFeatures & 1n) === 0n) return
  const cs = ctx.layout.geometry.clusterSize
  incRefs(ctx, ext.directoryOffset, ext.directorySize)
  const dir = await readOrCount(ctx, ext.directoryOffset, ext.directorySize)
  if (!dir) return
  let at = 0
  for (let i = 0; i < ext.bitmapCount && at + 24 <= ext.directorySize; i++) {
    const tableOffset = dir.getUint32(at) * 2 ** 32 + dir.getUint32(at + 4)
    const tableSize = dir.getUint32(at + 8)
    const nameSize = dir.getUint16(at + 18)
    const extra = dir.getUint32(at + 20)
    incRefs(ctx, tableOffset, tableSize * 8)
    // QEMU's check_dir_entry caps the table at 2^27 entries and 512 MiB of bitmap clusters.
    const valid = tableSize > 0 && tableSize <= MAX_BITMAP_TABLE_ENTRIES && tableSize * cs <= MAX_BITMAP_PHYS_BYTES
    const table = valid ? await readOrCount(ctx, tableOffset, tableSize * 8) : undefined
    for (let k = 0; table && k < tableSize; k++) {
      const offset = (table.getUint32(k * 8) & 0x00ff_ffff) * 2 ** 32 + ((table.getUint32(k * 8 + 4) & 0xffff_fe00) >>> 0)
      if (offset) incRefs(ctx, offset, cs)
    }
    at = Math.ceil((at + 24 + extra + nameSize) / 8) * 8
  }
}
