// A pool of worker threads for (de)compression: one per core by default; tasks carry their
// buffers by transfer, results come back in a promise. The pool bounds work in flight.
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { Compressors, Decompressor } from '../codecs.js'

/** A job for a pool worker. */
export interface CodecTask {
  op: 'compress' | 'decompress'
  codec: 'deflate' | 'zstd'
  input: Uint8Array
  /** compress: result must be smaller than this; decompress: exact output size. */
  size: number
}

interface Pending { resolve(value: Uint8Array | undefined): void; reject(error: Error): void }

/** Worker threads running the Node codecs. */
export class CodecPool {
  readonly size: number
  #workers: Worker[] = []
  #idle: Worker[] = []
  #queue: { task: CodecTask; pending: Pending }[] = []
  #pending = new Map<Worker, Pending>()
  #closed = false

  constructor(size = availableParallelism()) {
    this.size = Math.max(1, size)
  }

  #spawn(): Worker {
    const worker = new Worker(new URL('./pool-worker.js', import.meta.url))
    worker.unref()
    worker.on('message', (message: { output?: Uint8Array | null; error?: string }) => {
      const pending = this.#pending.get(worker)
      this.#pending.delete(worker)
      if (message.error !== undefined) pending?.reject(new Error(message.error))
      else pending?.resolve(message.output ?? undefined)
      this.#next(worker)
    })
    worker.on('error', (error) => {
      this.#pending.get(worker)?.reject(error)
      this.#pending.delete(worker)
      this.#workers = this.#workers.filter((w) => w !== worker)
    })
    this.#workers.push(worker)
    return worker
  }

  #next(worker: Worker): void {
    const job = this.#queue.shift()
    if (!job) {
      this.#idle.push(worker)
      return
    }
    this.#pending.set(worker, job.pending)
    // The input is copied, not transferred: the caller may still need it (an incompressible
    // cluster is then written as it is).
    worker.postMessage(job.task)
  }

  /** Runs a task on the next free worker. */
  run(task: CodecTask): Promise<Uint8Array | undefined> {
    if (this.#closed) return Promise.reject(new Error('codec pool is closed'))
    return new Promise((resolve, reject) => {
      this.#queue.push({ task, pending: { resolve, reject } })
      const worker = this.#idle.pop() ?? (this.#workers.length < this.size ? this.#spawn() : undefined)
      if (worker) this.#next(worker)
    })
  }

  /** Compressors that run in the pool. */
  compressors(): Compressors {
    return {
      deflate: (input, limit) => this.run({ op: 'compress', codec: 'deflate', input, size: limit }),
      zstd: (input, limit) => this.run({ op: 'compress', codec: 'zstd', input, size: limit }),
    }
  }

  /** A decompressor that runs in the pool. */
  decompressor(codec: 'deflate' | 'zstd'): Decompressor {
    return async (input, outputSize) => {
      const out = await this.run({ op: 'decompress', codec, input, size: outputSize })
      if (!out) throw new Error(`${codec} stream gave no output`)
      return out
    }
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    this.#closed = true
    await Promise.all(this.#workers.map((w) => w.terminate()))
    this.#workers = []
    this.#idle = []
  }
}
