// A qcow2 layout for writing where the metadata cannot be placed once the data is known but a
// region can be reserved ahead of it (a multipart upload: parts go in any order, so the first one
// may be sent last). The reserved region holds the header, the L1 table, the refcount table and
// refcount blocks sized for the largest file the virtual size allows; data clusters and each L2
// table after the data it maps follow in one stream. Pure: no I/O.
import { setU64, viewOf } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import { encodeHeaderCluster } from './header-encode.js'
import type { Qcow2Header } from './header.js'
import * as spec from './spec.js'
import { refcountCover } from './refcount-cover.js'

/** Where everything of a reserved-metadata image goes. */
export interface ReservedLayout {
  size: number
  clusterBits: number
  clusterBytes: number
  version: 2 | 3
  /** L2 entries per table (qcow2.rst "Cluster mapping": cluster_size / 8). */
  l2Entries: number
  l1Entries: number
  l1Offset: number
  refTableOffset: number
  refTableClusters: number
  refBlocksOffset: number
  refBlocks: number
  /** Clusters of real metadata (header through refcount blocks); the rest of the region is padding. */
  metadataClusters: number
  /** Where the data stream starts: the reserved region's size in bytes. */
  dataOffset: number
}

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b)

/**
 * The layout for `size` guest bytes, clusters of 2^clusterBits, 16-bit refcounts. The region is at
 * least `minRegionBytes` long (an S3 part other than the last has at least 5 MiB).
 */
export function reservedLayout(size: number, clusterBits = 16, version: 2 | 3 = 3, minRegionBytes = 0): ReservedLayout {
  if (clusterBits < spec.MIN_CLUSTER_BITS || clusterBits > spec.MAX_CLUSTER_BITS) throw new ImageError('INVALID_ARGUMENT', `Cluster size must be a power of two between ${2 ** spec.MIN_CLUSTER_BITS} and ${2 ** (spec.MAX_CLUSTER_BITS - 10)}k`)
  const clusterBytes = 2 ** clusterBits
  const l2Entries = clusterBytes / 8
  const guestClusters = ceilDiv(size, clusterBytes)
  const l1Entries = ceilDiv(guestClusters, l2Entries)
  if (l1Entries * 8 > spec.MAX_L1_BYTES) throw new ImageError('INVALID_ARGUMENT', 'Image size is too big for this cluster size: its L1 table would pass 32 MiB')
  const l1Clusters = Math.max(1, ceilDiv(l1Entries * 8, clusterBytes))
  const minRegionClusters = ceilDiv(minRegionBytes, clusterBytes)
  // 16-bit refcounts (refcount_order 4) covering the region itself, every data cluster and every L2 table.
  const regionFor = (refTableClusters: number, refBlocks: number) => Math.max(1 + l1Clusters + refTableClusters + refBlocks, minRegionClusters)
  const { refBlocks, refTableClusters } = refcountCover(clusterBytes, 4, (table, blocks) => regionFor(table, blocks) + guestClusters + l1Entries)
  const regionClusters = regionFor(refTableClusters, refBlocks)
  if (refTableClusters * clusterBytes > spec.MAX_REFTABLE_BYTES) throw new ImageError('INVALID_ARGUMENT', 'Image size is too big for this cluster size: its refcount table would pass 8 MiB')
  const l1Offset = clusterBytes
  const refTableOffset = l1Offset + l1Clusters * clusterBytes
  const refBlocksOffset = refTableOffset + refTableClusters * clusterBytes
  return {
    size, clusterBits, clusterBytes, version, l2Entries, l1Entries, l1Offset, refTableOffset, refTableClusters, refBlocksOffset, refBlocks,
    metadataClusters: 1 + l1Clusters + refTableClusters + refBlocks, dataOffset: regionClusters * clusterBytes,
  }
}

/** The largest file the layout allows: the region, every guest cluster and every L2 table. */
export function reservedMaxBytes(layout: ReservedLayout): number {
  return layout.dataOffset + (ceilDiv(layout.size, layout.clusterBytes) + layout.l1Entries) * layout.clusterBytes
}

/** L2 entry of a standard cluster at `hostOffset` with refcount 1 (QCOW_OFLAG_COPIED, bit 63). */
export function standardL2Entry(hostOffset: number): bigint {
  return BigInt(hostOffset) | (1n << 63n)
}

/**
 * The reserved region's bytes once the stream has ended at `fileEnd`: header, L1 table (entry i
 * the host offset of L2 table i, 0 for none; COPIED set), refcount table and blocks (refcount 1
 * for the metadata and for every cluster of the stream, 0 for the padding), zeros after.
 */
export function encodeReservedRegion(layout: ReservedLayout, l2Offsets: readonly number[], fileEnd: number): Uint8Array {
  const cs = layout.clusterBytes
  if (fileEnd % cs !== 0 || fileEnd < layout.dataOffset || fileEnd > reservedMaxBytes(layout)) throw new ImageError('INVALID_ARGUMENT', `stream end ${fileEnd} is not a cluster boundary inside the reserved layout`)
  const region = new Uint8Array(layout.dataOffset)
  const header: Qcow2Header = {
    magic: spec.QCOW_MAGIC, version: layout.version, backingFileOffset: 0, backingFileSize: 0,
    clusterBits: layout.clusterBits, size: layout.size, cryptMethod: spec.CRYPT_NONE,
    l1Size: layout.l1Entries, l1TableOffset: layout.l1Offset,
    refcountTableOffset: layout.refTableOffset, refcountTableClusters: layout.refTableClusters,
    snapshotCount: 0, snapshotsOffset: 0,
    incompatibleFeatures: 0n, compatibleFeatures: 0n, autoclearFeatures: 0n, refcountOrder: 4,
    headerLength: layout.version >= 3 ? spec.HEADER_V3_LENGTH : spec.HEADER_V2_LENGTH, compressionType: spec.COMPRESSION_ZLIB,
    extraHeaderBytes: new Uint8Array(0), backingFile: undefined, backingFormat: undefined, dataFile: undefined,
    featureNames: [], bitmaps: undefined, cryptoHeader: undefined, unknownExtensions: [],
  }
  region.set(encodeHeaderCluster(header), 0)
  const view = viewOf(region)
  l2Offsets.forEach((offset, i) => {
    if (offset) view.setBigUint64(layout.l1Offset + i * 8, standardL2Entry(offset))
  })
  for (let b = 0; b < layout.refBlocks; b++) setU64(view, layout.refTableOffset + b * 8, layout.refBlocksOffset + b * cs)
  const setRefcount = (cluster: number): void => view.setUint16(layout.refBlocksOffset + cluster * 2, 1)
  for (let c = 0; c < layout.metadataClusters; c++) setRefcount(c)
  for (let c = layout.dataOffset / cs; c < fileEnd / cs; c++) setRefcount(c)
  return region
}
