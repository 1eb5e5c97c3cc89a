// `convert`: copy the guest content of one image into another, in parallel chunks with bounded
// memory. Zero runs of at least `sparseSize` bytes are not written to a target that already
// reads as zeros; with a target backing file only what the source's top layer holds is copied.
import { allocShareable, isZero } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import type { Compressors } from '../codecs.js'
import type { BlockDevice } from '../format/device.js'
import { Progress } from './progress.js'

/** Options for {@link convertImage}. */
export interface ConvertOptions {
  /** Zero runs of this many bytes (aligned) are left unwritten; 0 writes every byte (qemu-img -S). */
  sparseSize?: number
  /** Bytes per copy task (default 2 MiB, like qemu-img's buffer). */
  chunkSize?: number
  /** Copy tasks in flight (qemu-img -m; default 8). */
  parallel?: number
  /**
   * Let chunks be written in any order (qemu-img -W). By default reads run ahead in parallel but
   * writes land in guest order, like qemu-img: the target's layout is deterministic (a qcow2
   * target allocates clusters in guest order) and the file grows sequentially.
   */
  outOfOrder?: boolean
  /** Sink for the progress line (-p). */
  progress?: ((text: string) => void) | undefined
  /** The target starts out reading as zeros (a fresh image), so zero areas need no write. */
  targetIsZero?: boolean
  /** Copy only what the source's top layer allocates (the target has the same backing: -B). */
  topLayerOnly?: boolean
  /** Write compressed clusters (-c); compressors run in parallel (a worker pool on Node). */
  compress?: { compressors?: Compressors | undefined } | undefined
}

/** Writes `data` (guest offset `offset`): zero pieces of `sparseSize` are skipped or zeroed. */
async function writeSparse(target: BlockDevice, offset: number, data: Uint8Array, sparseSize: number, targetIsZero: boolean): Promise<void> {
  if (sparseSize === 0) return target.write(offset, data)
  let runStart = 0
  let runZero: boolean | undefined
  let position = 0
  const flushRun = async (end: number) => {
    if (runZero === undefined || end === runStart) return
    if (!runZero) await target.write(offset + runStart, data.subarray(runStart, end))
    else if (!targetIsZero) await target.writeZeroes(offset + runStart, end - runStart, { unmap: true })
  }
  while (position < data.length) {
    // Pieces are aligned to sparseSize in guest offsets, as qemu-img scans them.
    const pieceEnd = Math.min(data.length, (Math.floor((offset + position) / sparseSize) + 1) * sparseSize - offset)
    const zero = isZero(data.subarray(position, pieceEnd))
    if (zero !== runZero) {
      await flushRun(position)
      runStart = position
      runZero = zero
    }
    position = pieceEnd
  }
  await flushRun(data.length)
}

/** Copies the guest content of `source` into `target` (at least as large). */
export async function convertImage(source: BlockDevice, target: BlockDevice, options: ConvertOptions = {}): Promise<void> {
  const sparseSize = options.sparseSize ?? 4096
  if (sparseSize < 0 || sparseSize % 512 !== 0) throw new ImageError('INVALID_ARGUMENT', `Invalid buffer size for sparse output specified (${sparseSize}); it must be a multiple of 512`)
  if (target.size < source.size) throw new ImageError('INVALID_ARGUMENT', `${target.driver.storage.name}: target (${target.size} bytes) is smaller than the source (${source.size} bytes)`)
  const chunkSize = options.chunkSize ?? 2 * 1024 * 1024
  const parallel = Math.max(1, options.parallel ?? 8)
  const size = source.size
  const progress = new Progress(size, options.progress)
  const targetIsZero = options.targetIsZero ?? true
  let next = 0
  /** Copies `[offset, offset+length)` run by run of the source's block status. */
  const copyRange = async (offset: number, length: number, buffer: Uint8Array, turn?: Promise<void>): Promise<void> => {
    const end = offset + length
    while (offset < end) {
      const status = await source.blockStatus(offset, end - offset)
      if (status.zero && sparseSize !== 0) {
        if (!targetIsZero || options.topLayerOnly) {
          await turn
          // As qemu-img (BDRV_REQ_MAY_UNMAP): clusters the target had may be freed.
          await target.writeZeroes(offset, status.length, { unmap: true })
        }
      } else {
        // One buffer per worker, reused: fresh large buffers cost page faults on every chunk.
        const data = buffer.subarray(0, status.length)
        await source.readInto(data, offset)
        await turn
        // Over a backing file, zero runs must be written as zeros (else the backing shows through).
        await writeSparse(target, offset, data, sparseSize, targetIsZero && !options.topLayerOnly)
      }
      offset += status.length
    }
  }
  /** -c: whole clusters, compressed concurrently, written in order within the chunk. */
  const compressRange = async (start: number, end: number, buffer: Uint8Array, turn?: Promise<void>): Promise<void> => {
    const cs = target.clusterSize
    if (!cs) throw new ImageError('UNSUPPORTED', 'compressed output needs a qcow2 target')
    const data = buffer.subarray(0, end - start)
    await source.readInto(data, start)
    const clusters: { offset: number; bytes: Uint8Array }[] = []
    for (let at = start; at < end; at += cs) {
      const bytes = data.subarray(at - start, Math.min(end, at + cs) - start)
      // A view: the chunk's buffer is not reused before every write below has finished.
      if (!isZero(bytes)) clusters.push({ offset: at, bytes })
    }
    // Compression of the chunk's clusters runs in parallel; each write waits for the one before
    // (the first for the previous chunk), so compressed streams are packed in guest order.
    let previous: Promise<unknown> | undefined = turn
    const writes = clusters.map((c) => {
      const write = target.writeCompressed(c.offset, c.bytes, options.compress?.compressors, previous)
      previous = write.catch(() => {})
      return write
    })
    await Promise.all(writes)
  }
  // Write ordering: chunk k may start writing once chunk k-1 has finished writing.
  const ordered = !options.outOfOrder
  let lastWritten: Promise<void> = Promise.resolve()
  const worker = async (): Promise<void> => {
    // Shared memory: codec workers read (-c) or fill (a compressed source) it in place.
    const buffer = allocShareable(chunkSize)
    while (next < size) {
      const start = next
      const end = Math.min(size, start + chunkSize)
      next = end
      let release = (): void => {}
      const previous = lastWritten
      if (ordered) {
        lastWritten = new Promise<void>((resolve) => { release = resolve })
      }
      const turn = ordered ? previous : undefined
      try {
        if (options.compress) {
          await compressRange(start, end, buffer, turn)
        } else if (options.topLayerOnly) {
          for (let offset = start; offset < end;) {
            const { allocated, length } = await source.isAllocated(offset, end - offset)
            if (allocated) await copyRange(offset, length, buffer, turn)
            offset += length
          }
        } else {
          await copyRange(start, end - start, buffer, turn)
        }
      } finally {
        // Also on failure, so later chunks do not wait forever (the error still rejects below).
        if (turn) await turn
        release()
      }
      progress.add(end - start)
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  progress.end()
}
