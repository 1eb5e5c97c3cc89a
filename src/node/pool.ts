// A pool of worker threads for (de)compression: one per core by default, started on first use (a
// pool that never gets a task costs nothing). Each message to a worker carries a batch of tasks
// whose inputs and outputs lie in two reused slots of shared memory (shared-slots.ts): the
// calling thread allocates nothing per cluster, and a message carries a few shared buffers
// rather than one per cluster. Results come back in a promise.
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Codecs, Compressor, Compressors, Decompressor } from '../codecs.js'
import { nodeCodecs } from './codecs.js'
import { SharedSlots, isShared } from './shared-slots.js'

/** A job for a pool worker. */
export interface CodecTask {
  op: 'compress' | 'decompress'
  /** deflateDefault: compress only (zlib's default parameters, for VMDK grains). */
  codec: 'deflate' | 'zstd' | 'deflateDefault'
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

/**
 * A queued task. `copyOut`: the result goes to a slot of the batch and is copied out when it
 * arrives, into `into` when given (else it goes into the caller's shared `task.output`, or is
 * transferred).
 */
interface Job { task: CodecTask; copyOut: boolean; into?: Uint8Array | undefined; transfer: ArrayBuffer[]; pending: Pending }

/** Tasks sent to one worker, and the slots they use. */
interface Batch { jobs: Job[]; tasks: CodecTask[]; slots: Uint8Array[] }

/**
 * A free worker takes its share of the queue in one message (up to this many tasks and about
 * BATCH_BYTES of output): a message and the wake-up of a thread cost about a quarter of
 * inflating 64 KiB, so under load clusters travel together, while a lone task goes at once.
 */
const MAX_BATCH = 32
const BATCH_BYTES = 2 * 1024 * 1024
/**
 * Batches a worker holds at once: the next one waits in its message port while it works on one,
 * so it never idles while this thread is busy (a write, a copy) and cannot answer at once.
 * Measured on 2 cores: with one batch at a time the worker of convert -O raw (zlib) idled 26 %
 * of the run.
 */
const DEPTH = 2

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
  #queue: Job[] = []
  /** Batches sent to each worker and not answered yet, oldest first. */
  #inFlight = new Map<Worker, Batch[]>()
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
      const batch = this.#inFlight.get(worker)?.shift()
      this.#dispatch() // first, so the worker has its next batch while the results are handed out
      batch?.jobs.forEach((job, i) => {
        const result = results[i]
        if (!result) job.pending.reject(new Error('codec worker gave no result'))
        else if ('error' in result) job.pending.reject(new Error(result.error))
        else if (!('length' in result)) job.pending.resolve(result.output ?? undefined)
        else if (result.length === null) job.pending.resolve(undefined)
        else if (!job.copyOut) job.pending.resolve(result.length)
        else job.pending.resolve(copyOut(batch.tasks[i]!.output!.subarray(0, result.length), job.into))
      })
      this.#release(batch)
    })
    worker.on('error', (error) => {
      this.#fail(worker, error)
      // Queued jobs would otherwise wait for a worker that is gone.
      if (!this.#closed) this.#dispatch()
    })
    this.#workers.push(worker)
    this.#inFlight.set(worker, [])
    return worker
  }

  /** Rejects the jobs a worker holds and forgets it. */
  #fail(worker: Worker, error: Error): void {
    for (const batch of this.#inFlight.get(worker) ?? []) {
      for (const job of batch.jobs) job.pending.reject(error)
      this.#release(batch)
    }
    this.#inFlight.delete(worker)
    this.#workers = this.#workers.filter((w) => w !== worker)
  }

  /**
   * Sends queued jobs to workers: to an idle one, else to a new one while the pool may grow,
   * else to one with fewer than DEPTH batches in hand.
   */
  #dispatch(): void {
    while (this.#queue.length > 0) {
      let worker: Worker | undefined
      let load = DEPTH
      for (const w of this.#workers) {
        const held = this.#inFlight.get(w)!.length
        if (held < load) [worker, load] = [w, held]
      }
      if (load > 0 && this.#workers.length < this.size) worker = this.#spawn()
      if (!worker) return
      this.#send(worker)
    }
  }

  /** Sends a worker its share of the queue in one message. */
  #send(worker: Worker): void {
    const share = Math.min(MAX_BATCH, Math.ceil(this.#queue.length / this.size))
    let count = 1
    let bytes = this.#queue[0]!.task.size
    while (count < share && bytes + this.#queue[count]!.task.size <= BATCH_BYTES) bytes += this.#queue[count++]!.task.size
    const jobs = this.#queue.splice(0, count)
    const batch = this.#slots ? this.#inSlots(jobs, this.#slots) : { jobs, tasks: jobs.map((j) => j.task), slots: [] }
    this.#inFlight.get(worker)!.push(batch)
    worker.postMessage(batch.tasks, jobs.flatMap((j) => j.transfer))
  }

  /**
   * The tasks of `jobs` with their inputs copied into one slot (unless already shared) and their
   * outputs (copyOut) in another.
   */
  #inSlots(jobs: Job[], slots: SharedSlots): Batch {
    const inputBytes = jobs.reduce((sum, j) => sum + (isShared(j.task.input) ? 0 : j.task.input.length), 0)
    const outputBytes = jobs.reduce((sum, j) => sum + (j.copyOut ? outputLength(j.task) : 0), 0)
    const inputs = inputBytes > 0 ? slots.take(inputBytes) : undefined
    const outputs = outputBytes > 0 ? slots.take(outputBytes) : undefined
    let inputAt = 0
    let outputAt = 0
    const tasks = jobs.map(({ task, copyOut }) => {
      let { input, output } = task
      if (inputs && !isShared(input)) {
        const view = inputs.subarray(inputAt, inputAt += input.length)
        view.set(input)
        input = view
      }
      if (outputs && copyOut) output = outputs.subarray(outputAt, outputAt += outputLength(task))
      return { ...task, input, ...(output ? { output } : {}) }
    })
    return { jobs, tasks, slots: [inputs, outputs].filter((s): s is Uint8Array => s !== undefined) }
  }

  #release(batch: Batch | undefined): void {
    for (const slot of batch?.slots ?? []) this.#slots?.give(slot)
  }

  #submit(task: CodecTask, copyOut: boolean, transfer: ArrayBuffer[] = [], into?: Uint8Array): Promise<Uint8Array | number | undefined> {
    if (this.#closed) return Promise.reject(new Error('codec pool is closed'))
    return new Promise((resolve, reject) => {
      this.#queue.push({ task, copyOut, into, transfer, pending: { resolve, reject } })
      this.#dispatch()
    })
  }

  /**
   * Runs a task on the next free worker; the result's bytes (in `into` when given, exactly as
   * long as the result), undefined when a compressed form was not smaller. The input must stay
   * unchanged until the promise settles (it is read when the task leaves the queue).
   */
  async run(task: Omit<CodecTask, 'output'>, into?: Uint8Array): Promise<Uint8Array | undefined> {
    if (this.#slots) return await this.#submit(task, true, [], into) as Uint8Array | undefined
    const input = new Uint8Array(task.input) // a copy of its own, transferred
    const out = await this.#submit({ ...task, input }, false, [input.buffer as ArrayBuffer]) as Uint8Array | undefined
    if (!into || !out) return out
    into.set(out)
    return into
  }

  /** Compressors that run in the pool. */
  compressors(): Compressors {
    const compressor = (codec: CodecTask['codec']): Compressor => (input, limit) => this.run({ op: 'compress', codec, input, size: limit })
    return { deflate: compressor('deflate'), zstd: compressor('zstd'), deflateDefault: compressor('deflateDefault') }
  }

  /**
   * A decompressor that runs in the pool (clusters under 16 KiB: on the calling thread). With
   * `into` in shared memory the worker writes the cluster straight there.
   */
  decompressor(codec: 'deflate' | 'zstd'): Decompressor {
    const inline = nodeCodecs[codec]!
    return async (input, outputSize, into) => {
      if (outputSize < this.#inlineBelow) return inline(input, outputSize, into)
      const task: CodecTask = { op: 'decompress', codec, input, size: outputSize }
      if (into?.length === outputSize && isShared(into)) {
        // Straight into the caller's shared memory.
        await this.#submit({ ...task, output: into }, false)
        return into
      }
      // From the batch's slot straight into the caller's buffer, when there is one.
      const out = await this.run(task, into?.length === outputSize ? into : undefined)
      if (!out) throw new Error(`${codec} stream gave no output`)
      return out
    }
  }

  /** Decompression codecs (deflate and zstd) that run in the pool, for openImage's `codecs`. */
  decompressors(): Codecs {
    return { deflate: this.decompressor('deflate'), zstd: this.decompressor('zstd') }
  }

  /** Stops the workers; tasks still queued or running are rejected. */
  async close(): Promise<void> {
    this.#closed = true
    const closed = new Error('codec pool is closed')
    for (const job of this.#queue.splice(0)) job.pending.reject(closed)
    const workers = this.#workers
    for (const worker of workers) this.#fail(worker, closed)
    await Promise.all(workers.map((w) => w.terminate()))
  }
}

/** A result in a batch's slot, copied into `into` (exactly as long), or into memory of its own. */
function copyOut(result: Uint8Array, into: Uint8Array | undefined): Uint8Array {
  if (!into) return result.slice()
  into.set(result)
  return into
}

/** Bytes a task's result may take: compress, less than its limit; decompress, the cluster. */
function outputLength(task: CodecTask): number {
  return task.op === 'compress' ? task.size - 1 : task.size
}
