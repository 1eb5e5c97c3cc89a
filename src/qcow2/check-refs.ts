// What the reference count of `check` shares: the in-memory refcount array and its increment
// (qcow2_inc_refcounts_imrt), reads that count failures instead of throwing, and read-ahead of
// tables. The counting itself is in check-count.ts.
import type { ReadableStorage } from '../io/storage.js'
import type { Qcow2Layout } from './open.js'
import type { Snapshot } from './snapshot.js'
import type { ProgressMeter } from '../commands/progress-meter.js'

/**
 * References per host cluster, as wide as the image's refcounts need (QEMU sizes its in-memory
 * table by refcount_bits too): 2 bytes per cluster for the default 16-bit refcounts.
 */
export type RefArray = Uint16Array | Uint32Array | Float64Array

/** A zeroed array of `length` references for entries `1 << refcountOrder` bits wide. */
export function refArrayFor(refcountOrder: number, length: number): RefArray {
  return refcountOrder <= 4 ? new Uint16Array(length) : refcountOrder === 5 ? new Uint32Array(length) : new Float64Array(length)
}

/** `refs` copied into a longer array of the same kind. */
export function newRefArray(refs: RefArray, length: number): RefArray {
  const grown = refs instanceof Uint16Array ? new Uint16Array(length) : refs instanceof Uint32Array ? new Uint32Array(length) : new Float64Array(length)
  grown.set(refs)
  return grown
}

/** Counts the check reports (BdrvCheckResult). */
export interface CheckCounts {
  corruptions: number
  leaks: number
  checkErrors: number
  corruptionsFixed: number
  leaksFixed: number
  allocatedClusters: number
  fragmentedClusters: number
  compressedClusters: number
}

/** What the counting pass needs, and where it reports. */
export interface RefContext {
  storage: ReadableStorage
  layout: Qcow2Layout
  snapshots: readonly Snapshot[]
  fileSize: number
  counts: CheckCounts
  report(line: string): void
  /** Computed references per host cluster (grown on demand). */
  refs: RefArray
  /** True when the refcount structure itself is broken and must be rebuilt. */
  rebuild: boolean
  refcountMax: number
  /** When set, the OFLAG_COPIED state of the active L2 entries is gathered while counting. */
  copiedFlags?: CopiedFlags | undefined
  /** Receives the pass's progress (its "references" and "refcounts" phases). */
  progress?: ProgressMeter | undefined
}

/**
 * The COPIED flags of the active state's data clusters, by host cluster: set for clusters some
 * active L2 entry names with OFLAG_COPIED, and for clusters one names without it. Comparing
 * them with the stored refcounts as those are compared anyway (COPIED must be set exactly when
 * the refcount is 1) spares check_oflag_copied a second read of every L2 table when nothing is
 * wrong; on any doubt (`unknown`) or mismatch that pass runs in full and reports as QEMU does.
 */
export class CopiedFlags {
  readonly copied: Uint32Array
  readonly plain: Uint32Array
  /** An entry could not be recorded (unaligned, beyond the arrays): the full pass must look. */
  unknown = false
  /** Some recorded flag disagrees with the stored refcount of its cluster. */
  mismatch = false
  constructor(readonly clusters: number) {
    this.copied = new Uint32Array(Math.ceil(clusters / 32))
    this.plain = new Uint32Array(Math.ceil(clusters / 32))
  }

  /** Records an active L2 entry naming host cluster `k` (COPIED or not). */
  record(k: number, copied: boolean): void {
    if (!(k >= 0 && k < this.clusters) || !Number.isInteger(k)) {
      this.unknown = true
      return
    }
    const words = copied ? this.copied : this.plain
    words[k >>> 5]! |= 1 << (k & 31)
  }

  /** Notes a mismatch when cluster `k`, with stored refcount `refcount`, breaks the rule. */
  compare(k: number, refcount: number): void {
    if (k >= this.clusters) return
    const bit = 1 << (k & 31)
    if (refcount === 1 ? (this.plain[k >>> 5]! & bit) !== 0 : (this.copied[k >>> 5]! & bit) !== 0) this.mismatch = true
  }
}

/** A u64 given as two u32 halves in hex, as printf's PRIx64 prints it (no float rounding). */
export const hexOf = (hi: number, lo: number) => (hi === 0 ? lo.toString(16) : hi.toString(16) + lo.toString(16).padStart(8, '0'))

/** qcow2_inc_refcounts_imrt: one more reference to each cluster of `[offset, offset+size)`. */
export function incRefs(ctx: RefContext, offset: number, size: number): void {
  if (size <= 0) return
  const cs = ctx.layout.geometry.clusterSize
  if (offset + size - ctx.fileSize >= cs) {
    ctx.report(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${offset.toString(16)} size 0x${size.toString(16)}`)
    ctx.counts.corruptions++
    return // QEMU counts nothing for such a region
  }
  const first = Math.floor(offset / cs)
  const last = Math.floor((offset + size - 1) / cs)
  for (let k = first; k <= last; k++) {
    if (k >= ctx.refs.length) {
      if (k > 2 ** 31) { ctx.counts.checkErrors++; return }
      ctx.refs = newRefArray(ctx.refs, k + 1) // QEMU's nb_clusters grows to exactly k + 1
    }
    if (ctx.refs[k] === ctx.refcountMax) {
      ctx.report(`ERROR: overflow cluster offset=0x${(k * cs).toString(16)}`)
      ctx.report('Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing')
      ctx.counts.corruptions++
      continue
    }
    ctx.refs[k]! += 1
  }
}

export async function readOrCount(ctx: RefContext, offset: number, length: number, into?: Uint8Array): Promise<DataView | undefined> {
  try {
    // Past the end of the file reads as zeros (a table cut short by truncation).
    const full = into ?? new Uint8Array(length)
    const present = Math.min(length, Math.max(0, ctx.fileSize - offset))
    const part = full.subarray(0, present)
    if (ctx.storage.readInto) await ctx.storage.readInto(offset, part)
    else part.set(await ctx.storage.read(offset, present))
    if (into) into.fill(0, present)
    return new DataView(full.buffer, full.byteOffset, full.byteLength)
  } catch {
    ctx.counts.checkErrors++
    return undefined
  }
}

/** Tables read ahead by the check (bounded: at most this many clusters in memory). */
const READ_AHEAD = 8

/**
 * Reads the tables at `offsets` (each `size` bytes) in order, a few ahead of the caller: one read
 * at a time would wait on the storage for every table (thousands in a large image). Each read in
 * flight has a buffer of its own; a table's buffer is reused once the caller asks for the next.
 */
export class TableReader<T> {
  readonly #buffers: Uint8Array[]
  readonly #pending: Promise<T>[] = []
  #next = 0
  #done = 0
  constructor(readonly offsets: readonly number[], size: number, readonly read: (offset: number, buffer: Uint8Array) => Promise<T>) {
    this.#buffers = Array.from({ length: Math.min(READ_AHEAD, offsets.length) }, () => new Uint8Array(size))
  }

  /** The next table (the one after the previous call's). */
  async next(): Promise<T> {
    const done = this.#done++
    if (done >= this.offsets.length) throw new RangeError('TableReader: no more tables')
    for (; this.#next < this.offsets.length && this.#next - done < READ_AHEAD; this.#next++) {
      const read = this.read(this.offsets[this.#next]!, this.#buffers[this.#next % READ_AHEAD]!)
      read.catch(() => {}) // a failed read the caller never reaches (it stopped) is not unhandled
      this.#pending[this.#next] = read
    }
    const value = await this.#pending[done]!
    delete this.#pending[done]
    return value
  }
}

/** Hands the tables at `offsets` to `each` in order, reading ahead (see {@link TableReader}). */
export async function readAhead<T>(offsets: readonly number[], size: number, read: (offset: number, buffer: Uint8Array) => Promise<T>, each: (value: T, index: number) => void | Promise<void>): Promise<void> {
  const tables = new TableReader(offsets, size, read)
  for (let i = 0; i < offsets.length; i++) await each(await tables.next(), i)
}
