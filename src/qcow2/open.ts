// Opening a QCOW2 image: the checks QEMU's qcow2_do_open makes before any table is used,
// then the active (or a snapshot's) L1 table, the snapshot table and the bitmap directory.
import { ImageError, hex } from '../errors.js'
import type { ReadableStorage } from '../io/storage.js'
import { corrupt, decodeHeader, featureNamesOf, type Qcow2Header } from './header.js'
import { l1EntriesFor, makeGeometry, type Geometry } from './geometry.js'
import * as spec from './spec.js'

/** Header plus everything derived from it that every lookup needs. */
export interface Qcow2Layout {
  header: Qcow2Header
  geometry: Geometry
  fileSize: number
  hasDataFile: boolean
}


/** Bytes of the file read first when opening. */
const HEAD_BYTES = 64 * 1024

/**
 * Whether the header, every extension up to the end marker and the backing file name lie
 * within `head` (a prefix of the file), so decoding it gives what decoding the whole of
 * cluster 0 gives. Anything unusual answers false and the whole cluster is read.
 */
function headerFits(head: Uint8Array): boolean {
  if (head.length < spec.HEADER_V3_MIN_LENGTH) return false
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength)
  const version = view.getUint32(4)
  if (version !== 2 && version !== 3) return false
  const backingOffset = view.getUint32(8) === 0 ? view.getUint32(12) : Infinity
  if (backingOffset + view.getUint32(16) > head.length) return false
  let at = version === 3 ? view.getUint32(100) : spec.HEADER_V2_LENGTH
  for (let n = 0; n < 1024; n++) {
    if (at + 8 > head.length) return false
    const type = view.getUint32(at)
    const length = view.getUint32(at + 4)
    if (type === 0) return true
    at += 8 + Math.ceil(length / 8) * 8
  }
  return false
}

/** Reads and validates the header of `storage`. */
export async function loadLayout(storage: ReadableStorage): Promise<Qcow2Layout> {
  const file = storage.name
  const fileSize = await storage.size()
  // The header and its extensions live in cluster 0. The first 64 KiB hold them in practice
  // (one request for remote storage); the rest of a larger cluster 0 is read only when the
  // extensions or the backing file name reach past it.
  let first = await storage.read(0, Math.min(fileSize, HEAD_BYTES))
  if (first.length < fileSize && !headerFits(first)) first = await storage.read(0, Math.min(fileSize, 2 ** spec.MAX_CLUSTER_BITS))
  const header = decodeHeader(first, file)
  const clusterSize = 2 ** header.clusterBits
  const extendedL2 = (header.incompatibleFeatures & spec.INCOMPAT_EXTL2) !== 0n
  const hasDataFile = (header.incompatibleFeatures & spec.INCOMPAT_DATA_FILE) !== 0n
  const geometry = makeGeometry(header.clusterBits, extendedL2)

  if (extendedL2 && header.clusterBits < spec.MIN_EXTENDED_L2_CLUSTER_BITS) {
    throw corrupt(file, `extended L2 entries need clusters of at least ${2 ** spec.MIN_EXTENDED_L2_CLUSTER_BITS} bytes (cluster size ${clusterSize})`, 20)
  }
  const compressionBit = (header.incompatibleFeatures & spec.INCOMPAT_COMPRESSION) !== 0n
  if (header.compressionType !== spec.COMPRESSION_ZLIB && header.compressionType !== spec.COMPRESSION_ZSTD) {
    throw new ImageError('UNSUPPORTED', `${file}: unknown compression type ${header.compressionType}`, { file, offset: 104 })
  }
  if (compressionBit !== (header.compressionType !== spec.COMPRESSION_ZLIB)) {
    throw corrupt(file, compressionBit
      ? 'compression type incompatible bit is set but the compression type is zlib'
      : `compression type ${header.compressionType} is set without the compression type incompatible bit`, 104)
  }
  if (hasDataFile && header.backingFile !== undefined && (header.autoclearFeatures & spec.AUTOCLEAR_DATA_FILE_RAW) !== 0n) {
    throw corrupt(file, 'a raw external data file cannot be combined with a backing file', 88)
  }
  if (header.cryptMethod === spec.CRYPT_LUKS && header.cryptoHeader === undefined) {
    throw corrupt(file, 'LUKS encryption without a full disk encryption header extension', 32)
  }
  if (header.cryptMethod !== spec.CRYPT_LUKS && header.cryptoHeader !== undefined) {
    throw corrupt(file, 'full disk encryption header extension present for a non-LUKS image', 32)
  }
  if (header.cryptoHeader && header.cryptoHeader.offset % clusterSize !== 0) {
    throw corrupt(file, `encryption header offset ${hex(header.cryptoHeader.offset)} is not cluster aligned`)
  }

  // L1 table (QEMU: "Active L1 table too large", "L1 table is too small", "Invalid L1 table offset")
  if (header.l1Size * 8 > spec.MAX_L1_BYTES) throw corrupt(file, `active L1 table of ${header.l1Size} entries exceeds ${spec.MAX_L1_BYTES} bytes`, 36, 'Active L1 table too large')
  if (header.size > Number.MAX_SAFE_INTEGER - clusterSize) throw corrupt(file, `virtual size ${header.size} is too large`, 24)
  const l1Needed = l1EntriesFor(geometry, header.size)
  if (header.l1Size < l1Needed) throw corrupt(file, `L1 table of ${header.l1Size} entries is too small for virtual size ${header.size} (needs ${l1Needed})`, 36, 'L1 table is too small')
  if (header.l1Size > 0 && (header.l1TableOffset % clusterSize !== 0 || header.l1TableOffset === 0)) {
    throw corrupt(file, `L1 table offset ${hex(header.l1TableOffset)} is not a cluster-aligned offset after the header`, 40, 'Active L1 table offset invalid')
  }
  // Refcount table ("Reference count table too large", "Invalid reference count table offset")
  if (header.refcountTableClusters * clusterSize > spec.MAX_REFTABLE_BYTES) {
    throw corrupt(file, `refcount table of ${header.refcountTableClusters} clusters exceeds ${spec.MAX_REFTABLE_BYTES} bytes`, 56, 'Reference count table too large')
  }
  if (header.refcountTableClusters === 0) throw corrupt(file, 'refcount table has no clusters', 56, 'Image does not contain a reference count table')
  if (header.refcountTableOffset % clusterSize !== 0 || header.refcountTableOffset === 0) {
    throw corrupt(file, `refcount table offset ${hex(header.refcountTableOffset)} is not a cluster-aligned offset after the header`, 48, 'Reference count table offset invalid')
  }
  if (header.snapshotCount > spec.MAX_SNAPSHOTS) throw corrupt(file, `snapshot count ${header.snapshotCount} exceeds ${spec.MAX_SNAPSHOTS}`, 60, 'Snapshot table too large')
  if (header.bitmaps) {
    const b = header.bitmaps
    if ((header.autoclearFeatures & spec.AUTOCLEAR_BITMAPS) !== 0n) {
      if (b.bitmapCount === 0 || b.bitmapCount > spec.MAX_BITMAPS) throw corrupt(file, `bitmap count ${b.bitmapCount} out of range (1..${spec.MAX_BITMAPS})`)
      if (b.directorySize > spec.MAX_BITMAP_DIRECTORY_BYTES) throw corrupt(file, `bitmap directory of ${b.directorySize} bytes exceeds ${spec.MAX_BITMAP_DIRECTORY_BYTES}`)
      if (b.directoryOffset % clusterSize !== 0) throw corrupt(file, `bitmap directory offset ${hex(b.directoryOffset)} is not cluster aligned`)
    }
  }
  return { header, geometry, fileSize, hasDataFile }
}

/** Reads an L1 table of `entries` entries at `offset`, failing with CORRUPT past end of file. */
/**
 * The size limit of an L1 table (QEMU's qcow2_validate_table), checked before the table is
 * read: a hostile entry count must not become an allocation.
 */
export function validateL1Size(file: string, offset: number, entries: number, what: string): void {
  if (entries * 8 > spec.MAX_L1_BYTES) throw corrupt(file, `${what} of ${entries} entries exceeds ${spec.MAX_L1_BYTES} bytes`, offset)
}

export async function loadL1Table(storage: ReadableStorage, layout: Qcow2Layout, offset: number, entries: number, what: string): Promise<DataView> {
  validateL1Size(storage.name, offset, entries, what)
  if (entries === 0) return new DataView(new ArrayBuffer(0))
  if (offset + entries * 8 > layout.fileSize) throw corrupt(storage.name, `${what} at ${hex(offset)} (${entries} entries) runs past end of file (${layout.fileSize} bytes)`, offset)
  const bytes = await storage.read(offset, entries * 8)
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** Warnings QEMU prints when opening this image. */
export function openWarnings(layout: Qcow2Layout): string[] {
  const warnings: string[] = []
  if (layout.header.incompatibleFeatures & spec.INCOMPAT_CORRUPT) {
    warnings.push(`qcow2: Image is corrupt; cannot be opened read/write`)
  }
  const unknownAutoclear = layout.header.autoclearFeatures & ~0x3n
  if (unknownAutoclear) warnings.push(`qcow2: ignoring unknown autoclear feature(s): ${featureNamesOf(unknownAutoclear, 2, layout.header.featureNames).join(', ')}`)
  return warnings
}
