// Guest → host lookup through one L1 table ("Cluster mapping"): turns L2 entries (standard or
// extended) into extents, merging runs of clusters that answer the same way.
import { ImageError, hex } from '../errors.js'
import type { Extent } from '../format/extent.js'
import type { ReadableStorage } from '../io/storage.js'
import type { TableCache, CachedTable } from './cache.js'
import { decodeL1Entry, decodeL2Entry, decodeSubclusterBitmap, type L1Entry, type L2Entry } from './entries.js'
import { l1Index, l2Coverage, l2Index, type Geometry } from './geometry.js'

/** What a lookup needs: the tables and where data lives. */
export interface LookupContext {
  geometry: Geometry
  storage: ReadableStorage
  /** Storage holding guest data: the image file or the external data file. */
  dataStorage: ReadableStorage
  hasDataFile: boolean
  l1: DataView
  /** Host offset of the L1 table (for messages and error offsets). */
  l1TableOffset: number
  l2Cache: TableCache
  fileSize: number
  /** Bytes of the guest disk mapped by this L1 table. */
  virtualSize: number
}

/** Answer for one cluster or subcluster. */
type Piece =
  | { kind: 'data'; hostOffset: number }
  | { kind: 'zero'; hostOffset: number | undefined }
  | { kind: 'unallocated'; hostOffset: number | undefined }
  | { kind: 'compressed' }

/** Loads the L2 table at `hostOffset` (through the cache), validating it lies inside the file. */
export function loadL2(ctx: LookupContext, hostOffset: number, where: string): Promise<CachedTable> {
  return ctx.l2Cache.get(hostOffset, async (offset) => {
    const size = ctx.geometry.clusterSize
    if (offset + size > ctx.fileSize) {
      throw new ImageError('CORRUPT', `${ctx.storage.name}: L2 table at ${hex(offset)} (${where}) runs past end of file (${ctx.fileSize} bytes)`, { offset, file: ctx.storage.name })
    }
    if (offset < size) {
      throw new ImageError('CORRUPT', `${ctx.storage.name}: L2 table at ${hex(offset)} (${where}) overlaps the header`, { offset, file: ctx.storage.name })
    }
    ctx.storage.debugEvent?.('l2_load')
    return ctx.storage.read(offset, size)
  })
}

/** Decodes L2 entry `index` of `table` (the standard word, plus the bitmap with extended L2). */
export function readL2Entry(ctx: LookupContext, table: CachedTable, index: number): { entry: L2Entry; allocated: number; zero: number } {
  const g = ctx.geometry
  const at = index * g.l2EntrySize
  const where = () => `${ctx.storage.name}: L2 table at ${hex(table.hostOffset)} entry ${index}`
  const hi = table.view.getUint32(at)
  const lo = table.view.getUint32(at + 4)
  try {
    const entry = decodeL2Entry(hi, lo, g.clusterBits, g.extendedL2, ctx.hasDataFile, where)
    if (!g.extendedL2) return { entry, allocated: 0, zero: 0 }
    const bitmap = decodeSubclusterBitmap(table.view.getUint32(at + 8), table.view.getUint32(at + 12), entry, where)
    return { entry, ...bitmap }
  } catch (e) {
    if (e instanceof ImageError) throw new ImageError(e.code, e.message, { offset: table.hostOffset + at, file: ctx.storage.name })
    throw e
  }
}

function pieceOf(ctx: LookupContext, decoded: { entry: L2Entry; allocated: number; zero: number }, subcluster: number): Piece {
  const { entry } = decoded
  const g = ctx.geometry
  if (!g.extendedL2) {
    switch (entry.kind) {
      case 'normal': return { kind: 'data', hostOffset: entry.hostOffset }
      case 'zero': return { kind: 'zero', hostOffset: entry.hostOffset }
      case 'unallocated': return { kind: 'unallocated', hostOffset: undefined }
      case 'compressed': return { kind: 'compressed' }
    }
  }
  if (entry.kind === 'compressed') return { kind: 'compressed' }
  const bit = 2 ** subcluster
  const host = entry.kind === 'normal' ? entry.hostOffset + subcluster * g.subclusterSize : undefined
  if ((decoded.zero & bit) !== 0) return { kind: 'zero', hostOffset: host }
  if ((decoded.allocated & bit) !== 0) return { kind: 'data', hostOffset: host! }
  return { kind: 'unallocated', hostOffset: host }
}

function follows(prev: Piece, next: Piece, step: number): boolean {
  if (prev.kind !== next.kind) return false
  if (prev.kind === 'compressed') return true
  const a = prev.hostOffset
  const b = (next as typeof prev).hostOffset
  if (a === undefined || b === undefined) return a === b
  return b === a + step
}

/**
 * The extent at `guestOffset` of at most `maxLength` bytes, merged across clusters (and
 * subclusters) of one L2 table. A run of compressed clusters is one extent too (QEMU answers
 * them one by one, and qemu-img map merges them again): reading it decodes them concurrently.
 */
export async function getExtent(ctx: LookupContext, guestOffset: number, maxLength: number): Promise<Extent> {
  const g = ctx.geometry
  if (guestOffset < 0 || guestOffset >= ctx.virtualSize) {
    throw new ImageError('OUT_OF_RANGE', `${ctx.storage.name}: offset ${guestOffset} is outside the image (${ctx.virtualSize} bytes)`)
  }
  const coverage = l2Coverage(g)
  const tableEnd = (Math.floor(guestOffset / coverage) + 1) * coverage
  const end = Math.min(guestOffset + maxLength, ctx.virtualSize, tableEnd)
  const index = l1Index(g, guestOffset)
  // Past the end of the L1 table (a snapshot's shorter table) nothing is allocated: one run,
  // not one step per L2 range.
  if ((index + 1) * 8 > ctx.l1.byteLength) return { kind: 'unallocated', length: Math.min(guestOffset + maxLength, ctx.virtualSize) - guestOffset }
  const l1EntryOffset = ctx.l1TableOffset + index * 8
  let l1: L1Entry
  try {
    l1 = decodeL1Entry(ctx.l1.getUint32(index * 8), ctx.l1.getUint32(index * 8 + 4), g.clusterSize, () => `${ctx.storage.name}: L1 table at ${hex(ctx.l1TableOffset)} entry ${index}`)
  } catch (e) {
    if (e instanceof ImageError) throw new ImageError(e.code, e.message, { offset: l1EntryOffset, file: ctx.storage.name })
    throw e
  }
  if (l1.kind === 'unallocated') return { kind: 'unallocated', length: end - guestOffset }
  const table = await loadL2(ctx, l1.hostOffset, `L1 entry ${index}`)

  const unit = g.subclusterSize
  let position = guestOffset
  let first: Piece | undefined
  let firstHost = 0
  let prev: Piece | undefined
  while (position < end) {
    const clusterIndex = l2Index(g, position)
    const decoded = readL2Entry(ctx, table, clusterIndex)
    const subcluster = Math.floor((position % g.clusterSize) / unit)
    const piece = pieceOf(ctx, decoded, subcluster)
    if (prev === undefined) {
      first = piece
      const inUnit = position % unit
      firstHost = 'hostOffset' in piece && piece.hostOffset !== undefined ? piece.hostOffset + inUnit : 0
    } else if (!follows(prev, piece, unit)) {
      break
    }
    prev = piece
    // A compressed cluster is one piece whatever its subclusters (it has no bitmap).
    const step = piece.kind === 'compressed' ? g.clusterSize : unit
    position = (Math.floor(position / step) + 1) * step
  }
  const length = Math.min(position, end) - guestOffset
  switch (first!.kind) {
    case 'data':
      return { kind: 'data', length, storage: ctx.dataStorage, hostOffset: firstHost }
    case 'zero':
      return { kind: 'zero', length, hostOffset: first!.hostOffset === undefined ? undefined : firstHost }
    case 'unallocated':
      return { kind: 'unallocated', length, ...(first!.hostOffset === undefined ? {} : { hostOffset: firstHost }) }
    case 'compressed':
      return { kind: 'compressed', length }
  }
}
