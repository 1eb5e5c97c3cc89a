// A codec pool worker: runs the (de)compressions of each message with the Node codecs and
// answers with their results in order.
import { parentPort } from 'node:worker_threads'
import { deflateCluster, inflateCluster, zstdClusterAny, zstdCompressClusterAny } from './codecs.js'
import type { CodecResult, CodecTask } from './pool.js'

function runTask(task: CodecTask): Uint8Array | undefined | Promise<Uint8Array | undefined> {
  const { input, size, output } = task
  if (task.op === 'compress') return task.codec === 'zstd' ? zstdCompressClusterAny(input, size, output) : deflateCluster(input, size, output)
  return task.codec === 'zstd' ? zstdClusterAny(input, size, output) : inflateCluster(input, size)
}

// Messages are answered in the order they came (the WebAssembly zstd fallback is asynchronous).
let queue = Promise.resolve()
parentPort?.on('message', (tasks: CodecTask[]) => {
  queue = queue.then(() => answer(tasks))
})

async function answer(tasks: CodecTask[]): Promise<void> {
  const results: CodecResult[] = []
  const transfer: ArrayBuffer[] = []
  for (const task of tasks) {
    try {
      const output = await runTask(task)
      if (task.output) {
        // Into the task's shared memory (the codec may already have written it there).
        if (output && output.buffer !== task.output.buffer) task.output.set(output)
        results.push({ length: output ? output.length : null })
        continue
      }
      // Transfer results; copy one first only when it is a view into larger (or pooled) memory.
      const own = output && (output.byteOffset !== 0 || output.byteLength !== output.buffer.byteLength) ? new Uint8Array(output) : output
      if (own) transfer.push(own.buffer as ArrayBuffer)
      results.push({ output: own ?? null })
    } catch (e) {
      results.push({ error: (e as Error).message })
    }
  }
  parentPort!.postMessage(results, transfer)
}
