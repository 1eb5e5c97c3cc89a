// A streamOptimized VMDK read from a pipe (VMware Virtual Disk Format 5.0, "Stream-Optimized
// Compressed Sparse Extents"; QEMU's vmdk_read_extent with has_marker): every grain carries its
// own address in its marker, so the grains are read in file order and the tables (grain tables,
// directory, footer) are skipped. The capacity comes from the header at the start.
import { isZero } from '../binary/bytes.js'
import type { Decompressor } from '../codecs.js'
import { ImageError } from '../errors.js'
import {
  decodeHeader, HEADER_BYTES, MARKER_END_OF_STREAM, SECTOR, VMDK4_COMPRESSION_DEFLATE, VMDK4_FLAG_COMPRESS, VMDK4_FLAG_MARKER, VMDK4_MAGIC,
} from '../vmdk/header.js'
import { inflateZlib } from '../vmdk/zlib.js'
import type { ByteReader } from './byte-reader.js'
import type { FeedConsumer } from './feed.js'

/** Grains inflated at once. */
const BATCH = 32

/** A VMDK stream's capacity, and its grains fed in guest order. */
export interface VmdkStreamInput {
  size: number
  feed(consume: FeedConsumer): Promise<void>
}

/** Reads the header of a streamOptimized VMDK at the reader's start. */
export async function openVmdkStream(reader: ByteReader, inflateRaw: Decompressor): Promise<VmdkStreamInput> {
  const name = reader.name
  const first = await reader.readExact(SECTOR, 'the VMDK header')
  if (new DataView(first.buffer).getUint32(0) !== VMDK4_MAGIC) throw new ImageError('NOT_AN_IMAGE', `${name}: not a VMDK sparse extent (no KDMV magic at byte 0)`)
  const h = decodeHeader(first.subarray(0, HEADER_BYTES))
  if (!(h.flags & VMDK4_FLAG_COMPRESS) || !(h.flags & VMDK4_FLAG_MARKER) || h.compressAlgorithm !== VMDK4_COMPRESSION_DEFLATE) {
    throw new ImageError('UNSUPPORTED', `${name}: only a streamOptimized VMDK (compressed grains with markers) can be read from a pipe; this one's grains are found through its tables (flags 0x${h.flags.toString(16)})`)
  }
  const grainSectors = Number(h.granularity)
  if (grainSectors < 1 || grainSectors > 2 ** 18) throw new ImageError('CORRUPT', `${name}: VMDK header: grain of ${grainSectors} sectors out of range`)
  const grainBytes = grainSectors * SECTOR
  const size = Number(h.capacity) * SECTOR
  if (!Number.isSafeInteger(size)) throw new ImageError('CORRUPT', `${name}: VMDK header: capacity ${h.capacity} sectors is too large`)
  const grainStart = Number(h.grainOffset) * SECTOR
  if (grainStart < SECTOR) throw new ImageError('CORRUPT', `${name}: VMDK header: grain offset ${h.grainOffset} lies inside the header`)

  const inflate = async (stream: Uint8Array, offset: number): Promise<Uint8Array> => {
    const length = Math.min(grainBytes, size - offset)
    try {
      return (await inflateZlib(inflateRaw, stream, grainBytes)).subarray(0, length)
    } catch (e) {
      // A last, partial grain may hold only the bytes inside the capacity.
      if (length < grainBytes) return inflateZlib(inflateRaw, stream, length)
      throw new ImageError('CORRUPT', `${name}: VMDK grain at guest offset 0x${offset.toString(16)} does not inflate to ${grainBytes} bytes: ${(e as Error).message}`, { cause: e })
    }
  }

  return {
    size,
    async feed(consume) {
      await reader.skip(grainStart - SECTOR, 'the VMDK descriptor and tables')
      let nextOffset = 0 // guest bytes before this are behind the stream
      let ended = false
      while (!ended) {
        const batch: { offset: number; data: Promise<Uint8Array> }[] = []
        while (batch.length < BATCH) {
          const at = reader.position
          const marker = await reader.peek(16)
          if (marker.length === 0) { ended = true; break } // QEMU's files end without a marker
          if (marker.length < 16) throw new ImageError('CORRUPT', `${name}: the stream ends at byte ${at} inside a VMDK marker`)
          const v = new DataView(marker.buffer, marker.byteOffset, 16)
          const value = Number(v.getBigUint64(0, true))
          const dataSize = v.getUint32(8, true)
          if (dataSize === 0) {
            // A metadata marker: its own sector, then `value` sectors (grain table, directory, footer).
            if (v.getUint32(12, true) === MARKER_END_OF_STREAM) { ended = true; break }
            await reader.skip(SECTOR + value * SECTOR, 'a VMDK metadata block')
            continue
          }
          const offset = value * SECTOR
          if (offset < nextOffset || offset >= size) {
            throw new ImageError('CORRUPT', `${name}: VMDK grain marker at byte ${at}: guest offset 0x${offset.toString(16)} is ${offset >= size ? 'past the capacity' : 'behind the previous grain (a pipe is read in order)'}`)
          }
          const record = await reader.readExact(12 + dataSize, 'a VMDK grain')
          const padding = Math.ceil(record.length / SECTOR) * SECTOR - record.length
          const pad = await reader.peek(padding)
          await reader.skip(pad.length, 'a VMDK grain')
          const data = inflate(record.subarray(12), offset)
          data.catch(() => undefined) // awaited below, in order
          batch.push({ offset, data })
          nextOffset = offset + grainBytes
        }
        for (const grain of batch) {
          const data = await grain.data
          await consume({ offset: grain.offset, data, zero: isZero(data) })
        }
      }
    },
  }
}
