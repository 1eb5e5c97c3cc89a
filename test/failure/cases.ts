// Hand-corrupted images, one per validation rule: each pokes named fields of a valid base image
// and states the ImageError it must produce (code, message, offset) and at which step.
// Used by corrupt.test.ts and by scripts/make-failure-fixtures.mjs.
import { deflateRawSync } from 'node:zlib'
import type { ErrorCode } from '../../src/errors.js'
import { hex } from '../../src/errors.js'
import * as spec from '../../src/qcow2/spec.js'
import { buildQcow2, l2EntryOffset, pattern, type BuiltImage } from '../helpers/build-qcow2.js'
import { peek, poke, pokeHeader, pokeSnapshot } from '../helpers/poke.js'
import { backingBitmapsImage, compressedImage, extendedL2Image, plainImage, snapshotImage } from './bases.js'

/** Name of the in-memory file every case is opened as (messages start with it). */
export const FILE = 'bad.qcow2'

/** When the error must appear: opening, reading the whole disk, or info. */
export type Step = 'open' | 'read' | 'info'

/** One corrupt image and the error it must produce. */
export interface CorruptCase {
  name: string
  code: ErrorCode
  step: Step
  /** Open at this internal snapshot. */
  snapshot?: string
  make(): { bytes: Uint8Array; message: RegExp; offset?: number }
}

const re = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
/** A message regex: the file name, then `text` (escaped) anywhere after it. */
const msg = (text: string): RegExp => new RegExp(`^${re(FILE)}: .*${re(text)}`)
/** qemu-img's message for unknown incompatible features (report_unsupported_feature), whole. */
const unsupported = (list: string): RegExp => new RegExp(`^Could not open '${re(FILE)}': Unsupported qcow2 feature\\(s\\): ${re(list)}$`)

const l1Entry = (img: BuiltImage, index: number): number => img.layout.l1TableOffset + index * 8
const ext = (img: BuiltImage, type: number) => {
  const found = img.layout.extensions.find((e) => e.type === type)
  if (!found) throw new Error(`no extension 0x${type.toString(16)}`)
  return found
}
const EXTL2 = true

export const CASES: CorruptCase[] = [
  // Header fields (qcow2.rst "Header"; QEMU qcow2_do_open).
  { name: 'bad magic', code: 'NOT_AN_IMAGE', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'magic', 0x514649fa)
    return { bytes, message: msg('not a qcow2 image (bad magic 0x514649fa)'), offset: 0 }
  } },
  { name: 'version 4', code: 'UNSUPPORTED', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'version', 4)
    return { bytes, message: msg('unsupported qcow2 version 4'), offset: 4 }
  } },
  { name: 'cluster bits 8', code: 'UNSUPPORTED', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'clusterBits', 8)
    return { bytes, message: msg('cluster size 2^8 out of range (2^9..2^21)'), offset: 20 }
  } },
  { name: 'cluster bits 22', code: 'UNSUPPORTED', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'clusterBits', 22)
    return { bytes, message: msg('cluster size 2^22 out of range (2^9..2^21)'), offset: 20 }
  } },
  { name: 'header length 96', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'headerLength', 96)
    return { bytes, message: msg('header length 96 too short (at least 104)'), offset: 100 }
  } },
  { name: 'header length past the cluster', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'headerLength', 1024)
    return { bytes, message: msg('header length 1024 exceeds cluster size 512'), offset: 100 }
  } },
  { name: 'refcount order 7', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'refcountOrder', 7)
    return { bytes, message: msg('refcount order 7 too large'), offset: 96 }
  } },
  { name: 'encryption method 3', code: 'UNSUPPORTED', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'cryptMethod', 3)
    return { bytes, message: msg('unsupported encryption method 3'), offset: 32 }
  } },
  { name: 'virtual size above 2^53', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'size', 1n << 60n)
    return { bytes, message: msg('header field out of range (size 0x1000000000000000 is above 2^53)') }
  } },
  { name: 'backing file offset past the first cluster', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = backingBitmapsImage()
    pokeHeader(bytes, 'backingFileOffset', 600)
    return { bytes, message: msg('backing file offset 0x258 is past the first cluster'), offset: 8 }
  } },
  { name: 'backing file name past the first cluster', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = backingBitmapsImage()
    pokeHeader(bytes, 'backingFileOffset', 500)
    pokeHeader(bytes, 'backingFileSize', 20)
    return { bytes, message: msg('backing file name of 20 bytes at 0x1f4 does not fit in the first cluster'), offset: 16 }
  } },
  { name: 'backing file name of 1024 bytes', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = buildQcow2({ virtualSize: 65536, clusterBits: 12, backingFile: 'b'.repeat(1024) })
    return { bytes, message: msg('backing file name of 1024 bytes at 0x78 does not fit in the first cluster (at most 1023 bytes)'), offset: 16 }
  } },
  { name: 'unknown incompatible bit named by the feature table', code: 'UNSUPPORTED', step: 'open', make: () => {
    const { bytes } = buildQcow2({ virtualSize: 65536, featureTable: [{ type: 0, bit: 7, name: 'fancy feature' }] })
    pokeHeader(bytes, 'incompatibleFeatures', 1n << 7n)
    return { bytes, message: unsupported('fancy feature'), offset: 72 }
  } },
  { name: 'unknown incompatible bit without a feature table', code: 'UNSUPPORTED', step: 'open', make: () => {
    const { bytes } = buildQcow2({ virtualSize: 65536 })
    pokeHeader(bytes, 'incompatibleFeatures', 1n << 9n)
    return { bytes, message: unsupported('Unknown incompatible feature: 200'), offset: 72 }
  } },
  { name: 'compression type bit without a compression type', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'incompatibleFeatures', spec.INCOMPAT_COMPRESSION)
    return { bytes, message: msg('compression type incompatible bit is set but the compression type is zlib'), offset: 104 }
  } },
  { name: 'compression type without the compression type bit', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'compressionType', spec.COMPRESSION_ZSTD)
    return { bytes, message: msg('compression type 1 is set without the compression type incompatible bit'), offset: 104 }
  } },
  { name: 'unknown compression type 2', code: 'UNSUPPORTED', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'incompatibleFeatures', spec.INCOMPAT_COMPRESSION)
    pokeHeader(bytes, 'compressionType', 2)
    return { bytes, message: msg('unknown compression type 2'), offset: 104 }
  } },
  { name: 'extended L2 with 4 KiB clusters', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage(12)
    pokeHeader(bytes, 'incompatibleFeatures', spec.INCOMPAT_EXTL2)
    return { bytes, message: msg('extended L2 entries need clusters of at least 16384 bytes (cluster size 4096)'), offset: 20 }
  } },
  { name: 'external data file bit without a data file name', code: 'INVALID_ARGUMENT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'incompatibleFeatures', spec.INCOMPAT_DATA_FILE)
    return { bytes, message: msg(`'data-file' is required for this image (it names no external data file)`), offset: 72 }
  } },

  // Header extensions ("Header extensions").
  { name: 'extension length past the cluster', code: 'CORRUPT', step: 'open', make: () => {
    const img = plainImage()
    const table = ext(img, spec.EXT_FEATURE_TABLE)
    poke(img.bytes, table.offset + 4, 4, 65536)
    return { bytes: img.bytes, message: msg(`header extension 0x6803f857 at ${hex(table.offset)}: length 65536 runs past 0x200`), offset: table.offset }
  } },
  { name: 'extension past the end of a file shorter than its cluster', code: 'CORRUPT', step: 'open', make: () => {
    const img = plainImage()
    const table = ext(img, spec.EXT_FEATURE_TABLE)
    pokeHeader(img.bytes, 'clusterBits', 16)
    pokeHeader(img.bytes, 'backingFileOffset', 60000)
    poke(img.bytes, table.offset + 4, 4, 6000)
    return { bytes: img.bytes, message: msg(`header extension 0x6803f857 at ${hex(table.offset)}: length 6000 runs past ${hex(img.bytes.length)}`), offset: table.offset }
  } },
  { name: 'backing format name of 16 bytes', code: 'CORRUPT', step: 'open', make: () => {
    const img = buildQcow2({ virtualSize: 65536, backingFile: 'b.qcow2', backingFormat: 'qcow2-but-longer' })
    const e = img.layout.extensions[0]!
    return { bytes: img.bytes, message: msg(`backing format name at ${hex(e.offset + 8)} is 16 bytes (at most 15)`), offset: e.offset }
  } },
  { name: 'bitmaps extension of 16 bytes', code: 'CORRUPT', step: 'open', make: () => {
    const img = backingBitmapsImage()
    const e = ext(img, spec.EXT_BITMAPS)
    poke(img.bytes, e.offset + 4, 4, 16)
    return { bytes: img.bytes, message: msg(`bitmaps extension at ${hex(e.offset)} is 16 bytes (24 expected)`), offset: e.offset }
  } },
  { name: 'bitmap directory offset above 2^53', code: 'CORRUPT', step: 'open', make: () => {
    const img = backingBitmapsImage()
    const e = ext(img, spec.EXT_BITMAPS)
    poke(img.bytes, e.offset + 8 + 16, 8, 1n << 60n)
    return { bytes: img.bytes, message: msg(`header extension 0x23852875 at ${hex(e.offset)}: bitmap directory offset 0x1000000000000000 is above 2^53`), offset: e.offset }
  } },

  // L1 table (QEMU: "Active L1 table too large", "L1 table is too small", "Invalid L1 table offset").
  { name: 'L1 table larger than 32 MiB', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'l1Size', spec.MAX_L1_BYTES / 8 + 1)
    return { bytes, message: msg('active L1 table of 4194305 entries exceeds 33554432 bytes'), offset: 36 }
  } },
  { name: 'L1 table too small for the virtual size', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'l1Size', 1)
    return { bytes, message: msg('L1 table of 1 entries is too small for virtual size 65536 (needs 2)'), offset: 36 }
  } },
  { name: 'L1 table unaligned', code: 'CORRUPT', step: 'open', make: () => {
    const img = plainImage()
    pokeHeader(img.bytes, 'l1TableOffset', img.layout.l1TableOffset + 8)
    return { bytes: img.bytes, message: msg(`L1 table offset ${hex(img.layout.l1TableOffset + 8)} is not a cluster-aligned offset after the header`), offset: 40 }
  } },
  { name: 'L1 table at offset 0', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'l1TableOffset', 0)
    return { bytes, message: msg('L1 table offset 0x0 is not a cluster-aligned offset after the header'), offset: 40 }
  } },
  { name: 'L1 table past end of file', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'l1TableOffset', bytes.length)
    return { bytes, message: msg(`active L1 table at ${hex(bytes.length)} (2 entries) runs past end of file (${bytes.length} bytes)`), offset: bytes.length }
  } },
  { name: 'L1 entry reserved bit 0', code: 'CORRUPT', step: 'read', make: () => {
    const img = plainImage()
    poke(img.bytes, l1Entry(img, 0), 8, peek(img.bytes, l1Entry(img, 0), 8) | 1n)
    return { bytes: img.bytes, message: msg(`L1 table at ${hex(img.layout.l1TableOffset)} entry 0: reserved bits set`), offset: l1Entry(img, 0) }
  } },
  { name: 'L1 entry reserved bit 56', code: 'CORRUPT', step: 'read', make: () => {
    const img = plainImage()
    poke(img.bytes, l1Entry(img, 1), 8, peek(img.bytes, l1Entry(img, 1), 8) | (1n << 56n))
    return { bytes: img.bytes, message: msg(`L1 table at ${hex(img.layout.l1TableOffset)} entry 1: reserved bits set`), offset: l1Entry(img, 1) }
  } },
  { name: 'L2 table unaligned', code: 'CORRUPT', step: 'read', make: () => {
    const img = plainImage(12)
    const l2 = img.layout.l2Tables.get(0)!
    poke(img.bytes, l1Entry(img, 0), 8, BigInt(l2 + 512) | (1n << 63n))
    return { bytes: img.bytes, message: msg(`L1 table at ${hex(img.layout.l1TableOffset)} entry 0: L2 table offset ${hex(l2 + 512)} is not cluster aligned`), offset: l1Entry(img, 0) }
  } },
  { name: 'L2 table past end of file', code: 'CORRUPT', step: 'read', make: () => {
    const img = plainImage()
    poke(img.bytes, l1Entry(img, 0), 8, img.bytes.length)
    return { bytes: img.bytes, message: msg(`L2 table at ${hex(img.bytes.length)} (L1 entry 0) runs past end of file (${img.bytes.length} bytes)`), offset: img.bytes.length }
  } },
  { name: 'L2 table far past end of file (bit 55)', code: 'CORRUPT', step: 'read', make: () => {
    const img = plainImage()
    poke(img.bytes, l1Entry(img, 0), 8, 1n << 55n)
    return { bytes: img.bytes, message: msg('runs past end of file') }
  } },

  // L2 entries ("Cluster mapping", "Extended L2 Entries").
  { name: 'L2 entry reserved bit 1', code: 'CORRUPT', step: 'read', make: () => {
    const img = plainImage()
    const at = l2EntryOffset(img, 0)
    poke(img.bytes, at, 8, peek(img.bytes, at, 8) | 2n)
    return { bytes: img.bytes, message: msg(`L2 table at ${hex(img.layout.l2Tables.get(0)!)} entry 0: reserved bits set`), offset: at }
  } },
  { name: 'L2 entry reserved bit 56', code: 'CORRUPT', step: 'read', make: () => {
    const img = plainImage()
    const at = l2EntryOffset(img, 70)
    poke(img.bytes, at, 8, peek(img.bytes, at, 8) | (1n << 56n))
    return { bytes: img.bytes, message: msg(`L2 table at ${hex(img.layout.l2Tables.get(1)!)} entry 6: reserved bits set`), offset: at }
  } },
  { name: 'data cluster unaligned', code: 'CORRUPT', step: 'read', make: () => {
    const img = plainImage(12)
    const at = l2EntryOffset(img, 1)
    const host = img.layout.dataClusters.get(1)!
    poke(img.bytes, at, 8, BigInt(host + 1024) | (1n << 63n))
    return { bytes: img.bytes, message: msg(`L2 table at ${hex(img.layout.l2Tables.get(0)!)} entry 1: cluster offset ${hex(host + 1024)} is not cluster aligned`), offset: at }
  } },
  { name: 'compressed cluster with the COPIED flag', code: 'CORRUPT', step: 'read', make: () => {
    const img = compressedImage()
    const at = l2EntryOffset(img, 3)
    poke(img.bytes, at, 8, peek(img.bytes, at, 8) | (1n << 63n))
    return { bytes: img.bytes, message: msg('entry 3: compressed cluster has the COPIED flag set'), offset: at }
  } },
  { name: 'compressed cluster descriptor past end of file', code: 'CORRUPT', step: 'read', make: () => {
    const img = compressedImage()
    const host = img.bytes.length + 100
    poke(img.bytes, l2EntryOffset(img, 0), 8, (1n << 62n) | BigInt(host))
    return { bytes: img.bytes, message: msg(`compressed cluster at guest 0x0 (host ${hex(host)}) starts past end of file`), offset: host }
  } },
  { name: 'compressed cluster descriptor cut by end of file', code: 'CORRUPT', step: 'read', make: () => {
    const img = compressedImage()
    const host = img.bytes.length - 8
    poke(img.bytes, l2EntryOffset(img, 0), 8, (1n << 62n) | BigInt(host))
    return { bytes: img.bytes, message: msg(`compressed cluster at guest 0x0 (host ${hex(host)}): deflate stream`), offset: host }
  } },
  { name: 'compressed data that is not deflate', code: 'CORRUPT', step: 'read', make: () => {
    const img = compressedImage()
    const c = img.layout.compressed.get(0)!
    img.bytes.fill(0xff, c.hostOffset, c.hostOffset + c.length)
    return { bytes: img.bytes, message: msg(`compressed cluster at guest 0x0 (host ${hex(c.hostOffset)}): deflate stream is invalid`), offset: c.hostOffset }
  } },
  { name: 'compressed data that inflates past the cluster', code: 'CORRUPT', step: 'read', make: () => {
    const img = buildQcow2({ virtualSize: 65536, clusters: { 0: { kind: 'compressed', data: pattern(512, 1) } } })
    // A deflate bomb in miniature: a few bytes that inflate to 64 KiB, in place of the stream.
    const c = img.layout.compressed.get(0)!
    const bomb = deflateRawSync(new Uint8Array(65536), { windowBits: 12 })
    img.bytes.set(bomb, c.hostOffset)
    poke(img.bytes, l2EntryOffset(img, 0), 8, (1n << 62n) | (1n << BigInt(70 - 9)) | BigInt(c.hostOffset))
    return { bytes: img.bytes, message: msg(`compressed cluster at guest 0x0 (host ${hex(c.hostOffset)}): deflate stream is invalid (it inflates to more than 512 bytes)`), offset: c.hostOffset }
  } },
  { name: 'extended L2: subclusters both allocated and zero', code: 'CORRUPT', step: 'read', make: () => {
    const img = extendedL2Image()
    const at = l2EntryOffset(img, 1, EXTL2)
    poke(img.bytes, at + 8, 8, 0x0000_0001_0000_0001n)
    return { bytes: img.bytes, message: msg(`L2 table at ${hex(img.layout.l2Tables.get(0)!)} entry 1: subclusters both allocated and zero (bitmap 0x1)`), offset: at }
  } },
  { name: 'extended L2: unallocated cluster with allocated subclusters', code: 'CORRUPT', step: 'read', make: () => {
    const img = extendedL2Image()
    const at = l2EntryOffset(img, 2, EXTL2)
    poke(img.bytes, at + 8, 8, 0x1n)
    return { bytes: img.bytes, message: msg('entry 2: unallocated cluster has allocated subclusters (bitmap 0x1)'), offset: at }
  } },
  { name: 'extended L2: compressed cluster with a subcluster bitmap', code: 'CORRUPT', step: 'read', make: () => {
    const img = extendedL2Image()
    const at = l2EntryOffset(img, 5, EXTL2)
    poke(img.bytes, at + 8, 8, 0x1_0000_0000n)
    return { bytes: img.bytes, message: msg('entry 5: compressed cluster has a non-zero subcluster bitmap'), offset: at }
  } },
  { name: 'extended L2: zero flag in the standard word', code: 'CORRUPT', step: 'read', make: () => {
    const img = extendedL2Image()
    const at = l2EntryOffset(img, 0, EXTL2)
    poke(img.bytes, at, 8, peek(img.bytes, at, 8) | 1n)
    return { bytes: img.bytes, message: msg('entry 0: reserved bits set'), offset: at }
  } },

  // Refcount table (QEMU: "Reference count table too large", "Invalid reference count table offset").
  { name: 'refcount table larger than 8 MiB', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'refcountTableClusters', spec.MAX_REFTABLE_BYTES / 512 + 1)
    return { bytes, message: msg('refcount table of 16385 clusters exceeds 8388608 bytes'), offset: 56 }
  } },
  { name: 'refcount table unaligned', code: 'CORRUPT', step: 'open', make: () => {
    const img = plainImage()
    pokeHeader(img.bytes, 'refcountTableOffset', img.layout.refcountTableOffset + 64)
    return { bytes: img.bytes, message: msg(`refcount table offset ${hex(img.layout.refcountTableOffset + 64)} is not a cluster-aligned offset after the header`), offset: 48 }
  } },
  { name: 'refcount table without clusters', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = plainImage()
    pokeHeader(bytes, 'refcountTableClusters', 0)
    return { bytes, message: msg('refcount table has no clusters'), offset: 56 }
  } },

  // Snapshot table ("Snapshot table"; QEMU qcow2_read_snapshots).
  { name: 'more than 65536 snapshots', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = snapshotImage()
    pokeHeader(bytes, 'snapshotCount', spec.MAX_SNAPSHOTS + 1)
    return { bytes, message: msg('snapshot count 65537 exceeds 65536'), offset: 60 }
  } },
  { name: 'snapshot table past end of file', code: 'CORRUPT', step: 'open', make: () => {
    const { bytes } = snapshotImage()
    pokeHeader(bytes, 'snapshotsOffset', bytes.length)
    return { bytes, message: msg(`snapshot table at ${hex(bytes.length)} runs past end of file`), offset: bytes.length }
  } },
  { name: 'snapshot table unaligned', code: 'CORRUPT', step: 'open', make: () => {
    const img = snapshotImage()
    pokeHeader(img.bytes, 'snapshotsOffset', img.layout.snapshotsOffset + 8)
    return { bytes: img.bytes, message: msg(`snapshot table offset ${hex(img.layout.snapshotsOffset + 8)} is not a cluster-aligned offset after the header`), offset: 64 }
  } },
  { name: 'snapshot extra data of 1025 bytes', code: 'CORRUPT', step: 'open', make: () => {
    const img = snapshotImage()
    const entry = img.layout.snapshots[0]!.entryOffset
    pokeSnapshot(img.bytes, entry, 'extraDataSize', 1025)
    return { bytes: img.bytes, message: msg(`snapshot 0 at ${hex(entry)}: extra data of 1025 bytes exceeds 1024`), offset: entry }
  } },
  { name: 'v3 snapshot extra data of 8 bytes', code: 'CORRUPT', step: 'open', make: () => {
    const img = snapshotImage()
    const entry = img.layout.snapshots[1]!.entryOffset
    pokeSnapshot(img.bytes, entry, 'extraDataSize', 8)
    return { bytes: img.bytes, message: msg(`snapshot 1 at ${hex(entry)}: v3 snapshot has 8 bytes of extra data (at least 16)`), offset: entry }
  } },
  { name: 'snapshot name past end of file', code: 'CORRUPT', step: 'open', make: () => {
    const img = snapshotImage()
    pokeSnapshot(img.bytes, img.layout.snapshots[1]!.entryOffset, 'nameSize', 65535)
    return { bytes: img.bytes, message: msg(`snapshot table at ${hex(img.layout.snapshotsOffset)} runs past end of file`) }
  } },
  { name: 'snapshot L1 table unaligned', code: 'CORRUPT', step: 'open', make: () => {
    const img = snapshotImage()
    const entry = img.layout.snapshots[0]!.entryOffset
    pokeSnapshot(img.bytes, entry, 'l1TableOffset', img.layout.snapshots[0]!.l1TableOffset + 8)
    return { bytes: img.bytes, message: msg(`snapshot 0 at ${hex(entry)}: L1 table offset ${hex(img.layout.snapshots[0]!.l1TableOffset + 8)} is not cluster aligned`), offset: entry }
  } },
  { name: 'snapshot VM clock above 2^53', code: 'CORRUPT', step: 'open', make: () => {
    const img = snapshotImage()
    const entry = img.layout.snapshots[1]!.entryOffset
    pokeSnapshot(img.bytes, entry, 'vmClockNsec', 1n << 63n)
    return { bytes: img.bytes, message: msg(`snapshot 1 at ${hex(entry)}: vmClockNsec 0x8000000000000000 is above 2^53`), offset: entry }
  } },
  { name: 'snapshot IDs not unique', code: 'CORRUPT', step: 'open', make: () => {
    const img = snapshotImage()
    const entry = img.layout.snapshots[1]!.entryOffset
    img.bytes[entry + 40 + 24] = '1'.charCodeAt(0)
    return { bytes: img.bytes, message: msg(`snapshot 1 at ${hex(entry)}: snapshot ID '1' is not unique`), offset: entry }
  } },
  { name: 'snapshot L1 table larger than 32 MiB', code: 'CORRUPT', step: 'open', snapshot: 'own', make: () => {
    const img = snapshotImage()
    pokeSnapshot(img.bytes, img.layout.snapshots[1]!.entryOffset, 'l1Size', spec.MAX_L1_BYTES / 8 + 1)
    return { bytes: img.bytes, message: msg('L1 table of snapshot 2 of 4194305 entries exceeds 33554432 bytes') }
  } },
  { name: 'snapshot L1 table past end of file', code: 'CORRUPT', step: 'open', snapshot: 'own', make: () => {
    const img = snapshotImage()
    pokeSnapshot(img.bytes, img.layout.snapshots[1]!.entryOffset, 'l1TableOffset', img.bytes.length)
    return { bytes: img.bytes, message: msg(`L1 table of snapshot 2 at ${hex(img.bytes.length)} (2 entries) runs past end of file`), offset: img.bytes.length }
  } },

  // Bitmaps ("Bitmaps extension", "Bitmap directory"), read by info.
  { name: 'bitmap count 0', code: 'CORRUPT', step: 'open', make: () => {
    const img = backingBitmapsImage()
    poke(img.bytes, ext(img, spec.EXT_BITMAPS).offset + 8, 4, 0)
    return { bytes: img.bytes, message: msg('bitmap count 0 out of range (1..65535)') }
  } },
  { name: 'bitmap directory unaligned', code: 'CORRUPT', step: 'open', make: () => {
    const img = backingBitmapsImage()
    poke(img.bytes, ext(img, spec.EXT_BITMAPS).offset + 8 + 16, 8, img.layout.bitmapDirectoryOffset + 8)
    return { bytes: img.bytes, message: msg(`bitmap directory offset ${hex(img.layout.bitmapDirectoryOffset + 8)} is not cluster aligned`) }
  } },
  { name: 'bitmap directory past end of file', code: 'CORRUPT', step: 'info', make: () => {
    const img = backingBitmapsImage()
    poke(img.bytes, ext(img, spec.EXT_BITMAPS).offset + 8 + 16, 8, img.bytes.length)
    return { bytes: img.bytes, message: msg(`bitmap directory at ${hex(img.bytes.length)} runs past end of file`), offset: img.bytes.length }
  } },
  { name: 'bitmap granularity 2^40', code: 'CORRUPT', step: 'info', make: () => {
    const img = backingBitmapsImage()
    poke(img.bytes, img.layout.bitmapDirectoryOffset + 17, 1, 40)
    return { bytes: img.bytes, message: msg('bitmap directory entry 0: granularity 2^40 out of range (2^9..2^31)'), offset: img.layout.bitmapDirectoryOffset }
  } },
  { name: 'bitmap name past the directory', code: 'CORRUPT', step: 'info', make: () => {
    const img = backingBitmapsImage()
    poke(img.bytes, img.layout.bitmapDirectoryOffset + 18, 2, 4000)
    return { bytes: img.bytes, message: msg('bitmap directory entry 0 name runs past the directory'), offset: img.layout.bitmapDirectoryOffset }
  } },
]
