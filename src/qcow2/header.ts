// The QCOW2 header (v2 and v3, "Header" in qcow2.rst) and its extensions: decode and validate.
// Every field read from the file is checked before anything uses it.
import { decodeText, getU64, viewOf } from '../binary/bytes.js'
import { struct } from '../binary/struct.js'
import { ImageError, hex } from '../errors.js'
import * as spec from './spec.js'

/** Bytes 0-71, common to v2 and v3. */
export const HEADER_V2 = struct({
  magic: [0, 'u32'],
  version: [4, 'u32'],
  backingFileOffset: [8, 'u64'],
  backingFileSize: [16, 'u32'],
  clusterBits: [20, 'u32'],
  size: [24, 'u64'],
  cryptMethod: [32, 'u32'],
  l1Size: [36, 'u32'],
  l1TableOffset: [40, 'u64'],
  refcountTableOffset: [48, 'u64'],
  refcountTableClusters: [56, 'u32'],
  snapshotCount: [60, 'u32'],
  snapshotsOffset: [64, 'u64'],
})

/** One entry of the feature name table extension. */
export interface FeatureName { type: number; bit: number; name: string }

/** Bitmaps extension payload. */
export interface BitmapsExtension { bitmapCount: number; directorySize: number; directoryOffset: number }

/** The fixed v2 fields, as numbers. */
export type HeaderV2Fields = ReturnType<typeof HEADER_V2.decode>

/** A decoded header with its extensions. */
export interface Qcow2Header extends HeaderV2Fields {
  incompatibleFeatures: bigint
  compatibleFeatures: bigint
  autoclearFeatures: bigint
  refcountOrder: number
  headerLength: number
  compressionType: number
  /** Header bytes beyond the fields qimg knows (kept for rewriting, spec "additional fields"). */
  extraHeaderBytes: Uint8Array
  backingFile: string | undefined
  backingFormat: string | undefined
  dataFile: string | undefined
  featureNames: FeatureName[]
  bitmaps: BitmapsExtension | undefined
  cryptoHeader: { offset: number; length: number } | undefined
  /** Extensions of unknown type, in file order (preserved on rewrite). */
  unknownExtensions: { type: number; data: Uint8Array }[]
}

/** A CORRUPT error about `file`; `qemuText` is what QEMU's qcow2_do_open says instead. */
export function corrupt(file: string, message: string, offset?: number, qemuText?: string): ImageError {
  return new ImageError('CORRUPT', `${file}: ${message}`, { file, ...(offset === undefined ? {} : { offset }), ...(qemuText === undefined ? {} : { qemuText }) })
}

/**
 * QEMU's text for a header u64 qimg cannot hold (2^53 and above), in qcow2_do_open's order of
 * checks: the backing file offset, then qcow2_validate_table for the refcount table, the snapshot
 * table and the active L1 table ("offset invalid" past INT64_MAX), then the virtual size.
 */
function qemuOutOfRangeText(view: DataView, clusterSize: number): string | undefined {
  const tooBig = 2n ** 53n
  // qcow2_validate_table: past INT64_MAX with the table, or not cluster aligned; a table that
  // passes is then read, and the read past the end of the file fails.
  const offsetInvalid = (offset: bigint, bytes: bigint): boolean => offset > 2n ** 63n - 1n - bytes || offset % BigInt(clusterSize) !== 0n
  if (view.getBigUint64(8) > BigInt(clusterSize)) return 'Invalid backing file offset'
  if (view.getBigUint64(48) >= tooBig) return 'Reference count table offset invalid'
  const snapshotsOffset = view.getBigUint64(64)
  if (snapshotsOffset >= tooBig) {
    // sizeof(QCowSnapshotHeader) is 40 bytes.
    return offsetInvalid(snapshotsOffset, BigInt(view.getUint32(60)) * 40n) ? 'Snapshot table offset invalid' : 'Failed to read snapshot table: Input/output error'
  }
  const l1TableOffset = view.getBigUint64(40)
  if (l1TableOffset >= tooBig) {
    return offsetInvalid(l1TableOffset, BigInt(view.getUint32(36)) * 8n) ? 'Active L1 table offset invalid' : 'Could not read L1 table: Input/output error'
  }
  // size_to_l1 above INT_MAX: "Image is too big"; below, no L1 table qimg accepts is large enough.
  const l2Coverage = BigInt(clusterSize) * BigInt(clusterSize / 8)
  return (view.getBigUint64(24) + l2Coverage - 1n) / l2Coverage > 0x7fffffffn ? 'Image is too big' : 'L1 table is too small'
}

/** Names of the set bits of `features` of the given type, from the image's table or QEMU's. */
export function featureNamesOf(features: bigint, type: number, table: readonly FeatureName[]): string[] {
  const names: string[] = []
  for (let bit = 0; bit < 64; bit++) {
    if (!(features & (1n << BigInt(bit)))) continue
    const entry = table.find((f) => f.type === type && f.bit === bit) ?? spec.FEATURE_NAMES.find((f) => f.type === type && f.bit === bit)
    names.push(entry ? entry.name : `Unknown ${['incompatible', 'compatible', 'autoclear'][type]} feature: ${(1n << BigInt(bit)).toString(16)}`)
  }
  return names
}

/**
 * The list of QEMU's report_unsupported_feature: the image's feature table in its order (to the
 * first nameless entry) names the incompatible bits of `mask` it has, each once; the bits left
 * are one hex mask.
 */
export function unsupportedFeatures(mask: bigint, table: readonly FeatureName[]): string {
  const names: string[] = []
  for (const entry of table) {
    if (entry.name === '') break
    const bit = 1n << BigInt(entry.bit)
    if (entry.type !== 0 || !(mask & bit)) continue
    names.push(entry.name)
    mask &= ~bit
  }
  if (mask) names.push(`Unknown incompatible feature: ${mask.toString(16)}`)
  return names.join(', ')
}

/**
 * Decodes the header from the first cluster of the file (`bytes` may be shorter when the file
 * is). Throws NOT_AN_IMAGE on a wrong magic, UNSUPPORTED or CORRUPT on rules QEMU enforces.
 */
export function decodeHeader(bytes: Uint8Array, file: string): Qcow2Header {
  if (bytes.length < spec.HEADER_V2_LENGTH) throw new ImageError('NOT_AN_IMAGE', `${file}: file of ${bytes.length} bytes is too short for a qcow2 header`, { file, qemuText: 'Image is not in qcow2 format' })
  const view = viewOf(bytes)
  if (view.getUint32(0) !== spec.QCOW_MAGIC) throw new ImageError('NOT_AN_IMAGE', `${file}: not a qcow2 image (bad magic 0x${view.getUint32(0).toString(16)})`, { file, offset: 0 })
  const version = view.getUint32(4)
  if (version !== 2 && version !== 3) throw new ImageError('UNSUPPORTED', `${file}: unsupported qcow2 version ${version}`, { file, offset: 4 })
  let base: HeaderV2Fields
  try {
    base = HEADER_V2.decode(view)
  } catch (cause) {
    const clusterBits = view.getUint32(20)
    const qemuText = clusterBits >= spec.MIN_CLUSTER_BITS && clusterBits <= spec.MAX_CLUSTER_BITS ? qemuOutOfRangeText(view, 2 ** clusterBits) : undefined
    throw corrupt(file, `header field out of range (${(cause as Error).message})`, 0, qemuText)
  }
  const clusterBits = base.clusterBits
  if (clusterBits < spec.MIN_CLUSTER_BITS || clusterBits > spec.MAX_CLUSTER_BITS) {
    throw new ImageError('UNSUPPORTED', `${file}: cluster size 2^${clusterBits} out of range (2^${spec.MIN_CLUSTER_BITS}..2^${spec.MAX_CLUSTER_BITS})`, { file, offset: 20 })
  }
  const clusterSize = 2 ** clusterBits
  let incompatibleFeatures = 0n
  let compatibleFeatures = 0n
  let autoclearFeatures = 0n
  let refcountOrder = 4
  let headerLength: number = spec.HEADER_V2_LENGTH
  let compressionType = 0
  if (version === 3) {
    if (bytes.length < spec.HEADER_V3_MIN_LENGTH) throw corrupt(file, `v3 header needs ${spec.HEADER_V3_MIN_LENGTH} bytes, file has ${bytes.length}`, 0)
    incompatibleFeatures = view.getBigUint64(72)
    compatibleFeatures = view.getBigUint64(80)
    autoclearFeatures = view.getBigUint64(88)
    refcountOrder = view.getUint32(96)
    headerLength = view.getUint32(100)
    if (headerLength < spec.HEADER_V3_MIN_LENGTH) throw corrupt(file, `header length ${headerLength} too short (at least ${spec.HEADER_V3_MIN_LENGTH})`, 100, 'qcow2 header too short')
    if (headerLength > clusterSize) throw corrupt(file, `header length ${headerLength} exceeds cluster size ${clusterSize}`, 100, 'qcow2 header exceeds cluster size')
    if (headerLength > bytes.length) throw corrupt(file, `header length ${headerLength} runs past end of file`, 100)
    if (headerLength > 104) compressionType = view.getUint8(104)
  }
  if (refcountOrder > 6) throw corrupt(file, `refcount order ${refcountOrder} too large (at most 6, 64-bit refcounts)`, 96)
  if (base.backingFileOffset > clusterSize) throw corrupt(file, `backing file offset ${hex(base.backingFileOffset)} is past the first cluster`, 8, 'Invalid backing file offset')
  if (base.cryptMethod > spec.CRYPT_LUKS) throw new ImageError('UNSUPPORTED', `${file}: unsupported encryption method ${base.cryptMethod}`, { file, offset: 32 })

  const header: Qcow2Header = {
    ...base,
    incompatibleFeatures, compatibleFeatures, autoclearFeatures, refcountOrder, headerLength, compressionType,
    extraHeaderBytes: version === 3 && headerLength > spec.HEADER_V3_LENGTH ? bytes.slice(spec.HEADER_V3_LENGTH, headerLength) : new Uint8Array(0),
    backingFile: undefined, backingFormat: undefined, dataFile: undefined,
    featureNames: [], bitmaps: undefined, cryptoHeader: undefined, unknownExtensions: [],
  }
  const unknown = incompatibleFeatures & ~spec.INCOMPAT_KNOWN
  if (unknown) {
    // QEMU reads the extensions for the feature table alone here, ignoring their errors.
    try {
      decodeExtensions(header, bytes, file)
    } catch {
      // what was read before the error names the features
    }
    throw new ImageError('UNSUPPORTED', `Could not open '${file}': Unsupported qcow2 feature(s): ${unsupportedFeatures(unknown, header.featureNames)}`, { file, offset: 72 })
  }
  decodeExtensions(header, bytes, file)
  if (base.backingFileOffset !== 0) {
    if (base.backingFileSize > spec.MAX_BACKING_FILE_NAME || base.backingFileOffset + base.backingFileSize > Math.min(clusterSize, bytes.length)) {
      throw corrupt(file, `backing file name of ${base.backingFileSize} bytes at ${hex(base.backingFileOffset)} does not fit in the first cluster (at most ${spec.MAX_BACKING_FILE_NAME} bytes)`, 16, 'Backing file name too long')
    }
    header.backingFile = decodeText(bytes.subarray(base.backingFileOffset, base.backingFileOffset + base.backingFileSize))
  }
  return header
}

const EXTENSION_TOO_LARGE = 'Header extension too large'

function decodeExtensions(header: Qcow2Header, bytes: Uint8Array, file: string): void {
  const view = viewOf(bytes)
  // Extensions end at the backing file name, else with cluster 0, and never past the file.
  const end = Math.min(header.backingFileOffset !== 0 ? header.backingFileOffset : 2 ** header.clusterBits, bytes.length)
  let offset = header.headerLength
  // Each extension is read in file order, as QEMU's qcow2_read_extensions does: one that appears
  // again replaces what the earlier one said (unknown ones are all kept).
  while (offset < end) {
    // qcow2_read_extensions: an extension whose 8-byte header or data runs past the end.
    if (offset + 8 > end) throw corrupt(file, `header extension at ${hex(offset)}: its 8-byte header runs past ${hex(end)}`, offset, EXTENSION_TOO_LARGE)
    const type = view.getUint32(offset)
    const length = view.getUint32(offset + 4)
    if (type === spec.EXT_END) return
    const dataOffset = offset + 8
    if (length > end - dataOffset) throw corrupt(file, `header extension 0x${type.toString(16)} at ${hex(offset)}: length ${length} runs past ${hex(end)}`, offset, EXTENSION_TOO_LARGE)
    const data = bytes.subarray(dataOffset, dataOffset + length)
    try {
      decodeExtension(header, type, data, offset, file)
    } catch (cause) {
      // A u64 above 2^53 (OUT_OF_RANGE from getU64) is a corrupt field of this extension.
      if (cause instanceof ImageError && cause.code === 'OUT_OF_RANGE') throw corrupt(file, `header extension 0x${type.toString(16)} at ${hex(offset)}: ${cause.message}`, offset)
      throw cause
    }
    offset = dataOffset + Math.ceil(length / 8) * 8
  }
}

function decodeExtension(header: Qcow2Header, type: number, data: Uint8Array, offset: number, file: string): void {
  const dv = viewOf(data)
  const length = data.length
  const dataOffset = offset + 8
  switch (type) {
    case spec.EXT_BACKING_FORMAT:
      if (length > spec.MAX_BACKING_FORMAT_NAME) throw corrupt(file, `backing format name at ${hex(dataOffset)} is ${length} bytes (at most ${spec.MAX_BACKING_FORMAT_NAME})`, offset)
      header.backingFormat = decodeText(data)
      break
    case spec.EXT_FEATURE_TABLE:
      // 48-byte entries; QEMU reads a partial last entry with zeros after the bytes given.
      header.featureNames = []
      for (let i = 0; i < length; i += 48) {
        const nameBytes = data.subarray(i + 2, i + 48)
        const nul = nameBytes.indexOf(0)
        header.featureNames.push({ type: data[i]!, bit: data[i + 1] ?? 0, name: decodeText(nul < 0 ? nameBytes : nameBytes.subarray(0, nul)) })
      }
      break
    case spec.EXT_BITMAPS:
      if (length < 24) throw corrupt(file, `bitmaps extension at ${hex(offset)} is ${length} bytes (24 expected)`, offset)
      header.bitmaps = {
        bitmapCount: dv.getUint32(0),
        directorySize: getU64(dv, 8, 'bitmap directory size'),
        directoryOffset: getU64(dv, 16, 'bitmap directory offset'),
      }
      break
    case spec.EXT_CRYPTO_HEADER:
      if (length !== 16) throw corrupt(file, `full disk encryption header extension at ${hex(offset)} is ${length} bytes (16 expected)`, offset)
      header.cryptoHeader = { offset: getU64(dv, 0, 'crypto header offset'), length: getU64(dv, 8, 'crypto header length') }
      break
    case spec.EXT_DATA_FILE:
      header.dataFile = decodeText(data)
      break
    default:
      header.unknownExtensions.push({ type, data: data.slice() })
  }
}
