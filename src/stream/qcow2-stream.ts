// qcow2 to a sink (a pipe): the layout is decided before the first byte, so a first pass learns
// which clusters hold data (block status, then a zero test of what it reports as data) and,
// for compressed output, every cluster's compressed length; the second pass writes metadata,
// then the data in guest order (stream-layout.ts). Compressed streams from the first pass are
// kept in memory up to a budget, then in a spill store if the caller has one; only the rest is
// compressed again.
import { allocShareable, isZero } from '../binary/bytes.js'
import type { Compressor } from '../codecs.js'
import { NO_PROGRESS, type ProgressMeter } from '../commands/progress-meter.js'
import { ImageError } from '../errors.js'
import type { BlockDevice } from '../format/device.js'
import { CountingSink, type Sink } from '../io/sink.js'
import type { Storage } from '../io/storage.js'
import { layoutFor, metadataPieces, placements, type StreamLayout, type StreamMapping } from '../qcow2/stream-layout.js'
import { readGuest } from './feed.js'
import { inOrder } from './ordered.js'

/** How the stream image is made. */
export interface Qcow2StreamOptions {
  clusterBits: number
  refcountOrder?: number
  version?: 2 | 3
  compressionType?: 'zlib' | 'zstd'
  /** Compress every data cluster with this (-c). */
  compressor?: Compressor | undefined
  /** Compressed bytes kept in memory between the passes (default 32 MiB). */
  keepBytes?: number
  /** Where compressed bytes past `keepBytes` go between the passes, up to `spillBytes`. */
  spill?: { storage: Storage; spillBytes: number } | undefined
  /** Chunks read or compressed at once (default 8 of 2 MiB). */
  parallel?: number
  /** Skip the zero test: every cluster block status calls data is written (qemu-img -S 0). */
  keepZeros?: boolean
  progress?: ProgressMeter | undefined
}

const CHUNK_BYTES = 2 * 1024 * 1024

/** What one chunk of the first pass found: per cluster the stored length, compressed streams. */
interface ScannedChunk { lengths: Uint32Array; streams: (Uint8Array | undefined)[] }

/** Writes `source` to `sink` as a qcow2 image; resolves to the layout written. */
export async function streamQcow2(source: BlockDevice, sink: Sink, options: Qcow2StreamOptions): Promise<StreamLayout> {
  const cs = 2 ** options.clusterBits
  const size = source.size
  const clusterCount = Math.ceil(size / cs)
  const chunkBytes = Math.max(CHUNK_BYTES, cs)
  const clustersPerChunk = chunkBytes / cs
  const chunkCount = Math.ceil(size / chunkBytes)
  const parallel = Math.max(1, options.parallel ?? 8)
  const progress = options.progress ?? NO_PROGRESS
  const compressor = options.compressor
  const buffers = Array.from({ length: parallel }, () => allocShareable(chunkBytes))
  const mapping: StreamMapping = { clusterBits: options.clusterBits, storedLengths: new Uint32Array(clusterCount) }
  const chunkRange = (index: number) => {
    const offset = index * chunkBytes
    return { offset, length: Math.min(chunkBytes, size - offset) }
  }
  /** The cluster `c` of a chunk buffer, zero padded to a whole cluster at the image's end. */
  const clusterOf = (buffer: Uint8Array, c: number, length: number): Uint8Array => {
    const bytes = buffer.subarray(c * cs, (c + 1) * cs)
    if (c * cs + cs > length) bytes.fill(0, Math.max(0, length - c * cs))
    return bytes
  }

  // Pass 1: which clusters hold data, and their compressed streams.
  const keepBytes = options.keepBytes ?? 32 * 1024 * 1024
  const kept: Uint8Array[] = []
  let keptBytes = 0
  let keptEnd = 0 // clusters [0, keptEnd) have their streams kept (or are not compressed)
  let spillBytes = 0
  let spillEnd = 0 // clusters [keptEnd, spillEnd) have theirs in the spill store, in order
  let storing: 'memory' | 'spill' | 'none' = 'memory'
  progress.phase('scan', size, { index: 0, count: 2 })
  await inOrder(chunkCount, parallel, async (index, slot): Promise<ScannedChunk> => {
    const { offset, length } = chunkRange(index)
    const buffer = buffers[slot]!
    const clusters = Math.ceil(length / cs)
    const lengths = new Uint32Array(clusters)
    const streams: (Uint8Array | undefined)[] = []
    if (!await readGuest(source, offset, buffer.subarray(0, length))) return { lengths, streams }
    const work: Promise<void>[] = []
    for (let c = 0; c < clusters; c++) {
      const bytes = clusterOf(buffer, c, length)
      if (!options.keepZeros && isZero(bytes)) continue
      lengths[c] = cs
      if (compressor) {
        work.push((async () => {
          const stream = await compressor(bytes, cs)
          if (stream) {
            lengths[c] = stream.length
            streams[c] = stream
          }
        })())
      }
    }
    await Promise.all(work)
    return { lengths, streams }
  }, async (chunk, index) => {
    const first = index * clustersPerChunk
    mapping.storedLengths.set(chunk.lengths, first)
    if (compressor) {
      for (let c = 0; c < chunk.lengths.length; c++) {
        const stream = chunk.streams[c]
        if (!stream) continue
        // The stores take clusters in guest order: where one fills up, the next begins.
        if (storing === 'memory' && keptBytes + stream.length > keepBytes) {
          storing = options.spill ? 'spill' : 'none'
          keptEnd = spillEnd = first + c
        }
        if (storing === 'spill' && spillBytes + stream.length > options.spill!.spillBytes) {
          storing = 'none'
          spillEnd = first + c
        }
        if (storing === 'memory') {
          kept.push(stream)
          keptBytes += stream.length
        } else if (storing === 'spill') {
          await options.spill!.storage.write(spillBytes, stream)
          spillBytes += stream.length
        }
      }
      const end = first + chunk.lengths.length
      if (storing === 'memory') keptEnd = end
      if (storing !== 'none') spillEnd = end
    }
    progress.add(chunkRange(index).length)
  })

  // Pass 2: metadata, then data in guest order.
  const layout = layoutFor(size, mapping, options.refcountOrder)
  const out = new CountingSink(sink)
  for (const piece of metadataPieces(layout, mapping, { version: options.version ?? 3, compressionType: options.compressionType ?? 'zlib' })) await out.write(piece)
  if (out.written !== layout.dataOffset) throw new Error(`stream layout: metadata took ${out.written} bytes, planned ${layout.dataOffset}`)
  const dataStart = new Float64Array(chunkCount + 1) // data offset of each chunk's first placement
  dataStart.fill(-1)
  for (const p of placements(mapping)) {
    const chunk = Math.floor(p.guestCluster / clustersPerChunk)
    if (dataStart[chunk] === -1) dataStart[chunk] = p.dataOffset
  }
  let keptIndex = 0
  let spillCursor = 0
  progress.phase('write', layout.dataClusterCount * cs, { index: 1, count: 2 })
  await inOrder(chunkCount, parallel, async (index, slot): Promise<(Uint8Array | undefined)[]> => {
    const { offset, length } = chunkRange(index)
    const first = index * clustersPerChunk
    const lengths = mapping.storedLengths.subarray(first, first + Math.ceil(length / cs))
    const streams: (Uint8Array | undefined)[] = []
    if (!lengths.some((n) => n !== 0)) return streams
    // Taken synchronously, in chunk order: where this chunk's kept and spilled streams are.
    const spilled: { c: number; at: number; length: number }[] = []
    const recompress: number[] = []
    let needSource = false
    for (let c = 0; c < lengths.length; c++) {
      const stored = lengths[c]!
      if (stored === 0) continue
      if (stored === cs) needSource = true
      else if (first + c < keptEnd) streams[c] = kept[keptIndex++]
      else if (first + c < spillEnd) {
        spilled.push({ c, at: spillCursor, length: stored })
        spillCursor += stored
      } else {
        recompress.push(c)
        needSource = true
      }
    }
    const buffer = buffers[slot]!
    if (needSource) await readGuest(source, offset, buffer.subarray(0, length))
    const work: Promise<void>[] = spilled.map(async (s) => { streams[s.c] = await options.spill!.storage.read(s.at, s.length) })
    for (let c = 0; c < lengths.length; c++) {
      if (lengths[c] === cs) streams[c] = clusterOf(buffer, c, length)
    }
    for (const c of recompress) {
      work.push((async () => {
        const stream = await compressor!(clusterOf(buffer, c, length), cs)
        // Codecs are deterministic: the same input gives the same stream as in the first pass.
        if (!stream || stream.length !== lengths[c]) throw new ImageError('UNSUPPORTED', `compressing cluster ${first + c} again gave ${stream?.length ?? 'no'} bytes, ${lengths[c]} the first time`)
        streams[c] = stream
      })())
    }
    await Promise.all(work)
    return streams
  }, async (streams, index) => {
    const before = out.written
    const at = dataStart[index]!
    if (at !== -1) await out.padTo(layout.dataOffset + at)
    for (const stream of streams) {
      if (!stream) continue
      if (stream.length === cs) await out.padTo(Math.ceil(out.written / cs) * cs)
      await out.write(stream)
    }
    progress.add(out.written - before)
  })
  // QEMU ends a compressed image on a whole sector; a plain one ends on a whole cluster already.
  await out.padTo(Math.ceil(out.written / 512) * 512)
  progress.end()
  return layout
}
