// Poking named fields of QCOW2 structures in test images: the header and snapshot entry field
// tables (offsets copied from qcow2.rst), and big-endian integer peek/poke of any width.

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
