// A tiny QCOW2 writer for tests: builds a complete, consistent image (header, extensions,
// L1/L2, data, compressed clusters, snapshots, bitmaps, refcounts) in a Uint8Array without
// qemu, and records where every structure went so tests can poke named fields.
import { deflateRawSync } from 'node:zlib'
import { HEADER_V2 } from '../../src/qcow2/header.js'
import * as spec from '../../src/qcow2/spec.js'

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

/** Writes a u64 given as a number (≤ 2^53) or bigint. */
export function setU64(view: DataView, offset: number, value: number | bigint): void {
  view.setBigUint64(offset, BigInt(value))
}

/** Byte offsets and widths of the header fields, as in qcow2.rst "Header". */
export const HEADER_FIELDS = {
  magic: [0, 4], version: [4, 4], backingFileOffset: [8, 8], backingFileSize: [16, 4],
  clusterBits: [20, 4], size: [24, 8], cryptMethod: [32, 4], l1Size: [36, 4],
  l1TableOffset: [40, 8], refcountTableOffset: [48, 8], refcountTableClusters: [56, 4],
  snapshotCount: [60, 4], snapshotsOffset: [64, 8], incompatibleFeatures: [72, 8],
  compatibleFeatures: [80, 8], autoclearFeatures: [88, 8], refcountOrder: [96, 4],
  headerLength: [100, 4], compressionType: [104, 1],
} as const satisfies Record<string, readonly [number, 1 | 2 | 4 | 8]>

/** Offsets of the fixed fields of a snapshot table entry ("Snapshot table"). */
export const SNAPSHOT_FIELDS = {
  l1TableOffset: [0, 8], l1Size: [8, 4], idSize: [12, 2], nameSize: [14, 2], dateSec: [16, 4],
  dateNsec: [20, 4], vmClockNsec: [24, 8], vmStateSize: [32, 4], extraDataSize: [36, 4],
} as const satisfies Record<string, readonly [number, 1 | 2 | 4 | 8]>

/** Writes an unsigned big-endian integer of `width` bytes at `offset`. */
export function poke(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8, value: number | bigint): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (width === 8) setU64(view, offset, value)
  else if (width === 4) view.setUint32(offset, Number(value))
  else if (width === 2) view.setUint16(offset, Number(value))
  else view.setUint8(offset, Number(value))
}

/** Reads an unsigned big-endian integer of `width` bytes at `offset` as a bigint. */
export function peek(bytes: Uint8Array, offset: number, width: 1 | 2 | 4 | 8): bigint {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (width === 8) return view.getBigUint64(offset)
  if (width === 4) return BigInt(view.getUint32(offset))
  if (width === 2) return BigInt(view.getUint16(offset))
  return BigInt(view.getUint8(offset))
}

/** Sets a header field by its spec name. */
export function pokeHeader(bytes: Uint8Array, field: keyof typeof HEADER_FIELDS, value: number | bigint): void {
  const [offset, width] = HEADER_FIELDS[field]
  poke(bytes, offset, width, value)
}

/** Sets a field of snapshot table entry `entryOffset`. */
export function pokeSnapshot(bytes: Uint8Array, entryOffset: number, field: keyof typeof SNAPSHOT_FIELDS, value: number | bigint): void {
  const [offset, width] = SNAPSHOT_FIELDS[field]
  poke(bytes, entryOffset + offset, width, value)
}

/** A recognisable, compressible cluster of data: `tag` then a slow ramp. */
export function pattern(size: number, tag: number): Uint8Array {
  const out = new Uint8Array(size)
  for (let i = 0; i < size; i++) out[i] = (tag + (i >> 4)) & 0xff
  out[0] = tag
  return out
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

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

  // Host clusters are handed out in order; `chunks` collects what each holds.
  const chunks = new Map<number, Uint8Array>()
  const refcounts = new Map<number, number>()
  let nextCluster = 1
  const allocate = (count: number): number => {
    const first = nextCluster
    nextCluster += count
    return first * cs
  }
  const ref = (offset: number, length = cs): void => {
    for (let c = Math.floor(offset / cs); c <= Math.floor((offset + length - 1) / cs); c++) refcounts.set(c, (refcounts.get(c) ?? 0) + 1)
  }
  const write = (offset: number, data: Uint8Array): void => {
    for (let done = 0; done < data.length;) {
      const c = Math.floor((offset + done) / cs)
      const within = (offset + done) % cs
      let chunk = chunks.get(c)
      if (!chunk) chunks.set(c, chunk = new Uint8Array(cs))
      const n = Math.min(cs - within, data.length - done)
      chunk.set(data.subarray(done, done + n), within)
      done += n
    }
  }

  const guest = new Uint8Array(size)
  const dataFileBytes = hasDataFile ? new Uint8Array(size) : undefined
  const layout: Qcow2Layout = {
    clusterSize: cs, headerLength: version === 3 ? spec.HEADER_V3_LENGTH : spec.HEADER_V2_LENGTH, extensions: [],
    backingFileOffset: 0, l1TableOffset: 0, l1Size, l2Tables: new Map(), dataClusters: new Map(), compressed: new Map(),
    refcountTableOffset: 0, refcountTableClusters: 0, refblocks: [], snapshotsOffset: 0, snapshots: [],
    bitmapDirectoryOffset: 0, bitmapTables: [],
  }

  /**
   * Lays out one disk (the active one, or a snapshot's own): L1, L2 tables and data. Returns
   * the L1 entries and the host references it made, so shared tables can be counted again.
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
      chunks.set(l2Offset / cs, l2)
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
    chunks.set(l1Offset / cs, l1)
    return { l1Offset, l1View, l2s }
  }

  /** Fills in L1/L2 entries once refcounts are known (COPIED iff refcount is exactly 1). */
  const finishDisk = (disk: ReturnType<typeof buildDisk>, active: boolean) => {
    const copied = (offset: number) => active && refcounts.get(offset / cs) === 1
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
    const entries: Uint8Array[] = []
    snapshotDisks.forEach((s, i) => {
      const id = text(s.spec.id ?? String(i + 1))
      const name = text(s.spec.name)
      const extra = 24
      const entry = new Uint8Array(Math.ceil((spec.SNAPSHOT_HEADER_LENGTH + extra + id.length + name.length) / 8) * 8)
      const v = new DataView(entry.buffer)
      setU64(v, 0, s.l1Offset)
      v.setUint32(8, l1Size)
      v.setUint16(12, id.length)
      v.setUint16(14, name.length)
      v.setUint32(16, s.spec.dateSec ?? 1_700_000_000 + i)
      setU64(v, 24, s.spec.vmClockNsec ?? 0)
      v.setUint32(36, extra)
      setU64(v, 40 + 8, size) // disk size; vm state size (40) stays 0
      setU64(v, 40 + 16, 0xffff_ffff_ffff_ffffn) // icount -1: not recorded
      entry.set(id, 40 + extra)
      entry.set(name, 40 + extra + id.length)
      entries.push(entry)
    })
    const total = entries.reduce((n, e) => n + e.length, 0)
    const clusters = Math.ceil(total / cs)
    layout.snapshotsOffset = allocate(clusters)
    ref(layout.snapshotsOffset, clusters * cs)
    let at = layout.snapshotsOffset
    snapshotDisks.forEach((s, i) => {
      layout.snapshots.push({ entryOffset: at, l1TableOffset: s.l1Offset, l1Size })
      write(at, entries[i]!)
      at += entries[i]!.length
    })
  }

  // Bitmaps: a directory and one all-zero bitmap table per bitmap.
  let bitmapsExt: Uint8Array | undefined
  if (options.bitmaps && options.bitmaps.length > 0) {
    const dirEntries: Uint8Array[] = []
    for (const b of options.bitmaps) {
      const granularityBits = b.granularityBits ?? 16
      const bitmapBytes = Math.ceil(Math.ceil(size / 2 ** granularityBits) / 8)
      const tableEntries = Math.ceil(bitmapBytes / cs)
      const tableClusters = Math.max(1, Math.ceil((tableEntries * 8) / cs))
      const tableOffset = allocate(tableClusters)
      ref(tableOffset, tableClusters * cs)
      layout.bitmapTables.push(tableOffset)
      const name = text(b.name)
      const entry = new Uint8Array(Math.ceil((24 + name.length) / 8) * 8)
      const v = new DataView(entry.buffer)
      setU64(v, 0, tableOffset)
      v.setUint32(8, tableEntries)
      v.setUint32(12, b.flags ?? 2)
      v.setUint8(16, 1)
      v.setUint8(17, granularityBits)
      v.setUint16(18, name.length)
      entry.set(name, 24)
      dirEntries.push(entry)
    }
    const dirSize = dirEntries.reduce((n, e) => n + e.length, 0)
    const dirClusters = Math.ceil(dirSize / cs)
    layout.bitmapDirectoryOffset = allocate(dirClusters)
    ref(layout.bitmapDirectoryOffset, dirClusters * cs)
    let at = layout.bitmapDirectoryOffset
    for (const e of dirEntries) {
      write(at, e)
      at += e.length
    }
    bitmapsExt = new Uint8Array(24)
    const v = new DataView(bitmapsExt.buffer)
    v.setUint32(0, options.bitmaps.length)
    setU64(v, 8, dirSize)
    setU64(v, 16, layout.bitmapDirectoryOffset)
  }

  // Refcount table and blocks go last: find how many describe everything including themselves.
  const perBlock = (cs * 8) >> refcountOrder
  let tableClusters = 1
  let blocks = 1
  for (;;) {
    const total = nextCluster + tableClusters + blocks
    const needBlocks = Math.ceil(total / perBlock)
    const needTable = Math.ceil((needBlocks * 8) / cs)
    if (needBlocks === blocks && needTable === tableClusters) break
    blocks = needBlocks
    tableClusters = needTable
  }
  layout.refcountTableOffset = allocate(tableClusters)
  layout.refcountTableClusters = tableClusters
  ref(layout.refcountTableOffset, tableClusters * cs)
  for (let i = 0; i < blocks; i++) {
    const offset = allocate(1)
    ref(offset)
    layout.refblocks.push(offset)
  }
  refcounts.set(0, 1)
  const reftable = new Uint8Array(tableClusters * cs)
  const reftableView = new DataView(reftable.buffer)
  layout.refblocks.forEach((offset, i) => setU64(reftableView, i * 8, offset))
  write(layout.refcountTableOffset, reftable)
  for (let i = 0; i < blocks; i++) {
    const block = new Uint8Array(cs)
    const view = new DataView(block.buffer)
    for (let j = 0; j < perBlock; j++) {
      const count = refcounts.get(i * perBlock + j)
      if (count) setRefcount(view, j, refcountOrder, count)
    }
    write(layout.refblocks[i]!, block)
  }

  // Header, extensions and backing name in cluster 0.
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
  if (bitmapsExt) exts.push({ type: spec.EXT_BITMAPS, data: bitmapsExt })
  exts.push(...(options.extensions ?? []))

  const header = new Uint8Array(cs)
  const hv = new DataView(header.buffer)
  let at = layout.headerLength
  for (const e of exts) {
    if (at + 16 + e.data.length > cs) throw new Error('buildQcow2: header extensions do not fit in cluster 0')
    layout.extensions.push({ type: e.type, offset: at, length: e.data.length })
    hv.setUint32(at, e.type)
    hv.setUint32(at + 4, e.data.length)
    header.set(e.data, at + 8)
    at += 8 + Math.ceil(e.data.length / 8) * 8
  }
  at += 8 // end marker (zeros)
  let backingSize = 0
  if (options.backingFile !== undefined) {
    const name = text(options.backingFile)
    if (at + name.length > cs) throw new Error('buildQcow2: backing file name does not fit in cluster 0')
    header.set(name, at)
    layout.backingFileOffset = at
    backingSize = name.length
  } else if (at > cs) {
    throw new Error('buildQcow2: header extensions do not fit in cluster 0')
  }
  HEADER_V2.encode(hv, {
    magic: spec.QCOW_MAGIC, version, backingFileOffset: layout.backingFileOffset, backingFileSize: backingSize,
    clusterBits, size, cryptMethod: 0, l1Size, l1TableOffset: layout.l1TableOffset,
    refcountTableOffset: layout.refcountTableOffset, refcountTableClusters: tableClusters,
    snapshotCount: snapshotDisks.length, snapshotsOffset: layout.snapshotsOffset,
  })
  if (version === 3) {
    let incompatible = 0n
    if (hasDataFile) incompatible |= spec.INCOMPAT_DATA_FILE
    if (extendedL2) incompatible |= spec.INCOMPAT_EXTL2
    setU64(hv, 72, incompatible)
    setU64(hv, 88, bitmapsExt ? spec.AUTOCLEAR_BITMAPS : 0n)
    hv.setUint32(96, refcountOrder)
    hv.setUint32(100, layout.headerLength)
  }
  chunks.set(0, header)

  const bytes = new Uint8Array(nextCluster * cs)
  for (const [c, chunk] of chunks) bytes.set(chunk, c * cs)
  return { bytes, dataFile: dataFileBytes, guest, layout }
}

/** Host offset of the L2 entry mapping guest cluster `guestCluster` (active L1). */
export function l2EntryOffset(image: BuiltImage, guestCluster: number, extendedL2 = false): number {
  const entrySize = extendedL2 ? 16 : 8
  const l2Entries = image.layout.clusterSize / entrySize
  const table = image.layout.l2Tables.get(Math.floor(guestCluster / l2Entries))
  if (table === undefined) throw new Error(`no L2 table maps guest cluster ${guestCluster}`)
  return table + (guestCluster % l2Entries) * entrySize
}
