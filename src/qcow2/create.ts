// Formatting a new QCOW2 image the way QEMU's qcow2_co_create lays it out: header in cluster 0,
// refcount table in cluster 1, refcount block in cluster 2, then the L1 table grown to the
// virtual size by the allocator (at cluster 3), and optional preallocation.
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import type { Qcow2Header } from './header.js'
import { encodeHeaderCluster } from './header-encode.js'
import { l1EntriesFor, makeGeometry } from './geometry.js'
import { setRefcountEntry } from './refcount.js'
import * as spec from './spec.js'
import { resolveLuksOptions, type LuksCreateOptions } from '../crypto/luks.js'

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
  /** Encryption (-o encrypt.format=… or encryption=on, and encrypt.*): LUKS or legacy AES; the secret is passed apart. */
  encrypt?: ({ format: 'luks' | 'aes' } & LuksCreateOptions) | undefined
}

function bad(message: string): ImageError {
  return new ImageError('INVALID_ARGUMENT', message)
}

/** Validates options as qemu-img does (qcow2_co_create's checks, order and messages) and fills in defaults. */
export function resolveCreateOptions(o: Qcow2CreateOptions): Required<Omit<Qcow2CreateOptions, 'backingFile' | 'backingFormat' | 'dataFile' | 'encrypt'>> & Pick<Qcow2CreateOptions, 'backingFile' | 'backingFormat' | 'dataFile' | 'encrypt'> {
  const useV3 = '(use version=v3 or greater)'
  if (o.size % 512 !== 0) throw bad(`Image size must be a multiple of 512 bytes`)
  const compat = o.compat ?? '1.1'
  const v3 = compat === '1.1'
  if (!v3 && o.extendedL2) throw bad(`Extended L2 entries are only supported with compatibility level 1.1 and above ${useV3}`)
  const clusterSize = o.clusterSize ?? 65536
  const clusterBits = Math.log2(clusterSize)
  if (!Number.isInteger(clusterBits) || clusterBits < spec.MIN_CLUSTER_BITS || clusterBits > spec.MAX_CLUSTER_BITS) {
    throw bad(`Cluster size must be a power of two between 512 and 2048k`)
  }
  if (o.extendedL2 && clusterSize < 16384) throw bad('Extended L2 entries are only supported with cluster sizes of at least 16384 bytes')
  if ((o.preallocation ?? 'off') !== 'off' && o.backingFile !== undefined && !o.extendedL2) throw bad('Backing file and preallocation can only be used at the same time if extended_l2 is on')
  if (o.backingFormat !== undefined && o.backingFile === undefined) throw bad('Backing format cannot be used without backing file')
  if (!v3 && o.lazyRefcounts) throw bad(`Lazy refcounts only supported with compatibility level 1.1 and above ${useV3}`)
  const refcountBits = o.refcountBits ?? 16
  if (!Number.isInteger(Math.log2(refcountBits)) || refcountBits < 1 || refcountBits > 64) throw bad('Refcount width must be a power of two and may not exceed 64 bits')
  if (!v3 && refcountBits !== 16) throw bad(`Different refcount widths than 16 bits require compatibility level 1.1 or above ${useV3}`)
  if (o.dataFileRaw && o.dataFile === undefined) throw bad('data-file-raw requires data-file')
  if (o.dataFileRaw && o.backingFile !== undefined) throw bad('Backing file and data-file-raw cannot be used at the same time')
  const preallocation = o.preallocation ?? (o.dataFileRaw ? 'metadata' : 'off')
  if (!v3 && o.dataFile !== undefined) throw bad(`External data files are only supported with compatibility level 1.1 and above ${useV3}`)
  if ((o.compressionType ?? 'zlib') !== 'zlib' && !v3) throw bad(`Non-zlib compression type is only supported with compatibility level 1.1 and above ${useV3}`)
  // Growing the L1 table past QCOW_MAX_L1_SIZE fails (EFBIG), which qemu-img create reports so.
  if (l1EntriesFor(makeGeometry(clusterBits, o.extendedL2 ?? false), o.size) * 8 > spec.MAX_L1_BYTES) {
    throw bad("The image size is too large for file format 'qcow2' (try using a larger cluster size)")
  }
  if (o.size > Number.MAX_SAFE_INTEGER) throw new ImageError('UNSUPPORTED', `image size ${o.size} is above 2^53, beyond what qimg handles exactly`)
  return {
    size: o.size, compat, clusterSize, refcountBits, lazyRefcounts: o.lazyRefcounts ?? false, extendedL2: o.extendedL2 ?? false,
    preallocation, backingFile: o.backingFile, backingFormat: o.backingFormat, compressionType: o.compressionType ?? 'zlib',
    dataFile: o.dataFile, dataFileRaw: o.dataFileRaw ?? false, encrypt: checkEncryption(o.encrypt),
  }
}

/**
 * Encryption options as qemu-img accepts them: LUKS (its options checked) or legacy AES
 * (crypt_method 1, no options of its own). Preallocation is allowed with either, as in QEMU
 * 7.2: the clusters are preallocated before encryption is set up, so they hold plain zeros
 * (which read back decrypted, as noise, in qemu-img as in qimg).
 */
function checkEncryption(encrypt: Qcow2CreateOptions['encrypt']): Qcow2CreateOptions['encrypt'] {
  if (encrypt === undefined) return undefined
  if (encrypt.format === 'aes') return { format: 'aes' }
  resolveLuksOptions(encrypt)
  return encrypt
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
