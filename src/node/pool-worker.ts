// A codec pool worker: runs one (de)compression per message with the Node codecs.
import { parentPort } from 'node:worker_threads'
import { deflateCluster, inflateCluster, zstdCluster, zstdCompressCluster } from './codecs.js'
import type { CodecTask } from './pool.js'

parentPort?.on('message', (task: CodecTask) => {
  try {
    let output: Uint8Array | undefined
    if (task.op === 'compress') output = task.codec === 'zstd' ? zstdCompressCluster(task.input, task.size) : deflateCluster(task.input, task.size)
    else output = task.codec === 'zstd' ? zstdCluster(task.input, task.size) : inflateCluster(task.input, task.size)
    const copy = output ? new Uint8Array(output) : null
    parentPort!.postMessage({ output: copy }, copy ? [copy.buffer] : [])
  } catch (e) {
    parentPort!.postMessage({ error: (e as Error).message })
  }
})
