// `compare`: guest-visible content of two images, with qemu-img's messages and exit codes
// (0 identical, 1 different, 2 open error, 3 block status error, 4 read error).
import type { BlockDevice, BlockStatus } from '../format/device.js'
import { ImageError, isImageError } from '../errors.js'
import { NO_PROGRESS, type ProgressMeter } from './progress-meter.js'

/** Result of a comparison: the exit code and the lines qemu-img prints. */
export interface CompareResult {
  exitCode: 0 | 1 | 4
  /** Lines for stdout. */
  messages: string[]
}

const IO_BUF_SIZE = 2 * 1024 * 1024
const SECTOR = 512

/** Offset of the first 512-byte sector that differs, or -1 (qemu-img's compare_buffers). */
function firstDifferentSector(a: Uint8Array, b: Uint8Array): number {
  // 4 bytes at a time where alignment allows (reads are), then the bytes from the first difference.
  let from = 0
  if ((a.byteOffset & 3) === 0 && (b.byteOffset & 3) === 0) {
    const count = a.length >>> 2
    const wordsA = new Uint32Array(a.buffer, a.byteOffset, count)
    const wordsB = new Uint32Array(b.buffer, b.byteOffset, count)
    let w = 0
    while (w < count && wordsA[w] === wordsB[w]) w++
    from = w << 2
  }
  for (let j = from; j < a.length; j++) if (a[j] !== b[j]) return j - (j % SECTOR)
  return -1
}

/** Offset of the first non-zero 512-byte sector, or -1 (qemu-img's find_nonzero). */
function firstNonZeroSector(a: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) return i - (i % SECTOR)
  return -1
}

function sameStatus(a: BlockStatus, b: BlockStatus): boolean {
  return a.present === b.present && a.zero === b.zero && a.data === b.data && (a.offset === undefined) === (b.offset === undefined)
}

/** Compares `first` and `second` as `qemu-img compare [-s]` does. */
export async function compareImages(first: BlockDevice, second: BlockDevice, options: {
  strict?: boolean
  /** Receives the progress: phase "compare", the guest bytes compared (no end: see below). */
  progress?: ProgressMeter | undefined
  /** The images as the user named them, for read errors ("Error while reading offset N of NAME"). */
  names?: [string, string] | undefined
  /** Receives the messages as they are made (still there when a read fails afterwards). */
  messages?: string[] | undefined
} = {}): Promise<CompareResult> {
  const messages: string[] = options.messages ?? []
  // qemu-img compare reports a failed read naming the image and the offset (exit code 4).
  const read = async (device: BlockDevice, offset: number, length: number): Promise<Uint8Array> => {
    try {
      return await device.read(offset, length)
    } catch (e) {
      const name = options.names?.[device === first ? 0 : 1]
      if (name === undefined || !isImageError(e, 'IO')) throw e
      throw new ImageError('IO', `Error while reading offset ${offset} of ${name}: ${e.message}`, { cause: e })
    }
  }
  const size1 = first.size
  const size2 = second.size
  const total = Math.min(size1, size2)
  const progress = options.progress ?? NO_PROGRESS
  progress.phase('compare', Math.max(size1, size2))
  if (options.strict && size1 !== size2) return { exitCode: 1, messages: ['Strict mode: Image size mismatch!'] }
  let offset = 0
  while (offset < total) {
    const status1 = await first.blockStatus(offset, size1 - offset)
    const status2 = await second.blockStatus(offset, size2 - offset)
    let chunk = Math.min(status1.length, status2.length)
    if (options.strict && !sameStatus(status1, status2)) {
      return { exitCode: 1, messages: [`Strict mode: Offset ${offset} block status mismatch!`] }
    }
    if (status1.zero && status2.zero) {
      // both read as zeros
    } else if (status1.present === status2.present) {
      if (status1.present) {
        chunk = Math.min(chunk, IO_BUF_SIZE)
        // Both at once; a failure of the first image is the one reported, as in qemu-img's order.
        const [ra, rb] = await Promise.allSettled([read(first, offset, chunk), read(second, offset, chunk)])
        if (ra.status === 'rejected') throw ra.reason
        if (rb.status === 'rejected') throw rb.reason
        const [a, b] = [ra.value, rb.value]
        const at = firstDifferentSector(a, b)
        if (at >= 0) return { exitCode: 1, messages: [`Content mismatch at offset ${offset + at}!`] }
      }
    } else {
      chunk = Math.min(chunk, IO_BUF_SIZE)
      const data = await read(status1.present ? first : second, offset, chunk)
      const at = firstNonZeroSector(data)
      if (at >= 0) return { exitCode: 1, messages: [`Content mismatch at offset ${offset + at}!`] }
    }
    offset += chunk
    progress.add(chunk)
  }
  if (size1 !== size2) {
    messages.push('Warning: Image size mismatch!')
    const larger = size1 > size2 ? first : second
    const end = Math.max(size1, size2)
    while (offset < end) {
      const status = await larger.blockStatus(offset, end - offset)
      const chunk = Math.min(status.length, IO_BUF_SIZE)
      if (status.present && !status.zero) {
        const at = firstNonZeroSector(await read(larger, offset, chunk))
        if (at >= 0) return { exitCode: 1, messages: [...messages, `Content mismatch at offset ${offset + at}!`] }
      }
      offset += chunk
      progress.add(chunk)
    }
  }
  // No progress.end() here: qemu-img prints the verdict right after the last "\r" and ends
  // the progress output (a newline) after it; the caller does that.
  messages.push('Images are identical.')
  return { exitCode: 0, messages }
}
