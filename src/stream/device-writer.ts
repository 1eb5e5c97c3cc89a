// A stream's pieces written into a seekable image: only the pieces holding data (the image is
// new, so it reads as zeros elsewhere and stays sparse). An image made before the size was known
// grows as the pieces arrive, doubling, and takes its exact size at the end.
import { resizeImage } from '../commands/resize.js'
import type { BlockDevice } from '../format/device.js'
import type { FeedConsumer } from './feed.js'

/** Growth step of an image whose size the stream has not told yet. */
const GROW_BYTES = 64 * 1024 * 1024

/** A consumer writing pieces into `target`, which grows when `grow` (else pieces must fit). */
export function deviceWriter(target: BlockDevice, grow: boolean, onBytes?: (n: number) => void): FeedConsumer {
  return async (piece) => {
    const end = piece.offset + piece.data.length
    if (grow && end > target.size) {
      const size = Math.ceil(Math.max(end, 2 * target.size) / GROW_BYTES) * GROW_BYTES
      await resizeImage(target, size)
    }
    if (!piece.zero) await target.write(piece.offset, piece.data)
    onBytes?.(piece.data.length)
  }
}

/** Gives a grown image its final size (whole sectors: what a new image of that size gets). */
export async function finishGrown(target: BlockDevice, length: number, sectorAligned: boolean): Promise<void> {
  const size = sectorAligned ? Math.ceil(length / 512) * 512 : length
  if (size !== target.size) await resizeImage(target, size, { shrink: true })
}
