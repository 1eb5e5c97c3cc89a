// convert with `-` as output (standard output, written front to back: raw, qcow2 plain or
// compressed, vpc fixed, vmdk streamOptimized) or as input (standard input: raw or vmdk
// streamOptimized). Forms that cannot stream are refused before a byte is written.
import { ImageError } from '../../errors.js'
import type { BlockDevice } from '../../format/device.js'
import { CountingSink, type Sink } from '../../io/sink.js'
import { resolveCreateOptions } from '../../qcow2/create.js'
import { toQcow2Options } from '../create-options.js'
import { descriptorSink } from '../../node/stdio.js'
import { CodecPool } from '../../node/pool.js'
import { feedDevice, type FeedConsumer } from '../../stream/feed.js'
import { endFixedVhd, rawWriter } from '../../stream/flat-stream.js'
import { streamQcow2 } from '../../stream/qcow2-stream.js'
import type { StreamInput } from '../../stream/stream-input.js'
import { vmdkStreamWriter } from '../../stream/vmdk-stream-write.js'
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
/** Options a streamOptimized VMDK takes on a pipe (they only change the descriptor). */
const VMDK_STREAM_OPTIONS = new Set(['subformat', 'adapter_type', 'hwversion', 'toolsversion', 'size'])

/** Why qcow2 cannot go from one pipe to another. */
export const QCOW2_PIPE_TO_PIPE = 'convert -O qcow2 from standard input to standard output is impossible: a qcow2 stream puts its tables before the data, so it needs a seekable input (a file or an image) or a seekable output'

/** Refuses what no streamed output can do, naming the form. */
export function checkStreamOutput(request: StreamRequest): void {
  const { targetFormat, opts } = request
  if (!['raw', 'qcow2', 'vpc', 'vmdk'].includes(targetFormat)) throw new ImageError('UNSUPPORTED', `convert -O ${targetFormat} to standard output: only raw, qcow2, vpc (subformat=fixed) and vmdk (subformat=streamOptimized) can be written to a pipe`)
  const allowed = targetFormat === 'qcow2' ? QCOW2_STREAM_OPTIONS : targetFormat === 'vmdk' ? VMDK_STREAM_OPTIONS : undefined
  if (allowed) {
    for (const key of opts.keys()) if (!allowed.has(key)) throw new ImageError('UNSUPPORTED', `convert -O ${targetFormat} to standard output: option '${key}' is not possible on a pipe (only ${[...allowed].filter((k) => k !== 'size').join(', ')})`)
  }
  if (targetFormat === 'vpc' && opts.get('subformat') !== 'fixed') throw new ImageError('UNSUPPORTED', 'convert -O vpc to standard output: only -o subformat=fixed can be written to a pipe (a dynamic disk\'s block table comes before its data)')
  if (targetFormat === 'vmdk' && opts.get('subformat') !== 'streamOptimized') throw new ImageError('UNSUPPORTED', 'convert -O vmdk to standard output: only -o subformat=streamOptimized can be written to a pipe (the other subformats keep their tables before the data)')
  if (request.compress && targetFormat !== 'qcow2' && targetFormat !== 'vmdk') throw new ImageError('INVALID_ARGUMENT', `Compression not supported for format '${targetFormat}'`)
}

/** A writer of guest bytes fed in order: the formats whose data need no plan made in advance. */
interface FeedWriter {
  consume: FeedConsumer
  /** Ends the image after `length` guest bytes (the virtual size). */
  end(length: number): Promise<void>
  close(): Promise<void>
}

/** The feed writer for raw, vpc fixed or vmdk streamOptimized; `size` is needed up front by vmdk only. */
async function feedWriter(request: StreamRequest, out: CountingSink, size: number | undefined): Promise<FeedWriter> {
  const progress = request.progress
  const { targetFormat, opts } = request
  if (targetFormat === 'vmdk') {
    if (size === undefined) throw new ImageError('INVALID_ARGUMENT', 'convert -O vmdk from standard input to standard output: give the virtual size with --size (a VMDK header holds it before the data)')
    const pool = new CodecPool()
    const deflate = pool.compressors().deflateDefault!
    const writer = vmdkStreamWriter(out, size, deflate, {
      cid: randomBytes(4).readUInt32LE(0),
      ...(opts.has('adapter_type') ? { adapterType: opts.get('adapter_type')! } : {}),
      ...(opts.has('hwversion') ? { hwVersion: opts.get('hwversion')! } : {}),
      ...(opts.has('toolsversion') ? { toolsVersion: opts.get('toolsversion')! } : {}),
    })
    await writer.start()
    return {
      async consume(piece) {
        await writer.consume(piece)
        progress?.add(piece.data.length)
      },
      async end(length) {
        if (length > size) throw new ImageError('INVALID_ARGUMENT', `${out.name}: ${length} guest bytes are more than the --size ${size}`)
        await writer.end()
      },
      close: () => pool.close(),
    }
  }
  return {
    consume: rawWriter(out, (n) => progress?.add(n)),
    async end(length) {
      if (targetFormat === 'vpc') await endFixedVhd(out, length, { fixed: true, forceSize: opts.get('force_size') === 'on', nowSeconds: Math.floor(Date.now() / 1000), uuid: randomBytes(16) })
      else await out.padTo(length)
    },
    async close() {},
  }
}

/** Writes `source` to standard output (or `sink`) in the requested format. */
export async function convertToSink(source: BlockDevice, request: StreamRequest, sink: Sink = descriptorSink()): Promise<void> {
  checkStreamOutput(request)
  const out = new CountingSink(sink)
  const progress = request.progress
  const parallel = request.parallel
  if (request.targetFormat !== 'qcow2') {
    progress?.phase('write', source.size)
    const writer = await feedWriter(request, out, source.size)
    try {
      await feedDevice(source, writer.consume, parallel)
      await writer.end(source.size)
    } finally {
      await writer.close()
    }
  } else {
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

/**
 * Writes a stream read from standard input to standard output (or `sink`): raw, vpc fixed or
 * vmdk. `size` (--size) bounds the stream and pads it; vmdk needs it unless the input says it.
 */
export async function convertStreamToSink(input: StreamInput, request: StreamRequest, size: number | undefined, sink: Sink = descriptorSink()): Promise<void> {
  checkStreamOutput(request)
  if (request.targetFormat === 'qcow2') throw new ImageError('INVALID_ARGUMENT', QCOW2_PIPE_TO_PIPE)
  const out = new CountingSink(sink)
  const known = input.size ?? size
  request.progress?.phase('write', known ?? 0)
  const writer = await feedWriter(request, out, known)
  try {
    const length = await input.feed(writer.consume, known)
    await writer.end(Math.max(length, known ?? 0))
  } finally {
    await writer.close()
  }
  request.progress?.end()
  await out.close()
}
