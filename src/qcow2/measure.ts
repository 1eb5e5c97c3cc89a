// qemu-img measure -O qcow2 (qcow2_measure, qcow2_calc_prealloc_size,
// qcow2_refcount_metadata_size): the options read with qcow2_measure's checks and messages, the
// figures from a virtual size or from a source image's allocation, a LUKS header included.
import { hasPersistentBitmaps } from '../format/bitmap-capability.js'
import { roundUp, type FormatMeasureRequest, type MeasureResult, type MeasureSource } from '../format/measure.js'
import { parseBool, parseOptionNumber, parseOptionSize } from '../format/option-values.js'
import { measureLuksHeader } from '../crypto/luks-measure.js'
import { ImageError } from '../errors.js'
import type { Qcow2SpecificInfo } from './info-json.js'

/** The largest L1 table QEMU accepts (QCOW_MAX_L1_SIZE). */
const MAX_L1_BYTES = 32 * 1024 * 1024

/** qcow2_measure's reading of the -o options, with its own checks and messages. */
function qcow2Target(opts: ReadonlyMap<string, string>) {
  const bad = (message: string) => new ImageError('INVALID_ARGUMENT', message)
  const extendedL2 = opts.has('extended_l2') && parseBool('extended_l2', opts.get('extended_l2')!)
  const clusterSize = opts.has('cluster_size') ? parseOptionSize('cluster_size', opts.get('cluster_size')!) : 65536
  const clusterBits = Math.log2(clusterSize)
  if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) throw bad('Cluster size must be a power of two between 512 and 2048k')
  if (extendedL2 && clusterSize < 16384) throw bad('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes')
  const compat = opts.get('compat')
  if (compat !== undefined && compat !== '0.10' && compat !== '1.1') throw bad(`Invalid compatibility level: '${compat}'`)
  const version = compat === '0.10' ? 2 : 3
  const refcountBits = opts.has('refcount_bits') ? parseOptionNumber('refcount_bits', opts.get('refcount_bits')!) : 16
  if (!Number.isInteger(Math.log2(refcountBits)) || refcountBits > 64) throw bad('Refcount width must be a power of two and may not exceed 64 bits')
  if (version < 3 && refcountBits !== 16) throw bad('Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)')
  const preallocation = opts.get('preallocation') ?? 'off'
  if (!['off', 'metadata', 'falloc', 'full'].includes(preallocation)) throw bad(`invalid parameter value: ${preallocation}`)
  return {
    clusterSize, refcountBits, extendedL2, version,
    preallocation: preallocation as 'off' | 'metadata' | 'falloc' | 'full',
    hasBackingFile: opts.has('backing_file'),
  }
}

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
export async function measureQcow2(target: Qcow2MeasureTarget, source: MeasureSource): Promise<MeasureResult> {
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
    const info = hasPersistentBitmaps(device.driver) ? await device.info() : undefined
    const specific = info?.formatSpecific?.type === 'qcow2' ? info.formatSpecific.data as Qcow2SpecificInfo : undefined
    if (target.version >= 3 && specific?.compat === '1.1') bitmaps = bitmapsSize(specific.bitmaps ?? [], ssize, cs)
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

/** The qcow2 module's measure: the options checked, the L1 table's limit, then the figures. */
export async function measureQcow2Request(request: FormatMeasureRequest): Promise<MeasureResult> {
  const opts = request.options
  const target = { ...qcow2Target(opts), luksHeaderLength: opts.get('encrypt.format') === 'luks' ? measureLuksHeader(opts, 'encrypt.', request.lookupSecret) : 0 }
  if ('size' in request.source) {
    // The L1 table must be able to address the size.
    const cs = target.clusterSize
    const l2Tables = Math.ceil(Math.ceil(request.source.size / cs) / (cs / (target.extendedL2 ? 16 : 8)))
    if (l2Tables * 8 > MAX_L1_BYTES) throw new ImageError('INVALID_ARGUMENT', 'The image size is too large (try using a larger cluster size)')
  }
  return measureQcow2(target, request.source)
}
