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
   * which costs nothing measurable when absent.
   */
  debugEvent?(event: BlkdebugEvent): void
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
}

/** Narrows a readable storage to a writable one when it has the methods. */
export function isWritable(storage: ReadableStorage): storage is Storage {
  const s = storage as Partial<Storage>
  return typeof s.write === 'function' && typeof s.flush === 'function'
}
