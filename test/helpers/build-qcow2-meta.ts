// Parts of the test QCOW2 writer (build-qcow2.ts): the host file as it is laid out cluster by
// cluster, and the metadata written after the disks: snapshot table, bitmaps, refcounts, header.
import { HEADER_V2 } from '../../src/qcow2/header.js'
import * as spec from '../../src/qcow2/spec.js'
import type { BitmapSpec, BuildOptions, SnapshotSpec } from './build-qcow2.js'
import { setU64 } from './poke.js'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/** The image file being laid out: clusters handed out in order, their bytes and refcounts. */
export class HostFile {
  readonly chunks = new Map<number, Uint8Array>()
  readonly refcounts = new Map<number, number>()
  /** Cluster 0 (the header) is taken from the start. */
  nextCluster = 1
  constructor(readonly clusterSize: number) {}

  /** Hands out `count` contiguous clusters; returns the offset of the first. */
  readonly allocate = (count: number): number => {
    const first = this.nextCluster
    this.nextCluster += count
    return first * this.clusterSize
  }

  /** Counts one reference to every cluster `[offset, offset + length)` touches. */
  readonly ref = (offset: number, length = this.clusterSize): void => {
    const cs = this.clusterSize
    for (let c = Math.floor(offset / cs); c <= Math.floor((offset + length - 1) / cs); c++) this.refcounts.set(c, (this.refcounts.get(c) ?? 0) + 1)
  }

  /** Writes `data` at `offset` (any alignment, across clusters). */
  readonly write = (offset: number, data: Uint8Array): void => {
    const cs = this.clusterSize
    for (let done = 0; done < data.length;) {
      const c = Math.floor((offset + done) / cs)
      const within = (offset + done) % cs
      let chunk = this.chunks.get(c)
      if (!chunk) this.chunks.set(c, chunk = new Uint8Array(cs))
      const n = Math.min(cs - within, data.length - done)
      chunk.set(data.subarray(done, done + n), within)
      done += n
    }
  }

  /** The whole file. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.nextCluster * this.clusterSize)
    for (const [c, chunk] of this.chunks) out.set(chunk, c * this.clusterSize)
    return out
  }
}

/** Writes the snapshot table ("Snapshot table"); v3 extra data: VM state size, disk size, icount. */
export function writeSnapshotTable(file: HostFile, snapshots: (SnapshotSpec & { l1TableOffset: number; l1Size: number })[], diskSize: number) {
  const extra = 24
  const encoded = snapshots.map((s, i) => {
    const id = text(s.id ?? String(i + 1))
    const name = text(s.name)
    const entry = new Uint8Array(Math.ceil((spec.SNAPSHOT_HEADER_LENGTH + extra + id.length + name.length) / 8) * 8)
    const v = new DataView(entry.buffer)
    setU64(v, 0, s.l1TableOffset)
    v.setUint32(8, s.l1Size)
    v.setUint16(12, id.length)
    v.setUint16(14, name.length)
    v.setUint32(16, s.dateSec ?? 1_700_000_000 + i)
    setU64(v, 24, s.vmClockNsec ?? 0)
    v.setUint32(36, extra)
    setU64(v, 40 + 8, diskSize) // VM state size (40) stays 0
    setU64(v, 40 + 16, 0xffff_ffff_ffff_ffffn) // icount -1: not recorded
    entry.set(id, 40 + extra)
    entry.set(name, 40 + extra + id.length)
    return entry
  })
  const clusters = Math.ceil(encoded.reduce((n, e) => n + e.length, 0) / file.clusterSize)
  const offset = file.allocate(clusters)
  file.ref(offset, clusters * file.clusterSize)
  const entries: { entryOffset: number; l1TableOffset: number; l1Size: number }[] = []
  let at = offset
  encoded.forEach((entry, i) => {
    entries.push({ entryOffset: at, l1TableOffset: snapshots[i]!.l1TableOffset, l1Size: snapshots[i]!.l1Size })
    file.write(at, entry)
    at += entry.length
  })
  return { offset, entries }
}

/** Writes a bitmap directory and one all-zero bitmap table per bitmap; returns the extension payload. */
export function writeBitmaps(file: HostFile, bitmaps: BitmapSpec[], diskSize: number) {
  const cs = file.clusterSize
  const tables: number[] = []
  const dirEntries = bitmaps.map((b) => {
    const granularityBits = b.granularityBits ?? 16
    const tableEntries = Math.ceil(Math.ceil(Math.ceil(diskSize / 2 ** granularityBits) / 8) / cs)
    const tableClusters = Math.max(1, Math.ceil((tableEntries * 8) / cs))
    const tableOffset = file.allocate(tableClusters)
    file.ref(tableOffset, tableClusters * cs)
    tables.push(tableOffset)
    const name = text(b.name)
    const entry = new Uint8Array(Math.ceil((24 + name.length) / 8) * 8)
    const v = new DataView(entry.buffer)
    setU64(v, 0, tableOffset)
    v.setUint32(8, tableEntries)
    v.setUint32(12, b.flags ?? 2) // auto
    v.setUint8(16, 1) // dirty tracking bitmap
    v.setUint8(17, granularityBits)
    v.setUint16(18, name.length)
    entry.set(name, 24)
    return entry
  })
  const directorySize = dirEntries.reduce((n, e) => n + e.length, 0)
  const directoryClusters = Math.ceil(directorySize / cs)
  const directoryOffset = file.allocate(directoryClusters)
  file.ref(directoryOffset, directoryClusters * cs)
  let at = directoryOffset
  for (const e of dirEntries) {
    file.write(at, e)
    at += e.length
  }
  const extension = new Uint8Array(24)
  const v = new DataView(extension.buffer)
  v.setUint32(0, bitmaps.length)
  setU64(v, 8, directorySize)
  setU64(v, 16, directoryOffset)
  return { directoryOffset, tables, extension }
}

/** Sets refcount `index` of a refcount block (entries `1 << order` bits, sub-byte LSB first). */
function setRefcount(block: DataView, index: number, order: number, value: number): void {
  const bits = 1 << order
  if (bits < 8) {
    const perByte = 8 / bits
    const at = Math.floor(index / perByte)
    const shift = (index % perByte) * bits
    const mask = ((1 << bits) - 1) << shift
    block.setUint8(at, (block.getUint8(at) & ~mask) | ((value << shift) & mask))
  } else if (bits === 8) block.setUint8(index, value)
  else if (bits === 16) block.setUint16(index * 2, value)
  else if (bits === 32) block.setUint32(index * 4, value)
  else setU64(block, index * 8, value)
}

/**
 * Writes the refcount table and blocks last, sized (by fixed-point iteration) to describe
 * every cluster including themselves.
 */
export function writeRefcounts(file: HostFile, refcountOrder: number) {
  const cs = file.clusterSize
  const perBlock = (cs * 8) >> refcountOrder
  let tableClusters = 1
  let blockCount = 1
  for (;;) {
    const total = file.nextCluster + tableClusters + blockCount
    const needBlocks = Math.ceil(total / perBlock)
    const needTable = Math.ceil((needBlocks * 8) / cs)
    if (needBlocks === blockCount && needTable === tableClusters) break
    blockCount = needBlocks
    tableClusters = needTable
  }
  const tableOffset = file.allocate(tableClusters)
  file.ref(tableOffset, tableClusters * cs)
  const blocks: number[] = []
  for (let i = 0; i < blockCount; i++) {
    blocks.push(file.allocate(1))
    file.ref(blocks[i]!)
  }
  file.refcounts.set(0, 1) // the header
  const table = new Uint8Array(tableClusters * cs)
  blocks.forEach((offset, i) => setU64(new DataView(table.buffer), i * 8, offset))
  file.write(tableOffset, table)
  blocks.forEach((offset, i) => {
    const block = new Uint8Array(cs)
    const view = new DataView(block.buffer)
    for (let j = 0; j < perBlock; j++) {
      const count = file.refcounts.get(i * perBlock + j)
      if (count) setRefcount(view, j, refcountOrder, count)
    }
    file.write(offset, block)
  })
  return { tableOffset, tableClusters, blocks }
}

/** Fields of the header that the layout decided. */
export interface HeaderFacts {
  version: 2 | 3
  clusterBits: number
  size: number
  l1Size: number
  l1TableOffset: number
  refcountOrder: number
  extendedL2: boolean
  refcountTableOffset: number
  refcountTableClusters: number
  snapshotCount: number
  snapshotsOffset: number
  bitmapsExtension: Uint8Array | undefined
}

/**
 * Cluster 0 as QEMU writes it: header, extensions (backing format, data file, feature table,
 * bitmaps, extra ones), end marker, backing file name right after it.
 */
export function encodeHeaderCluster(options: BuildOptions, facts: HeaderFacts) {
  const cs = 2 ** facts.clusterBits
  const headerLength = facts.version === 3 ? spec.HEADER_V3_LENGTH : spec.HEADER_V2_LENGTH
  const exts: { type: number; data: Uint8Array }[] = []
  if (options.backingFormat !== undefined) exts.push({ type: spec.EXT_BACKING_FORMAT, data: text(options.backingFormat) })
  if (options.dataFile !== undefined) exts.push({ type: spec.EXT_DATA_FILE, data: text(options.dataFile) })
  if (options.featureTable) {
    const names = options.featureTable === true ? spec.FEATURE_NAMES : options.featureTable
    const table = new Uint8Array(names.length * 48)
    names.forEach((f, i) => {
      table[i * 48] = f.type
      table[i * 48 + 1] = f.bit
      table.set(text(f.name).subarray(0, 46), i * 48 + 2)
    })
    exts.push({ type: spec.EXT_FEATURE_TABLE, data: table })
  }
  if (facts.bitmapsExtension) exts.push({ type: spec.EXT_BITMAPS, data: facts.bitmapsExtension })
  exts.push(...(options.extensions ?? []))

  const bytes = new Uint8Array(cs)
  const view = new DataView(bytes.buffer)
  const extensions: { type: number; offset: number; length: number }[] = []
  let at = headerLength
  for (const e of exts) {
    if (at + 16 + e.data.length > cs) throw new Error('buildQcow2: header extensions do not fit in cluster 0')
    extensions.push({ type: e.type, offset: at, length: e.data.length })
    view.setUint32(at, e.type)
    view.setUint32(at + 4, e.data.length)
    bytes.set(e.data, at + 8)
    at += 8 + Math.ceil(e.data.length / 8) * 8
  }
  at += 8 // end marker (zeros)
  let backingFileOffset = 0
  let backingFileSize = 0
  if (options.backingFile !== undefined) {
    const name = text(options.backingFile)
    if (at + name.length > cs) throw new Error('buildQcow2: backing file name does not fit in cluster 0')
    bytes.set(name, at)
    backingFileOffset = at
    backingFileSize = name.length
  }
  HEADER_V2.encode(view, {
    magic: spec.QCOW_MAGIC, version: facts.version, backingFileOffset, backingFileSize,
    clusterBits: facts.clusterBits, size: facts.size, cryptMethod: 0, l1Size: facts.l1Size, l1TableOffset: facts.l1TableOffset,
    refcountTableOffset: facts.refcountTableOffset, refcountTableClusters: facts.refcountTableClusters,
    snapshotCount: facts.snapshotCount, snapshotsOffset: facts.snapshotsOffset,
  })
  if (facts.version === 3) {
    let incompatible = 0n
    if (options.dataFile !== undefined) incompatible |= spec.INCOMPAT_DATA_FILE
    if (facts.extendedL2) incompatible |= spec.INCOMPAT_EXTL2
    setU64(view, 72, incompatible)
    setU64(view, 88, facts.bitmapsExtension ? spec.AUTOCLEAR_BITMAPS : 0n)
    view.setUint32(96, facts.refcountOrder)
    view.setUint32(100, headerLength)
  }
  return { bytes, headerLength, extensions, backingFileOffset }
}
