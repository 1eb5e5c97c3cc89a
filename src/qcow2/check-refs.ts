// Counting references (QEMU's calculate_refcounts): every structure that uses a host cluster —
// header, L1 and L2 tables of the active state and of each snapshot, data and compressed
// clusters, snapshot table, refcount table and blocks, encryption header, bitmaps — adds one
// to an in-memory refcount array, reporting malformed entries as it goes.
import type { ReadableStorage } from '../io/storage.js'
import type { Qcow2Layout } from './open.js'
import type { Snapshot } from './snapshot.js'
import { MAX_BITMAP_PHYS_BYTES, MAX_BITMAP_TABLE_ENTRIES, MAX_L1_BYTES, SNAPSHOT_HEADER_LENGTH } from './spec.js'

/** Counts the check reports (BdrvCheckResult). */
export interface CheckCounts {
  corruptions: number
  leaks: number
  checkErrors: number
  corruptionsFixed: number
  leaksFixed: number
  allocatedClusters: number
  fragmentedClusters: number
  compressedClusters: number
}

/** What the counting pass needs, and where it reports. */
export interface RefContext {
  storage: ReadableStorage
  layout: Qcow2Layout
  snapshots: readonly Snapshot[]
  fileSize: number
  counts: CheckCounts
  report(line: string): void
  /** Computed references per host cluster (grown on demand). */
  refs: Float64Array
  /** True when the refcount structure itself is broken and must be rebuilt. */
  rebuild: boolean
  refcountMax: number
}

/** A u64 given as two u32 halves in hex, as printf's PRIx64 prints it (no float rounding). */
export const hexOf = (hi: number, lo: number) => (hi === 0 ? lo.toString(16) : hi.toString(16) + lo.toString(16).padStart(8, '0'))

/** qcow2_inc_refcounts_imrt: one more reference to each cluster of `[offset, offset+size)`. */
export function incRefs(ctx: RefContext, offset: number, size: number): void {
  if (size <= 0) return
  const cs = ctx.layout.geometry.clusterSize
  if (offset + size - ctx.fileSize >= cs) {
    ctx.report(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${offset.toString(16)} size 0x${size.toString(16)}`)
    ctx.counts.corruptions++
    return // QEMU counts nothing for such a region
  }
  const first = Math.floor(offset / cs)
  const last = Math.floor((offset + size - 1) / cs)
  for (let k = first; k <= last; k++) {
    if (k >= ctx.refs.length) {
      if (k > 2 ** 31) { ctx.counts.checkErrors++; return }
      const grown = new Float64Array(k + 1) // QEMU's nb_clusters grows to exactly k + 1
      grown.set(ctx.refs)
      ctx.refs = grown
    }
    if (ctx.refs[k] === ctx.refcountMax) {
      ctx.report(`ERROR: overflow cluster offset=0x${(k * cs).toString(16)}`)
      ctx.report('Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing')
      ctx.counts.corruptions++
      continue
    }
    ctx.refs[k]! += 1
  }
}

async function readOrCount(ctx: RefContext, offset: number, length: number): Promise<DataView | undefined> {
  try {
    const bytes = await ctx.storage.read(offset, Math.min(length, Math.max(0, ctx.fileSize - offset)))
    const full = new Uint8Array(length)
    full.set(bytes)
    return new DataView(full.buffer)
  } catch {
    ctx.counts.checkErrors++
    return undefined
  }
}

/** check_refcounts_l2: references of one L2 table's clusters. */
async function checkL2(ctx: RefContext, l2Offset: number, active: boolean): Promise<void> {
  // QEMU tracks contiguity within one L2 table only.
  const contiguous = { next: 0 }
  const g = ctx.layout.geometry
  const view = await readOrCount(ctx, l2Offset, g.clusterSize)
  if (!view) return
  const hasDataFile = ctx.layout.hasDataFile
  for (let i = 0; i < g.l2Entries; i++) {
    const at = i * g.l2EntrySize
    const hi = view.getUint32(at)
    const lo = view.getUint32(at + 4)
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
      const x = 70 - g.clusterBits
      const hostOffset = ((hi & 0x3fff_ffff) % 2 ** (x - 32)) * 2 ** 32 + lo
      const sectors = Math.floor((hi & 0x3fff_ffff) / 2 ** (x - 32)) % 2 ** (g.clusterBits - 8) + 1
      if (active) {
        ctx.counts.allocatedClusters++
        ctx.counts.compressedClusters++
        ctx.counts.fragmentedClusters++
      }
      incRefs(ctx, hostOffset, sectors * 512 - (hostOffset % 512))
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
}

/** check_refcounts_l1: an L1 table, its L2 tables and their clusters. */
export async function checkL1(ctx: RefContext, l1Offset: number, l1Size: number, active: boolean): Promise<void> {
  const g = ctx.layout.geometry
  incRefs(ctx, l1Offset, l1Size * 8)
  if (l1Size === 0) return
  const view = await readOrCount(ctx, l1Offset, l1Size * 8)
  if (!view) return
  for (let i = 0; i < l1Size; i++) {
    const hi = view.getUint32(i * 8)
    const lo = view.getUint32(i * 8 + 4)
    if (hi === 0 && lo === 0) continue
    if ((hi & 0x7f00_0000) !== 0 || (lo & 0x1ff) !== 0) {
      ctx.report(`ERROR found L1 entry with reserved bits set: ${hexOf(hi, lo)}`)
      ctx.counts.corruptions++
    }
    const l2Offset = (hi & 0x00ff_ffff) * 2 ** 32 + ((lo & 0xffff_fe00) >>> 0)
    incRefs(ctx, l2Offset, g.clusterSize)
    if (l2Offset % g.clusterSize !== 0) {
      ctx.report(`ERROR l2_offset=${l2Offset.toString(16)}: Table is not cluster aligned; L1 entry corrupted`)
      ctx.counts.corruptions++
    }
    if (l2Offset + g.clusterSize > ctx.fileSize + g.clusterSize || l2Offset === 0) continue
    await checkL2(ctx, l2Offset, active)
  }
}

/** calculate_refcounts without the refcount blocks (those come in check_refblocks). */
export async function countReferences(ctx: RefContext): Promise<void> {
  const h = ctx.layout.header
  const cs = ctx.layout.geometry.clusterSize
  incRefs(ctx, 0, cs) // header
  await checkL1(ctx, h.l1TableOffset, h.l1Size, true)
  for (const snap of ctx.snapshots) {
    // QEMU skips a snapshot whose L1 table is over the 32 MiB cap: its size is the attacker's.
    if (snap.l1Size * 8 > MAX_L1_BYTES) {
      ctx.report(`ERROR snapshot ${snap.id} (${snap.name}) l1_size=0x${snap.l1Size.toString(16)}: L1 size is too large; snapshot table entry corrupted`)
      ctx.counts.corruptions++
      continue
    }
    await checkL1(ctx, snap.l1TableOffset, snap.l1Size, false)
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
