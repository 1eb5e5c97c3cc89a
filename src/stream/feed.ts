// Guest bytes in order, as a stream writer takes them: from an image (reads run ahead in
// parallel) or from a pipe (standard input, in pieces). Each piece says whether it is all zeros,
// so writers that can leave zeros out (sparse formats, a fresh target) do.
import { allocShareable, isZero } from '../binary/bytes.js'
import type { BlockDevice } from '../format/device.js'
import type { ByteSource } from '../io/sink.js'
import { inOrder } from './ordered.js'

/** One piece of guest bytes; `data` is valid until the consumer's promise settles. */
export interface FeedPiece {
  offset: number
  data: Uint8Array
  zero: boolean
}

/** Takes pieces in guest order. */
export type FeedConsumer = (piece: FeedPiece) => Promise<void>

const PIECE_BYTES = 2 * 1024 * 1024

/** Reads guest bytes `[offset, offset+into.length)`, zero runs by block status not read; false when all were zero runs. */
export async function readGuest(source: BlockDevice, offset: number, into: Uint8Array): Promise<boolean> {
  let anyData = false
  for (let at = 0; at < into.length;) {
    const status = await source.blockStatus(offset + at, into.length - at)
    const piece = into.subarray(at, at + status.length)
    if (status.zero) piece.fill(0)
    else {
      await source.readInto(piece, offset + at)
      anyData = true
    }
    at += status.length
  }
  return anyData
}

/** Feeds an image's guest bytes in order: zero runs by block status are not read. */
export async function feedDevice(source: BlockDevice, consume: FeedConsumer, parallel = 8): Promise<void> {
  const buffers = Array.from({ length: parallel }, () => allocShareable(PIECE_BYTES))
  const size = source.size
  await inOrder(Math.ceil(size / PIECE_BYTES), parallel, async (index, slot) => {
    const offset = index * PIECE_BYTES
    const data = buffers[slot]!.subarray(0, Math.min(PIECE_BYTES, size - offset))
    const anyData = await readGuest(source, offset, data)
    return { offset, data, zero: !anyData || isZero(data) }
  }, consume)
}

/**
 * Feeds a pipe's bytes in order until it ends (or `limit` bytes, past which a longer stream is
 * an error the caller reports); resolves to the bytes read.
 */
export async function feedStream(source: ByteSource, consume: FeedConsumer, limit = Number.POSITIVE_INFINITY): Promise<number> {
  const buffer = allocShareable(PIECE_BYTES)
  let offset = 0
  for (;;) {
    const n = await source.readInto(buffer)
    if (n === 0) return offset
    const data = buffer.subarray(0, n)
    if (offset + n > limit) return offset + n
    await consume({ offset, data, zero: isZero(data) })
    offset += n
    if (n < buffer.length) return offset
  }
}
