// A pool of worker threads for (de)compression: one per core by default, started on first use (a
// pool that never gets a task costs nothing). Tasks carry their buffers by copy or transfer,
// results come back in a promise. The pool bounds work in flight.
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Codecs, Compressors, Decompressor } from '../codecs.js'
import { nodeCodecs } from './codecs.js'

/** A job for a pool worker. */
export interface CodecTask {
  op: 'compress' | 'decompress'
  codec: 'deflate' | 'zstd'
  input: Uint8Array
  /** compress: result must be smaller than this; decompress: exact output size. */
  size: number
}

/** What a worker answers for each task of a message, in order. */
export type CodecResult = { output: Uint8Array | null } | { error: string }

interface Pending { resolve(value: Uint8Array | undefined): void; reject(error: Error): void }
interface Job { task: CodecTask; transfer: ArrayBuffer[]; pending: Pending }

/**
 * A free worker takes its share of the queue in one message (up to this many tasks and about
 * BATCH_BYTES of output): a message and the wake-up of a thread cost about a quarter of
 * inflating 64 KiB, so under load clusters travel together, while a lone task goes at once.
 */
const MAX_BATCH = 32
const BATCH_BYTES = 2 * 1024 * 1024

/**
 * Clusters smaller than this are decompressed on the calling thread: the trip to a worker costs
 * more than inflating them (measured on 2 cores: 4 KiB clusters 63 µs each inline, 124 µs
 * through the pool; 16 KiB even; 64 KiB 492 µs inline, 267 µs through the pool).
 */
const INLINE_BELOW = 16 * 1024

/** Worker threads of all pools that have not exited yet. */
let liveThreads = 0

/** Worker threads running the Node codecs. */
export class CodecPool {
  readonly size: number
  #workers: Worker[] = []
  #idle: Worker[] = []
  #queue: Job[] = []
  #pending = new Map<Worker, Job[]>()
  #closed = false
  readonly #inlineBelow: number

  /** `inlineBelow`: clusters of fewer bytes are decompressed on the calling thread (default 16 KiB). */
  constructor(size = availableParallelism(), options: { inlineBelow?: number } = {}) {
    this.size = Math.max(1, size)
    this.#inlineBelow = options.inlineBelow ?? INLINE_BELOW
  }

  /** Worker threads of this pool running now (0 until the first task). */
  get threads(): number {
    return this.#workers.length
  }

  /** Worker threads of every pool in this process not yet exited (a pool left open shows here). */
  static get liveThreads(): number {
    return liveThreads
  }

  #spawn(): Worker {
    const worker = new Worker(new URL('./pool-worker.js', import.meta.url))
    worker.unref()
    liveThreads++
    worker.on('exit', () => { liveThreads-- })
    worker.on('message', (results: CodecResult[]) => {
      const jobs = this.#pending.get(worker) ?? []
      this.#pending.delete(worker)
      this.#next(worker) // first, so the worker is busy again while the results are handed out
      jobs.forEach((job, i) => {
        const result = results[i]
        if (!result) job.pending.reject(new Error('codec worker gave no result'))
        else if ('error' in result) job.pending.reject(new Error(result.error))
        else job.pending.resolve(result.output ?? undefined)
      })
    })
    worker.on('error', (error) => {
      for (const job of this.#pending.get(worker) ?? []) job.pending.reject(error)
      this.#pending.delete(worker)
      this.#workers = this.#workers.filter((w) => w !== worker)
      this.#idle = this.#idle.filter((w) => w !== worker)
      // Queued jobs would otherwise wait for a worker that is gone.
      if (!this.#closed && this.#queue.length > 0) this.#next(this.#spawn())
    })
    this.#workers.push(worker)
    return worker
  }

  #next(worker: Worker): void {
    if (this.#queue.length === 0) {
      this.#idle.push(worker)
      return
    }
    const share = Math.min(MAX_BATCH, Math.ceil(this.#queue.length / this.size))
    let count = 1
    let bytes = this.#queue[0]!.task.size
    while (count < share && bytes + this.#queue[count]!.task.size <= BATCH_BYTES) bytes += this.#queue[count++]!.task.size
    const jobs = this.#queue.splice(0, count)
    this.#pending.set(worker, jobs)
    worker.postMessage(jobs.map((j) => j.task), jobs.flatMap((j) => j.transfer))
  }

  #submit(task: CodecTask, transfer: ArrayBuffer[]): Promise<Uint8Array | undefined> {
    if (this.#closed) return Promise.reject(new Error('codec pool is closed'))
    return new Promise((resolve, reject) => {
      this.#queue.push({ task, transfer, pending: { resolve, reject } })
      const worker = this.#idle.pop() ?? (this.#workers.length < this.size ? this.#spawn() : undefined)
      if (worker) this.#next(worker)
    })
  }

  /**
   * Runs a task on the next free worker. The input is copied, not transferred: the caller may
   * still need it (an incompressible cluster is then written as it is).
   */
  run(task: CodecTask): Promise<Uint8Array | undefined> {
    return this.#submit({ ...task, input: ownBuffer(task.input) ? task.input : new Uint8Array(task.input) }, [])
  }

  /** Compressors that run in the pool. */
  compressors(): Compressors {
    return {
      deflate: (input, limit) => this.run({ op: 'compress', codec: 'deflate', input, size: limit }),
      zstd: (input, limit) => this.run({ op: 'compress', codec: 'zstd', input, size: limit }),
    }
  }

  /**
   * A decompressor that runs in the pool (clusters under 16 KiB: on the calling thread). The
   * input is copied once into memory of its own and that copy is transferred (a compressed
   * stream is often a view into a larger read).
   */
  decompressor(codec: 'deflate' | 'zstd'): Decompressor {
    const inline = nodeCodecs[codec]!
    return async (input, outputSize) => {
      if (outputSize < this.#inlineBelow) return inline(input, outputSize)
      const own = new Uint8Array(input) // a copy (Buffer#slice would share memory)
      const out = await this.#submit({ op: 'decompress', codec, input: own, size: outputSize }, [own.buffer])
      if (!out) throw new Error(`${codec} stream gave no output`)
      return out
    }
  }

  /** Decompression codecs (deflate and zstd) that run in the pool, for openImage's `codecs`. */
  decompressors(): Codecs {
    return { deflate: this.decompressor('deflate'), zstd: this.decompressor('zstd') }
  }

  /** Stops the workers; tasks still queued are rejected. */
  async close(): Promise<void> {
    this.#closed = true
    for (const job of this.#queue.splice(0)) job.pending.reject(new Error('codec pool is closed'))
    await Promise.all(this.#workers.map((w) => w.terminate()))
    this.#workers = []
    this.#idle = []
  }
}

/** True when `bytes` spans its whole ArrayBuffer (posting it copies no more than it shows). */
function ownBuffer(bytes: Uint8Array): boolean {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
}
