// `measure`: the file size a new image needs, with QEMU's formulas (qcow2_measure,
// qcow2_calc_prealloc_size, qcow2_refcount_metadata_size; raw_measure).
import type { BlockDevice } from '../format/device.js'

/** The figures qemu-img measure prints (BlockMeasureInfo). */
export interface MeasureResult {
  required: number
  fullyAllocated: number
  /** Bytes for persistent bitmaps; reported only when source and target support them. */
  bitmaps: number | undefined
}

const roundUp = (value: number, to: number) => Math.ceil(value / to) * to

/** Clusters of refcount table and blocks needed to cover `clusters` clusters (fixed point). */
export function refcountMetadataSize(clusters: number, clusterSize: number, refcountOrder: number): number {
  const perTableCluster = clusterSize / 8
  const perBlock = (clusterSize * 8) / 2 ** refcountOrder
  let table = 0
  let blocks = 0
  let n = 0
  let last: number
  do {
    last = n
    blocks = Math.ceil((clusters + table + blocks) / perBlock)
    table = Math.ceil(blocks / perTableCluster)
    n = clusters + blocks + table
  } while (n !== last)
  return (blocks + table) * clusterSize
}

/** File size of a fully preallocated qcow2 image of `totalSize` bytes. */
export function qcow2PreallocSize(totalSize: number, clusterSize: number, refcountOrder: number, extendedL2: boolean): number {
  const l2EntrySize = extendedL2 ? 16 : 8
  const alignedTotal = roundUp(totalSize, clusterSize)
  let meta = clusterSize // header
  let l2Entries = alignedTotal / clusterSize
  l2Entries = roundUp(l2Entries, clusterSize / l2EntrySize)
  meta += l2Entries * l2EntrySize
  let l1Entries = (l2Entries * l2EntrySize) / clusterSize
  l1Entries = roundUp(l1Entries, clusterSize / 8)
  meta += l1Entries * 8
  meta += refcountMetadataSize((meta + alignedTotal) / clusterSize, clusterSize, refcountOrder)
  return meta + alignedTotal
}

/** Target parameters for a qcow2 measurement. */
export interface Qcow2MeasureTarget {
  clusterSize: number
  refcountBits: number
  extendedL2: boolean
  preallocation: 'off' | 'metadata' | 'falloc' | 'full'
  hasBackingFile: boolean
  version: number
  /**
   * Bytes of the LUKS header a LUKS-encrypted target starts with (0 or absent: none). Rounded
   * up to whole clusters, it adds to both figures, as in qcow2_measure.
   */
  luksHeaderLength?: number | undefined
}

/** qcow2_measure: from a virtual size, or from a source image's allocation. */
export async function measureQcow2(target: Qcow2MeasureTarget, source: { size: number } | { device: BlockDevice }): Promise<MeasureResult> {
  const cs = target.clusterSize
  let virtualSize: number
  let required = 0
  let bitmaps: number | undefined
  if ('device' in source) {
    const device = source.device
    const ssize = device.size
    virtualSize = roundUp(ssize, cs)
    if (target.hasBackingFile) {
      required = virtualSize
    } else {
      let pnum = 0
      for (let offset = 0; offset < ssize; offset += pnum) {
        const status = await device.blockStatus(offset, ssize - offset)
        pnum = status.length
        if (status.zero) continue
        if (status.data && status.present) {
          // QEMU's arithmetic: extend to the cluster end, count from the cluster start.
          pnum = roundUp(offset + pnum, cs) - offset
          required += (offset % cs) + pnum
        }
      }
    }
    // Only a v3 qcow2 source can carry persistent bitmaps (and a v3 target take them).
    const info = device.driver.format === 'qcow2' ? await device.info() : undefined
    const specific = info?.formatSpecific
    if (target.version >= 3 && specific?.type === 'qcow2' && !('members' in specific) && specific.compat === '1.1') {
      bitmaps = bitmapsSize(specific.bitmaps ?? [], ssize, cs)
    }
  } else {
    virtualSize = roundUp(roundUp(source.size, 512), cs)
  }
  if (target.preallocation === 'full' || target.preallocation === 'falloc') required = virtualSize
  const luksPayload = roundUp(target.luksHeaderLength ?? 0, cs)
  const fullyAllocated = luksPayload + qcow2PreallocSize(virtualSize, cs, Math.log2(target.refcountBits), target.extendedL2)
  return { required: fullyAllocated - virtualSize + required, fullyAllocated, bitmaps }
}

/** qcow2_get_persistent_dirty_bitmap_size: tables, data clusters and the directory. */
function bitmapsSize(bitmaps: readonly { name: string; granularity: number }[], virtualSize: number, cs: number): number {
  let size = 0
  let directory = 0
  for (const b of bitmaps) {
    const bits = Math.ceil(virtualSize / b.granularity)
    const clusters = Math.ceil(bits / (cs * 8))
    size += clusters * cs + roundUp(clusters * 8, cs)
    directory += roundUp(24 + new TextEncoder().encode(b.name).length, 8)
  }
  return size + roundUp(directory, cs)
}

/** raw_measure: the size itself (rounded to sectors without a source). */
export function measureRaw(source: { size: number } | { device: BlockDevice }): MeasureResult {
  const required = 'device' in source ? source.device.size : roundUp(source.size, 512)
  return { required, fullyAllocated: required, bitmaps: undefined }
}
