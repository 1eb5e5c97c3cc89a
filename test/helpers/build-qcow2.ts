// A tiny QCOW2 writer for tests: builds a complete, consistent image (header, extensions,
// L1/L2, data, compressed clusters, snapshots, bitmaps, refcounts) in a Uint8Array without
// qemu, and records where every structure went so tests can poke named fields.
import { deflateRawSync } from 'node:zlib'
import * as spec from '../../src/qcow2/spec.js'
import { HostFile, encodeHeaderCluster, writeBitmaps, writeRefcounts, writeSnapshotTable } from './build-qcow2-meta.js'
import { setU64 } from './poke.js'

/** What one guest cluster holds. */
export type ClusterSpec =
  | { kind: 'data'; data: Uint8Array } // a normal cluster
  | { kind: 'zero'; preallocated?: boolean } // zero flag (standard L2) / all zero bits (extended L2)
  | { kind: 'compressed'; data: Uint8Array } // raw deflate, window 4 KiB
  | { kind: 'subclusters'; data: Uint8Array; allocated: number; zero: number } // extended L2 only

/** A snapshot: a copy of the active L1 (sharing its tables) unless it has its own clusters. */
export interface SnapshotSpec {
  id?: string
  name: string
  clusters?: Record<number, ClusterSpec>
  dateSec?: number
  vmClockNsec?: number
}

/** A persistent bitmap (all bits clear). */
export interface BitmapSpec { name: string; granularityBits?: number; flags?: number }

/** Options of {@link buildQcow2}. */
export interface BuildOptions {
  virtualSize: number
  /** Default 9 (512-byte clusters keep test images tiny). */
  clusterBits?: number
  version?: 2 | 3
  refcountOrder?: number
  extendedL2?: boolean
  /** Guest cluster index → contents; anything absent is unallocated. */
  clusters?: Record<number, ClusterSpec>
  backingFile?: string
  backingFormat?: string
  /** External data file name: data clusters live there at their guest offset. */
  dataFile?: string
  snapshots?: SnapshotSpec[]
  bitmaps?: BitmapSpec[]
  /** Feature name table: true for QEMU's eight names, or explicit entries. */
  featureTable?: boolean | { type: number; bit: number; name: string }[]
  /** More extensions, written before the end marker. */
  extensions?: { type: number; data: Uint8Array }[]
  /** L1 entries beyond the ones the virtual size needs. */
  extraL1Entries?: number
}

/** Where things are in a built image. */
export interface Qcow2Layout {
  clusterSize: number
  headerLength: number
  /** Each header extension: offset of its type field, and its payload length. */
  extensions: { type: number; offset: number; length: number }[]
  backingFileOffset: number
  l1TableOffset: number
  l1Size: number
  /** L1 index → host offset of its L2 table (active L1). */
  l2Tables: Map<number, number>
  /** Guest cluster → host offset of its data cluster (image file, or data file offset). */
  dataClusters: Map<number, number>
  /** Guest cluster → host byte offset and length of its compressed stream. */
  compressed: Map<number, { hostOffset: number; length: number }>
  refcountTableOffset: number
  refcountTableClusters: number
  refblocks: number[]
  snapshotsOffset: number
  /** Offset of each snapshot table entry, and its L1 table. */
  snapshots: { entryOffset: number; l1TableOffset: number; l1Size: number }[]
  bitmapDirectoryOffset: number
  bitmapTables: number[]
}

/** A built image: its bytes, its external data file (if any) and the guest bytes it holds. */
export interface BuiltImage {
  bytes: Uint8Array
  dataFile: Uint8Array | undefined
  /** Guest content of the active layer (unallocated reads as zeros: no backing content). */
  guest: Uint8Array
  layout: Qcow2Layout
}

const COPIED = 0x8000_0000

/** A recognisable, compressible cluster of data: `tag` then a slow ramp. */
export function pattern(size: number, tag: number): Uint8Array {
  const out = new Uint8Array(size)
  for (let i = 0; i < size; i++) out[i] = (tag + (i >> 4)) & 0xff
  out[0] = tag
  return out
}

/** Builds a valid QCOW2 image; `qemu-img check` finds no errors or leaks in it. */
export function buildQcow2(options: BuildOptions): BuiltImage {
  const version = options.version ?? 3
  const clusterBits = options.clusterBits ?? 9
  const cs = 2 ** clusterBits
  const refcountOrder = options.refcountOrder ?? 4
  const extendedL2 = options.extendedL2 ?? false
  const l2EntrySize = extendedL2 ? 16 : 8
  const l2Entries = cs / l2EntrySize
  const coverage = cs * l2Entries
  const size = options.virtualSize
  const l1Size = Math.ceil(size / coverage) + (options.extraL1Entries ?? 0)
  const hasDataFile = options.dataFile !== undefined
  if (version === 2 && (extendedL2 || hasDataFile || refcountOrder !== 4 || options.bitmaps || options.featureTable)) {
    throw new Error('buildQcow2: v2 images have no extended L2, data file, bitmaps, feature table or other refcount widths')
  }
  if (extendedL2 && clusterBits < spec.MIN_EXTENDED_L2_CLUSTER_BITS) throw new Error('buildQcow2: extended L2 needs 16 KiB clusters')

  const file = new HostFile(cs)
  const { allocate, ref, write } = file
  const guest = new Uint8Array(size)
  const dataFileBytes = hasDataFile ? new Uint8Array(size) : undefined
  const layout: Qcow2Layout = {
    clusterSize: cs, headerLength: version === 3 ? spec.HEADER_V3_LENGTH : spec.HEADER_V2_LENGTH, extensions: [],
    backingFileOffset: 0, l1TableOffset: 0, l1Size, l2Tables: new Map(), dataClusters: new Map(), compressed: new Map(),
    refcountTableOffset: 0, refcountTableClusters: 0, refblocks: [], snapshotsOffset: 0, snapshots: [],
    bitmapDirectoryOffset: 0, bitmapTables: [],
  }

  /**
   * Lays out one disk (the active one, or a snapshot's own): L1, L2 tables and data. Entries
   * other than compressed ones are filled in by finishDisk once all refcounts are known.
   */
  const buildDisk = (clusters: Record<number, ClusterSpec>, active: boolean) => {
    const l1Offset = allocate(Math.max(1, Math.ceil((l1Size * 8) / cs)))
    ref(l1Offset, Math.max(1, Math.ceil((l1Size * 8) / cs)) * cs)
    const l1 = new Uint8Array(l1Size * 8)
    const l1View = new DataView(l1.buffer)
    const byTable = new Map<number, [number, ClusterSpec][]>()
    for (const [key, value] of Object.entries(clusters)) {
      const index = Number(key)
      if ((index + 1) * cs > Math.ceil(size / cs) * cs) throw new Error(`buildQcow2: cluster ${index} is outside the disk`)
      const table = Math.floor(index / l2Entries)
      byTable.set(table, [...(byTable.get(table) ?? []), [index, value]])
    }
    const l2s: { offset: number; view: DataView; entries: [number, ClusterSpec, number][] }[] = []
    const pendingCompressed: { view: DataView; entryAt: number; guestCluster: number; stream: Uint8Array }[] = []
    for (const table of [...byTable.keys()].sort((a, b) => a - b)) {
      const l2Offset = allocate(1)
      ref(l2Offset)
      if (active) layout.l2Tables.set(table, l2Offset)
      const l2 = new Uint8Array(cs)
      const view = new DataView(l2.buffer)
      const entries: [number, ClusterSpec, number][] = []
      for (const [index, cluster] of byTable.get(table)!.sort((a, b) => a[0] - b[0])) {
        const entryAt = (index % l2Entries) * l2EntrySize
        const guestOffset = index * cs
        let host = 0
        const fill = (data: Uint8Array) => {
          if (data.length !== cs) throw new Error(`buildQcow2: cluster ${index} data must be ${cs} bytes`)
          if (active) guest.set(data.subarray(0, Math.min(cs, size - guestOffset)), guestOffset)
        }
        switch (cluster.kind) {
          case 'data':
          case 'subclusters': {
            if (cluster.kind === 'subclusters' && !extendedL2) throw new Error('buildQcow2: subclusters need extended L2')
            if (hasDataFile) {
              host = guestOffset
              dataFileBytes!.set(cluster.data.subarray(0, Math.min(cs, size - guestOffset)), guestOffset)
            } else {
              host = allocate(1)
              ref(host)
              write(host, cluster.data)
            }
            if (active) layout.dataClusters.set(index, host)
            if (cluster.kind === 'data') fill(cluster.data)
            else if (active) {
              const sub = cs / 32
              for (let s = 0; s < 32; s++) {
                const from = guestOffset + s * sub
                if (from >= size) break
                if ((cluster.allocated >>> s) & 1) guest.set(cluster.data.subarray(s * sub, Math.min((s + 1) * sub, size - guestOffset)), from)
              }
            }
            break
          }
          case 'zero':
            if (cluster.preallocated) {
              if (hasDataFile) throw new Error('buildQcow2: preallocated zero clusters with a data file are not supported')
              host = allocate(1)
              ref(host)
            }
            break
          case 'compressed': {
            if (hasDataFile) throw new Error('buildQcow2: no compressed clusters with an external data file')
            fill(cluster.data)
            const stream = deflateRawSync(cluster.data, { windowBits: 12 })
            if (stream.length >= cs) throw new Error(`buildQcow2: cluster ${index} does not compress`)
            pendingCompressed.push({ view, entryAt, guestCluster: index, stream })
            break
          }
        }
        entries.push([entryAt, cluster, host])
      }
      l2s.push({ offset: l2Offset, view, entries })
      setU64(l1View, table * 8, l2Offset)
      file.chunks.set(l2Offset / cs, l2)
    }
    // Compressed streams are packed byte by byte in one contiguous area, as QEMU packs them.
    if (pendingCompressed.length > 0) {
      const total = pendingCompressed.reduce((n, p) => n + p.stream.length, 0)
      let cursor = allocate(Math.ceil(total / cs))
      for (const p of pendingCompressed) {
        write(cursor, p.stream)
        ref(cursor, p.stream.length)
        const nsect = Math.floor((cursor + p.stream.length - 1) / 512) - Math.floor(cursor / 512)
        const x = 70 - clusterBits
        setU64(p.view, p.entryAt, (1n << 62n) | (BigInt(nsect) << BigInt(x)) | BigInt(cursor))
        if (active) layout.compressed.set(p.guestCluster, { hostOffset: cursor, length: p.stream.length })
        cursor += p.stream.length
      }
    }
    file.chunks.set(l1Offset / cs, l1)
    return { l1Offset, l1View, l2s }
  }

  /** Fills in L1/L2 entries once refcounts are known (COPIED iff refcount is exactly 1). */
  const finishDisk = (disk: ReturnType<typeof buildDisk>, active: boolean) => {
    const copied = (offset: number) => active && file.refcounts.get(offset / cs) === 1
    for (const l2 of disk.l2s) {
      for (const [entryAt, cluster, host] of l2.entries) {
        const flag = hasDataFile ? COPIED : host !== 0 && copied(host) ? COPIED : 0
        const word0 = (hi: number, lo: number) => {
          l2.view.setUint32(entryAt, hi >>> 0)
          l2.view.setUint32(entryAt + 4, lo >>> 0)
        }
        const hiOf = (off: number) => Math.floor(off / 0x1_0000_0000)
        switch (cluster.kind) {
          case 'data':
            word0(flag | hiOf(host), host >>> 0)
            if (extendedL2) l2.view.setUint32(entryAt + 12, 0xffff_ffff)
            break
          case 'subclusters':
            word0(flag | hiOf(host), host >>> 0)
            l2.view.setUint32(entryAt + 8, cluster.zero >>> 0)
            l2.view.setUint32(entryAt + 12, cluster.allocated >>> 0)
            break
          case 'zero':
            if (extendedL2) {
              word0(host ? flag | hiOf(host) : 0, host >>> 0)
              l2.view.setUint32(entryAt + 8, 0xffff_ffff)
            } else {
              if (version === 2) throw new Error('buildQcow2: v2 images have no zero clusters')
              word0(host ? flag | hiOf(host) : 0, (host >>> 0) | 1)
            }
            break
          case 'compressed':
            break // written with the stream
        }
      }
    }
    for (let i = 0; i < l1Size; i++) {
      const off = Number(disk.l1View.getBigUint64(i * 8))
      if (off !== 0 && copied(off)) disk.l1View.setUint32(i * 8, disk.l1View.getUint32(i * 8) | COPIED)
    }
  }

  const active = buildDisk(options.clusters ?? {}, true)
  layout.l1TableOffset = active.l1Offset

  // Snapshots: each has its own L1 copy; shared tables and clusters get one more reference.
  const snapshotDisks: { spec: SnapshotSpec; l1Offset: number; disk: ReturnType<typeof buildDisk> | undefined }[] = []
  for (const snap of options.snapshots ?? []) {
    if (snap.clusters) {
      const disk = buildDisk(snap.clusters, false)
      snapshotDisks.push({ spec: snap, l1Offset: disk.l1Offset, disk })
    } else {
      const l1Clusters = Math.max(1, Math.ceil((l1Size * 8) / cs))
      const l1Offset = allocate(l1Clusters)
      ref(l1Offset, l1Clusters * cs)
      const copy = new Uint8Array(l1Size * 8)
      copy.set(new Uint8Array(active.l1View.buffer))
      write(l1Offset, copy)
      for (const l2 of active.l2s) {
        ref(l2.offset)
        for (const [, , host] of l2.entries) if (host !== 0 && !hasDataFile) ref(host)
      }
      for (const [, c] of layout.compressed) ref(c.hostOffset, c.length)
      snapshotDisks.push({ spec: snap, l1Offset, disk: undefined })
    }
  }
  finishDisk(active, true)
  for (const s of snapshotDisks) if (s.disk) finishDisk(s.disk, false)
  if (snapshotDisks.length > 0) {
    const table = writeSnapshotTable(file, snapshotDisks.map((d) => ({ ...d.spec, l1TableOffset: d.l1Offset, l1Size })), size)
    layout.snapshotsOffset = table.offset
    layout.snapshots = table.entries
  }
  const bitmaps = options.bitmaps && options.bitmaps.length > 0 ? writeBitmaps(file, options.bitmaps, size) : undefined
  if (bitmaps) {
    layout.bitmapDirectoryOffset = bitmaps.directoryOffset
    layout.bitmapTables = bitmaps.tables
  }
  const refcounts = writeRefcounts(file, refcountOrder)
  layout.refcountTableOffset = refcounts.tableOffset
  layout.refcountTableClusters = refcounts.tableClusters
  layout.refblocks = refcounts.blocks

  const header = encodeHeaderCluster(options, {
    version, clusterBits, size, l1Size, l1TableOffset: layout.l1TableOffset, refcountOrder, extendedL2,
    refcountTableOffset: layout.refcountTableOffset, refcountTableClusters: layout.refcountTableClusters,
    snapshotCount: snapshotDisks.length, snapshotsOffset: layout.snapshotsOffset, bitmapsExtension: bitmaps?.extension,
  })
  layout.headerLength = header.headerLength
  layout.extensions = header.extensions
  layout.backingFileOffset = header.backingFileOffset
  file.chunks.set(0, header.bytes)
  return { bytes: file.bytes(), dataFile: dataFileBytes, guest, layout }
}

/** Host offset of the L2 entry mapping guest cluster `guestCluster` (active L1). */
export function l2EntryOffset(image: BuiltImage, guestCluster: number, extendedL2 = false): number {
  const entrySize = extendedL2 ? 16 : 8
  const l2Entries = image.layout.clusterSize / entrySize
  const table = image.layout.l2Tables.get(Math.floor(guestCluster / l2Entries))
  if (table === undefined) throw new Error(`no L2 table maps guest cluster ${guestCluster}`)
  return table + (guestCluster % l2Entries) * entrySize
}
