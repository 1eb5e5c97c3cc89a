// Reading refcounts ("Reference count"): any width from 1 to 64 bits, big-endian, sub-byte
// widths packed LSB first. Used by check and by the metadata-preallocation heuristic of map.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { decodeReftableEntry } from './entries.js'
import type { Qcow2Layout } from './open.js'

/** Refcount `index` of a refcount block with entries `1 << refcountOrder` bits wide. */
export function getRefcountEntry(view: DataView, index: number, refcountOrder: number): number {
  switch (refcountOrder) {
    case 0: return (view.getUint8(index >>> 3) >>> (index & 7)) & 1
    case 1: return (view.getUint8(index >>> 2) >>> ((index & 3) * 2)) & 3
    case 2: return (view.getUint8(index >>> 1) >>> ((index & 1) * 4)) & 15
    case 3: return view.getUint8(index)
    case 4: return view.getUint16(index * 2)
    case 5: return view.getUint32(index * 4)
    default: {
      const hi = view.getUint32(index * 8)
      // Refcounts above 2^53 cannot be real; report them as the largest safe value.
      return hi >= 0x20_0000 ? Number.MAX_SAFE_INTEGER : hi * 0x1_0000_0000 + view.getUint32(index * 8 + 4)
    }
  }
}

/** Reads refcounts cluster by cluster, caching the refcount table and the last block. */
export class RefcountReader {
  #table: DataView | undefined
  #block: { offset: number; view: DataView } | undefined
  constructor(readonly storage: ReadableStorage, readonly layout: Qcow2Layout) {}

  get entriesPerBlock(): number {
    return (this.layout.geometry.clusterSize * 8) >>> this.layout.header.refcountOrder
  }

  async #loadTable(): Promise<DataView> {
    if (this.#table) return this.#table
    const h = this.layout.header
    const length = h.refcountTableClusters * this.layout.geometry.clusterSize
    const available = Math.max(0, Math.min(length, this.layout.fileSize - h.refcountTableOffset))
    if (available < 8) throw new ImageError('CORRUPT', `${this.storage.name}: refcount table at ${hex(h.refcountTableOffset)} is past end of file`, { offset: h.refcountTableOffset })
    const bytes = await this.storage.read(h.refcountTableOffset, available - (available % 8))
    this.#table = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    return this.#table
  }

  /** Refcount of host cluster `cluster` (0 when no refcount block covers it). */
  async get(cluster: number): Promise<number> {
    const table = await this.#loadTable()
    const perBlock = this.entriesPerBlock
    const tableIndex = Math.floor(cluster / perBlock)
    if ((tableIndex + 1) * 8 > table.byteLength) return 0
    const cs = this.layout.geometry.clusterSize
    const blockOffset = decodeReftableEntry(table.getUint32(tableIndex * 8), table.getUint32(tableIndex * 8 + 4), cs, () => `${this.storage.name}: refcount table entry ${tableIndex}`)
    if (blockOffset === 0) return 0
    if (this.#block?.offset !== blockOffset) {
      if (blockOffset + cs > this.layout.fileSize) throw new ImageError('CORRUPT', `${this.storage.name}: refcount block at ${hex(blockOffset)} runs past end of file`, { offset: blockOffset })
      const bytes = await this.storage.read(blockOffset, cs)
      this.#block = { offset: blockOffset, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) }
    }
    return getRefcountEntry(this.#block.view, cluster % perBlock, this.layout.header.refcountOrder)
  }
}

/**
 * QEMU's qcow2_detect_metadata_preallocation: true when far more clusters are refcounted than
 * the host file really allocates, i.e. data clusters are mostly holes. Block status then asks
 * the file about holes under data clusters.
 */
export async function detectMetadataPreallocation(storage: ReadableStorage, layout: Qcow2Layout): Promise<boolean> {
  const allocated = await storage.allocatedSize?.()
  if (allocated === undefined) return false
  const cs = layout.geometry.clusterSize
  const realClusters = Math.floor(allocated / cs)
  const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2)
  const endCluster = Math.ceil(layout.fileSize / cs)
  const reader = new RefcountReader(storage, layout)
  let count = 0
  // QEMU stops at and answers with `count >= threshold` (not `>`): reaching it is enough.
  for (let i = 0; i < endCluster && count < threshold; i++) {
    if ((await reader.get(i)) !== 0) count++
  }
  return count >= threshold
}
