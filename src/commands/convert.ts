// `convert` to raw: copy every guest byte that is not zero into a fresh sparse target, in
// parallel chunks with bounded memory. Zero runs of at least `sparseSize` bytes stay holes.
import { isZero } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import type { BlockDevice } from '../format/device.js'
import type { Storage } from '../io/storage.js'
import { Progress } from './progress.js'

/** Options for {@link convertToRaw}. */
export interface ConvertOptions {
  /** Zero runs of this many bytes (aligned) are left unwritten; 0 writes every byte (qemu-img -S). */
  sparseSize?: number
  /** Bytes per copy task (default 2 MiB, like qemu-img's buffer). */
  chunkSize?: number
  /** Copy tasks in flight (qemu-img -m; default 8). */
  parallel?: number
  /** Sink for the progress line (-p). */
  progress?: ((text: string) => void) | undefined
  /** The target starts out reading as zeros (a fresh file), so zero areas need no write. */
  targetIsZero?: boolean
}

/** Writes the non-zero parts of `data` (guest offset `offset`) at sparse granularity. */
async function writeSparse(target: Storage, offset: number, data: Uint8Array, sparseSize: number): Promise<void> {
  if (sparseSize === 0) return target.write(offset, data)
  let runStart = -1
  let position = 0
  while (position < data.length) {
    // Pieces are aligned to sparseSize in guest offsets, as qemu-img scans them.
    const pieceEnd = Math.min(data.length, (Math.floor((offset + position) / sparseSize) + 1) * sparseSize - offset)
    const zero = isZero(data.subarray(position, pieceEnd))
    if (!zero && runStart < 0) runStart = position
    if (zero && runStart >= 0) {
      await target.write(offset + runStart, data.subarray(runStart, position))
      runStart = -1
    }
    position = pieceEnd
  }
  if (runStart >= 0) await target.write(offset + runStart, data.subarray(runStart))
}

/** Copies the guest content of `source` into `target` (already sized, reading as zeros). */
export async function convertToRaw(source: BlockDevice, target: Storage, options: ConvertOptions = {}): Promise<void> {
  const sparseSize = options.sparseSize ?? 4096
  if (sparseSize < 0 || sparseSize % 512 !== 0) throw new ImageError('INVALID_ARGUMENT', `Invalid buffer size for sparse output specified (${sparseSize}); it must be a multiple of 512`)
  const chunkSize = options.chunkSize ?? 2 * 1024 * 1024
  const parallel = Math.max(1, options.parallel ?? 8)
  const size = source.size
  const progress = new Progress(size, options.progress)
  const targetIsZero = options.targetIsZero ?? true
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < size) {
      const start = next
      const end = Math.min(size, start + chunkSize)
      next = end
      let offset = start
      while (offset < end) {
        const status = await source.blockStatus(offset, end - offset)
        if (status.zero && targetIsZero && sparseSize !== 0) {
          offset += status.length
          continue
        }
        const data = await source.read(offset, status.length)
        await writeSparse(target, offset, data, targetIsZero ? sparseSize : 0)
        offset += status.length
      }
      progress.add(end - start)
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  progress.end()
}
