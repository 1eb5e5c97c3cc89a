// Zero writes (qcow2_co_pwrite_zeroes, qcow2_subcluster_zeroize): the zero flag (or subcluster
// zero bits) where whole (sub)clusters are covered, real zeros through the generic write path
// elsewhere; space given back only through the deferred frees.
import { writeInRegion } from '../../format/unit-writer.js'
import { writeZeroBuffers, zeroPieces } from '../../format/unit-split.js'
import { writeZeroes as storageZeroes } from '../../io/storage.js'
import type { L2Entry } from '../entries.js'
import { l1Index, l2Index } from '../geometry.js'
import { loadL2, readL2Entry } from '../lookup.js'
import { ALL_SUBCLUSTERS, type Decoded, type GuestReader, type ZeroOptions } from '../writer-types.js'
import { discardDataClusters, discardInTable } from './discard.js'
import { perTable } from './flush.js'
import { l1EntryAt, rawCopied, release, setEntry, setZeroEntry, writableL2 } from './l2-update.js'
import { checkRange, type WriterState } from './state.js'
import { qcow2Units, tableUnits } from './units.js'

/** Writes guest bytes through the generic path (the facade's write). */
export type DataWrite = (offset: number, data: Uint8Array, readGuest: GuestReader) => Promise<void>

/**
 * Zero writes, split as QEMU's block layer splits them (bdrv_co_do_pwrite_zeroes) at subcluster
 * granularity; each piece becomes zero flags (or bitmap bits) where qcow2_co_pwrite_zeroes can,
 * real zeros elsewhere.
 */
export async function writeZeroes(s: WriterState, write: DataWrite, offset: number, length: number, readGuest: GuestReader, options: ZeroOptions = {}): Promise<void> {
  checkRange(s, offset, length)
  for (const { start, end } of zeroPieces(offset, length, s.ctx.geometry.subclusterSize)) await zeroPiece(s, write, start, end, readGuest, options)
}

/**
 * One piece of a zero write (QEMU's qcow2_co_pwrite_zeroes). A piece that covers part of a
 * subcluster zeroes the whole subcluster when the rest of it already reads as zeros and it
 * holds no data; otherwise, and where the format cannot (v2 over a backing file), the piece
 * is written as real zeros (the block layer's -ENOTSUP fallback).
 */
async function zeroPiece(s: WriterState, write: DataWrite, start: number, end: number, readGuest: GuestReader, options: ZeroOptions): Promise<void> {
  const unit = s.ctx.geometry.subclusterSize
  const size = s.ctx.virtualSize
  const head = start % unit
  const tail = end === size ? 0 : (unit - (end % unit)) % unit
  let done: boolean
  if (head || tail) {
    const readsAsZero = options.readsAsZero
    const restIsZero = readsAsZero !== undefined && (await readsAsZero(start - head, head)) && (await readsAsZero(end, Math.min(tail, size - end)))
    done = restIsZero && (await zeroize(s, start - head, Math.min(start - head + unit, size), options.unmap ?? false, true, readGuest))
  } else {
    done = await zeroize(s, start, end, options.unmap ?? false, false, readGuest)
  }
  // Real zeros, in pieces of at most 16 MiB (QEMU's MAX_BOUNCE_BUFFER).
  if (!done) await writeZeroBuffers((at, zeros) => write(at, zeros, readGuest), start, end - start, 16 * 1024 * 1024)
}

/**
 * QEMU's qcow2_subcluster_zeroize on `[start, end)` (subcluster aligned but at the image end):
 * false where it returns -ENOTSUP (v2 over a backing file; with `onlyIfEmpty`, a subcluster
 * that holds data or is compressed).
 */
async function zeroize(s: WriterState, start: number, end: number, unmap: boolean, onlyIfEmpty: boolean, readGuest: GuestReader): Promise<boolean> {
  // v2 has no zero flag: unallocated reads as zero only without a backing file.
  if (s.version < 3 && s.hasBacking) return false
  let refused = false
  await perTable(s, start, end - start, async (from, to) => {
    if (onlyIfEmpty && (await holdsData(s, from))) {
      refused = true
      return
    }
    if (s.version < 3) {
      await zeroRawDataFile(s, from, to, unmap)
      await discardInTable(s, from, to, false)
    } else await zeroInTable(s, from, to, unmap, readGuest)
  })
  return !refused
}

/** Whether the subcluster at `guestOffset` holds data or is compressed (not unallocated, not zero). */
async function holdsData(s: WriterState, guestOffset: number): Promise<boolean> {
  const g = s.ctx.geometry
  const index = l1Index(g, guestOffset)
  const l1 = l1EntryAt(s, index)
  if (l1.kind === 'unallocated') return false
  const decoded = readL2Entry(s.ctx, await loadL2(s.ctx, l1.hostOffset, `L1 entry ${index}`), l2Index(g, guestOffset))
  const e = decoded.entry
  if (e.kind === 'compressed') return true
  if (!g.extendedL2) return e.kind === 'normal'
  const subcluster = Math.floor((guestOffset % g.clusterSize) / g.subclusterSize)
  return ((decoded.allocated >>> subcluster) & 1) === 1
}

async function zeroInTable(s: WriterState, start: number, end: number, unmap: boolean, readGuest: GuestReader): Promise<void> {
  const g = s.ctx.geometry
  const cs = g.clusterSize
  await zeroRawDataFile(s, start, end, unmap)
  const table = await writableL2(s, start)
  const released: Decoded[] = []
  let position = start
  while (position < end) {
    const clusterStart = position - (position % cs)
    const pieceEnd = Math.min(end, clusterStart + cs)
    const index = l2Index(g, position)
    const decoded = readL2Entry(s.ctx, table, index)
    const e = decoded.entry
    if (g.extendedL2) {
      const wholeCluster = position === clusterStart && (pieceEnd === clusterStart + cs || pieceEnd === s.ctx.virtualSize)
      if (wholeCluster && (unmap || e.kind === 'compressed' || e.kind === 'unallocated')) {
        setEntry(s, table, index, { kind: 'unallocated' }, { allocated: 0, zero: ALL_SUBCLUSTERS })
        release(s, decoded)
        released.push(decoded)
      } else if (e.kind === 'compressed') {
        // Part of a compressed cluster: rewrite it as a normal cluster, then zero the part.
        await writeInRegion(qcow2Units(s), tableUnits(s, table), position, new Uint8Array(pieceEnd - position), readGuest)
      } else {
        let { allocated, zero } = decoded
        const first = Math.floor((position - clusterStart) / g.subclusterSize)
        const last = Math.floor((pieceEnd - 1 - clusterStart) / g.subclusterSize)
        for (let i = first; i <= last; i++) {
          allocated = (allocated & ~(1 << i)) >>> 0
          zero = (zero | (1 << i)) >>> 0
        }
        setEntry(s, table, index, e, { allocated, zero })
      }
    } else {
      const drop = e.kind === 'compressed' || (unmap && (e.kind === 'normal' || (e.kind === 'zero' && e.hostOffset !== undefined)))
      let next: L2Entry
      if (drop) next = { kind: 'zero', hostOffset: undefined }
      else if (e.kind === 'normal') next = { kind: 'zero', hostOffset: e.hostOffset }
      else if (e.kind === 'zero') next = e
      else next = { kind: 'zero', hostOffset: undefined }
      // COPIED survives on a kept allocation: refcount 1 still holds (QEMU keeps the old bits).
      // A zero entry's decoded form has no COPIED flag, so an already zero-allocated one keeps its raw bit.
      const copied = !drop && (e.kind === 'normal' ? e.copied : e.kind === 'zero' && rawCopied(s, table, index))
      setZeroEntry(s, table, index, next, copied)
      if (drop) {
        release(s, decoded)
        released.push(decoded)
      }
    }
    position = pieceEnd
  }
  await discardDataClusters(s, released)
}

/**
 * data_file_raw: the data file must stay a valid raw image of the disk, so ranges that become
 * zero are zeroed in it first, with `unmap` by a punched hole (QEMU's qcow2_subcluster_zeroize
 * passes the request's flags on to bdrv_co_pwrite_zeroes of the data file).
 */
async function zeroRawDataFile(s: WriterState, start: number, end: number, unmap: boolean): Promise<void> {
  if (!s.rawDataFile) return
  await storageZeroes(s.data, start, end - start, { unmap })
  s.dataDirty = true
}
