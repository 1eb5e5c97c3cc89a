// A streamOptimized VMDK written front to back to a sink (VMware Virtual Disk Format 5.0,
// "Stream-Optimized Compressed Sparse Extents"): the header with its grain directory "at the
// end" (GD_AT_END), the descriptor, then each grain as a marker and a zlib stream; after each
// grain table's span its table, then the directory, the footer (the header again, now with the
// directory's offset) and the end-of-stream marker. QEMU reads the footer (vmdk_open_vmdk4).
// Only the directory (4 bytes per 32 MiB of guest) and one table stay in memory.
import { isZero } from '../binary/bytes.js'
import type { Compressor } from '../codecs.js'
import type { CountingSink } from '../io/sink.js'
import { descriptorBytes, descriptorTemplate } from '../vmdk/descriptor.js'
import {
  encodeHeader, MARKER_FOOTER, MARKER_GRAIN_DIRECTORY, MARKER_GRAIN_TABLE, SECTOR, VMDK4_COMPRESSION_DEFLATE, VMDK4_FLAG_COMPRESS,
  VMDK4_FLAG_MARKER, VMDK4_FLAG_NL_DETECT, VMDK4_GD_AT_END, type Vmdk4Header,
} from '../vmdk/header.js'
import { deflateZlib } from '../vmdk/zlib.js'
import type { FeedConsumer } from './feed.js'

const GRAIN_SECTORS = 128
const GRAIN_BYTES = GRAIN_SECTORS * SECTOR
const GTES_PER_GT = 512
const GT_SECTORS = (GTES_PER_GT * 4) / SECTOR
const DESCRIPTOR_SECTORS = 20
/** Grains compressed at once. */
const BATCH = 32

/** What the descriptor says besides the size. */
export interface VmdkStreamOptions {
  cid: number
  adapterType?: string
  hwVersion?: string
  toolsVersion?: string
  /** The extent's file name in the descriptor (QEMU does not use it for a monolithic file). */
  fileName?: string
}

/** A metadata marker sector: `sectors` of metadata of `type` follow. */
function markerSector(sectors: number, type: number): Uint8Array {
  const bytes = new Uint8Array(SECTOR)
  const v = new DataView(bytes.buffer)
  v.setBigUint64(0, BigInt(sectors), true)
  v.setUint32(12, type, true)
  return bytes
}

/** Table entries as the file stores them: little-endian u32. */
function encodeLE32(entries: Uint32Array): Uint8Array {
  const bytes = new Uint8Array(entries.length * 4)
  const v = new DataView(bytes.buffer)
  entries.forEach((e, i) => v.setUint32(i * 4, e, true))
  return bytes
}

/** Writes a `size`-byte guest as a streamOptimized VMDK to `sink`: start(), the consumer, end(). */
export function vmdkStreamWriter(sink: CountingSink, size: number, deflateRaw: Compressor, options: VmdkStreamOptions): { start(): Promise<void>; consume: FeedConsumer; end(): Promise<void> } {
  const capacity = Math.ceil(size / SECTOR)
  const grainCount = Math.ceil(capacity / GRAIN_SECTORS)
  const gtCount = Math.ceil(grainCount / GTES_PER_GT)
  const gdSectors = Math.ceil((gtCount * 4) / SECTOR)
  const header: Vmdk4Header = {
    version: 3, flags: VMDK4_FLAG_NL_DETECT | VMDK4_FLAG_COMPRESS | VMDK4_FLAG_MARKER,
    capacity: BigInt(capacity), granularity: BigInt(GRAIN_SECTORS), descOffset: 1n, descSize: BigInt(DESCRIPTOR_SECTORS),
    numGtesPerGt: GTES_PER_GT, rgdOffset: 0n, gdOffset: VMDK4_GD_AT_END, grainOffset: BigInt(GRAIN_SECTORS), compressAlgorithm: VMDK4_COMPRESSION_DEFLATE,
  }
  const directory = new Uint32Array(gtCount)
  const table = new Uint32Array(GTES_PER_GT)
  let tableIndex = -1 // the grain table being filled, -1 before the first grain
  let tableUsed = false
  // The grain being assembled from pieces (pieces need not fall on grain boundaries).
  const assembling = new Uint8Array(GRAIN_BYTES)
  let assemblingIndex = -1
  let batch: { index: number; bytes: Uint8Array }[] = []

  const writeSector = async (bytes: Uint8Array): Promise<void> => {
    await sink.write(bytes)
    await sink.padTo(Math.ceil(sink.written / SECTOR) * SECTOR)
  }
  const endTable = async (): Promise<void> => {
    if (!tableUsed) return
    await sink.write(markerSector(GT_SECTORS, MARKER_GRAIN_TABLE))
    directory[tableIndex] = sink.written / SECTOR
    await sink.write(encodeLE32(table))
    table.fill(0)
    tableUsed = false
  }
  const flushBatch = async (): Promise<void> => {
    const streams = batch.map((g) => deflateZlib(deflateRaw, g.bytes))
    for (const s of streams) s.catch(() => undefined) // awaited in order below
    for (let i = 0; i < batch.length; i++) {
      const stream = await streams[i]!
      const index = batch[i]!.index
      const gt = Math.floor(index / GTES_PER_GT)
      if (gt !== tableIndex) {
        await endTable()
        tableIndex = gt
      }
      table[index % GTES_PER_GT] = sink.written / SECTOR
      tableUsed = true
      const record = new Uint8Array(12 + stream.length)
      const v = new DataView(record.buffer)
      v.setBigUint64(0, BigInt(index * GRAIN_SECTORS), true)
      v.setUint32(8, stream.length, true)
      record.set(stream, 12)
      await writeSector(record)
    }
    batch = []
  }
  /** The assembled grain is complete: queued unless it is all zeros (unallocated reads as zeros). */
  const endGrain = async (): Promise<void> => {
    if (assemblingIndex < 0) return
    if (!isZero(assembling)) batch.push({ index: assemblingIndex, bytes: assembling.slice() })
    assembling.fill(0)
    assemblingIndex = -1
    if (batch.length >= BATCH) await flushBatch()
  }

  return {
    async start() {
      await sink.write(encodeHeader(header))
      await sink.padTo(SECTOR)
      const heads = (options.adapterType ?? 'ide') === 'ide' ? 16 : 255
      const text = descriptorTemplate({
        cid: options.cid, parentCid: 0xffffffff, createType: 'streamOptimized', parentLine: '',
        extentLines: `RW ${capacity} SPARSE "${options.fileName ?? 'stream.vmdk'}"\n`,
        hwVersion: options.hwVersion ?? '4', cylinders: Math.floor((capacity * SECTOR) / (63 * heads * SECTOR)), heads,
        adapterType: options.adapterType ?? 'ide', toolsVersion: options.toolsVersion ?? '2147483647',
      })
      await sink.write(descriptorBytes(text))
      await sink.padTo(GRAIN_SECTORS * SECTOR)
    },
    async consume(piece) {
      // Zero pieces only move on: grains they cover stay unallocated.
      for (let at = 0; at < piece.data.length;) {
        const offset = piece.offset + at
        const index = Math.floor(offset / GRAIN_BYTES)
        const within = offset - index * GRAIN_BYTES
        const n = Math.min(GRAIN_BYTES - within, piece.data.length - at)
        if (index !== assemblingIndex) {
          await endGrain()
          assemblingIndex = index
        }
        if (!piece.zero) assembling.set(piece.data.subarray(at, at + n), within)
        at += n
        if (within + n === GRAIN_BYTES) await endGrain()
      }
    },
    async end() {
      await endGrain()
      await flushBatch()
      await endTable()
      await sink.write(markerSector(gdSectors, MARKER_GRAIN_DIRECTORY))
      const gdOffset = sink.written / SECTOR
      await writeSector(encodeLE32(directory))
      await sink.write(markerSector(1, MARKER_FOOTER))
      await writeSector(encodeHeader({ ...header, gdOffset: BigInt(gdOffset) }))
      await sink.write(new Uint8Array(SECTOR)) // end-of-stream marker
    },
  }
}
