// A pool of worker threads for (de)compression: one per core by default, started on first use (a
// pool that never gets a task costs nothing). A task's input and output live in reused slots of
// shared memory (shared-slots.ts), so the calling thread allocates nothing per cluster; results
// come back in a promise.
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Codecs, Compressor, Compressors, Decompressor } from '../codecs.js'
import { nodeCodecs } from './codecs.js'
import { SharedSlots } from './shared-slots.js'

/** A job for a pool worker. */
export interface CodecTask {
  op: 'compress' | 'decompress'
  codec: 'deflate' | 'zstd'
  input: Uint8Array
  /** compress: result must be smaller than this; decompress: exact output size. */
  size: number
  /**
   * Shared memory for the result (compress: size - 1 bytes; decompress: size bytes): the worker
   * writes it there and answers its length. Without it the result is transferred.
   */
  output?: Uint8Array
}

/**
 * What a worker answers for each task of a message, in order: the result's bytes, or its length
 * in the task's `output`; null when a compressed form was not smaller.
 */
export type CodecResult = { output: Uint8Array | null } | { length: number | null } | { error: string }

interface Pending { resolve(value: Uint8Array | number | undefined): void; reject(error: Error): void }
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

/**
 * Threads for a pool that decompresses what the calling thread reads and writes: one per core
 * but one. The calling thread keeps a core busy with I/O and copying; a thread more only
 * competes with it (measured on 2 cores: convert -O raw of a zlib image as fast with 1 worker as
 * with 2, and 60 MiB smaller).
 */
export function decodeThreads(cores = availableParallelism()): number {
  return Math.max(1, cores - 1)
}

/** Worker threads running the Node codecs. */
export class CodecPool {
  readonly size: number
  #workers: Worker[] = []
  #idle: Worker[] = []
  #queue: Job[] = []
  #pending = new Map<Worker, Job[]>()
  #closed = false
  readonly #inlineBelow: number
  readonly #slots = SharedSlots.available ? new SharedSlots() : undefined

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
        else if ('length' in result) job.pending.resolve(result.length ?? undefined)
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

  #submit(task: CodecTask, transfer: ArrayBuffer[]): Promise<Uint8Array | number | undefined> {
    if (this.#closed) return Promise.reject(new Error('codec pool is closed'))
    return new Promise((resolve, reject) => {
      this.#queue.push({ task, transfer, pending: { resolve, reject } })
      const worker = this.#idle.pop() ?? (this.#workers.length < this.size ? this.#spawn() : undefined)
      if (worker) this.#next(worker)
    })
  }

  /**
   * Runs a task on the next free worker; the result's bytes, undefined when a compressed form was
   * not smaller. The input is copied (into shared memory, else into the message): the caller
   * may reuse it as soon as this returns.
   */
  async run(task: Omit<CodecTask, 'output'>): Promise<Uint8Array | undefined> {
    const slots = this.#slots
    if (!slots) {
      const input = new Uint8Array(task.input) // a copy of its own, transferred
      return await this.#submit({ ...task, input }, [input.buffer as ArrayBuffer]) as Uint8Array | undefined
    }
    const input = slots.take(task.input.length)
    input.set(task.input)
    const output = slots.take(task.op === 'compress' ? task.size - 1 : task.size)
    try {
      const length = await this.#submit({ ...task, input, output }, []) as number | undefined
      return length === undefined ? undefined : output.slice(0, length)
    } finally {
      slots.give(input)
      slots.give(output)
    }
  }

  /** Compressors that run in the pool. */
  compressors(): Compressors {
    const compressor = (codec: 'deflate' | 'zstd'): Compressor => (input, limit) => this.run({ op: 'compress', codec, input, size: limit })
    return { deflate: compressor('deflate'), zstd: compressor('zstd') }
  }

  /**
   * A decompressor that runs in the pool (clusters under 16 KiB: on the calling thread). The
   * input is copied once into memory of its own and that copy is transferred (a compressed
   * stream is often a view into a larger read); the output is transferred back. Shared slots
   * would spare those buffers, but a slot per queued cluster holds more memory than the garbage
   * it saves (measured: 20 MiB more at the peak of convert -O raw).
   */
  decompressor(codec: 'deflate' | 'zstd'): Decompressor {
    const inline = nodeCodecs[codec]!
    return async (input, outputSize, into) => {
      if (outputSize < this.#inlineBelow) return inline(input, outputSize, into)
      const own = new Uint8Array(input) // a copy (Buffer#slice would share memory)
      const out = await this.#submit({ op: 'decompress', codec, input: own, size: outputSize }, [own.buffer])
      if (!(out instanceof Uint8Array)) throw new Error(`${codec} stream gave no output`)
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
