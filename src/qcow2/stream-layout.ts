// A qcow2 image written front to back (a pipe, an object store's parts): every metadata
// structure before the data it describes, so nothing is ever rewritten. Cluster 0 the header,
// then the refcount table, the refcount blocks, the L1 table, the L2 tables, then the data
// clusters in guest order ("Host cluster management" and "Cluster mapping" in qcow2.rst, the
// layout of QEMU's scripts/qcow2-to-stdout.py). Pure: sizes in, offsets and table bytes out.
import { setU64, viewOf } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import { encodeL1Entry, encodeL2Entry } from './entries.js'
import { encodeHeaderCluster } from './header-encode.js'
import type { Qcow2Header } from './header.js'
import { setRefcountEntry } from './refcount.js'
import * as spec from './spec.js'
import { refcountCover } from './refcount-cover.js'

/** What fixes a stream layout: the image's shape and how much it maps. */
export interface StreamLayoutInput {
  virtualSize: number
  clusterBits: number
  /** Refcount width 2^refcountOrder bits (default 4: 16 bits, qemu-img's default). */
  refcountOrder?: number
  /** L2 tables written (tables with at least one mapped cluster). */
  l2TableCount: number
  /** Host clusters the data takes, from the first data cluster on. */
  dataClusterCount: number
}

/** Where each structure starts; every offset is cluster aligned. */
export interface StreamLayout {
  virtualSize: number
  clusterBits: number
  clusterSize: number
  refcountOrder: number
  /** Entries of the L1 table (the virtual size in L2 tables). */
  l1Size: number
  refcountTableOffset: number
  refcountTableClusters: number
  refblockOffset: number
  refblockCount: number
  l1TableOffset: number
  l1Clusters: number
  l2TableOffset: number
  l2TableCount: number
  /** First byte of data: everything before is metadata. */
  dataOffset: number
  dataClusterCount: number
  /** Clusters of the whole file (metadata and data). */
  totalClusters: number
}

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b)

/** L1 entries that map `virtualSize` bytes with `clusterBits` (standard 8-byte L2 entries). */
export function l1SizeFor(virtualSize: number, clusterBits: number): number {
  return ceilDiv(virtualSize, 2 ** clusterBits * (2 ** clusterBits / 8))
}

/**
 * The layout for these counts. The refcount blocks must count every cluster, themselves and
 * the table that points at them included, so their number is found as a fixed point.
 */
export function planStreamLayout(input: StreamLayoutInput): StreamLayout {
  const { virtualSize, clusterBits, l2TableCount, dataClusterCount } = input
  const refcountOrder = input.refcountOrder ?? 4
  if (clusterBits < spec.MIN_CLUSTER_BITS || clusterBits > spec.MAX_CLUSTER_BITS) throw new ImageError('INVALID_ARGUMENT', `cluster bits ${clusterBits} out of range (9..21)`)
  if (refcountOrder < 0 || refcountOrder > 6) throw new ImageError('INVALID_ARGUMENT', `refcount order ${refcountOrder} out of range (0..6)`)
  const clusterSize = 2 ** clusterBits
  const l1Size = l1SizeFor(virtualSize, clusterBits)
  if (l1Size * 8 > spec.MAX_L1_BYTES) throw new ImageError('INVALID_ARGUMENT', "The image size is too large for file format 'qcow2' (try using a larger cluster size)")
  if (l2TableCount > l1Size) throw new ImageError('INVALID_ARGUMENT', `${l2TableCount} L2 tables for an L1 table of ${l1Size} entries`)
  const l1Clusters = Math.max(1, ceilDiv(l1Size * 8, clusterSize))
  const fixedClusters = 1 + l1Clusters + l2TableCount + dataClusterCount
  const { refBlocks: refblockCount, refTableClusters: refcountTableClusters } = refcountCover(clusterSize, refcountOrder, (table, blocks) => fixedClusters + table + blocks)
  if (refcountTableClusters * clusterSize > spec.MAX_REFTABLE_BYTES) throw new ImageError('INVALID_ARGUMENT', `refcount table of ${refcountTableClusters} clusters is above QEMU's limit of 8 MiB`)
  const refcountTableOffset = clusterSize
  const refblockOffset = refcountTableOffset + refcountTableClusters * clusterSize
  const l1TableOffset = refblockOffset + refblockCount * clusterSize
  const l2TableOffset = l1TableOffset + l1Clusters * clusterSize
  const dataOffset = l2TableOffset + l2TableCount * clusterSize
  return {
    virtualSize, clusterBits, clusterSize, refcountOrder, l1Size,
    refcountTableOffset, refcountTableClusters, refblockOffset, refblockCount,
    l1TableOffset, l1Clusters, l2TableOffset, l2TableCount, dataOffset, dataClusterCount,
    totalClusters: dataOffset / clusterSize + dataClusterCount,
  }
}

/**
 * The layout when nothing is known but the virtual size: room for every L2 table and for every
 * cluster of data (a compressed cluster never takes more than one). An uploader that sends the
 * data first reserves this region, then fills it once the data is in.
 */
export function reserveStreamLayout(virtualSize: number, clusterBits: number, refcountOrder = 4): StreamLayout {
  const l1Size = l1SizeFor(virtualSize, clusterBits)
  return planStreamLayout({ virtualSize, clusterBits, refcountOrder, l2TableCount: l1Size, dataClusterCount: ceilDiv(virtualSize, 2 ** clusterBits) })
}

/**
 * Where the guest's data sits in the data region: one entry per guest cluster, 0 for a cluster
 * not written (reads zeros), the cluster size for a whole cluster, anything less for a
 * compressed stream of that many bytes. Whole clusters are cluster aligned; compressed streams
 * are packed back to back, across cluster boundaries, as QEMU's qcow2_alloc_bytes packs them.
 */
export interface StreamMapping {
  clusterBits: number
  /** Byte length stored per guest cluster (see above). */
  storedLengths: Uint32Array
}

/** One placed cluster: its guest cluster, its bytes' offset from the data region's start. */
export interface Placement {
  guestCluster: number
  dataOffset: number
  length: number
  compressed: boolean
}

/** The placements in guest order (which is also file order). */
export function* placements(mapping: StreamMapping): Generator<Placement> {
  const clusterSize = 2 ** mapping.clusterBits
  let cursor = 0
  const lengths = mapping.storedLengths
  for (let guestCluster = 0; guestCluster < lengths.length; guestCluster++) {
    const length = lengths[guestCluster]!
    if (length === 0) continue
    const compressed = length < clusterSize
    if (!compressed) cursor = ceilDiv(cursor, clusterSize) * clusterSize
    yield { guestCluster, dataOffset: cursor, length, compressed }
    cursor += length
  }
}

/** Data bytes (padding between streams and whole clusters included) of a mapping. */
export function dataBytesOf(mapping: StreamMapping): number {
  let end = 0
  for (const p of placements(mapping)) end = p.dataOffset + p.length
  return end
}

/** The layout a mapping needs: its L2 tables and data clusters counted. */
export function layoutFor(virtualSize: number, mapping: StreamMapping, refcountOrder = 4): StreamLayout {
  const perTable = 2 ** mapping.clusterBits / 8
  let l2TableCount = 0
  const lengths = mapping.storedLengths
  for (let first = 0; first < lengths.length; first += perTable) {
    if (lengths.subarray(first, first + perTable).some((n) => n !== 0)) l2TableCount++
  }
  const dataClusterCount = ceilDiv(dataBytesOf(mapping), 2 ** mapping.clusterBits)
  return planStreamLayout({ virtualSize, clusterBits: mapping.clusterBits, refcountOrder, l2TableCount, dataClusterCount })
}

/** Header options a stream image can take (the rest is fixed: no backing, no encryption). */
export interface StreamHeaderOptions {
  /** 2 for compat=0.10, else 3. */
  version?: 2 | 3
  compressionType?: 'zlib' | 'zstd'
}

/** The header cluster of a stream layout. */
export function encodeStreamHeader(layout: StreamLayout, options: StreamHeaderOptions = {}): Uint8Array {
  const version = options.version ?? 3
  const zstd = options.compressionType === 'zstd'
  if (zstd && version < 3) throw new ImageError('INVALID_ARGUMENT', 'Non-zlib compression type is only supported with compatibility level 1.1 and above (use version=v3 or greater)')
  const header: Qcow2Header = {
    magic: spec.QCOW_MAGIC, version, backingFileOffset: 0, backingFileSize: 0,
    clusterBits: layout.clusterBits, size: layout.virtualSize, cryptMethod: 0,
    l1Size: layout.l1Size, l1TableOffset: layout.l1TableOffset,
    refcountTableOffset: layout.refcountTableOffset, refcountTableClusters: layout.refcountTableClusters,
    snapshotCount: 0, snapshotsOffset: 0,
    incompatibleFeatures: zstd ? spec.INCOMPAT_COMPRESSION : 0n, compatibleFeatures: 0n, autoclearFeatures: 0n,
    refcountOrder: layout.refcountOrder, headerLength: version >= 3 ? spec.HEADER_V3_LENGTH : spec.HEADER_V2_LENGTH,
    compressionType: zstd ? spec.COMPRESSION_ZSTD : spec.COMPRESSION_ZLIB,
    extraHeaderBytes: new Uint8Array(0), backingFile: undefined, backingFormat: undefined, dataFile: undefined,
    featureNames: [], bitmaps: undefined, cryptoHeader: undefined, unknownExtensions: [],
  }
  const cluster = new Uint8Array(layout.clusterSize)
  cluster.set(encodeHeaderCluster(header))
  return cluster
}

/** The refcount table: one entry per refcount block, the blocks contiguous. */
export function encodeRefcountTable(layout: StreamLayout): Uint8Array {
  const table = new Uint8Array(layout.refcountTableClusters * layout.clusterSize)
  const view = viewOf(table)
  for (let i = 0; i < layout.refblockCount; i++) setU64(view, i * 8, layout.refblockOffset + i * layout.clusterSize)
  return table
}

/**
 * The refcount blocks, one cluster at a time: metadata clusters count 1; a data cluster counts
 * the whole cluster or compressed streams that touch it (qcow2_alloc_bytes takes a reference
 * per stream on every cluster the stream touches). Host clusters past the file count 0.
 */
export function* refcountBlocks(layout: StreamLayout, mapping: StreamMapping): Generator<Uint8Array> {
  const cs = layout.clusterSize
  const perBlock = cs * 8 / 2 ** layout.refcountOrder
  const maxRefcount = 2 ** (2 ** layout.refcountOrder) - 1
  const firstData = layout.dataOffset / cs
  const counts = new Map<number, number>()
  const source = placements(mapping)
  let pending = source.next()
  for (let block = 0; block < layout.refblockCount; block++) {
    const bytes = new Uint8Array(cs)
    const view = viewOf(bytes)
    const first = block * perBlock
    const end = Math.min(first + perBlock, layout.totalClusters)
    // Data placements are taken in file order up to the end of this block.
    while (!pending.done && firstData + Math.floor(pending.value.dataOffset / cs) < end) {
      const p = pending.value
      const from = firstData + Math.floor(p.dataOffset / cs)
      const to = firstData + Math.floor((p.dataOffset + p.length - 1) / cs)
      for (let c = from; c <= to; c++) counts.set(c, (counts.get(c) ?? 0) + 1)
      pending = source.next()
    }
    for (let c = first; c < end; c++) {
      const value = c < firstData ? 1 : counts.get(c) ?? 0
      counts.delete(c)
      if (value > maxRefcount) throw new ImageError('INVALID_ARGUMENT', `host cluster ${c} would need refcount ${value}, above the ${2 ** layout.refcountOrder}-bit maximum`)
      if (value !== 0) setRefcountEntry(view, c - first, layout.refcountOrder, value)
    }
    yield bytes
  }
}

/** L1 index of every L2 table written, in order. */
function l2TableIndexes(layout: StreamLayout, mapping: StreamMapping): number[] {
  const perTable = layout.clusterSize / 8
  const indexes: number[] = []
  for (let i = 0; i < layout.l1Size; i++) {
    if (mapping.storedLengths.subarray(i * perTable, (i + 1) * perTable).some((n) => n !== 0)) indexes.push(i)
  }
  return indexes
}

/** The L1 table: written L2 tables in L1 order, each with the COPIED flag (refcount 1). */
export function encodeL1Table(layout: StreamLayout, mapping: StreamMapping): Uint8Array {
  const table = new Uint8Array(layout.l1Clusters * layout.clusterSize)
  const view = viewOf(table)
  l2TableIndexes(layout, mapping).forEach((index, slot) => {
    const [hi, lo] = encodeL1Entry({ kind: 'table', hostOffset: layout.l2TableOffset + slot * layout.clusterSize, copied: true })
    view.setUint32(index * 8, hi)
    view.setUint32(index * 8 + 4, lo)
  })
  return table
}

/** The L2 tables written, one cluster at a time, in file order. */
export function* l2Tables(layout: StreamLayout, mapping: StreamMapping): Generator<Uint8Array> {
  const perTable = layout.clusterSize / 8
  let table: Uint8Array | undefined
  let tableIndex = -1
  for (const p of placements(mapping)) {
    const index = Math.floor(p.guestCluster / perTable)
    if (index !== tableIndex) {
      if (table) yield table
      table = new Uint8Array(layout.clusterSize)
      tableIndex = index
    }
    const hostOffset = layout.dataOffset + p.dataOffset
    const sectorCount = Math.floor((hostOffset + p.length - 1) / 512) - Math.floor(hostOffset / 512) + 1
    const [hi, lo] = encodeL2Entry(p.compressed ? { kind: 'compressed', hostOffset, sectorCount } : { kind: 'normal', hostOffset, copied: true }, layout.clusterBits)
    const view = viewOf(table!)
    view.setUint32((p.guestCluster % perTable) * 8, hi)
    view.setUint32((p.guestCluster % perTable) * 8 + 4, lo)
  }
  if (table) yield table
}

/** Every metadata byte, in file order, as pieces of at most a cluster (header to last L2 table). */
export function* metadataPieces(layout: StreamLayout, mapping: StreamMapping, options: StreamHeaderOptions = {}): Generator<Uint8Array> {
  yield encodeStreamHeader(layout, options)
  yield encodeRefcountTable(layout)
  yield* refcountBlocks(layout, mapping)
  yield encodeL1Table(layout, mapping)
  yield* l2Tables(layout, mapping)
}
