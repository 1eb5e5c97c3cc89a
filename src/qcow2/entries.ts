// L1, L2 and refcount-table entries ("Cluster mapping" in qcow2.rst) ⇄ discriminated unions.
// Raw bits never leave this file. Entries are read as (hi, lo) u32 words: no bigint here.
import { ImageError, hex } from '../errors.js'

const BIT63 = 0x8000_0000
const BIT62 = 0x4000_0000
/** Bits 56-62 of the high word (reserved in L1 entries). */
const L1_RESERVED_HI = 0x7f00_0000
/** Bits 56-61 of the high word (reserved in standard L2 entries). */
const L2_RESERVED_HI = 0x3f00_0000

/** A decoded L1 entry: the L2 table it points to, if any. */
export type L1Entry =
  | { kind: 'unallocated' }
  | { kind: 'table'; hostOffset: number; copied: boolean }

/** A decoded L2 entry (the standard 64-bit part). */
export type L2Entry =
  | { kind: 'unallocated' }
  | { kind: 'zero'; hostOffset: number | undefined } // zero flag: ZERO_ALLOC when hostOffset is set
  | { kind: 'normal'; hostOffset: number; copied: boolean }
  | { kind: 'compressed'; hostOffset: number; sectorCount: number } // sectorCount: 512-byte sectors to read

/** Extended L2 subcluster bitmap (word 1): 32 allocation bits and 32 zero bits. */
export interface SubclusterBitmap { allocated: number; zero: number }

function offsetOf(hi: number, lo: number): number {
  return (hi & 0x00ff_ffff) * 0x1_0000_0000 + ((lo & 0xffff_fe00) >>> 0)
}

/** Decodes an L1 entry; `where` names it for errors ("L1 table at 0x30000 entry 3"). */
export function decodeL1Entry(hi: number, lo: number, clusterSize: number, where: () => string): L1Entry {
  if ((hi & L1_RESERVED_HI) !== 0 || (lo & 0x1ff) !== 0) {
    throw new ImageError('CORRUPT', `${where()}: reserved bits set (0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')})`)
  }
  const hostOffset = offsetOf(hi, lo)
  if (hostOffset === 0) return { kind: 'unallocated' }
  if (hostOffset % clusterSize !== 0) throw new ImageError('CORRUPT', `${where()}: L2 table offset ${hex(hostOffset)} is not cluster aligned`, { offset: hostOffset })
  return { kind: 'table', hostOffset, copied: (hi & BIT63) !== 0 }
}

/** Encodes an L1 entry to (hi, lo). */
export function encodeL1Entry(entry: L1Entry): [number, number] {
  if (entry.kind === 'unallocated') return [0, 0]
  return [((entry.copied ? BIT63 : 0) | Math.floor(entry.hostOffset / 0x1_0000_0000)) >>> 0, entry.hostOffset >>> 0]
}

/**
 * Decodes the standard part of an L2 entry. `extendedL2` forbids the zero flag (bit 0 is
 * reserved there: zeros are in the subcluster bitmap).
 */
export function decodeL2Entry(hi: number, lo: number, clusterBits: number, extendedL2: boolean, hasDataFile: boolean, where: () => string): L2Entry {
  if ((hi & BIT62) !== 0) {
    if ((hi & BIT63) !== 0) throw new ImageError('CORRUPT', `${where()}: compressed cluster has the COPIED flag set`)
    // Compressed descriptor: bits 0..x-1 host byte offset, x..61 additional sectors, x = 70 - cluster_bits
    const x = 70 - clusterBits
    const hiOffsetBits = x - 32
    const hiOffset = (hi & 0x3fff_ffff) % 2 ** hiOffsetBits
    if (hiOffset >= 0x100_0000) throw new ImageError('CORRUPT', `${where()}: compressed cluster offset beyond 2^56`)
    const hostOffset = hiOffset * 0x1_0000_0000 + (lo >>> 0)
    const extraSectors = Math.floor((hi & 0x3fff_ffff) / 2 ** hiOffsetBits) % 2 ** (clusterBits - 8)
    return { kind: 'compressed', hostOffset, sectorCount: extraSectors + 1 }
  }
  const zeroFlag = (lo & 1) !== 0
  if ((hi & L2_RESERVED_HI) !== 0 || (lo & 0x1fe) !== 0 || (extendedL2 && zeroFlag)) {
    throw new ImageError('CORRUPT', `${where()}: reserved bits set (0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')})`)
  }
  const hostOffset = offsetOf(hi, lo)
  const copied = (hi & BIT63) !== 0
  if (hostOffset % 2 ** clusterBits !== 0) {
    throw new ImageError('CORRUPT', `${where()}: cluster offset ${hex(hostOffset)} is not cluster aligned`, { offset: hostOffset })
  }
  if (zeroFlag) return { kind: 'zero', hostOffset: hostOffset === 0 ? undefined : hostOffset }
  if (hostOffset === 0 && !(hasDataFile && copied)) return { kind: 'unallocated' }
  return { kind: 'normal', hostOffset, copied }
}

/** Encodes the standard part of an L2 entry to (hi, lo). */
export function encodeL2Entry(entry: L2Entry, clusterBits: number): [number, number] {
  switch (entry.kind) {
    case 'unallocated':
      return [0, 0]
    case 'zero': {
      const off = entry.hostOffset ?? 0
      return [Math.floor(off / 0x1_0000_0000) >>> 0, ((off >>> 0) | 1) >>> 0]
    }
    case 'normal':
      return [((entry.copied ? BIT63 : 0) | Math.floor(entry.hostOffset / 0x1_0000_0000)) >>> 0, entry.hostOffset >>> 0]
    case 'compressed': {
      const x = 70 - clusterBits
      const hiOffsetBits = x - 32
      const hi = BIT62 + (entry.sectorCount - 1) * 2 ** hiOffsetBits + Math.floor(entry.hostOffset / 0x1_0000_0000)
      return [hi >>> 0, entry.hostOffset >>> 0]
    }
  }
}

/** Decodes an extended L2 bitmap word and validates it against its cluster's entry (spec "Extended L2 Entries"). */
export function decodeSubclusterBitmap(hi: number, lo: number, entry: L2Entry, where: () => string): SubclusterBitmap {
  const bitmap = { allocated: lo >>> 0, zero: hi >>> 0 }
  if (entry.kind === 'compressed') {
    if (bitmap.allocated !== 0 || bitmap.zero !== 0) throw new ImageError('CORRUPT', `${where()}: compressed cluster has a non-zero subcluster bitmap`)
  } else if (entry.kind === 'unallocated') {
    if (bitmap.allocated !== 0) throw new ImageError('CORRUPT', `${where()}: unallocated cluster has allocated subclusters (bitmap 0x${bitmap.allocated.toString(16)})`)
  } else if ((bitmap.allocated & bitmap.zero) !== 0) {
    throw new ImageError('CORRUPT', `${where()}: subclusters both allocated and zero (bitmap 0x${((bitmap.allocated & bitmap.zero) >>> 0).toString(16)})`)
  }
  return bitmap
}

/** Decodes a refcount table entry: the refcount block offset, or 0 for none. */
export function decodeReftableEntry(hi: number, lo: number, clusterSize: number, where: () => string): number {
  if ((lo & 0x1ff) !== 0) throw new ImageError('CORRUPT', `${where()}: reserved bits set`)
  if (hi >= 0x20_0000) throw new ImageError('CORRUPT', `${where()}: refcount block offset beyond 2^53`)
  const hostOffset = hi * 0x1_0000_0000 + ((lo & 0xffff_fe00) >>> 0)
  if (hostOffset % clusterSize !== 0) throw new ImageError('CORRUPT', `${where()}: refcount block offset ${hex(hostOffset)} is not cluster aligned`, { offset: hostOffset })
  return hostOffset
}
