// Storage over a local file (node:fs/promises): loops on short reads, fdatasync on flush.
import { readSync, writeSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { ImageError, hex } from '../errors.js'
import { fallocateRange, findAllocation, reserveSpace, type FallocateMode } from './holes.js'
import { writeZeroBytes, type Storage } from './storage.js'

/** Wraps a Node fs error as an IO ImageError naming the file and what was being done. */
export function ioError(name: string, doing: string, cause: unknown): ImageError {
  const err = cause as NodeJS.ErrnoException
  const reason = err.code === 'ENOENT' ? 'No such file or directory'
    : err.code === 'EACCES' ? 'Permission denied'
    : err.code === 'EISDIR' ? 'Is a directory'
    : err.message
  return new ImageError('IO', `Could not ${doing} '${name}': ${reason}`, { cause, file: name })
}

/**
 * Largest single write(2). Copying a large buffer into the page cache in one call measured several
 * times slower in kernel time than the same bytes in pieces (3 GiB: 2.6-5.8 s of system time in
 * 2 MiB writes, 0.6 s in 64 KiB writes): the source stays in the CPU cache. QEMU_BENCH_WRITE_PIECE
 * overrides it for measurements.
 */
const WRITE_PIECE_BYTES = Number(process.env['QIMG_WRITE_PIECE'] ?? 256 * 1024)

/** One zero byte: what extends a file over a range past its end (see writeZeroes). */
const ZERO_BYTE = new Uint8Array(1)

/** See FileStorage.inlineWriteBytes. */
const INLINE_WRITE_BYTES = 64 * 1024

/** A file opened for reading (and writing when `writable`). */
export class FileStorage implements Storage {
  /**
   * Writes of at most this many bytes are made on the calling thread (pwrite into the page cache,
   * in pieces) when no other write is queued; larger ones go to libuv's thread pool. Handing a
   * small write to the pool costs more than the write: 20,000 writes of 30 KB took 37 µs each
   * through the pool (futex wake-ups, context switches, a promise) against 10 µs each made
   * directly, and compressed clusters and metadata are written that way, one by one. The default,
   * 64 KiB, keeps a library user's event loop responsive. The qimg command line, a process with
   * nothing else on its event loop, makes every write directly (cli/main.ts): convert -O raw then
   * reads ahead on the pool while this thread writes, measured 25-40 % faster than both on the
   * pool. QIMG_SYNC_WRITE sets it for measurements.
   */
  static inlineWriteBytes = Number(process.env['QIMG_SYNC_WRITE'] ?? INLINE_WRITE_BYTES)

  /**
   * Reads of at most this many bytes are made on the calling thread. The default, 0, sends every
   * read to libuv's pool: a read of pages not in the page cache waits for the disk, and would hold
   * up an embedding event loop meanwhile. The qimg command line reads up to 64 KiB directly
   * (tables, small guest reads): a 4 KiB read of cached pages costs a few µs that way, against
   * some 30 µs through the pool. QIMG_SYNC_READ sets it for measurements.
   */
  static inlineReadBytes = Number(process.env['QIMG_SYNC_READ'] ?? 0)

  readonly name: string
  readonly writable: boolean
  /** False for cache=unsafe: flush returns without syncing (qemu-img convert's default target mode). */
  readonly sync: boolean
  #handle: FileHandle
  #closed = false
  /** Tail of the write queue: writes to one file run one at a time (see write()). */
  #writing: Promise<unknown> = Promise.resolve()
  /** Writes queued or running on the thread pool. */
  #queued = 0
  private constructor(name: string, handle: FileHandle, writable: boolean, sync = true) {
    this.name = name
    this.#handle = handle
    this.writable = writable
    this.sync = sync
  }

  /** Opens an existing file. */
  static async open(path: string, options: { writable?: boolean; sync?: boolean } = {}): Promise<FileStorage> {
    const writable = options.writable ?? false
    try {
      return new FileStorage(path, await open(path, writable ? 'r+' : 'r'), writable, options.sync ?? true)
    } catch (cause) {
      throw ioError(path, 'open', cause)
    }
  }

  /** Creates (or truncates) a file and opens it for writing. */
  static async create(path: string, options: { exclusive?: boolean } = {}): Promise<FileStorage> {
    try {
      return new FileStorage(path, await open(path, options.exclusive ? 'wx+' : 'w+'), true)
    } catch (cause) {
      throw ioError(path, 'create', cause)
    }
  }

  async size(): Promise<number> {
    const stat = await this.#handle.stat()
    return stat.size
  }

  async allocatedSize(): Promise<number | undefined> {
    const stat = await this.#handle.stat()
    return stat.blocks * 512
  }

  /** Holes of a sparse file via lseek(SEEK_DATA/SEEK_HOLE), when the native helper is built. */
  async holeStatus(offset: number, length: number): Promise<{ hole: boolean; length: number }> {
    return findAllocation(this.#handle.fd, offset, length) ?? { hole: false, length }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    // A plain Uint8Array over memory of its own, not a pooled Buffer: callers view `.buffer` from
    // offset 0 and expect `.slice()` to copy (Buffer#slice shares memory).
    const buffer = new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length)
    await this.readInto(offset, buffer)
    return buffer
  }

  async readInto(offset: number, target: Uint8Array): Promise<void> {
    const length = target.length
    if (length <= FileStorage.inlineReadBytes) return this.#readHere(offset, target)
    let done = 0
    while (done < length) {
      let bytesRead: number
      try {
        ;({ bytesRead } = await this.#handle.read(target, done, length - done, offset + done))
      } catch (cause) {
        throw ioError(this.name, `read ${length} bytes at ${hex(offset)} from`, cause)
      }
      if (bytesRead === 0) {
        throw new ImageError('SHORT_READ', `${this.name}: read of ${length} bytes at ${hex(offset)} ends past end of file`, { offset, file: this.name })
      }
      done += bytesRead
    }
  }

  #readHere(offset: number, target: Uint8Array): void {
    const length = target.length
    let done = 0
    while (done < length) {
      let bytesRead: number
      try {
        bytesRead = readSync(this.#handle.fd, target, done, length - done, offset + done)
      } catch (cause) {
        throw ioError(this.name, `read ${length} bytes at ${hex(offset)} from`, cause)
      }
      if (bytesRead === 0) {
        throw new ImageError('SHORT_READ', `${this.name}: read of ${length} bytes at ${hex(offset)} ends past end of file`, { offset, file: this.name })
      }
      done += bytesRead
    }
  }

  /**
   * Writes run one at a time per file. The kernel serializes buffered writes to one inode anyway
   * (i_rwsem); several in flight on libuv's threads only spin on that lock, which measured as a
   * third of convert's CPU time. Reads are not queued.
   */
  write(offset: number, data: Uint8Array): Promise<void> {
    if (data.length <= FileStorage.inlineWriteBytes && this.#queued === 0) {
      // Nothing ahead of it: written now, in order.
      try {
        this.#writeHere(offset, data)
        return Promise.resolve()
      } catch (error) {
        return Promise.reject(error)
      }
    }
    return this.#enqueue(() => this.#writeNow(offset, data))
  }

  /** Runs `operation` after every write queued before it; writes made later wait for it. */
  #enqueue<T>(operation: () => Promise<T> | T): Promise<T> {
    this.#queued++
    const result = this.#writing.then(operation).finally(() => { this.#queued-- })
    this.#writing = result.catch(() => {})
    return result
  }

  #writeHere(offset: number, data: Uint8Array): void {
    let done = 0
    while (done < data.length) {
      try {
        done += writeSync(this.#handle.fd, data, done, Math.min(data.length - done, WRITE_PIECE_BYTES), offset + done)
      } catch (cause) {
        throw ioError(this.name, `write ${data.length} bytes at ${hex(offset)} to`, cause)
      }
    }
  }

  async #writeNow(offset: number, data: Uint8Array): Promise<void> {
    let done = 0
    while (done < data.length) {
      try {
        const piece = Math.min(data.length - done, WRITE_PIECE_BYTES)
        const { bytesWritten } = await this.#handle.write(data, done, piece, offset + done)
        done += bytesWritten
      } catch (cause) {
        throw ioError(this.name, `write ${data.length} bytes at ${hex(offset)} to`, cause)
      }
    }
  }

  async flush(): Promise<void> {
    if (!this.sync) return
    try {
      await this.#handle.datasync()
    } catch (cause) {
      throw ioError(this.name, 'flush', cause)
    }
  }

  /** Reserves space (fallocate) for a range, growing the file; false when not possible here. */
  async reserve(offset: number, length: number): Promise<boolean> {
    try {
      return reserveSpace(this.#handle.fd, offset, length)
    } catch (cause) {
      throw ioError(this.name, `reserve ${length} bytes at ${hex(offset)} in`, cause)
    }
  }

  /**
   * Punches a hole (fallocate PUNCH_HOLE | KEEP_SIZE), as QEMU's handle_aiocb_discard; false
   * when the addon or the filesystem cannot. Then, as QEMU ignores -ENOTSUP for a discard
   * (bdrv_co_pdiscard), the bytes stay as they were: a discard is only a hint.
   */
  discard(offset: number, length: number): Promise<boolean> {
    return this.#enqueue(() => this.#fallocate('punch', offset, length) === 'done')
  }

  /**
   * Makes a range read zeros as QEMU's handle_aiocb_write_zeroes does: fallocate ZERO_RANGE;
   * where that is refused, a punched hole allocated again; else zeros written.
   */
  async writeZeroes(offset: number, length: number): Promise<void> {
    const zeroed = await this.#enqueue(async () => {
      if (this.#fallocate('zero', offset, length) === 'done') return true
      const size = await this.size()
      if (offset >= size) {
        // Past the end, bytes read zeros once the file covers them: one byte at the range's end
        // extends it, leaving a hole before (writes are queued, so none lands meanwhile).
        this.#writeHere(offset + length - 1, ZERO_BYTE)
        return true
      }
      // PUNCH_HOLE keeps the size: only a range inside the file can be done this way.
      return offset + length <= size && this.#fallocate('punch', offset, length) === 'done' &&
        this.#fallocate('allocate', offset, length) === 'done'
    })
    if (!zeroed) await writeZeroBytes(this, offset, length)
  }

  #fallocate(mode: FallocateMode, offset: number, length: number): 'done' | 'unsupported' | 'invalid' {
    try {
      return fallocateRange(this.#handle.fd, mode, offset, length)
    } catch (cause) {
      throw ioError(this.name, `${mode === 'punch' ? 'discard' : 'zero'} ${length} bytes at ${hex(offset)} in`, cause)
    }
  }

  async truncate(length: number): Promise<void> {
    try {
      await this.#handle.truncate(length)
    } catch (cause) {
      throw ioError(this.name, 'truncate', cause)
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#handle.close()
  }
}
