// Formatting a new QCOW2 image the way QEMU's qcow2_co_create lays it out: header in cluster 0,
// refcount table in cluster 1, refcount block in cluster 2, then the L1 table grown to the
// virtual size by the allocator (at cluster 3), and optional preallocation.
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import type { Qcow2Header } from './header.js'
import { encodeHeaderCluster } from './header-encode.js'
import { setRefcountEntry } from './refcount.js'
import * as spec from './spec.js'

/** Preallocation modes of qemu-img create -o preallocation=… */
export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full'

/** Creation options with qemu-img's meaning (see `qimg create -o help`). */
export interface Qcow2CreateOptions {
  size: number
  /** '0.10' (v2) or '1.1' (v3, default). */
  compat?: '0.10' | '1.1' | undefined
  clusterSize?: number | undefined
  refcountBits?: number | undefined
  lazyRefcounts?: boolean | undefined
  extendedL2?: boolean | undefined
  preallocation?: Preallocation | undefined
  backingFile?: string | undefined
  backingFormat?: string | undefined
  compressionType?: 'zlib' | 'zstd' | undefined
  dataFile?: string | undefined
  dataFileRaw?: boolean | undefined
}

function bad(message: string): ImageError {
  return new ImageError('INVALID_ARGUMENT', message)
}

/** Validates options as qemu-img does and fills in defaults. */
export function resolveCreateOptions(o: Qcow2CreateOptions): Required<Omit<Qcow2CreateOptions, 'backingFile' | 'backingFormat' | 'dataFile'>> & Pick<Qcow2CreateOptions, 'backingFile' | 'backingFormat' | 'dataFile'> {
  const compat = o.compat ?? '1.1'
  const v3 = compat === '1.1'
  const clusterSize = o.clusterSize ?? 65536
  const clusterBits = Math.log2(clusterSize)
  if (!Number.isInteger(clusterBits) || clusterBits < spec.MIN_CLUSTER_BITS || clusterBits > spec.MAX_CLUSTER_BITS) {
    throw bad(`Cluster size must be a power of two between 512 and 2048k`)
  }
  const refcountBits = o.refcountBits ?? 16
  if (!Number.isInteger(Math.log2(refcountBits)) || refcountBits < 1 || refcountBits > 64) throw bad('Refcount width must be a power of two and may not exceed 64 bits')
  if (!v3 && refcountBits !== 16) throw bad('Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)')
  if (!v3 && o.lazyRefcounts) throw bad('Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)')
  if (!v3 && o.extendedL2) throw bad('Extended L2 entries are only supported with compatibility level 1.1 and above (use compat=1.1 or greater)')
  if (o.extendedL2 && clusterSize < 16384) throw bad('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes')
  if (!v3 && o.dataFile !== undefined) throw bad('Data file is only supported with compatibility level 1.1 and above (use compat=1.1 or greater)')
  if (o.dataFileRaw && o.dataFile === undefined) throw bad("'data_file_raw' requires 'data_file'")
  if (o.dataFileRaw && o.backingFile !== undefined) throw bad('Backing file and data_file_raw=on cannot be used together')
  if ((o.compressionType ?? 'zlib') === 'zstd' && !v3) throw bad('Compression type zstd is only supported with compatibility level 1.1 and above (use compat=1.1 or greater)')
  const preallocation = o.preallocation ?? (o.dataFileRaw ? 'metadata' : 'off')
  if (preallocation !== 'off' && o.backingFile !== undefined && !o.extendedL2) throw bad('Backing file and preallocation can only be used at the same time if extended_l2 is on')
  if (o.backingFormat !== undefined && o.backingFile === undefined) throw bad('Backing format cannot be used without backing file')
  if (o.size % 512 !== 0) throw bad(`Image size must be a multiple of 512 bytes`)
  return {
    size: o.size, compat, clusterSize, refcountBits, lazyRefcounts: o.lazyRefcounts ?? false, extendedL2: o.extendedL2 ?? false,
    preallocation, backingFile: o.backingFile, backingFormat: o.backingFormat, compressionType: o.compressionType ?? 'zlib',
    dataFile: o.dataFile, dataFileRaw: o.dataFileRaw ?? false,
  }
}

/**
 * Writes the skeleton of an empty image (L1 size 0) to `storage`; the caller then opens it for
 * writing and grows the L1 table to the virtual size (see node/create.ts), as QEMU does.
 */
export async function writeSkeleton(storage: Storage, options: Qcow2CreateOptions): Promise<void> {
  const o = resolveCreateOptions(options)
  const cs = o.clusterSize
  const v3 = o.compat === '1.1'
  const refcountOrder = Math.log2(o.refcountBits)
  let incompatible = 0n
  if (o.dataFile !== undefined) incompatible |= spec.INCOMPAT_DATA_FILE
  if (o.compressionType === 'zstd') incompatible |= spec.INCOMPAT_COMPRESSION
  if (o.extendedL2) incompatible |= spec.INCOMPAT_EXTL2
  const header: Qcow2Header = {
    magic: spec.QCOW_MAGIC, version: v3 ? 3 : 2, backingFileOffset: 0, backingFileSize: 0,
    clusterBits: Math.log2(cs), size: 0, cryptMethod: 0, l1Size: 0, l1TableOffset: 0,
    refcountTableOffset: cs, refcountTableClusters: 1, snapshotCount: 0, snapshotsOffset: 0,
    incompatibleFeatures: incompatible,
    compatibleFeatures: o.lazyRefcounts ? spec.COMPAT_LAZY_REFCOUNTS : 0n,
    autoclearFeatures: o.dataFileRaw ? spec.AUTOCLEAR_DATA_FILE_RAW : 0n,
    refcountOrder, headerLength: v3 ? spec.HEADER_V3_LENGTH : spec.HEADER_V2_LENGTH,
    compressionType: o.compressionType === 'zstd' ? spec.COMPRESSION_ZSTD : spec.COMPRESSION_ZLIB,
    extraHeaderBytes: new Uint8Array(0), backingFile: o.backingFile, backingFormat: o.backingFormat,
    dataFile: o.dataFile, featureNames: [], bitmaps: undefined, cryptoHeader: undefined, unknownExtensions: [],
  }
  // QEMU writes the whole header cluster (zero padded), so the file's allocation matches too.
  const headerCluster = new Uint8Array(cs)
  headerCluster.set(encodeHeaderCluster(header))
  const reftable = new Uint8Array(cs)
  new DataView(reftable.buffer).setBigUint64(0, BigInt(2 * cs))
  const refblock = new Uint8Array(cs)
  const blockView = new DataView(refblock.buffer)
  for (let cluster = 0; cluster < 3; cluster++) setRefcountEntry(blockView, cluster, refcountOrder, 1)
  await storage.truncate(0)
  await storage.write(0, headerCluster)
  await storage.write(cs, reftable)
  await storage.write(2 * cs, refblock)
  await storage.truncate(3 * cs)
  await storage.flush()
}
