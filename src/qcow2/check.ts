// `check` (QEMU's qcow2_check_refcounts and check_oflag_copied): rebuild refcounts in memory
// from every reference, compare with the stored ones, classify corruptions and leaks as
// qemu-img does, and repair (-r leaks | all) by fixing refcounts, rebuilding the refcount
// structure when it is itself broken, and fixing COPIED flags.
import { isWritable, type ReadableStorage, type Storage } from '../io/storage.js'
import { ImageError } from '../errors.js'
import { CopiedFlags, hexOf, incRefs, readAhead, refArrayFor, type CheckCounts, type RefArray, type RefContext } from './check-refs.js'
import { countReferences } from './check-count.js'
import { getRefcountEntry } from './refcount-read.js'
import { setRefcountEntry } from './refcount.js'
import { writeHeaderPointer } from './header-encode.js'
import { rebuildRefcountStructure } from './refcount-rebuild.js'
import { loadLayout, type Qcow2Layout } from './open.js'
import { loadSnapshotTable } from './snapshot.js'
import * as spec from './spec.js'
import type { ProgressMeter } from '../commands/progress-meter.js'

/** What qemu-img check reports (ImageCheck). */
export interface CheckResult extends CheckCounts {
  totalClusters: number
  imageEndOffset: number
  /** Set when the check could not complete (qemu-img: "Check failed: …"). */
  failed?: string
}

/** `-r leaks` or `-r all`. */
export type RepairMode = 'leaks' | 'all'

/** Stored refcounts, read straight from the file (no cache: the check trusts nothing). */
class StoredRefcounts {
  table: DataView
  blocks = new Map<number, DataView>()
  constructor(readonly storage: ReadableStorage, readonly layout: Qcow2Layout, table: Uint8Array) {
    this.table = new DataView(table.buffer, table.byteOffset, table.byteLength)
    this.perBlock = (layout.geometry.clusterSize * 8) >>> layout.header.refcountOrder
  }
  readonly perBlock: number
  blockOffset(index: number): number {
    if ((index + 1) * 8 > this.table.byteLength) return 0
    const hi = this.table.getUint32(index * 8)
    const lo = this.table.getUint32(index * 8 + 4)
    if ((lo & 0x1ff) !== 0) return 0
    return hi * 2 ** 32 + lo
  }
  async block(offset: number): Promise<DataView> {
    let view = this.blocks.get(offset)
    if (!view) {
      const bytes = await this.storage.read(offset, this.layout.geometry.clusterSize)
      view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      this.blocks.set(offset, view)
    }
    return view
  }
  async get(cluster: number): Promise<number> {
    return this.peek(cluster) ?? this.#load(cluster)
  }
  #lastIndex = -1
  #lastView: DataView | undefined
  /** Drops the blocks read so far: they are read again from the file. */
  forget(): void {
    this.blocks.clear()
    this.#lastIndex = -1
    this.#lastView = undefined
  }
  /** The stored refcount when its block is already loaded (no await on the hot paths). */
  peek(cluster: number): number | undefined {
    const perBlock = this.perBlock
    const index = Math.floor(cluster / perBlock)
    if (index !== this.#lastIndex) {
      const offset = this.blockOffset(index)
      if (offset === 0 || offset % this.layout.geometry.clusterSize !== 0) return 0
      const view = this.blocks.get(offset)
      if (!view) return undefined
      this.#lastIndex = index
      this.#lastView = view
    }
    return getRefcountEntry(this.#lastView!, cluster - index * perBlock, this.layout.header.refcountOrder)
  }
  async #load(cluster: number): Promise<number> {
    const offset = this.blockOffset(Math.floor(cluster / this.perBlock))
    return getRefcountEntry(await this.block(offset), cluster % this.perBlock, this.layout.header.refcountOrder)
  }
  /** Sets a refcount in an existing block and writes the block back. */
  async set(cluster: number, value: number): Promise<boolean> {
    const offset = this.blockOffset(Math.floor(cluster / this.perBlock))
    if (offset === 0) return false
    const view = await this.block(offset)
    setRefcountEntry(view, cluster % this.perBlock, this.layout.header.refcountOrder, value)
    await (this.storage as Storage).write(offset, new Uint8Array(view.buffer, view.byteOffset, view.byteLength))
    return true
  }
}

function emptyCounts(): CheckCounts {
  return { corruptions: 0, leaks: 0, checkErrors: 0, corruptionsFixed: 0, leaksFixed: 0, allocatedClusters: 0, fragmentedClusters: 0, compressedClusters: 0 }
}

async function loadState(storage: ReadableStorage) {
  const layout = await loadLayout(storage)
  const h = layout.header
  const snapshots = await loadSnapshotTable(storage, h.snapshotsOffset, h.snapshotCount, h.version, layout.geometry.clusterSize)
  const cs = layout.geometry.clusterSize
  const tableBytes = Math.min(h.refcountTableClusters * cs, Math.max(0, layout.fileSize - h.refcountTableOffset))
  const stored = new StoredRefcounts(storage, layout, await storage.read(h.refcountTableOffset, tableBytes - (tableBytes % 8)))
  return { layout, snapshots, stored }
}

/** check_refblocks: references of the refcount blocks themselves, and their sanity. */
async function countRefblocks(ctx: RefContext, stored: StoredRefcounts, fix: RepairMode | undefined): Promise<void> {
  const cs = ctx.layout.geometry.clusterSize
  const entries = stored.table.byteLength / 8
  for (let i = 0; i < entries; i++) {
    const hi = stored.table.getUint32(i * 8)
    const lo = stored.table.getUint32(i * 8 + 4)
    const offset = hi * 2 ** 32 + ((lo & 0xffff_fe00) >>> 0)
    if (lo & 0x1ff) {
      ctx.report(`ERROR refcount table entry ${i} has reserved bits set`)
      ctx.counts.corruptions++
      ctx.rebuild = true
      continue
    }
    if (offset === 0) continue
    if (offset % cs !== 0) {
      ctx.report(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`)
      ctx.counts.corruptions++
      ctx.rebuild = true
      continue
    }
    if (offset / cs >= Math.ceil(ctx.fileSize / cs)) {
      ctx.counts.corruptions++
      ctx.report(`${fix === 'all' ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`)
      if (fix === 'all') ctx.rebuild = true
      continue
    }
    incRefs(ctx, offset, cs)
    if (ctx.refs[offset / cs] !== 1) {
      ctx.report(`ERROR refcount block ${i} refcount=${ctx.refs[offset / cs]}`)
      ctx.counts.corruptions++
      ctx.rebuild = true
    }
  }
}

/** compare_refcounts: stored vs computed, fixing what `fix` allows. */
async function compareRefcounts(ctx: RefContext, stored: StoredRefcounts, fix: RepairMode | 'leaks-only' | undefined): Promise<number> {
  const cs = ctx.layout.geometry.clusterSize
  const clusters = Math.max(Math.ceil(ctx.fileSize / cs), ctx.refs.length)
  const flags = fix === undefined ? ctx.copiedFlags : undefined
  let highest = 0
  ctx.progress?.phase('refcounts', clusters * cs, { index: 1, count: 3 })
  for (let i = 0; i < clusters; i++) {
    // Reported every 4096 clusters: a meter call per cluster would cost more than the check.
    if (i % 4096 === 4095) ctx.progress?.add(4096 * cs)
    let refcount1: number
    try {
      refcount1 = stored.peek(i) ?? await stored.get(i)
    } catch (e) {
      ctx.report(`Can't get refcount for cluster ${i}: ${(e as Error).message}`)
      ctx.counts.checkErrors++
      if (flags) flags.unknown = true
      continue
    }
    const refcount2 = ctx.refs[i] ?? 0
    flags?.compare(i, refcount1)
    if (refcount1 > 0 || refcount2 > 0) highest = i
    if (refcount1 === refcount2) continue
    let fixed: 'leaks' | 'corruptions' | undefined
    if (refcount1 === 0) ctx.rebuild = true
    else if (refcount1 > refcount2 && fix !== undefined) fixed = 'leaks'
    else if (refcount1 < refcount2 && fix === 'all') fixed = 'corruptions'
    ctx.report(`${fixed ? 'Repairing' : refcount1 < refcount2 ? 'ERROR' : 'Leaked'} cluster ${i} refcount=${refcount1} reference=${refcount2}`)
    if (fixed && await stored.set(i, refcount2)) {
      // A cluster freed by the repair is discarded, as update_refcount does (QCOW2_DISCARD_ALWAYS).
      if (refcount2 === 0) await (ctx.storage as Storage).discard?.(i * cs, cs)
      if (fixed === 'leaks') ctx.counts.leaksFixed++
      else ctx.counts.corruptionsFixed++
      continue
    }
    if (refcount1 < refcount2) ctx.counts.corruptions++
    else ctx.counts.leaks++
  }
  ctx.progress?.add(clusters * cs - Math.floor(clusters / 4096) * 4096 * cs)
  return highest
}

/** rebuild_refcount_structure: a new structure from the computed references, then the header switch. */
async function rebuildRefcounts(ctx: RefContext, storage: Storage): Promise<void> {
  const cs = ctx.layout.geometry.clusterSize
  const { tableOffset, tableClusters } = await rebuildRefcountStructure(storage, ctx.refs, cs, ctx.layout.header.refcountOrder)
  await writeHeaderPointer(storage, { field: 'reftable', offset: tableOffset, clusters: tableClusters })
}

/** check_oflag_copied: COPIED must be set exactly when the stored refcount is 1. */
async function checkCopied(ctx: RefContext, stored: StoredRefcounts, repair: boolean, dataEntriesChecked = false): Promise<void> {
  const h = ctx.layout.header
  const g = ctx.layout.geometry
  if (h.l1Size === 0) return
  const l1Bytes = await ctx.storage.read(h.l1TableOffset, h.l1Size * 8)
  const l1 = new DataView(l1Bytes.buffer, l1Bytes.byteOffset, l1Bytes.byteLength)
  const tables: { index: number; l2Offset: number }[] = []
  for (let i = 0; i < h.l1Size; i++) {
    const hi = l1.getUint32(i * 8)
    const lo = l1.getUint32(i * 8 + 4)
    const l2Offset = (hi & 0x00ff_ffff) * 2 ** 32 + ((lo & 0xffff_fe00) >>> 0)
    if (!l2Offset || l2Offset % g.clusterSize || l2Offset + g.clusterSize > ctx.fileSize) continue
    tables.push({ index: i, l2Offset })
  }
  const read = async (offset: number, buffer: Uint8Array) => {
    if (ctx.storage.readInto) await ctx.storage.readInto(offset, buffer)
    else buffer.set(await ctx.storage.read(offset, buffer.length))
    return buffer
  }
  /** The L1 entry's own flag: its L2 table's refcount. */
  const checkTableFlag = async ({ index: i, l2Offset }: { index: number; l2Offset: number }) => {
    const hi = l1.getUint32(i * 8)
    const lo = l1.getUint32(i * 8 + 4)
    const refcount = await stored.get(l2Offset / g.clusterSize)
    const copied = (hi & 0x8000_0000) !== 0
    if ((refcount === 1) !== copied) {
      ctx.counts.corruptions++
      ctx.report(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hexOf(hi, lo)} refcount=${refcount}`)
      if (repair) {
        l1.setUint32(i * 8, refcount === 1 ? (hi | 0x8000_0000) >>> 0 : (hi & 0x7fff_ffff) >>> 0)
        await (ctx.storage as Storage).write(h.l1TableOffset + i * 8, l1Bytes.subarray(i * 8, i * 8 + 8))
        ctx.counts.corruptions--
        ctx.counts.corruptionsFixed++
      }
    }
  }
  if (dataEntriesChecked) {
    // The data entries' flags were found right while counting (CopiedFlags): tables only.
    for (const table of tables) await checkTableFlag(table)
    return
  }
  await readAhead(tables.map((t) => t.l2Offset), g.clusterSize, read, async (l2Bytes, n) => {
    await checkTableFlag(tables[n]!)
    const l2 = new DataView(l2Bytes.buffer, l2Bytes.byteOffset, l2Bytes.byteLength)
    const hasDataFile = ctx.layout.hasDataFile
    let dirty = 0
    for (let j = 0; j < g.l2Entries; j++) {
      const at = j * g.l2EntrySize
      const ehi = l2.getUint32(at)
      const elo = l2.getUint32(at + 4)
      if (ehi & 0x4000_0000) continue // compressed
      const offset = (ehi & 0x00ff_ffff) * 2 ** 32 + ((elo & 0xffff_fe00) >>> 0)
      const normal = offset !== 0 || (hasDataFile && (ehi & 0x8000_0000) !== 0)
      if (!normal) continue
      const cluster = Math.floor(offset / g.clusterSize)
      const rc = hasDataFile ? 1 : stored.peek(cluster) ?? await stored.get(cluster)
      const ecopied = (ehi & 0x8000_0000) !== 0
      if ((rc === 1) !== ecopied) {
        ctx.counts.corruptions++
        ctx.report(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED data cluster: l2_entry=${hexOf(ehi, elo)} refcount=${rc}`)
        if (repair) {
          l2.setUint32(at, rc === 1 ? (ehi | 0x8000_0000) >>> 0 : (ehi & 0x7fff_ffff) >>> 0)
          dirty++
        }
      }
    }
    if (dirty > 0) {
      await (ctx.storage as Storage).write(tables[n]!.l2Offset, l2Bytes)
      ctx.counts.corruptions -= dirty
      ctx.counts.corruptionsFixed += dirty
    }
  })
}

/**
 * References of every cluster in use except the refcount structure itself (for rewriting that
 * structure with another refcount width).
 */
export async function computeReferences(storage: ReadableStorage): Promise<{ refs: RefArray; layout: Qcow2Layout; counts: CheckCounts }> {
  const { layout, snapshots } = await loadState(storage)
  const cs = layout.geometry.clusterSize
  const ctx: RefContext = {
    storage, layout: { ...layout, header: { ...layout.header, refcountTableClusters: 0 } }, snapshots, fileSize: layout.fileSize,
    counts: emptyCounts(), report: () => undefined, refs: new Float64Array(Math.ceil(layout.fileSize / cs)), rebuild: false, refcountMax: Number.MAX_SAFE_INTEGER,
  }
  await countReferences(ctx)
  return { refs: ctx.refs, layout, counts: ctx.counts }
}

/** One pass of qcow2_check: counts, compares, optionally repairs. */
async function checkPass(storage: ReadableStorage, fix: RepairMode | undefined, report: (line: string) => void, progress: ProgressMeter | undefined): Promise<CheckResult> {
  const { layout, snapshots, stored } = await loadState(storage)
  const cs = layout.geometry.clusterSize
  const fresh = (): RefContext => ({
    storage, layout, snapshots, fileSize: layout.fileSize, counts: emptyCounts(), report,
    refs: refArrayFor(layout.header.refcountOrder, Math.ceil(layout.fileSize / cs)), rebuild: false, refcountMax: 2 ** (2 ** layout.header.refcountOrder) - 1,
  })
  // With an external data file every data entry must carry COPIED (refcount 1): the full pass.
  let ctx: RefContext = { ...fresh(), copiedFlags: layout.hasDataFile ? undefined : new CopiedFlags(Math.ceil(layout.fileSize / cs)) }
  // Progress: the L1 entries walked ("references"), the clusters compared ("refcounts"), then the
  // OFLAG_COPIED pass ("copied"); a repair's further passes report nothing more.
  const l1Entries = layout.header.l1Size + snapshots.reduce((n, s) => n + (s.l1Size * 8 > spec.MAX_L1_BYTES ? 0 : s.l1Size), 0)
  progress?.phase('references', l1Entries, { index: 0, count: 3 })
  ctx.progress = progress
  await countReferences(ctx)
  await countRefblocks(ctx, stored, fix)
  const preCompare = { ...ctx.counts }
  let highest = await compareRefcounts(ctx, stored, undefined)
  ctx.progress = undefined
  progress?.phase('copied', 1, { index: 2, count: 3 })
  if (ctx.rebuild && fix === 'all') {
    const old = { ...ctx.counts }
    report('Rebuilding refcount structure')
    await rebuildRefcounts(ctx, storage as Storage)
    // The references are counted again against the new structure (its old one is now leaked).
    const again = await loadState(storage)
    ctx = { ...fresh(), layout: again.layout, fileSize: again.layout.fileSize }
    await countReferences(ctx)
    await countRefblocks(ctx, again.stored, undefined)
    // Leaks that repair cannot fix were made by the rebuild itself.
    const silent: RefContext = { ...ctx, counts: emptyCounts(), report }
    highest = await compareRefcounts(silent, again.stored, 'leaks')
    const counts = ctx.counts
    ctx.counts = {
      ...old, corruptions: counts.corruptions, leaks: counts.leaks, checkErrors: old.checkErrors + counts.checkErrors,
    }
    if (counts.corruptions < old.corruptions) ctx.counts.corruptionsFixed += old.corruptions - counts.corruptions
    if (counts.leaks < old.leaks) ctx.counts.leaksFixed += old.leaks - counts.leaks
    ctx.counts.leaks += silent.counts.leaks
    await checkCopied(ctx, again.stored, true)
    return finish(ctx, layout, highest)
  }
  let repaired = false // stored refcounts changed
  if (fix) {
    if (ctx.rebuild) {
      report('ERROR need to rebuild refcount structures')
      ctx.counts.checkErrors++
      return { ...finish(ctx, layout, highest), failed: 'Input/output error' }
    }
    if (ctx.counts.leaks || ctx.counts.corruptions) {
      ctx.counts = { ...preCompare }
      stored.forget()
      highest = await compareRefcounts(ctx, stored, fix)
      repaired = true
    }
  }
  const repairCopied = fix === 'all' || (fix === 'leaks' && !ctx.counts.checkErrors && !ctx.counts.corruptions && !ctx.counts.leaks)
  // The flags gathered while counting were compared with the refcounts as stored before any
  // repair: they settle the data entries when nothing was repaired and none disagreed.
  const flags = ctx.copiedFlags
  const dataEntriesChecked = flags !== undefined && !flags.unknown && !flags.mismatch && !repaired
  stored.forget()
  await checkCopied(ctx, stored, repairCopied, dataEntriesChecked)
  return finish(ctx, layout, highest)
}

function finish(ctx: RefContext, layout: Qcow2Layout, highest: number): CheckResult {
  const cs = layout.geometry.clusterSize
  return { ...ctx.counts, totalClusters: Math.ceil(layout.header.size / cs), imageEndOffset: (highest + 1) * cs }
}

/**
 * Checks a QCOW2 image. With `fix`, the storage must be writable; after a repair with no
 * corruption left, the dirty and corrupt bits are cleared (qcow2_mark_clean/consistent).
 * `report` receives the per-cluster diagnostics qemu-img prints to stderr.
 */
export async function checkQcow2(storage: ReadableStorage, options: { fix?: RepairMode | undefined; report?: (line: string) => void; progress?: ProgressMeter | undefined } = {}): Promise<CheckResult> {
  const report = options.report ?? (() => undefined)
  const fix = options.fix
  if (fix && !isWritable(storage)) throw new ImageError('READ_ONLY', `${storage.name}: repairing needs the image opened for writing`)
  const result = await checkPass(storage, fix, report, options.progress)
  if (fix && result.checkErrors === 0 && result.corruptions === 0) {
    const layout = await loadLayout(storage)
    const h = layout.header
    if (h.version >= 3 && (h.incompatibleFeatures & (spec.INCOMPAT_DIRTY | spec.INCOMPAT_CORRUPT))) {
      const bytes = new Uint8Array(8)
      new DataView(bytes.buffer).setBigUint64(0, h.incompatibleFeatures & ~(spec.INCOMPAT_DIRTY | spec.INCOMPAT_CORRUPT))
      await (storage as Storage).write(72, bytes)
    }
    await (storage as Storage).flush()
  }
  return result
}
