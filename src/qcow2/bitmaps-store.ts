// Persistent bitmaps of an image open for writing, as QEMU keeps them (block/qcow2-bitmap.c):
// loaded at open and marked in_use on disk (qcow2_load_dirty_bitmaps), updated in memory by
// writes and by `qimg bitmap`, and stored at close (qcow2_store_persistent_dirty_bitmaps): new
// data clusters and tables, a new directory copy, then the header switched to it, then the old
// clusters freed — a crash at any point leaves the old directory or the new one, plus leaks.
import { ImageError } from '../errors.js'
import type { ReadableStorage, Storage } from '../io/storage.js'
import { DirtyBitmap, loadBitmap, readBitmapTable, storeBitmap } from './bitmap-data.js'
import { FLAG_AUTO, FLAG_IN_USE, encodeBitmapDirectory, hasBitmaps, loadBitmapDirectory, type BitmapEntry } from './bitmaps.js'
import type { Qcow2Layout } from './open.js'
import { AUTOCLEAR_BITMAPS, MAX_BITMAP_DIRECTORY_BYTES, MAX_BITMAPS } from './spec.js'
import type { TableAccess } from './writer.js'
import { inconsistentError } from '../format/bitmap-capability.js'

/** What the set needs of its image: the file, the header (kept current) and a header write. */
export interface BitmapHost {
  storage: Storage
  layout: Qcow2Layout
  /** Writes the whole header cluster from `layout.header`, durably (QEMU's update_header_sync). */
  writeHeader(): Promise<void>
}

/** The image's persistent bitmaps, in QEMU's directory order. */
export class BitmapSet {
  readonly bitmaps: DirtyBitmap[]
  readonly #host: BitmapHost

  private constructor(host: BitmapHost, bitmaps: DirtyBitmap[]) {
    this.#host = host
    this.bitmaps = bitmaps
  }

  /** Loads every bitmap and marks those not in use in_use on disk. */
  static async open(host: BitmapHost): Promise<BitmapSet> {
    const { entries, bitmaps } = await loadBitmaps(host.storage, host.layout)
    const set = new BitmapSet(host, bitmaps)
    if (entries.some((e) => !(e.flags & FLAG_IN_USE))) await set.#markInUse(entries)
    return set
  }

  /** update_ext_header_and_dir_in_place: autoclear off, directory rewritten in place, autoclear on. */
  async #markInUse(entries: BitmapEntry[]): Promise<void> {
    const { storage, layout } = this.#host
    const h = layout.header
    h.autoclearFeatures &= ~AUTOCLEAR_BITMAPS
    await this.#host.writeHeader()
    await storage.write(h.bitmaps!.directoryOffset, encodeBitmapDirectory(entries.map((e) => ({ ...e, flags: e.flags | FLAG_IN_USE }))))
    await storage.flush()
    h.autoclearFeatures |= AUTOCLEAR_BITMAPS
    await this.#host.writeHeader()
  }

  find(name: string): DirtyBitmap | undefined {
    return this.bitmaps.find((b) => b.name === name)
  }

  /** Records a guest write, zero write or discard in every enabled bitmap (bdrv_set_dirty). */
  markDirty(offset: number, length: number): void {
    for (const b of this.bitmaps) if (b.enabled && !b.inconsistent) b.setDirty(offset, length)
  }

  /** Follows a disk resize (only consistent bitmaps can follow: qcow2_truncate_bitmaps_check). */
  checkResizable(): void {
    for (const b of this.bitmaps) if (b.inconsistent) throw inconsistentError(b.name)
  }

  resize(size: number): void {
    for (const b of this.bitmaps) b.resize(size)
  }

  /** qcow2_co_can_store_new_dirty_bitmap and bdrv_create_dirty_bitmap. */
  add(name: string, granularity: number, index = this.bitmaps.length): DirtyBitmap {
    const { layout } = this.#host
    if (this.find(name)) throw new ImageError('INVALID_ARGUMENT', `Bitmap already exists: ${name}`)
    const bitmap = new DirtyBitmap(name, granularity, layout.header.size, true)
    this.bitmaps.splice(index, 0, bitmap)
    return bitmap
  }

  /** Drops a bitmap from the image now (qcow2_co_remove_persistent_dirty_bitmap). */
  async remove(a: TableAccess, name: string): Promise<void> {
    const bitmap = this.find(name)
    if (!bitmap) return
    this.bitmaps.splice(this.bitmaps.indexOf(bitmap), 1)
    const { storage, layout } = this.#host
    const entries = await loadBitmapDirectory(storage, layout)
    const gone = entries.find((e) => e.name === name)
    if (!gone) return // created in this session: never stored
    await this.#switchDirectory(a, entries.filter((e) => e !== gone))
    await freeBitmapClusters(a, storage, gone)
  }

  /** qcow2_store_persistent_dirty_bitmaps: every consistent bitmap written anew. */
  async store(a: TableAccess): Promise<void> {
    const { storage, layout } = this.#host
    const cs = layout.geometry.clusterSize
    const onDisk = await loadBitmapDirectory(storage, layout)
    const consistent = this.bitmaps.filter((b) => !b.inconsistent)
    if (consistent.length === 0) return
    if (layout.header.version < 3) throw new ImageError('UNSUPPORTED', 'Cannot store dirty bitmaps in qcow2 v2 files')
    const next = onDisk.map((e) => ({ ...e }))
    const dropped: BitmapEntry[] = []
    for (const b of consistent) {
      let e = next.find((x) => x.name === b.name)
      if (e) dropped.push({ ...e })
      else next.push(e = { name: b.name, tableOffset: 0, tableSize: 0, flags: 0, granularityBits: 0 })
      e.flags = b.enabled ? FLAG_AUTO : 0
      e.granularityBits = Math.log2(b.granularity)
    }
    if (next.length > MAX_BITMAPS) throw new ImageError('UNSUPPORTED', 'Too many persistent bitmaps')
    if (encodeBitmapDirectory(next).length > MAX_BITMAP_DIRECTORY_BYTES) throw new ImageError('UNSUPPORTED', 'Bitmap directory is too large')
    const space = { clusterSize: cs, allocate: (n: number) => a.refcounts.allocate(n), write: (at: number, bytes: Uint8Array) => storage.write(at, bytes) }
    for (const e of next) {
      const b = consistent.find((x) => x.name === e.name)
      if (!b) continue
      const stored = await storeBitmap(space, b)
      e.tableOffset = stored.tableOffset
      e.tableSize = stored.tableSize
    }
    await this.#switchDirectory(a, next)
    for (const e of dropped) await freeBitmapClusters(a, storage, e)
  }

  /**
   * update_ext_header_and_dir: the new directory written to new clusters and made durable with
   * its refcounts, then the header points to it, then the old directory is freed.
   */
  async #switchDirectory(a: TableAccess, entries: BitmapEntry[]): Promise<void> {
    const { storage, layout } = this.#host
    const h = layout.header
    const cs = layout.geometry.clusterSize
    const old = hasBitmaps(layout) ? h.bitmaps : undefined
    if (entries.length > 0) {
      const bytes = encodeBitmapDirectory(entries)
      const offset = await a.refcounts.allocate(Math.ceil(bytes.length / cs))
      await storage.write(offset, bytes)
      await a.flush()
      h.autoclearFeatures |= AUTOCLEAR_BITMAPS
      h.bitmaps = { bitmapCount: entries.length, directorySize: bytes.length, directoryOffset: offset }
    } else {
      h.autoclearFeatures &= ~AUTOCLEAR_BITMAPS
      h.bitmaps = undefined
    }
    await this.#host.writeHeader()
    if (old && old.directorySize > 0) a.refcounts.free(old.directoryOffset, Math.ceil(old.directorySize / cs))
  }
}

/** Reads directory and bitmaps (qcow2_load_dirty_bitmaps): those in use come back inconsistent, without data. */
export async function loadBitmaps(storage: ReadableStorage, layout: Qcow2Layout): Promise<{ entries: BitmapEntry[]; bitmaps: DirtyBitmap[] }> {
  const entries = layout.header.version >= 3 ? await loadBitmapDirectory(storage, layout) : []
  const bitmaps: DirtyBitmap[] = []
  for (const e of entries) {
    const bitmap = e.flags & FLAG_IN_USE
      ? new DirtyBitmap(e.name, 2 ** e.granularityBits, layout.header.size, true, true)
      : await loadBitmap(storage, e, layout.geometry.clusterSize, layout.header.size)
    bitmap.enabled = (e.flags & FLAG_AUTO) !== 0
    bitmaps.push(bitmap)
  }
  return { entries, bitmaps }
}

/** free_bitmap_clusters: the data clusters, then the table. */
async function freeBitmapClusters(a: TableAccess, storage: Storage, entry: BitmapEntry): Promise<void> {
  const cs = a.ctx.geometry.clusterSize
  for (const offset of await readBitmapTable(storage, entry, cs)) if (offset > 0) a.refcounts.free(offset)
  a.refcounts.free(entry.tableOffset, Math.ceil((entry.tableSize * 8) / cs))
}
