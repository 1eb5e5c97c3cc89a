// An http(s) URL as read-only storage, by Range requests. Small reads go through a cache of
// aligned blocks: the missing blocks of a read are fetched as one request, and a read that
// continues the previous one reads ahead (doubling up to a limit), so sequential metadata and
// data walks cost few requests. Large reads go straight to the server in a few parallel pieces.
// At most `maxInFlight` requests run at once. QEMU's curl driver, by contrast, reads each
// request's bytes with a request of its own (block/curl.c, a 256 KiB readahead by default).
import { ImageError, hex } from '../errors.js'
import { fetchRange, UnsatisfiableRange, type HttpRequestOptions, type RangeAnswer } from './http-request.js'
import type { ReadableStorage } from './storage.js'

/** Tuning of {@link HttpStorage}; defaults in brackets. */
export interface HttpStorageOptions extends HttpRequestOptions {
  /** Cache block size in bytes [64 KiB]; the first request of `open` reads one block. */
  blockBytes?: number | undefined
  /** Blocks kept [64, i.e. 4 MiB]. */
  cacheBlocks?: number | undefined
  /** Largest read-ahead of sequential small reads in bytes [2 MiB]. */
  maxReadAheadBytes?: number | undefined
  /** Reads at least this long bypass the cache [1 MiB]. */
  directReadBytes?: number | undefined
  /** Largest single request of a direct read in bytes [4 MiB]. */
  maxRequestBytes?: number | undefined
  /** Requests in flight at once [4]. */
  maxInFlight?: number | undefined
}

/** Counts for tests and benchmarks. */
export interface HttpStats { requests: number; bytes: number }

class Slots {
  #free: number
  readonly #waiting: (() => void)[] = []
  constructor(count: number) { this.#free = count }
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--
    else await new Promise<void>((resolve) => this.#waiting.push(resolve))
    try {
      return await job()
    } finally {
      const next = this.#waiting.shift()
      if (next) next()
      else this.#free++
    }
  }
}

/** Reads an http(s) URL by byte ranges. Open it with {@link HttpStorage.open}. */
export class HttpStorage implements ReadableStorage {
  readonly name: string
  readonly url: URL
  readonly stats: HttpStats = { requests: 0, bytes: 0 }
  readonly #options: HttpStorageOptions
  readonly #blockBytes: number
  readonly #cache = new Map<number, Promise<Uint8Array>>()
  readonly #slots: Slots
  #size = 0
  #validator: string | undefined
  #nextSequential = -1
  #readAheadBlocks = 0

  private constructor(url: URL, name: string, options: HttpStorageOptions) {
    this.url = url
    this.name = name // as given ("…/chain/../base.qcow2" stays so in messages, as in QEMU's)
    this.#options = options
    this.#blockBytes = options.blockBytes ?? 64 * 1024
    this.#slots = new Slots(options.maxInFlight ?? 4)
  }

  /** Opens `url`: one request, which reads the first block and learns the size and ETag. */
  static async open(url: string | URL, options: HttpStorageOptions = {}): Promise<HttpStorage> {
    const parsed = new URL(url)
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new ImageError('INVALID_ARGUMENT', `${parsed.href}: not an http(s) URL`)
    const storage = new HttpStorage(parsed, typeof url === 'string' ? url : url.href, options)
    const first = await storage.#request(0, storage.#blockBytes, true)
    if (first instanceof UnsatisfiableRange) {
      if (first.totalSize !== 0) throw new ImageError('IO', `${parsed.href}: the server refused the first bytes (HTTP 416)`, { file: parsed.href })
      storage.#size = 0
    } else {
      storage.#size = first.totalSize
      storage.#store(0, first.bytes)
    }
    return storage
  }

  async size(): Promise<number> {
    return this.#size
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.#size) {
      throw new ImageError('SHORT_READ', `${this.name}: read of ${length} bytes at ${hex(offset)} runs past the end (${this.#size} bytes)`, { file: this.name, offset })
    }
    if (length === 0) return new Uint8Array(0)
    if (length >= (this.#options.directReadBytes ?? 1024 * 1024)) return this.#readDirect(offset, length)
    const sequential = offset === this.#nextSequential
    this.#nextSequential = offset + length
    const bs = this.#blockBytes
    const firstBlock = Math.floor(offset / bs)
    const lastBlock = Math.floor((offset + length - 1) / bs)
    this.#fetchMissing(firstBlock, lastBlock, sequential)
    const pieces: Promise<Uint8Array>[] = []
    for (let block = firstBlock; block <= lastBlock; block++) pieces.push(this.#cache.get(block)!)
    this.#evict()
    const out = new Uint8Array(length)
    for (let block = firstBlock; block <= lastBlock; block++) {
      const bytes = await pieces[block - firstBlock]!
      const blockStart = block * bs
      const from = Math.max(offset, blockStart)
      const to = Math.min(offset + length, blockStart + bytes.length)
      out.set(bytes.subarray(from - blockStart, to - blockStart), from - offset)
    }
    return out
  }

  async close(): Promise<void> {
    this.#cache.clear()
  }

  /** Starts one request per run of missing blocks; a sequential read also reads ahead. */
  #fetchMissing(firstBlock: number, lastBlock: number, sequential: boolean): void {
    const bs = this.#blockBytes
    const blockCount = Math.ceil(this.#size / bs)
    const maxAhead = Math.max(0, Math.floor((this.#options.maxReadAheadBytes ?? 2 * 1024 * 1024) / bs))
    this.#readAheadBlocks = sequential ? Math.min(maxAhead, Math.max(1, this.#readAheadBlocks * 2)) : 0
    const end = Math.min(blockCount - 1, lastBlock + this.#readAheadBlocks)
    let runStart = -1
    let block = firstBlock
    for (; block <= end; block++) {
      if (!this.#cache.has(block)) {
        if (runStart < 0) runStart = block
        continue
      }
      if (runStart >= 0) this.#startRun(runStart, block - 1)
      runStart = -1
      // Read-ahead fills the gap only up to the first cached block past the read itself.
      if (block > lastBlock) break
      this.#touch(block)
    }
    if (runStart >= 0) this.#startRun(runStart, Math.min(block, end + 1) - 1)
  }

  #startRun(first: number, last: number): void {
    const bs = this.#blockBytes
    const run = this.#slots.run(() => this.#request(first * bs, (last - first + 1) * bs, false)).then((answer) => {
      if (answer instanceof UnsatisfiableRange) throw this.#changed('its length shrank')
      return answer.bytes
    })
    for (let block = first; block <= last; block++) {
      const piece = run.then((bytes) => bytes.subarray((block - first) * bs, (block - first + 1) * bs))
      piece.catch(() => this.#cache.delete(block)) // a failed request is not cached
      this.#cache.set(block, piece)
    }
  }

  #store(offset: number, bytes: Uint8Array): void {
    const bs = this.#blockBytes
    for (let at = 0; at < bytes.length; at += bs) this.#cache.set((offset + at) / bs, Promise.resolve(bytes.subarray(at, at + bs)))
  }

  #touch(block: number): void {
    const entry = this.#cache.get(block)!
    this.#cache.delete(block)
    this.#cache.set(block, entry)
  }

  #evict(): void {
    const limit = Math.max(this.#options.cacheBlocks ?? 64, 2)
    for (const block of this.#cache.keys()) {
      if (this.#cache.size <= limit) break
      this.#cache.delete(block)
    }
  }

  async #readDirect(offset: number, length: number): Promise<Uint8Array> {
    const piece = this.#options.maxRequestBytes ?? 4 * 1024 * 1024
    const out = new Uint8Array(length)
    const jobs: Promise<void>[] = []
    for (let at = 0; at < length; at += piece) {
      const n = Math.min(piece, length - at)
      jobs.push(this.#slots.run(() => this.#request(offset + at, n, false)).then((answer) => {
        if (answer instanceof UnsatisfiableRange || answer.bytes.length !== n) throw this.#changed('its length shrank')
        out.set(answer.bytes, at)
      }))
    }
    await Promise.all(jobs)
    return out
  }

  async #request(offset: number, length: number, first: boolean): Promise<RangeAnswer | UnsatisfiableRange> {
    this.stats.requests++
    const answer = await fetchRange(this.url, offset, length, this.#options)
    const size = answer instanceof UnsatisfiableRange ? answer.totalSize : answer.totalSize
    if (first) this.#validator = answer.validator
    else if (answer.validator !== this.#validator) throw this.#changed(`its ETag went from ${this.#validator ?? 'none'} to ${answer.validator ?? 'none'}`)
    else if (size !== undefined && size !== this.#size) throw this.#changed(`its length went from ${this.#size} to ${size} bytes`)
    if (!(answer instanceof UnsatisfiableRange)) this.stats.bytes += answer.bytes.length
    return answer
  }

  #changed(how: string): ImageError {
    return new ImageError('CHANGED', `${this.name}: the image changed on the server while open (${how})`, { file: this.name })
  }
}
