// The one narrow storage interface every format driver reads and writes through: exact reads
// or an error, whole writes, flush means durable. Files, memory and (later) HTTP ranges fit.
import type { BlkdebugEvent } from './blkdebug-rules.js'

/** Random-access bytes under an image. */
export interface ReadableStorage {
  /** A name for messages: the file path, or a label for memory storage. */
  readonly name: string
  /** Current length in bytes. */
  size(): Promise<number>
  /** Exactly `length` bytes at `offset`; rejects with SHORT_READ past the end, never zero-fills. */
  read(offset: number, length: number): Promise<Uint8Array>
  /** Optional: like read, into the caller's buffer (`target.length` bytes), saving a copy. */
  readInto?(offset: number, target: Uint8Array): Promise<void>
  /**
   * Optional: bytes the host really allocates (sparse files), for `actual-size`.
   * Undefined when the backend cannot tell.
   */
  allocatedSize?(): Promise<number | undefined>
  /**
   * Optional: whether `[offset, offset+length)` starts in a hole of a sparse host file, and how
   * far that state extends (at most `length`). Lets `map` report what QEMU's file protocol does.
   */
  holeStatus?(offset: number, length: number): Promise<{ hole: boolean; length: number }>
  /**
   * Optional: told of the points in a format driver's work that QEMU's drivers report with
   * BLKDBG_EVENT (blkdebug arms injected errors on them). Drivers call it as `debugEvent?.(…)`,
   * which costs nothing measurable when absent. A promise means the request is suspended at a
   * blkdebug breakpoint until resumed: points where QEMU's tests break await it (write_aio).
   */
  debugEvent?(event: BlkdebugEvent): void | Promise<void>
  /**
   * Optional: false for a protocol without bdrv_get_info (QEMU's nbd driver): a raw image over
   * it then reports no dirty flag, as qemu-img info shows.
   */
  readonly hasInfo?: boolean
  close(): Promise<void>
}

/** Storage that can also be written. */
export interface Storage extends ReadableStorage {
  /** Writes all of `data`; extends the storage when writing past its end. */
  write(offset: number, data: Uint8Array): Promise<void>
  /** Makes completed writes durable. */
  flush(): Promise<void>
  /** Sets the length, cutting or extending with zeros. */
  truncate(length: number): Promise<void>
  /** Optional: reserves space for a range (fallocate), growing the file; false when not possible. */
  reserve?(offset: number, length: number): Promise<boolean>
  /**
   * Optional: deallocates a range (a hole punched, the size kept), after which it reads zeros.
   * Advisory, as a discard is in QEMU: false when the host cannot, the bytes then left as they were.
   */
  discard?(offset: number, length: number): Promise<boolean>
  /**
   * Optional: makes a range read zeros without writing them where the host can (a zero range,
   * possibly deallocated); extends the storage like a write. Callers without it use
   * {@link writeZeroes}.
   */
  writeZeroes?(offset: number, length: number): Promise<void>
}

/** Zero bytes written per call by {@link writeZeroBytes}. */
const ZERO_PIECE_BYTES = 1024 * 1024

/**
 * Writes real zeros over a range, a piece at a time: the fallback of every zeroing primitive,
 * and what preallocation=full writes (QEMU's handle_aiocb_truncate writes zeros there too).
 */
export async function writeZeroBytes(storage: Storage, offset: number, length: number): Promise<void> {
  const zeros = new Uint8Array(Math.min(length, ZERO_PIECE_BYTES))
  for (let at = 0; at < length; at += zeros.length) await storage.write(offset + at, zeros.subarray(0, Math.min(zeros.length, length - at)))
}

/**
 * Makes a range of `storage` read zeros as QEMU's file-posix does for a write-zeroes request:
 * with `unmap` (BDRV_REQ_MAY_UNMAP) a punched hole first (handle_aiocb_write_zeroes_unmap), then
 * the storage's zero range, then zeros written.
 */
export async function writeZeroes(storage: Storage, offset: number, length: number, options: { unmap?: boolean } = {}): Promise<void> {
  if (length <= 0) return
  // A punched hole keeps the size: past the end, only a write (or zero range) makes the bytes.
  if (options.unmap && storage.discard && offset + length <= await storage.size() && await storage.discard(offset, length)) return
  if (storage.writeZeroes) await storage.writeZeroes(offset, length)
  else await writeZeroBytes(storage, offset, length)
}

/** Narrows a readable storage to a writable one when it has the methods. */
export function isWritable(storage: ReadableStorage): storage is Storage {
  const s = storage as Partial<Storage>
  return typeof s.write === 'function' && typeof s.flush === 'function'
}
