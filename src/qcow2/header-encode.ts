// Encoding the first cluster as QEMU's qcow2_update_header writes it: the header (72 bytes for
// v2, 112 for v3 plus preserved unknown bytes), then extensions in QEMU's order, the end
// marker, and the backing file name right after it.
import { concatBytes, setU64, viewOf } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import type { Storage } from '../io/storage.js'
import { HEADER_V2, type Qcow2Header } from './header.js'
import * as spec from './spec.js'

const encoder = new TextEncoder()

function extension(type: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + Math.ceil(data.length / 8) * 8)
  const view = viewOf(out)
  view.setUint32(0, type)
  view.setUint32(4, data.length)
  out.set(data, 8)
  return out
}

/** QEMU's feature name table: all eight known features, 48 bytes each. */
function featureTable(): Uint8Array {
  const out = new Uint8Array(spec.FEATURE_NAMES.length * 48)
  spec.FEATURE_NAMES.forEach((f, i) => {
    out[i * 48] = f.type
    out[i * 48 + 1] = f.bit
    out.set(encoder.encode(f.name), i * 48 + 2)
  })
  return out
}

/** Encodes header, extensions and backing name into a buffer of one cluster. */
export function encodeHeaderCluster(header: Qcow2Header): Uint8Array {
  const clusterSize = 2 ** header.clusterBits
  const v3 = header.version >= 3
  const parts: Uint8Array[] = []
  const fixedLength = v3 ? spec.HEADER_V3_LENGTH + header.extraHeaderBytes.length : spec.HEADER_V2_LENGTH
  const fixed = new Uint8Array(fixedLength)
  const view = viewOf(fixed)
  parts.push(fixed)
  if (header.backingFormat !== undefined) parts.push(extension(spec.EXT_BACKING_FORMAT, encoder.encode(header.backingFormat)))
  if (header.dataFile !== undefined) parts.push(extension(spec.EXT_DATA_FILE, encoder.encode(header.dataFile)))
  if (header.cryptoHeader) {
    const data = new Uint8Array(16)
    setU64(viewOf(data), 0, header.cryptoHeader.offset)
    setU64(viewOf(data), 8, header.cryptoHeader.length)
    parts.push(extension(spec.EXT_CRYPTO_HEADER, data))
  }
  // QEMU writes the feature table only for v3 images with clusters above 4 KiB.
  if (v3 && clusterSize > 4096) parts.push(extension(spec.EXT_FEATURE_TABLE, featureTable()))
  if (header.bitmaps) {
    const data = new Uint8Array(24)
    const dv = viewOf(data)
    dv.setUint32(0, header.bitmaps.bitmapCount)
    setU64(dv, 8, header.bitmaps.directorySize)
    setU64(dv, 16, header.bitmaps.directoryOffset)
    parts.push(extension(spec.EXT_BITMAPS, data))
  }
  for (const ext of header.unknownExtensions) parts.push(extension(ext.type, ext.data))
  parts.push(new Uint8Array(8)) // end of extensions
  let length = parts.reduce((n, p) => n + p.length, 0)
  const backing = header.backingFile === undefined ? undefined : encoder.encode(header.backingFile)
  const backingOffset = backing ? length : 0
  if (backing) {
    if (backing.length > spec.MAX_BACKING_FILE_NAME) throw new ImageError('INVALID_ARGUMENT', `backing file name of ${backing.length} bytes is too long (at most ${spec.MAX_BACKING_FILE_NAME})`)
    parts.push(backing)
    length += backing.length
  }
  if (length > clusterSize) throw new ImageError('INVALID_ARGUMENT', 'No space left in the file header: the header, its extensions and the backing file name must fit in one cluster')
  HEADER_V2.encode(view, {
    magic: spec.QCOW_MAGIC, version: header.version,
    backingFileOffset: backingOffset, backingFileSize: backing?.length ?? 0,
    clusterBits: header.clusterBits, size: header.size, cryptMethod: header.cryptMethod,
    l1Size: header.l1Size, l1TableOffset: header.l1TableOffset,
    refcountTableOffset: header.refcountTableOffset, refcountTableClusters: header.refcountTableClusters,
    snapshotCount: header.snapshotCount, snapshotsOffset: header.snapshotsOffset,
  })
  if (v3) {
    view.setBigUint64(72, header.incompatibleFeatures)
    view.setBigUint64(80, header.compatibleFeatures)
    view.setBigUint64(88, header.autoclearFeatures)
    view.setUint32(96, header.refcountOrder)
    view.setUint32(100, fixedLength)
    view.setUint8(104, header.compressionType)
    fixed.set(header.extraHeaderBytes, spec.HEADER_V3_LENGTH)
  }
  return concatBytes(parts)
}

/**
 * The header pointer pairs that move a table (qcow2.rst "Header"): written as one 12-byte
 * write, then flushed, so the count and the offset always change together.
 */
export type HeaderPointer =
  | { field: 'l1'; entries: number; offset: number } // bytes 36-47: l1_size, l1_table_offset
  | { field: 'reftable'; offset: number; clusters: number } // bytes 48-59: offset, clusters
  | { field: 'snapshots'; count: number; offset: number } // bytes 60-71: nb_snapshots, offset

/** Writes one header pointer pair durably. */
export async function writeHeaderPointer(storage: Storage, pointer: HeaderPointer): Promise<void> {
  const bytes = new Uint8Array(12)
  const view = viewOf(bytes)
  let at: number
  if (pointer.field === 'reftable') {
    setU64(view, 0, pointer.offset)
    view.setUint32(8, pointer.clusters)
    at = 48
  } else {
    view.setUint32(0, pointer.field === 'l1' ? pointer.entries : pointer.count)
    setU64(view, 4, pointer.offset)
    at = pointer.field === 'l1' ? 36 : 60
  }
  await storage.write(at, bytes)
  await storage.flush()
}

/**
 * Clears the autoclear bits a writer does not keep up to date (qcow2.rst "autoclear_features";
 * QEMU's qcow2_do_open on a writable open): qimg keeps bitmaps (v3 only: v2 has no autoclear
 * bits, QEMU drops them there too) and data-file-raw. Updates `header` and writes byte 88.
 */
export async function clearStaleAutoclear(storage: Storage, header: Qcow2Header): Promise<void> {
  const kept = spec.AUTOCLEAR_DATA_FILE_RAW | (header.version >= 3 ? spec.AUTOCLEAR_BITMAPS : 0n)
  if ((header.autoclearFeatures & ~kept) === 0n) return
  header.autoclearFeatures &= kept
  const bytes = new Uint8Array(8)
  viewOf(bytes).setBigUint64(0, header.autoclearFeatures)
  await storage.write(88, bytes)
  await storage.flush()
}
