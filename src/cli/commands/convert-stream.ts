// convert with `-` as output (standard output, written front to back: raw, qcow2 plain or
// compressed, vpc fixed, vmdk streamOptimized) or as input (standard input: raw or vmdk
// streamOptimized). Forms that cannot stream are refused before a byte is written.
import { ImageError } from '../../errors.js'
import type { BlockDevice } from '../../format/device.js'
import { CountingSink, type Sink } from '../../io/sink.js'
import { resolveCreateOptions } from '../../qcow2/create.js'
import { toQcow2Options } from '../../qcow2/create-options.js'
import { descriptorSink } from '../../node/stdio.js'
import { CodecPool } from '../../node/pool.js'
import { feedDevice } from '../../stream/feed.js'
import { endFixedVhd, rawWriter } from '../../stream/flat-stream.js'
import { streamQcow2 } from '../../stream/qcow2-stream.js'
import type { ProgressMeter } from '../../commands/progress-meter.js'
import { openTempSpill } from '../../node/spill.js'
import { randomBytes } from 'node:crypto'

/** What the convert command parsed, as a stream conversion needs it. */
export interface StreamRequest {
  targetFormat: string
  compress: boolean
  opts: Map<string, string>
  sparseSize: number
  parallel: number
  progress: ProgressMeter | undefined
}

/** Options qcow2 takes on a pipe: the rest need seeking or other files. */
const QCOW2_STREAM_OPTIONS = new Set(['cluster_size', 'compression_type', 'compat', 'refcount_bits', 'size'])

/** Refuses what no streamed output can do, naming the form. */
export function checkStreamOutput(request: StreamRequest): void {
  const { targetFormat, opts } = request
  if (!['raw', 'qcow2', 'vpc'].includes(targetFormat)) throw new ImageError('UNSUPPORTED', `convert -O ${targetFormat} to standard output: only raw, qcow2 and vpc (subformat=fixed) can be written to a pipe`)
  if (targetFormat === 'qcow2') {
    for (const key of opts.keys()) if (!QCOW2_STREAM_OPTIONS.has(key)) throw new ImageError('UNSUPPORTED', `convert -O qcow2 to standard output: option '${key}' is not possible on a pipe (only cluster_size, compression_type, compat, refcount_bits)`)
  }
  if (targetFormat === 'vpc' && opts.get('subformat') !== 'fixed') throw new ImageError('UNSUPPORTED', 'convert -O vpc to standard output: only -o subformat=fixed can be written to a pipe (a dynamic disk\'s block table comes before its data)')
  if (request.compress && targetFormat !== 'qcow2') throw new ImageError('INVALID_ARGUMENT', `Compression not supported for format '${targetFormat}'`)
}

/** Writes `source` to standard output (or `sink`) in the requested format. */
export async function convertToSink(source: BlockDevice, request: StreamRequest, sink: Sink = descriptorSink()): Promise<void> {
  checkStreamOutput(request)
  const out = new CountingSink(sink)
  const progress = request.progress
  const parallel = request.parallel
  if (request.targetFormat === 'raw' || request.targetFormat === 'vpc') {
    progress?.phase('write', source.size)
    await feedDevice(source, rawWriter(out, (n) => progress?.add(n)), parallel)
    if (request.targetFormat === 'vpc') await endFixedVhd(out, source.size, { fixed: true, forceSize: request.opts.get('force_size') === 'on', nowSeconds: Math.floor(Date.now() / 1000), uuid: randomBytes(16) })
  } else {
    // qcow2: checkStreamOutput let nothing else through.
    const o = resolveCreateOptions(toQcow2Options(request.opts, source.size))
    const pool = request.compress ? new CodecPool() : undefined
    const spill = request.compress ? await openTempSpill() : undefined
    try {
      const compressors = pool?.compressors()
      await streamQcow2(source, out, {
        clusterBits: Math.log2(o.clusterSize), refcountOrder: Math.log2(o.refcountBits),
        version: o.compat === '0.10' ? 2 : 3, compressionType: o.compressionType,
        compressor: compressors && (o.compressionType === 'zstd' ? compressors.zstd : compressors.deflate),
        spill, parallel, keepZeros: request.sparseSize === 0, progress,
      })
    } finally {
      await pool?.close()
      await spill?.storage.close()
    }
  }
  progress?.end()
  await out.close()
}
