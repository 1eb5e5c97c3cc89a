// `convert`: copy the guest content of one image into another, in parallel chunks with bounded
// memory. Zero runs of at least `sparseSize` bytes are not written to a target that already
// reads as zeros; with a target backing file only what the source's top layer holds is copied.
import { allocShareable, isZero } from '../binary/bytes.js'
import { ImageError } from '../errors.js'
import type { Compressors } from '../codecs.js'
import type { BlockDevice } from '../format/device.js'
import { NO_PROGRESS, type ProgressMeter } from './progress-meter.js'

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
  /** Receives the progress: one phase, "copy", of the bytes qemu-img counts. */
  progress?: ProgressMeter | undefined
  /** The target starts out reading as zeros (a fresh image), so zero areas need no write. */
  targetIsZero?: boolean
  /**
   * The target has a backing file (-B): what the source's top layer leaves to its own backing
   * file is left to the target's; zeros are written as zeros.
   */
  topLayerOnly?: boolean
  /** Size of a new target's backing file: past it, the target reads zeros already (qemu-img's target_backing_sectors). */
  targetBackingSize?: number | undefined
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

/**
 * What one run of the source means for the target (qemu-img's ImgConvertBlockStatus): `data`
 * to copy, `zero` to make read as zeros, `backing` to leave unallocated so the target's
 * backing file shows through.
 */
type RunKind = 'data' | 'zero' | 'backing'

/**
 * The kind of the run at `offset` (qemu-img's convert_iteration_sectors). With a target backing
 * file, block status is taken above the source's own backing file: what the source's top layer
 * does not allocate is left to the target's backing (it must have the same content, as with
 * qemu-img -B); without a source backing file, unallocated reads as zeros and becomes zeros.
 * Zeros past the end of a new target's backing file already read as zeros there.
 */
async function runAt(source: BlockDevice, offset: number, maxLength: number, options: ConvertOptions): Promise<{ kind: RunKind; length: number }> {
  let length = maxLength
  const backingEnd = options.targetBackingSize
  if (backingEnd !== undefined && offset < backingEnd) length = Math.min(length, backingEnd - offset)
  let zero: boolean
  const below = options.topLayerOnly ? source.backing : undefined
  const top = below ? await source.isAllocated(offset, length) : undefined
  if (below && top && !top.allocated) {
    length = top.length
    // Past the end of the source's backing file, unallocated reads as zeros (BDRV_BLOCK_ZERO).
    if (offset < below.size) return { kind: 'backing', length: Math.min(length, below.size - offset) }
    zero = true
  } else {
    const status = await source.blockStatus(offset, top?.length ?? length, 0, true)
    length = status.length
    zero = status.zero
  }
  if (!zero) return { kind: 'data', length }
  return { kind: backingEnd !== undefined && offset >= backingEnd ? 'backing' : 'zero', length }
}

/** Copies the guest content of `source` into `target` (at least as large). */
export async function convertImage(source: BlockDevice, target: BlockDevice, options: ConvertOptions = {}): Promise<void> {
  const sparseSize = options.sparseSize ?? 4096
  if (sparseSize < 0 || sparseSize % 512 !== 0) throw new ImageError('INVALID_ARGUMENT', `Invalid buffer size for sparse output specified (${sparseSize}); it must be a multiple of 512`)
  if (target.size < source.size) throw new ImageError('INVALID_ARGUMENT', `${target.driver.storage.name}: target (${target.size} bytes) is smaller than the source (${source.size} bytes)`)
  const chunkSize = options.chunkSize ?? 2 * 1024 * 1024
  const parallel = Math.max(1, options.parallel ?? 8)
  const size = source.size
  // qemu-img convert's progress counts only what it copies: a first pass over the source's block
  // status sums the data runs (and zero runs with -S 0), as convert_do_copy's allocated_sectors.
  const counted = (kind: RunKind): boolean => kind === 'data' || (kind === 'zero' && sparseSize === 0)
  let progressTotal = 0
  if (options.progress) {
    for (let at = 0; at < size;) {
      const run = await runAt(source, at, size - at, options)
      if (counted(run.kind)) progressTotal += run.length
      at += run.length
    }
  }
  const progress = options.progress ?? NO_PROGRESS
  progress.phase('copy', progressTotal)
  const targetIsZero = options.targetIsZero ?? true
  let next = 0
  // qemu-img's has_zero_init: a new target without a backing file already reads as zeros.
  const hasZeroInit = targetIsZero && !options.topLayerOnly
  /** Copies `[offset, offset+length)` run by run of the source's block status. */
  const copyRange = async (offset: number, length: number, buffer: Uint8Array, turn?: Promise<void>): Promise<void> => {
    const end = offset + length
    while (offset < end) {
      const run = await runAt(source, offset, end - offset, options)
      if (run.kind === 'zero' && sparseSize !== 0) {
        if (!hasZeroInit) {
          await turn
          // As qemu-img (BDRV_REQ_MAY_UNMAP): clusters the target had may be freed.
          await target.writeZeroes(offset, run.length, { unmap: true })
        }
      } else if (run.kind !== 'backing') {
        // One buffer per worker, reused: fresh large buffers cost page faults on every chunk.
        const data = buffer.subarray(0, run.length)
        await source.readInto(data, offset)
        await turn
        // Over a backing file, zero runs must be written as zeros (else the backing shows through).
        await writeSparse(target, offset, data, sparseSize, hasZeroInit)
      }
      if (counted(run.kind)) progress.add(run.length)
      offset += run.length
    }
  }
  /**
   * -c: whole clusters (qemu-img's compressed convert): a cluster the source only partly
   * allocates is copied whole; data clusters are compressed concurrently, zero clusters made
   * zero where the target does not read zeros already, all written in guest order.
   */
  const compressRange = async (start: number, end: number, buffer: Uint8Array, turn?: Promise<void>): Promise<void> => {
    const cs = target.clusterSize
    if (!cs) throw new ImageError('UNSUPPORTED', 'compressed output needs a qcow2 target')
    const clusters: { offset: number; length: number; kind: RunKind }[] = []
    for (let at = start; at < end; at += cs) {
      const length = Math.min(end, at + cs) - at
      const run = await runAt(source, at, length, options)
      // -S 0: zeros are data too (qemu-img writes them compressed).
      const kind = run.length < length || (run.kind === 'zero' && sparseSize === 0) ? 'data' : run.kind
      clusters.push({ offset: at, length, kind })
    }
    // Data is read in runs of consecutive data clusters.
    for (let i = 0; i < clusters.length;) {
      let j = i
      while (j < clusters.length && clusters[j]!.kind === 'data') j++
      if (j > i) await source.readInto(buffer.subarray(clusters[i]!.offset - start, clusters[j - 1]!.offset + clusters[j - 1]!.length - start), clusters[i]!.offset)
      i = Math.max(j, i + 1)
    }
    // Compression of the chunk's clusters runs in parallel; each write waits for the one before
    // (the first for the previous chunk), so compressed streams are packed in guest order.
    let previous: Promise<unknown> | undefined = turn
    const writes: Promise<void>[] = []
    for (const c of clusters) {
      // A view: the chunk's buffer is not reused before every write below has finished.
      const bytes = buffer.subarray(c.offset - start, c.offset - start + c.length)
      const kind = c.kind === 'data' && sparseSize !== 0 && isZero(bytes) ? 'zero' : c.kind
      if (kind === 'backing' || (kind === 'zero' && hasZeroInit)) continue
      const after = previous
      const write = kind === 'data'
        ? target.writeCompressed(c.offset, bytes, options.compress?.compressors, after)
        : (async () => { await after; await target.writeZeroes(c.offset, c.length, { unmap: true }) })()
      previous = write.catch(() => {})
      writes.push(write)
    }
    await Promise.all(writes)
    for (const c of clusters) if (counted(c.kind)) progress.add(c.length)
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
        } else {
          await copyRange(start, end - start, buffer, turn)
        }
      } finally {
        // Also on failure, so later chunks do not wait forever (the error still rejects below).
        if (turn) await turn
        release()
      }
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  progress.end()
}
