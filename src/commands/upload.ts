// `convert … s3://BUCKET/KEY`: the guest content streamed into a multipart upload as it is read.
// raw: the guest bytes in order, part after part. qcow2: a metadata region reserved as part 1
// (sized from the virtual size, src/qcow2/reserved-layout.ts), data clusters and L2 tables
// streamed as parts 2…, and part 1 sent last, once every cluster's place is known. Memory is
// bounded by the parts in flight and the reads ahead, whatever the image size.
import { isZero } from '../binary/bytes.js'
import type { BlockDevice } from '../format/device.js'
import { MIN_PART_BYTES, partBytesFor, type MultipartUpload } from '../io/s3-upload.js'
import { encodeReservedRegion, reservedLayout, reservedMaxBytes, standardL2Entry } from '../qcow2/reserved-layout.js'
import { NO_PROGRESS, type ProgressMeter } from './progress-meter.js'

/** Options for the uploads. */
export interface UploadOptions {
  /** Reads of the source in flight ahead of the stream (default 4). */
  readAhead?: number
  /** Bytes per part (default from the largest size the object may reach). */
  partBytes?: number
  /** Receives the progress: phase "upload", the guest bytes sent. */
  progress?: ProgressMeter | undefined
}

/** Appends bytes to an upload, cut into parts of `partBytes`, numbered from `firstPart`. */
class PartStream {
  #buffer: Uint8Array
  #filled = 0
  #next: number
  /** Bytes appended so far. */
  length = 0
  constructor(readonly upload: MultipartUpload, readonly partBytes: number, firstPart: number) {
    this.#buffer = new Uint8Array(partBytes)
    this.#next = firstPart
  }

  /** Appends `data`, or `zeros` zero bytes when `data` is a number. */
  async append(data: Uint8Array | number): Promise<void> {
    const total = typeof data === 'number' ? data : data.length
    for (let done = 0; done < total;) {
      const n = Math.min(total - done, this.partBytes - this.#filled)
      // A fresh buffer is all zeros, so zeros only move the fill mark.
      if (typeof data !== 'number') this.#buffer.set(data.subarray(done, done + n), this.#filled)
      this.#filled += n
      done += n
      if (this.#filled === this.partBytes) await this.#cut()
    }
    this.length += total
  }

  async #cut(): Promise<void> {
    const part = this.#buffer.subarray(0, this.#filled)
    this.#buffer = new Uint8Array(this.partBytes)
    this.#filled = 0
    await this.upload.put(this.#next++, part)
  }

  /** Sends what is left as the last part (an empty stream sends one empty part). */
  async end(): Promise<void> {
    if (this.#filled > 0 || this.length === 0) await this.#cut()
  }
}

/** A piece of guest space in order: its bytes, or a run known to read as zeros. */
type Piece = { offset: number; data: Uint8Array } | { offset: number; zeros: number }

const CHUNK_BYTES = 2 * 1024 * 1024

/**
 * The guest content of `source` in guest order, in pieces of at most 2 MiB (cut at multiples of
 * `align`), read `readAhead` at a time; runs block status calls zero are not read.
 */
async function* guestPieces(source: BlockDevice, readAhead: number, align: number): AsyncGenerator<Piece> {
  const chunk = Math.max(align, Math.floor(CHUNK_BYTES / align) * align)
  const pending: Promise<Piece>[] = []
  let at = 0
  const plan = async (): Promise<boolean> => {
    if (at >= source.size) return false
    const offset = at
    const status = await source.blockStatus(offset, Math.min(chunk, source.size - offset))
    const end = offset + status.length
    // Pieces end on multiples of `align` (or at the end): a qcow2 cluster is never split. A run
    // shorter than that is read whole; its zeros are found in the bytes.
    const aligned = end >= source.size ? end : Math.floor(end / align) * align
    const zero = status.zero && aligned > offset
    const length = (aligned > offset ? aligned : Math.min(source.size, offset + align)) - offset
    at = offset + length
    const piece: Promise<Piece> = zero ? Promise.resolve({ offset, zeros: length }) : source.read(offset, length).then((data) => ({ offset, data }))
    // Awaited in turn below; marked handled now so a read failing early is not an unhandled rejection.
    piece.catch(() => undefined)
    pending.push(piece)
    return true
  }
  while (pending.length < readAhead && await plan());
  while (pending.length > 0) {
    const piece = await pending.shift()!
    while (pending.length < readAhead && await plan());
    yield piece
  }
}

/** Streams the guest bytes of `source` into `upload` as a raw image. */
export async function uploadRaw(source: BlockDevice, upload: MultipartUpload, options: UploadOptions = {}): Promise<void> {
  const stream = new PartStream(upload, options.partBytes ?? partBytesFor(source.size), 1)
  const progress = options.progress ?? NO_PROGRESS
  progress.phase('upload', source.size)
  for await (const piece of guestPieces(source, options.readAhead ?? 4, 512)) {
    const length = 'data' in piece ? piece.data.length : piece.zeros
    await stream.append('data' in piece ? piece.data : piece.zeros)
    progress.add(length)
  }
  await stream.end()
  progress.end()
}

/** Options of a qcow2 target. */
export interface Qcow2UploadOptions extends UploadOptions {
  clusterBits?: number
  version?: 2 | 3
}

/**
 * Streams `source` into `upload` as a qcow2 image: zero clusters left unallocated, data clusters
 * and then each L2 table appended from part 2 on, the reserved region (part 1) sent last.
 */
export async function uploadQcow2(source: BlockDevice, upload: MultipartUpload, options: Qcow2UploadOptions = {}): Promise<void> {
  const layout = reservedLayout(source.size, options.clusterBits ?? 16, options.version ?? 3, MIN_PART_BYTES)
  const cs = layout.clusterBytes
  const stream = new PartStream(upload, options.partBytes ?? partBytesFor(reservedMaxBytes(layout)), 2)
  const progress = options.progress ?? NO_PROGRESS
  progress.phase('upload', source.size)
  const l2Offsets: number[] = new Array<number>(layout.l1Entries).fill(0)
  const l2Span = cs * layout.l2Entries
  let table: DataView | undefined
  let tableIndex = 0
  /** Appends the L2 table being filled (if any cluster of its range had data). */
  const closeTable = async (): Promise<void> => {
    if (!table) return
    l2Offsets[tableIndex] = layout.dataOffset + stream.length
    await stream.append(new Uint8Array(table.buffer))
    table = undefined
  }
  const cluster = new Uint8Array(cs)
  for await (const piece of guestPieces(source, options.readAhead ?? 4, cs)) {
    if ('zeros' in piece) {
      progress.add(piece.zeros)
      continue
    }
    for (let from = 0; from < piece.data.length; from += cs) {
      const guest = piece.offset + from
      let bytes = piece.data.subarray(from, from + cs)
      if (isZero(bytes)) continue
      // The last cluster of an image whose size is not a multiple of it is stored whole.
      if (bytes.length < cs) {
        cluster.fill(0).set(bytes)
        bytes = cluster
      }
      const index = Math.floor(guest / l2Span)
      if (index !== tableIndex) await closeTable()
      tableIndex = index
      table ??= new DataView(new ArrayBuffer(cs))
      table.setBigUint64(((guest % l2Span) / cs) * 8, standardL2Entry(layout.dataOffset + stream.length))
      await stream.append(bytes)
    }
    progress.add(piece.data.length)
  }
  await closeTable()
  await stream.end()
  await upload.put(1, encodeReservedRegion(layout, l2Offsets, layout.dataOffset + stream.length))
  progress.end()
}
